//! Schema migrations, embedded in the binary. `migrations/sqlite` and `migrations/postgres`
//! hold the same numbered steps with the same table and column names; each step runs once, in
//! a transaction, and is recorded in `collabkit_migrations`.

use sqlx::{ColumnIndex, Connection, Executor, Pool};

use super::dialect::{Column, Dialect};
use super::sql::SqlStore;
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
    Migration {
        version: 6,
        name: "0006_dashboard",
        sql: include_str!("../../migrations/sqlite/0006_dashboard.sql"),
    },
    Migration {
        version: 7,
        name: "0007_files",
        sql: include_str!("../../migrations/sqlite/0007_files.sql"),
    },
    Migration {
        version: 8,
        name: "0008_room_changes",
        sql: include_str!("../../migrations/sqlite/0008_room_changes.sql"),
    },
    Migration {
        version: 9,
        name: "0009_room_change_origins",
        sql: include_str!("../../migrations/sqlite/0009_room_change_origins.sql"),
    },
    Migration {
        version: 10,
        name: "0010_quiet_row_locks",
        sql: include_str!("../../migrations/sqlite/0010_quiet_row_locks.sql"),
    },
    Migration {
        version: 11,
        name: "0011_workflows",
        sql: include_str!("../../migrations/sqlite/0011_workflows.sql"),
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
    Migration {
        version: 6,
        name: "0006_dashboard",
        sql: include_str!("../../migrations/postgres/0006_dashboard.sql"),
    },
    Migration {
        version: 7,
        name: "0007_files",
        sql: include_str!("../../migrations/postgres/0007_files.sql"),
    },
    Migration {
        version: 8,
        name: "0008_room_changes",
        sql: include_str!("../../migrations/postgres/0008_room_changes.sql"),
    },
    Migration {
        version: 9,
        name: "0009_room_change_origins",
        sql: include_str!("../../migrations/postgres/0009_room_change_origins.sql"),
    },
    Migration {
        version: 10,
        name: "0010_quiet_row_locks",
        sql: include_str!("../../migrations/postgres/0010_quiet_row_locks.sql"),
    },
    Migration {
        version: 11,
        name: "0011_workflows",
        sql: include_str!("../../migrations/postgres/0011_workflows.sql"),
    },
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS collabkit_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

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
    /// Applies the steps the database lacks, in order, taking turns with other processes.
    pub(super) async fn migrate(pool: &Pool<DB>) -> StoreResult<()> {
        let mut conn = pool.acquire().await?;
        if let Some(lock) = DB::MIGRATION_LOCK {
            sqlx::query(lock.take)
                .bind(lock.key)
                .execute(&mut *conn)
                .await?;
        }
        let outcome = Self::apply_missing(&mut conn).await;
        if let Some(lock) = DB::MIGRATION_LOCK {
            sqlx::query(lock.release)
                .bind(lock.key)
                .execute(&mut *conn)
                .await?;
        }
        outcome
    }

    async fn apply_missing(conn: &mut DB::Connection) -> StoreResult<()> {
        sqlx::query(CREATE_LEDGER).execute(&mut *conn).await?;
        for step in DB::MIGRATIONS {
            let mut tx = conn.begin_with(DB::BEGIN_MIGRATION).await?;
            let applied = Self::apply_step(&mut tx, step).await?;
            tx.commit().await?;
            if applied {
                tracing::info!(
                    version = step.version,
                    name = step.name,
                    "applied migration"
                );
            }
        }
        Ok(())
    }

    /// Applies one step unless the ledger has it, inside the caller's transaction; whether
    /// it did.
    async fn apply_step(conn: &mut DB::Connection, step: &Migration) -> StoreResult<bool> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM collabkit_migrations WHERE version = $1")
                .bind(step.version)
                .fetch_optional(&mut *conn)
                .await?;
        if applied.is_some() {
            return Ok(false);
        }
        // Not `raw_sql(..).execute(conn)`: its result type goes through the executor's
        // `Database`, which leaves the future not provably `Send` in generic code
        // ("implementation of `Executor` is not general enough" at a `tokio::spawn`).
        Executor::execute(&mut *conn, sqlx::raw_sql(step.sql))
            .await
            .map_err(|e| StoreError::Migration(format!("{}: {e}", step.name)))?;
        sqlx::query(
            "INSERT INTO collabkit_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(step.version)
        .bind(step.name.to_owned())
        .bind(Timestamp::now().as_millis())
        .execute(&mut *conn)
        .await?;
        Ok(true)
    }
}
