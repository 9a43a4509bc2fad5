//! Presence: sync targets, per-user colours, and the coalescing that keeps a client that
//! ignores the SDK's throttle from flooding the others.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::domain::UserId;

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

/// The latest state of each user, and when it was last sent.
#[derive(Default)]
pub struct PresenceBoard {
    slots: HashMap<UserId, Slot>,
}

struct Slot {
    state: Value,
    last_sent: Option<Instant>,
    /// Set when the state changed after the last send and still has to go out.
    pending: bool,
}

/// What to do after an update.
#[derive(Debug, PartialEq, Eq)]
pub enum Update {
    SendNow,
    Deferred,
}

impl PresenceBoard {
    /// Records `state` for `user`; says whether it may go out now or waits for the interval.
    pub fn update(
        &mut self,
        user: UserId,
        state: Value,
        now: Instant,
        interval: Duration,
    ) -> Update {
        let slot = self.slots.entry(user).or_insert(Slot {
            state: Value::Null,
            last_sent: None,
            pending: false,
        });
        slot.state = state;
        match slot.last_sent {
            Some(sent) if now < sent + interval => {
                slot.pending = true;
                Update::Deferred
            }
            _ => {
                slot.last_sent = Some(now);
                slot.pending = false;
                Update::SendNow
            }
        }
    }

    /// The earliest time a deferred state is due.
    pub fn next_due(&self, interval: Duration) -> Option<Instant> {
        self.slots
            .values()
            .filter(|slot| slot.pending)
            .filter_map(|slot| slot.last_sent.map(|sent| sent + interval))
            .min()
    }

    /// Deferred states whose interval has passed, marked sent.
    pub fn take_due(&mut self, now: Instant, interval: Duration) -> Vec<(UserId, Value)> {
        let mut due = Vec::new();
        for (user, slot) in &mut self.slots {
            if slot.pending && slot.last_sent.is_none_or(|sent| sent + interval <= now) {
                slot.pending = false;
                slot.last_sent = Some(now);
                due.push((*user, slot.state.clone()));
            }
        }
        due
    }

    pub fn remove(&mut self, user: UserId) -> bool {
        self.slots.remove(&user).is_some()
    }

    pub fn states(&self) -> impl Iterator<Item = (UserId, &Value)> {
        self.slots.iter().map(|(user, slot)| (*user, &slot.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            board.update(user, 1.into(), start, interval),
            Update::SendNow
        );
        for i in 2..=10 {
            let at = start + Duration::from_millis(i);
            assert_eq!(board.update(user, i.into(), at, interval), Update::Deferred);
        }
        assert_eq!(board.next_due(interval), Some(start + interval));
        assert!(board
            .take_due(start + Duration::from_millis(49), interval)
            .is_empty());
        let due = board.take_due(start + interval, interval);
        assert_eq!(due, vec![(user, Value::from(10))], "the latest state wins");
        assert_eq!(board.next_due(interval), None);
        // After a quiet interval an update goes out at once again.
        let later = start + Duration::from_millis(200);
        assert_eq!(
            board.update(user, 11.into(), later, interval),
            Update::SendNow
        );
    }
}
