//! Workflows running (docs/workflows.md): every event runs the workflows that want it, the
//! bindings read the event's room, TypeScript runs, code that does not parse is refused with
//! its position, `fetch` goes through the address guard, and hostile code ends `failed` with
//! the limit it hit while the server keeps serving (the escape suite).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::cli::ServerProcess;
use crate::harness::{both_backends, eventually, Backend, TestAccount, TestApp};
use crate::receiver::Receiver;
use crate::socket::Socket;
use crate::webhooks::ALL_EVENTS;
use crate::workflows::EXAMPLE;

both_backends!(
    every_event_runs_the_workflows_that_want_it,
    bindings_read_the_events_room_and_nothing_else,
    typescript_runs_and_code_that_does_not_parse_is_refused_with_its_position,
    fetch_reaches_a_local_receiver_only_where_private_addresses_are_allowed,
    hostile_code_ends_failed_with_the_limit_it_hit_and_the_server_keeps_serving,
    a_crashed_worker_fails_its_run_and_the_next_run_gets_a_new_one,
    every_event_gets_one_execution_across_kill_9,
);

async fn workflow(account: &TestAccount, body: Value) -> String {
    let reply = account.post("/workflows", body).await;
    reply.expect(StatusCode::CREATED);
    reply.data()["workflow"]["id"].as_str().unwrap().to_owned()
}

async fn executions(account: &TestAccount, id: &str) -> Vec<Value> {
    let reply = account
        .get(&format!("/workflows/{id}/executions?limit=100"))
        .await;
    reply.expect(StatusCode::OK);
    reply.data()["executions"].as_array().unwrap().clone()
}

/// Waits until the workflow has `count` executions; returns them, oldest first.
async fn wait_for_executions(account: &TestAccount, id: &str, count: usize) -> Vec<Value> {
    let done = eventually(Duration::from_secs(30), || async {
        executions(account, id).await.len() >= count
    })
    .await;
    let mut found = executions(account, id).await;
    assert!(done, "{count} executions of {id}; found {found:#?}");
    found.reverse();
    found
}

/// Runs `code` now through `POST /workflows/:id/test` in `room_id`: the execution.
async fn test_run(account: &TestAccount, room_id: &str, code: &str) -> Value {
    let id = workflow(
        account,
        json!({ "name": "probe", "code": code, "events": ["user.created"], "roomId": room_id }),
    )
    .await;
    let reply = account
        .post(&format!("/workflows/{id}/test"), json!({}))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Workflow test run");
    let execution = reply.data()["execution"].clone();
    account
        .delete(&format!("/workflows/{id}"))
        .await
        .expect(StatusCode::OK);
    execution
}

async fn every_event_runs_the_workflows_that_want_it(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("lobby").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let other = account.room("elsewhere").await;
    let other_id = other["id"].as_str().unwrap().to_owned();

    let names = r#"export default async function (event) {
  return { event: event.event, room: event.data.roomId };
}"#;
    let everything = workflow(
        &account,
        json!({ "name": "all", "code": names, "events": ALL_EVENTS, "roomId": room_id }),
    )
    .await;
    let joins = workflow(
        &account,
        json!({ "name": "example", "code": EXAMPLE, "events": ["participant.joined"] }),
    )
    .await;
    let created_anywhere = workflow(
        &account,
        json!({ "name": "created", "code": names, "events": ["user.created"] }),
    )
    .await;
    let disabled = workflow(
        &account,
        json!({ "name": "off", "code": names, "events": ALL_EVENTS }),
    )
    .await;
    account
        .patch(
            &format!("/workflows/{disabled}"),
            json!({ "enabled": false }),
        )
        .await
        .expect(StatusCode::OK);
    let unsubscribed = workflow(
        &account,
        json!({ "name": "files only", "code": names, "events": ["user.deleted"], "roomId": other_id }),
    )
    .await;

    // user.created, session.started, participant.joined, user.updated, participant.left,
    // session.closed, user.deleted: in the room; user.created in the other room.
    let alice = account.user(&room_id, "Alice").await;
    let user_id = alice["user"]["id"].as_str().unwrap().to_owned();
    account.user(&other_id, "Bob").await;
    let (socket, _) = Socket::join(&app.base, alice["token"].as_str().unwrap()).await;
    account
        .patch(
            &format!("/users/{user_id}?roomId={room_id}"),
            json!({ "name": "Alice B." }),
        )
        .await
        .expect(StatusCode::OK);
    socket.close().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let reply = account.get(&format!("/rooms/{room_id}")).await;
            reply.data()["room"]["active_participants"] == 0
        })
        .await
    );
    account
        .delete(&format!("/users/{user_id}?roomId={room_id}"))
        .await
        .expect(StatusCode::OK);

    let ran = wait_for_executions(&account, &everything, 7).await;
    let mut seen: Vec<&str> = ran
        .iter()
        .map(|execution| {
            assert_eq!(execution["status"], "success", "{execution}");
            let result: Value =
                serde_json::from_str(execution["result"].as_str().unwrap()).unwrap();
            assert_eq!(result["room"], room_id.as_str());
            assert_eq!(result["event"], execution["event"]);
            assert!(execution["id"].as_str().unwrap().starts_with("exec_"));
            assert!(execution["duration_ms"].is_i64());
            execution["event"].as_str().unwrap()
        })
        .collect();
    seen.sort_unstable();
    let mut all = ALL_EVENTS.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all);

    let example = wait_for_executions(&account, &joins, 1).await;
    assert_eq!(example[0]["result"], r#"{"success":true}"#);
    assert_eq!(
        example[0]["logs"],
        format!("[log] User {user_id} joined room {room_id}\n")
    );
    let created = wait_for_executions(&account, &created_anywhere, 2).await;
    let rooms: Vec<Value> = created
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["result"].as_str().unwrap()).unwrap()["room"].clone()
        })
        .collect();
    assert!(rooms.contains(&json!(room_id)) && rooms.contains(&json!(other_id)));
    // Nothing ran what is disabled or does not want these events; nothing ran twice.
    assert!(executions(&account, &disabled).await.is_empty());
    assert!(executions(&account, &unsubscribed).await.is_empty());
    assert_eq!(executions(&account, &everything).await.len(), 7);
}

async fn bindings_read_the_events_room_and_nothing_else(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room_id = account.room("mine").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_id = account.room("other").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    account.user(&room_id, "Alice").await;
    account.user(&room_id, "Bob").await;
    account.user(&other_id, "Eve").await;
    let put = |path: &str, body: Value| {
        account.send(account.request(reqwest::Method::PUT, path).json(&body))
    };
    put(
        "/stores/tasks",
        json!({ "schema": crate::stores::tasks_schema() }),
    )
    .await
    .expect(StatusCode::CREATED);
    let entries = [
        (&room_id, "a", "mine A"),
        (&room_id, "b", "mine B"),
        (&other_id, "z", "theirs"),
    ];
    for (room, key, title) in entries {
        let path = format!("/rooms/{room}/stores/tasks/{key}");
        let reply = put(&path, json!({ "value": { "title": title } })).await;
        assert!(reply.status.is_success(), "{:?}", reply.body);
    }
    let code = r#"export default async function (event, { store, room, files }) {
  const info = await room.get();
  const users = await room.getUsers();
  return {
    a: await store.get("tasks", "a"),
    z: await store.get("tasks", "z"),
    all: Object.entries(await store.getAll("tasks")).map(([key, value]) => key + ":" + value.title),
    room: info.id,
    users: users.map((u) => u.name).sort(),
    files: await files.list(),
    badStore: await store.get("no such store!", "a").then(() => "read", (e) => e.message),
  };
}"#;
    let execution = test_run(&account, &room_id, code).await;
    assert_eq!(execution["status"], "success", "{execution}");
    let result: Value = serde_json::from_str(execution["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["a"]["title"], "mine A");
    assert_eq!(result["z"], Value::Null, "another room's entry is not read");
    assert_eq!(result["all"], json!(["a:mine A", "b:mine B"]));
    assert_eq!(result["room"], room_id.as_str());
    assert_eq!(result["users"], json!(["Alice", "Bob"]));
    assert_eq!(result["files"], json!([]));
    assert!(result["badStore"]
        .as_str()
        .unwrap()
        .contains("not a store name"));
    // The test run is not recorded.
    let id = workflow(
        &account,
        json!({ "name": "n", "code": code, "events": ["user.created"], "roomId": other_id }),
    )
    .await;
    let reply = account
        .post(&format!("/workflows/{id}/test"), json!({}))
        .await;
    let result: Value =
        serde_json::from_str(reply.data()["execution"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["all"], json!(["z:theirs"]));
    assert_eq!(result["users"], json!(["Eve"]));
    assert!(executions(&account, &id).await.is_empty());
}

async fn typescript_runs_and_code_that_does_not_parse_is_refused_with_its_position(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room_id = account.room("ts").await["id"].as_str().unwrap().to_owned();
    let typescript = r#"interface Joined { event: string; data: { roomId: string } }
type Answer = { ok: boolean; kind: string };

export default async function (event: Joined, { store }: { store: any }): Promise<Answer> {
  const kind = (event.event as string).split(".")[0];
  const answer: Answer = { ok: true, kind };
  return answer;
}"#;
    let execution = test_run(&account, &room_id, typescript).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["result"], r#"{"ok":true,"kind":"user"}"#);

    let broken = "export default async function (event) {\n  return { ok: true ;\n}\n";
    let reply = account
        .post(
            "/workflows",
            json!({ "name": "broken", "code": broken, "events": ["user.created"] }),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "code");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 2, column"), "{message}");

    let ok = workflow(
        &account,
        json!({ "name": "ok", "code": EXAMPLE, "events": ["user.created"] }),
    )
    .await;
    let reply = account
        .patch(
            &format!("/workflows/{ok}"),
            json!({ "code": "const x: number = ;\nexport default () => x;" }),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "code");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 1, column"), "{message}");
    // Unchanged.
    assert_eq!(
        account.get(&format!("/workflows/{ok}")).await.data()["workflow"]["code"],
        EXAMPLE
    );
}

async fn fetch_reaches_a_local_receiver_only_where_private_addresses_are_allowed(backend: Backend) {
    let receiver = Receiver::start().await;
    let code = format!(
        r#"export default async function (event) {{
  const response = await fetch("{}", {{
    method: "POST",
    headers: {{ "content-type": "application/json", "x-from": "workflow" }},
    body: JSON.stringify({{ text: "joined " + event.data.roomId }}),
  }});
  return {{ status: response.status, ok: response.ok, body: await response.text() }};
}}"#,
        receiver.url()
    );
    let allowed = TestApp::start_with(backend, |config| {
        config.webhooks.allow_private_addresses = true;
    })
    .await;
    let account = allowed.account().await;
    let room_id = account.room("slack").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let execution = test_run(&account, &room_id, &code).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["result"], r#"{"status":200,"ok":true,"body":""}"#);
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received[0].json()["text"], format!("joined {room_id}"));
    assert_eq!(received[0].header("x-from"), "workflow");

    // Without the setting: loopback, link-local (cloud metadata), IPv6 loopback, private
    // networks and names that resolve to them are refused, before any connection.
    let guarded = TestApp::start(backend).await;
    let account = guarded.account().await;
    let room_id = account.room("guarded").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let targets = [
        receiver.url(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]:9/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        format!("http://localhost:{}/hook", receiver.addr.port()),
    ];
    let code = format!(
        r#"export default async function () {{
  const refused = [];
  for (const url of {}) {{
    try {{ await fetch(url); refused.push("reached " + url); }}
    catch (error) {{ refused.push(error.message); }}
  }}
  return refused;
}}"#,
        json!(targets)
    );
    let execution = test_run(&account, &room_id, &code).await;
    assert_eq!(execution["status"], "success", "{execution}");
    let refused: Vec<String> = serde_json::from_str(execution["result"].as_str().unwrap()).unwrap();
    assert_eq!(refused.len(), targets.len());
    for (message, target) in refused.iter().zip(&targets) {
        assert!(
            message.contains("private") && !message.starts_with("reached"),
            "{target}: {message}"
        );
    }
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing more reached the receiver"
    );
}

async fn hostile_code_ends_failed_with_the_limit_it_hit_and_the_server_keeps_serving(
    backend: Backend,
) {
    let app = TestApp::start_with(backend, |config| {
        config.workflows.time_limit_ms = 1_500;
        config.workflows.cpu_limit_ms = 1_000;
        config.workflows.memory_limit_bytes = 32 << 20;
        config.workflows.max_log_bytes = 4_096;
    })
    .await;
    let account = app.account().await;
    let room_id = account.room("hostile").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failing = [
        ("while (true) {}", "limit exceeded"),
        (
            "const a = []; while (true) a.push(new Array(1e6).fill(1));",
            "memory limit exceeded (32 MB)",
        ),
        (
            "let s = 'x'; while (true) s = s.repeat(2);",
            "memory limit exceeded (32 MB)",
        ),
        (
            "function f() { return f() + 1; } f();",
            "stack limit exceeded (deep recursion)",
        ),
        (
            "while (true) Promise.resolve().then(() => {});",
            "limit exceeded",
        ),
        (
            "function f() { Promise.resolve().then(f); } f(); await new Promise(() => {});",
            "limit exceeded",
        ),
        ("await import('/etc/passwd');", ""),
    ];
    for (body, expected) in failing {
        let code = format!("export default async function () {{ {body} }}");
        let run = {
            let (account, room_id) = (&account, &room_id);
            async move { test_run(account, room_id, &code).await }
        };
        // The server answers while the run spins.
        let health = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let started = tokio::time::Instant::now();
            let reply = app
                .client
                .get(format!("{}/healthz", app.base))
                .send()
                .await
                .unwrap();
            (reply.status(), started.elapsed())
        };
        let (execution, (status, took)) = tokio::join!(run, health);
        assert_eq!(status, StatusCode::OK);
        assert!(
            took < Duration::from_secs(1),
            "/healthz took {took:?} during {body}"
        );
        assert_eq!(execution["status"], "failed", "{body}: {execution}");
        let result = execution["result"].as_str().unwrap();
        assert!(result.contains(expected), "{body}: {result}");
    }

    // Megabytes of logs: kept up to the limit, and the run goes on.
    let execution = test_run(
        &account,
        &room_id,
        "export default async function () { for (let i = 0; i < 100000; i++) console.log('x'.repeat(100)); return 'done'; }",
    )
    .await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["result"], r#""done""#);
    let logs = execution["logs"].as_str().unwrap();
    assert!(
        logs.len() <= 4_096 + 64 && logs.contains("logs truncated"),
        "{}",
        logs.len()
    );

    // Nothing of the host is in reach, and no trick through eval or Function gets there.
    let probe = r#"export default async function () {
  const names = ["process", "require", "Deno", "std", "os", "Bun", "module", "__dirname"];
  const global = Function("return this")();
  return {
    globals: names.filter((name) => typeof globalThis[name] !== "undefined" || typeof global[name] !== "undefined"),
    viaEval: eval("typeof process + typeof require"),
    viaConstructor: (function () {}).constructor("return typeof std + typeof os")(),
  };
}"#;
    let execution = test_run(&account, &room_id, probe).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(
        execution["result"],
        r#"{"globals":[],"viaEval":"undefinedundefined","viaConstructor":"undefinedundefined"}"#
    );

    // What one run leaves on shared prototypes, the next does not see.
    let polluter = "export default async function () { Object.prototype.polluted = 'yes'; Array.prototype.push = () => 0; globalThis.leak = 1; return ({}).polluted; }";
    let execution = test_run(&account, &room_id, polluter).await;
    assert_eq!(execution["result"], r#""yes""#);
    let victim = "export default async function () { const a = []; a.push(1); return [({}).polluted === undefined, a.length, typeof leak]; }";
    let execution = test_run(&account, &room_id, victim).await;
    assert_eq!(execution["result"], r#"[true,1,"undefined"]"#);

    // After all that, a plain run still works and the server still serves.
    let execution = test_run(&account, &room_id, EXAMPLE).await;
    assert_eq!(execution["status"], "success", "{execution}");
    account.room("still here").await;
}

async fn a_crashed_worker_fails_its_run_and_the_next_run_gets_a_new_one(backend: Backend) {
    // Workers under a name of this test's own, to find them among other tests' workers.
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("collabkit-crash-probe");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_collabkit"), &program).unwrap();
    let app = TestApp::start_with(backend, |config| {
        config.workflows.worker_program = program.to_str().unwrap().to_owned();
        config.workflows.time_limit_ms = 20_000;
        config.workflows.cpu_limit_ms = 20_000;
    })
    .await;
    let account = app.account().await;
    let room_id = account.room("crash").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spinning = test_run(
        &account,
        &room_id,
        "export default async function () { while (true) {} }",
    );
    let crash = async {
        let mut worker = None;
        let found = eventually(Duration::from_secs(10), || {
            let output = std::process::Command::new("pgrep")
                .args(["-f", program.to_str().unwrap()])
                .output()
                .unwrap();
            worker = String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_owned);
            let found = worker.is_some();
            async move { found }
        })
        .await;
        assert!(found, "a worker runs");
        // As if the engine had run into a bad instruction. (A SIGSEGV sent from outside is
        // taken for a possible stack overflow by Rust's handler, and survived once.)
        let killed = std::process::Command::new("kill")
            .args(["-ILL", worker.as_deref().unwrap()])
            .status()
            .unwrap();
        assert!(killed.success());
    };
    let (execution, ()) = tokio::join!(spinning, crash);
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(
        execution["result"],
        "the workflow engine crashed (signal 4)"
    );
    let execution = test_run(&account, &room_id, EXAMPLE).await;
    assert_eq!(execution["status"], "success", "{execution}");
    app.client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

async fn recorded(server: &ServerProcess, id: &str) -> Vec<Value> {
    let reply = server
        .get(&format!("/workflows/{id}/executions?limit=100"))
        .await;
    reply["data"]["executions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A server killed while runs are queued and in flight: after its restart, every event has
/// run, and has exactly one execution record.
async fn every_event_gets_one_execution_across_kill_9(backend: Backend) {
    let mut server = ServerProcess::start(backend).await;
    let room = server.post("/rooms", json!({ "name": "durable" })).await;
    let room_id = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let slow = "export default async function (event) { const end = Date.now() + 150; while (Date.now() < end) {} return event.id; }";
    let created = server
        .post(
            "/workflows",
            json!({ "name": "slow", "code": slow, "events": ["user.created"], "roomId": room_id }),
        )
        .await;
    let id = created["data"]["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = 12;
    for i in 0..users {
        server
            .post(
                "/users",
                json!({ "name": format!("u{i}"), "roomId": room_id }),
            )
            .await;
    }
    let started = eventually(Duration::from_secs(20), || async {
        !recorded(&server, &id).await.is_empty()
    })
    .await;
    assert!(started, "runs started");
    server.crash_and_restart().await;
    let all = eventually(Duration::from_secs(60), || async {
        recorded(&server, &id).await.len() >= users
    })
    .await;
    let executions = recorded(&server, &id).await;
    assert!(all, "{} of {users} executions", executions.len());
    assert_eq!(executions.len(), users, "one execution per event");
    let mut events: Vec<&str> = executions
        .iter()
        .map(|execution| {
            assert_eq!(execution["status"], "success", "{execution}");
            execution["result"].as_str().unwrap()
        })
        .collect();
    events.sort_unstable();
    events.dedup();
    assert_eq!(events.len(), users, "each event ran once in the record");
}
