//! `join_rooms` on either database: the sockets of several rooms join in one transaction of
//! a fixed number of statements, however many rooms and sockets it records (a reconnection
//! storm records up to 200 joins of dozens of rooms at once; a statement per room and per
//! event made such a transaction hundreds of round trips to the database).

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{ColumnIndex, Executor};

use super::{Joined, JoinedRooms, NewConnection, Recount, RoomJoins};
use crate::domain::{Event, EventKind, RoomId, SessionId, Timestamp, User, UserId, UserStatus};
use crate::store::dialect::{Column, Dialect, RowLock};
use crate::store::query::{inserts, Sql, Value};
use crate::store::sql::SqlStore;
use crate::store::users::{users, UserRow, USER_COLUMNS};
use crate::store::{Entity, RoomScope, StoreError, StoreResult};

/// A room of the transaction, locked: its scope, and when its session started before.
struct LockedRoom {
    scope: RoomScope,
    session_before: Option<i64>,
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
    /// `join_rooms` in its transaction: each room's joins as `join_many` records them. One
    /// time, the latest of the sockets' opening, stamps what the transaction changes.
    pub(super) async fn join_in(
        conn: &mut DB::Connection,
        batches: &[RoomJoins],
    ) -> StoreResult<JoinedRooms> {
        let now = batches
            .iter()
            .flat_map(|batch| &batch.connections)
            .map(|connection| connection.opened_at)
            .max()
            .unwrap_or_else(Timestamp::now);
        let rooms = Self::lock_rooms(&mut *conn, batches).await?;
        let mut wanted: Vec<UserId> = Vec::new();
        let mut seen = HashSet::new();
        for batch in batches {
            if rooms.contains_key(&batch.scope.room_id) {
                let new = batch.connections.iter().map(|c| c.user_id);
                wanted.extend(new.filter(|id| seen.insert(*id)));
            }
        }
        let mut users = Self::lock_users(&mut *conn, &wanted).await?;
        // The sockets that join: their room exists and their user is of it.
        let joining: Vec<(RoomId, &NewConnection)> = batches
            .iter()
            .filter(|batch| rooms.contains_key(&batch.scope.room_id))
            .flat_map(|batch| {
                let room_id = batch.scope.room_id;
                batch.connections.iter().map(move |c| (room_id, c))
            })
            .filter(|(room_id, c)| users.get(&c.user_id).map(|u| u.room_id) == Some(*room_id))
            .collect();
        let mut users_joining: Vec<(UserId, RoomId)> = Vec::new();
        let mut seen = HashSet::new();
        for (room_id, connection) in &joining {
            if seen.insert(connection.user_id) {
                users_joining.push((connection.user_id, *room_id));
            }
        }
        let came_online = Self::offline_of(&mut *conn, &users_joining).await?;
        Self::record_joins(&mut *conn, &joining, &came_online, now).await?;
        // The users as `record_joins` left them.
        for (id, _) in &came_online {
            if let Some(user) = users.get_mut(id) {
                user.status = UserStatus::Online;
                user.joined_at = Some(now);
            }
        }
        let mut recounts = Self::recount_rooms(&mut *conn, &rooms, now).await?;

        // Each join carries its own events: a room's first joiner the session's start, each
        // user coming online their `participant.joined`.
        let online: HashSet<UserId> = came_online.iter().map(|(id, _)| *id).collect();
        let mut announced: HashSet<UserId> = HashSet::new();
        let mut all_events = Vec::new();
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            let room_id = batch.scope.room_id;
            if batch.connections.is_empty() {
                results.push(Ok(Vec::new()));
                continue;
            }
            let Some(recount) = recounts.get_mut(&room_id) else {
                results.push(Err(StoreError::NotFound(Entity::Room)));
                continue;
            };
            let mut joined = Vec::with_capacity(batch.connections.len());
            for connection in &batch.connections {
                let user = users
                    .get(&connection.user_id)
                    .filter(|user| user.room_id == room_id);
                let Some(user) = user else {
                    joined.push(Err(StoreError::NotFound(Entity::User)));
                    continue;
                };
                let mut events = Vec::new();
                let started = std::mem::take(&mut recount.started);
                if started {
                    events.push(Event::new(
                        EventKind::SessionStarted,
                        &recount.room,
                        None,
                        Vec::new(),
                        now,
                    ));
                }
                let user_came_online = online.contains(&user.id) && announced.insert(user.id);
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
                joined.push(Ok(Joined {
                    user: user.clone(),
                    room: recount.room.clone(),
                    came_online: user_came_online,
                    session_started: started,
                    events,
                }));
            }
            results.push(Ok(joined));
        }
        Self::record_events(&mut *conn, &all_events).await?;
        Ok(results)
    }

    /// Locks the batches' rooms that exist in their accounts, in the order of their IDs
    /// (transactions that lock several rooms never wait on each other in a circle).
    async fn lock_rooms(
        conn: &mut DB::Connection,
        batches: &[RoomJoins],
    ) -> StoreResult<HashMap<RoomId, LockedRoom>> {
        let ids: BTreeSet<String> = batches
            .iter()
            .filter(|batch| !batch.connections.is_empty())
            .map(|batch| batch.scope.room_id.to_string())
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut lock =
            Sql::new("UPDATE rooms SET id = id WHERE id IN (SELECT id FROM rooms WHERE id");
        lock.in_list(ids).push(&format!(
            " ORDER BY id{}) RETURNING id, account_id, session_started_at",
            DB::row_lock(RowLock::Update)
        ));
        let rows: Vec<(String, String, Option<i64>)> =
            lock.query_as::<DB, _>().fetch_all(conn).await?;
        let rows: HashMap<String, (String, Option<i64>)> = rows
            .into_iter()
            .map(|(id, account, started)| (id, (account, started)))
            .collect();
        let mut locked = HashMap::new();
        for batch in batches {
            let scope = batch.scope;
            if let Some((account, started)) = rows.get(&scope.room_id.to_string()) {
                if *account == scope.account_id.to_string() {
                    let session_before = *started;
                    locked.insert(
                        scope.room_id,
                        LockedRoom {
                            scope,
                            session_before,
                        },
                    );
                }
            }
        }
        Ok(locked)
    }

    /// Locks the users of `ids` that exist, and reads them. A locking read, not an `UPDATE`:
    /// PostgreSQL then writes no new version of each row (nor of its index entries) only to
    /// lock it; on SQLite the transaction holds the write lock already (`lock_rooms` wrote
    /// first).
    async fn lock_users(
        conn: &mut DB::Connection,
        ids: &[UserId],
    ) -> StoreResult<HashMap<UserId, User>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut lock = Sql::new(format!("SELECT {USER_COLUMNS} FROM users WHERE id"));
        lock.in_list(ids.iter().map(|id| id.to_string()))
            .push(DB::row_lock(RowLock::NoKeyUpdate));
        let rows: Vec<UserRow> = lock.query_as::<DB, _>().fetch_all(conn).await?;
        Ok(users(rows)?
            .into_iter()
            .map(|user| (user.id, user))
            .collect())
    }

    /// Those of `users` without a joined socket: each comes online with this transaction.
    async fn offline_of(
        conn: &mut DB::Connection,
        users: &[(UserId, RoomId)],
    ) -> StoreResult<Vec<(UserId, RoomId)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut online = Sql::new("SELECT DISTINCT user_id FROM connections WHERE user_id");
        online.in_list(users.iter().map(|(id, _)| id.to_string()));
        let online: Vec<(String,)> = online.query_as::<DB, _>().fetch_all(conn).await?;
        let online: HashSet<String> = online.into_iter().map(|(id,)| id).collect();
        Ok(users
            .iter()
            .filter(|(id, _)| !online.contains(&id.to_string()))
            .copied()
            .collect())
    }

    /// Inserts the joining sockets, and opens a session for each user coming online.
    async fn record_joins(
        conn: &mut DB::Connection,
        joining: &[(RoomId, &NewConnection)],
        came_online: &[(UserId, RoomId)],
        now: Timestamp,
    ) -> StoreResult<()> {
        let sockets: Vec<Vec<Value>> = joining
            .iter()
            .map(|(room_id, connection)| {
                vec![
                    Value::from(connection.id.to_string()),
                    Value::from(connection.node_id.as_str()),
                    Value::from(room_id.to_string()),
                    Value::from(connection.user_id.to_string()),
                    Value::from(connection.opened_at.as_millis()),
                ]
            })
            .collect();
        let head = "INSERT INTO connections (id, node_id, room_id, user_id, opened_at) VALUES ";
        for insert in inserts(head, &sockets) {
            insert.query::<DB>().execute(&mut *conn).await?;
        }
        if came_online.is_empty() {
            return Ok(());
        }
        let ids = || came_online.iter().map(|(id, _)| id.to_string());
        let mut status = Sql::new("UPDATE users SET status = 'online', joined_at = ");
        status
            .bind(now.as_millis())
            .push(" WHERE id")
            .in_list(ids());
        status.query::<DB>().execute(&mut *conn).await?;
        // Sessions left open by a crash end where the new ones start.
        let mut close = Sql::new("UPDATE user_sessions SET left_at = ");
        close
            .bind(now.as_millis())
            .push(" WHERE left_at IS NULL AND user_id")
            .in_list(ids());
        close.query::<DB>().execute(&mut *conn).await?;
        let sessions: Vec<Vec<Value>> = came_online
            .iter()
            .map(|(user_id, room_id)| {
                vec![
                    Value::from(SessionId::new().to_string()),
                    Value::from(user_id.to_string()),
                    Value::from(room_id.to_string()),
                    Value::from(now.as_millis()),
                ]
            })
            .collect();
        let head = "INSERT INTO user_sessions (id, user_id, room_id, joined_at) VALUES ";
        for insert in inserts(head, &sessions) {
            insert.query::<DB>().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Recounts the (locked) rooms' online users from their joined sockets.
    async fn recount_rooms(
        conn: &mut DB::Connection,
        rooms: &HashMap<RoomId, LockedRoom>,
        now: Timestamp,
    ) -> StoreResult<HashMap<RoomId, Recount>> {
        if rooms.is_empty() {
            return Ok(HashMap::new());
        }
        let mut count =
            Sql::new("SELECT room_id, COUNT(DISTINCT user_id) FROM connections WHERE room_id");
        count
            .in_list(rooms.keys().map(|id| id.to_string()))
            .push(" GROUP BY room_id");
        let counts: Vec<(String, i64)> = count.query_as::<DB, _>().fetch_all(&mut *conn).await?;
        let counts: HashMap<String, i64> = counts.into_iter().collect();
        let online: Vec<(RoomScope, i64)> = rooms
            .values()
            .map(|room| {
                let id = room.scope.room_id.to_string();
                (room.scope, counts.get(&id).copied().unwrap_or(0))
            })
            .collect();
        let mut recounts = HashMap::new();
        for room in Self::set_room_counts(&mut *conn, &online, now).await? {
            let before = rooms.get(&room.id).and_then(|room| room.session_before);
            let recount = Self::recounted(&mut *conn, before, room).await?;
            recounts.insert(recount.room.id, recount);
        }
        Ok(recounts)
    }
}
