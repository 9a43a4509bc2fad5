//! REST: workflows (`/v1/accounts/:accountId/workflows`) and the record of their runs.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::{JsonBody, PageQuery, PathParams, QueryParams};
use super::openapi::{Deleted, Envelope, ErrorEnvelope};
use super::routes::Routes;
use super::validation::{self, schemas, Patch};
use crate::auth::AccountAuth;
use crate::domain::workflow::{Execution, Workflow};
use crate::domain::{AccountId, EventKind, RoomId, Timestamp};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::workflows::{NewWorkflow, WorkflowChanges};
use crate::store::Entity;

pub fn routes() -> Routes {
    Routes::new()
        .post("/workflows", create_workflow)
        .get("/workflows", list_workflows)
        .get("/workflows/{id}", get_workflow)
        .patch("/workflows/{id}", update_workflow)
        .delete("/workflows/{id}", delete_workflow)
        .get("/workflows/{id}/executions", list_executions)
        .post("/workflows/{id}/test", test_workflow)
}

#[derive(OpenApi)]
#[openapi(paths(
    create_workflow,
    list_workflows,
    get_workflow,
    update_workflow,
    delete_workflow,
    list_executions,
    test_workflow
))]
pub struct Api;

#[derive(Serialize, ToSchema)]
struct WorkflowData {
    workflow: Workflow,
}

#[derive(Serialize, ToSchema)]
struct WorkflowList {
    /// Newest first.
    workflows: Vec<Workflow>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
struct ExecutionList {
    /// Newest first.
    executions: Vec<Execution>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
struct ExecutionData {
    /// Not recorded: it does not appear in `executions`.
    execution: Execution,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateWorkflowBody {
    #[schema(schema_with = schemas::name, required = true, example = "Greet")]
    name: Option<String>,
    /// JavaScript or TypeScript with a default export and no `import`, at most
    /// `workflows.max_code_bytes`.
    #[schema(value_type = String, required = true, min_length = 1, example = "export default async function (event) { return { seen: event.event }; }")]
    code: Option<String>,
    #[schema(value_type = Vec<EventKind>, required = true, min_items = 1)]
    events: Option<Vec<String>>,
    /// A room of the account (404 otherwise); absent or `null`: every room.
    #[schema(value_type = Option<RoomId>)]
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

/// Creates a workflow.
///
/// An account holds at most `workflows.max_workflows_per_account` (one more:
/// `VALIDATION_ERROR` on `name`); code that does not parse is a `VALIDATION_ERROR` on `code`
/// giving the line and column.
#[utoipa::path(
    post, path = "/workflows", tag = "Workflows", operation_id = "create_workflow",
    request_body = CreateWorkflowBody,
    responses(
        (status = 201, description = "Workflow created", body = Envelope<WorkflowData>),
        (status = 404, description = "`NOT_FOUND`: no such room", body = ErrorEnvelope),
    )
)]
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
        WorkflowData { workflow: created },
    ))
}

#[utoipa::path(
    get, path = "/workflows", tag = "Workflows", operation_id = "list_workflows",
    params(
        ("search" = Option<String>, Query, max_length = 256, description = "Case-insensitive substring of the name"),
        PageQuery
    ),
    responses((status = 200, description = "Workflows retrieved", body = Envelope<WorkflowList>))
)]
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
        WorkflowList {
            workflows: listed.items,
            total: listed.total,
            limit: page.limit,
            offset: page.offset,
        },
    ))
}

#[utoipa::path(
    get, path = "/workflows/{id}", tag = "Workflows", operation_id = "get_workflow",
    params(("id" = String, Path, description = "`wf_...`")),
    responses((status = 200, description = "Workflow retrieved", body = Envelope<WorkflowData>))
)]
async fn get_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let workflow = find(&state, auth.account_id, path.text("id")).await?;
    Ok(Reply::ok("Workflow retrieved", WorkflowData { workflow }))
}

/// The account's workflow `id`, or `NotFound(Workflow)`.
async fn find(state: &AppState, account_id: AccountId, id: &str) -> Result<Workflow, ApiError> {
    state
        .store()
        .get_workflow(account_id, id)
        .await?
        .ok_or(ApiError::not_found(Entity::Workflow))
}

/// At least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(min_properties = 1)]
struct UpdateWorkflowBody {
    #[serde(default)]
    #[schema(schema_with = schemas::name)]
    name: Patch<String>,
    #[serde(default)]
    #[schema(value_type = String, min_length = 1)]
    code: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Vec<EventKind>, min_items = 1)]
    events: Patch<Vec<String>>,
    /// `null`: every room of the account.
    #[serde(default)]
    #[schema(value_type = Option<RoomId>)]
    room_id: Patch<String>,
    #[serde(default)]
    #[schema(value_type = bool)]
    enabled: Patch<bool>,
}

#[utoipa::path(
    patch, path = "/workflows/{id}", tag = "Workflows", operation_id = "update_workflow",
    params(("id" = String, Path, description = "`wf_...`")),
    request_body = UpdateWorkflowBody,
    responses((status = 200, description = "Workflow updated", body = Envelope<WorkflowData>))
)]
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
    Ok(Reply::ok("Workflow updated", WorkflowData { workflow }))
}

/// Deletes the record of its runs too.
#[utoipa::path(
    delete, path = "/workflows/{id}", tag = "Workflows", operation_id = "delete_workflow",
    params(("id" = String, Path, description = "`wf_...`")),
    responses((status = 200, description = "Workflow deleted", body = Envelope<Deleted<String>>))
)]
async fn delete_workflow(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let id = path.text("id");
    state.store().delete_workflow(auth.account_id, id).await?;
    Ok(Reply::ok("Workflow deleted", Deleted { id }))
}

#[utoipa::path(
    get, path = "/workflows/{id}/executions", tag = "Workflows", operation_id = "list_executions",
    params(("id" = String, Path, description = "`wf_...`"), PageQuery),
    responses((status = 200, description = "Executions retrieved", body = Envelope<ExecutionList>))
)]
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
        ExecutionList {
            executions: listed.items,
            total: listed.total,
            limit: page.limit,
            offset: page.offset,
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestWorkflowBody {
    /// The room its bindings read; required when the workflow is for every room.
    #[schema(value_type = Option<RoomId>)]
    room_id: Option<String>,
    /// The `event` the code gets; default: a sample of the workflow's first event in that room.
    #[schema(value_type = Option<Object>)]
    event: Option<Value>,
}

/// Runs the workflow now, enabled or not, and answers with the execution (not recorded).
///
/// In the workflow's room, or the one given (required for a workflow of every room); on the
/// event given, else a sample event of that room.
#[utoipa::path(
    post, path = "/workflows/{id}/test", tag = "Workflows", operation_id = "test_workflow",
    params(("id" = String, Path, description = "`wf_...`")),
    request_body = TestWorkflowBody,
    responses((status = 200, description = "Workflow test run (a run that fails is still a 200: the execution says `failed`)", body = Envelope<ExecutionData>))
)]
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
    Ok(Reply::ok("Workflow test run", ExecutionData { execution }))
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
