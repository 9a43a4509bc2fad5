//! CollabKit: a self-hostable real-time collaboration backend (REST + WebSocket).

/// Shared state, router assembly, listener and serving.
pub mod app;
/// API keys, Bearer tokens, user JWTs, rate limits.
pub mod auth;
/// The command line: serve, migrate, accounts, keys, secrets, healthcheck.
pub mod cli;
/// Configuration from defaults, a file and the environment.
pub mod config;
/// The data directory: private permissions, generated key files.
pub mod data_dir;
/// Plain types: ids, timestamps, accounts, rooms, users.
pub mod domain;
/// `ApiError` and its mapping to the documented envelope.
pub mod error;
/// The internal event bus (room and user events for webhooks and workflows).
pub mod events;
/// The REST API.
pub mod http;
/// The WebSocket server: protocol, connections, room actors, node records.
pub mod realtime;
/// Persistence on SQLite or PostgreSQL.
pub mod store;
/// Logging set-up.
pub mod telemetry;
/// Webhook delivery: the outbox worker, signatures, the address guard.
pub mod webhooks;
