//! Persistence of comment threads, comments and reactions. Every write to a thread or its
//! comments takes the thread's row lock (a new thread: the room's), and checks the limits
//! under it, so that concurrent writers can neither exceed a limit nor interleave.

mod load;
mod rows;
mod sql;

use async_trait::async_trait;

use super::{Listed, Page, PageSize, RoomScope, StoreResult};
use crate::domain::{Comment, CommentId, Metadata, Thread, ThreadId, Timestamp, UserId};

pub(super) const THREAD_COLUMNS: &str =
    "id, room_id, created_by, created_at, updated_at, resolved_at, resolved_by, metadata";
pub(super) const COMMENT_COLUMNS: &str =
    "id, thread_id, room_id, user_id, body, metadata, created_at, edited_at, seq";
/// What a comment weighs in a page (see `page_bytes`): its text and metadata as stored, its
/// reactions (a user ID and an emoji each), and room for the rest of its JSON.
pub(super) const COMMENT_BYTES: &str =
    "octet_length(body) + COALESCE(octet_length(metadata), 0) + 64 * reaction_count + 320";
/// What a thread weighs in a page besides its comments: its fields but the metadata.
pub(super) const THREAD_BYTES: i64 = 400;

/// A new thread and its first comment.
#[derive(Debug, Clone)]
pub struct NewThread {
    pub id: ThreadId,
    pub created_by: UserId,
    pub metadata: Option<Metadata>,
    pub first_comment: CommentId,
    pub body: String,
    pub created_at: Timestamp,
}

/// A reply in an existing thread.
#[derive(Debug, Clone)]
pub struct NewComment {
    pub id: CommentId,
    pub thread_id: ThreadId,
    pub user_id: UserId,
    pub body: String,
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
}

/// Fields to change on a comment; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct CommentChanges {
    pub body: Option<String>,
    pub metadata: Option<Option<Metadata>>,
}

/// Who deletes a comment: a user, who must be its author, or the account's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Moderator,
}

/// The comment exists, but the user who asked to change it did not write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAuthor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentDeleted {
    pub thread_id: ThreadId,
    /// It was the thread's last comment: the thread went with it.
    pub thread_deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Resolve { by: UserId },
    Reopen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionChange {
    Add,
    Remove,
}

/// The state after an idempotent write, and whether the write changed anything.
#[derive(Debug, Clone)]
pub struct Changed<T> {
    pub value: T,
    pub changed: bool,
}

pub use crate::domain::limits::ReactionLimits;

/// A page of a thread's comments, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentPage {
    pub comments: Vec<Comment>,
    /// Where the next page starts (`after`); `None` when this one is the last.
    pub cursor: Option<i64>,
}

/// Which threads a list returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadFilter {
    /// `Some(true)`: resolved threads only; `Some(false)`: open threads only.
    pub resolved: Option<bool>,
}

/// Comment storage. Every method is scoped to one room of one account: an ID of another
/// room is `NotFound`, like an unknown one. Limits break as `Invalid` naming the socket
/// parameter at fault.
#[async_trait]
pub trait CommentStore: Send + Sync {
    /// Creates a thread with its first comment; `NotFound(Room)`, or `Invalid` when the room
    /// holds `max_threads` threads already.
    async fn create_thread(
        &self,
        scope: RoomScope,
        thread: &NewThread,
        max_threads: i64,
    ) -> StoreResult<Thread>;
    /// Adds a reply; `NotFound(Thread)`, or `Invalid` when the thread holds `max_comments`.
    async fn add_comment(
        &self,
        scope: RoomScope,
        comment: &NewComment,
        max_comments: i64,
    ) -> StoreResult<Comment>;
    /// Changes a comment of `author`'s (and sets `edited_at`); `NotFound(Comment)`.
    async fn edit_comment(
        &self,
        scope: RoomScope,
        comment_id: &CommentId,
        author: UserId,
        changes: &CommentChanges,
    ) -> StoreResult<Result<Comment, NotAuthor>>;
    /// Deletes a comment, and its thread with it if it was the last; `NotFound(Comment)`.
    async fn delete_comment(
        &self,
        scope: RoomScope,
        comment_id: &CommentId,
        actor: Actor,
    ) -> StoreResult<Result<CommentDeleted, NotAuthor>>;
    /// Deletes a thread and its comments; `NotFound(Room)` or `NotFound(Thread)`.
    async fn delete_thread(&self, scope: RoomScope, thread_id: &ThreadId) -> StoreResult<()>;
    /// Resolves or reopens a thread; unchanged if it already is. The thread comes back as
    /// `get_thread` gives it. `NotFound(Thread)`.
    async fn resolve_thread(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
        resolution: Resolution,
        size: PageSize,
    ) -> StoreResult<Changed<Thread>>;
    /// Adds or removes one user's emoji on a comment; unchanged if it already is.
    /// `NotFound(Comment)`, or `Invalid` when a new reaction would exceed a limit.
    async fn react(
        &self,
        scope: RoomScope,
        comment_id: &CommentId,
        reaction: &ReactionWrite,
        limits: ReactionLimits,
    ) -> StoreResult<Changed<Comment>>;
    /// A page of the room's threads, newest first, each with its first comments (at most
    /// `size.items` each); the threads and their comments together take at most
    /// `size.bytes` (see `page_bytes`), past which the page ends early: every thread in it
    /// has its first comment, at least. `NotFound(Room)`.
    async fn list_threads(
        &self,
        scope: RoomScope,
        filter: ThreadFilter,
        page: Page,
        size: PageSize,
    ) -> StoreResult<Listed<Thread>>;
    /// A thread with its first comments, as in a list. `NotFound(Room)` or
    /// `NotFound(Thread)`.
    async fn get_thread(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
        size: PageSize,
    ) -> StoreResult<Thread>;
    /// The comments of a thread after position `after` (0: from the first). `NotFound(Room)`
    /// or `NotFound(Thread)`.
    async fn list_comments(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
        after: i64,
        size: PageSize,
    ) -> StoreResult<CommentPage>;
}

/// One user's reaction to add or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionWrite {
    pub user_id: UserId,
    pub emoji: String,
    pub change: ReactionChange,
}
