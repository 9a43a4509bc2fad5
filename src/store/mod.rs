//! Persistence: the `Store` trait every transport uses, and its SQLite and PostgreSQL
//! implementations, chosen from the database URL's scheme.

pub mod comments;
pub mod dialect;
pub mod entries;
mod migrations;
mod page;
pub mod postgres;
mod query;
pub mod sealing;
mod sql;
pub mod sqlite;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Account, AccountId, ApiKey, ApiKeyId, ConnectionId, Event, NodeId, Room, RoomId, Timestamp,
    User, UserId, UserSession,
};

use page::like_pattern;
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
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    pub prefix: String,
    pub created_at: Timestamp,
}

/// The account a valid, unrevoked key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOwner {
    pub key_id: ApiKeyId,
    pub account_id: AccountId,
}

#[derive(Debug, Clone)]
pub struct NewRoom {
    pub id: RoomId,
    pub account_id: AccountId,
    pub name: String,
    pub custom_id: Option<String>,
    pub created_at: Timestamp,
}

/// Fields to change on a room; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RoomChanges {
    pub name: Option<String>,
    /// `Some(None)` clears the custom ID.
    pub custom_id: Option<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub account_id: AccountId,
    pub room_id: RoomId,
    pub name: String,
    pub profile_picture: Option<String>,
    pub custom_id: Option<String>,
    pub created_at: Timestamp,
}

/// Fields to change on a user; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub profile_picture: Option<Option<String>>,
    pub custom_id: Option<Option<String>>,
}

/// Where a user is looked up: a user always belongs to one room of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomScope {
    pub account_id: AccountId,
    pub room_id: RoomId,
}

/// A socket joining a room.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: ConnectionId,
    pub node_id: NodeId,
    pub scope: RoomScope,
    pub user_id: UserId,
    pub opened_at: Timestamp,
}

/// A joined socket as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub id: ConnectionId,
    pub node_id: NodeId,
    pub scope: RoomScope,
    pub user_id: UserId,
}

/// Where a page of a room's users (oldest first) starts: after this user. It holds the
/// creation time too, so that it still works once that user is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCursor {
    pub created_at: Timestamp,
    pub id: UserId,
}

impl std::fmt::Display for UserCursor {
    /// `<millis>_<user id>`: what clients hand back, as an opaque string.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.created_at.as_millis(), self.id)
    }
}

impl std::str::FromStr for UserCursor {
    type Err = crate::domain::ids::InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (millis, id) = text.split_once('_').ok_or(crate::domain::ids::InvalidId)?;
        Ok(Self {
            created_at: Timestamp::from_millis(
                millis.parse().map_err(|_| crate::domain::ids::InvalidId)?,
            ),
            id: id.parse().map_err(|_| crate::domain::ids::InvalidId)?,
        })
    }
}

/// A page of a room's users.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<User>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<UserCursor>,
}

/// What a join changed.
#[derive(Debug, Clone)]
pub struct Joined {
    pub user: User,
    pub room: Room,
    /// The user had no joined socket before: they came online.
    pub came_online: bool,
    /// The room had nobody online before: its session started.
    pub session_started: bool,
    /// `session.started` and `participant.joined`, as recorded.
    pub events: Vec<Event>,
}

/// What a leave (or a user's deletion) changed.
#[derive(Debug, Clone, Default)]
pub struct Left {
    /// The user, unless they were deleted.
    pub user: Option<User>,
    /// The room, unless it was deleted.
    pub room: Option<Room>,
    /// The user's last joined socket is gone: they went offline.
    pub went_offline: bool,
    /// The room's last online user is gone: its session closed.
    pub session_closed: bool,
    /// When the session closed: the users who were online during it.
    pub session_users: Vec<User>,
    /// `participant.left`, `session.closed` (and `user.deleted`), as recorded.
    pub events: Vec<Event>,
}

/// A room after a recount of its online users.
#[derive(Debug, Clone)]
pub struct Recounted {
    pub room: Room,
    /// Users that were marked online without any joined socket, now offline.
    pub users_set_offline: Vec<User>,
    /// Their `participant.left` (and `session.closed`), as recorded.
    pub events: Vec<Event>,
}

pub use comments::CommentStore;
pub use entries::EntryStore;
pub use webhooks::WebhookStore;

#[async_trait]
pub trait Store: EntryStore + CommentStore + WebhookStore + Send + Sync + 'static {
    /// Whether several server nodes may share this database (PostgreSQL) or only one
    /// (SQLite, a local file).
    fn shared(&self) -> bool;

    /// One cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_account(&self, account: &Account, first_key: &NewApiKey) -> StoreResult<()>;
    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>>;

    /// `Invalid` (field `keys`) when the account already holds `max_keys` unrevoked keys.
    async fn create_api_key(&self, key: &NewApiKey, max_keys: i64) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, account_id: AccountId) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked; `NotFound` if the account has no such key.
    async fn revoke_api_key(&self, account_id: AccountId, key_id: ApiKeyId) -> StoreResult<ApiKey>;
    /// The owner of an unrevoked key with this hash.
    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<KeyOwner>>;

    async fn create_room(&self, room: &NewRoom) -> StoreResult<Room>;
    async fn list_rooms(
        &self,
        account_id: AccountId,
        filter: &ListFilter,
        page: Page,
    ) -> StoreResult<Listed<Room>>;
    async fn get_room(&self, account_id: AccountId, room_id: RoomId) -> StoreResult<Option<Room>>;
    async fn get_room_by_custom_id(
        &self,
        account_id: AccountId,
        custom_id: &str,
    ) -> StoreResult<Option<Room>>;
    async fn update_room(
        &self,
        account_id: AccountId,
        room_id: RoomId,
        changes: &RoomChanges,
    ) -> StoreResult<Room>;
    /// Deletes a room and everything scoped to it; `NotFound` if there is no such room.
    async fn delete_room(&self, account_id: AccountId, room_id: RoomId) -> StoreResult<()>;
    /// Sets the stored online counter, opening or closing the room's session to match.
    async fn set_active_participants(&self, scope: RoomScope, count: i64) -> StoreResult<Room>;
    /// Recounts a room's online users from its joined sockets, and sets users marked online
    /// without any socket offline.
    async fn recount_room(&self, scope: RoomScope) -> StoreResult<Recounted>;
    /// Several sockets of a room leave at once (a node shutting down), then the room is
    /// recounted as by `recount_room`: one transaction instead of one per socket.
    async fn leave_many(
        &self,
        scope: RoomScope,
        connections: &[ConnectionId],
        at: Timestamp,
    ) -> StoreResult<Recounted>;

    /// Creates a user and counts it in the room's `total_users_created`; records
    /// `user.created`.
    async fn create_user(&self, user: &NewUser) -> StoreResult<(User, Vec<Event>)>;
    async fn list_users(
        &self,
        scope: RoomScope,
        filter: &ListFilter,
        page: Page,
    ) -> StoreResult<Listed<User>>;
    async fn get_user(&self, scope: RoomScope, user_id: UserId) -> StoreResult<Option<User>>;
    async fn get_user_by_custom_id(
        &self,
        scope: RoomScope,
        custom_id: &str,
    ) -> StoreResult<Option<User>>;
    /// Records `user.updated`.
    async fn update_user(
        &self,
        scope: RoomScope,
        user_id: UserId,
        changes: &UserChanges,
    ) -> StoreResult<(User, Vec<Event>)>;
    /// Deletes a user (and their sockets' records); the room's count follows. Records
    /// `user.deleted` (and `session.closed` if they were the last one online).
    async fn delete_user(&self, scope: RoomScope, user_id: UserId) -> StoreResult<(User, Left)>;
    /// A page of a room's users, oldest first, after `after` (see `page_bytes`).
    async fn list_room_users(
        &self,
        scope: RoomScope,
        after: Option<&UserCursor>,
        size: PageSize,
    ) -> StoreResult<UserPage>;
    /// A page of a user's sessions, newest first, and how many they have.
    async fn list_sessions(&self, user_id: UserId, page: Page) -> StoreResult<Listed<UserSession>>;

    /// Records that a node is alive (creating its row at start-up).
    async fn heartbeat_node(&self, node_id: &NodeId, now: Timestamp) -> StoreResult<()>;
    async fn remove_node(&self, node_id: &NodeId) -> StoreResult<()>;
    /// Joined sockets of nodes other than `live` whose heartbeat is older than
    /// `stale_before` or that have no node row at all.
    async fn orphaned_connections(
        &self,
        live: &NodeId,
        stale_before: Timestamp,
    ) -> StoreResult<Vec<ConnectionRecord>>;
    /// Joined sockets recorded for one node.
    async fn node_connections(&self, node_id: &NodeId) -> StoreResult<Vec<ConnectionRecord>>;
    /// Forgets nodes whose heartbeat is older than `stale_before` and that hold no sockets.
    async fn remove_stale_nodes(&self, stale_before: Timestamp) -> StoreResult<()>;

    /// A socket joins a room: the user comes online if it is their first.
    async fn join_room(&self, connection: &NewConnection) -> StoreResult<Joined>;
    /// A socket leaves: the user goes offline if it was their last. Leaving twice, or after
    /// the user or room is gone, changes nothing.
    async fn leave_room(&self, connection: &ConnectionRecord, at: Timestamp) -> StoreResult<Left>;

    /// `(follower, followee)` pairs of a room.
    async fn list_follows(&self, scope: RoomScope) -> StoreResult<Vec<(UserId, UserId)>>;
    /// Makes `follower` follow (or stop following) `followee`; idempotent. `NotFound(User)`
    /// when either is not a user of the room.
    async fn set_follow(
        &self,
        scope: RoomScope,
        follower: UserId,
        followee: UserId,
        follow: bool,
    ) -> StoreResult<()>;
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
