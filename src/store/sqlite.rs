//! The embedded SQLite backend: one file in the data directory, WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use super::sealing::Sealer;
use super::sql::SqlStore;
use super::{StoreError, StoreOptions, StoreResult};

/// How long a writer waits for SQLite's single write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries at opening a file that is locked at start-up, and the wait before the second (it
/// grows with each).
const START_ATTEMPTS: u32 = 5;
const START_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Whether a SQLite result code (extended ones included) is `SQLITE_BUSY`.
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating it if need be) the database file the URL names, and migrates it.
    /// Processes opening a new file at once can find it locked for a moment whatever the
    /// busy timeout (SQLite refuses to wait where waiting could deadlock, as when two
    /// connections switch the file to WAL together): a locked start is tried again.
    pub async fn connect(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
        let mut attempt = 1;
        loop {
            match Self::open_file(url, options, sealer.clone()).await {
                Err(StoreError::Database(sqlx::Error::Database(error)))
                    if attempt < START_ATTEMPTS && is_busy(error.code().as_deref()) =>
                {
                    tracing::debug!(attempt, "the database file is locked; opening it again");
                    tokio::time::sleep(START_RETRY_DELAY * attempt).await;
                    attempt += 1;
                }
                opened => return opened,
            }
        }
    }

    async fn open_file(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_codes_are_recognised_extended_ones_too() {
        for code in ["5", "261", "517"] {
            assert!(is_busy(Some(code)), "{code}");
        }
        for code in [Some("1"), Some("6"), Some("nope"), None] {
            assert!(!is_busy(code), "{code:?}");
        }
    }
}
