//! REST: rooms (`/v1/accounts/:accountId/rooms`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::{JsonBody, ListQuery, PathParams, QueryParams};
use super::openapi::{Deleted, Envelope, ErrorEnvelope};
use super::routes::Routes;
use super::validation::{self, schemas, Patch};
use crate::auth::AccountAuth;
use crate::domain::{AccountId, Room, RoomId, Timestamp, User};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Entity, NewRoom, RoomChanges, RoomScope};

pub fn routes() -> Routes {
    Routes::new()
        .post("/rooms", create_room)
        .get("/rooms", list_rooms)
        .get("/rooms/custom/{customId}", get_room_by_custom_id)
        .get("/rooms/{roomId}", get_room)
        .patch("/rooms/{roomId}", update_room)
        .delete("/rooms/{roomId}", delete_room)
        .post("/rooms/{roomId}/reconcile", reconcile_room)
}

#[derive(OpenApi)]
#[openapi(paths(
    create_room,
    list_rooms,
    get_room_by_custom_id,
    get_room,
    update_room,
    delete_room,
    reconcile_room
))]
pub struct Api;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRoomBody {
    #[schema(schema_with = schemas::name, required = true, example = "whiteboard/room-one")]
    name: Option<String>,
    /// Unique in the account.
    #[schema(schema_with = schemas::custom_id_or_null, example = "my-room-1")]
    custom_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct RoomData {
    room: Room,
}

#[derive(Serialize, ToSchema)]
struct RoomList {
    rooms: Vec<Room>,
    total: i64,
    limit: i64,
    offset: i64,
}

/// A room and a page of its users (without tokens).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RoomWithUsers<'a> {
    room: &'a Room,
    #[schema(value_type = Vec<User>)]
    users: &'a RawValue,
    users_total: i64,
    limit: i64,
    offset: i64,
}

#[derive(Serialize, ToSchema)]
struct Reconciled {
    room: Room,
    /// The count stored before.
    previous_active_participants: i64,
    /// The users really online now, as stored now.
    reconciled_active_participants: i64,
}

#[utoipa::path(
    post, path = "/rooms", tag = "Rooms", operation_id = "create_room",
    request_body = CreateRoomBody,
    responses(
        (status = 201, description = "Room created", body = Envelope<RoomData>),
        (status = 409, description = "`CONFLICT`: the `customId` is taken in the account", body = ErrorEnvelope),
    )
)]
async fn create_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateRoomBody>,
) -> Result<Reply, ApiError> {
    let room = NewRoom {
        id: RoomId::new(),
        account_id: auth.account_id,
        name: validation::required_name("name", body.name)?,
        custom_id: body
            .custom_id
            .map(|id| validation::custom_id("customId", id))
            .transpose()?,
        created_at: Timestamp::now(),
    };
    let room = state.store().create_room(&room).await?;
    Ok(Reply::created("Room created", RoomData { room }))
}

#[utoipa::path(
    get, path = "/rooms", tag = "Rooms", operation_id = "list_rooms",
    params(ListQuery),
    responses((status = 200, description = "Rooms retrieved: newest first", body = Envelope<RoomList>))
)]
async fn list_rooms(
    auth: AccountAuth,
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let (filter, page) = (query.filter()?, query.page()?);
    let rooms = state
        .store()
        .list_rooms(auth.account_id, &filter, page)
        .await?;
    Ok(Reply::ok(
        "Rooms retrieved",
        RoomList {
            rooms: rooms.items,
            total: rooms.total,
            limit: page.limit,
            offset: page.offset,
        },
    ))
}

#[utoipa::path(
    get, path = "/rooms/{roomId}", tag = "Rooms", operation_id = "get_room",
    params(("roomId" = RoomId, Path), ListQuery),
    responses((status = 200, description = "Room retrieved, with a page of its users (`limit`, `offset`, `search`, `from`, `to` apply to them)", body = Envelope<RoomWithUsers>))
)]
async fn get_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    room_with_users(&state, auth.account_id, room_id, &query).await
}

#[utoipa::path(
    get, path = "/rooms/custom/{customId}", tag = "Rooms", operation_id = "get_room_by_custom_id",
    params(("customId" = String, Path, description = "The room's `custom_id`"), ListQuery),
    responses((status = 200, description = "Room retrieved, as by `get_room`", body = Envelope<RoomWithUsers>))
)]
async fn get_room_by_custom_id(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let room = state
        .store()
        .get_room_by_custom_id(auth.account_id, path.text("customId"))
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    room_with_users(&state, auth.account_id, room.id, &query).await
}

/// The documented get-room reply: the room and a page of its users (without tokens), from
/// the engine's room reads (memory when it holds them).
async fn room_with_users(
    state: &AppState,
    account_id: AccountId,
    room_id: RoomId,
    query: &QueryParams,
) -> Result<Reply, ApiError> {
    let (filter, page) = (query.filter()?, query.page()?);
    let answer = state
        .engine()
        .room_answer(account_id, room_id, &filter, page)
        .await?;
    let reply = RoomWithUsers {
        room: &answer.room,
        users: &answer.users,
        users_total: answer.users_total,
        limit: page.limit,
        offset: page.offset,
    };
    let data = serde_json::value::to_raw_value(&reply).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Reply::ok_encoded("Room retrieved", data))
}

/// At least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(min_properties = 1)]
struct UpdateRoomBody {
    #[serde(default)]
    #[schema(schema_with = schemas::name)]
    name: Patch<String>,
    /// `null` clears it.
    #[serde(default)]
    #[schema(schema_with = schemas::custom_id_or_null)]
    custom_id: Patch<String>,
}

#[utoipa::path(
    patch, path = "/rooms/{roomId}", tag = "Rooms", operation_id = "update_room",
    params(("roomId" = RoomId, Path)),
    request_body = UpdateRoomBody,
    responses(
        (status = 200, description = "Room updated", body = Envelope<RoomData>),
        (status = 409, description = "`CONFLICT`: the `customId` is taken in the account", body = ErrorEnvelope),
    )
)]
async fn update_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<UpdateRoomBody>,
) -> Result<Reply, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    validation::at_least_one(&[
        ("name", !body.name.is_absent()),
        ("customId", !body.custom_id.is_absent()),
    ])?;
    let changes = RoomChanges {
        name: match body.name {
            Patch::Absent => None,
            Patch::Null => return Err(ApiError::validation("name", "name must not be null")),
            Patch::Value(name) => Some(validation::name("name", name)?),
        },
        custom_id: body
            .custom_id
            .into_change()
            .map(|id| {
                id.map(|id| validation::custom_id("customId", id))
                    .transpose()
            })
            .transpose()?,
    };
    let room = state
        .engine()
        .update_room(auth.account_id, room_id, &changes)
        .await?;
    Ok(Reply::ok("Room updated", RoomData { room }))
}

/// Deletes the room's users, their sessions and everything else scoped to the room.
#[utoipa::path(
    delete, path = "/rooms/{roomId}", tag = "Rooms", operation_id = "delete_room",
    params(("roomId" = RoomId, Path)),
    responses((status = 200, description = "Room deleted", body = Envelope<Deleted<RoomId>>))
)]
async fn delete_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    state.engine().delete_room(auth.account_id, room_id).await?;
    Ok(Reply::ok("Room deleted", Deleted { id: room_id }))
}

/// Recounts the users online in the room.
///
/// Stores that count, and opens or closes the room's running session to match; when nothing
/// drifted it changes nothing.
#[utoipa::path(
    post, path = "/rooms/{roomId}/reconcile", tag = "Rooms", operation_id = "reconcile_room",
    params(("roomId" = RoomId, Path)),
    responses((status = 200, description = "OK", body = Envelope<Reconciled>))
)]
async fn reconcile_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    let scope = RoomScope {
        account_id: auth.account_id,
        room_id,
    };
    let reconciled = state.engine().reconcile_room(scope).await?;
    let room = reconciled.recounted.room;
    let now_online = room.active_participants;
    Ok(Reply::ok(
        "OK",
        Reconciled {
            room,
            previous_active_participants: reconciled.previous_active_participants,
            reconciled_active_participants: now_online,
        },
    ))
}
