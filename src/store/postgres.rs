//! The PostgreSQL backend, for production and for several server nodes on one database.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::migrations::{Migration, CREATE_LEDGER, POSTGRES as MIGRATIONS};
use super::sealing::Sealer;
use super::{StoreError, StoreOptions, StoreResult};
use crate::domain::Timestamp;

/// Advisory lock key held while migrating, so that nodes starting together take turns
/// ("ckmigrat" in ASCII).
const MIGRATION_LOCK: i64 = 0x636b_6d69_6772_6174;

pub struct PostgresStore {
    pool: PgPool,
    /// Seals the secrets this store keeps, and opens them.
    sealer: Sealer,
}

impl PostgresStore {
    pub async fn connect(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
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
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        let outcome = run_migrations(&mut conn).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        outcome
    }
}

async fn run_migrations(conn: &mut sqlx::pool::PoolConnection<Postgres>) -> StoreResult<()> {
    sqlx::query(CREATE_LEDGER).execute(&mut **conn).await?;
    for Migration { version, name, sql } in MIGRATIONS {
        let applied = sqlx::query("SELECT 1 FROM collabkit_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut **conn)
            .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Migration(format!("{name}: {e}")))?;
        sqlx::query(
            "INSERT INTO collabkit_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(Timestamp::now().as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}

super::sql::impl_sql_store!(PostgresStore, sqlx::Postgres, shared: true);
super::comments::impl_comment_store!(PostgresStore, sqlx::Postgres);
super::entries::impl_entry_store!(PostgresStore, sqlx::Postgres);
super::webhooks::impl_webhook_store!(PostgresStore, sqlx::Postgres, skip_locked: " FOR UPDATE SKIP LOCKED");
