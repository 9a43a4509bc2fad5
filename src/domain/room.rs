//! Rooms: the space users meet in. Serializes as the documented `CollabKitRoom`.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use super::{AccountId, RoomId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
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

// How a room goes on the wire: `Room` serializes through it, and the OpenAPI document takes
// its schema from it.
/// A room: the space users meet in.
#[derive(Serialize, ToSchema)]
#[schema(
    as = CollabKitRoom,
    examples(json!({
        "id": "c3003c93-60cf-4184-b85f-20be14d26dac",
        "account_id": "a1b2c3d4-0000-4000-8000-000000000000",
        "name": "whiteboard/room-one", "custom_id": "my-room-1",
        "created_at": "2026-05-29T10:00:00.000Z", "state": "active",
        "duration_seconds": 0, "active_participants": 0, "total_users_created": 0
    }))
)]
struct RoomWire<'a> {
    id: RoomId,
    account_id: AccountId,
    name: &'a str,
    /// `null` when unset.
    #[schema(required = true)]
    custom_id: Option<&'a str>,
    created_at: Timestamp,
    #[schema(inline)]
    state: RoomState,
    /// Total time the room has had at least one user online, the running session included.
    duration_seconds: i64,
    /// Users online now.
    active_participants: i64,
    /// Users ever created in the room.
    total_users_created: i64,
}

impl Serialize for Room {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RoomWire {
            id: self.id,
            account_id: self.account_id,
            name: &self.name,
            custom_id: self.custom_id.as_deref(),
            created_at: self.created_at,
            state: self.state,
            duration_seconds: self.duration_seconds(Timestamp::now()),
            active_participants: self.active_participants,
            total_users_created: self.total_users_created,
        }
        .serialize(serializer)
    }
}

super::schema_of_wire!(Room, RoomWire);

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
