// client.presence: update (throttled, latest wins), sync targets, unsync, getStates.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitError, PresenceChange } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { Recorder, sleep } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

type Call = [PresenceChange];

describe('presence', () => {
  it("sync('*') delivers others' states with the server's colour, and null when they leave", async () => {
    const { users } = await fx.room(3);
    const [a, b, c] = users;
    const atA = new Recorder<Call>();
    await a!.client.presence.sync('*', atA.callback);
    b!.client.presence.update({ cursor: { x: 1, y: 2 } });
    c!.client.presence.update({ cursor: { x: 5, y: 6 }, typing: true });
    const [[fromB]] = [await atA.find((ch) => ch.userId === b!.id, 'A gets B')];
    assert.deepEqual(fromB!.state && { cursor: fromB!.state.cursor }, { cursor: { x: 1, y: 2 } });
    assert.match(String(fromB!.state?.color), /^#[0-9a-f]{6}$/);
    await atA.find((ch) => ch.userId === c!.id, 'A gets C');
    const states = a!.client.presence.getStates();
    assert.ok(states instanceof Map);
    assert.deepEqual(states.get(c!.id)?.cursor, { x: 5, y: 6 });
    assert.equal(states.get(c!.id)?.typing, true);
    assert.equal(states.has(a!.id), false, 'getStates holds the others');

    c!.client.disconnect();
    const [[left]] = [await atA.find((ch) => ch.userId === c!.id && ch.state === null, 'A gets C left (null)')];
    assert.equal(left!.state, null);
    assert.equal(a!.client.presence.getStates().has(c!.id), false);
  });

  it('a late syncer gets current states at once (callback and getStates)', async () => {
    const { users } = await fx.room(2);
    const [a, b] = users;
    b!.client.presence.update({ screen: 'home' });
    await sleep(150);
    const atA = new Recorder<Call>();
    await a!.client.presence.sync('*', atA.callback);
    const [[change]] = [await atA.find((ch) => ch.userId === b!.id, 'initial state of B')];
    assert.equal(change!.state?.screen, 'home');
    assert.equal(a!.client.presence.getStates().get(b!.id)?.screen, 'home');
  });

  it('throttles a burst to few sends, and the latest state always arrives', async () => {
    const { users } = await fx.room(2);
    const [a, b] = users;
    const atA = new Recorder<Call>();
    await a!.client.presence.sync(b!.id, atA.callback);
    // 100 updates within ~100 ms: at most one send per 50 ms leaves the client.
    const started = Date.now();
    for (let i = 1; i <= 100; i++) {
      b!.client.presence.update({ i });
      if (i % 10 === 0) await sleep(10);
    }
    const elapsed = Date.now() - started;
    await atA.find((ch) => ch.state?.i === 100, 'the last state (i = 100)');
    await sleep(120);
    const received = atA.calls.filter(([ch]) => ch.userId === b!.id).length;
    assert.ok(received <= Math.ceil(elapsed / 50) + 2, `${received} presence events for ${elapsed} ms of updates`);
    assert.equal(atA.calls.at(-1)![0].state?.i, 100, 'latest wins');
    assert.deepEqual(b!.client.presence.state, { i: 100 });

    // 300 synchronous updates would trip the server's rate limit (burst 120) if each were
    // sent: throttled, they are one send now and one trailing send, and no error comes back.
    const errors = new Recorder<[CollabKitError]>((cb) => b!.client.socket.on('error', cb));
    atA.clear();
    for (let i = 1; i <= 300; i++) b!.client.presence.update({ burst: i });
    await atA.find((ch) => ch.state?.burst === 300, 'the last burst state');
    await sleep(150);
    assert.ok(atA.calls.length <= 2, `${atA.calls.length} events for one synchronous burst`);
    assert.deepEqual(errors.calls, [], 'no RATE_LIMITED errors');
    errors.off();
  });

  it("targets: a user ID receives only that user, 'following' only followed users", async () => {
    const { users } = await fx.room(3);
    const [a, b, c] = users;
    const atA = new Recorder<Call>();
    await a!.client.presence.sync(c!.id, atA.callback);
    b!.client.presence.update({ who: 'b' });
    c!.client.presence.update({ who: 'c' });
    await atA.find((ch) => ch.userId === c!.id, 'A gets C');
    await sleep(150);
    assert.equal(atA.calls.some(([ch]) => ch.userId === b!.id), false, 'nothing from B');

    // 'following': A follows B only.
    await a!.client.users.online.get(b!.id)!.follow();
    const following = new Recorder<Call>();
    await a!.client.presence.sync('following', following.callback);
    await following.find((ch) => ch.userId === b!.id && ch.state?.who === 'b', "B's current state");
    b!.client.presence.update({ who: 'b2' });
    c!.client.presence.update({ who: 'c2' });
    await following.find((ch) => ch.state?.who === 'b2', 'B again');
    await sleep(150);
    assert.equal(following.calls.some(([ch]) => ch.userId === c!.id), false, 'nothing from C');
    assert.deepEqual([...a!.client.presence.getStates().keys()], [b!.id]);

    // Unfollowing B: its state goes away for A (null), and nothing more comes.
    await a!.client.users.online.get(b!.id)!.unfollow();
    await following.find((ch) => ch.userId === b!.id && ch.state === null, 'B dropped after unfollow');
    assert.equal(a!.client.presence.getStates().size, 0);
  });

  it('unsync() stops events; update() before join() is sent on join', async () => {
    const room = await fx.server.createRoom();
    const one = await fx.server.createUser(room.id);
    const two = await fx.server.createUser(room.id);
    const a = fx.client(one.token);
    await a.connect();
    await a.join();
    const atA = new Recorder<Call>();
    await a.presence.sync('*', atA.callback);
    const b = fx.client(two.token);
    await b.connect();
    b.presence.update({ early: true }); // not joined yet: kept
    await b.join();
    await atA.find((ch) => ch.userId === two.user.id && ch.state?.early === true, 'state set before join');

    await a.presence.unsync();
    assert.equal(a.presence.getStates().size, 0);
    atA.clear();
    b.presence.update({ early: false });
    await sleep(200);
    assert.equal(atA.calls.length, 0, 'no events after unsync');
  });

  it('refuses a state that is not an object, and a state over the limit', async () => {
    const { users } = await fx.room(1);
    const client = users[0]!.client;
    assert.throws(() => client.presence.update(null as never), (e: CollabKitError) => e.code === 'VALIDATION_ERROR');
    assert.throws(() => client.presence.update([1] as never), (e: CollabKitError) => e.code === 'VALIDATION_ERROR');
    assert.throws(
      () => client.presence.update({ big: 'x'.repeat(9000) }),
      (e: CollabKitError) => e.code === 'PAYLOAD_TOO_LARGE',
    );
  });
});
