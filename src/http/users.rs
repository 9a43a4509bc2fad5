//! REST: users (`/v1/accounts/:accountId/users`), each created with its JWT.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::{JsonBody, ListQuery, PageQuery, PathParams, QueryParams};
use super::openapi::{Deleted, Envelope, ErrorEnvelope};
use super::routes::Routes;
use super::validation::{self, schemas, Patch};
use crate::auth::AccountAuth;
use crate::domain::{RoomId, Timestamp, User, UserId, UserSession};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Entity, NewUser, Page, RoomScope, UserChanges};

pub fn routes() -> Routes {
    Routes::new()
        .post("/users", create_user)
        .get("/users", list_users)
        .get("/users/custom/{customId}", get_user_by_custom_id)
        .get("/users/{userId}", get_user)
        .patch("/users/{userId}", update_user)
        .delete("/users/{userId}", delete_user)
}

#[derive(OpenApi)]
#[openapi(paths(
    create_user,
    list_users,
    get_user_by_custom_id,
    get_user,
    update_user,
    delete_user
))]
pub struct Api;

/// A user as list-users and get-user show it: with its `token`.
#[derive(Serialize, ToSchema)]
#[schema(as = CollabKitUserWithToken)]
struct UserWithToken<'a> {
    #[serde(flatten)]
    user: &'a User,
    /// The user's JWT (HS256, 90 days), the same one it was created with.
    token: String,
}

#[derive(Serialize, ToSchema)]
struct UserCreated {
    /// Without `token`: it is the sibling `token`.
    user: User,
    /// The JWT the client SDK connects with: HS256, claims `accountId`, `userId`, `roomId`,
    /// `iat`, `exp = iat + 90 days`.
    token: String,
}

#[derive(Serialize, ToSchema)]
struct UserList<'a> {
    users: Vec<UserWithToken<'a>>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserWithSessions<'a> {
    user: UserWithToken<'a>,
    /// Newest first.
    sessions: Vec<UserSession>,
    sessions_total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
struct UserData {
    user: User,
}

fn with_token<'a>(state: &AppState, user: &'a User) -> UserWithToken<'a> {
    UserWithToken {
        user,
        token: state.jwt().user_token(user),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateUserBody {
    #[schema(schema_with = schemas::name, required = true, example = "Alice")]
    name: Option<String>,
    /// A room of the account (an unknown one: 404).
    #[schema(value_type = RoomId, required = true)]
    room_id: Option<String>,
    /// An http or https URL.
    #[schema(schema_with = schemas::picture_url_or_null, example = "https://example.com/alice.png")]
    profile_picture: Option<String>,
    /// Unique in the room.
    #[schema(schema_with = schemas::custom_id_or_null, example = "alice-001")]
    custom_id: Option<String>,
}

/// Creates a user, offline, with a new JWT.
///
/// Fires `user.created` (webhooks, workflows) and `userCreated` (the room's sockets);
/// increments the room's `total_users_created`.
#[utoipa::path(
    post, path = "/users", tag = "Users", operation_id = "create_user",
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "User created", body = Envelope<UserCreated>),
        (status = 404, description = "`NOT_FOUND`: no such room", body = ErrorEnvelope),
        (status = 409, description = "`CONFLICT`: the `customId` is taken in the room", body = ErrorEnvelope),
    )
)]
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
    Ok(Reply::created("User created", UserCreated { user, token }))
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

#[utoipa::path(
    get, path = "/users", tag = "Users", operation_id = "list_users",
    params(("roomId" = RoomId, Query, description = "The room"), ListQuery),
    responses(
        (status = 200, description = "Users retrieved: newest first", body = Envelope<UserList>),
        (status = 404, description = "`NOT_FOUND`: no such room", body = ErrorEnvelope),
    )
)]
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
        UserList {
            users,
            total: listed.total,
            limit: page.limit,
            offset: page.offset,
        },
    ))
}

#[utoipa::path(
    get, path = "/users/{userId}", tag = "Users", operation_id = "get_user",
    params(("userId" = UserId, Path), ("roomId" = RoomId, Query, description = "The user's room"), PageQuery),
    responses((status = 200, description = "User retrieved, with a page of its sessions (`limit`, `offset`)", body = Envelope<UserWithSessions>))
)]
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

#[utoipa::path(
    get, path = "/users/custom/{customId}", tag = "Users", operation_id = "get_user_by_custom_id",
    params(("customId" = String, Path, description = "The user's `custom_id`"), ("roomId" = RoomId, Query, description = "The user's room"), PageQuery),
    responses((status = 200, description = "User retrieved, as by `get_user`", body = Envelope<UserWithSessions>))
)]
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
        UserWithSessions {
            user: with_token(state, &user),
            sessions: sessions.items,
            sessions_total: sessions.total,
            limit: page.limit,
            offset: page.offset,
        },
    ))
}

/// At least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(min_properties = 1)]
struct UpdateUserBody {
    #[serde(default)]
    #[schema(schema_with = schemas::name)]
    name: Patch<String>,
    /// An http or https URL; `null` clears it.
    #[serde(default)]
    #[schema(schema_with = schemas::picture_url_or_null)]
    profile_picture: Patch<String>,
    /// `null` clears it.
    #[serde(default)]
    #[schema(schema_with = schemas::custom_id_or_null)]
    custom_id: Patch<String>,
}

/// Fires `user.updated` and `userUpdated`.
#[utoipa::path(
    patch, path = "/users/{userId}", tag = "Users", operation_id = "update_user",
    params(("userId" = UserId, Path), ("roomId" = RoomId, Query, description = "The user's room")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "User updated", body = Envelope<UserData>),
        (status = 409, description = "`CONFLICT`: the `customId` is taken in the room", body = ErrorEnvelope),
    )
)]
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
    Ok(Reply::ok("User updated", UserData { user }))
}

/// Fires `user.deleted` and `userDeleted`; the user's sockets are closed.
#[utoipa::path(
    delete, path = "/users/{userId}", tag = "Users", operation_id = "delete_user",
    params(("userId" = UserId, Path), ("roomId" = RoomId, Query, description = "The user's room")),
    responses((status = 200, description = "User deleted", body = Envelope<Deleted<UserId>>))
)]
async fn delete_user(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let user_id: UserId = path.id("userId", Entity::User)?;
    let scope = room_scope(&state, auth, &query).await?;
    let user = state.engine().delete_user(scope, user_id).await?;
    Ok(Reply::ok("User deleted", Deleted { id: user.id }))
}
