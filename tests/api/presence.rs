//! Presence, following, broadcasts, and what keeps one client from hurting the others.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{both_backends, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(
    presence_reaches_synced_users_with_a_stable_color,
    presence_targets_filter_on_the_server,
    following_is_stored_and_shown,
    broadcasts_reach_others_or_listed_users_only,
    a_flooding_client_is_coalesced_to_the_interval,
    a_client_that_stops_reading_does_not_delay_the_others,
    message_rate_and_size_limits_answer_with_errors,
    rooms_cap_their_connections,
);

async fn presence_reaches_synced_users_with_a_stable_color(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    let (mut carol, _) = Socket::join(&app.base, token(&users[2])).await;
    let synced = bob
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    assert_eq!(synced["states"], json!([]));

    alice
        .notify(
            "presence.update",
            json!({ "state": { "cursor": { "x": 1, "y": 2 } } }),
        )
        .await;
    let seen = bob.event("presence").await;
    assert_eq!(seen["userId"], user_id(&users[0]));
    assert_eq!(seen["state"]["cursor"], json!({ "x": 1, "y": 2 }));
    let color = seen["state"]["color"].as_str().unwrap().to_owned();
    assert!(color.starts_with('#') && color.len() == 7, "{color}");
    // Carol did not sync: she gets nothing. Alice never gets her own.
    carol
        .expect_no_event("presence", Duration::from_millis(200))
        .await;
    alice
        .expect_no_event("presence", Duration::from_millis(50))
        .await;

    // A late joiner gets the current states at once, in the join and in the sync.
    let (mut late, joined) = Socket::join(&app.base, token(&users[2])).await;
    let presence = joined["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 1);
    assert_eq!(presence[0]["userId"], user_id(&users[0]));
    assert_eq!(presence[0]["state"]["cursor"]["x"], 1);
    let states = late
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    assert_eq!(states["states"][0]["state"]["color"], color.as_str());

    // The colour is the same after a reconnection; a left user's state turns null.
    alice.close().await;
    let gone = bob.event("presence").await;
    assert_eq!(gone["userId"], user_id(&users[0]));
    assert_eq!(gone["state"], Value::Null);
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    alice
        .notify("presence.update", json!({ "state": { "cursor": null } }))
        .await;
    let again = bob.event("presence").await;
    assert_eq!(again["state"]["color"], color.as_str());

    // Unsync stops the flow.
    bob.request("presence.unsync", json!({})).await.unwrap();
    alice
        .notify("presence.update", json!({ "state": { "n": 2 } }))
        .await;
    bob.expect_no_event("presence", Duration::from_millis(200))
        .await;
    // Bad states are refused.
    let error = alice
        .request("presence.update", json!({ "state": [1, 2] }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "VALIDATION_ERROR");
    let error = alice
        .request("presence.update", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error["field"], "state");
    carol.close().await;
    late.close().await;
}

async fn presence_targets_filter_on_the_server(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    let (mut carol, _) = Socket::join(&app.base, token(&users[2])).await;
    // Alice follows Carol and syncs 'following'; Bob syncs Carol by ID.
    alice
        .request("users.follow", json!({ "userId": user_id(&users[2]) }))
        .await
        .unwrap();
    alice
        .request("presence.sync", json!({ "target": "following" }))
        .await
        .unwrap();
    bob.request("presence.sync", json!({ "target": user_id(&users[2]) }))
        .await
        .unwrap();

    bob.notify("presence.update", json!({ "state": { "who": "bob" } }))
        .await;
    carol
        .notify("presence.update", json!({ "state": { "who": "carol" } }))
        .await;
    let seen = alice.event("presence").await;
    assert_eq!(seen["state"]["who"], "carol");
    let seen = bob.event("presence").await;
    assert_eq!(seen["state"]["who"], "carol");
    alice
        .expect_no_event("presence", Duration::from_millis(200))
        .await;
    bob.expect_no_event("presence", Duration::from_millis(50))
        .await;

    // The 'following' target follows the graph as it changes.
    alice
        .request("users.unfollow", json!({ "userId": user_id(&users[2]) }))
        .await
        .unwrap();
    alice
        .request("users.follow", json!({ "userId": user_id(&users[1]) }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    carol
        .notify(
            "presence.update",
            json!({ "state": { "who": "carol again" } }),
        )
        .await;
    bob.notify(
        "presence.update",
        json!({ "state": { "who": "bob again" } }),
    )
    .await;
    let seen = alice.event("presence").await;
    assert_eq!(seen["state"]["who"], "bob again");
    alice
        .expect_no_event("presence", Duration::from_millis(200))
        .await;

    let error = alice
        .request("presence.sync", json!({ "target": "everyone" }))
        .await
        .unwrap_err();
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("VALIDATION_ERROR"), Some("target"))
    );
}

async fn following_is_stored_and_shown(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    let followed = alice
        .request("users.follow", json!({ "userId": user_id(&users[1]) }))
        .await
        .unwrap();
    assert_eq!(followed["user"]["id"], user_id(&users[1]));
    assert_eq!(followed["user"]["followers"], json!([user_id(&users[0])]));
    // Following twice is harmless.
    alice
        .request("users.follow", json!({ "userId": user_id(&users[1]) }))
        .await
        .unwrap();
    // Bob sees both users updated.
    let mut updated: Vec<Value> = vec![
        bob.event("userUpdated").await,
        bob.event("userUpdated").await,
    ];
    updated.sort_by_key(|u| u["user"]["name"].as_str().unwrap().to_owned());
    assert_eq!(updated[0]["user"]["following"], json!([user_id(&users[1])]));
    assert_eq!(updated[1]["user"]["followers"], json!([user_id(&users[0])]));

    // Stored: it survives a reconnection, and shows in reads and in the welcome.
    alice.close().await;
    let (mut alice, welcome) = Socket::connect(&app.base, token(&users[0])).await;
    assert_eq!(welcome["user"]["following"], json!([user_id(&users[1])]));
    let all = alice.request("users.getAll", json!({})).await.unwrap();
    let bob_view = all["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "Bob")
        .unwrap()
        .clone();
    assert_eq!(bob_view["followers"], json!([user_id(&users[0])]));

    let unfollowed = alice
        .request("users.unfollow", json!({ "userId": user_id(&users[1]) }))
        .await
        .unwrap();
    assert_eq!(unfollowed["user"]["followers"], json!([]));
    let error = alice
        .request("users.follow", json!({ "userId": user_id(&users[0]) }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "VALIDATION_ERROR", "not yourself");
    let error = alice
        .request("users.follow", json!({ "userId": uuid::Uuid::new_v4() }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "NOT_FOUND");
    let error = alice.request("users.follow", json!({})).await.unwrap_err();
    assert_eq!(error["field"], "userId");
    // A user of another room cannot be followed.
    let other = account.room("other").await;
    let stranger = account
        .user(other["id"].as_str().unwrap(), "Stranger")
        .await;
    let error = alice
        .request("users.follow", json!({ "userId": user_id(&stranger) }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "NOT_FOUND");
}

async fn broadcasts_reach_others_or_listed_users_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    let (mut carol, _) = Socket::join(&app.base, token(&users[2])).await;

    let sent = alice
        .request(
            "broadcast",
            json!({ "event": "wave", "data": { "hi": true } }),
        )
        .await
        .unwrap();
    assert_eq!(sent["recipients"], 2);
    for socket in [&mut bob, &mut carol] {
        let got = socket.event("broadcast").await;
        assert_eq!(
            got,
            json!({ "event": "wave", "data": { "hi": true }, "userId": user_id(&users[0]) })
        );
    }
    alice
        .expect_no_event("broadcast", Duration::from_millis(200))
        .await;

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
    // Listing yourself does not send it back to you.
    alice
        .request(
            "broadcast",
            json!({ "event": "self", "userIds": [user_id(&users[0])] }),
        )
        .await
        .unwrap();
    alice
        .expect_no_event("broadcast", Duration::from_millis(200))
        .await;

    let big = "x".repeat(40_000);
    let error = alice
        .request("broadcast", json!({ "event": "big", "data": big }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "PAYLOAD_TOO_LARGE");
    let error = alice
        .request("broadcast", json!({ "event": "" }))
        .await
        .unwrap_err();
    assert_eq!(error["field"], "event");
    let error = alice
        .request("broadcast", json!({ "event": "e", "userIds": ["nope"] }))
        .await
        .unwrap_err();
    assert_eq!(error["field"], "userIds");
    bob.expect_no_event("broadcast", Duration::from_millis(100))
        .await;
}

async fn a_flooding_client_is_coalesced_to_the_interval(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.messages_per_second = 100_000;
        c.realtime.message_burst = 100_000;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Flood", "Watcher"]).await;
    let (mut flood, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut watcher, _) = Socket::join(&app.base, token(&users[1])).await;
    watcher
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    let started = Instant::now();
    for n in 0..500 {
        flood
            .notify("presence.update", json!({ "state": { "n": n } }))
            .await;
    }
    let mut received = Vec::new();
    let mut last_arrival = started;
    while let Some(event) = watcher
        .event_within("presence", Duration::from_millis(300))
        .await
    {
        last_arrival = Instant::now();
        received.push(event);
    }
    let elapsed = last_arrival - started;
    // A burst of two, then at most one per 50 ms (the last one being the trailing state).
    let bound = (elapsed.as_millis() / 50) as usize + 3;
    assert!(
        received.len() <= bound && !received.is_empty(),
        "{} presence events in {elapsed:?} (bound {bound})",
        received.len()
    );
    assert_eq!(
        received.last().unwrap()["state"]["n"],
        499,
        "the latest state wins"
    );
}

async fn a_client_that_stops_reading_does_not_delay_the_others(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.outbox_max_delay_ms = 200;
        c.realtime.messages_per_second = 100_000;
        c.realtime.message_burst = 100_000;
        c.realtime.max_broadcast_bytes = 60_000;
        c.realtime.max_message_bytes = 65_536;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Sender", "Stalled", "Reader"]).await;
    let (mut sender, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut stalled, _) = Socket::join(&app.base, token(&users[1])).await;
    let (mut reader, _) = Socket::join(&app.base, token(&users[2])).await;
    stalled
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    reader
        .request("presence.sync", json!({ "target": "*" }))
        .await
        .unwrap();
    sender
        .drain_events("userJoined", Duration::from_millis(100))
        .await;
    reader
        .drain_events("userJoined", Duration::from_millis(100))
        .await;
    // From now on the stalled client reads nothing. Fill its pipe with large broadcasts.
    let blob = "y".repeat(50_000);
    let mut worst = Duration::ZERO;
    let mut stalled_dropped = false;
    for round in 0..400 {
        sender
            .notify(
                "broadcast",
                json!({ "event": "blob", "data": blob, "userIds": [user_id(&users[1])] }),
            )
            .await;
        if round % 20 == 0 {
            // The reader still gets presence promptly.
            tokio::time::sleep(Duration::from_millis(55)).await;
            let sent = Instant::now();
            sender
                .notify("presence.update", json!({ "state": { "round": round } }))
                .await;
            let seen = reader.event("presence").await;
            assert_eq!(seen["state"]["round"], round);
            worst = worst.max(sent.elapsed());
        }
        if round % 50 == 49 {
            if let Some(left) = sender
                .event_within("userLeft", Duration::from_millis(1))
                .await
            {
                assert_eq!(left["user"]["id"], user_id(&users[1]));
                stalled_dropped = true;
                break;
            }
        }
    }
    assert!(
        worst < Duration::from_millis(500),
        "the reader waited {worst:?} for presence"
    );
    if !stalled_dropped {
        let left = sender.event("userLeft").await;
        assert_eq!(left["user"]["id"], user_id(&users[1]));
    }
    // The stalled socket was closed as too slow.
    assert_eq!(stalled.closed_with().await, 4000);
}

async fn message_rate_and_size_limits_answer_with_errors(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.messages_per_second = 5;
        c.realtime.message_burst = 10;
        c.realtime.max_message_bytes = 2048;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    let (mut alice, _) = Socket::connect(&app.base, token(&users[0])).await;
    let mut limited = 0;
    for _ in 0..20 {
        if let Err(error) = alice.request("users.get", json!({})).await {
            assert_eq!(error["code"], "RATE_LIMITED");
            limited += 1;
        }
    }
    assert!(limited >= 8, "{limited} of 20 were limited");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let big = json!({ "type": "req", "id": 99, "method": "presence.update", "params": { "state": { "x": "z".repeat(3000) } } });
    alice.send_json(big).await;
    let frame = alice.next_frame().await.unwrap();
    assert_eq!(
        (frame["id"].as_i64(), frame["error"]["code"].as_str()),
        (Some(99), Some("PAYLOAD_TOO_LARGE"))
    );
    alice
        .request("users.get", json!({}))
        .await
        .expect("the socket still works");
    // Far over the limit, the socket is closed.
    alice.send_message(Message::text("z".repeat(20_000))).await;
    assert_eq!(alice.closed_with().await, 1009);
}

async fn rooms_cap_their_connections(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.realtime.max_connections_per_room = 2).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["A", "B", "C"]).await;
    let (a, _) = Socket::join(&app.base, token(&users[0])).await;
    let (b, _) = Socket::join(&app.base, token(&users[1])).await;
    let (mut c, _) = Socket::connect(&app.base, token(&users[2])).await;
    let error = c.request("room.join", json!({})).await.unwrap_err();
    assert_eq!(error["code"], "RATE_LIMITED");
    a.close().await;
    // A place frees up once A's leave is recorded.
    let mut joined = false;
    for _ in 0..50 {
        if c.request("room.join", json!({})).await.is_ok() {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(joined, "C never got in");
    b.close().await;
}
