//! `GET /rooms/:roomId` from the node's memory: every change to the room or its users shows
//! in the next read, on the node that made it at once, and on another node sharing the
//! database as soon as the database tells it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use collabkit::domain::{AccountId, RoomId};
use collabkit::store::{ListFilter, Page};

use crate::harness::{both_backends, eventually, test_config, Backend, TestAccount, TestApp};
use crate::realtime::token;
use crate::socket::Socket;

both_backends!(every_change_shows_in_the_next_room_read);

/// The room as `GET /rooms/:roomId` answers now.
async fn read(account: &TestAccount, room_id: &str) -> Value {
    let reply = account.get(&format!("/rooms/{room_id}")).await;
    reply.expect(StatusCode::OK);
    reply.data().clone()
}

/// Whether the node keeps the room's first page in memory.
fn kept(app: &TestApp, account: &TestAccount, room_id: &str) -> bool {
    let account_id: AccountId = account.id.parse().unwrap();
    let room_id: RoomId = room_id.parse().unwrap();
    let page = Page {
        limit: Page::DEFAULT_LIMIT,
        offset: 0,
    };
    app.state
        .engine()
        .room_reads()
        .get(account_id, room_id, &ListFilter::default(), page)
        .is_some()
}

fn names(room: &Value) -> Vec<&str> {
    let users = room["users"].as_array().unwrap();
    users.iter().map(|u| u["name"].as_str().unwrap()).collect()
}

async fn every_change_shows_in_the_next_room_read(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("before").await;
    let room_id = room["id"].as_str().unwrap();
    let ann = account.user(room_id, "Ann").await;
    let ann_id = ann["user"]["id"].as_str().unwrap();
    assert_eq!(names(&read(&account, room_id).await), ["Ann"]);
    // One node alone keeps the answer at once; PostgreSQL, once it listens for changes.
    let listening = eventually(Duration::from_secs(5), || async {
        read(&account, room_id).await;
        kept(&app, &account, room_id)
    })
    .await;
    assert!(listening, "the room's answer is never kept");

    account
        .patch(&format!("/rooms/{room_id}"), json!({ "name": "after" }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(read(&account, room_id).await["room"]["name"], "after");

    account.user(room_id, "Bob").await;
    let room = read(&account, room_id).await;
    assert_eq!(room["usersTotal"], 2);
    assert_eq!(room["room"]["total_users_created"], 2);

    let path = format!("/users/{ann_id}?roomId={room_id}");
    account
        .patch(&path, json!({ "name": "Anna" }))
        .await
        .expect(StatusCode::OK);
    assert!(names(&read(&account, room_id).await).contains(&"Anna"));

    // Joining is answered once the room's answers are gone: online right away.
    let (socket, _) = Socket::join(&app.base, token(&ann)).await;
    let room = read(&account, room_id).await;
    assert_eq!(room["room"]["active_participants"], 1);
    let anna = room["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == ann_id)
        .cloned();
    assert_eq!(anna.unwrap()["status"], "online");
    socket.close().await;
    let offline = eventually(Duration::from_secs(5), || async {
        read(&account, room_id).await["room"]["active_participants"] == 0
    })
    .await;
    assert!(offline, "the leave never showed");

    account.delete(&path).await.expect(StatusCode::OK);
    assert_eq!(names(&read(&account, room_id).await), ["Bob"]);
    // Another account never reads it, kept or not.
    let other = app.account().await;
    other
        .get(&format!("/rooms/{room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect(StatusCode::OK);
    account
        .get(&format!("/rooms/{room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

/// Two nodes on one PostgreSQL database: what one changes, the other's next reads show,
/// though it kept the room's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_another_node_reaches_the_room_read() {
    let a = TestApp::start(Backend::Postgres).await;
    let mut config = test_config(&a.db);
    config.realtime.node_id = "room-reads-b".to_owned();
    let b = TestApp::start_on(a.db.share(), config).await;
    let account = a.account().await;
    let on_b = TestAccount::rebase(&account, &b);
    let room = account.room("shared").await;
    let room_id = room["id"].as_str().unwrap();
    let kept_on_a = eventually(Duration::from_secs(5), || async {
        read(&account, room_id).await;
        kept(&a, &account, room_id)
    })
    .await;
    assert!(kept_on_a, "node A never keeps the room's answer");

    on_b.user(room_id, "Made on B").await;
    let seen = eventually(Duration::from_secs(5), || async {
        read(&account, room_id).await["usersTotal"] == 1
    })
    .await;
    assert!(seen, "node A never showed the user created through B");
    assert!(kept(&a, &account, room_id), "node A keeps the new answer");
    on_b.patch(
        &format!("/rooms/{room_id}"),
        json!({ "name": "renamed on B" }),
    )
    .await
    .expect(StatusCode::OK);
    let seen = eventually(Duration::from_secs(5), || async {
        read(&account, room_id).await["room"]["name"] == "renamed on B"
    })
    .await;
    assert!(seen, "node A never showed the room renamed through B");
    let room = read(&account, room_id).await;
    assert_eq!(room["room"]["name"], "renamed on B");
    assert_eq!(names(&room), ["Made on B"]);
    b.stop().await;
    a.stop().await;
}
