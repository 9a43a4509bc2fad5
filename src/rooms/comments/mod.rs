//! Comment threads of a room: the rules a comment obeys, and the changes and reads both
//! transports ask for. Each change is announced to the room's sockets but its author's, in
//! the order the database applied the room's writes. The params are the socket's own (they
//! derive `Deserialize`); the REST API builds the few it uses.

use serde::Deserialize;
use serde_json::{json, Value};

mod rules;

use rules::{body, emoji, metadata};
pub use rules::{comment_id, thread_id, MAX_EMOJI_CHARS};

use super::events::ServerEvent;
use super::outbox::Utf8Bytes;
use super::{Engine, Origin};
use crate::analytics::Activity;
use crate::config::CommentsConfig;
use crate::domain::patch::Patch;
use crate::domain::{CommentId, ThreadId, Timestamp, UserId};
use crate::error::ApiError;
use crate::store::comments::{
    Actor, CommentChanges, CommentDeleted, CommentPage, NewComment, NewThread, NotAuthor,
    ReactionChange, ReactionLimits, ReactionWrite, Resolution, ThreadFilter,
};
use crate::store::{Listed, Page, PageSize, RoomScope};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateThreadParams {
    pub body: String,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplyParams {
    pub thread_id: String,
    pub body: String,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EditParams {
    pub comment_id: String,
    #[serde(default)]
    pub body: Patch<String>,
    #[serde(default)]
    pub metadata: Patch<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommentParams {
    pub comment_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThreadParams {
    pub thread_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReactParams {
    pub comment_id: String,
    pub emoji: String,
}

/// A page of a thread's comments: after a cursor (a page's `cursor`, or a thread's
/// `comments_cursor`), at most `limit` (1 to `page_comments`, the default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListCommentsParams {
    pub thread_id: String,
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub resolved: Option<bool>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// How many comments a thread object carries, and a page of comments at most.
fn comment_page(engine: &Engine) -> PageSize {
    PageSize {
        items: engine.config().comments.page_comments,
        bytes: engine.config().page_bytes(),
    }
}

/// The user who writes: only users write comments (the backend moderates).
fn author(origin: Origin) -> Result<UserId, ApiError> {
    origin
        .user()
        .ok_or_else(|| ApiError::NotAllowed("Only a user of the room can write comments".into()))
}

fn not_author(_: NotAuthor) -> ApiError {
    ApiError::NotAllowed("Only the comment's author can change it".into())
}

impl Engine {
    fn comment_limits(&self) -> &CommentsConfig {
        &self.config().comments
    }

    pub async fn create_thread(
        &self,
        scope: RoomScope,
        origin: Origin,
        params: CreateThreadParams,
    ) -> Result<Value, ApiError> {
        let limits = self.comment_limits();
        let thread = NewThread {
            id: ThreadId::new(),
            created_by: author(origin)?,
            body: body(params.body, limits)?,
            metadata: metadata(params.metadata, limits)?,
            first_comment: CommentId::new(),
            created_at: Timestamp::now(),
        };
        self.write_in_order(scope, origin, async {
            let thread = self
                .store()
                .create_thread(scope, &thread, limits.max_threads_per_room)
                .await?;
            self.count(scope, Activity::Comment);
            let frame = ServerEvent::ThreadCreated { thread: &thread }.encode();
            Ok::<_, ApiError>((json!({ "thread": thread }), vec![frame]))
        })
        .await
    }

    pub async fn reply(
        &self,
        scope: RoomScope,
        origin: Origin,
        params: ReplyParams,
    ) -> Result<Value, ApiError> {
        let limits = self.comment_limits();
        let comment = NewComment {
            id: CommentId::new(),
            thread_id: thread_id(&params.thread_id)?,
            user_id: author(origin)?,
            body: body(params.body, limits)?,
            metadata: metadata(params.metadata, limits)?,
            created_at: Timestamp::now(),
        };
        self.write_in_order(scope, origin, async {
            let comment = self
                .store()
                .add_comment(scope, &comment, limits.max_comments_per_thread)
                .await?;
            self.count(scope, Activity::Comment);
            let frame = ServerEvent::CommentCreated { comment: &comment }.encode();
            Ok::<_, ApiError>((json!({ "comment": comment }), vec![frame]))
        })
        .await
    }

    pub async fn edit_comment(
        &self,
        scope: RoomScope,
        origin: Origin,
        params: EditParams,
    ) -> Result<Value, ApiError> {
        let limits = self.comment_limits();
        let user = author(origin)?;
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
        self.write_in_order(scope, origin, async {
            let comment = self
                .store()
                .edit_comment(scope, &comment_id, user, &changes)
                .await?
                .map_err(not_author)?;
            let frame = ServerEvent::CommentUpdated { comment: &comment }.encode();
            Ok::<_, ApiError>((json!({ "comment": comment }), vec![frame]))
        })
        .await
    }

    /// Deletes a comment: its author's own (a user), or any (the backend, moderating).
    pub async fn delete_comment(
        &self,
        scope: RoomScope,
        origin: Origin,
        comment_id: &CommentId,
    ) -> Result<CommentDeleted, ApiError> {
        let actor = match origin.user() {
            Some(user) => Actor::User(user),
            None => Actor::Moderator,
        };
        self.write_in_order(scope, origin, async {
            let deleted = self
                .store()
                .delete_comment(scope, comment_id, actor)
                .await?
                .map_err(not_author)?;
            let frames = comment_deleted_events(comment_id, &deleted);
            Ok::<_, ApiError>((deleted, frames))
        })
        .await
    }

    /// Deletes a thread and its comments (the backend, moderating).
    pub async fn delete_thread(
        &self,
        scope: RoomScope,
        origin: Origin,
        thread_id: &ThreadId,
    ) -> Result<(), ApiError> {
        self.write_in_order(scope, origin, async {
            self.store().delete_thread(scope, thread_id).await?;
            let frame = ServerEvent::ThreadDeleted { thread_id }.encode();
            Ok::<_, ApiError>(((), vec![frame]))
        })
        .await
    }

    pub async fn resolve_thread(
        &self,
        scope: RoomScope,
        origin: Origin,
        params: ThreadParams,
        resolution: Resolution,
    ) -> Result<Value, ApiError> {
        let thread_id = thread_id(&params.thread_id)?;
        self.write_in_order(scope, origin, async {
            let outcome = self
                .store()
                .resolve_thread(scope, &thread_id, resolution, comment_page(self))
                .await?;
            let frames = if outcome.changed {
                vec![ServerEvent::ThreadUpdated {
                    thread: &outcome.value,
                }
                .encode()]
            } else {
                Vec::new()
            };
            Ok::<_, ApiError>((json!({ "thread": outcome.value }), frames))
        })
        .await
    }

    pub async fn react(
        &self,
        scope: RoomScope,
        origin: Origin,
        params: ReactParams,
        change: ReactionChange,
    ) -> Result<Value, ApiError> {
        let limits = self.comment_limits();
        let comment_id = comment_id(&params.comment_id)?;
        let reaction = ReactionWrite {
            user_id: author(origin)?,
            emoji: emoji(params.emoji)?,
            change,
        };
        let caps = ReactionLimits {
            max_emoji: limits.max_reactions_per_comment,
            max_reactions: limits.max_user_reactions_per_comment,
        };
        self.write_in_order(scope, origin, async {
            let outcome = self
                .store()
                .react(scope, &comment_id, &reaction, caps)
                .await?;
            let frames = if outcome.changed {
                vec![ServerEvent::CommentUpdated {
                    comment: &outcome.value,
                }
                .encode()]
            } else {
                Vec::new()
            };
            Ok::<_, ApiError>((json!({ "comment": outcome.value }), frames))
        })
        .await
    }

    /// A page of the room's threads, newest first, each with its first comments; and the
    /// page asked for.
    pub async fn list_threads(
        &self,
        scope: RoomScope,
        params: ListParams,
    ) -> Result<(Listed<crate::domain::Thread>, Page), ApiError> {
        let limit = params.limit.unwrap_or(Page::DEFAULT_LIMIT);
        if !(1..=Page::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("limit must be an integer from 1 to {}", Page::MAX_LIMIT),
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
        let threads = self
            .store()
            .list_threads(scope, filter, page, comment_page(self))
            .await?;
        Ok((threads, page))
    }

    pub async fn get_thread(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
    ) -> Result<crate::domain::Thread, ApiError> {
        Ok(self
            .store()
            .get_thread(scope, thread_id, comment_page(self))
            .await?)
    }

    /// A page of a thread's comments.
    pub async fn list_comments(
        &self,
        scope: RoomScope,
        params: ListCommentsParams,
    ) -> Result<CommentPage, ApiError> {
        let thread_id = thread_id(&params.thread_id)?;
        let after = match params.after.as_deref() {
            None | Some("") => 0,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::validation("after", "after must be a cursor from an earlier answer")
                })?,
        };
        let mut size = comment_page(self);
        if let Some(limit) = params.limit {
            if !(1..=size.items).contains(&limit) {
                return Err(ApiError::validation(
                    "limit",
                    format!("limit must be an integer from 1 to {}", size.items),
                ));
            }
            size.items = limit;
        }
        Ok(self
            .store()
            .list_comments(scope, &thread_id, after, size)
            .await?)
    }
}

// The socket's and REST's alike.
/// A page of a thread's comments.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentList {
    /// Oldest first.
    comments: Vec<crate::domain::Comment>,
    has_more: bool,
    /// Where the next page starts (its `after`); `null` on the last page.
    #[schema(required = true)]
    cursor: Option<String>,
}

impl From<CommentPage> for CommentList {
    fn from(page: CommentPage) -> Self {
        Self {
            comments: page.comments,
            has_more: page.cursor.is_some(),
            cursor: page.cursor.map(|seq| seq.to_string()),
        }
    }
}

// The socket's and REST's alike.
/// A page of threads, with where the next starts.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThreadList {
    /// Newest first, each with its first comments.
    threads: Vec<crate::domain::Thread>,
    total: i64,
    limit: i64,
    offset: i64,
    /// The `offset` of the next page (`null`: nothing after); a page may end before `limit`
    /// (`limits.max_page_bytes`).
    #[schema(required = true)]
    next_offset: Option<i64>,
}

impl ThreadList {
    pub fn new(threads: Listed<crate::domain::Thread>, page: Page) -> Self {
        let returned = threads.items.len();
        let has_more = page.offset + (returned as i64) < threads.total;
        Self {
            threads: threads.items,
            total: threads.total,
            limit: page.limit,
            offset: page.offset,
            next_offset: page.next_offset(returned, has_more),
        }
    }
}

/// `CommentList`, as JSON.
pub fn comment_page_json(page: CommentPage) -> Value {
    json!(CommentList::from(page))
}

/// `ThreadList`, as JSON.
pub fn thread_list_json(threads: Listed<crate::domain::Thread>, page: Page) -> Value {
    json!(ThreadList::new(threads, page))
}

/// `commentDeleted`, then `threadDeleted` if the comment was its thread's last.
fn comment_deleted_events(comment_id: &CommentId, deleted: &CommentDeleted) -> Vec<Utf8Bytes> {
    let mut frames = vec![ServerEvent::CommentDeleted {
        comment_id,
        thread_id: &deleted.thread_id,
    }
    .encode()];
    if deleted.thread_deleted {
        frames.push(
            ServerEvent::ThreadDeleted {
                thread_id: &deleted.thread_id,
            }
            .encode(),
        );
    }
    frames
}
