// Users in pages: the server sends a room's users a page at a time (room.join's `users` and
// `usersCursor`, then `users.getAll { after }`; `room.get` likewise), here two per page
// (COLLABKIT_REALTIME_PAGE_USERS=2). The SDK must ask for every page before join() resolves
// and before `reconnected` fires, and getAll() and room.get() must return every user. A
// scripted socket then checks that user events arriving between pages win over them.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import CollabKitClient, { type CollabKitClientUser } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { TcpProxy } from './helpers/proxy.js';
import { SCRIPTED_ROOM, ScriptedServer, ScriptedSocket, scriptedToken, scriptedUser } from './helpers/scripted-socket.js';
import { SocketSpy } from './helpers/spy-socket.js';
import { next, Recorder } from './helpers/wait.js';

const PAGE = 2;

describe('users in pages (real server, pages of two)', () => {
  const fx = new Fixture();
  const proxies: TcpProxy[] = [];
  before(() => fx.start({ COLLABKIT_REALTIME_PAGE_USERS: String(PAGE) }));
  after(async () => {
    for (const proxy of proxies) await proxy.stop();
    await fx.stop();
  });

  /**
   * A room with `count` users created over REST (none online), and their IDs in the server's
   * order (oldest first: by creation time, then ID, for two made in the same millisecond).
   */
  async function roomWith(count: number) {
    const room = await fx.server.createRoom();
    const users: { id: string; token: string; createdAt: string }[] = [];
    for (let i = 1; i <= count; i++) {
      const { user, token } = await fx.server.createUser(room.id, `user-${i}`);
      users.push({ id: user.id as string, token, createdAt: user.created_at as string });
    }
    const order = [...users]
      .sort((x, y) => (x.createdAt === y.createdAt ? (x.id < y.id ? -1 : 1) : x.createdAt < y.createdAt ? -1 : 1))
      .map((u) => u.id);
    return { roomId: room.id, users, order };
  }

  it('join() resolves with every user in users.all, asking for each page', async () => {
    const { users } = await roomWith(5);
    const online = fx.client(users[3]!.token);
    await online.connect();
    await online.join();

    const spy = new SocketSpy();
    const a = fx.client(users[0]!.token, { WebSocket: spy.WebSocket });
    await a.connect();
    await a.join();
    assert.deepEqual([...a.users.all.keys()].sort(), users.map((u) => u.id).sort());
    assert.deepEqual([...a.users.online.keys()].sort(), [users[0]!.id, users[3]!.id].sort());
    assert.equal(a.users.all.get(users[4]!.id)?.status, 'offline');
    assert.equal(a.currentRoom?.active_participants, 2);
    // Three pages: the join's, then two more from its cursor.
    const join = spy.requests('room.join').map((r) => spy.resultOf(r))[0];
    assert.equal(join.users.length, PAGE);
    assert.equal(typeof join.usersCursor, 'string');
    const pages = spy.requests('users.getAll');
    assert.equal(pages.length, 2);
    assert.equal(pages[0]!.params.after, join.usersCursor);
    assert.deepEqual(pages.map((r) => spy.resultOf(r).hasMore), [true, false]);
  });

  it('users.getAll() and room.get() return every user, oldest first', async () => {
    const { users, order: ids } = await roomWith(5);
    const spy = new SocketSpy();
    const a = fx.client(users[2]!.token, { WebSocket: spy.WebSocket });
    await a.connect();

    spy.clear();
    const all = await a.users.getAll();
    assert.deepEqual(all.map((u) => u.id), ids);
    assert.ok(all.every((u) => typeof u.follow === 'function'));
    assert.deepEqual(spy.requests('users.getAll').length, 3, 'three pages of at most two');
    assert.deepEqual([...a.users.all.keys()].sort(), [...ids].sort(), 'getAll() refreshes users.all');

    spy.clear();
    const room = await a.room.get();
    assert.deepEqual(room.users.map((u) => u.id), ids);
    assert.equal(room.total_users_created, 5);
    const roomPages = spy.requests('room.get');
    assert.equal(roomPages.length, 3);
    assert.equal(roomPages[0]!.params, undefined);
    assert.equal(roomPages[1]!.params.after, spy.resultOf(roomPages[0]!).cursor);
    // With an explicit roomId every page carries it.
    spy.clear();
    assert.deepEqual((await a.room.get({ roomId: room.id })).users.map((u) => u.id), ids);
    assert.ok(spy.requests('room.get').every((r) => r.params.roomId === room.id));
  });

  it('after a reconnection users.all holds every user, and what changed while away was told', async () => {
    const { roomId, users } = await roomWith(5);
    const link = await new TcpProxy(fx.server.port).start();
    proxies.push(link);
    const a = fx.client(users[0]!.token, {
      serverUrl: link.url,
      reconnect: { attempts: 50, initialDelayMs: 50, maxDelayMs: 200 },
    });
    await a.connect();
    await a.join();
    assert.equal(a.users.all.size, 5);

    const told = new Recorder<[string, CollabKitClientUser]>((cb) => {
      const offs = (['userCreated', 'userDeleted', 'userJoined', 'userLeft'] as const).map((name) =>
        a.users.on(name, (user) => cb(name, user)),
      );
      return () => {
        for (const off of offs) off();
      };
    });
    link.refuse(true);
    link.cut();
    await next((cb) => a.socket.on('reconnecting', cb), 'reconnecting');
    // While A is away: two users are created (on the last page), one on the first page is
    // deleted, and one on a later page comes online.
    const created = [await fx.server.createUser(roomId, 'late-1'), await fx.server.createUser(roomId, 'late-2')];
    await fx.server.rest('DELETE', `/users/${users[1]!.id}?roomId=${roomId}`);
    const comer = fx.client(users[4]!.token);
    await comer.connect();
    await comer.join();

    const expected = [users[0]!.id, users[2]!.id, users[3]!.id, users[4]!.id, ...created.map((c) => c.user.id as string)];
    // `reconnected` fires once every page is in.
    let atReconnected: string[] = [];
    const reconnected = next((cb) => a.socket.on('reconnected', cb), 'reconnected', { ms: 10_000 });
    a.socket.once('reconnected', () => (atReconnected = [...a.users.all.keys()]));
    link.refuse(false);
    await reconnected;
    assert.deepEqual(atReconnected.sort(), [...expected].sort());
    assert.deepEqual([...a.users.all.keys()].sort(), [...expected].sort());
    assert.deepEqual([...a.users.online.keys()].sort(), [users[0]!.id, users[4]!.id].sort());
    assert.deepEqual(
      told.calls.map(([name, user]) => `${name} ${user.name}`).sort(),
      ['userCreated late-1', 'userCreated late-2', 'userDeleted user-2', 'userJoined user-5'],
    );
    told.off();
  });
});

describe('users in pages (scripted socket)', () => {
  const clients: CollabKitClient[] = [];
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });

  it('events that arrive while the pages come win over the pages, and join() waits for the last page', async () => {
    const me = scriptedUser('u1', { status: 'online' });
    const [u2, u3, u4, u5] = ['u2', 'u3', 'u4', 'u5'].map((id) => scriptedUser(id, { status: 'online' }));
    const server = new ScriptedServer('u1');
    const client = new CollabKitClient({
      serverUrl: 'http://scripted.invalid',
      authToken: scriptedToken('u1'),
      WebSocket: server.WebSocket,
      heartbeat: { intervalMs: 0 },
    });
    clients.push(client);
    await client.connect();
    let joined = false;
    const joining = client.join().then(() => (joined = true));
    const { result, event } = ScriptedSocket;

    const join = await server.request('room.join');
    join.socket.deliver(result(join, { room: SCRIPTED_ROOM, user: me, users: [me, u2], usersCursor: 'c1', presence: [] }));
    const second = await server.request('users.getAll', 'the second page');
    assert.deepEqual(second.params, { after: 'c1' });
    assert.equal(joined, false, 'join() waits for the pages');
    // u2 (first page) leaves, in the same tick as a page that is older than the event for
    // u3 behind it.
    second.socket.deliver(
      event('userLeft', { user: { ...u2, status: 'offline' } }),
      result(second, { users: [u3, u4], hasMore: true, cursor: 'c2' }),
      event('userUpdated', { user: { ...u3, name: 'Renamed' } }),
    );
    const third = await server.request('users.getAll', 'the third page');
    assert.deepEqual(third.params, { after: 'c2' });
    // u4 is deleted after its page was read; u6 is created.
    const u6 = scriptedUser('u6');
    third.socket.deliver(
      event('userDeleted', { user: u4 }),
      event('userCreated', { user: u6 }),
      result(third, { users: [u5], hasMore: false, cursor: null }),
    );
    await joining;
    assert.deepEqual([...client.users.all.keys()].sort(), ['u1', 'u2', 'u3', 'u5', 'u6']);
    assert.equal(client.users.all.get('u2')?.status, 'offline');
    assert.equal(client.users.all.get('u3')?.name, 'Renamed');
    assert.deepEqual([...client.users.online.keys()].sort(), ['u1', 'u3', 'u5']);
    assert.equal(client.currentRoom?.active_participants, 3);
    assert.equal(server.sent('users.getAll').length, 2);
  });
});
