// `client.comments`: persisted threads of comments in the room (docs/comments.md). Arguments
// are checked as the server checks them before anything is sent; events tell the changes
// other clients make. A thread object from the server carries only its first comments (so
// that no answer grows with a thread); `getThread` gathers the rest, `listComments` pages them.

import type { JsonObject } from '@collab-kit/utils';
import type { Requester } from './connection.js';
import { Emitter } from './emitter.js';
import { CollabKitError } from './errors.js';
import { followPages } from './pages.js';
import type {
  Comment,
  CommentListPage,
  CommentPage,
  CommentThread,
  EventFrame,
  Params,
} from './protocol.js';

export type { Comment, CommentListPage, CommentPage, CommentReaction, CommentThread } from './protocol.js';

/** What each comment event's listeners get. */
export type CommentEvents = {
  /** Another user started a thread (with its first comment). */
  threadCreated: [thread: CommentThread];
  /** A thread was resolved or reopened. */
  threadUpdated: [thread: CommentThread];
  /** A thread is gone: its last comment was deleted, or the backend deleted it. */
  threadDeleted: [info: { threadId: string }];
  /** A reply. */
  commentCreated: [comment: Comment];
  /** An edit, or a reaction added or removed (the whole comment). */
  commentUpdated: [comment: Comment];
  /** A comment was deleted (by its author or the backend). */
  commentDeleted: [info: { commentId: string; threadId: string }];
};

export type CommentEventName = keyof CommentEvents;

const EVENTS: readonly CommentEventName[] = [
  'threadCreated',
  'threadUpdated',
  'threadDeleted',
  'commentCreated',
  'commentUpdated',
  'commentDeleted',
];

const THREAD_ID = /^thr_[0-9a-f]{32}$/;
const COMMENT_ID = /^cmt_[0-9a-f]{32}$/;
const MAX_EMOJI_CHARS = 32;
const MAX_PAGE_LIMIT = 100;

export interface CommentsHost {
  request: Requester;
}

export class Comments {
  private readonly events = new Emitter<CommentEvents>();

  constructor(private readonly host: CommentsHost) {}

  /** Starts a thread with its first comment; `metadata` (an object) is the thread's. */
  async createThread(args: { body: string; metadata?: JsonObject | null }): Promise<CommentThread> {
    const method = 'comments.createThread';
    const params = { body: body(args?.body, method), ...metadataParam(args?.metadata, method) };
    return (await this.host.request(method, params)).thread;
  }

  /** Adds a comment to a thread. */
  async reply(args: { threadId: string; body: string; metadata?: JsonObject | null }): Promise<Comment> {
    const method = 'comments.reply';
    const params = {
      threadId: threadId(args?.threadId, method),
      body: body(args?.body, method),
      ...metadataParam(args?.metadata, method),
    };
    return (await this.host.request(method, params)).comment;
  }

  /** Changes a comment's body and/or metadata (`null` clears it). The author only. */
  async edit(args: { commentId: string; body?: string; metadata?: JsonObject | null }): Promise<Comment> {
    const method = 'comments.edit';
    const params: Params<typeof method> = { commentId: commentId(args?.commentId, method) };
    if (args.body !== undefined) params.body = body(args.body, method);
    Object.assign(params, metadataParam(args.metadata, method));
    if (!('body' in params) && !('metadata' in params)) {
      throw invalid('params', 'give body, metadata or both', method);
    }
    return (await this.host.request(method, params)).comment;
  }

  /** Deletes a comment (the author only); the thread goes with its last comment. */
  async delete(args: { commentId: string }): Promise<{ commentId: string; threadDeleted: boolean }> {
    const method = 'comments.delete';
    return this.host.request(method, { commentId: commentId(args?.commentId, method) });
  }

  async resolve(args: { threadId: string }): Promise<CommentThread> {
    const method = 'comments.resolve';
    return (await this.host.request(method, { threadId: threadId(args?.threadId, method) })).thread;
  }

  async reopen(args: { threadId: string }): Promise<CommentThread> {
    const method = 'comments.reopen';
    return (await this.host.request(method, { threadId: threadId(args?.threadId, method) })).thread;
  }

  /** Adds the local user's reaction (idempotent). `emoji`: 1 to 32 characters, no whitespace. */
  async react(args: { commentId: string; emoji: string }): Promise<Comment> {
    const method = 'comments.react';
    const params = { commentId: commentId(args?.commentId, method), emoji: emoji(args?.emoji, method) };
    return (await this.host.request(method, params)).comment;
  }

  /** Removes the local user's reaction (idempotent). */
  async unreact(args: { commentId: string; emoji: string }): Promise<Comment> {
    const method = 'comments.unreact';
    const params = { commentId: commentId(args?.commentId, method), emoji: emoji(args?.emoji, method) };
    return (await this.host.request(method, params)).comment;
  }

  /**
   * A page of the room's threads, newest first, each with its first comments, as the server
   * answers it: continue from `nextOffset`.
   */
  async list(args: { resolved?: boolean; limit?: number; offset?: number } = {}): Promise<CommentPage> {
    const method = 'comments.list';
    const params: Params<typeof method> = {};
    if (args.resolved !== undefined) {
      if (typeof args.resolved !== 'boolean') throw invalid('resolved', 'resolved must be true or false', method);
      params.resolved = args.resolved;
    }
    if (args.limit !== undefined) {
      if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > MAX_PAGE_LIMIT) {
        throw invalid('limit', `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}`, method);
      }
      params.limit = args.limit;
    }
    if (args.offset !== undefined) {
      if (!Number.isInteger(args.offset) || args.offset < 0) {
        throw invalid('offset', 'offset must be an integer of 0 or more', method);
      }
      params.offset = args.offset;
    }
    return this.host.request(method, params, { retry: true });
  }

  /**
   * The thread with all its comments, oldest first: the SDK asks for the pages after the
   * first comments itself (`comment_count` is then the number of comments it holds, and
   * `comments_cursor` null). Comments written while it pages may or may not be in it.
   */
  async getThread(args: { threadId: string }): Promise<CommentThread> {
    const method = 'comments.getThread';
    const id = threadId(args?.threadId, method);
    const { thread } = await this.host.request(method, { threadId: id }, { retry: true });
    const first: CommentListPage = {
      comments: thread.comments,
      hasMore: typeof thread.comments_cursor === 'string',
      cursor: thread.comments_cursor ?? null,
    };
    // Keyed by ID: a comment is listed once even if a page repeated one.
    const comments = new Map<string, Comment>();
    await followPages(
      'comments.listComments',
      first,
      (after) => this.host.request('comments.listComments', { threadId: id, after }, { retry: true }),
      (page) => {
        for (const comment of page.comments) comments.set(comment.id, comment);
      },
    );
    const all = [...comments.values()];
    return { ...thread, comments: all, comment_count: all.length, comments_cursor: null };
  }

  /**
   * One page of a thread's comments, oldest first: from the start, or `after` a cursor (a
   * thread's `comments_cursor`, or a page's `cursor`). `limit`: 1 to the server's
   * `comments.page_comments` (50 by default, also the default).
   */
  async listComments(args: { threadId: string; after?: string; limit?: number }): Promise<CommentListPage> {
    const method = 'comments.listComments';
    const params: Params<typeof method> = { threadId: threadId(args?.threadId, method) };
    if (args.after !== undefined) {
      if (typeof args.after !== 'string') throw invalid('after', 'after must be a cursor from an earlier answer', method);
      params.after = args.after;
    }
    if (args.limit !== undefined) {
      // The upper bound is the server's setting: it answers VALIDATION_ERROR over it.
      if (!Number.isInteger(args.limit) || args.limit < 1) {
        throw invalid('limit', 'limit must be an integer of 1 or more', method);
      }
      params.limit = args.limit;
    }
    return this.host.request(method, params, { retry: true });
  }

  /**
   * `threadCreated`, `threadUpdated`, `threadDeleted`, `commentCreated`, `commentUpdated`,
   * `commentDeleted`: changes made by others (the author has its request's result). Only a
   * joined client receives them. Returns an unsubscribe function.
   */
  on<E extends CommentEventName>(event: E, callback: (...args: CommentEvents[E]) => void): () => void {
    if (!EVENTS.includes(event)) throw new CollabKitError('BAD_REQUEST', `Unknown comments event ${String(event)}`);
    return this.events.on(event, callback);
  }

  once<E extends CommentEventName>(event: E, callback: (...args: CommentEvents[E]) => void): () => void {
    return this.events.once(event, callback);
  }

  off<E extends CommentEventName>(event: E, callback: (...args: CommentEvents[E]) => void): void {
    this.events.off(event, callback);
  }

  // ----- called by the client -----

  handle(frame: EventFrame<CommentEventName>): void {
    switch (frame.event) {
      case 'threadCreated':
      case 'threadUpdated':
        if (frame.data.thread) this.events.emit(frame.event, frame.data.thread);
        return;
      case 'commentCreated':
      case 'commentUpdated':
        if (frame.data.comment) this.events.emit(frame.event, frame.data.comment);
        return;
      case 'threadDeleted':
        this.events.emit(frame.event, { threadId: String(frame.data.threadId) });
        return;
      case 'commentDeleted':
        this.events.emit(frame.event, { commentId: String(frame.data.commentId), threadId: String(frame.data.threadId) });
        return;
      default:
        frame satisfies never;
    }
  }
}

function invalid(field: string, message: string, method: string): CollabKitError {
  return new CollabKitError('VALIDATION_ERROR', message, { field, method });
}

function threadId(value: unknown, method: string): string {
  if (typeof value !== 'string' || !THREAD_ID.test(value)) {
    throw invalid('threadId', 'threadId must be a thread ID (thr_ and 32 hex digits)', method);
  }
  return value;
}

function commentId(value: unknown, method: string): string {
  if (typeof value !== 'string' || !COMMENT_ID.test(value)) {
    throw invalid('commentId', 'commentId must be a comment ID (cmt_ and 32 hex digits)', method);
  }
  return value;
}

// Rust's char::is_whitespace (Unicode White_Space); JS's \s differs on U+0085 and U+FEFF.
const WHITESPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;
const NOT_WHITESPACE = /[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

function isControl(char: string): boolean {
  const code = char.codePointAt(0)!;
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f);
}

/** Not blank; no control characters but line breaks and tabs. (The length limit is the server's setting.) */
function body(value: unknown, method: string): string {
  if (typeof value !== 'string') throw invalid('body', 'body must be a string', method);
  if (!NOT_WHITESPACE.test(value)) throw invalid('body', 'body must not be empty', method);
  if ([...value].some((c) => isControl(c) && c !== '\n' && c !== '\r' && c !== '\t')) {
    throw invalid('body', 'body must not contain control characters other than line breaks and tabs', method);
  }
  return value;
}

function emoji(value: unknown, method: string): string {
  const chars = typeof value === 'string' ? [...value] : [];
  if (
    typeof value !== 'string' ||
    chars.length === 0 ||
    chars.length > MAX_EMOJI_CHARS ||
    chars.some((c) => WHITESPACE.test(c) || isControl(c))
  ) {
    throw invalid('emoji', `emoji must be 1 to ${MAX_EMOJI_CHARS} characters without whitespace`, method);
  }
  return value;
}

function metadataParam(value: unknown, method: string): { metadata?: JsonObject | null } {
  if (value === undefined) return {};
  if (value === null) return { metadata: null };
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('metadata', 'metadata must be a JSON object or null', method);
  }
  return { metadata: value as JsonObject };
}
