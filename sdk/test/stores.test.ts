// Typed stores: set / get / getAll / update / delete / sync / on('changed'), client-side
// validation that matches the server's, and other clients' changes.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitError, StoreChange } from '@collab-kit/client';
import { defineStores, SchemaValidationError } from '@collab-kit/utils';
import { Fixture } from './helpers/fixture.js';
import { Recorder, sleep } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

const stores = defineStores({
  tasks: {
    title: { type: 'string', required: true },
    completed: { type: 'boolean', default: false },
    assignee: { type: 'string' },
    points: { type: 'number' },
  },
  notes: { text: { type: 'string', required: true } },
});

type Task = { title: string; completed: boolean; assignee?: string; points?: number };

describe('stores', () => {
  it('set fills defaults, get returns the value or null, getAll returns [{ key, value }]', async () => {
    const { users } = await fx.room(1, { stores });
    const tasks = users[0]!.client.stores.tasks;
    const written = await tasks.set({ key: 'task-1', value: { title: 'Build', assignee: 'u1' } });
    assert.deepEqual(written.value, { title: 'Build', completed: false, assignee: 'u1' });
    assert.equal(typeof written.version, 'number');
    assert.deepEqual(await tasks.get({ key: 'task-1' }), { title: 'Build', completed: false, assignee: 'u1' });
    assert.equal(await tasks.get({ key: 'nothing' }), null);
    await tasks.set({ key: 'task-2', value: { title: 'Ship', points: 3 } });
    assert.deepEqual(await tasks.getAll(), [
      { key: 'task-1', value: { title: 'Build', completed: false, assignee: 'u1' } },
      { key: 'task-2', value: { title: 'Ship', completed: false, points: 3 } },
    ]);
    assert.deepEqual(await users[0]!.client.stores.notes.getAll(), []);
  });

  it('update merges a partial value (null removes an optional field); delete removes', async () => {
    const { users } = await fx.room(1, { stores });
    const tasks = users[0]!.client.stores.tasks;
    await tasks.set({ key: 't', value: { title: 'Build', assignee: 'u1' } });
    const updated = await tasks.update({ key: 't', value: { completed: true, assignee: null } });
    assert.deepEqual(updated.value, { title: 'Build', completed: true });
    assert.deepEqual(await tasks.get({ key: 't' }), { title: 'Build', completed: true });
    await assert.rejects(tasks.update({ key: 'missing', value: { completed: true } }), (e: CollabKitError) => e.code === 'NOT_FOUND');
    const deleted = await tasks.delete({ key: 't' });
    assert.equal(deleted.deleted, true);
    assert.equal(await tasks.get({ key: 't' }), null);
    assert.equal((await tasks.delete({ key: 't' })).deleted, false);
  });

  it('validates writes before sending them, as the server would', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    // Not even connected: a refusal that comes before any sending is a VALIDATION_ERROR, not NOT_CONNECTED.
    const offline = fx.client(token, { stores });
    const invalid = (field: string) => (e: CollabKitError) => e.code === 'VALIDATION_ERROR' && e.field === field;
    const tasks = offline.stores.tasks as any;
    await assert.rejects(tasks.set({ key: 'k', value: {} }), invalid('value.title'));
    await assert.rejects(tasks.set({ key: 'k', value: { title: 5 } }), invalid('value.title'));
    await assert.rejects(tasks.set({ key: 'k', value: { title: 'x', completed: 'yes' } }), invalid('value.completed'));
    await assert.rejects(tasks.set({ key: 'k', value: { title: 'x', owner: 'me' } }), invalid('value.owner'));
    await assert.rejects(tasks.set({ key: 'k', value: { title: 'x', points: Number.NaN } }), invalid('value.points'));
    await assert.rejects(tasks.set({ key: 'k', value: ['title'] }), invalid('value'));
    await assert.rejects(tasks.set({ key: '', value: { title: 'x' } }), invalid('key'));
    await assert.rejects(tasks.set({ key: 'a\u0007b', value: { title: 'x' } }), invalid('key'));
    await assert.rejects(tasks.set({ key: 'k'.repeat(257), value: { title: 'x' } }), invalid('key'));
    await assert.rejects(tasks.update({ key: 'k', value: { title: null } }), invalid('value.title'));
    await assert.rejects(tasks.update({ key: 'k', value: { nope: 1 } }), invalid('value.nope'));
    await assert.rejects(tasks.get({ key: '' }), invalid('key'));
    // Valid writes get as far as the connection check.
    await assert.rejects(tasks.set({ key: 'k'.repeat(256), value: { title: 'x', points: 2.5 } }), (e: CollabKitError) => e.code === 'NOT_CONNECTED');

    // The server agrees: the same value sent by a client that skips the checks is refused.
    await offline.connect();
    const raw = await fetchRaw(fx.server.url, fx.server.account, room.id);
    assert.equal(raw.status, 400);
    assert.equal(raw.body.error.code, 'VALIDATION_ERROR');
    assert.equal(raw.body.error.field, 'value.title');
  });

  it('defineStores refuses schemas the server would refuse', () => {
    const bad = (schema: unknown, field: string) =>
      assert.throws(() => defineStores(schema as never), (e: SchemaValidationError) => e instanceof SchemaValidationError && e.field === field);
    bad({ tasks: {} }, 'schemas.tasks');
    bad({ tasks: { a: { type: 'date' } } }, 'schemas.tasks.a.type');
    bad({ tasks: { a: { type: 'string', default: 1 } } }, 'schemas.tasks.a.default');
    bad({ tasks: { a: { type: 'string', extra: true } } }, 'schemas.tasks.a.extra');
    bad({ tasks: { '1a': { type: 'string' } } }, 'schemas.tasks.1a');
    bad({ '9tasks': { a: { type: 'string' } } }, 'schemas.9tasks');
    bad({ tasks: { a: { type: 'string', required: 'yes' } } }, 'schemas.tasks.a.required');
  });

  it("on('changed') fires for other clients' changes only, with { key, action, value }", async () => {
    const { roomId, users } = await fx.room(3, { stores });
    const [a, b, c] = users;
    const atA = new Recorder<[StoreChange<Task>]>((cb) => a!.client.stores.tasks.on('changed', cb));
    const atB = new Recorder<[StoreChange<Task>]>((cb) => b!.client.stores.tasks.on('changed', cb));
    const atC = new Recorder<[StoreChange<Task>]>((cb) => c!.client.stores.tasks.on('changed', cb));

    await a!.client.stores.tasks.set({ key: 'x', value: { title: 'From A' } });
    await b!.client.stores.tasks.update({ key: 'x', value: { completed: true } });
    await c!.client.stores.tasks.delete({ key: 'x' });

    await atA.until((calls) => calls.length === 2, 'A: update by B, delete by C');
    await atB.until((calls) => calls.length === 2, 'B: set by A, delete by C');
    await atC.until((calls) => calls.length === 2, 'C: set by A, update by B');
    assert.deepEqual(
      atA.calls.map(([ch]) => [ch.key, ch.action, ch.value]),
      [
        ['x', 'update', { title: 'From A', completed: true }],
        ['x', 'delete', null],
      ],
    );
    assert.deepEqual(atB.calls.map(([ch]) => ch.action), ['set', 'delete']);
    assert.deepEqual(atC.calls.map(([ch]) => [ch.action, ch.value]), [
      ['set', { title: 'From A', completed: false }],
      ['update', { title: 'From A', completed: true }],
    ]);
    assert.equal(atB.calls[0]![0].userId, a!.id);

    // A REST write reaches every client, with userId null.
    const put = await fx.server.rest('PUT', `/rooms/${roomId}/stores/tasks/rest-key`, { value: { title: 'From REST' } });
    assert.equal(put.status, 200);
    const [[fromRest]] = [await atA.find((ch) => ch.key === 'rest-key', 'REST write at A')];
    assert.equal(fromRest!.userId, null);
    assert.deepEqual(fromRest!.value, { title: 'From REST', completed: false });

    // The local copy follows: entries holds what is live.
    assert.deepEqual([...a!.client.stores.tasks.entries.keys()], ['rest-key']);
    await sleep(50);
    assert.equal(atC.calls.length, 3);

    // Unsubscribing stops the callback.
    atA.off();
    await b!.client.stores.tasks.set({ key: 'later', value: { title: 'L' } });
    await atC.find((ch) => ch.key === 'later', 'C sees the later write');
    assert.equal(atA.calls.some(([ch]) => ch.key === 'later'), false);
    atB.off();
    atC.off();
  });

  it('sync() loads the local copy and tells listeners what changed since', async () => {
    const room = await fx.server.createRoom();
    const one = await fx.server.createUser(room.id);
    const a = fx.client(one.token, { stores });
    await a.connect(); // not joined: no live events
    const rest = (key: string, title: string) =>
      fx.server.rest('PUT', `/rooms/${room.id}/stores/notes/${key}`, { value: { text: title } });
    await rest('n1', 'one');
    await a.stores.notes.sync();
    assert.deepEqual(Object.fromEntries(a.stores.notes.entries), { n1: { text: 'one' } });
    const changes = new Recorder<[StoreChange<{ text: string }>]>((cb) => a.stores.notes.on('changed', cb));
    await rest('n2', 'two');
    await fx.server.rest('DELETE', `/rooms/${room.id}/stores/notes/n1`);
    await sleep(50);
    assert.equal(changes.calls.length, 0, 'a socket that has not joined gets no events');
    await a.stores.notes.sync();
    assert.deepEqual(
      changes.calls.map(([ch]) => [ch.key, ch.action]),
      [
        ['n2', 'set'],
        ['n1', 'delete'],
      ],
    );
    assert.deepEqual(Object.fromEntries(a.stores.notes.entries), { n2: { text: 'two' } });
    changes.off();
  });

  it('a schema that differs from the one the server enforces fails connect()', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    // The first declaration of `shapes` registers it...
    const first = fx.client(token, { stores: defineStores({ shapes: { width: { type: 'number' } } }) });
    await first.connect();
    first.disconnect();
    // ...and a client with another shape for it is refused.
    const clash = defineStores({ shapes: { width: { type: 'string' } } });
    const client = fx.client(token, { stores: clash });
    await assert.rejects(client.connect(), (e: CollabKitError) => e.code === 'VALIDATION_ERROR' && e.field === 'schemas.shapes');
    assert.equal(client.socket.state, 'idle');
  });
});

async function fetchRaw(url: string, account: { accountId: string; token: string }, roomId: string) {
  const response = await fetch(`${url}/v1/accounts/${account.accountId}/rooms/${roomId}/stores/tasks/k`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${account.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: {} }),
  });
  return { status: response.status, body: (await response.json()) as any };
}
