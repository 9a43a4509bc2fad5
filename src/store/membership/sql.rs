//! `MembershipStore` on either database, and the recount that joins, leaves and a user's
//! deletion share.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::{
    ConnectionRecord, Joined, JoinedRooms, Left, MembershipStore, NewConnection, Recount,
    Recounted, RoomJoins,
};
use crate::domain::{ConnectionId, Event, EventKind, Room, SessionId, Timestamp, User, UserId};
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
        let mut results: Vec<Option<StoreResult<Vec<StoreResult<Joined>>>>> =
            batches.iter().map(|_| None).collect();
        // Rooms are locked in the order of their IDs: transactions that lock several rooms
        // never wait on each other in a circle.
        let mut order: Vec<usize> = (0..batches.len())
            .filter(|&i| !batches[i].connections.is_empty())
            .collect();
        order.sort_by_cached_key(|&i| batches[i].scope.room_id.to_string());
        if !order.is_empty() {
            let mut tx = self.pool.begin().await?;
            for i in order {
                results[i] = Some(Self::join_in(&mut tx, &batches[i]).await?);
            }
            tx.commit().await?;
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Ok(Vec::new())))
            .collect())
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
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        if !connections.is_empty() {
            let mut delete = Sql::new("DELETE FROM connections WHERE room_id = ");
            delete
                .bind(scope.room_id.to_string())
                .push(" AND id IN (")
                .bind_all(connections.iter().map(|id| id.to_string()))
                .push(")");
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
    /// One room's joins of `join_rooms`, in its transaction: `NotFound(Room)` inside if the
    /// room is gone (nothing written for it).
    async fn join_in(
        conn: &mut DB::Connection,
        batch: &RoomJoins,
    ) -> StoreResult<StoreResult<Vec<StoreResult<Joined>>>> {
        let (scope, connections) = (batch.scope, &batch.connections);
        let now = connections
            .iter()
            .map(|c| c.opened_at)
            .max()
            .unwrap_or_else(Timestamp::now);
        if !Self::lock_room(&mut *conn, scope).await? {
            return Ok(Err(StoreError::NotFound(Entity::Room)));
        }
        let mut wanted: Vec<UserId> = Vec::new();
        for connection in connections {
            if !wanted.contains(&connection.user_id) {
                wanted.push(connection.user_id);
            }
        }
        let existing = Self::lock_users(&mut *conn, scope, &wanted).await?;
        let joining: Vec<&NewConnection> = connections
            .iter()
            .filter(|c| existing.contains(&c.user_id))
            .collect();
        let users_joining: Vec<UserId> = wanted
            .iter()
            .copied()
            .filter(|id| existing.contains(id))
            .collect();
        // Users with a socket before this batch are online already.
        let came_online: Vec<UserId> = if users_joining.is_empty() {
            Vec::new()
        } else {
            let mut online =
                Sql::new("SELECT DISTINCT user_id FROM connections WHERE user_id IN (");
            online
                .bind_all(users_joining.iter().map(|id| id.to_string()))
                .push(")");
            let online: Vec<(String,)> = online.query_as::<DB, _>().fetch_all(&mut *conn).await?;
            let online: HashSet<String> = online.into_iter().map(|(id,)| id).collect();
            users_joining
                .iter()
                .copied()
                .filter(|id| !online.contains(&id.to_string()))
                .collect()
        };
        if !joining.is_empty() {
            let mut insert = Sql::new(
                "INSERT INTO connections (id, node_id, room_id, user_id, opened_at) VALUES ",
            );
            for (i, connection) in joining.iter().enumerate() {
                insert.push(if i == 0 { "(" } else { ", (" });
                insert
                    .bind(connection.id.to_string())
                    .push(", ")
                    .bind(connection.node_id.as_str())
                    .push(", ")
                    .bind(scope.room_id.to_string())
                    .push(", ")
                    .bind(connection.user_id.to_string())
                    .push(", ")
                    .bind(connection.opened_at.as_millis())
                    .push(")");
            }
            insert.query::<DB>().execute(&mut *conn).await?;
        }
        if !came_online.is_empty() {
            let ids = || came_online.iter().map(|id| id.to_string());
            let mut status = Sql::new("UPDATE users SET status = 'online', joined_at = ");
            status
                .bind(now.as_millis())
                .push(" WHERE id IN (")
                .bind_all(ids())
                .push(")");
            status.query::<DB>().execute(&mut *conn).await?;
            // Sessions left open by a crash end where the new ones start.
            let mut close = Sql::new("UPDATE user_sessions SET left_at = ");
            close
                .bind(now.as_millis())
                .push(" WHERE left_at IS NULL AND user_id IN (")
                .bind_all(ids())
                .push(")");
            close.query::<DB>().execute(&mut *conn).await?;
            let mut open =
                Sql::new("INSERT INTO user_sessions (id, user_id, room_id, joined_at) VALUES ");
            for (i, user_id) in came_online.iter().enumerate() {
                open.push(if i == 0 { "(" } else { ", (" });
                open.bind(SessionId::new().to_string())
                    .push(", ")
                    .bind(user_id.to_string())
                    .push(", ")
                    .bind(scope.room_id.to_string())
                    .push(", ")
                    .bind(now.as_millis())
                    .push(")");
            }
            open.query::<DB>().execute(&mut *conn).await?;
        }
        let recount = Self::recount(&mut *conn, scope, now).await?;
        let users = Self::fetch_users(&mut *conn, scope, &users_joining).await?;
        // Each join carries its own events: the batch's first joiner the session's start,
        // each user coming online their `participant.joined`.
        let mut results = Vec::with_capacity(connections.len());
        let mut announced: HashSet<UserId> = HashSet::new();
        let mut session_started = recount.started;
        let mut all_events = Vec::new();
        for connection in connections {
            let Some(user) = users.get(&connection.user_id) else {
                results.push(Err(StoreError::NotFound(Entity::User)));
                continue;
            };
            let mut events = Vec::new();
            let started = std::mem::take(&mut session_started);
            if started {
                events.push(Event::new(
                    EventKind::SessionStarted,
                    &recount.room,
                    None,
                    Vec::new(),
                    now,
                ));
            }
            let user_came_online = came_online.contains(&user.id) && announced.insert(user.id);
            if user_came_online {
                events.push(Event::new(
                    EventKind::ParticipantJoined,
                    &recount.room,
                    Some(user),
                    Vec::new(),
                    now,
                ));
            }
            all_events.extend(events.iter().cloned());
            results.push(Ok(Joined {
                user: user.clone(),
                room: recount.room.clone(),
                came_online: user_came_online,
                session_started: started,
                events,
            }));
        }
        Self::record_events(&mut *conn, &all_events).await?;
        Ok(Ok(results))
    }

    /// Locks the users of `ids` that are the room's, and returns those.
    async fn lock_users(
        conn: &mut DB::Connection,
        scope: RoomScope,
        ids: &[UserId],
    ) -> StoreResult<HashSet<UserId>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let mut lock = Sql::new("UPDATE users SET id = id WHERE room_id = ");
        lock.bind(scope.room_id.to_string())
            .push(" AND id IN (")
            .bind_all(ids.iter().map(|id| id.to_string()))
            .push(") RETURNING id");
        let locked: Vec<(String,)> = lock.query_as::<DB, _>().fetch_all(conn).await?;
        let locked: HashSet<String> = locked.into_iter().map(|(id,)| id).collect();
        Ok(ids
            .iter()
            .copied()
            .filter(|id| locked.contains(&id.to_string()))
            .collect())
    }

    /// The room's users of `ids`, by id.
    async fn fetch_users(
        conn: &mut DB::Connection,
        scope: RoomScope,
        ids: &[UserId],
    ) -> StoreResult<HashMap<UserId, User>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut select = Sql::new(format!("SELECT {USER_COLUMNS} FROM users WHERE room_id = "));
        select
            .bind(scope.room_id.to_string())
            .push(" AND id IN (")
            .bind_all(ids.iter().map(|id| id.to_string()))
            .push(")");
        let rows: Vec<UserRow> = select.query_as::<DB, _>().fetch_all(conn).await?;
        Ok(users(rows)?
            .into_iter()
            .map(|user| (user.id, user))
            .collect())
    }

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

    /// Stores `count` as the room's online users, opening or closing its session.
    async fn set_room_count(
        conn: &mut DB::Connection,
        scope: RoomScope,
        count: i64,
        now: Timestamp,
    ) -> StoreResult<Room> {
        let sql = format!(
            "UPDATE rooms SET active_participants = $1, \
               closed_sessions_ms = closed_sessions_ms + CASE \
                 WHEN $1 = 0 AND session_started_at IS NOT NULL \
                 THEN $2 - session_started_at ELSE 0 END, \
               session_started_at = CASE WHEN $1 = 0 THEN NULL \
                 ELSE COALESCE(session_started_at, $2) END \
             WHERE id = $3 AND account_id = $4 RETURNING {ROOM_COLUMNS}"
        );
        let row: RoomRow = sqlx::query_as(&sql)
            .bind(count)
            .bind(now.as_millis())
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::NotFound(Entity::Room))?;
        row.try_into()
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
        let closed = before.is_some() && room.session_started_at.is_none();
        let session_users: Vec<User> = match before {
            Some(started) if closed => {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE room_id = $1 AND id IN \
                       (SELECT user_id FROM user_sessions WHERE room_id = $1 AND left_at >= $2) \
                     ORDER BY created_at, id"
                );
                let rows: Vec<UserRow> = sqlx::query_as(&sql)
                    .bind(scope.room_id.to_string())
                    .bind(started)
                    .fetch_all(&mut *conn)
                    .await?;
                users(rows)?
            }
            _ => Vec::new(),
        };
        Ok(Recount {
            started: before.is_none() && room.session_started_at.is_some(),
            closed,
            room,
            session_users,
        })
    }
}
