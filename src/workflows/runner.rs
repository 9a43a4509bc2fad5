//! This node's runner: leases queued runs (`store::workflows`), runs each in the worker pool
//! with its bindings, and records its execution — at least once per (workflow, event), exactly
//! one record. Runs are leased only as workers free up, so a flood of events waits in the
//! database, not in memory; per account, runs are capped in number at once and per minute.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bindings::{RoomBindings, Shared};
use super::engine::{Outcome, Status};
use super::pool::{failed, Job, Pool};
use super::protocol::RunLimits;
use super::Compiler;
use crate::config::Config;
use crate::domain::workflow::{Execution, ExecutionStatus, Workflow};
use crate::domain::{AccountId, NodeId, RoomId, Timestamp};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::store::workflows::DueRun;
use crate::store::{DynStore, RoomScope};
use crate::webhooks::guard;

/// A lease outlives the run's time limit by this much: finishing and recording take a moment.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// A worker's address space beyond the engine's memory limit: its own code and buffers.
const WORKER_OVERHEAD: u64 = 128 << 20;

/// What runs a workflow's code: the pool, the bindings' data, the limits.
pub struct Runner {
    pub pool: Pool,
    pub shared: Arc<Shared>,
    pub limits: RunLimits,
    pub compiler: Compiler,
    pub per_account: AccountLimits,
    pub metrics: Arc<Metrics>,
}

impl Runner {
    pub fn from_config(
        config: &Config,
        store: DynStore,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let flows = &config.workflows;
        let program = if flows.worker_program.is_empty() {
            std::env::current_exe().context("finding this server's binary for workflow workers")?
        } else {
            PathBuf::from(&flows.worker_program)
        };
        let allow_private = config.webhooks.allow_private_addresses;
        let public_url = config.files.public_url.trim_end_matches('/');
        let shared = Shared {
            store,
            http: guard::client(allow_private, "CollabKit-Workflows")
                .context("building the workflows' HTTP client")?,
            allow_private,
            max_fetches: flows.max_fetches_per_run,
            fetch_timeout: Duration::from_millis(flows.fetch_timeout_ms),
            max_fetch_response_bytes: flows.max_fetch_response_bytes,
            files_base: if public_url.is_empty() {
                "http://localhost".to_owned()
            } else {
                public_url.to_owned()
            },
            page_bytes: config.page_bytes(),
        };
        Ok(Self {
            pool: Pool::new(
                program,
                flows.workers,
                flows.memory_limit_bytes as u64 + WORKER_OVERHEAD,
            ),
            shared: Arc::new(shared),
            limits: RunLimits {
                time_ms: flows.time_limit_ms,
                cpu_ms: flows.cpu_limit_ms,
                memory_bytes: flows.memory_limit_bytes,
                stack_bytes: flows.stack_limit_bytes,
                log_bytes: flows.max_log_bytes,
                result_bytes: flows.max_result_bytes,
                host_calls: flows.max_binding_calls,
            },
            compiler: Compiler::default(),
            per_account: AccountLimits::new(
                flows.max_concurrent_runs_per_account,
                flows.max_runs_per_minute_per_account,
            ),
            metrics,
        })
    }

    /// Runs `workflow`'s code on `event`, its bindings in `room`: the execution, not
    /// recorded.
    pub async fn execute(
        &self,
        workflow: &Workflow,
        room: RoomId,
        event_name: &str,
        event: Value,
    ) -> Execution {
        let (started, created_at) = (Instant::now(), Timestamp::now());
        let outcome = self.outcome(workflow, room, event).await;
        execution(workflow, event_name, outcome, started, created_at)
    }

    async fn outcome(&self, workflow: &Workflow, room_id: RoomId, event: Value) -> Outcome {
        let _running = match self.per_account.admit(workflow.account_id).await {
            Ok(permit) => permit,
            Err(refused) => return failed(refused),
        };
        let js = match self.compiler.compiled(&workflow.code).await {
            Ok(js) => js,
            Err(error) => return failed(format!("SyntaxError: {error}")),
        };
        let scope = RoomScope {
            account_id: workflow.account_id,
            room_id,
        };
        let deadline = Instant::now() + Duration::from_millis(self.limits.time_ms);
        let mut bindings = RoomBindings::new(self.shared.clone(), scope, deadline);
        let job = Job {
            js: js.to_string(),
            event,
            limits: self.limits.clone(),
        };
        self.pool.run(job, &mut bindings).await
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.limits.time_ms) + LEASE_MARGIN
    }
}

/// The record of a run of `workflow` on `event_name` that started at `started`.
fn execution(
    workflow: &Workflow,
    event_name: &str,
    outcome: Outcome,
    started: Instant,
    created_at: Timestamp,
) -> Execution {
    Execution {
        id: Execution::new_id(),
        workflow_id: workflow.id.clone(),
        event: event_name.to_owned(),
        status: match outcome.status {
            Status::Success => ExecutionStatus::Success,
            Status::Failed => ExecutionStatus::Failed,
        },
        result: outcome.result,
        duration_ms: started.elapsed().as_millis() as i64,
        logs: outcome.logs,
        created_at,
    }
}

/// Per account: runs at once, and runs started per minute.
pub struct AccountLimits {
    concurrent: usize,
    per_minute: u32,
    accounts: Mutex<HashMap<AccountId, AccountState>>,
}

struct AccountState {
    running: Arc<Semaphore>,
    /// The current minute (since the epoch) and the runs started in it.
    minute: i64,
    started: u32,
}

impl AccountLimits {
    pub fn new(concurrent: usize, per_minute: u32) -> Self {
        Self {
            concurrent,
            per_minute,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a run against the minute's allowance (over it: refused, with the reason), then
    /// waits for one of the account's slots.
    async fn admit(&self, account: AccountId) -> Result<OwnedSemaphorePermit, String> {
        let running = {
            let minute = Timestamp::now().as_millis() / 60_000;
            let mut accounts = self.accounts.lock().expect("not poisoned");
            let state = accounts.entry(account).or_insert_with(|| AccountState {
                running: Arc::new(Semaphore::new(self.concurrent)),
                minute,
                started: 0,
            });
            if state.minute != minute {
                (state.minute, state.started) = (minute, 0);
            }
            if state.started >= self.per_minute {
                return Err(format!(
                    "rate limit exceeded: at most {} runs per minute per account",
                    self.per_minute
                ));
            }
            state.started += 1;
            state.running.clone()
        };
        Ok(running.acquire_owned().await.expect("never closed"))
    }
}

/// Leases, runs and records until `shutdown`; then lets runs in flight finish (up to
/// `grace`). A run cut short is run again when its lease runs out — or at once by this node's
/// next life (`release_runs`).
pub async fn run(
    runner: Arc<Runner>,
    store: DynStore,
    bus: EventBus,
    node: NodeId,
    poll: Duration,
    shutdown: CancellationToken,
    grace: Duration,
) {
    match store.release_runs(&node).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "resuming workflow runs of the previous run"),
        Err(error) => tracing::warn!(%error, "releasing the previous run's workflow leases failed"),
    }
    // Runs are leased only as workers can take them.
    let capacity = runner.pool.workers();
    let mut in_flight = JoinSet::new();
    loop {
        if in_flight.len() < capacity {
            for due in claim(&runner, &store, &node, capacity - in_flight.len()).await {
                let (runner, store) = (runner.clone(), store.clone());
                in_flight.spawn(async move { finish(&runner, &store, due).await });
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = bus.runs_queued() => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
    if tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("workflow runs still going at shutdown; they will run again");
        in_flight.abort_all();
    }
}

async fn claim(runner: &Runner, store: &DynStore, node: &NodeId, limit: usize) -> Vec<DueRun> {
    let now = Timestamp::now();
    // Leasing is a write: a read first tells whether anything is due at all (it cannot say:
    // try the lease).
    if let Ok(false) = store.runs_due(now).await {
        return Vec::new();
    }
    let until = now.plus_millis(runner.lease().as_millis() as i64);
    match store.claim_runs(node, now, until, limit as i64).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "claiming workflow runs failed");
            Vec::new()
        }
    }
}

/// Runs one leased run and records it. A failure to record leaves the run queued: it runs
/// again when the lease ends, and the first record wins.
async fn finish(runner: &Runner, store: &DynStore, due: DueRun) {
    let event: Value = serde_json::from_str(&due.payload).unwrap_or(Value::Null);
    // Every workflow event happens in a room (`store::events`). One that does not is recorded
    // as failed, not left to be leased again and again.
    let room = event["room"]["id"].as_str().and_then(|id| id.parse().ok());
    let execution = match room {
        Some(room) => runner.execute(&due.workflow, room, &due.event, event).await,
        None => {
            let refused = failed("the event names no room".to_owned());
            execution(
                &due.workflow,
                &due.event,
                refused,
                Instant::now(),
                Timestamp::now(),
            )
        }
    };
    match store.finish_run(&due, &execution).await {
        Ok(_) => {
            let metrics = &runner.metrics;
            metrics.workflow_runs.add(execution.status.as_str());
            let took = Duration::from_millis(execution.duration_ms.max(0) as u64);
            metrics.workflow_run_duration.observe(took);
        }
        Err(error) => {
            tracing::warn!(%error, workflow = %due.workflow.id, event = %due.event_id,
                "recording a workflow execution failed; the run will be retried")
        }
    }
}
