//! Persistence of webhooks and their deliveries: the outbox. Recorded events are turned into
//! deliveries (`dispatch_events`), due deliveries are leased to one node at a time
//! (`claim_deliveries`), and each attempt's outcome is recorded (`record_attempt`).

mod outbox;
mod rows;
mod sql;

use async_trait::async_trait;

use super::sealing::{SealError, Sealer};
use super::{Listed, Page, StoreResult};
use crate::domain::webhook::{Delivery, Webhook};
use crate::domain::{AccountId, EventKind, NodeId, RoomId, Timestamp};

/// Rows re-sealed per transaction: short write locks (SQLite has one writer) and bounded
/// memory, however many webhooks there are.
const RESEAL_BATCH: i64 = 500;
/// Every secret written before encryption at rest begins so, and no sealed value does: such a
/// value is still read as the secret (written by an older node during a rolling upgrade, say)
/// until it is sealed at start-up or by `collabkit secrets rotate`.
const PLAINTEXT_PREFIX: &str = "whsec_";

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: String,
    pub account_id: AccountId,
    pub url: String,
    /// In plaintext here; the store keeps it sealed.
    pub secret: String,
    pub events: Vec<EventKind>,
    pub room_id: Option<RoomId>,
    pub created_at: Timestamp,
}

/// Fields to change; `None` leaves a field, `room_id: Some(None)` means every room.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub events: Option<Vec<EventKind>>,
    pub room_id: Option<Option<RoomId>>,
    pub enabled: Option<bool>,
}

/// A delivery leased to this node, with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub url: String,
    /// The signing secret, opened; an error when this node cannot open it (a key it lacks):
    /// the delivery must then fail rather than be signed with anything else.
    pub secret: Result<String, SealError>,
}

/// Which stored secrets `reseal_webhook_secrets` seals again with the current key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Only those still in plaintext (written before encryption at rest): done at start-up.
    Plaintext,
    /// Every one not sealed with the current key: a key rotation.
    NotCurrent,
}

/// What one batch of `reseal_webhook_secrets` did.
#[derive(Debug, Default)]
pub struct ResealBatch {
    /// Rows looked at; fewer than the limit means there are no more.
    pub scanned: usize,
    /// The last row looked at: the next batch starts after it.
    pub last_id: Option<String>,
    pub resealed: u64,
    /// Webhooks whose secret this node cannot open, and why.
    pub unreadable: Vec<(String, SealError)>,
}

/// What `reseal_all` did over every batch.
#[derive(Debug, Default)]
pub struct Resealed {
    pub resealed: u64,
    pub unreadable: Vec<(String, SealError)>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again at this time.
    RetryAt(Timestamp),
    /// Failed, and no attempt is left.
    GaveUp,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: String,
    pub webhook_id: String,
    pub at: Timestamp,
    pub status_code: Option<i64>,
    /// Why it failed (a status, a timeout, a refused address), for the log.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// `Invalid` (field `url`) when the account already has `max_webhooks`.
    async fn create_webhook(&self, webhook: &NewWebhook, max_webhooks: i64)
        -> StoreResult<Webhook>;
    /// Newest first; `search` matches the URL.
    async fn list_webhooks(
        &self,
        account_id: AccountId,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<Listed<Webhook>>;
    async fn get_webhook(&self, account_id: AccountId, id: &str) -> StoreResult<Option<Webhook>>;
    /// Disabling a webhook fails its pending deliveries: disabled webhooks receive nothing.
    async fn update_webhook(
        &self,
        account_id: AccountId,
        id: &str,
        changes: &WebhookChanges,
    ) -> StoreResult<Webhook>;
    async fn set_webhook_secret(
        &self,
        account_id: AccountId,
        id: &str,
        secret: &str,
    ) -> StoreResult<Webhook>;
    async fn delete_webhook(&self, account_id: AccountId, id: &str) -> StoreResult<()>;
    /// Newest first.
    /// A page of a webhook's deliveries, newest first, of at most `max_bytes` (see
    /// `page_bytes`).
    async fn list_deliveries(
        &self,
        account_id: AccountId,
        webhook_id: &str,
        page: Page,
        max_bytes: i64,
    ) -> StoreResult<Listed<Delivery>>;
    /// Queues a delivery of `body` (a test) to one webhook.
    async fn queue_delivery(
        &self,
        account_id: AccountId,
        webhook_id: &str,
        event: &str,
        event_id: &str,
        body: &str,
    ) -> StoreResult<Delivery>;

    /// Makes a failed delivery of the account's webhook due again at once ("retry now"); its
    /// attempts so far still count. `NotFound(Webhook)` unless it is a failed delivery of one
    /// of the account's webhooks.
    async fn retry_delivery(
        &self,
        account_id: AccountId,
        webhook_id: &str,
        delivery_id: &str,
    ) -> StoreResult<Delivery>;

    /// Turns up to `limit` recorded events into deliveries to the webhooks that want them,
    /// in one transaction (on PostgreSQL, nodes take different events). Returns how many
    /// events were handled.
    async fn dispatch_events(&self, limit: i64) -> StoreResult<usize>;
    /// Whether a recorded event waits for `dispatch_events`: a read, so that an idle node's
    /// timer costs no write.
    async fn has_undispatched_events(&self) -> StoreResult<bool>;
    /// Leases up to `limit` due deliveries of enabled webhooks to `node` until `lease_until`.
    async fn claim_deliveries(
        &self,
        node: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt of a delivery `node` holds. A failure counts against the webhook;
    /// at `disable_after` failures in a row it is disabled. Returns whether it was disabled now.
    async fn record_attempt(
        &self,
        node: &NodeId,
        attempt: &Attempt,
        disable_after: i64,
    ) -> StoreResult<bool>;
    /// Ends the leases `node` holds, so that its deliveries are due again at once: for a node
    /// starting under the name of its previous run, whose attempts died with that run.
    /// Returns how many there were.
    async fn release_leases(&self, node: &NodeId) -> StoreResult<u64>;
    /// The earliest time a pending delivery is due, if any.
    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>>;

    /// Seals again, with the current key, up to `limit` of the secrets `which` names, of the
    /// webhooks whose id sorts after `after`. A secret changed meanwhile (rotated through the
    /// API) is left as it is: it was sealed with the current key anyway.
    async fn reseal_webhook_secrets(
        &self,
        which: Reseal,
        after: &str,
        limit: i64,
    ) -> StoreResult<ResealBatch>;
}

/// Runs `reseal_webhook_secrets` over every webhook, in batches. Idempotent: a second run
/// finds nothing to do.
pub async fn reseal_all<S: WebhookStore + ?Sized>(
    store: &S,
    which: Reseal,
) -> StoreResult<Resealed> {
    let mut done = Resealed::default();
    let mut after = String::new();
    loop {
        let batch = store
            .reseal_webhook_secrets(which, &after, RESEAL_BATCH)
            .await?;
        done.resealed += batch.resealed;
        done.unreadable.extend(batch.unreadable);
        match batch.last_id {
            Some(last) if batch.scanned as i64 == RESEAL_BATCH => after = last,
            _ => return Ok(done),
        }
    }
}

/// What a webhook's sealed secret is bound to: its own row.
fn secret_context(webhook_id: &str) -> String {
    format!("webhooks.secret:{webhook_id}")
}

pub(super) fn seal_secret(sealer: &Sealer, webhook_id: &str, secret: &str) -> StoreResult<String> {
    Ok(sealer.seal(secret, &secret_context(webhook_id))?)
}

pub(super) fn open_secret(
    sealer: &Sealer,
    webhook_id: &str,
    stored: &str,
) -> Result<String, SealError> {
    if stored.starts_with(PLAINTEXT_PREFIX) {
        return Ok(stored.to_owned());
    }
    sealer.open(stored, &secret_context(webhook_id))
}

pub(super) const WEBHOOK_COLUMNS: &str =
    "id, account_id, url, events, room_id, enabled, created_at, updated_at";
pub(super) const DELIVERY_COLUMNS: &str = "id, webhook_id, event, payload, status, attempts, \
     last_attempt_at, next_retry_at, status_code, created_at";
