//! Persistence of workflows and of the record of their runs (executions).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect, RowLock, RowsAffected};
use super::events::{event_names_text, parse_event_names};
use super::query::Sql;
use super::sql::SqlStore;
use super::{Entity, Listed, Page, StoreError, StoreResult};
use crate::domain::limits::Limit;
use crate::domain::workflow::{Execution, ExecutionStatus, Workflow};
use crate::domain::{AccountId, EventKind, NodeId, RoomId, Timestamp};

#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub id: String,
    pub account_id: AccountId,
    pub name: String,
    pub code: String,
    pub events: Vec<EventKind>,
    pub room_id: Option<RoomId>,
    pub created_at: Timestamp,
}

/// Fields to change; `None` leaves a field, `room_id: Some(None)` means every room.
#[derive(Debug, Clone, Default)]
pub struct WorkflowChanges {
    pub name: Option<String>,
    pub code: Option<String>,
    pub events: Option<Vec<EventKind>>,
    pub room_id: Option<Option<RoomId>>,
    pub enabled: Option<bool>,
}

#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// `Invalid` (field `name`) when the account already has `max_workflows`.
    async fn create_workflow(
        &self,
        workflow: &NewWorkflow,
        max_workflows: i64,
    ) -> StoreResult<Workflow>;
    /// Newest first; `search` matches the name.
    async fn list_workflows(
        &self,
        account_id: AccountId,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<Listed<Workflow>>;
    async fn get_workflow(&self, account_id: AccountId, id: &str) -> StoreResult<Option<Workflow>>;
    async fn update_workflow(
        &self,
        account_id: AccountId,
        id: &str,
        changes: &WorkflowChanges,
    ) -> StoreResult<Workflow>;
    /// Deletes the workflow and the record of its runs.
    async fn delete_workflow(&self, account_id: AccountId, id: &str) -> StoreResult<()>;
    /// A page of the workflow's executions, newest first. `NotFound(Workflow)` unless it is
    /// the account's.
    async fn list_executions(
        &self,
        account_id: AccountId,
        workflow_id: &str,
        page: Page,
    ) -> StoreResult<Listed<Execution>>;
    /// Records a run of `workflow_id` on the recorded event `event_id`; false (nothing
    /// written) if that event's run is recorded already: one execution per (workflow, event).
    async fn record_execution(&self, event_id: &str, execution: &Execution) -> StoreResult<bool>;
    /// Leases up to `limit` queued runs of enabled workflows to `node` until `lease_until`,
    /// oldest first, each with its workflow as it is now.
    async fn claim_runs(
        &self,
        node: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueRun>>;
    /// Records the execution of a run and removes the run, in one transaction. False if the
    /// event's execution was recorded already (by a node whose lease had run out).
    async fn finish_run(&self, run: &DueRun, execution: &Execution) -> StoreResult<bool>;
    /// Whether a queued run can be leased now: one cheap read, so that an idle node's polling
    /// writes nothing.
    async fn runs_due(&self, now: Timestamp) -> StoreResult<bool>;
    /// Ends the leases `node` holds (its previous life's, cut short by a crash or a stop): its
    /// runs can be taken again at once. How many.
    async fn release_runs(&self, node: &NodeId) -> StoreResult<u64>;
}

/// A queued run leased to this node.
#[derive(Debug, Clone)]
pub struct DueRun {
    pub workflow: Workflow,
    /// The recorded event's ID: one execution per (workflow, event).
    pub event_id: String,
    /// Its name (`participant.joined`, ...).
    pub event: String,
    /// Its body, as a webhook delivery carries it: the workflow's `event`.
    pub payload: String,
    /// Leases taken so far, this one included.
    pub attempts: i64,
}

const WORKFLOW_COLUMNS: &str =
    "id, account_id, name, code, events, room_id, enabled, created_at, updated_at";
const EXECUTION_COLUMNS: &str =
    "id, workflow_id, event, status, result, duration_ms, logs, created_at";

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    id: String,
    account_id: String,
    name: String,
    code: String,
    events: String,
    room_id: Option<String>,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<WorkflowRow> for Workflow {
    type Error = StoreError;

    fn try_from(row: WorkflowRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("workflow {}: {what}", row.id));
        Ok(Workflow {
            account_id: row.account_id.parse().map_err(|_| corrupt("account"))?,
            room_id: row
                .room_id
                .map(|room| room.parse().map_err(|_| corrupt("room")))
                .transpose()?,
            name: row.name,
            code: row.code,
            events: parse_event_names(&row.events)?,
            enabled: row.enabled,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
            id: row.id,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ExecutionRow {
    id: String,
    workflow_id: String,
    event: String,
    status: String,
    result: String,
    duration_ms: i64,
    logs: String,
    created_at: i64,
}

impl TryFrom<ExecutionRow> for Execution {
    type Error = StoreError;

    fn try_from(row: ExecutionRow) -> StoreResult<Self> {
        Ok(Execution {
            status: ExecutionStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("execution status {}", row.status)))?,
            id: row.id,
            workflow_id: row.workflow_id,
            event: row.event,
            result: row.result,
            duration_ms: row.duration_ms,
            logs: row.logs,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[async_trait]
impl<DB> WorkflowStore for SqlStore<DB>
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
    async fn create_workflow(
        &self,
        workflow: &NewWorkflow,
        max_workflows: i64,
    ) -> StoreResult<Workflow> {
        let mut tx = self.pool.begin().await?;
        // The account's row lock: two creations cannot both take the last place.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(workflow.account_id.to_string())
            .execute(&mut *tx)
            .await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE account_id = $1")
            .bind(workflow.account_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        Limit::Workflows(max_workflows).check_one_more(held)?;
        let sql = format!(
            "INSERT INTO workflows (id, account_id, name, code, events, room_id, enabled, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {WORKFLOW_COLUMNS}"
        );
        let row: WorkflowRow = sqlx::query_as(&sql)
            .bind(&workflow.id)
            .bind(workflow.account_id.to_string())
            .bind(&workflow.name)
            .bind(&workflow.code)
            .bind(event_names_text(&workflow.events))
            .bind(workflow.room_id.map(|room| room.to_string()))
            .bind(true)
            .bind(workflow.created_at.as_millis())
            .fetch_one(&mut *tx)
            .await?;
        let created = row.try_into()?;
        tx.commit().await?;
        Ok(created)
    }

    async fn list_workflows(
        &self,
        account_id: AccountId,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<Listed<Workflow>> {
        let (rows, total) = self
            .list_owned::<WorkflowRow>(
                ("workflows", WORKFLOW_COLUMNS, "name"),
                account_id,
                search,
                page,
            )
            .await?;
        let items = rows
            .into_iter()
            .map(Workflow::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Listed { items, total })
    }

    async fn get_workflow(&self, account_id: AccountId, id: &str) -> StoreResult<Option<Workflow>> {
        let sql =
            format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = $1 AND account_id = $2");
        let row: Option<WorkflowRow> = sqlx::query_as(&sql)
            .bind(id.to_owned())
            .bind(account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(Workflow::try_from).transpose()
    }

    async fn update_workflow(
        &self,
        account_id: AccountId,
        id: &str,
        changes: &WorkflowChanges,
    ) -> StoreResult<Workflow> {
        let mut update = Sql::new("UPDATE workflows SET updated_at = ");
        update.bind(Timestamp::now().as_millis());
        if let Some(name) = &changes.name {
            update.push(", name = ").bind(name.clone());
        }
        if let Some(code) = &changes.code {
            update.push(", code = ").bind(code.clone());
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
        }
        update
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND account_id = ")
            .bind(account_id.to_string())
            .push(&format!(" RETURNING {WORKFLOW_COLUMNS}"));
        let row: WorkflowRow = update
            .query_as::<DB, _>()
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(Entity::Workflow))?;
        row.try_into()
    }

    async fn delete_workflow(&self, account_id: AccountId, id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM workflows WHERE id = $1 AND account_id = $2")
            .bind(id.to_owned())
            .bind(account_id.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(Entity::Workflow));
        }
        Ok(())
    }

    async fn list_executions(
        &self,
        account_id: AccountId,
        workflow_id: &str,
        page: Page,
    ) -> StoreResult<Listed<Execution>> {
        self.get_workflow(account_id, workflow_id)
            .await?
            .ok_or(StoreError::NotFound(Entity::Workflow))?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM workflow_executions WHERE workflow_id = $1")
                .bind(workflow_id.to_owned())
                .fetch_one(&self.reads)
                .await?;
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM workflow_executions WHERE workflow_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows: Vec<ExecutionRow> = sqlx::query_as(&sql)
            .bind(workflow_id.to_owned())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.reads)
            .await?;
        let items = rows
            .into_iter()
            .map(Execution::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(Listed { items, total })
    }

    async fn record_execution(&self, event_id: &str, execution: &Execution) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        insert_execution::<DB>(&mut conn, event_id, execution).await
    }

    async fn claim_runs(
        &self,
        node: &NodeId,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueRun>> {
        let sql = format!(
            "UPDATE workflow_runs SET locked_until = $1, locked_by = $2, attempts = attempts + 1 \
             WHERE (workflow_id, event_id) IN ( \
               SELECT r.workflow_id, r.event_id FROM workflow_runs r \
               WHERE (r.locked_until IS NULL OR r.locked_until < $3) \
                 AND EXISTS (SELECT 1 FROM workflows w \
                             WHERE w.id = r.workflow_id AND w.enabled = $4) \
               ORDER BY r.created_at LIMIT $5{}) \
             RETURNING workflow_id, event_id, event, payload, attempts",
            DB::row_lock(RowLock::UpdateSkipLocked)
        );
        let runs: Vec<(String, String, String, String, i64)> = sqlx::query_as(&sql)
            .bind(lease_until.as_millis())
            .bind(node.as_str().to_owned())
            .bind(now.as_millis())
            .bind(true)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let mut workflows = Sql::new(format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id"));
        workflows.in_list(runs.iter().map(|run| run.0.clone()));
        let workflows: Vec<WorkflowRow> =
            workflows.query_as::<DB, _>().fetch_all(&self.pool).await?;
        let workflows = workflows
            .into_iter()
            .map(|row| Workflow::try_from(row).map(|w| (w.id.clone(), w)))
            .collect::<StoreResult<std::collections::HashMap<_, _>>>()?;
        Ok(runs
            .into_iter()
            .filter_map(|(workflow_id, event_id, event, payload, attempts)| {
                Some(DueRun {
                    workflow: workflows.get(&workflow_id)?.clone(),
                    event_id,
                    event,
                    payload,
                    attempts,
                })
            })
            .collect())
    }

    async fn finish_run(&self, run: &DueRun, execution: &Execution) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let recorded = insert_execution::<DB>(&mut tx, &run.event_id, execution).await?;
        sqlx::query("DELETE FROM workflow_runs WHERE workflow_id = $1 AND event_id = $2")
            .bind(run.workflow.id.clone())
            .bind(run.event_id.clone())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn runs_due(&self, now: Timestamp) -> StoreResult<bool> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM workflow_runs r \
             WHERE (r.locked_until IS NULL OR r.locked_until < $1) \
               AND EXISTS (SELECT 1 FROM workflows w WHERE w.id = r.workflow_id AND w.enabled = $2) \
             LIMIT 1",
        )
        .bind(now.as_millis())
        .bind(true)
        .fetch_optional(&self.reads)
        .await?;
        Ok(due.is_some())
    }

    async fn release_runs(&self, node: &NodeId) -> StoreResult<u64> {
        let released = sqlx::query(
            "UPDATE workflow_runs SET locked_until = NULL, locked_by = NULL WHERE locked_by = $1",
        )
        .bind(node.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }
}

/// Inserts an execution unless the event's is recorded already; whether it was inserted.
async fn insert_execution<DB>(
    conn: &mut DB::Connection,
    event_id: &str,
    execution: &Execution,
) -> StoreResult<bool>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    String: Column<DB>,
    i64: Column<DB>,
{
    let done = sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, event_id, event, status, result, \
           duration_ms, logs, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (workflow_id, event_id) DO NOTHING",
    )
    .bind(execution.id.clone())
    .bind(execution.workflow_id.clone())
    .bind(event_id.to_owned())
    .bind(execution.event.clone())
    .bind(execution.status.as_str().to_owned())
    .bind(execution.result.clone())
    .bind(execution.duration_ms)
    .bind(execution.logs.clone())
    .bind(execution.created_at.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What the event dispatcher (the webhooks' outbox) does for workflows, in its transaction.
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
    /// The account's enabled workflows.
    pub(in crate::store) async fn enabled_workflows(
        conn: &mut DB::Connection,
        account_id: &str,
    ) -> StoreResult<Vec<Workflow>> {
        let sql = format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE account_id = $1 AND enabled = $2"
        );
        let rows: Vec<WorkflowRow> = sqlx::query_as(&sql)
            .bind(account_id.to_owned())
            .bind(true)
            .fetch_all(&mut *conn)
            .await?;
        rows.into_iter().map(Workflow::try_from).collect()
    }

    /// Queues a run of each workflow on the recorded event (a run already queued or done for
    /// it is not queued again).
    pub(in crate::store) async fn queue_runs(
        conn: &mut DB::Connection,
        workflows: &[&Workflow],
        event_id: &str,
        event: &str,
        body: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        for workflow in workflows {
            sqlx::query(
                "INSERT INTO workflow_runs (workflow_id, event_id, event, payload, created_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM workflow_executions \
                   WHERE workflow_id = $1 AND event_id = $2) \
                 ON CONFLICT (workflow_id, event_id) DO NOTHING",
            )
            .bind(workflow.id.clone())
            .bind(event_id.to_owned())
            .bind(event.to_owned())
            .bind(body.to_owned())
            .bind(now.as_millis())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
