//! `collabkit db copy`: a populated SQLite database copied into an empty PostgreSQL one, as
//! docs/operations.md tells an operator to (stop, copy, start on the copy), after which the
//! server answers every read as it did before.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::cli::collabkit;
use crate::harness::{test_config, Backend, TestAccount, TestApp, TestDatabase};
use crate::socket::Socket;

/// What a client reads of the account over REST.
async fn rest_reads(app: &TestApp, account: &TestAccount, room_id: &str) -> Value {
    let account = TestAccount::rebase(account, app);
    let mut reads = serde_json::Map::new();
    for path in [
        "/rooms".to_owned(),
        format!("/rooms/{room_id}"),
        format!("/users?roomId={room_id}"),
        format!("/rooms/{room_id}/threads"),
        format!("/rooms/{room_id}/stores/tasks"),
        "/stores".to_owned(),
        "/webhooks".to_owned(),
    ] {
        let reply = account.get(&path).await;
        reply.expect(StatusCode::OK);
        reads.insert(path, reply.body["data"].clone());
    }
    Value::Object(reads)
}

/// A client's first `stores.sync`: the whole store.
async fn first_sync(socket: &mut Socket) -> Value {
    socket
        .request("stores.sync", json!({ "store": "tasks" }))
        .await
        .expect("stores.sync answers")
}

fn copy_into(source: &TestDatabase, target: &TestDatabase) -> std::process::Output {
    collabkit(source)
        .args(["db", "copy", "--to", &target.url])
        .output()
        .expect("collabkit runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_copied_into_postgres_serves_what_it_served() {
    let app = TestApp::start(Backend::Sqlite).await;
    let account = app.account().await;
    let room = account.room("Plans").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    account.room("Other").await;
    let alice = account.user(&room_id, "Alice").await;
    account.user(&room_id, "Bob").await;
    let jwt = alice["token"].as_str().unwrap().to_owned();
    let webhook = account
        .post(
            "/webhooks",
            json!({ "url": "https://example.com/hook", "events": ["file.deleted"] }),
        )
        .await;
    webhook.expect(StatusCode::CREATED);

    let (mut socket, _) = Socket::join(&app.base, &jwt).await;
    socket
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
        )
        .await
        .unwrap();
    for i in 0..30 {
        socket
            .request(
                "stores.set",
                json!({ "store": "tasks", "key": format!("task-{i}"), "value": { "title": format!("t{i}") } }),
            )
            .await
            .unwrap();
    }
    socket
        .request(
            "stores.delete",
            json!({ "store": "tasks", "key": "task-3" }),
        )
        .await
        .unwrap();
    socket
        .request("comments.createThread", json!({ "body": "Ship it?" }))
        .await
        .unwrap();
    let synced = first_sync(&mut socket).await;
    socket.close().await;

    // A server still runs on the source: refused, and the target is left empty.
    let target = TestDatabase::new(Backend::Postgres).await;
    let refused = copy_into(&app.db, &target);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("a server is running"), "{stderr}");

    // Read from the stopped database as a restarted server serves it.
    let config = app.config.clone();
    let source = app.stop().await;
    let app = TestApp::start_on(source, config.clone()).await;
    let before = rest_reads(&app, &account, &room_id).await;
    let source = app.stop().await;

    let copied = copy_into(&source, &target);
    let stderr = String::from_utf8_lossy(&copied.stderr);
    assert!(copied.status.success(), "{stderr}");
    for table in [
        "rooms: 2 rows",
        "users: 2 rows",
        "store_entries: 30 rows",
        "webhooks: 1 rows",
    ] {
        assert!(stderr.contains(table), "{table} in {stderr}");
    }
    assert!(stderr.contains("checksum"), "{stderr}");

    // Once copied, the target is no longer empty: a second copy is refused.
    let again = copy_into(&source, &target);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    let mut on_copy = test_config(&target);
    on_copy.secrets_key = config.secrets_key.clone();
    on_copy.data_dir = source.dir.path().to_path_buf();
    let app = TestApp::start_on(target, on_copy).await;
    let account = TestAccount::rebase(&account, &app);
    let after = rest_reads(&app, &account, &room_id).await;
    for (read, answer) in before.as_object().unwrap() {
        assert_eq!(&after[read], answer, "{read} on the copy");
    }
    let (mut socket, _) = Socket::join(&app.base, &jwt).await;
    assert_eq!(
        first_sync(&mut socket).await,
        synced,
        "stores.sync on the copy"
    );

    // The copy takes writes: numbering goes on from where the source left it.
    let written = socket
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "task-new", "value": { "title": "new" } }),
        )
        .await
        .unwrap();
    let last = synced["version"].as_i64().unwrap();
    assert!(written["version"].as_i64().unwrap() > last);
    socket.close().await;
    account.room("Third").await;
}
