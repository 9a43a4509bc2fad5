//! The room actor: one task per active room on this node owns who is joined here, their
//! presence and sync targets, and the follow graph. It never awaits a client: every send is a
//! `try_send` into the client's bounded outbox, and a client that cannot keep up is closed.
//! (Over our usual 600 lines: `handle` is the one match over every command a room takes, and
//! reads best whole; the parts with state of their own live beside it: presence, first_page,
//! following, order.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use super::events::{PresenceBatch, ServerEvent};
use super::first_page::{FirstPage, KeptPage, Lookup};
use super::following::FollowGraph;
use super::hub::RoomMap;
use super::membership::SUBSCRIBE_WAIT;
use super::order::{Arrival, VersionOrder};
use super::outbox::{close, Outbox, Utf8Bytes};
use super::presence::{self, NewState, PresenceBoard, RoomPresenceFull, SyncTarget};
use super::relay::{self, Recipients};
use crate::config::RealtimeConfig;
use crate::domain::{ConnectionId, User, UserId};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{DynStore, Joined, Left, PageSize, RoomScope, UserPage};

/// Commands queued for a room before senders wait.
pub const INBOX_CAPACITY: usize = 1024;
/// Tries at loading the follow graph before the room runs without it.
const FOLLOW_LOAD_ATTEMPTS: u32 = 3;

pub enum RoomCommand {
    /// A socket joined (already recorded in the database).
    Joined {
        connection: ConnectionId,
        user_id: UserId,
        outbox: Outbox,
        joined: Box<Joined>,
        /// Everyone else's current presence, for the join's result.
        reply: oneshot::Sender<Vec<Value>>,
    },
    /// A socket stops receiving (before its leave is recorded).
    Detach {
        connection: ConnectionId,
    },
    /// A leave was recorded (this node's socket, or one of a dead node).
    Left {
        user_id: UserId,
        left: Box<Left>,
    },
    Presence {
        connection: ConnectionId,
        state: NewState,
        /// Whether the state was taken (false: the room's presence is full).
        reply: oneshot::Sender<bool>,
    },
    Sync {
        connection: ConnectionId,
        target: SyncTarget,
        reply: oneshot::Sender<Vec<Value>>,
    },
    Unsync {
        connection: ConnectionId,
    },
    Broadcast {
        connection: ConnectionId,
        event: String,
        data: Value,
        user_ids: Option<Vec<UserId>>,
        reply: oneshot::Sender<Broadcasted>,
    },
    FollowChanged {
        follower: UserId,
        followee: UserId,
        follows: bool,
        users: Vec<User>,
    },
    UserCreated(User),
    UserUpdated(User),
    UserDeleted(User),
    RoomDeleted,
    /// The room's first page of users, for a batch of joins (`first_page`).
    FirstPage {
        reply: oneshot::Sender<Lookup>,
    },
    /// The first page, read from the database under `epoch`: to keep if still current, and
    /// to encode for the joins that read it.
    KeepPage {
        epoch: u64,
        page: UserPage,
        reply: oneshot::Sender<Result<Arc<FirstPage>, ApiError>>,
    },
    /// The room's follow graph as the actor keeps it (`None` if it did not load).
    FollowGraph {
        reply: oneshot::Sender<Option<Arc<FollowGraph>>>,
    },
    /// Another node changed the room or its users (or this node may have missed such news):
    /// what is kept of its users is dropped.
    Forget,
    /// Events for every joined socket but `except` (the one that caused them); a store
    /// write's carry the room's store version it took.
    Publish {
        except: Option<ConnectionId>,
        frames: Vec<Utf8Bytes>,
        version: Option<i64>,
    },
    /// A user came online through another node (their first socket anywhere is there).
    CameOnline(User),
    /// Another node's tick: its users' states (`null`: cleared).
    RemotePresence(Vec<(UserId, Value)>),
    /// The room's sockets were closed to resynchronize (they read the room again from the
    /// database): the order of store events starts over from there.
    Resync,
    /// Frames another node relayed, for the sockets `to` names (with its store version, as
    /// `Publish`).
    Deliver {
        frames: Vec<Utf8Bytes>,
        to: Recipients,
        version: Option<i64>,
    },
}

/// A broadcast sent: to how many sockets of this node, and (unless the sender had left) the
/// frame and its sender, for the other nodes.
#[derive(Debug, Default)]
pub struct Broadcasted {
    pub recipients: usize,
    pub sent: Option<(UserId, Utf8Bytes)>,
}

/// Frames for some of the room's joined sockets.
struct Handout {
    frames: Vec<Utf8Bytes>,
    to: Audience,
}

enum Audience {
    /// Every joined socket but this one (this node's change).
    AllBut(Option<ConnectionId>),
    /// Those another node's change is for.
    Relayed(Recipients),
}

struct Member {
    user_id: UserId,
    outbox: Outbox,
    sync: Option<SyncTarget>,
}

pub struct RoomActor {
    scope: RoomScope,
    /// The registry it takes itself out of when idle.
    rooms: RoomMap,
    store: DynStore,
    config: RealtimeConfig,
    /// Where coalesced presence updates are counted.
    metrics: Arc<Metrics>,
    members: HashMap<ConnectionId, Member>,
    presence: PresenceBoard,
    follows: Arc<FollowGraph>,
    /// Whether `follows` holds the room's graph (it failed to load otherwise).
    follows_loaded: bool,
    first_page: KeptPage,
    /// Users whose state on the board came from another node: this node's ticks do not
    /// relay them back.
    relayed: HashSet<UserId>,
    /// Store events by version (`order`), where other nodes' interleave with this node's.
    store_events: VersionOrder<Handout>,
    /// The room's sockets must resynchronize (a store event was lost), or did.
    resync: bool,
}

impl RoomActor {
    pub fn new(
        scope: RoomScope,
        rooms: RoomMap,
        store: DynStore,
        config: RealtimeConfig,
        first_page: PageSize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            scope,
            rooms,
            store,
            config,
            metrics,
            members: HashMap::new(),
            presence: PresenceBoard::default(),
            follows: Arc::default(),
            follows_loaded: false,
            first_page: KeptPage::new(first_page),
            relayed: HashSet::new(),
            store_events: VersionOrder::unordered(),
            resync: false,
        }
    }

    pub async fn run(mut self, mut inbox: mpsc::Receiver<RoomCommand>) {
        self.load_follows().await;
        if let Some(relay) = self.rooms.relay() {
            // From the version read after the subscription, every store event arrives.
            relay.subscribed(self.scope.room_id, SUBSCRIBE_WAIT).await;
            self.store_events = VersionOrder::ordered(self.store_version().await);
        }
        let interval = self.config.presence_interval();
        let mut idle_since = Instant::now();
        loop {
            let flush_at = self.presence.due(Instant::now(), interval);
            let idle_at = self
                .members
                .is_empty()
                .then(|| idle_since + self.config.room_idle());
            let gap_until = self.store_events.deadline();
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    self.send_presence(Instant::now());
                }
                () = sleep_until(idle_at.unwrap_or_else(Instant::now)), if idle_at.is_some() => {
                    if self.rooms.unload_if_idle(self.scope.room_id) {
                        break;
                    }
                    idle_since = Instant::now();
                }
                () = sleep_until(gap_until.unwrap_or_else(Instant::now)), if gap_until.is_some() => {
                    self.lose_store_event("a store event from another node never arrived");
                }
            }
            if self.resync {
                self.resynchronize().await;
            }
            if !self.members.is_empty() {
                idle_since = Instant::now();
            }
        }
        // Commands sent before the room was unloaded still get their effects (none reach a
        // socket: nobody is joined).
        inbox.close();
        while let Ok(command) = inbox.try_recv() {
            self.handle(command);
        }
        tracing::debug!(room = %self.scope.room_id, "room unloaded");
    }

    /// The room's store version now; `None` if it cannot be read (the next store event
    /// then sets where the order starts).
    async fn store_version(&self) -> Option<i64> {
        match self.store.store_version(self.scope).await {
            Ok(version) => Some(version),
            Err(error) => {
                tracing::warn!(room = %self.scope.room_id, %error, "reading the store version failed");
                None
            }
        }
    }

    fn lose_store_event(&mut self, why: &'static str) {
        tracing::warn!(
            room = %self.scope.room_id,
            sockets = self.members.len(),
            "{why}; resynchronizing the room's sockets"
        );
        self.resync = true;
    }

    /// The joined sockets close with 4000 (if they have not yet) and read the room again
    /// from the database (the SDK reconnects), and the order of store events starts over
    /// from there.
    async fn resynchronize(&mut self) {
        self.resync = false;
        for member in self.members.values() {
            member.outbox.close(
                close::TOO_SLOW,
                "resync: messages from other nodes were lost",
            );
        }
        let version = self.store_version().await;
        self.store_events.restart(version);
    }

    async fn load_follows(&mut self) {
        for attempt in 1..=FOLLOW_LOAD_ATTEMPTS {
            match self.store.list_follows(self.scope).await {
                Ok(pairs) => {
                    self.follows = Arc::new(FollowGraph::from_pairs(pairs));
                    self.follows_loaded = true;
                    return;
                }
                Err(error) => {
                    tracing::warn!(room = %self.scope.room_id, attempt, %error, "loading follows failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                        .await;
                }
            }
        }
    }

    fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Joined {
                connection,
                user_id,
                outbox,
                joined,
                reply,
            } => {
                self.members.insert(
                    connection,
                    Member {
                        user_id,
                        outbox,
                        sync: None,
                    },
                );
                if joined.came_online {
                    self.came_online(joined.user.clone());
                } else {
                    self.first_page.patch(&joined.user);
                }
                let states = self
                    .presence
                    .states()
                    .filter(|(user, _)| *user != user_id)
                    .map(|(user, state)| presence::entry(user, state))
                    .collect();
                let _ = reply.send(states);
            }
            RoomCommand::Detach { connection } => {
                self.members.remove(&connection);
            }
            RoomCommand::Left { user_id, left } => {
                if let Some(user) = &left.user {
                    self.first_page.patch(user);
                }
                if !left.went_offline {
                    return;
                }
                if let Some(user) = left.user {
                    let user = self.follows.socket_user(user);
                    self.send_to_others(user_id, &ServerEvent::UserLeft { user: &user }.encode());
                }
                self.clear_presence(user_id);
            }
            RoomCommand::Presence {
                connection,
                mut state,
                reply,
            } => {
                let Some(member) = self.members.get(&connection) else {
                    let _ = reply.send(true);
                    return;
                };
                let user_id = member.user_id;
                self.relayed.remove(&user_id);
                if let Value::Object(fields) = &mut state.state {
                    fields.insert("color".to_owned(), presence::color(user_id).into());
                }
                let budget = self.config.max_room_presence_bytes;
                let taken = self.presence.update(user_id, state, budget);
                if taken == Ok(true) {
                    self.metrics
                        .presence_coalesced
                        .fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(taken != Err(RoomPresenceFull));
                self.send_presence_if_due();
            }
            RoomCommand::RemotePresence(states) => {
                let budget = self.config.max_room_presence_bytes;
                for (user_id, state) in states {
                    self.relayed.insert(user_id);
                    if state.is_null() {
                        self.presence.remove(user_id);
                    } else {
                        let bytes = state.to_string().len();
                        // Over the room's budget here: dropped, as a local one would be.
                        let _ = self
                            .presence
                            .update(user_id, NewState { state, bytes }, budget);
                    }
                }
                self.send_presence_if_due();
            }
            RoomCommand::Sync {
                connection,
                target,
                reply,
            } => {
                let Some(member) = self.members.get_mut(&connection) else {
                    return;
                };
                member.sync = Some(target);
                let viewer = member.user_id;
                let states = self
                    .presence
                    .states()
                    .filter(|(user, _)| *user != viewer && self.matches(target, viewer, *user))
                    .map(|(user, state)| presence::entry(user, state))
                    .collect();
                let _ = reply.send(states);
            }
            RoomCommand::Unsync { connection } => {
                if let Some(member) = self.members.get_mut(&connection) {
                    member.sync = None;
                }
            }
            RoomCommand::Broadcast {
                connection,
                event,
                data,
                user_ids,
                reply,
            } => {
                let Some(sender) = self.members.get(&connection).map(|m| m.user_id) else {
                    let _ = reply.send(Broadcasted::default());
                    return;
                };
                let frame = ServerEvent::Broadcast {
                    event: &event,
                    data: &data,
                    user_id: sender,
                }
                .encode();
                let mut recipients = 0;
                for member in self.members.values() {
                    let wanted = user_ids
                        .as_ref()
                        .is_none_or(|ids| ids.contains(&member.user_id));
                    if member.user_id != sender && wanted && member.outbox.send(frame.clone()) {
                        recipients += 1;
                    }
                }
                let _ = reply.send(Broadcasted {
                    recipients,
                    sent: Some((sender, frame)),
                });
            }
            RoomCommand::FollowChanged {
                follower,
                followee,
                follows,
                users,
            } => {
                Arc::make_mut(&mut self.follows).set(follower, followee, follows);
                self.first_page.regraph();
                for user in users {
                    let user = self.follows.socket_user(user);
                    self.send_to_all(&ServerEvent::UserUpdated { user: &user }.encode());
                }
            }
            RoomCommand::UserCreated(user) => {
                self.first_page.forget();
                let user = self.follows.socket_user(user);
                self.send_to_all(&ServerEvent::UserCreated { user: &user }.encode());
            }
            RoomCommand::UserUpdated(user) => {
                self.first_page.patch(&user);
                let user = self.follows.socket_user(user);
                self.send_to_all(&ServerEvent::UserUpdated { user: &user }.encode());
            }
            RoomCommand::UserDeleted(user) => {
                // The deleted user's own sockets hear of it and close through the hub, which
                // reaches them joined or not.
                let user_id = user.id;
                self.members.retain(|_, member| member.user_id != user_id);
                self.first_page.forget();
                let user = self.follows.socket_user(user);
                Arc::make_mut(&mut self.follows).remove_user(user_id);
                self.send_to_all(&ServerEvent::UserDeleted { user: &user }.encode());
                self.clear_presence(user_id);
            }
            RoomCommand::Publish {
                except,
                frames,
                version,
            } => self.hand_out(
                version,
                Handout {
                    frames,
                    to: Audience::AllBut(except),
                },
            ),
            RoomCommand::CameOnline(user) => self.came_online(user),
            RoomCommand::Deliver {
                frames,
                to,
                version,
            } => self.hand_out(
                version,
                Handout {
                    frames,
                    to: Audience::Relayed(to),
                },
            ),
            RoomCommand::RoomDeleted => {
                // Every socket of the room (joined or not) hears of it and closes through the
                // hub; here there is nobody left to serve.
                self.members.clear();
                self.first_page.forget();
            }
            RoomCommand::FirstPage { reply } => {
                let lookup = if self.follows_loaded {
                    self.first_page.get(&self.follows)
                } else {
                    Lookup::Unavailable
                };
                let _ = reply.send(lookup);
            }
            RoomCommand::KeepPage { epoch, page, reply } => {
                let _ = reply.send(self.first_page.keep(epoch, page, &self.follows));
            }
            RoomCommand::Forget => self.first_page.forget(),
            RoomCommand::Resync => self.resync = true,
            RoomCommand::FollowGraph { reply } => {
                let _ = reply.send(self.follows_loaded.then(|| self.follows.clone()));
            }
        }
    }

    /// Sends frames to their sockets; a store event's in version order.
    fn hand_out(&mut self, version: Option<i64>, handout: Handout) {
        let Some(version) = version else {
            return self.send_handout(&handout);
        };
        match self.store_events.arrive(version, handout, Instant::now()) {
            Arrival::Ready(handouts) => {
                for handout in &handouts {
                    self.send_handout(handout);
                }
            }
            Arrival::Held | Arrival::Stale => {}
            Arrival::Overflow => {
                self.lose_store_event("too many store events wait for a missing one")
            }
        }
    }

    fn send_handout(&self, handout: &Handout) {
        for (connection, member) in &self.members {
            let wanted = match &handout.to {
                Audience::AllBut(except) => Some(*connection) != *except,
                Audience::Relayed(to) => to.includes(member.user_id),
            };
            if wanted {
                for frame in &handout.frames {
                    member.outbox.send(frame.clone());
                }
            }
        }
    }

    /// Whether a connection of `viewer` synced to `target` receives `subject`'s presence.
    fn matches(&self, target: SyncTarget, viewer: UserId, subject: UserId) -> bool {
        match target {
            SyncTarget::Everyone => true,
            SyncTarget::Following => self.follows.follows(viewer, subject),
            SyncTarget::User(user) => user == subject,
        }
    }

    /// A room that has not sent presence for an interval sends a change at once; else the
    /// change waits for the tick (`run`).
    fn send_presence_if_due(&mut self) {
        let now = Instant::now();
        if self
            .presence
            .due(now, self.config.presence_interval())
            .is_some_and(|due| due <= now)
        {
            self.send_presence(now);
        }
    }

    /// The tick: every state that changed since the last goes to the sockets synced to it,
    /// one frame per socket (version 1 clients: one per state); the states of this node's
    /// users go to the other nodes in one message.
    fn send_presence(&mut self, now: Instant) {
        let changed = self.presence.take_changed(now);
        if changed.is_empty() {
            return;
        }
        if let Some(relay) = self.rooms.relay() {
            let own: Vec<(UserId, &Value)> = changed
                .iter()
                .filter(|(user, _)| !self.relayed.contains(user))
                .map(|(user, state)| (*user, state))
                .collect();
            if !own.is_empty() {
                relay::relay_presence(relay, self.scope.room_id, &own);
            }
        }
        for (user, state) in &changed {
            if state.is_null() {
                self.relayed.remove(user);
            }
        }
        let batch = PresenceBatch::new(&changed);
        for member in self.members.values() {
            let Some(target) = member.sync else { continue };
            let viewer = member.user_id;
            let shown = |subject| subject != viewer && self.matches(target, viewer, subject);
            for frame in batch.frames_for(member.outbox.protocol(), shown) {
                member.outbox.send(frame);
            }
        }
    }

    /// A user went away: with the next tick, the others synced to them see `state: null`.
    fn clear_presence(&mut self, user_id: UserId) {
        self.presence.remove(user_id);
    }

    /// A user came online: the others hear of it.
    fn came_online(&mut self, user: User) {
        self.first_page.patch(&user);
        let user_id = user.id;
        let user = self.follows.socket_user(user);
        self.send_to_others(user_id, &ServerEvent::UserJoined { user: &user }.encode());
    }

    fn send_to_others(&self, user_id: UserId, frame: &Utf8Bytes) {
        for member in self.members.values().filter(|m| m.user_id != user_id) {
            member.outbox.send(frame.clone());
        }
    }

    fn send_to_all(&self, frame: &Utf8Bytes) {
        for member in self.members.values() {
            member.outbox.send(frame.clone());
        }
    }
}
