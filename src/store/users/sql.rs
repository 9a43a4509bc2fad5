//! `UserStore` on either database, and the user locks and reads membership shares.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::{
    users, CountedUserRow, NewUser, SessionRow, UserChanges, UserCursor, UserPage, UserRow,
    UserStore, USER_BYTES, USER_COLUMNS,
};
use crate::domain::{Event, EventKind, Room, Timestamp, User, UserId, UserSession, UserStatus};
use crate::store::dialect::{Column, Dialect, RowsAffected};
use crate::store::membership::Left;
use crate::store::page::{fetch_fitted, page_bytes, push_filter};
use crate::store::query::Sql;
use crate::store::rooms::{RoomRow, ROOM_COLUMNS};
use crate::store::sql::{conflict_or_database, SqlStore};
use crate::store::{
    Entity, ListFilter, Listed, Page, PageSize, RoomScope, StoreError, StoreResult,
};

#[async_trait]
impl<DB> UserStore for SqlStore<DB>
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
    async fn create_user(&self, user: &NewUser) -> StoreResult<(User, Vec<Event>)> {
        // The write comes first so that SQLite takes its write lock at once instead of
        // upgrading a read lock, which could fail under contention.
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE rooms SET total_users_created = total_users_created + 1 \
             WHERE id = $1 AND account_id = $2 RETURNING {ROOM_COLUMNS}"
        );
        let room: RoomRow = sqlx::query_as(&sql)
            .bind(user.room_id.to_string())
            .bind(user.account_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(Entity::Room))?;
        let room = room.try_into()?;
        let sql = format!(
            "INSERT INTO users (id, account_id, room_id, name, profile_picture, \
               custom_id, status, created_at, token_issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'offline', $7, $7) RETURNING {USER_COLUMNS}"
        );
        let row: UserRow = sqlx::query_as(&sql)
            .bind(user.id.to_string())
            .bind(user.account_id.to_string())
            .bind(user.room_id.to_string())
            .bind(&user.name)
            .bind(&user.profile_picture)
            .bind(&user.custom_id)
            .bind(user.created_at.as_millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| conflict_or_database(e, Entity::User))?;
        let created: User = row.try_into()?;
        let events = vec![Event::new(
            EventKind::UserCreated,
            &room,
            Some(&created),
            Vec::new(),
            user.created_at,
        )];
        Self::record_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok((created, events))
    }

    async fn list_users(
        &self,
        scope: RoomScope,
        filter: &ListFilter,
        page: Page,
    ) -> StoreResult<Listed<User>> {
        const SEARCH: &[&str] = &["name", "id"];
        let mut list = Sql::new(format!(
            "SELECT {USER_COLUMNS}, COUNT(*) OVER () AS total FROM users WHERE room_id = "
        ));
        list.bind(scope.room_id.to_string())
            .push(" AND account_id = ")
            .bind(scope.account_id.to_string());
        push_filter::<DB>(&mut list, filter, SEARCH);
        list.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(page.limit)
            .push(" OFFSET ")
            .bind(page.offset);
        let rows: Vec<CountedUserRow> = list.query_as::<DB, _>().fetch_all(&self.reads).await?;
        let total = match rows.first() {
            Some(row) => row.total,
            None if page.offset == 0 => 0,
            // A page past the end has no row to carry the total.
            None => {
                let mut count = Sql::new("SELECT COUNT(*) FROM users WHERE room_id = ");
                count
                    .bind(scope.room_id.to_string())
                    .push(" AND account_id = ")
                    .bind(scope.account_id.to_string());
                push_filter::<DB>(&mut count, filter, SEARCH);
                let (total,): (i64,) = count.query_as::<DB, _>().fetch_one(&self.reads).await?;
                total
            }
        };
        Ok(Listed {
            items: users(rows.into_iter().map(|row| row.user).collect())?,
            total,
        })
    }

    async fn get_user(&self, scope: RoomScope, user_id: UserId) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND room_id = $2 AND account_id = $3"
        );
        let row: Option<UserRow> = sqlx::query_as(&sql)
            .bind(user_id.to_string())
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn get_users_and_rooms(
        &self,
        wanted: &[(RoomScope, UserId)],
    ) -> StoreResult<Vec<Option<(User, Room)>>> {
        // Made once: every socket's handshake runs it.
        static SELECT: LazyLock<String> = LazyLock::new(|| {
            let qualified = |table: &str, columns: &str| {
                let columns: Vec<String> = columns
                    .split(", ")
                    .map(|c| format!("{table}.{c}"))
                    .collect();
                columns.join(", ")
            };
            format!(
                "SELECT {}, {} FROM users u JOIN rooms r ON r.id = u.room_id WHERE u.id",
                qualified("u", USER_COLUMNS),
                qualified("r", ROOM_COLUMNS)
            )
        });
        static ROOM_FIRST: LazyLock<usize> = LazyLock::new(|| USER_COLUMNS.split(", ").count());
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut read = Sql::new(SELECT.as_str());
        read.in_list(wanted.iter().map(|(_, user_id)| user_id.to_string()));
        let mut found = HashMap::new();
        for row in read.query::<DB>().fetch_all(&self.reads).await? {
            let user = User::try_from(UserRow::at::<DB>(&row, 0)?)?;
            let room = Room::try_from(RoomRow::at::<DB>(&row, *ROOM_FIRST)?)?;
            found.insert(user.id, (user, room));
        }
        Ok(wanted
            .iter()
            .map(|(scope, user_id)| {
                found
                    .get(user_id)
                    .filter(|(user, room)| {
                        user.room_id == scope.room_id
                            && user.account_id == scope.account_id
                            && room.account_id == scope.account_id
                    })
                    .cloned()
            })
            .collect())
    }

    async fn get_user_by_custom_id(
        &self,
        scope: RoomScope,
        custom_id: &str,
    ) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE custom_id = $1 AND room_id = $2 AND account_id = $3"
        );
        let row: Option<UserRow> = sqlx::query_as(&sql)
            .bind(custom_id.to_owned())
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn update_user(
        &self,
        scope: RoomScope,
        user_id: UserId,
        changes: &UserChanges,
    ) -> StoreResult<(User, Vec<Event>)> {
        let mut update = Sql::new("UPDATE users SET id = id");
        if let Some(name) = &changes.name {
            update.push(", name = ").bind(name.clone());
        }
        if let Some(picture) = &changes.profile_picture {
            update.push(", profile_picture = ").bind(picture.clone());
        }
        if let Some(custom_id) = &changes.custom_id {
            update.push(", custom_id = ").bind(custom_id.clone());
        }
        update
            .push(" WHERE id = ")
            .bind(user_id.to_string())
            .push(" AND room_id = ")
            .bind(scope.room_id.to_string())
            .push(" AND account_id = ")
            .bind(scope.account_id.to_string())
            .push(&format!(" RETURNING {USER_COLUMNS}"));
        let mut tx = self.pool.begin().await?;
        let row: UserRow = update
            .query_as::<DB, _>()
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| conflict_or_database(e, Entity::User))?
            .ok_or(StoreError::NotFound(Entity::User))?;
        let updated: User = row.try_into()?;
        let room = Self::fetch_room(&mut tx, scope).await?;
        let events = vec![Event::new(
            EventKind::UserUpdated,
            &room,
            Some(&updated),
            Vec::new(),
            Timestamp::now(),
        )];
        Self::record_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok((updated, events))
    }

    async fn delete_user(&self, scope: RoomScope, user_id: UserId) -> StoreResult<(User, Left)> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::User));
        }
        let sql = format!(
            "DELETE FROM users WHERE id = $1 AND room_id = $2 AND account_id = $3 \
             RETURNING {USER_COLUMNS}"
        );
        let row: UserRow = sqlx::query_as(&sql)
            .bind(user_id.to_string())
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(Entity::User))?;
        let user: User = row.try_into()?;
        // The user's sockets, sessions and follows went with them (ON DELETE CASCADE).
        let mut recount = Self::recount(&mut tx, scope, now).await?;
        let was_online = user.status == UserStatus::Online;
        let mut events = Vec::new();
        if was_online {
            // They went offline with their deletion: as the last socket leaving would.
            let mut gone = user.clone();
            gone.status = UserStatus::Offline;
            gone.left_at = Some(now);
            events.push(Event::new(
                EventKind::ParticipantLeft,
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
        events.push(Event::new(
            EventKind::UserDeleted,
            &recount.room,
            Some(&user),
            Vec::new(),
            now,
        ));
        events.extend(recount.closed_event(now));
        Self::record_events(&mut tx, &events).await?;
        tx.commit().await?;
        let left = Left {
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
        scope: RoomScope,
        after: Option<&UserCursor>,
        size: PageSize,
    ) -> StoreResult<UserPage> {
        const ORDER: &str = "created_at, id";
        let mut sql = Sql::new(page_bytes::start(USER_BYTES, ORDER));
        sql.push(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE room_id = "
        ))
        .bind(scope.room_id.to_string())
        .push(" AND account_id = ")
        .bind(scope.account_id.to_string());
        if let Some(after) = after {
            sql.push(" AND (created_at > ")
                .bind(after.created_at.as_millis())
                .push(" OR (created_at = ")
                .bind(after.created_at.as_millis())
                .push(" AND id > ")
                .bind(after.id.to_string())
                .push("))");
        }
        // One more than asked: whether there is more.
        sql.push(&format!(" ORDER BY {ORDER} LIMIT "))
            .bind(size.items.saturating_add(1))
            .push(page_bytes::END)
            .bind(size.bytes)
            .push(&page_bytes::end_order(ORDER));
        let mut conn = self.reads.acquire().await?;
        let page = fetch_fitted::<DB, UserRow>(&mut conn, &sql, size).await?;
        let users = users(page.rows)?;
        let next = users.last().filter(|_| page.more).map(|user| UserCursor {
            created_at: user.created_at,
            id: user.id,
        });
        Ok(UserPage { users, next })
    }

    async fn list_sessions(&self, user_id: UserId, page: Page) -> StoreResult<Listed<UserSession>> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM user_sessions WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_one(&self.reads)
                .await?;
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, room_id, joined_at, left_at FROM user_sessions \
             WHERE user_id = $1 ORDER BY joined_at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(user_id.to_string())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.reads)
        .await?;
        let items = rows
            .into_iter()
            .map(UserSession::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Listed { items, total })
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
    /// Takes the row lock of a user of the room; false if the room has no such user.
    pub(in crate::store) async fn lock_user(
        conn: &mut DB::Connection,
        scope: RoomScope,
        user_id: UserId,
    ) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET id = id WHERE id = $1 AND room_id = $2")
            .bind(user_id.to_string())
            .bind(scope.room_id.to_string())
            .execute(conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A user of the room, if there is one.
    pub(in crate::store) async fn fetch_user(
        conn: &mut DB::Connection,
        scope: RoomScope,
        user_id: UserId,
    ) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND room_id = $2");
        let row: Option<UserRow> = sqlx::query_as(&sql)
            .bind(user_id.to_string())
            .bind(scope.room_id.to_string())
            .fetch_optional(conn)
            .await?;
        row.map(User::try_from).transpose()
    }
}
