//! What comment writes lock, and what comment reads load: threads with their first comments
//! and comments with their reactions, within a budget of bytes.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Executor};

use super::rows::{assemble, CommentRow, ReactionRow, ThreadRow};
use super::{CommentPage, COMMENT_BYTES, COMMENT_COLUMNS, THREAD_COLUMNS};
use crate::domain::{Comment, Thread, Timestamp};
use crate::store::dialect::{Column, Dialect, RowsAffected};
use crate::store::page::{fetch_fitted, page_bytes};
use crate::store::query::Sql;
use crate::store::sql::SqlStore;
use crate::store::{PageSize, RoomScope, StoreResult};

impl<DB> SqlStore<DB>
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
    /// Takes the row lock of a thread of the room without changing it; false if the room has
    /// no such thread.
    pub(super) async fn lock_thread(
        conn: &mut DB::Connection,
        scope: RoomScope,
        thread_id: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE comment_threads SET updated_at = updated_at \
             WHERE id = $1 AND room_id = $2 \
               AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)",
        )
        .bind(thread_id.to_owned())
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .execute(conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes the row lock of the thread a comment of the room belongs to; that thread's ID,
    /// or `None` if the room has no such comment.
    pub(super) async fn lock_thread_of(
        conn: &mut DB::Connection,
        scope: RoomScope,
        comment_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE comment_threads SET updated_at = updated_at \
             WHERE id = (SELECT thread_id FROM comments WHERE id = $1 AND room_id = $2) \
               AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3) \
             RETURNING id",
        )
        .bind(comment_id.to_owned())
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .fetch_optional(conn)
        .await?)
    }

    /// Records activity in a (locked) thread; `updated_at` never goes back.
    pub(super) async fn touch_thread(
        conn: &mut DB::Connection,
        thread_id: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE comment_threads \
             SET updated_at = CASE WHEN updated_at > $1 THEN updated_at ELSE $1 END \
             WHERE id = $2",
        )
        .bind(at.as_millis())
        .bind(thread_id.to_owned())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The author of a comment, if it (still) exists.
    pub(super) async fn comment_author(
        conn: &mut DB::Connection,
        comment_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM comments WHERE id = $1")
                .bind(comment_id.to_owned())
                .fetch_optional(conn)
                .await?,
        )
    }

    /// How many comments a thread holds, and the position of its last.
    pub(super) async fn count_comments(
        conn: &mut DB::Connection,
        thread_id: &str,
    ) -> StoreResult<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM comments WHERE thread_id = $1",
        )
        .bind(thread_id.to_owned())
        .fetch_one(conn)
        .await?)
    }

    /// A thread of the room with its first comments (see `load_threads`).
    pub(super) async fn load_thread(
        conn: &mut DB::Connection,
        scope: RoomScope,
        thread_id: &str,
        size: PageSize,
    ) -> StoreResult<Option<Thread>> {
        let sql = format!(
            "SELECT {THREAD_COLUMNS} FROM comment_threads WHERE id = $1 AND room_id = $2 \
               AND room_id IN (SELECT id FROM rooms WHERE id = $2 AND account_id = $3)"
        );
        let row: Option<ThreadRow> = sqlx::query_as(&sql)
            .bind(thread_id.to_owned())
            .bind(scope.room_id.to_string())
            .bind(scope.account_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Self::load_threads(conn, vec![row], size).await?.pop())
    }

    /// The threads of `rows`, in their order, each with its first comments (at most
    /// `size.items`), while `size.bytes` last: the threads after the one that spends them are
    /// left out, and a thread's comments stop early if they run out. Every thread returned
    /// has its first comment.
    pub(super) async fn load_threads(
        conn: &mut DB::Connection,
        rows: Vec<ThreadRow>,
        size: PageSize,
    ) -> StoreResult<Vec<Thread>> {
        let counts = Self::comment_counts(conn, &rows).await?;
        let mut left = size.bytes;
        let mut threads = Vec::with_capacity(rows.len());
        for row in rows {
            if !threads.is_empty() && left <= 0 {
                break;
            }
            left = left.saturating_sub(row.bytes());
            let budget = PageSize {
                items: size.items,
                bytes: left,
            };
            let (page, used) = Self::load_comments(conn, &row.id, 0, budget).await?;
            left = left.saturating_sub(used);
            let count = counts.get(&row.id).copied().unwrap_or(0);
            threads.push(row.into_thread(page, count)?);
        }
        Ok(threads)
    }

    /// How many comments each of the threads holds.
    async fn comment_counts(
        conn: &mut DB::Connection,
        rows: &[ThreadRow],
    ) -> StoreResult<HashMap<String, i64>> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let mut sql = Sql::new("SELECT thread_id, COUNT(*) FROM comments WHERE thread_id");
        sql.in_list(rows.iter().map(|row| row.id.clone()))
            .push(" GROUP BY thread_id");
        let counts: Vec<(String, i64)> = sql.query_as::<DB, _>().fetch_all(conn).await?;
        Ok(counts.into_iter().collect())
    }

    /// The comments of a thread after position `after`, with their reactions: at most
    /// `size.items`, and at most `size.bytes` of them (but always one, if any); and the bytes
    /// they take.
    pub(super) async fn load_comments(
        conn: &mut DB::Connection,
        thread_id: &str,
        after: i64,
        size: PageSize,
    ) -> StoreResult<(CommentPage, i64)> {
        let mut sql = Sql::new(page_bytes::start(COMMENT_BYTES, "seq"));
        sql.push(&format!(
            "SELECT {COMMENT_COLUMNS}, (SELECT COUNT(*) FROM comment_reactions r \
               WHERE r.comment_id = comments.id) AS reaction_count \
             FROM comments WHERE thread_id = "
        ))
        .bind(thread_id)
        .push(" AND seq > ")
        .bind(after)
        // One more than asked: whether there is more.
        .push(" ORDER BY seq LIMIT ")
        .bind(size.items.saturating_add(1))
        .push(page_bytes::END)
        .bind(size.bytes)
        .push(&page_bytes::end_order("seq"));
        let page = fetch_fitted::<DB, CommentRow>(&mut *conn, &sql, size).await?;
        let cursor = page.rows.last().filter(|_| page.more).map(|row| row.seq);
        let reactions = if page.rows.is_empty() {
            Vec::new()
        } else {
            let mut sql = Sql::new(
                "SELECT comment_id, emoji, user_id FROM comment_reactions WHERE comment_id",
            );
            sql.in_list(page.rows.iter().map(|row| row.id.clone()))
                .push(" ORDER BY comment_id, seq");
            sql.query_as::<DB, ReactionRow>().fetch_all(conn).await?
        };
        let comments = assemble(page.rows, reactions)?;
        Ok((CommentPage { comments, cursor }, page.bytes))
    }

    /// A comment with its reactions.
    pub(super) async fn load_comment(
        conn: &mut DB::Connection,
        comment_id: &str,
    ) -> StoreResult<Option<Comment>> {
        let sql = format!("SELECT {COMMENT_COLUMNS} FROM comments WHERE id = $1");
        let row: Option<CommentRow> = sqlx::query_as(&sql)
            .bind(comment_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let reactions: Vec<ReactionRow> = sqlx::query_as(
            "SELECT comment_id, emoji, user_id FROM comment_reactions \
             WHERE comment_id = $1 ORDER BY seq",
        )
        .bind(comment_id.to_owned())
        .fetch_all(conn)
        .await?;
        Ok(assemble(vec![row], reactions)?.pop())
    }
}
