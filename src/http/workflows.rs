//! REST: workflows (`/v1/accounts/:accountId/workflows`) and the record of their runs.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::envelope::Reply;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::validation::{self, Patch};
use crate::auth::AccountAuth;
use crate::domain::workflow::Workflow;
use crate::domain::{AccountId, RoomId, Timestamp};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::workflows::{NewWorkflow, WorkflowChanges};
use crate::store::Entity;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workflows", post(create_workflow).get(list_workflows))
        .route(
            "/workflows/{id}",
            get(get_workflow)
                .patch(update_workflow)
                .delete(delete_workflow),
        )
        .route("/workflows/{id}/executions", get(list_executions))
        .route("/workflows/{id}/test", post(test_workflow))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateWorkflowBody {
    name: Option<String>,
    code: Option<String>,
    events: Option<Vec<String>>,
    room_id: Option<String>,
}

/// Code that is not blank, not too long, and parses (JavaScript, or TypeScript once its types
/// are stripped).
async fn check_code(state: &AppState, code: String) -> Result<String, ApiError> {
    match code_problem(state, &code).await {
        Some(problem) => Err(ApiError::validation("code", problem)),
        None => Ok(code),
    }
}

/// What is wrong with workflow code, if anything (the REST API's and the dashboard's check).
pub(crate) async fn code_problem(state: &AppState, code: &str) -> Option<String> {
    if code.trim().is_empty() {
        return Some("code must not be empty".to_owned());
    }
    let limit = state.config().workflows.max_code_bytes;
    if code.len() > limit {
        return Some(format!(
            "code is {} bytes; at most {limit} are allowed",
            code.len()
        ));
    }
    let compiled = state.workflows().compiler.compiled(code).await;
    compiled
        .err()
        .map(|error| format!("code does not parse: {error}"))
}

async fn create_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateWorkflowBody>,
) -> Result<Reply, ApiError> {
    let name = validation::required_name("name", body.name)?;
    let code = body
        .code
        .ok_or_else(|| ApiError::validation("code", "code is required"))?;
    let code = check_code(&state, code).await?;
    let events = validation::events(
        body.events
            .ok_or_else(|| ApiError::validation("events", "events is required"))?,
    )?;
    let room_id = match body.room_id {
        Some(text) => Some(validation::room(&state, auth.account_id, &text).await?),
        None => None,
    };
    let workflow = NewWorkflow {
        id: Workflow::new_id(),
        account_id: auth.account_id,
        name,
        code,
        events,
        room_id,
        created_at: Timestamp::now(),
    };
    let limit = state.config().workflows.max_workflows_per_account;
    let created = state.store().create_workflow(&workflow, limit).await?;
    Ok(Reply::created(
        "Workflow created",
        json!({ "workflow": created }),
    ))
}

async fn list_workflows(
    auth: AccountAuth,
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let (page, filter) = (query.page()?, query.filter()?);
    let listed = state
        .store()
        .list_workflows(auth.account_id, filter.search.as_deref(), page)
        .await?;
    Ok(Reply::ok(
        "Workflows retrieved",
        json!({
            "workflows": listed.items, "total": listed.total,
            "limit": page.limit, "offset": page.offset,
        }),
    ))
}

async fn get_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let workflow = find(&state, auth.account_id, path.text("id")).await?;
    Ok(Reply::ok(
        "Workflow retrieved",
        json!({ "workflow": workflow }),
    ))
}

/// The account's workflow `id`, or `NotFound(Workflow)`.
async fn find(state: &AppState, account_id: AccountId, id: &str) -> Result<Workflow, ApiError> {
    state
        .store()
        .get_workflow(account_id, id)
        .await?
        .ok_or(ApiError::not_found(Entity::Workflow))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateWorkflowBody {
    #[serde(default)]
    name: Patch<String>,
    #[serde(default)]
    code: Patch<String>,
    #[serde(default)]
    events: Patch<Vec<String>>,
    #[serde(default)]
    room_id: Patch<String>,
    #[serde(default)]
    enabled: Patch<bool>,
}

async fn update_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<UpdateWorkflowBody>,
) -> Result<Reply, ApiError> {
    validation::at_least_one(&[
        ("name", !body.name.is_absent()),
        ("code", !body.code.is_absent()),
        ("events", !body.events.is_absent()),
        ("roomId", !body.room_id.is_absent()),
        ("enabled", !body.enabled.is_absent()),
    ])?;
    let changes = WorkflowChanges {
        name: validation::not_null("name", body.name)?
            .map(|name| validation::name("name", name))
            .transpose()?,
        code: match validation::not_null("code", body.code)? {
            Some(code) => Some(check_code(&state, code).await?),
            None => None,
        },
        events: validation::not_null("events", body.events)?
            .map(validation::events)
            .transpose()?,
        room_id: match body.room_id {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(text) => Some(Some(
                validation::room(&state, auth.account_id, &text).await?,
            )),
        },
        enabled: validation::not_null("enabled", body.enabled)?,
    };
    let workflow = state
        .store()
        .update_workflow(auth.account_id, path.text("id"), &changes)
        .await?;
    Ok(Reply::ok(
        "Workflow updated",
        json!({ "workflow": workflow }),
    ))
}

async fn delete_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let id = path.text("id");
    state.store().delete_workflow(auth.account_id, id).await?;
    Ok(Reply::ok("Workflow deleted", json!({ "id": id })))
}

async fn list_executions(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let page = query.page()?;
    let listed = state
        .store()
        .list_executions(auth.account_id, path.text("id"), page)
        .await?;
    Ok(Reply::ok(
        "Executions retrieved",
        json!({
            "executions": listed.items, "total": listed.total,
            "limit": page.limit, "offset": page.offset,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestWorkflowBody {
    room_id: Option<String>,
    event: Option<Value>,
}

/// Runs the workflow now, enabled or not, and answers with the execution, which is not
/// recorded. In the workflow's room, or the one given (required for a workflow of every
/// room); on the event given, else a sample `participant.joined`-shaped event of that room.
async fn test_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<TestWorkflowBody>,
) -> Result<Reply, ApiError> {
    let workflow = find(&state, auth.account_id, path.text("id")).await?;
    let room_id = match (&body.room_id, workflow.room_id) {
        (Some(text), _) => validation::room(&state, auth.account_id, text).await?,
        (None, Some(room)) => room,
        (None, None) => {
            return Err(ApiError::validation(
                "roomId",
                "roomId is required: the workflow runs in every room",
            ))
        }
    };
    let event = match body.event {
        Some(event @ Value::Object(_)) => event,
        Some(_) => return Err(ApiError::validation("event", "event must be an object")),
        None => sample_event(&state, &workflow, auth.account_id, room_id).await?,
    };
    let name = event["event"]
        .as_str()
        .map_or_else(|| "test".to_owned(), str::to_owned);
    let execution = state
        .workflows()
        .execute(&workflow, room_id, &name, event)
        .await;
    Ok(Reply::ok(
        "Workflow test run",
        json!({ "execution": execution }),
    ))
}

/// An event as a delivery of the workflow's first event would carry it, in `room_id`.
pub(crate) async fn sample_event(
    state: &AppState,
    workflow: &Workflow,
    account_id: AccountId,
    room_id: RoomId,
) -> Result<Value, ApiError> {
    let room = state
        .store()
        .get_room(account_id, room_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    let name = workflow
        .events
        .first()
        .map_or("participant.joined", |kind| kind.name());
    Ok(json!({
        "id": format!("evt_test_{}", uuid::Uuid::new_v4().simple()),
        "event": name,
        "timestamp": Timestamp::now(),
        "room": room,
        "data": { "roomId": room_id },
    }))
}
