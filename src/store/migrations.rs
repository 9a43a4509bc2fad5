//! Schema migrations, embedded in the binary. `migrations/sqlite` and `migrations/postgres`
//! hold the same numbered steps with the same table and column names; each step runs once, in
//! a transaction, and is recorded in `collabkit_migrations`.

use sqlx::{ColumnIndex, Connection, Executor, Pool};

use super::dialect::{Column, Dialect};
use super::{StoreError, StoreResult};
use crate::domain::Timestamp;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_foundation",
        sql: include_str!("../../migrations/sqlite/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "0002_realtime",
        sql: include_str!("../../migrations/sqlite/0002_realtime.sql"),
    },
    Migration {
        version: 3,
        name: "0003_stores",
        sql: include_str!("../../migrations/sqlite/0003_stores.sql"),
    },
    Migration {
        version: 4,
        name: "0004_comments",
        sql: include_str!("../../migrations/sqlite/0004_comments.sql"),
    },
    Migration {
        version: 5,
        name: "0005_webhooks",
        sql: include_str!("../../migrations/sqlite/0005_webhooks.sql"),
    },
];

pub(super) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_foundation",
        sql: include_str!("../../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "0002_realtime",
        sql: include_str!("../../migrations/postgres/0002_realtime.sql"),
    },
    Migration {
        version: 3,
        name: "0003_stores",
        sql: include_str!("../../migrations/postgres/0003_stores.sql"),
    },
    Migration {
        version: 4,
        name: "0004_comments",
        sql: include_str!("../../migrations/postgres/0004_comments.sql"),
    },
    Migration {
        version: 5,
        name: "0005_webhooks",
        sql: include_str!("../../migrations/postgres/0005_webhooks.sql"),
    },
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS collabkit_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Applies the steps the database lacks, in order, taking turns with other processes.
pub(super) async fn migrate<DB>(pool: &Pool<DB>) -> StoreResult<()>
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
    let mut conn = pool.acquire().await?;
    if let Some(lock) = DB::MIGRATION_LOCK {
        sqlx::query(lock.take)
            .bind(lock.key)
            .execute(&mut *conn)
            .await?;
    }
    let outcome = apply_missing::<DB>(&mut conn).await;
    if let Some(lock) = DB::MIGRATION_LOCK {
        sqlx::query(lock.release)
            .bind(lock.key)
            .execute(&mut *conn)
            .await?;
    }
    outcome
}

async fn apply_missing<DB>(conn: &mut DB::Connection) -> StoreResult<()>
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
    sqlx::query(CREATE_LEDGER).execute(&mut *conn).await?;
    for Migration { version, name, sql } in DB::MIGRATIONS {
        let mut tx = conn.begin_with(DB::BEGIN_MIGRATION).await?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM collabkit_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if applied.is_none() {
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Migration(format!("{name}: {e}")))?;
            sqlx::query(
                "INSERT INTO collabkit_migrations (version, name, applied_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(name.to_string())
            .bind(Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if applied.is_none() {
            tracing::info!(version, name, "applied migration");
        }
    }
    Ok(())
}
