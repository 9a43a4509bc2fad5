//! The registry of this node's active rooms and authenticated sockets: a room's handle
//! (starting its actor when needed), the sockets of a user or a room, and shutdown.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::actor::{RoomActor, RoomCommand, INBOX_CAPACITY};
use super::events::ServerEvent;
use super::following::UserView;
use super::membership::{Change, SUBSCRIBE_WAIT};
use super::outbox::{close, Outbox};
use crate::config::RealtimeConfig;
use crate::domain::{ConnectionId, NodeId, RoomId, UserId};
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::store::{DynStore, PageSize, RoomScope};

/// Lanes of joins and leaves on a database that takes several writers at once.
const MEMBERSHIP_LANES: usize = 4;

/// A handle on a room's actor. Holding one keeps the room loaded.
pub struct RoomHandle {
    pub scope: RoomScope,
    commands: mpsc::Sender<RoomCommand>,
    /// Serializes this node's writes to the room's stores and comments, so that their events
    /// go out in the order the database applied them.
    writes: tokio::sync::Mutex<()>,
    /// Sockets joined to the room through this node.
    joined: AtomicUsize,
    /// Joins and leaves waiting to be recorded, in order (see `Engine::commit_lane`);
    /// while there are some, the room is in the hub's `pending` list.
    queued: Mutex<Vec<Change>>,
}

impl RoomHandle {
    /// Queues a command; false if the room is gone. It is queued at once unless the inbox is
    /// full: a caller dropped right after (a REST client that went away) still gets its
    /// command delivered.
    pub async fn send(&self, command: RoomCommand) -> bool {
        match self.commands.try_send(command) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.commands.send(command).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Everything queued, in order; the queue is left empty.
    pub fn take_queued(&self) -> Vec<Change> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reserves a place for one more socket, unless `cap` are joined already.
    pub fn reserve(&self, cap: usize) -> bool {
        self.joined
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        self.joined.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RoomHandle {
    pub async fn writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }
}

/// Joins and leaves of a share of the rooms: recorded one commit at a time by the lane's
/// committer, so that each room's actor hears of them in the order the database applied them
/// (`Engine::commit_lane`), and rooms of different lanes in parallel.
#[derive(Default)]
pub struct Lane {
    membership: tokio::sync::Mutex<()>,
    pending: Mutex<Pending>,
}

/// What waits for a lane's committer.
#[derive(Default)]
struct Pending {
    /// Rooms with joins or leaves queued.
    rooms: Vec<Arc<RoomHandle>>,
    /// Whether a committer runs: it takes the rooms until none are left.
    committing: bool,
}

impl Lane {
    /// Held while the lane's joins and leaves are recorded and announced.
    pub async fn membership(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.membership.lock().await
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committer's next rooms with changes queued (their queues are taken next,
    /// `RoomHandle::take_queued`); `None` when there are none, and the committer stops: the
    /// next change queued starts another.
    pub fn take_pending(&self) -> Option<Vec<Arc<RoomHandle>>> {
        let mut pending = self.pending();
        if pending.rooms.is_empty() {
            pending.committing = false;
            return None;
        }
        Some(std::mem::take(&mut pending.rooms))
    }
}

/// This node's loaded rooms, which the actors take themselves out of when they go idle; with
/// the relay, the rooms this node receives other nodes' traffic for.
#[derive(Clone)]
pub struct RoomMap {
    rooms: Arc<Mutex<HashMap<RoomId, Arc<RoomHandle>>>>,
    relay: Option<Relay>,
}

impl RoomMap {
    /// The relay to and from other nodes, if configured.
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, Arc<RoomHandle>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes an idle room: one nobody else holds a handle on. Called by the room's actor.
    pub fn unload_if_idle(&self, room_id: RoomId) -> bool {
        let mut rooms = self.lock();
        match rooms.get(&room_id) {
            Some(handle) if Arc::strong_count(handle) == 1 => {
                rooms.remove(&room_id);
                if let Some(relay) = &self.relay {
                    relay.unsubscribe(room_id);
                }
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    rooms: RoomMap,
    /// Every authenticated socket on this node, joined or not, so that a deleted user's or
    /// room's sockets can all be closed, and how many each user holds.
    sockets: Mutex<Sockets>,
    /// Connections joined through this node, to tell live database rows from leaked ones.
    joined: Mutex<HashSet<ConnectionId>>,
    /// Where this node's joins and leaves are recorded: a room's always in the same lane.
    lanes: Vec<Lane>,
    /// For the actors, which load a room's follow graph.
    store: DynStore,
    config: RealtimeConfig,
    /// The size of the first page of users a join answers with.
    first_page: PageSize,
    node_id: NodeId,
    /// Other nodes seen alive on the database at the last look (`nodes::upkeep`).
    other_nodes: AtomicUsize,
    shutdown: CancellationToken,
    connections: TaskTracker,
    /// For the actors (coalesced presence).
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(
        store: DynStore,
        config: RealtimeConfig,
        first_page: PageSize,
        node_id: NodeId,
        relay: Option<Relay>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        // SQLite writes through one connection: a lane. PostgreSQL takes several writers.
        let lanes = if store.shared() { MEMBERSHIP_LANES } else { 1 };
        Self(Arc::new(HubInner {
            rooms: RoomMap {
                rooms: Arc::default(),
                relay,
            },
            sockets: Mutex::new(Sockets::default()),
            joined: Mutex::new(HashSet::new()),
            lanes: (0..lanes).map(|_| Lane::default()).collect(),
            store,
            config,
            first_page,
            node_id,
            other_nodes: AtomicUsize::new(0),
            shutdown,
            metrics,
            connections: TaskTracker::new(),
        }))
    }

    pub fn config(&self) -> &RealtimeConfig {
        &self.0.config
    }

    pub fn node_id(&self) -> &NodeId {
        &self.0.node_id
    }

    /// The relay to and from other nodes, if configured.
    pub fn relay(&self) -> Option<&Relay> {
        self.0.rooms.relay()
    }

    /// How many other nodes share the database, as last seen (`/readyz` reports it).
    pub fn other_nodes(&self) -> usize {
        self.0.other_nodes.load(Ordering::Relaxed)
    }

    /// Records how many other nodes share the database; returns the number before.
    pub fn set_other_nodes(&self, count: usize) -> usize {
        self.0.other_nodes.swap(count, Ordering::Relaxed)
    }

    /// Cancelled when the server shuts down: every connection closes with 1001.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    /// Runs a connection as a tracked task, so that shutdown can wait for it.
    pub fn track<F>(&self, connection: F) -> impl std::future::Future<Output = F::Output>
    where
        F: std::future::Future,
    {
        self.0.connections.track_future(connection)
    }

    /// Closes every connection (1001) and waits, within `grace`, for their tasks to end.
    /// False if time ran out.
    pub async fn close_all(&self, grace: Duration) -> bool {
        self.0.shutdown.cancel();
        self.0.connections.close();
        tokio::time::timeout(grace, self.0.connections.wait())
            .await
            .is_ok()
    }

    /// Whether the node is shutting down: sockets then leave in bulk.
    pub fn shutting_down(&self) -> bool {
        self.0.shutdown.is_cancelled()
    }

    fn joined_set(&self) -> MutexGuard<'_, HashSet<ConnectionId>> {
        self.0.joined.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connections joined through this node now.
    pub fn joined_now(&self) -> HashSet<ConnectionId> {
        self.joined_set().clone()
    }

    pub fn mark_joined(&self, connection: ConnectionId) {
        self.joined_set().insert(connection);
    }

    pub fn unmark_joined(&self, connection: ConnectionId) {
        self.joined_set().remove(&connection);
    }

    /// The room's handle, starting its actor if it is not running.
    pub fn room(&self, scope: RoomScope) -> Arc<RoomHandle> {
        let mut rooms = self.0.rooms.lock();
        if let Some(handle) = rooms.get(&scope.room_id) {
            return handle.clone();
        }
        let (commands, inbox) = mpsc::channel(INBOX_CAPACITY);
        let handle = Arc::new(RoomHandle {
            scope,
            commands,
            writes: tokio::sync::Mutex::new(()),
            joined: AtomicUsize::new(0),
            queued: Mutex::new(Vec::new()),
        });
        rooms.insert(scope.room_id, handle.clone());
        if let Some(relay) = &self.0.rooms.relay {
            relay.subscribe(scope.room_id);
        }
        let actor = RoomActor::new(
            scope,
            self.0.rooms.clone(),
            self.0.store.clone(),
            self.0.config.clone(),
            self.0.first_page,
            self.0.metrics.clone(),
        );
        // A root: the room outlives the request or socket that loaded it (a child would hold
        // that one's span open, in the logs and in traces, as long as the room is loaded).
        let span = tracing::info_span!(parent: None, "room", room = %scope.room_id);
        tokio::spawn(tracing::Instrument::instrument(actor.run(inbox), span));
        handle
    }

    /// The lane of the room's joins and leaves.
    pub fn lane(&self, room_id: RoomId) -> &Lane {
        let mut hasher = std::hash::DefaultHasher::new();
        room_id.hash(&mut hasher);
        let lanes = self.0.lanes.len() as u64;
        &self.0.lanes[(hasher.finish() % lanes) as usize]
    }

    /// Queues a join or a leave of the room for its lane's next membership commit. True when
    /// no committer runs for the lane: the caller starts one (`Engine::commit_lane`).
    #[must_use]
    pub fn queue(&self, room: &Arc<RoomHandle>, change: Change) -> bool {
        let mut queued = room.queued.lock().unwrap_or_else(|p| p.into_inner());
        let mut start = false;
        if queued.is_empty() {
            let mut pending = self.lane(room.scope.room_id).pending();
            pending.rooms.push(room.clone());
            start = !std::mem::replace(&mut pending.committing, true);
        }
        queued.push(change);
        start
    }

    /// The size of a page of a room's users on sockets (`realtime.page_users`, bounded by
    /// `limits.max_page_bytes`): the first, which joins answer with, and the next ones.
    pub fn users_page_size(&self) -> PageSize {
        self.0.first_page
    }

    /// The rooms whose actors run on this node.
    pub fn loaded_rooms(&self) -> Vec<Arc<RoomHandle>> {
        self.0.rooms.lock().values().cloned().collect()
    }

    /// The room's handle if its actor runs on this node.
    pub fn existing_room(&self, room_id: RoomId) -> Option<Arc<RoomHandle>> {
        self.0.rooms.lock().get(&room_id).cloned()
    }

    /// Records an authenticated socket until the returned guard drops, unless its user holds
    /// `max_connections_per_user` sockets on this node already: one user's tabs (or one
    /// leaked token) must not take the places of a room's other users. The guard keeps the
    /// socket's room loaded, joined or not, so that with the relay this node hears what other
    /// nodes tell the room's sockets (a deleted user's or room's are closed wherever they are).
    pub fn register_socket(
        &self,
        connection: ConnectionId,
        scope: RoomScope,
        user_id: UserId,
        outbox: Outbox,
    ) -> Result<SocketRegistration, TooManyConnections> {
        let mut sockets = self.sockets();
        let held = sockets.per_user.entry(user_id).or_default();
        if *held >= self.0.config.max_connections_per_user {
            return Err(TooManyConnections);
        }
        *held += 1;
        sockets.by_id.insert(connection, (scope, user_id, outbox));
        drop(sockets);
        Ok(SocketRegistration {
            hub: self.clone(),
            connection,
            _room: self.room(scope),
        })
    }

    /// Waits (up to `SUBSCRIBE_WAIT`) until what other nodes tell the room reaches this node:
    /// Redis confirmed the room's subscription (at once without a relay).
    pub async fn listening(&self, room_id: RoomId) {
        if let Some(relay) = self.relay() {
            relay.subscribed(room_id, SUBSCRIBE_WAIT).await;
        }
    }

    /// Authenticated sockets open on this node.
    pub fn open_sockets(&self) -> usize {
        self.sockets().by_id.len()
    }

    fn sockets(&self) -> MutexGuard<'_, Sockets> {
        self.0.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells every socket of a deleted user on this node, joined to the room or not, and
    /// closes it (4404): none may act any more.
    pub fn close_user_sockets(&self, user: &UserView) {
        let frame = ServerEvent::UserDeleted { user }.encode();
        for (_, user_id, outbox) in self.sockets().by_id.values() {
            if *user_id == user.user.id {
                outbox.send(frame.clone());
                outbox.close(close::GONE, "userDeleted");
            }
        }
    }

    /// Tells every socket of a deleted room on this node, and closes it (4404).
    /// Closes the room's sockets with 4000 (the SDK reconnects and reads the room again):
    /// they may have missed what other nodes relayed.
    pub fn resync_room_sockets(&self, room_id: RoomId) {
        for (scope, _, outbox) in self.sockets().by_id.values() {
            if scope.room_id == room_id {
                outbox.close(
                    close::TOO_SLOW,
                    "resync: messages from other nodes were lost",
                );
            }
        }
    }

    pub fn close_room_sockets(&self, room_id: RoomId) {
        let frame = ServerEvent::RoomDeleted { room_id }.encode();
        for (scope, _, outbox) in self.sockets().by_id.values() {
            if scope.room_id == room_id {
                outbox.send(frame.clone());
                outbox.close(close::GONE, "roomDeleted");
            }
        }
    }
}

/// The authenticated sockets of this node.
#[derive(Default)]
struct Sockets {
    by_id: HashMap<ConnectionId, (RoomScope, UserId, Outbox)>,
    per_user: HashMap<UserId, usize>,
}

/// A user already holds `realtime.max_connections_per_user` sockets on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections;

/// Keeps a socket in the hub's registry while it lives.
pub struct SocketRegistration {
    hub: Hub,
    connection: ConnectionId,
    /// Keeps the room loaded while the socket is open.
    _room: Arc<RoomHandle>,
}

impl Drop for SocketRegistration {
    fn drop(&mut self) {
        let mut sockets = self.hub.sockets();
        if let Some((_, user_id, _)) = sockets.by_id.remove(&self.connection) {
            if let Some(held) = sockets.per_user.get_mut(&user_id) {
                *held -= 1;
                if *held == 0 {
                    sockets.per_user.remove(&user_id);
                }
            }
        }
    }
}
