//! The embedded SQLite backend: one file in the data directory, WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use super::sealing::Sealer;
use super::sql::SqlStore;
use super::{StoreOptions, StoreResult};

/// How long a writer waits for SQLite's single write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating it if need be) the database file the URL names, and migrates it.
    pub async fn connect(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
        // NORMAL synchronous in WAL mode loses nothing when the process dies, only (at most
        // the last transactions) when the machine loses power.
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // One writer: SQLite has one write lock, and a writer waiting in the pool's queue
        // costs nothing, where one waiting on the lock sleeps in SQLite's busy handler.
        // No test before each acquire: a connection to a local file does not go stale, and
        // the test is a round trip to the connection's thread, doubling a short query's cost.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        SqlStore::open(writer, readers, sealer).await
    }
}
