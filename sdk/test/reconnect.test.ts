// Reconnection: a TCP proxy between the SDK and the server cuts, refuses or freezes the
// connection; the client must come back with its room, users, presence and stores current.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitError, DisconnectInfo, PresenceChange, StoreChange } from '@collab-kit/client';
import { defineStores } from '@collab-kit/utils';
import { Fixture } from './helpers/fixture.js';
import { TcpProxy } from './helpers/proxy.js';
import { next, Recorder, sleep } from './helpers/wait.js';

const stores = defineStores({
  tasks: {
    title: { type: 'string', required: true },
    completed: { type: 'boolean', default: false },
  },
});
type Task = { title: string; completed: boolean };

const fx = new Fixture();
const proxies: TcpProxy[] = [];
before(() => fx.start());
after(async () => {
  for (const proxy of proxies) await proxy.stop();
  await fx.stop();
});

async function proxy(): Promise<TcpProxy> {
  const p = await new TcpProxy(fx.server.port).start();
  proxies.push(p);
  return p;
}

/** Every lifecycle event of a client, in order, as strings. */
function lifecycle(client: { socket: { on: (e: any, cb: (...a: any[]) => void) => () => void } }) {
  return new Recorder<[string]>((cb) => {
    const offs = [
      client.socket.on('connected', () => cb('connected')),
      client.socket.on('disconnected', (info: DisconnectInfo) => cb(`disconnected:${info.willReconnect ? 'retry' : 'final'}`)),
      client.socket.on('reconnecting', (info: { attempt: number }) => cb(`reconnecting:${info.attempt}`)),
      client.socket.on('reconnected', () => cb('reconnected')),
      client.socket.on('failed', () => cb('failed')),
      client.socket.on('authFailed', () => cb('authFailed')),
    ];
    return () => {
      for (const off of offs) off();
    };
  });
}

describe('reconnection', () => {
  it('comes back after a cut with room, users, presence and stores caught up', async () => {
    const room = await fx.server.createRoom();
    const alice = await fx.server.createUser(room.id, 'Alice');
    const bob = await fx.server.createUser(room.id, 'Bob');
    const link = await proxy();
    const a = fx.client(alice.token, {
      stores,
      serverUrl: link.url,
      reconnect: { attempts: 50, initialDelayMs: 50, maxDelayMs: 200, factor: 2 },
    });
    const b = fx.client(bob.token, { stores });
    await a.connect();
    await a.join();
    await b.connect();
    await b.join();
    await a.stores.tasks.set({ key: 'keep', value: { title: 'Keep' } });
    await a.stores.tasks.set({ key: 'gone', value: { title: 'Gone soon' } });
    await b.stores.tasks.sync();
    await a.users.online.get(bob.user.id)!.follow();
    const presenceAtA = new Recorder<[PresenceChange]>();
    await a.presence.sync('*', presenceAtA.callback);
    const presenceAtB = new Recorder<[PresenceChange]>();
    await b.presence.sync('*', presenceAtB.callback);
    a.presence.update({ cursor: 'a-before' });
    b.presence.update({ cursor: 'b-before' });
    await presenceAtA.find((ch) => ch.state?.cursor === 'b-before', 'A sees B before');
    await presenceAtB.find((ch) => ch.state?.cursor === 'a-before', 'B sees A before');

    const events = lifecycle(a);
    const changes = new Recorder<[StoreChange<Task>]>((cb) => a.stores.tasks.on('changed', cb));
    const joinedAtA = new Recorder<[{ id: string }]>((cb) => a.users.on('userJoined', cb));
    const leftAtB = next<[{ id: string }]>((cb) => b.users.on('userLeft', cb), 'B sees A leave', {
      filter: (u) => u.id === alice.user.id,
    });

    // Cut, and keep A out while the others change things.
    link.refuse(true);
    link.cut();
    await events.until((calls) => calls.some(([e]) => e === 'reconnecting:2'), 'a failed attempt');
    await leftAtB;
    assert.equal(a.socket.state, 'reconnecting');
    await b.stores.tasks.set({ key: 'new', value: { title: 'Made while A was away' } });
    await b.stores.tasks.update({ key: 'keep', value: { completed: true } });
    await b.stores.tasks.delete({ key: 'gone' });
    b.presence.update({ cursor: 'b-while-away' });
    const carol = await fx.server.createUser(room.id, 'Carol');
    const c = fx.client(carol.token);
    await c.connect();
    await c.join();
    // A asks for things while disconnected: they wait for the reconnection.
    const queuedWrite = a.stores.tasks.set({ key: 'queued', value: { title: 'Sent after reconnecting' } });
    const queuedRead = a.room.get();

    link.refuse(false);
    await events.until((calls) => calls.some(([e]) => e === 'reconnected'), 'reconnected', 10_000);
    const sequence = events.calls.map(([e]) => e);
    assert.equal(sequence[0], 'disconnected:retry');
    assert.equal(sequence[1], 'reconnecting:1');
    assert.deepEqual(sequence.slice(-2), ['connected', 'reconnected']);
    assert.equal(a.socket.state, 'ready');

    // Requests made while away completed.
    assert.equal((await queuedWrite).value.title, 'Sent after reconnecting');
    assert.equal((await queuedRead).active_participants, 3);
    assert.deepEqual(await b.stores.tasks.get({ key: 'queued' }), { title: 'Sent after reconnecting', completed: false });

    // Stores: what B changed while A was away is in A's copy, and was told to listeners.
    assert.deepEqual(Object.fromEntries(a.stores.tasks.entries), {
      keep: { title: 'Keep', completed: true },
      new: { title: 'Made while A was away', completed: false },
      queued: { title: 'Sent after reconnecting', completed: false },
    });
    // Caught-up changes are each key's latest state: `set` (with the merged value) or `delete`.
    assert.deepEqual(
      changes.calls.map(([ch]) => [ch.key, ch.action, ch.value]).sort(),
      [
        ['gone', 'delete', null],
        ['keep', 'set', { title: 'Keep', completed: true }],
        ['new', 'set', { title: 'Made while A was away', completed: false }],
      ],
    );
    assert.deepEqual(await a.stores.tasks.get({ key: 'new' }), { title: 'Made while A was away', completed: false });

    // Users: current, and Carol's arrival was told.
    assert.deepEqual([...a.users.online.keys()].sort(), [alice.user.id, bob.user.id, carol.user.id].sort());
    assert.ok(joinedAtA.calls.some(([u]) => u.id === carol.user.id), 'userJoined for Carol');
    assert.equal(a.currentRoom?.active_participants, 3);
    assert.deepEqual(a.users.following, [bob.user.id], 'following survives the reconnection');
    assert.equal(a.currentUser?.status, 'online');

    // Presence: A sees B's latest state again, and B sees A's state re-sent.
    await presenceAtA.find((ch) => ch.state?.cursor === 'b-while-away', "B's state made while A was away");
    assert.equal(a.presence.getStates().get(bob.user.id)?.cursor, 'b-while-away');
    await presenceAtB.find((ch) => ch.userId === alice.user.id && ch.state === null, 'B saw A leave');
    await presenceAtB.until(
      (calls) => calls.filter(([ch]) => ch.userId === alice.user.id).at(-1)?.[0].state?.cursor === 'a-before',
      "A's state re-sent after reconnecting",
    );

    // And live events flow again.
    await b.stores.tasks.set({ key: 'after', value: { title: 'After' } });
    await changes.find((ch) => ch.key === 'after', 'a live change after reconnecting');
    events.off();
    changes.off();
  });

  it('gives up with failed after the configured attempts, backing off, and fails waiting requests', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const link = await proxy();
    const a = fx.client(token, {
      serverUrl: link.url,
      reconnect: { attempts: 3, initialDelayMs: 60, factor: 2, maxDelayMs: 1_000, jitter: 0 },
    });
    await a.connect();
    await a.join();
    const events = lifecycle(a);
    const times: number[] = [];
    a.socket.on('reconnecting', () => times.push(Date.now()));
    link.refuse(true);
    link.cut();
    const waiting = a.users.getAll();
    await events.until((calls) => calls.some(([e]) => e === 'failed'), 'failed', 10_000);
    assert.deepEqual(
      events.calls.map(([e]) => e),
      ['disconnected:retry', 'reconnecting:1', 'reconnecting:2', 'reconnecting:3', 'failed'],
    );
    assert.ok(times[1]! - times[0]! >= 55, `second attempt waited ${times[1]! - times[0]!} ms`);
    assert.ok(times[2]! - times[1]! >= 115, `third attempt waited ${times[2]! - times[1]!} ms (factor 2)`);
    await assert.rejects(waiting, (e: CollabKitError) => e.code === 'NOT_CONNECTED');
    assert.equal(a.socket.state, 'idle');
    // connect() works again afterwards.
    link.refuse(false);
    await a.connect();
    assert.equal(a.socket.state, 'ready');
  });

  it('detects a silent connection with heartbeats and reconnects', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const link = await proxy();
    const a = fx.client(token, {
      serverUrl: link.url,
      heartbeat: { intervalMs: 100, timeoutMs: 200 },
      reconnect: { initialDelayMs: 50 },
    });
    await a.connect();
    await a.join();
    const disconnected = next<[DisconnectInfo]>((cb) => a.socket.on('disconnected', cb), 'disconnected by heartbeat', {
      ms: 3_000,
    });
    link.freeze(true);
    const [info] = await disconnected;
    assert.equal(info.code, 4001);
    assert.equal(info.willReconnect, true);
    link.freeze(false);
    await next((cb) => a.socket.on('reconnected', cb), 'reconnected', { ms: 5_000 });
    assert.equal((await a.users.get()).status, 'online');
  });

  it('fails writes cut in flight with DISCONNECTED, and resends reads after reconnecting', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const link = await proxy();
    const a = fx.client(token, { stores, serverUrl: link.url, reconnect: { initialDelayMs: 50 } });
    await a.connect();
    await a.join();
    link.freeze(true);
    const write = a.stores.tasks.set({ key: 'in-flight', value: { title: 'Lost?' } });
    const read = a.stores.tasks.getAll();
    await sleep(50);
    link.cut();
    link.freeze(false);
    await assert.rejects(write, (e: CollabKitError) => e.code === 'DISCONNECTED' && e.method === 'stores.set');
    assert.ok(Array.isArray(await read), 'the read completed after the reconnection');
    assert.equal(a.socket.state, 'ready');
  });

  it('disconnect() during reconnection stops it', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const link = await proxy();
    const a = fx.client(token, { serverUrl: link.url, reconnect: { initialDelayMs: 100 } });
    await a.connect();
    const events = lifecycle(a);
    link.refuse(true);
    link.cut();
    await events.until((calls) => calls.some(([e]) => e === 'reconnecting:1'), 'first attempt');
    const waiting = a.room.get();
    a.disconnect();
    await assert.rejects(waiting, (e: CollabKitError) => e.code === 'NOT_CONNECTED');
    const count = events.calls.length;
    await sleep(400);
    assert.equal(events.calls.length, count, 'no more attempts');
    assert.equal(a.socket.state, 'idle');
  });

  it('a deleted room closes the socket for good (4404) and says so', async () => {
    const { roomId, users } = await fx.room(1);
    const a = users[0]!.client;
    const events = lifecycle(a);
    const deleted = next<[{ roomId: string }]>((cb) => a.room.on('deleted', cb), 'room deleted');
    const closed = next<[DisconnectInfo]>((cb) => a.socket.on('disconnected', cb), 'disconnected');
    await fx.server.rest('DELETE', `/rooms/${roomId}`);
    assert.equal((await deleted)[0].roomId, roomId);
    const [info] = await closed;
    assert.equal(info.code, 4404);
    assert.equal(info.willReconnect, false);
    await sleep(200);
    assert.deepEqual(events.calls.map(([e]) => e), ['disconnected:final']);
  });
});

describe('reconnection after forgotten deletions (reset)', () => {
  const short = new Fixture();
  before(() =>
    short.start({
      COLLABKIT_STORES_TOMBSTONE_RETENTION_MS: '1',
      COLLABKIT_REALTIME_NODE_HEARTBEAT_MS: '100',
    }),
  );
  after(() => short.stop());

  it('replaces the local copy and tells listeners the difference', async () => {
    const room = await short.server.createRoom();
    const alice = await short.server.createUser(room.id);
    const bob = await short.server.createUser(room.id);
    const link = await new TcpProxy(short.server.port).start();
    proxies.push(link);
    const a = short.client(alice.token, { stores, serverUrl: link.url, reconnect: { attempts: 50, initialDelayMs: 50 } });
    const b = short.client(bob.token, { stores });
    await a.connect();
    await a.join();
    await b.connect();
    await b.join();
    await a.stores.tasks.set({ key: 'one', value: { title: 'One' } });
    await a.stores.tasks.set({ key: 'two', value: { title: 'Two' } });
    const changes = new Recorder<[StoreChange<Task>]>((cb) => a.stores.tasks.on('changed', cb));

    link.refuse(true);
    link.cut();
    await next((cb) => a.socket.on('reconnecting', cb), 'reconnecting');
    await b.stores.tasks.delete({ key: 'one' });
    await b.stores.tasks.set({ key: 'three', value: { title: 'Three' } });
    // Let the server forget the deletion (retention 1 ms, purged every 100 ms).
    await sleep(500);
    link.refuse(false);
    await next((cb) => a.socket.on('reconnected', cb), 'reconnected', { ms: 10_000 });

    assert.deepEqual(Object.fromEntries(a.stores.tasks.entries), {
      two: { title: 'Two', completed: false },
      three: { title: 'Three', completed: false },
    });
    assert.deepEqual(
      changes.calls.map(([ch]) => [ch.key, ch.action, ch.value]).sort(),
      [
        ['one', 'delete', null],
        ['three', 'set', { title: 'Three', completed: false }],
      ],
    );
    changes.off();
  });
});
