//! Persistence of workflows and of the record of their runs (executions).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect, RowsAffected};
use super::events::{event_names_text, parse_event_names};
use super::page::like_pattern;
use super::query::Sql;
use super::sql::SqlStore;
use super::{Entity, Listed, Page, StoreError, StoreResult};
use crate::domain::limits::Limit;
use crate::domain::workflow::{Execution, ExecutionStatus, Workflow};
use crate::domain::{AccountId, EventKind, RoomId, Timestamp};

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
        let pattern = search
            .filter(|s| !s.is_empty())
            .map(like_pattern::<DB>)
            .unwrap_or_else(|| "%".to_owned());
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM workflows \
             WHERE account_id = $1 AND LOWER(name) LIKE $2 ESCAPE '\\'",
        )
        .bind(account_id.to_string())
        .bind(&pattern)
        .fetch_one(&self.reads)
        .await?;
        let sql = format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows \
             WHERE account_id = $1 AND LOWER(name) LIKE $2 ESCAPE '\\' \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<WorkflowRow> = sqlx::query_as(&sql)
            .bind(account_id.to_string())
            .bind(&pattern)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.reads)
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
        let done = sqlx::query(
            "INSERT INTO workflow_executions (id, workflow_id, event_id, event, status, result, \
               duration_ms, logs, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (workflow_id, event_id) DO NOTHING",
        )
        .bind(&execution.id)
        .bind(&execution.workflow_id)
        .bind(event_id.to_owned())
        .bind(&execution.event)
        .bind(execution.status.as_str().to_owned())
        .bind(&execution.result)
        .bind(execution.duration_ms)
        .bind(&execution.logs)
        .bind(execution.created_at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
