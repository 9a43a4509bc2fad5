//! The socket: authentication, joining and leaving, dead peers, REST changes seen live, the
//! event bus, reconcile, crash recovery and shutdown.

use std::time::Duration;

use collabkit::domain::EventKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{both_backends, eventually, Backend, TestAccount, TestApp};
use crate::socket::Socket;

both_backends!(
    a_first_frame_that_is_not_auth_gets_auth_failed_then_4401,
    a_valid_token_is_welcomed_but_not_yet_online,
    join_and_leave_change_status_sessions_and_counters,
    a_user_is_online_while_any_of_their_sockets_is,
    a_dead_peer_is_counted_offline_after_the_heartbeat_timeout,
    rest_user_changes_reach_sockets_and_deletions_close_them,
    the_event_bus_carries_room_and_user_events,
    reconcile_counts_real_connections,
    users_left_online_by_a_crash_are_offline_after_restart,
    shutdown_closes_sockets_with_going_away,
    socket_reads_and_request_errors,
    deleting_an_online_user_records_their_leave,
);

/// A room with `names.len()` users; returns the room ID and each user's `data` (user, token).
pub async fn room_with_users(account: &TestAccount, names: &[&str]) -> (String, Vec<Value>) {
    let room = account.room("live room").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let mut users = Vec::new();
    for name in names {
        users.push(account.user(&room_id, name).await);
    }
    (room_id, users)
}

pub fn token(user: &Value) -> &str {
    user["token"].as_str().unwrap()
}

pub fn user_id(user: &Value) -> &str {
    user["user"]["id"].as_str().unwrap()
}

/// A first frame that is not an auth frame, or none in time. Bad tokens are the matrix of
/// `jwt_attacks`.
async fn a_first_frame_that_is_not_auth_gets_auth_failed_then_4401(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.realtime.auth_timeout_ms = 300).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    let good = token(&users[0]);

    // No auth frame within the timeout, a request before auth, a binary frame.
    let mut socket = Socket::open(&app.base).await;
    let answer = socket
        .next_frame()
        .await
        .expect("authFailed before the close");
    assert_eq!(answer["type"], "authFailed");
    assert_eq!(socket.closed_with().await, 4401);
    let mut socket = Socket::open(&app.base).await;
    socket
        .send_json(json!({ "type": "req", "id": 1, "method": "room.join" }))
        .await;
    assert_eq!(socket.next_frame().await.unwrap()["type"], "authFailed");
    assert_eq!(socket.closed_with().await, 4401);
    let mut socket = Socket::open(&app.base).await;
    socket
        .send_message(Message::binary(good.as_bytes().to_vec()))
        .await;
    assert_eq!(socket.next_frame().await.unwrap()["type"], "authFailed");
    assert_eq!(socket.closed_with().await, 4401);
    // The good token still works.
    let (socket, _) = Socket::connect(&app.base, good).await;
    socket.close().await;
}

async fn a_valid_token_is_welcomed_but_not_yet_online(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    let (socket, welcome) = Socket::connect(&app.base, token(&users[0])).await;
    assert_eq!(welcome["protocol"], 1);
    assert_eq!(welcome["user"]["id"], user_id(&users[0]));
    assert!(
        welcome["user"].get("token").is_none(),
        "tokens never travel on the socket"
    );
    assert_eq!(welcome["user"]["following"], json!([]));
    assert_eq!(welcome["user"]["followers"], json!([]));
    assert_eq!(welcome["room"]["id"], room_id.as_str());
    assert!(welcome["connectionId"].is_string());
    assert_eq!(welcome["limits"]["maxMessageBytes"], 65536);
    let reply = account
        .get(&format!("/users/{}?roomId={room_id}", user_id(&users[0])))
        .await;
    assert_eq!(reply.data()["user"]["status"], "offline");
    socket.close().await;
}

async fn user_status(account: &TestAccount, room_id: &str, user: &Value) -> Value {
    let reply = account
        .get(&format!("/users/{}?roomId={room_id}", user_id(user)))
        .await;
    reply.expect(StatusCode::OK);
    reply.data().clone()
}

async fn active_participants(account: &TestAccount, room_id: &str) -> i64 {
    account.get(&format!("/rooms/{room_id}")).await.data()["room"]["active_participants"]
        .as_i64()
        .unwrap()
}

async fn join_and_leave_change_status_sessions_and_counters(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob", "Carol"]).await;
    let (mut alice, joined) = Socket::join(&app.base, token(&users[0])).await;
    assert_eq!(joined["user"]["status"], "online");
    assert!(joined["user"]["joined_at"].is_string());
    assert_eq!(joined["room"]["active_participants"], 1);
    assert_eq!(
        joined["users"].as_array().unwrap().len(),
        3,
        "every user of the room"
    );
    assert_eq!(joined["presence"], json!([]));
    let data = user_status(&account, &room_id, &users[0]).await;
    assert_eq!(data["user"]["status"], "online");
    let sessions = data["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0]["id"].as_str().unwrap().starts_with("sess_"));
    assert_eq!(sessions[0]["left_at"], Value::Null);

    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    let seen = alice.event("userJoined").await;
    assert_eq!(seen["user"]["id"], user_id(&users[1]));
    assert_eq!(seen["user"]["status"], "online");
    assert!(seen["user"].get("token").is_none());
    let (mut carol, _) = Socket::join(&app.base, token(&users[2])).await;
    assert_eq!(
        alice.event("userJoined").await["user"]["id"],
        user_id(&users[2])
    );
    assert_eq!(
        bob.event("userJoined").await["user"]["id"],
        user_id(&users[2])
    );
    assert_eq!(active_participants(&account, &room_id).await, 3);
    // Nobody hears of their own join.
    carol
        .expect_no_event("userJoined", Duration::from_millis(100))
        .await;

    // Bob leaves with room.leave; Carol closes her socket.
    bob.request("room.leave", json!({})).await.unwrap();
    assert_eq!(
        alice.event("userLeft").await["user"]["id"],
        user_id(&users[1])
    );
    assert_eq!(
        carol.event("userLeft").await["user"]["id"],
        user_id(&users[1])
    );
    let data = user_status(&account, &room_id, &users[1]).await;
    assert_eq!(data["user"]["status"], "offline");
    assert!(data["user"]["left_at"].is_string());
    assert!(data["sessions"][0]["left_at"].is_string());
    carol.close().await;
    let left = alice.event("userLeft").await;
    assert_eq!(left["user"]["id"], user_id(&users[2]));
    assert_eq!(left["user"]["status"], "offline");
    assert_eq!(active_participants(&account, &room_id).await, 1);

    // A second online period makes a second session, newest first.
    let (bob_again, _) = Socket::join(&app.base, token(&users[1])).await;
    alice.event("userJoined").await;
    let data = user_status(&account, &room_id, &users[1]).await;
    let sessions = data["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["left_at"], Value::Null);
    assert!(sessions[1]["left_at"].is_string());
    bob_again.close().await;
    alice.event("userLeft").await;
    bob.close().await;

    // The last one out closes the room's session; its duration counts it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alice.close().await;
    let counted = eventually(Duration::from_secs(5), || async {
        active_participants(&account, &room_id).await == 0
    })
    .await;
    assert!(counted);
    let room = account.get(&format!("/rooms/{room_id}")).await.data()["room"].clone();
    assert!(room["duration_seconds"].as_i64().unwrap() >= 1, "{room}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = account.get(&format!("/rooms/{room_id}")).await.data()["room"].clone();
    assert_eq!(
        later["duration_seconds"], room["duration_seconds"],
        "no session runs now"
    );
}

async fn a_user_is_online_while_any_of_their_sockets_is(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (tab_one, _) = Socket::join(&app.base, token(&users[1])).await;
    alice.event("userJoined").await;
    let (tab_two, second) = Socket::join(&app.base, token(&users[1])).await;
    assert_eq!(
        second["room"]["active_participants"], 2,
        "one user, two tabs"
    );
    alice
        .expect_no_event("userJoined", Duration::from_millis(200))
        .await;
    tab_one.close().await;
    alice
        .expect_no_event("userLeft", Duration::from_millis(300))
        .await;
    assert_eq!(
        user_status(&account, &room_id, &users[1]).await["user"]["status"],
        "online"
    );
    tab_two.close().await;
    assert_eq!(
        alice.event("userLeft").await["user"]["id"],
        user_id(&users[1])
    );
    let data = user_status(&account, &room_id, &users[1]).await;
    assert_eq!(
        data["sessions"].as_array().unwrap().len(),
        1,
        "one online period"
    );
    alice.close().await;
}

async fn a_dead_peer_is_counted_offline_after_the_heartbeat_timeout(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.heartbeat_interval_ms = 100;
        c.realtime.heartbeat_timeout_ms = 400;
    })
    .await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Silent", "Killed"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    // A peer that stops answering (not even pings): it is never read from again.
    let (silent, _) = Socket::join(&app.base, token(&users[1])).await;
    alice.event("userJoined").await;
    let started = std::time::Instant::now();
    // Alice keeps reading, so her pongs go out; the silent one's do not.
    let left = alice.event("userLeft").await;
    assert_eq!(left["user"]["id"], user_id(&users[1]));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "declared dead too early: {waited:?}"
    );
    assert_eq!(
        user_status(&account, &room_id, &users[1]).await["user"]["status"],
        "offline"
    );
    drop(silent);

    // A socket killed without a close frame (TCP closed) leaves at once.
    let (killed, _) = Socket::join(&app.base, token(&users[2])).await;
    alice.event("userJoined").await;
    killed.kill();
    assert_eq!(
        alice.event("userLeft").await["user"]["id"],
        user_id(&users[2])
    );
    assert_eq!(active_participants(&account, &room_id).await, 1);
    alice.close().await;
}

async fn rest_user_changes_reach_sockets_and_deletions_close_them(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::join(&app.base, token(&users[1])).await;
    alice.event("userJoined").await;

    let created = account.user(&room_id, "Carol").await;
    let seen = alice.event("userCreated").await;
    assert_eq!(seen["user"]["id"], user_id(&created));
    assert_eq!(seen["user"]["status"], "offline");
    assert!(seen["user"].get("token").is_none());
    assert_eq!(
        bob.event("userCreated").await["user"]["id"],
        user_id(&created)
    );

    account
        .patch(
            &format!("/users/{}?roomId={room_id}", user_id(&created)),
            json!({ "name": "Caroline" }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(alice.event("userUpdated").await["user"]["name"], "Caroline");

    // A socket of Bob's that never joined (writes need no join) is closed too.
    let (mut bob_unjoined, _) = Socket::connect(&app.base, token(&users[1])).await;
    // Deleting Bob: everyone hears it, and Bob's socket is closed.
    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[1])))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        alice.event("userDeleted").await["user"]["id"],
        user_id(&users[1])
    );
    assert_eq!(bob.closed_with().await, 4404);
    assert_eq!(
        bob_unjoined.event("userDeleted").await["user"]["id"],
        user_id(&users[1])
    );
    assert_eq!(bob_unjoined.closed_with().await, 4404);
    let counted = eventually(Duration::from_secs(5), || async {
        active_participants(&account, &room_id).await == 1
    })
    .await;
    assert!(counted, "the deleted user is no longer counted");

    // Another room's changes do not reach this room.
    let elsewhere = account.room("elsewhere").await;
    account
        .user(elsewhere["id"].as_str().unwrap(), "Stranger")
        .await;
    alice
        .expect_no_event("userCreated", Duration::from_millis(200))
        .await;

    // Deleting the room closes everyone, joined or not.
    let (mut carol_unjoined, _) = Socket::connect(&app.base, token(&created)).await;
    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(alice.event("roomDeleted").await["roomId"], room_id.as_str());
    assert_eq!(alice.closed_with().await, 4404);
    assert_eq!(
        carol_unjoined.event("roomDeleted").await["roomId"],
        room_id.as_str()
    );
    assert_eq!(carol_unjoined.closed_with().await, 4404);
}

async fn next_bus_event(
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<collabkit::domain::Event>>,
) -> std::sync::Arc<collabkit::domain::Event> {
    tokio::time::timeout(crate::socket::WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("the bus is open")
}

async fn the_event_bus_carries_room_and_user_events(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut events = app.state.bus().subscribe();
    let account = app.account().await;
    let room = account.room("bus").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let alice = account.user(&room_id, "Alice").await;
    let event = next_bus_event(&mut events).await;
    assert_eq!(event.kind, EventKind::UserCreated);
    assert_eq!(event.room.id.to_string(), room_id);
    assert_eq!(event.room.total_users_created, 1);
    assert_eq!(event.user.as_ref().unwrap().id.to_string(), user_id(&alice));
    let bob = account.user(&room_id, "Bob").await;
    assert_eq!(
        next_bus_event(&mut events).await.kind,
        EventKind::UserCreated
    );

    let (socket_a, _) = Socket::join(&app.base, token(&alice)).await;
    let first = next_bus_event(&mut events).await;
    assert_eq!(
        first.kind,
        EventKind::SessionStarted,
        "the first join starts the session"
    );
    assert_eq!(first.room.active_participants, 1);
    let joined = next_bus_event(&mut events).await;
    assert_eq!(joined.kind, EventKind::ParticipantJoined);
    assert_eq!(
        joined.user.as_ref().unwrap().id.to_string(),
        user_id(&alice)
    );
    let (socket_b, _) = Socket::join(&app.base, token(&bob)).await;
    let joined = next_bus_event(&mut events).await;
    assert_eq!(
        joined.kind,
        EventKind::ParticipantJoined,
        "no second session.started"
    );
    assert_eq!(joined.room.active_participants, 2);

    account
        .patch(
            &format!("/users/{}?roomId={room_id}", user_id(&bob)),
            json!({ "name": "Robert" }),
        )
        .await
        .expect(StatusCode::OK);
    let updated = next_bus_event(&mut events).await;
    assert_eq!(updated.kind, EventKind::UserUpdated);
    assert_eq!(updated.user.as_ref().unwrap().name, "Robert");

    socket_b.close().await;
    let left = next_bus_event(&mut events).await;
    assert_eq!(left.kind, EventKind::ParticipantLeft);
    assert_eq!(left.user.as_ref().unwrap().id.to_string(), user_id(&bob));
    socket_a.close().await;
    let left = next_bus_event(&mut events).await;
    assert_eq!(left.kind, EventKind::ParticipantLeft);
    let closed = next_bus_event(&mut events).await;
    assert_eq!(
        closed.kind,
        EventKind::SessionClosed,
        "the last leave closes the session"
    );
    assert_eq!(closed.room.active_participants, 0);
    let mut names: Vec<&str> = closed.users.iter().map(|u| u.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Alice", "Robert"], "the users of the session");

    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&bob)))
        .await
        .expect(StatusCode::OK);
    let deleted = next_bus_event(&mut events).await;
    assert_eq!(deleted.kind, EventKind::UserDeleted);
    assert_eq!(deleted.user.as_ref().unwrap().id.to_string(), user_id(&bob));
    assert!(deleted.id.starts_with("evt_"));
}

async fn reconcile_counts_real_connections(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob", "Ghost"]).await;
    let (alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (bob, _) = Socket::join(&app.base, token(&users[1])).await;
    // A socket recorded by a node that died (it never heartbeats): the counter drifts to 3.
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    let scope = collabkit::store::RoomScope {
        account_id: account.id.parse().unwrap(),
        room_id: room_id.parse().unwrap(),
    };
    store
        .join_room(&collabkit::store::NewConnection {
            id: collabkit::domain::ConnectionId::new(),
            node_id: collabkit::domain::NodeId::new("a-dead-node"),
            scope,
            user_id: user_id(&users[2]).parse().unwrap(),
            opened_at: collabkit::domain::Timestamp::now(),
        })
        .await
        .unwrap();
    assert_eq!(active_participants(&account, &room_id).await, 3);
    let reply = account
        .post(&format!("/rooms/{room_id}/reconcile"), json!({}))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["previous_active_participants"], 3);
    assert_eq!(reply.data()["reconciled_active_participants"], 2);
    assert_eq!(
        user_status(&account, &room_id, &users[2]).await["user"]["status"],
        "offline"
    );
    // Nothing wrong: equal numbers.
    let reply = account
        .post(&format!("/rooms/{room_id}/reconcile"), json!({}))
        .await;
    assert_eq!(reply.data()["previous_active_participants"], 2);
    assert_eq!(reply.data()["reconciled_active_participants"], 2);
    alice.close().await;
    bob.close().await;
}

async fn users_left_online_by_a_crash_are_offline_after_restart(backend: Backend) {
    // A node that crashed left a socket recorded, its user online, the room's session open.
    let app = TestApp::start_with(backend, |c| c.realtime.node_id = "node-a".to_owned()).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    let (socket, _) = Socket::join(&app.base, token(&users[0])).await;
    assert_eq!(active_participants(&account, &room_id).await, 1);
    // Simulate the crash: the server stops without recording any leave. (A real `kill -9` of
    // the binary is in cli.rs.)
    let config = app.config.clone();
    std::mem::forget(socket);
    let db = app.abandon().await;
    let app = TestApp::start_on(db, config).await;
    let account = crate::harness::TestAccount::rebase(&account, &app);
    let data = user_status(&account, &room_id, &users[0]).await;
    assert_eq!(data["user"]["status"], "offline");
    assert!(
        data["sessions"][0]["left_at"].is_string(),
        "the session was closed"
    );
    assert_eq!(active_participants(&account, &room_id).await, 0);
}

async fn shutdown_closes_sockets_with_going_away(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut bob, _) = Socket::connect(&app.base, token(&users[1])).await;
    let config = app.config.clone();
    let db = app.stop().await;
    assert_eq!(alice.closed_with().await, 1001);
    assert_eq!(bob.closed_with().await, 1001);
    // Their leaves were recorded before the server exited.
    let app = TestApp::start_on(db, config).await;
    let account = crate::harness::TestAccount::rebase(&account, &app);
    assert_eq!(
        user_status(&account, &room_id, &users[0]).await["user"]["status"],
        "offline"
    );
    assert_eq!(active_participants(&account, &room_id).await, 0);
}

async fn socket_reads_and_request_errors(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    let (mut alice, _) = Socket::connect(&app.base, token(&users[0])).await;
    // Reads work before joining.
    let room = alice.request("room.get", json!({})).await.unwrap();
    assert_eq!(room["room"]["id"], room_id.as_str());
    assert_eq!(room["users"].as_array().unwrap().len(), 2);
    let same = alice
        .request("room.get", json!({ "roomId": room_id }))
        .await
        .unwrap();
    assert_eq!(same["room"]["id"], room_id.as_str());
    let other = account.room("other").await;
    let error = alice
        .request("room.get", json!({ "roomId": other["id"] }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "FORBIDDEN");
    let me = alice.request("users.get", json!({})).await.unwrap();
    assert_eq!(me["user"]["id"], user_id(&users[0]));
    let bob = alice
        .request("users.get", json!({ "userId": user_id(&users[1]) }))
        .await
        .unwrap();
    assert_eq!(bob["user"]["name"], "Bob");
    let all = alice.request("users.getAll", json!({})).await.unwrap();
    assert_eq!(all["users"].as_array().unwrap().len(), 2);
    let missing = alice
        .request("users.get", json!({ "userId": uuid::Uuid::new_v4() }))
        .await;
    assert_eq!(missing.unwrap_err()["code"], "NOT_FOUND");

    // Errors carry the documented codes.
    let error = alice
        .request("presence.update", json!({ "state": {} }))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "BAD_REQUEST", "not joined yet");
    let error = alice
        .request("no.such.method", json!({}))
        .await
        .unwrap_err();
    assert_eq!(error["code"], "BAD_REQUEST");
    let error = alice
        .request("users.get", json!({ "userId": 5 }))
        .await
        .unwrap_err();
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("VALIDATION_ERROR"), Some("userId"))
    );
    let error = alice
        .request("users.get", json!({ "userID": "x" }))
        .await
        .unwrap_err();
    assert_eq!(error["field"], "userID");
    alice.send_text("{not json".to_owned()).await;
    let frame = alice.next_frame().await.unwrap();
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["error"]["code"], "BAD_REQUEST");
    alice.send_json(json!({ "type": "ping" })).await;
    assert_eq!(alice.next_frame().await.unwrap()["type"], "pong");
    // A request ID may be a string, echoed as given.
    alice
        .send_json(json!({ "type": "req", "id": "abc", "method": "users.get" }))
        .await;
    let frame = alice.next_frame().await.unwrap();
    assert_eq!(
        (frame["type"].as_str(), frame["id"].as_str()),
        (Some("res"), Some("abc"))
    );
    // After all that, the socket still works and joins.
    alice.request("room.join", json!({})).await.unwrap();
    let again = alice.request("room.join", json!({})).await.unwrap_err();
    assert_eq!(again["code"], "BAD_REQUEST", "joining twice");
    alice.close().await;
}

async fn deleting_an_online_user_records_their_leave(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    let (_alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let mut events = app.state.bus().subscribe();
    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[0])))
        .await
        .expect(StatusCode::OK);
    let left = next_bus_event(&mut events).await;
    assert_eq!(
        left.kind,
        EventKind::ParticipantLeft,
        "joins and leaves stay paired"
    );
    assert_eq!(
        left.user.as_ref().unwrap().id.to_string(),
        user_id(&users[0])
    );
    assert_eq!(
        next_bus_event(&mut events).await.kind,
        EventKind::UserDeleted
    );
    let closed = next_bus_event(&mut events).await;
    assert_eq!(closed.kind, EventKind::SessionClosed);
    assert_eq!(
        closed.users.len(),
        1,
        "the deleted user was one of the session's users"
    );
    assert_eq!(closed.room.active_participants, 0);
}
