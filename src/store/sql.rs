//! The store on either database: `SqlStore<DB>`, a pool and the sealer of stored secrets.
//! Queries are written once, with `$N` placeholders (which SQLite binds by number too), and
//! run on both backends; `Dialect` holds the few differences. Columns are portable: TEXT ids
//! and strings, BIGINT milliseconds for times.

use sqlx::{ColumnIndex, Database, Executor, Pool};

use crate::domain::{
    Account, ApiKey, ApiKeyId, Room, RoomState, Timestamp, User, UserSession, UserStatus,
};

use super::dialect::{Column, Dialect};
use super::sealing::Sealer;
use super::{migrations, Entity, StoreError, StoreResult};

/// The store, on either database.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    /// Seals the secrets this store keeps, and opens them.
    pub(super) sealer: Sealer,
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    /// A store on `pool`, its schema brought up to date first.
    pub(super) async fn open(pool: Pool<DB>, sealer: Sealer) -> StoreResult<Self> {
        migrations::migrate(&pool).await?;
        Ok(Self { pool, sealer })
    }
}

pub(super) const ACCOUNT_COLUMNS: &str = "id, name, created_at";
pub(super) const API_KEY_COLUMNS: &str = "id, account_id, prefix, created_at, revoked_at";
pub(super) const ROOM_COLUMNS: &str = "id, account_id, name, custom_id, created_at, state, \
     active_participants, closed_sessions_ms, session_started_at, total_users_created";
pub(super) const USER_COLUMNS: &str = "id, account_id, room_id, name, profile_picture, \
     custom_id, status, created_at, joined_at, left_at, token_issued_at";
pub(super) const SESSION_COLUMNS: &str = "id, user_id, room_id, joined_at, left_at";
/// What a user weighs in a page (see `page_bytes`): their texts as stored, and room for the
/// rest of their JSON (ids, times, and a share of the follow graph).
pub(super) const USER_BYTES: &str =
    "octet_length(name) + COALESCE(octet_length(profile_picture), 0) \
     + COALESCE(octet_length(custom_id), 0) + 512";

/// Maps a unique-constraint violation to `Conflict(entity)`, anything else to `Database`.
pub(super) fn conflict_or_database(error: sqlx::Error, entity: Entity) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(entity),
        _ => StoreError::Database(error),
    }
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {text:?}")))
}

fn millis(value: Option<i64>) -> Option<Timestamp> {
    value.map(Timestamp::from_millis)
}

pub(super) struct AccountRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> StoreResult<Self> {
        Ok(Account {
            id: parse(&row.id, "account id")?,
            name: row.name,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

pub(super) struct ApiKeyRow {
    pub id: String,
    pub account_id: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> StoreResult<Self> {
        Ok(ApiKey {
            id: parse::<ApiKeyId>(&row.id, "api key id")?,
            account_id: parse(&row.account_id, "account id")?,
            prefix: row.prefix,
            created_at: Timestamp::from_millis(row.created_at),
            revoked_at: millis(row.revoked_at),
        })
    }
}

pub(super) struct RoomRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub custom_id: Option<String>,
    pub created_at: i64,
    pub state: String,
    pub active_participants: i64,
    pub closed_sessions_ms: i64,
    pub session_started_at: Option<i64>,
    pub total_users_created: i64,
}

impl TryFrom<RoomRow> for Room {
    type Error = StoreError;

    fn try_from(row: RoomRow) -> StoreResult<Self> {
        Ok(Room {
            id: parse(&row.id, "room id")?,
            account_id: parse(&row.account_id, "account id")?,
            name: row.name,
            custom_id: row.custom_id,
            created_at: Timestamp::from_millis(row.created_at),
            state: RoomState::parse(&row.state)
                .ok_or_else(|| StoreError::Corrupt(format!("room state: {:?}", row.state)))?,
            active_participants: row.active_participants,
            closed_sessions_ms: row.closed_sessions_ms,
            session_started_at: millis(row.session_started_at),
            total_users_created: row.total_users_created,
        })
    }
}

pub(super) struct UserRow {
    pub id: String,
    pub account_id: String,
    pub room_id: String,
    pub name: String,
    pub profile_picture: Option<String>,
    pub custom_id: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub joined_at: Option<i64>,
    pub left_at: Option<i64>,
    pub token_issued_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(User {
            id: parse(&row.id, "user id")?,
            account_id: parse(&row.account_id, "account id")?,
            room_id: parse(&row.room_id, "room id")?,
            name: row.name,
            profile_picture: row.profile_picture,
            custom_id: row.custom_id,
            status: UserStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("user status: {:?}", row.status)))?,
            created_at: Timestamp::from_millis(row.created_at),
            joined_at: millis(row.joined_at),
            left_at: millis(row.left_at),
            token_issued_at: Timestamp::from_millis(row.token_issued_at),
        })
    }
}

pub(super) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub room_id: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

impl TryFrom<SessionRow> for UserSession {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> StoreResult<Self> {
        Ok(UserSession {
            id: parse(&row.id, "session id")?,
            user_id: parse(&row.user_id, "user id")?,
            room_id: parse(&row.room_id, "room id")?,
            joined_at: Timestamp::from_millis(row.joined_at),
            left_at: millis(row.left_at),
        })
    }
}

/// Implements `Store` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        mod rows {
            use sqlx::Row as _;

            use super::super::sql::{AccountRow, ApiKeyRow, RoomRow, SessionRow, UserRow};

            type DbRow = <$db as sqlx::Database>::Row;

            pub fn account(row: &DbRow) -> Result<AccountRow, sqlx::Error> {
                Ok(AccountRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            pub fn api_key(row: &DbRow) -> Result<ApiKeyRow, sqlx::Error> {
                Ok(ApiKeyRow {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    prefix: row.try_get("prefix")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            }

            pub fn room(row: &DbRow) -> Result<RoomRow, sqlx::Error> {
                Ok(RoomRow {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    name: row.try_get("name")?,
                    custom_id: row.try_get("custom_id")?,
                    created_at: row.try_get("created_at")?,
                    state: row.try_get("state")?,
                    active_participants: row.try_get("active_participants")?,
                    closed_sessions_ms: row.try_get("closed_sessions_ms")?,
                    session_started_at: row.try_get("session_started_at")?,
                    total_users_created: row.try_get("total_users_created")?,
                })
            }

            pub fn user(row: &DbRow) -> Result<UserRow, sqlx::Error> {
                Ok(UserRow {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    room_id: row.try_get("room_id")?,
                    name: row.try_get("name")?,
                    profile_picture: row.try_get("profile_picture")?,
                    custom_id: row.try_get("custom_id")?,
                    status: row.try_get("status")?,
                    created_at: row.try_get("created_at")?,
                    joined_at: row.try_get("joined_at")?,
                    left_at: row.try_get("left_at")?,
                    token_issued_at: row.try_get("token_issued_at")?,
                })
            }

            pub fn connection(
                row: &DbRow,
            ) -> $crate::store::StoreResult<$crate::store::ConnectionRecord> {
                let text = |column: &str| -> Result<String, sqlx::Error> { row.try_get(column) };
                $crate::store::sql::connection_record(
                    &text("id")?,
                    &text("node_id")?,
                    &text("room_id")?,
                    &text("user_id")?,
                    &text("account_id")?,
                )
            }

            pub fn session(row: &DbRow) -> Result<SessionRow, sqlx::Error> {
                Ok(SessionRow {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    room_id: row.try_get("room_id")?,
                    joined_at: row.try_get("joined_at")?,
                    left_at: row.try_get("left_at")?,
                })
            }
        }

        /// Appends the WHERE conditions of a list filter (after a WHERE clause already begun).
        fn push_filter(
            query: &mut sqlx::QueryBuilder<'_, $db>,
            filter: &$crate::store::ListFilter,
            search_columns: &[&str],
        ) {
            if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
                let pattern = $crate::store::like_pattern::<$db>(search);
                query.push(" AND (");
                for (i, column) in search_columns.iter().enumerate() {
                    if i > 0 {
                        query.push(" OR ");
                    }
                    query.push(format!("LOWER({column}) LIKE "));
                    query.push_bind(pattern.clone());
                    query.push(" ESCAPE '\\'");
                }
                query.push(")");
            }
            if let Some(from) = filter.created_from {
                query.push(" AND created_at >= ").push_bind(from.as_millis());
            }
            if let Some(before) = filter.created_before {
                query.push(" AND created_at < ").push_bind(before.as_millis());
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn shared(&self) -> bool {
                <$db as $crate::store::dialect::Dialect>::SHARED
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_account(
                &self,
                account: &$crate::domain::Account,
                first_key: &$crate::store::NewApiKey,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(account.id.to_string())
                    .bind(&account.name)
                    .bind(account.created_at.as_millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        $crate::store::sql::conflict_or_database(e, $crate::store::Entity::Account)
                    })?;
                insert_api_key(&mut *tx, first_key).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_account(
                &self,
                id: $crate::domain::AccountId,
            ) -> $crate::store::StoreResult<Option<$crate::domain::Account>> {
                let sql = format!(
                    "SELECT {} FROM accounts WHERE id = $1",
                    $crate::store::sql::ACCOUNT_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| rows::account(&r)?.try_into()).transpose()
            }

            async fn create_api_key(
                &self,
                key: &$crate::store::NewApiKey,
                max_keys: i64,
            ) -> $crate::store::StoreResult<$crate::domain::ApiKey> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
                    .bind(key.account_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                let live: i64 = sqlx::Row::try_get(
                    &sqlx::query(
                        "SELECT COUNT(*) AS n FROM api_keys \
                         WHERE account_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(key.account_id.to_string())
                    .fetch_one(&mut *tx)
                    .await?,
                    "n",
                )?;
                $crate::domain::limits::Limit::ApiKeys(max_keys).check_one_more(live)?;
                insert_api_key(&mut *tx, key).await?;
                tx.commit().await?;
                Ok($crate::domain::ApiKey {
                    id: key.id,
                    account_id: key.account_id,
                    prefix: key.prefix.clone(),
                    created_at: key.created_at,
                    revoked_at: None,
                })
            }

            async fn list_api_keys(
                &self,
                account_id: $crate::domain::AccountId,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::ApiKey>> {
                let sql = format!(
                    "SELECT {} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id",
                    $crate::store::sql::API_KEY_COLUMNS
                );
                let found = sqlx::query(&sql)
                    .bind(account_id.to_string())
                    .fetch_all(&self.pool)
                    .await?;
                found.iter().map(|r| rows::api_key(r)?.try_into()).collect()
            }

            async fn revoke_api_key(
                &self,
                account_id: $crate::domain::AccountId,
                key_id: $crate::domain::ApiKeyId,
            ) -> $crate::store::StoreResult<$crate::domain::ApiKey> {
                let sql = format!(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) \
                     WHERE id = $2 AND account_id = $3 RETURNING {}",
                    $crate::store::sql::API_KEY_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind($crate::domain::Timestamp::now().as_millis())
                    .bind(key_id.to_string())
                    .bind(account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::ApiKey))?;
                rows::api_key(&row)?.try_into()
            }

            async fn find_api_key(
                &self,
                key_hash: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::KeyOwner>> {
                let row = sqlx::query(
                    "SELECT id, account_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                )
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let id: String = sqlx::Row::try_get(&row, "id")?;
                let account_id: String = sqlx::Row::try_get(&row, "account_id")?;
                $crate::store::sql::key_owner(&id, &account_id).map(Some)
            }

            async fn create_room(
                &self,
                room: &$crate::store::NewRoom,
            ) -> $crate::store::StoreResult<$crate::domain::Room> {
                let sql = format!(
                    "INSERT INTO rooms (id, account_id, name, custom_id, created_at, state) \
                     VALUES ($1, $2, $3, $4, $5, 'active') RETURNING {}",
                    $crate::store::sql::ROOM_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(room.id.to_string())
                    .bind(room.account_id.to_string())
                    .bind(&room.name)
                    .bind(&room.custom_id)
                    .bind(room.created_at.as_millis())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| {
                        $crate::store::sql::conflict_or_database(e, $crate::store::Entity::Room)
                    })?;
                rows::room(&row)?.try_into()
            }

            async fn list_rooms(
                &self,
                account_id: $crate::domain::AccountId,
                filter: &$crate::store::ListFilter,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<$crate::store::Listed<$crate::domain::Room>> {
                const SEARCH: &[&str] = &["name"];
                let mut count = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) AS total FROM rooms WHERE account_id = ",
                );
                count.push_bind(account_id.to_string());
                push_filter(&mut count, filter, SEARCH);
                let total: i64 = sqlx::Row::try_get(
                    &count.build().fetch_one(&self.pool).await?,
                    "total",
                )?;

                let mut list = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM rooms WHERE account_id = ",
                    $crate::store::sql::ROOM_COLUMNS
                ));
                list.push_bind(account_id.to_string());
                push_filter(&mut list, filter, SEARCH);
                list.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                    .push_bind(page.limit)
                    .push(" OFFSET ")
                    .push_bind(page.offset);
                let found = list.build().fetch_all(&self.pool).await?;
                let items = found
                    .iter()
                    .map(|r| rows::room(r)?.try_into())
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                Ok($crate::store::Listed { items, total })
            }

            async fn get_room(
                &self,
                account_id: $crate::domain::AccountId,
                room_id: $crate::domain::RoomId,
            ) -> $crate::store::StoreResult<Option<$crate::domain::Room>> {
                let sql = format!(
                    "SELECT {} FROM rooms WHERE id = $1 AND account_id = $2",
                    $crate::store::sql::ROOM_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(room_id.to_string())
                    .bind(account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| rows::room(&r)?.try_into()).transpose()
            }

            async fn get_room_by_custom_id(
                &self,
                account_id: $crate::domain::AccountId,
                custom_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::domain::Room>> {
                let sql = format!(
                    "SELECT {} FROM rooms WHERE custom_id = $1 AND account_id = $2",
                    $crate::store::sql::ROOM_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(custom_id)
                    .bind(account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| rows::room(&r)?.try_into()).transpose()
            }

            async fn update_room(
                &self,
                account_id: $crate::domain::AccountId,
                room_id: $crate::domain::RoomId,
                changes: &$crate::store::RoomChanges,
            ) -> $crate::store::StoreResult<$crate::domain::Room> {
                let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE rooms SET id = id");
                if let Some(name) = &changes.name {
                    update.push(", name = ").push_bind(name.clone());
                }
                if let Some(custom_id) = &changes.custom_id {
                    update.push(", custom_id = ").push_bind(custom_id.clone());
                }
                update
                    .push(" WHERE id = ")
                    .push_bind(room_id.to_string())
                    .push(" AND account_id = ")
                    .push_bind(account_id.to_string())
                    .push(format!(" RETURNING {}", $crate::store::sql::ROOM_COLUMNS));
                let row = update
                    .build()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| {
                        $crate::store::sql::conflict_or_database(e, $crate::store::Entity::Room)
                    })?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?;
                rows::room(&row)?.try_into()
            }

            async fn delete_room(
                &self,
                account_id: $crate::domain::AccountId,
                room_id: $crate::domain::RoomId,
            ) -> $crate::store::StoreResult<()> {
                let done = sqlx::query("DELETE FROM rooms WHERE id = $1 AND account_id = $2")
                    .bind(room_id.to_string())
                    .bind(account_id.to_string())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Room));
                }
                Ok(())
            }

            async fn set_active_participants(
                &self,
                scope: $crate::store::RoomScope,
                count: i64,
            ) -> $crate::store::StoreResult<$crate::domain::Room> {
                let mut tx = self.pool.begin().await?;
                if !lock_room(&mut tx, scope).await? {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Room));
                }
                let room = set_room_count(&mut tx, scope, count, $crate::domain::Timestamp::now()).await?;
                tx.commit().await?;
                Ok(room)
            }

            async fn recount_room(
                &self,
                scope: $crate::store::RoomScope,
            ) -> $crate::store::StoreResult<$crate::store::Recounted> {
                self.leave_many(scope, &[], $crate::domain::Timestamp::now()).await
            }

            async fn leave_many(
                &self,
                scope: $crate::store::RoomScope,
                connections: &[$crate::domain::ConnectionId],
                at: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<$crate::store::Recounted> {
                let mut tx = self.pool.begin().await?;
                if !lock_room(&mut tx, scope).await? {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Room));
                }
                if !connections.is_empty() {
                    let mut delete = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM connections WHERE room_id = ",
                    );
                    delete.push_bind(scope.room_id.to_string()).push(" AND id IN (");
                    let mut ids = delete.separated(", ");
                    for id in connections {
                        ids.push_bind(id.to_string());
                    }
                    delete.push(")");
                    delete.build().execute(&mut *tx).await?;
                }
                let sql = format!(
                    "UPDATE users SET status = 'offline', left_at = $1 \
                     WHERE room_id = $2 AND status = 'online' \
                       AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.user_id = users.id) \
                     RETURNING {}",
                    $crate::store::sql::USER_COLUMNS
                );
                let offline = sqlx::query(&sql)
                    .bind(at.as_millis())
                    .bind(scope.room_id.to_string())
                    .fetch_all(&mut *tx)
                    .await?;
                let users_set_offline = offline
                    .iter()
                    .map(|r| rows::user(r)?.try_into())
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                sqlx::query(
                    "UPDATE user_sessions SET left_at = $1 \
                     WHERE room_id = $2 AND left_at IS NULL \
                       AND NOT EXISTS (SELECT 1 FROM connections c \
                                       WHERE c.user_id = user_sessions.user_id)",
                )
                .bind(at.as_millis())
                .bind(scope.room_id.to_string())
                .execute(&mut *tx)
                .await?;
                let recount = recount(&mut tx, scope, at).await?;
                let mut events: Vec<$crate::domain::Event> = users_set_offline
                    .iter()
                    .map(|user| {
                        $crate::domain::Event::new(
                            $crate::domain::EventKind::ParticipantLeft,
                            &recount.room,
                            Some(user),
                            Vec::new(),
                            at,
                        )
                    })
                    .collect();
                events.extend(recount.closed_event(at));
                record_events(&mut tx, &events).await?;
                tx.commit().await?;
                Ok($crate::store::Recounted {
                    room: recount.room,
                    users_set_offline,
                    events,
                })
            }

            async fn create_user(
                &self,
                user: &$crate::store::NewUser,
            ) -> $crate::store::StoreResult<($crate::domain::User, Vec<$crate::domain::Event>)> {
                // The write comes first so that SQLite takes its write lock at once instead
                // of upgrading a read lock, which could fail under contention.
                let mut tx = self.pool.begin().await?;
                let sql = format!(
                    "UPDATE rooms SET total_users_created = total_users_created + 1 \
                     WHERE id = $1 AND account_id = $2 RETURNING {}",
                    $crate::store::sql::ROOM_COLUMNS
                );
                let room: $crate::domain::Room = rows::room(
                    &sqlx::query(&sql)
                        .bind(user.room_id.to_string())
                        .bind(user.account_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?,
                )?
                .try_into()?;
                let sql = format!(
                    "INSERT INTO users (id, account_id, room_id, name, profile_picture, \
                       custom_id, status, created_at, token_issued_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'offline', $7, $7) RETURNING {}",
                    $crate::store::sql::USER_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(user.id.to_string())
                    .bind(user.account_id.to_string())
                    .bind(user.room_id.to_string())
                    .bind(&user.name)
                    .bind(&user.profile_picture)
                    .bind(&user.custom_id)
                    .bind(user.created_at.as_millis())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| {
                        $crate::store::sql::conflict_or_database(e, $crate::store::Entity::User)
                    })?;
                let created: $crate::domain::User = rows::user(&row)?.try_into()?;
                let events = vec![$crate::domain::Event::new(
                    $crate::domain::EventKind::UserCreated,
                    &room,
                    Some(&created),
                    Vec::new(),
                    user.created_at,
                )];
                record_events(&mut tx, &events).await?;
                tx.commit().await?;
                Ok((created, events))
            }

            async fn list_users(
                &self,
                scope: $crate::store::RoomScope,
                filter: &$crate::store::ListFilter,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<$crate::store::Listed<$crate::domain::User>> {
                const SEARCH: &[&str] = &["name", "id"];
                let mut count = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) AS total FROM users WHERE room_id = ",
                );
                count
                    .push_bind(scope.room_id.to_string())
                    .push(" AND account_id = ")
                    .push_bind(scope.account_id.to_string());
                push_filter(&mut count, filter, SEARCH);
                let total: i64 = sqlx::Row::try_get(
                    &count.build().fetch_one(&self.pool).await?,
                    "total",
                )?;

                let mut list = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM users WHERE room_id = ",
                    $crate::store::sql::USER_COLUMNS
                ));
                list.push_bind(scope.room_id.to_string())
                    .push(" AND account_id = ")
                    .push_bind(scope.account_id.to_string());
                push_filter(&mut list, filter, SEARCH);
                list.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                    .push_bind(page.limit)
                    .push(" OFFSET ")
                    .push_bind(page.offset);
                let found = list.build().fetch_all(&self.pool).await?;
                let items = found
                    .iter()
                    .map(|r| rows::user(r)?.try_into())
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                Ok($crate::store::Listed { items, total })
            }

            async fn get_user(
                &self,
                scope: $crate::store::RoomScope,
                user_id: $crate::domain::UserId,
            ) -> $crate::store::StoreResult<Option<$crate::domain::User>> {
                let sql = format!(
                    "SELECT {} FROM users WHERE id = $1 AND room_id = $2 AND account_id = $3",
                    $crate::store::sql::USER_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(user_id.to_string())
                    .bind(scope.room_id.to_string())
                    .bind(scope.account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| rows::user(&r)?.try_into()).transpose()
            }

            async fn get_user_by_custom_id(
                &self,
                scope: $crate::store::RoomScope,
                custom_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::domain::User>> {
                let sql = format!(
                    "SELECT {} FROM users \
                     WHERE custom_id = $1 AND room_id = $2 AND account_id = $3",
                    $crate::store::sql::USER_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(custom_id)
                    .bind(scope.room_id.to_string())
                    .bind(scope.account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| rows::user(&r)?.try_into()).transpose()
            }

            async fn update_user(
                &self,
                scope: $crate::store::RoomScope,
                user_id: $crate::domain::UserId,
                changes: &$crate::store::UserChanges,
            ) -> $crate::store::StoreResult<($crate::domain::User, Vec<$crate::domain::Event>)> {
                let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE users SET id = id");
                if let Some(name) = &changes.name {
                    update.push(", name = ").push_bind(name.clone());
                }
                if let Some(picture) = &changes.profile_picture {
                    update.push(", profile_picture = ").push_bind(picture.clone());
                }
                if let Some(custom_id) = &changes.custom_id {
                    update.push(", custom_id = ").push_bind(custom_id.clone());
                }
                update
                    .push(" WHERE id = ")
                    .push_bind(user_id.to_string())
                    .push(" AND room_id = ")
                    .push_bind(scope.room_id.to_string())
                    .push(" AND account_id = ")
                    .push_bind(scope.account_id.to_string())
                    .push(format!(" RETURNING {}", $crate::store::sql::USER_COLUMNS));
                let mut tx = self.pool.begin().await?;
                let row = update
                    .build()
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| {
                        $crate::store::sql::conflict_or_database(e, $crate::store::Entity::User)
                    })?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::User))?;
                let updated: $crate::domain::User = rows::user(&row)?.try_into()?;
                let room = fetch_room(&mut tx, scope).await?;
                let events = vec![$crate::domain::Event::new(
                    $crate::domain::EventKind::UserUpdated,
                    &room,
                    Some(&updated),
                    Vec::new(),
                    $crate::domain::Timestamp::now(),
                )];
                record_events(&mut tx, &events).await?;
                tx.commit().await?;
                Ok((updated, events))
            }

            async fn delete_user(
                &self,
                scope: $crate::store::RoomScope,
                user_id: $crate::domain::UserId,
            ) -> $crate::store::StoreResult<($crate::domain::User, $crate::store::Left)> {
                let now = $crate::domain::Timestamp::now();
                let mut tx = self.pool.begin().await?;
                if !lock_room(&mut tx, scope).await? {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::User));
                }
                let sql = format!(
                    "DELETE FROM users WHERE id = $1 AND room_id = $2 AND account_id = $3 \
                     RETURNING {}",
                    $crate::store::sql::USER_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(user_id.to_string())
                    .bind(scope.room_id.to_string())
                    .bind(scope.account_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::User))?;
                let user: $crate::domain::User = rows::user(&row)?.try_into()?;
                // The user's sockets, sessions and follows went with them (ON DELETE CASCADE).
                let mut recount = recount(&mut tx, scope, now).await?;
                let was_online = user.status == $crate::domain::UserStatus::Online;
                let mut events = Vec::new();
                if was_online {
                    // They went offline with their deletion: as the last socket leaving would.
                    let mut gone = user.clone();
                    gone.status = $crate::domain::UserStatus::Offline;
                    gone.left_at = Some(now);
                    events.push($crate::domain::Event::new(
                        $crate::domain::EventKind::ParticipantLeft,
                        &recount.room,
                        Some(&gone),
                        Vec::new(),
                        now,
                    ));
                    // Their sessions went with them; they were still one of the session's users.
                    if recount.closed {
                        recount.session_users.push(gone);
                    }
                }
                events.push($crate::domain::Event::new(
                    $crate::domain::EventKind::UserDeleted,
                    &recount.room,
                    Some(&user),
                    Vec::new(),
                    now,
                ));
                events.extend(recount.closed_event(now));
                record_events(&mut tx, &events).await?;
                tx.commit().await?;
                let left = $crate::store::Left {
                    went_offline: was_online,
                    user: None,
                    room: Some(recount.room),
                    session_closed: recount.closed,
                    session_users: recount.session_users,
                    events,
                };
                Ok((user, left))
            }

            async fn list_room_users(
                &self,
                scope: $crate::store::RoomScope,
                after: Option<&$crate::store::UserCursor>,
                size: $crate::store::PageSize,
            ) -> $crate::store::StoreResult<$crate::store::UserPage> {
                use $crate::store::page_bytes;
                const ORDER: &str = "created_at, id";
                let mut query = sqlx::QueryBuilder::<$db>::new(page_bytes::start(
                    $crate::store::sql::USER_BYTES,
                    ORDER,
                ));
                query
                    .push(format!(
                        "SELECT {} FROM users WHERE room_id = ",
                        $crate::store::sql::USER_COLUMNS
                    ))
                    .push_bind(scope.room_id.to_string())
                    .push(" AND account_id = ")
                    .push_bind(scope.account_id.to_string());
                if let Some(after) = after {
                    query
                        .push(" AND (created_at > ")
                        .push_bind(after.created_at.as_millis())
                        .push(" OR (created_at = ")
                        .push_bind(after.created_at.as_millis())
                        .push(" AND id > ")
                        .push_bind(after.id.to_string())
                        .push("))");
                }
                // One more than asked: whether there is more.
                query
                    .push(" ORDER BY created_at, id LIMIT ")
                    .push_bind(size.items.saturating_add(1))
                    .push(page_bytes::END)
                    .push_bind(size.bytes)
                    .push(page_bytes::end_order(ORDER));
                let mut found = query.build().fetch_all(&self.pool).await?;
                let totals = found
                    .iter()
                    .map(|row| sqlx::Row::try_get::<i64, _>(row, "page_bytes"))
                    .collect::<Result<Vec<_>, _>>()?;
                let fit = page_bytes::keep_within(totals, size.bytes).min(size.items.max(1) as usize);
                let more = found.len() > fit;
                found.truncate(fit);
                let users = found
                    .iter()
                    .map(|r| rows::user(r)?.try_into())
                    .collect::<$crate::store::StoreResult<Vec<$crate::domain::User>>>()?;
                let next = users
                    .last()
                    .filter(|_| more)
                    .map(|user| $crate::store::UserCursor { created_at: user.created_at, id: user.id });
                Ok($crate::store::UserPage { users, next })
            }

            async fn list_sessions(
                &self,
                user_id: $crate::domain::UserId,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<$crate::store::Listed<$crate::domain::UserSession>> {
                let total: i64 = sqlx::Row::try_get(
                    &sqlx::query("SELECT COUNT(*) AS total FROM user_sessions WHERE user_id = $1")
                        .bind(user_id.to_string())
                        .fetch_one(&self.pool)
                        .await?,
                    "total",
                )?;
                let sql = format!(
                    "SELECT {} FROM user_sessions WHERE user_id = $1 \
                     ORDER BY joined_at DESC, id DESC LIMIT $2 OFFSET $3",
                    $crate::store::sql::SESSION_COLUMNS
                );
                let found = sqlx::query(&sql)
                    .bind(user_id.to_string())
                    .bind(page.limit)
                    .bind(page.offset)
                    .fetch_all(&self.pool)
                    .await?;
                let items = found
                    .iter()
                    .map(|r| rows::session(r)?.try_into())
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                Ok($crate::store::Listed { items, total })
            }

            async fn heartbeat_node(
                &self,
                node_id: &$crate::domain::NodeId,
                now: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                )
                .bind(node_id.as_str())
                .bind(now.as_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn remove_node(
                &self,
                node_id: &$crate::domain::NodeId,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM nodes WHERE id = $1")
                    .bind(node_id.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn orphaned_connections(
                &self,
                live: &$crate::domain::NodeId,
                stale_before: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ConnectionRecord>> {
                let found = sqlx::query(
                    "SELECT c.id, c.node_id, c.room_id, c.user_id, r.account_id \
                     FROM connections c JOIN rooms r ON r.id = c.room_id \
                     LEFT JOIN nodes n ON n.id = c.node_id \
                     WHERE c.node_id <> $1 AND (n.id IS NULL OR n.heartbeat_at < $2)",
                )
                .bind(live.as_str())
                .bind(stale_before.as_millis())
                .fetch_all(&self.pool)
                .await?;
                found.iter().map(rows::connection).collect()
            }

            async fn node_connections(
                &self,
                node_id: &$crate::domain::NodeId,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ConnectionRecord>> {
                let found = sqlx::query(
                    "SELECT c.id, c.node_id, c.room_id, c.user_id, r.account_id \
                     FROM connections c JOIN rooms r ON r.id = c.room_id WHERE c.node_id = $1",
                )
                .bind(node_id.as_str())
                .fetch_all(&self.pool)
                .await?;
                found.iter().map(rows::connection).collect()
            }

            async fn remove_stale_nodes(
                &self,
                stale_before: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "DELETE FROM nodes WHERE heartbeat_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.node_id = nodes.id)",
                )
                .bind(stale_before.as_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn join_room(
                &self,
                connection: &$crate::store::NewConnection,
            ) -> $crate::store::StoreResult<$crate::store::Joined> {
                let scope = connection.scope;
                let now = connection.opened_at;
                let mut tx = self.pool.begin().await?;
                // Room, then user: every transaction that changes who is online locks in this
                // order, so nodes racing on one room serialize instead of deadlocking.
                if !lock_room(&mut tx, scope).await? {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Room));
                }
                if !lock_user(&mut tx, scope, connection.user_id).await? {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::User));
                }
                let others = count_user_connections(&mut tx, connection.user_id).await?;
                sqlx::query(
                    "INSERT INTO connections (id, node_id, room_id, user_id, opened_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(connection.id.to_string())
                .bind(connection.node_id.as_str())
                .bind(scope.room_id.to_string())
                .bind(connection.user_id.to_string())
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await?;
                let came_online = others == 0;
                if came_online {
                    sqlx::query("UPDATE users SET status = 'online', joined_at = $1 WHERE id = $2")
                        .bind(now.as_millis())
                        .bind(connection.user_id.to_string())
                        .execute(&mut *tx)
                        .await?;
                    // A session left open by a crash ends where the new one starts.
                    close_sessions(&mut tx, connection.user_id, now).await?;
                    sqlx::query(
                        "INSERT INTO user_sessions (id, user_id, room_id, joined_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind($crate::domain::SessionId::new().as_str())
                    .bind(connection.user_id.to_string())
                    .bind(scope.room_id.to_string())
                    .bind(now.as_millis())
                    .execute(&mut *tx)
                    .await?;
                }
                let recount = recount(&mut tx, scope, now).await?;
                let user = fetch_user(&mut tx, scope, connection.user_id)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::User))?;
                let mut events = Vec::new();
                if recount.started {
                    events.push($crate::domain::Event::new(
                        $crate::domain::EventKind::SessionStarted,
                        &recount.room,
                        None,
                        Vec::new(),
                        now,
                    ));
                }
                if came_online {
                    events.push($crate::domain::Event::new(
                        $crate::domain::EventKind::ParticipantJoined,
                        &recount.room,
                        Some(&user),
                        Vec::new(),
                        now,
                    ));
                }
                record_events(&mut tx, &events).await?;
                tx.commit().await?;
                Ok($crate::store::Joined {
                    user,
                    room: recount.room,
                    came_online,
                    session_started: recount.started,
                    events,
                })
            }

            async fn leave_room(
                &self,
                connection: &$crate::store::ConnectionRecord,
                at: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<$crate::store::Left> {
                let scope = connection.scope;
                let mut tx = self.pool.begin().await?;
                if !lock_room(&mut tx, scope).await? {
                    return Ok($crate::store::Left::default());
                }
                let user_exists = lock_user(&mut tx, scope, connection.user_id).await?;
                let removed = sqlx::query("DELETE FROM connections WHERE id = $1")
                    .bind(connection.id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let mut went_offline = false;
                if removed > 0
                    && user_exists
                    && count_user_connections(&mut tx, connection.user_id).await? == 0
                {
                    sqlx::query("UPDATE users SET status = 'offline', left_at = $1 WHERE id = $2")
                        .bind(at.as_millis())
                        .bind(connection.user_id.to_string())
                        .execute(&mut *tx)
                        .await?;
                    close_sessions(&mut tx, connection.user_id, at).await?;
                    went_offline = true;
                }
                let recount = recount(&mut tx, scope, at).await?;
                let user = fetch_user(&mut tx, scope, connection.user_id).await?;
                let mut events = Vec::new();
                if let (true, Some(user)) = (went_offline, &user) {
                    events.push($crate::domain::Event::new(
                        $crate::domain::EventKind::ParticipantLeft,
                        &recount.room,
                        Some(user),
                        Vec::new(),
                        at,
                    ));
                }
                events.extend(recount.closed_event(at));
                record_events(&mut tx, &events).await?;
                tx.commit().await?;
                Ok($crate::store::Left {
                    user,
                    room: Some(recount.room),
                    went_offline,
                    session_closed: recount.closed,
                    session_users: recount.session_users,
                    events,
                })
            }

            async fn list_follows(
                &self,
                scope: $crate::store::RoomScope,
            ) -> $crate::store::StoreResult<Vec<($crate::domain::UserId, $crate::domain::UserId)>> {
                let found = sqlx::query(
                    "SELECT f.follower_id, f.followee_id FROM follows f \
                     JOIN rooms r ON r.id = f.room_id \
                     WHERE f.room_id = $1 AND r.account_id = $2 \
                     ORDER BY f.created_at, f.follower_id, f.followee_id",
                )
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                found
                    .iter()
                    .map(|row| {
                        let follower: String = sqlx::Row::try_get(row, "follower_id")?;
                        let followee: String = sqlx::Row::try_get(row, "followee_id")?;
                        $crate::store::sql::follow_pair(&follower, &followee)
                    })
                    .collect()
            }

            async fn set_follow(
                &self,
                scope: $crate::store::RoomScope,
                follower: $crate::domain::UserId,
                followee: $crate::domain::UserId,
                follow: bool,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                if !lock_room(&mut tx, scope).await? {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Room));
                }
                let both: i64 = sqlx::Row::try_get(
                    &sqlx::query(
                        "SELECT COUNT(*) AS n FROM users WHERE room_id = $1 AND id IN ($2, $3)",
                    )
                    .bind(scope.room_id.to_string())
                    .bind(follower.to_string())
                    .bind(followee.to_string())
                    .fetch_one(&mut *tx)
                    .await?,
                    "n",
                )?;
                if both != 2 {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::User));
                }
                let change = if follow {
                    sqlx::query(
                        "INSERT INTO follows (room_id, follower_id, followee_id, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (follower_id, followee_id) DO NOTHING",
                    )
                    .bind(scope.room_id.to_string())
                    .bind(follower.to_string())
                    .bind(followee.to_string())
                    .bind($crate::domain::Timestamp::now().as_millis())
                } else {
                    sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                        .bind(follower.to_string())
                        .bind(followee.to_string())
                };
                change.execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        /// Records events in the transaction of the change they describe.
        async fn record_events(
            conn: &mut <$db as sqlx::Database>::Connection,
            events: &[$crate::domain::Event],
        ) -> $crate::store::StoreResult<()> {
            for event in events {
                let payload = serde_json::to_string(&event.payload())
                    .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO events (id, account_id, room_id, kind, payload, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&event.id)
                .bind(event.account_id.to_string())
                .bind(event.room.id.to_string())
                .bind(event.kind.name())
                .bind(payload)
                .bind(event.timestamp.as_millis())
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        async fn fetch_room(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: $crate::store::RoomScope,
        ) -> $crate::store::StoreResult<$crate::domain::Room> {
            let sql = format!(
                "SELECT {} FROM rooms WHERE id = $1 AND account_id = $2",
                $crate::store::sql::ROOM_COLUMNS
            );
            let row = sqlx::query(&sql)
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_optional(conn)
                .await?
                .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?;
            rows::room(&row)?.try_into()
        }

        /// Takes the room's row lock (PostgreSQL) or the write lock (SQLite); false if the
        /// account has no such room.
        async fn lock_room(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: $crate::store::RoomScope,
        ) -> $crate::store::StoreResult<bool> {
            let done = sqlx::query("UPDATE rooms SET id = id WHERE id = $1 AND account_id = $2")
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .execute(conn)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn lock_user(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: $crate::store::RoomScope,
            user_id: $crate::domain::UserId,
        ) -> $crate::store::StoreResult<bool> {
            let done = sqlx::query("UPDATE users SET id = id WHERE id = $1 AND room_id = $2")
                .bind(user_id.to_string())
                .bind(scope.room_id.to_string())
                .execute(conn)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        async fn count_user_connections(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: $crate::domain::UserId,
        ) -> $crate::store::StoreResult<i64> {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM connections WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_one(conn)
                .await?;
            Ok(sqlx::Row::try_get(&row, "n")?)
        }

        async fn close_sessions(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: $crate::domain::UserId,
            at: $crate::domain::Timestamp,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query("UPDATE user_sessions SET left_at = $1 WHERE user_id = $2 AND left_at IS NULL")
                .bind(at.as_millis())
                .bind(user_id.to_string())
                .execute(conn)
                .await?;
            Ok(())
        }

        async fn fetch_user(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: $crate::store::RoomScope,
            user_id: $crate::domain::UserId,
        ) -> $crate::store::StoreResult<Option<$crate::domain::User>> {
            let sql = format!(
                "SELECT {} FROM users WHERE id = $1 AND room_id = $2",
                $crate::store::sql::USER_COLUMNS
            );
            let row = sqlx::query(&sql)
                .bind(user_id.to_string())
                .bind(scope.room_id.to_string())
                .fetch_optional(conn)
                .await?;
            row.map(|r| rows::user(&r)?.try_into()).transpose()
        }

        /// Stores `count` as the room's online users, opening or closing its session.
        async fn set_room_count(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: $crate::store::RoomScope,
            count: i64,
            now: $crate::domain::Timestamp,
        ) -> $crate::store::StoreResult<$crate::domain::Room> {
            let sql = format!(
                "UPDATE rooms SET active_participants = $1, \
                   closed_sessions_ms = closed_sessions_ms + CASE \
                     WHEN $1 = 0 AND session_started_at IS NOT NULL \
                     THEN $2 - session_started_at ELSE 0 END, \
                   session_started_at = CASE WHEN $1 = 0 THEN NULL \
                     ELSE COALESCE(session_started_at, $2) END \
                 WHERE id = $3 AND account_id = $4 RETURNING {}",
                $crate::store::sql::ROOM_COLUMNS
            );
            let row = sqlx::query(&sql)
                .bind(count)
                .bind(now.as_millis())
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_optional(conn)
                .await?
                .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?;
            rows::room(&row)?.try_into()
        }

        /// Recounts a (locked) room's online users from its joined sockets.
        async fn recount(
            conn: &mut <$db as sqlx::Database>::Connection,
            scope: $crate::store::RoomScope,
            now: $crate::domain::Timestamp,
        ) -> $crate::store::StoreResult<$crate::store::sql::Recount> {
            let row = sqlx::query(
                "SELECT session_started_at, \
                   (SELECT COUNT(DISTINCT user_id) FROM connections WHERE room_id = $1) AS online \
                 FROM rooms WHERE id = $1",
            )
            .bind(scope.room_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
            let before: Option<i64> = sqlx::Row::try_get(&row, "session_started_at")?;
            let online: i64 = sqlx::Row::try_get(&row, "online")?;
            let room = set_room_count(&mut *conn, scope, online, now).await?;
            let closed = before.is_some() && room.session_started_at.is_none();
            let session_users = match before {
                Some(started) if closed => {
                    let sql = format!(
                        "SELECT {} FROM users WHERE room_id = $1 AND id IN \
                           (SELECT user_id FROM user_sessions \
                            WHERE room_id = $1 AND left_at >= $2) \
                         ORDER BY created_at, id",
                        $crate::store::sql::USER_COLUMNS
                    );
                    let found = sqlx::query(&sql)
                        .bind(scope.room_id.to_string())
                        .bind(started)
                        .fetch_all(&mut *conn)
                        .await?;
                    found
                        .iter()
                        .map(|r| rows::user(r)?.try_into())
                        .collect::<$crate::store::StoreResult<Vec<_>>>()?
                }
                _ => Vec::new(),
            };
            Ok($crate::store::sql::Recount {
                started: before.is_none() && room.session_started_at.is_some(),
                closed,
                room,
                session_users,
            })
        }

        async fn insert_api_key(
            conn: &mut <$db as sqlx::Database>::Connection,
            key: &$crate::store::NewApiKey,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query(
                "INSERT INTO api_keys (id, account_id, key_hash, prefix, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key.id.to_string())
            .bind(key.account_id.to_string())
            .bind(&key.key_hash)
            .bind(&key.prefix)
            .bind(key.created_at.as_millis())
            .execute(conn)
            .await
            .map_err(|e| $crate::store::sql::conflict_or_database(e, $crate::store::Entity::ApiKey))?;
            Ok(())
        }
    };
}

pub(super) use impl_sql_store;

/// Parses the two columns `find_api_key` selects.
pub(super) fn key_owner(id: &str, account_id: &str) -> StoreResult<super::KeyOwner> {
    Ok(super::KeyOwner {
        key_id: parse(id, "api key id")?,
        account_id: parse(account_id, "account id")?,
    })
}

/// A room after a recount, and how its session changed.
pub(super) struct Recount {
    pub room: Room,
    pub started: bool,
    pub closed: bool,
    pub session_users: Vec<User>,
}

impl Recount {
    /// `session.closed` with the session's users, if the recount closed it.
    pub fn closed_event(&self, at: Timestamp) -> Option<crate::domain::Event> {
        self.closed.then(|| {
            crate::domain::Event::new(
                crate::domain::EventKind::SessionClosed,
                &self.room,
                None,
                self.session_users.clone(),
                at,
            )
        })
    }
}

pub(super) fn follow_pair(
    follower: &str,
    followee: &str,
) -> StoreResult<(crate::domain::UserId, crate::domain::UserId)> {
    Ok((
        parse(follower, "follower id")?,
        parse(followee, "followee id")?,
    ))
}

pub(super) fn connection_record(
    id: &str,
    node_id: &str,
    room_id: &str,
    user_id: &str,
    account_id: &str,
) -> StoreResult<super::ConnectionRecord> {
    Ok(super::ConnectionRecord {
        id: parse(id, "connection id")?,
        node_id: crate::domain::NodeId::new(node_id),
        scope: super::RoomScope {
            account_id: parse(account_id, "account id")?,
            room_id: parse(room_id, "room id")?,
        },
        user_id: parse(user_id, "user id")?,
    })
}
