// Comments in pages: a thread object carries only its first comments (two here,
// COLLABKIT_COMMENTS_PAGE_COMMENTS=2) with `comment_count` and `comments_cursor`; the rest come
// from comments.listComments. Pages also end at a byte budget (4 KiB here,
// COLLABKIT_LIMITS_MAX_PAGE_BYTES), so a page of threads can hold fewer than asked. getThread()
// must gather every comment, listComments() must page, list() must show what the server sent.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CollabKitError, CommentThread } from '@collab-kit/client';
import { Fixture } from './helpers/fixture.js';
import { SocketSpy } from './helpers/spy-socket.js';

const PAGE = 2;
const PAGE_BYTES = 4096;

const fx = new Fixture();
before(() => fx.start({ COLLABKIT_COMMENTS_PAGE_COMMENTS: String(PAGE), COLLABKIT_LIMITS_MAX_PAGE_BYTES: String(PAGE_BYTES) }));
after(() => fx.stop());

/** A joined client, and a thread of `count` comments (`c1`, `c2`, ...) by it. */
async function threadOf(count: number, options: { WebSocket?: SocketSpy['WebSocket'] } = {}) {
  const { users } = await fx.room(1, options);
  const client = users[0]!.client;
  const thread = await client.comments.createThread({ body: 'c1' });
  const ids = [thread.comments[0]!.id];
  for (let i = 2; i <= count; i++) ids.push((await client.comments.reply({ threadId: thread.id, body: `c${i}` })).id);
  return { client, thread, ids };
}

describe('comments in pages', () => {
  it('getThread() resolves every comment, in order, paging from comments_cursor', async () => {
    const spy = new SocketSpy();
    const { client, thread, ids } = await threadOf(7, { WebSocket: spy.WebSocket });
    spy.clear();
    const whole = await client.comments.getThread({ threadId: thread.id });
    assert.deepEqual(whole.comments.map((c) => c.id), ids);
    assert.deepEqual(whole.comments.map((c) => c.body), ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7']);
    assert.equal(whole.comment_count, 7);
    assert.equal(whole.comments_cursor, null);
    // The server's thread had two, then three pages of at most two came.
    const answered = spy.resultOf(spy.requests('comments.getThread')[0]!).thread;
    assert.equal(answered.comments.length, PAGE);
    assert.equal(answered.comment_count, 7);
    const pages = spy.requests('comments.listComments');
    const cursors = [answered.comments_cursor, ...pages.slice(0, -1).map((r) => spy.resultOf(r).cursor)];
    assert.deepEqual(pages.map((r) => r.params.after), cursors, 'each page from the previous cursor');
    assert.equal(pages.length, 3);
    assert.ok(pages.every((r) => r.params.threadId === thread.id));
  });

  it('listComments() pages a thread: from the start, after a cursor, with a limit', async () => {
    const { client, thread, ids } = await threadOf(5);
    const first = await client.comments.listComments({ threadId: thread.id });
    assert.deepEqual(first.comments.map((c) => c.id), ids.slice(0, 2));
    assert.equal(first.hasMore, true);
    assert.equal(typeof first.cursor, 'string');
    const second = await client.comments.listComments({ threadId: thread.id, after: first.cursor!, limit: 1 });
    assert.deepEqual(second.comments.map((c) => c.id), [ids[2]]);
    const rest = await client.comments.listComments({ threadId: thread.id, after: second.cursor! });
    assert.deepEqual(rest.comments.map((c) => c.id), ids.slice(3));
    assert.equal(rest.hasMore, false);
    assert.equal(rest.cursor, null);

    // A thread's own cursor continues after the comments it carries.
    const listed = (await client.comments.list()).threads.find((t) => t.id === thread.id)!;
    const afterListed = await client.comments.listComments({ threadId: thread.id, after: listed.comments_cursor! });
    assert.deepEqual(afterListed.comments.map((c) => c.id), ids.slice(2, 4));

    // The limit's upper bound is the server's setting; the SDK checks the rest before sending.
    const invalid = (field: string) => (e: CollabKitError) => e.code === 'VALIDATION_ERROR' && e.field === field;
    await assert.rejects(client.comments.listComments({ threadId: thread.id, limit: PAGE + 1 }), invalid('limit'));
    await assert.rejects(client.comments.listComments({ threadId: thread.id, limit: 0 }), invalid('limit'));
    await assert.rejects(client.comments.listComments({ threadId: 'thr_1', after: '0' }), invalid('threadId'));
    await assert.rejects(client.comments.listComments({ threadId: thread.id, after: 5 as never }), invalid('after'));
    await assert.rejects(
      client.comments.listComments({ threadId: `thr_${'0'.repeat(32)}` }),
      (e: CollabKitError) => e.code === 'NOT_FOUND',
    );
  });

  it('list() returns the server page as is: first comments, comment_count, comments_cursor, nextOffset', async () => {
    const { users } = await fx.room(1);
    const client = users[0]!.client;
    const long = await client.comments.createThread({ body: 'long' });
    for (let i = 2; i <= 4; i++) await client.comments.reply({ threadId: long.id, body: `reply ${i}` });
    const short = await client.comments.createThread({ body: 'short' });
    const third = await client.comments.createThread({ body: 'third' });

    const page = await client.comments.list({ limit: 2 });
    assert.deepEqual(page.threads.map((t) => t.id), [third.id, short.id]);
    assert.deepEqual([page.total, page.limit, page.offset, page.nextOffset], [3, 2, 0, 2]);
    const last = await client.comments.list({ limit: 2, offset: page.nextOffset! });
    assert.equal(last.nextOffset, null);
    const listed = last.threads[0]!;
    assert.equal(listed.id, long.id);
    assert.equal(listed.comments.length, PAGE, 'only the first comments');
    assert.equal(listed.comment_count, 4);
    assert.equal(typeof listed.comments_cursor, 'string');
    assert.equal(page.threads[0]!.comment_count, 1);
    assert.equal(page.threads[0]!.comments_cursor, null);
  });

  it('list() pages that end early by bytes are followed with nextOffset; getThread() gathers big comments', async () => {
    const { users } = await fx.room(1);
    const client = users[0]!.client;
    // Each thread weighs over a third of the budget: a page holds at most three of them.
    const body = 'x'.repeat(1500);
    const made: CommentThread[] = [];
    for (let i = 0; i < 5; i++) made.push(await client.comments.createThread({ body: `${i} ${body}` }));
    const seen: string[] = [];
    let offset: number | null = 0;
    let pages = 0;
    while (offset !== null) {
      const page = await client.comments.list({ limit: 5, offset });
      assert.ok(page.threads.length < 5 || page.nextOffset === null, 'a page of big threads ends before the limit');
      seen.push(...page.threads.map((t) => t.id));
      offset = page.nextOffset;
      pages++;
    }
    assert.ok(pages > 1, `${pages} pages`);
    assert.deepEqual(seen, made.map((t) => t.id).reverse());

    for (let i = 0; i < 4; i++) await client.comments.reply({ threadId: made[0]!.id, body: `${i} ${body}` });
    const whole = await client.comments.getThread({ threadId: made[0]!.id });
    assert.equal(whole.comments.length, 5);
    assert.deepEqual(whole.comments.map((c) => c.body.slice(0, 1)), ['0', '0', '1', '2', '3']);
  });
});
