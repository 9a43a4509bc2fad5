//! `WebhookStore` on either database: registrations, their delivery logs, and the outbox's
//! entry points (`outbox.rs`).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::rows::{DeliveryRow, WebhookRow};
use super::{
    seal_secret, Attempt, DueDelivery, NewWebhook, Reseal, ResealBatch, WebhookChanges,
    WebhookStore, DELIVERY_COLUMNS, WEBHOOK_COLUMNS,
};
use crate::domain::limits::Limit;
use crate::domain::webhook::{Delivery, Webhook};
use crate::domain::{AccountId, NodeId, Timestamp};
use crate::store::dialect::{Column, Dialect, RowsAffected};
use crate::store::events::event_names_text;
use crate::store::page::{fetch_fitted, page_bytes};
use crate::store::query::Sql;
use crate::store::sql::SqlStore;
use crate::store::{Entity, Listed, Page, PageSize, StoreError, StoreResult};

/// What a delivery weighs in a page of the log (see `page_bytes`): its payload (a session's
/// users can make it large), and room for the rest of its JSON.
const DELIVERY_BYTES: &str = "octet_length(payload) + 400";

#[async_trait]
impl<DB> WebhookStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn create_webhook(
        &self,
        webhook: &NewWebhook,
        max_webhooks: i64,
    ) -> StoreResult<Webhook> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(webhook.account_id.to_string())
            .execute(&mut *tx)
            .await?;
        let webhooks: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE account_id = $1")
                .bind(webhook.account_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        Limit::Webhooks(max_webhooks).check_one_more(webhooks)?;
        let sql = format!(
            "INSERT INTO webhooks (id, account_id, url, secret, events, room_id, enabled, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let row: WebhookRow = sqlx::query_as(&sql)
            .bind(&webhook.id)
            .bind(webhook.account_id.to_string())
            .bind(&webhook.url)
            .bind(seal_secret(&self.sealer, &webhook.id, &webhook.secret)?)
            .bind(event_names_text(&webhook.events))
            .bind(webhook.room_id.map(|room| room.to_string()))
            .bind(true)
            .bind(webhook.created_at.as_millis())
            .fetch_one(&mut *tx)
            .await?;
        let created = row.try_into()?;
        tx.commit().await?;
        Ok(created)
    }

    async fn list_webhooks(
        &self,
        account_id: AccountId,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<Listed<Webhook>> {
        let (rows, total) = self
            .list_owned::<WebhookRow>(
                ("webhooks", WEBHOOK_COLUMNS, "url"),
                account_id,
                search,
                page,
            )
            .await?;
        let items = rows
            .into_iter()
            .map(Webhook::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Listed { items, total })
    }

    async fn get_webhook(&self, account_id: AccountId, id: &str) -> StoreResult<Option<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2");
        let row: Option<WebhookRow> = sqlx::query_as(&sql)
            .bind(id.to_owned())
            .bind(account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(Webhook::try_from).transpose()
    }

    async fn update_webhook(
        &self,
        account_id: AccountId,
        id: &str,
        changes: &WebhookChanges,
    ) -> StoreResult<Webhook> {
        let mut update = Sql::new("UPDATE webhooks SET updated_at = ");
        update.bind(Timestamp::now().as_millis());
        if let Some(url) = &changes.url {
            update.push(", url = ").bind(url.clone());
        }
        if let Some(events) = &changes.events {
            update.push(", events = ").bind(event_names_text(events));
        }
        if let Some(room_id) = &changes.room_id {
            update
                .push(", room_id = ")
                .bind(room_id.map(|room| room.to_string()));
        }
        if let Some(enabled) = changes.enabled {
            update.push(", enabled = ").bind(enabled);
            if enabled {
                update.push(", consecutive_failures = 0, disabled_reason = NULL");
            }
        }
        update
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND account_id = ")
            .bind(account_id.to_string())
            .push(&format!(" RETURNING {WEBHOOK_COLUMNS}"));
        let mut tx = self.pool.begin().await?;
        let row: WebhookRow = update
            .query_as::<DB, _>()
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(Entity::Webhook))?;
        let webhook = row.try_into()?;
        if changes.enabled == Some(false) {
            Self::fail_pending(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(webhook)
    }

    async fn set_webhook_secret(
        &self,
        account_id: AccountId,
        id: &str,
        secret: &str,
    ) -> StoreResult<Webhook> {
        let sql = format!(
            "UPDATE webhooks SET secret = $1, updated_at = $2 \
             WHERE id = $3 AND account_id = $4 RETURNING {WEBHOOK_COLUMNS}"
        );
        let row: WebhookRow = sqlx::query_as(&sql)
            .bind(seal_secret(&self.sealer, id, secret)?)
            .bind(Timestamp::now().as_millis())
            .bind(id.to_owned())
            .bind(account_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(Entity::Webhook))?;
        row.try_into()
    }

    async fn delete_webhook(&self, account_id: AccountId, id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND account_id = $2")
            .bind(id.to_owned())
            .bind(account_id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(Entity::Webhook));
        }
        Ok(())
    }

    async fn list_deliveries(
        &self,
        account_id: AccountId,
        webhook_id: &str,
        page: Page,
        max_bytes: i64,
    ) -> StoreResult<Listed<Delivery>> {
        let mut conn = self.reads.acquire().await?;
        let owned: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE id = $1 AND account_id = $2")
                .bind(webhook_id.to_owned())
                .bind(account_id.to_string())
                .fetch_one(&mut *conn)
                .await?;
        if owned == 0 {
            return Err(StoreError::NotFound(Entity::Webhook));
        }
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1")
                .bind(webhook_id.to_owned())
                .fetch_one(&mut *conn)
                .await?;
        const ORDER: &str = "created_at DESC, id DESC";
        let mut sql = Sql::new(page_bytes::start(DELIVERY_BYTES, ORDER));
        sql.push(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = "
        ))
        .bind(webhook_id)
        .push(&format!(" ORDER BY {ORDER} LIMIT "))
        .bind(page.limit)
        .push(" OFFSET ")
        .bind(page.offset)
        .push(page_bytes::END)
        .bind(max_bytes)
        .push(&page_bytes::end_order(ORDER));
        let size = PageSize {
            items: page.limit,
            bytes: max_bytes,
        };
        let fitted = fetch_fitted::<DB, DeliveryRow>(&mut conn, &sql, size).await?;
        let items = fitted
            .rows
            .into_iter()
            .map(Delivery::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Listed { items, total })
    }

    async fn queue_delivery(
        &self,
        account_id: AccountId,
        webhook_id: &str,
        event: &str,
        event_id: &str,
        body: &str,
    ) -> StoreResult<Delivery> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let owned = sqlx::query("UPDATE webhooks SET id = id WHERE id = $1 AND account_id = $2")
            .bind(webhook_id.to_owned())
            .bind(account_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if owned == 0 {
            return Err(StoreError::NotFound(Entity::Webhook));
        }
        let delivery = Self::insert_delivery(&mut tx, webhook_id, event, event_id, body, now)
            .await?
            .ok_or_else(|| StoreError::Corrupt("duplicate test delivery".into()))?;
        tx.commit().await?;
        Ok(delivery)
    }

    async fn retry_delivery(
        &self,
        account_id: AccountId,
        webhook_id: &str,
        delivery_id: &str,
    ) -> StoreResult<Delivery> {
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'pending', next_retry_at = $1, \
             locked_until = NULL, locked_by = NULL \
             WHERE id = $2 AND webhook_id = $3 AND status = 'failed' \
             AND webhook_id IN (SELECT id FROM webhooks WHERE account_id = $4) \
             RETURNING {DELIVERY_COLUMNS}"
        );
        let row: DeliveryRow = sqlx::query_as(&sql)
            .bind(Timestamp::now().as_millis())
            .bind(delivery_id.to_owned())
            .bind(webhook_id.to_owned())
            .bind(account_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(Entity::Webhook))?;
        row.try_into()
    }

    async fn dispatch_events(&self, limit: i64) -> StoreResult<usize> {
        self.dispatch_batch(limit).await
    }

    async fn has_undispatched_events(&self) -> StoreResult<bool> {
        let waiting: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM events WHERE dispatched_at IS NULL LIMIT 1")
                .fetch_optional(&self.reads)
                .await?;
        Ok(waiting.is_some())
    }

    async fn claim_deliveries(
        &self,
        node: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        self.lease_due(node, now, lease_until, limit).await
    }

    async fn record_attempt(
        &self,
        node: &NodeId,
        attempt: &Attempt,
        disable_after: i64,
    ) -> StoreResult<bool> {
        self.record_outcome(node, attempt, disable_after).await
    }

    async fn release_leases(&self, node: &NodeId) -> StoreResult<u64> {
        let released: Vec<String> = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL \
             WHERE locked_by = $1 RETURNING id",
        )
        .bind(node.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(released.len() as u64)
    }

    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN locked_until > next_retry_at THEN locked_until \
               ELSE next_retry_at END) \
             FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.reads)
        .await?;
        Ok(due.map(Timestamp::from_millis))
    }

    async fn reseal_webhook_secrets(
        &self,
        which: Reseal,
        after: &str,
        limit: i64,
    ) -> StoreResult<ResealBatch> {
        self.reseal_batch(which, after, limit).await
    }
}
