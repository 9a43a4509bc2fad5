// Stores in pages: the server answers stores.getAll and stores.sync a few entries at a time
// (COLLABKIT_STORES_PAGE_ENTRIES=3 here) and the SDK must page transparently: getAll() still
// resolves everything, a first load and a reconnection catch it all up, a reset replaces the
// local copy only once all of it arrived, and what others change while the SDK pages (live
// events, deletions) is neither lost nor applied out of version order. A spy socket records
// the frames and holds an answer back while another client writes, between two pages.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitClient, StoreChange } from '@collab-kit/client';
import { defineStores } from '@collab-kit/utils';
import { Fixture } from './helpers/fixture.js';
import { TcpProxy } from './helpers/proxy.js';
import { SocketSpy, type SentRequest } from './helpers/spy-socket.js';
import { next, Recorder, sleep } from './helpers/wait.js';

const PAGE = 3;

const stores = defineStores({
  tasks: {
    title: { type: 'string', required: true },
    completed: { type: 'boolean', default: false },
  },
  notes: { text: { type: 'string', required: true } },
});
type Task = { title: string; completed: boolean };
type Client = CollabKitClient<typeof stores>;

const proxies: TcpProxy[] = [];
after(async () => {
  for (const proxy of proxies) await proxy.stop();
});

async function proxyTo(fixture: Fixture): Promise<TcpProxy> {
  const proxy = await new TcpProxy(fixture.server.port).start();
  proxies.push(proxy);
  return proxy;
}

/** `k01`, `k02`, ... */
function keys(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `k${String(from + i).padStart(2, '0')}`);
}

function task(title: string, completed = false): Task {
  return { title, completed };
}

/** The server's contents of `tasks`, through a client's getAll(). */
async function serverView(client: Client): Promise<Record<string, Task>> {
  return Object.fromEntries((await client.stores.tasks.getAll()).map(({ key, value }) => [key, value]));
}

function localCopy(client: Client): Record<string, Task> {
  return Object.fromEntries(client.stores.tasks.entries);
}

/** The `stores.sync` requests for `tasks` (each store syncs on its own). */
const taskSyncs = (spy: SocketSpy) => spy.requests('stores.sync').filter((r) => r.params?.store === 'tasks');

const isSync = (request: SentRequest | undefined, kind: 'after' | 'since') =>
  request?.method === 'stores.sync' && request.params?.store === 'tasks' && request.params?.[kind] !== undefined;

/** Per key, the changes told to listeners have growing versions, each told once. */
function assertVersionOrder(calls: [StoreChange<Task>][]): void {
  const last = new Map<string, number>();
  for (const [change] of calls) {
    const previous = last.get(change.key);
    assert.ok(
      previous === undefined || change.version > previous,
      `${change.key}: version ${change.version} told after ${previous}`,
    );
    last.set(change.key, change.version);
  }
}

/** Each key's last change told to listeners. */
function lastChanges(calls: [StoreChange<Task>][]): Record<string, [string, Task | null]> {
  const last: Record<string, [string, Task | null]> = {};
  for (const [change] of calls) last[change.key] = [change.action, change.value];
  return last;
}

describe('stores in pages', () => {
  const fx = new Fixture();
  before(() => fx.start({ COLLABKIT_STORES_PAGE_ENTRIES: String(PAGE) }));
  after(() => fx.stop());

  it('getAll() asks for every page and resolves every entry, by key', async () => {
    const spy = new SocketSpy();
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const a: Client = fx.client(token, { stores, WebSocket: spy.WebSocket });
    await a.connect();
    const all = keys(1, 10);
    // Written in reverse: pages go by key, not by version.
    for (const key of [...all].reverse()) await a.stores.tasks.set({ key, value: { title: key } });
    for (const key of keys(1, 6)) await a.stores.notes.set({ key, value: { text: key } });

    spy.clear();
    assert.deepEqual(
      await a.stores.tasks.getAll(),
      all.map((key) => ({ key, value: task(key) })),
    );
    assert.deepEqual(
      spy.requests('stores.getAll').map((r) => r.params.after),
      [undefined, 'k03', 'k06', 'k09'],
      'four pages of at most three',
    );
    const answers = spy.requests('stores.getAll').map((r) => spy.resultOf(r));
    assert.deepEqual(answers.map((p) => [p.entries.length, p.hasMore, p.cursor]), [
      [3, true, 'k03'],
      [3, true, 'k06'],
      [3, true, 'k09'],
      [1, false, null],
    ]);

    // A whole number of pages: the last full page says there is no more.
    spy.clear();
    assert.deepEqual(
      (await a.stores.notes.getAll()).map((e) => e.key),
      keys(1, 6),
    );
    assert.equal(spy.requests('stores.getAll').length, 2);

    // An empty store: one page, empty.
    const empty = await fx.server.createRoom();
    const other = await fx.server.createUser(empty.id);
    const b: Client = fx.client(other.token, { stores });
    await b.connect();
    assert.deepEqual(await b.stores.tasks.getAll(), []);
  });

  it('a first load in pages shows nothing until complete, then has what changed while it paged', async () => {
    const { roomId, users } = await fx.room(1, { stores });
    const a = users[0]!.client;
    for (const key of keys(1, 10)) await a.stores.tasks.set({ key, value: { title: key } });

    const spy = new SocketSpy();
    const bob = await fx.server.createUser(roomId);
    const b: Client = fx.client(bob.token, { stores, WebSocket: spy.WebSocket });
    const changes = new Recorder<[StoreChange<Task>]>((cb) => b.stores.tasks.on('changed', cb));

    // Held: the second page of the reset (the first one has arrived). A is not the only one
    // writing while B pages: a deletion of an entry B already has, one of an entry still to
    // come, an update, a new entry. B is not in the room: no live events, only the sync.
    let followUpHeld: Promise<void> | undefined;
    let firstVersion: number | undefined;
    const held = spy.holdOnce(
      (frame, request) => frame.type === 'res' && isSync(request, 'after'),
      async () => {
        assert.equal(b.stores.tasks.entries.size, 0, 'nothing shown before the last page');
        firstVersion = spy.resultOf(taskSyncs(spy)[0]!).version;
        await a.stores.tasks.delete({ key: 'k01' });
        await a.stores.tasks.update({ key: 'k02', value: { completed: true } });
        await a.stores.tasks.delete({ key: 'k09' });
        await a.stores.tasks.set({ key: 'k11', value: { title: 'k11' } });
        // Every reset page is in when the follow-up sync answers: still nothing shown.
        followUpHeld = spy.holdOnce(
          (frame, request) => frame.type === 'res' && isSync(request, 'since') && request!.params.since === firstVersion,
          async () => assert.equal(b.stores.tasks.entries.size, 0, 'nothing shown before the follow-up'),
          'the follow-up sync',
        );
      },
      'the second page of the reset',
    );
    await b.connect();
    await held;
    await followUpHeld;

    const expected: Record<string, Task> = { k02: task('k02', true) };
    for (const key of [...keys(3, 8), 'k10', 'k11']) expected[key] = task(key);
    assert.deepEqual(localCopy(b), expected);
    assert.deepEqual(await serverView(b), expected);
    assert.equal(changes.calls.length, 0, 'a first load is not news');

    const syncs = taskSyncs(spy);
    const results = syncs.map((r) => spy.resultOf(r));
    assert.equal(syncs[0]!.params.since, undefined);
    assert.equal(syncs[0]!.params.after, undefined);
    const resetPages = results.filter((r) => r.reset);
    assert.ok(resetPages.length >= 4, `the reset came in pages (${resetPages.length})`);
    assert.ok(resetPages.every((r) => r.changes.length <= PAGE));
    assert.ok(
      syncs.some((r) => r.params.since === firstVersion),
      "then a sync from the first page's version",
    );

    // Up to date: a sync now finds nothing new.
    await b.stores.tasks.sync();
    assert.equal(changes.calls.length, 0);
    assert.deepEqual(localCopy(b), expected);
    changes.off();
  });

  it('a reconnection catches up over several pages, with live events between them', async () => {
    const room = await fx.server.createRoom();
    const alice = await fx.server.createUser(room.id, 'Alice');
    const bob = await fx.server.createUser(room.id, 'Bob');
    const link = await proxyTo(fx);
    const spy = new SocketSpy();
    const a: Client = fx.client(alice.token, {
      stores,
      serverUrl: link.url,
      WebSocket: spy.WebSocket,
      reconnect: { attempts: 50, initialDelayMs: 50, maxDelayMs: 200 },
    });
    const b: Client = fx.client(bob.token, { stores });
    await b.connect();
    await b.join();
    // The room has a history when A loads its copy: a copy of version 0 (nothing) would be
    // caught up with a reset (the server resets `since: 0`), not changes since a version.
    await b.stores.notes.set({ key: 'n', value: { text: 'before A' } });
    await a.connect();
    await a.join();
    for (const key of keys(1, 6)) await a.stores.tasks.set({ key, value: { title: key } });
    const changes = new Recorder<[StoreChange<Task>]>((cb) => a.stores.tasks.on('changed', cb));

    link.refuse(true);
    link.cut();
    await next((cb) => a.socket.on('reconnecting', cb), 'A reconnecting');
    // Seven changes while A is away: three pages. A deletion and new entries among them.
    for (const key of keys(1, 4)) await b.stores.tasks.update({ key, value: { completed: true } });
    await b.stores.tasks.delete({ key: 'k05' });
    await b.stores.tasks.set({ key: 'k07', value: { title: 'k07' } });
    await b.stores.tasks.set({ key: 'k08', value: { title: 'k08' } });

    // Held: the first page of the catch-up. Meanwhile B changes an entry of that page, one of
    // a later page, and deletes one made while A was away; A is in the room again, so these
    // come as live events too, between the pages.
    spy.clear();
    const held = spy.holdOnce(
      (frame, request) => frame.type === 'res' && isSync(request, 'since') && frame.result?.hasMore === true,
      async (frame) => {
        assert.equal(frame.result.reset, false);
        await b.stores.tasks.update({ key: 'k01', value: { title: 'k01 again' } });
        await b.stores.tasks.update({ key: 'k06', value: { title: 'k06 again' } });
        await b.stores.tasks.delete({ key: 'k07' });
      },
      'the first page of the catch-up',
    );
    link.refuse(false);
    await next((cb) => a.socket.on('reconnected', cb), 'A reconnected', { ms: 10_000 });
    await held;

    const expected: Record<string, Task> = {
      k01: task('k01 again', true),
      k02: task('k02', true),
      k03: task('k03', true),
      k04: task('k04', true),
      k06: task('k06 again'),
      k08: task('k08'),
    };
    assert.deepEqual(localCopy(a), expected);
    assert.deepEqual(await serverView(b), expected);

    // Listeners heard every change, per key in version order, each version once.
    assertVersionOrder(changes.calls);
    assert.deepEqual(lastChanges(changes.calls), {
      k01: ['update', task('k01 again', true)],
      k02: ['set', task('k02', true)],
      k03: ['set', task('k03', true)],
      k04: ['set', task('k04', true)],
      k05: ['delete', null],
      k06: ['update', task('k06 again')],
      // k07 came and went while A was away or paging: never in A's copy, nothing to tell.
      k08: ['set', task('k08')],
    });

    // The catch-up went in pages, each from the previous one's cursor, never a reset.
    const syncs = taskSyncs(spy);
    const results = syncs.map((r) => spy.resultOf(r));
    assert.ok(syncs.length >= 3, `pages: ${syncs.length}`);
    assert.ok(results.every((r) => r.reset === false && r.changes.length <= PAGE));
    for (let i = 1; i < syncs.length; i++) assert.equal(syncs[i]!.params.since, results[i - 1].cursor);
    assert.equal(results.at(-1).hasMore, false);

    // Still current afterwards: a live change, and a sync with nothing new.
    await b.stores.tasks.set({ key: 'k09', value: { title: 'k09' } });
    await changes.find((ch) => ch.key === 'k09', 'a live change after the catch-up');
    const told = changes.calls.length;
    await a.stores.tasks.sync();
    assert.equal(changes.calls.length, told);
    changes.off();
  });
});

describe('stores in pages: resets (forgotten deletions)', () => {
  const short = new Fixture();
  before(() =>
    short.start({
      COLLABKIT_STORES_PAGE_ENTRIES: String(PAGE),
      // Long enough that deletions made while a reset pages are still there for its
      // follow-up; short enough to forget those made while a client was away.
      COLLABKIT_STORES_TOMBSTONE_RETENTION_MS: '400',
      COLLABKIT_REALTIME_NODE_HEARTBEAT_MS: '100',
    }),
  );
  after(() => short.stop());

  /** Until the server has forgotten the deletions made so far. */
  const forget = () => sleep(1_000);

  /** Asserts that the catch-up recorded by `spy` was a reset, in pages. */
  function assertResetInPages(spy: SocketSpy): number {
    const syncs = taskSyncs(spy);
    const first = spy.resultOf(syncs[0]!);
    assert.notEqual(syncs[0]!.params.since, undefined, 'the client asked for changes since its version');
    assert.equal(first.reset, true, 'the server had forgotten a deletion: a reset');
    assert.equal(first.hasMore, true);
    assert.ok(syncs.filter((r) => r.params.after !== undefined).length >= 2, 'more reset pages');
    assert.ok(
      syncs.some((r) => r.params.since === first.version),
      "then a sync from the first page's version",
    );
    return first.version;
  }

  it('a reset during which another client deletes entries replaces the copy once, complete', async () => {
    const { roomId, users } = await short.room(1, { stores });
    const a = users[0]!.client;
    for (const key of keys(1, 8)) await a.stores.tasks.set({ key, value: { title: key } });

    // B is not in the room: only syncs tell it anything.
    const spy = new SocketSpy();
    const bob = await short.server.createUser(roomId);
    const b: Client = short.client(bob.token, { stores, WebSocket: spy.WebSocket });
    await b.connect();
    const before = localCopy(b);
    assert.deepEqual(Object.keys(before), keys(1, 8));
    b.disconnect();

    await a.stores.tasks.delete({ key: 'k02' });
    await a.stores.tasks.set({ key: 'k09', value: { title: 'k09' } });
    await forget();

    const changes = new Recorder<[StoreChange<Task>]>((cb) => b.stores.tasks.on('changed', cb));
    spy.clear();
    // Pages by version: k01 k03 k04 | k05 k06 k07 | k08 k09. Held: the second one. A deletes
    // an entry of the first page, one of the held page, one still to come.
    const held = spy.holdOnce(
      (frame, request) => frame.type === 'res' && isSync(request, 'after'),
      async () => {
        assert.deepEqual(localCopy(b), before, 'the old copy stays until the reset is complete');
        await a.stores.tasks.delete({ key: 'k01' });
        await a.stores.tasks.delete({ key: 'k07' });
        await a.stores.tasks.delete({ key: 'k08' });
        await a.stores.tasks.update({ key: 'k03', value: { completed: true } });
        await a.stores.tasks.set({ key: 'k10', value: { title: 'k10' } });
      },
      'the second page of the reset',
    );
    await b.connect();
    await held;
    assertResetInPages(spy);

    const expected = {
      k03: task('k03', true),
      k04: task('k04'),
      k05: task('k05'),
      k06: task('k06'),
      k09: task('k09'),
      k10: task('k10'),
    };
    assert.deepEqual(localCopy(b), expected);
    assert.deepEqual(await serverView(b), expected);
    // Listeners heard the difference with the old copy, once per key.
    assert.deepEqual(
      changes.calls.map(([ch]) => [ch.key, ch.action, ch.value]).sort(),
      [
        ['k01', 'delete', null],
        ['k02', 'delete', null],
        ['k03', 'set', task('k03', true)],
        ['k07', 'delete', null],
        ['k08', 'delete', null],
        ['k09', 'set', task('k09')],
        ['k10', 'set', task('k10')],
      ],
    );
    assertVersionOrder(changes.calls);
    changes.off();
  });

  it('a reset on reconnection, with live deletions between its pages, does not bring them back', async () => {
    const room = await short.server.createRoom();
    const alice = await short.server.createUser(room.id, 'Alice');
    const bob = await short.server.createUser(room.id, 'Bob');
    const link = await proxyTo(short);
    const spy = new SocketSpy();
    const b: Client = short.client(bob.token, {
      stores,
      serverUrl: link.url,
      WebSocket: spy.WebSocket,
      reconnect: { attempts: 50, initialDelayMs: 50, maxDelayMs: 200 },
    });
    const a: Client = short.client(alice.token, { stores });
    await a.connect();
    await a.join();
    await b.connect();
    await b.join();
    const loaded = new Recorder<[StoreChange<Task>]>((cb) => b.stores.tasks.on('changed', cb));
    for (const key of keys(1, 8)) await a.stores.tasks.set({ key, value: { title: key } });
    await loaded.until((calls) => calls.length === 8, 'B has the eight entries');
    loaded.off();
    const before = localCopy(b);
    const changes = new Recorder<[StoreChange<Task>]>((cb) => b.stores.tasks.on('changed', cb));

    link.refuse(true);
    link.cut();
    await next((cb) => b.socket.on('reconnecting', cb), 'B reconnecting');
    await a.stores.tasks.delete({ key: 'k02' });
    await a.stores.tasks.set({ key: 'k09', value: { title: 'k09' } });
    await forget();

    spy.clear();
    // B is in the room again before it syncs: these reach it as live events, between pages.
    const held = spy.holdOnce(
      (frame, request) => frame.type === 'res' && isSync(request, 'after'),
      async () => {
        assert.deepEqual(localCopy(b), before, 'the old copy stays until the reset is complete');
        await a.stores.tasks.delete({ key: 'k01' });
        await a.stores.tasks.delete({ key: 'k08' });
        await a.stores.tasks.update({ key: 'k03', value: { completed: true } });
        await a.stores.tasks.set({ key: 'k10', value: { title: 'k10' } });
      },
      'the second page of the reset',
    );
    link.refuse(false);
    await next((cb) => b.socket.on('reconnected', cb), 'B reconnected', { ms: 10_000 });
    await held;
    assertResetInPages(spy);

    const expected = {
      k03: task('k03', true),
      k04: task('k04'),
      k05: task('k05'),
      k06: task('k06'),
      k07: task('k07'),
      k09: task('k09'),
      k10: task('k10'),
    };
    assert.deepEqual(localCopy(b), expected);
    assert.deepEqual(await serverView(a), expected);
    assertVersionOrder(changes.calls);
    assert.deepEqual(lastChanges(changes.calls), {
      k01: ['delete', null],
      k02: ['delete', null],
      k03: ['update', task('k03', true)],
      k08: ['delete', null],
      k09: ['set', task('k09')],
      k10: ['set', task('k10')],
    });
    assert.equal(
      changes.calls.filter(([ch]) => ch.key === 'k01').length,
      1,
      'the deletion heard live is not told again by the reset',
    );

    // Live again: deleting and re-creating an entry reaches B.
    await a.stores.tasks.delete({ key: 'k04' });
    await changes.find((ch) => ch.key === 'k04', 'a live deletion after the reset');
    assert.equal(b.stores.tasks.entries.has('k04'), false);
    changes.off();
  });
});

describe('stores in pages that end by bytes', () => {
  // 4 KiB pages (COLLABKIT_LIMITS_MAX_PAGE_BYTES, the server's least) and entries of about
  // 1.5 KiB: pages end after two entries, well before stores.page_entries (500).
  const fx = new Fixture();
  before(() => fx.start({ COLLABKIT_LIMITS_MAX_PAGE_BYTES: '4096' }));
  after(() => fx.stop());
  const big = (key: string) => `${key} ${'x'.repeat(1500)}`;

  it('getAll(), a first load and a reconnection catch-up follow pages cut short by bytes', async () => {
    const room = await fx.server.createRoom();
    const alice = await fx.server.createUser(room.id);
    const bob = await fx.server.createUser(room.id);
    const spy = new SocketSpy();
    const a: Client = fx.client(alice.token, { stores });
    await a.connect();
    for (const key of keys(1, 7)) await a.stores.tasks.set({ key, value: { title: big(key) } });

    const link = await proxyTo(fx);
    const b: Client = fx.client(bob.token, {
      stores,
      WebSocket: spy.WebSocket,
      serverUrl: link.url,
      reconnect: { attempts: 50, initialDelayMs: 50, maxDelayMs: 200 },
    });
    await b.connect();
    await b.join();
    const expected: Record<string, Task> = Object.fromEntries(keys(1, 7).map((key) => [key, task(big(key))]));
    assert.deepEqual(localCopy(b), expected, 'the first load (a reset) in pages');
    assert.deepEqual(await serverView(b), expected, 'getAll() in pages');
    const pageSizes = [
      ...spy.requests('stores.getAll').map((r) => spy.resultOf(r).entries.length),
      ...taskSyncs(spy).map((r) => spy.resultOf(r).changes.length),
    ];
    assert.ok(pageSizes.every((n) => n <= 2), `pages of at most two entries: ${pageSizes.join()}`);
    assert.ok(spy.requests('stores.getAll').length >= 4, 'getAll() asked for every page');

    // Away while seven changes are made: the catch-up (since) comes in pages too.
    link.refuse(true);
    link.cut();
    await next((cb) => b.socket.on('reconnecting', cb), 'reconnecting');
    for (const key of keys(8, 12)) await a.stores.tasks.set({ key, value: { title: big(key) } });
    await a.stores.tasks.delete({ key: 'k01' });
    await a.stores.tasks.update({ key: 'k02', value: { completed: true } });
    spy.clear();
    link.refuse(false);
    await next((cb) => b.socket.on('reconnected', cb), 'reconnected', { ms: 10_000 });
    delete expected.k01;
    expected.k02 = task(big('k02'), true);
    for (const key of keys(8, 12)) expected[key] = task(big(key));
    assert.deepEqual(localCopy(b), expected);
    const catchUp = taskSyncs(spy).map((r) => spy.resultOf(r));
    // Seven changes, about 10 KiB: at least three pages of 4 KiB, none a reset.
    assert.ok(catchUp.length >= 3 && catchUp.every((p) => !p.reset), `a catch-up in ${catchUp.length} pages`);
    assert.equal(catchUp.reduce((n, p) => n + p.changes.length, 0), 7);
  });
});
