//! REST: comment threads of a room, for backends (listing and moderation). Deletions reach
//! the room's sockets as the same events a user's deletion sends.

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use serde_json::json;

use super::envelope::Reply;
use super::extract::{PathParams, QueryParams};
use crate::app::AppState;
use crate::auth::AccountAuth;
use crate::domain::{CommentId, RoomId, ThreadId};
use crate::error::ApiError;
use crate::realtime::comments::{
    comment_deleted_events, comment_list, comment_page, thread_deleted_event, CommentListPage,
};
use crate::store::comments::{Actor, ThreadFilter};
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
fn thread_filter(query: &QueryParams) -> Result<ThreadFilter, ApiError> {
    let resolved = match query.get("resolved").map(str::trim) {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(ApiError::validation(
                "resolved",
                "resolved must be true or false",
            ))
        }
    };
    Ok(ThreadFilter { resolved })
}

async fn list_threads(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let (filter, page) = (thread_filter(&query)?, query.page()?);
    let size = comment_page(state.config());
    let threads = state
        .store()
        .list_threads(scope, filter, page, size)
        .await?;
    let returned = threads.items.len();
    let has_more = page.offset + (returned as i64) < threads.total;
    Ok(Reply::ok(
        "Threads retrieved",
        json!({
            "threads": threads.items,
            "total": threads.total,
            "limit": page.limit,
            "offset": page.offset,
            "nextOffset": page.next_offset(returned, has_more),
        }),
    ))
}

async fn get_thread(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let thread_id: ThreadId = path.id("threadId", Entity::Thread)?;
    let size = comment_page(state.config());
    let thread = state.store().get_thread(scope, &thread_id, size).await?;
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
    let page = CommentListPage {
        after: query.get("after").map(str::to_owned),
        limit,
    };
    let data = comment_list(state.store(), state.config(), scope, &thread_id, page).await?;
    Ok(Reply::ok("Comments retrieved", data))
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
    let store = state.store();
    state
        .hub()
        .write_in_order(scope, None, async {
            store.delete_thread(scope, &thread_id).await?;
            Ok::<_, ApiError>(((), vec![thread_deleted_event(&thread_id)]))
        })
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
    let store = state.store();
    let deleted = state
        .hub()
        .write_in_order(scope, None, async {
            let deleted = store
                .delete_comment(scope, &comment_id, Actor::Moderator)
                .await?
                .map_err(|_| ApiError::Forbidden)?;
            let frames = comment_deleted_events(&comment_id, &deleted);
            Ok::<_, ApiError>((deleted, frames))
        })
        .await?;
    Ok(Reply::ok(
        "Comment deleted",
        json!({ "id": comment_id, "threadDeleted": deleted.thread_deleted }),
    ))
}
