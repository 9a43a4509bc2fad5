//! Nodes on one PostgreSQL database and one Redis: what happens in a room on one node reaches
//! the room's sockets on the others (docs/scaling.md). What is relayed so far: store and
//! comment events, and broadcasts.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{eventually, test_config, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

/// The Redis the tests relay through.
// The harness takes it from the environment as scripts/test passes it (see clippy.toml).
#[allow(clippy::disallowed_methods)]
fn redis_url() -> String {
    std::env::var("COLLABKIT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Two nodes relaying through Redis, each ready (its relay up).
async fn two_nodes() -> (TestApp, TestApp) {
    let a = TestApp::start_with(Backend::Postgres, |config| {
        config.redis.url = redis_url();
    })
    .await;
    let mut config = test_config(&a.db);
    config.redis.url = redis_url();
    config.realtime.node_id = format!("relay-b-{}", uuid::Uuid::new_v4().simple());
    let b = TestApp::start_on(a.db.share(), config).await;
    for node in [&a, &b] {
        let up = eventually(Duration::from_secs(10), || async {
            let reply = node.call(Method::GET, "/readyz", None).await;
            reply.data()["relay"] == "redis" && reply.data().get("warning").is_none()
        })
        .await;
        assert!(up, "the relay never came up (is Redis at {}?)", redis_url());
    }
    (a, b)
}

/// Broadcasts from `from` until one reaches `to`: the other node subscribes to the room's
/// channel as its first socket joins, and what is published before that is not relayed.
async fn until_relayed(from: &mut Socket, to: &mut Socket) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        from.request("broadcast", json!({ "event": "ping", "data": null }))
            .await
            .unwrap();
        if to
            .event_within("broadcast", Duration::from_millis(200))
            .await
            .is_some()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broadcasts never crossed to the other node"
        );
    }
    to.drain_events("broadcast", Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_events_and_broadcasts_reach_the_sockets_of_other_nodes() {
    let (a, b) = two_nodes().await;
    let account = a.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, _) = Socket::join(&a.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&b.base, token(&users[1])).await;
    let (mut carol, _) = Socket::join(&b.base, token(&users[2])).await;
    until_relayed(&mut alice, &mut bob).await;
    carol
        .drain_events("broadcast", Duration::from_millis(300))
        .await;

    // A broadcast from A: both sockets on B get it, once; never back to the sender.
    alice
        .request(
            "broadcast",
            json!({ "event": "wave", "data": { "hi": true } }),
        )
        .await
        .unwrap();
    let expected = json!({ "event": "wave", "data": { "hi": true }, "userId": user_id(&users[0]) });
    for socket in [&mut bob, &mut carol] {
        assert_eq!(socket.event("broadcast").await, expected);
        socket
            .expect_no_event("broadcast", Duration::from_millis(200))
            .await;
    }
    alice
        .expect_no_event("broadcast", Duration::from_millis(200))
        .await;

    // Named recipients: only Carol, on B.
    alice
        .request(
            "broadcast",
            json!({ "event": "psst", "data": 1, "userIds": [user_id(&users[2])] }),
        )
        .await
        .unwrap();
    assert_eq!(carol.event("broadcast").await["event"], "psst");
    bob.expect_no_event("broadcast", Duration::from_millis(200))
        .await;

    // Store writes on B reach A, in order, with their versions; the writer hears nothing back.
    bob.request(
        "stores.declare",
        json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
    )
    .await
    .unwrap();
    let mut versions = Vec::new();
    for i in 0..5 {
        let set = bob
            .request(
                "stores.set",
                json!({ "store": "tasks", "key": format!("t{i}"), "value": { "title": format!("{i}") } }),
            )
            .await
            .unwrap();
        versions.push(set["version"].clone());
    }
    for (i, version) in versions.iter().enumerate() {
        let changed = alice.event("changed").await;
        assert_eq!(changed["key"], format!("t{i}"));
        assert_eq!(&changed["version"], version);
        assert_eq!(changed["userId"], user_id(&users[1]));
    }
    assert_eq!(carol.event("changed").await["key"], "t0");
    bob.expect_no_event("changed", Duration::from_millis(200))
        .await;

    // A comment made on A reaches B.
    alice
        .request("comments.createThread", json!({ "body": "across nodes" }))
        .await
        .unwrap();
    let created: Value = bob.event("threadCreated").await;
    assert!(created.to_string().contains("across nodes"), "{created}");
    b.call(Method::GET, "/healthz", None)
        .await
        .expect(StatusCode::OK);
}

/// A Redis server of the test's own, on a port of its own, stopped when dropped.
struct OwnRedis {
    process: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let process = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (see .ci/run)");
        Self { process }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

async fn relay_state(app: &TestApp) -> (Value, bool) {
    let reply = app.call(Method::GET, "/readyz", None).await;
    reply.expect(StatusCode::OK);
    (
        reply.data()["relay"].clone(),
        reply.data().get("warning").is_some(),
    )
}

/// Redis away: the node serves its own sockets, `/readyz` says the relay is down; Redis
/// back: the relay reconnects by itself; away again: said again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_without_redis_and_the_relay_reconnects_when_it_is_back() {
    let port = free_port();
    let app = TestApp::start_with(Backend::Postgres, |config| {
        config.redis.url = format!("redis://127.0.0.1:{port}");
    })
    .await;
    assert_eq!(relay_state(&app).await, (json!("redis"), true));
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    alice
        .request("broadcast", json!({ "event": "local", "data": 1 }))
        .await
        .unwrap();
    assert_eq!(bob.event("broadcast").await["event"], "local");

    let redis = OwnRedis::start(port);
    let up = eventually(Duration::from_secs(15), || async {
        relay_state(&app).await == (json!("redis"), false)
    })
    .await;
    assert!(up, "the relay never connected to Redis once it was up");

    drop(redis);
    let down = eventually(Duration::from_secs(15), || async {
        relay_state(&app).await.1
    })
    .await;
    assert!(down, "/readyz never said Redis went away");
    alice
        .request("broadcast", json!({ "event": "still", "data": 2 }))
        .await
        .unwrap();
    assert_eq!(bob.event("broadcast").await["event"], "still");
}
