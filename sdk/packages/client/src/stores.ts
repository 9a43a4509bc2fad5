// `client.stores.<name>`: typed, validated key-value stores. Writes are checked against the
// schema before they are sent (the server checks them again); each store keeps a local copy,
// per key the value with the highest version, caught up with `stores.sync` after every
// (re)connection so that changes made while the client was away are not missed.
//
// The server answers `stores.getAll` and `stores.sync` a page at a time (`hasMore`, `cursor`);
// the SDK asks for the pages itself. A reset (the whole contents) is gathered aside and only
// replaces the local copy once complete, followed by a sync from the version its first page
// gave, so that what changed while it paged (deletions included) is not missed.

import {
  checkKey,
  checkSetValue,
  checkUpdateValue,
  SchemaValidationError,
  type StoreInput,
  type StorePatch,
  type StoreSchema,
  type StoresDefinition,
  type StoreValue,
} from '@collab-kit/utils';
import type { BoundRequester, Requester } from './connection.js';
import { Emitter } from './emitter.js';
import { CollabKitError } from './errors.js';
import type { Events, Params, Result, StoreAction, StoreFields, StoreFieldsPatch } from './protocol.js';

export type { StoreAction } from './protocol.js';

/** What `changed` listeners get. */
export interface StoreChange<V> {
  key: string;
  action: StoreAction;
  /** The entry after the change; `null` on delete. */
  value: V | null;
  /** The room's version of this change. */
  version: number;
  /** Who wrote it: a user ID, or `null` for the REST API or a change caught up after a reconnection. */
  userId: string | null;
}

export interface StoreWriteResult<V> {
  key: string;
  /** The entry as stored (defaults filled in, updates merged). */
  value: V;
  version: number;
}

export interface StoreDeleteResult {
  key: string;
  /** `false` if there was nothing to delete. */
  deleted: boolean;
  version: number | null;
}

export interface StoreClient<S extends StoreSchema> {
  /** The store's name. */
  readonly name: string;
  /** The schema given to `defineStores`. */
  readonly schema: S;
  /** Creates or overwrites an entry; missing fields take their default. */
  set(args: { key: string; value: StoreInput<S> }): Promise<StoreWriteResult<StoreValue<S>>>;
  /** The entry's value, or `null`. */
  get(args: { key: string }): Promise<StoreValue<S> | null>;
  /** Every entry, by key. */
  getAll(): Promise<Array<{ key: string; value: StoreValue<S> }>>;
  /** Merges some fields into an existing entry (`null` removes an optional field). */
  update(args: { key: string; value: StorePatch<S> }): Promise<StoreWriteResult<StoreValue<S>>>;
  delete(args: { key: string }): Promise<StoreDeleteResult>;
  /** Loads or refreshes the local copy (`entries`); differences are told to `changed` listeners. */
  sync(): Promise<void>;
  /** Other clients' changes: `{ key, action, value }`. Returns an unsubscribe function. */
  on(event: 'changed', callback: (change: StoreChange<StoreValue<S>>) => void): () => void;
  off(event: 'changed', callback: (change: StoreChange<StoreValue<S>>) => void): void;
  /** The local copy, kept current while the client is in the room. */
  readonly entries: ReadonlyMap<string, StoreValue<S>>;
}

/** `client.stores`: one typed store client per store given to `defineStores`. */
export type StoresClient<D extends StoresDefinition> = { readonly [N in keyof D & string]: StoreClient<D[N]> };

export interface StoresHost {
  request: Requester;
  readonly selfId: string | undefined;
}

/** What the setup of a new socket uses. */
export interface StoresSetup {
  request: BoundRequester;
}

/** A `stores.sync` request, on whichever socket the caller means. */
type SyncRequest = (params: Params<'stores.sync'>) => Promise<Result<'stores.sync'>>;

/** Resets that may start over (a sync hitting forgotten deletions again) before giving up. */
const MAX_RESETS = 10;

interface Slot {
  value: StoreFields | null;
  version: number;
}

/**
 * One store's client. It works on the wire's field values (`StoreFields`); the schema's types
 * (`StoreClient<S>`) are the compile-time view of the same objects, which the schema's checks
 * hold to before anything is sent.
 */
class StoreHandle {
  private readonly slots = new Map<string, Slot>();
  private readonly live = new Map<string, StoreFields>();
  private readonly events = new Emitter<{ changed: [StoreChange<StoreFields>] }>();
  /** The room version this copy is complete up to; undefined before the first sync. */
  private version: number | undefined;
  /**
   * Set when changes may have been missed (a new socket, a join) until a catch-up succeeds:
   * meanwhile live events must not move `version` past changes that were never fetched.
   */
  private gap = true;
  /** Counts `markGap` calls: a catch-up that started before the latest one does not end the gap. */
  private gapEpoch = 0;

  constructor(
    readonly name: string,
    readonly schema: StoreSchema,
    private readonly host: StoresHost,
  ) {}

  get entries(): ReadonlyMap<string, StoreFields> {
    return this.live;
  }

  async set(args: { key: string; value: unknown }): Promise<StoreWriteResult<StoreFields>> {
    const { key, value } = argsOf(args, 'stores.set');
    validate('stores.set', () => {
      checkKey(key);
      checkSetValue(this.schema, value);
    });
    const result = await this.host.request('stores.set', { store: this.name, key, value: clean(value) });
    this.apply(result.key, 'set', result.value, result.version, { emit: false, userId: this.host.selfId ?? null });
    return { key: result.key, value: result.value, version: result.version };
  }

  async get(args: { key: string }): Promise<StoreFields | null> {
    const { key } = argsOf(args, 'stores.get');
    validate('stores.get', () => checkKey(key));
    const result = await this.host.request('stores.get', { store: this.name, key }, { retry: true });
    return result.value ?? null;
  }

  async getAll(): Promise<Array<{ key: string; value: StoreFields }>> {
    const all: Array<{ key: string; value: StoreFields }> = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.host.request(
        'stores.getAll',
        { store: this.name, ...(after !== undefined ? { after } : {}) },
        { retry: true },
      );
      for (const entry of page.entries) all.push({ key: entry.key, value: entry.value });
      if (!page.hasMore) return all;
      // Keys are ordered by the database's collation: only check that the cursor moves.
      if (typeof page.cursor !== 'string' || page.cursor === after) {
        throw protocolError('stores.getAll', `hasMore with an unusable cursor ${JSON.stringify(page.cursor)}`);
      }
      after = page.cursor;
    }
  }

  async update(args: { key: string; value: unknown }): Promise<StoreWriteResult<StoreFields>> {
    const { key, value } = argsOf(args, 'stores.update');
    validate('stores.update', () => {
      checkKey(key);
      checkUpdateValue(this.schema, value);
    });
    const result = await this.host.request('stores.update', {
      store: this.name,
      key,
      value: clean(value, true),
    });
    this.apply(result.key, 'update', result.value, result.version, { emit: false, userId: this.host.selfId ?? null });
    return { key: result.key, value: result.value, version: result.version };
  }

  async delete(args: { key: string }): Promise<StoreDeleteResult> {
    const { key } = argsOf(args, 'stores.delete');
    validate('stores.delete', () => checkKey(key));
    const result = await this.host.request('stores.delete', { store: this.name, key });
    if (result.deleted && result.version !== null) {
      this.apply(key, 'delete', null, result.version, { emit: false, userId: this.host.selfId ?? null });
    }
    return { key: result.key, deleted: result.deleted, version: result.version };
  }

  async sync(): Promise<void> {
    await this.catchUp((params) => this.host.request('stores.sync', params, { retry: true }));
  }

  on(event: 'changed', callback: (change: StoreChange<StoreFields>) => void): () => void {
    if (event !== 'changed') throw new CollabKitError('BAD_REQUEST', `Unknown store event ${String(event)}`);
    return this.events.on('changed', callback);
  }

  off(event: 'changed', callback: (change: StoreChange<StoreFields>) => void): void {
    this.events.off(event, callback);
  }

  // ----- called by the client -----

  /**
   * Asks the server for what changed since this copy's version (everything the first time),
   * a page at a time. Changes since a version are applied page by page (each is a key's latest
   * state, so the highest version per key still wins); a reset is gathered aside, completed by
   * a sync from its first page's version, then replaces the copy at once. Live events keep
   * being applied meanwhile; the replacement never goes back on a newer one. Concurrent
   * catch-ups are safe (each one's result merges by version), so none waits for another.
   */
  async catchUp(sync: SyncRequest): Promise<void> {
    const gapEpoch = this.gapEpoch;
    // The very first load is not news: only later differences are told to listeners.
    const emit = this.version !== undefined;
    let params: { since?: number; after?: number } = this.version !== undefined ? { since: this.version } : {};
    /** While a reset is gathered: its entries (a tombstone for a key deleted meanwhile). */
    let staging: Map<string, Slot> | undefined;
    /** The version the reset's first page gave; its pages run until `followUp`. */
    let resetFrom = 0;
    let followUp = false;
    let resets = 0;
    for (;;) {
      const page = await sync({ store: this.name, ...params });
      if (params.after !== undefined && !page.reset) {
        throw protocolError('stores.sync', 'a reset page came back without reset');
      }
      const starts = page.reset && params.after === undefined;
      if (starts) {
        // A reset starts with this page (also when a sync since a version, or a reset's
        // follow-up, meets deletions forgotten meanwhile): whatever was gathered is void.
        if (++resets > MAX_RESETS) {
          throw new CollabKitError('INTERNAL_ERROR', `stores.sync of ${this.name} kept starting over (${MAX_RESETS} resets)`, {
            method: 'stores.sync',
          });
        }
        staging = new Map();
        resetFrom = page.version;
        followUp = false;
      }
      for (const change of page.changes) {
        if (change.store !== this.name) continue;
        if (staging) {
          const held = staging.get(change.key);
          if (held && held.version >= change.version) continue;
          staging.set(change.key, { value: change.action === 'delete' ? null : change.value, version: change.version });
        } else {
          this.apply(change.key, change.action, change.value, change.version, { emit, userId: null });
        }
      }
      if (page.hasMore) {
        const cursor = page.cursor;
        // Cursors grow within one run of pages (a reset that starts over starts from nothing).
        const previous = starts ? undefined : (params.after ?? params.since);
        if (typeof cursor !== 'number' || !Number.isFinite(cursor) || (previous !== undefined && cursor <= previous)) {
          throw protocolError('stores.sync', `hasMore with an unusable cursor ${JSON.stringify(cursor)}`);
        }
        if (staging && !followUp) {
          params = { after: cursor };
        } else {
          params = { since: cursor };
          // Everything up to the cursor is here: a catch-up cut short resumes from there.
          if (!staging) this.advance(cursor);
        }
        continue;
      }
      if (staging && !followUp && page.version !== resetFrom) {
        // The reset's last page, and the room was written to since its first one: fetch what
        // changed meanwhile (deletions of entries already gathered included) before replacing.
        // (Unchanged, or all in one page: the gathered contents are those of `version`.)
        followUp = true;
        params = { since: resetFrom };
        continue;
      }
      if (staging) this.replace(staging, page.version, emit);
      else this.advance(page.version);
      break;
    }
    if (this.gapEpoch === gapEpoch) this.gap = false;
  }

  /** Changes may be missed from now until the next successful catch-up. */
  markGap(): void {
    this.gap = true;
    this.gapEpoch++;
  }

  /** A `changed` event from another client (or the REST API). */
  changed(data: Events['changed']): void {
    this.apply(data.key, data.action, data.value, data.version, { emit: true, userId: data.userId ?? null });
    // Events reach a joined socket in version order: once caught up, the copy is complete up
    // to the latest event.
    if (!this.gap && this.version !== undefined && data.version > this.version) this.version = data.version;
  }

  /** The copy is complete up to `version`. */
  private advance(version: number): void {
    this.version = Math.max(this.version ?? 0, version);
  }

  /**
   * Replaces the copy with a complete reset (`staging`, the contents as of `version`), keeping
   * what is newer: events and other catch-ups that went past it.
   */
  private replace(staging: Map<string, Slot>, version: number, emit: boolean): void {
    for (const [key, slot] of [...this.slots]) {
      if (slot.value !== null && !staging.has(key) && slot.version <= version) {
        // Gone by `version`: the tombstone's version keeps older news of it out.
        this.apply(key, 'delete', null, version, { emit, userId: null, force: true });
      }
    }
    const entries = [...staging].sort(([, a], [, b]) => a.version - b.version);
    for (const [key, slot] of entries) {
      this.apply(key, slot.value === null ? 'delete' : 'set', slot.value, slot.version, {
        emit,
        userId: null,
        sameValueSilent: true,
      });
    }
    this.advance(version);
  }

  private apply(
    key: string,
    action: StoreAction,
    value: StoreFields | null,
    version: number,
    options: { emit: boolean; userId: string | null; force?: boolean; sameValueSilent?: boolean },
  ): void {
    const current = this.slots.get(key);
    if (current && current.version >= version && !options.force) return;
    const next = action === 'delete' ? null : value;
    const unchanged = current !== undefined && JSON.stringify(current.value) === JSON.stringify(next);
    this.slots.set(key, { value: next, version });
    if (next === null) this.live.delete(key);
    else this.live.set(key, next);
    if (!options.emit || (options.sameValueSilent && unchanged) || (current === undefined && next === null)) return;
    this.events.emit('changed', { key, action, value: next, version, userId: options.userId });
  }
}

export class Stores {
  readonly handles = new Map<string, StoreHandle>();
  readonly client: Record<string, StoreHandle> = {};

  constructor(
    readonly definition: StoresDefinition,
    host: StoresHost,
  ) {
    for (const [name, schema] of Object.entries(definition)) {
      const handle = new StoreHandle(name, schema, host);
      this.handles.set(name, handle);
      this.client[name] = handle;
    }
    Object.freeze(this.client);
  }

  get empty(): boolean {
    return this.handles.size === 0;
  }

  /** `stores.declare` for every store; the answer is the schemas the server enforces. */
  async declare(setup: StoresSetup): Promise<void> {
    if (this.empty) return;
    await setup.request('stores.declare', { schemas: this.definition });
  }

  markGap(): void {
    for (const handle of this.handles.values()) handle.markGap();
  }

  async catchUp(setup: StoresSetup): Promise<void> {
    await Promise.all(
      [...this.handles.values()].map((handle) => handle.catchUp((params) => setup.request('stores.sync', params))),
    );
  }

  changed(data: Events['changed']): void {
    this.handles.get(data.store)?.changed(data);
  }
}

function protocolError(method: string, message: string): CollabKitError {
  return new CollabKitError('INTERNAL_ERROR', `Unexpected ${method} answer: ${message}`, { method });
}

function argsOf(args: unknown, method: string): { key: string; value?: unknown } {
  if (args === null || typeof args !== 'object') {
    throw new CollabKitError('VALIDATION_ERROR', `${method} takes an object: { key${method.endsWith('set') || method.endsWith('update') ? ', value' : ''} }`, {
      method,
    });
  }
  return args as { key: string; value?: unknown };
}

/** Runs the schema checks; a refusal becomes the VALIDATION_ERROR the server would answer. */
function validate(method: string, check: () => void): void {
  try {
    check();
  } catch (error) {
    if (error instanceof SchemaValidationError) {
      throw new CollabKitError('VALIDATION_ERROR', error.message, { field: error.field, method });
    }
    throw error;
  }
}

/**
 * Drops `undefined` fields (JSON would) and, for `set`, `null` ones (absent either way). The
 * value passed the schema's checks: its fields are strings, finite numbers, booleans or null.
 */
function clean(value: unknown): StoreFields;
function clean(value: unknown, keepNull: true): StoreFieldsPatch;
function clean(value: unknown, keepNull = false): StoreFieldsPatch {
  const out: StoreFieldsPatch = {};
  for (const [k, v] of Object.entries(value as Record<string, string | number | boolean | null | undefined>)) {
    if (v === undefined || (v === null && !keepNull)) continue;
    out[k] = v;
  }
  return out;
}
