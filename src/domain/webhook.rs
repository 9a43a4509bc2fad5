//! Webhooks: registrations, deliveries, and the body a delivery sends.

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::event::EventPayload;
use super::{AccountId, EventKind, RoomId, Timestamp};

/// A webhook registration. Serializes as the documented `WebhookRegistration` without its
/// secret; `with_secret()` adds it (creation and rotation only). The secret itself is not a
/// field: it is sealed at rest and only opened to sign deliveries, so a registration read back
/// (and its `Debug`) never carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// `wh_` followed by 32 hex digits.
    pub id: String,
    pub account_id: AccountId,
    pub url: String,
    pub events: Vec<EventKind>,
    pub room_id: Option<RoomId>,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Webhook {
    pub fn new_id() -> String {
        format!("wh_{}", uuid::Uuid::new_v4().simple())
    }

    /// Whether an event of `kind` in `room` is delivered to this webhook.
    pub fn wants(&self, kind: EventKind, room: RoomId) -> bool {
        self.enabled && self.events.contains(&kind) && self.room_id.is_none_or(|r| r == room)
    }

    /// This registration shown with `secret`, the one just created or rotated.
    pub fn with_secret<'a>(&'a self, secret: &'a str) -> WithSecret<'a> {
        WithSecret {
            webhook: self,
            secret,
        }
    }

    fn wire<'a>(&'a self, secret: Option<&'a str>) -> WebhookWire<'a> {
        WebhookWire {
            id: &self.id,
            organization_id: self.account_id,
            url: &self.url,
            secret,
            events: &self.events,
            room_id: self.room_id,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

// How a webhook goes on the wire: `Webhook` serializes through it, and the OpenAPI document
// takes its schema from it.
/// A webhook: where a room's events are delivered, signed.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookRegistration)]
struct WebhookWire<'a> {
    #[schema(pattern = "^wh_[0-9a-f]{32}$")]
    id: &'a str,
    organization_id: AccountId,
    url: &'a str,
    /// `whsec_...`: only in the replies to creation and rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    secret: Option<&'a str>,
    events: &'a [EventKind],
    /// `null`: every room of the account.
    #[schema(required = true)]
    room_id: Option<RoomId>,
    enabled: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl Serialize for Webhook {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.wire(None).serialize(serializer)
    }
}

super::schema_of_wire!(Webhook, WebhookWire);

/// A webhook shown with its secret.
pub struct WithSecret<'a> {
    webhook: &'a Webhook,
    secret: &'a str,
}

impl Serialize for WithSecret<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.webhook.wire(Some(self.secret)).serialize(serializer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Success,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One event's delivery to one webhook, and how its attempts went.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct Delivery {
    /// `del_` followed by 32 hex digits.
    #[schema(pattern = "^del_[0-9a-f]{32}$")]
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    /// The JSON body sent, as a string (the same on every attempt).
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    #[schema(required = true)]
    pub last_attempt_at: Option<Timestamp>,
    #[schema(required = true)]
    pub next_retry_at: Option<Timestamp>,
    #[schema(required = true)]
    pub status_code: Option<i64>,
    pub created_at: Timestamp,
}

impl Delivery {
    pub fn new_id() -> String {
        format!("del_{}", uuid::Uuid::new_v4().simple())
    }
}

/// The name of the event a test delivery carries.
pub const TEST_EVENT: &str = "webhook.test";

/// A delivery's body: `{ id, event, timestamp, room, user | users, data: { roomId, userId? } }`,
/// which serves both documented forms (see the contract's decisions).
pub fn delivery_body(event_id: &str, kind: &str, at: Timestamp, payload: &EventPayload) -> String {
    let mut body = Map::new();
    body.insert("id".into(), event_id.into());
    body.insert("event".into(), kind.into());
    body.insert("timestamp".into(), at.to_string().into());
    body.insert("room".into(), payload.room.clone());
    let mut data = Map::new();
    data.insert("roomId".into(), payload.room["id"].clone());
    if let Some(user) = &payload.user {
        body.insert("user".into(), user.clone());
        data.insert("userId".into(), user["id"].clone());
    }
    if let Some(users) = &payload.users {
        body.insert("users".into(), Value::Array(users.clone()));
    }
    if let Some(file) = &payload.file {
        body.insert("file".into(), file.clone());
        data.insert("key".into(), file["key"].clone());
    }
    body.insert("data".into(), Value::Object(data));
    Value::Object(body).to_string()
}

/// The body of a test delivery.
pub fn test_body(event_id: &str, at: Timestamp, webhook_id: &str) -> String {
    json!({
        "id": event_id,
        "event": TEST_EVENT,
        "timestamp": at.to_string(),
        "data": { "webhookId": webhook_id },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_both_documented_forms() {
        let payload = EventPayload {
            room: json!({ "id": "r1", "name": "room" }),
            user: Some(json!({ "id": "u1", "name": "Alice" })),
            users: None,
            file: None,
        };
        let body: Value = serde_json::from_str(&delivery_body(
            "evt_1",
            "participant.joined",
            Timestamp::from_millis(0),
            &payload,
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "id": "evt_1", "event": "participant.joined",
                "timestamp": "1970-01-01T00:00:00.000Z",
                "room": { "id": "r1", "name": "room" },
                "user": { "id": "u1", "name": "Alice" },
                "data": { "roomId": "r1", "userId": "u1" },
            })
        );
        let closed = EventPayload {
            room: json!({ "id": "r1" }),
            user: None,
            users: Some(vec![json!({ "id": "u1" })]),
            file: None,
        };
        let body: Value = serde_json::from_str(&delivery_body(
            "evt_2",
            "session.closed",
            Timestamp::from_millis(0),
            &closed,
        ))
        .unwrap();
        assert_eq!(body["users"], json!([{ "id": "u1" }]));
        assert_eq!(body["data"], json!({ "roomId": "r1" }));
        assert!(body.get("user").is_none());
    }

    #[test]
    fn registrations_show_the_secret_only_when_asked() {
        let hook = Webhook {
            id: Webhook::new_id(),
            account_id: AccountId::new(),
            url: "https://example.com/hook".into(),
            events: vec![EventKind::UserCreated],
            room_id: None,
            enabled: true,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        let plain = serde_json::to_value(&hook).unwrap();
        assert!(plain.get("secret").is_none());
        assert_eq!(plain["events"], json!(["user.created"]));
        assert_eq!(plain["organization_id"], json!(hook.account_id));
        let shown = serde_json::to_value(hook.with_secret("whsec_x")).unwrap();
        assert_eq!(shown["secret"], "whsec_x");
        assert!(hook.wants(EventKind::UserCreated, RoomId::new()));
        assert!(!hook.wants(EventKind::UserDeleted, RoomId::new()));
    }
}
