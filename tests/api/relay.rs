//! Nodes on one PostgreSQL database and one Redis: what happens in a room on one node reaches
//! the room's sockets on the others (docs/scaling.md): presence, store, comment and user
//! events, broadcasts, and the closing of a deleted user's sockets; and a node without Redis.

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

/// Nodes relaying through Redis on one database, each ready (its relay up).
async fn nodes(count: usize) -> Vec<TestApp> {
    nodes_on(count, &redis_url()).await
}

async fn nodes_on(count: usize, redis: &str) -> Vec<TestApp> {
    let first = TestApp::start_with(Backend::Postgres, |config| {
        config.redis.url = redis.to_owned();
    })
    .await;
    let mut nodes = vec![first];
    for _ in 1..count {
        let mut config = test_config(&nodes[0].db);
        config.redis.url = redis.to_owned();
        config.realtime.node_id = format!("relay-{}", uuid::Uuid::new_v4().simple());
        let db = nodes[0].db.share();
        nodes.push(TestApp::start_on(db, config).await);
    }
    for node in &nodes {
        let up = eventually(Duration::from_secs(10), || async {
            let reply = node.call(Method::GET, "/readyz", None).await;
            reply.data()["relay"] == "redis" && reply.data().get("warning").is_none()
        })
        .await;
        assert!(up, "the relay never came up (is Redis at {}?)", redis_url());
    }
    nodes
}

async fn two_nodes() -> (TestApp, TestApp) {
    let mut nodes = nodes(2).await;
    let b = nodes.pop().unwrap();
    (nodes.pop().unwrap(), b)
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

/// Users coming online and going offline on one node, and users created, changed, followed
/// and deleted through another, reach the sockets of every node; a user deleted through one
/// node has their sockets on the others closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_reach_the_sockets_of_other_nodes() {
    let (a, b) = two_nodes().await;
    let account = a.account().await;
    let on_b = crate::harness::TestAccount::rebase(&account, &b);
    let (room_id, users) = room_with_users(&account, &["Alice", "Zed", "Bob"]).await;
    let (mut alice, _) = Socket::join(&a.base, token(&users[0])).await;
    let (mut zed, _) = Socket::join(&b.base, token(&users[1])).await;
    until_relayed(&mut alice, &mut zed).await;
    until_relayed(&mut zed, &mut alice).await;
    alice
        .drain_events("userJoined", Duration::from_millis(300))
        .await;

    // Bob comes online on B; then follows Alice there.
    let (mut bob, _) = Socket::join(&b.base, token(&users[2])).await;
    let joined = alice.event("userJoined").await;
    assert_eq!(joined["user"]["id"], user_id(&users[2]));
    assert_eq!(joined["user"]["status"], "online");
    bob.request("users.follow", json!({ "userId": user_id(&users[0]) }))
        .await
        .unwrap();
    let mut updated: Vec<Value> = Vec::new();
    for _ in 0..2 {
        updated.push(alice.event("userUpdated").await["user"].clone());
    }
    let bob_seen = updated
        .iter()
        .find(|user| user["id"] == user_id(&users[2]))
        .expect("Bob updated");
    assert_eq!(bob_seen["following"], json!([user_id(&users[0])]));

    // Created, renamed through B: heard on A.
    let carol = on_b.user(&room_id, "Carol").await;
    assert_eq!(
        alice.event("userCreated").await["user"]["id"],
        user_id(&carol)
    );
    on_b.patch(
        &format!("/users/{}?roomId={room_id}", user_id(&carol)),
        json!({ "name": "Caroline" }),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(alice.event("userUpdated").await["user"]["name"], "Caroline");

    // Zed leaves B: A hears Zed go offline.
    zed.close().await;
    let left = alice.event("userLeft").await;
    assert_eq!(left["user"]["id"], user_id(&users[1]));

    // Bob deleted through A: A's sockets hear it, Bob's socket on B is closed.
    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[2])))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        alice.event("userDeleted").await["user"]["id"],
        user_id(&users[2])
    );
    assert_eq!(
        bob.event("userDeleted").await["user"]["id"],
        user_id(&users[2])
    );
    assert_eq!(bob.closed_with().await, 4404);
}

/// Presence crosses nodes in each node's ticks: states both ways (never one's own back), the
/// join snapshot holds the other node's users, and a user leaving is `null` everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_the_sockets_of_other_nodes() {
    use crate::presence_batches::batches_until;

    let (a, b) = two_nodes().await;
    let account = a.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (alice_id, bob_id) = (user_id(&users[0]).to_owned(), user_id(&users[1]).to_owned());
    let (mut alice, _) = Socket::join_speaking(&a.base, token(&users[0]), 2).await;
    let (mut bob, _) = Socket::join_speaking(&b.base, token(&users[1]), 2).await;
    until_relayed(&mut alice, &mut bob).await;
    until_relayed(&mut bob, &mut alice).await;
    for socket in [&mut alice, &mut bob] {
        socket
            .request("presence.sync", json!({ "target": "*" }))
            .await
            .unwrap();
    }

    bob.notify("presence.update", json!({ "state": { "x": 1 } }))
        .await;
    let (_, seen) = batches_until(&mut alice, |latest| latest.contains_key(&bob_id)).await;
    assert_eq!(seen[&bob_id]["x"], 1);
    assert!(seen[&bob_id]["color"].is_string());
    alice
        .notify("presence.update", json!({ "state": { "x": 2 } }))
        .await;
    let (batches, seen) = batches_until(&mut bob, |latest| latest.contains_key(&alice_id)).await;
    assert_eq!(seen[&alice_id]["x"], 2);
    assert!(
        batches
            .iter()
            .flatten()
            .all(|entry| entry["userId"] != bob_id.as_str()),
        "Bob's own state came back to him: {batches:?}"
    );

    // A late joiner on A gets Bob's state (from B) in its join answer.
    let (_, joined) = Socket::join_speaking(&a.base, token(&users[2]), 2).await;
    let snapshot = joined["presence"].as_array().unwrap();
    let bob_there = snapshot
        .iter()
        .find(|entry| entry["userId"] == bob_id.as_str())
        .unwrap_or_else(|| panic!("no Bob in {snapshot:?}"));
    assert_eq!(bob_there["state"]["x"], 1);

    bob.close().await;
    let (_, seen) = batches_until(&mut alice, |latest| {
        latest.get(&bob_id).is_some_and(Value::is_null)
    })
    .await;
    assert!(seen[&bob_id].is_null());
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

/// Three nodes, a socket on each: a broadcast, a store write and presence from any one
/// reach the two others, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_hear_each_other() {
    use crate::presence_batches::batches_until;

    let nodes = nodes(3).await;
    let account = nodes[0].account().await;
    let (_, users) = room_with_users(&account, &["Ann", "Ben", "Cy"]).await;
    let mut sockets = Vec::new();
    for (node, user) in nodes.iter().zip(&users) {
        sockets.push(Socket::join_speaking(&node.base, token(user), 2).await.0);
    }
    let (first, rest) = sockets.split_at_mut(1);
    for other in rest.iter_mut() {
        until_relayed(&mut first[0], other).await;
        until_relayed(other, &mut first[0]).await;
    }
    let (second, third) = rest.split_at_mut(1);
    until_relayed(&mut second[0], &mut third[0]).await;
    until_relayed(&mut third[0], &mut second[0]).await;
    first[0]
        .drain_events("broadcast", Duration::from_millis(300))
        .await;

    sockets[0]
        .request("broadcast", json!({ "event": "hello", "data": 3 }))
        .await
        .unwrap();
    for socket in &mut sockets[1..] {
        assert_eq!(socket.event("broadcast").await["event"], "hello");
        socket
            .expect_no_event("broadcast", Duration::from_millis(200))
            .await;
    }

    sockets[1]
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
        )
        .await
        .unwrap();
    let set = sockets[1]
        .request(
            "stores.set",
            json!({ "store": "tasks", "key": "k", "value": { "title": "three" } }),
        )
        .await
        .unwrap();
    for i in [0, 2] {
        let changed = sockets[i].event("changed").await;
        assert_eq!(changed["version"], set["version"]);
    }

    for socket in &mut sockets {
        socket
            .request("presence.sync", json!({ "target": "*" }))
            .await
            .unwrap();
    }
    sockets[2]
        .notify("presence.update", json!({ "state": { "from": "third" } }))
        .await;
    let cy = user_id(&users[2]).to_owned();
    for socket in &mut sockets[..2] {
        let (_, seen) = batches_until(socket, |latest| latest.contains_key(&cy)).await;
        assert_eq!(seen[&cy]["from"], "third");
    }
    // The first node owns the database: it stops last.
    for node in nodes.into_iter().rev() {
        node.stop().await;
    }
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

/// A room's first socket on a node hears what another node publishes right after its join:
/// the join waits for the room's subscription, so nothing falls between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_join_hears_the_next_message_from_another_node() {
    let (a, b) = two_nodes().await;
    let account = a.account().await;
    for round in 0..10 {
        let (_, users) = room_with_users(&account, &["Here", "There"]).await;
        let (mut here, _) = Socket::join(&a.base, token(&users[0])).await;
        let (mut there, _) = Socket::join(&b.base, token(&users[1])).await;
        here.request("broadcast", json!({ "event": "now", "data": round }))
            .await
            .unwrap();
        let got = there
            .event_within("broadcast", Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("round {round}: the first broadcast was lost"));
        assert_eq!(got["data"], round);
        here.close().await;
        there.close().await;
    }
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
