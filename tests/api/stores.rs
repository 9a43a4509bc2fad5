//! Stores: schema-driven entries over the socket and REST, validated by the server, ordered
//! by version, caught up after a reconnection, durable.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(
    store_operations_and_changed_events_have_the_documented_shapes,
    the_server_enforces_schemas_on_raw_sockets,
    racing_updates_converge_on_every_client,
    a_reconnecting_client_catches_up,
    backends_read_and_write_entries_over_rest,
    store_limits_answer_with_clear_errors,
    deleting_a_room_deletes_its_entries,
    get_all_and_sync_answer_in_pages,
);

pub fn tasks_schema() -> Value {
    json!({
        "title": { "type": "string", "required": true },
        "completed": { "type": "boolean", "default": false },
        "assignee": { "type": "string" },
    })
}

async fn declare(socket: &mut Socket) {
    let result = socket
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": tasks_schema() } }),
        )
        .await
        .unwrap();
    assert_eq!(result["schemas"]["tasks"], tasks_schema());
}

/// A client's copy of a store, built from results and `changed` events like the SDK does:
/// per key, the highest version wins.
#[derive(Default, Debug)]
struct Mirror {
    entries: BTreeMap<String, (i64, Value)>,
}

impl Mirror {
    fn apply(&mut self, key: &str, version: i64, value: Value) {
        let newer = self.entries.get(key).is_none_or(|(v, _)| version > *v);
        if newer {
            self.entries.insert(key.to_owned(), (version, value));
        }
    }

    fn apply_event(&mut self, event: &Value) {
        self.apply(
            event["key"].as_str().unwrap(),
            event["version"].as_i64().unwrap(),
            event["value"].clone(),
        );
    }

    fn live(&self) -> BTreeMap<String, Value> {
        self.entries
            .iter()
            .filter(|(_, (_, v))| !v.is_null())
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }
}

async fn server_view(socket: &mut Socket) -> BTreeMap<String, Value> {
    let all = socket
        .request("stores.getAll", json!({ "store": "tasks" }))
        .await
        .unwrap();
    all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_owned(), e["value"].clone()))
        .collect()
}

async fn store_operations_and_changed_events_have_the_documented_shapes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    declare(&mut alice).await;
    declare(&mut bob).await;

    let set = alice
        .request("stores.set", json!({ "store": "tasks", "key": "task-1", "value": { "title": "Build", "assignee": "u1" } }))
        .await
        .unwrap();
    assert_eq!(set["key"], "task-1");
    assert_eq!(
        set["value"],
        json!({ "title": "Build", "completed": false, "assignee": "u1" })
    );
    let version = set["version"].as_i64().unwrap();
    assert!(version > 0);
    let changed = bob.event("changed").await;
    assert_eq!(
        changed,
        json!({
            "store": "tasks", "key": "task-1", "action": "set",
            "value": { "title": "Build", "completed": false, "assignee": "u1" },
            "version": version, "userId": user_id(&users[0]),
        })
    );
    alice
        .expect_no_event("changed", Duration::from_millis(100))
        .await;

    let got = bob
        .request("stores.get", json!({ "store": "tasks", "key": "task-1" }))
        .await
        .unwrap();
    assert_eq!(got["value"]["title"], "Build");
    assert_eq!(got["version"], version);
    let missing = bob
        .request("stores.get", json!({ "store": "tasks", "key": "nope" }))
        .await
        .unwrap();
    assert_eq!(missing["value"], Value::Null);

    let updated = bob
        .request(
            "stores.update",
            json!({ "store": "tasks", "key": "task-1", "value": { "completed": true } }),
        )
        .await
        .unwrap();
    assert_eq!(
        updated["value"],
        json!({ "title": "Build", "completed": true, "assignee": "u1" })
    );
    let changed = alice.event("changed").await;
    assert_eq!(changed["action"], "update");
    assert_eq!(changed["value"]["completed"], true);
    assert!(changed["version"].as_i64().unwrap() > version);

    alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "task-2", "value": { "title": "Ship" } }),
        )
        .await
        .unwrap();
    bob.event("changed").await;
    let all = bob
        .request("stores.getAll", json!({ "store": "tasks" }))
        .await
        .unwrap();
    let entries = all["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["key"], "task-1");
    assert_eq!(
        entries[1]["value"],
        json!({ "title": "Ship", "completed": false })
    );
    assert_eq!(entries[1]["updated_by"], user_id(&users[0]));

    let deleted = alice
        .request(
            "stores.delete",
            json!({ "store": "tasks", "key": "task-1" }),
        )
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    let changed = bob.event("changed").await;
    assert_eq!(
        (changed["action"].as_str(), &changed["value"]),
        (Some("delete"), &Value::Null)
    );
    let gone = alice
        .request("stores.get", json!({ "store": "tasks", "key": "task-1" }))
        .await
        .unwrap();
    assert_eq!(gone["value"], Value::Null);
    let again = alice
        .request(
            "stores.delete",
            json!({ "store": "tasks", "key": "task-1" }),
        )
        .await
        .unwrap();
    assert_eq!(again["deleted"], false);
    bob.expect_no_event("changed", Duration::from_millis(150))
        .await;
    let error = alice
        .request(
            "stores.update",
            json!({ "store": "tasks", "key": "task-1", "value": { "completed": true } }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["code"], "NOT_FOUND", "update of a missing entry");
}

async fn the_server_enforces_schemas_on_raw_sockets(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Mallory"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    declare(&mut alice).await;
    let (mut mallory, _) = Socket::join(&app.base, token(&users[1])).await;
    let write = |value: Value| json!({ "store": "tasks", "key": "k", "value": value });
    for (value, field) in [
        (json!({ "title": 5 }), "value.title"),
        (json!({}), "value.title"),
        (json!({ "title": null }), "value.title"),
        (
            json!({ "title": "x", "completed": "yes" }),
            "value.completed",
        ),
        (json!({ "title": "x", "admin": true }), "value.admin"),
        (json!("a string"), "value"),
    ] {
        let error = mallory
            .request("stores.set", write(value.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            (error["code"].as_str(), error["field"].as_str()),
            (Some("VALIDATION_ERROR"), Some(field)),
            "{value}"
        );
    }
    let error = mallory
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "", "value": { "title": "x" } }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["field"], "key");
    let error = mallory
        .request(
            "stores.set",
            json!({ "store": "nope", "key": "k", "value": {} }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["code"], "NOT_FOUND", "a store nobody declared");
    // Changing a schema others depend on is refused, and the schema stays.
    let changed = json!({ "title": { "type": "number", "required": true } });
    let error = mallory
        .request("stores.declare", json!({ "schemas": { "tasks": changed } }))
        .await
        .unwrap_err();
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("VALIDATION_ERROR"), Some("schemas.tasks"))
    );
    let error = mallory
        .request(
            "stores.declare",
            json!({ "schemas": { "x": { "a": { "type": "date" } } } }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["field"], "schemas.x.a.type");
    let schemas = account.get("/stores").await;
    assert_eq!(schemas.data()["stores"][0]["schema"], tasks_schema());
    // The same fields in another order are the same schema.
    let reordered = json!({
        "assignee": { "type": "string" },
        "completed": { "default": false, "type": "boolean" },
        "title": { "required": true, "type": "string" },
    });
    mallory
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": reordered } }),
        )
        .await
        .expect("field order does not matter");
    // Nothing was written by any of it; a valid write still works.
    assert!(server_view(&mut alice).await.is_empty());
    mallory
        .request("stores.set", write(json!({ "title": "ok" })))
        .await
        .unwrap();

    // With client schemas off, only the REST API registers stores.
    let app = TestApp::start_with(backend, |c| c.stores.client_schemas = false).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let error = alice
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": tasks_schema() } }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["code"], "NOT_FOUND");
    account
        .send(
            account
                .request(reqwest::Method::PUT, "/stores/tasks")
                .json(&json!({ "schema": tasks_schema() })),
        )
        .await
        .expect(StatusCode::CREATED);
    declare(&mut alice).await;
}

async fn racing_updates_converge_on_every_client(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.messages_per_second = 10_000;
        c.realtime.message_burst = 10_000;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["A", "B"]).await;
    let (mut a, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut b, _) = Socket::join(&app.base, token(&users[1])).await;
    declare(&mut a).await;
    let first = a
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "race", "value": { "title": "start" } }),
        )
        .await
        .unwrap();
    b.event("changed").await;
    let mut mirrors = [Mirror::default(), Mirror::default()];
    for mirror in &mut mirrors {
        mirror.apply(
            "race",
            first["version"].as_i64().unwrap(),
            first["value"].clone(),
        );
    }

    // Both fire 40 updates of the same key without waiting, then collect every answer.
    async fn race(socket: &mut Socket, name: &str, mirror: &mut Mirror) {
        for i in 0..40 {
            let value = json!({ "title": format!("{name}-{i}"), "assignee": name, "completed": i % 2 == 0 });
            socket
                .send_json(json!({ "type": "req", "id": 1000 + i, "method": "stores.update", "params": { "store": "tasks", "key": "race", "value": value } }))
                .await;
        }
        let mut answered = 0;
        while answered < 40 {
            let frame = socket.next_frame().await.expect("a frame");
            if frame["type"] == "res" {
                assert_eq!(frame["ok"], true, "{frame}");
                mirror.apply(
                    "race",
                    frame["result"]["version"].as_i64().unwrap(),
                    frame["result"]["value"].clone(),
                );
                answered += 1;
            } else if frame["type"] == "event" && frame["event"] == "changed" {
                mirror.apply_event(&frame["data"]);
            }
        }
    }
    let [ma, mb] = &mut mirrors;
    tokio::join!(race(&mut a, "a", ma), race(&mut b, "b", mb));
    // Let the last events arrive.
    for event in a.drain_events("changed", Duration::from_millis(300)).await {
        mirrors[0].apply_event(&event);
    }
    for event in b.drain_events("changed", Duration::from_millis(300)).await {
        mirrors[1].apply_event(&event);
    }
    let truth = server_view(&mut a).await;
    assert_eq!(mirrors[0].live(), truth, "A converged");
    assert_eq!(mirrors[1].live(), truth, "B converged");
    assert_eq!(
        mirrors[0].entries["race"].0, mirrors[1].entries["race"].0,
        "same version"
    );
    assert_eq!(
        mirrors[0].entries["race"].0,
        first["version"].as_i64().unwrap() + 80,
        "every update got its own version"
    );
}

async fn a_reconnecting_client_catches_up(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Away", "Here"]).await;
    let (mut away, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut here, _) = Socket::join(&app.base, token(&users[1])).await;
    declare(&mut away).await;
    for key in ["a", "b", "c"] {
        here.request(
            "stores.set",
            json!({ "store": "tasks", "key": key, "value": { "title": key } }),
        )
        .await
        .unwrap();
    }
    let synced = away
        .request("stores.sync", json!({ "store": "tasks" }))
        .await
        .unwrap();
    assert_eq!(synced["reset"], true, "a first sync is the whole contents");
    assert_eq!(synced["changes"].as_array().unwrap().len(), 3);
    let mut mirror = Mirror::default();
    for change in synced["changes"].as_array().unwrap() {
        mirror.apply_event(change);
    }
    let seen = synced["version"].as_i64().unwrap();
    away.close().await;

    // While it is away: a new entry, an update, a deletion.
    here.request(
        "stores.set",
        json!({ "store": "tasks", "key": "d", "value": { "title": "d" } }),
    )
    .await
    .unwrap();
    here.request(
        "stores.update",
        json!({ "store": "tasks", "key": "a", "value": { "completed": true } }),
    )
    .await
    .unwrap();
    here.request("stores.delete", json!({ "store": "tasks", "key": "b" }))
        .await
        .unwrap();

    let (mut back, _) = Socket::join(&app.base, token(&users[0])).await;
    let caught = back
        .request("stores.sync", json!({ "store": "tasks", "since": seen }))
        .await
        .unwrap();
    assert_eq!(caught["reset"], false);
    let changes = caught["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(
        changes.iter().filter(|c| c["action"] == "delete").count(),
        1
    );
    for change in changes {
        mirror.apply_event(change);
    }
    assert_eq!(mirror.live(), server_view(&mut back).await);
    // Nothing new: nothing to send.
    let idle = back
        .request("stores.sync", json!({ "since": caught["version"] }))
        .await
        .unwrap();
    assert_eq!(idle["changes"], json!([]));
    assert_eq!(idle["version"], caught["version"]);

    // Once deletions are forgotten, a client from before gets the whole contents.
    app.state
        .store()
        .purge_tombstones(collabkit::domain::Timestamp::now().plus_millis(1))
        .await
        .unwrap();
    let reset = back
        .request("stores.sync", json!({ "store": "tasks", "since": seen }))
        .await
        .unwrap();
    assert_eq!(reset["reset"], true);
    assert_eq!(reset["changes"].as_array().unwrap().len(), 3);
}

async fn backends_read_and_write_entries_over_rest(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    let put = |path: &str, body: Value| {
        account.send(account.request(reqwest::Method::PUT, path).json(&body))
    };
    let reply = put("/stores/tasks", json!({ "schema": tasks_schema() })).await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "Store created");
    assert_eq!(reply.data()["store"]["name"], "tasks");
    assert_eq!(reply.data()["store"]["schema"], tasks_schema());
    let listed = account.get("/stores").await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.data()["stores"].as_array().unwrap().len(), 1);

    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let base = format!("/rooms/{room_id}/stores/tasks");
    let reply = put(
        &format!("{base}/t1"),
        json!({ "value": { "title": "From backend" } }),
    )
    .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Entry saved");
    assert_eq!(reply.data()["entry"]["value"]["completed"], false);
    let changed = alice.event("changed").await;
    assert_eq!(
        (changed["key"].as_str(), changed["userId"].clone()),
        (Some("t1"), Value::Null)
    );

    let reply = account
        .patch(
            &format!("{base}/t1"),
            json!({ "value": { "assignee": "bob" } }),
        )
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["entry"]["value"]["assignee"], "bob");
    assert_eq!(alice.event("changed").await["action"], "update");
    for key in ["t2", "t3"] {
        put(
            &format!("{base}/{key}"),
            json!({ "value": { "title": key } }),
        )
        .await
        .expect(StatusCode::OK);
        assert_eq!(alice.event("changed").await["key"], key);
    }
    let page = account.get(&format!("{base}?limit=2&offset=1")).await;
    page.expect(StatusCode::OK);
    assert_eq!(page.data()["total"], 3);
    let keys: Vec<&str> = page.data()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["t2", "t3"]);
    let entry = account.get(&format!("{base}/t1")).await;
    entry.expect(StatusCode::OK);
    assert_eq!(entry.data()["entry"]["value"]["title"], "From backend");
    let rooms = account.get(&format!("/rooms/{room_id}/stores")).await;
    assert_eq!(
        rooms.data()["stores"],
        json!([{ "name": "tasks", "entries": 3 }])
    );

    let reply = put(&format!("{base}/bad"), json!({ "value": { "title": 1 } })).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "value.title");
    assert_eq!(reply.body["error"]["module"], "Stores");
    account
        .get(&format!("{base}/bad"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get(&format!("/rooms/{room_id}/stores/nope/x"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get(&format!("/rooms/{}/stores/tasks", uuid::Uuid::new_v4()))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    let reply = account.delete(&format!("{base}/t1")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(alice.event("changed").await["action"], "delete");
    account
        .delete(&format!("{base}/t1"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // Schema changes: compatible ones pass; one that would break stored entries does not.
    let mut more = tasks_schema();
    more["tags"] = json!({ "type": "string" });
    let reply = put("/stores/tasks", json!({ "schema": more })).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Store updated");
    let mut retyped = more.clone();
    retyped["title"] = json!({ "type": "number", "required": true });
    let reply = put("/stores/tasks", json!({ "schema": retyped })).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "schema.title");
    // A store without entries can be redefined freely.
    put(
        "/stores/empty",
        json!({ "schema": { "a": { "type": "string" } } }),
    )
    .await
    .expect(StatusCode::CREATED);
    put(
        "/stores/empty",
        json!({ "schema": { "b": { "type": "number", "required": true } } }),
    )
    .await
    .expect(StatusCode::OK);
}

async fn store_limits_answer_with_clear_errors(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.stores.max_entry_bytes = 100;
        c.stores.max_entries_per_store = 2;
        c.stores.max_stores = 1;
        c.stores.max_fields = 3;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    declare(&mut alice).await;
    let error = alice
        .request(
            "stores.declare",
            json!({ "schemas": { "second": { "a": { "type": "string" } } } }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("VALIDATION_ERROR"), Some("schemas.second"))
    );
    let four = json!({ "a": { "type": "string" }, "b": { "type": "string" }, "c": { "type": "string" }, "d": { "type": "string" } });
    let error = alice
        .request("stores.declare", json!({ "schemas": { "tasks": four } }))
        .await
        .unwrap_err();
    assert_eq!(error["field"], "schemas.tasks");

    let error = alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "big", "value": { "title": "x".repeat(200) } }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["code"], "PAYLOAD_TOO_LARGE");
    for key in ["one", "two"] {
        alice
            .request(
                "stores.set",
                json!({ "store": "tasks", "key": key, "value": { "title": key } }),
            )
            .await
            .unwrap();
    }
    let error = alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "three", "value": { "title": "3" } }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("VALIDATION_ERROR"), Some("key"))
    );
    // Overwriting an existing key is not a new entry.
    alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "two", "value": { "title": "2" } }),
        )
        .await
        .unwrap();
    let view = server_view(&mut alice).await;
    assert_eq!(
        view.keys().collect::<Vec<_>>(),
        ["one", "two"],
        "nothing else was stored"
    );
    // A deletion frees a place.
    alice
        .request("stores.delete", json!({ "store": "tasks", "key": "one" }))
        .await
        .unwrap();
    alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "three", "value": { "title": "3" } }),
        )
        .await
        .unwrap();
}

async fn deleting_a_room_deletes_its_entries(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    declare(&mut alice).await;
    alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "k", "value": { "title": "t" } }),
        )
        .await
        .unwrap();
    let rows = crate::harness::count_rows(&app, "store_entries", &room_id).await;
    assert_eq!(rows, 1);
    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        crate::harness::count_rows(&app, "store_entries", &room_id).await,
        0
    );
    // The schema is the account's and stays.
    assert_eq!(
        account.get("/stores").await.data()["stores"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn get_all_and_sync_answer_in_pages(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.stores.page_entries = 2).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    declare(&mut alice).await;
    for key in ["a", "b", "c", "d", "e"] {
        alice
            .request(
                "stores.set",
                json!({ "store": "tasks", "key": key, "value": { "title": key } }),
            )
            .await
            .unwrap();
    }
    // getAll, by key, two at a time.
    let mut keys = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = alice
            .request("stores.getAll", json!({ "store": "tasks", "after": after }))
            .await
            .unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2);
        keys.extend(
            entries
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_owned()),
        );
        if page["hasMore"] != true {
            assert_eq!(page["cursor"], Value::Null);
            break;
        }
        after = page["cursor"].clone();
    }
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);

    // A reset in pages, with a change made while paging, then the catch-up from the first
    // page's version.
    let (mut bob, _) = Socket::connect(&app.base, token(&users[1])).await;
    let first = bob
        .request("stores.sync", json!({ "store": "tasks" }))
        .await
        .unwrap();
    assert_eq!(
        (first["reset"].clone(), first["hasMore"].clone()),
        (json!(true), json!(true))
    );
    let start_version = first["version"].as_i64().unwrap();
    let mut mirror = Mirror::default();
    for change in first["changes"].as_array().unwrap() {
        mirror.apply_event(change);
    }
    alice
        .request("stores.delete", json!({ "store": "tasks", "key": "a" }))
        .await
        .unwrap();
    alice
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "f", "value": { "title": "f" } }),
        )
        .await
        .unwrap();
    // The rest of the reset, then what changed since its first page.
    sync_pages(
        &mut bob,
        "after",
        first["cursor"].clone(),
        true,
        &mut mirror,
    )
    .await;
    sync_pages(&mut bob, "since", json!(start_version), false, &mut mirror).await;
    assert_eq!(
        mirror.live(),
        server_view_all(&mut bob).await,
        "the deletion made while paging is seen"
    );
    assert!(!mirror.live().contains_key("a"));
    assert!(mirror.live().contains_key("f"));
}

/// Applies `stores.sync` pages of `tasks` from `from` (passed as `param`: `after` continues a
/// reset, `since` catches up) until the last one; each page must say `reset` as expected.
async fn sync_pages(
    socket: &mut Socket,
    param: &str,
    from: Value,
    reset: bool,
    mirror: &mut Mirror,
) {
    let mut from = from;
    loop {
        let page = socket
            .request("stores.sync", json!({ "store": "tasks", param: from }))
            .await
            .unwrap();
        assert_eq!(page["reset"], reset);
        for change in page["changes"].as_array().unwrap() {
            mirror.apply_event(change);
        }
        if page["hasMore"] != true {
            return;
        }
        from = page["cursor"].clone();
    }
}

/// Every entry of `tasks`, through getAll's pages.
async fn server_view_all(socket: &mut Socket) -> BTreeMap<String, Value> {
    let mut view = BTreeMap::new();
    let mut after = Value::Null;
    loop {
        let page = socket
            .request("stores.getAll", json!({ "store": "tasks", "after": after }))
            .await
            .unwrap();
        for entry in page["entries"].as_array().unwrap() {
            view.insert(
                entry["key"].as_str().unwrap().to_owned(),
                entry["value"].clone(),
            );
        }
        if page["hasMore"] != true {
            return view;
        }
        after = page["cursor"].clone();
    }
}
