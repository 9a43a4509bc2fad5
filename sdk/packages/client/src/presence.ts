// `client.presence`: the local user's ephemeral state (throttled to one send per 50 ms,
// trailing edge, latest wins), and the states of the users this client syncs to.
//
// A `presence.sync` answer is a snapshot that may be older than `presence` events the client
// handles before it: the server's room takes the snapshot, but the answer is queued after
// events the room sent since, and a response and the events behind it in one read are all
// handled before the code awaiting the response resumes. So the events that arrive while a
// snapshot is asked for are kept aside and win over it.

import type { PresenceState } from '@collab-kit/utils';
import { type BoundRequester, byteLength, type Notifier } from './connection.js';
import { CollabKitError } from './errors.js';
import type { Method, ParamsArg, PresenceEntry, ServerLimits } from './protocol.js';

/** One send per this interval at most; the last state of a burst is always sent. */
export const PRESENCE_THROTTLE_MS = 50;

/** `'*'` (everyone), `'following'` (the users the local user follows), or a user ID. */
export type PresenceTarget = '*' | 'following' | (string & {});

/** A user's presence; `S` lets an application type its own state (the server adds `color`). */
export interface PresenceChange<S extends object = PresenceState> {
  userId: string;
  /** `null` when the user left or cleared their presence. */
  state: (S & { color?: string }) | null;
}

export type PresenceCallback<S extends object = PresenceState> = (change: PresenceChange<S>) => void;

export interface PresenceHost {
  /** Whether the socket is ready and joined: presence frames may go now. */
  readonly live: boolean;
  readonly limits: ServerLimits | undefined;
  /** The user IDs the local user follows (for the `'following'` target). */
  readonly following: readonly string[];
  request: BoundRequester;
  /** Whether the frame went (the socket is ready). */
  notify<M extends Method>(method: M, ...params: ParamsArg<M>): boolean;
}

/** The last change per user that events told while a snapshot was asked for. */
type SnapshotWindow = Map<string, PresenceState | null>;

/** What the setup of a new socket may use. */
export interface PresenceSetup {
  request: BoundRequester;
  notify: Notifier;
}

export class Presence {
  private states = new Map<string, PresenceState>();
  private target: PresenceTarget | undefined;
  private callback: PresenceCallback | undefined;
  private own: PresenceState | undefined;
  private lastSentAt = 0;
  private trailing: ReturnType<typeof setTimeout> | undefined;
  private dirty = false;
  /** Whether the callback has had the current states once (later results are diffed). */
  private delivered = false;
  /** One per `presence.sync` in flight. */
  private readonly windows = new Set<SnapshotWindow>();

  constructor(private readonly host: PresenceHost) {}

  /**
   * Sets the local user's presence: any JSON object. At most one send per 50 ms reaches the
   * server; the latest state always does. Before `join()`, or while reconnecting, the state is
   * kept and sent as soon as the client is in the room.
   */
  update(state: object): void {
    if (state === null || typeof state !== 'object' || Array.isArray(state)) {
      throw new CollabKitError('VALIDATION_ERROR', 'state must be a JSON object', { field: 'state', method: 'presence.update' });
    }
    const copy = JSON.parse(JSON.stringify(state)) as PresenceState;
    const limit = this.host.limits?.maxPresenceBytes;
    if (limit !== undefined && byteLength(JSON.stringify(copy)) > limit) {
      throw new CollabKitError('PAYLOAD_TOO_LARGE', `The presence state is over the server's ${limit}-byte limit`, {
        method: 'presence.update',
      });
    }
    this.own = copy;
    this.dirty = true;
    this.schedule();
  }

  /** The state this client last gave `update()` (without the server's colour). */
  get state(): PresenceState | undefined {
    return this.own;
  }

  /**
   * Receives the presence of `target` (`'*'`, `'following'` or a user ID): `callback` gets
   * `{ userId, state }` for each current state and on every change; `state` is `null` when a
   * user left. One target at a time: a new call replaces the previous one. Before `join()` the
   * target is remembered and applied on joining.
   */
  async sync<S extends object = PresenceState>(
    target: PresenceTarget,
    callback: PresenceCallback<S>,
  ): Promise<Map<string, S & { color?: string }>> {
    if (typeof target !== 'string' || target.length === 0) {
      throw new CollabKitError('VALIDATION_ERROR', 'target must be "*", "following" or a user ID', { field: 'target' });
    }
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    this.target = target;
    this.callback = callback as unknown as PresenceCallback;
    this.delivered = false;
    if (this.host.live) {
      const current = () => this.target === target && this.callback === (callback as unknown);
      await this.snapshot((method, ...params) => this.host.request(method, ...params), target, current);
    }
    return this.getStates<S>();
  }

  /** Stops receiving presence. */
  async unsync(): Promise<void> {
    const hadTarget = this.target !== undefined;
    this.target = undefined;
    this.callback = undefined;
    this.delivered = false;
    this.states = new Map();
    if (hadTarget && this.host.live) await this.host.request('presence.unsync');
  }

  /** The states of the users this client receives, by user ID (not its own). */
  getStates<S extends object = PresenceState>(): Map<string, S & { color?: string }> {
    return new Map(this.states) as unknown as Map<string, S & { color?: string }>;
  }

  // ----- called by the client -----

  get syncTarget(): PresenceTarget | undefined {
    return this.target;
  }

  /** A `presence` event. */
  handle(change: PresenceChange): void {
    for (const window of this.windows) window.set(change.userId, change.state);
    if (change.state === null) this.states.delete(change.userId);
    else this.states.set(change.userId, change.state);
    this.callback?.({ userId: change.userId, state: change.state });
  }

  /** The everyone-snapshot of a `room.join` result, until a sync target replaces it. */
  joined(states: PresenceChange[]): void {
    if (this.target === undefined) {
      this.states = new Map(states.filter((s) => s.state !== null).map((s) => [s.userId, s.state!]));
    }
  }

  /**
   * On a newly joined socket: apply the sync target and send the latest own state, so that the
   * others see this user as before and this client's view is current again.
   */
  async rehydrate(setup: PresenceSetup): Promise<void> {
    const target = this.target;
    if (target !== undefined) {
      await this.snapshot((method, ...params) => setup.request(method, ...params), target, () => this.target === target);
    }
    if (this.own !== undefined) {
      setup.notify('presence.update', { state: this.own });
      this.lastSentAt = Date.now();
      this.dirty = false;
    }
  }

  /** After `leave()` or a final disconnect. */
  reset(): void {
    clearTimeout(this.trailing);
    this.trailing = undefined;
    this.states = new Map();
  }

  /** The socket became ready and joined: send what waited. */
  resume(): void {
    if (this.dirty) this.schedule();
  }

  /** The `following` set changed: with the `'following'` target, refresh what we hold. */
  async followingChanged(): Promise<void> {
    if (this.target !== 'following' || !this.host.live) return;
    await this.snapshot((method, ...params) => this.host.request(method, ...params), 'following', () => this.target === 'following');
  }

  private schedule(): void {
    if (!this.host.live || this.trailing !== undefined) return;
    const wait = this.lastSentAt + PRESENCE_THROTTLE_MS - Date.now();
    if (wait <= 0) {
      this.flush();
    } else {
      this.trailing = setTimeout(() => {
        this.trailing = undefined;
        this.flush();
      }, wait);
    }
  }

  private flush(): void {
    if (!this.dirty || this.own === undefined) return;
    if (this.host.notify('presence.update', { state: this.own })) {
      this.dirty = false;
      this.lastSentAt = Date.now();
    }
  }

  /**
   * Asks for the states of `target` and, if `current()` still holds when they come, makes
   * them the states, with the events that arrived meanwhile applied over them.
   */
  private async snapshot(request: BoundRequester, target: PresenceTarget, current: () => boolean): Promise<void> {
    const window: SnapshotWindow = new Map();
    this.windows.add(window);
    try {
      const { states } = await request('presence.sync', { target });
      // Still in the window: nothing can arrive between this check and the merge.
      if (current()) this.replaceStates(states, window, target);
    } finally {
      this.windows.delete(window);
    }
  }

  /**
   * A sync result replaces the states, with the events of its window over it; differences
   * are told to the callback. An event in the window may still be one the server sent under
   * the previous target, before it took the snapshot: a state counts only for a user in the
   * snapshot or in the target as the client knows it (a `null` always counts).
   */
  private replaceStates(list: PresenceEntry[], window: SnapshotWindow, target: PresenceTarget): void {
    const next = new Map<string, PresenceState>();
    for (const { userId, state } of list) if (state !== null) next.set(userId, state);
    for (const [userId, state] of window) {
      if (state === null) next.delete(userId);
      else if (next.has(userId) || this.inTarget(target, userId)) next.set(userId, state);
    }
    // What the callback was told: all of it once delivered, else what the window's events told
    // it (a new callback hears of events from the moment it is given).
    const told = new Map<string, PresenceState>();
    for (const [userId, state] of window) if (state !== null) told.set(userId, state);
    const before = this.delivered ? this.states : told;
    this.delivered = true;
    this.states = next;
    const callback = this.callback;
    if (!callback) return;
    for (const [userId, state] of next) {
      if (JSON.stringify(before.get(userId)) !== JSON.stringify(state)) callback({ userId, state });
    }
    for (const userId of before.keys()) if (!next.has(userId)) callback({ userId, state: null });
  }

  private inTarget(target: PresenceTarget, userId: string): boolean {
    if (target === '*') return true;
    if (target === 'following') return this.host.following.includes(userId);
    return target === userId;
  }
}
