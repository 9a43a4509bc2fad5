//! The PostgreSQL backend, for production and for several server nodes on one database.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Postgres;

use super::sealing::Sealer;
use super::sql::SqlStore;
use super::{StoreOptions, StoreResult};

pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to the database the URL names, and migrates it.
    pub async fn connect(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        // No test before each acquire: it is a round trip to the server, doubling a short
        // query's cost. A connection the server dropped fails its next query, and the pool
        // then closes it and opens another.
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        SqlStore::open(pool.clone(), pool, sealer).await
    }
}
