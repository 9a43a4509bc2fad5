//! `MembershipStore` on either database, and the recount that joins, leaves and a user's
//! deletion share.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::{ConnectionRecord, JoinedRooms, Left, MembershipStore, Recount, Recounted, RoomJoins};
use crate::domain::{ConnectionId, Event, EventKind, Room, Timestamp, User, UserId};
use crate::store::dialect::{Column, Dialect, RowsAffected};
use crate::store::query::Sql;
use crate::store::rooms::{RoomRow, ROOM_COLUMNS};
use crate::store::sql::SqlStore;
use crate::store::users::{users, UserRow, USER_COLUMNS};
use crate::store::{Entity, RoomScope, StoreError, StoreResult};

#[async_trait]
impl<DB> MembershipStore for SqlStore<DB>
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
    async fn join_rooms(&self, batches: &[RoomJoins]) -> StoreResult<JoinedRooms> {
        if batches.iter().all(|batch| batch.connections.is_empty()) {
            return Ok(batches.iter().map(|_| Ok(Vec::new())).collect());
        }
        let mut tx = self.pool.begin_with(DB::BEGIN_PLANNING_EACH_RUN).await?;
        let joined = Self::join_in(&mut tx, batches).await?;
        tx.commit().await?;
        Ok(joined)
    }

    async fn leave_room(&self, connection: &ConnectionRecord, at: Timestamp) -> StoreResult<Left> {
        let scope = connection.scope;
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Ok(Left::default());
        }
        let user_exists = Self::lock_user(&mut tx, scope, connection.user_id).await?;
        let removed = sqlx::query("DELETE FROM connections WHERE id = $1")
            .bind(connection.id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut went_offline = false;
        if removed > 0
            && user_exists
            && Self::count_user_connections(&mut tx, connection.user_id).await? == 0
        {
            sqlx::query("UPDATE users SET status = 'offline', left_at = $1 WHERE id = $2")
                .bind(at.as_millis())
                .bind(connection.user_id.to_string())
                .execute(&mut *tx)
                .await?;
            Self::close_sessions(&mut tx, connection.user_id, at).await?;
            went_offline = true;
        }
        let recount = Self::recount(&mut tx, scope, at).await?;
        let user = Self::fetch_user(&mut tx, scope, connection.user_id).await?;
        let mut events = Vec::new();
        if let (true, Some(user)) = (went_offline, &user) {
            events.push(Event::new(
                EventKind::ParticipantLeft,
                &recount.room,
                Some(user),
                Vec::new(),
                at,
            ));
        }
        events.extend(recount.closed_event(at));
        Self::record_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(Left {
            user,
            room: Some(recount.room),
            went_offline,
            session_closed: recount.closed,
            session_users: recount.session_users,
            events,
        })
    }

    async fn leave_many(
        &self,
        scope: RoomScope,
        connections: &[ConnectionId],
        at: Timestamp,
    ) -> StoreResult<Recounted> {
        let mut tx = self.pool.begin_with(DB::BEGIN_PLANNING_EACH_RUN).await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        if !connections.is_empty() {
            let mut delete = Sql::new("DELETE FROM connections WHERE room_id = ");
            delete
                .bind(scope.room_id.to_string())
                .push(" AND id")
                .in_list(connections.iter().map(|id| id.to_string()));
            delete.query::<DB>().execute(&mut *tx).await?;
        }
        let sql = format!(
            "UPDATE users SET status = 'offline', left_at = $1 \
             WHERE room_id = $2 AND status = 'online' \
               AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.user_id = users.id) \
             RETURNING {USER_COLUMNS}"
        );
        let offline: Vec<UserRow> = sqlx::query_as(&sql)
            .bind(at.as_millis())
            .bind(scope.room_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
        let users_set_offline = users(offline)?;
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
        let recount = Self::recount(&mut tx, scope, at).await?;
        let mut events: Vec<Event> = users_set_offline
            .iter()
            .map(|user| {
                Event::new(
                    EventKind::ParticipantLeft,
                    &recount.room,
                    Some(user),
                    Vec::new(),
                    at,
                )
            })
            .collect();
        events.extend(recount.closed_event(at));
        Self::record_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(Recounted {
            room: recount.room,
            users_set_offline,
            events,
        })
    }

    async fn recount_room(&self, scope: RoomScope) -> StoreResult<Recounted> {
        self.leave_many(scope, &[], Timestamp::now()).await
    }

    async fn set_active_participants(&self, scope: RoomScope, count: i64) -> StoreResult<Room> {
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        let room = Self::set_room_count(&mut tx, scope, count, Timestamp::now()).await?;
        tx.commit().await?;
        Ok(room)
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
    async fn count_user_connections(
        conn: &mut DB::Connection,
        user_id: UserId,
    ) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_one(conn)
                .await?,
        )
    }

    async fn close_sessions(
        conn: &mut DB::Connection,
        user_id: UserId,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE user_sessions SET left_at = $1 WHERE user_id = $2 AND left_at IS NULL")
            .bind(at.as_millis())
            .bind(user_id.to_string())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Stores `count` as the room's online users, opening or closing its session to match.
    async fn set_room_count(
        conn: &mut DB::Connection,
        scope: RoomScope,
        count: i64,
        now: Timestamp,
    ) -> StoreResult<Room> {
        Self::set_room_counts(conn, &[(scope, count)], now)
            .await?
            .pop()
            .ok_or(StoreError::NotFound(Entity::Room))
    }

    /// `set_room_count` for several rooms in one statement; returns those that exist.
    pub(super) async fn set_room_counts(
        conn: &mut DB::Connection,
        counts: &[(RoomScope, i64)],
        now: Timestamp,
    ) -> StoreResult<Vec<Room>> {
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        // `n` holds each room's (ID, account, count) as `column1` to `column3`: the names
        // both databases give the columns of a `VALUES` list.
        let mut update = Sql::new(
            "UPDATE rooms SET active_participants = n.column3, \
               closed_sessions_ms = rooms.closed_sessions_ms + CASE \
                 WHEN n.column3 = 0 AND rooms.session_started_at IS NOT NULL THEN ",
        );
        update
            .bind(now.as_millis())
            .push(
                " - rooms.session_started_at ELSE 0 END, \
                 session_started_at = CASE WHEN n.column3 = 0 THEN NULL \
                   ELSE COALESCE(rooms.session_started_at, ",
            )
            .bind(now.as_millis())
            .push(") END FROM (VALUES ");
        for (i, (scope, count)) in counts.iter().enumerate() {
            update
                .push(if i == 0 { "(" } else { ", (" })
                .bind(scope.room_id.to_string())
                .push(", ")
                .bind(scope.account_id.to_string())
                .push(", ")
                .bind(*count)
                .push(")");
        }
        update.push(&format!(
            ") AS n WHERE rooms.id = n.column1 AND rooms.account_id = n.column2 \
             RETURNING {ROOM_COLUMNS}"
        ));
        let rows: Vec<RoomRow> = update.query_as::<DB, _>().fetch_all(conn).await?;
        rows.into_iter().map(Room::try_from).collect()
    }

    /// Recounts a (locked) room's online users from its joined sockets.
    pub(in crate::store) async fn recount(
        conn: &mut DB::Connection,
        scope: RoomScope,
        now: Timestamp,
    ) -> StoreResult<Recount> {
        let (before, online): (Option<i64>, i64) = sqlx::query_as(
            "SELECT session_started_at, \
               (SELECT COUNT(DISTINCT user_id) FROM connections WHERE room_id = $1) \
             FROM rooms WHERE id = $1",
        )
        .bind(scope.room_id.to_string())
        .fetch_one(&mut *conn)
        .await?;
        let room = Self::set_room_count(&mut *conn, scope, online, now).await?;
        Self::recounted(conn, before, room).await
    }

    /// A room's recount, from when its session started before (`session_before`) and the
    /// room after.
    pub(super) async fn recounted(
        conn: &mut DB::Connection,
        session_before: Option<i64>,
        room: Room,
    ) -> StoreResult<Recount> {
        let closed = session_before.is_some() && room.session_started_at.is_none();
        let session_users: Vec<User> = match session_before {
            Some(started) if closed => {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE room_id = $1 AND id IN \
                       (SELECT user_id FROM user_sessions WHERE room_id = $1 AND left_at >= $2) \
                     ORDER BY created_at, id"
                );
                let rows: Vec<UserRow> = sqlx::query_as(&sql)
                    .bind(room.id.to_string())
                    .bind(started)
                    .fetch_all(&mut *conn)
                    .await?;
                users(rows)?
            }
            _ => Vec::new(),
        };
        Ok(Recount {
            started: session_before.is_none() && room.session_started_at.is_some(),
            closed,
            room,
            session_users,
        })
    }
}
