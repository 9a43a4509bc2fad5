//! Webhooks: the organization's webhooks and each one's delivery log (status, attempts,
//! response code, payload). Creating and changing them is the REST API's for now
//! (`/v1/accounts/:accountId/webhooks`, which the session cookie also opens).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use maud::html;

use super::layout::{self, page, when, Nav};
use super::{PageResult, Signed};
use crate::state::AppState;
use crate::store::Page;

/// Deliveries shown on a webhook's page.
const DELIVERIES_SHOWN: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/webhooks", get(webhooks_page))
        .route("/dashboard/webhooks/{webhookId}", get(webhook_page))
}

async fn webhooks_page(State(state): State<AppState>, session: Signed) -> PageResult {
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
        p { "Webhooks are created and changed with the REST API ("
            code { "POST /v1/accounts/" (session.account.id) "/webhooks" } "); their signing secret is shown once then." }
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
    };
    Ok(page(&session, Nav::Webhooks, "Webhooks", body))
}

async fn webhook_page(
    State(state): State<AppState>,
    session: Signed,
    Path(webhook_id): Path<String>,
) -> PageResult {
    let hook = state
        .store()
        .get_webhook(session.account.id, &webhook_id)
        .await?
        .ok_or_else(|| {
            layout::problem(
                StatusCode::NOT_FOUND,
                "Webhook not found",
                "There is no such webhook in this organization.",
            )
        })?;
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
    let body = html! {
        dl.facts {
            dt { "ID" } dd { code { (hook.id) } }
            dt { "State" } dd { @if hook.enabled { "enabled" } @else { "disabled" } }
            dt { "Updated" } dd { (when(hook.updated_at)) }
        }
        h2 { "Deliveries" }
        @if deliveries.items.is_empty() { p.muted { "No deliveries yet." } }
        div.scroll {
            table {
                thead { tr { th { "Event" } th { "Status" } th { "Attempts" } th { "Response" } th { "Last attempt" } th { "Payload" } } }
                tbody {
                    @for d in &deliveries.items {
                        tr {
                            td { code { (d.event) } }
                            td { span.badge { (d.status.as_str()) } }
                            td { (d.attempts) }
                            td { @match d.status_code { Some(code) => (code), None => span.muted { "—" } } }
                            td { @match d.last_attempt_at { Some(at) => (when(at)), None => span.muted { "not yet" } } }
                            td { details { summary { "Show" } pre { (d.payload) } } }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&session, Nav::Webhooks, &hook.url, body))
}
