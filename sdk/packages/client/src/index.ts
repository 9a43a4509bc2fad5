// @collab-kit/client: the CollabKit client SDK.
//
//   import CollabKitClient from '@collab-kit/client';
//   const client = new CollabKitClient({ serverUrl, authToken, stores });
//   await client.connect();
//   await client.join();

import { CollabKitClient } from './client.js';

export default CollabKitClient;
export { CollabKitClient, SocketApi } from './client.js';
export type { CollabKitClientOptions, SocketEvents, SocketEventName, SocketState } from './client.js';
export { CollabKitError } from './errors.js';
export type { ReconnectOptions, HeartbeatOptions, DisconnectInfo } from './connection.js';
export type { ServerLimits, Welcome } from './protocol.js';
export { SUBPROTOCOL, PROTOCOL_VERSION } from './protocol.js';
export type { CollabKitClientUser, UserEventName } from './users.js';
export type { Users } from './users.js';
export type { Presence, PresenceTarget, PresenceChange, PresenceCallback } from './presence.js';
export { PRESENCE_THROTTLE_MS } from './presence.js';
export type {
  StoreClient,
  StoresClient,
  StoreChange,
  StoreAction,
  StoreWriteResult,
  StoreDeleteResult,
} from './stores.js';
export type { Notifications, BroadcastCallback, BroadcastMeta } from './notifications.js';
export type { RoomApi, CollabKitRoomWithUsers, RoomEvents } from './room.js';
export type {
  Comments,
  Comment,
  CommentThread,
  CommentReaction,
  CommentPage,
  CommentListPage,
  CommentEvents,
  CommentEventName,
} from './comments.js';
export type { Storage, StorageEvents, StorageEventName } from './storage.js';
export type { WebSocketConstructor, WebSocketLike } from './websocket.js';
export { defineStores } from '@collab-kit/utils';
export type {
  CollabKitRoom,
  CollabKitUser,
  PresenceState,
  StoresDefinition,
  StoreSchema,
  StoreInput,
  StorePatch,
  StoreValue,
  StorageFile,
} from '@collab-kit/utils';
