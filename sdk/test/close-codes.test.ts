// Refusals before `welcome` and what the SDK does with them. 1013 (try again later: the user
// holds realtime.max_connections_per_user sockets, two here, or the server's database failed)
// is retried with the usual backoff, and the server's reason reaches the application. 1009 (a
// frame over the server's limit) is not retried before `welcome` (the auth frame, the token,
// would be refused every time); on an open socket the SDK reconnects without sending the
// requests in flight again, since one of them may be the cause.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import CollabKitClient, { CollabKitError } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { TcpProxy } from './helpers/proxy.js';
import { ScriptedServer, ScriptedSocket, scriptedToken, scriptedUser } from './helpers/scripted-socket.js';
import { eventually, next, Recorder } from './helpers/wait.js';

/** Whether `e` is a CONNECTION_FAILED caused by the server's error `code`. */
const refusedWith = (code: string) => (e: CollabKitError) =>
  e.code === 'CONNECTION_FAILED' && e.cause instanceof CollabKitError && e.cause.code === code && e.message.includes(code);

describe('close 1013 and 1009 from the real server', () => {
  const fx = new Fixture();
  const proxies: TcpProxy[] = [];
  before(() => fx.start({ COLLABKIT_REALTIME_MAX_CONNECTIONS_PER_USER: '2' }));
  // realtime.max_connections_per_user counts a user's sockets on one node
  // (docs/configuration.md): in cluster mode, the sockets these tests count are all on node 1.
  const onOneNode = (token: string) => fx.client(token, { serverUrl: fx.server.url });
  after(async () => {
    for (const proxy of proxies) await proxy.stop();
    await fx.stop();
  });

  it('connect() over the per-user socket cap rejects CONNECTION_FAILED caused by RATE_LIMITED', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const first = onOneNode(token);
    const second = onOneNode(token);
    await first.connect();
    await second.connect();
    const third = onOneNode(token);
    await assert.rejects(third.connect(), refusedWith('RATE_LIMITED'));
    assert.equal(third.socket.state, 'idle');
    // Once one closes, the server lets another in (it notices the close on its own time).
    first.disconnect();
    await eventually(() => third.connect().then(() => true, () => false), 'a third socket once one closed');
    assert.equal(third.socket.state, 'ready');
  });

  it('a token over the frame limit rejects CONNECTION_FAILED caused by PAYLOAD_TOO_LARGE', async () => {
    const client = fx.client(`${'x'.repeat(70_000)}.y.z`);
    await assert.rejects(client.connect(), refusedWith('PAYLOAD_TOO_LARGE'));
    assert.equal(client.socket.state, 'idle');
  });

  it('reconnection attempts refused with 1013 back off, say why, and succeed once a socket is free', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const link = await new TcpProxy(fx.server.port).start();
    proxies.push(link);
    const initialDelayMs = 100;
    const a = fx.client(token, {
      serverUrl: link.url,
      reconnect: { attempts: 50, initialDelayMs, factor: 2, maxDelayMs: 400, jitter: 0 },
    });
    await a.connect();
    await a.join();
    const other = onOneNode(token);
    await other.connect();

    // A is cut off; while it cannot reach the server, two other sockets of its user take the
    // two places (the server may take a moment to notice A's socket closed).
    link.refuse(true);
    link.cut();
    await next((cb) => a.socket.on('reconnecting', cb), 'reconnecting');
    const taker = onOneNode(token);
    await eventually(() => taker.connect().then(() => true, () => false), 'a second socket in place of A');

    const errors = new Recorder<[CollabKitError]>((cb) => a.socket.on('error', cb));
    const attempts: number[] = [];
    const offAttempts = a.socket.on('reconnecting', () => attempts.push(Date.now()));
    const failed = new Recorder<[]>((cb) => a.socket.on('failed', cb));
    link.refuse(false);
    await errors.until((calls) => calls.length >= 3, 'three attempts refused with RATE_LIMITED', 10_000);
    assert.ok(errors.calls.every(([e]) => e.code === 'RATE_LIMITED'), errors.calls.map(([e]) => e.code).join());
    assert.equal(a.socket.state, 'reconnecting');
    assert.equal(failed.calls.length, 0, 'not failed');
    // Backoff, not a tight loop: each attempt waited at least the first delay.
    for (let i = 1; i < attempts.length; i++) {
      const waited = attempts[i]! - attempts[i - 1]!;
      assert.ok(waited >= initialDelayMs - 5, `attempt ${i + 1} after ${waited} ms`);
    }

    const reconnected = next((cb) => a.socket.on('reconnected', cb), 'reconnected once a socket is free', { ms: 10_000 });
    taker.disconnect();
    await reconnected;
    assert.equal((await a.users.get()).status, 'online');
    offAttempts();
    errors.off();
    failed.off();
  });
});

describe('close 1009 (scripted socket)', () => {
  const clients: CollabKitClient[] = [];
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });

  function scriptedClient(server: ScriptedServer): CollabKitClient {
    const client = new CollabKitClient({
      serverUrl: 'http://scripted.invalid',
      authToken: scriptedToken(server.userId),
      WebSocket: server.WebSocket,
      heartbeat: { intervalMs: 0 },
      reconnect: { attempts: 5, initialDelayMs: 10 },
    });
    clients.push(client);
    return client;
  }

  it('a reconnection attempt refused with 1009 stops at once with failed', async () => {
    const server = new ScriptedServer('u1');
    const client = scriptedClient(server);
    await client.connect();
    const events = new Recorder<[string]>((cb) => {
      const offs = [
        client.socket.on('reconnecting', ({ attempt }) => cb(`reconnecting:${attempt}`)),
        client.socket.on('error', (e) => cb(`error:${e.code}`)),
        client.socket.on('failed', () => cb('failed')),
      ];
      return () => {
        for (const off of offs) off();
      };
    });
    server.auth = () => ({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'Frame over 65536 bytes' }, close: 1009 });
    server.sockets[0]!.serverClose(1006);
    await events.until((calls) => calls.some(([e]) => e === 'failed'), 'failed');
    assert.deepEqual(events.calls.map(([e]) => e), ['reconnecting:1', 'error:PAYLOAD_TOO_LARGE', 'failed']);
    assert.equal(server.sockets.length, 2, 'one attempt only');
    assert.equal(client.socket.state, 'idle');
    events.off();
  });

  it('an open socket closed with 1009 reconnects, failing the reads in flight instead of resending them', async () => {
    const server = new ScriptedServer('u1');
    const client = scriptedClient(server);
    await client.connect();
    const read = client.users.get({ userId: 'u2' });
    const sent = await server.request('users.get');
    const reconnected = next((cb) => client.socket.on('reconnected', cb), 'reconnected');
    sent.socket.serverClose(1009, 'frame too large');
    await assert.rejects(read, (e: CollabKitError) => e.code === 'DISCONNECTED' && e.method === 'users.get');
    await reconnected;
    assert.equal(server.sockets.length, 2);
    assert.equal(server.sent('users.get').length, 1, 'not sent again on the new socket');

    // Any other close resends reads (the documented behaviour), which the 1009 case must not.
    const again = client.users.get({ userId: 'u2' });
    const second = await server.request('users.get');
    second.socket.serverClose(1006);
    const resent = await server.request('users.get', 'users.get resent after a 1006');
    assert.notEqual(resent.socket, second.socket);
    resent.socket.deliver(ScriptedSocket.result(resent, { user: scriptedUser('u2') }));
    assert.equal((await again).id, 'u2');
  });
});
