//! Webhooks: the organization's webhooks (create, with the signing secret shown once), a
//! webhook's page (edit its URL, events and room, enable or disable it, rotate its secret,
//! send a test event, delete it) and its delivery log (status, attempts, response code,
//! payload; "retry now" for a failed delivery).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::layout::{self, page, secret_once, when, Nav};
use super::{room_field, see_other, CsrfForm, Fields, PageError, PageForm, PageResult, Signed};
use crate::domain::webhook::{test_body, Webhook, TEST_EVENT};
use crate::domain::{EventKind, RoomId, Timestamp};
use crate::state::AppState;
use crate::store::webhooks::{NewWebhook, WebhookChanges};
use crate::store::Page;
use crate::webhooks::{guard, signature};

/// Deliveries shown on a webhook's page.
const DELIVERIES_SHOWN: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/webhooks",
            get(webhooks_page).post(create_webhook),
        )
        .route(
            "/dashboard/webhooks/{webhookId}",
            get(webhook_page).post(update_webhook),
        )
        .route("/dashboard/webhooks/{webhookId}/test", post(send_test))
        .route(
            "/dashboard/webhooks/{webhookId}/secret",
            post(rotate_secret),
        )
        .route(
            "/dashboard/webhooks/{webhookId}/delete",
            post(delete_webhook),
        )
        .route(
            "/dashboard/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
            post(retry_delivery),
        )
}

fn bad(detail: &str) -> PageError {
    layout::problem(StatusCode::BAD_REQUEST, "Webhook not saved", detail).into()
}

/// URL, events and room from a form, checked as the REST API checks them.
async fn read_form(
    state: &AppState,
    session: &Signed,
    fields: &Fields,
) -> Result<(String, Vec<EventKind>, Option<RoomId>), PageError> {
    let url = fields.get("url").trim().to_owned();
    guard::check_url(&url, state.config().webhooks.allow_private_addresses)
        .map_err(|message| bad(&message))?;
    let mut events = Vec::new();
    for name in fields.all("events") {
        let kind = EventKind::parse(name).ok_or_else(|| bad("Unknown event."))?;
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    if events.is_empty() {
        return Err(bad("Choose at least one event."));
    }
    let room_id = room_field(state, session, fields.get("room"))
        .await?
        .map_err(|message| bad(&message))?;
    Ok((url, events, room_id))
}

fn webhook_fields(hook: Option<&Webhook>) -> Markup {
    html! {
        label for="webhook-url" { "URL (https://, a public address)" }
        input #webhook-url type="url" name="url" required maxlength="2048" value=(hook.map_or("", |h| h.url.as_str()));
        fieldset {
            legend { "Events" }
            @for kind in EventKind::ALL {
                @let id = format!("event-{}", kind.name().replace('.', "-"));
                div.check {
                    input id=(id) type="checkbox" name="events" value=(kind.name()) checked[hook.is_some_and(|h| h.events.contains(&kind))];
                    label for=(id) { code { (kind.name()) } }
                }
            }
        }
        label for="webhook-room" { "Only this room's events (a room ID; empty: every room)" }
        input #webhook-room type="text" name="room" value=(hook.and_then(|h| h.room_id).map(|id| id.to_string()).unwrap_or_default());
    }
}

async fn webhooks_page(State(state): State<AppState>, session: Signed) -> PageResult {
    render_list(&state, &session, None).await
}

async fn render_list(
    state: &AppState,
    session: &Signed,
    created: Option<(String, String)>,
) -> PageResult {
    let listed = state
        .store()
        .list_webhooks(
            session.account.id,
            None,
            Page {
                limit: 100,
                offset: 0,
            },
        )
        .await?;
    let body = html! {
        @if let Some((url, secret)) = &created {
            section.notice aria-labelledby="secret-title" {
                h2 #secret-title { "Webhook created: " (url) }
                p { "Deliveries are signed with this secret (see docs/webhooks.md)." }
                (secret_once("Signing secret", "webhook-secret", secret))
            }
        }
        @if listed.items.is_empty() { p.muted { "No webhooks yet." } }
        @else {
            div.scroll {
                table {
                    thead { tr { th { "URL" } th { "Events" } th { "Room" } th { "State" } th { "Created" } } }
                    tbody {
                        @for hook in &listed.items {
                            tr {
                                td { a href={ "/dashboard/webhooks/" (hook.id) } { (hook.url) } }
                                td { @for (i, kind) in hook.events.iter().enumerate() { @if i > 0 { ", " } code { (kind.name()) } } }
                                td { @match hook.room_id { Some(id) => a href={ "/dashboard/rooms/" (id) } { "one room" }, None => "all rooms" } }
                                td { @if hook.enabled { span.badge.on { "enabled" } } @else { span.badge.off { "disabled" } } }
                                td { (when(hook.created_at)) }
                            }
                        }
                    }
                }
            }
        }
        @if session.role.may_write() {
            h2 { "New webhook" }
            form.card method="post" action="/dashboard/webhooks" {
                input type="hidden" name="csrf" value=(session.csrf());
                (webhook_fields(None))
                button type="submit" { "Create webhook" }
            }
        }
    };
    Ok(page(session, Nav::Webhooks, "Webhooks", body))
}

async fn create_webhook(
    State(state): State<AppState>,
    session: Signed,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> PageResult {
    let fields = Fields(fields);
    session.check_csrf(fields.get("csrf"))?;
    session.check_write()?;
    let (url, events, room_id) = read_form(&state, &session, &fields).await?;
    let webhook = NewWebhook {
        id: Webhook::new_id(),
        account_id: session.account.id,
        url: url.clone(),
        secret: signature::new_secret(),
        events,
        room_id,
        created_at: Timestamp::now(),
    };
    let limit = state.config().webhooks.max_webhooks_per_account;
    state.store().create_webhook(&webhook, limit).await?;
    render_list(&state, &session, Some((url, webhook.secret))).await
}

async fn find(state: &AppState, session: &Signed, id: &str) -> Result<Webhook, PageError> {
    state
        .store()
        .get_webhook(session.account.id, id)
        .await?
        .ok_or_else(|| {
            layout::problem(
                StatusCode::NOT_FOUND,
                "Webhook not found",
                "There is no such webhook in this organization.",
            )
            .into()
        })
}

async fn webhook_page(
    State(state): State<AppState>,
    session: Signed,
    Path(webhook_id): Path<String>,
) -> PageResult {
    let hook = find(&state, &session, &webhook_id).await?;
    render_webhook(&state, &session, &hook, None).await
}

async fn render_webhook(
    state: &AppState,
    session: &Signed,
    hook: &Webhook,
    secret: Option<&str>,
) -> PageResult {
    let deliveries = state
        .store()
        .list_deliveries(
            session.account.id,
            &hook.id,
            Page {
                limit: DELIVERIES_SHOWN,
                offset: 0,
            },
            state.config().page_bytes(),
        )
        .await?;
    let csrf = session.csrf();
    let writes = session.role.may_write();
    let base = format!("/dashboard/webhooks/{}", hook.id);
    let body = html! {
        @if let Some(secret) = secret {
            section.notice { (secret_once("New signing secret", "webhook-secret", secret)) }
        }
        dl.facts {
            dt { "ID" } dd { code { (hook.id) } }
            dt { "State" } dd { @if hook.enabled { span.badge.on { "enabled" } } @else { span.badge.off { "disabled" } } }
            dt { "Updated" } dd { (when(hook.updated_at)) }
        }
        @if writes {
            div.actions {
                form.inline method="post" action={ (base) "/test" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Send test event" }
                }
                form.inline method="post" action=(base) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="toggle" value="1";
                    button type="submit" { @if hook.enabled { "Disable" } @else { "Enable" } }
                }
                form.inline method="post" action={ (base) "/secret" } data-confirm="Replace the signing secret? Receivers must use the new one." {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Rotate secret" }
                }
                form.inline method="post" action={ (base) "/delete" } data-confirm="Delete this webhook and its delivery log?" {
                    input type="hidden" name="csrf" value=(csrf);
                    button.danger type="submit" { "Delete" }
                }
            }
            details {
                summary { "Edit" }
                form.card method="post" action=(base) {
                    input type="hidden" name="csrf" value=(csrf);
                    (webhook_fields(Some(hook)))
                    button type="submit" { "Save" }
                }
            }
        }
        h2 { "Deliveries" }
        @if deliveries.items.is_empty() { p.muted { "No deliveries yet." } }
        div.scroll {
            table #deliveries {
                thead { tr { th { "Event" } th { "Status" } th { "Attempts" } th { "Response" } th { "Last attempt" } th { "Payload" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for d in &deliveries.items {
                        tr {
                            td { code { (d.event) } }
                            td { span.badge { (d.status.as_str()) } }
                            td { (d.attempts) }
                            td { @match d.status_code { Some(code) => (code), None => span.muted { "—" } } }
                            td { @match d.last_attempt_at { Some(at) => (when(at)), None => span.muted { "not yet" } } }
                            td { details { summary { "Show" } pre { (d.payload) } } }
                            td {
                                @if writes && d.status.as_str() == "failed" {
                                    form method="post" action={ (base) "/deliveries/" (d.id) "/retry" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { "Retry now" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(session, Nav::Webhooks, &hook.url, body))
}

async fn update_webhook(
    State(state): State<AppState>,
    session: Signed,
    Path(webhook_id): Path<String>,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> PageResult {
    let fields = Fields(fields);
    session.check_csrf(fields.get("csrf"))?;
    session.check_write()?;
    let hook = find(&state, &session, &webhook_id).await?;
    let changes = if fields.get("toggle") == "1" {
        WebhookChanges {
            enabled: Some(!hook.enabled),
            ..WebhookChanges::default()
        }
    } else {
        let (url, events, room_id) = read_form(&state, &session, &fields).await?;
        WebhookChanges {
            url: Some(url),
            events: Some(events),
            room_id: Some(room_id),
            enabled: None,
        }
    };
    state
        .store()
        .update_webhook(session.account.id, &hook.id, &changes)
        .await?;
    Ok(see_other(&format!("/dashboard/webhooks/{}", hook.id)))
}

async fn send_test(
    State(state): State<AppState>,
    session: Signed,
    Path(webhook_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let hook = find(&state, &session, &webhook_id).await?;
    if !hook.enabled {
        return Ok(conflict(
            "The webhook is disabled: enable it before testing it.",
        ));
    }
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = test_body(&event_id, Timestamp::now(), &hook.id);
    state
        .store()
        .queue_delivery(session.account.id, &hook.id, TEST_EVENT, &event_id, &body)
        .await?;
    state.bus().wake();
    Ok(see_other(&format!("/dashboard/webhooks/{}", hook.id)))
}

fn conflict(detail: &str) -> Response {
    layout::problem(StatusCode::CONFLICT, "Not done", detail)
}

async fn rotate_secret(
    State(state): State<AppState>,
    session: Signed,
    Path(webhook_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let hook = find(&state, &session, &webhook_id).await?;
    let secret = signature::new_secret();
    let hook = state
        .store()
        .set_webhook_secret(session.account.id, &hook.id, &secret)
        .await?;
    render_webhook(&state, &session, &hook, Some(&secret)).await
}

async fn delete_webhook(
    State(state): State<AppState>,
    session: Signed,
    Path(webhook_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let hook = find(&state, &session, &webhook_id).await?;
    state
        .store()
        .delete_webhook(session.account.id, &hook.id)
        .await?;
    Ok(see_other("/dashboard/webhooks"))
}

async fn retry_delivery(
    State(state): State<AppState>,
    session: Signed,
    Path((webhook_id, delivery_id)): Path<(String, String)>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let hook = find(&state, &session, &webhook_id).await?;
    match state
        .store()
        .retry_delivery(session.account.id, &hook.id, &delivery_id)
        .await
    {
        Ok(_) => {}
        Err(crate::store::StoreError::NotFound(_)) => {
            return Ok(conflict("Only a failed delivery can be retried."))
        }
        Err(other) => return Err(other.into()),
    }
    state.bus().wake();
    Ok(see_other(&format!("/dashboard/webhooks/{}", hook.id)))
}
