//! The embedded SQLite backend: one file in the data directory, WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool};

use super::migrations::{Migration, CREATE_LEDGER, SQLITE as MIGRATIONS};
use super::sealing::Sealer;
use super::{StoreError, StoreOptions, StoreResult};
use crate::domain::Timestamp;

/// How long a writer waits for SQLite's single write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteStore {
    pool: SqlitePool,
    /// Seals the secrets this store keeps, and opens them.
    sealer: Sealer,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
        // NORMAL synchronous in WAL mode loses nothing when the process dies, only (at most
        // the last transactions) when the machine loses power.
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        let store = Self { pool, sealer };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(CREATE_LEDGER).execute(&mut *conn).await?;
        for Migration { version, name, sql } in MIGRATIONS {
            // IMMEDIATE takes the write lock before reading the ledger, so two processes
            // starting on one file cannot both apply a step.
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let applied =
                sqlx::query("SELECT 1 AS one FROM collabkit_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await;
            let outcome = match applied {
                Ok(Some(_)) => Ok(()),
                Ok(None) => apply(&mut conn, *version, name, sql).await,
                Err(e) => Err(e.into()),
            };
            let end = if outcome.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            sqlx::query(end).execute(&mut *conn).await?;
            outcome?;
        }
        Ok(())
    }
}

async fn apply(
    conn: &mut sqlx::pool::PoolConnection<Sqlite>,
    version: i64,
    name: &str,
    sql: &str,
) -> StoreResult<()> {
    sqlx::raw_sql(sql)
        .execute(&mut **conn)
        .await
        .map_err(|e| StoreError::Migration(format!("{name}: {e}")))?;
    sqlx::query("INSERT INTO collabkit_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(name)
        .bind(Timestamp::now().as_millis())
        .execute(&mut **conn)
        .await?;
    tracing::info!(version, name, "applied migration");
    Ok(())
}

/// The number of migrations recorded, for tests of the ledger.
#[doc(hidden)]
pub async fn applied_migrations(store: &SqliteStore) -> StoreResult<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM collabkit_migrations")
        .fetch_one(&store.pool)
        .await?;
    Ok(row.try_get("n")?)
}

super::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, shared: false);
super::comments::impl_comment_store!(SqliteStore, sqlx::Sqlite);
super::entries::impl_entry_store!(SqliteStore, sqlx::Sqlite);
super::webhooks::impl_webhook_store!(SqliteStore, sqlx::Sqlite, skip_locked: "");
