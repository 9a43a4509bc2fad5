//! The internal event bus: what happened in rooms, for webhooks and workflows to consume.
//! Publishing never blocks; a consumer that falls behind loses the oldest events and is told
//! how many (a durable consumer must keep up or persist on its own side).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::domain::{AccountId, Room, Timestamp, User};
use crate::store::{Joined, Left};

/// Events kept for slow subscribers before the oldest are dropped.
const BUS_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    #[serde(rename = "participant.joined")]
    ParticipantJoined,
    #[serde(rename = "participant.left")]
    ParticipantLeft,
    #[serde(rename = "session.started")]
    SessionStarted,
    #[serde(rename = "session.closed")]
    SessionClosed,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        Self::ParticipantJoined,
        Self::ParticipantLeft,
        Self::SessionStarted,
        Self::SessionClosed,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ParticipantJoined => "participant.joined",
            Self::ParticipantLeft => "participant.left",
            Self::SessionStarted => "session.started",
            Self::SessionClosed => "session.closed",
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Something that happened in a room.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique per event (`evt_...`): webhook deliveries carry it so receivers can deduplicate.
    pub id: String,
    pub kind: EventKind,
    pub account_id: AccountId,
    pub room: Room,
    /// The user of `participant.*` and `user.*` events.
    pub user: Option<User>,
    /// The users of the session a `session.closed` ends.
    pub users: Vec<User>,
    pub timestamp: Timestamp,
}

impl Event {
    pub fn new(kind: EventKind, room: Room, user: Option<User>, users: Vec<User>) -> Self {
        Self {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            kind,
            account_id: room.account_id,
            room,
            user,
            users,
            timestamp: Timestamp::now(),
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
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
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    pub fn publish(&self, event: Event) {
        tracing::debug!(event = event.kind.name(), room = %event.room.id, "event");
        // No subscriber is not an error: nothing is listening yet.
        let _ = self.sender.send(Arc::new(event));
    }

    /// `participant.joined`, and `session.started` first if the room was empty.
    pub fn publish_joined(&self, joined: &Joined) {
        if joined.session_started {
            self.publish(Event::new(
                EventKind::SessionStarted,
                joined.room.clone(),
                None,
                Vec::new(),
            ));
        }
        if joined.came_online {
            self.publish(Event::new(
                EventKind::ParticipantJoined,
                joined.room.clone(),
                Some(joined.user.clone()),
                Vec::new(),
            ));
        }
    }

    /// `participant.left`, then `session.closed` if the room is now empty.
    pub fn publish_left(&self, left: &Left) {
        let Some(room) = &left.room else { return };
        if left.went_offline {
            if let Some(user) = &left.user {
                self.publish(Event::new(
                    EventKind::ParticipantLeft,
                    room.clone(),
                    Some(user.clone()),
                    Vec::new(),
                ));
            }
        }
        if left.session_closed {
            self.publish(Event::new(
                EventKind::SessionClosed,
                room.clone(),
                None,
                left.session_users.clone(),
            ));
        }
    }

    pub fn publish_user(&self, kind: EventKind, room: Room, user: User) {
        self.publish(Event::new(kind, room, Some(user), Vec::new()));
    }
}
