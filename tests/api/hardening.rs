//! What an adversarial campaign found, kept found: duplicated credentials, oversized first
//! frames, one user filling a room, text PostgreSQL cannot store, and answers whose size a
//! client controls.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{both_backends, Backend, TestApp};
use crate::realtime::{room_with_users, token};
use crate::socket::Socket;

both_backends!(
    two_authorization_headers_are_refused,
    an_oversized_first_frame_is_too_big_not_an_auth_failure,
    one_user_cannot_fill_a_room,
    nul_characters_never_reach_the_database,
);

async fn two_authorization_headers_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let alice = app.account().await;
    let bob = app.account().await;
    let url = alice.url("/rooms");
    let garbage = "Bearer garbage".to_owned();
    let alices = format!("Bearer {}", alice.token);
    let bobs = format!("Bearer {}", bob.token);
    for (first, second) in [
        (&alices, &bobs),
        (&bobs, &alices),
        (&alices, &garbage),
        (&garbage, &alices),
        (&alices, &alices),
    ] {
        let request = app
            .client
            .get(&url)
            .header("authorization", first)
            .header("authorization", second);
        let reply = alice.send(request).await;
        reply.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // One header still works.
    alice.get("/rooms").await.expect(StatusCode::OK);
}

async fn an_oversized_first_frame_is_too_big_not_an_auth_failure(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    let limit = app.config.realtime.max_message_bytes;
    // Over the hard cap (4x): the library refuses to read it.
    let mut socket = Socket::open(&app.base).await;
    let padding = "x".repeat(limit * 4 + 1024);
    socket
        .send_json(json!({ "type": "auth", "token": token(&users[0]), "padding": padding }))
        .await;
    let mut frames = Vec::new();
    while let Some(frame) = socket.next_frame().await {
        frames.push(frame);
    }
    assert!(
        frames.iter().all(|f| f["type"] != "authFailed"),
        "{frames:?}"
    );
    assert_eq!(socket.closed.as_ref().map(|c| c.0), Some(1009));
    // Over the limit, under the hard cap: answered as too large, not as a bad token.
    let mut socket = Socket::open(&app.base).await;
    let padding = "x".repeat(limit + 1);
    socket
        .send_json(json!({ "type": "auth", "token": token(&users[0]), "padding": padding }))
        .await;
    let frame = socket.next_frame().await.expect("an error frame");
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(socket.closed_with().await, 1009);
    // The same token in a normal frame is fine.
    let (socket, _) = Socket::connect(&app.base, token(&users[0])).await;
    socket.close().await;
}

async fn one_user_cannot_fill_a_room(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.realtime.max_connections_per_room = 20;
        c.realtime.max_connections_per_user = 10;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Mallory", "Alice"]).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(Socket::join(&app.base, token(&users[0])).await.0);
    }
    for _ in 0..10 {
        let mut extra = Socket::open(&app.base).await;
        let answer = extra.auth(token(&users[0])).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["error"]["code"], "RATE_LIMITED");
        assert_eq!(extra.closed_with().await, 1013);
    }
    // Everyone else still gets in.
    let (alice, joined) = Socket::join(&app.base, token(&users[1])).await;
    assert_eq!(joined["users"].as_array().unwrap().len(), 2);
    // A place freed is a place taken again.
    held.pop().unwrap().close().await;
    let mut again = None;
    for _ in 0..50 {
        let mut socket = Socket::open(&app.base).await;
        if socket.auth(token(&users[0])).await["type"] == "welcome" {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a closed socket's place was not freed");
    alice.close().await;
}

/// Every way a NUL reached PostgreSQL (a 500 there, a 404 or 400 on SQLite): ids in paths
/// are not found, parameters and bodies are `VALIDATION_ERROR`, on both backends.
async fn nul_characters_never_reach_the_database(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    for path in [
        "/rooms/custom/%00".to_owned(),
        format!("/users/custom/%00?roomId={room_id}"),
        format!("/users/%00?roomId={room_id}"),
        "/webhooks/%00".to_owned(),
        "/webhooks/%00/deliveries".to_owned(),
        format!("/rooms/{room_id}/stores/%00"),
        format!("/rooms/{room_id}/stores/tasks/%00"),
        format!("/rooms/{room_id}/threads/thr_%00"),
        "/stores/%00".to_owned(),
    ] {
        account
            .get(&path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    account
        .delete("/webhooks/%00")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    for path in [
        "/rooms?search=%00".to_owned(),
        format!("/users?roomId={room_id}&search=a%00b"),
        "/webhooks?search=%00".to_owned(),
        format!("/rooms/{room_id}?search=%00"),
    ] {
        let reply = account.get(&path).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], "search", "{path}");
    }
    let reply = account
        .post(
            "/webhooks",
            json!({ "url": "https://example.com/\u{0}hook", "events": ["user.created"] }),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "url");
    let reply = account
        .post("/rooms", json!({ "name": "ok", "customId": "a\u{0}" }))
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "customId");
    // Deep inside a store value, over REST and over the socket.
    account
        .send(
            account
                .request(reqwest::Method::PUT, "/stores/notes")
                .json(&json!({ "schema": { "text": { "type": "string" } } })),
        )
        .await
        .expect(StatusCode::CREATED);
    let reply = account
        .send(
            account
                .request(
                    reqwest::Method::PUT,
                    &format!("/rooms/{room_id}/stores/notes/n1"),
                )
                .json(&json!({ "value": { "text": "a\u{0}b" } })),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "value.text");
    let (mut socket, _) = Socket::connect(&app.base, token(&users[0])).await;
    for (method, params, field) in [
        (
            "stores.getAll",
            json!({ "store": "notes", "after": "\u{0}" }),
            "after",
        ),
        (
            "stores.set",
            json!({ "store": "notes", "key": "k", "value": { "text": "\u{0}" } }),
            "value.text",
        ),
        (
            "stores.get",
            json!({ "store": "notes", "key": "\u{0}" }),
            "key",
        ),
        (
            "comments.createThread",
            json!({ "body": "hi", "metadata": { "\u{0}": 1 } }),
            "metadata",
        ),
        ("users.get", json!({ "userId": "\u{0}" }), "userId"),
    ] {
        let error = socket.request(method, params).await.unwrap_err();
        assert_eq!(error["code"], "VALIDATION_ERROR", "{method}: {error}");
        assert_eq!(error["field"], field, "{method}: {error}");
    }
    // Nothing was stored, and the socket still works.
    let entries = socket
        .request("stores.getAll", json!({ "store": "notes" }))
        .await
        .unwrap();
    assert_eq!(entries["entries"], json!([]));
}
