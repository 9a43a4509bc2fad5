// client.users: online / all, get / getAll, user events (socket and REST), following.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitClientUser, CollabKitError } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { next, Recorder } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

type UserCall = [CollabKitClientUser];

describe('users', () => {
  it('tracks who is online and who exists, with userJoined / userLeft, across three clients', async () => {
    const { roomId, users } = await fx.room(2);
    const [a, b] = users;
    assert.deepEqual([...a!.client.users.online.keys()].sort(), [a!.id, b!.id].sort());
    assert.equal(a!.client.users.all.size, 2);
    assert.equal(b!.client.users.online.get(a!.id)?.status, 'online');

    const joinedAtA = new Recorder<UserCall>((cb) => a!.client.users.on('userJoined', cb));
    const joinedAtB = new Recorder<UserCall>((cb) => b!.client.users.on('userJoined', cb));
    const { user: carol, token } = await fx.server.createUser(roomId, 'Carol');
    const c = fx.client(token);
    await c.connect();
    await c.join();
    const [[seenByA]] = [await joinedAtA.find((u) => u.id === carol.id, 'A sees Carol join')];
    await joinedAtB.find((u) => u.id === carol.id, 'B sees Carol join');
    assert.equal(seenByA!.name, 'Carol');
    assert.equal(seenByA!.status, 'online');
    assert.equal(a!.client.users.online.size, 3);
    assert.equal(a!.client.users.all.get(carol.id)?.name, 'Carol');
    assert.equal(c.users.online.size, 3, 'a late joiner sees everyone online');
    assert.equal(a!.client.currentRoom?.active_participants, 3);

    const left = next<UserCall>((cb) => a!.client.users.on('userLeft', cb), 'A sees Carol leave', {
      filter: (u) => u.id === carol.id,
    });
    c.disconnect();
    const [gone] = await left;
    assert.equal(gone.status, 'offline');
    assert.ok(gone.left_at);
    assert.equal(a!.client.users.online.has(carol.id), false);
    assert.equal(a!.client.users.all.get(carol.id)?.status, 'offline', 'all keeps offline users');
    joinedAtA.off();
    joinedAtB.off();
  });

  it('get() is the local user, get({ userId }) another, getAll() everyone', async () => {
    const { roomId, users } = await fx.room(2);
    const [a, b] = users;
    const me = await a!.client.users.get();
    assert.equal(me.id, a!.id);
    assert.equal(me.status, 'online');
    const other = await a!.client.users.get({ userId: b!.id });
    assert.equal(other.id, b!.id);
    assert.equal(other.room_id, roomId);
    assert.deepEqual(other.following, []);
    const all = await a!.client.users.getAll();
    assert.deepEqual(all.map((u) => u.id).sort(), [a!.id, b!.id].sort());
    assert.ok(all.every((u) => typeof u.follow === 'function' && typeof u.unfollow === 'function'));
    assert.equal(JSON.stringify(all[0]).includes('follow"'), false, 'follow() does not serialize');
    await assert.rejects(
      a!.client.users.get({ userId: '00000000-0000-4000-8000-000000000000' }),
      (e: CollabKitError) => e.code === 'NOT_FOUND',
    );
    await assert.rejects(a!.client.users.get({ userId: 'nope' }), (e: CollabKitError) => e.code === 'VALIDATION_ERROR');
  });

  it('REST creates, updates and deletes reach clients as userCreated / userUpdated / userDeleted', async () => {
    const { roomId, users } = await fx.room(2);
    const [a, b] = users;
    const created = next<UserCall>((cb) => a!.client.users.on('userCreated', cb), 'userCreated');
    const { user: dave } = await fx.server.createUser(roomId, 'Dave');
    const [seen] = await created;
    assert.equal(seen.id, dave.id);
    assert.equal(seen.name, 'Dave');
    assert.equal(a!.client.users.all.get(dave.id)?.name, 'Dave');
    assert.equal(a!.client.users.online.has(dave.id), false);

    const updated = next<UserCall>((cb) => a!.client.users.on('userUpdated', cb), 'userUpdated', {
      filter: (u) => u.id === dave.id,
    });
    const patch = await fx.server.rest('PATCH', `/users/${dave.id}?roomId=${roomId}`, { name: 'David' });
    assert.equal(patch.status, 200);
    assert.equal((await updated)[0].name, 'David');
    assert.equal(a!.client.users.all.get(dave.id)?.name, 'David');

    const deleted = next<UserCall>((cb) => a!.client.users.on('userDeleted', cb), 'userDeleted');
    await fx.server.rest('DELETE', `/users/${dave.id}?roomId=${roomId}`);
    assert.equal((await deleted)[0].id, dave.id);
    assert.equal(a!.client.users.all.has(dave.id), false);

    // A deleted user's socket is closed (4404) and not reconnected.
    const disconnected = next<[{ code: number; willReconnect: boolean }]>(
      (cb) => b!.client.socket.on('disconnected', cb),
      'B disconnected',
    );
    const bGone = next<UserCall>((cb) => a!.client.users.on('userDeleted', cb), 'A sees B deleted');
    await fx.server.rest('DELETE', `/users/${b!.id}?roomId=${roomId}`);
    const [info] = await disconnected;
    assert.equal(info.code, 4404);
    assert.equal(info.willReconnect, false);
    await bGone;
    assert.equal(b!.client.socket.state, 'idle');
    assert.equal(a!.client.users.online.has(b!.id), false);
  });

  it('follow() / unfollow() on user objects keep following and followers current everywhere', async () => {
    const { users } = await fx.room(3);
    const [a, b, c] = users;
    const bAtA = a!.client.users.online.get(b!.id)!;
    const updatesAtC = new Recorder<UserCall>((cb) => c!.client.users.on('userUpdated', cb));

    const followed = await bAtA.follow();
    assert.equal(followed.id, b!.id);
    assert.deepEqual(followed.followers, [a!.id]);
    assert.deepEqual(a!.client.users.following, [b!.id]);
    assert.deepEqual(a!.client.currentUser?.following, [b!.id]);
    await updatesAtC.find((u) => u.id === b!.id && u.followers.includes(a!.id), 'C sees B followed');
    await updatesAtC.find((u) => u.id === a!.id && u.following.includes(b!.id), 'C sees A following');
    assert.deepEqual(c!.client.users.all.get(a!.id)?.following, [b!.id]);
    // B learns it has a follower.
    await new Recorder<UserCall>((cb) => b!.client.users.on('userUpdated', cb)).until(
      () => b!.client.users.followers.includes(a!.id),
      'B sees its follower',
    );
    assert.deepEqual(b!.client.currentUser?.followers, [a!.id]);

    // The server keeps the follow graph: a fresh read agrees.
    const again = await a!.client.users.get();
    assert.deepEqual(again.following, [b!.id]);

    // Idempotent; following yourself is refused.
    await bAtA.follow();
    await assert.rejects(a!.client.currentUser!.follow(), (e: CollabKitError) => e.code === 'VALIDATION_ERROR');

    const unfollowed = await a!.client.users.online.get(b!.id)!.unfollow();
    assert.deepEqual(unfollowed.followers, []);
    assert.deepEqual(a!.client.users.following, []);
    await updatesAtC.find((u) => u.id === a!.id && u.following.length === 0 && updatesAtC.calls.length > 2, 'C sees unfollow');
    updatesAtC.off();
  });
});
