//! Starts the real app on port 0 with a fresh database (a temporary SQLite file, or a fresh
//! schema in the test PostgreSQL database) and talks to it over real HTTP.

#[path = "../common/database.rs"]
mod database;
pub use database::{Backend, TestDatabase};

use std::time::Duration;

use collabkit::app::App;
use collabkit::auth::GeneratedKey;
use collabkit::config::Config;
use collabkit::domain::{Account, AccountId, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A JWT secret the tests know, so they can check signatures themselves.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// The secrets key tests run with, as a cluster's nodes share one (32 bytes in base64).
pub const TEST_SECRETS_KEY: &str = "dGVzdC1zZWNyZXRzLWtleS10ZXN0LXNlY3JldHMta2U=";

/// Runs an async test scenario once per backend: `both_backends!(scenario_a, scenario_b);`
/// makes the modules `scenario_a::{sqlite, postgres}`, and so on.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use both_backends;

/// The configuration tests start from: loopback, port 0, a known JWT secret, no rate limit.
pub fn test_config(db: &TestDatabase) -> Config {
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".to_owned();
    config.data_dir = db.dir.path().to_path_buf();
    config.database.url = db.url.clone();
    config.database.max_connections = 5;
    config.jwt_secret = TEST_JWT_SECRET.to_owned();
    config.secrets_key = TEST_SECRETS_KEY.to_owned();
    config.rate_limit.per_second = 0;
    config.log.level = "warn".to_owned();
    // In-process servers: this test binary is no workflow worker, the server's binary is.
    config.workflows.worker_program = env!("CARGO_BIN_EXE_collabkit").to_owned();
    config
}

/// A running server.
pub struct TestApp {
    pub base: String,
    /// `/metrics`'s own address (`metrics.bind`), when it has one.
    pub metrics_base: Option<String>,
    /// The running app's state (its event bus, its hub).
    pub state: collabkit::state::AppState,
    pub client: reqwest::Client,
    pub config: Config,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Declared last: the database outlives the server that uses it.
    pub db: TestDatabase,
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::new(backend).await;
        let mut config = test_config(&db);
        tweak(&mut config);
        Self::start_on(db, config).await
    }

    /// Starts a server on an existing database (to restart one, say).
    pub async fn start_on(db: TestDatabase, config: Config) -> Self {
        collabkit::telemetry::init(&config.log, &config.traces);
        let app = App::build(config.clone()).await.expect("the app builds");
        let base = format!("http://{}", app.local_addr());
        let metrics_base = app.metrics_addr().map(|addr| format!("http://{addr}"));
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.serve(shutdown.clone()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            base,
            metrics_base,
            state,
            client,
            config,
            shutdown,
            server: Some(server),
            db,
        }
    }

    /// Stops the server and hands back its database.
    pub async fn stop(mut self) -> TestDatabase {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
        self.take_db()
    }

    /// Drops the server as a crash would: no shutdown, nothing recorded.
    pub async fn abandon(mut self) -> TestDatabase {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        self.take_db()
    }

    fn take_db(&mut self) -> TestDatabase {
        let db = self.db.share();
        std::mem::replace(&mut self.db, db)
    }

    /// A new account with one API key, created the way the CLI does it.
    pub async fn account(&self) -> TestAccount {
        let (account, key) = create_account(&self.config).await;
        TestAccount {
            id: account.id.to_string(),
            key_id: key.record.id.to_string(),
            api_key: key.secret.clone(),
            token: key.bearer_token(),
            base: self.base.clone(),
            client: self.client.clone(),
        }
    }

    /// A new account with one API key in a database no server runs on: its ID and Bearer
    /// token.
    pub async fn account_in(db: &TestDatabase) -> (String, String) {
        let (account, key) = create_account(&test_config(db)).await;
        (account.id.to_string(), key.bearer_token())
    }

    /// A request without credentials.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::from(request.send().await.expect("the server answers")).await
    }
}

impl Drop for TestApp {
    /// Stops the server before its database goes, so that nothing runs on a dropped schema.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
                })
            });
        }
    }
}

/// Creates an account with one API key the way the CLI does, in the configured database.
async fn create_account(config: &Config) -> (Account, GeneratedKey) {
    let store = collabkit::app::open_store(config).await.unwrap();
    let account = Account {
        id: AccountId::new(),
        name: "Test account".to_owned(),
        created_at: Timestamp::now(),
    };
    let key = GeneratedKey::new(account.id);
    store.create_account(&account, &key.record).await.unwrap();
    (account, key)
}

/// An account and a working Bearer token for it.
#[derive(Clone)]
pub struct TestAccount {
    pub id: String,
    pub key_id: String,
    pub api_key: String,
    pub token: String,
    base: String,
    client: reqwest::Client,
}

impl TestAccount {
    /// The same account, talking to another (restarted) server.
    pub fn rebase(account: &TestAccount, app: &TestApp) -> TestAccount {
        TestAccount {
            base: app.base.clone(),
            client: app.client.clone(),
            ..account.clone()
        }
    }

    /// `path` below `/v1/accounts/:accountId`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/accounts/{}{path}", self.base, self.id)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::from(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::PATCH, path).json(&body))
            .await
    }

    /// Creates a room and returns its JSON.
    pub async fn room(&self, name: &str) -> Value {
        let reply = self
            .post("/rooms", serde_json::json!({ "name": name }))
            .await;
        reply.expect(StatusCode::CREATED);
        reply.body["data"]["room"].clone()
    }

    /// Creates a user in a room and returns `data` (`user` and `token`).
    pub async fn user(&self, room_id: &str, name: &str) -> Value {
        let reply = self
            .post(
                "/users",
                serde_json::json!({ "name": name, "roomId": room_id }),
            )
            .await;
        reply.expect(StatusCode::CREATED);
        reply.body["data"].clone()
    }
}

/// A response: status, headers and the parsed envelope.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: body is not JSON: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Self {
            status,
            headers,
            body,
        }
    }

    /// Asserts the status and the envelope's invariants.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "body: {:#}", self.body);
        self.assert_envelope();
        self
    }

    /// Asserts an error reply: status, code, and that it follows the envelope.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.body["error"]["code"], code, "body: {:#}", self.body);
        self
    }

    #[track_caller]
    pub fn assert_envelope(&self) {
        let body = &self.body;
        assert_eq!(body["type"], "response", "{body:#}");
        let success = self.status.is_success();
        assert_eq!(body["success"], success, "{body:#}");
        let request_id = body["requestId"].as_str().expect("requestId in every body");
        assert_eq!(
            self.headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(request_id),
            "X-Request-Id matches the body"
        );
        if success {
            assert!(body["error"].is_null(), "{body:#}");
            assert!(body["data"].is_object(), "{body:#}");
        } else {
            assert_eq!(body["data"], serde_json::json!({}), "{body:#}");
            let error = &body["error"];
            for field in ["module", "code", "message"] {
                assert!(error[field].is_string(), "error.{field}: {body:#}");
            }
        }
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows of `table` that belong to a room, counted straight in the database.
pub async fn count_rows(app: &TestApp, table: &str, room_id: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE room_id = $1");
    if app.db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(&sql)
            .bind(room_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(&sql)
            .bind(room_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }
}
