// A presence snapshot (`presence.sync`'s answer) must not undo newer `presence` events. The
// server's room takes the snapshot, but the answer is queued after events the room sent since;
// and a response and the events behind it in one network read are all handled before the code
// awaiting the response resumes. Events that arrive while a snapshot is asked for win over it.
//
// A scripted socket (the test plays the server) delivers the answer and the events in one
// tick, every time; a last test does the same with the real server, holding its answer back
// until a newer event is behind it.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import CollabKitClient, { type PresenceChange } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import {
  SCRIPTED_ROOM,
  ScriptedServer,
  ScriptedSocket,
  scriptedToken,
  scriptedUser,
  type ScriptedRequest,
} from './helpers/scripted-socket.js';
import { SocketSpy } from './helpers/spy-socket.js';
import { eventually, Recorder } from './helpers/wait.js';

const { result, event } = ScriptedSocket;
const ME = 'user-me';
const BOB = 'user-bob';
const CAROL = 'user-carol';

const clients: CollabKitClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect();
});

/** A client connected to `server` and joined, with Bob and Carol online in the room. */
async function joinedClient(server: ScriptedServer, options: { reconnect?: { initialDelayMs: number } } = {}) {
  const client = new CollabKitClient({
    serverUrl: 'http://scripted.invalid',
    authToken: scriptedToken(ME),
    WebSocket: server.WebSocket,
    heartbeat: { intervalMs: 0 },
    ...options,
  });
  clients.push(client);
  await client.connect();
  const joining = client.join();
  answerJoin(await server.request('room.join'));
  await joining;
  return client;
}

function answerJoin(join: ScriptedRequest): void {
  const users = [ME, BOB, CAROL].map((id) => scriptedUser(id, { status: 'online' }));
  join.socket.deliver(result(join, { room: SCRIPTED_ROOM, user: users[0], users, usersCursor: null, presence: [] }));
}

const presence = (userId: string, state: object | null) => event('presence', { userId, state });

/** `[userId, state.v]` of each callback call (`null` for a null state). */
const told = (calls: [PresenceChange][]) => calls.map(([c]) => [c.userId, (c.state as { v?: number } | null)?.v ?? null]);

describe('presence snapshots and newer events (scripted socket)', () => {
  it('an event behind the sync answer in the same tick wins over the snapshot', async () => {
    const server = new ScriptedServer(ME);
    const client = await joinedClient(server);
    const calls = new Recorder<[PresenceChange]>();
    const syncing = client.presence.sync('*', calls.callback);
    const sync = await server.request('presence.sync');
    assert.deepEqual(sync.params, { target: '*' });
    // The snapshot has Bob at 1 and no Carol; Bob moved to 2 and Carol appeared since.
    sync.socket.deliver(
      result(sync, { states: [{ userId: BOB, state: { v: 1 } }] }),
      presence(BOB, { v: 2 }),
      presence(CAROL, { v: 7 }),
    );
    const states = await syncing;
    assert.deepEqual(Object.fromEntries(states), { [BOB]: { v: 2 }, [CAROL]: { v: 7 } });
    assert.deepEqual(Object.fromEntries(client.presence.getStates()), { [BOB]: { v: 2 }, [CAROL]: { v: 7 } });
    // Told once each, the newest: never the new value and then the old one.
    assert.deepEqual(told(calls.calls), [
      [BOB, 2],
      [CAROL, 7],
    ]);
  });

  it('an event before the sync answer, sent after the snapshot was taken, wins too', async () => {
    const server = new ScriptedServer(ME);
    const client = await joinedClient(server);
    const calls = new Recorder<[PresenceChange]>();
    const syncing = client.presence.sync('*', calls.callback);
    const sync = await server.request('presence.sync');
    sync.socket.deliver(presence(BOB, { v: 2 }), presence(CAROL, null));
    sync.socket.deliver(result(sync, { states: [{ userId: BOB, state: { v: 1 } }, { userId: CAROL, state: { v: 5 } }] }));
    await syncing;
    assert.deepEqual(Object.fromEntries(client.presence.getStates()), { [BOB]: { v: 2 } }, 'Carol left: her null wins');
    assert.deepEqual(told(calls.calls), [
      [BOB, 2],
      [CAROL, null],
    ]);
  });

  it('an event sent under the previous target before the snapshot does not stay', async () => {
    const server = new ScriptedServer(ME);
    const client = await joinedClient(server);
    const everyone = client.presence.sync('*', () => {});
    const first = await server.request('presence.sync');
    first.socket.deliver(result(first, { states: [{ userId: BOB, state: { v: 1 } }, { userId: CAROL, state: { v: 1 } }] }));
    await everyone;

    // Now only Bob: Carol's event was sent while the old target ('*') still held.
    const calls = new Recorder<[PresenceChange]>();
    const onlyBob = client.presence.sync(BOB, calls.callback);
    const second = await server.request('presence.sync');
    assert.deepEqual(second.params, { target: BOB });
    second.socket.deliver(
      presence(CAROL, { v: 2 }),
      result(second, { states: [{ userId: BOB, state: { v: 1 } }] }),
      presence(BOB, { v: 3 }),
    );
    await onlyBob;
    assert.deepEqual(Object.fromEntries(client.presence.getStates()), { [BOB]: { v: 3 } });
    // The callback heard of Carol's event as it came, so it is told she is gone.
    assert.deepEqual(told(calls.calls), [
      [CAROL, 2],
      [BOB, 3],
      [CAROL, null],
    ]);
  });

  it('after a reconnection, an event in the same tick as the re-sync answer wins', async () => {
    const server = new ScriptedServer(ME);
    const client = await joinedClient(server, { reconnect: { initialDelayMs: 10 } });
    const calls = new Recorder<[PresenceChange]>();
    const syncing = client.presence.sync('*', calls.callback);
    const sync = await server.request('presence.sync');
    sync.socket.deliver(result(sync, { states: [{ userId: BOB, state: { v: 1 } }] }));
    await syncing;

    const reconnected = new Recorder<[]>((cb) => client.socket.on('reconnected', cb));
    sync.socket.serverClose(1006);
    answerJoin(await server.request('room.join', 'room.join on the new socket'));
    const resync = await server.request('presence.sync', 'presence.sync on the new socket');
    assert.notEqual(resync.socket, sync.socket);
    resync.socket.deliver(result(resync, { states: [{ userId: BOB, state: { v: 2 } }] }), presence(BOB, { v: 3 }));
    await reconnected.until((c) => c.length === 1, 'reconnected');
    assert.deepEqual(Object.fromEntries(client.presence.getStates()), { [BOB]: { v: 3 } });
    assert.deepEqual(told(calls.calls), [
      [BOB, 1],
      [BOB, 3],
    ]);
    reconnected.off();
  });
});

describe('presence snapshots and newer events (real server)', () => {
  const fx = new Fixture();
  before(() => fx.start());
  after(() => fx.stop());

  it('a presence event held behind the sync answer and delivered with it wins', async () => {
    const room = await fx.server.createRoom();
    const alice = await fx.server.createUser(room.id);
    const bob = await fx.server.createUser(room.id);
    const spy = new SocketSpy();
    const a = fx.client(alice.token, { WebSocket: spy.WebSocket });
    const b = fx.client(bob.token);
    await a.connect();
    await a.join();
    await b.connect();
    await b.join();
    b.presence.update({ v: 1 });
    // Bob's first state is in the room before Alice asks.
    await eventually(async () => (await a.presence.sync(bob.user.id, () => {})).get(bob.user.id)?.v === 1, "Bob's first state");

    const calls = new Recorder<[PresenceChange]>();
    const held = spy.holdOnce(
      (frame, request) => frame.type === 'res' && request?.method === 'presence.sync',
      async () => {
        b.presence.update({ v: 2 });
        await eventually(
          () =>
            spy.holding.some(
              (f) => f.type === 'event' && f.event === 'presence' && f.data?.states?.some((s: any) => s.state?.v === 2),
            ),
          "Bob's newer state behind the held answer",
        );
      },
      'the sync answer held with a newer event behind it',
    );
    const states = await a.presence.sync('*', calls.callback);
    await held;
    assert.equal(states.get(bob.user.id)?.v, 2);
    assert.equal(a.presence.getStates().get(bob.user.id)?.v, 2);
    // The snapshot (v 1) and the event (v 2) came in one tick: told 2 once, never 2 then 1.
    assert.deepEqual(told(calls.calls), [[bob.user.id, 2]]);
  });
});

describe('presence batches (protocol 2, scripted socket)', () => {
  it('asks for version 2 and tells each state of a batch in order, the same as single events', async () => {
    const server = new ScriptedServer(ME);
    const client = await joinedClient(server);
    assert.equal(server.auths[0]?.protocol, 2);
    const calls = new Recorder<[PresenceChange]>();
    const syncing = client.presence.sync('*', calls.callback);
    const sync = await server.request('presence.sync');
    sync.socket.deliver(result(sync, { states: [] }));
    await syncing;
    sync.socket.deliver(
      event('presence', {
        states: [
          { userId: BOB, state: { v: 1 } },
          { userId: CAROL, state: { v: 2 } },
        ],
      }),
      presence(BOB, { v: 3 }),
      event('presence', { states: [{ userId: CAROL, state: null }] }),
    );
    await eventually(() => calls.calls.length === 4, 'four presence changes');
    assert.deepEqual(told(calls.calls), [
      [BOB, 1],
      [CAROL, 2],
      [BOB, 3],
      [CAROL, null],
    ]);
    assert.deepEqual(Object.fromEntries(client.presence.getStates()), { [BOB]: { v: 3 } });
  });
});
