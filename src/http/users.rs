//! REST: users (`/v1/accounts/:accountId/users`), each created with its JWT.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::envelope::Reply;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::validation::{self, Patch};
use crate::auth::AccountAuth;
use crate::domain::{RoomId, Timestamp, User, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Entity, NewUser, Page, RoomScope, UserChanges};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route("/users/custom/{customId}", get(get_user_by_custom_id))
        .route(
            "/users/{userId}",
            get(get_user).patch(update_user).delete(delete_user),
        )
}

/// A user as list-users and get-user show it: with its `token`.
#[derive(Serialize)]
struct UserWithToken<'a> {
    #[serde(flatten)]
    user: &'a User,
    token: String,
}

fn with_token<'a>(state: &AppState, user: &'a User) -> UserWithToken<'a> {
    UserWithToken {
        user,
        token: state.jwt().user_token(user),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateUserBody {
    name: Option<String>,
    room_id: Option<String>,
    profile_picture: Option<String>,
    custom_id: Option<String>,
}

async fn create_user(
    auth: AccountAuth,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateUserBody>,
) -> Result<Reply, ApiError> {
    let name = validation::required_name("name", body.name)?;
    let room_id: RoomId = body
        .room_id
        .ok_or_else(|| ApiError::validation("roomId", "roomId is required"))?
        .parse()
        .map_err(|_| ApiError::validation("roomId", "roomId must be a UUID"))?;
    let user = NewUser {
        id: UserId::new(),
        account_id: auth.account_id,
        room_id,
        name,
        profile_picture: body
            .profile_picture
            .map(|url| validation::picture_url("profilePicture", url))
            .transpose()?,
        custom_id: body
            .custom_id
            .map(|id| validation::custom_id("customId", id))
            .transpose()?,
        created_at: Timestamp::now(),
    };
    let user = state.engine().create_user(&user).await?;
    let token = state.jwt().user_token(&user);
    Ok(Reply::created(
        "User created",
        json!({ "user": user, "token": token }),
    ))
}

/// The room named by the required `roomId` query parameter, checked to exist.
async fn room_scope(
    state: &AppState,
    auth: AccountAuth,
    query: &QueryParams,
) -> Result<RoomScope, ApiError> {
    let room_id: RoomId = query.required_id("roomId")?;
    state
        .store()
        .get_room(auth.account_id, room_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    Ok(RoomScope {
        account_id: auth.account_id,
        room_id,
    })
}

async fn list_users(
    auth: AccountAuth,
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let (filter, page) = (query.filter()?, query.page()?);
    let scope = room_scope(&state, auth, &query).await?;
    let listed = state.store().list_users(scope, &filter, page).await?;
    let users: Vec<_> = listed.items.iter().map(|u| with_token(&state, u)).collect();
    Ok(Reply::ok(
        "Users retrieved",
        json!({ "users": users, "total": listed.total, "limit": page.limit, "offset": page.offset }),
    ))
}

async fn get_user(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let user_id: UserId = path.id("userId", Entity::User)?;
    let scope = room_scope(&state, auth, &query).await?;
    let user = state.store().get_user(scope, user_id).await?;
    user_with_sessions(&state, user, query.page()?).await
}

async fn get_user_by_custom_id(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&state, auth, &query).await?;
    let user = state
        .store()
        .get_user_by_custom_id(scope, path.text("customId"))
        .await?;
    user_with_sessions(&state, user, query.page()?).await
}

/// The documented get-user reply: the user with its token, and a page of its sessions,
/// newest first (a user who joined and left a million times must not make a huge answer).
async fn user_with_sessions(
    state: &AppState,
    user: Option<User>,
    page: Page,
) -> Result<Reply, ApiError> {
    let user = user.ok_or(ApiError::not_found(Entity::User))?;
    let sessions = state.store().list_sessions(user.id, page).await?;
    Ok(Reply::ok(
        "User retrieved",
        json!({
            "user": with_token(state, &user), "sessions": sessions.items,
            "sessionsTotal": sessions.total, "limit": page.limit, "offset": page.offset,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateUserBody {
    #[serde(default)]
    name: Patch<String>,
    #[serde(default)]
    profile_picture: Patch<String>,
    #[serde(default)]
    custom_id: Patch<String>,
}

async fn update_user(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
    JsonBody(body): JsonBody<UpdateUserBody>,
) -> Result<Reply, ApiError> {
    let user_id: UserId = path.id("userId", Entity::User)?;
    validation::at_least_one(&[
        ("name", !body.name.is_absent()),
        ("profilePicture", !body.profile_picture.is_absent()),
        ("customId", !body.custom_id.is_absent()),
    ])?;
    let changes = UserChanges {
        name: match body.name {
            Patch::Absent => None,
            Patch::Null => return Err(ApiError::validation("name", "name must not be null")),
            Patch::Value(name) => Some(validation::name("name", name)?),
        },
        profile_picture: body
            .profile_picture
            .into_change()
            .map(|url| {
                url.map(|u| validation::picture_url("profilePicture", u))
                    .transpose()
            })
            .transpose()?,
        custom_id: body
            .custom_id
            .into_change()
            .map(|id| id.map(|i| validation::custom_id("customId", i)).transpose())
            .transpose()?,
    };
    let scope = room_scope(&state, auth, &query).await?;
    let user = state.engine().update_user(scope, user_id, &changes).await?;
    Ok(Reply::ok("User updated", json!({ "user": user })))
}

async fn delete_user(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let user_id: UserId = path.id("userId", Entity::User)?;
    let scope = room_scope(&state, auth, &query).await?;
    let user = state.engine().delete_user(scope, user_id).await?;
    Ok(Reply::ok("User deleted", json!({ "id": user.id })))
}
