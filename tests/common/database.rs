//! A fresh, empty database per test: a temporary SQLite file, or a schema of its own in the
//! test PostgreSQL database, dropped with it. Shared by the test targets (`api`, `store`).
// Each target uses part of it (the SQLite file's directory, a second node's handle).
#![allow(dead_code)]

use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL database tests create their schemas in.
// The test harness is not the server: it takes its database from the environment as
// scripts/test passes it (the server's own reads stay in src/config.rs; see clippy.toml).
#[allow(clippy::disallowed_methods)]
pub fn postgres_url() -> String {
    std::env::var("COLLABKIT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty database for one test, dropped with it.
pub struct TestDatabase {
    pub url: String,
    pub dir: TempDir,
    schema: Option<String>,
}

impl TestDatabase {
    /// The same database for a second server (a second node); the first one owns it.
    pub fn share(&self) -> Self {
        Self {
            url: self.url.clone(),
            dir: private_tempdir(),
            schema: None,
        }
    }

    pub async fn new(backend: Backend) -> Self {
        let dir = private_tempdir();
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("collabkit.db").display());
                Self {
                    url,
                    dir,
                    schema: None,
                }
            }
            Backend::Postgres => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let schema = format!("t_{now}_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&postgres_url())
                    .await
                    .expect("PostgreSQL for tests (COLLABKIT_TEST_POSTGRES_URL) must be running");
                drop_abandoned_schemas(&admin, now).await;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .expect("creating a test schema");
                admin.close().await;
                let base = postgres_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options[search_path]={schema}");
                Self {
                    url,
                    dir,
                    schema: Some(schema),
                }
            }
        }
    }
}

/// A data directory as a careful operator makes one: 0700 (the server warns of a wider one).
fn private_tempdir() -> TempDir {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    builder.tempdir().expect("a temporary directory")
}

/// Schemas of test runs that died before dropping them (named `t_<created secs>_...`).
async fn drop_abandoned_schemas(admin: &sqlx::PgPool, now: u64) {
    const ABANDONED_AFTER_SECS: u64 = 3600;
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'")
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let created = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|at| at + ABANDONED_AFTER_SECS < now) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(admin)
                .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&postgres_url()).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&admin)
                            .await;
                        admin.close().await;
                    }
                });
            }
        })
        .join();
    }
}
