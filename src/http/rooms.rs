//! REST: rooms (`/v1/accounts/:accountId/rooms`).

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::envelope::Reply;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::validation::{self, Patch};
use crate::auth::AccountAuth;
use crate::domain::{AccountId, Room, RoomId, Timestamp};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Entity, NewRoom, RoomChanges, RoomScope};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms", post(create_room).get(list_rooms))
        .route("/rooms/custom/{customId}", get(get_room_by_custom_id))
        .route(
            "/rooms/{roomId}",
            get(get_room).patch(update_room).delete(delete_room),
        )
        .route("/rooms/{roomId}/reconcile", post(reconcile_room))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRoomBody {
    name: Option<String>,
    custom_id: Option<String>,
}

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
    Ok(Reply::created("Room created", json!({ "room": room })))
}

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
        json!({ "rooms": rooms.items, "total": rooms.total, "limit": page.limit, "offset": page.offset }),
    ))
}

async fn get_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    room_with_users(&state, auth.account_id, room_id, &query).await
}

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
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct RoomReply<'a> {
        room: &'a Room,
        users: &'a RawValue,
        users_total: i64,
        limit: i64,
        offset: i64,
    }
    let reply = RoomReply {
        room: &answer.room,
        users: &answer.users,
        users_total: answer.users_total,
        limit: page.limit,
        offset: page.offset,
    };
    let data = serde_json::value::to_raw_value(&reply).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Reply::ok_encoded("Room retrieved", data))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateRoomBody {
    #[serde(default)]
    name: Patch<String>,
    #[serde(default)]
    custom_id: Patch<String>,
}

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
    Ok(Reply::ok("Room updated", json!({ "room": room })))
}

async fn delete_room(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    state.engine().delete_room(auth.account_id, room_id).await?;
    Ok(Reply::ok("Room deleted", json!({ "id": room_id })))
}

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
        json!({
            "room": room,
            "previous_active_participants": reconciled.previous_active_participants,
            "reconciled_active_participants": now_online,
        }),
    ))
}
