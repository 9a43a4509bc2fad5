//! The internal event bus: events already recorded in the database, announced in-process to
//! whoever wants to react at once (the webhook dispatcher, workflows). A subscriber that falls
//! behind loses the oldest announcements, never the events: those are in the database.

use std::sync::Arc;

use tokio::sync::{broadcast, Notify};

use crate::domain::Event;

/// Announcements kept for slow subscribers before the oldest are dropped.
const BUS_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    /// Wakes the webhook worker for work that is not an event (a test delivery).
    wake: Arc<Notify>,
    /// Wakes the workflow runner: recorded events were dispatched (and runs queued).
    dispatched: Arc<Notify>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(BUS_CAPACITY).0,
            wake: Arc::new(Notify::new()),
            dispatched: Arc::new(Notify::new()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// Wakes whoever waits in `woken` (once, even if nobody waits yet).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Says that recorded events were dispatched: workflow runs may wait.
    pub fn dispatched(&self) {
        self.dispatched.notify_one();
    }

    pub async fn runs_queued(&self) {
        self.dispatched.notified().await;
    }

    /// Announces recorded events, in order.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            tracing::debug!(event = event.kind.name(), id = %event.id, room = %event.room.id, "event");
            // No subscriber is not an error: nothing is listening yet.
            let _ = self.sender.send(Arc::new(event));
        }
    }
}
