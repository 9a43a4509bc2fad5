//! `CommentStore` on either database. Every write takes its thread's row lock (a new thread:
//! the room's) before it reads anything.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::rows::{metadata_text, ThreadRow};
use super::{
    Actor, Changed, CommentChanges, CommentDeleted, CommentPage, CommentStore, NewComment,
    NewThread, NotAuthor, ReactionChange, ReactionLimits, ReactionWrite, Resolution, ThreadFilter,
    THREAD_COLUMNS,
};
use crate::domain::limits::{Limit, ReactionCounts};
use crate::domain::{Comment, CommentId, Thread, ThreadId, Timestamp, UserId};
use crate::store::dialect::{Column, Dialect, RowsAffected};
use crate::store::query::Sql;
use crate::store::sql::SqlStore;
use crate::store::{Entity, Listed, Page, PageSize, RoomScope, StoreError, StoreResult};

#[async_trait]
impl<DB> CommentStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn create_thread(
        &self,
        scope: RoomScope,
        thread: &NewThread,
        max_threads: i64,
    ) -> StoreResult<Thread> {
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        let (threads, last): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM comment_threads WHERE room_id = $1",
        )
        .bind(scope.room_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        Limit::Threads(max_threads).check_one_more(threads)?;
        let at = thread.created_at.as_millis();
        sqlx::query(
            "INSERT INTO comment_threads \
               (id, room_id, seq, created_by, created_at, updated_at, metadata) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(thread.id.to_string())
        .bind(scope.room_id.to_string())
        .bind(last + 1)
        .bind(thread.created_by.to_string())
        .bind(at)
        .bind(metadata_text(thread.metadata.as_ref()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO comments (id, thread_id, room_id, seq, user_id, body, created_at) \
             VALUES ($1, $2, $3, 1, $4, $5, $6)",
        )
        .bind(thread.first_comment.to_string())
        .bind(thread.id.to_string())
        .bind(scope.room_id.to_string())
        .bind(thread.created_by.to_string())
        .bind(&thread.body)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        // It has one comment: any size holds it.
        let one = PageSize {
            items: 1,
            bytes: i64::MAX,
        };
        let created = Self::load_thread(&mut tx, scope, thread.id.as_str(), one)
            .await?
            .ok_or(StoreError::NotFound(Entity::Thread))?;
        tx.commit().await?;
        Ok(created)
    }

    async fn add_comment(
        &self,
        scope: RoomScope,
        comment: &NewComment,
        max_comments: i64,
    ) -> StoreResult<Comment> {
        let thread_id = comment.thread_id.as_str();
        let mut tx = self.pool.begin().await?;
        if !Self::lock_thread(&mut tx, scope, thread_id).await? {
            return Err(StoreError::NotFound(Entity::Thread));
        }
        let (comments, last) = Self::count_comments(&mut tx, thread_id).await?;
        Limit::Comments(max_comments).check_one_more(comments)?;
        sqlx::query(
            "INSERT INTO comments \
               (id, thread_id, room_id, seq, user_id, body, metadata, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(comment.id.to_string())
        .bind(thread_id.to_owned())
        .bind(scope.room_id.to_string())
        .bind(last + 1)
        .bind(comment.user_id.to_string())
        .bind(&comment.body)
        .bind(metadata_text(comment.metadata.as_ref()))
        .bind(comment.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
        Self::touch_thread(&mut tx, thread_id, comment.created_at).await?;
        let created = Self::load_comment(&mut tx, comment.id.as_str())
            .await?
            .ok_or(StoreError::NotFound(Entity::Comment))?;
        tx.commit().await?;
        Ok(created)
    }

    async fn edit_comment(
        &self,
        scope: RoomScope,
        comment_id: &CommentId,
        author: UserId,
        changes: &CommentChanges,
    ) -> StoreResult<Result<Comment, NotAuthor>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let Some(thread_id) = Self::lock_thread_of(&mut tx, scope, comment_id.as_str()).await?
        else {
            return Err(StoreError::NotFound(Entity::Comment));
        };
        let Some(written_by) = Self::comment_author(&mut tx, comment_id.as_str()).await? else {
            return Err(StoreError::NotFound(Entity::Comment));
        };
        if written_by != author.to_string() {
            return Ok(Err(NotAuthor));
        }
        let mut update = Sql::new("UPDATE comments SET edited_at = ");
        update.bind(now.as_millis());
        if let Some(body) = &changes.body {
            update.push(", body = ").bind(body.clone());
        }
        if let Some(metadata) = &changes.metadata {
            update
                .push(", metadata = ")
                .bind(metadata_text(metadata.as_ref()));
        }
        update.push(" WHERE id = ").bind(comment_id.as_str());
        update.query::<DB>().execute(&mut *tx).await?;
        Self::touch_thread(&mut tx, &thread_id, now).await?;
        let edited = Self::load_comment(&mut tx, comment_id.as_str())
            .await?
            .ok_or(StoreError::NotFound(Entity::Comment))?;
        tx.commit().await?;
        Ok(Ok(edited))
    }

    async fn delete_comment(
        &self,
        scope: RoomScope,
        comment_id: &CommentId,
        actor: Actor,
    ) -> StoreResult<Result<CommentDeleted, NotAuthor>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        let Some(thread_id) = Self::lock_thread_of(&mut tx, scope, comment_id.as_str()).await?
        else {
            return Err(StoreError::NotFound(Entity::Comment));
        };
        let Some(written_by) = Self::comment_author(&mut tx, comment_id.as_str()).await? else {
            return Err(StoreError::NotFound(Entity::Comment));
        };
        if let Actor::User(user_id) = actor {
            if written_by != user_id.to_string() {
                return Ok(Err(NotAuthor));
            }
        }
        sqlx::query("DELETE FROM comments WHERE id = $1")
            .bind(comment_id.to_string())
            .execute(&mut *tx)
            .await?;
        let (left, _) = Self::count_comments(&mut tx, &thread_id).await?;
        let thread_deleted = left == 0;
        if thread_deleted {
            sqlx::query("DELETE FROM comment_threads WHERE id = $1")
                .bind(&thread_id)
                .execute(&mut *tx)
                .await?;
        } else {
            Self::touch_thread(&mut tx, &thread_id, now).await?;
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

    async fn delete_thread(&self, scope: RoomScope, thread_id: &ThreadId) -> StoreResult<()> {
        // Its comments and their reactions go with it (ON DELETE CASCADE).
        let done = sqlx::query(
            "DELETE FROM comment_threads WHERE id = $1 AND room_id = $2 \
               AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
        )
        .bind(thread_id.to_string())
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        Err(StoreError::NotFound(
            if Self::room_exists(&mut conn, scope).await? {
                Entity::Thread
            } else {
                Entity::Room
            },
        ))
    }

    async fn resolve_thread(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
        resolution: Resolution,
        size: PageSize,
    ) -> StoreResult<Changed<Thread>> {
        let now = Timestamp::now();
        let id = thread_id.as_str();
        let mut tx = self.pool.begin().await?;
        if !Self::lock_thread(&mut tx, scope, id).await? {
            return Err(StoreError::NotFound(Entity::Thread));
        }
        let change = match resolution {
            Resolution::Resolve { by } => sqlx::query(
                "UPDATE comment_threads SET resolved_at = $1, resolved_by = $2 \
                 WHERE id = $3 AND resolved_at IS NULL",
            )
            .bind(now.as_millis())
            .bind(by.to_string())
            .bind(id.to_owned()),
            Resolution::Reopen => sqlx::query(
                "UPDATE comment_threads SET resolved_at = NULL, resolved_by = NULL \
                 WHERE id = $1 AND resolved_at IS NOT NULL",
            )
            .bind(id.to_owned()),
        };
        let changed = change.execute(&mut *tx).await?.rows_affected() > 0;
        if changed {
            Self::touch_thread(&mut tx, id, now).await?;
        }
        let thread = Self::load_thread(&mut tx, scope, id, size)
            .await?
            .ok_or(StoreError::NotFound(Entity::Thread))?;
        tx.commit().await?;
        Ok(Changed {
            value: thread,
            changed,
        })
    }

    async fn react(
        &self,
        scope: RoomScope,
        comment_id: &CommentId,
        reaction: &ReactionWrite,
        limits: ReactionLimits,
    ) -> StoreResult<Changed<Comment>> {
        let now = Timestamp::now();
        let id = comment_id.as_str();
        let user_id = reaction.user_id.to_string();
        let mut tx = self.pool.begin().await?;
        let Some(thread_id) = Self::lock_thread_of(&mut tx, scope, id).await? else {
            return Err(StoreError::NotFound(Entity::Comment));
        };
        if Self::comment_author(&mut tx, id).await?.is_none() {
            return Err(StoreError::NotFound(Entity::Comment));
        }
        let changed = match reaction.change {
            ReactionChange::Add => {
                let (emoji, total, last, same_emoji, mine): (i64, i64, i64, i64, i64) =
                    sqlx::query_as(
                        "SELECT COUNT(DISTINCT emoji), COUNT(*), COALESCE(MAX(seq), 0), \
                           COALESCE(SUM(CASE WHEN emoji = $2 THEN 1 ELSE 0 END), 0), \
                           COALESCE(SUM(CASE WHEN emoji = $2 AND user_id = $3 \
                             THEN 1 ELSE 0 END), 0) \
                         FROM comment_reactions WHERE comment_id = $1",
                    )
                    .bind(id.to_owned())
                    .bind(&reaction.emoji)
                    .bind(&user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let counts = ReactionCounts {
                    emoji,
                    total,
                    same_emoji,
                    mine,
                };
                let adds = limits.admit(counts)?;
                if adds {
                    sqlx::query(
                        "INSERT INTO comment_reactions \
                           (comment_id, emoji, user_id, seq, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id.to_owned())
                    .bind(&reaction.emoji)
                    .bind(&user_id)
                    .bind(last + 1)
                    .bind(now.as_millis())
                    .execute(&mut *tx)
                    .await?;
                }
                adds
            }
            ReactionChange::Remove => {
                sqlx::query(
                    "DELETE FROM comment_reactions \
                     WHERE comment_id = $1 AND emoji = $2 AND user_id = $3",
                )
                .bind(id.to_owned())
                .bind(&reaction.emoji)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0
            }
        };
        if changed {
            Self::touch_thread(&mut tx, &thread_id, now).await?;
        }
        let comment = Self::load_comment(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound(Entity::Comment))?;
        tx.commit().await?;
        Ok(Changed {
            value: comment,
            changed,
        })
    }

    async fn list_threads(
        &self,
        scope: RoomScope,
        filter: ThreadFilter,
        page: Page,
        size: PageSize,
    ) -> StoreResult<Listed<Thread>> {
        let condition = match filter.resolved {
            None => "",
            Some(true) => " AND resolved_at IS NOT NULL",
            Some(false) => " AND resolved_at IS NULL",
        };
        // A thread and its comments are read by several queries, which must agree.
        let mut tx = self.reads.begin_with(DB::BEGIN_SNAPSHOT).await?;
        if !Self::room_exists(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        let count = format!("SELECT COUNT(*) FROM comment_threads WHERE room_id = $1{condition}");
        let total: i64 = sqlx::query_scalar(&count)
            .bind(scope.room_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let list = format!(
            "SELECT {THREAD_COLUMNS} FROM comment_threads WHERE room_id = $1{condition} \
             ORDER BY seq DESC LIMIT $2 OFFSET $3"
        );
        let rows: Vec<ThreadRow> = sqlx::query_as(&list)
            .bind(scope.room_id.to_string())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *tx)
            .await?;
        let items = Self::load_threads(&mut tx, rows, size).await?;
        tx.commit().await?;
        Ok(Listed { items, total })
    }

    async fn get_thread(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
        size: PageSize,
    ) -> StoreResult<Thread> {
        let mut tx = self.reads.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let thread = Self::load_thread(&mut tx, scope, thread_id.as_str(), size).await?;
        let found = match thread {
            Some(thread) => Ok(thread),
            None if Self::room_exists(&mut tx, scope).await? => {
                Err(StoreError::NotFound(Entity::Thread))
            }
            None => Err(StoreError::NotFound(Entity::Room)),
        };
        tx.commit().await?;
        found
    }

    async fn list_comments(
        &self,
        scope: RoomScope,
        thread_id: &ThreadId,
        after: i64,
        size: PageSize,
    ) -> StoreResult<CommentPage> {
        let mut tx = self.reads.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let exists = sqlx::query(
            "SELECT 1 FROM comment_threads WHERE id = $1 AND room_id = $2 \
               AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
        )
        .bind(thread_id.to_string())
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(
                if Self::room_exists(&mut tx, scope).await? {
                    Entity::Thread
                } else {
                    Entity::Room
                },
            ));
        }
        let (page, _) = Self::load_comments(&mut tx, thread_id.as_str(), after, size).await?;
        tx.commit().await?;
        Ok(page)
    }
}
