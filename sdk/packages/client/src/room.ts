// `client.room`: the room from the server, with its users.

import type { CollabKitRoom } from '@collab-kit/utils';
import { Emitter } from './emitter.js';
import type { CollabKitClientUser, RawUser } from './users.js';

/** A room with its users, as `room.get()` resolves it. */
export type CollabKitRoomWithUsers = CollabKitRoom & { users: CollabKitClientUser[] };

export type RoomEvents = {
  /** The room was deleted (REST): the server then closes the socket (4404), for good. */
  deleted: [info: { roomId: string }];
};

export interface RoomHost {
  request<T>(method: string, params?: unknown, options?: { retry?: boolean }): Promise<T>;
  wrapUser(user: RawUser): CollabKitClientUser;
  roomFetched(room: CollabKitRoom): void;
}

export class RoomApi {
  private readonly events = new Emitter<RoomEvents>();

  constructor(private readonly host: RoomHost) {}

  /** The token's room (or `{ roomId }`, which must be that room: another one is FORBIDDEN). */
  async get(args: { roomId?: string } = {}): Promise<CollabKitRoomWithUsers> {
    const params = args.roomId === undefined ? undefined : { roomId: args.roomId };
    const result = await this.host.request<{ room: CollabKitRoom; users: RawUser[] }>('room.get', params, { retry: true });
    this.host.roomFetched(result.room);
    return { ...result.room, users: result.users.map((u) => this.host.wrapUser(u)) };
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
