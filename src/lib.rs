//! CollabKit: a self-hostable real-time collaboration backend (REST + WebSocket).

/// Activity over time: per-room per-minute counters, flushed in batches.
pub mod analytics;
/// Start-up: the state built, the listener bound, serving until shut down.
pub mod app;
/// API keys, Bearer tokens, dashboard sessions and passwords, user JWTs, rate limits.
pub mod auth;
/// The command line: serve, migrate, accounts, keys, secrets, healthcheck.
pub mod cli;
/// Configuration from defaults, a file and the environment.
pub mod config;
/// The data directory: private permissions, generated key files.
pub mod data_dir;
/// Plain types (ids, timestamps, accounts, rooms, users, comments, schemas) and the pure
/// rules they obey (limits, schema registration).
pub mod domain;
/// `ApiError` and its mapping to the documented envelope.
pub mod error;
/// The internal event bus (room and user events for webhooks and workflows).
pub mod events;
/// Room files' bytes: a local directory or an S3-compatible bucket.
pub mod files;
/// The REST API.
pub mod http;
/// Prometheus metrics: what is counted, and its text exposition.
pub mod metrics;
/// The socket transport: the wire protocol, the upgrade, one task per connection.
pub mod realtime;
/// The relay between nodes: room traffic over Redis pub/sub.
pub mod relay;
/// The engine: rooms, their actors, presence, following, joins and leaves, and the write
/// paths of stores, comments and users that both transports call.
pub mod rooms;
/// The connection loop: accepts, caps and times out HTTP connections, serves them with hyper.
pub mod server;
/// `AppState`, what every handler may use.
pub mod state;
/// Persistence on SQLite or PostgreSQL.
pub mod store;
/// Logging set-up.
pub mod telemetry;
/// Webhook delivery: the outbox worker, signatures, the address guard.
pub mod webhooks;
/// Workflows: customer code run on room events, in worker processes (the engine, its
/// sandbox, the pool, the runner).
pub mod workflows;
