//! The binary itself: account and key commands, the documented token pipeline, migrations,
//! configuration errors, structured logs without secrets, and graceful shutdown.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, eventually, test_config, Backend, TestApp, TestDatabase};

both_backends!(
    accounts_create_prints_json_and_the_documented_pipeline_builds_the_token,
    keys_are_managed_from_the_cli,
    migrate_is_idempotent,
    the_server_logs_json_without_secrets_and_stops_on_sigterm,
    a_killed_server_leaves_no_user_online_after_restart,
    an_acknowledged_store_write_survives_kill_9,
);

/// A SQLite file serves one node: a second server on it is refused at start, with the reason,
/// and touches nothing; once the first stops, a server starts on it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let mut first = ServerProcess::start(Backend::Sqlite).await;
    let second = collabkit(&first.db)
        .env("COLLABKIT_BIND", "127.0.0.1:0")
        .arg("serve")
        .output()
        .expect("collabkit runs");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another server runs on"), "{stderr}");
    // The first one still serves; killed, it leaves the file to the next.
    let rooms = first.get("/rooms").await;
    assert_eq!(rooms["success"], true);
    first.crash_and_restart().await;
    assert_eq!(first.get("/rooms").await["success"], true);
}

pub(crate) fn collabkit(db: &TestDatabase) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_collabkit"));
    command
        .env("COLLABKIT_DATABASE_URL", &db.url)
        .env("COLLABKIT_DATA_DIR", db.dir.path())
        .env("COLLABKIT_LOG_LEVEL", "warn")
        .env_remove("COLLABKIT_CONFIG")
        .env_remove("COLLABKIT_BIND")
        .env_remove("COLLABKIT_JWT_SECRET")
        .env_remove("COLLABKIT_SECRETS_KEY")
        .env_remove("COLLABKIT_SECRETS_PREVIOUS_KEYS");
    command
}

fn run_json(command: &mut Command) -> Value {
    let output = command.output().expect("collabkit runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one line of JSON on stdout: {stdout:?}"
    );
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

async fn accounts_create_prints_json_and_the_documented_pipeline_builds_the_token(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let created = run_json(collabkit(&db).args(["accounts", "create", "--name", "Acme", "--json"]));
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["accountId", "apiKey", "token"]);
    let id = created["accountId"].as_str().unwrap();
    let key = created["apiKey"].as_str().unwrap();

    // The documentation's own command, run by a real shell.
    let output = Command::new("sh")
        .args(["-c", r#"echo -n "$ID:$KEY" | base64"#])
        .env("ID", id)
        .env("KEY", key)
        .output()
        .expect("sh and base64");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.matches('\n').count(),
        1,
        "base64 did not wrap: {printed:?}"
    );
    let token = printed.trim_end();
    assert_eq!(token, created["token"]);

    // The README's walk-through with that token.
    let config = test_config(&db);
    let app = TestApp::start_on(db, config).await;
    let url = |path: &str| format!("{}/v1/accounts/{id}{path}", app.base);
    let response = app
        .client
        .post(url("/rooms"))
        .header("Authorization", format!("Bearer {token}"))
        .json(&json!({ "name": "whiteboard/room-one" }))
        .send()
        .await
        .unwrap();
    let reply = crate::harness::Reply::from(response).await;
    reply.expect(StatusCode::CREATED);
    let room_id = reply.data()["room"]["id"].as_str().unwrap().to_owned();
    let response = app
        .client
        .post(url("/users"))
        .header("Authorization", format!("Bearer {token}"))
        .json(&json!({ "name": "Alice", "roomId": room_id }))
        .send()
        .await
        .unwrap();
    let reply = crate::harness::Reply::from(response).await;
    reply.expect(StatusCode::CREATED);
    assert!(reply.data()["token"]
        .as_str()
        .unwrap()
        .starts_with("eyJhbGciOiJIUzI1NiIs"));

    // Without --json the same facts are printed for people.
    let output = collabkit(&app.db)
        .args(["accounts", "create", "--name", "Other"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Account ID:") && text.contains("API key:") && text.contains("Token:"));
    // A blank name is refused.
    let output = collabkit(&app.db)
        .args(["accounts", "create", "--name", " "])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

async fn keys_are_managed_from_the_cli(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth.key_cache_ttl_ms = 300).await;
    let account = app.account().await;
    let created =
        run_json(collabkit(&app.db).args(["keys", "create", "--account", &account.id, "--json"]));
    assert_eq!(created["accountId"], account.id.as_str());
    let token = created["token"].as_str().unwrap().to_owned();
    let key_id = created["keyId"].as_str().unwrap().to_owned();
    let with_new = || app.client.get(account.url("/rooms")).bearer_auth(&token);
    account.send(with_new()).await.expect(StatusCode::OK);

    let listed =
        run_json(collabkit(&app.db).args(["keys", "list", "--account", &account.id, "--json"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!listed
        .iter()
        .any(|k| k.to_string().contains(created["apiKey"].as_str().unwrap())));

    let output = collabkit(&app.db)
        .args(["keys", "revoke", "--account", &account.id, "--key", &key_id])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The running server learns of it within the key cache's TTL.
    let stopped = eventually(Duration::from_secs(5), || async {
        account.send(with_new()).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(stopped, "a key revoked with the CLI keeps working");
    account.get("/rooms").await.expect(StatusCode::OK);

    let output = collabkit(&app.db)
        .args([
            "keys",
            "list",
            "--account",
            &uuid::Uuid::new_v4().to_string(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success(), "an unknown account is an error");
}

async fn migrate_is_idempotent(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    for _ in 0..2 {
        let output = collabkit(&db).arg("migrate").output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = collabkit(&db)
        .arg("migrate")
        .env("COLLABKIT_BIND", "nowhere")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "a configuration error exits with 2"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("bind"));
}

async fn the_server_logs_json_without_secrets_and_stops_on_sigterm(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let created = run_json(collabkit(&db).args(["accounts", "create", "--name", "Logs", "--json"]));
    let (id, api_key, token) = (
        created["accountId"].as_str().unwrap().to_owned(),
        created["apiKey"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    );
    // No subcommand: `serve` is the default.
    let mut server = collabkit(&db)
        .env("COLLABKIT_BIND", "127.0.0.1:0")
        .env("COLLABKIT_LOG_FORMAT", "json")
        .env("COLLABKIT_LOG_LEVEL", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (addr_tx, addr_rx) = mpsc::channel();
    let stderr = server.stderr.take().unwrap();
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
    let base = format!("http://{addr}/v1/accounts/{id}");
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/rooms"))
        .bearer_auth(&token)
        .json(&json!({ "name": "logged" }))
        .send()
        .await
        .unwrap();
    let room: Value = response.json().await.unwrap();
    let room_id = room["data"]["room"]["id"].as_str().unwrap();
    let response = client
        .post(format!("{base}/users"))
        .bearer_auth(&token)
        .json(&json!({ "name": "Alice", "roomId": room_id }))
        .send()
        .await
        .unwrap();
    let user: Value = response.json().await.unwrap();
    let jwt = user["data"]["token"].as_str().unwrap().to_owned();
    client
        .get(format!("{base}/rooms?search=x"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();

    let pid = server.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let exited = eventually(Duration::from_secs(15), || {
        let done = server.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    assert!(exited, "the server did not stop on SIGTERM");
    assert!(server.wait().unwrap().success(), "a graceful stop exits 0");
    reader.join().unwrap();

    let lines = lines.lock().unwrap();
    let secret = std::fs::read_to_string(db.dir.path().join("jwt-secret")).unwrap();
    let secrets_key = std::fs::read_to_string(db.dir.path().join("secrets-key")).unwrap();
    let mut request_lines = 0;
    for line in lines.iter() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            entry["level"].is_string() && entry["timestamp"].is_string(),
            "{line}"
        );
        for needle in [
            api_key.as_str(),
            token.as_str(),
            jwt.as_str(),
            secret.trim(),
            secrets_key.trim(),
        ] {
            assert!(!line.contains(needle), "a secret in the log: {line}");
        }
        if entry["message"] == "request" {
            request_lines += 1;
            assert!(
                entry["span"]["request_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("req_"),
                "{line}"
            );
            assert!(entry["status"].is_number(), "{line}");
        }
    }
    assert_eq!(request_lines, 3, "one line per request");
    assert!(
        lines.iter().any(|l| l.contains("SIGTERM")),
        "the stop is logged"
    );
    assert!(lines.iter().any(|l| l.contains("server stopped")));
}

/// Starts `collabkit serve` on `port`, with extra environment, and waits until it is ready.
pub(crate) async fn spawn_server(
    db: &TestDatabase,
    port: u16,
    env: &[(String, String)],
) -> std::process::Child {
    let child = collabkit(db)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("COLLABKIT_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = eventually(Duration::from_secs(30), || async move {
        match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    })
    .await;
    assert!(ready, "the server did not become ready");
    child
}

/// A `collabkit serve` process on a fixed port (so that a restarted one has the same node
/// name), with an account created by the CLI.
pub struct ServerProcess {
    db: TestDatabase,
    port: u16,
    pub base: String,
    account_url: String,
    token: String,
    client: reqwest::Client,
    child: std::process::Child,
    /// Configuration given in the environment, kept for restarts.
    env: Vec<(String, String)>,
}

impl ServerProcess {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts the server with configuration in its environment (`COLLABKIT_...`).
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let db = TestDatabase::new(backend).await;
        let created =
            run_json(collabkit(&db).args(["accounts", "create", "--name", "Crash", "--json"]));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let child = spawn_server(&db, port, &env).await;
        Self {
            account_url: format!(
                "{base}/v1/accounts/{}",
                created["accountId"].as_str().unwrap()
            ),
            token: created["token"].as_str().unwrap().to_owned(),
            client: reqwest::Client::new(),
            db,
            port,
            base,
            child,
            env,
        }
    }

    /// The REST URL of `path` below the server's account.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.account_url)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.account_url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Starts measuring the peak of `memory` from now (Linux; a no-op where not allowed).
    pub fn reset_peak_memory(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// The process's resident memory now and at its peak, in bytes (Linux).
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("{name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// The REST URL of a room of the server's account.
    pub fn room_url(&self, room_id: &str) -> String {
        format!("{}/rooms/{room_id}", self.account_url)
    }

    /// The account's Bearer token.
    pub fn bearer(&self) -> String {
        self.token.clone()
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `kill -9`, then a new process on the same database and port.
    pub async fn crash_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL: nothing is recorded on the way out
        self.child.wait().unwrap();
        self.child = spawn_server(&self.db, self.port, &self.env).await;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn a_killed_server_leaves_no_user_online_after_restart(backend: Backend) {
    let mut server = ServerProcess::start(backend).await;
    let room = server.post("/rooms", json!({ "name": "crash" })).await;
    let room_id = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let user = server
        .post("/users", json!({ "name": "Alice", "roomId": room_id }))
        .await;
    let user_id = user["data"]["user"]["id"].as_str().unwrap().to_owned();
    let (socket, joined) =
        crate::socket::Socket::join(&server.base, user["data"]["token"].as_str().unwrap()).await;
    assert_eq!(joined["user"]["status"], "online");

    server.crash_and_restart().await;
    drop(socket);
    let status = server
        .get(&format!("/users/{user_id}?roomId={room_id}"))
        .await;
    assert_eq!(status["data"]["user"]["status"], "offline", "{status}");
    assert!(status["data"]["sessions"][0]["left_at"].is_string());
    let room = server.get(&format!("/rooms/{room_id}")).await;
    assert_eq!(room["data"]["room"]["active_participants"], 0);
}

async fn an_acknowledged_store_write_survives_kill_9(backend: Backend) {
    let mut server = ServerProcess::start(backend).await;
    let room = server.post("/rooms", json!({ "name": "durable" })).await;
    let room_id = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let user = server
        .post("/users", json!({ "name": "Alice", "roomId": room_id }))
        .await;
    let jwt = user["data"]["token"].as_str().unwrap().to_owned();
    let (mut socket, _) = crate::socket::Socket::join(&server.base, &jwt).await;
    socket
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
        )
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let key = format!("task-{i}");
        let ack = socket
            .request(
                "stores.set",
                json!({ "store": "tasks", "key": key, "value": { "title": format!("t{i}") } }),
            )
            .await
            .unwrap();
        acknowledged.push((key, ack["version"].as_i64().unwrap()));
    }
    // Killed right after the last acknowledgement: nothing gets flushed on the way out.
    server.crash_and_restart().await;
    drop(socket);

    let (mut socket, _) = crate::socket::Socket::join(&server.base, &jwt).await;
    for (key, version) in acknowledged {
        let got = socket
            .request("stores.get", json!({ "store": "tasks", "key": key }))
            .await
            .unwrap();
        assert_eq!(got["version"], version, "{key} after kill -9");
        assert!(got["value"]["title"].is_string());
    }
}
