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
    /// Queues a command; false if the room is gone.
    pub async fn send(&self, command: RoomCommand) -> bool {
        self.commands.send(command).await.is_ok()
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

    /// Records the leave of every socket this node holds, grouped by room.
    async fn leave_all_local(&self) {
        let records = match self.0.store.node_connections(&self.0.node_id).await {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(%error, "listing this node's sockets at shutdown failed");
                return;
            }
        };
        let mut by_room: HashMap<RoomId, (RoomScope, Vec<ConnectionId>)> = HashMap::new();
        for record in records {
            by_room
                .entry(record.scope.room_id)
                .or_insert_with(|| (record.scope, Vec::new()))
                .1
                .push(record.id);
        }
        for (scope, connections) in by_room.into_values() {
            match self
                .0
                .store
                .leave_many(scope, &connections, Timestamp::now())
                .await
            {
                Ok(recounted) => self.0.bus.publish(recounted.events),
                Err(error) => {
                    tracing::error!(room = %scope.room_id, %error, "recording leaves at shutdown failed")
                }
            }
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
        let live: HashSet<ConnectionId> = self.joined_set().clone();
        orphans.extend(
            store
                .node_connections(&self.0.node_id)
                .await?
                .into_iter()
                .filter(|record| !live.contains(&record.id)),
        );
        for record in &orphans {
            self.record_leave(record).await;
        }
        store.remove_stale_nodes(stale_before).await?;
        Ok(orphans.len())
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
