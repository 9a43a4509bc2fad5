//! Rooms: the space users meet in. Serializes as the documented `CollabKitRoom`.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::{AccountId, RoomId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomState {
    Active,
}

impl RoomState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub id: RoomId,
    pub account_id: AccountId,
    pub name: String,
    pub custom_id: Option<String>,
    pub created_at: Timestamp,
    pub state: RoomState,
    pub active_participants: i64,
    /// Time with someone online, summed over the sessions that have closed.
    pub closed_sessions_ms: i64,
    /// Start of the session running now (someone is online), if any.
    pub session_started_at: Option<Timestamp>,
    pub total_users_created: i64,
}

impl Room {
    /// Total time the room has had at least one user online, the running session included.
    pub fn duration_seconds(&self, now: Timestamp) -> i64 {
        let running = self
            .session_started_at
            .map_or(0, |start| (now.as_millis() - start.as_millis()).max(0));
        (self.closed_sessions_ms + running) / 1000
    }
}

impl Serialize for Room {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut room = serializer.serialize_struct("CollabKitRoom", 9)?;
        room.serialize_field("id", &self.id)?;
        room.serialize_field("account_id", &self.account_id)?;
        room.serialize_field("name", &self.name)?;
        room.serialize_field("custom_id", &self.custom_id)?;
        room.serialize_field("created_at", &self.created_at)?;
        room.serialize_field("state", self.state.as_str())?;
        room.serialize_field("duration_seconds", &self.duration_seconds(Timestamp::now()))?;
        room.serialize_field("active_participants", &self.active_participants)?;
        room.serialize_field("total_users_created", &self.total_users_created)?;
        room.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room {
            id: RoomId::new(),
            account_id: AccountId::new(),
            name: "whiteboard/room-one".into(),
            custom_id: None,
            created_at: Timestamp::from_millis(1_000),
            state: RoomState::Active,
            active_participants: 0,
            closed_sessions_ms: 61_500,
            session_started_at: None,
            total_users_created: 0,
        }
    }

    #[test]
    fn duration_counts_closed_and_running_sessions() {
        let mut room = room();
        assert_eq!(room.duration_seconds(Timestamp::from_millis(500_000)), 61);
        room.session_started_at = Some(Timestamp::from_millis(100_000));
        assert_eq!(room.duration_seconds(Timestamp::from_millis(110_000)), 71);
    }

    #[test]
    fn serializes_the_documented_shape() {
        let value = serde_json::to_value(room()).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        let expected = vec![
            "id",
            "account_id",
            "name",
            "custom_id",
            "created_at",
            "state",
            "duration_seconds",
            "active_participants",
            "total_users_created",
        ];
        assert_eq!(keys, expected, "the documented order");
        assert_eq!(value["custom_id"], serde_json::Value::Null);
        assert_eq!(value["state"], "active");
        assert_eq!(value["created_at"], "1970-01-01T00:00:01.000Z");
    }
}
