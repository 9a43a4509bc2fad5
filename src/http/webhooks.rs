//! REST: webhooks (`/v1/accounts/:accountId/webhooks`) and their delivery logs.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::envelope::Reply;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::validation::{self, Patch};
use crate::auth::AccountAuth;
use crate::domain::webhook::{test_body, Webhook, TEST_EVENT};
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::webhooks::{NewWebhook, WebhookChanges};
use crate::store::Entity;
use crate::webhooks::{guard, signature};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", post(create_webhook).get(list_webhooks))
        .route(
            "/webhooks/{id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/webhooks/{id}/test", post(test_webhook))
        .route("/webhooks/{id}/rotate-secret", post(rotate_secret))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateWebhookBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    room_id: Option<String>,
}

fn check_url(state: &AppState, url: String) -> Result<String, ApiError> {
    guard::check_url(&url, state.config().webhooks.allow_private_addresses)
        .map_err(|message| ApiError::validation("url", message))?;
    Ok(url)
}

async fn create_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateWebhookBody>,
) -> Result<Reply, ApiError> {
    let url = body
        .url
        .ok_or_else(|| ApiError::validation("url", "url is required"))?;
    let url = check_url(&state, url)?;
    let events = validation::events(
        body.events
            .ok_or_else(|| ApiError::validation("events", "events is required"))?,
    )?;
    let room_id = match body.room_id {
        Some(text) => Some(validation::room(&state, auth.account_id, &text).await?),
        None => None,
    };
    let webhook = NewWebhook {
        id: Webhook::new_id(),
        account_id: auth.account_id,
        url,
        secret: signature::new_secret(),
        events,
        room_id,
        created_at: Timestamp::now(),
    };
    let limit = state.config().webhooks.max_webhooks_per_account;
    let created = state.store().create_webhook(&webhook, limit).await?;
    Ok(Reply::created(
        "Webhook created",
        json!({ "webhook": created.with_secret(&webhook.secret) }),
    ))
}

async fn list_webhooks(
    auth: AccountAuth,
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let (page, filter) = (query.page()?, query.filter()?);
    let listed = state
        .store()
        .list_webhooks(auth.account_id, filter.search.as_deref(), page)
        .await?;
    Ok(Reply::ok(
        "Webhooks retrieved",
        json!({
            "webhooks": listed.items, "total": listed.total,
            "limit": page.limit, "offset": page.offset,
        }),
    ))
}

async fn find(state: &AppState, auth: AccountAuth, path: &PathParams) -> Result<Webhook, ApiError> {
    state
        .store()
        .get_webhook(auth.account_id, path.text("id"))
        .await?
        .ok_or(ApiError::not_found(Entity::Webhook))
}

async fn get_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let webhook = find(&state, auth, &path).await?;
    Ok(Reply::ok(
        "Webhook retrieved",
        json!({ "webhook": webhook }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateWebhookBody {
    #[serde(default)]
    url: Patch<String>,
    #[serde(default)]
    events: Patch<Vec<String>>,
    #[serde(default)]
    room_id: Patch<String>,
    #[serde(default)]
    enabled: Patch<bool>,
}

async fn update_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<UpdateWebhookBody>,
) -> Result<Reply, ApiError> {
    validation::at_least_one(&[
        ("url", !body.url.is_absent()),
        ("events", !body.events.is_absent()),
        ("roomId", !body.room_id.is_absent()),
        ("enabled", !body.enabled.is_absent()),
    ])?;
    let changes = WebhookChanges {
        url: validation::not_null("url", body.url)?
            .map(|url| check_url(&state, url))
            .transpose()?,
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
    let webhook = state
        .store()
        .update_webhook(auth.account_id, path.text("id"), &changes)
        .await?;
    Ok(Reply::ok("Webhook updated", json!({ "webhook": webhook })))
}

async fn delete_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let id = path.text("id");
    state.store().delete_webhook(auth.account_id, id).await?;
    Ok(Reply::ok("Webhook deleted", json!({ "id": id })))
}

async fn list_deliveries(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let page = query.page()?;
    let max_bytes = state.config().page_bytes();
    let listed = state
        .store()
        .list_deliveries(auth.account_id, path.text("id"), page, max_bytes)
        .await?;
    let returned = listed.items.len();
    let has_more = page.offset + (returned as i64) < listed.total;
    Ok(Reply::ok(
        "Deliveries retrieved",
        json!({
            "deliveries": listed.items, "total": listed.total,
            "limit": page.limit, "offset": page.offset,
            "nextOffset": page.next_offset(returned, has_more),
        }),
    ))
}

/// Queues a `webhook.test` delivery through the normal path (it shows in the log).
async fn test_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let webhook = find(&state, auth, &path).await?;
    if !webhook.enabled {
        return Err(ApiError::Conflict(
            "The webhook is disabled; enable it before testing it".into(),
        ));
    }
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = test_body(&event_id, Timestamp::now(), &webhook.id);
    let delivery = state
        .store()
        .queue_delivery(auth.account_id, &webhook.id, TEST_EVENT, &event_id, &body)
        .await?;
    // Wake the worker: a test is expected to go out at once.
    state.bus().wake();
    Ok(Reply::created(
        "Test delivery queued",
        json!({ "delivery": delivery }),
    ))
}

async fn rotate_secret(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let secret = signature::new_secret();
    let webhook = state
        .store()
        .set_webhook_secret(auth.account_id, path.text("id"), &secret)
        .await?;
    let data: Value = json!({ "webhook": webhook.with_secret(&secret) });
    Ok(Reply::ok("Secret rotated", data))
}
