// client.notifications: broadcast to everyone or to some, on / once / off.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BroadcastMeta, CollabKitError } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { eventually, Recorder, sleep } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

type Call = [unknown, BroadcastMeta];

describe('notifications', () => {
  it('broadcasts to every other participant, never back to the sender', async () => {
    const { users } = await fx.room(3);
    const [a, b, c] = users;
    const atA = new Recorder<Call>((cb) => a!.client.notifications.on('wave', cb));
    const atB = new Recorder<Call>((cb) => b!.client.notifications.on('wave', cb));
    const atC = new Recorder<Call>((cb) => c!.client.notifications.on('wave', cb));
    const result = await a!.client.notifications.broadcast('wave', { hi: true });
    assert.equal(result.recipients, 2);
    await atB.until((calls) => calls.length === 1, 'B gets the wave');
    await atC.until((calls) => calls.length === 1, 'C gets the wave');
    assert.deepEqual(atB.calls[0], [{ hi: true }, { event: 'wave', userId: a!.id }]);
    await sleep(100);
    assert.equal(atA.calls.length, 0, 'the sender does not receive its own');
  });

  it('broadcasts only to userIds when given', async () => {
    const { users } = await fx.room(3);
    const [a, b, c] = users;
    const atB = new Recorder<Call>((cb) => b!.client.notifications.on('ping', cb));
    const atC = new Recorder<Call>((cb) => c!.client.notifications.on('ping', cb));
    const result = await a!.client.notifications.broadcast('ping', 42, [c!.id]);
    assert.equal(result.recipients, 1);
    await atC.until((calls) => calls.length === 1, 'C gets it');
    assert.equal(atC.calls[0]![0], 42);
    await sleep(100);
    assert.equal(atB.calls.length, 0, 'B was not addressed');
  });

  it('on() returns an unsubscribe, once() fires once, off() removes; other events are not mixed', async () => {
    const { users } = await fx.room(2);
    const [a, b] = users;
    const received: string[] = [];
    const off = b!.client.notifications.on('x', (data) => received.push(`on:${String(data)}`));
    b!.client.notifications.once('x', (data) => received.push(`once:${String(data)}`));
    const offCb = (data: unknown) => received.push(`off:${String(data)}`);
    b!.client.notifications.on('x', offCb);
    b!.client.notifications.off('x', offCb);
    b!.client.notifications.on('y', (data) => received.push(`y:${String(data)}`));
    const sentinel = new Recorder<Call>((cb) => b!.client.notifications.on('done', cb));

    await a!.client.notifications.broadcast('x', 1);
    await a!.client.notifications.broadcast('x', 2);
    await eventually(() => received.includes('on:2'), 'B receives x 2');
    off();
    await a!.client.notifications.broadcast('x', 3);
    await a!.client.notifications.broadcast('y', 4);
    await a!.client.notifications.broadcast('done', null);
    await sentinel.until((calls) => calls.length === 1, 'the sentinel');
    assert.deepEqual(received, ['on:1', 'once:1', 'on:2', 'y:4']);
  });

  it('refuses bad event names and oversized data; needs join()', async () => {
    const { users } = await fx.room(1);
    const client = users[0]!.client;
    await assert.rejects(client.notifications.broadcast(''), (e: CollabKitError) => e.code === 'VALIDATION_ERROR');
    await assert.rejects(
      client.notifications.broadcast('big', 'x'.repeat(40_000)),
      (e: CollabKitError) => e.code === 'PAYLOAD_TOO_LARGE',
    );
    await client.leave();
    await assert.rejects(client.notifications.broadcast('after-leave'), (e: CollabKitError) => e.code === 'BAD_REQUEST');
  });
});
