//! Presence: sync targets, per-user colours, the coalescing that keeps a client that ignores
//! the SDK's throttle from flooding the others, and the room's budget; and broadcasts, the
//! other live traffic of a joined socket.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::actor::RoomCommand;
use super::hub::RoomHandle;
use super::Engine;
use crate::analytics::Activity;
use crate::domain::{ConnectionId, UserId};
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

/// Updates a user may send back to back, refilled at one per interval. Two absorbs the
/// jitter of a client that sends at exactly the interval (the SDK does) without delaying it,
/// while a flood still averages at most one update per interval.
const BURST: f64 = 2.0;
/// Slack in comparing credits, which are computed from durations.
const EPSILON: f64 = 1e-6;

/// The latest state of each user, and the credit each has left to send it.
#[derive(Default)]
pub struct PresenceBoard {
    slots: HashMap<UserId, Slot>,
    /// What all the states weigh together (their JSON as the clients sent it).
    bytes: usize,
}

/// A state that would take the room's presence past its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPresenceFull;

struct Slot {
    state: Value,
    /// What `state` weighs.
    bytes: usize,
    credits: f64,
    refilled: Instant,
    /// Set when the state changed after the last send and still has to go out.
    pending: bool,
}

impl Slot {
    fn refill(&mut self, now: Instant, interval: Duration) {
        let gained =
            now.saturating_duration_since(self.refilled).as_secs_f64() / interval.as_secs_f64();
        self.credits = (self.credits + gained).min(BURST);
        self.refilled = now;
    }

    fn take_credit(&mut self) -> bool {
        if self.credits + EPSILON >= 1.0 {
            self.credits = (self.credits - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// When a pending state may go out.
    fn due(&self, interval: Duration) -> Instant {
        self.refilled + interval.mul_f64((1.0 - self.credits).max(0.0))
    }
}

/// What to do after an update.
#[derive(Debug, PartialEq, Eq)]
pub enum Update {
    SendNow,
    Deferred,
}

/// A user's new state and what it weighs.
pub struct NewState {
    pub state: Value,
    pub bytes: usize,
}

impl PresenceBoard {
    /// Records `state` for `user`, unless the room's states would then weigh more than
    /// `budget` together (the whole board is what a joining socket receives); says whether it
    /// may go out now or waits for credit.
    pub fn update(
        &mut self,
        user: UserId,
        new: NewState,
        budget: usize,
        now: Instant,
        interval: Duration,
    ) -> Result<Update, RoomPresenceFull> {
        let held = self.slots.get(&user).map_or(0, |slot| slot.bytes);
        let total = self.bytes - held + new.bytes;
        if total > budget && new.bytes > held {
            return Err(RoomPresenceFull);
        }
        self.bytes = total;
        let slot = self.slots.entry(user).or_insert(Slot {
            state: Value::Null,
            bytes: 0,
            credits: BURST,
            refilled: now,
            pending: false,
        });
        slot.state = new.state;
        slot.bytes = new.bytes;
        slot.refill(now, interval);
        if slot.take_credit() {
            slot.pending = false;
            Ok(Update::SendNow)
        } else {
            slot.pending = true;
            Ok(Update::Deferred)
        }
    }

    /// The earliest time a deferred state is due.
    pub fn next_due(&self, interval: Duration) -> Option<Instant> {
        self.slots
            .values()
            .filter(|slot| slot.pending)
            .map(|slot| slot.due(interval))
            .min()
    }

    /// Deferred states that have credit now, marked sent: the latest state of each.
    pub fn take_due(&mut self, now: Instant, interval: Duration) -> Vec<(UserId, Value)> {
        let mut due = Vec::new();
        for (user, slot) in &mut self.slots {
            if !slot.pending {
                continue;
            }
            slot.refill(now, interval);
            if slot.take_credit() {
                slot.pending = false;
                due.push((*user, slot.state.clone()));
            }
        }
        due
    }

    pub fn remove(&mut self, user: UserId) -> bool {
        match self.slots.remove(&user) {
            Some(slot) => {
                self.bytes -= slot.bytes;
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
    /// to the sender; returns how many sockets it reached.
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
        let (reply, recipients) = oneshot::channel();
        room.send(RoomCommand::Broadcast {
            connection,
            event: broadcast.event,
            data: broadcast.data,
            user_ids: broadcast.user_ids,
            reply,
        })
        .await;
        self.count(room.scope, Activity::Broadcast);
        Ok(recipients.await.unwrap_or(0))
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
        let (now, interval) = (Instant::now(), Duration::from_millis(50));
        let (a, b) = (UserId::new(), UserId::new());
        let sized = |bytes| NewState {
            state: Value::Null,
            bytes,
        };
        let mut board = PresenceBoard::default();
        assert!(board.update(a, sized(60), 100, now, interval).is_ok());
        assert_eq!(
            board.update(b, sized(50), 100, now, interval),
            Err(RoomPresenceFull)
        );
        assert!(board.update(b, sized(40), 100, now, interval).is_ok());
        // Shrinking is always allowed; a user's own old state does not count twice.
        assert!(board.update(a, sized(60), 100, now, interval).is_ok());
        assert!(board.update(a, sized(10), 100, now, interval).is_ok());
        board.remove(b);
        assert!(board.update(a, sized(100), 100, now, interval).is_ok());
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
    fn updates_faster_than_the_interval_are_coalesced_to_the_latest() {
        let interval = Duration::from_millis(50);
        let start = Instant::now();
        let user = UserId::new();
        let mut board = PresenceBoard::default();
        assert_eq!(
            board.update(user, state(1), BUDGET, start, interval),
            Ok(Update::SendNow)
        );
        assert_eq!(
            board.update(user, state(2), BUDGET, start, interval),
            Ok(Update::SendNow),
            "a burst of two"
        );
        for i in 3..=10 {
            let at = start + Duration::from_millis(i);
            assert_eq!(
                board.update(user, state(i), BUDGET, at, interval),
                Ok(Update::Deferred)
            );
        }
        let due = board.next_due(interval).unwrap();
        assert!(due >= start + interval && due <= start + interval + Duration::from_millis(1));
        assert!(board
            .take_due(start + Duration::from_millis(40), interval)
            .is_empty());
        let sent = board.take_due(due, interval);
        assert_eq!(sent, vec![(user, Value::from(10))], "the latest state wins");
        assert_eq!(board.next_due(interval), None);
        // A flood averages one update per interval: 100 updates over a second send ~22.
        let mut board = PresenceBoard::default();
        let mut sent = 0;
        for ms in 0..1000u64 {
            let now = start + Duration::from_millis(ms);
            if ms % 10 == 0
                && board.update(user, state(ms), BUDGET, now, interval) == Ok(Update::SendNow)
            {
                sent += 1;
            }
            sent += board.take_due(now, interval).len();
        }
        assert!((20..=22).contains(&sent), "{sent} sent in a second");
    }

    #[test]
    fn a_client_at_exactly_the_interval_is_never_delayed() {
        let interval = Duration::from_millis(50);
        let start = Instant::now();
        let user = UserId::new();
        let mut board = PresenceBoard::default();
        for n in 0..200u64 {
            // Arrivals every 50 ms give or take 3 ms of jitter.
            let jitter = [0, 3, 0, 2, 1][n as usize % 5];
            let at = start + Duration::from_millis(n * 50 + jitter);
            assert_eq!(
                board.update(user, state(n), BUDGET, at, interval),
                Ok(Update::SendNow),
                "update {n}"
            );
        }
    }
}
