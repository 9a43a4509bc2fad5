//! Schema migrations, embedded in the binary. `migrations/sqlite` and `migrations/postgres`
//! hold the same numbered steps with the same table and column names; each step runs once, in
//! a transaction, and is recorded in `collabkit_migrations`.

pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($backend:literal: $(($version:literal, $file:literal)),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/migrations/", $backend, "/", $file, ".sql"
            )),
        }),*]
    };
}

pub(super) const SQLITE: &[Migration] = migrations!("sqlite":
    (1, "0001_foundation"),
    (2, "0002_realtime"),
    (3, "0003_stores"),
    (4, "0004_comments"),
    (5, "0005_webhooks"),
);
pub(super) const POSTGRES: &[Migration] = migrations!("postgres":
    (1, "0001_foundation"),
    (2, "0002_realtime"),
    (3, "0003_stores"),
    (4, "0004_comments"),
    (5, "0005_webhooks"),
);

pub(super) const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS collabkit_migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
