//! Rooms: `RoomStore`, its implementation on either database, and the room locks and reads
//! other capabilities share.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Executor};

use super::dialect::{Column, Dialect, RowsAffected};
use super::page::push_filter;
use super::query::Sql;
use super::sql::{conflict_or_database, parse, Columns, SqlStore};
use super::{Entity, ListFilter, Listed, Page, RoomScope, StoreError, StoreResult};
use crate::domain::{AccountId, Room, RoomId, RoomState, Timestamp};

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

/// What the database says of the changes to rooms and their users that commit (on any
/// node): `Store::watch_rooms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomSignal {
    /// The feed is up: from now on every change is reported.
    Listening,
    /// This room, or one of its users, changed; `own`: through this store (this node), which
    /// announced it itself.
    Changed { room_id: RoomId, own: bool },
    /// The feed is down: changes may go unreported until the next `Listening`.
    Lost,
}

#[async_trait]
pub trait RoomStore: Send + Sync {
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
}

pub(super) const ROOM_COLUMNS: &str = "id, account_id, name, custom_id, created_at, state, \
     active_participants, closed_sessions_ms, session_started_at, total_users_created";

/// A room as stored (`ROOM_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(super) struct RoomRow {
    id: String,
    account_id: String,
    name: String,
    custom_id: Option<String>,
    created_at: i64,
    state: String,
    active_participants: i64,
    closed_sessions_ms: i64,
    session_started_at: Option<i64>,
    total_users_created: i64,
}

impl RoomRow {
    /// The room's columns (`ROOM_COLUMNS`, in order) from position `first` on, in a row that
    /// holds another table's columns too, whose names they share.
    pub(super) fn at<DB: Database>(row: &DB::Row, first: usize) -> Result<Self, sqlx::Error>
    where
        usize: ColumnIndex<DB::Row>,
        String: Column<DB>,
        Option<String>: Column<DB>,
        i64: Column<DB>,
        Option<i64>: Column<DB>,
    {
        let mut columns = Columns::from(row, first);
        Ok(Self {
            id: columns.next()?,
            account_id: columns.next()?,
            name: columns.next()?,
            custom_id: columns.next()?,
            created_at: columns.next()?,
            state: columns.next()?,
            active_participants: columns.next()?,
            closed_sessions_ms: columns.next()?,
            session_started_at: columns.next()?,
            total_users_created: columns.next()?,
        })
    }
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
            session_started_at: row.session_started_at.map(Timestamp::from_millis),
            total_users_created: row.total_users_created,
        })
    }
}

#[async_trait]
impl<DB> RoomStore for SqlStore<DB>
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
    async fn create_room(&self, room: &NewRoom) -> StoreResult<Room> {
        let sql = format!(
            "INSERT INTO rooms (id, account_id, name, custom_id, created_at, state) \
             VALUES ($1, $2, $3, $4, $5, 'active') RETURNING {ROOM_COLUMNS}"
        );
        let row: RoomRow = sqlx::query_as(&sql)
            .bind(room.id.to_string())
            .bind(room.account_id.to_string())
            .bind(&room.name)
            .bind(&room.custom_id)
            .bind(room.created_at.as_millis())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| conflict_or_database(e, Entity::Room))?;
        row.try_into()
    }

    async fn list_rooms(
        &self,
        account_id: AccountId,
        filter: &ListFilter,
        page: Page,
    ) -> StoreResult<Listed<Room>> {
        const SEARCH: &[&str] = &["name"];
        let mut count = Sql::new("SELECT COUNT(*) FROM rooms WHERE account_id = ");
        count.bind(account_id.to_string());
        push_filter::<DB>(&mut count, filter, SEARCH);
        let (total,): (i64,) = count.query_as::<DB, _>().fetch_one(&self.reads).await?;

        let mut list = Sql::new(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms WHERE account_id = "
        ));
        list.bind(account_id.to_string());
        push_filter::<DB>(&mut list, filter, SEARCH);
        list.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(page.limit)
            .push(" OFFSET ")
            .bind(page.offset);
        let rows: Vec<RoomRow> = list.query_as::<DB, _>().fetch_all(&self.reads).await?;
        let items = rows
            .into_iter()
            .map(Room::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Listed { items, total })
    }

    async fn get_room(&self, account_id: AccountId, room_id: RoomId) -> StoreResult<Option<Room>> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1 AND account_id = $2");
        let row: Option<RoomRow> = sqlx::query_as(&sql)
            .bind(room_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(Room::try_from).transpose()
    }

    async fn get_room_by_custom_id(
        &self,
        account_id: AccountId,
        custom_id: &str,
    ) -> StoreResult<Option<Room>> {
        let sql =
            format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE custom_id = $1 AND account_id = $2");
        let row: Option<RoomRow> = sqlx::query_as(&sql)
            .bind(custom_id.to_owned())
            .bind(account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(Room::try_from).transpose()
    }

    async fn update_room(
        &self,
        account_id: AccountId,
        room_id: RoomId,
        changes: &RoomChanges,
    ) -> StoreResult<Room> {
        let mut update = Sql::new("UPDATE rooms SET id = id");
        if let Some(name) = &changes.name {
            update.push(", name = ").bind(name.clone());
        }
        if let Some(custom_id) = &changes.custom_id {
            update.push(", custom_id = ").bind(custom_id.clone());
        }
        update
            .push(" WHERE id = ")
            .bind(room_id.to_string())
            .push(" AND account_id = ")
            .bind(account_id.to_string())
            .push(&format!(" RETURNING {ROOM_COLUMNS}"));
        let row: RoomRow = update
            .query_as::<DB, _>()
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| conflict_or_database(e, Entity::Room))?
            .ok_or(StoreError::NotFound(Entity::Room))?;
        row.try_into()
    }

    async fn delete_room(&self, account_id: AccountId, room_id: RoomId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM rooms WHERE id = $1 AND account_id = $2")
            .bind(room_id.to_string())
            .bind(account_id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(Entity::Room));
        }
        Ok(())
    }
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
    /// Takes the room's row lock (SQLite: the write lock, at once, as the first statement);
    /// false if the account has no such room.
    pub(super) async fn lock_room(
        conn: &mut DB::Connection,
        scope: RoomScope,
    ) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE rooms SET id = id WHERE id = $1 AND account_id = $2")
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .execute(conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn room_exists(
        conn: &mut DB::Connection,
        scope: RoomScope,
    ) -> StoreResult<bool> {
        let found = sqlx::query("SELECT 1 FROM rooms WHERE id = $1 AND account_id = $2")
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(conn)
            .await?;
        Ok(found.is_some())
    }

    /// The room; `NotFound(Room)` if the account has no such room.
    pub(super) async fn fetch_room(
        conn: &mut DB::Connection,
        scope: RoomScope,
    ) -> StoreResult<Room> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1 AND account_id = $2");
        let row: RoomRow = sqlx::query_as(&sql)
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::NotFound(Entity::Room))?;
        row.try_into()
    }
}
