//! Secrets at rest: a private data directory and files, webhook secrets sealed in the database
//! yet signing as before, the upgrade from plaintext, `collabkit secrets rotate`, and a key
//! a node does not have.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use collabkit::store::sealing::SecretsKey;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::cli::collabkit;
use crate::harness::{
    both_backends, eventually, test_config, Backend, TestAccount, TestApp, TestDatabase,
    TEST_SECRETS_KEY,
};
use crate::receiver::Receiver;
use crate::webhooks::{fast, register};

both_backends!(
    the_data_directory_and_its_files_are_private,
    webhook_secrets_are_sealed_in_the_database_and_still_sign,
    plaintext_secrets_of_an_earlier_version_are_sealed_at_start_up,
    secrets_rotate_reseals_everything_with_the_new_key,
    a_secret_sealed_with_an_unknown_key_fails_its_delivery_visibly,
);

/// A second valid key: 32 bytes in base64.
const NEW_KEY: &str = "bmV3LXNlY3JldHMta2V5LW5ldy1zZWNyZXRzLWtleS0=";

fn key_id(key: &str) -> String {
    SecretsKey::parse(key).unwrap().id()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs SQL straight on the test database, as another program would.
async fn execute(url: &str, sql: &str, binds: &[&str]) {
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// Every webhook's `secret` column as stored, by webhook id.
async fn stored_secrets(url: &str) -> BTreeMap<String, String> {
    let sql = "SELECT id, secret FROM webhooks";
    let rows: Vec<(String, String)> = if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    rows.into_iter().collect()
}

/// Writes a secret in plaintext, as versions before encryption at rest did.
async fn store_in_plaintext(url: &str, webhook_id: &str, secret: &str) {
    execute(
        url,
        "UPDATE webhooks SET secret = $1 WHERE id = $2",
        &[secret, webhook_id],
    )
    .await;
}

#[track_caller]
fn assert_sealed(stored: &str, secret: &str, key: &str) {
    assert_ne!(stored, secret);
    assert!(
        !stored.contains(secret) && !stored.contains(&secret["whsec_".len()..]),
        "the secret is in the row: {stored}"
    );
    assert!(
        stored.starts_with(&format!("v1.{}.", key_id(key))),
        "not sealed with the key {}: {stored}",
        key_id(key)
    );
}

/// Waits for one request on `receiver` and checks that `secret` signs it, both ways.
async fn assert_signed_with(receiver: &Receiver, secret: &str) {
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "one delivery");
    assert!(
        received[0].verify_documented(secret) && received[0].verify_standard(secret),
        "signed with the webhook's secret"
    );
}

async fn the_data_directory_and_its_files_are_private(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let data = db.dir.path().join("data");
    let mut config = test_config(&db);
    config.data_dir = data.clone();
    config.jwt_secret = String::new();
    config.secrets_key = String::new();
    if backend == Backend::Sqlite {
        // The default: collabkit.db in the data directory.
        config.database.url = String::new();
    }
    let app = TestApp::start_on(db, config).await;
    // A write, so that SQLite's write-ahead log is in use.
    app.account().await.room("private").await;

    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut files = vec!["jwt-secret", "secrets-key"];
    if backend == Backend::Sqlite {
        files.extend(["collabkit.db", "collabkit.db-wal", "collabkit.db-shm"]);
    }
    for name in files {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    // The generated key is one a configuration could hold.
    let kept = std::fs::read_to_string(data.join("secrets-key")).unwrap();
    SecretsKey::parse(&kept).expect("32 bytes in base64");
}

async fn webhook_secrets_are_sealed_in_the_database_and_still_sign(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let id = webhook["id"].as_str().unwrap();
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let sealed = stored_secrets(&app.db.url).await[id].clone();
    assert_sealed(&sealed, &secret, TEST_SECRETS_KEY);

    let room = account.room("sealed").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    assert_signed_with(&receiver, &secret).await;

    // A rotated secret is sealed too, afresh.
    let reply = account
        .post(&format!("/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    reply.expect(StatusCode::OK);
    let rotated = reply.data()["webhook"]["secret"].as_str().unwrap();
    let resealed = stored_secrets(&app.db.url).await[id].clone();
    assert_sealed(&resealed, rotated, TEST_SECRETS_KEY);
    assert_ne!(resealed, sealed);
    // Reads never show it.
    let got = account.get(&format!("/webhooks/{id}")).await;
    assert!(got.data()["webhook"].get("secret").is_none());
}

async fn plaintext_secrets_of_an_earlier_version_are_sealed_at_start_up(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receivers = [Receiver::start().await, Receiver::start().await];
    let account = app.account().await;
    let mut secrets = Vec::new();
    for receiver in &receivers {
        let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
        let (id, secret) = (webhook["id"].as_str().unwrap(), webhook["secret"].as_str());
        store_in_plaintext(&app.db.url, id, secret.unwrap()).await;
        secrets.push((id.to_owned(), secret.unwrap().to_owned()));
    }
    // More than one batch of the upgrade: disabled webhooks, in plaintext.
    for chunk in 0..11 {
        let rows: Vec<String> = (0..100)
            .map(|i| {
                format!(
                    "('wh_old{chunk:02}{i:03}', '{}', 'https://example.com/{i}', \
                     'whsec_b2xkLXNlY3JldA{chunk:02}{i:03}', '[\"user.created\"]', NULL, FALSE, 0, 0)",
                    account.id
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO webhooks (id, account_id, url, secret, events, room_id, enabled, \
               created_at, updated_at) VALUES {}",
            rows.join(", ")
        );
        execute(&app.db.url, &sql, &[]).await;
    }
    let before = stored_secrets(&app.db.url).await;
    assert_eq!(before.len(), 1102);
    assert!(before.values().all(|s| s.starts_with("whsec_")));

    // Restarted on the same database: the upgrade.
    let config = app.config.clone();
    let app = TestApp::start_on(app.stop().await, config).await;
    let after = stored_secrets(&app.db.url).await;
    assert_eq!(after.len(), 1102);
    for (id, stored) in &after {
        assert_sealed(stored, &before[id], TEST_SECRETS_KEY);
    }
    for (id, secret) in &secrets {
        assert_sealed(&after[id], secret, TEST_SECRETS_KEY);
    }
    // Deliveries are still signed with the secrets receivers know.
    let account = TestAccount::rebase(&account, &app);
    let room = account.room("upgraded").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    for (receiver, (_, secret)) in receivers.iter().zip(&secrets) {
        assert_signed_with(receiver, secret).await;
    }
}

/// `collabkit secrets rotate` on the test database, with these secrets keys.
fn rotate(db: &TestDatabase, current: &str, previous: &str) -> std::process::Output {
    collabkit(db)
        .args(["secrets", "rotate"])
        .env("COLLABKIT_SECRETS_KEY", current)
        .env("COLLABKIT_SECRETS_PREVIOUS_KEYS", previous)
        .output()
        .expect("collabkit runs")
}

/// The documented procedure, on a running node: new key with the old one kept for reading,
/// restart, `secrets rotate`, old key removed, restart.
async fn secrets_rotate_reseals_everything_with_the_new_key(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receivers = [Receiver::start().await, Receiver::start().await];
    let account = app.account().await;
    let mut secrets = Vec::new();
    for receiver in &receivers {
        let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
        secrets.push((
            webhook["id"].as_str().unwrap().to_owned(),
            webhook["secret"].as_str().unwrap().to_owned(),
        ));
    }
    // One written by a node of an earlier version meanwhile.
    store_in_plaintext(&app.db.url, &secrets[1].0, &secrets[1].1).await;

    let mut config = app.config.clone();
    config.secrets_key = NEW_KEY.to_owned();
    config.secrets_previous_keys = vec![TEST_SECRETS_KEY.to_owned()];
    let app = TestApp::start_on(app.stop().await, config.clone()).await;
    let stored = stored_secrets(&app.db.url).await;
    assert_sealed(&stored[&secrets[0].0], &secrets[0].1, TEST_SECRETS_KEY);
    assert_sealed(&stored[&secrets[1].0], &secrets[1].1, NEW_KEY);

    let output = rotate(&app.db, NEW_KEY, TEST_SECRETS_KEY);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("re-sealed 1 webhook secrets with key {}", key_id(NEW_KEY))
    );
    let stored = stored_secrets(&app.db.url).await;
    for (id, secret) in &secrets {
        assert_sealed(&stored[id], secret, NEW_KEY);
    }
    // Idempotent.
    let output = rotate(&app.db, NEW_KEY, TEST_SECRETS_KEY);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("re-sealed 0 "));
    assert_eq!(stored_secrets(&app.db.url).await, stored);

    // The old key gone, deliveries are signed with the same secrets as before.
    config.secrets_previous_keys.clear();
    let app = TestApp::start_on(app.stop().await, config).await;
    let account = TestAccount::rebase(&account, &app);
    let room = account.room("rotated").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    for (receiver, (_, secret)) in receivers.iter().zip(&secrets) {
        assert_signed_with(receiver, secret).await;
    }

    // A key of the wrong length is a configuration error that names the key, not its value.
    let short = "c2hvcnQ=";
    let output = rotate(&app.db, short, "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secrets_key must be 32 bytes") && !stderr.contains(short));
    // Without a configured or kept key the command refuses to make one up.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = collabkit(&app.db)
        .args(["secrets", "rotate"])
        .env("COLLABKIT_DATA_DIR", elsewhere.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no secrets key"));
    assert!(!elsewhere.path().join("secrets-key").exists());
}

/// `collabkit serve` with JSON logs collected from stderr.
struct LoggedServer {
    child: Child,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl LoggedServer {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .env("COLLABKIT_BIND", "127.0.0.1:0")
            .env("COLLABKIT_LOG_FORMAT", "json")
            .env("COLLABKIT_LOG_LEVEL", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let collected = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    if entry["message"] == "listening" {
                        let _ = addr_tx.send(entry["addr"].as_str().unwrap_or("").to_owned());
                    }
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server starts");
        Self {
            child,
            addr,
            lines,
            reader: Some(reader),
        }
    }

    /// SIGTERM, then every line it logged.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let lines = self.lines.lock().unwrap().clone();
        lines
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn a_secret_sealed_with_an_unknown_key_fails_its_delivery_visibly(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let (id, secret) = (
        webhook["id"].as_str().unwrap().to_owned(),
        webhook["secret"].as_str().unwrap().to_owned(),
    );
    let room = account.room("unknown key").await;
    let db = app.stop().await;
    let sealed = stored_secrets(&db.url).await[&id].clone();

    // A node given another key only, without retries.
    let mut command = collabkit(&db);
    command
        .env("COLLABKIT_SECRETS_KEY", NEW_KEY)
        .env("COLLABKIT_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true")
        .env("COLLABKIT_WEBHOOKS_RETRY_DELAYS_MS", "")
        .env("COLLABKIT_WEBHOOKS_POLL_INTERVAL_MS", "50");
    let server = LoggedServer::start(command);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}/v1/accounts/{}{path}", server.addr, account.id);
    let created = client
        .post(url("/users"))
        .bearer_auth(&account.token)
        .json(&json!({ "name": "Alice", "roomId": room["id"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let log_url = url(&format!("/webhooks/{id}/deliveries"));
    let delivery_log = || async {
        let log: Value = client
            .get(&log_url)
            .bearer_auth(&account.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log["data"]["deliveries"][0].clone()
    };
    let failed = eventually(Duration::from_secs(10), || async {
        delivery_log().await["status"] == "failed"
    })
    .await;
    assert!(failed, "the delivery failed");
    let delivery = delivery_log().await;
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(
        delivery["status_code"],
        Value::Null,
        "no answer: nothing was sent"
    );
    let lines = server.stop();
    assert!(
        receiver.received().is_empty(),
        "nothing was sent, signed or not"
    );

    let old_key_id = key_id(TEST_SECRETS_KEY);
    let reported = lines.iter().any(|line| {
        let entry: Value = serde_json::from_str(line).unwrap_or_default();
        entry["level"] == "ERROR"
            && entry["message"] == "webhook delivery not sent: its signing secret cannot be opened"
            && entry["webhook"] == id.as_str()
            && entry["error"].as_str().unwrap_or("").contains(&old_key_id)
    });
    assert!(
        reported,
        "the log names the webhook and the missing key: {lines:#?}"
    );
    for line in &lines {
        for needle in [secret.as_str(), &secret[6..], TEST_SECRETS_KEY, NEW_KEY] {
            assert!(!line.contains(needle), "a secret in the log: {line}");
        }
    }
    assert_eq!(
        stored_secrets(&db.url).await[&id],
        sealed,
        "left as it was by the node without its key"
    );

    // `secrets rotate` without the key that sealed it fails, naming both, and changes nothing.
    let output = rotate(&db, NEW_KEY, "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&id) && stderr.contains(&old_key_id),
        "{stderr}"
    );
    assert!(!stderr.contains(&secret[6..]));
    assert_eq!(stored_secrets(&db.url).await[&id], sealed);
}
