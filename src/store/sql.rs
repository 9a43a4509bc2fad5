//! The store on either database: `SqlStore<DB>`, a pool and the sealer of stored secrets.
//! Each capability (`accounts.rs`, `rooms.rs`, ...) implements its trait for it once, generic
//! over the `Dialect`; queries use `$N` placeholders, which SQLite binds by number too.
//! Columns are portable: TEXT ids and strings, BIGINT milliseconds for times.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Executor, Pool, Row, Type};

use super::dialect::{Column, Dialect};
use super::page::{like_pattern, Page};
use super::sealing::Sealer;
use super::{Entity, Store, StoreError, StoreResult};
use crate::domain::AccountId;

/// The store, on either database.
pub struct SqlStore<DB: Database> {
    /// Where writes (and anything that must see them at once, in one transaction) go.
    pub(super) pool: Pool<DB>,
    /// Where plain reads go. On PostgreSQL the same pool. On SQLite, whose one writer at a
    /// time would otherwise leave every other connection sleeping in its busy handler, `pool`
    /// holds a single connection (writers queue for it, without sleeping) and readers have
    /// their own, which WAL mode never blocks.
    pub(super) reads: Pool<DB>,
    /// Seals the secrets this store keeps, and opens them.
    pub(super) sealer: Sealer,
}

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
    /// A store writing through `pool` and reading through `reads`, its schema brought up to
    /// date first.
    pub(super) async fn open(pool: Pool<DB>, reads: Pool<DB>, sealer: Sealer) -> StoreResult<Self> {
        Self::migrate(&pool).await?;
        Ok(Self {
            pool,
            reads,
            sealer,
        })
    }

    /// A page of an account's rows of `table` (their `columns`), newest first, those whose
    /// `search_column` contains `search` (any case) if given, and how many there are in all.
    pub(super) async fn list_owned<R>(
        &self,
        (table, columns, search_column): (&str, &str, &str),
        account_id: AccountId,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<R>, i64)>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        let pattern = search
            .filter(|s| !s.is_empty())
            .map(like_pattern::<DB>)
            .unwrap_or_else(|| "%".to_owned());
        let filter =
            format!("WHERE account_id = $1 AND LOWER({search_column}) LIKE $2 ESCAPE '\\'");
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} {filter}"))
            .bind(account_id.to_string())
            .bind(&pattern)
            .fetch_one(&self.reads)
            .await?;
        let sql = format!(
            "SELECT {columns} FROM {table} {filter} \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<R> = sqlx::query_as(&sql)
            .bind(account_id.to_string())
            .bind(&pattern)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.reads)
            .await?;
        Ok((rows, total))
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
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
    fn shared(&self) -> bool {
        DB::SHARED
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_connections(&self) -> (usize, usize) {
        // On PostgreSQL `reads` is `pool`: counted once.
        let pools = if DB::SHARED {
            vec![&self.pool]
        } else {
            vec![&self.pool, &self.reads]
        };
        pools.iter().fold((0, 0), |(used, idle), pool| {
            let (size, free) = (pool.size() as usize, pool.num_idle());
            (used + size.saturating_sub(free), idle + free)
        })
    }

    async fn queue_depths(&self) -> StoreResult<(i64, i64)> {
        let depths: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'), \
                    (SELECT COUNT(*) FROM workflow_runs)",
        )
        .fetch_one(&self.reads)
        .await?;
        Ok(depths)
    }

    fn watch_rooms(&self) -> Option<tokio::sync::mpsc::Receiver<super::RoomSignal>> {
        DB::watch_rooms(&self.pool)
    }
}

/// Maps a unique-constraint violation to `Conflict(entity)`, anything else to `Database`.
pub(super) fn conflict_or_database(error: sqlx::Error, entity: Entity) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(entity),
        _ => StoreError::Database(error),
    }
}

/// A row's columns read in order by position, from a given one on: for a row that holds
/// several tables' columns, whose names they share (`RoomRow::at`, `UserRow::at`).
pub(super) struct Columns<'r, R> {
    row: &'r R,
    next: usize,
}

impl<'r, R: Row> Columns<'r, R>
where
    usize: ColumnIndex<R>,
{
    pub fn from(row: &'r R, first: usize) -> Self {
        Self { row, next: first }
    }

    /// The next column.
    pub fn next<T>(&mut self) -> Result<T, sqlx::Error>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        self.next += 1;
        self.row.try_get(self.next - 1)
    }
}

/// A column read back into a domain type (an ID, say); `Corrupt` if it does not parse.
pub(super) fn parse<T: FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {text:?}")))
}
