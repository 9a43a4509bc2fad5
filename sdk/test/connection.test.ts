// Connecting, joining, the room, lifecycle events, and authentication failures.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CollabKitError, SUBPROTOCOL } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { TcpProxy } from './helpers/proxy.js';
import { claimsOf, signJwt } from './helpers/server.js';
import { next, Recorder, withTimeout } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

describe('connect and join', () => {
  it('connects, joins, exposes the room and the user, and disconnects', async () => {
    const room = await fx.server.createRoom('whiteboard/one');
    const { user, token } = await fx.server.createUser(room.id, 'Alice');
    const client = fx.client(token);
    assert.equal(client.userId, user.id, 'userId is known from the JWT before connect()');
    assert.equal(client.socket.state, 'idle');
    const events = new Recorder<[string]>((cb) => {
      const offs = (['connected', 'disconnected', 'reconnecting', 'reconnected', 'failed', 'authFailed'] as const).map(
        (name) => client.socket.on(name, () => cb(name)),
      );
      return () => {
        for (const off of offs) off();
      };
    });

    await client.connect();
    assert.equal(client.socket.state, 'ready');
    assert.equal(client.socket.connected, true);
    assert.deepEqual(events.calls.map((c) => c[0]), ['connected']);
    assert.equal(client.currentUser?.id, user.id);
    assert.equal(client.currentUser?.name, 'Alice');
    assert.deepEqual(client.currentUser?.following, []);
    assert.equal(client.currentRoom?.id, room.id);

    const joined = await client.join();
    assert.equal(joined.id, room.id);
    assert.equal(joined.name, 'whiteboard/one');
    assert.equal(joined.state, 'active');
    assert.equal(joined.active_participants, 1);
    assert.equal(typeof joined.duration_seconds, 'number');
    assert.equal(client.currentRoom?.active_participants, 1);
    assert.equal(client.currentUser?.status, 'online');
    assert.ok(client.currentUser?.joined_at, 'joined_at is set');
    assert.equal(client.users.online.get(user.id)?.name, 'Alice', 'online includes the local user');
    assert.equal('token' in client.currentUser!, false, 'socket users never carry token');

    // The REST API sees the user online.
    const rest = await fx.server.rest<{ user: any }>('GET', `/users/${user.id}?roomId=${room.id}`);
    assert.equal(rest.body.data.user.status, 'online');

    client.disconnect();
    assert.equal(client.socket.state, 'idle');
    assert.deepEqual(events.calls.map((c) => c[0]), ['connected', 'disconnected']);
    // The server sees the socket go and the user go offline.
    const deadline = Date.now() + 5_000;
    let status = 'online';
    while (status !== 'offline' && Date.now() < deadline) {
      const reply = await fx.server.rest<{ user: any }>('GET', `/users/${user.id}?roomId=${room.id}`);
      status = reply.body.data.user.status;
      if (status !== 'offline') await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(status, 'offline');
    await assert.rejects(client.users.get(), (e: CollabKitError) => e.code === 'NOT_CONNECTED');
  });

  it('room.get() and room.get({ roomId }) return the room with its users; another room is FORBIDDEN', async () => {
    const { roomId, users } = await fx.room(2);
    const client = users[0]!.client;
    const room = await client.room.get();
    assert.equal(room.id, roomId);
    assert.equal(room.active_participants, 2);
    assert.deepEqual(room.users.map((u) => u.id).sort(), users.map((u) => u.id).sort());
    assert.equal(typeof room.users[0]!.follow, 'function', 'users handed out can follow()');
    const same = await client.room.get({ roomId });
    assert.equal(same.id, roomId);
    const other = await fx.server.createRoom();
    await assert.rejects(client.room.get({ roomId: other.id }), (e: CollabKitError) => e.code === 'FORBIDDEN');
  });

  it('queues requests made while connecting, and join() before connect() resolves', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const client = fx.client(token);
    const connecting = client.connect();
    const joining = client.join();
    const joiningToo = client.join();
    const me = client.users.get();
    await connecting;
    const joined = await joining;
    assert.equal(joined.id, room.id);
    assert.equal((await joiningToo).id, room.id, 'concurrent join() calls share one join');
    assert.equal((await client.join()).id, room.id, 'join() when joined resolves at once');
    assert.equal((await me).id, client.userId);
    assert.equal(client.socket.connected, true);
  });

  it('rejects requests before connect() with NOT_CONNECTED', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const client = fx.client(token);
    await assert.rejects(client.join(), (e: CollabKitError) => e instanceof CollabKitError && e.code === 'NOT_CONNECTED');
    await assert.rejects(client.room.get(), (e: CollabKitError) => e.code === 'NOT_CONNECTED');
  });

  it("sends the JWT only in the auth frame, offering the collabkit.v1 subprotocol, and names the token's room in the URL", async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const proxy = await new TcpProxy(fx.server.port).start();
    try {
      const client = fx.client(token, { serverUrl: proxy.url });
      await client.connect();
      const upgrade = proxy.requests[0]!;
      const requestLine = upgrade.split('\r\n')[0]!;
      // The room, for a load balancer to keep a room's sockets on one node (docs/scaling.md).
      assert.equal(requestLine, `GET /v1/realtime?room=${room.id} HTTP/1.1`);
      assert.ok(!upgrade.includes(token), 'the token is not in the upgrade request');
      assert.match(upgrade, new RegExp(`sec-websocket-protocol: ${SUBPROTOCOL}`, 'i'));
      assert.match(proxy.responses[0]!, new RegExp(`sec-websocket-protocol: ${SUBPROTOCOL}`, 'i'), 'the server selects it');
      client.disconnect();
    } finally {
      await proxy.stop();
    }
  });

  it('fails to connect to a server that is not there with CONNECTION_FAILED', async () => {
    const proxy = await new TcpProxy(fx.server.port).start();
    proxy.refuse(true);
    try {
      const client = fx.client('a.b.c', { serverUrl: proxy.url });
      await assert.rejects(client.connect(), (e: CollabKitError) => e.code === 'CONNECTION_FAILED');
      assert.equal(client.socket.state, 'idle');
    } finally {
      await proxy.stop();
    }
  });
});

describe('authFailed', () => {
  async function expectAuthFailed(token: string): Promise<void> {
    const client = fx.client(token);
    const reconnecting = new Recorder<[]>((cb) => client.socket.on('reconnecting', cb));
    const authFailed = next<[{ code: string; message: string }]>((cb) => client.socket.on('authFailed', cb), 'authFailed');
    await assert.rejects(client.connect(), (e: CollabKitError) => e.code === 'AUTH_FAILED');
    const [info] = await authFailed;
    assert.equal(info.code, 'UNAUTHORIZED');
    assert.equal(client.socket.state, 'idle');
    // A rejected token is never retried.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(reconnecting.calls.length, 0);
  }

  it('fires for an expired token', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const claims = claimsOf(token);
    const now = Math.floor(Date.now() / 1000);
    await expectAuthFailed(signJwt({ ...claims, iat: now - 7200, exp: now - 3600 }, fx.server.secret));
  });

  it('fires for a forged token (signed with another secret)', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const claims = claimsOf(token);
    await expectAuthFailed(signJwt(claims, 'not-the-server-secret-not-the-server-secret'));
  });

  it('fires for a malformed token and for a deleted user', async () => {
    await expectAuthFailed('not-a-jwt');
    const room = await fx.server.createRoom();
    const { user, token } = await fx.server.createUser(room.id);
    const deleted = await fx.server.rest('DELETE', `/users/${user.id}?roomId=${room.id}`);
    assert.equal(deleted.status, 200);
    await expectAuthFailed(token);
  });

  it('a valid token with the right claims works (the signing helper is right)', async () => {
    const room = await fx.server.createRoom();
    const { user, token } = await fx.server.createUser(room.id);
    const claims = claimsOf(token);
    const now = Math.floor(Date.now() / 1000);
    const own = signJwt({ accountId: claims.accountId, userId: user.id, roomId: room.id, iat: now, exp: now + 600 }, fx.server.secret);
    const client = fx.client(own);
    await withTimeout(client.connect(), 5_000, 'connect with a self-signed token');
    assert.equal(client.currentUser?.id, user.id);
  });
});
