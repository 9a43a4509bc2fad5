//! Workflows: the organization's workflows (create one in an editor; code that does not parse
//! comes back with its line and column, nothing lost), a workflow's page (edit, enable or
//! disable, delete, a test run whose execution shows at once) and its executions with their
//! logs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::layout::{self, page_with_status, when, Nav};
use super::{room_field, see_other, CsrfForm, Fields, PageError, PageForm, PageResult, Signed};
use crate::domain::workflow::{Execution, Workflow};
use crate::domain::{EventKind, RoomId, Timestamp};
use crate::http::validation;
use crate::http::workflows::{code_problem, sample_event};
use crate::state::AppState;
use crate::store::workflows::{NewWorkflow, WorkflowChanges};
use crate::store::Page;

/// Executions shown on a workflow's page.
const EXECUTIONS_SHOWN: i64 = 50;
/// What the editor of a new workflow starts with: the documented example.
const EXAMPLE: &str = "export default async function (event, { store, room, files }) {\n  console.log(`User ${event.data.userId} joined room ${event.data.roomId}`);\n  return { success: true };\n}\n";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/workflows",
            get(workflows_page).post(create_workflow),
        )
        .route(
            "/dashboard/workflows/{workflowId}",
            get(workflow_page).post(update_workflow),
        )
        .route("/dashboard/workflows/{workflowId}/test", post(test_run))
        .route(
            "/dashboard/workflows/{workflowId}/delete",
            post(delete_workflow),
        )
}

/// What the form holds, shown again as it was when it is refused.
struct Draft {
    name: String,
    code: String,
    events: Vec<String>,
    room: String,
}

impl Draft {
    fn new() -> Self {
        Self {
            name: String::new(),
            code: EXAMPLE.to_owned(),
            events: vec!["participant.joined".to_owned()],
            room: String::new(),
        }
    }

    fn of(workflow: &Workflow) -> Self {
        Self {
            name: workflow.name.clone(),
            code: workflow.code.clone(),
            events: workflow
                .events
                .iter()
                .map(|e| e.name().to_owned())
                .collect(),
            room: workflow
                .room_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }
    }

    fn from_fields(fields: &Fields) -> Self {
        Self {
            name: fields.get("name").to_owned(),
            code: fields.get("code").to_owned(),
            events: fields
                .all("events")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            room: fields.get("room").to_owned(),
        }
    }
}

/// A draft checked as the REST API checks a workflow. Err: what to tell the user.
async fn check(
    state: &AppState,
    session: &Signed,
    draft: &Draft,
) -> Result<Result<(String, Vec<EventKind>, Option<RoomId>), String>, PageError> {
    let Ok(name) = validation::name("name", draft.name.clone()) else {
        return Ok(Err("The name must be 1 to 256 characters.".to_owned()));
    };
    let Ok(events) = validation::events(draft.events.clone()) else {
        return Ok(Err("Choose at least one event.".to_owned()));
    };
    let room = match room_field(state, session, &draft.room).await? {
        Ok(room) => room,
        Err(message) => return Ok(Err(message)),
    };
    if let Some(problem) = code_problem(state, &draft.code).await {
        return Ok(Err(problem));
    }
    Ok(Ok((name, events, room)))
}

fn editor(draft: &Draft, refused: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = refused {
            p.error #workflow-error role="alert" { (message) }
        }
        label for="workflow-name" { "Name" }
        input #workflow-name type="text" name="name" required maxlength="256" value=(draft.name);
        label for="workflow-code" { "Code (JavaScript or TypeScript; the default export runs)" }
        textarea #workflow-code name="code" rows="16" spellcheck="false" required { (draft.code) }
        fieldset {
            legend { "Events" }
            @for kind in EventKind::ALL {
                @let id = format!("workflow-event-{}", kind.name().replace('.', "-"));
                div.check {
                    input id=(id) type="checkbox" name="events" value=(kind.name()) checked[draft.events.iter().any(|e| e == kind.name())];
                    label for=(id) { code { (kind.name()) } }
                }
            }
        }
        label for="workflow-room" { "Only this room's events (a room ID; empty: every room)" }
        input #workflow-room type="text" name="room" value=(draft.room);
    }
}

async fn workflows_page(State(state): State<AppState>, session: Signed) -> PageResult {
    render_list(&state, &session, &Draft::new(), None).await
}

async fn render_list(
    state: &AppState,
    session: &Signed,
    draft: &Draft,
    refused: Option<&str>,
) -> PageResult {
    let listed = state
        .store()
        .list_workflows(
            session.account.id,
            None,
            Page {
                limit: 100,
                offset: 0,
            },
        )
        .await?;
    let body = html! {
        @if listed.items.is_empty() { p.muted { "No workflows yet." } }
        @else {
            div.scroll {
                table {
                    thead { tr { th { "Name" } th { "Events" } th { "Room" } th { "State" } th { "Updated" } } }
                    tbody {
                        @for workflow in &listed.items {
                            tr {
                                td { a href={ "/dashboard/workflows/" (workflow.id) } { (workflow.name) } }
                                td { @for (i, kind) in workflow.events.iter().enumerate() { @if i > 0 { ", " } code { (kind.name()) } } }
                                td { @match workflow.room_id { Some(id) => a href={ "/dashboard/rooms/" (id) } { "one room" }, None => "all rooms" } }
                                td { (state_badge(workflow.enabled)) }
                                td { (when(workflow.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
        @if session.role.may_write() {
            h2 { "New workflow" }
            form.card method="post" action="/dashboard/workflows" {
                input type="hidden" name="csrf" value=(session.csrf());
                (editor(draft, refused))
                button type="submit" { "Create workflow" }
            }
        }
    };
    let status = if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(page_with_status(
        status,
        session,
        Nav::Workflows,
        "Workflows",
        body,
    ))
}

fn state_badge(enabled: bool) -> Markup {
    html! { @if enabled { span.badge.on { "enabled" } } @else { span.badge.off { "disabled" } } }
}

async fn create_workflow(
    State(state): State<AppState>,
    session: Signed,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> PageResult {
    let fields = Fields(fields);
    session.check_csrf(fields.get("csrf"))?;
    session.check_write()?;
    let draft = Draft::from_fields(&fields);
    let (name, events, room_id) = match check(&state, &session, &draft).await? {
        Ok(checked) => checked,
        Err(message) => return render_list(&state, &session, &draft, Some(&message)).await,
    };
    let workflow = NewWorkflow {
        id: Workflow::new_id(),
        account_id: session.account.id,
        name,
        code: draft.code.clone(),
        events,
        room_id,
        created_at: Timestamp::now(),
    };
    let limit = state.config().workflows.max_workflows_per_account;
    match state.store().create_workflow(&workflow, limit).await {
        Ok(created) => Ok(see_other(&format!("/dashboard/workflows/{}", created.id))),
        Err(crate::store::StoreError::Invalid { .. }) => {
            let message = format!("The organization has {limit} workflows already.");
            render_list(&state, &session, &draft, Some(&message)).await
        }
        Err(other) => Err(other.into()),
    }
}

async fn find(state: &AppState, session: &Signed, id: &str) -> Result<Workflow, PageError> {
    state
        .store()
        .get_workflow(session.account.id, id)
        .await?
        .ok_or_else(|| {
            layout::problem(
                StatusCode::NOT_FOUND,
                "Workflow not found",
                "There is no such workflow in this organization.",
            )
            .into()
        })
}

async fn workflow_page(
    State(state): State<AppState>,
    session: Signed,
    Path(workflow_id): Path<String>,
) -> PageResult {
    let workflow = find(&state, &session, &workflow_id).await?;
    render_workflow(&state, &session, &workflow, Shown::Nothing).await
}

/// What a workflow's page shows beside the workflow.
enum Shown<'a> {
    Nothing,
    /// An edit that was refused, and why.
    Refused(Draft, &'a str),
    /// A test run's execution.
    Tested(Execution),
}

async fn render_workflow(
    state: &AppState,
    session: &Signed,
    workflow: &Workflow,
    shown: Shown<'_>,
) -> PageResult {
    let executions = state
        .store()
        .list_executions(
            session.account.id,
            &workflow.id,
            Page {
                limit: EXECUTIONS_SHOWN,
                offset: 0,
            },
        )
        .await?;
    let csrf = session.csrf();
    let writes = session.role.may_write();
    let base = format!("/dashboard/workflows/{}", workflow.id);
    let (draft, refused) = match &shown {
        Shown::Refused(draft, message) => (None, Some((draft, *message))),
        _ => (Some(Draft::of(workflow)), None),
    };
    let body = html! {
        @if let Shown::Tested(execution) = &shown {
            section.notice #test-run aria-labelledby="test-title" {
                h2 #test-title { "Test run: " (execution.status.as_str()) " in " (execution.duration_ms) " ms" }
                p { "Not recorded: it is not among the executions below." }
                h3 { "Result" }
                pre #test-result { (execution.result) }
                h3 { "Logs" }
                pre #test-logs { (execution.logs) }
            }
        }
        dl.facts {
            dt { "ID" } dd { code { (workflow.id) } }
            dt { "State" } dd { (state_badge(workflow.enabled)) }
            dt { "Events" } dd { @for (i, kind) in workflow.events.iter().enumerate() { @if i > 0 { ", " } code { (kind.name()) } } }
            dt { "Room" } dd { @match workflow.room_id { Some(id) => a href={ "/dashboard/rooms/" (id) } { (id) }, None => "every room" } }
            dt { "Updated" } dd { (when(workflow.updated_at)) }
        }
        @if writes {
            div.actions {
                form.inline method="post" action=(base) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="toggle" value="1";
                    button type="submit" { @if workflow.enabled { "Disable" } @else { "Enable" } }
                }
                form.inline method="post" action={ (base) "/delete" } data-confirm="Delete this workflow and the record of its runs?" {
                    input type="hidden" name="csrf" value=(csrf);
                    button.danger type="submit" { "Delete" }
                }
            }
            form.card method="post" action={ (base) "/test" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="test-room" { "Test run in room (a room ID; empty: the workflow's room)" }
                input #test-room type="text" name="room" value=(workflow.room_id.map(|id| id.to_string()).unwrap_or_default());
                button type="submit" { "Test run" }
            }
            details open[refused.is_some()] {
                summary { "Edit" }
                form.card method="post" action=(base) {
                    input type="hidden" name="csrf" value=(csrf);
                    @match (&draft, &refused) {
                        (_, Some((draft, message))) => (editor(draft, Some(message))),
                        (Some(draft), None) => (editor(draft, None)),
                        (None, None) => {},
                    }
                    button type="submit" { "Save" }
                }
            }
        } @else {
            h2 { "Code" }
            pre { (workflow.code) }
        }
        h2 { "Executions" }
        @if executions.items.is_empty() { p.muted { "No runs yet." } }
        div.scroll {
            table #executions {
                thead { tr { th { "Event" } th { "Status" } th { "Duration" } th { "When" } th { "Result" } th { "Logs" } } }
                tbody {
                    @for execution in &executions.items {
                        tr {
                            td { code { (execution.event) } }
                            td { span.badge { (execution.status.as_str()) } }
                            td { (execution.duration_ms) " ms" }
                            td { (when(execution.created_at)) }
                            td { details { summary { "Show" } pre { (execution.result) } } }
                            td {
                                @if execution.logs.is_empty() { span.muted { "none" } }
                                @else { details { summary { "Show" } pre { (execution.logs) } } }
                            }
                        }
                    }
                }
            }
        }
    };
    let status = if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(page_with_status(
        status,
        session,
        Nav::Workflows,
        &workflow.name,
        body,
    ))
}

async fn update_workflow(
    State(state): State<AppState>,
    session: Signed,
    Path(workflow_id): Path<String>,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> PageResult {
    let fields = Fields(fields);
    session.check_csrf(fields.get("csrf"))?;
    session.check_write()?;
    let workflow = find(&state, &session, &workflow_id).await?;
    let changes = if fields.get("toggle") == "1" {
        WorkflowChanges {
            enabled: Some(!workflow.enabled),
            ..WorkflowChanges::default()
        }
    } else {
        let draft = Draft::from_fields(&fields);
        match check(&state, &session, &draft).await? {
            Ok((name, events, room_id)) => WorkflowChanges {
                name: Some(name),
                code: Some(draft.code),
                events: Some(events),
                room_id: Some(room_id),
                enabled: None,
            },
            Err(message) => {
                let shown = Shown::Refused(draft, &message);
                return render_workflow(&state, &session, &workflow, shown).await;
            }
        }
    };
    state
        .store()
        .update_workflow(session.account.id, &workflow.id, &changes)
        .await?;
    Ok(see_other(&format!("/dashboard/workflows/{}", workflow.id)))
}

async fn test_run(
    State(state): State<AppState>,
    session: Signed,
    Path(workflow_id): Path<String>,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> PageResult {
    let fields = Fields(fields);
    session.check_csrf(fields.get("csrf"))?;
    session.check_write()?;
    let workflow = find(&state, &session, &workflow_id).await?;
    let room = match room_field(&state, &session, fields.get("room")).await? {
        Ok(Some(room)) => room,
        Ok(None) => match workflow.room_id {
            Some(room) => room,
            None => {
                let message = "Name the room to run it in: the workflow runs in every room.";
                return test_refused(&state, &session, &workflow, message).await;
            }
        },
        Err(message) => return test_refused(&state, &session, &workflow, &message).await,
    };
    let event = sample_event(&state, &workflow, session.account.id, room)
        .await
        .map_err(|_| {
            layout::problem(
                StatusCode::NOT_FOUND,
                "Room not found",
                "There is no such room.",
            )
        })?;
    let name = event["event"].as_str().unwrap_or("test").to_owned();
    let execution = state
        .workflows()
        .execute(&workflow, room, &name, event)
        .await;
    render_workflow(&state, &session, &workflow, Shown::Tested(execution)).await
}

async fn test_refused(
    state: &AppState,
    session: &Signed,
    workflow: &Workflow,
    message: &str,
) -> PageResult {
    let shown = Shown::Refused(Draft::of(workflow), message);
    render_workflow(state, session, workflow, shown).await
}

async fn delete_workflow(
    State(state): State<AppState>,
    session: Signed,
    Path(workflow_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let workflow = find(&state, &session, &workflow_id).await?;
    state
        .store()
        .delete_workflow(session.account.id, &workflow.id)
        .await?;
    Ok(see_other("/dashboard/workflows"))
}
