//! The rows of webhooks, deliveries and recorded events, and what is built from them.

use crate::domain::event::EventPayload;
use crate::domain::webhook::{delivery_body, Delivery, DeliveryStatus, Webhook};
use crate::domain::{EventKind, RoomId, Timestamp};
use crate::store::events::parse_event_names;
use crate::store::{StoreError, StoreResult};

/// A webhook registration as stored, without its secret (`WEBHOOK_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(super) struct WebhookRow {
    id: String,
    account_id: String,
    url: String,
    /// A JSON array of event names.
    events: String,
    room_id: Option<String>,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;

    fn try_from(row: WebhookRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("webhook {}: {what}", row.id));
        Ok(Webhook {
            account_id: row.account_id.parse().map_err(|_| corrupt("account"))?,
            room_id: row
                .room_id
                .map(|room| room.parse().map_err(|_| corrupt("room")))
                .transpose()?,
            url: row.url,
            events: parse_event_names(&row.events)?,
            enabled: row.enabled,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
            id: row.id,
        })
    }
}

/// A delivery as stored (`DELIVERY_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: String,
    webhook_id: String,
    event: String,
    payload: String,
    status: String,
    attempts: i64,
    last_attempt_at: Option<i64>,
    next_retry_at: Option<i64>,
    status_code: Option<i64>,
    created_at: i64,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> StoreResult<Self> {
        Ok(Delivery {
            status: DeliveryStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery status {}", row.status)))?,
            id: row.id,
            webhook_id: row.webhook_id,
            event: row.event,
            payload: row.payload,
            attempts: row.attempts,
            last_attempt_at: row.last_attempt_at.map(Timestamp::from_millis),
            next_retry_at: row.next_retry_at.map(Timestamp::from_millis),
            status_code: row.status_code,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// A recorded event, as the dispatcher reads it.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    pub seq: i64,
    pub id: String,
    pub account_id: String,
    pub room_id: String,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
}

impl EventRow {
    /// The event's kind and room; `None` for a kind this version does not know.
    pub fn kind_and_room(&self) -> StoreResult<Option<(EventKind, RoomId)>> {
        let Some(kind) = EventKind::parse(&self.kind) else {
            return Ok(None);
        };
        let room: RoomId = self
            .room_id
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("event room {}", self.room_id)))?;
        Ok(Some((kind, room)))
    }

    /// The body a webhook delivery carries (and a workflow gets as its `event`).
    pub fn body(&self) -> StoreResult<String> {
        let payload: EventPayload = serde_json::from_str(&self.payload)
            .map_err(|_| StoreError::Corrupt(format!("event payload {}", self.id)))?;
        Ok(delivery_body(
            &self.id,
            &self.kind,
            Timestamp::from_millis(self.created_at),
            &payload,
        ))
    }

    /// The deliveries the event makes, `(webhook id, body)`: one per webhook of its account
    /// that wants it.
    pub fn deliveries(&self, webhooks: &[Webhook]) -> StoreResult<Vec<(String, String)>> {
        let Some((kind, room)) = self.kind_and_room()? else {
            return Ok(Vec::new());
        };
        let wanted: Vec<&Webhook> = webhooks.iter().filter(|w| w.wants(kind, room)).collect();
        // Most events have no webhook waiting for them: their body is never built.
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.body()?;
        Ok(wanted
            .into_iter()
            .map(|webhook| (webhook.id.clone(), body.clone()))
            .collect())
    }
}
