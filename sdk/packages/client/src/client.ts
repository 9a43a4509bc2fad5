// CollabKitClient: one WebSocket per client, and the modules on it (socket, room, users,
// presence, stores, notifications, comments). It owns what "rehydrating" a new socket means:
// re-declare stores, re-join, re-sync presence, catch stores up.

import type { CollabKitRoom, StoresDefinition } from '@collab-kit/utils';
import { Comments } from './comments.js';
import {
  Connection,
  type ConnectionEvents,
  type HeartbeatOptions,
  type Notifier,
  type ReconnectOptions,
  type Requester,
  type SetupContext,
} from './connection.js';
import { CollabKitError } from './errors.js';
import { Notifications } from './notifications.js';
import { followPages } from './pages.js';
import { Presence } from './presence.js';
import type { EventFrame, RawUser, UsersPage, Welcome } from './protocol.js';
import { RoomApi } from './room.js';
import { Storage } from './storage.js';
import { Stores, type StoresClient } from './stores.js';
import { claimsOf } from './token.js';
import { Users, type CollabKitClientUser } from './users.js';
import type { WebSocketConstructor } from './websocket.js';

// biome-ignore lint/complexity/noBannedTypes: `{}` is the stores definition with no store, the default
export interface CollabKitClientOptions<D extends StoresDefinition = {}> {
  /** The server's base URL: `https://api.example.com` (the socket is `wss://.../v1/realtime`). */
  serverUrl: string;
  /** The user's JWT (from `POST /v1/accounts/:id/users`, `data.token`). */
  authToken: string;
  /** The application's stores, from `defineStores`. */
  stores?: D;
  /** Auto-reconnect (on by default); `false` turns it off. */
  reconnect?: ReconnectOptions | boolean;
  /** Client-side heartbeats that detect a dead connection. */
  heartbeat?: HeartbeatOptions;
  /** Time to open the socket and authenticate (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** Time a request may take, queueing included, before it fails with TIMEOUT (default 15 000 ms). */
  requestTimeoutMs?: number;
  /** A WebSocket implementation; by default the platform's, else the `ws` package (Node.js 20). */
  WebSocket?: WebSocketConstructor;
}

export type SocketEvents = ConnectionEvents;
export type SocketEventName = keyof SocketEvents;
export type SocketState = 'idle' | 'connecting' | 'ready' | 'reconnecting';

/** `client.socket`: the connection's lifecycle. */
export class SocketApi {
  constructor(private readonly connection: Connection) {}

  /**
   * `connected`, `disconnected`, `reconnecting` (`{ attempt }`), `reconnected`, `failed`,
   * `authFailed`, and `error` (a failed notification). Returns an unsubscribe function.
   */
  on<E extends SocketEventName>(event: E, callback: (...args: SocketEvents[E]) => void): () => void {
    return this.connection.on(event, callback);
  }

  once<E extends SocketEventName>(event: E, callback: (...args: SocketEvents[E]) => void): () => void {
    return this.connection.once(event, callback);
  }

  off<E extends SocketEventName>(event: E, callback: (...args: SocketEvents[E]) => void): void {
    this.connection.off(event, callback);
  }

  /** `idle` (not connected), `connecting`, `ready` or `reconnecting`. */
  get state(): SocketState {
    return this.connection.state;
  }

  /** Whether the socket is open, authenticated and set up. */
  get connected(): boolean {
    return this.connection.state === 'ready';
  }
}

// biome-ignore lint/complexity/noBannedTypes: `{}` is the stores definition with no store, the default
export class CollabKitClient<D extends StoresDefinition = {}> {
  readonly socket: SocketApi;
  readonly room: RoomApi;
  readonly users: Users;
  readonly presence: Presence;
  readonly stores: StoresClient<D>;
  readonly notifications: Notifications;
  readonly comments: Comments;
  /** The room's files, over HTTP with the JWT. */
  readonly storage: Storage;

  private readonly connection: Connection;
  private readonly storeSet: Stores;
  private room_: CollabKitRoom | null = null;
  private selfId: string | undefined;
  private wantJoined = false;
  private joinedEpoch: number | undefined;
  private joining: Promise<CollabKitRoom> | undefined;

  constructor(options: CollabKitClientOptions<D>) {
    if (!options || typeof options.serverUrl !== 'string' || options.serverUrl === '') {
      throw new CollabKitError('VALIDATION_ERROR', 'serverUrl is required', { field: 'serverUrl' });
    }
    if (typeof options.authToken !== 'string' || options.authToken === '') {
      throw new CollabKitError('VALIDATION_ERROR', 'authToken is required', { field: 'authToken' });
    }
    this.selfId = claimsOf(options.authToken)?.userId;
    const self = this;
    this.connection = new Connection(options, {
      setup: (context, reconnect) => this.setup(context, reconnect),
      event: (frame) => this.handleEvent(frame),
      ready: () => this.presence.resume(),
    });
    const request: Requester = (method, ...args) => this.connection.request(method, ...args);
    this.socket = new SocketApi(this.connection);
    this.users = new Users({
      request,
      get selfId() {
        return self.selfId;
      },
      followingChanged: () => {
        this.presence.followingChanged().catch((error) => this.reportUnlessDisconnected(error));
      },
    });
    this.presence = new Presence({
      request,
      notify: (method, ...params) => this.connection.notify(method, ...params),
      get live() {
        return self.joined;
      },
      get following() {
        return self.users.following;
      },
      get limits() {
        return self.connection.serverLimits;
      },
    });
    this.storeSet = new Stores(options.stores ?? {}, {
      request,
      get selfId() {
        return self.selfId;
      },
    });
    // The handles work on the wire's values; `StoresClient<D>` is their view typed by the schema.
    this.stores = this.storeSet.client as unknown as StoresClient<D>;
    this.notifications = new Notifications({
      request,
      get limits() {
        return self.connection.serverLimits;
      },
    });
    this.room = new RoomApi({
      request,
      wrapUser: (user) => this.users.wrap(user),
      roomFetched: (room) => {
        if (this.room_ === null || this.room_.id === room.id) this.room_ = room;
      },
    });
    this.comments = new Comments({ request });
    this.storage = new Storage({ serverUrl: options.serverUrl, authToken: options.authToken });
  }

  /** The room (after `connect()`; refreshed by `join()` and `room.get()`). */
  get currentRoom(): CollabKitRoom | null {
    return this.room_;
  }

  /** The local user (after `connect()`), with `follow`/`unfollow` like every user object. */
  get currentUser(): CollabKitClientUser | null {
    return this.users.current ?? null;
  }

  /** The local user's ID (read from the JWT, so known before `connect()`). */
  get userId(): string | null {
    return this.selfId ?? null;
  }

  /** Opens the socket and authenticates with the JWT. Rejects with AUTH_FAILED if refused. */
  async connect(): Promise<void> {
    await this.connection.connect();
  }

  /** The user goes online in its room. Resolves with the room. */
  join(): Promise<CollabKitRoom> {
    this.joining ??= this.joinOnce().finally(() => {
      this.joining = undefined;
    });
    return this.joining;
  }

  private async joinOnce(): Promise<CollabKitRoom> {
    this.wantJoined = true;
    const state = this.connection.state;
    if (state === 'idle') {
      this.wantJoined = false;
      throw new CollabKitError('NOT_CONNECTED', 'The client is not connected: call connect() first', {
        method: 'room.join',
      });
    }
    if (state !== 'ready') await this.connection.whenReady();
    if (this.joined) return this.room_!;
    this.storeSet.markGap();
    // On this socket only: if it closes, the reconnection joins (wantJoined is set) and loads
    // the users itself; pages of this one must not land on the next socket.
    const socket = this.connection.bound();
    const epoch = this.connection.socketEpoch;
    try {
      if (!socket) {
        throw new CollabKitError('DISCONNECTED', 'The connection closed before room.join', { method: 'room.join' });
      }
      await this.joinRoom(socket, false);
    } catch (error) {
      if (error instanceof CollabKitError && error.code === 'DISCONNECTED' && this.connection.state === 'reconnecting') {
        await this.connection.whenReady();
        if (this.joined) return this.room_!;
      }
      this.wantJoined = false;
      throw error;
    }
    this.joinedEpoch = epoch;
    const notify: Notifier = (method, ...params) => void this.connection.notify(method, ...params);
    const request: Requester = (method, ...args) => this.connection.request(method, ...args);
    const context = { request, notify };
    try {
      await this.presence.rehydrate(context);
      // Changes between connect()'s load and the join reached nobody: fetch them.
      await this.storeSet.catchUp(context);
    } catch (error) {
      this.reportUnlessDisconnected(error);
    }
    this.presence.resume();
    return this.room_!;
  }

  /** This socket leaves the room (the user goes offline when no socket of theirs is in it). */
  async leave(): Promise<void> {
    this.wantJoined = false;
    const wasJoined = this.joined;
    this.joinedEpoch = undefined;
    this.users.clearOnline();
    this.presence.reset();
    if (wasJoined) await this.connection.request('room.leave');
  }

  /** Closes the socket for good (no reconnection). Pending requests fail. */
  disconnect(): void {
    this.wantJoined = false;
    this.joinedEpoch = undefined;
    this.presence.reset();
    this.connection.disconnect();
  }

  private get joined(): boolean {
    return (
      this.connection.state === 'ready' &&
      this.joinedEpoch !== undefined &&
      this.joinedEpoch === this.connection.socketEpoch
    );
  }

  /** Every new socket: declare stores, re-join, re-sync presence, catch stores up. */
  private async setup(context: SetupContext, reconnect: boolean): Promise<void> {
    const welcome: Welcome = context.welcome;
    this.selfId = welcome.user.id;
    this.users.setSelf(welcome.user);
    if (this.room_ === null || this.room_.id === welcome.room.id) this.room_ = welcome.room;
    this.joinedEpoch = undefined;
    this.storeSet.markGap();
    const epoch = this.connection.socketEpoch;
    try {
      await this.storeSet.declare(context);
    } catch (error) {
      // A schema the server refuses is a bug to surface at connect(); on a reconnection the
      // writes are still checked by the server, so carry on.
      if (!reconnect) throw error;
      this.reportUnlessDisconnected(error);
    }
    if (this.wantJoined) {
      await this.joinRoom(context, reconnect);
      this.joinedEpoch = epoch;
      try {
        await this.presence.rehydrate(context);
      } catch (error) {
        if (isDisconnected(error)) throw error;
        this.connection.emit('error', error as CollabKitError);
      }
    }
    try {
      await this.storeSet.catchUp(context);
    } catch (error) {
      if (!reconnect || isDisconnected(error)) throw error;
      this.connection.emit('error', error as CollabKitError);
    }
  }

  /**
   * `room.join`, then the rest of the room's users page by page (`usersCursor`), so that
   * `users.all` is complete before join() resolves or `reconnected` fires. User events that
   * arrive from the join request on win over the pages (see `UsersLoad`). If the pages fail
   * after the server joined, the socket leaves again: a later join() must not find it joined.
   */
  private async joinRoom(socket: SetupContext, announce: boolean): Promise<void> {
    const load = this.users.beginLoad();
    try {
      const result = await socket.request('room.join');
      const users: RawUser[] = [];
      try {
        const cursor = result.usersCursor ?? null;
        const first: UsersPage = { users: result.users, hasMore: typeof cursor === 'string', cursor };
        const page = (after: string) => socket.request('users.getAll', { after });
        await followPages('users.getAll', first, page, (p) => users.push(...p.users));
      } catch (error) {
        if (!isDisconnected(error)) socket.request('room.leave').catch(() => {});
        throw error;
      }
      this.room_ = result.room;
      this.selfId = result.user.id;
      const eventsCame = this.users.replaceAll(load, users, result.user, announce);
      // The join's count may predate the users who came or went while the pages did.
      if (eventsCame) this.room_ = { ...this.room_, active_participants: this.users.online.size };
      this.presence.joined(result.presence ?? []);
    } finally {
      this.users.endLoad(load);
    }
  }

  /** Every event the protocol has, each to the module it concerns. */
  private handleEvent(frame: EventFrame): void {
    switch (frame.event) {
      case 'userJoined':
      case 'userLeft':
      case 'userCreated':
      case 'userUpdated':
      case 'userDeleted': {
        const user: RawUser | undefined = frame.data.user;
        if (!user) return;
        this.users.handle(frame.event, user);
        if ((frame.event === 'userJoined' || frame.event === 'userLeft') && this.room_) {
          this.room_ = { ...this.room_, active_participants: this.users.online.size };
        }
        return;
      }
      case 'presence': {
        const data = frame.data;
        for (const change of 'states' in data ? data.states : [data]) this.presence.handle(change);
        return;
      }
      case 'broadcast':
        this.notifications.handle(frame.data);
        return;
      case 'changed':
        this.storeSet.changed(frame.data);
        return;
      case 'roomDeleted':
        this.room.emit('deleted', { roomId: String(frame.data.roomId ?? this.room_?.id ?? '') });
        return;
      case 'threadCreated':
      case 'threadUpdated':
      case 'threadDeleted':
      case 'commentCreated':
      case 'commentUpdated':
      case 'commentDeleted':
        this.comments.handle(frame);
        return;
      case 'fileUploaded':
        this.storage.handle(frame.event, frame.data);
        return;
      case 'fileDeleted':
        this.storage.handle(frame.event, frame.data);
        return;
      default:
        // An event added to the protocol's map and not handled here does not compile.
        frame satisfies never;
    }
  }

  private reportUnlessDisconnected(error: unknown): void {
    if (isDisconnected(error)) return;
    this.connection.emit(
      'error',
      error instanceof CollabKitError ? error : new CollabKitError('INTERNAL_ERROR', String(error)),
    );
  }
}

function isDisconnected(error: unknown): boolean {
  return (
    error instanceof CollabKitError &&
    (error.code === 'DISCONNECTED' || error.code === 'NOT_CONNECTED' || error.code === 'TIMEOUT')
  );
}
