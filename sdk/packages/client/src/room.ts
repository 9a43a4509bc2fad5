// `client.room`: the room from the server, with its users.

import type { CollabKitRoom } from '@collab-kit/utils';
import type { Requester } from './connection.js';
import { Emitter } from './emitter.js';
import { followPages } from './pages.js';
import type { RawUser } from './protocol.js';
import type { CollabKitClientUser } from './users.js';

/** A room with its users, as `room.get()` resolves it. */
export type CollabKitRoomWithUsers = CollabKitRoom & { users: CollabKitClientUser[] };

export type RoomEvents = {
  /** The room was deleted (REST): the server then closes the socket (4404), for good. */
  deleted: [info: { roomId: string }];
};

export interface RoomHost {
  request: Requester;
  wrapUser(user: RawUser): CollabKitClientUser;
  roomFetched(room: CollabKitRoom): void;
}

export class RoomApi {
  private readonly events = new Emitter<RoomEvents>();

  constructor(private readonly host: RoomHost) {}

  /**
   * The token's room (or `{ roomId }`, which must be that room: another one is FORBIDDEN)
   * with every one of its users, oldest first: the server sends them in pages and the SDK asks
   * for each. The room is the one the last page came with.
   */
  async get(args: { roomId?: string } = {}): Promise<CollabKitRoomWithUsers> {
    const page = (after?: string) => {
      const params = {
        ...(args.roomId === undefined ? {} : { roomId: args.roomId }),
        ...(after === undefined ? {} : { after }),
      };
      return this.host.request('room.get', Object.keys(params).length > 0 ? params : undefined, { retry: true });
    };
    let room: CollabKitRoom | undefined;
    // Keyed by ID: a user is listed once even if a page repeated one.
    const users = new Map<string, RawUser>();
    await followPages('room.get', await page(), page, (p) => {
      room = p.room;
      for (const user of p.users) users.set(user.id, user);
    });
    this.host.roomFetched(room!);
    return { ...room!, users: [...users.values()].map((u) => this.host.wrapUser(u)) };
  }

  on<E extends keyof RoomEvents>(event: E, callback: (...args: RoomEvents[E]) => void): () => void {
    return this.events.on(event, callback);
  }

  off<E extends keyof RoomEvents>(event: E, callback: (...args: RoomEvents[E]) => void): void {
    this.events.off(event, callback);
  }

  emit<E extends keyof RoomEvents>(event: E, ...args: RoomEvents[E]): void {
    this.events.emit(event, ...args);
  }
}
