//! Socket fuzzing: every method of `docs/protocol.md` with hostile params (each field, and
//! the params as a whole), and hostile frames (not JSON, deep nesting, binary, unknown types,
//! odd and huge IDs, oversized). Every request gets a `res` with `ok: true`, or `ok: false`
//! and a documented code (never `INTERNAL_ERROR`); a frame that is not a request gets an
//! `error` frame with a documented code, or nothing; the socket stays open (but for the
//! documented 1009 of a frame over the hard cap) and answers `ping` afterwards.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{both_backends, Backend, TestApp};
use crate::hostile::{self, FieldPath, Hostile};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(
    every_method_answers_hostile_params,
    hostile_frames_get_documented_answers,
);

/// Codes a fuzzed request may be answered with (`docs/protocol.md`). `RATE_LIMITED` is not
/// among them: the tests raise the socket's rate so that every frame is served.
const CODES: [&str; 6] = [
    "BAD_REQUEST",
    "VALIDATION_ERROR",
    "NOT_FOUND",
    "FORBIDDEN",
    "CONFLICT",
    "PAYLOAD_TOO_LARGE",
];

/// A socket that may send as fast as the test can.
fn unthrottled(config: &mut collabkit::config::Config) {
    config.realtime.messages_per_second = 1_000_000;
    config.realtime.message_burst = 1_000_000;
}

/// The objects the params name.
struct Fixture {
    room: String,
    alice: String,
    alice_token: String,
    bob: String,
    thread: String,
    comment: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let account = app.account().await;
    let (room, users) = room_with_users(&account, &["Alice", "Bob"]).await;
    account
        .send(
            account
                .request(reqwest::Method::PUT, "/stores/notes")
                .json(&json!({ "schema": { "text": { "type": "string" } } })),
        )
        .await
        .expect(reqwest::StatusCode::CREATED);
    let (mut socket, _) = Socket::connect(&app.base, token(&users[0])).await;
    let thread = socket
        .request("comments.createThread", json!({ "body": "a thread" }))
        .await
        .unwrap()["thread"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = socket
        .request(
            "comments.reply",
            json!({ "threadId": thread, "body": "a reply" }),
        )
        .await
        .unwrap()["comment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    socket.close().await;
    Fixture {
        room,
        alice: user_id(&users[0]).to_owned(),
        alice_token: token(&users[0]).to_owned(),
        bob: user_id(&users[1]).to_owned(),
        thread,
        comment,
    }
}

/// Every method, with valid params to start from and the fields hostile values go into.
fn methods(f: &Fixture) -> Vec<(&'static str, Value, Vec<FieldPath>)> {
    let notes = json!({ "text": { "type": "string" } });
    vec![
        ("room.join", json!({}), vec![]),
        ("room.leave", json!({}), vec![]),
        (
            "room.get",
            json!({ "roomId": f.room }),
            vec![&["roomId"], &["after"]],
        ),
        ("users.get", json!({ "userId": f.alice }), vec![&["userId"]]),
        ("users.getAll", json!({}), vec![&["after"]]),
        (
            "users.follow",
            json!({ "userId": f.bob }),
            vec![&["userId"]],
        ),
        (
            "users.unfollow",
            json!({ "userId": f.bob }),
            vec![&["userId"]],
        ),
        (
            "presence.update",
            json!({ "state": { "x": 1 } }),
            vec![&["state"], &["state", "x"]],
        ),
        ("presence.sync", json!({ "target": "*" }), vec![&["target"]]),
        ("presence.unsync", json!({}), vec![]),
        (
            "broadcast",
            json!({ "event": "wave", "data": { "hi": true }, "userIds": [f.bob] }),
            vec![&["event"], &["data"], &["userIds"], &["userIds", "0"]],
        ),
        (
            "stores.declare",
            json!({ "schemas": { "notes": notes } }),
            vec![
                &["schemas"],
                &["schemas", "notes"],
                &["schemas", "notes", "text"],
                &["schemas", "notes", "text", "type"],
                &["schemas", "fresh"],
            ],
        ),
        (
            "stores.set",
            json!({ "store": "notes", "key": "fuzz", "value": { "text": "t" } }),
            vec![&["store"], &["key"], &["value"], &["value", "text"]],
        ),
        (
            "stores.update",
            json!({ "store": "notes", "key": "fuzz", "value": { "text": "u" } }),
            vec![&["store"], &["key"], &["value"], &["value", "text"]],
        ),
        (
            "stores.delete",
            json!({ "store": "notes", "key": "fuzz" }),
            vec![&["store"], &["key"]],
        ),
        (
            "stores.get",
            json!({ "store": "notes", "key": "fuzz" }),
            vec![&["store"], &["key"]],
        ),
        (
            "stores.getAll",
            json!({ "store": "notes" }),
            vec![&["store"], &["after"]],
        ),
        (
            "stores.sync",
            json!({ "store": "notes", "since": 0 }),
            vec![&["store"], &["since"], &["after"]],
        ),
        (
            "comments.createThread",
            json!({ "body": "hi", "metadata": { "x": 1 } }),
            vec![&["body"], &["metadata"], &["metadata", "x"]],
        ),
        (
            "comments.reply",
            json!({ "threadId": f.thread, "body": "hi" }),
            vec![&["threadId"], &["body"], &["metadata"]],
        ),
        (
            "comments.edit",
            json!({ "commentId": f.comment, "body": "edited" }),
            vec![&["commentId"], &["body"], &["metadata"]],
        ),
        (
            "comments.delete",
            json!({ "commentId": f.comment }),
            vec![&["commentId"]],
        ),
        (
            "comments.resolve",
            json!({ "threadId": f.thread }),
            vec![&["threadId"]],
        ),
        (
            "comments.reopen",
            json!({ "threadId": f.thread }),
            vec![&["threadId"]],
        ),
        (
            "comments.react",
            json!({ "commentId": f.comment, "emoji": ":tada:" }),
            vec![&["commentId"], &["emoji"]],
        ),
        (
            "comments.unreact",
            json!({ "commentId": f.comment, "emoji": ":tada:" }),
            vec![&["commentId"], &["emoji"]],
        ),
        (
            "comments.list",
            json!({ "resolved": false, "limit": 10, "offset": 0 }),
            vec![&["resolved"], &["limit"], &["offset"]],
        ),
        (
            "comments.getThread",
            json!({ "threadId": f.thread }),
            vec![&["threadId"]],
        ),
        (
            "comments.listComments",
            json!({ "threadId": f.thread, "limit": 10 }),
            vec![&["threadId"], &["after"], &["limit"]],
        ),
    ]
}

/// What is wrong with the answer to request `id`, if anything.
fn res_problem(id: &Value, answer: Option<&Value>) -> Option<String> {
    let Some(frame) = answer else {
        return Some("no answer (the socket closed, or nothing came in time)".to_owned());
    };
    if frame["type"] != "res" || &frame["id"] != id {
        return Some(format!("not the res of request {id}: {frame}"));
    }
    if frame["ok"] == true {
        return frame
            .get("result")
            .filter(|r| r.is_object())
            .is_none()
            .then(|| format!("ok without a result object: {frame}"));
    }
    error_problem(frame)
}

/// What is wrong with the error object of a `res` or `error` frame, if anything.
fn error_problem(frame: &Value) -> Option<String> {
    let error = &frame["error"];
    let code = error["code"].as_str().unwrap_or_default();
    if !CODES.contains(&code) || !error["message"].is_string() {
        return Some(format!("not a documented error: {frame}"));
    }
    if code == "VALIDATION_ERROR" && !error["field"].is_string() {
        return Some(format!("a VALIDATION_ERROR names no field: {frame}"));
    }
    None
}

/// A joined socket of the fixture's Alice, reopened when the server closed the last one.
async fn alice(app: &TestApp, f: &Fixture) -> Socket {
    let (mut socket, _) = Socket::connect(&app.base, &f.alice_token).await;
    socket.request("room.join", json!({})).await.unwrap();
    socket
}

/// Sends a ping and expects the pong next (after any events).
async fn pong_problem(socket: &mut Socket) -> Option<String> {
    socket.send_json(json!({ "type": "ping" })).await;
    match socket.next_answer().await {
        Some(frame) if frame["type"] == "pong" => None,
        other => Some(format!(
            "no pong after it: {other:?} (closed: {:?})",
            socket.closed
        )),
    }
}

async fn every_method_answers_hostile_params(backend: Backend) {
    let app = TestApp::start_with(backend, unthrottled).await;
    let f = fixture(&app).await;
    let frame_limit = app.config.realtime.max_message_bytes;
    // The longest string fits in a frame; the one after it does not (but is under the cap).
    let mut values = hostile::json_values(frame_limit - 1024, 0x5eed_0002);
    values.push(Hostile {
        name: "over the frame limit".to_owned(),
        text: format!("\"{}\"", "x".repeat(frame_limit + 1)),
    });
    let mut socket = alice(&app, &f).await;
    let mut failures = Vec::new();
    let mut sent = 0u64;
    for (method, base, fields) in methods(&f) {
        let mut params: Vec<(String, String)> = values
            .iter()
            .map(|v| (format!("params = {}", v.name), v.text.clone()))
            .collect();
        params.push(("an unknown field".to_owned(), r#"{"nope": 1}"#.to_owned()));
        params.push((
            "valid params and an unknown field".to_owned(),
            hostile::substitute(&base, &["nope"], "1"),
        ));
        for field in &fields {
            for value in &values {
                params.push((
                    format!("{} = {}", field.join("."), value.name),
                    hostile::substitute(&base, field, &value.text),
                ));
            }
        }
        for (what, params) in params {
            sent += 1;
            let id = json!(sent);
            socket
                .send_text(format!(
                    r#"{{"type":"req","id":{sent},"method":"{method}","params":{params}}}"#
                ))
                .await;
            let answer = socket.next_answer().await;
            if let Some(problem) = res_problem(&id, answer.as_ref()) {
                failures.push(format!("{method} with {what}: {problem}"));
            }
            if socket.closed.is_some() || answer.is_none() {
                failures.push(format!(
                    "{method} with {what}: the socket closed: {:?}",
                    socket.closed
                ));
                socket = alice(&app, &f).await;
            } else if method.starts_with("room.") {
                // Stay joined, so that the room's methods are served rather than refused.
                let _ = socket.try_request("room.join", json!({})).await;
            }
        }
    }
    if let Some(problem) = pong_problem(&mut socket).await {
        failures.push(problem);
    }
    eprintln!("socket fuzzing ({backend:?}): {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests broke the rules:\n{}",
        failures.len(),
        failures
            .iter()
            .take(4000)
            .map(|f| f.chars().take(500).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What a hostile frame must get back.
enum Answer {
    /// `res` with this ID.
    Res(Value),
    /// An `error` frame (the frame is not a request, or its ID cannot be read).
    Error,
    /// Nothing: a notification that succeeded, a WebSocket ping or pong.
    Nothing,
}

async fn hostile_frames_get_documented_answers(backend: Backend) {
    let app = TestApp::start_with(backend, unthrottled).await;
    let f = fixture(&app).await;
    let limit = app.config.realtime.max_message_bytes;
    let users_get = |id: &str, params: &str| {
        format!(r#"{{"type":"req","id":{id},"method":"users.get","params":{params}}}"#)
    };
    let deep = hostile::deep_array(hostile::DEEP);
    let long_id = format!("\"{}\"", "i".repeat(64));
    let text_frames: Vec<(&str, String, Answer)> = vec![
        ("not JSON", "{not json".to_owned(), Answer::Error),
        ("a lone bracket", "]".to_owned(), Answer::Error),
        ("empty", String::new(), Answer::Error),
        ("blank", " \n".to_owned(), Answer::Error),
        (
            "a raw NUL",
            "{\"type\":\u{0}\"ping\"}".to_owned(),
            Answer::Error,
        ),
        ("a string", r#""ping""#.to_owned(), Answer::Error),
        ("a number", "42".to_owned(), Answer::Error),
        ("null", "null".to_owned(), Answer::Error),
        ("an array", r#"[{"type":"ping"}]"#.to_owned(), Answer::Error),
        ("deep nesting", deep.clone(), Answer::Error),
        (
            "deep object",
            hostile::deep_object(hostile::DEEP),
            Answer::Error,
        ),
        (
            "an unknown type",
            r#"{"type":"nope"}"#.to_owned(),
            Answer::Error,
        ),
        ("a null type", r#"{"type":null}"#.to_owned(), Answer::Error),
        (
            "no type",
            r#"{"id":1,"method":"users.get"}"#.to_owned(),
            Answer::Error,
        ),
        (
            "a type in capitals",
            r#"{"type":"PING"}"#.to_owned(),
            Answer::Error,
        ),
        (
            "a server frame",
            r#"{"type":"res","id":1,"ok":true}"#.to_owned(),
            Answer::Error,
        ),
        (
            "a second auth",
            format!(r#"{{"type":"auth","token":"{}"}}"#, f.alice_token),
            Answer::Error,
        ),
        (
            "a request without id or method",
            r#"{"type":"req"}"#.to_owned(),
            Answer::Error,
        ),
        (
            "an ID that is an object",
            users_get("{}", "{}"),
            Answer::Error,
        ),
        (
            "an ID that is an array",
            users_get("[1]", "{}"),
            Answer::Error,
        ),
        ("an ID that is true", users_get("true", "{}"), Answer::Error),
        (
            "an ID of 65 characters",
            users_get(&format!("\"{}\"", "i".repeat(65)), "{}"),
            Answer::Error,
        ),
        (
            "an ID with a lone surrogate",
            users_get(r#""\ud800""#, "{}"),
            Answer::Error,
        ),
        (
            "a null ID: a notification",
            users_get("null", "{}"),
            Answer::Nothing,
        ),
        (
            "a failing notification",
            r#"{"type":"req","method":"users.get","params":{"nope":1}}"#.to_owned(),
            Answer::Error,
        ),
        (
            "a notification of an unknown method",
            r#"{"type":"req","method":"no.such"}"#.to_owned(),
            Answer::Error,
        ),
        (
            "a request without a method",
            r#"{"type":"req","id":101}"#.to_owned(),
            Answer::Res(json!(101)),
        ),
        (
            "a method that is a number",
            r#"{"type":"req","id":102,"method":5}"#.to_owned(),
            Answer::Res(json!(102)),
        ),
        (
            "an unknown method",
            r#"{"type":"req","id":103,"method":"no.such"}"#.to_owned(),
            Answer::Res(json!(103)),
        ),
        (
            "a method with a NUL",
            r#"{"type":"req","id":104,"method":"users.get\u0000"}"#.to_owned(),
            Answer::Res(json!(104)),
        ),
        (
            "a method with a lone surrogate",
            r#"{"type":"req","id":105,"method":"\ud800"}"#.to_owned(),
            Answer::Res(json!(105)),
        ),
        (
            "params with a lone surrogate",
            users_get("106", r#"{"userId":"\ud800"}"#),
            Answer::Res(json!(106)),
        ),
        (
            "a key with a lone surrogate",
            users_get("107", r#"{"\udc00":1}"#),
            Answer::Res(json!(107)),
        ),
        (
            "deeply nested params",
            users_get("108", &deep),
            Answer::Res(json!(108)),
        ),
        (
            "an unknown field in the frame",
            r#"{"type":"req","id":109,"method":"users.get","extra":{"a":[1]}}"#.to_owned(),
            Answer::Res(json!(109)),
        ),
        (
            "a duplicated id",
            r#"{"type":"req","id":110,"id":111,"method":"users.get"}"#.to_owned(),
            Answer::Error,
        ),
        ("ID 0", users_get("0", "{}"), Answer::Res(json!(0))),
        (
            "the largest u64 ID",
            users_get("18446744073709551615", "{}"),
            Answer::Res(json!(u64::MAX)),
        ),
        (
            "a negative ID",
            users_get("-1", "{}"),
            Answer::Res(json!(-1)),
        ),
        (
            "a fractional ID",
            users_get("1.5", "{}"),
            Answer::Res(json!(1.5)),
        ),
        (
            "an ID over u64",
            users_get("18446744073709551616", "{}"),
            Answer::Res(json!(18446744073709551616.0)),
        ),
        (
            "an ID of 1e300",
            users_get("1e300", "{}"),
            Answer::Res(json!(1e300)),
        ),
        (
            "an empty string ID",
            users_get(r#""""#, "{}"),
            Answer::Res(json!("")),
        ),
        (
            "an ID of 64 characters",
            users_get(&long_id, "{}"),
            Answer::Res(serde_json::from_str(&long_id).unwrap()),
        ),
        (
            "an emoji ID",
            users_get(r#""😀""#, "{}"),
            Answer::Res(json!("😀")),
        ),
        (
            "a frame over the limit",
            users_get("112", &format!(r#"{{"pad":"{}"}}"#, "x".repeat(limit))),
            Answer::Res(json!(112)),
        ),
    ];
    let mut socket = alice(&app, &f).await;
    let mut failures = Vec::new();
    for (what, text, answer) in &text_frames {
        socket.send_text(text.clone()).await;
        check_answer(&mut socket, what, answer, &mut failures).await;
        if socket.closed.is_some() {
            failures.push(format!("{what}: the socket closed: {:?}", socket.closed));
            socket = alice(&app, &f).await;
        }
    }
    let binary_frames: Vec<(&str, Message, Answer)> = vec![
        (
            "binary JSON",
            Message::binary(br#"{"type":"ping"}"#.to_vec()),
            Answer::Error,
        ),
        (
            "binary garbage",
            Message::binary(vec![0xff, 0x00, 0xfe, 0x80]),
            Answer::Error,
        ),
        (
            "an empty binary frame",
            Message::binary(Vec::new()),
            Answer::Error,
        ),
        (
            "a WebSocket ping",
            Message::Ping(b"hello".to_vec().into()),
            Answer::Nothing,
        ),
        (
            "an unsolicited pong",
            Message::Pong(b"hello".to_vec().into()),
            Answer::Nothing,
        ),
    ];
    for (what, message, answer) in binary_frames {
        socket.send_message(message).await;
        check_answer(&mut socket, what, &answer, &mut failures).await;
        if socket.closed.is_some() {
            failures.push(format!("{what}: the socket closed: {:?}", socket.closed));
            socket = alice(&app, &f).await;
        }
    }
    // After all of it, the socket still works.
    let me = socket.request("users.get", json!({})).await;
    assert_eq!(me.unwrap()["user"]["id"], f.alice.as_str());
    // A frame over the hard cap (4 x the limit) is the one documented reason to close: 1009.
    socket
        .send_text(users_get(
            "113",
            &format!(r#""{}""#, "x".repeat(4 * limit + 1)),
        ))
        .await;
    let mut after = Vec::new();
    while let Some(frame) = socket.next_answer().await {
        after.push(frame);
    }
    assert!(after.is_empty(), "answered instead of closed: {after:?}");
    assert_eq!(socket.closed.as_ref().map(|c| c.0), Some(1009));
    let (mut again, _) = Socket::connect(&app.base, &f.alice_token).await;
    assert!(pong_problem(&mut again).await.is_none());
    assert!(
        failures.is_empty(),
        "{} hostile frames broke the rules:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.chars().take(500).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Reads the answer to one hostile frame and checks it; a ping follows, so that `Nothing`
/// can be told from an answer that is late.
async fn check_answer(
    socket: &mut Socket,
    what: &str,
    answer: &Answer,
    failures: &mut Vec<String>,
) {
    let problem = match answer {
        Answer::Res(id) => {
            let frame = socket.next_answer().await;
            res_problem(id, frame.as_ref())
        }
        Answer::Error => match socket.next_answer().await {
            Some(frame) if frame["type"] == "error" => error_problem(&frame),
            other => Some(format!("no error frame: {other:?}")),
        },
        Answer::Nothing => None,
    };
    if let Some(problem) = problem {
        failures.push(format!("{what}: {problem}"));
    }
    if socket.closed.is_none() {
        if let Some(problem) = pong_problem(socket).await {
            failures.push(format!("{what}: {problem}"));
        }
    }
}
