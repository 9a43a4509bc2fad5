//! REST: the calling account and its API keys (`/v1/accounts/:accountId`, `/keys`).

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use serde_json::json;

use super::envelope::Reply;
use super::extract::PathParams;
use crate::auth::{AccountAuth, GeneratedKey};
use crate::domain::ApiKeyId;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Entity;

/// Routes below `/v1/accounts/:accountId`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_api_keys).post(create_api_key))
        .route("/keys/{keyId}", delete(revoke_api_key))
}

pub async fn get_account(
    auth: AccountAuth,
    State(state): State<AppState>,
) -> Result<Reply, ApiError> {
    let account = state
        .store()
        .get_account(auth.account_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Account))?;
    Ok(Reply::ok(
        "Account retrieved",
        json!({ "account": account }),
    ))
}

async fn list_api_keys(
    auth: AccountAuth,
    State(state): State<AppState>,
) -> Result<Reply, ApiError> {
    let keys = state.store().list_api_keys(auth.account_id).await?;
    Ok(Reply::ok("API keys retrieved", json!({ "keys": keys })))
}

/// The new key is shown once, in this reply, with its ready Bearer token.
async fn create_api_key(
    auth: AccountAuth,
    State(state): State<AppState>,
) -> Result<Reply, ApiError> {
    let generated = GeneratedKey::new(auth.account_id);
    let max_keys = state.config().auth.max_keys_per_account;
    let key = state
        .store()
        .create_api_key(&generated.record, max_keys)
        .await?;
    Ok(Reply::created(
        "API key created",
        json!({ "key": key, "apiKey": generated.secret, "token": generated.bearer_token() }),
    ))
}

async fn revoke_api_key(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let key_id: ApiKeyId = path.id("keyId", Entity::ApiKey)?;
    let key = state
        .store()
        .revoke_api_key(auth.account_id, key_id)
        .await?;
    state.keys().forget(key_id);
    Ok(Reply::ok("API key revoked", json!({ "key": key })))
}
