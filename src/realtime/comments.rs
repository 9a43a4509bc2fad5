//! Socket methods `comments.*`: threads and comments of the caller's room, and the events
//! their changes send to the room's other sockets, in the order the database applied them.

use std::future::Future;

use axum::extract::ws::Utf8Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::connection::{unknown_method, Caller};
use super::protocol::event;
use crate::config::{CommentsConfig, Config};
use crate::domain::{CommentId, Metadata, ThreadId, Timestamp};
use crate::error::ApiError;
use crate::http::extract::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use crate::http::validation::Patch;
use crate::store::comments::{
    Actor, CommentChanges, CommentDeleted, NewComment, NewThread, NotAuthor, ReactionChange,
    ReactionLimits, ReactionWrite, Resolution, ThreadFilter,
};
use crate::store::{DynStore, Page, PageSize, RoomScope};

/// Longest emoji (a short code or a sequence of code points such as a flag or a family).
pub const MAX_EMOJI_CHARS: usize = 32;

pub async fn call(caller: &Caller<'_>, method: &str, params: Value) -> Result<Value, ApiError> {
    match method {
        "comments.createThread" => create_thread(caller, parse(params)?).await,
        "comments.reply" => reply(caller, parse(params)?).await,
        "comments.edit" => edit(caller, parse(params)?).await,
        "comments.delete" => delete(caller, parse(params)?).await,
        "comments.resolve" | "comments.reopen" => {
            let params: ThreadParams = parse(params)?;
            let resolution = if method == "comments.resolve" {
                Resolution::Resolve { by: caller.user_id }
            } else {
                Resolution::Reopen
            };
            resolve(caller, params, resolution).await
        }
        "comments.react" | "comments.unreact" => {
            let params: ReactParams = parse(params)?;
            let change = if method == "comments.react" {
                ReactionChange::Add
            } else {
                ReactionChange::Remove
            };
            react(caller, params, change).await
        }
        "comments.list" => list(caller, parse(params)?).await,
        "comments.getThread" => {
            let params: ThreadParams = parse(params)?;
            let thread_id = thread_id(&params.thread_id)?;
            let thread = caller
                .state
                .store()
                .get_thread(
                    caller.scope,
                    &thread_id,
                    comment_page(caller.state.config()),
                )
                .await?;
            Ok(json!({ "thread": thread }))
        }
        "comments.listComments" => list_comments(caller, parse(params)?).await,
        _ => Err(unknown_method(method)),
    }
}

/// The params of a method: a JSON object (`null` or none stands for `{}`). Serde would
/// also read a struct from an array, field by position: refuse that here.
fn parse<T: DeserializeOwned>(params: Value) -> Result<T, ApiError> {
    match params {
        Value::Null => ApiError::parse_value(json!({})),
        Value::Object(_) => ApiError::parse_value(params),
        _ => Err(ApiError::validation(
            "params",
            "params must be a JSON object",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateThreadParams {
    body: String,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplyParams {
    thread_id: String,
    body: String,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EditParams {
    comment_id: String,
    #[serde(default)]
    body: Patch<String>,
    #[serde(default)]
    metadata: Patch<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CommentParams {
    comment_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThreadParams {
    thread_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReactParams {
    comment_id: String,
    emoji: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListCommentsParams {
    thread_id: String,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    resolved: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn config<'a>(caller: &'a Caller<'_>) -> &'a CommentsConfig {
    &caller.state.config().comments
}

/// How many comments a thread object carries, and a page of comments at most.
pub fn comment_page(config: &Config) -> PageSize {
    PageSize {
        items: config.comments.page_comments,
        bytes: config.page_bytes(),
    }
}

/// A page of a thread's comments: `after` a cursor (`cursor`, or a thread's
/// `comments_cursor`), at most `limit` of them (1 to `page_comments`, the default).
pub async fn comment_list(
    store: &DynStore,
    config: &Config,
    scope: RoomScope,
    thread_id: &ThreadId,
    page: CommentListPage,
) -> Result<Value, ApiError> {
    let after = match page.after.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::validation("after", "after must be a cursor from an earlier answer")
            })?,
    };
    let mut size = comment_page(config);
    if let Some(limit) = page.limit {
        if !(1..=size.items).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("limit must be an integer from 1 to {}", size.items),
            ));
        }
        size.items = limit;
    }
    let listed = store.list_comments(scope, thread_id, after, size).await?;
    Ok(json!({
        "comments": listed.comments,
        "hasMore": listed.cursor.is_some(),
        "cursor": listed.cursor.map(|seq| seq.to_string()),
    }))
}

/// Where a page of comments starts, and its size, as a client asked.
pub struct CommentListPage {
    pub after: Option<String>,
    pub limit: Option<i64>,
}

async fn list_comments(caller: &Caller<'_>, params: ListCommentsParams) -> Result<Value, ApiError> {
    let thread_id = thread_id(&params.thread_id)?;
    let page = CommentListPage {
        after: params.after,
        limit: params.limit,
    };
    let state = caller.state;
    comment_list(
        state.store(),
        state.config(),
        caller.scope,
        &thread_id,
        page,
    )
    .await
}

/// Runs a write and sends the events it returns to the room's other sockets, in the order
/// the database applied the room's writes.
async fn in_order<T>(
    caller: &Caller<'_>,
    write: impl Future<Output = Result<(T, Vec<Utf8Bytes>), ApiError>>,
) -> Result<T, ApiError> {
    caller
        .state
        .hub()
        .write_in_order(caller.scope, Some(caller.connection), write)
        .await
}

fn not_author(_: NotAuthor) -> ApiError {
    ApiError::NotAllowed("Only the comment's author can change it".into())
}

async fn create_thread(caller: &Caller<'_>, params: CreateThreadParams) -> Result<Value, ApiError> {
    let limits = config(caller);
    let thread = NewThread {
        id: ThreadId::new(),
        created_by: caller.user_id,
        body: body(params.body, limits)?,
        metadata: metadata(params.metadata, limits)?,
        first_comment: CommentId::new(),
        created_at: Timestamp::now(),
    };
    let store = caller.state.store();
    in_order(caller, async {
        let thread = store
            .create_thread(caller.scope, &thread, limits.max_threads_per_room)
            .await?;
        let data = json!({ "thread": thread });
        let frame = event("threadCreated", &data);
        Ok((data, vec![frame]))
    })
    .await
}

async fn reply(caller: &Caller<'_>, params: ReplyParams) -> Result<Value, ApiError> {
    let limits = config(caller);
    let comment = NewComment {
        id: CommentId::new(),
        thread_id: thread_id(&params.thread_id)?,
        user_id: caller.user_id,
        body: body(params.body, limits)?,
        metadata: metadata(params.metadata, limits)?,
        created_at: Timestamp::now(),
    };
    let store = caller.state.store();
    in_order(caller, async {
        let comment = store
            .add_comment(caller.scope, &comment, limits.max_comments_per_thread)
            .await?;
        let data = json!({ "comment": comment });
        let frame = event("commentCreated", &data);
        Ok((data, vec![frame]))
    })
    .await
}

async fn edit(caller: &Caller<'_>, params: EditParams) -> Result<Value, ApiError> {
    let limits = config(caller);
    let comment_id = comment_id(&params.comment_id)?;
    if params.body.is_absent() && params.metadata.is_absent() {
        return Err(ApiError::validation(
            "params",
            "Provide at least one of: body, metadata",
        ));
    }
    let changes = CommentChanges {
        body: match params.body {
            Patch::Absent => None,
            Patch::Null => return Err(ApiError::validation("body", "body must not be null")),
            Patch::Value(text) => Some(body(text, limits)?),
        },
        metadata: match params.metadata {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(value) => Some(metadata(Some(value), limits)?),
        },
    };
    let store = caller.state.store();
    in_order(caller, async {
        let comment = store
            .edit_comment(caller.scope, &comment_id, caller.user_id, &changes)
            .await?
            .map_err(not_author)?;
        let data = json!({ "comment": comment });
        let frame = event("commentUpdated", &data);
        Ok((data, vec![frame]))
    })
    .await
}

async fn delete(caller: &Caller<'_>, params: CommentParams) -> Result<Value, ApiError> {
    let comment_id = comment_id(&params.comment_id)?;
    let store = caller.state.store();
    in_order(caller, async {
        let deleted = store
            .delete_comment(caller.scope, &comment_id, Actor::User(caller.user_id))
            .await?
            .map_err(not_author)?;
        let data = json!({
            "commentId": comment_id,
            "threadDeleted": deleted.thread_deleted,
        });
        Ok((data, comment_deleted_events(&comment_id, &deleted)))
    })
    .await
}

async fn resolve(
    caller: &Caller<'_>,
    params: ThreadParams,
    resolution: Resolution,
) -> Result<Value, ApiError> {
    let thread_id = thread_id(&params.thread_id)?;
    let store = caller.state.store();
    in_order(caller, async {
        let size = comment_page(caller.state.config());
        let outcome = store
            .resolve_thread(caller.scope, &thread_id, resolution, size)
            .await?;
        let data = json!({ "thread": outcome.value });
        let frames = if outcome.changed {
            vec![event("threadUpdated", &data)]
        } else {
            Vec::new()
        };
        Ok((data, frames))
    })
    .await
}

async fn react(
    caller: &Caller<'_>,
    params: ReactParams,
    change: ReactionChange,
) -> Result<Value, ApiError> {
    let limits = config(caller);
    let comment_id = comment_id(&params.comment_id)?;
    let reaction = ReactionWrite {
        user_id: caller.user_id,
        emoji: emoji(params.emoji)?,
        change,
    };
    let store = caller.state.store();
    in_order(caller, async {
        let outcome = store
            .react(
                caller.scope,
                &comment_id,
                &reaction,
                ReactionLimits {
                    max_emoji: limits.max_reactions_per_comment,
                    max_reactions: limits.max_user_reactions_per_comment,
                },
            )
            .await?;
        let data = json!({ "comment": outcome.value });
        let frames = if outcome.changed {
            vec![event("commentUpdated", &data)]
        } else {
            Vec::new()
        };
        Ok((data, frames))
    })
    .await
}

async fn list(caller: &Caller<'_>, params: ListParams) -> Result<Value, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit must be an integer from 1 to {MAX_PAGE_LIMIT}"),
        ));
    }
    let offset = params.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::validation(
            "offset",
            "offset must be an integer of 0 or more",
        ));
    }
    let page = Page { limit, offset };
    let filter = ThreadFilter {
        resolved: params.resolved,
    };
    let threads = caller
        .state
        .store()
        .list_threads(
            caller.scope,
            filter,
            page,
            comment_page(caller.state.config()),
        )
        .await?;
    let next_offset = page.next_offset(
        threads.items.len(),
        offset + (threads.items.len() as i64) < threads.total,
    );
    Ok(json!({
        "threads": threads.items,
        "total": threads.total,
        "limit": limit,
        "offset": offset,
        "nextOffset": next_offset,
    }))
}

/// `commentDeleted`, then `threadDeleted` if the comment was its thread's last.
pub fn comment_deleted_events(comment_id: &CommentId, deleted: &CommentDeleted) -> Vec<Utf8Bytes> {
    let mut frames = vec![event(
        "commentDeleted",
        &json!({ "commentId": comment_id, "threadId": deleted.thread_id }),
    )];
    if deleted.thread_deleted {
        frames.push(thread_deleted_event(&deleted.thread_id));
    }
    frames
}

pub fn thread_deleted_event(thread_id: &ThreadId) -> Utf8Bytes {
    event("threadDeleted", &json!({ "threadId": thread_id }))
}

fn thread_id(text: &str) -> Result<ThreadId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::validation(
            "threadId",
            "threadId must be a thread ID (thr_ followed by 32 hex digits)",
        )
    })
}

fn comment_id(text: &str) -> Result<CommentId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::validation(
            "commentId",
            "commentId must be a comment ID (cmt_ followed by 32 hex digits)",
        )
    })
}

/// A comment's text: not blank, at most `max_body_chars` characters, and no control
/// characters but line breaks and tabs.
fn body(text: String, limits: &CommentsConfig) -> Result<String, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::validation("body", "body must not be empty"));
    }
    let max = limits.max_body_chars;
    if text.chars().count() > max {
        return Err(ApiError::validation(
            "body",
            format!("body must be at most {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::validation(
            "body",
            "body must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(text)
}

/// Metadata: a JSON object of at most `max_metadata_bytes` (as JSON), or nothing.
fn metadata(value: Option<Value>, limits: &CommentsConfig) -> Result<Option<Metadata>, ApiError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::validation(
                "metadata",
                "metadata must be a JSON object or null",
            ))
        }
    };
    let max = limits.max_metadata_bytes;
    let size = serde_json::to_string(&map).map_or(usize::MAX, |json| json.len());
    if size > max {
        return Err(ApiError::validation(
            "metadata",
            format!("metadata must be at most {max} bytes as JSON"),
        ));
    }
    Ok(Some(map))
}

/// An emoji (or a short code such as `:+1:`): 1 to 32 characters, no whitespace.
fn emoji(text: String) -> Result<String, ApiError> {
    let count = text.chars().count();
    if count == 0
        || count > MAX_EMOJI_CHARS
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::validation(
            "emoji",
            format!("emoji must be 1 to {MAX_EMOJI_CHARS} characters without whitespace"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CommentsConfig {
        CommentsConfig {
            max_body_chars: 5,
            max_metadata_bytes: 10,
            max_threads_per_room: 1,
            max_comments_per_thread: 1,
            max_reactions_per_comment: 1,
            max_user_reactions_per_comment: 1,
            page_comments: 1,
        }
    }

    fn field(error: ApiError) -> String {
        match error {
            ApiError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn bodies_are_checked() {
        assert_eq!(body("héllo".into(), &limits()).unwrap(), "héllo");
        assert_eq!(body("a\nb\tc".into(), &limits()).unwrap(), "a\nb\tc");
        for bad in ["", "  \n ", "toolong", "a\u{0}b"] {
            assert_eq!(
                field(body(bad.into(), &limits()).unwrap_err()),
                "body",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn metadata_is_a_small_object() {
        assert_eq!(metadata(None, &limits()).unwrap(), None);
        assert_eq!(metadata(Some(Value::Null), &limits()).unwrap(), None);
        assert!(metadata(Some(json!({ "x": 1 })), &limits())
            .unwrap()
            .is_some());
        for bad in [json!([1]), json!("x"), json!({ "x": "0123456789" })] {
            assert_eq!(
                field(metadata(Some(bad), &limits()).unwrap_err()),
                "metadata"
            );
        }
    }

    #[test]
    fn emoji_are_short_and_without_whitespace() {
        assert!(emoji("👍".into()).is_ok());
        assert!(emoji(":+1:".into()).is_ok());
        assert!(emoji("👨‍👩‍👧‍👦".into()).is_ok());
        for bad in ["", "a b", "x".repeat(33).as_str(), "\u{7}"] {
            assert_eq!(field(emoji(bad.into()).unwrap_err()), "emoji", "{bad:?}");
        }
    }

    #[test]
    fn ids_are_validated() {
        assert_eq!(field(thread_id("nope").unwrap_err()), "threadId");
        assert_eq!(
            field(comment_id(&ThreadId::new().to_string()).unwrap_err()),
            "commentId"
        );
        assert!(comment_id(&CommentId::new().to_string()).is_ok());
    }
}
