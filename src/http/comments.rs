//! REST: comment threads of a room, for backends (listing and moderation). Deletions reach
//! the room's sockets as the same events a user's deletion sends.

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use serde_json::json;

use super::envelope::Reply;
use super::extract::{PathParams, QueryParams};
use crate::auth::AccountAuth;
use crate::domain::{CommentId, RoomId, ThreadId};
use crate::error::ApiError;
use crate::rooms::comments::{comment_page_json, thread_list_json, ListCommentsParams, ListParams};
use crate::rooms::Origin;
use crate::state::AppState;
use crate::store::{Entity, RoomScope};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{roomId}/threads", get(list_threads))
        .route(
            "/rooms/{roomId}/threads/{threadId}",
            get(get_thread).delete(delete_thread),
        )
        .route(
            "/rooms/{roomId}/threads/{threadId}/comments",
            get(list_comments),
        )
        .route(
            "/rooms/{roomId}/comments/{commentId}",
            delete(delete_comment),
        )
}

fn room_scope(auth: &AccountAuth, path: &PathParams) -> Result<RoomScope, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    Ok(RoomScope {
        account_id: auth.account_id,
        room_id,
    })
}

/// `resolved`: `true` or `false`; absent, both.
fn resolved(query: &QueryParams) -> Result<Option<bool>, ApiError> {
    match query.get("resolved").map(str::trim) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::validation(
            "resolved",
            "resolved must be true or false",
        )),
    }
}

async fn list_threads(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let page = query.page()?;
    let params = ListParams {
        resolved: resolved(&query)?,
        limit: Some(page.limit),
        offset: Some(page.offset),
    };
    let (threads, page) = state.engine().list_threads(scope, params).await?;
    Ok(Reply::ok(
        "Threads retrieved",
        thread_list_json(threads, page),
    ))
}

async fn get_thread(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let thread_id: ThreadId = path.id("threadId", Entity::Thread)?;
    let thread = state.engine().get_thread(scope, &thread_id).await?;
    Ok(Reply::ok("Thread retrieved", json!({ "thread": thread })))
}

/// `after` (a cursor of an earlier answer, or a thread's `comments_cursor`) and `limit`.
async fn list_comments(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let thread_id: ThreadId = path.id("threadId", Entity::Thread)?;
    let limit = query
        .get("limit")
        .map(|text| {
            text.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::validation("limit", "limit must be an integer"))
        })
        .transpose()?;
    let params = ListCommentsParams {
        thread_id: thread_id.to_string(),
        after: query.get("after").map(str::to_owned),
        limit,
    };
    let page = state.engine().list_comments(scope, params).await?;
    Ok(Reply::ok("Comments retrieved", comment_page_json(page)))
}

/// Checks the room first, so that a request for an unknown room does not load a room.
async fn existing_room(state: &AppState, scope: RoomScope) -> Result<(), ApiError> {
    state
        .store()
        .get_room(scope.account_id, scope.room_id)
        .await?
        .map(|_| ())
        .ok_or(ApiError::not_found(Entity::Room))
}

async fn delete_thread(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let thread_id: ThreadId = path.id("threadId", Entity::Thread)?;
    existing_room(&state, scope).await?;
    state
        .engine()
        .delete_thread(scope, Origin::Backend, &thread_id)
        .await?;
    Ok(Reply::ok("Thread deleted", json!({ "id": thread_id })))
}

async fn delete_comment(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let comment_id: CommentId = path.id("commentId", Entity::Comment)?;
    existing_room(&state, scope).await?;
    let deleted = state
        .engine()
        .delete_comment(scope, Origin::Backend, &comment_id)
        .await?;
    Ok(Reply::ok(
        "Comment deleted",
        json!({ "id": comment_id, "threadDeleted": deleted.thread_deleted }),
    ))
}
