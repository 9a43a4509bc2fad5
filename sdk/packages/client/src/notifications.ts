// `client.notifications`: custom broadcast events, fire-and-forget, never persisted. The
// sender never receives its own.

import { byteLength, type Requester } from './connection.js';
import { CollabKitError } from './errors.js';
import type { Events, ServerLimits } from './protocol.js';

/** Who sent a broadcast, as the second argument of listeners. */
export interface BroadcastMeta {
  event: string;
  /** The sender's user ID. */
  userId: string;
}

// biome-ignore lint/suspicious/noExplicitAny: the application's payload, opaque to the protocol (`unknown` on the wire): untyped listeners read it as they like, typed ones pass `T`
export type BroadcastCallback<T = any> = (data: T, meta: BroadcastMeta) => void;

export interface NotificationsHost {
  readonly limits: ServerLimits | undefined;
  request: Requester;
}

const MAX_EVENT_NAME_CHARS = 128;

export class Notifications {
  private readonly listeners = new Map<string, Set<BroadcastCallback>>();
  private readonly onceWrappers = new Map<BroadcastCallback, BroadcastCallback>();

  constructor(private readonly host: NotificationsHost) {}

  /**
   * Sends `event` with `data` (any JSON) to every other participant of the room, or only to
   * `userIds`. Resolves with the number of sockets it reached. Needs `join()`.
   */
  async broadcast(event: string, data?: unknown, userIds?: string[]): Promise<{ recipients: number }> {
    if (typeof event !== 'string' || event.length === 0 || [...event].length > MAX_EVENT_NAME_CHARS) {
      throw new CollabKitError('VALIDATION_ERROR', 'event must be 1 to 128 characters', { field: 'event', method: 'broadcast' });
    }
    if (userIds !== undefined && (!Array.isArray(userIds) || userIds.some((id) => typeof id !== 'string'))) {
      throw new CollabKitError('VALIDATION_ERROR', 'userIds must be an array of user IDs', { field: 'userIds', method: 'broadcast' });
    }
    const payload = data === undefined ? null : data;
    const limit = this.host.limits?.maxBroadcastBytes;
    if (limit !== undefined && byteLength(JSON.stringify(payload)) > limit) {
      throw new CollabKitError('PAYLOAD_TOO_LARGE', `The broadcast data is over the server's ${limit}-byte limit`, {
        method: 'broadcast',
      });
    }
    return this.host.request('broadcast', { event, data: payload, ...(userIds ? { userIds } : {}) });
  }

  /** Calls `callback(data, { event, userId })` for every `event` received. Returns an unsubscribe. */
  // biome-ignore lint/suspicious/noExplicitAny: as BroadcastCallback's
  on<T = any>(event: string, callback: BroadcastCallback<T>): () => void {
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(callback as BroadcastCallback);
    return () => this.off(event, callback);
  }

  /** Like `on`, for the next `event` only. */
  // biome-ignore lint/suspicious/noExplicitAny: as BroadcastCallback's
  once<T = any>(event: string, callback: BroadcastCallback<T>): () => void {
    const wrapper: BroadcastCallback = (data, meta) => {
      this.off(event, callback);
      (callback as BroadcastCallback)(data, meta);
    };
    this.onceWrappers.set(callback as BroadcastCallback, wrapper);
    return this.on(event, wrapper);
  }

  // biome-ignore lint/suspicious/noExplicitAny: as BroadcastCallback's
  off<T = any>(event: string, callback: BroadcastCallback<T>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    const wrapper = this.onceWrappers.get(callback as BroadcastCallback);
    if (!set.delete(callback as BroadcastCallback) && wrapper) set.delete(wrapper);
    if (wrapper) this.onceWrappers.delete(callback as BroadcastCallback);
    if (set.size === 0) this.listeners.delete(event);
  }

  // ----- called by the client -----

  handle(data: Events['broadcast']): void {
    const set = this.listeners.get(data.event);
    if (!set) return;
    for (const callback of [...set]) {
      try {
        callback(data.data, { event: data.event, userId: data.userId });
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
