//! Events: what happened in a room, as webhooks and workflows receive it. Recorded in the
//! database in the same transaction as the change itself, so none is lost to a crash.

use serde::Serialize;

use super::{AccountId, Room, Timestamp, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
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
    #[serde(rename = "file.uploaded")]
    FileUploaded,
    #[serde(rename = "file.deleted")]
    FileDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        Self::ParticipantJoined,
        Self::ParticipantLeft,
        Self::SessionStarted,
        Self::SessionClosed,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeleted,
        Self::FileUploaded,
        Self::FileDeleted,
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
            Self::FileUploaded => "file.uploaded",
            Self::FileDeleted => "file.deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Something that happened in a room, with the room and user(s) as they were right after.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique per event (`evt_...`): webhook deliveries carry it on every retry.
    pub id: String,
    pub kind: EventKind,
    pub account_id: AccountId,
    pub room: Room,
    /// The user of `participant.*` and `user.*` events.
    pub user: Option<User>,
    /// The users of the session a `session.closed` ends.
    pub users: Vec<User>,
    /// The StorageFile of `file.*` events.
    pub file: Option<serde_json::Value>,
    pub timestamp: Timestamp,
}

impl Event {
    pub fn new(
        kind: EventKind,
        room: &Room,
        user: Option<&User>,
        users: Vec<User>,
        at: Timestamp,
    ) -> Self {
        Self {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            kind,
            account_id: room.account_id,
            room: room.clone(),
            user: user.cloned(),
            users,
            file: None,
            timestamp: at,
        }
    }

    /// The event about a file (`file.*`), as a StorageFile.
    pub fn with_file(mut self, file: serde_json::Value) -> Self {
        self.file = Some(file);
        self
    }
}

/// What an event carries besides its kind: stored with it, and sent in webhook bodies.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EventPayload {
    pub room: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<serde_json::Value>,
}

impl Event {
    /// The room and user(s) as JSON (CollabKitRoom, CollabKitUser without token), as they are
    /// now: recorded with the event, so that a later delivery shows them as they were.
    pub fn payload(&self) -> EventPayload {
        fn json(value: &impl Serialize) -> serde_json::Value {
            serde_json::to_value(value).expect("domain objects serialize")
        }
        EventPayload {
            room: json(&self.room),
            user: self.user.as_ref().map(json),
            users: (self.kind == EventKind::SessionClosed)
                .then(|| self.users.iter().map(json).collect()),
            file: self.file.clone(),
        }
    }
}
