//! The first page of users a `room.join` answers with, which the room keeps in memory between
//! joins: every change since the last join shows in the next one (users coming online and
//! going offline, renamed, created, deleted, following), on a page cut by its count too, and
//! on one node of two sharing a database, the changes the other node made.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, eventually, test_config, Backend, TestApp};
use crate::realtime::{room_with_users, token, user_id};
use crate::socket::Socket;

both_backends!(
    each_join_shows_every_change_since_the_last,
    a_page_cut_by_its_count_shows_its_users_changes
);

/// `(name, status)` of each user of a join's first page, in order.
fn statuses(joined: &Value) -> Vec<(String, String)> {
    joined["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let name = u["name"].as_str().unwrap().to_owned();
            (name, u["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, status)| ((*name).to_owned(), (*status).to_owned()))
        .collect()
}

fn page_user<'a>(joined: &'a Value, id: &str) -> &'a Value {
    let users = joined["users"].as_array().unwrap();
    users.iter().find(|u| u["id"] == id).unwrap()
}

async fn each_join_shows_every_change_since_the_last(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Ann", "Bob", "Cid"]).await;
    let (ann, bob, cid) = (&users[0], &users[1], &users[2]);
    // Ann stays joined throughout: the room stays loaded, and its page kept.
    let (mut ann_socket, joined) = Socket::join(&app.base, token(ann)).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Ann", "online"), ("Bob", "offline"), ("Cid", "offline")])
    );

    let (bob_socket, joined) = Socket::join(&app.base, token(bob)).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Ann", "online"), ("Bob", "online"), ("Cid", "offline")])
    );
    bob_socket.close().await;
    ann_socket.event("userLeft").await;

    let cid_path = format!("/users/{}?roomId={room_id}", user_id(cid));
    account
        .patch(&cid_path, json!({ "name": "Cyd" }))
        .await
        .expect(StatusCode::OK);
    let dee = account.user(&room_id, "Dee").await;
    let (mut cid_socket, joined) = Socket::join(&app.base, token(cid)).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[
            ("Ann", "online"),
            ("Bob", "offline"),
            ("Cyd", "online"),
            ("Dee", "offline")
        ])
    );
    assert!(!page_user(&joined, user_id(bob))["left_at"].is_null());

    cid_socket
        .request("users.follow", json!({ "userId": user_id(ann) }))
        .await
        .expect("follow succeeds");
    let dee_path = format!("/users/{}?roomId={room_id}", user_id(&dee));
    account.delete(&dee_path).await.expect(StatusCode::OK);
    let (_bob_again, joined) = Socket::join(&app.base, token(bob)).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Ann", "online"), ("Bob", "online"), ("Cyd", "online")])
    );
    assert_eq!(
        page_user(&joined, user_id(cid))["following"],
        json!([user_id(ann)])
    );
    assert_eq!(
        page_user(&joined, user_id(ann))["followers"],
        json!([user_id(cid)])
    );
    cid_socket.close().await;
    ann_socket.close().await;
    app.stop().await;
}

async fn a_page_cut_by_its_count_shows_its_users_changes(backend: Backend) {
    let app = TestApp::start_with(backend, |config| config.realtime.page_users = 2).await;
    let account = app.account().await;
    let (room_id, users) = room_with_users(&account, &["Ann", "Bob", "Cid"]).await;
    let (_cid_socket, joined) = Socket::join(&app.base, token(&users[2])).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Ann", "offline"), ("Bob", "offline")])
    );
    assert!(joined["usersCursor"].is_string());

    let (_bob_socket, joined) = Socket::join(&app.base, token(&users[1])).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Ann", "offline"), ("Bob", "online")])
    );
    let ann_path = format!("/users/{}?roomId={room_id}", user_id(&users[0]));
    account
        .patch(&ann_path, json!({ "name": "Anna" }))
        .await
        .expect(StatusCode::OK);
    let (_ann_socket, joined) = Socket::join(&app.base, token(&users[0])).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Anna", "online"), ("Bob", "online")])
    );
    assert!(joined["usersCursor"].is_string());
    app.stop().await;
}

/// Two nodes on one PostgreSQL database: a user who comes online through B shows online in
/// the next join on A, though A kept the room's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_on_one_node_shows_who_came_online_on_another() {
    let a = TestApp::start(Backend::Postgres).await;
    let mut config = test_config(&a.db);
    config.realtime.node_id = "join-pages-b".to_owned();
    let b = TestApp::start_on(a.db.share(), config).await;
    let account = a.account().await;
    let (_, users) = room_with_users(&account, &["Ann", "Bob", "Cid"]).await;
    // A keeps the page once it listens for the database's changes.
    let listening = eventually(Duration::from_secs(5), || async {
        a.state.engine().room_reads().keeps()
    })
    .await;
    assert!(listening, "node A never listens for changes");
    let (_ann_socket, joined) = Socket::join(&a.base, token(&users[0])).await;
    assert_eq!(
        statuses(&joined),
        pairs(&[("Ann", "online"), ("Bob", "offline"), ("Cid", "offline")])
    );

    let (_bob_socket, _) = Socket::join(&b.base, token(&users[1])).await;
    // The database tells A of B's change soon after it commits; until then A may show the
    // page it kept, so Cid's join waits for it (each attempt joins a fresh socket).
    let shown = eventually(Duration::from_secs(5), || async {
        let (socket, joined) = Socket::join(&a.base, token(&users[2])).await;
        socket.close().await;
        statuses(&joined) == pairs(&[("Ann", "online"), ("Bob", "online"), ("Cid", "online")])
    })
    .await;
    assert!(
        shown,
        "a join on node A never showed Bob online through node B"
    );
    b.stop().await;
    a.stop().await;
}
