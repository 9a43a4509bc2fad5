//! Users, each of one room of one account: `UserStore`, its types, and the rows it reads.
//! The implementation on either database is in `sql.rs`.

mod sql;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database};

use super::dialect::Column;
use super::membership::Left;
use super::sql::{parse, Columns};
use super::{ListFilter, Listed, Page, PageSize, RoomScope, StoreError, StoreResult};
use crate::domain::ids::InvalidId;
use crate::domain::{
    AccountId, Event, Room, RoomId, Timestamp, User, UserId, UserSession, UserStatus,
};

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

/// Where a page of a room's users (oldest first) starts: after this user. It holds the
/// creation time too, so that it still works once that user is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCursor {
    pub created_at: Timestamp,
    pub id: UserId,
}

impl fmt::Display for UserCursor {
    /// `<millis>_<user id>`: what clients hand back, as an opaque string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.created_at.as_millis(), self.id)
    }
}

impl FromStr for UserCursor {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (millis, id) = text.split_once('_').ok_or(InvalidId)?;
        Ok(Self {
            created_at: Timestamp::from_millis(millis.parse().map_err(|_| InvalidId)?),
            id: id.parse().map_err(|_| InvalidId)?,
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

#[async_trait]
pub trait UserStore: Send + Sync {
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
    /// Each wanted user with their room, in one read for all (sockets' handshakes, which a
    /// reconnection storm makes by the thousand): the answers in the order of `wanted`, `None`
    /// for a user who is not (or no longer) of that room of that account.
    async fn get_users_and_rooms(
        &self,
        wanted: &[(RoomScope, UserId)],
    ) -> StoreResult<Vec<Option<(User, Room)>>>;
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
}

pub(super) const USER_COLUMNS: &str = "id, account_id, room_id, name, profile_picture, \
     custom_id, status, created_at, joined_at, left_at, token_issued_at";
/// What a user weighs in a page (see `page_bytes`): their texts as stored, and room for the
/// rest of their JSON (ids, times, and a share of the follow graph).
const USER_BYTES: &str = "octet_length(name) + COALESCE(octet_length(profile_picture), 0) \
     + COALESCE(octet_length(custom_id), 0) + 512";

/// A user as stored (`USER_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: String,
    account_id: String,
    room_id: String,
    name: String,
    profile_picture: Option<String>,
    custom_id: Option<String>,
    status: String,
    created_at: i64,
    joined_at: Option<i64>,
    left_at: Option<i64>,
    token_issued_at: i64,
}

impl UserRow {
    /// The user's columns (`USER_COLUMNS`, in order) from position `first` on, in a row that
    /// holds another table's columns too, whose names they share.
    fn at<DB: Database>(row: &DB::Row, first: usize) -> Result<Self, sqlx::Error>
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
            room_id: columns.next()?,
            name: columns.next()?,
            profile_picture: columns.next()?,
            custom_id: columns.next()?,
            status: columns.next()?,
            created_at: columns.next()?,
            joined_at: columns.next()?,
            left_at: columns.next()?,
            token_issued_at: columns.next()?,
        })
    }
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
            joined_at: row.joined_at.map(Timestamp::from_millis),
            left_at: row.left_at.map(Timestamp::from_millis),
            token_issued_at: Timestamp::from_millis(row.token_issued_at),
        })
    }
}

/// A user of a listing, with how many the whole listing holds (`COUNT(*) OVER ()`): the page
/// and its total in one query.
#[derive(sqlx::FromRow)]
pub(super) struct CountedUserRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub total: i64,
}

/// Users from their rows, in order.
pub(super) fn users(rows: Vec<UserRow>) -> StoreResult<Vec<User>> {
    rows.into_iter().map(User::try_from).collect()
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: String,
    room_id: String,
    joined_at: i64,
    left_at: Option<i64>,
}

impl TryFrom<SessionRow> for UserSession {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> StoreResult<Self> {
        Ok(UserSession {
            id: parse(&row.id, "session id")?,
            user_id: parse(&row.user_id, "user id")?,
            room_id: parse(&row.room_id, "room id")?,
            joined_at: Timestamp::from_millis(row.joined_at),
            left_at: row.left_at.map(Timestamp::from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_write() {
        let cursor = UserCursor {
            created_at: Timestamp::from_millis(1_700_000_000_123),
            id: UserId::new(),
        };
        let text = cursor.to_string();
        assert!(text.starts_with("1700000000123_"));
        assert_eq!(text.parse::<UserCursor>().unwrap(), cursor);
        assert!("nounderscore".parse::<UserCursor>().is_err());
        assert!("12_notauuid".parse::<UserCursor>().is_err());
    }
}
