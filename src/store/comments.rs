//! Persistence of comment threads, comments and reactions. Every write to a thread or its
//! comments takes the thread's row lock (a new thread: the room's), and checks the limits
//! under it, so that concurrent writers can neither exceed a limit nor interleave.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Entity, Listed, Page, PageSize, RoomScope, StoreError, StoreResult};
use crate::domain::comment::group_reactions;
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

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {text:?}")))
}

fn parse_metadata(text: Option<String>, what: &str) -> StoreResult<Option<Metadata>> {
    text.map(|text| {
        serde_json::from_str::<Metadata>(&text)
            .map_err(|_| StoreError::Corrupt(format!("{what} metadata")))
    })
    .transpose()
}

/// Metadata as stored: its JSON text.
pub(super) fn metadata_text(metadata: Option<&Metadata>) -> Option<String> {
    metadata.map(|m| serde_json::Value::Object(m.clone()).to_string())
}

pub(super) struct ThreadRow {
    pub id: String,
    pub room_id: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub metadata: Option<String>,
}

impl ThreadRow {
    /// What the thread weighs in a page, besides its comments.
    pub(super) fn bytes(&self) -> i64 {
        THREAD_BYTES + self.metadata.as_ref().map_or(0, |m| m.len() as i64)
    }

    pub(super) fn into_thread(self, comments: CommentPage, count: i64) -> StoreResult<Thread> {
        Ok(Thread {
            id: parse(&self.id, "thread id")?,
            room_id: parse(&self.room_id, "room id")?,
            created_by: parse(&self.created_by, "thread author")?,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
            resolved: self.resolved_at.is_some(),
            resolved_at: self.resolved_at.map(Timestamp::from_millis),
            resolved_by: self
                .resolved_by
                .map(|by| parse(&by, "resolved by"))
                .transpose()?,
            metadata: parse_metadata(self.metadata, "thread")?,
            comment_count: count,
            comments_cursor: comments.cursor.map(|seq| seq.to_string()),
            comments: comments.comments,
        })
    }
}

pub(super) struct CommentRow {
    pub id: String,
    pub thread_id: String,
    pub room_id: String,
    pub user_id: String,
    pub body: String,
    pub metadata: Option<String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    /// Its position in the thread.
    pub seq: i64,
}

impl CommentRow {
    fn into_comment(self, reactions: Vec<(String, UserId)>) -> StoreResult<Comment> {
        Ok(Comment {
            id: parse(&self.id, "comment id")?,
            thread_id: parse(&self.thread_id, "thread id")?,
            room_id: parse(&self.room_id, "room id")?,
            user_id: parse(&self.user_id, "comment author")?,
            body: self.body,
            metadata: parse_metadata(self.metadata, "comment")?,
            created_at: Timestamp::from_millis(self.created_at),
            edited_at: self.edited_at.map(Timestamp::from_millis),
            reactions: group_reactions(reactions),
        })
    }
}

/// One user's emoji on a comment, read in the order reactions were added.
pub(super) struct ReactionRow {
    pub comment_id: String,
    pub emoji: String,
    pub user_id: String,
}

/// Builds comments (kept in their order) from their rows and the reactions to them (in the
/// order they were added).
pub(super) fn assemble(
    comments: Vec<CommentRow>,
    reactions: Vec<ReactionRow>,
) -> StoreResult<Vec<Comment>> {
    let mut by_comment: HashMap<String, Vec<(String, UserId)>> = HashMap::new();
    for row in reactions {
        let user_id = parse(&row.user_id, "reaction user")?;
        by_comment
            .entry(row.comment_id)
            .or_default()
            .push((row.emoji, user_id));
    }
    comments
        .into_iter()
        .map(|row| {
            let reactions = by_comment.remove(&row.id).unwrap_or_default();
            row.into_comment(reactions)
        })
        .collect()
}

/// One comment and the reactions to it.
pub(super) fn assemble_comment(
    comment: CommentRow,
    reactions: Vec<ReactionRow>,
) -> StoreResult<Comment> {
    let reactions = reactions
        .into_iter()
        .map(|row| Ok((row.emoji, parse(&row.user_id, "reaction user")?)))
        .collect::<StoreResult<Vec<_>>>()?;
    comment.into_comment(reactions)
}

pub(super) fn not_found(what: Entity) -> StoreError {
    StoreError::NotFound(what)
}

/// Implements `CommentStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_comment_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::comments::CommentStore for $store {
            async fn create_thread(
                &self,
                scope: $crate::store::RoomScope,
                thread: &$crate::store::comments::NewThread,
                max_threads: i64,
            ) -> $crate::store::StoreResult<$crate::domain::Thread> {
                use $crate::store::comments::{metadata_text, not_found};
                use $crate::store::Entity;
                let mut tx = self.pool.begin().await?;
                if !comment_sql::lock_room(&mut tx, scope).await? {
                    return Err(not_found(Entity::Room));
                }
                let (count, last) = comment_sql::count_and_last(
                    &mut tx,
                    "SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS last \
                     FROM comment_threads WHERE room_id = $1",
                    &scope.room_id.to_string(),
                )
                .await?;
                $crate::domain::limits::Limit::Threads(max_threads).check_one_more(count)?;
                let at = thread.created_at.as_millis();
                let metadata = metadata_text(thread.metadata.as_ref());
                sqlx::query(
                    "INSERT INTO comment_threads \
                       (id, room_id, seq, created_by, created_at, updated_at, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6)",
                )
                .bind(thread.id.as_str())
                .bind(scope.room_id.to_string())
                .bind(last + 1)
                .bind(thread.created_by.to_string())
                .bind(at)
                .bind(metadata)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO comments \
                       (id, thread_id, room_id, seq, user_id, body, created_at) \
                     VALUES ($1, $2, $3, 1, $4, $5, $6)",
                )
                .bind(thread.first_comment.as_str())
                .bind(thread.id.as_str())
                .bind(scope.room_id.to_string())
                .bind(thread.created_by.to_string())
                .bind(&thread.body)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                // It has one comment: any size holds it.
                let one = $crate::store::PageSize { items: 1, bytes: i64::MAX };
                let created = comment_sql::load_thread(&mut tx, scope, thread.id.as_str(), one)
                    .await?
                    .ok_or(not_found(Entity::Thread))?;
                tx.commit().await?;
                Ok(created)
            }

            async fn add_comment(
                &self,
                scope: $crate::store::RoomScope,
                comment: &$crate::store::comments::NewComment,
                max_comments: i64,
            ) -> $crate::store::StoreResult<$crate::domain::Comment> {
                use $crate::store::comments::{metadata_text, not_found};
                use $crate::store::Entity;
                let thread_id = comment.thread_id.as_str();
                let mut tx = self.pool.begin().await?;
                if !comment_sql::lock_thread(&mut tx, scope, thread_id).await? {
                    return Err(not_found(Entity::Thread));
                }
                let (count, last) = comment_sql::count_and_last(
                    &mut tx,
                    "SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS last \
                     FROM comments WHERE thread_id = $1",
                    thread_id,
                )
                .await?;
                $crate::domain::limits::Limit::Comments(max_comments).check_one_more(count)?;
                sqlx::query(
                    "INSERT INTO comments \
                       (id, thread_id, room_id, seq, user_id, body, metadata, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(comment.id.as_str())
                .bind(thread_id)
                .bind(scope.room_id.to_string())
                .bind(last + 1)
                .bind(comment.user_id.to_string())
                .bind(&comment.body)
                .bind(metadata_text(comment.metadata.as_ref()))
                .bind(comment.created_at.as_millis())
                .execute(&mut *tx)
                .await?;
                comment_sql::touch_thread(&mut tx, thread_id, comment.created_at).await?;
                let created = comment_sql::load_comment(&mut tx, comment.id.as_str())
                    .await?
                    .ok_or(not_found(Entity::Comment))?;
                tx.commit().await?;
                Ok(created)
            }

            async fn edit_comment(
                &self,
                scope: $crate::store::RoomScope,
                comment_id: &$crate::domain::CommentId,
                author: $crate::domain::UserId,
                changes: &$crate::store::comments::CommentChanges,
            ) -> $crate::store::StoreResult<
                Result<$crate::domain::Comment, $crate::store::comments::NotAuthor>,
            > {
                use $crate::store::comments::{metadata_text, not_found, NotAuthor};
                use $crate::store::Entity;
                let now = $crate::domain::Timestamp::now();
                let mut tx = self.pool.begin().await?;
                let Some(thread_id) =
                    comment_sql::lock_thread_of(&mut tx, scope, comment_id.as_str()).await?
                else {
                    return Err(not_found(Entity::Comment));
                };
                let Some(written_by) =
                    comment_sql::comment_author(&mut tx, comment_id.as_str()).await?
                else {
                    return Err(not_found(Entity::Comment));
                };
                if written_by != author.to_string() {
                    return Ok(Err(NotAuthor));
                }
                let mut update = sqlx::QueryBuilder::<$db>::new("UPDATE comments SET edited_at = ");
                update.push_bind(now.as_millis());
                if let Some(body) = &changes.body {
                    update.push(", body = ").push_bind(body.clone());
                }
                if let Some(metadata) = &changes.metadata {
                    update
                        .push(", metadata = ")
                        .push_bind(metadata_text(metadata.as_ref()));
                }
                update
                    .push(" WHERE id = ")
                    .push_bind(comment_id.as_str().to_owned());
                update.build().execute(&mut *tx).await?;
                comment_sql::touch_thread(&mut tx, &thread_id, now).await?;
                let edited = comment_sql::load_comment(&mut tx, comment_id.as_str())
                    .await?
                    .ok_or(not_found(Entity::Comment))?;
                tx.commit().await?;
                Ok(Ok(edited))
            }

            async fn delete_comment(
                &self,
                scope: $crate::store::RoomScope,
                comment_id: &$crate::domain::CommentId,
                actor: $crate::store::comments::Actor,
            ) -> $crate::store::StoreResult<
                Result<$crate::store::comments::CommentDeleted, $crate::store::comments::NotAuthor>,
            > {
                use $crate::store::comments::{not_found, Actor, CommentDeleted, NotAuthor};
                use $crate::store::{Entity, StoreError};
                let now = $crate::domain::Timestamp::now();
                let mut tx = self.pool.begin().await?;
                let Some(thread_id) =
                    comment_sql::lock_thread_of(&mut tx, scope, comment_id.as_str()).await?
                else {
                    return Err(not_found(Entity::Comment));
                };
                let Some(written_by) =
                    comment_sql::comment_author(&mut tx, comment_id.as_str()).await?
                else {
                    return Err(not_found(Entity::Comment));
                };
                if let Actor::User(user_id) = actor {
                    if written_by != user_id.to_string() {
                        return Ok(Err(NotAuthor));
                    }
                }
                sqlx::query("DELETE FROM comments WHERE id = $1")
                    .bind(comment_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let (left, _) = comment_sql::count_and_last(
                    &mut tx,
                    "SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS last \
                     FROM comments WHERE thread_id = $1",
                    &thread_id,
                )
                .await?;
                let thread_deleted = left == 0;
                if thread_deleted {
                    sqlx::query("DELETE FROM comment_threads WHERE id = $1")
                        .bind(&thread_id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    comment_sql::touch_thread(&mut tx, &thread_id, now).await?;
                }
                tx.commit().await?;
                let thread_id = thread_id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("thread id {thread_id:?}")))?;
                Ok(Ok(CommentDeleted {
                    thread_id,
                    thread_deleted,
                }))
            }

            async fn delete_thread(
                &self,
                scope: $crate::store::RoomScope,
                thread_id: &$crate::domain::ThreadId,
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::comments::not_found;
                use $crate::store::Entity;
                // Its comments and their reactions go with it (ON DELETE CASCADE).
                let done = sqlx::query(
                    "DELETE FROM comment_threads WHERE id = $1 AND room_id = $2 \
                       AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
                )
                .bind(thread_id.as_str())
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .execute(&self.pool)
                .await?;
                if done.rows_affected() > 0 {
                    return Ok(());
                }
                let mut conn = self.pool.acquire().await?;
                if comment_sql::room_exists(&mut conn, scope).await? {
                    Err(not_found(Entity::Thread))
                } else {
                    Err(not_found(Entity::Room))
                }
            }

            async fn resolve_thread(
                &self,
                scope: $crate::store::RoomScope,
                thread_id: &$crate::domain::ThreadId,
                resolution: $crate::store::comments::Resolution,
                size: $crate::store::PageSize,
            ) -> $crate::store::StoreResult<
                $crate::store::comments::Changed<$crate::domain::Thread>,
            > {
                use $crate::store::comments::{not_found, Changed, Resolution};
                use $crate::store::Entity;
                let now = $crate::domain::Timestamp::now();
                let id = thread_id.as_str();
                let mut tx = self.pool.begin().await?;
                if !comment_sql::lock_thread(&mut tx, scope, id).await? {
                    return Err(not_found(Entity::Thread));
                }
                let change = match resolution {
                    Resolution::Resolve { by } => sqlx::query(
                        "UPDATE comment_threads SET resolved_at = $1, resolved_by = $2 \
                         WHERE id = $3 AND resolved_at IS NULL",
                    )
                    .bind(now.as_millis())
                    .bind(by.to_string())
                    .bind(id),
                    Resolution::Reopen => sqlx::query(
                        "UPDATE comment_threads SET resolved_at = NULL, resolved_by = NULL \
                         WHERE id = $1 AND resolved_at IS NOT NULL",
                    )
                    .bind(id),
                };
                let changed = change.execute(&mut *tx).await?.rows_affected() > 0;
                if changed {
                    comment_sql::touch_thread(&mut tx, id, now).await?;
                }
                let thread = comment_sql::load_thread(&mut tx, scope, id, size)
                    .await?
                    .ok_or(not_found(Entity::Thread))?;
                tx.commit().await?;
                Ok(Changed {
                    value: thread,
                    changed,
                })
            }

            async fn react(
                &self,
                scope: $crate::store::RoomScope,
                comment_id: &$crate::domain::CommentId,
                reaction: &$crate::store::comments::ReactionWrite,
                limits: $crate::store::comments::ReactionLimits,
            ) -> $crate::store::StoreResult<
                $crate::store::comments::Changed<$crate::domain::Comment>,
            > {
                use $crate::store::comments::{not_found, Changed, ReactionChange};
                use $crate::store::Entity;
                let now = $crate::domain::Timestamp::now();
                let id = comment_id.as_str();
                let user_id = reaction.user_id.to_string();
                let mut tx = self.pool.begin().await?;
                let Some(thread_id) = comment_sql::lock_thread_of(&mut tx, scope, id).await?
                else {
                    return Err(not_found(Entity::Comment));
                };
                if comment_sql::comment_author(&mut tx, id).await?.is_none() {
                    return Err(not_found(Entity::Comment));
                }
                let changed = match reaction.change {
                    ReactionChange::Add => {
                        let row = sqlx::query(
                            "SELECT COUNT(DISTINCT emoji) AS kinds, COUNT(*) AS total, \
                               COALESCE(MAX(seq), 0) AS last, \
                               COALESCE(SUM(CASE WHEN emoji = $2 THEN 1 ELSE 0 END), 0) AS same, \
                               COALESCE(SUM(CASE WHEN emoji = $2 AND user_id = $3 \
                                 THEN 1 ELSE 0 END), 0) AS mine \
                             FROM comment_reactions WHERE comment_id = $1",
                        )
                        .bind(id)
                        .bind(&reaction.emoji)
                        .bind(&user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        let counts = $crate::domain::limits::ReactionCounts {
                            emoji: sqlx::Row::try_get(&row, "kinds")?,
                            total: sqlx::Row::try_get(&row, "total")?,
                            same_emoji: sqlx::Row::try_get(&row, "same")?,
                            mine: sqlx::Row::try_get(&row, "mine")?,
                        };
                        let last: i64 = sqlx::Row::try_get(&row, "last")?;
                        if !limits.admit(counts)? {
                            false
                        } else {
                            sqlx::query(
                                "INSERT INTO comment_reactions \
                                   (comment_id, emoji, user_id, seq, created_at) \
                                 VALUES ($1, $2, $3, $4, $5)",
                            )
                            .bind(id)
                            .bind(&reaction.emoji)
                            .bind(&user_id)
                            .bind(last + 1)
                            .bind(now.as_millis())
                            .execute(&mut *tx)
                            .await?;
                            true
                        }
                    }
                    ReactionChange::Remove => {
                        sqlx::query(
                            "DELETE FROM comment_reactions \
                             WHERE comment_id = $1 AND emoji = $2 AND user_id = $3",
                        )
                        .bind(id)
                        .bind(&reaction.emoji)
                        .bind(&user_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            > 0
                    }
                };
                if changed {
                    comment_sql::touch_thread(&mut tx, &thread_id, now).await?;
                }
                let comment = comment_sql::load_comment(&mut tx, id)
                    .await?
                    .ok_or(not_found(Entity::Comment))?;
                tx.commit().await?;
                Ok(Changed {
                    value: comment,
                    changed,
                })
            }

            async fn list_threads(
                &self,
                scope: $crate::store::RoomScope,
                filter: $crate::store::comments::ThreadFilter,
                page: $crate::store::Page,
                size: $crate::store::PageSize,
            ) -> $crate::store::StoreResult<$crate::store::Listed<$crate::domain::Thread>> {
                use $crate::store::comments::not_found;
                use $crate::store::Entity;
                let condition = match filter.resolved {
                    None => "",
                    Some(true) => " AND resolved_at IS NOT NULL",
                    Some(false) => " AND resolved_at IS NULL",
                };
                let mut tx = comment_sql::begin_read(&self.pool).await?;
                if !comment_sql::room_exists(&mut tx, scope).await? {
                    return Err(not_found(Entity::Room));
                }
                let count = format!(
                    "SELECT COUNT(*) AS total FROM comment_threads WHERE room_id = $1{condition}"
                );
                let total: i64 = sqlx::Row::try_get(
                    &sqlx::query(&count)
                        .bind(scope.room_id.to_string())
                        .fetch_one(&mut *tx)
                        .await?,
                    "total",
                )?;
                let list = format!(
                    "SELECT {} FROM comment_threads WHERE room_id = $1{condition} \
                     ORDER BY seq DESC LIMIT $2 OFFSET $3",
                    $crate::store::comments::THREAD_COLUMNS
                );
                let found = sqlx::query(&list)
                    .bind(scope.room_id.to_string())
                    .bind(page.limit)
                    .bind(page.offset)
                    .fetch_all(&mut *tx)
                    .await?;
                let rows = found
                    .iter()
                    .map(comment_sql::thread_row)
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                let items = comment_sql::load_threads(&mut tx, rows, size).await?;
                tx.commit().await?;
                Ok($crate::store::Listed { items, total })
            }

            async fn get_thread(
                &self,
                scope: $crate::store::RoomScope,
                thread_id: &$crate::domain::ThreadId,
                size: $crate::store::PageSize,
            ) -> $crate::store::StoreResult<$crate::domain::Thread> {
                use $crate::store::comments::not_found;
                use $crate::store::Entity;
                let mut tx = comment_sql::begin_read(&self.pool).await?;
                let thread =
                    comment_sql::load_thread(&mut tx, scope, thread_id.as_str(), size).await?;
                let found = match thread {
                    Some(thread) => Ok(thread),
                    None if comment_sql::room_exists(&mut tx, scope).await? => {
                        Err(not_found(Entity::Thread))
                    }
                    None => Err(not_found(Entity::Room)),
                };
                tx.commit().await?;
                found
            }

            async fn list_comments(
                &self,
                scope: $crate::store::RoomScope,
                thread_id: &$crate::domain::ThreadId,
                after: i64,
                size: $crate::store::PageSize,
            ) -> $crate::store::StoreResult<$crate::store::comments::CommentPage> {
                use $crate::store::comments::not_found;
                use $crate::store::Entity;
                let mut tx = comment_sql::begin_read(&self.pool).await?;
                let exists = sqlx::query(
                    "SELECT 1 AS one FROM comment_threads WHERE id = $1 AND room_id = $2 \
                       AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
                )
                .bind(thread_id.as_str())
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if !exists {
                    return Err(if comment_sql::room_exists(&mut tx, scope).await? {
                        not_found(Entity::Thread)
                    } else {
                        not_found(Entity::Room)
                    });
                }
                let (page, _) =
                    comment_sql::load_comments(&mut tx, thread_id.as_str(), after, size).await?;
                tx.commit().await?;
                Ok(page)
            }
        }

        /// The SQL of `CommentStore`, written once for both backends.
        mod comment_sql {
            use sqlx::Row as _;

            use $crate::store::comments::{CommentRow, ReactionRow, ThreadRow};
            use $crate::store::{RoomScope, StoreResult};

            type Conn = <$db as sqlx::Database>::Connection;
            type DbRow = <$db as sqlx::Database>::Row;

            /// A transaction whose reads all see one snapshot: a thread and its comments
            /// are read by several queries. (SQLite's read transactions always do.)
            pub async fn begin_read(
                pool: &sqlx::Pool<$db>,
            ) -> Result<sqlx::Transaction<'static, $db>, sqlx::Error> {
                pool.begin_with(<$db as $crate::store::dialect::Dialect>::BEGIN_SNAPSHOT)
                    .await
            }

            pub async fn room_exists(conn: &mut Conn, scope: RoomScope) -> StoreResult<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM rooms WHERE id = $1 AND account_id = $2")
                    .bind(scope.room_id.to_string())
                    .bind(scope.account_id.to_string())
                    .fetch_optional(conn)
                    .await?;
                Ok(row.is_some())
            }

            /// Takes the room's row lock (SQLite: the write lock, at once, as the first
            /// statement); false if the account has no such room.
            pub async fn lock_room(conn: &mut Conn, scope: RoomScope) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE rooms SET id = id WHERE id = $1 AND account_id = $2")
                    .bind(scope.room_id.to_string())
                    .bind(scope.account_id.to_string())
                    .execute(conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            /// Takes the row lock of a thread of the room without changing it; false if the
            /// room has no such thread.
            pub async fn lock_thread(
                conn: &mut Conn,
                scope: RoomScope,
                thread_id: &str,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE comment_threads SET updated_at = updated_at \
                     WHERE id = $1 AND room_id = $2 \
                       AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
                )
                .bind(thread_id)
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .execute(conn)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            /// Takes the row lock of the thread a comment of the room belongs to; that
            /// thread's ID, or `None` if the room has no such comment.
            pub async fn lock_thread_of(
                conn: &mut Conn,
                scope: RoomScope,
                comment_id: &str,
            ) -> StoreResult<Option<String>> {
                let row = sqlx::query(
                    "UPDATE comment_threads SET updated_at = updated_at \
                     WHERE id = (SELECT thread_id FROM comments WHERE id = $1 AND room_id = $2) \
                       AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3) \
                     RETURNING id",
                )
                .bind(comment_id)
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_optional(conn)
                .await?;
                Ok(row.map(|r| r.try_get("id")).transpose()?)
            }

            /// Records activity in a (locked) thread; `updated_at` never goes back.
            pub async fn touch_thread(
                conn: &mut Conn,
                thread_id: &str,
                at: $crate::domain::Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE comment_threads \
                     SET updated_at = CASE WHEN updated_at > $1 THEN updated_at ELSE $1 END \
                     WHERE id = $2",
                )
                .bind(at.as_millis())
                .bind(thread_id)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// The author of a comment, if it (still) exists.
            pub async fn comment_author(
                conn: &mut Conn,
                comment_id: &str,
            ) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT user_id FROM comments WHERE id = $1")
                    .bind(comment_id)
                    .fetch_optional(conn)
                    .await?;
                Ok(row.map(|r| r.try_get("user_id")).transpose()?)
            }

            /// `n` and `last` of a `SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS last`
            /// with one parameter.
            pub async fn count_and_last(
                conn: &mut Conn,
                sql: &str,
                key: &str,
            ) -> StoreResult<(i64, i64)> {
                let row = sqlx::query(sql).bind(key).fetch_one(conn).await?;
                Ok((row.try_get("n")?, row.try_get("last")?))
            }

            pub fn thread_row(row: &DbRow) -> Result<ThreadRow, sqlx::Error> {
                Ok(ThreadRow {
                    id: row.try_get("id")?,
                    room_id: row.try_get("room_id")?,
                    created_by: row.try_get("created_by")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    resolved_at: row.try_get("resolved_at")?,
                    resolved_by: row.try_get("resolved_by")?,
                    metadata: row.try_get("metadata")?,
                })
            }

            fn comment_row(row: &DbRow) -> Result<CommentRow, sqlx::Error> {
                Ok(CommentRow {
                    id: row.try_get("id")?,
                    thread_id: row.try_get("thread_id")?,
                    room_id: row.try_get("room_id")?,
                    user_id: row.try_get("user_id")?,
                    body: row.try_get("body")?,
                    metadata: row.try_get("metadata")?,
                    created_at: row.try_get("created_at")?,
                    edited_at: row.try_get("edited_at")?,
                    seq: row.try_get("seq")?,
                })
            }

            fn reaction_row(row: &DbRow) -> Result<ReactionRow, sqlx::Error> {
                Ok(ReactionRow {
                    comment_id: row.try_get("comment_id")?,
                    emoji: row.try_get("emoji")?,
                    user_id: row.try_get("user_id")?,
                })
            }

            /// A thread of the room with its first comments (see `load_threads`).
            pub async fn load_thread(
                conn: &mut Conn,
                scope: RoomScope,
                thread_id: &str,
                size: $crate::store::PageSize,
            ) -> StoreResult<Option<$crate::domain::Thread>> {
                let sql = format!(
                    "SELECT {} FROM comment_threads WHERE id = $1 AND room_id = $2 \
                       AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
                    $crate::store::comments::THREAD_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(thread_id)
                    .bind(scope.room_id.to_string())
                    .bind(scope.account_id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let mut threads = load_threads(conn, vec![thread_row(&row)?], size).await?;
                Ok(threads.pop())
            }

            /// The threads of `rows`, in their order, each with its first comments (at most
            /// `size.items`), while `size.bytes` last: the threads after the one that spends
            /// them are left out, and a thread's comments stop early if they run out. Every
            /// thread returned has its first comment.
            pub async fn load_threads(
                conn: &mut Conn,
                rows: Vec<ThreadRow>,
                size: $crate::store::PageSize,
            ) -> StoreResult<Vec<$crate::domain::Thread>> {
                let counts = comment_counts(conn, &rows).await?;
                let mut left = size.bytes;
                let mut threads = Vec::with_capacity(rows.len());
                for row in rows {
                    if !threads.is_empty() && left <= 0 {
                        break;
                    }
                    left = left.saturating_sub(row.bytes());
                    let budget = $crate::store::PageSize { items: size.items, bytes: left };
                    let (page, used) = load_comments(conn, &row.id, 0, budget).await?;
                    left = left.saturating_sub(used);
                    let count = counts.get(&row.id).copied().unwrap_or(0);
                    threads.push(row.into_thread(page, count)?);
                }
                Ok(threads)
            }

            /// How many comments each of the threads holds.
            async fn comment_counts(
                conn: &mut Conn,
                rows: &[ThreadRow],
            ) -> StoreResult<std::collections::HashMap<String, i64>> {
                if rows.is_empty() {
                    return Ok(Default::default());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT thread_id, COUNT(*) AS n FROM comments WHERE thread_id IN (",
                );
                let mut ids = query.separated(", ");
                for row in rows {
                    ids.push_bind(row.id.clone());
                }
                query.push(") GROUP BY thread_id");
                query
                    .build()
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(|row| Ok((row.try_get("thread_id")?, row.try_get("n")?)))
                    .collect()
            }

            /// The comments of a thread after position `after`, with their reactions: at most
            /// `size.items`, and at most `size.bytes` of them (but always one, if any); and
            /// the bytes they take.
            pub async fn load_comments(
                conn: &mut Conn,
                thread_id: &str,
                after: i64,
                size: $crate::store::PageSize,
            ) -> StoreResult<($crate::store::comments::CommentPage, i64)> {
                use $crate::store::comments::{CommentPage, COMMENT_BYTES, COMMENT_COLUMNS};
                use $crate::store::page_bytes;
                let mut query =
                    sqlx::QueryBuilder::<$db>::new(page_bytes::start(COMMENT_BYTES, "seq"));
                query
                    .push(format!(
                        "SELECT {COMMENT_COLUMNS}, (SELECT COUNT(*) FROM comment_reactions r \
                           WHERE r.comment_id = comments.id) AS reaction_count \
                         FROM comments WHERE thread_id = "
                    ))
                    .push_bind(thread_id.to_owned())
                    .push(" AND seq > ")
                    .push_bind(after)
                    // One more than asked: whether there is more.
                    .push(" ORDER BY seq LIMIT ")
                    .push_bind(size.items.saturating_add(1))
                    .push(page_bytes::END)
                    .push_bind(size.bytes)
                    .push(page_bytes::end_order("seq"));
                let mut rows = query.build().fetch_all(&mut *conn).await?;
                let totals = rows
                    .iter()
                    .map(|row| row.try_get::<i64, _>("page_bytes"))
                    .collect::<Result<Vec<_>, _>>()?;
                let fit = page_bytes::keep_within(totals.iter().copied(), size.bytes)
                    .min(size.items.max(1) as usize);
                let used = fit.checked_sub(1).map_or(0, |last| totals[last]);
                let more = rows.len() > fit;
                rows.truncate(fit);
                let comment_rows = rows
                    .iter()
                    .map(comment_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let cursor = comment_rows.last().filter(|_| more).map(|row| row.seq);
                let reaction_rows = if comment_rows.is_empty() {
                    Vec::new()
                } else {
                    let mut reactions = sqlx::QueryBuilder::<$db>::new(
                        "SELECT comment_id, emoji, user_id FROM comment_reactions \
                         WHERE comment_id IN (",
                    );
                    let mut ids = reactions.separated(", ");
                    for row in &comment_rows {
                        ids.push_bind(row.id.clone());
                    }
                    reactions.push(") ORDER BY comment_id, seq");
                    reactions
                        .build()
                        .fetch_all(&mut *conn)
                        .await?
                        .iter()
                        .map(reaction_row)
                        .collect::<Result<Vec<_>, _>>()?
                };
                let comments = $crate::store::comments::assemble(comment_rows, reaction_rows)?;
                Ok((CommentPage { comments, cursor }, used))
            }

            /// A comment with its reactions.
            pub async fn load_comment(
                conn: &mut Conn,
                comment_id: &str,
            ) -> StoreResult<Option<$crate::domain::Comment>> {
                let sql = format!(
                    "SELECT {} FROM comments WHERE id = $1",
                    $crate::store::comments::COMMENT_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(comment_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let reactions = sqlx::query(
                    "SELECT comment_id, emoji, user_id FROM comment_reactions \
                     WHERE comment_id = $1 ORDER BY seq",
                )
                .bind(comment_id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(reaction_row)
                .collect::<Result<Vec<_>, _>>()?;
                $crate::store::comments::assemble_comment(comment_row(&row)?, reactions).map(Some)
            }
        }
    };
}

pub(super) use impl_comment_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_row(id: &ThreadId, room: &str) -> ThreadRow {
        ThreadRow {
            id: id.to_string(),
            room_id: room.to_owned(),
            created_by: UserId::new().to_string(),
            created_at: 1,
            updated_at: 2,
            resolved_at: Some(3),
            resolved_by: Some(UserId::new().to_string()),
            metadata: Some(r#"{"x":1,"y":2}"#.to_owned()),
        }
    }

    fn comment_row(id: &CommentId, thread: &ThreadId, room: &str, body: &str) -> CommentRow {
        CommentRow {
            id: id.to_string(),
            thread_id: thread.to_string(),
            room_id: room.to_owned(),
            user_id: UserId::new().to_string(),
            body: body.to_owned(),
            metadata: None,
            created_at: 1,
            edited_at: None,
            seq: 1,
        }
    }

    #[test]
    fn assembles_comments_in_order_with_their_reactions() {
        let room = crate::domain::RoomId::new().to_string();
        let thread = ThreadId::new();
        let (c1, c2) = (CommentId::new(), CommentId::new());
        let user = UserId::new();
        let comments = assemble(
            vec![
                comment_row(&c1, &thread, &room, "first"),
                comment_row(&c2, &thread, &room, "second"),
            ],
            vec![ReactionRow {
                comment_id: c2.to_string(),
                emoji: "👍".into(),
                user_id: user.to_string(),
            }],
        )
        .unwrap();
        let bodies: Vec<_> = comments.iter().map(|c| &c.body).collect();
        assert_eq!(bodies, ["first", "second"]);
        assert_eq!(comments[1].reactions[0].user_ids, vec![user]);
        assert!(comments[0].reactions.is_empty());
    }

    #[test]
    fn threads_say_how_many_comments_they_hold_and_where_the_rest_start() {
        let room = crate::domain::RoomId::new().to_string();
        let id = ThreadId::new();
        let page = CommentPage {
            comments: Vec::new(),
            cursor: Some(7),
        };
        let thread = thread_row(&id, &room).into_thread(page, 12).unwrap();
        assert!(thread.resolved);
        assert_eq!(thread.comment_count, 12);
        assert_eq!(thread.comments_cursor.as_deref(), Some("7"));
        assert_eq!(
            serde_json::to_string(&thread.metadata).unwrap(),
            r#"{"x":1,"y":2}"#
        );
    }

    #[test]
    fn corrupt_rows_are_reported() {
        let room = crate::domain::RoomId::new().to_string();
        let mut row = thread_row(&ThreadId::new(), &room);
        row.metadata = Some("[1]".into());
        let page = CommentPage {
            comments: Vec::new(),
            cursor: None,
        };
        assert!(matches!(
            row.into_thread(page, 0),
            Err(StoreError::Corrupt(_))
        ));
    }
}
