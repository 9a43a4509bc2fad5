//! The registry of this node's active rooms, and the operations that must reach a room from
//! outside it: joins and leaves recorded in order, REST changes, clean-ups of dead nodes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::Outbox;
use super::protocol::{self, close};
use super::room::{RoomActor, RoomCommand, INBOX_CAPACITY};
use crate::config::RealtimeConfig;
use crate::domain::{ConnectionId, NodeId, RoomId, Timestamp, UserId};
use crate::events::EventBus;
use crate::store::{ConnectionRecord, DynStore, RoomScope, StoreResult};

/// Attempts at recording a leave before giving up to the reaper.
const LEAVE_ATTEMPTS: u32 = 5;

/// A handle on a room's actor. Holding one keeps the room loaded.
pub struct RoomHandle {
    pub scope: RoomScope,
    commands: mpsc::Sender<RoomCommand>,
    /// Serializes this node's joins and leaves of the room, so that the actor hears of them in
    /// the order the database applied them.
    membership: tokio::sync::Mutex<()>,
    /// Serializes this node's writes to the room's stores and comments, so that their events
    /// go out in the order the database applied them.
    writes: tokio::sync::Mutex<()>,
    /// Sockets joined to the room through this node.
    joined: AtomicUsize,
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

    pub async fn membership(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.membership.lock().await
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

#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    rooms: Mutex<HashMap<RoomId, Arc<RoomHandle>>>,
    /// Every authenticated socket on this node, joined or not, so that a deleted user's or
    /// room's sockets can all be closed, and how many each user holds.
    sockets: Mutex<Sockets>,
    /// Connections joined through this node, to tell live database rows from leaked ones.
    joined: Mutex<HashSet<ConnectionId>>,
    store: DynStore,
    bus: EventBus,
    config: RealtimeConfig,
    node_id: NodeId,
    shutdown: CancellationToken,
    connections: TaskTracker,
}

impl Hub {
    pub fn new(store: DynStore, bus: EventBus, config: RealtimeConfig, node_id: NodeId) -> Self {
        Self(Arc::new(HubInner {
            rooms: Mutex::new(HashMap::new()),
            sockets: Mutex::new(Sockets::default()),
            joined: Mutex::new(HashSet::new()),
            store,
            bus,
            config,
            node_id,
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
        }))
    }

    pub fn config(&self) -> &RealtimeConfig {
        &self.0.config
    }

    pub fn node_id(&self) -> &NodeId {
        &self.0.node_id
    }

    pub fn store(&self) -> &DynStore {
        &self.0.store
    }

    pub fn bus(&self) -> &EventBus {
        &self.0.bus
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

    /// Closes every connection (1001), then records all their leaves at once, a transaction
    /// per room, within `grace`. False if time ran out.
    pub async fn shut_down(&self, grace: Duration) -> bool {
        self.0.shutdown.cancel();
        self.0.connections.close();
        tokio::time::timeout(grace, async {
            self.0.connections.wait().await;
            self.leave_all_local().await;
        })
        .await
        .is_ok()
    }

    /// Whether the node is shutting down: sockets then leave in bulk (`shut_down`).
    pub fn shutting_down(&self) -> bool {
        self.0.shutdown.is_cancelled()
    }

    /// Records the leave of every socket this node holds.
    async fn leave_all_local(&self) {
        match self.0.store.node_connections(&self.0.node_id).await {
            Ok(records) => self.leave_in_bulk(records).await,
            Err(error) => tracing::error!(%error, "listing this node's sockets at shutdown failed"),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomId, Arc<RoomHandle>>> {
        self.0.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn joined_set(&self) -> MutexGuard<'_, HashSet<ConnectionId>> {
        self.0.joined.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room's handle, starting its actor if it is not running.
    pub fn room(&self, scope: RoomScope) -> Arc<RoomHandle> {
        let mut rooms = self.rooms();
        if let Some(handle) = rooms.get(&scope.room_id) {
            return handle.clone();
        }
        let (commands, inbox) = mpsc::channel(INBOX_CAPACITY);
        let handle = Arc::new(RoomHandle {
            scope,
            commands,
            membership: tokio::sync::Mutex::new(()),
            writes: tokio::sync::Mutex::new(()),
            joined: AtomicUsize::new(0),
        });
        rooms.insert(scope.room_id, handle.clone());
        let actor = RoomActor::new(
            scope,
            self.clone(),
            self.0.store.clone(),
            self.0.config.clone(),
        );
        tokio::spawn(actor.run(inbox));
        handle
    }

    /// The room's handle if its actor runs on this node.
    pub fn existing_room(&self, room_id: RoomId) -> Option<Arc<RoomHandle>> {
        self.rooms().get(&room_id).cloned()
    }

    /// Removes an idle room: one nobody else holds a handle on. Called by the room's actor.
    pub fn unload_if_idle(&self, room_id: RoomId) -> bool {
        let mut rooms = self.rooms();
        match rooms.get(&room_id) {
            Some(handle) if Arc::strong_count(handle) == 1 => {
                rooms.remove(&room_id);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Tells a room running here what happened (a REST change); nothing if it is not loaded.
    pub async fn notify(&self, room_id: RoomId, command: RoomCommand) {
        if let Some(handle) = self.existing_room(room_id) {
            handle.send(command).await;
        }
    }

    /// Runs a write to a room's data (stores, comments) and sends the events it returns to
    /// the room's joined sockets (but `except`), in the order the writes were applied. The
    /// room is loaded for the duration, so that a socket joining meanwhile cannot miss them.
    pub async fn write_in_order<T, E>(
        &self,
        scope: RoomScope,
        except: Option<ConnectionId>,
        write: impl std::future::Future<Output = Result<(T, Vec<Utf8Bytes>), E>>,
    ) -> Result<T, E> {
        let room = self.room(scope);
        let _order = room.writes.lock().await;
        let (value, frames) = write.await?;
        for frame in frames {
            room.send(RoomCommand::Publish { except, frame }).await;
        }
        Ok(value)
    }

    /// Records an authenticated socket until the returned guard drops, unless its user holds
    /// `max_connections_per_user` sockets on this node already: one user's tabs (or one
    /// leaked token) must not take the places of a room's other users.
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
        Ok(SocketRegistration {
            hub: self.clone(),
            connection,
        })
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
    pub fn close_user_sockets(&self, user: &crate::domain::User) {
        let frame = protocol::event("userDeleted", &serde_json::json!({ "user": user }));
        for (_, user_id, outbox) in self.sockets().by_id.values() {
            if *user_id == user.id {
                outbox.send(frame.clone());
                outbox.close(close::GONE, "userDeleted");
            }
        }
    }

    /// Tells every socket of a deleted room on this node, and closes it (4404).
    pub fn close_room_sockets(&self, room_id: RoomId) {
        let frame = protocol::event("roomDeleted", &serde_json::json!({ "roomId": room_id }));
        for (scope, _, outbox) in self.sockets().by_id.values() {
            if scope.room_id == room_id {
                outbox.send(frame.clone());
                outbox.close(close::GONE, "roomDeleted");
            }
        }
    }

    pub fn mark_joined(&self, connection: ConnectionId) {
        self.joined_set().insert(connection);
    }

    pub fn unmark_joined(&self, connection: ConnectionId) {
        self.joined_set().remove(&connection);
    }

    /// Records a leave, publishes its events and tells the room, in the room's join/leave
    /// order. Retries a failing database a few times; if it keeps failing, the row stays and
    /// the user stays online until this node's next start (or a reconcile) cleans it up.
    pub async fn record_leave(&self, record: &ConnectionRecord) {
        self.joined_set().remove(&record.id);
        let handle = self.existing_room(record.scope.room_id);
        let _order = match &handle {
            Some(handle) => Some(handle.membership().await),
            None => None,
        };
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=LEAVE_ATTEMPTS {
            match self.0.store.leave_room(record, Timestamp::now()).await {
                Ok(left) => {
                    self.0.bus.publish(left.events.clone());
                    if let Some(handle) = &handle {
                        let user_id = record.user_id;
                        handle
                            .send(RoomCommand::Left {
                                user_id,
                                left: Box::new(left),
                            })
                            .await;
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(connection = %record.id, attempt, %error, "recording a leave failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(connection = %record.id, "gave up recording a leave");
    }

    /// Records leaves for sockets the database holds but nobody serves: those of dead nodes,
    /// and this node's rows that no live connection owns. Returns how many were cleaned.
    pub async fn reap(&self, stale_before: Timestamp) -> StoreResult<usize> {
        let store = &self.0.store;
        let mut orphans = store
            .orphaned_connections(&self.0.node_id, stale_before)
            .await?;
        // The rows first, then the live set: a socket is marked live before its row exists,
        // so a row read here whose socket is live is always in the set read after.
        let own = store.node_connections(&self.0.node_id).await?;
        let live: HashSet<ConnectionId> = self.joined_set().clone();
        orphans.extend(own.into_iter().filter(|record| !live.contains(&record.id)));
        let reaped = orphans.len();
        self.leave_in_bulk(orphans).await;
        store.remove_stale_nodes(stale_before).await?;
        Ok(reaped)
    }

    /// Records the leaves of many sockets: one transaction per room, each in the room's
    /// join/leave order on this node, its events published and its sockets told.
    async fn leave_in_bulk(&self, records: Vec<ConnectionRecord>) {
        let mut by_room: HashMap<RoomId, (RoomScope, Vec<ConnectionId>)> = HashMap::new();
        for record in records {
            self.joined_set().remove(&record.id);
            by_room
                .entry(record.scope.room_id)
                .or_insert_with(|| (record.scope, Vec::new()))
                .1
                .push(record.id);
        }
        for (scope, connections) in by_room.into_values() {
            let handle = self.existing_room(scope.room_id);
            let _order = match &handle {
                Some(handle) => Some(handle.membership().await),
                None => None,
            };
            match self
                .0
                .store
                .leave_many(scope, &connections, Timestamp::now())
                .await
            {
                Ok(recounted) => {
                    self.0.bus.publish(recounted.events);
                    self.users_set_offline(scope.room_id, recounted.users_set_offline)
                        .await;
                }
                Err(crate::store::StoreError::NotFound(_)) => {}
                Err(error) => {
                    tracing::error!(room = %scope.room_id, %error, "recording leaves failed")
                }
            }
        }
    }

    /// Users set offline by a reconcile: their rooms' sockets hear `userLeft`.
    pub async fn users_set_offline(&self, room_id: RoomId, users: Vec<crate::domain::User>) {
        for user in users {
            let user_id: UserId = user.id;
            let left = crate::store::Left {
                user: Some(user),
                went_offline: true,
                ..Default::default()
            };
            self.notify(
                room_id,
                RoomCommand::Left {
                    user_id,
                    left: Box::new(left),
                },
            )
            .await;
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
