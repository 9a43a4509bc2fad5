//! What an adversarial campaign found, kept found: duplicated credentials, oversized first
//! frames, one user filling a room, text PostgreSQL cannot store, and answers whose size a
//! client controls.

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::ServerProcess;
use std::time::Duration;

use crate::harness::{both_backends, eventually, Backend, TestAccount, TestApp};
use crate::realtime::{room_with_users, token};
use crate::socket::Socket;

both_backends!(
    two_authorization_headers_are_refused,
    an_oversized_first_frame_is_too_big_not_an_auth_failure,
    one_user_cannot_fill_a_room,
    nul_characters_never_reach_the_database,
    comment_answers_are_bounded_in_bytes,
    store_pages_are_bounded_in_bytes,
    listing_a_huge_thread_keeps_memory_bounded,
    users_and_sessions_come_in_pages,
    a_room_presence_has_a_budget,
    a_socket_that_does_not_read_cannot_pile_up_answers,
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

/// Size of a JSON value as sent.
fn json_bytes(value: &serde_json::Value) -> usize {
    value.to_string().len()
}

/// One user wrote long threads; every answer that shows them stays within the page budget
/// (plus one item), and paging still reaches every comment, in order.
async fn comment_answers_are_bounded_in_bytes(backend: Backend) {
    const BUDGET: usize = 64 * 1024;
    let app = TestApp::start_with(backend, |c| {
        c.limits.max_page_bytes = BUDGET;
        c.comments.max_user_reactions_per_comment = 3;
    })
    .await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Mallory", "A", "B", "C"]).await;
    let (mut socket, _) = Socket::connect(&app.base, token(&users[0])).await;
    // 8 KiB of emoji a comment: one item is at most ~8.5 KiB of JSON.
    let body = "😀".repeat(2048);
    let item = 9 * 1024;
    let mut threads = Vec::new();
    for _ in 0..3 {
        let thread = socket
            .request("comments.createThread", json!({ "body": body }))
            .await
            .unwrap()["thread"]
            .clone();
        threads.push(thread["id"].as_str().unwrap().to_owned());
    }
    // The newest thread is the long one: it fills the first page of a list.
    let long = threads[2].clone();
    let mut written = Vec::new();
    for _ in 0..40 {
        let comment = socket
            .request("comments.reply", json!({ "threadId": long, "body": body }))
            .await
            .unwrap();
        written.push(comment["comment"]["id"].as_str().unwrap().to_owned());
    }
    // The thread, over the socket and REST: its first comments, a count, a cursor.
    let got = socket
        .request("comments.getThread", json!({ "threadId": long }))
        .await
        .unwrap();
    assert!(json_bytes(&got) <= BUDGET + item, "{}", json_bytes(&got));
    let thread = &got["thread"];
    assert_eq!(thread["comment_count"], 41);
    let shown = thread["comments"].as_array().unwrap().len();
    assert!((1..41).contains(&shown), "{shown}");
    let reply = account
        .get(&format!("/rooms/{room_id}/threads/{long}"))
        .await;
    reply.expect(StatusCode::OK);
    assert!(json_bytes(&reply.body) <= BUDGET + 2 * item);
    assert_eq!(
        reply.data()["thread"]["comments_cursor"],
        thread["comments_cursor"]
    );
    // The rest, page by page, from the thread's cursor: every comment once, in order.
    let mut ids: Vec<String> = thread["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = thread["comments_cursor"].clone();
    let mut pages = 0;
    while let Some(after) = cursor.as_str() {
        let page = socket
            .request(
                "comments.listComments",
                json!({ "threadId": long, "after": after }),
            )
            .await
            .unwrap();
        assert!(json_bytes(&page) <= BUDGET + item);
        ids.extend(
            page["comments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        assert_eq!(page["hasMore"], page["cursor"].is_string());
        cursor = page["cursor"].clone();
        pages += 1;
        assert!(pages < 50, "paging does not end");
    }
    assert_eq!(ids.len(), 41);
    assert_eq!(&ids[1..], &written[..]);
    // The same over REST, with a limit.
    let reply = account
        .get(&format!("/rooms/{room_id}/threads/{long}/comments?limit=2"))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["comments"].as_array().unwrap().len(), 2);
    assert_eq!(reply.data()["hasMore"], true);
    // Lists of threads end early, and say where to go on.
    let mut seen = Vec::new();
    let mut offset = json!(0);
    while let Some(at) = offset.as_i64() {
        let list = socket
            .request("comments.list", json!({ "offset": at }))
            .await
            .unwrap();
        assert!(json_bytes(&list) <= BUDGET + 2 * item);
        assert_eq!(list["total"], 3);
        for thread in list["threads"].as_array().unwrap() {
            assert!(!thread["comments"].as_array().unwrap().is_empty());
            seen.push(thread["id"].as_str().unwrap().to_owned());
        }
        offset = list["nextOffset"].clone();
    }
    threads.reverse();
    assert_eq!(seen, threads, "newest first, each once");
    let reply = account.get(&format!("/rooms/{room_id}/threads")).await;
    reply.expect(StatusCode::OK);
    assert!(json_bytes(&reply.body) <= BUDGET + 2 * item);
    let returned = reply.data()["threads"].as_array().unwrap().len();
    assert!(returned < 3);
    assert_eq!(reply.data()["nextOffset"], returned);
    // Reactions on one comment are capped, all emoji together.
    let target = &written[0];
    for (i, user) in users.iter().take(3).enumerate() {
        let (mut s, _) = Socket::connect(&app.base, token(user)).await;
        s.request(
            "comments.react",
            json!({ "commentId": target, "emoji": format!(":e{i}:") }),
        )
        .await
        .unwrap();
    }
    let (mut fourth, _) = Socket::connect(&app.base, token(&users[3])).await;
    let error = fourth
        .request(
            "comments.react",
            json!({ "commentId": target, "emoji": ":e0:" }),
        )
        .await
        .unwrap_err();
    assert_eq!(error["code"], "VALIDATION_ERROR");
    assert_eq!(error["field"], "emoji");
}

/// Registers the `notes` store (one string field) and writes `count` entries of `bytes`
/// characters each, keyed `k00`, `k01`...
async fn write_notes(account: &TestAccount, socket: &mut Socket, count: usize, bytes: usize) {
    account
        .send(
            account
                .request(reqwest::Method::PUT, "/stores/notes")
                .json(&json!({ "schema": { "text": { "type": "string" } } })),
        )
        .await
        .expect(StatusCode::CREATED);
    let text = "x".repeat(bytes);
    for i in 0..count {
        socket
            .request(
                "stores.set",
                json!({ "store": "notes", "key": format!("k{i:02}"), "value": { "text": text } }),
            )
            .await
            .unwrap();
    }
}

/// Large entries: store pages end early by bytes, and paging still returns each once.
async fn store_pages_are_bounded_in_bytes(backend: Backend) {
    const BUDGET: usize = 16 * 1024;
    let app = TestApp::start_with(backend, |c| c.limits.max_page_bytes = BUDGET).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Alice"]).await;
    let (mut socket, _) = Socket::connect(&app.base, token(&users[0])).await;
    write_notes(&account, &mut socket, 30, 3000).await;
    let mut keys = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let page = socket
            .request("stores.getAll", json!({ "store": "notes", "after": after }))
            .await
            .unwrap();
        assert!(json_bytes(&page) <= BUDGET + 4096, "{}", json_bytes(&page));
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() < 30);
        keys.extend(
            entries
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_owned()),
        );
        if page["hasMore"] != true {
            break;
        }
        after = page["cursor"].clone();
    }
    let expected: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected);
    let mut versions = 0;
    let mut since = json!(0);
    let mut after = serde_json::Value::Null;
    loop {
        let params = if after.is_null() {
            json!({ "store": "notes", "since": since })
        } else {
            json!({ "store": "notes", "after": after })
        };
        let page = socket.request("stores.sync", params).await.unwrap();
        assert!(json_bytes(&page) <= BUDGET + 4096);
        versions += page["changes"].as_array().unwrap().len();
        if page["hasMore"] != true {
            break;
        }
        if page["reset"] == true {
            after = page["cursor"].clone();
        } else {
            since = page["cursor"].clone();
        }
    }
    assert_eq!(versions, 30);
    let reply = account.get(&format!("/rooms/{room_id}/stores/notes")).await;
    reply.expect(StatusCode::OK);
    let returned = reply.data()["entries"].as_array().unwrap().len();
    assert!(returned < 30);
    assert_eq!(reply.data()["nextOffset"], returned);
}

/// The campaign's case: one user token wrote a thread of 1,000 comments of 10,000 emoji
/// (the default limits, 40 MB), then 16 clients listed it at once. Each answer must stay
/// near `limits.max_page_bytes` (1 MiB), and the server's memory with them.
async fn listing_a_huge_thread_keeps_memory_bounded(backend: Backend) {
    /// How much the server may grow while answering the 16 lists (it grew by 1.3 GB).
    const MAX_GROWTH: u64 = 160 * 1024 * 1024;
    const ANSWER: usize = 1024 * 1024 + 64 * 1024;
    let server = ServerProcess::start(backend).await;
    let room = server.post("/rooms", json!({ "name": "amplified" })).await;
    let room_id = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for name in ["Mallory", "Reader"] {
        let user = server
            .post("/users", json!({ "name": name, "roomId": room_id }))
            .await;
        tokens.push(user["data"]["token"].as_str().unwrap().to_owned());
    }
    let body = "😀".repeat(10_000);
    let (mut first, _) = Socket::connect(&server.base, &tokens[0]).await;
    let thread = first
        .request("comments.createThread", json!({ "body": body }))
        .await
        .unwrap()["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 999 replies from 9 sockets of the same user, each within its burst of frames.
    let writers = (0..9).map(|_| {
        let (base, token, thread, body) = (
            server.base.clone(),
            tokens[0].clone(),
            thread.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            let (mut socket, _) = Socket::connect(&base, &token).await;
            for _ in 0..111 {
                socket
                    .request(
                        "comments.reply",
                        json!({ "threadId": thread, "body": body }),
                    )
                    .await
                    .unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    drop(first);
    server.reset_peak_memory();
    let (before, _) = server.memory();
    // 16 readers at once: 8 sockets list and fetch the thread, 8 REST clients list.
    let readers = (0..16).map(|i| {
        let (base, token, thread) = (server.base.clone(), tokens[1].clone(), thread.clone());
        let url = format!("{}/threads", server.room_url(&room_id));
        let bearer = server.bearer();
        tokio::spawn(async move {
            let mut sizes = Vec::new();
            if i % 2 == 0 {
                let (mut socket, _) = Socket::connect(&base, &token).await;
                for method in ["comments.list", "comments.getThread"] {
                    let params = if method == "comments.getThread" {
                        json!({ "threadId": thread })
                    } else {
                        json!({})
                    };
                    let answer = socket.request(method, params).await.unwrap();
                    sizes.push(answer.to_string().len());
                }
            } else {
                let text = reqwest::Client::new()
                    .get(&url)
                    .bearer_auth(&bearer)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                sizes.push(text.len());
            }
            sizes
        })
    });
    let mut sizes = Vec::new();
    for reader in readers.collect::<Vec<_>>() {
        sizes.extend(reader.await.unwrap());
    }
    let (after, peak) = server.memory();
    eprintln!(
        "comment amplification: answers up to {} bytes; RSS {} MiB before, {} MiB after, peak {} MiB",
        sizes.iter().max().unwrap(),
        before >> 20,
        after >> 20,
        peak >> 20
    );
    assert!(sizes.iter().all(|&n| n <= ANSWER), "{sizes:?}");
    assert!(
        peak.saturating_sub(before) <= MAX_GROWTH,
        "peak RSS {} MiB from {} MiB",
        peak >> 20,
        before >> 20
    );
}

/// A room's users come in pages on the socket, and a user's sessions in pages over REST.
async fn users_and_sessions_come_in_pages(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.realtime.page_users = 3).await;
    let account = app.account().await;
    let names = ["U0", "U1", "U2", "U3", "U4", "U5", "U6", "U7"];
    let (room_id, users) = room_with_users(&account, &names).await;
    let expected: Vec<String> = users
        .iter()
        .map(|u| crate::realtime::user_id(u).to_owned())
        .collect();
    let (mut socket, joined) = Socket::join(&app.base, token(&users[0])).await;
    let first: Vec<String> = joined["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, expected[..3]);
    let mut cursor = joined["usersCursor"].clone();
    let mut all = first;
    while let Some(after) = cursor.as_str() {
        let page = socket
            .request("users.getAll", json!({ "after": after }))
            .await
            .unwrap();
        assert_eq!(page["hasMore"], page["cursor"].is_string());
        all.extend(
            page["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["cursor"].clone();
    }
    assert_eq!(all, expected, "oldest first, each once");
    let page = socket.request("room.get", json!({})).await.unwrap();
    assert_eq!(page["users"].as_array().unwrap().len(), 3);
    assert_eq!(page["hasMore"], true);
    let error = socket
        .request("users.getAll", json!({ "after": "nonsense" }))
        .await
        .unwrap_err();
    assert_eq!(error["field"], "after");
    // Sessions: five joins and leaves, listed two at a time.
    for _ in 0..4 {
        socket.request("room.leave", json!({})).await.unwrap();
        socket.request("room.join", json!({})).await.unwrap();
    }
    let path = format!("/users/{}?roomId={room_id}&limit=2", expected[0]);
    let reply = account.get(&path).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(reply.data()["sessionsTotal"], 5);
}

/// The presence a joining socket receives is bounded: the room's states together have a
/// budget, and an update that would pass it is refused.
async fn a_room_presence_has_a_budget(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.realtime.max_room_presence_bytes = 10_000).await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["A", "B", "C"]).await;
    let (mut a, _) = Socket::join(&app.base, token(&users[0])).await;
    let (mut b, _) = Socket::join(&app.base, token(&users[1])).await;
    let state = |n: usize| json!({ "state": { "pad": "x".repeat(n) } });
    a.request("presence.update", state(6000)).await.unwrap();
    let error = b.request("presence.update", state(6000)).await.unwrap_err();
    assert_eq!(error["code"], "PAYLOAD_TOO_LARGE", "{error}");
    b.request("presence.update", state(3000)).await.unwrap();
    // A notification (no id) hears of it as an error frame.
    b.notify("presence.update", state(7000)).await;
    let frame = b.next_frame().await.unwrap();
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["error"]["code"], "PAYLOAD_TOO_LARGE");
    let (_, joined) = Socket::join(&app.base, token(&users[2])).await;
    let snapshot = &joined["presence"];
    assert_eq!(snapshot.as_array().unwrap().len(), 2);
    assert!(json_bytes(snapshot) <= 10_000 + 1024);
    // Room freed by a smaller state is room for others.
    a.request("presence.update", state(10)).await.unwrap();
    b.request("presence.update", state(6000)).await.unwrap();
}

/// A client that asks for large answers and never reads them is closed as too slow once
/// its queue holds `realtime.outbox_bytes`, instead of making the server hold them all.
async fn a_socket_that_does_not_read_cannot_pile_up_answers(backend: Backend) {
    const PAGE: usize = 64 * 1024;
    let app = TestApp::start_with(backend, |c| {
        c.limits.max_page_bytes = PAGE;
        c.realtime.outbox_bytes = 2 * PAGE;
        c.realtime.outbox_max_delay_ms = 60_000;
        c.realtime.messages_per_second = 100_000;
        c.realtime.message_burst = 100_000;
        // Far beyond the test's wait: only the byte cap can end the connection in time.
        c.realtime.write_timeout_ms = 60_000;
    })
    .await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Greedy"]).await;
    let (mut socket, _) = Socket::join(&app.base, token(&users[0])).await;
    write_notes(&account, &mut socket, 10, 8000).await;
    // Ask for ~64 KiB answers without reading any: loopback buffers hold a few MiB, then
    // the queue fills.
    let ask = json!({ "type": "req", "id": 1, "method": "stores.getAll", "params": { "store": "notes" } })
        .to_string();
    for _ in 0..2000 {
        if !socket.try_send_text(ask.clone()).await {
            break;
        }
    }
    // Without reading a byte, the client is given up on: the server stops serving it and its
    // user leaves, long before the write timeout would have closed it.
    let user_path = format!(
        "/users/{}?roomId={room_id}",
        crate::realtime::user_id(&users[0])
    );
    let gone = eventually(Duration::from_secs(20), || {
        let (account, path) = (account.clone(), user_path.clone());
        async move { account.get(&path).await.data()["user"]["status"] == "offline" }
    })
    .await;
    assert!(gone, "the server still serves a client that reads nothing");
    // What it had produced arrives, then the close.
    assert_eq!(socket.closed_with().await, 4000);
    let reason = socket
        .closed
        .as_ref()
        .map(|c| c.1.clone())
        .unwrap_or_default();
    assert!(reason.contains("too much"), "{reason}");
    let answers = socket.drain_pending().len();
    assert!(answers < 1000, "{answers} answers were produced and queued");
}
