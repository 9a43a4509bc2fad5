//! Nodes on one PostgreSQL database and one Redis: what happens in a room on one node reaches
//! the room's sockets on the others (docs/scaling.md): presence, store, comment and user
//! events, broadcasts, and the closing of a deleted user's sockets. Faults: relay_faults.rs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{eventually, test_config, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

/// The Redis the tests relay through.
// The harness takes it from the environment as scripts/test passes it (see clippy.toml).
#[allow(clippy::disallowed_methods)]
pub(crate) fn redis_url() -> String {
    std::env::var("COLLABKIT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Nodes relaying through Redis on one database, each ready (its relay up).
async fn nodes(count: usize) -> Vec<TestApp> {
    nodes_on(count, &redis_url()).await
}

pub(crate) async fn nodes_on(count: usize, redis: &str) -> Vec<TestApp> {
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

pub(crate) async fn two_nodes() -> (TestApp, TestApp) {
    let mut nodes = nodes(2).await;
    let b = nodes.pop().unwrap();
    (nodes.pop().unwrap(), b)
}

/// Broadcasts from `from` until one reaches `to`: the other node subscribes to the room's
/// channel as its first socket joins, and what is published before that is not relayed.
pub(crate) async fn until_relayed(from: &mut Socket, to: &mut Socket) {
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

    // A broadcast from A: both sockets on B get it, once; never back to the sender. It
    // counts them.
    let sent = alice
        .request(
            "broadcast",
            json!({ "event": "wave", "data": { "hi": true } }),
        )
        .await
        .unwrap();
    assert_eq!(sent["recipients"], 2);
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
    let sent = alice
        .request(
            "broadcast",
            json!({ "event": "psst", "data": 1, "userIds": [user_id(&users[2])] }),
        )
        .await
        .unwrap();
    assert_eq!(sent["recipients"], 1);
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

/// A deleted user's and a deleted room's sockets that never joined, on a node where nobody
/// else is in the room, are closed too: an authenticated socket keeps its room's channel
/// subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_joined_close_on_other_nodes_when_their_user_or_room_goes() {
    let (a, b) = two_nodes().await;
    let account = a.account().await;
    let (room_id, users) = room_with_users(&account, &["Dana", "Eli"]).await;
    let (mut dana, _) = Socket::connect(&b.base, token(&users[0])).await;
    let (mut eli, _) = Socket::connect(&b.base, token(&users[1])).await;

    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[0])))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        dana.event("userDeleted").await["user"]["id"],
        user_id(&users[0])
    );
    assert_eq!(dana.closed_with().await, 4404);

    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(eli.event("roomDeleted").await["roomId"], room_id);
    assert_eq!(eli.closed_with().await, 4404);
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

    // What crossed shows in the metrics of the node that heard it: messages and their lag.
    let metrics = crate::metrics::scrape(&a).await;
    let value = |series: &str| -> f64 {
        crate::metrics::sample(&metrics, series)
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(value("collabkit_relay_messages_total{direction=\"received\"}") >= 2.0);
    assert!(value("collabkit_relay_lag_seconds_count") >= 2.0);
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

/// Two nodes writing to one room's stores at once: every socket, on either node, gets every
/// `changed` event once and in version order (this node's own writes wait for the other
/// node's earlier ones to arrive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_two_nodes_reach_every_socket_in_version_order() {
    const WRITES: usize = 40;
    let (a, b) = two_nodes().await;
    let account = a.account().await;
    let (_, users) =
        room_with_users(&account, &["Writer A", "Writer B", "Reader A", "Reader B"]).await;
    let (mut writer_a, _) = Socket::join(&a.base, token(&users[0])).await;
    let (mut writer_b, _) = Socket::join(&b.base, token(&users[1])).await;
    let (mut reader_a, _) = Socket::join(&a.base, token(&users[2])).await;
    let (mut reader_b, _) = Socket::join(&b.base, token(&users[3])).await;
    until_relayed(&mut writer_a, &mut reader_b).await;
    until_relayed(&mut writer_b, &mut reader_a).await;
    for socket in [&mut writer_a, &mut writer_b, &mut reader_a, &mut reader_b] {
        socket
            .drain_events("broadcast", Duration::from_millis(300))
            .await;
    }
    writer_a
        .request(
            "stores.declare",
            json!({ "schemas": { "tasks": crate::stores::tasks_schema() } }),
        )
        .await
        .unwrap();

    let write = |mut socket: Socket, name: &'static str| {
        tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..WRITES {
                let set = socket
                    .request(
                        "stores.set",
                        json!({ "store": "tasks", "key": format!("{name}-{i}"), "value": { "title": name } }),
                    )
                    .await
                    .unwrap();
                versions.push(set["version"].as_i64().unwrap());
            }
            (socket, versions)
        })
    };
    let (on_a, on_b) = (write(writer_a, "a"), write(writer_b, "b"));
    let (_writer_a, from_a) = on_a.await.unwrap();
    let (_writer_b, from_b) = on_b.await.unwrap();
    let mut written: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    written.sort_unstable();

    for (reader, node) in [(&mut reader_a, "A"), (&mut reader_b, "B")] {
        let mut seen = Vec::new();
        while seen.len() < written.len() {
            let Some(changed) = reader
                .event_within("changed", Duration::from_secs(10))
                .await
            else {
                panic!(
                    "the reader on {node} got {} of {} changes",
                    seen.len(),
                    written.len()
                );
            };
            seen.push(changed["version"].as_i64().unwrap());
        }
        assert_eq!(
            seen, written,
            "the reader on {node}: every change, in version order"
        );
        reader
            .expect_no_event("changed", Duration::from_millis(300))
            .await;
    }
}
