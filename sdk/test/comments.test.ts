// client.comments: threads, replies, edits, deletion, resolution, reactions, lists, events.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitError, Comment, CommentThread } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { Recorder, sleep } from './helpers/wait.js';

const fx = new Fixture();
before(() => fx.start());
after(() => fx.stop());

describe('comments', () => {
  it('threads and replies reach the others as threadCreated / commentCreated, never the author', async () => {
    const { roomId, users } = await fx.room(3);
    const [a, b, c] = users;
    const createdAtB = new Recorder<[CommentThread]>((cb) => b!.client.comments.on('threadCreated', cb));
    const createdAtA = new Recorder<[CommentThread]>((cb) => a!.client.comments.on('threadCreated', cb));
    const repliesAtA = new Recorder<[Comment]>((cb) => a!.client.comments.on('commentCreated', cb));
    const repliesAtC = new Recorder<[Comment]>((cb) => c!.client.comments.on('commentCreated', cb));

    const thread = await a!.client.comments.createThread({ body: 'Move this?', metadata: { x: 10, y: 20 } });
    assert.match(thread.id, /^thr_[0-9a-f]{32}$/);
    assert.equal(thread.room_id, roomId);
    assert.equal(thread.created_by, a!.id);
    assert.equal(thread.resolved, false);
    assert.deepEqual(thread.metadata, { x: 10, y: 20 });
    assert.equal(thread.comments.length, 1);
    assert.equal(thread.comments[0]!.body, 'Move this?');
    assert.equal(thread.comments[0]!.user_id, a!.id);

    const [[seen]] = [await createdAtB.find((t) => t.id === thread.id, 'B gets threadCreated')];
    assert.deepEqual(seen, thread);

    const reply = await b!.client.comments.reply({ threadId: thread.id, body: 'Yes,\nplease' });
    assert.match(reply.id, /^cmt_[0-9a-f]{32}$/);
    assert.equal(reply.thread_id, thread.id);
    assert.equal(reply.body, 'Yes,\nplease');
    assert.equal(reply.edited_at, null);
    await repliesAtA.find((cm) => cm.id === reply.id, 'A gets the reply');
    await repliesAtC.find((cm) => cm.id === reply.id, 'C gets the reply');
    await sleep(100);
    assert.equal(createdAtA.calls.length, 0, 'the author does not get its own threadCreated');

    const fetched = await c!.client.comments.getThread({ threadId: thread.id });
    assert.deepEqual(fetched.comments.map((cm) => cm.id), [thread.comments[0]!.id, reply.id]);
    for (const r of [createdAtA, createdAtB, repliesAtA, repliesAtC]) r.off();
  });

  it('edits and deletions are the author’s; the thread goes with its last comment', async () => {
    const { users } = await fx.room(2);
    const [a, b] = users;
    const updatedAtB = new Recorder<[Comment]>((cb) => b!.client.comments.on('commentUpdated', cb));
    const deletedAtB = new Recorder<[{ commentId: string; threadId: string }]>((cb) => b!.client.comments.on('commentDeleted', cb));
    const threadGoneAtB = new Recorder<[{ threadId: string }]>((cb) => b!.client.comments.on('threadDeleted', cb));

    const thread = await a!.client.comments.createThread({ body: 'Draft' });
    const first = thread.comments[0]!;
    const edited = await a!.client.comments.edit({ commentId: first.id, body: 'Final', metadata: { pinned: true } });
    assert.equal(edited.body, 'Final');
    assert.deepEqual(edited.metadata, { pinned: true });
    assert.ok(edited.edited_at);
    await updatedAtB.find((cm) => cm.id === first.id && cm.body === 'Final', 'B gets the edit');
    const cleared = await a!.client.comments.edit({ commentId: first.id, metadata: null });
    assert.equal(cleared.metadata, null);

    await assert.rejects(b!.client.comments.edit({ commentId: first.id, body: 'Mine now' }), (e: CollabKitError) => e.code === 'FORBIDDEN');
    await assert.rejects(b!.client.comments.delete({ commentId: first.id }), (e: CollabKitError) => e.code === 'FORBIDDEN');

    const reply = await b!.client.comments.reply({ threadId: thread.id, body: 'A reply' });
    const removed = await b!.client.comments.delete({ commentId: reply.id });
    assert.deepEqual(removed, { commentId: reply.id, threadDeleted: false });
    const last = await a!.client.comments.delete({ commentId: first.id });
    assert.equal(last.threadDeleted, true);
    await deletedAtB.find((d) => d.commentId === first.id && d.threadId === thread.id, 'B gets commentDeleted');
    await threadGoneAtB.find((d) => d.threadId === thread.id, 'B gets threadDeleted');
    await assert.rejects(a!.client.comments.getThread({ threadId: thread.id }), (e: CollabKitError) => e.code === 'NOT_FOUND');
    for (const r of [updatedAtB, deletedAtB, threadGoneAtB]) r.off();
  });

  it('resolve / reopen and reactions, idempotent, with threadUpdated / commentUpdated', async () => {
    const { users } = await fx.room(2);
    const [a, b] = users;
    const threadsAtA = new Recorder<[CommentThread]>((cb) => a!.client.comments.on('threadUpdated', cb));
    const commentsAtA = new Recorder<[Comment]>((cb) => a!.client.comments.on('commentUpdated', cb));
    const thread = await a!.client.comments.createThread({ body: 'Ready?' });
    const commentId = thread.comments[0]!.id;

    const resolved = await b!.client.comments.resolve({ threadId: thread.id });
    assert.equal(resolved.resolved, true);
    assert.equal(resolved.resolved_by, b!.id);
    assert.ok(resolved.resolved_at);
    await threadsAtA.find((t) => t.id === thread.id && t.resolved, 'A sees it resolved');
    assert.equal((await b!.client.comments.resolve({ threadId: thread.id })).resolved, true, 'idempotent');
    const reopened = await b!.client.comments.reopen({ threadId: thread.id });
    assert.equal(reopened.resolved, false);
    assert.equal(reopened.resolved_by, null);
    await threadsAtA.find((t) => t.id === thread.id && !t.resolved, 'A sees it reopened');

    const reacted = await b!.client.comments.react({ commentId, emoji: '👍' });
    assert.deepEqual(reacted.reactions, [{ emoji: '👍', user_ids: [b!.id] }]);
    await b!.client.comments.react({ commentId, emoji: '👍' });
    await b!.client.comments.react({ commentId, emoji: ':tada:' });
    await commentsAtA.find((cm) => cm.reactions.length === 2, 'A sees both reactions');
    const unreacted = await b!.client.comments.unreact({ commentId, emoji: '👍' });
    assert.deepEqual(unreacted.reactions, [{ emoji: ':tada:', user_ids: [b!.id] }]);
    await commentsAtA.find((cm) => cm.reactions.length === 1, 'A sees the removal');
    await sleep(100);
    // One resolve, one reopen; two reactions added and one removed (the repeated ones sent nothing).
    assert.equal(threadsAtA.calls.length, 2);
    assert.equal(commentsAtA.calls.length, 3);
    threadsAtA.off();
    commentsAtA.off();
  });

  it('list() pages threads newest first and filters on resolved', async () => {
    const { users } = await fx.room(1);
    const client = users[0]!.client;
    const made: CommentThread[] = [];
    for (let i = 1; i <= 3; i++) made.push(await client.comments.createThread({ body: `Thread ${i}` }));
    await client.comments.resolve({ threadId: made[0]!.id });
    const all = await client.comments.list();
    assert.equal(all.total, 3);
    assert.deepEqual(all.threads.map((t) => t.id), made.map((t) => t.id).reverse());
    const page = await client.comments.list({ limit: 1, offset: 1 });
    assert.deepEqual([page.limit, page.offset, page.total], [1, 1, 3]);
    assert.equal(page.threads[0]!.id, made[1]!.id);
    const open = await client.comments.list({ resolved: false });
    assert.deepEqual(open.threads.map((t) => t.id).sort(), [made[1]!.id, made[2]!.id].sort());
    const done = await client.comments.list({ resolved: true });
    assert.deepEqual(done.threads.map((t) => t.id), [made[0]!.id]);
  });

  it('checks arguments before sending, as the server would', async () => {
    const room = await fx.server.createRoom();
    const { token } = await fx.server.createUser(room.id);
    const offline = fx.client(token);
    const invalid = (field: string) => (e: CollabKitError) => e.code === 'VALIDATION_ERROR' && e.field === field;
    const comments = offline.comments as any;
    await assert.rejects(comments.createThread({ body: '   \n' }), invalid('body'));
    await assert.rejects(comments.createThread({ body: 'bell\u0007' }), invalid('body'));
    await assert.rejects(comments.createThread({ body: 'x', metadata: [1] }), invalid('metadata'));
    await assert.rejects(comments.reply({ threadId: 'thr_123', body: 'x' }), invalid('threadId'));
    await assert.rejects(comments.edit({ commentId: `cmt_${'a'.repeat(32)}` }), invalid('params'));
    await assert.rejects(comments.react({ commentId: `cmt_${'a'.repeat(32)}`, emoji: 'two words' }), invalid('emoji'));
    await assert.rejects(comments.react({ commentId: `cmt_${'a'.repeat(32)}`, emoji: 'x'.repeat(33) }), invalid('emoji'));
    await assert.rejects(comments.list({ limit: 101 }), invalid('limit'));
    await assert.rejects(comments.getThread({ threadId: `THR_${'a'.repeat(32)}` }), invalid('threadId'));
    // A valid call gets as far as the connection check.
    await assert.rejects(comments.createThread({ body: 'tabs\tand\r\nbreaks' }), (e: CollabKitError) => e.code === 'NOT_CONNECTED');
    // The server agrees on an unknown but well-formed ID.
    await offline.connect();
    await assert.rejects(offline.comments.getThread({ threadId: `thr_${'0'.repeat(32)}` }), (e: CollabKitError) => e.code === 'NOT_FOUND');
  });
});
