// `client.users`: the room's users as the socket shows them (with `following` / `followers`),
// who is online, the user events, and following. Every user object the SDK hands out has
// `follow()` and `unfollow()` (non-enumerable: the object still serializes as the plain user).

import type { CollabKitUser } from '@collab-kit/utils';
import type { Requester } from './connection.js';
import { Emitter } from './emitter.js';
import { followPages } from './pages.js';
import type { RawUser } from './protocol.js';

/** A user handed out by the SDK: the CollabKitUser, its follow graph, and follow/unfollow. */
export interface CollabKitClientUser extends CollabKitUser {
  /** User IDs this user follows. */
  following: string[];
  /** User IDs following this user. */
  followers: string[];
  /** The local user starts following this one. Resolves with this user, updated. */
  follow(): Promise<CollabKitClientUser>;
  /** The local user stops following this one. Resolves with this user, updated. */
  unfollow(): Promise<CollabKitClientUser>;
}

/**
 * A snapshot of the room's users being gathered: a join and the pages after it, or a
 * `getAll`. It records the users that events (and call results) changed from the moment its
 * first request went out; those win over the snapshot, which may be older: the server can
 * read a page before a change whose event reaches the client first, and a response and the
 * events behind it in the same read are all handled before the code awaiting the response
 * resumes.
 */
export interface UsersLoad {
  readonly touched: Set<string>;
}

export type UserEventName = 'userJoined' | 'userLeft' | 'userCreated' | 'userUpdated' | 'userDeleted';

export type UserEvents = { [E in UserEventName]: [user: CollabKitClientUser] };

/** What the users module needs from the client. */
export interface UsersHost {
  request: Requester;
  readonly selfId: string | undefined;
  /** The local user's `following` changed (from a call's result or from the server's event). */
  followingChanged(): void;
}

export class Users {
  /** Every user of the room, by ID (after `join()`; kept current by events). One live Map. */
  readonly all = new Map<string, CollabKitClientUser>();
  /** The users online now, the local user included (after `join()`). One live Map. */
  readonly online = new Map<string, CollabKitClientUser>();
  private readonly events = new Emitter<UserEvents>();
  private self: CollabKitClientUser | undefined;
  private readonly loads = new Set<UsersLoad>();

  constructor(private readonly host: UsersHost) {}

  /** The local user, or one by ID, from the server. */
  async get(args: { userId?: string } = {}): Promise<CollabKitClientUser> {
    const params = args.userId === undefined ? undefined : { userId: args.userId };
    const { user } = await this.host.request('users.get', params, { retry: true });
    return this.remember(user);
  }

  /**
   * Every user of the room, from the server, oldest first: the SDK asks for every page. Also
   * refreshes `all`. Changes told by events while it pages win over the pages.
   */
  async getAll(): Promise<CollabKitClientUser[]> {
    const load = this.beginLoad();
    try {
      const page = (after?: string) =>
        this.host.request('users.getAll', after === undefined ? undefined : { after }, { retry: true });
      const users: RawUser[] = [];
      await followPages('users.getAll', await page(), page, (p) => users.push(...p.users));
      const merged = this.merged(load, users);
      this.all.clear();
      for (const [id, user] of merged) this.all.set(id, user);
      for (const user of merged.values()) this.trackOnline(user);
      for (const id of [...this.online.keys()]) if (!merged.has(id)) this.online.delete(id);
      this.refreshSelf();
      return [...merged.values()];
    } finally {
      this.endLoad(load);
    }
  }

  /** `userJoined`, `userLeft`, `userCreated`, `userUpdated`, `userDeleted`; returns an unsubscribe. */
  on<E extends UserEventName>(event: E, callback: (user: CollabKitClientUser) => void): () => void {
    return this.events.on(event, callback as never);
  }

  once<E extends UserEventName>(event: E, callback: (user: CollabKitClientUser) => void): () => void {
    return this.events.once(event, callback as never);
  }

  off<E extends UserEventName>(event: E, callback: (user: CollabKitClientUser) => void): void {
    this.events.off(event, callback as never);
  }

  /** User IDs the local user follows. */
  get following(): string[] {
    return this.self?.following ?? [];
  }

  /** User IDs following the local user. */
  get followers(): string[] {
    return this.self?.followers ?? [];
  }

  /** The local user's latest known state. */
  get current(): CollabKitClientUser | undefined {
    return this.self;
  }

  /** Follows a user by ID (what `user.follow()` does). */
  async follow(userId: string): Promise<CollabKitClientUser> {
    const { user } = await this.host.request('users.follow', { userId });
    this.adjustSelf(userId, true);
    return this.remember(user);
  }

  async unfollow(userId: string): Promise<CollabKitClientUser> {
    const { user } = await this.host.request('users.unfollow', { userId });
    this.adjustSelf(userId, false);
    return this.remember(user);
  }

  // ----- called by the client -----

  /** The user from the socket's welcome. */
  setSelf(user: RawUser): void {
    this.self = this.wrap(user);
    if (this.all.has(user.id)) this.all.set(user.id, this.self);
    if (this.online.has(user.id)) this.online.set(user.id, this.self);
  }

  /** Starts a snapshot: call it before sending the first request, end it with `endLoad`. */
  beginLoad(): UsersLoad {
    const load: UsersLoad = { touched: new Set() };
    this.loads.add(load);
    return load;
  }

  endLoad(load: UsersLoad): void {
    this.loads.delete(load);
  }

  /**
   * The room's users from a join: its `users` and every further page, gathered under `load`.
   * After a reconnection, what changed while the client was away is told as events
   * (`userCreated`, `userDeleted`, `userJoined`, `userLeft`); what events told while the pages
   * came was told then. Returns whether any event came meanwhile.
   */
  replaceAll(load: UsersLoad, users: RawUser[], self: RawUser, announce: boolean): boolean {
    this.loads.delete(load);
    const before = { all: new Map(this.all), online: new Map(this.online) };
    const merged = this.merged(load, users);
    const me = load.touched.has(self.id) && merged.has(self.id) ? merged.get(self.id)! : this.wrap(self);
    this.all.clear();
    this.online.clear();
    for (const user of merged.values()) {
      this.all.set(user.id, user);
      if (user.status === 'online') this.online.set(user.id, user);
    }
    this.all.set(me.id, me);
    this.online.set(me.id, me);
    this.self = me;
    // A getAll() paging across a reconnection holds pages older than this: it must not undo it.
    for (const id of new Set([...before.all.keys(), ...this.all.keys()])) this.touch(id);
    const changed = load.touched.size > 0;
    if (!announce) return changed;
    for (const [id, user] of this.all) if (!before.all.has(id)) this.events.emit('userCreated', user);
    for (const [id, user] of this.online) if (!before.online.has(id) && id !== me.id) this.events.emit('userJoined', user);
    for (const [id, user] of before.online) {
      if (!this.online.has(id) && id !== me.id) this.events.emit('userLeft', this.all.get(id) ?? user);
    }
    for (const [id, user] of before.all) if (!this.all.has(id)) this.events.emit('userDeleted', user);
    return changed;
  }

  /**
   * A snapshot with what events changed since it started: for those users the live state
   * (`all`, kept by the events; absent means deleted), for the others the snapshot's.
   */
  private merged(load: UsersLoad, users: RawUser[]): Map<string, CollabKitClientUser> {
    const merged = new Map<string, CollabKitClientUser>();
    for (const raw of users) if (!load.touched.has(raw.id)) merged.set(raw.id, this.wrap(raw));
    for (const id of load.touched) {
      const live = this.all.get(id);
      if (live) merged.set(id, live);
    }
    return merged;
  }

  /** An event or a call result changed this user: running snapshots must not undo it. */
  private touch(id: string): void {
    for (const load of this.loads) load.touched.add(id);
  }

  /** After `leave()`: the client no longer follows who is online. */
  clearOnline(): void {
    this.online.clear();
  }

  /** A user event from the server. */
  handle(event: UserEventName, raw: RawUser): void {
    const user = this.wrap(raw);
    this.touch(user.id);
    switch (event) {
      case 'userJoined':
        this.all.set(user.id, user);
        this.online.set(user.id, user);
        break;
      case 'userLeft':
        this.all.set(user.id, user);
        this.online.delete(user.id);
        break;
      case 'userCreated':
      case 'userUpdated':
        this.all.set(user.id, user);
        this.trackOnline(user);
        break;
      case 'userDeleted':
        this.all.delete(user.id);
        this.online.delete(user.id);
        break;
    }
    if (user.id === this.host.selfId && event !== 'userDeleted') this.setCurrent(user);
    this.events.emit(event, user);
  }

  wrap(raw: RawUser): CollabKitClientUser {
    const user = {
      ...raw,
      following: [...(raw.following ?? [])],
      followers: [...(raw.followers ?? [])],
    } as CollabKitClientUser;
    const id = raw.id;
    Object.defineProperties(user, {
      follow: { value: () => this.follow(id), enumerable: false, writable: true, configurable: true },
      unfollow: { value: () => this.unfollow(id), enumerable: false, writable: true, configurable: true },
    });
    return user;
  }

  private remember(raw: RawUser): CollabKitClientUser {
    const user = this.wrap(raw);
    if (this.all.has(user.id)) {
      this.all.set(user.id, user);
      this.touch(user.id);
    }
    this.trackOnline(user);
    if (user.id === this.host.selfId) this.setCurrent(user);
    return user;
  }

  private trackOnline(user: CollabKitClientUser): void {
    if (!this.online.has(user.id)) return;
    if (user.status === 'online' || user.id === this.host.selfId) this.online.set(user.id, user);
    else this.online.delete(user.id);
  }

  private setCurrent(user: CollabKitClientUser): void {
    const before = this.self?.following.join(',');
    this.self = user;
    if (before !== undefined && before !== user.following.join(',')) this.host.followingChanged();
  }

  private refreshSelf(): void {
    const id = this.host.selfId;
    if (id !== undefined && this.all.has(id)) this.setCurrent(this.all.get(id)!);
  }

  /** Until the server's `userUpdated` arrives, the local user's `following` reflects the call. */
  private adjustSelf(userId: string, follows: boolean): void {
    const self = this.self;
    if (!self) return;
    const following = self.following.filter((id) => id !== userId);
    if (follows) following.push(userId);
    const updated = this.wrap({ ...self, following });
    this.setCurrent(updated);
    if (this.all.has(updated.id)) {
      this.all.set(updated.id, updated);
      this.touch(updated.id);
    }
    if (this.online.has(updated.id)) this.online.set(updated.id, updated);
  }
}
