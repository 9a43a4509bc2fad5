//! Comments: threads, replies, edits, deletions, resolution and reactions over the socket,
//! the events the room's other sockets receive, limits, and the REST API for backends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, Reply, TestAccount, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(
    threads_and_replies_reach_the_others_live,
    only_authors_edit_and_delete_their_comments,
    deleting_the_last_comment_deletes_the_thread,
    any_user_resolves_and_reopens_threads,
    reactions_are_added_removed_and_idempotent,
    lists_page_newest_first_and_filter_by_resolution,
    limits_answer_clear_errors_and_store_nothing,
    concurrent_writers_cannot_exceed_limits_and_events_follow_the_database,
    rest_lists_gets_and_moderates_threads,
    deleting_a_room_deletes_its_comments,
    a_deleted_users_comments_stay,
    other_rooms_threads_are_not_found,
    bad_params_never_break_the_socket,
);

/// Short: long enough for an event already sent to arrive.
const QUIET: Duration = Duration::from_millis(300);

/// A room with Alice and Bob, both joined; returns the room ID, their user data and sockets.
async fn two_joined(account: &TestAccount, app: &TestApp) -> (String, Vec<Value>, Socket, Socket) {
    let (room_id, users) = room_with_users(account, &["Alice", "Bob"]).await;
    let (alice, _) = Socket::join(&app.base, token(&users[0])).await;
    let (bob, _) = Socket::join(&app.base, token(&users[1])).await;
    (room_id, users, alice, bob)
}

async fn create_thread(socket: &mut Socket, body: &str) -> Value {
    socket
        .request("comments.createThread", json!({ "body": body }))
        .await
        .expect("createThread succeeds")["thread"]
        .clone()
}

async fn reply(socket: &mut Socket, thread: &Value, body: &str) -> Value {
    socket
        .request(
            "comments.reply",
            json!({ "threadId": thread["id"], "body": body }),
        )
        .await
        .expect("reply succeeds")["comment"]
        .clone()
}

async fn get_thread(socket: &mut Socket, thread_id: &Value) -> Result<Value, Value> {
    socket
        .request("comments.getThread", json!({ "threadId": thread_id }))
        .await
        .map(|result| result["thread"].clone())
}

#[track_caller]
fn assert_error(error: Result<Value, Value>, code: &str, field: Option<&str>) {
    let error = error.expect_err("an error");
    assert_eq!(error["code"], code, "{error}");
    if let Some(field) = field {
        assert_eq!(error["field"], field, "{error}");
    }
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn is_id(value: &Value, prefix: &str) -> bool {
    value.as_str().is_some_and(|id| {
        id.strip_prefix(prefix)
            .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

fn is_time(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T')
}

async fn threads_and_replies_reach_the_others_live(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users, mut alice, mut bob) = two_joined(&account, &app).await;
    let (alice_id, bob_id) = (user_id(&users[0]), user_id(&users[1]));

    let created = alice
        .request(
            "comments.createThread",
            json!({ "body": "Move this box?", "metadata": { "x": 10, "y": 20 } }),
        )
        .await
        .unwrap();
    let thread = &created["thread"];
    assert!(is_id(&thread["id"], "thr_"), "{thread}");
    assert_eq!(thread["room_id"], room_id.as_str());
    assert_eq!(thread["created_by"], alice_id);
    assert!(is_time(&thread["created_at"]) && is_time(&thread["updated_at"]));
    assert_eq!(thread["resolved"], false);
    assert_eq!(thread["resolved_at"], Value::Null);
    assert_eq!(thread["resolved_by"], Value::Null);
    assert_eq!(thread["metadata"], json!({ "x": 10, "y": 20 }));
    let first = &thread["comments"][0];
    assert_eq!(thread["comments"].as_array().unwrap().len(), 1);
    assert!(is_id(&first["id"], "cmt_"), "{first}");
    assert_eq!(first["thread_id"], thread["id"]);
    assert_eq!(first["room_id"], room_id.as_str());
    assert_eq!(first["user_id"], alice_id);
    assert_eq!(first["body"], "Move this box?");
    assert_eq!(first["metadata"], Value::Null);
    assert_eq!(first["created_at"], thread["created_at"]);
    assert_eq!(first["edited_at"], Value::Null);
    assert_eq!(first["reactions"], json!([]));

    let seen = bob.event("threadCreated").await;
    assert_eq!(seen, created, "the event carries the same thread");

    let answer = bob
        .request(
            "comments.reply",
            json!({ "threadId": thread["id"], "body": "Yes, left", "metadata": { "quote": "box" } }),
        )
        .await
        .unwrap();
    let comment = &answer["comment"];
    assert!(is_id(&comment["id"], "cmt_"));
    assert_eq!(comment["thread_id"], thread["id"]);
    assert_eq!(comment["user_id"], bob_id);
    assert_eq!(comment["metadata"], json!({ "quote": "box" }));
    assert_eq!(alice.event("commentCreated").await, answer);

    // Oldest first, the same from either socket, and persisted.
    let full = get_thread(&mut bob, &thread["id"]).await.unwrap();
    let bodies: Vec<_> = full["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Move this box?", "Yes, left"]);
    assert_eq!(full["comments"][1], *comment);
    assert!(full["updated_at"].as_str() >= thread["updated_at"].as_str());
    assert_eq!(get_thread(&mut alice, &thread["id"]).await.unwrap(), full);

    // A socket that has not joined can comment too (and hears nothing).
    let (mut carol, _) = Socket::connect(&app.base, token(&users[0])).await;
    let third = reply(&mut carol, thread, "From another tab").await;
    assert_eq!(bob.event("commentCreated").await["comment"], third);
    assert_eq!(alice.event("commentCreated").await["comment"], third);

    // The author's own socket gets its result, never the event.
    alice.expect_no_event("threadCreated", QUIET).await;
    bob.expect_no_event("commentCreated", QUIET).await;
    carol.expect_no_event("commentCreated", QUIET).await;
}

async fn only_authors_edit_and_delete_their_comments(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, _, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Fisrt draft").await;
    bob.event("threadCreated").await;
    let first = &thread["comments"][0];
    let second = reply(&mut alice, &thread, "Second").await;
    bob.event("commentCreated").await;

    let edited = alice
        .request(
            "comments.edit",
            json!({ "commentId": first["id"], "body": "First draft" }),
        )
        .await
        .unwrap();
    let comment = &edited["comment"];
    assert_eq!(comment["body"], "First draft");
    assert!(is_time(&comment["edited_at"]), "{comment}");
    assert_eq!(comment["created_at"], first["created_at"]);
    assert_eq!(comment["id"], first["id"]);
    assert_eq!(bob.event("commentUpdated").await, edited);

    // Metadata alone, then cleared with null; the body stays.
    let with_metadata = alice
        .request(
            "comments.edit",
            json!({ "commentId": first["id"], "metadata": { "pinned": true } }),
        )
        .await
        .unwrap();
    assert_eq!(
        with_metadata["comment"]["metadata"],
        json!({ "pinned": true })
    );
    assert_eq!(with_metadata["comment"]["body"], "First draft");
    assert_eq!(bob.event("commentUpdated").await, with_metadata);
    let cleared = alice
        .request(
            "comments.edit",
            json!({ "commentId": first["id"], "metadata": null }),
        )
        .await
        .unwrap();
    assert_eq!(cleared["comment"]["metadata"], Value::Null);
    bob.event("commentUpdated").await;

    // Nothing to change, a null body: refused.
    let nothing = alice
        .request("comments.edit", json!({ "commentId": first["id"] }))
        .await;
    assert_error(nothing, "VALIDATION_ERROR", Some("params"));
    let null_body = alice
        .request(
            "comments.edit",
            json!({ "commentId": first["id"], "body": null }),
        )
        .await;
    assert_error(null_body, "VALIDATION_ERROR", Some("body"));

    // Bob is not the author: he can neither edit nor delete, and nothing changes.
    let forbidden = bob
        .request(
            "comments.edit",
            json!({ "commentId": first["id"], "body": "Hijacked" }),
        )
        .await;
    assert_error(forbidden, "FORBIDDEN", None);
    let forbidden = bob
        .request("comments.delete", json!({ "commentId": second["id"] }))
        .await;
    assert_error(forbidden, "FORBIDDEN", None);
    let unchanged = get_thread(&mut bob, &thread["id"]).await.unwrap();
    assert_eq!(unchanged["comments"][0]["body"], "First draft");
    assert_eq!(unchanged["comments"].as_array().unwrap().len(), 2);
    alice.expect_no_event("commentUpdated", QUIET).await;
    alice.expect_no_event("commentDeleted", QUIET).await;

    // Alice deletes her reply: the thread stays.
    let deleted = alice
        .request("comments.delete", json!({ "commentId": second["id"] }))
        .await
        .unwrap();
    assert_eq!(
        deleted,
        json!({ "commentId": second["id"], "threadDeleted": false })
    );
    assert_eq!(
        bob.event("commentDeleted").await,
        json!({ "commentId": second["id"], "threadId": thread["id"] })
    );
    bob.expect_no_event("threadDeleted", QUIET).await;
    let after = get_thread(&mut bob, &thread["id"]).await.unwrap();
    assert_eq!(after["comments"].as_array().unwrap().len(), 1);
    let again = alice
        .request("comments.delete", json!({ "commentId": second["id"] }))
        .await;
    assert_error(again, "NOT_FOUND", None);
    let gone = alice
        .request(
            "comments.edit",
            json!({ "commentId": second["id"], "body": "x" }),
        )
        .await;
    assert_error(gone, "NOT_FOUND", None);
    alice.expect_no_event("commentDeleted", QUIET).await;
}

async fn deleting_the_last_comment_deletes_the_thread(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, _, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Lonely").await;
    bob.event("threadCreated").await;
    let answer = alice
        .request(
            "comments.delete",
            json!({ "commentId": thread["comments"][0]["id"] }),
        )
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({ "commentId": thread["comments"][0]["id"], "threadDeleted": true })
    );
    assert_eq!(
        bob.event("commentDeleted").await,
        json!({ "commentId": thread["comments"][0]["id"], "threadId": thread["id"] })
    );
    assert_eq!(
        bob.event("threadDeleted").await,
        json!({ "threadId": thread["id"] })
    );
    assert_error(get_thread(&mut bob, &thread["id"]).await, "NOT_FOUND", None);
    let listed = bob.request("comments.list", json!({})).await.unwrap();
    assert_eq!(listed["total"], 0);
    alice.expect_no_event("threadDeleted", QUIET).await;
}

async fn any_user_resolves_and_reopens_threads(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Done?").await;
    bob.event("threadCreated").await;

    let resolved = bob
        .request("comments.resolve", json!({ "threadId": thread["id"] }))
        .await
        .unwrap();
    let after = &resolved["thread"];
    assert_eq!(after["resolved"], true);
    assert!(is_time(&after["resolved_at"]));
    assert_eq!(after["resolved_by"], user_id(&users[1]));
    assert_eq!(after["comments"], thread["comments"]);
    assert_eq!(alice.event("threadUpdated").await, resolved);

    // Resolving again changes nothing and tells nobody.
    let again = alice
        .request("comments.resolve", json!({ "threadId": thread["id"] }))
        .await
        .unwrap();
    assert_eq!(again, resolved);
    bob.expect_no_event("threadUpdated", QUIET).await;

    let reopened = alice
        .request("comments.reopen", json!({ "threadId": thread["id"] }))
        .await
        .unwrap();
    let after = &reopened["thread"];
    assert_eq!(after["resolved"], false);
    assert_eq!(after["resolved_at"], Value::Null);
    assert_eq!(after["resolved_by"], Value::Null);
    assert_eq!(bob.event("threadUpdated").await, reopened);
    let twice = bob
        .request("comments.reopen", json!({ "threadId": thread["id"] }))
        .await
        .unwrap();
    assert_eq!(twice, reopened);
    alice.expect_no_event("threadUpdated", QUIET).await;

    let missing = alice
        .request(
            "comments.resolve",
            json!({ "threadId": "thr_00000000000000000000000000000000" }),
        )
        .await;
    assert_error(missing, "NOT_FOUND", None);
}

async fn reactions_are_added_removed_and_idempotent(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, users, mut alice, mut bob) = two_joined(&account, &app).await;
    let (alice_id, bob_id) = (user_id(&users[0]), user_id(&users[1]));
    let thread = create_thread(&mut alice, "React to me").await;
    bob.event("threadCreated").await;
    let comment_id = thread["comments"][0]["id"].clone();
    let react = |emoji: &str| json!({ "commentId": comment_id, "emoji": emoji });

    let first = alice.request("comments.react", react("👍")).await.unwrap();
    assert_eq!(
        first["comment"]["reactions"],
        json!([{ "emoji": "👍", "user_ids": [alice_id] }])
    );
    assert_eq!(bob.event("commentUpdated").await, first);
    bob.request("comments.react", react("👍")).await.unwrap();
    assert_eq!(
        alice.event("commentUpdated").await["comment"]["reactions"][0]["user_ids"],
        json!([alice_id, bob_id])
    );
    let both = bob
        .request("comments.react", react(":tada:"))
        .await
        .unwrap();
    assert_eq!(
        both["comment"]["reactions"],
        json!([
            { "emoji": "👍", "user_ids": [alice_id, bob_id] },
            { "emoji": ":tada:", "user_ids": [bob_id] },
        ])
    );
    assert_eq!(alice.event("commentUpdated").await, both);

    // Reacting twice is the same as once, and nobody hears of it.
    let again = alice.request("comments.react", react("👍")).await.unwrap();
    assert_eq!(again, both);
    bob.expect_no_event("commentUpdated", QUIET).await;

    let removed = alice
        .request("comments.unreact", react("👍"))
        .await
        .unwrap();
    assert_eq!(
        removed["comment"]["reactions"],
        json!([
            { "emoji": "👍", "user_ids": [bob_id] },
            { "emoji": ":tada:", "user_ids": [bob_id] },
        ])
    );
    assert_eq!(bob.event("commentUpdated").await, removed);
    let noop = alice
        .request("comments.unreact", react("👍"))
        .await
        .unwrap();
    assert_eq!(noop, removed);
    bob.expect_no_event("commentUpdated", QUIET).await;
    bob.request("comments.unreact", react(":tada:"))
        .await
        .unwrap();
    let last = bob.request("comments.unreact", react("👍")).await.unwrap();
    assert_eq!(last["comment"]["reactions"], json!([]));

    // Reactions are persisted with the comment.
    let listed = alice.request("comments.list", json!({})).await.unwrap();
    assert_eq!(listed["threads"][0]["comments"][0]["reactions"], json!([]));
    bob.request("comments.react", react("🚀")).await.unwrap();
    let stored = get_thread(&mut alice, &thread["id"]).await.unwrap();
    assert_eq!(
        stored["comments"][0]["reactions"],
        json!([{ "emoji": "🚀", "user_ids": [bob_id] }])
    );

    for bad in ["", "two words", "x".repeat(33).as_str(), "tab\t"] {
        let error = alice.request("comments.react", react(bad)).await;
        assert_error(error, "VALIDATION_ERROR", Some("emoji"));
    }
    let missing = alice
        .request(
            "comments.react",
            json!({ "commentId": "cmt_00000000000000000000000000000000", "emoji": "👍" }),
        )
        .await;
    assert_error(missing, "NOT_FOUND", None);
}

async fn lists_page_newest_first_and_filter_by_resolution(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, _, mut alice, _bob) = two_joined(&account, &app).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(create_thread(&mut alice, &format!("Thread {i}")).await);
    }
    for thread in [&created[1], &created[3]] {
        alice
            .request("comments.resolve", json!({ "threadId": thread["id"] }))
            .await
            .unwrap();
    }
    let ids = |threads: &Value| -> Vec<Value> {
        threads
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].clone())
            .collect()
    };
    let id = |i: usize| created[i]["id"].clone();

    let all = alice.request("comments.list", json!({})).await.unwrap();
    assert_eq!(all["total"], 5);
    assert_eq!(all["limit"], 50);
    assert_eq!(all["offset"], 0);
    assert_eq!(ids(&all["threads"]), [id(4), id(3), id(2), id(1), id(0)]);
    assert_eq!(all["threads"][4]["comments"][0]["body"], "Thread 0");

    let page = alice
        .request("comments.list", json!({ "limit": 2, "offset": 1 }))
        .await
        .unwrap();
    assert_eq!(ids(&page["threads"]), [id(3), id(2)]);
    assert_eq!(
        (page["total"].clone(), page["limit"].clone()),
        (json!(5), json!(2))
    );

    let resolved = alice
        .request("comments.list", json!({ "resolved": true }))
        .await
        .unwrap();
    assert_eq!(ids(&resolved["threads"]), [id(3), id(1)]);
    assert_eq!(resolved["total"], 2);
    let open = alice
        .request("comments.list", json!({ "resolved": false, "limit": 1 }))
        .await
        .unwrap();
    assert_eq!(ids(&open["threads"]), [id(4)]);
    assert_eq!(open["total"], 3);
    let beyond = alice
        .request("comments.list", json!({ "offset": 10 }))
        .await
        .unwrap();
    assert_eq!(
        (beyond["threads"].clone(), beyond["total"].clone()),
        (json!([]), json!(5))
    );

    for (params, field) in [
        (json!({ "limit": 0 }), "limit"),
        (json!({ "limit": 101 }), "limit"),
        (json!({ "limit": "10" }), "limit"),
        (json!({ "offset": -1 }), "offset"),
        (json!({ "resolved": "yes" }), "resolved"),
        (json!({ "page": 1 }), "page"),
    ] {
        let error = alice.request("comments.list", params.clone()).await;
        assert_error(error, "VALIDATION_ERROR", Some(field));
    }

    // REST: the same lists.
    let path = format!("/rooms/{room_id}/threads");
    let reply = account.get(&format!("{path}?limit=2&offset=1")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Threads retrieved");
    assert_eq!(ids(&reply.data()["threads"]), [id(3), id(2)]);
    assert_eq!(reply.data()["total"], 5);
    assert_eq!(reply.data()["limit"], 2);
    assert_eq!(reply.data()["offset"], 1);
    let reply = account.get(&format!("{path}?resolved=true")).await;
    assert_eq!(ids(&reply.data()["threads"]), [id(3), id(1)]);
    let reply = account.get(&format!("{path}?resolved=false")).await;
    assert_eq!(ids(&reply.data()["threads"]), [id(4), id(2), id(0)]);
    assert_eq!(reply.data()["threads"], open_threads(&all["threads"]));
    for (query, field) in [
        ("resolved=maybe", "resolved"),
        ("limit=0", "limit"),
        ("offset=-2", "offset"),
    ] {
        let reply = account.get(&format!("{path}?{query}")).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field);
    }
}

fn open_threads(threads: &Value) -> Value {
    Value::Array(
        threads
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["resolved"] == false)
            .cloned()
            .collect(),
    )
}

async fn limits_answer_clear_errors_and_store_nothing(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.comments.max_body_chars = 10;
        c.comments.max_metadata_bytes = 20;
        c.comments.max_threads_per_room = 2;
        c.comments.max_comments_per_thread = 2;
        c.comments.max_reactions_per_comment = 2;
    })
    .await;
    let account = app.account().await;
    let (room_id, _, mut alice, mut bob) = two_joined(&account, &app).await;

    // Body: characters, not bytes.
    let thread = create_thread(&mut alice, "éééééééééé").await;
    bob.event("threadCreated").await;
    let long = alice
        .request("comments.createThread", json!({ "body": "x".repeat(11) }))
        .await;
    assert_error(long, "VALIDATION_ERROR", Some("body"));
    let long = alice
        .request(
            "comments.edit",
            json!({ "commentId": thread["comments"][0]["id"], "body": "y".repeat(11) }),
        )
        .await;
    assert_error(long, "VALIDATION_ERROR", Some("body"));

    // Metadata: at most 20 bytes of JSON ({"k":"0123456789ab"} is 20).
    let fits = alice
        .request(
            "comments.reply",
            json!({ "threadId": thread["id"], "body": "ok", "metadata": { "k": "0123456789ab" } }),
        )
        .await
        .unwrap();
    bob.event("commentCreated").await;
    let big = json!({ "k": "0123456789abc" });
    let error = alice
        .request(
            "comments.createThread",
            json!({ "body": "b", "metadata": big }),
        )
        .await;
    assert_error(error, "VALIDATION_ERROR", Some("metadata"));
    let error = alice
        .request(
            "comments.edit",
            json!({ "commentId": fits["comment"]["id"], "metadata": big }),
        )
        .await;
    assert_error(error, "VALIDATION_ERROR", Some("metadata"));

    // Comments per thread: the thread holds 2 (the first included).
    let error = alice
        .request(
            "comments.reply",
            json!({ "threadId": thread["id"], "body": "third" }),
        )
        .await;
    assert_error(error, "VALIDATION_ERROR", Some("threadId"));
    assert!(error_message_mentions(
        alice
            .request(
                "comments.reply",
                json!({ "threadId": thread["id"], "body": "third" })
            )
            .await,
        "2"
    ));

    // Threads per room.
    create_thread(&mut alice, "second").await;
    bob.event("threadCreated").await;
    let error = alice
        .request("comments.createThread", json!({ "body": "third" }))
        .await;
    assert_error(error, "VALIDATION_ERROR", Some("params"));

    // Distinct emoji per comment: a third emoji is refused, more users on one are fine.
    let comment = json!(thread["comments"][0]["id"]);
    for emoji in ["👍", "🎉"] {
        alice
            .request(
                "comments.react",
                json!({ "commentId": comment, "emoji": emoji }),
            )
            .await
            .unwrap();
        bob.event("commentUpdated").await;
    }
    let error = alice
        .request(
            "comments.react",
            json!({ "commentId": comment, "emoji": "🚀" }),
        )
        .await;
    assert_error(error, "VALIDATION_ERROR", Some("emoji"));
    bob.request(
        "comments.react",
        json!({ "commentId": comment, "emoji": "👍" }),
    )
    .await
    .unwrap();

    // Nothing refused was stored, and nobody heard of it.
    let listed = account.get(&format!("/rooms/{room_id}/threads")).await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.data()["total"], 2);
    let stored = &listed.data()["threads"][1];
    assert_eq!(stored["id"], thread["id"]);
    let comments = stored["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0]["body"], "éééééééééé");
    assert_eq!(comments[1]["metadata"], json!({ "k": "0123456789ab" }));
    let emoji: Vec<_> = comments[0]["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["emoji"].as_str().unwrap())
        .collect();
    assert_eq!(emoji, ["👍", "🎉"]);
    bob.expect_no_event("threadCreated", QUIET).await;
    bob.expect_no_event("commentCreated", QUIET).await;
    // After the errors, the socket still serves.
    assert!(alice.request("comments.list", json!({})).await.is_ok());
}

fn error_message_mentions(error: Result<Value, Value>, text: &str) -> bool {
    error.expect_err("an error")["message"]
        .as_str()
        .is_some_and(|m| m.contains(text))
}

async fn concurrent_writers_cannot_exceed_limits_and_events_follow_the_database(backend: Backend) {
    const WRITERS: usize = 6;
    let app = TestApp::start_with(backend, |c| {
        c.comments.max_threads_per_room = 3;
        c.comments.max_comments_per_thread = 4;
        c.database.max_connections = 10;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Observer", "Writer"]).await;
    let (mut observer, _) = Socket::join(&app.base, token(&users[0])).await;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(Socket::connect(&app.base, token(&users[1])).await.0);
    }

    // Six writers race for three threads.
    let outcomes = futures_util::future::join_all(writers.iter_mut().enumerate().map(
        |(i, socket)| async move {
            socket
                .request(
                    "comments.createThread",
                    json!({ "body": format!("Writer {i}") }),
                )
                .await
        },
    ))
    .await;
    let created: Vec<&Value> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(created.len(), 3, "{outcomes:?}");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(refused["field"], "params", "{refused}");
    }
    let listed = observer.request("comments.list", json!({})).await.unwrap();
    assert_eq!(listed["total"], 3);
    // The observer heard of the threads in the order the database stored them.
    let mut heard = Vec::new();
    for _ in 0..3 {
        heard.push(observer.event("threadCreated").await["thread"]["id"].clone());
    }
    let mut stored: Vec<Value> = listed["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    stored.reverse();
    assert_eq!(heard, stored, "events in database order");

    // Six writers race for the three free places of a thread.
    let thread_id = stored[0].clone();
    let outcomes =
        futures_util::future::join_all(writers.iter_mut().enumerate().map(|(i, socket)| {
            let thread_id = thread_id.clone();
            async move {
                socket
                    .request(
                        "comments.reply",
                        json!({ "threadId": thread_id, "body": format!("Reply {i}") }),
                    )
                    .await
            }
        }))
        .await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        3,
        "{outcomes:?}"
    );
    let thread = get_thread(&mut observer, &thread_id).await.unwrap();
    let comments = thread["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 4);
    let mut heard = Vec::new();
    for _ in 0..3 {
        heard.push(observer.event("commentCreated").await["comment"]["id"].clone());
    }
    let stored: Vec<Value> = comments[1..].iter().map(|c| c["id"].clone()).collect();
    assert_eq!(heard, stored, "events in database order");
}

async fn rest_lists_gets_and_moderates_threads(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, _, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Spam?").await;
    let kept = reply(&mut bob, &thread, "Not spam").await;
    let spam = reply(&mut alice, &thread, "Buy now").await;
    let other = create_thread(&mut bob, "Other").await;
    alice.drain_events("commentCreated", QUIET).await;
    bob.drain_events("threadCreated", QUIET).await;
    let path = format!("/rooms/{room_id}");

    let listed = account.get(&format!("{path}/threads")).await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.body["description"], "Threads retrieved");
    assert_eq!(listed.data()["total"], 2);
    assert_eq!(listed.data()["threads"][0], other);
    assert_eq!(
        listed.data()["threads"][1]["comments"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let got = account
        .get(&format!(
            "{path}/threads/{}",
            thread["id"].as_str().unwrap()
        ))
        .await;
    got.expect(StatusCode::OK);
    assert_eq!(got.body["description"], "Thread retrieved");
    assert_eq!(
        got.data()["thread"],
        get_thread(&mut alice, &thread["id"]).await.unwrap()
    );

    // Moderation: the backend deletes anyone's comment; every joined socket hears of it.
    let spam_id = spam["id"].as_str().unwrap();
    let deleted = account.delete(&format!("{path}/comments/{spam_id}")).await;
    deleted.expect(StatusCode::OK);
    assert_eq!(deleted.body["description"], "Comment deleted");
    assert_eq!(
        *deleted.data(),
        json!({ "id": spam_id, "threadDeleted": false })
    );
    let expected = json!({ "commentId": spam_id, "threadId": thread["id"] });
    assert_eq!(alice.event("commentDeleted").await, expected);
    assert_eq!(bob.event("commentDeleted").await, expected);
    account
        .delete(&format!("{path}/comments/{spam_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // Deleting the other thread's only comment deletes that thread.
    let only = other["comments"][0]["id"].as_str().unwrap();
    let deleted = account.delete(&format!("{path}/comments/{only}")).await;
    deleted.expect(StatusCode::OK);
    assert_eq!(
        *deleted.data(),
        json!({ "id": only, "threadDeleted": true })
    );
    for socket in [&mut alice, &mut bob] {
        assert_eq!(socket.event("commentDeleted").await["commentId"], only);
        assert_eq!(
            socket.event("threadDeleted").await,
            json!({ "threadId": other["id"] })
        );
    }

    // Deleting a thread takes its comments with it.
    let thread_id = thread["id"].as_str().unwrap();
    let deleted = account.delete(&format!("{path}/threads/{thread_id}")).await;
    deleted.expect(StatusCode::OK);
    assert_eq!(deleted.body["description"], "Thread deleted");
    assert_eq!(*deleted.data(), json!({ "id": thread_id }));
    for socket in [&mut alice, &mut bob] {
        assert_eq!(
            socket.event("threadDeleted").await,
            json!({ "threadId": thread_id })
        );
    }
    let gone = alice
        .request(
            "comments.edit",
            json!({ "commentId": kept["id"], "body": "still here?" }),
        )
        .await;
    assert_error(gone, "NOT_FOUND", None);
    let listed = account.get(&format!("{path}/threads")).await;
    assert_eq!(listed.data()["total"], 0);

    // Unknown, malformed and other rooms' IDs are not found.
    let unknown_room = format!("/rooms/{}", uuid::Uuid::new_v4());
    let missing_thread = "thr_00000000000000000000000000000000";
    let missing_comment = "cmt_00000000000000000000000000000000";
    let other_room = account.room("elsewhere").await;
    let elsewhere = format!("/rooms/{}", other_room["id"].as_str().unwrap());
    let survivor = create_thread(&mut alice, "Survivor").await;
    let survivor_id = survivor["id"].as_str().unwrap();
    let survivor_comment = survivor["comments"][0]["id"].as_str().unwrap();
    for (method, url) in [
        ("GET", format!("{unknown_room}/threads")),
        ("GET", "/rooms/not-a-uuid/threads".to_owned()),
        ("GET", format!("{unknown_room}/threads/{survivor_id}")),
        ("GET", format!("{path}/threads/{missing_thread}")),
        ("GET", format!("{path}/threads/not-an-id")),
        ("GET", format!("{elsewhere}/threads/{survivor_id}")),
        ("DELETE", format!("{unknown_room}/threads/{survivor_id}")),
        ("DELETE", format!("{path}/threads/{missing_thread}")),
        ("DELETE", format!("{elsewhere}/threads/{survivor_id}")),
        (
            "DELETE",
            format!("{unknown_room}/comments/{survivor_comment}"),
        ),
        ("DELETE", format!("{path}/comments/{missing_comment}")),
        ("DELETE", format!("{path}/comments/{survivor_id}")),
        ("DELETE", format!("{elsewhere}/comments/{survivor_comment}")),
    ] {
        let reply = match method {
            "GET" => account.get(&url).await,
            _ => account.delete(&url).await,
        };
        reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
        assert_eq!(reply.body["error"]["module"], "Comments", "{method} {url}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("not found")),
            "{method} {url}: {:#}",
            reply.body
        );
    }
    let listed = account.get(&format!("{unknown_room}/threads")).await;
    assert_eq!(listed.body["error"]["message"], "Room not found");
    // The survivor was untouched by the refused deletions.
    let got = account.get(&format!("{path}/threads/{survivor_id}")).await;
    got.expect(StatusCode::OK);
    assert_eq!(
        got.data()["thread"]["comments"].as_array().unwrap().len(),
        1
    );

    // Another account cannot see or delete them.
    let stranger = app.account().await;
    let request = app
        .client
        .get(account.url(&format!("{path}/threads")))
        .bearer_auth(&stranger.token);
    Reply::from(request.send().await.unwrap())
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    stranger
        .get(&format!("{path}/threads"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    stranger
        .delete(&format!("{path}/threads/{survivor_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// Rows left in the comment tables for a room, counted in the database itself.
async fn comment_rows(app: &TestApp, room_id: &str) -> i64 {
    let sql = "SELECT (SELECT COUNT(*) FROM comment_threads WHERE room_id = $1) \
         + (SELECT COUNT(*) FROM comments WHERE room_id = $1) \
         + (SELECT COUNT(*) FROM comment_reactions WHERE comment_id IN \
             (SELECT id FROM comments WHERE room_id = $1)) AS n";
    let url = &app.db.url;
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(room_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(room_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }
}

async fn deleting_a_room_deletes_its_comments(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, _, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Soon gone").await;
    let comment = reply(&mut bob, &thread, "Me too").await;
    bob.request(
        "comments.react",
        json!({ "commentId": comment["id"], "emoji": "👋" }),
    )
    .await
    .unwrap();
    // A room next door keeps its comments.
    let (other_room, other_users) = room_with_users(&account, &["Dora"]).await;
    let (mut dora, _) = Socket::connect(&app.base, token(&other_users[0])).await;
    let kept = create_thread(&mut dora, "Next door").await;
    assert_eq!(comment_rows(&app, &room_id).await, 4);
    assert_eq!(comment_rows(&app, &other_room).await, 2);

    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(alice.event("roomDeleted").await["roomId"], room_id.as_str());
    account
        .get(&format!("/rooms/{room_id}/threads"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get(&format!(
            "/rooms/{room_id}/threads/{}",
            thread["id"].as_str().unwrap()
        ))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(comment_rows(&app, &room_id).await, 0, "rows are gone");

    assert_eq!(comment_rows(&app, &other_room).await, 2);
    assert_eq!(get_thread(&mut dora, &kept["id"]).await.unwrap(), kept);
}

async fn a_deleted_users_comments_stay(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Who said this?").await;
    let comment = reply(&mut bob, &thread, "I did").await;
    bob.request(
        "comments.react",
        json!({ "commentId": comment["id"], "emoji": "✋" }),
    )
    .await
    .unwrap();
    account
        .delete(&format!("/users/{}?roomId={room_id}", user_id(&users[1])))
        .await
        .expect(StatusCode::OK);
    let stored = get_thread(&mut alice, &thread["id"]).await.unwrap();
    assert_eq!(stored["comments"][1]["user_id"], user_id(&users[1]));
    assert_eq!(stored["comments"][1]["body"], "I did");
    assert_eq!(
        stored["comments"][1]["reactions"][0]["user_ids"],
        json!([user_id(&users[1])])
    );
    // The thread still takes replies and can be resolved.
    reply(&mut alice, &thread, "Noted").await;
    alice
        .request("comments.resolve", json!({ "threadId": thread["id"] }))
        .await
        .unwrap();
}

async fn other_rooms_threads_are_not_found(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, here) = room_with_users(&account, &["Alice"]).await;
    let (_, there) = room_with_users(&account, &["Eve"]).await;
    let (mut alice, _) = Socket::join(&app.base, token(&here[0])).await;
    let (mut eve, _) = Socket::join(&app.base, token(&there[0])).await;
    let thread = create_thread(&mut alice, "Private").await;
    let comment_id = thread["comments"][0]["id"].clone();
    let thread_id = thread["id"].clone();
    for (method, params) in [
        ("comments.getThread", json!({ "threadId": thread_id })),
        (
            "comments.reply",
            json!({ "threadId": thread_id, "body": "hi" }),
        ),
        ("comments.resolve", json!({ "threadId": thread_id })),
        ("comments.reopen", json!({ "threadId": thread_id })),
        (
            "comments.edit",
            json!({ "commentId": comment_id, "body": "x" }),
        ),
        ("comments.delete", json!({ "commentId": comment_id })),
        (
            "comments.react",
            json!({ "commentId": comment_id, "emoji": "👀" }),
        ),
        (
            "comments.unreact",
            json!({ "commentId": comment_id, "emoji": "👀" }),
        ),
    ] {
        let error = eve.request(method, params).await;
        assert_error(error, "NOT_FOUND", None);
    }
    let listed = eve.request("comments.list", json!({})).await.unwrap();
    assert_eq!(listed["total"], 0);
    assert_eq!(get_thread(&mut alice, &thread_id).await.unwrap(), thread);
    alice.expect_no_event("commentCreated", QUIET).await;
}

async fn bad_params_never_break_the_socket(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (_, _, mut alice, mut bob) = two_joined(&account, &app).await;
    let thread = create_thread(&mut alice, "Target").await;
    bob.event("threadCreated").await;
    let thread_id = thread["id"].clone();
    let comment_id = thread["comments"][0]["id"].clone();
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        ("comments.nope", json!({}), "BAD_REQUEST", None),
        ("comments.", json!({}), "BAD_REQUEST", None),
        (
            "comments.createThread",
            json!({}),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.createThread",
            json!(["as an array"]),
            "VALIDATION_ERROR",
            Some("params"),
        ),
        (
            "comments.createThread",
            json!("body"),
            "VALIDATION_ERROR",
            Some("params"),
        ),
        (
            "comments.createThread",
            json!({ "body": 5 }),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.createThread",
            json!({ "body": null }),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.createThread",
            json!({ "body": "   " }),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.createThread",
            json!({ "body": "a\u{0}b" }),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.createThread",
            json!({ "body": "x", "metadata": [1] }),
            "VALIDATION_ERROR",
            Some("metadata"),
        ),
        (
            "comments.createThread",
            json!({ "body": "x", "metadata": "pos" }),
            "VALIDATION_ERROR",
            Some("metadata"),
        ),
        (
            "comments.createThread",
            json!({ "body": "x", "extra": 1 }),
            "VALIDATION_ERROR",
            Some("extra"),
        ),
        (
            "comments.reply",
            json!({ "body": "x" }),
            "VALIDATION_ERROR",
            Some("threadId"),
        ),
        (
            "comments.reply",
            json!({ "threadId": 7, "body": "x" }),
            "VALIDATION_ERROR",
            Some("threadId"),
        ),
        (
            "comments.reply",
            json!({ "threadId": "thr_xyz", "body": "x" }),
            "VALIDATION_ERROR",
            Some("threadId"),
        ),
        (
            "comments.reply",
            json!({ "threadId": comment_id, "body": "x" }),
            "VALIDATION_ERROR",
            Some("threadId"),
        ),
        (
            "comments.reply",
            json!({ "threadId": thread_id }),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.reply",
            json!({ "threadId": "thr_00000000000000000000000000000000", "body": "x" }),
            "NOT_FOUND",
            None,
        ),
        (
            "comments.edit",
            json!({ "commentId": thread_id, "body": "x" }),
            "VALIDATION_ERROR",
            Some("commentId"),
        ),
        (
            "comments.edit",
            json!({ "commentId": comment_id, "body": "" }),
            "VALIDATION_ERROR",
            Some("body"),
        ),
        (
            "comments.edit",
            json!({ "commentId": comment_id, "metadata": 3 }),
            "VALIDATION_ERROR",
            Some("metadata"),
        ),
        (
            "comments.delete",
            json!({}),
            "VALIDATION_ERROR",
            Some("commentId"),
        ),
        (
            "comments.delete",
            json!({ "commentId": "cmt_00000000000000000000000000000000" }),
            "NOT_FOUND",
            None,
        ),
        (
            "comments.resolve",
            json!({ "thread_id": thread_id }),
            "VALIDATION_ERROR",
            Some("thread_id"),
        ),
        (
            "comments.react",
            json!({ "commentId": comment_id }),
            "VALIDATION_ERROR",
            Some("emoji"),
        ),
        (
            "comments.react",
            json!({ "commentId": comment_id, "emoji": ["👍"] }),
            "VALIDATION_ERROR",
            Some("emoji"),
        ),
        (
            "comments.getThread",
            json!({ "threadId": null }),
            "VALIDATION_ERROR",
            Some("threadId"),
        ),
        (
            "comments.list",
            json!({ "resolved": 1 }),
            "VALIDATION_ERROR",
            Some("resolved"),
        ),
    ];
    for (method, params, code, field) in cases {
        let error = alice.request(method, params.clone()).await;
        let error = error.expect_err(&format!("{method} {params} fails"));
        assert_eq!(error["code"], code, "{method} {params}: {error}");
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{method} {params}: {error}");
        }
    }
    // Without params at all, or null: the method's own rules apply.
    alice
        .send_json(json!({ "type": "req", "id": "no-params", "method": "comments.list" }))
        .await;
    let frame = next_non_event(&mut alice).await;
    assert_eq!(
        (frame["id"].clone(), frame["ok"].clone()),
        (json!("no-params"), json!(true))
    );
    assert_eq!(frame["result"]["total"], 1);
    // A failing notification comes back as an error frame.
    alice
        .notify("comments.createThread", json!({ "body": "" }))
        .await;
    let frame = next_non_event(&mut alice).await;
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["error"]["field"], "body");

    // Nothing was stored or sent, and both sockets still work.
    bob.expect_no_event("threadCreated", QUIET).await;
    bob.expect_no_event("commentCreated", QUIET).await;
    let stored = get_thread(&mut bob, &thread_id).await.unwrap();
    assert_eq!(stored, thread);
    let second = create_thread(&mut alice, "Still alive").await;
    assert_eq!(bob.event("threadCreated").await["thread"], second);
}

/// The next frame that is not an event (such as `userJoined`, sent when the other joined).
async fn next_non_event(socket: &mut Socket) -> Value {
    loop {
        let frame = socket.next_frame().await.expect("a frame");
        if frame["type"] != "event" {
            return frame;
        }
    }
}
