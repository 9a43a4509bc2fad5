//! Webhooks: registration, signed deliveries of each event, retries, the log, restarts,
//! scope, disabling, and the address guard.

use std::collections::HashMap;
use std::time::Duration;

use collabkit::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, eventually, Backend, TestAccount, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::receiver::Receiver;
use crate::socket::Socket;

both_backends!(
    webhooks_are_registered_listed_changed_and_deleted,
    each_event_is_delivered_signed_with_the_documented_body,
    room_scope_and_disabled_webhooks_are_respected,
    a_receiver_failing_twice_gets_the_third_attempt,
    a_delivery_survives_a_restart_while_the_receiver_is_down,
    a_webhook_that_keeps_failing_is_disabled,
    test_deliveries_and_secret_rotation,
    the_address_guard_refuses_private_targets,
);

/// Several nodes share a database on PostgreSQL only (a SQLite file serves one node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_each_event_once_on_postgres() {
    two_nodes_deliver_each_event_once(Backend::Postgres).await;
}

/// Quick retries and loopback receivers, for tests.
pub(crate) fn fast(config: &mut Config) {
    config.webhooks.allow_private_addresses = true;
    config.webhooks.retry_delays_ms = vec![100, 200, 300];
    config.webhooks.poll_interval_ms = 50;
    config.webhooks.attempt_timeout_ms = 2000;
}

/// The seven room events (webhooks and workflows alike).
pub const ALL_EVENTS: [&str; 7] = [
    "participant.joined",
    "participant.left",
    "session.started",
    "session.closed",
    "user.created",
    "user.updated",
    "user.deleted",
];

pub(crate) async fn register(
    account: &TestAccount,
    url: &str,
    events: &[&str],
    room: Option<&str>,
) -> Value {
    let mut body = json!({ "url": url, "events": events });
    if let Some(room) = room {
        body["roomId"] = json!(room);
    }
    let reply = account.post("/webhooks", body).await;
    reply.expect(StatusCode::CREATED);
    reply.data()["webhook"].clone()
}

async fn deliveries(account: &TestAccount, webhook: &Value) -> Vec<Value> {
    let reply = account
        .get(&format!(
            "/webhooks/{}/deliveries?limit=100",
            webhook["id"].as_str().unwrap()
        ))
        .await;
    reply.expect(StatusCode::OK);
    reply.data()["deliveries"].as_array().unwrap().clone()
}

/// The delivery log once it holds `count` deliveries none of which is pending: a receiver
/// gets a request before the server records the attempt's outcome.
async fn settled_deliveries(account: &TestAccount, webhook: &Value, count: usize) -> Vec<Value> {
    let settled = eventually(Duration::from_secs(10), || async {
        let log = deliveries(account, webhook).await;
        log.len() == count && log.iter().all(|d| d["status"] != "pending")
    })
    .await;
    let log = deliveries(account, webhook).await;
    assert!(settled, "the delivery log did not settle: {log:#?}");
    log
}

async fn webhooks_are_registered_listed_changed_and_deleted(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let account = app.account().await;
    let room = account.room("scoped").await;
    let reply = account
        .post("/webhooks", json!({ "url": "https://example.com/hook", "events": ["user.created", "session.closed"] }))
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "Webhook created");
    let webhook = reply.data()["webhook"].clone();
    let keys: Vec<&str> = webhook
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "organization_id",
            "url",
            "secret",
            "events",
            "room_id",
            "enabled",
            "created_at",
            "updated_at"
        ]
    );
    assert!(webhook["id"].as_str().unwrap().starts_with("wh_"));
    assert_eq!(webhook["organization_id"], account.id.as_str());
    assert!(webhook["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(webhook["events"], json!(["user.created", "session.closed"]));
    assert_eq!(webhook["room_id"], Value::Null);
    assert_eq!(webhook["enabled"], true);
    let id = webhook["id"].as_str().unwrap();

    let listed = account.get("/webhooks").await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.body["description"], "Webhooks retrieved");
    assert_eq!(listed.data()["total"], 1);
    assert!(
        listed.data()["webhooks"][0].get("secret").is_none(),
        "no secret in lists"
    );
    let got = account.get(&format!("/webhooks/{id}")).await;
    got.expect(StatusCode::OK);
    assert!(got.data()["webhook"].get("secret").is_none());

    let reply = account
        .patch(
            &format!("/webhooks/{id}"),
            json!({ "roomId": room["id"], "enabled": false, "events": ["user.deleted"] }),
        )
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Webhook updated");
    let updated = &reply.data()["webhook"];
    assert_eq!(
        (updated["room_id"].clone(), updated["enabled"].clone()),
        (room["id"].clone(), json!(false))
    );
    assert_eq!(updated["events"], json!(["user.deleted"]));
    assert!(updated.get("secret").is_none());
    let reply = account
        .patch(
            &format!("/webhooks/{id}"),
            json!({ "roomId": null, "url": "https://example.org/x" }),
        )
        .await;
    assert_eq!(reply.data()["webhook"]["room_id"], Value::Null);

    // Search matches the URL.
    register(
        &account,
        "https://hooks.other.net/a",
        &["user.created"],
        None,
    )
    .await;
    assert_eq!(
        account.get("/webhooks?search=EXAMPLE.org").await.data()["total"],
        1
    );
    assert_eq!(
        account.get("/webhooks?limit=1").await.data()["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    for (body, field) in [
        (json!({ "events": ["user.created"] }), "url"),
        (json!({ "url": "https://example.com" }), "events"),
        (
            json!({ "url": "https://example.com", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "https://example.com", "events": ["user.exploded"] }),
            "events",
        ),
        (
            json!({ "url": "ftp://example.com", "events": ["user.created"] }),
            "url",
        ),
        (
            json!({ "url": "not a url", "events": ["user.created"] }),
            "url",
        ),
        (
            json!({ "url": "https://example.com", "events": ["user.created"], "roomId": "x" }),
            "roomId",
        ),
        (
            json!({ "url": "https://example.com", "events": ["user.created"], "secret": "mine" }),
            "secret",
        ),
    ] {
        let reply = account.post("/webhooks", body.clone()).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
        assert_eq!(reply.body["error"]["module"], "Webhooks");
    }
    let unknown_room = json!({ "url": "https://example.com", "events": ["user.created"], "roomId": uuid::Uuid::new_v4() });
    account
        .post("/webhooks", unknown_room)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .patch(&format!("/webhooks/{id}"), json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    account
        .patch(&format!("/webhooks/{id}"), json!({ "enabled": null }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");

    let reply = account.delete(&format!("/webhooks/{id}")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["id"], id);
    account
        .get(&format!("/webhooks/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get(&format!("/webhooks/{id}/deliveries"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // Another account sees none of them.
    let other = app.account().await;
    assert_eq!(other.get("/webhooks").await.data()["total"], 0);
}

/// Asserts the documented body for an event of a room (and user).
fn assert_body(body: &Value, event: &str, room_id: &str) {
    assert!(body["id"].as_str().unwrap().starts_with("evt_"), "{body}");
    assert_eq!(body["event"], event);
    crate::rooms::assert_timestamp(&body["timestamp"]);
    assert_eq!(body["room"]["id"], room_id);
    assert_eq!(body["data"]["roomId"], room_id);
    for key in [
        "total_users_created",
        "active_participants",
        "duration_seconds",
    ] {
        assert!(
            body["room"].get(key).is_some(),
            "the room is the full CollabKitRoom: {body}"
        );
    }
    if let Some(user) = body.get("user") {
        assert_eq!(body["data"]["userId"], user["id"]);
        assert!(
            user.get("token").is_none(),
            "users in payloads never carry tokens"
        );
        assert!(user["status"].is_string());
    }
}

async fn each_event_is_delivered_signed_with_the_documented_body(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &ALL_EVENTS, None).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    account
        .patch(
            &format!("/users/{}?roomId={room_id}", user_id(&users[1])),
            json!({ "name": "Robert" }),
        )
        .await
        .expect(StatusCode::OK);
    let (alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (bob, _) = Socket::join(&app.base, token(&users[1])).await;
    bob.close().await;
    alice.close().await;
    // The leaves are recorded asynchronously; wait for the last one before deleting.
    assert!(
        eventually(Duration::from_secs(5), || async {
            account.get(&format!("/rooms/{room_id}")).await.data()["room"]["active_participants"]
                == 0
        })
        .await
    );
    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[1])))
        .await
        .expect(StatusCode::OK);

    // user.created x2, user.updated, session.started, participant.joined x2,
    // participant.left x2, session.closed, user.deleted.
    let received = receiver.wait_for(10, Duration::from_secs(10)).await;
    assert_eq!(
        received.len(),
        10,
        "{:#?}",
        received
            .iter()
            .map(|r| r.json()["event"].clone())
            .collect::<Vec<_>>()
    );
    let mut by_event: HashMap<String, Vec<Value>> = HashMap::new();
    for request in &received {
        assert!(
            request.verify_documented(&secret),
            "the documented verifier accepts it"
        );
        assert!(
            request.verify_standard(&secret),
            "a Standard Webhooks verifier accepts it"
        );
        assert_eq!(request.header("content-type"), "application/json");
        let body = request.json();
        assert_eq!(request.header("webhook-id"), body["id"].as_str().unwrap());
        assert_eq!(
            request.header("x-collabkit-event"),
            body["event"].as_str().unwrap()
        );
        assert_body(&body, body["event"].as_str().unwrap(), &room_id);
        by_event
            .entry(body["event"].as_str().unwrap().to_owned())
            .or_default()
            .push(body);
    }
    let count = |name: &str| by_event.get(name).map_or(0, Vec::len);
    assert_eq!(
        [
            count("user.created"),
            count("user.updated"),
            count("session.started"),
            count("participant.joined"),
            count("participant.left"),
            count("session.closed"),
            count("user.deleted")
        ],
        [2, 1, 1, 2, 2, 1, 1]
    );
    assert_eq!(by_event["user.updated"][0]["user"]["name"], "Robert");
    assert!(by_event["session.started"][0].get("user").is_none());
    assert_eq!(
        by_event["session.started"][0]["room"]["active_participants"],
        1
    );
    let closed = &by_event["session.closed"][0];
    assert!(closed.get("user").is_none());
    let mut names: Vec<&str> = closed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Alice", "Robert"]);
    assert_eq!(closed["room"]["active_participants"], 0);
    assert_eq!(
        by_event["user.deleted"][0]["user"]["id"],
        user_id(&users[1])
    );

    // The log: newest first, every delivery a success on the first attempt.
    let log = settled_deliveries(&account, &webhook, 10).await;
    for delivery in &log {
        let keys: Vec<&str> = delivery
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "webhook_id",
                "event",
                "payload",
                "status",
                "attempts",
                "last_attempt_at",
                "next_retry_at",
                "status_code",
                "created_at"
            ]
        );
        assert!(delivery["id"].as_str().unwrap().starts_with("del_"));
        assert_eq!(
            (delivery["status"].as_str(), delivery["attempts"].as_i64()),
            (Some("success"), Some(1))
        );
        assert_eq!(
            (delivery["status_code"].as_i64(), &delivery["next_retry_at"]),
            (Some(200), &Value::Null)
        );
        let payload: Value = serde_json::from_str(delivery["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["event"], delivery["event"]);
    }
    let created: Vec<&str> = log
        .iter()
        .map(|d| d["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let page = account
        .get(&format!(
            "/webhooks/{}/deliveries?limit=3&offset=9",
            webhook["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (
            page.data()["total"].as_i64(),
            page.data()["deliveries"].as_array().unwrap().len()
        ),
        (Some(10), 1)
    );
}

async fn room_scope_and_disabled_webhooks_are_respected(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let scoped_receiver = Receiver::start().await;
    let off_receiver = Receiver::start().await;
    let account = app.account().await;
    let here = account.room("here").await;
    let elsewhere = account.room("elsewhere").await;
    let here_id = here["id"].as_str().unwrap();
    let scoped = register(
        &account,
        &scoped_receiver.url(),
        &["user.created"],
        Some(here_id),
    )
    .await;
    let off = register(&account, &off_receiver.url(), &["user.created"], None).await;
    account
        .patch(
            &format!("/webhooks/{}", off["id"].as_str().unwrap()),
            json!({ "enabled": false }),
        )
        .await
        .expect(StatusCode::OK);
    account
        .user(elsewhere["id"].as_str().unwrap(), "Outside")
        .await;
    account.user(here_id, "Inside").await;
    scoped_receiver.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received: Vec<Value> = scoped_receiver
        .received()
        .iter()
        .map(|r| r.json())
        .collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["user"]["name"], "Inside");
    assert!(
        off_receiver.received().is_empty(),
        "a disabled webhook receives nothing"
    );
    assert!(deliveries(&account, &off).await.is_empty());
    assert_eq!(deliveries(&account, &scoped).await.len(), 1);
    // Another account's events never reach this account's webhooks.
    let other = app.account().await;
    let other_room = other.room("theirs").await;
    other
        .user(other_room["id"].as_str().unwrap(), "Theirs")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(scoped_receiver.received().len(), 1);
}

async fn a_receiver_failing_twice_gets_the_third_attempt(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 503]);
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let room = account.room("retries").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3);
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same event id on every attempt"
    );
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "the same body"
    );
    let done = eventually(Duration::from_secs(5), || async {
        deliveries(&account, &webhook).await[0]["status"] == "success"
    })
    .await;
    assert!(done);
    let log = deliveries(&account, &webhook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["status_code"], 200);
    assert!(log[0]["last_attempt_at"].is_string());
}

async fn a_delivery_survives_a_restart_while_the_receiver_is_down(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        fast(c);
        c.webhooks.retry_delays_ms = vec![300; 20];
    })
    .await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let addr = receiver.stop().await;
    let room = account.room("restart").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    // The first attempt fails: nobody listens.
    let failed = eventually(Duration::from_secs(5), || async {
        let log = deliveries(&account, &webhook).await;
        !log.is_empty() && log[0]["attempts"].as_i64() >= Some(1)
    })
    .await;
    assert!(failed);
    let log = deliveries(&account, &webhook).await;
    assert_eq!(log[0]["status"], "pending");
    assert_eq!(log[0]["status_code"], Value::Null);
    assert!(log[0]["next_retry_at"].is_string());

    // The server goes down too (as a crash: nothing is finished on the way out).
    let config = app.config.clone();
    let db = app.abandon().await;
    let receiver = Receiver::start_on(&addr.to_string()).await;
    let app = TestApp::start_on(db, config).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "the event arrives after both came back");
    assert_eq!(received[0].json()["user"]["name"], "Alice");
    let account = TestAccount::rebase(&account, &app);
    let delivered = eventually(Duration::from_secs(5), || async {
        deliveries(&account, &webhook).await[0]["status"] == "success"
    })
    .await;
    assert!(delivered);
}

async fn a_webhook_that_keeps_failing_is_disabled(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        fast(c);
        c.webhooks.disable_after_failures = 3;
        c.webhooks.retry_delays_ms = vec![50; 10];
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500; 100]);
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let id = webhook["id"].as_str().unwrap();
    let room = account.room("failing").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    let disabled = eventually(Duration::from_secs(10), || async {
        account.get(&format!("/webhooks/{id}")).await.data()["webhook"]["enabled"] == false
    })
    .await;
    assert!(disabled, "disabled after 3 failures in a row");
    let log = deliveries(&account, &webhook).await;
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["attempts"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(log[0]["status_code"], 500);
    // Nothing more is sent to it.
    account.user(room["id"].as_str().unwrap(), "Bob").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 3);
    // Re-enabled (and the receiver healthy again), it receives again.
    let healthy = Receiver::start().await;
    account
        .patch(
            &format!("/webhooks/{id}"),
            json!({ "enabled": true, "url": healthy.url() }),
        )
        .await
        .expect(StatusCode::OK);
    account.user(room["id"].as_str().unwrap(), "Carol").await;
    let received = healthy.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].json()["user"]["name"], "Carol");
}

async fn test_deliveries_and_secret_rotation(backend: Backend) {
    let app = TestApp::start_with(backend, fast).await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let id = webhook["id"].as_str().unwrap();
    let old_secret = webhook["secret"].as_str().unwrap().to_owned();
    let reply = account
        .post(&format!("/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Secret rotated");
    let secret = reply.data()["webhook"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(secret, old_secret);

    let reply = account
        .post(&format!("/webhooks/{id}/test"), json!({}))
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.data()["delivery"]["event"], "webhook.test");
    assert_eq!(reply.data()["delivery"]["status"], "pending");
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    let body = received[0].json();
    assert_eq!(
        (body["event"].as_str(), body["data"]["webhookId"].as_str()),
        (Some("webhook.test"), Some(id))
    );
    assert!(received[0].verify_documented(&secret) && received[0].verify_standard(&secret));
    assert!(
        !received[0].verify_documented(&old_secret),
        "the old secret no longer signs"
    );
    let logged = eventually(Duration::from_secs(5), || async {
        deliveries(&account, &webhook).await[0]["status"] == "success"
    })
    .await;
    assert!(logged);

    account
        .patch(&format!("/webhooks/{id}"), json!({ "enabled": false }))
        .await
        .expect(StatusCode::OK);
    account
        .post(&format!("/webhooks/{id}/test"), json!({}))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    account
        .post("/webhooks/wh_nope/test", json!({}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn the_address_guard_refuses_private_targets(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        fast(c);
        c.webhooks.allow_private_addresses = false;
        c.webhooks.retry_delays_ms = vec![];
    })
    .await;
    let receiver = Receiver::start().await;
    let account = app.account().await;
    for url in [
        receiver.url(),
        "http://10.0.0.1/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]:8080/hook".to_owned(),
    ] {
        let reply = account
            .post(
                "/webhooks",
                json!({ "url": url, "events": ["user.created"] }),
            )
            .await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], "url", "{url}");
    }
    // A name that resolves to loopback passes registration, and is refused when resolved.
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let webhook = register(&account, &url, &["user.created"], None).await;
    let room = account.room("guarded").await;
    account.user(room["id"].as_str().unwrap(), "Alice").await;
    let refused = eventually(Duration::from_secs(5), || async {
        let log = deliveries(&account, &webhook).await;
        !log.is_empty() && log[0]["status"] == "failed"
    })
    .await;
    assert!(refused, "the delivery to a private address failed");
    let log = deliveries(&account, &webhook).await;
    assert_eq!(
        (log[0]["attempts"].as_i64(), &log[0]["status_code"]),
        (Some(1), &Value::Null)
    );
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private receiver"
    );
}

async fn two_nodes_deliver_each_event_once(backend: Backend) {
    let first = TestApp::start_with(backend, |c| {
        fast(c);
        // The 5 failures must go to 5 first attempts: a retry due sooner than the 20 events
        // are all sent (slow on a busy machine) would meet a second failure.
        c.webhooks.retry_delays_ms = vec![1000; 3];
    })
    .await;
    let mut config = first.config.clone();
    config.data_dir = tempfile::tempdir().unwrap().keep();
    let second = TestApp::start_on(first.db.share(), config).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500; 5]);
    let account = first.account().await;
    let webhook = register(&account, &receiver.url(), &["user.created"], None).await;
    let room = account.room("busy").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    // Users created through both nodes.
    let through_second = TestAccount::rebase(&account, &second);
    for i in 0..20 {
        let node = if i % 2 == 0 {
            &account
        } else {
            &through_second
        };
        node.user(&room_id, &format!("user {i}")).await;
    }
    receiver.wait_for(25, Duration::from_secs(15)).await;
    // Every delivery settled: nothing is pending, so no attempt can come later.
    let log = settled_deliveries(&account, &webhook, 20).await;
    let received = receiver.received();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for request in &received {
        *per_event
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), 20, "every event arrived");
    // 5 failures were answered; each was retried once more, so 25 requests in all.
    assert_eq!(received.len(), 25, "{per_event:?}");
    assert!(per_event.values().all(|n| *n <= 2));
    assert!(log.iter().all(|d| d["status"] == "success"), "{log:#?}");
    let attempts: i64 = log.iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts, 25, "no delivery was attempted twice at once");
}
