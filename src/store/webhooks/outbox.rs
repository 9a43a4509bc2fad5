//! The outbox: recorded events turned into deliveries (and into workflow runs:
//! `store/workflows.rs`), due deliveries leased to one node at a time, attempts recorded,
//! secrets sealed again. Nodes racing for the same rows each take different ones
//! (`RowLock::UpdateSkipLocked`; SQLite has one writer anyway).

use std::collections::HashMap;

use sqlx::{ColumnIndex, Executor};

use super::rows::{DeliveryRow, EventRow, WebhookRow};
use super::{
    open_secret, seal_secret, Attempt, AttemptOutcome, DueDelivery, Reseal, ResealBatch,
    DELIVERY_COLUMNS, PLAINTEXT_PREFIX, WEBHOOK_COLUMNS,
};
use crate::domain::webhook::{Delivery, Webhook};
use crate::domain::workflow::Workflow;
use crate::domain::{NodeId, Timestamp};
use crate::store::dialect::{Column, Dialect, RowLock, RowsAffected};
use crate::store::page::escape_like;
use crate::store::query::Sql;
use crate::store::sql::SqlStore;
use crate::store::StoreResult;

impl<DB> SqlStore<DB>
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
    /// Turns up to `limit` recorded events into deliveries, in one transaction.
    pub(super) async fn dispatch_batch(&self, limit: i64) -> StoreResult<usize> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        // Claiming the batch is the transaction's first statement (a write).
        let sql = format!(
            "UPDATE events SET dispatched_at = $1 WHERE seq IN ( \
               SELECT seq FROM events WHERE dispatched_at IS NULL \
               ORDER BY seq LIMIT $2{}) \
             RETURNING seq, id, account_id, room_id, kind, payload, created_at",
            DB::row_lock(RowLock::UpdateSkipLocked)
        );
        let mut events: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(now.as_millis())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        events.sort_by_key(|event| event.seq);
        let mut webhooks: HashMap<String, Vec<Webhook>> = HashMap::new();
        let mut workflows: HashMap<String, Vec<Workflow>> = HashMap::new();
        let enabled = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = $1 AND enabled = $2"
        );
        for event in &events {
            if !webhooks.contains_key(&event.account_id) {
                let rows: Vec<WebhookRow> = sqlx::query_as(&enabled)
                    .bind(&event.account_id)
                    .bind(true)
                    .fetch_all(&mut *tx)
                    .await?;
                let hooks = rows
                    .into_iter()
                    .map(Webhook::try_from)
                    .collect::<StoreResult<_>>()?;
                webhooks.insert(event.account_id.clone(), hooks);
            }
            for (webhook_id, body) in event.deliveries(&webhooks[&event.account_id])? {
                Self::insert_delivery(&mut tx, &webhook_id, &event.kind, &event.id, &body, now)
                    .await?;
            }
            if !workflows.contains_key(&event.account_id) {
                let enabled = Self::enabled_workflows(&mut tx, &event.account_id).await?;
                workflows.insert(event.account_id.clone(), enabled);
            }
            if let Some((kind, room)) = event.kind_and_room()? {
                let wanted: Vec<&Workflow> = workflows[&event.account_id]
                    .iter()
                    .filter(|workflow| workflow.wants(kind, room))
                    .collect();
                if !wanted.is_empty() {
                    let body = event.body()?;
                    Self::queue_runs(&mut tx, &wanted, &event.id, &event.kind, &body, now).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(events.len())
    }

    /// Leases up to `limit` due deliveries of enabled webhooks to `node`, with where and how
    /// to send them.
    pub(super) async fn lease_due(
        &self,
        node: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let sql = format!(
            "UPDATE webhook_deliveries SET locked_until = $1, locked_by = $2 WHERE id IN ( \
               SELECT d.id FROM webhook_deliveries d \
               WHERE d.status = 'pending' AND d.next_retry_at <= $3 \
                 AND (d.locked_until IS NULL OR d.locked_until < $3) \
                 AND EXISTS (SELECT 1 FROM webhooks w \
                             WHERE w.id = d.webhook_id AND w.enabled = $4) \
               ORDER BY d.next_retry_at LIMIT $5{}) \
             RETURNING {DELIVERY_COLUMNS}",
            DB::row_lock(RowLock::UpdateSkipLocked)
        );
        let rows: Vec<DeliveryRow> = sqlx::query_as(&sql)
            .bind(lease_until.as_millis())
            .bind(node.as_str().to_owned())
            .bind(now.as_millis())
            .bind(true)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let deliveries = rows
            .into_iter()
            .map(Delivery::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        // Where to send them, in one query.
        let mut targets = Sql::new("SELECT id, url, secret FROM webhooks WHERE id");
        targets.in_list(deliveries.iter().map(|d| d.webhook_id.clone()));
        let targets: Vec<(String, String, String)> =
            targets.query_as::<DB, _>().fetch_all(&self.pool).await?;
        let by_id: HashMap<_, _> = targets
            .into_iter()
            .map(|(id, url, secret)| (id, (url, secret)))
            .collect();
        let mut due: Vec<_> = deliveries
            .into_iter()
            .filter_map(|delivery| {
                let (url, stored) = by_id.get(&delivery.webhook_id)?;
                let secret = open_secret(&self.sealer, &delivery.webhook_id, stored);
                Some(DueDelivery {
                    delivery,
                    url: url.clone(),
                    secret,
                })
            })
            .collect();
        due.sort_by_key(|d| d.delivery.next_retry_at);
        Ok(due)
    }

    /// Records an attempt of a delivery `node` holds; whether the webhook was disabled now.
    pub(super) async fn record_outcome(
        &self,
        node: &NodeId,
        attempt: &Attempt,
        disable_after: i64,
    ) -> StoreResult<bool> {
        let (status, next) = match attempt.outcome {
            AttemptOutcome::Delivered => ("success", None),
            AttemptOutcome::RetryAt(at) => ("pending", Some(at.as_millis())),
            AttemptOutcome::GaveUp => ("failed", None),
        };
        let mut tx = self.pool.begin().await?;
        // The webhook's row first, then its deliveries', like every writer that takes both
        // (disabling fails pending deliveries): nodes never deadlock on them.
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
        .bind(status.to_owned())
        .bind(attempt.at.as_millis())
        .bind(next)
        .bind(attempt.status_code)
        .bind(attempt.error.clone())
        .bind(&attempt.delivery_id)
        .bind(node.as_str().to_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            // The lease ran out and another node took the delivery over.
            return Ok(false);
        }
        let delivered = attempt.outcome == AttemptOutcome::Delivered;
        let counted: Option<(i64, bool)> = sqlx::query_as(
            "UPDATE webhooks SET consecutive_failures = CASE WHEN $1 THEN 0 \
               ELSE consecutive_failures + 1 END \
             WHERE id = $2 RETURNING consecutive_failures, enabled",
        )
        .bind(delivered)
        .bind(&attempt.webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut disabled = false;
        if let Some((failures, enabled)) = counted {
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
                Self::fail_pending(&mut tx, &attempt.webhook_id).await?;
                disabled = true;
            }
        }
        tx.commit().await?;
        Ok(disabled)
    }

    /// Seals again, with the current key, up to `limit` of the secrets `which` names, of the
    /// webhooks whose id sorts after `after`.
    pub(super) async fn reseal_batch(
        &self,
        which: Reseal,
        after: &str,
        limit: i64,
    ) -> StoreResult<ResealBatch> {
        let (operator, prefix) = match which {
            Reseal::Plaintext => ("LIKE", PLAINTEXT_PREFIX.to_owned()),
            Reseal::NotCurrent => ("NOT LIKE", self.sealer.current_prefix()),
        };
        let sql = format!(
            "SELECT id, secret FROM webhooks WHERE id > $1 AND secret {operator} $2 ESCAPE '\\' \
             ORDER BY id LIMIT $3"
        );
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(after.to_owned())
            .bind(escape_like(&prefix) + "%")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut batch = ResealBatch {
            scanned: rows.len(),
            last_id: rows.last().map(|(id, _)| id.clone()),
            ..Default::default()
        };
        let mut tx = self.pool.begin().await?;
        for (id, stored) in rows {
            let secret = match open_secret(&self.sealer, &id, &stored) {
                Ok(secret) => secret,
                Err(error) => {
                    batch.unreadable.push((id, error));
                    continue;
                }
            };
            let sealed = seal_secret(&self.sealer, &id, &secret)?;
            // Only if unchanged since it was read: a rotation through the API wins.
            let updated: Option<String> = sqlx::query_scalar(
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

    /// Inserts a pending delivery due now; `None` if that event already has one for that
    /// webhook (a dispatch that ran twice).
    pub(super) async fn insert_delivery(
        conn: &mut DB::Connection,
        webhook_id: &str,
        event: &str,
        event_id: &str,
        body: &str,
        now: Timestamp,
    ) -> StoreResult<Option<Delivery>> {
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, payload, status, \
               attempts, next_retry_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
             ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING {DELIVERY_COLUMNS}"
        );
        let row: Option<DeliveryRow> = sqlx::query_as(&sql)
            .bind(Delivery::new_id())
            .bind(webhook_id.to_owned())
            .bind(event_id.to_owned())
            .bind(event.to_owned())
            .bind(body.to_owned())
            .bind(now.as_millis())
            .fetch_optional(conn)
            .await?;
        row.map(Delivery::try_from).transpose()
    }

    /// A disabled webhook receives nothing: its pending deliveries fail.
    pub(super) async fn fail_pending(
        conn: &mut DB::Connection,
        webhook_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', next_retry_at = NULL, \
               locked_until = NULL, locked_by = NULL, last_error = 'webhook disabled' \
             WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(webhook_id.to_owned())
        .execute(conn)
        .await?;
        Ok(())
    }
}
