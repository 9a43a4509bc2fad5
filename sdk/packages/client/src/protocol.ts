// The wire protocol of docs/protocol.md as types: the frames in both directions, every
// method's params and result (`Requests`), every event's data (`Events`), the error and close
// codes. The connection's `request` and the event dispatch are typed by the two maps, so a
// misspelled method or event, or params of the wrong shape, do not compile. docs/protocol.md
// stays the readable contract; this file mirrors it.
//
// A Rust test (src/realtime/sdk_mirror.rs) keeps this file and the server in step. It reads
// only the blocks between a `// wire-map: <name>` line and the next `// wire-map: end` line,
// by this rule: an entry starts on a line indented exactly as the `// wire-map:` line (not a
// comment), with its key first (`'room.join': {`, `userJoined: {`, `NORMAL: 1000,`); lines
// indented deeper, and a closing line (`};`) at its indentation, continue it. In `requests`,
// an entry's params are written `params: NoParams;` or `params: { field: Type; optional?: Type };`
// (no braces inside).
// The test fails when a method, an event, a params field, a close code or a limit is on one
// side only. See docs/sdk.md.

import type {
  CollabKitRoom,
  CollabKitUser,
  JsonObject,
  PresenceState,
  ServerErrorCode,
  StorageFile,
  StoresDefinition,
} from '@collab-kit/utils';

export const SUBPROTOCOL = 'collabkit.v1';
/**
 * The protocol version the SDK speaks (docs/protocol.md, Versions): 2 receives presence in
 * batches, one `presence` event per tick. An older server answers 1 and sends one event per
 * state; the SDK reads both.
 */
export const PROTOCOL_VERSION = 2;

// ---------------------------------------------------------------------------------------------
// Objects the server sends.

/** A user as the server sends it on the socket: with its follow graph (user IDs). */
export type RawUser = CollabKitUser & { following: string[]; followers: string[] };

/** One user's presence; `state` is `null` when the user left or cleared it. */
export interface PresenceEntry {
  userId: string;
  state: PresenceState | null;
}

/** A store entry's fields, checked by the server against the store's schema. */
export type StoreFields = { [field: string]: string | number | boolean };

/** What `stores.update` takes: some fields, `null` removing an optional one. */
export type StoreFieldsPatch = { [field: string]: string | number | boolean | null };

export type StoreAction = 'set' | 'update' | 'delete';

/** An entry as `stores.set`, `stores.update` answer it. */
export interface StoreEntryResult {
  key: string;
  value: StoreFields;
  version: number;
}

/** One entry of a `stores.getAll` page. */
export interface StoreEntryRow extends StoreEntryResult {
  updated_at: string;
  /** `null`: written by the REST API. */
  updated_by: string | null;
}

/** One change of a `stores.sync` page: a key's latest state. */
export interface StoreSyncChange {
  store: string;
  key: string;
  action: 'set' | 'delete';
  /** The whole value (`set`), or `null` (`delete`). */
  value: StoreFields | null;
  version: number;
}

/**
 * A comment thread: the first comment is the one it was started with. From the server
 * (events, `list`, `resolve`...) `comments` holds only its first comments when it has many:
 * `comment_count` says how many there are and `comments_cursor` where the rest start.
 * `getThread` resolves it with all of them.
 */
export interface CommentThread {
  /** `thr_` followed by 32 hex digits. */
  id: string;
  room_id: string;
  created_by: string;
  created_at: string;
  /** The last change to the thread or any of its comments. */
  updated_at: string;
  resolved: boolean;
  resolved_at: string | null;
  resolved_by: string | null;
  metadata: JsonObject | null;
  /** How many comments the thread has (`comments` may hold fewer). */
  comment_count: number;
  /**
   * Where the comments after those in `comments` start: the `after` of `listComments`; `null`
   * when `comments` holds them all.
   */
  comments_cursor: string | null;
  /** The first comments (all of them from `getThread`), oldest first. */
  comments: Comment[];
}

export interface Comment {
  /** `cmt_` followed by 32 hex digits. */
  id: string;
  thread_id: string;
  room_id: string;
  /** The author. */
  user_id: string;
  body: string;
  metadata: JsonObject | null;
  created_at: string;
  /** `null` until the first edit. */
  edited_at: string | null;
  /** One entry per emoji, in the order each was first used. */
  reactions: CommentReaction[];
}

export interface CommentReaction {
  emoji: string;
  /** The users who reacted with it, in the order they did. */
  user_ids: string[];
}

/** A page of `list`: threads newest first, each with its first comments. */
export interface CommentPage {
  threads: CommentThread[];
  /** Threads that match, in every page. */
  total: number;
  limit: number;
  offset: number;
  /**
   * The `offset` of the next page, `null` after the last one. A page can hold fewer than
   * `limit` threads (the server bounds its size in bytes): page with this, not `offset + limit`.
   */
  nextOffset: number | null;
}

/** A page of a thread's comments (`listComments`), oldest first. */
export interface CommentListPage {
  comments: Comment[];
  /** Whether more comments follow: ask again with `after: cursor`. */
  hasMore: boolean;
  /** Where the next page starts; `null` after the last one. */
  cursor: string | null;
}

/** A page of the room's users, oldest first: while `hasMore`, ask again with `after: cursor`. */
export interface UsersPage {
  users: RawUser[];
  hasMore: boolean;
  cursor: string | null;
}

// ---------------------------------------------------------------------------------------------
// Requests: method name -> params and result.

/** The params of a method that takes none (the server refuses any field). */
export type NoParams = Record<string, never>;
/** The result of a method that answers nothing but success. */
export type EmptyResult = Record<string, never>;

export interface RoomJoinResult {
  room: CollabKitRoom;
  user: RawUser;
  /** The first page of the room's users, oldest first. */
  users: RawUser[];
  /** Where the next page starts (`users.getAll { after }`); `null` when that was all. */
  usersCursor: string | null;
  /** Every current state (of the others). */
  presence: PresenceEntry[];
}

export interface RoomGetResult extends UsersPage {
  room: CollabKitRoom;
}

export interface StoresGetAllResult {
  entries: StoreEntryRow[];
  version: number;
  hasMore: boolean;
  cursor: string | null;
}

export interface StoresSyncResult {
  changes: StoreSyncChange[];
  version: number;
  /** The changes are the whole contents (as `set`s): drop the local copy first. */
  reset: boolean;
  hasMore: boolean;
  /** The next page's `since` (or, during a reset, `after`). */
  cursor: number | null;
}

export interface Requests {
  // wire-map: requests
  'room.join': { params: NoParams; result: RoomJoinResult };
  'room.leave': { params: NoParams; result: EmptyResult };
  'room.get': { params: { roomId?: string; after?: string }; result: RoomGetResult };
  'users.get': { params: { userId?: string }; result: { user: RawUser } };
  'users.getAll': { params: { after?: string }; result: UsersPage };
  'users.follow': { params: { userId: string }; result: { user: RawUser } };
  'users.unfollow': { params: { userId: string }; result: { user: RawUser } };
  'presence.update': { params: { state: PresenceState }; result: EmptyResult };
  'presence.sync': { params: { target: string }; result: { states: PresenceEntry[] } };
  'presence.unsync': { params: NoParams; result: EmptyResult };
  broadcast: { params: { event: string; data: unknown; userIds?: string[] }; result: { recipients: number } };
  'stores.declare': { params: { schemas: StoresDefinition }; result: { schemas: StoresDefinition } };
  'stores.set': { params: { store: string; key: string; value: StoreFields }; result: StoreEntryResult };
  'stores.update': { params: { store: string; key: string; value: StoreFieldsPatch }; result: StoreEntryResult };
  'stores.delete': {
    params: { store: string; key: string };
    result: { key: string; deleted: boolean; version: number | null };
  };
  'stores.get': {
    params: { store: string; key: string };
    result: { key: string; value: StoreFields | null; version: number | null };
  };
  'stores.getAll': { params: { store: string; after?: string }; result: StoresGetAllResult };
  'stores.sync': { params: { store?: string; since?: number; after?: number }; result: StoresSyncResult };
  'comments.createThread': { params: { body: string; metadata?: JsonObject | null }; result: { thread: CommentThread } };
  'comments.reply': {
    params: { threadId: string; body: string; metadata?: JsonObject | null };
    result: { comment: Comment };
  };
  'comments.edit': {
    params: { commentId: string; body?: string; metadata?: JsonObject | null };
    result: { comment: Comment };
  };
  'comments.delete': { params: { commentId: string }; result: { commentId: string; threadDeleted: boolean } };
  'comments.resolve': { params: { threadId: string }; result: { thread: CommentThread } };
  'comments.reopen': { params: { threadId: string }; result: { thread: CommentThread } };
  'comments.react': { params: { commentId: string; emoji: string }; result: { comment: Comment } };
  'comments.unreact': { params: { commentId: string; emoji: string }; result: { comment: Comment } };
  'comments.list': { params: { resolved?: boolean; limit?: number; offset?: number }; result: CommentPage };
  'comments.getThread': { params: { threadId: string }; result: { thread: CommentThread } };
  'comments.listComments': { params: { threadId: string; after?: string; limit?: number }; result: CommentListPage };
  // wire-map: end
}

export type Method = keyof Requests;
export type Params<M extends Method> = Requests[M]['params'];
export type Result<M extends Method> = Requests[M]['result'];

/** A method's params as an argument: one that needs no field may be left out. */
export type ParamsArg<M extends Method> = NoParams extends Params<M> ? [params?: Params<M>] : [params: Params<M>];

// ---------------------------------------------------------------------------------------------
// Events: event name -> data.

export interface Events {
  // wire-map: events
  userJoined: { user: RawUser };
  userLeft: { user: RawUser };
  userCreated: { user: RawUser };
  userUpdated: { user: RawUser };
  userDeleted: { user: RawUser };
  /** Version 2: every state of the room's last presence tick; version 1: one state. */
  presence: { states: PresenceEntry[] } | PresenceEntry;
  broadcast: { event: string; data: unknown; userId: string };
  roomDeleted: { roomId: string };
  changed: {
    store: string;
    key: string;
    action: StoreAction;
    /** `null` on delete. */
    value: StoreFields | null;
    version: number;
    /** `null` for a REST write. */
    userId: string | null;
  };
  threadCreated: { thread: CommentThread };
  threadUpdated: { thread: CommentThread };
  threadDeleted: { threadId: string };
  commentCreated: { comment: Comment };
  commentUpdated: { comment: Comment };
  commentDeleted: { commentId: string; threadId: string };
  fileUploaded: { file: StorageFile };
  fileDeleted: { key: string; file: StorageFile };
  // wire-map: end
}

export type EventName = keyof Events;

/** Every event name, for telling a known event from a newer server's (the compiler keeps it whole). */
const EVENT_NAMES: { readonly [E in EventName]: true } = {
  userJoined: true,
  userLeft: true,
  userCreated: true,
  userUpdated: true,
  userDeleted: true,
  presence: true,
  broadcast: true,
  roomDeleted: true,
  changed: true,
  threadCreated: true,
  threadUpdated: true,
  threadDeleted: true,
  commentCreated: true,
  commentUpdated: true,
  commentDeleted: true,
  fileUploaded: true,
  fileDeleted: true,
};

export function isEventName(name: string): name is EventName {
  return Object.hasOwn(EVENT_NAMES, name);
}

// ---------------------------------------------------------------------------------------------
// Errors and close codes.

/** The codes of `res` errors, `error` frames and `authFailed` (the REST API's, as documented). */
export type WireErrorCode = Extract<
  ServerErrorCode,
  | 'UNAUTHORIZED'
  | 'BAD_REQUEST'
  | 'VALIDATION_ERROR'
  | 'NOT_FOUND'
  | 'FORBIDDEN'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMITED'
  | 'SERVICE_UNAVAILABLE'
  | 'INTERNAL_ERROR'
>;

/** The error object of `res` and `error` frames; a newer server may send another code. */
export interface ErrorBody {
  code: WireErrorCode | (string & {});
  message: string;
  /** The offending field of a `VALIDATION_ERROR` (`value.title`, `key`, ...). */
  field?: string;
}

/** Why the server closes a socket (docs/protocol.md, "Close codes"). */
export const CloseCode = {
  // wire-map: close
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
  TOO_SLOW: 4000,
  DEAD_PEER: 4001,
  AUTH_FAILED: 4401,
  GONE: 4404,
  // wire-map: end
} as const;

// ---------------------------------------------------------------------------------------------
// Frames.

/** The server's limits, from `welcome`. */
export interface ServerLimits {
  // wire-map: limits
  maxMessageBytes: number;
  maxBroadcastBytes: number;
  maxPresenceBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  // wire-map: end
}

/** What the server says on accepting a socket (the `welcome` frame without its `type`). */
export interface Welcome {
  protocol: number;
  connectionId: string;
  user: RawUser;
  room: CollabKitRoom;
  heartbeatIntervalMs: number;
  limits: ServerLimits;
}

/** A request's correlation ID, echoed in its response. */
export type RequestId = number | string;

export interface AuthFrame {
  type: 'auth';
  token: string;
  protocol: number;
}

/** A request; without `id`, a notification (no answer; a failure comes as an `error` frame). */
export interface RequestFrame<M extends Method = Method> {
  type: 'req';
  id?: RequestId;
  method: M;
  params?: Params<M>;
}

export interface PingFrame {
  type: 'ping';
}

export type ClientFrame = AuthFrame | RequestFrame | PingFrame;

export interface WelcomeFrame extends Welcome {
  type: 'welcome';
}

export interface AuthFailedFrame {
  type: 'authFailed';
  code: string;
  message: string;
}

/**
 * The answer to a request. Its `result` is the result of the method of the request with that
 * `id`: the frame alone does not say which, the connection does.
 */
export type ResponseFrame =
  | { type: 'res'; id: RequestId; ok: true; result: unknown }
  | { type: 'res'; id: RequestId; ok: false; error: ErrorBody };

export type EventFrame<E extends EventName = EventName> = E extends EventName
  ? { type: 'event'; event: E; data: Events[E] }
  : never;

export interface ErrorFrame {
  type: 'error';
  error: ErrorBody;
}

export interface PongFrame {
  type: 'pong';
}

export type ServerFrame = WelcomeFrame | AuthFailedFrame | ResponseFrame | EventFrame | ErrorFrame | PongFrame;

/** Encodes a frame for the socket. */
export function encodeFrame<M extends Method>(frame: AuthFrame | RequestFrame<M> | PingFrame): string {
  return JSON.stringify(frame);
}

/**
 * Reads a server frame. The envelope is checked (its type, a response's `id` and `ok`, an
 * error's body, a known event name with an object as data); what it carries, a welcome, a
 * result, an event's data, is the server's word, as docs/protocol.md gives it and as the Rust
 * test holds it to the maps above. `undefined` for what is not a frame of this protocol (a
 * newer server's frame type or event included): the SDK ignores it.
 */
export function readServerFrame(text: string): ServerFrame | undefined {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(frame)) return undefined;
  switch (frame.type) {
    case 'welcome':
      return frame as unknown as WelcomeFrame;
    case 'authFailed':
      return {
        type: 'authFailed',
        code: typeof frame.code === 'string' ? frame.code : 'UNAUTHORIZED',
        message: typeof frame.message === 'string' ? frame.message : 'authFailed',
      };
    case 'res': {
      const { id } = frame;
      if (typeof id !== 'number' && typeof id !== 'string') return undefined;
      return frame.ok
        ? { type: 'res', id, ok: true, result: frame.result ?? {} }
        : { type: 'res', id, ok: false, error: errorBody(frame.error) };
    }
    case 'event': {
      const { event, data } = frame;
      if (typeof event !== 'string' || !isEventName(event) || !isObject(data)) return undefined;
      return { type: 'event', event, data } as EventFrame;
    }
    case 'error':
      return { type: 'error', error: errorBody(frame.error) };
    case 'pong':
      return { type: 'pong' };
    default:
      return undefined;
  }
}

function errorBody(value: unknown): ErrorBody {
  if (!isObject(value) || typeof value.code !== 'string' || typeof value.message !== 'string') {
    return { code: 'INTERNAL_ERROR', message: 'error' };
  }
  return {
    code: value.code,
    message: value.message,
    ...(typeof value.field === 'string' ? { field: value.field } : {}),
  };
}

function isObject(value: unknown): value is { [key: string]: unknown } {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
