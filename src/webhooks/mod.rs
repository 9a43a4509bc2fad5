//! Webhook delivery. Events recorded in the database become deliveries in the outbox (the
//! `webhook_deliveries` table), which this node's worker leases, sends, and records: at least
//! once, with growing delays between attempts, resumed after any restart, one node at a time
//! per delivery.

pub mod guard;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebhooksConfig;
use crate::domain::{NodeId, Timestamp};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::store::webhooks::{Attempt, AttemptOutcome, DueDelivery};
use crate::store::DynStore;

/// Events turned into deliveries per transaction.
const DISPATCH_BATCH: i64 = 200;
/// A lease outlives the attempt by this much, so that a slow write of the outcome does not
/// let another node start the same delivery.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Shortest sleep between two turns of the worker.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// How often dispatched events past their retention are forgotten.
const PURGE_EVERY: Duration = Duration::from_secs(600);

pub struct Worker {
    store: DynStore,
    bus: EventBus,
    config: WebhooksConfig,
    node: NodeId,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// What came back from one send.
enum Sent {
    Status(u16),
    Failed(String),
}

impl Worker {
    pub fn new(
        store: DynStore,
        bus: EventBus,
        config: WebhooksConfig,
        node: NodeId,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let client = guard::client(config.allow_private_addresses, "CollabKit-Webhooks")?;
        Ok(Self {
            store,
            bus,
            config,
            node,
            client,
            metrics,
        })
    }

    /// Dispatches and delivers until `shutdown`; then waits (up to `grace`) for attempts in
    /// flight. An attempt cut short is retried when its lease runs out.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        // Leases this node's name holds are its previous run's, cut short by a crash or a
        // stop: resume those deliveries now rather than when the leases run out.
        match self.store.release_leases(&self.node).await {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(released, "resuming webhook deliveries of the previous run")
            }
            Err(error) => {
                tracing::warn!(%error, "releasing the previous run's webhook leases failed")
            }
        }
        let worker = Arc::new(self);
        let mut announcements = worker.bus.subscribe();
        let mut in_flight = JoinSet::new();
        let poll = Duration::from_millis(worker.config.poll_interval_ms);
        let mut last_purge = tokio::time::Instant::now();
        let max = worker.config.max_concurrent_deliveries;
        // What the next turn must do: turn new events into deliveries, lease due deliveries.
        let (mut dispatch_due, mut claim_due) = (true, true);
        loop {
            if dispatch_due {
                worker.dispatch().await;
                (dispatch_due, claim_due) = (false, true);
            }
            // Lease in batches, once at most half the slots are busy: one query for many. The
            // lease is a write: a read first tells whether anything is due at all.
            if claim_due && in_flight.len() <= max / 2 {
                if worker.something_due().await {
                    for due in worker.claim(max - in_flight.len()).await {
                        let worker = worker.clone();
                        in_flight.spawn(async move { worker.attempt(due).await });
                    }
                }
                claim_due = false;
            }
            if last_purge.elapsed() >= PURGE_EVERY {
                last_purge = tokio::time::Instant::now();
                worker.purge().await;
            }
            let wait = if in_flight.is_empty() {
                worker.until_next_due(poll).await
            } else {
                poll
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = announcements.recv() => {
                    // However many were announced, one dispatch takes them all.
                    while announcements.try_recv().is_ok() {}
                    dispatch_due = true;
                }
                () = worker.bus.woken() => claim_due = true,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => claim_due = true,
                () = tokio::time::sleep(wait) => {
                    // Events another node recorded (this one was not told of them), if any.
                    dispatch_due = worker.events_waiting().await;
                    claim_due = true;
                }
            }
        }
        if tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("webhook attempts still running at shutdown; they will be retried");
            in_flight.abort_all();
        }
    }

    async fn dispatch(&self) {
        loop {
            match self.store.dispatch_events(DISPATCH_BATCH).await {
                Ok(n) if n as i64 == DISPATCH_BATCH => self.bus.dispatched(),
                Ok(0) => return,
                Ok(_) => return self.bus.dispatched(),
                Err(error) => {
                    tracing::warn!(%error, "dispatching events to webhooks failed");
                    return;
                }
            }
        }
    }

    /// Whether an event waits to be dispatched (true if the database cannot say).
    async fn events_waiting(&self) -> bool {
        self.store.has_undispatched_events().await.unwrap_or(true)
    }

    /// Whether a delivery is due now (true if the database cannot say).
    async fn something_due(&self) -> bool {
        match self.store.next_delivery_due().await {
            Ok(Some(due)) => due.as_millis() <= Timestamp::now().as_millis(),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    async fn claim(&self, limit: usize) -> Vec<DueDelivery> {
        let now = Timestamp::now();
        let lease = Duration::from_millis(self.config.attempt_timeout_ms) + LEASE_MARGIN;
        let until = now.plus_millis(lease.as_millis() as i64);
        match self
            .store
            .claim_deliveries(&self.node, now, until, limit as i64)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "claiming webhook deliveries failed");
                Vec::new()
            }
        }
    }

    /// How long to sleep: until the next delivery is due, at most `poll`, and never less than
    /// `MIN_WAIT` (a due delivery that cannot be leased must not make the loop spin).
    async fn until_next_due(&self, poll: Duration) -> Duration {
        let wait = match self.store.next_delivery_due().await {
            Ok(Some(due)) => {
                let wait = due.as_millis() - Timestamp::now().as_millis();
                Duration::from_millis(wait.clamp(0, poll.as_millis() as i64) as u64)
            }
            _ => poll,
        };
        wait.max(MIN_WAIT.min(poll))
    }

    async fn purge(&self) {
        let before = Timestamp::now().plus_millis(-(self.config.event_retention_ms as i64));
        if let Err(error) = self.store.purge_events(before).await {
            tracing::warn!(%error, "forgetting old events failed");
        }
    }

    async fn attempt(&self, due: DueDelivery) {
        let delivery = &due.delivery;
        let started = std::time::Instant::now();
        let sent = match &due.secret {
            Ok(secret) => self.send(&due, secret).await,
            // Never sign with anything but the secret: the attempt fails, counts, and is retried
            // (a node given the missing key, or the key itself, can then send it).
            Err(error) => {
                tracing::error!(
                    delivery = %delivery.id, webhook = %delivery.webhook_id, %error,
                    "webhook delivery not sent: its signing secret cannot be opened"
                );
                Sent::Failed(format!("signing secret cannot be opened: {error}"))
            }
        };
        let at = Timestamp::now();
        let (status_code, error) = match &sent {
            Sent::Status(code) if (200..300).contains(code) => (Some(i64::from(*code)), None),
            Sent::Status(code) => (
                Some(i64::from(*code)),
                Some(format!("answered HTTP {code}")),
            ),
            Sent::Failed(reason) => (None, Some(reason.clone())),
        };
        self.metrics
            .webhook_attempt_latency
            .observe(started.elapsed());
        let outcome = if error.is_none() {
            "delivered"
        } else {
            "failed"
        };
        self.metrics.webhook_attempts.add(outcome);
        let made = delivery.attempts + 1;
        let outcome = match (&error, self.config.retry_delays_ms.get(made as usize - 1)) {
            (None, _) => AttemptOutcome::Delivered,
            (Some(_), Some(delay)) => AttemptOutcome::RetryAt(at.plus_millis(*delay as i64)),
            (Some(_), None) => AttemptOutcome::GaveUp,
        };
        let attempt = Attempt {
            delivery_id: delivery.id.clone(),
            webhook_id: delivery.webhook_id.clone(),
            at,
            status_code,
            error: error.clone(),
            outcome,
        };
        match &error {
            None => {
                tracing::debug!(delivery = %delivery.id, webhook = %delivery.webhook_id, attempt = made, "webhook delivered")
            }
            Some(reason) => tracing::info!(
                delivery = %delivery.id, webhook = %delivery.webhook_id, attempt = made,
                reason = %reason, gave_up = outcome == AttemptOutcome::GaveUp,
                "webhook attempt failed"
            ),
        }
        match self
            .store
            .record_attempt(&self.node, &attempt, self.config.disable_after_failures)
            .await
        {
            Ok(true) => tracing::warn!(
                webhook = %delivery.webhook_id,
                failures = self.config.disable_after_failures,
                "webhook disabled: its attempts failed {} times in a row; last: {}",
                self.config.disable_after_failures,
                error.as_deref().unwrap_or("-"),
            ),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(delivery = %delivery.id, %error, "recording a webhook attempt failed")
            }
        }
    }

    /// Sends one attempt: the stored body, signed, within the attempt timeout, reading at most
    /// `max_response_bytes` of the answer. Errors never carry the URL (it may hold a secret).
    async fn send(&self, due: &DueDelivery, secret: &str) -> Sent {
        let url = match guard::check_url(&due.url, self.config.allow_private_addresses) {
            Ok(url) => url,
            Err(refused) => return Sent::Failed(refused),
        };
        let body = due.delivery.payload.as_bytes().to_vec();
        let event_id = serde_json::from_str::<serde_json::Value>(&due.delivery.payload)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| due.delivery.id.clone());
        let timestamp = Timestamp::now().as_seconds();
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-collabkit-event", &due.delivery.event)
            .header("x-collabkit-delivery", &due.delivery.id)
            .header(
                "x-collabkit-signature",
                signature::documented(secret, &body),
            )
            .header("webhook-id", &event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature::standard(secret, &event_id, timestamp, &body),
            )
            .body(body);
        let cap = self.config.max_response_bytes;
        let exchange = async {
            let mut response = request.send().await.map_err(guard::describe)?;
            let status = response.status().as_u16();
            let mut read = 0usize;
            while read <= cap {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            Ok::<u16, String>(status)
        };
        match tokio::time::timeout(
            Duration::from_millis(self.config.attempt_timeout_ms),
            exchange,
        )
        .await
        {
            Ok(Ok(status)) => Sent::Status(status),
            Ok(Err(reason)) => Sent::Failed(reason),
            Err(_) => Sent::Failed(format!(
                "no answer within {} ms",
                self.config.attempt_timeout_ms
            )),
        }
    }
}
