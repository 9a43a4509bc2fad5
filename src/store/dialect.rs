//! The few things SQLite and PostgreSQL do differently, side by side: `Dialect`, implemented
//! for both drivers. Every query of `store/` is written once, generic over it.

use sqlx::postgres::PgQueryResult;
use sqlx::query::{Query, QueryAs};
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Database, Decode, Encode, IntoArguments, Pool, Postgres, Sqlite, Type};
use tokio::sync::mpsc;

use super::migrations::{self, Migration};
use super::RoomSignal;

/// A database the store runs on. Its bounds on `Arguments` and `QueryResult` are what lets
/// generic code run a statement and count what it changed; its items are the SQL that differs.
///
/// The other bounds generic store code needs cannot live here: Rust implies a trait's bounds
/// on `Self` and its associated types only (rust-lang/rust#20671), not on `String: Encode<DB>`
/// and the like. So every generic impl of `store/` states them, the same nine lines (a
/// generic helper, those it needs):
///
/// ```text
/// DB: Dialect,
/// for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
/// for<'r> &'r str: ColumnIndex<DB::Row>,
/// usize: ColumnIndex<DB::Row>,
/// String: Column<DB>,
/// Option<String>: Column<DB>,
/// i64: Column<DB>,
/// Option<i64>: Column<DB>,
/// bool: Column<DB>,
/// ```
pub trait Dialect:
    Database<QueryResult: RowsAffected> + for<'q> Database<Arguments<'q>: IntoArguments<'q, Self>>
{
    /// Whether several server nodes may share the database (PostgreSQL), or only one (SQLite:
    /// a local file).
    const SHARED: bool;

    /// Whether statements built at run time (`query::Sql`) bind through anonymous
    /// placeholders (`?`) rather than numbered ones (`$1`).
    const ANONYMOUS_PLACEHOLDERS: bool;

    /// The schema's steps, `migrations/<backend>/`.
    const MIGRATIONS: &'static [Migration];

    /// What makes nodes that start together on one database take turns migrating, if each
    /// step's own transaction is not enough.
    const MIGRATION_LOCK: Option<MigrationLock>;

    /// Begins a migration step: no other process may apply it meanwhile.
    const BEGIN_MIGRATION: &'static str;

    /// Begins a read-only transaction whose statements all see one snapshot (a thread and
    /// its comments, read by several queries, must agree).
    const BEGIN_SNAPSHOT: &'static str;

    /// Begins a write transaction whose statements are planned each time they run, never
    /// from a plan cached for the statement: the membership transactions, whose lists run
    /// from one item to hundreds, on tables (`connections`, `user_sessions`) that a
    /// reconnection storm fills within seconds, where a plan made while they were small scans
    /// them whole.
    const BEGIN_PLANNING_EACH_RUN: &'static str;

    /// What follows a `SELECT` to lock the rows it reads until the transaction ends.
    fn row_lock(lock: RowLock) -> &'static str;

    /// `text` in lower case as the database's `LOWER()` puts it, for `LIKE` patterns.
    fn lower(text: &str) -> String;

    /// Binds the items of an `IN` list (`query::Sql::in_list`): one array, or each item.
    fn bind_list<'q>(
        query: Query<'q, Self, Self::Arguments<'q>>,
        items: &[String],
    ) -> Query<'q, Self, Self::Arguments<'q>>;

    /// `bind_list` for a query whose rows are read as `O`.
    fn bind_list_as<'q, O>(
        query: QueryAs<'q, Self, O, Self::Arguments<'q>>,
        items: &[String],
    ) -> QueryAs<'q, Self, O, Self::Arguments<'q>>;

    /// The feed of committed changes to rooms and their users (`Store::watch_rooms`).
    fn watch_rooms(pool: &Pool<Self>) -> Option<mpsc::Receiver<RoomSignal>>;
}

/// How a `SELECT` inside a write locks what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// The rows cannot change until the transaction ends (a schema under an entry write).
    Share,
    /// Other writers of the rows wait (a schema being changed).
    Update,
    /// Other writers of the rows wait, as for an `UPDATE` that keeps their keys: rows that
    /// reference them can still be inserted (users joining: sockets and sessions name them).
    NoKeyUpdate,
    /// Rows another transaction holds are passed over: nodes racing for work each take
    /// different rows.
    UpdateSkipLocked,
}

/// Statements that serialize migrations across processes, `$1` bound to `key`.
#[derive(Debug, Clone, Copy)]
pub struct MigrationLock {
    pub key: i64,
    pub take: &'static str,
    pub release: &'static str,
}

/// How many rows a statement changed: both drivers say it, sqlx's `Database` does not.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}

/// A Rust type the store reads from and writes to columns: its three sqlx traits in one.
pub trait Column<DB: Database>: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> {}

impl<DB, T> Column<DB> for T
where
    DB: Database,
    T: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>,
{
}

impl Dialect for Sqlite {
    const SHARED: bool = false;
    const ANONYMOUS_PLACEHOLDERS: bool = true;
    const MIGRATIONS: &'static [Migration] = migrations::SQLITE;
    /// One file, one writer: `BEGIN IMMEDIATE` takes the write lock before the ledger is read.
    const MIGRATION_LOCK: Option<MigrationLock> = None;
    const BEGIN_MIGRATION: &'static str = "BEGIN IMMEDIATE";
    /// A SQLite transaction reads one snapshot from its first read on.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    /// SQLite plans a statement when it is prepared, with or without statistics alike.
    const BEGIN_PLANNING_EACH_RUN: &'static str = "BEGIN";

    /// None: SQLite has one writer at a time, which every write transaction here takes with
    /// its first statement.
    fn row_lock(_: RowLock) -> &'static str {
        ""
    }

    /// SQLite's `LOWER()` changes ASCII letters only: lowering others here would never match.
    fn lower(text: &str) -> String {
        text.to_ascii_lowercase()
    }

    /// Each item: SQLite has no arrays (`IN (?, ?, ...)`).
    fn bind_list<'q>(
        query: Query<'q, Self, Self::Arguments<'q>>,
        items: &[String],
    ) -> Query<'q, Self, Self::Arguments<'q>> {
        items
            .iter()
            .fold(query, |query, item| query.bind(item.clone()))
    }

    fn bind_list_as<'q, O>(
        query: QueryAs<'q, Self, O, Self::Arguments<'q>>,
        items: &[String],
    ) -> QueryAs<'q, Self, O, Self::Arguments<'q>> {
        items
            .iter()
            .fold(query, |query, item| query.bind(item.clone()))
    }

    /// None: a SQLite file has one node, which sees its own changes.
    fn watch_rooms(_: &Pool<Self>) -> Option<mpsc::Receiver<RoomSignal>> {
        None
    }
}

impl Dialect for Postgres {
    const SHARED: bool = true;
    const ANONYMOUS_PLACEHOLDERS: bool = false;
    const MIGRATIONS: &'static [Migration] = migrations::POSTGRES;
    const MIGRATION_LOCK: Option<MigrationLock> = Some(MigrationLock {
        // "ckmigrat" in ASCII.
        key: 0x636b_6d69_6772_6174,
        take: "SELECT pg_advisory_lock($1)",
        release: "SELECT pg_advisory_unlock($1)",
    });
    const BEGIN_MIGRATION: &'static str = "BEGIN";
    /// READ COMMITTED, the default, gives each statement a snapshot of its own.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    /// After five runs of a prepared statement, PostgreSQL may keep a generic plan for it
    /// until the next `ANALYZE`. (Sent in one simple query: no round trip more.)
    const BEGIN_PLANNING_EACH_RUN: &'static str =
        "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan";

    fn row_lock(lock: RowLock) -> &'static str {
        match lock {
            RowLock::Share => " FOR SHARE",
            RowLock::Update => " FOR UPDATE",
            RowLock::NoKeyUpdate => " FOR NO KEY UPDATE",
            RowLock::UpdateSkipLocked => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn lower(text: &str) -> String {
        text.to_lowercase()
    }

    /// One `text[]` (`= ANY($n)`).
    fn bind_list<'q>(
        query: Query<'q, Self, Self::Arguments<'q>>,
        items: &[String],
    ) -> Query<'q, Self, Self::Arguments<'q>> {
        query.bind(items.to_vec())
    }

    fn bind_list_as<'q, O>(
        query: QueryAs<'q, Self, O, Self::Arguments<'q>>,
        items: &[String],
    ) -> QueryAs<'q, Self, O, Self::Arguments<'q>> {
        query.bind(items.to_vec())
    }

    fn watch_rooms(pool: &Pool<Self>) -> Option<mpsc::Receiver<RoomSignal>> {
        Some(super::postgres::watch_rooms(pool.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_folds_as_each_database_does() {
        assert_eq!(Postgres::lower("École ROOM"), "école room");
        assert_eq!(Sqlite::lower("École ROOM"), "École room");
    }
}
