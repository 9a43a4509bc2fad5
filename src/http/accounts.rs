//! REST: the calling account and its API keys (`/v1/accounts/:accountId`, `/keys`).

use axum::extract::State;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::PathParams;
use super::openapi::Envelope;
use super::routes::Routes;
use crate::auth::{AccountAuth, GeneratedKey};
use crate::domain::{Account, ApiKey, ApiKeyId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Entity;

/// Routes below `/v1/accounts/:accountId` (the account itself is at that path: `http::router`).
pub fn routes() -> Routes {
    Routes::new()
        .get("/keys", list_api_keys)
        .post("/keys", create_api_key)
        .delete("/keys/{keyId}", revoke_api_key)
}

#[derive(OpenApi)]
#[openapi(paths(list_api_keys, create_api_key, revoke_api_key))]
pub struct Api;

#[derive(Serialize, ToSchema)]
pub struct AccountData {
    account: Account,
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    /// The account's keys, revoked ones included.
    keys: Vec<ApiKey>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct KeyCreated {
    key: ApiKey,
    /// The secret: shown once, here.
    #[schema(example = "ck_3kTq9ZpLw2XvB7mRa")]
    api_key: String,
    /// Its Bearer token: `base64(accountId:apiKey)`.
    token: String,
}

#[derive(Serialize, ToSchema)]
struct KeyData {
    /// With `revoked_at`.
    key: ApiKey,
}

#[utoipa::path(
    get, path = "/v1/accounts/{accountId}", tag = "Accounts", operation_id = "get_account",
    responses((status = 200, description = "Account retrieved", body = Envelope<AccountData>))
)]
pub async fn get_account(
    auth: AccountAuth,
    State(state): State<AppState>,
) -> Result<Reply, ApiError> {
    let account = state
        .store()
        .get_account(auth.account_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Account))?;
    Ok(Reply::ok("Account retrieved", AccountData { account }))
}

#[utoipa::path(
    get, path = "/keys", tag = "Accounts", operation_id = "list_api_keys",
    responses((status = 200, description = "API keys retrieved", body = Envelope<KeyList>))
)]
async fn list_api_keys(
    auth: AccountAuth,
    State(state): State<AppState>,
) -> Result<Reply, ApiError> {
    let keys = state.store().list_api_keys(auth.account_id).await?;
    Ok(Reply::ok("API keys retrieved", KeyList { keys }))
}

/// Creates an API key, shown once, in this reply, with its ready Bearer token.
///
/// An account holds at most `auth.max_keys_per_account` unrevoked keys (one more:
/// `VALIDATION_ERROR` on `keys`).
#[utoipa::path(
    post, path = "/keys", tag = "Accounts", operation_id = "create_api_key",
    responses(
        (status = 201, description = "API key created", body = Envelope<KeyCreated>),
        (status = 400, description = "`VALIDATION_ERROR` on `keys`: the account holds `auth.max_keys_per_account` keys already", body = super::openapi::ErrorEnvelope),
    )
)]
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
        KeyCreated {
            key,
            token: generated.bearer_token(),
            api_key: generated.secret,
        },
    ))
}

/// A key can revoke any key of its account, itself included.
#[utoipa::path(
    delete, path = "/keys/{keyId}", tag = "Accounts", operation_id = "revoke_api_key",
    params(("keyId" = ApiKeyId, Path)),
    responses((status = 200, description = "API key revoked", body = Envelope<KeyData>))
)]
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
    Ok(Reply::ok("API key revoked", KeyData { key }))
}
