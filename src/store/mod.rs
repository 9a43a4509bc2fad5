//! Persistence: the `Store` trait every transport uses (as `Arc<dyn Store>`), one
//! supertrait per capability, each in its module with its types, its rows and its SQL; and
//! `SqlStore<DB>`, which implements them all once for SQLite and PostgreSQL (`Dialect` holds
//! what differs), chosen from the database URL's scheme.

pub mod accounts;
pub mod analytics;
pub mod comments;
pub mod copy;
pub mod dashboard;
pub mod dialect;
pub mod entries;
pub mod events;
pub mod files;
pub mod follows;
pub mod membership;
mod migrations;
pub mod nodes;
mod page;
pub mod postgres;
mod query;
pub mod rooms;
pub mod sealing;
mod sql;
pub mod sqlite;
pub mod users;
pub mod webhooks;
pub mod workflows;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{AccountId, RoomId};

pub use page::{page_bytes, ListFilter, Listed, Page, PageSize};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule would be broken (for example a duplicate custom ID).
    #[error("conflict: {0:?}")]
    Conflict(Entity),
    /// The object the operation needs (a room for a new user, say) does not exist.
    #[error("{0:?} not found")]
    NotFound(Entity),
    /// A row holds something the domain cannot represent.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    /// The data breaks a rule (a schema, a limit): the field at fault and why.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// A value over a size limit, in bytes.
    #[error("larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The account's files would weigh more than `limit` bytes together.
    #[error("over the account's file quota of {limit} bytes")]
    Quota { limit: i64 },
    /// A secret could not be sealed or opened (a key missing, a value altered).
    #[error("stored secret: {0}")]
    Sealing(#[from] sealing::SealError),
}

impl From<crate::domain::limits::LimitError> for StoreError {
    fn from(error: crate::domain::limits::LimitError) -> Self {
        Self::Invalid {
            field: error.field.to_owned(),
            message: error.message,
        }
    }
}

impl From<crate::domain::schema::SchemaError> for StoreError {
    /// A value or a schema the rules refuse.
    fn from(error: crate::domain::schema::SchemaError) -> Self {
        Self::Invalid {
            field: error.field,
            message: error.message,
        }
    }
}

/// What a `NotFound` or `Conflict` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Account,
    ApiKey,
    Room,
    User,
    /// A store (no schema of that name).
    Store,
    /// An entry of a store.
    Entry,
    Thread,
    Comment,
    Webhook,
    Workflow,
    File,
    Login,
    Member,
    Invitation,
}

/// Where a user is looked up: a user always belongs to one room of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomScope {
    pub account_id: AccountId,
    pub room_id: RoomId,
}

pub use accounts::{AccountStore, KeyOwner, NewApiKey};
pub use analytics::{AnalyticsStore, MinuteRange, RoomMinute, SessionStep};
pub use comments::CommentStore;
pub use dashboard::{
    DashboardStore, LoginSecret, NewInvitation, NewLogin, NewSession, SessionAccess,
};
pub use entries::EntryStore;
pub use events::EventStore;
pub use files::FileStore;
pub use follows::FollowStore;
pub use membership::{
    ConnectionRecord, Joined, JoinedRooms, Left, MembershipStore, NewConnection, Recounted,
    RoomJoins,
};
pub use nodes::NodeStore;
pub use rooms::{NewRoom, RoomChanges, RoomSignal, RoomStore};
pub use users::{NewUser, UserChanges, UserCursor, UserPage, UserStore};
pub use webhooks::WebhookStore;
pub use workflows::WorkflowStore;

/// Everything the server keeps, one capability per supertrait.
#[async_trait]
pub trait Store:
    AccountStore
    + RoomStore
    + UserStore
    + MembershipStore
    + FollowStore
    + NodeStore
    + EventStore
    + EntryStore
    + CommentStore
    + WebhookStore
    + WorkflowStore
    + FileStore
    + DashboardStore
    + AnalyticsStore
    + Send
    + Sync
    + 'static
{
    /// Whether several server nodes may share this database (PostgreSQL) or only one
    /// (SQLite, a local file).
    fn shared(&self) -> bool;

    /// One cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// The connection pools' connections: (in use, idle).
    fn pool_connections(&self) -> (usize, usize);

    /// Webhook deliveries pending and workflow runs queued, across all nodes (for metrics).
    async fn queue_depths(&self) -> StoreResult<(i64, i64)>;

    /// The changes to rooms and their users as they commit, on a database other nodes share
    /// (`None` on SQLite, which this node alone writes). The feed runs until the receiver is
    /// dropped.
    fn watch_rooms(&self) -> Option<tokio::sync::mpsc::Receiver<RoomSignal>>;
}

pub type DynStore = Arc<dyn Store>;

/// Database settings that do not come from the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
}

/// Opens the database the URL names (`sqlite:` or `postgres:`) and brings its schema up to
/// date. The stored secrets are sealed and opened with `sealer`.
pub async fn connect(
    url: &str,
    options: &StoreOptions,
    sealer: sealing::Sealer,
) -> StoreResult<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PostgresStore::connect(url, options, sealer).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url, options, sealer).await?,
        ))
    } else {
        Err(StoreError::Database(sqlx::Error::Configuration(
            "database URL must start with sqlite: or postgres://".into(),
        )))
    }
}
