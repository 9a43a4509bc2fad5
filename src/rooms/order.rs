//! The order of a room's store events across nodes. Every store write takes the room's next
//! version, and each version has exactly one `changed` event (a write that changes nothing
//! gives its version back). This node's own writes reach the room's actor in version order;
//! other nodes' arrive through the relay a little later, and the two would interleave. So
//! where a relay runs, the actor hands store events to its sockets by version: one that
//! arrives early waits for those before it. A gap still open after `GAP_WAIT`, or more than
//! `HELD_MAX` events waiting, means an event was lost (its node died between commit and
//! publish, or the relay dropped it): the room's sockets resynchronize (docs/scaling.md).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// How long an event waits for those before it.
pub const GAP_WAIT: Duration = Duration::from_secs(2);
/// Events waiting at most.
pub const HELD_MAX: usize = 4096;

/// Store events in version order; `T` is what the actor hands out for one version.
#[derive(Debug)]
pub struct VersionOrder<T> {
    /// The version the next event handed out must have; `None`: not known yet (the next
    /// event sets it), or no ordering (one node).
    next: Option<i64>,
    held: BTreeMap<i64, T>,
    /// Since when the oldest waiting event has waited.
    waiting_since: Option<Instant>,
    ordered: bool,
}

/// What became of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// These, in order, can go out now (the event and any it unblocked).
    Ready(Vec<T>),
    /// It waits for earlier versions.
    Held,
    /// Its version is already past: it was read from the database by whoever could need it,
    /// or its sockets resynchronized since.
    Stale,
    /// Too many wait: the room must resynchronize.
    Overflow,
}

impl<T> VersionOrder<T> {
    /// Events in version order, the next one being `after + 1` (`None`: whichever comes
    /// first).
    pub fn ordered(after: Option<i64>) -> Self {
        Self {
            next: after.map(|v| v + 1),
            held: BTreeMap::new(),
            waiting_since: None,
            ordered: true,
        }
    }

    /// Events handed out as they come (one node: they come in order).
    pub fn unordered() -> Self {
        Self {
            ordered: false,
            ..Self::ordered(None)
        }
    }

    pub fn arrive(&mut self, version: i64, event: T, now: Instant) -> Arrival<T> {
        if !self.ordered {
            return Arrival::Ready(vec![event]);
        }
        let next = *self.next.get_or_insert(version);
        if version < next {
            return Arrival::Stale;
        }
        if version > next {
            if self.held.len() >= HELD_MAX {
                return Arrival::Overflow;
            }
            self.held.insert(version, event);
            self.waiting_since.get_or_insert(now);
            return Arrival::Held;
        }
        let mut ready = vec![event];
        let mut next = version + 1;
        while let Some(event) = self.held.remove(&next) {
            ready.push(event);
            next += 1;
        }
        self.next = Some(next);
        self.waiting_since = (!self.held.is_empty()).then_some(now);
        Arrival::Ready(ready)
    }

    /// When the wait for a missing version ends, if one is missing.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + GAP_WAIT)
    }

    /// Starts over after a resynchronization: what waited is dropped, the next event is
    /// `after + 1`.
    pub fn restart(&mut self, after: Option<i64>) {
        *self = if self.ordered {
            Self::ordered(after)
        } else {
            Self::unordered()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_event_waits_for_the_ones_before_it() {
        let now = Instant::now();
        let mut order = VersionOrder::ordered(Some(4));
        assert_eq!(order.arrive(7, 'c', now), Arrival::Held);
        assert_eq!(order.arrive(6, 'b', now), Arrival::Held);
        assert_eq!(order.deadline(), Some(now + GAP_WAIT));
        assert_eq!(
            order.arrive(5, 'a', now),
            Arrival::Ready(vec!['a', 'b', 'c'])
        );
        assert_eq!(order.deadline(), None);
        assert_eq!(order.arrive(8, 'd', now), Arrival::Ready(vec!['d']));
        assert_eq!(order.arrive(8, 'd', now), Arrival::Stale);
        assert_eq!(order.arrive(3, 'z', now), Arrival::Stale);
    }

    #[test]
    fn the_wait_restarts_when_the_oldest_gap_fills_and_another_remains() {
        let start = Instant::now();
        let later = start + Duration::from_millis(500);
        let mut order = VersionOrder::ordered(Some(0));
        assert_eq!(order.arrive(2, 'b', start), Arrival::Held);
        assert_eq!(order.arrive(4, 'd', start), Arrival::Held);
        assert_eq!(order.arrive(1, 'a', later), Arrival::Ready(vec!['a', 'b']));
        assert_eq!(order.deadline(), Some(later + GAP_WAIT));
        order.restart(Some(10));
        assert_eq!(order.deadline(), None);
        assert_eq!(order.arrive(4, 'd', later), Arrival::Stale);
        assert_eq!(order.arrive(11, 'k', later), Arrival::Ready(vec!['k']));
    }

    #[test]
    fn an_unknown_start_is_set_by_the_first_event() {
        let now = Instant::now();
        let mut order = VersionOrder::ordered(None);
        assert_eq!(order.arrive(9, 'a', now), Arrival::Ready(vec!['a']));
        assert_eq!(order.arrive(11, 'c', now), Arrival::Held);
    }

    #[test]
    fn too_many_waiting_overflow_and_one_node_does_not_wait() {
        let now = Instant::now();
        let mut order = VersionOrder::ordered(Some(0));
        for version in 2..2 + HELD_MAX as i64 {
            assert_eq!(order.arrive(version, (), now), Arrival::Held);
        }
        assert_eq!(order.arrive(1_000_000, (), now), Arrival::Overflow);
        let mut unordered = VersionOrder::unordered();
        assert_eq!(unordered.arrive(7, 'x', now), Arrival::Ready(vec!['x']));
        assert_eq!(unordered.arrive(3, 'y', now), Arrival::Ready(vec!['y']));
        assert_eq!(unordered.deadline(), None);
    }
}
