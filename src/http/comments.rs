//! REST: comment threads of a room, for backends (listing and moderation). Deletions reach
//! the room's sockets as the same events a user's deletion sends.

use axum::extract::State;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::{PageQuery, PathParams, QueryParams};
use super::openapi::{Deleted, Envelope};
use super::routes::Routes;
use crate::auth::AccountAuth;
use crate::domain::{CommentId, RoomId, Thread, ThreadId};
use crate::error::ApiError;
use crate::rooms::comments::{CommentList, ListCommentsParams, ListParams, ThreadList};
use crate::rooms::Origin;
use crate::state::AppState;
use crate::store::{Entity, RoomScope};

pub fn routes() -> Routes {
    const THREAD: &str = "/rooms/{roomId}/threads/{threadId}";
    Routes::new()
        .get("/rooms/{roomId}/threads", list_threads)
        .get(THREAD, get_thread)
        .delete(THREAD, delete_thread)
        .get("/rooms/{roomId}/threads/{threadId}/comments", list_comments)
        .delete("/rooms/{roomId}/comments/{commentId}", delete_comment)
}

#[derive(OpenApi)]
#[openapi(paths(list_threads, get_thread, delete_thread, list_comments, delete_comment))]
pub struct Api;

#[derive(Serialize, ToSchema)]
struct ThreadData {
    thread: Thread,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CommentDeleted {
    id: CommentId,
    /// The comment was its thread's last: the thread is gone too.
    thread_deleted: bool,
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

#[utoipa::path(
    get, path = "/rooms/{roomId}/threads", tag = "Comments", operation_id = "list_threads",
    params(
        ("roomId" = RoomId, Path),
        ("resolved" = Option<bool>, Query, description = "`true` or `false`; absent: both"),
        PageQuery
    ),
    responses((status = 200, description = "Threads retrieved", body = Envelope<ThreadList>))
)]
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
        ThreadList::new(threads, page),
    ))
}

#[utoipa::path(
    get, path = "/rooms/{roomId}/threads/{threadId}", tag = "Comments", operation_id = "get_thread",
    params(("roomId" = RoomId, Path), ("threadId" = ThreadId, Path)),
    responses((status = 200, description = "Thread retrieved", body = Envelope<ThreadData>))
)]
async fn get_thread(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = room_scope(&auth, &path)?;
    let thread_id: ThreadId = path.id("threadId", Entity::Thread)?;
    let thread = state.engine().get_thread(scope, &thread_id).await?;
    Ok(Reply::ok("Thread retrieved", ThreadData { thread }))
}

/// A thread's comments, oldest first, a page at a time.
#[utoipa::path(
    get, path = "/rooms/{roomId}/threads/{threadId}/comments", tag = "Comments", operation_id = "list_comments",
    params(
        ("roomId" = RoomId, Path),
        ("threadId" = ThreadId, Path),
        ("after" = Option<String>, Query, pattern = r"^(\+?[0-9]{1,18})?$", description = "A page's `cursor` or a thread's `comments_cursor`; absent or empty: from the first"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "1 to `comments.page_comments` (50 by default), which is also the default"),
    ),
    responses((status = 200, description = "Comments retrieved", body = Envelope<CommentList>))
)]
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
    Ok(Reply::ok("Comments retrieved", CommentList::from(page)))
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

/// The room's joined sockets receive `threadDeleted`.
#[utoipa::path(
    delete, path = "/rooms/{roomId}/threads/{threadId}", tag = "Comments", operation_id = "delete_thread",
    params(("roomId" = RoomId, Path), ("threadId" = ThreadId, Path)),
    responses((status = 200, description = "Thread deleted", body = Envelope<Deleted<ThreadId>>))
)]
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
    Ok(Reply::ok("Thread deleted", Deleted { id: thread_id }))
}

/// Deletes a comment.
///
/// The room's joined sockets receive `commentDeleted`, then `threadDeleted` when it was the
/// thread's last comment.
#[utoipa::path(
    delete, path = "/rooms/{roomId}/comments/{commentId}", tag = "Comments", operation_id = "delete_comment",
    params(("roomId" = RoomId, Path), ("commentId" = CommentId, Path)),
    responses((status = 200, description = "Comment deleted", body = Envelope<CommentDeleted>))
)]
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
        CommentDeleted {
            id: comment_id,
            thread_deleted: deleted.thread_deleted,
        },
    ))
}
