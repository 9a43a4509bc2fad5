//! Persistence of webhooks and their deliveries: the outbox. Recorded events are turned into
//! deliveries (`dispatch_events`), due deliveries are leased to one node at a time
//! (`claim_deliveries`), and each attempt's outcome is recorded (`record_attempt`).

use async_trait::async_trait;

use super::sealing::{SealError, Sealer};
use super::{Listed, Page, StoreError, StoreResult};
use crate::domain::webhook::{Delivery, DeliveryStatus, Webhook};
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

    /// Turns up to `limit` recorded events into deliveries to the webhooks that want them,
    /// in one transaction (on PostgreSQL, nodes take different events). Returns how many
    /// events were handled.
    async fn dispatch_events(&self, limit: i64) -> StoreResult<usize>;
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
    /// The earliest time a pending delivery is due, if any.
    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>>;
    /// Forgets dispatched events older than `before`.
    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64>;

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

/// `reseal_webhook_secrets` for either backend: written once, generic over the driver (its
/// few queries need few bounds), rather than in the `impl_webhook_store!` macro.
pub(super) async fn reseal_secrets<DB>(
    pool: &sqlx::Pool<DB>,
    sealer: &Sealer,
    which: Reseal,
    after: &str,
    limit: i64,
) -> StoreResult<ResealBatch>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    // The prefix with `LIKE`'s wildcards escaped (`ESCAPE '\'`).
    let prefix = |text: &str| {
        let mut pattern = String::new();
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern + "%"
    };
    let (operator, pattern) = match which {
        Reseal::Plaintext => ("LIKE", prefix(PLAINTEXT_PREFIX)),
        Reseal::NotCurrent => ("NOT LIKE", prefix(&sealer.current_prefix())),
    };
    let sql = format!(
        "SELECT id, secret FROM webhooks WHERE id > $1 AND secret {operator} $2 ESCAPE '\\' \
         ORDER BY id LIMIT $3"
    );
    let rows: Vec<(String, String)> = sqlx::query_as(&sql)
        .bind(after.to_owned())
        .bind(pattern)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    let mut batch = ResealBatch {
        scanned: rows.len(),
        last_id: rows.last().map(|(id, _)| id.clone()),
        ..Default::default()
    };
    let mut tx = pool.begin().await?;
    for (id, stored) in rows {
        let secret = match open_secret(sealer, &id, &stored) {
            Ok(secret) => secret,
            Err(error) => {
                batch.unreadable.push((id, error));
                continue;
            }
        };
        let sealed = seal_secret(sealer, &id, &secret)?;
        // Only if unchanged since it was read: a rotation through the API wins.
        let updated: Option<(String,)> = sqlx::query_as(
            "UPDATE webhooks SET secret = $1 WHERE id = $2 AND secret = $3 RETURNING id",
        )
        .bind(sealed)
        .bind(id)
        .bind(stored)
        .fetch_optional(&mut *tx)
        .await?;
        batch.resealed += u64::from(updated.is_some());
    }
    tx.commit().await?;
    Ok(batch)
}

pub(super) fn parse_events(text: &str) -> StoreResult<Vec<EventKind>> {
    let names: Vec<String> = serde_json::from_str(text)
        .map_err(|_| StoreError::Corrupt(format!("webhook events {text}")))?;
    names
        .iter()
        .map(|n| EventKind::parse(n).ok_or_else(|| StoreError::Corrupt(format!("event {n}"))))
        .collect()
}

pub(super) fn events_text(events: &[EventKind]) -> String {
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    serde_json::to_string(&names).expect("names serialize")
}

pub(super) fn status(text: &str) -> StoreResult<DeliveryStatus> {
    DeliveryStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("delivery status {text}")))
}

/// The deliveries an event makes: one per webhook of the account that wants it.
pub(super) fn deliveries_for(
    event: &EventRow,
    webhooks: &[Webhook],
) -> StoreResult<Vec<(String, String)>> {
    let Some(kind) = EventKind::parse(&event.kind) else {
        return Ok(Vec::new());
    };
    let room: RoomId = event
        .room_id
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("event room {}", event.room_id)))?;
    let payload: crate::domain::event::EventPayload = serde_json::from_str(&event.payload)
        .map_err(|_| StoreError::Corrupt(format!("event payload {}", event.id)))?;
    let body = crate::domain::webhook::delivery_body(
        &event.id,
        &event.kind,
        Timestamp::from_millis(event.created_at),
        &payload,
    );
    Ok(webhooks
        .iter()
        .filter(|w| w.wants(kind, room))
        .map(|w| (w.id.clone(), body.clone()))
        .collect())
}

/// A recorded event, as the dispatcher reads it.
pub(super) struct EventRow {
    pub seq: i64,
    pub id: String,
    pub account_id: String,
    pub room_id: String,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
}

pub(super) const WEBHOOK_COLUMNS: &str =
    "id, account_id, url, events, room_id, enabled, created_at, updated_at";
pub(super) const DELIVERY_COLUMNS: &str = "id, webhook_id, event, payload, status, attempts, \
     last_attempt_at, next_retry_at, status_code, created_at";

/// Implements `WebhookStore` for `$store`; the selections that several nodes race for skip the
/// rows others hold (`RowLock::UpdateSkipLocked`).
macro_rules! impl_webhook_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::webhooks::WebhookStore for $store {
            async fn create_webhook(
                &self,
                webhook: &$crate::store::webhooks::NewWebhook,
                max_webhooks: i64,
            ) -> $crate::store::StoreResult<$crate::domain::webhook::Webhook> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
                    .bind(webhook.account_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                let count: i64 = sqlx::Row::try_get(
                    &sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE account_id = $1")
                        .bind(webhook.account_id.to_string())
                        .fetch_one(&mut *tx)
                        .await?,
                    "n",
                )?;
                $crate::domain::limits::Limit::Webhooks(max_webhooks).check_one_more(count)?;
                let sql = format!(
                    "INSERT INTO webhooks (id, account_id, url, secret, events, room_id, enabled, \
                       created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                     RETURNING {}",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(&webhook.id)
                    .bind(webhook.account_id.to_string())
                    .bind(&webhook.url)
                    .bind($crate::store::webhooks::seal_secret(&self.sealer, &webhook.id, &webhook.secret)?)
                    .bind($crate::store::webhooks::events_text(&webhook.events))
                    .bind(webhook.room_id.map(|r| r.to_string()))
                    .bind(true)
                    .bind(webhook.created_at.as_millis())
                    .fetch_one(&mut *tx)
                    .await?;
                let created = webhook_rows::webhook(&row)?;
                tx.commit().await?;
                Ok(created)
            }

            async fn list_webhooks(
                &self,
                account_id: $crate::domain::AccountId,
                search: Option<&str>,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<$crate::store::Listed<$crate::domain::webhook::Webhook>> {
                let pattern = search
                    .filter(|s| !s.is_empty())
                    .map($crate::store::like_pattern::<$db>)
                    .unwrap_or_else(|| "%".to_owned());
                let total: i64 = sqlx::Row::try_get(
                    &sqlx::query(
                        "SELECT COUNT(*) AS n FROM webhooks \
                         WHERE account_id = $1 AND LOWER(url) LIKE $2 ESCAPE '\\'",
                    )
                    .bind(account_id.to_string())
                    .bind(&pattern)
                    .fetch_one(&self.pool)
                    .await?,
                    "n",
                )?;
                let sql = format!(
                    "SELECT {} FROM webhooks WHERE account_id = $1 AND LOWER(url) LIKE $2 ESCAPE '\\' \
                     ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                let rows = sqlx::query(&sql)
                    .bind(account_id.to_string())
                    .bind(&pattern)
                    .bind(page.limit)
                    .bind(page.offset)
                    .fetch_all(&self.pool)
                    .await?;
                let items = rows
                    .iter()
                    .map(|r| webhook_rows::webhook(r))
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                Ok($crate::store::Listed { items, total })
            }

            async fn get_webhook(
                &self,
                account_id: $crate::domain::AccountId,
                id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::domain::webhook::Webhook>> {
                let sql = format!(
                    "SELECT {} FROM webhooks WHERE id = $1 AND account_id = $2",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(id)
                    .bind(account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| webhook_rows::webhook(&r)).transpose()
            }

            async fn update_webhook(
                &self,
                account_id: $crate::domain::AccountId,
                id: &str,
                changes: &$crate::store::webhooks::WebhookChanges,
            ) -> $crate::store::StoreResult<$crate::domain::webhook::Webhook> {
                let mut tx = self.pool.begin().await?;
                let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE webhooks SET updated_at = ");
                update.push_bind($crate::domain::Timestamp::now().as_millis());
                if let Some(url) = &changes.url {
                    update.push(", url = ").push_bind(url.clone());
                }
                if let Some(events) = &changes.events {
                    update.push(", events = ").push_bind($crate::store::webhooks::events_text(events));
                }
                if let Some(room_id) = &changes.room_id {
                    update.push(", room_id = ").push_bind(room_id.map(|r| r.to_string()));
                }
                if let Some(enabled) = changes.enabled {
                    update.push(", enabled = ").push_bind(enabled);
                    if enabled {
                        update.push(", consecutive_failures = 0, disabled_reason = NULL");
                    }
                }
                update
                    .push(" WHERE id = ")
                    .push_bind(id.to_owned())
                    .push(" AND account_id = ")
                    .push_bind(account_id.to_string())
                    .push(format!(" RETURNING {}", $crate::store::webhooks::WEBHOOK_COLUMNS));
                let row = update
                    .build()
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Webhook))?;
                let webhook = webhook_rows::webhook(&row)?;
                if changes.enabled == Some(false) {
                    webhook_rows::fail_pending(&mut tx, id).await?;
                }
                tx.commit().await?;
                Ok(webhook)
            }

            async fn set_webhook_secret(
                &self,
                account_id: $crate::domain::AccountId,
                id: &str,
                secret: &str,
            ) -> $crate::store::StoreResult<$crate::domain::webhook::Webhook> {
                let sql = format!(
                    "UPDATE webhooks SET secret = $1, updated_at = $2 \
                     WHERE id = $3 AND account_id = $4 RETURNING {}",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind($crate::store::webhooks::seal_secret(&self.sealer, id, secret)?)
                    .bind($crate::domain::Timestamp::now().as_millis())
                    .bind(id)
                    .bind(account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Webhook))?;
                webhook_rows::webhook(&row)
            }

            async fn delete_webhook(
                &self,
                account_id: $crate::domain::AccountId,
                id: &str,
            ) -> $crate::store::StoreResult<()> {
                let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id.to_string())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Webhook));
                }
                Ok(())
            }

            async fn list_deliveries(
                &self,
                account_id: $crate::domain::AccountId,
                webhook_id: &str,
                page: $crate::store::Page,
                max_bytes: i64,
            ) -> $crate::store::StoreResult<$crate::store::Listed<$crate::domain::webhook::Delivery>> {
                let owned: i64 = sqlx::Row::try_get(
                    &sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE id = $1 AND account_id = $2")
                        .bind(webhook_id)
                        .bind(account_id.to_string())
                        .fetch_one(&self.pool)
                        .await?,
                    "n",
                )?;
                if owned == 0 {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Webhook));
                }
                let total: i64 = sqlx::Row::try_get(
                    &sqlx::query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = $1")
                        .bind(webhook_id)
                        .fetch_one(&self.pool)
                        .await?,
                    "n",
                )?;
                use $crate::store::page_bytes;
                const ORDER: &str = "created_at DESC, id DESC";
                // A delivery weighs its payload (a session's users can make it large).
                let sql = format!(
                    "{}SELECT {} FROM webhook_deliveries WHERE webhook_id = $1 \
                     ORDER BY {ORDER} LIMIT $2 OFFSET $3{}$4{}",
                    page_bytes::start("octet_length(payload) + 400", ORDER),
                    $crate::store::webhooks::DELIVERY_COLUMNS,
                    page_bytes::END,
                    page_bytes::end_order(ORDER),
                );
                let mut rows = sqlx::query(&sql)
                    .bind(webhook_id)
                    .bind(page.limit)
                    .bind(page.offset)
                    .bind(max_bytes)
                    .fetch_all(&self.pool)
                    .await?;
                let totals = rows
                    .iter()
                    .map(|row| sqlx::Row::try_get::<i64, _>(row, "page_bytes"))
                    .collect::<Result<Vec<_>, _>>()?;
                rows.truncate(page_bytes::keep_within(totals, max_bytes));
                let items = rows
                    .iter()
                    .map(|r| webhook_rows::delivery(r))
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                Ok($crate::store::Listed { items, total })
            }

            async fn queue_delivery(
                &self,
                account_id: $crate::domain::AccountId,
                webhook_id: &str,
                event: &str,
                event_id: &str,
                body: &str,
            ) -> $crate::store::StoreResult<$crate::domain::webhook::Delivery> {
                let now = $crate::domain::Timestamp::now();
                let mut tx = self.pool.begin().await?;
                let owned = sqlx::query("UPDATE webhooks SET id = id WHERE id = $1 AND account_id = $2")
                    .bind(webhook_id)
                    .bind(account_id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if owned == 0 {
                    return Err($crate::store::StoreError::NotFound($crate::store::Entity::Webhook));
                }
                let delivery = webhook_rows::insert_delivery(&mut tx, webhook_id, event, event_id, body, now)
                    .await?
                    .ok_or_else(|| $crate::store::StoreError::Corrupt("duplicate test delivery".into()))?;
                tx.commit().await?;
                Ok(delivery)
            }

            async fn dispatch_events(&self, limit: i64) -> $crate::store::StoreResult<usize> {
                let now = $crate::domain::Timestamp::now();
                let mut tx = self.pool.begin().await?;
                // Claiming the batch is the transaction's first statement (a write).
                let sql = format!(
                    "UPDATE events SET dispatched_at = $1 WHERE seq IN ( \
                       SELECT seq FROM events WHERE dispatched_at IS NULL \
                       ORDER BY seq LIMIT $2{}) \
                     RETURNING seq, id, account_id, room_id, kind, payload, created_at",
                    <$db as $crate::store::dialect::Dialect>::row_lock(
                        $crate::store::dialect::RowLock::UpdateSkipLocked
                    )
                );
                let rows = sqlx::query(&sql)
                    .bind(now.as_millis())
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut events = rows
                    .iter()
                    .map(|r| webhook_rows::event(r))
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                events.sort_by_key(|e| e.seq);
                let mut webhooks: std::collections::HashMap<String, Vec<$crate::domain::webhook::Webhook>> =
                    std::collections::HashMap::new();
                for event in &events {
                    if !webhooks.contains_key(&event.account_id) {
                        let sql = format!(
                            "SELECT {} FROM webhooks WHERE account_id = $1 AND enabled = $2",
                            $crate::store::webhooks::WEBHOOK_COLUMNS
                        );
                        let rows = sqlx::query(&sql)
                            .bind(&event.account_id)
                            .bind(true)
                            .fetch_all(&mut *tx)
                            .await?;
                        let hooks = rows
                            .iter()
                            .map(|r| webhook_rows::webhook(r))
                            .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                        webhooks.insert(event.account_id.clone(), hooks);
                    }
                    let hooks = &webhooks[&event.account_id];
                    for (webhook_id, body) in $crate::store::webhooks::deliveries_for(event, hooks)? {
                        webhook_rows::insert_delivery(&mut tx, &webhook_id, &event.kind, &event.id, &body, now)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(events.len())
            }

            async fn claim_deliveries(
                &self,
                node: &$crate::domain::NodeId,
                now: $crate::domain::Timestamp,
                lease_until: $crate::domain::Timestamp,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::webhooks::DueDelivery>> {
                let sql = format!(
                    "UPDATE webhook_deliveries SET locked_until = $1, locked_by = $2 WHERE id IN ( \
                       SELECT d.id FROM webhook_deliveries d \
                       WHERE d.status = 'pending' AND d.next_retry_at <= $3 \
                         AND (d.locked_until IS NULL OR d.locked_until < $3) \
                         AND EXISTS (SELECT 1 FROM webhooks w \
                                     WHERE w.id = d.webhook_id AND w.enabled = $4) \
                       ORDER BY d.next_retry_at LIMIT $5{}) \
                     RETURNING {}",
                    <$db as $crate::store::dialect::Dialect>::row_lock(
                        $crate::store::dialect::RowLock::UpdateSkipLocked
                    ),
                    $crate::store::webhooks::DELIVERY_COLUMNS
                );
                let rows = sqlx::query(&sql)
                    .bind(lease_until.as_millis())
                    .bind(node.as_str())
                    .bind(now.as_millis())
                    .bind(true)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                let deliveries = rows
                    .iter()
                    .map(|r| webhook_rows::delivery(r))
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                if deliveries.is_empty() {
                    return Ok(Vec::new());
                }
                // Where to send them, in one query.
                let mut targets = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, url, secret FROM webhooks WHERE id IN (",
                );
                let mut ids = targets.separated(", ");
                for delivery in &deliveries {
                    ids.push_bind(delivery.webhook_id.clone());
                }
                targets.push(")");
                let mut by_id = std::collections::HashMap::new();
                for row in targets.build().fetch_all(&self.pool).await? {
                    let id: String = sqlx::Row::try_get(&row, "id")?;
                    let url: String = sqlx::Row::try_get(&row, "url")?;
                    let secret: String = sqlx::Row::try_get(&row, "secret")?;
                    by_id.insert(id, (url, secret));
                }
                let mut due: Vec<_> = deliveries
                    .into_iter()
                    .filter_map(|delivery| {
                        let (url, stored) = by_id.get(&delivery.webhook_id)?;
                        let secret = $crate::store::webhooks::open_secret(
                            &self.sealer,
                            &delivery.webhook_id,
                            stored,
                        );
                        Some($crate::store::webhooks::DueDelivery { delivery, url: url.clone(), secret })
                    })
                    .collect();
                due.sort_by_key(|d| d.delivery.next_retry_at);
                Ok(due)
            }

            async fn record_attempt(
                &self,
                node: &$crate::domain::NodeId,
                attempt: &$crate::store::webhooks::Attempt,
                disable_after: i64,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::webhooks::AttemptOutcome;
                let (status, next) = match attempt.outcome {
                    AttemptOutcome::Delivered => ("success", None),
                    AttemptOutcome::RetryAt(at) => ("pending", Some(at.as_millis())),
                    AttemptOutcome::GaveUp => ("failed", None),
                };
                let mut tx = self.pool.begin().await?;
                // The webhook's row first, then its deliveries', like every writer that takes
                // both (disabling fails pending deliveries): nodes never deadlock on them.
                sqlx::query("UPDATE webhooks SET id = id WHERE id = $1")
                    .bind(&attempt.webhook_id)
                    .execute(&mut *tx)
                    .await?;
                let recorded = sqlx::query(
                    "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                       last_attempt_at = $2, next_retry_at = $3, status_code = $4, last_error = $5, \
                       locked_until = NULL, locked_by = NULL \
                     WHERE id = $6 AND locked_by = $7",
                )
                .bind(status)
                .bind(attempt.at.as_millis())
                .bind(next)
                .bind(attempt.status_code)
                .bind(attempt.error.as_deref())
                .bind(&attempt.delivery_id)
                .bind(node.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if recorded == 0 {
                    // The lease ran out and another node took the delivery over.
                    return Ok(false);
                }
                let delivered = attempt.outcome == AttemptOutcome::Delivered;
                let row = sqlx::query(
                    "UPDATE webhooks SET consecutive_failures = CASE WHEN $1 THEN 0 \
                       ELSE consecutive_failures + 1 END \
                     WHERE id = $2 RETURNING consecutive_failures, enabled",
                )
                .bind(delivered)
                .bind(&attempt.webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
                let mut disabled = false;
                if let Some(row) = row {
                    let failures: i64 = sqlx::Row::try_get(&row, "consecutive_failures")?;
                    let enabled: bool = sqlx::Row::try_get(&row, "enabled")?;
                    if enabled && failures >= disable_after {
                        sqlx::query(
                            "UPDATE webhooks SET enabled = $1, disabled_reason = $2, updated_at = $3 \
                             WHERE id = $4",
                        )
                        .bind(false)
                        .bind(format!("{failures} failed attempts in a row"))
                        .bind(attempt.at.as_millis())
                        .bind(&attempt.webhook_id)
                        .execute(&mut *tx)
                        .await?;
                        webhook_rows::fail_pending(&mut tx, &attempt.webhook_id).await?;
                        disabled = true;
                    }
                }
                tx.commit().await?;
                Ok(disabled)
            }

            async fn next_delivery_due(
                &self,
            ) -> $crate::store::StoreResult<Option<$crate::domain::Timestamp>> {
                let row = sqlx::query(
                    "SELECT MIN(CASE WHEN locked_until > next_retry_at THEN locked_until \
                       ELSE next_retry_at END) AS due \
                     FROM webhook_deliveries WHERE status = 'pending'",
                )
                .fetch_one(&self.pool)
                .await?;
                let due: Option<i64> = sqlx::Row::try_get(&row, "due")?;
                Ok(due.map($crate::domain::Timestamp::from_millis))
            }

            async fn purge_events(
                &self,
                before: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM events WHERE dispatched_at IS NOT NULL AND created_at < $1",
                )
                .bind(before.as_millis())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn reseal_webhook_secrets(
                &self,
                which: $crate::store::webhooks::Reseal,
                after: &str,
                limit: i64,
            ) -> $crate::store::StoreResult<$crate::store::webhooks::ResealBatch> {
                $crate::store::webhooks::reseal_secrets(&self.pool, &self.sealer, which, after, limit)
                    .await
            }
        }

        mod webhook_rows {
            use sqlx::Row as _;

            type DbRow = <$db as sqlx::Database>::Row;

            fn corrupt(what: &str) -> $crate::store::StoreError {
                $crate::store::StoreError::Corrupt(what.to_owned())
            }

            pub fn webhook(row: &DbRow) -> $crate::store::StoreResult<$crate::domain::webhook::Webhook> {
                let account: String = row.try_get("account_id")?;
                let room: Option<String> = row.try_get("room_id")?;
                let events: String = row.try_get("events")?;
                Ok($crate::domain::webhook::Webhook {
                    id: row.try_get("id")?,
                    account_id: account.parse().map_err(|_| corrupt("webhook account"))?,
                    url: row.try_get("url")?,
                    events: $crate::store::webhooks::parse_events(&events)?,
                    room_id: room
                        .map(|r| r.parse().map_err(|_| corrupt("webhook room")))
                        .transpose()?,
                    enabled: row.try_get("enabled")?,
                    created_at: $crate::domain::Timestamp::from_millis(row.try_get("created_at")?),
                    updated_at: $crate::domain::Timestamp::from_millis(row.try_get("updated_at")?),
                })
            }

            pub fn delivery(row: &DbRow) -> $crate::store::StoreResult<$crate::domain::webhook::Delivery> {
                let status: String = row.try_get("status")?;
                let millis = |column: &str| -> Result<Option<$crate::domain::Timestamp>, sqlx::Error> {
                    Ok(row
                        .try_get::<Option<i64>, _>(column)?
                        .map($crate::domain::Timestamp::from_millis))
                };
                Ok($crate::domain::webhook::Delivery {
                    id: row.try_get("id")?,
                    webhook_id: row.try_get("webhook_id")?,
                    event: row.try_get("event")?,
                    payload: row.try_get("payload")?,
                    status: $crate::store::webhooks::status(&status)?,
                    attempts: row.try_get("attempts")?,
                    last_attempt_at: millis("last_attempt_at")?,
                    next_retry_at: millis("next_retry_at")?,
                    status_code: row.try_get("status_code")?,
                    created_at: $crate::domain::Timestamp::from_millis(row.try_get("created_at")?),
                })
            }

            pub fn event(row: &DbRow) -> $crate::store::StoreResult<$crate::store::webhooks::EventRow> {
                Ok($crate::store::webhooks::EventRow {
                    seq: row.try_get("seq")?,
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    room_id: row.try_get("room_id")?,
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            /// Inserts a pending delivery due now; `None` if that event already has one for
            /// that webhook (a dispatch that ran twice).
            pub async fn insert_delivery(
                conn: &mut <$db as sqlx::Database>::Connection,
                webhook_id: &str,
                event: &str,
                event_id: &str,
                body: &str,
                now: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<Option<$crate::domain::webhook::Delivery>> {
                let sql = format!(
                    "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, payload, status, \
                       attempts, next_retry_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
                     ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING {}",
                    $crate::store::webhooks::DELIVERY_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind($crate::domain::webhook::Delivery::new_id())
                    .bind(webhook_id)
                    .bind(event_id)
                    .bind(event)
                    .bind(body)
                    .bind(now.as_millis())
                    .fetch_optional(conn)
                    .await?;
                row.map(|r| delivery(&r)).transpose()
            }

            /// A disabled webhook receives nothing: its pending deliveries fail.
            pub async fn fail_pending(
                conn: &mut <$db as sqlx::Database>::Connection,
                webhook_id: &str,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'failed', next_retry_at = NULL, \
                       locked_until = NULL, locked_by = NULL, last_error = 'webhook disabled' \
                     WHERE webhook_id = $1 AND status = 'pending'",
                )
                .bind(webhook_id)
                .execute(conn)
                .await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_webhook_store;
