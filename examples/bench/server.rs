//! A `collabkit` server process on a fresh database, with one account.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

pub struct Server {
    pub base: String,
    pub account_id: String,
    pub token: String,
    /// The database the server uses (the dashboard bench seeds it directly).
    pub database_url: String,
    child: Child,
    _dir: tempfile::TempDir,
    schema: Option<String>,
}

/// Longest wait for the server to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

// The benchmark drives the server from outside, like an operator: which binary and database
// it uses come from its own environment (the server's reads stay in src/config.rs).
#[allow(clippy::disallowed_methods)]
fn binary() -> String {
    std::env::var("COLLABKIT_BIN").unwrap_or_else(|_| "target/release/collabkit".to_owned())
}

/// Where the servers' log goes: appended to `$BENCH_SERVER_STDERR` when set, to find where a
/// figure's time goes; dropped otherwise.
#[allow(clippy::disallowed_methods)] // as `binary`
fn log() -> std::io::Result<Stdio> {
    match std::env::var("BENCH_SERVER_STDERR") {
        Ok(path) => Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .into()),
        Err(_) => Ok(Stdio::null()),
    }
}

#[allow(clippy::disallowed_methods)] // as `binary`
fn postgres_url() -> String {
    std::env::var("COLLABKIT_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs `accounts create --json`, giving its output.
fn create_account(mut command: Command) -> anyhow::Result<Value> {
    let output = command
        .output()
        .with_context(|| format!("running {} (build it with cargo build --release)", binary()))?;
    if !output.status.success() {
        bail!(
            "accounts create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    /// Starts the server with extra environment variables.
    pub async fn start(db: Db, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut nodes = Self::start_nodes(db, 1, None, env).await?;
        Ok(nodes.remove(0))
    }

    /// Starts `count` nodes on one fresh database (with `redis`, they relay room traffic
    /// through it), sharing the secrets a cluster shares. The first node owns the database:
    /// stop it last.
    pub async fn start_nodes(
        db: Db,
        count: usize,
        redis: Option<&str>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Vec<Self>> {
        let (url, mut schema) = match db {
            Db::Sqlite => (String::new(), None),
            Db::Postgres => {
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&postgres_url())
                    .await
                    .context("PostgreSQL")?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                (
                    format!("{}?options[search_path]={schema}", postgres_url()),
                    Some(schema),
                )
            }
        };
        let run = uuid::Uuid::new_v4().simple().to_string();
        let jwt_secret = format!("bench-jwt-{run}");
        let secrets_key = BASE64.encode(uuid::Uuid::new_v4().as_bytes().repeat(2));
        let mut shared: Vec<(&str, &str)> = vec![
            ("COLLABKIT_LOG_LEVEL", "warn"),
            ("COLLABKIT_JWT_SECRET", &jwt_secret),
            ("COLLABKIT_SECRETS_KEY", &secrets_key),
        ];
        if let Some(redis) = redis {
            shared.push(("COLLABKIT_REDIS_URL", redis));
        }
        shared.extend_from_slice(env);

        let mut nodes = Vec::with_capacity(count);
        let mut account = None;
        for node in 0..count {
            let dir = tempfile::tempdir()?;
            let url = match db {
                Db::Sqlite => format!("sqlite://{}", dir.path().join("bench.db").display()),
                Db::Postgres => url.clone(),
            };
            let node_id = format!("bench-{run}-{}", node + 1);
            let command = |args: &[&str]| {
                let mut command = Command::new(binary());
                command
                    .args(args)
                    .env("COLLABKIT_DATABASE_URL", &url)
                    .env("COLLABKIT_DATA_DIR", dir.path())
                    .env("COLLABKIT_REALTIME_NODE_ID", &node_id)
                    .envs(shared.iter().copied());
                command
            };
            let account: &Value = match &account {
                Some(account) => account,
                None => account.insert(create_account(command(&[
                    "accounts", "create", "--name", "bench", "--json",
                ]))?),
            };
            let port = free_port()?;
            let child = command(&["serve"])
                .env("COLLABKIT_BIND", format!("127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log()?)
                .spawn()?;
            let server = Self {
                base: format!("http://127.0.0.1:{port}"),
                account_id: account["accountId"].as_str().unwrap_or_default().to_owned(),
                token: account["token"].as_str().unwrap_or_default().to_owned(),
                database_url: url,
                child,
                _dir: dir,
                schema: schema.take(),
            };
            server.wait_ready(redis.is_some()).await?;
            nodes.push(server);
        }
        Ok(nodes)
    }

    /// Waits until /readyz answers 200 and, if `relayed`, reports Redis relaying without a
    /// warning.
    async fn wait_ready(&self, relayed: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.base)).await {
                if response.status().is_success() {
                    let ready: Value = response.json().await.unwrap_or_default();
                    let data = &ready["data"];
                    if !relayed || (data["relay"] == "redis" && data.get("warning").is_none()) {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not become ready")
    }

    /// The server process's id, to read its memory use from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn account_url(&self, path: &str) -> String {
        format!("{}/v1/accounts/{}{path}", self.base, self.account_id)
    }

    pub async fn create_room(
        &self,
        client: &reqwest::Client,
        name: &str,
    ) -> anyhow::Result<String> {
        let reply: Value = client
            .post(self.account_url("/rooms"))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?
            .json()
            .await?;
        reply["data"]["room"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("no room in the reply")
    }

    /// Brings the database's statistics up to date, as autovacuum keeps them on a running
    /// PostgreSQL: a storm right after the set-up would otherwise be planned on empty tables'
    /// (a sequential scan for every list of users). Nothing on SQLite, whose plans need none.
    pub async fn analyze(&self) -> anyhow::Result<()> {
        if let Some(schema) = &self.schema {
            let admin = sqlx::PgPool::connect(&postgres_url()).await?;
            let tables: Vec<(String,)> =
                sqlx::query_as("SELECT tablename FROM pg_tables WHERE schemaname = $1")
                    .bind(schema)
                    .fetch_all(&admin)
                    .await?;
            for (table,) in tables {
                sqlx::query(&format!("ANALYZE {schema}.{table}"))
                    .execute(&admin)
                    .await?;
            }
            admin.close().await;
        }
        Ok(())
    }

    /// Stops the server (SIGTERM) and drops its schema. Returns how long it took to exit, or
    /// `None` if it had to be killed.
    pub async fn stop(mut self) -> Option<Duration> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        // The server's own shutdown is bounded by its grace period; this bound is for a hang.
        let started = Instant::now();
        let exited = loop {
            match self.child.try_wait() {
                Ok(None) if started.elapsed() < STOP_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                _ => break Some(started.elapsed()),
            }
        };
        if let Some(schema) = self.schema.take() {
            if let Ok(admin) = sqlx::PgPool::connect(&postgres_url()).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        }
        exited
    }
}
