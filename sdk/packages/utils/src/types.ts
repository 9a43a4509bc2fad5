// The objects CollabKit hands out, in the REST API, on the socket and in webhooks. Field names
// are the documented ones, casing included: objects are snake_case, StorageFile is camelCase.

/** ISO-8601 UTC timestamp with milliseconds, e.g. `2026-05-29T10:00:00.000Z`. */
export type Timestamp = string;

/** A room: `GET /rooms/:roomId`, `client.currentRoom`, webhook payloads. */
export interface CollabKitRoom {
  id: string;
  account_id: string;
  name: string;
  /** `null` when unset. */
  custom_id: string | null;
  created_at: Timestamp;
  state: 'active' | (string & {});
  /** Time the room has had at least one user online, including the running session. */
  duration_seconds: number;
  /** Users online now. */
  active_participants: number;
  /** Users ever created in the room (deleting one does not lower it). */
  total_users_created: number;
}

export type CollabKitUserStatus = 'online' | 'offline';

/** A user of a room. */
export interface CollabKitUser {
  id: string;
  room_id: string;
  name: string;
  profile_picture: string | null;
  custom_id: string | null;
  status: CollabKitUserStatus;
  created_at: Timestamp;
  /** Last time the user came online; `null` until it happens. */
  joined_at: Timestamp | null;
  /** Last time the user went offline; `null` until it happens. */
  left_at: Timestamp | null;
  /** The user's JWT: only in the REST list-users and get-user replies. */
  token?: string;
  /** User IDs this user follows (on the socket; the REST API omits them). */
  following?: string[];
  /** User IDs following this user (on the socket; the REST API omits them). */
  followers?: string[];
}

/** One online period of a user. */
export interface CollabKitUserSession {
  id: string;
  user_id: string;
  room_id: string;
  joined_at: Timestamp;
  /** `null` while online. */
  left_at: Timestamp | null;
}

/**
 * A user's presence: any JSON object (cursor, screen, selection, typing...). The server adds
 * `color`, a stable `#rrggbb` colour for the user.
 */
export interface PresenceState {
  /** Added by the server: the user's colour. */
  color?: string;
  [field: string]: unknown;
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A file in a room's storage (camelCase, as documented). */
export interface StorageFile {
  key: string;
  url: string;
  filename: string;
  mimeType: string;
  size: number;
  uploadedAt: Timestamp;
  uploadedBy: string;
}

/** The error object of the REST envelope and of the socket's `res` / `error` frames. */
export interface CollabKitErrorBody {
  code: CollabKitErrorCode;
  message: string;
  /** The offending field of a `VALIDATION_ERROR` (`value.title`, `key`, ...). */
  field?: string;
  /** The REST API's module (`Rooms`, `Users`, `Stores`, ...); absent on the socket. */
  module?: string;
}

/** Error codes of the server (REST and socket). */
export type ServerErrorCode =
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'BAD_REQUEST'
  | 'VALIDATION_ERROR'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  /** REST only: the request body did not arrive whole in time (408). */
  | 'REQUEST_TIMEOUT'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'RATE_LIMITED'
  | 'SERVICE_UNAVAILABLE'
  | 'INTERNAL_ERROR';

/** Error codes the client SDK raises itself (no server answer involved). */
export type ClientErrorCode =
  /** `connect()` was never called, or `disconnect()` was. */
  | 'NOT_CONNECTED'
  /** The socket could not be opened or authenticated (network, timeout). */
  | 'CONNECTION_FAILED'
  /** The connection closed before the server answered a write: its outcome is unknown. */
  | 'DISCONNECTED'
  /** The server rejected the JWT (`authFailed`, close code 4401). */
  | 'AUTH_FAILED'
  /** No answer within `requestTimeoutMs`. */
  | 'TIMEOUT';

export type CollabKitErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

// ---------------------------------------------------------------------------------------------
// Webhooks. One body serves both documented forms: `{ id, event, timestamp, room, user | users,
// data: { roomId, userId? } }`.

export type WebhookEventName =
  | 'participant.joined'
  | 'participant.left'
  | 'session.started'
  | 'session.closed'
  | 'user.created'
  | 'user.updated'
  | 'user.deleted'
  | 'file.uploaded'
  | 'file.deleted';

/** Users in webhook payloads never carry `token`. */
export type WebhookUser = Omit<CollabKitUser, 'token' | 'following' | 'followers'>;

interface WebhookBase<E extends WebhookEventName> {
  /** Unique per event; the same on every retry (use it to deduplicate). */
  id: string;
  event: E;
  timestamp: Timestamp;
  room: CollabKitRoom;
}

export interface ParticipantWebhookPayload
  extends WebhookBase<'participant.joined' | 'participant.left'> {
  user: WebhookUser;
  data: { roomId: string; userId: string };
}

export interface SessionStartedWebhookPayload extends WebhookBase<'session.started'> {
  data: { roomId: string };
}

export interface SessionClosedWebhookPayload extends WebhookBase<'session.closed'> {
  /** The users of the session that closed. */
  users: WebhookUser[];
  data: { roomId: string };
}

export interface UserWebhookPayload
  extends WebhookBase<'user.created' | 'user.updated' | 'user.deleted'> {
  user: WebhookUser;
  data: { roomId: string; userId: string };
}

/** A file uploaded or deleted (an addition); `user` is the uploader, absent once deleted. */
export interface FileWebhookPayload extends WebhookBase<'file.uploaded' | 'file.deleted'> {
  user?: WebhookUser;
  file: StorageFile;
  data: { roomId: string; userId?: string; key: string };
}

/** The JSON body of a webhook delivery; narrow it on `event`. */
export type WebhookPayload =
  | ParticipantWebhookPayload
  | SessionStartedWebhookPayload
  | SessionClosedWebhookPayload
  | UserWebhookPayload
  | FileWebhookPayload;

/** The payload of one event name. */
export type WebhookPayloadOf<E extends WebhookEventName> = Extract<WebhookPayload, { event: E }>;

/** A webhook registration (`secret` only in the creation reply). */
export interface WebhookRegistration {
  id: string;
  organization_id: string;
  url: string;
  secret?: string;
  events: WebhookEventName[];
  /** `null`: every room of the account. */
  room_id: string | null;
  enabled: boolean;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface WebhookDelivery {
  id: string;
  webhook_id: string;
  event: WebhookEventName;
  /** The JSON body sent, as a string. */
  payload: string;
  status: 'pending' | 'success' | 'failed';
  attempts: number;
  last_attempt_at: Timestamp | null;
  next_retry_at: Timestamp | null;
  status_code: number | null;
  created_at: Timestamp;
}

/** The first argument of a workflow: the same event as a webhook's body. */
export type WorkflowEvent = WebhookPayload;

export interface WorkflowExecution {
  id: string;
  workflow_id: string;
  event: WebhookEventName;
  status: 'success' | 'failed';
  /** The JSON of the return value, or the error message. */
  result: string;
  duration_ms: number;
  created_at: Timestamp;
}
