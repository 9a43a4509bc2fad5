//! Joins and leaves: a socket joining a room (the user comes online), leaving it (or dying
//! with its node), in the order the database applied them, each announced through `publish`;
//! and the clean-up of sockets nobody serves any more.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::actor::RoomCommand;
use super::following::UserView;
use super::hub::RoomHandle;
use super::outbox::Outbox;
use super::publish::Outcome;
use super::Engine;
use crate::analytics::Activity;
use crate::domain::{ConnectionId, Room, RoomId, Timestamp, User, UserId};
use crate::error::ApiError;
use crate::store::{ConnectionRecord, Left, NewConnection, RoomScope, StoreError, StoreResult};

/// Attempts at recording a leave before giving up to the reaper.
const LEAVE_ATTEMPTS: u32 = 5;
/// Wait before the first retry of a failed leave; it doubles with each attempt.
const LEAVE_RETRY_DELAY: Duration = Duration::from_millis(50);

/// A socket as the engine knows it: where it is, whose it is, and its mailbox.
#[derive(Clone)]
pub struct Member {
    pub connection: ConnectionId,
    pub scope: RoomScope,
    pub user_id: UserId,
    pub outbox: Outbox,
}

/// A join, as its socket needs it: the room, the user, the first page of the room's users,
/// the presence of the others, and the handle that keeps the socket in the room.
pub struct Joined {
    pub room: Room,
    pub user: UserView,
    pub users: Vec<UserView>,
    /// Where the rest of the room's users start, if there are more.
    pub users_cursor: Option<String>,
    pub presence: Vec<Value>,
    pub handle: Arc<RoomHandle>,
}

impl Engine {
    /// The socket joins its room: recorded (the user comes online if it is their first),
    /// announced, and the room's actor starts sending to it. `RateLimited` when the room holds
    /// `max_connections_per_room` sockets of this node.
    pub async fn join(&self, member: &Member) -> Result<Joined, ApiError> {
        let hub = self.hub();
        let room = hub.room(member.scope);
        if !room.reserve(hub.config().max_connections_per_room) {
            return Err(ApiError::RateLimited {
                retry_after_secs: 5,
            });
        }
        // Marked live before the row exists, so that a concurrent reap never takes it for a
        // leaked one.
        hub.mark_joined(member.connection);
        let new = NewConnection {
            id: member.connection,
            node_id: hub.node_id().clone(),
            scope: member.scope,
            user_id: member.user_id,
            opened_at: Timestamp::now(),
        };
        let (reply, presence) = oneshot::channel();
        let joined = {
            let _order = room.membership().await;
            let joined = match self.store().join_room(&new).await {
                Ok(joined) => joined,
                Err(error) => {
                    room.release();
                    hub.unmark_joined(member.connection);
                    return Err(error.into());
                }
            };
            let notice = RoomCommand::Joined {
                connection: member.connection,
                user_id: member.user_id,
                outbox: member.outbox.clone(),
                joined: Box::new(joined.clone()),
                reply,
            };
            self.publish(Outcome {
                room_id: member.scope.room_id,
                events: joined.events.clone(),
                notice: Some(notice),
            })
            .await;
            joined
        };
        let presence = presence.await.unwrap_or_default();
        let loaded = async {
            let graph = self.follow_graph(member.scope).await?;
            let page = self.users_page(member.scope, None).await?;
            Ok::<_, ApiError>((graph, page))
        };
        match loaded.await {
            Ok((graph, (users, users_cursor))) => {
                self.count(member.scope, Activity::Join);
                self.analytics().online(
                    member.scope.account_id,
                    member.scope.room_id,
                    joined.room.active_participants,
                );
                Ok(Joined {
                    room: joined.room,
                    user: graph.socket_user(joined.user),
                    users,
                    users_cursor,
                    presence,
                    handle: room,
                })
            }
            Err(error) => {
                // The client hears of a failure: it must not stay joined.
                self.leave(member, room).await;
                Err(error)
            }
        }
    }

    /// The socket leaves the room it joined: the room stops sending to it at once, then the
    /// leave is recorded (at shutdown, for every socket at once: `shut_down`).
    pub async fn leave(&self, member: &Member, room: Arc<RoomHandle>) {
        room.send(RoomCommand::Detach {
            connection: member.connection,
        })
        .await;
        if !self.hub().shutting_down() {
            let record = ConnectionRecord {
                id: member.connection,
                node_id: self.hub().node_id().clone(),
                scope: member.scope,
                user_id: member.user_id,
            };
            self.record_leave(&record).await;
        }
        room.release();
    }

    /// Records a leave and announces it, in the room's join/leave order. Retries a failing
    /// database a few times; if it keeps failing, the row stays and the user stays online
    /// until this node's next start (or a reconcile) cleans it up.
    pub async fn record_leave(&self, record: &ConnectionRecord) {
        let hub = self.hub();
        hub.unmark_joined(record.id);
        let handle = hub.existing_room(record.scope.room_id);
        let _order = match &handle {
            Some(handle) => Some(handle.membership().await),
            None => None,
        };
        let mut delay = LEAVE_RETRY_DELAY;
        for attempt in 1..=LEAVE_ATTEMPTS {
            match self.store().leave_room(record, Timestamp::now()).await {
                Ok(left) => {
                    let notice = RoomCommand::Left {
                        user_id: record.user_id,
                        left: Box::new(left.clone()),
                    };
                    self.publish(Outcome {
                        room_id: record.scope.room_id,
                        events: left.events,
                        notice: Some(notice),
                    })
                    .await;
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
        let store = self.store();
        let node_id = self.hub().node_id();
        let mut orphans = store.orphaned_connections(node_id, stale_before).await?;
        // The rows first, then the live set: a socket is marked live before its row exists,
        // so a row read here whose socket is live is always in the set read after.
        let own = store.node_connections(node_id).await?;
        let live = self.hub().joined_now();
        orphans.extend(own.into_iter().filter(|record| !live.contains(&record.id)));
        let reaped = orphans.len();
        self.leave_in_bulk(orphans).await;
        store.remove_stale_nodes(stale_before).await?;
        Ok(reaped)
    }

    /// Closes every socket (1001), then records all their leaves at once, a transaction per
    /// room, within `grace`. False if time ran out.
    pub async fn shut_down(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, async {
            self.hub().close_all(grace).await;
            match self.store().node_connections(self.hub().node_id()).await {
                Ok(records) => self.leave_in_bulk(records).await,
                Err(error) => {
                    tracing::error!(%error, "listing this node's sockets at shutdown failed")
                }
            }
        })
        .await
        .is_ok()
    }

    /// Records the leaves of many sockets: one transaction per room, each in the room's
    /// join/leave order on this node, announced.
    async fn leave_in_bulk(&self, records: Vec<ConnectionRecord>) {
        let mut by_room: HashMap<RoomId, (RoomScope, Vec<ConnectionId>)> = HashMap::new();
        for record in records {
            self.hub().unmark_joined(record.id);
            by_room
                .entry(record.scope.room_id)
                .or_insert_with(|| (record.scope, Vec::new()))
                .1
                .push(record.id);
        }
        for (scope, connections) in by_room.into_values() {
            let handle = self.hub().existing_room(scope.room_id);
            let _order = match &handle {
                Some(handle) => Some(handle.membership().await),
                None => None,
            };
            match self
                .store()
                .leave_many(scope, &connections, Timestamp::now())
                .await
            {
                Ok(recounted) => {
                    self.publish(Outcome::recorded(scope.room_id, recounted.events))
                        .await;
                    self.users_set_offline(scope.room_id, recounted.users_set_offline)
                        .await;
                }
                Err(StoreError::NotFound(_)) => {}
                Err(error) => {
                    tracing::error!(room = %scope.room_id, %error, "recording leaves failed")
                }
            }
        }
    }

    /// Users set offline by a recount: their rooms' sockets hear `userLeft`.
    pub async fn users_set_offline(&self, room_id: RoomId, users: Vec<User>) {
        for user in users {
            let user_id = user.id;
            let left = Left {
                user: Some(user),
                went_offline: true,
                ..Default::default()
            };
            let notice = RoomCommand::Left {
                user_id,
                left: Box::new(left),
            };
            self.publish(Outcome {
                room_id,
                events: Vec::new(),
                notice: Some(notice),
            })
            .await;
        }
    }
}
