//! Membership: sockets joining and leaving rooms, and what follows from it (users online and
//! offline, a room's sessions, its online counter). `MembershipStore` and its types; the
//! implementation on either database is in `sql.rs`, its joins in `join.rs`.
//!
//! Every transaction that changes who is online locks the room, then the user: nodes racing
//! on one room serialize instead of deadlocking. One that joins sockets to several rooms
//! locks them all in the order of their IDs, then their users.

mod join;
mod sql;

use async_trait::async_trait;

use super::{Entity, RoomScope, StoreError, StoreResult};
use crate::domain::{ConnectionId, Event, EventKind, NodeId, Room, Timestamp, User, UserId};

/// A socket joining a room.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: ConnectionId,
    pub node_id: NodeId,
    pub scope: RoomScope,
    pub user_id: UserId,
    pub opened_at: Timestamp,
}

/// Sockets joining one room, for `join_rooms`.
#[derive(Debug, Clone)]
pub struct RoomJoins {
    pub scope: RoomScope,
    pub connections: Vec<NewConnection>,
}

/// What each room's joins of a `join_rooms` did: per room, `NotFound(Room)` if the room is
/// gone, else each join's result in its place.
pub type JoinedRooms = Vec<StoreResult<Vec<StoreResult<Joined>>>>;

/// A joined socket as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub id: ConnectionId,
    pub node_id: NodeId,
    pub scope: RoomScope,
    pub user_id: UserId,
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

#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// A socket joins a room: the user comes online if it is their first.
    async fn join_room(&self, connection: &NewConnection) -> StoreResult<Joined> {
        self.join_many(connection.scope, std::slice::from_ref(connection))
            .await?
            .pop()
            .unwrap_or(Err(StoreError::NotFound(Entity::Room)))
    }
    /// Sockets join a room at once, in one transaction and in their order (a reconnection
    /// storm): as many `join_room`s, except that every `Joined` shows the room as the batch
    /// left it. `NotFound(Room)` for all if the room is gone; `NotFound(User)` for a socket
    /// whose user is gone, in its place.
    async fn join_many(
        &self,
        scope: RoomScope,
        connections: &[NewConnection],
    ) -> StoreResult<Vec<StoreResult<Joined>>> {
        let batch = RoomJoins {
            scope,
            connections: connections.to_vec(),
        };
        self.join_rooms(std::slice::from_ref(&batch))
            .await?
            .pop()
            .unwrap_or(Err(StoreError::NotFound(Entity::Room)))
    }
    /// `join_many` for several rooms in one transaction (a storm across rooms): one result
    /// per room, in their order; a room that is gone fails its own joins only.
    async fn join_rooms(&self, batches: &[RoomJoins]) -> StoreResult<JoinedRooms>;
    /// A socket leaves: the user goes offline if it was their last. Leaving twice, or after
    /// the user or room is gone, changes nothing.
    async fn leave_room(&self, connection: &ConnectionRecord, at: Timestamp) -> StoreResult<Left>;
    /// Several sockets of a room leave at once (a node shutting down), then the room is
    /// recounted as by `recount_room`: one transaction instead of one per socket.
    async fn leave_many(
        &self,
        scope: RoomScope,
        connections: &[ConnectionId],
        at: Timestamp,
    ) -> StoreResult<Recounted>;
    /// Recounts a room's online users from its joined sockets, and sets users marked online
    /// without any socket offline.
    async fn recount_room(&self, scope: RoomScope) -> StoreResult<Recounted>;
    /// Sets the stored online counter, opening or closing the room's session to match.
    async fn set_active_participants(&self, scope: RoomScope, count: i64) -> StoreResult<Room>;
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
    pub fn closed_event(&self, at: Timestamp) -> Option<Event> {
        self.closed.then(|| {
            Event::new(
                EventKind::SessionClosed,
                &self.room,
                None,
                self.session_users.clone(),
                at,
            )
        })
    }
}
