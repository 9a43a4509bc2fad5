//! The relay when things go wrong: Redis away, back, paused; a node killed; writes made while
//! messages could not cross (docs/scaling.md, Faults).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use collabkit::rooms::order::GAP_WAIT;

use crate::harness::{eventually, test_config, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::relay::{nodes_on, redis_url, until_relayed};
use crate::socket::Socket;

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
/// back: the relay reconnects by itself (and resynchronizes the sockets of its rooms); away
/// again: said again.
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
    // Its rooms' sockets may have missed other nodes' messages meanwhile: resynchronized.
    assert_eq!(alice.closed_with().await, 4000);
    assert_eq!(bob.closed_with().await, 4000);
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;

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

/// A node killed with `kill -9`: once its heartbeat is stale, a surviving node reaps its
/// sockets, and the survivors' sockets see its users leave (and their presence go `null`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_of_a_killed_node_leave_for_the_other_nodes() {
    let fast = |config: &mut collabkit::config::Config| {
        config.redis.url = redis_url();
        config.realtime.node_heartbeat_ms = 200;
        config.realtime.node_timeout_ms = 1_500;
    };
    let a = TestApp::start_with(Backend::Postgres, fast).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap();
    let env: Vec<(String, String)> = [
        ("COLLABKIT_REDIS_URL", redis_url()),
        ("COLLABKIT_REALTIME_NODE_HEARTBEAT_MS", "200".to_owned()),
        ("COLLABKIT_REALTIME_NODE_TIMEOUT_MS", "1500".to_owned()),
        (
            "COLLABKIT_JWT_SECRET",
            crate::harness::TEST_JWT_SECRET.to_owned(),
        ),
        (
            "COLLABKIT_SECRETS_KEY",
            crate::harness::TEST_SECRETS_KEY.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let b_db = a.db.share();
    let mut b = crate::cli::spawn_server(&b_db, port, &env).await;
    let b_base = format!("http://127.0.0.1:{port}");

    let account = a.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let bob_id = user_id(&users[1]).to_owned();
    let (mut alice, _) = Socket::join_speaking(&a.base, token(&users[0]), 2).await;
    let (mut bob, _) = Socket::join_speaking(&b_base, token(&users[1]), 2).await;
    until_relayed(&mut alice, &mut bob).await;
    until_relayed(&mut bob, &mut alice).await;
    alice
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    bob.notify("presence.update", json!({ "state": { "here": true } }))
        .await;
    crate::presence_batches::batches_until(&mut alice, |latest| latest.contains_key(&bob_id)).await;

    b.kill().unwrap(); // SIGKILL: B records nothing on the way out
    b.wait().unwrap();
    bob.kill();
    let left = alice
        .event_within("userLeft", Duration::from_secs(15))
        .await
        .expect("Alice never saw Bob leave");
    assert_eq!(left["user"]["id"], bob_id.as_str());
    assert_eq!(left["user"]["status"], "offline");
    crate::presence_batches::batches_until(&mut alice, |latest| {
        latest.get(&bob_id).is_some_and(Value::is_null)
    })
    .await;
}

/// Redis restarted while a node writes: the nodes notice they missed messages and close the
/// room's sockets to resynchronize (4000); reconnected, the clients read every write made
/// during the outage, and what follows arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_redis_was_away_reach_every_client_after_it() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let nodes = nodes_on(2, &url).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let account = a.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&a.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&b.base, token(&users[1])).await;
    until_relayed(&mut alice, &mut bob).await;
    until_relayed(&mut bob, &mut alice).await;
    bob.request(
        "stores.declare",
        json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
    )
    .await
    .unwrap();

    drop(redis);
    for node in [a, b] {
        let down = eventually(Duration::from_secs(10), || async {
            relay_state(node).await.1
        })
        .await;
        assert!(down, "/readyz never said Redis went away");
    }
    let mut written = Vec::new();
    for i in 0..3 {
        let set = bob
            .request(
                "stores.set",
                json!({ "store": "tasks", "key": format!("during-{i}"), "value": { "title": "x" } }),
            )
            .await
            .unwrap();
        written.push(set["version"].as_i64().unwrap());
    }

    let _redis = OwnRedis::start(port);
    assert_eq!(
        alice.closed_with().await,
        4000,
        "A resynchronizes its sockets"
    );
    assert_eq!(bob.closed_with().await, 4000, "so does B");
    for node in [a, b] {
        let up = eventually(Duration::from_secs(15), || async {
            relay_state(node).await == (json!("redis"), false)
        })
        .await;
        assert!(up, "the relay never came back");
    }
    let (mut alice, _) = Socket::join(&a.base, token(&users[0])).await;
    let synced = alice
        .request("stores.sync", json!({ "store": "tasks" }))
        .await
        .unwrap();
    let versions: Vec<i64> = synced["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, written, "every write made during the outage");

    let (mut bob, _) = Socket::join(&b.base, token(&users[1])).await;
    until_relayed(&mut bob, &mut alice).await;
    let set = bob
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "after", "value": { "title": "y" } }),
        )
        .await
        .unwrap();
    assert_eq!(alice.event("changed").await["version"], set["version"]);
    alice
        .expect_no_event("changed", Duration::from_millis(300))
        .await;
}

/// A store write whose event never crosses (made on a node that relays nothing, as a node
/// that dies between its commit and its publish): the other nodes' sockets wait for it at most
/// `GAP_WAIT` (the write after it is held meanwhile), then resynchronize (4000); reconnected,
/// a client reads both writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_event_that_never_arrives_resynchronizes_the_room() {
    let nodes = nodes_on(2, &redis_url()).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut config = test_config(&a.db);
    config.realtime.node_id = format!("silent-{}", uuid::Uuid::new_v4().simple());
    let silent = TestApp::start_on(a.db.share(), config).await;
    let account = a.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, _) = Socket::join(&a.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&b.base, token(&users[1])).await;
    let (mut carol, _) = Socket::join(&silent.base, token(&users[2])).await;
    until_relayed(&mut alice, &mut bob).await;
    until_relayed(&mut bob, &mut alice).await;
    bob.request(
        "stores.declare",
        json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
    )
    .await
    .unwrap();
    bob.request(
        "stores.set",
        json!({ "store": "tasks", "key": "probe", "value": { "title": "p" } }),
    )
    .await
    .unwrap();
    assert_eq!(
        alice.event("changed").await["key"],
        "probe",
        "a write crosses"
    );

    let lost = carol
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "lost", "value": { "title": "x" } }),
        )
        .await
        .unwrap();
    let began = tokio::time::Instant::now();
    let after = bob
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "after", "value": { "title": "y" } }),
        )
        .await
        .unwrap();
    assert_eq!(
        after["version"].as_i64(),
        lost["version"].as_i64().map(|v| v + 1)
    );
    assert_eq!(
        alice.closed_with().await,
        4000,
        "A waited, then resynchronized"
    );
    assert!(
        began.elapsed() >= GAP_WAIT - Duration::from_millis(200),
        "A waited for the missing version first ({:?})",
        began.elapsed()
    );
    assert!(
        !alice
            .drain_pending()
            .iter()
            .any(|frame| frame["event"] == "changed"),
        "the write after the gap was held, not sent out of order"
    );
    assert_eq!(bob.closed_with().await, 4000, "so did B");

    let (mut alice, _) = Socket::join(&a.base, token(&users[0])).await;
    let synced = alice
        .request(
            "stores.sync",
            json!({ "store": "tasks", "since": lost["version"].as_i64().unwrap() - 1 }),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = synced["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["lost", "after"]);
    silent.stop().await;
}

/// `Relay::subscribed` waits for Redis to confirm a subscription: with Redis paused (SIGSTOP)
/// it waits, and once Redis goes on the confirmation ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_waited_for_until_redis_confirms_it() {
    use collabkit::domain::{NodeId, RoomId};
    use collabkit::relay::{RedisUrl, Relay};

    let port = free_port();
    let redis = OwnRedis::start(port);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    let (relay, _incoming) = Relay::start(url, NodeId::new("waiter"), shutdown.clone());
    let up = eventually(Duration::from_secs(10), || async { relay.is_up() }).await;
    assert!(up, "the relay never connected");

    let room = RoomId::new();
    relay.subscribe(room);
    relay.subscribed(room, Duration::from_secs(5)).await;
    assert!(
        relay.is_subscribed(room),
        "confirmed once subscribed() returns"
    );

    let pid = redis.process.id().to_string();
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill runs")
    };
    signal("-STOP");
    let other = RoomId::new();
    relay.subscribe(other);
    let started = tokio::time::Instant::now();
    relay.subscribed(other, Duration::from_millis(300)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited for Redis"
    );
    assert!(!relay.is_subscribed(other));
    signal("-CONT");
    relay.subscribed(other, Duration::from_secs(5)).await;
    assert!(relay.is_subscribed(other), "confirmed once Redis went on");
    shutdown.cancel();
}
