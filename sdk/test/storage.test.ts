// client.storage: upload from Node (Blob and File), list with filters, getUrl, delete, the
// room's fileUploaded / fileDeleted events, and a token that opens its own room only.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitError, StorageFile } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { Recorder } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 1, 2, 3]);

describe('storage', () => {
  it('uploads, lists with filters, serves by URL and deletes', async () => {
    const { users } = await fx.room(2);
    const [a, b] = users;
    const uploadedAtB = new Recorder<[StorageFile]>((cb) => b!.client.storage.on('fileUploaded', cb));
    const deletedAtB = new Recorder<[{ key: string; file: StorageFile }]>((cb) => b!.client.storage.on('fileDeleted', cb));

    const image = await a!.client.storage.upload({ file: new Blob([PNG], { type: 'image/png' }), filename: 'pixel.png' });
    assert.match(image.key, /^[0-9a-f]{8}\/[0-9a-f]{32}\.png$/);
    assert.equal(a!.client.storage.getUrl({ key: image.key }), image.url);
    const notes = await b!.client.storage.upload({ file: new File(['hello'], 'notes.txt', { type: 'text/plain' }) });

    const [[seen]] = [await uploadedAtB.find((f) => f.key === image.key, 'B hears of the upload')];
    assert.equal(seen.uploadedBy, a!.id);
    assert.equal(seen.mimeType, 'image/png');

    const all = await a!.client.storage.getAll();
    assert.deepEqual(all.map((f) => f.key).sort(), [image.key, notes.key].sort());
    const listed = all.find((f) => f.key === notes.key)!;
    assert.equal(listed.filename, 'notes.txt');
    assert.equal(listed.size, 5);
    assert.equal(listed.uploadedBy, b!.id);
    assert.deepEqual((await a!.client.storage.getAll({ mimeType: 'image/' })).map((f) => f.key), [image.key]);
    assert.deepEqual(
      (await a!.client.storage.getAll({ mimeType: ['image/png', 'text/plain'] })).map((f) => f.key).sort(),
      [image.key, notes.key].sort(),
    );
    assert.deepEqual((await a!.client.storage.getAll({ userId: b!.id })).map((f) => f.key), [notes.key]);

    // The URL is public: plain fetch, no credentials.
    const served = await fetch(image.url);
    assert.equal(served.status, 200);
    assert.equal(served.headers.get('content-type'), 'image/png');
    assert.deepEqual(new Uint8Array(await served.arrayBuffer()), PNG);

    await a!.client.storage.delete({ key: image.key });
    await deletedAtB.find((d) => d.key === image.key, 'B hears of the deletion');
    assert.deepEqual((await b!.client.storage.getAll()).map((f) => f.key), [notes.key]);
    assert.equal((await fetch(image.url)).status, 404);
    await assert.rejects(a!.client.storage.delete({ key: image.key }), (error: CollabKitError) => error.code === 'NOT_FOUND');
    uploadedAtB.off();
    deletedAtB.off();
  });

  it("a token sees its own room's files only", async () => {
    const first = await fx.room(1);
    const second = await fx.room(1);
    const mine = await first.users[0]!.client.storage.upload({ file: new Blob(['mine']), filename: 'mine.txt' });
    assert.deepEqual(await second.users[0]!.client.storage.getAll(), []);
    await assert.rejects(
      second.users[0]!.client.storage.delete({ key: mine.key }),
      (error: CollabKitError) => error.code === 'NOT_FOUND',
    );
    await assert.rejects(
      first.users[0]!.client.storage.upload({ file: 'not a blob' as unknown as Blob }),
      (error: CollabKitError) => error.code === 'VALIDATION_ERROR',
    );
  });
});
