//! Presence: sync targets, per-user colours, the coalescing that keeps a client that ignores
//! the SDK's throttle from flooding the others, and the room's budget; and broadcasts, the
//! other live traffic of a joined socket.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::actor::RoomCommand;
use super::hub::RoomHandle;
use super::relay::Recipients;
use super::Engine;
use crate::analytics::Activity;
use crate::domain::{ConnectionId, RoomId, UserId};
use crate::error::ApiError;

/// Twelve colours far enough apart to tell cursors apart.
const PALETTE: [&str; 12] = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#469990", "#9a6324", "#800000", "#000075",
];

/// A stable colour for a user: the same on every node and every reconnection.
pub fn color(user: UserId) -> &'static str {
    let sum: u32 = user
        .as_uuid()
        .as_bytes()
        .iter()
        .map(|b| u32::from(*b))
        .sum();
    PALETTE[sum as usize % PALETTE.len()]
}

/// One user's state in a snapshot (`room.join`, `presence.sync`): `{ userId, state }`.
pub fn entry(user: UserId, state: &Value) -> Value {
    serde_json::json!({ "userId": user, "state": state })
}

/// Whose presence a connection asked to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTarget {
    Everyone,
    Following,
    User(UserId),
}

impl SyncTarget {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "*" => Some(Self::Everyone),
            "following" => Some(Self::Following),
            id => id.parse().ok().map(Self::User),
        }
    }
}

/// The latest state of each user, and which changed since the room last sent presence.
///
/// A room sends presence in ticks of `presence_interval_ms`: every state that changed since
/// the last tick goes out together, one frame per recipient, so a user's state reaches the
/// others at most once per interval (a faster client is coalesced to its latest state). A
/// room that has not sent for an interval sends a change at once, so a lone update is not
/// held back.
#[derive(Default)]
pub struct PresenceBoard {
    slots: HashMap<UserId, Slot>,
    /// What all the states weigh together (their JSON as the clients sent it).
    bytes: usize,
    /// Users whose state changed or was cleared since the last tick, in the order they first
    /// did (a user may appear twice: cleared, then set again).
    changed: Vec<UserId>,
    /// When presence last went out.
    sent_at: Option<Instant>,
}

/// A state that would take the room's presence past its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPresenceFull;

struct Slot {
    state: Value,
    /// What `state` weighs.
    bytes: usize,
    /// Set when the state changed after the last tick and still has to go out.
    changed: bool,
}

/// A user's new state and what it weighs.
pub struct NewState {
    pub state: Value,
    pub bytes: usize,
}

impl PresenceBoard {
    /// Records `state` for `user`, unless the room's states would then weigh more than
    /// `budget` together (the whole board is what a joining socket receives). True when it
    /// replaced a state of that user that had not gone out yet (coalesced).
    pub fn update(
        &mut self,
        user: UserId,
        new: NewState,
        budget: usize,
    ) -> Result<bool, RoomPresenceFull> {
        let held = self.slots.get(&user).map_or(0, |slot| slot.bytes);
        let total = self.bytes - held + new.bytes;
        if total > budget && new.bytes > held {
            return Err(RoomPresenceFull);
        }
        self.bytes = total;
        let slot = self.slots.entry(user).or_insert(Slot {
            state: Value::Null,
            bytes: 0,
            changed: false,
        });
        slot.state = new.state;
        slot.bytes = new.bytes;
        let coalesced = slot.changed;
        if !coalesced {
            slot.changed = true;
            self.changed.push(user);
        }
        Ok(coalesced)
    }

    /// When the changes waiting are due: an interval after presence last went out (at once
    /// if that is past); `None` when nothing changed.
    pub fn due(&self, now: Instant, interval: Duration) -> Option<Instant> {
        if self.changed.is_empty() {
            return None;
        }
        Some(self.sent_at.map_or(now, |sent| sent + interval))
    }

    /// The tick: every state that changed since the last one, each user's latest (`null` for
    /// a user whose state was cleared), in the order they changed.
    pub fn take_changed(&mut self, now: Instant) -> Vec<(UserId, Value)> {
        self.sent_at = Some(now);
        let mut seen = HashSet::new();
        let mut changed = Vec::with_capacity(self.changed.len());
        for user in std::mem::take(&mut self.changed) {
            if !seen.insert(user) {
                continue;
            }
            match self.slots.get_mut(&user) {
                Some(slot) if slot.changed => {
                    slot.changed = false;
                    changed.push((user, slot.state.clone()));
                }
                Some(_) => {}
                None => changed.push((user, Value::Null)),
            }
        }
        changed
    }

    /// Clears a user's state: the next tick tells the others (`null`). False if there was
    /// none.
    pub fn remove(&mut self, user: UserId) -> bool {
        match self.slots.remove(&user) {
            Some(slot) => {
                self.bytes -= slot.bytes;
                if !slot.changed {
                    self.changed.push(user);
                }
                true
            }
            None => false,
        }
    }

    pub fn states(&self) -> impl Iterator<Item = (UserId, &Value)> {
        self.slots.iter().map(|(user, slot)| (*user, &slot.state))
    }
}

/// Longest custom event name of a broadcast.
const MAX_EVENT_NAME_CHARS: usize = 128;

/// A broadcast asked for: its name, its data, and to whom (`None`: everyone else).
pub struct Broadcast {
    pub event: String,
    pub data: Value,
    pub user_ids: Option<Vec<UserId>>,
}

impl Engine {
    /// A joined socket's user sets their presence state (a JSON object). `PayloadTooLarge`
    /// over `max_presence_bytes`, or when the room's states would together pass
    /// `max_room_presence_bytes`.
    pub async fn update_presence(
        &self,
        room: &RoomHandle,
        connection: ConnectionId,
        state: Value,
    ) -> Result<(), ApiError> {
        if !state.is_object() {
            return Err(ApiError::validation("state", "state must be a JSON object"));
        }
        let config = self.hub().config();
        let bytes = state.to_string().len();
        if bytes > config.max_presence_bytes {
            return Err(ApiError::PayloadTooLarge {
                limit: config.max_presence_bytes,
            });
        }
        let (reply, taken) = oneshot::channel();
        room.send(RoomCommand::Presence {
            connection,
            state: NewState { state, bytes },
            reply,
        })
        .await;
        if taken.await == Ok(false) {
            return Err(ApiError::PayloadTooLarge {
                limit: config.max_room_presence_bytes,
            });
        }
        self.count(room.scope, Activity::PresenceUpdate);
        Ok(())
    }

    /// From now on the socket receives the presence of `target` only; returns the current
    /// states of `target`.
    pub async fn sync_presence(
        &self,
        room: &RoomHandle,
        connection: ConnectionId,
        target: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let target = SyncTarget::parse(target).ok_or_else(|| {
            ApiError::validation("target", "target must be \"*\", \"following\" or a user ID")
        })?;
        let (reply, states) = oneshot::channel();
        room.send(RoomCommand::Sync {
            connection,
            target,
            reply,
        })
        .await;
        Ok(states.await.unwrap_or_default())
    }

    /// The socket receives no presence any more.
    pub async fn unsync_presence(&self, room: &RoomHandle, connection: ConnectionId) {
        room.send(RoomCommand::Unsync { connection }).await;
    }

    /// Sends an event of the client's to the room's other users (or some of them), never back
    /// to the sender; returns how many sockets it is for: this node's it reached, and with
    /// other nodes, theirs as the database records them.
    pub async fn broadcast(
        &self,
        room: &RoomHandle,
        connection: ConnectionId,
        broadcast: Broadcast,
    ) -> Result<usize, ApiError> {
        let chars = broadcast.event.chars().count();
        if chars == 0 || chars > MAX_EVENT_NAME_CHARS {
            return Err(ApiError::validation(
                "event",
                format!("event must be 1 to {MAX_EVENT_NAME_CHARS} characters"),
            ));
        }
        let limit = self.hub().config().max_broadcast_bytes;
        if broadcast.data.to_string().len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let (reply, sent) = oneshot::channel();
        let only = broadcast.user_ids.clone();
        room.send(RoomCommand::Broadcast {
            connection,
            event: broadcast.event,
            data: broadcast.data,
            user_ids: broadcast.user_ids,
            reply,
        })
        .await;
        self.count(room.scope, Activity::Broadcast);
        let sent = sent.await.unwrap_or_default();
        let Some((sender, frame)) = sent.sent else {
            return Ok(sent.recipients);
        };
        let to = Recipients {
            except_user: Some(sender),
            only,
        };
        self.relay_frames(room.scope.room_id, &[frame], to.clone(), None);
        Ok(sent.recipients + self.recipients_elsewhere(room.scope.room_id, &to).await)
    }

    /// How many of the room's joined sockets on other nodes `to` takes in (0 without a relay;
    /// a failed read counts none).
    async fn recipients_elsewhere(&self, room_id: RoomId, to: &Recipients) -> usize {
        let hub = self.hub();
        if hub.relay().is_none() {
            return 0;
        }
        match self
            .store()
            .room_sockets_elsewhere(room_id, hub.node_id())
            .await
        {
            Ok(users) => users.into_iter().filter(|user| to.includes(*user)).count(),
            Err(error) => {
                tracing::warn!(%error, room = %room_id, "counting a broadcast's recipients on other nodes failed");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 1 << 20;

    fn state(n: impl Into<Value>) -> NewState {
        NewState {
            state: n.into(),
            bytes: 8,
        }
    }

    #[test]
    fn the_room_presence_has_a_budget() {
        let (a, b) = (UserId::new(), UserId::new());
        let sized = |bytes| NewState {
            state: Value::Null,
            bytes,
        };
        let mut board = PresenceBoard::default();
        assert!(board.update(a, sized(60), 100).is_ok());
        assert_eq!(board.update(b, sized(50), 100), Err(RoomPresenceFull));
        assert!(board.update(b, sized(40), 100).is_ok());
        // Shrinking is always allowed; a user's own old state does not count twice.
        assert!(board.update(a, sized(60), 100).is_ok());
        assert!(board.update(a, sized(10), 100).is_ok());
        board.remove(b);
        assert!(board.update(a, sized(100), 100).is_ok());
    }

    #[test]
    fn colours_are_stable() {
        let user = UserId::new();
        assert_eq!(color(user), color(user));
        assert!(color(user).starts_with('#'));
    }

    #[test]
    fn targets_parse() {
        let user = UserId::new();
        assert_eq!(SyncTarget::parse("*"), Some(SyncTarget::Everyone));
        assert_eq!(SyncTarget::parse("following"), Some(SyncTarget::Following));
        assert_eq!(
            SyncTarget::parse(&user.to_string()),
            Some(SyncTarget::User(user))
        );
        assert_eq!(SyncTarget::parse("everyone"), None);
    }

    #[test]
    fn a_tick_sends_each_changed_state_once_the_latest_wins() {
        let interval = Duration::from_millis(50);
        let start = Instant::now();
        let (a, b) = (UserId::new(), UserId::new());
        let mut board = PresenceBoard::default();
        assert_eq!(board.due(start, interval), None, "nothing changed");
        board.update(a, state(1), BUDGET).unwrap();
        // Nothing went out for an interval: the first change is due at once.
        assert_eq!(board.due(start, interval), Some(start));
        assert_eq!(board.take_changed(start), vec![(a, Value::from(1))]);
        // The first change after a tick waits for it; each one after replaces it (coalesced).
        assert_eq!(board.update(a, state(2), BUDGET), Ok(false));
        for n in 3..=10 {
            assert_eq!(board.update(a, state(n), BUDGET), Ok(true));
        }
        assert_eq!(board.update(b, state(100), BUDGET), Ok(false));
        // Then one tick per interval, each user's latest state, in the order they changed.
        let due = board.due(start, interval).unwrap();
        assert_eq!(due, start + interval);
        assert_eq!(
            board.take_changed(due),
            vec![(a, Value::from(10)), (b, Value::from(100))]
        );
        assert_eq!(board.due(due, interval), None);
        assert!(board.take_changed(due + interval).is_empty());
    }

    #[test]
    fn a_cleared_state_goes_out_as_null_once() {
        let now = Instant::now();
        let user = UserId::new();
        let mut board = PresenceBoard::default();
        assert!(!board.remove(user), "no state to clear");
        board.update(user, state(1), BUDGET).unwrap();
        board.take_changed(now);
        assert!(board.remove(user));
        assert_eq!(board.take_changed(now), vec![(user, Value::Null)]);
        // Changed, cleared, set again and cleared again within one tick: one null.
        board.update(user, state(2), BUDGET).unwrap();
        board.remove(user);
        board.update(user, state(3), BUDGET).unwrap();
        board.remove(user);
        assert_eq!(board.take_changed(now), vec![(user, Value::Null)]);
        // Cleared then set again: the new state.
        board.update(user, state(4), BUDGET).unwrap();
        board.take_changed(now);
        board.remove(user);
        board.update(user, state(5), BUDGET).unwrap();
        assert_eq!(board.take_changed(now), vec![(user, Value::from(5))]);
        assert_eq!(board.states().count(), 1);
    }
}
