//! REST: webhooks (`/v1/accounts/:accountId/webhooks`) and their delivery logs.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::{JsonBody, PageQuery, PathParams, QueryParams};
use super::openapi::{Deleted, Envelope, ErrorEnvelope};
use super::routes::Routes;
use super::validation::{self, schemas, Patch};
use crate::auth::AccountAuth;
use crate::domain::webhook::{test_body, Delivery, Webhook, WithSecret, TEST_EVENT};
use crate::domain::{EventKind, RoomId, Timestamp};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::webhooks::{NewWebhook, WebhookChanges};
use crate::store::Entity;
use crate::webhooks::{guard, signature};

pub fn routes() -> Routes {
    Routes::new()
        .post("/webhooks", create_webhook)
        .get("/webhooks", list_webhooks)
        .get("/webhooks/{id}", get_webhook)
        .patch("/webhooks/{id}", update_webhook)
        .delete("/webhooks/{id}", delete_webhook)
        .get("/webhooks/{id}/deliveries", list_deliveries)
        .post("/webhooks/{id}/test", test_webhook)
        .post("/webhooks/{id}/rotate-secret", rotate_secret)
}

#[derive(OpenApi)]
#[openapi(paths(
    create_webhook,
    list_webhooks,
    get_webhook,
    update_webhook,
    delete_webhook,
    list_deliveries,
    test_webhook,
    rotate_secret
))]
pub struct Api;

#[derive(Serialize, ToSchema)]
struct WebhookData {
    webhook: Webhook,
}

/// A webhook shown with its `secret` (creation and rotation only).
#[derive(Serialize, ToSchema)]
struct WebhookWithSecret<'a> {
    #[schema(value_type = Webhook)]
    webhook: WithSecret<'a>,
}

#[derive(Serialize, ToSchema)]
struct WebhookList {
    /// Without `secret`.
    webhooks: Vec<Webhook>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryList {
    /// Newest first.
    deliveries: Vec<Delivery>,
    total: i64,
    limit: i64,
    offset: i64,
    /// The `offset` of the next page (`null`: nothing after); a page may end before `limit`
    /// (`limits.max_page_bytes`).
    #[schema(required = true)]
    next_offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct DeliveryData {
    /// A pending `webhook.test` delivery.
    delivery: Delivery,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateWebhookBody {
    /// http(s), at most 2048 characters, by default not a private address.
    #[schema(schema_with = schemas::webhook_url, required = true, example = "https://example.com/collabkit")]
    url: Option<String>,
    /// Repeats are dropped.
    #[schema(value_type = Vec<EventKind>, required = true, min_items = 1)]
    events: Option<Vec<String>>,
    /// A room of the account (404 otherwise); absent or `null`: every room.
    #[schema(value_type = Option<RoomId>)]
    room_id: Option<String>,
}

fn check_url(state: &AppState, url: String) -> Result<String, ApiError> {
    guard::check_url(&url, state.config().webhooks.allow_private_addresses)
        .map_err(|message| ApiError::validation("url", message))?;
    Ok(url)
}

#[utoipa::path(
    post, path = "/webhooks", tag = "Webhooks", operation_id = "create_webhook",
    request_body = CreateWebhookBody,
    responses(
        (status = 201, description = "Webhook created: the reply is the only one that shows the new `secret`", body = Envelope<WebhookWithSecret>),
        (status = 404, description = "`NOT_FOUND`: no such room", body = ErrorEnvelope),
    )
)]
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
        WebhookWithSecret {
            webhook: created.with_secret(&webhook.secret),
        },
    ))
}

#[utoipa::path(
    get, path = "/webhooks", tag = "Webhooks", operation_id = "list_webhooks",
    params(
        ("search" = Option<String>, Query, max_length = 256, description = "Case-insensitive substring of the URL"),
        PageQuery
    ),
    responses((status = 200, description = "Webhooks retrieved: newest first", body = Envelope<WebhookList>))
)]
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
        WebhookList {
            webhooks: listed.items,
            total: listed.total,
            limit: page.limit,
            offset: page.offset,
        },
    ))
}

async fn find(state: &AppState, auth: AccountAuth, path: &PathParams) -> Result<Webhook, ApiError> {
    state
        .store()
        .get_webhook(auth.account_id, path.text("id"))
        .await?
        .ok_or(ApiError::not_found(Entity::Webhook))
}

#[utoipa::path(
    get, path = "/webhooks/{id}", tag = "Webhooks", operation_id = "get_webhook",
    params(("id" = String, Path, description = "`wh_...`")),
    responses((status = 200, description = "Webhook retrieved (without `secret`)", body = Envelope<WebhookData>))
)]
async fn get_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let webhook = find(&state, auth, &path).await?;
    Ok(Reply::ok("Webhook retrieved", WebhookData { webhook }))
}

/// At least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(min_properties = 1)]
struct UpdateWebhookBody {
    #[serde(default)]
    #[schema(schema_with = schemas::webhook_url)]
    url: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Vec<EventKind>, min_items = 1)]
    events: Patch<Vec<String>>,
    /// `null`: every room of the account.
    #[serde(default)]
    #[schema(value_type = Option<RoomId>)]
    room_id: Patch<String>,
    /// Disabling fails the webhook's pending deliveries; enabling resets its failure count.
    #[serde(default)]
    #[schema(value_type = bool)]
    enabled: Patch<bool>,
}

#[utoipa::path(
    patch, path = "/webhooks/{id}", tag = "Webhooks", operation_id = "update_webhook",
    params(("id" = String, Path, description = "`wh_...`")),
    request_body = UpdateWebhookBody,
    responses((status = 200, description = "Webhook updated (without `secret`)", body = Envelope<WebhookData>))
)]
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
    Ok(Reply::ok("Webhook updated", WebhookData { webhook }))
}

#[utoipa::path(
    delete, path = "/webhooks/{id}", tag = "Webhooks", operation_id = "delete_webhook",
    params(("id" = String, Path, description = "`wh_...`")),
    responses((status = 200, description = "Webhook deleted", body = Envelope<Deleted<String>>))
)]
async fn delete_webhook(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let id = path.text("id");
    state.store().delete_webhook(auth.account_id, id).await?;
    Ok(Reply::ok("Webhook deleted", Deleted { id }))
}

#[utoipa::path(
    get, path = "/webhooks/{id}/deliveries", tag = "Webhooks", operation_id = "list_deliveries",
    params(("id" = String, Path, description = "`wh_...`"), PageQuery),
    responses((status = 200, description = "Deliveries retrieved", body = Envelope<DeliveryList>))
)]
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
        DeliveryList {
            deliveries: listed.items,
            total: listed.total,
            limit: page.limit,
            offset: page.offset,
            next_offset: page.next_offset(returned, has_more),
        },
    ))
}

/// Queues a `webhook.test` delivery through the normal path (it shows in the log).
#[utoipa::path(
    post, path = "/webhooks/{id}/test", tag = "Webhooks", operation_id = "test_webhook",
    params(("id" = String, Path, description = "`wh_...`")),
    responses(
        (status = 201, description = "Test delivery queued", body = Envelope<DeliveryData>),
        (status = 409, description = "`CONFLICT`: the webhook is disabled", body = ErrorEnvelope),
    )
)]
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
        DeliveryData { delivery },
    ))
}

/// A new signing secret, shown in this reply only.
#[utoipa::path(
    post, path = "/webhooks/{id}/rotate-secret", tag = "Webhooks", operation_id = "rotate_secret",
    params(("id" = String, Path, description = "`wh_...`")),
    responses((status = 200, description = "Secret rotated: the reply shows the new `secret`", body = Envelope<WebhookWithSecret>))
)]
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
    Ok(Reply::ok(
        "Secret rotated",
        WebhookWithSecret {
            webhook: webhook.with_secret(&secret),
        },
    ))
}
