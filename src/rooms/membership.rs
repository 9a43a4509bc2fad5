//! Joins and leaves: a socket joining a room (the user comes online), leaving it (or dying
//! with its node), in the order the database applied them, each announced through `publish`;
//! and the clean-up of sockets nobody serves any more.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::Value;
use tokio::sync::oneshot;

use super::actor::RoomCommand;
use super::first_page::{FirstPage, Lookup};
use super::following::UserView;
use super::hub::RoomHandle;
use super::outbox::Outbox;
use super::publish::Outcome;
use super::Engine;
use crate::analytics::Activity;
use crate::domain::{ConnectionId, Room, RoomId, Timestamp, User, UserId};
use crate::error::ApiError;
use crate::store::{
    self, ConnectionRecord, Left, NewConnection, RoomJoins, RoomScope, StoreError, StoreResult,
};

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
    /// The first page of the room's users, shared by the joins recorded together.
    pub page: Arc<FirstPage>,
    pub presence: Vec<Value>,
    pub handle: Arc<RoomHandle>,
}

/// Longest wait for Redis to confirm a room's subscription before its first join here goes on.
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// Joins and leaves recorded in one transaction at most: bounds a statement's parameters.
const MAX_BATCH: usize = 200;

/// A join or a leave waiting for the room's next membership commit (`RoomHandle::queue`).
pub enum Change {
    Join(PendingJoin),
    Leave(PendingLeave),
}

pub struct PendingJoin {
    new: NewConnection,
    outbox: Outbox,
    /// For the actor: everyone else's presence, for the join's answer.
    presence: oneshot::Sender<Vec<Value>>,
    done: JoinReply,
}

/// A room's joins recorded and announced, to answer (`Engine::answer_joins`).
struct Answer {
    room: Arc<RoomHandle>,
    announced: Vec<(NewConnection, JoinReply, store::Joined)>,
}

type JoinReply = oneshot::Sender<Result<(store::Joined, Arc<FirstPage>), ApiError>>;

pub struct PendingLeave {
    record: ConnectionRecord,
    done: oneshot::Sender<()>,
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
        // The room is read (first page, presence) after other nodes' traffic for it arrives
        // here: nothing they publish falls between the two.
        if let Some(relay) = hub.relay() {
            relay.subscribed(member.scope.room_id, SUBSCRIBE_WAIT).await;
        }
        // Marked live before the row exists, so that a concurrent reap never takes it for a
        // leaked one.
        hub.mark_joined(member.connection);
        let (presence_reply, presence) = oneshot::channel();
        let (done, joined) = oneshot::channel();
        self.queue(
            &room,
            Change::Join(PendingJoin {
                new: NewConnection {
                    id: member.connection,
                    node_id: hub.node_id().clone(),
                    scope: member.scope,
                    user_id: member.user_id,
                    opened_at: Timestamp::now(),
                },
                outbox: member.outbox.clone(),
                presence: presence_reply,
                done,
            }),
        );
        // No answer means the committer was stopped: the row, if any, is left to the reaper.
        let (joined, page) = match joined.await.unwrap_or(Err(ApiError::Unavailable)) {
            Ok(joined) => joined,
            Err(error) => {
                room.release();
                hub.unmark_joined(member.connection);
                return Err(error);
            }
        };
        let presence = presence.await.unwrap_or_default();
        self.count(member.scope, Activity::Join);
        self.analytics().online(
            member.scope.account_id,
            member.scope.room_id,
            joined.room.active_participants,
        );
        Ok(Joined {
            room: joined.room,
            user: page.socket_user(joined.user),
            page,
            presence,
            handle: room,
        })
    }

    /// The socket leaves the room it joined: the room stops sending to it at once, then the
    /// leave is recorded (at shutdown, for every socket at once: `shut_down`).
    pub async fn leave(&self, member: &Member, room: Arc<RoomHandle>) {
        room.send(RoomCommand::Detach {
            connection: member.connection,
        })
        .await;
        if !self.hub().shutting_down() {
            self.hub().unmark_joined(member.connection);
            let (done, recorded) = oneshot::channel();
            self.queue(
                &room,
                Change::Leave(PendingLeave {
                    record: ConnectionRecord {
                        id: member.connection,
                        node_id: self.hub().node_id().clone(),
                        scope: member.scope,
                        user_id: member.user_id,
                    },
                    done,
                }),
            );
            let _ = recorded.await;
        }
        room.release();
    }

    /// Queues a join or a leave of the room for its lane's committer, and starts the
    /// committer if none runs (`commit_lane`).
    fn queue(&self, room: &Arc<RoomHandle>, change: Change) {
        if self.hub().queue(room, change) {
            let (engine, room_id) = (self.clone(), room.scope.room_id);
            tokio::spawn(async move { engine.commit_lane(room_id).await });
        }
    }

    /// The committer of the room's lane (`Lane`): records the queued joins and leaves of every
    /// room of the lane, each room's in the order they were queued, and announces them; then
    /// what was queued meanwhile, until nothing is (group commit: when many sockets join at
    /// once, one transaction records the joins of all who queued while the last one ran,
    /// across rooms). The sockets only wait for their own answer, never for each other's
    /// turn. Each room's leading joins go together; what follows its first leave is recorded
    /// after, room by room, in order.
    async fn commit_lane(&self, room_id: RoomId) {
        let lane = self.hub().lane(room_id);
        loop {
            let answers = {
                let _order = lane.membership().await;
                let Some(rooms) = lane.take_pending() else {
                    return;
                };
                // A bug in one commit must not stop the lane: its joins and leaves get no
                // answer (their sockets see the server unavailable, the reaper takes any row).
                let ids: Vec<RoomId> = rooms.iter().map(|room| room.scope.room_id).collect();
                let recording = AssertUnwindSafe(self.record_membership(rooms)).catch_unwind();
                match recording.await {
                    Ok(answers) => answers,
                    Err(_) => {
                        tracing::error!(rooms = ?ids, "recording joins and leaves panicked");
                        Vec::new()
                    }
                }
            };
            // Answered beside the next commit: a join's answer (the room's first page)
            // reflects at least its own batch, whose notices the actor has.
            if !answers.is_empty() {
                let engine = self.clone();
                tokio::spawn(async move {
                    let answering = answers
                        .into_iter()
                        .map(|answer| engine.answer_joins(answer));
                    futures_util::future::join_all(answering).await;
                });
            }
        }
    }

    /// `commit_lane`'s records and announcements of the rooms taken, under the lane's lock;
    /// returns the joins to answer.
    async fn record_membership(&self, rooms: Vec<Arc<RoomHandle>>) -> Vec<Answer> {
        let mut answers = Vec::new();
        let mut leading = Vec::new();
        let mut rest = Vec::new();
        for room in rooms {
            let mut changes = room.take_queued().into_iter().peekable();
            let mut joins = Vec::new();
            while let Some(Change::Join(join)) = changes.next_if(|c| matches!(c, Change::Join(_))) {
                joins.push(join);
            }
            if !joins.is_empty() {
                leading.push((room.clone(), joins));
            }
            let changes: Vec<Change> = changes.collect();
            if !changes.is_empty() {
                rest.push((room, changes));
            }
        }
        self.record_joins(leading, &mut answers).await;
        for (room, changes) in rest {
            self.record_changes(&room, changes, &mut answers).await;
        }
        answers
    }

    /// Records one room's changes in order: each run of joins, each run of leaves, together.
    async fn record_changes(
        &self,
        room: &Arc<RoomHandle>,
        changes: Vec<Change>,
        answers: &mut Vec<Answer>,
    ) {
        let mut changes = changes.into_iter().peekable();
        while let Some(change) = changes.next() {
            match change {
                Change::Join(join) => {
                    let mut batch = vec![join];
                    while let Some(Change::Join(join)) =
                        changes.next_if(|c| matches!(c, Change::Join(_)))
                    {
                        batch.push(join);
                    }
                    self.record_joins(vec![(room.clone(), batch)], answers)
                        .await;
                }
                Change::Leave(leave) => {
                    let mut batch = vec![leave];
                    while batch.len() < MAX_BATCH {
                        match changes.next_if(|c| matches!(c, Change::Leave(_))) {
                            Some(Change::Leave(leave)) => batch.push(leave),
                            _ => break,
                        }
                    }
                    let records: Vec<ConnectionRecord> =
                        batch.iter().map(|leave| leave.record.clone()).collect();
                    self.record_leaves(room.scope, &records).await;
                    for leave in batch {
                        let _ = leave.done.send(());
                    }
                }
            }
        }
    }

    /// Records joins of several rooms, at most `MAX_BATCH` a transaction (a room's joins in
    /// order, across transactions if they are more), and announces each, in order.
    async fn record_joins(
        &self,
        rooms: Vec<(Arc<RoomHandle>, Vec<PendingJoin>)>,
        answers: &mut Vec<Answer>,
    ) {
        let mut transaction: Vec<(Arc<RoomHandle>, Vec<PendingJoin>)> = Vec::new();
        let mut size = 0;
        for (room, joins) in rooms {
            let mut joins = joins.into_iter().peekable();
            while joins.peek().is_some() {
                let part: Vec<PendingJoin> = joins.by_ref().take(MAX_BATCH - size).collect();
                size += part.len();
                transaction.push((room.clone(), part));
                if size == MAX_BATCH {
                    self.record_transaction(std::mem::take(&mut transaction), answers)
                        .await;
                    size = 0;
                }
            }
        }
        if !transaction.is_empty() {
            self.record_transaction(transaction, answers).await;
        }
    }

    /// Records the joins of one transaction, then announces each room's.
    async fn record_transaction(
        &self,
        rooms: Vec<(Arc<RoomHandle>, Vec<PendingJoin>)>,
        answers: &mut Vec<Answer>,
    ) {
        let batches: Vec<RoomJoins> = rooms
            .iter()
            .map(|(room, joins)| RoomJoins {
                scope: room.scope,
                connections: joins.iter().map(|join| join.new.clone()).collect(),
            })
            .collect();
        let results = match self.store().join_rooms(&batches).await {
            Ok(results) => results,
            Err(error) => {
                // One failure, told to every join of the transaction.
                let error = ApiError::from(error);
                for join in rooms.into_iter().flat_map(|(_, joins)| joins) {
                    let _ = join.done.send(Err(copy_of(&error)));
                }
                return;
            }
        };
        for ((room, joins), result) in rooms.into_iter().zip(results) {
            match result {
                Ok(results) => {
                    let answer = self.announce_joins(room, joins, results).await;
                    answers.extend(answer);
                }
                Err(error) => {
                    let error = ApiError::from(error);
                    for join in joins {
                        let _ = join.done.send(Err(copy_of(&error)));
                    }
                }
            }
        }
    }

    /// Announces a room's recorded joins, each in order; returns those to answer.
    async fn announce_joins(
        &self,
        room: Arc<RoomHandle>,
        batch: Vec<PendingJoin>,
        results: Vec<StoreResult<store::Joined>>,
    ) -> Option<Answer> {
        let scope = room.scope;
        let mut announced = Vec::new();
        for (join, result) in batch.into_iter().zip(results) {
            let joined = match result {
                Ok(joined) => joined,
                Err(error) => {
                    let _ = join.done.send(Err(error.into()));
                    continue;
                }
            };
            let notice = RoomCommand::Joined {
                connection: join.new.id,
                user_id: join.new.user_id,
                outbox: join.outbox,
                joined: Box::new(joined.clone()),
                reply: join.presence,
            };
            self.publish(Outcome {
                room_id: scope.room_id,
                events: joined.events.clone(),
                notice: Some(notice),
            })
            .await;
            announced.push((join.new, join.done, joined));
        }
        (!announced.is_empty()).then_some(Answer { room, announced })
    }

    /// Answers a room's announced joins with the room's first page of users; if it cannot
    /// be had, they fail and their leaves are recorded.
    async fn answer_joins(&self, answer: Answer) {
        let Answer { room, announced } = answer;
        let scope = room.scope;
        match self.first_page(&room).await {
            Ok(page) => {
                for (_, done, joined) in announced {
                    let _ = done.send(Ok((joined, page.clone())));
                }
            }
            Err(error) => {
                // The clients hear of a failure: they must not stay joined.
                let records: Vec<ConnectionRecord> = announced
                    .iter()
                    .map(|(new, _, _)| ConnectionRecord {
                        id: new.id,
                        node_id: new.node_id.clone(),
                        scope,
                        user_id: new.user_id,
                    })
                    .collect();
                let _order = self.hub().lane(scope.room_id).membership().await;
                for (new, _, _) in &announced {
                    room.send(RoomCommand::Detach { connection: new.id }).await;
                    self.hub().unmark_joined(new.id);
                }
                self.record_leaves(scope, &records).await;
                for (_, done, _) in announced {
                    let _ = done.send(Err(copy_of(&error)));
                }
            }
        }
    }

    /// The room's first page of users, as it is after the joins just announced: kept by the
    /// room's actor (`first_page`), else read and handed to it to keep.
    async fn first_page(&self, room: &RoomHandle) -> Result<Arc<FirstPage>, ApiError> {
        let scope = room.scope;
        // While the feed of other nodes' changes is down, nothing is kept (`reads`).
        if self.room_reads().keeps() {
            let (reply, lookup) = oneshot::channel();
            room.send(RoomCommand::FirstPage { reply }).await;
            match lookup.await {
                Ok(Lookup::Kept(page)) => return Ok(page),
                Ok(Lookup::Missing { epoch }) => {
                    let size = self.hub().users_page_size();
                    let page = self.store().list_room_users(scope, None, size).await?;
                    let (reply, kept) = oneshot::channel();
                    room.send(RoomCommand::KeepPage { epoch, page, reply })
                        .await;
                    if let Ok(page) = kept.await {
                        return page;
                    }
                }
                Ok(Lookup::Unavailable) | Err(_) => {}
            }
        }
        let (users, cursor, graph) = self.users_page_and_graph(scope, None).await?;
        let users: Vec<User> = users.into_iter().map(|view| view.user).collect();
        Ok(Arc::new(FirstPage::new(&users, cursor, Arc::new(graph))?))
    }

    /// Records leaves of one room in one transaction (users left without a socket go
    /// offline) and announces them. Retries a failing database a few times; if it keeps
    /// failing, the rows stay and the users stay online until this node's next start (or a
    /// reconcile, or the reaper) cleans them up.
    async fn record_leaves(&self, scope: RoomScope, records: &[ConnectionRecord]) {
        let ids: Vec<ConnectionId> = records.iter().map(|record| record.id).collect();
        let mut delay = LEAVE_RETRY_DELAY;
        for attempt in 1..=LEAVE_ATTEMPTS {
            match self.store().leave_many(scope, &ids, Timestamp::now()).await {
                Ok(recounted) => {
                    self.publish(Outcome::recorded(scope.room_id, recounted.events))
                        .await;
                    self.users_set_offline(scope.room_id, recounted.users_set_offline)
                        .await;
                    return;
                }
                // The room is gone, and its sockets' rows with it.
                Err(StoreError::NotFound(_)) => return,
                Err(error) => {
                    tracing::warn!(room = %scope.room_id, leaves = ids.len(), attempt, %error, "recording leaves failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(room = %scope.room_id, leaves = ids.len(), "gave up recording leaves");
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
        let mut by_room: HashMap<RoomId, (RoomScope, Vec<ConnectionRecord>)> = HashMap::new();
        for record in records {
            self.hub().unmark_joined(record.id);
            by_room
                .entry(record.scope.room_id)
                .or_insert_with(|| (record.scope, Vec::new()))
                .1
                .push(record);
        }
        for (scope, records) in by_room.into_values() {
            let _order = self.hub().lane(scope.room_id).membership().await;
            for batch in records.chunks(MAX_BATCH) {
                self.record_leaves(scope, batch).await;
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

/// What a client is told of a failure shared by a batch: the same error for what it can say
/// (not found, unavailable), else an internal error (whose detail is logged, never sent).
fn copy_of(error: &ApiError) -> ApiError {
    match error {
        ApiError::NotFound(message) => ApiError::NotFound(message.clone()),
        ApiError::Unavailable => ApiError::Unavailable,
        other => ApiError::Internal(anyhow::anyhow!(
            "recording a batch of joins failed: {other}"
        )),
    }
}
