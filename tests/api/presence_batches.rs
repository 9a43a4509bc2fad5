//! Presence in ticks (protocol version 2): one `presence` event per recipient per tick with
//! every state that changed, and version 1 clients served beside them as before.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(
    the_auth_frame_negotiates_the_version,
    a_tick_carries_every_changed_state_but_the_recipients_own,
    batches_follow_each_sockets_target,
    a_flood_is_one_state_per_tick_and_the_latest_wins,
);

/// The presence events a socket receives until `done` holds for the states seen so far (each
/// user's latest), within a deadline: the batches, and the latest state per user.
pub(crate) async fn batches_until(
    socket: &mut Socket,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> (Vec<Vec<Value>>, BTreeMap<String, Value>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut batches, mut latest) = (Vec::new(), BTreeMap::new());
    while !done(&latest) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(data) = socket.event_within("presence", left).await else {
            panic!("presence seen so far: {latest:?}");
        };
        let states = data["states"]
            .as_array()
            .unwrap_or_else(|| panic!("a version 2 presence event is a batch: {data}"))
            .clone();
        assert!(!states.is_empty(), "an empty batch");
        for entry in &states {
            latest.insert(
                entry["userId"].as_str().unwrap().to_owned(),
                entry["state"].clone(),
            );
        }
        batches.push(states);
    }
    (batches, latest)
}

async fn the_auth_frame_negotiates_the_version(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    for (asked, served) in [
        (json!(1), 1),
        (json!(2), 2),
        (json!(9), 2),
        (Value::Null, 1),
    ] {
        let (socket, welcome) =
            Socket::connect_speaking(&app.base, token(&users[0]), asked.clone()).await;
        assert_eq!(welcome["protocol"], served, "asked {asked}");
        socket.close().await;
    }
}

async fn a_tick_carries_every_changed_state_but_the_recipients_own(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol", "Dan"]).await;
    let mut movers = Vec::new();
    for user in &users[..3] {
        movers.push(Socket::join_speaking(&app.base, token(user), 2).await.0);
    }
    let (mut dan, _) = Socket::join_speaking(&app.base, token(&users[3]), 2).await;
    // A version 1 client in the same room is served one event per state.
    let (mut old, _) = Socket::join(&app.base, token(&users[3])).await;
    for socket in movers.iter_mut().chain([&mut dan, &mut old]) {
        socket
            .request("presence.sync", json!({ "target": "*" }))
            .await
            .unwrap();
    }
    for (n, socket) in movers.iter_mut().enumerate() {
        socket
            .notify("presence.update", json!({ "state": { "n": n } }))
            .await;
    }
    let everyone = |latest: &BTreeMap<String, Value>| latest.len() == 3;
    let (batches, latest) = batches_until(&mut dan, everyone).await;
    // The first change goes out at once (the room was quiet), the others with the next tick.
    assert!(batches.len() <= 2, "{batches:?}");
    for (n, user) in users[..3].iter().enumerate() {
        assert_eq!(latest[user_id(user)]["n"], n);
        assert!(latest[user_id(user)]["color"].is_string());
    }
    // A mover's batches hold the others' states, never its own.
    let alice = user_id(&users[0]).to_owned();
    let two = |latest: &BTreeMap<String, Value>| latest.len() == 2;
    let (_, seen) = batches_until(&mut movers[0], two).await;
    assert!(!seen.contains_key(&alice), "{seen:?}");
    movers[0]
        .expect_no_event("presence", Duration::from_millis(150))
        .await;
    // Version 1: one `{ userId, state }` event per state.
    let mut singles = BTreeMap::new();
    while singles.len() < 3 {
        let data = old.event("presence").await;
        assert!(data.get("states").is_none(), "{data}");
        singles.insert(
            data["userId"].as_str().unwrap().to_owned(),
            data["state"]["n"].clone(),
        );
    }
    // A user who leaves turns null in the next tick.
    let carol = user_id(&users[2]).to_owned();
    movers.pop().unwrap().close().await;
    let left = |latest: &BTreeMap<String, Value>| latest.get(&carol) == Some(&Value::Null);
    let (batches, _) = batches_until(&mut dan, left).await;
    assert_eq!(
        batches.last().unwrap(),
        &vec![json!({ "userId": carol, "state": null })]
    );
}

async fn batches_follow_each_sockets_target(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, _) = Socket::join_speaking(&app.base, token(&users[0]), 2).await;
    let (mut bob, _) = Socket::join_speaking(&app.base, token(&users[1]), 2).await;
    let (mut carol, _) = Socket::join_speaking(&app.base, token(&users[2]), 2).await;
    let (bob_id, carol_id) = (user_id(&users[1]), user_id(&users[2]));
    // Alice follows Bob and syncs 'following'; Carol syncs Alice by ID; Bob syncs nothing.
    alice
        .request("users.follow", json!({ "userId": bob_id }))
        .await
        .unwrap();
    alice
        .request("presence.sync", json!({ "target": "following" }))
        .await
        .unwrap();
    carol
        .request("presence.sync", json!({ "target": user_id(&users[0]) }))
        .await
        .unwrap();
    bob.notify("presence.update", json!({ "state": { "by": "bob" } }))
        .await;
    carol
        .notify("presence.update", json!({ "state": { "by": "carol" } }))
        .await;
    alice
        .notify("presence.update", json!({ "state": { "by": "alice" } }))
        .await;
    // Each sees only its target's state, though all three changed in the same ticks.
    let (_, seen) = batches_until(&mut alice, |latest| latest.contains_key(bob_id)).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), [bob_id]);
    let (_, seen) = batches_until(&mut carol, |latest| !latest.is_empty()).await;
    assert_eq!(seen.values().next().unwrap()["by"], "alice");
    alice
        .expect_no_event("presence", Duration::from_millis(150))
        .await;
    carol
        .expect_no_event("presence", Duration::from_millis(50))
        .await;
    assert!(!seen.contains_key(carol_id));
    // Bob synced nothing: no presence at all.
    bob.expect_no_event("presence", Duration::from_millis(50))
        .await;
}

async fn a_flood_is_one_state_per_tick_and_the_latest_wins(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.messages_per_second = 100_000;
        c.realtime.message_burst = 100_000;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Flood", "Viewer"]).await;
    let (mut flood, _) = Socket::join_speaking(&app.base, token(&users[0]), 2).await;
    let (mut viewer, _) = Socket::join_speaking(&app.base, token(&users[1]), 2).await;
    viewer
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    let started = Instant::now();
    for n in 0..300 {
        flood
            .notify("presence.update", json!({ "state": { "n": n } }))
            .await;
    }
    let flooder = user_id(&users[0]).to_owned();
    let last =
        |latest: &BTreeMap<String, Value>| latest.get(&flooder).is_some_and(|s| s["n"] == 299);
    let (batches, _) = batches_until(&mut viewer, last).await;
    let elapsed = started.elapsed();
    // One state per tick at most, each tick 50 ms apart, the first at once.
    assert!(batches.iter().all(|batch| batch.len() == 1), "{batches:?}");
    let bound = (elapsed.as_millis() / 50) as usize + 2;
    assert!(
        batches.len() <= bound,
        "{} batches in {elapsed:?} (bound {bound})",
        batches.len()
    );
}
