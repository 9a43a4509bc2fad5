//! Users: the four documented endpoints plus PATCH and DELETE.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, TestApp};
use crate::rooms::assert_timestamp;

both_backends!(
    creating_a_user_returns_the_user_and_a_token,
    user_bodies_are_validated,
    custom_ids_are_unique_within_a_room,
    listing_users_needs_a_room_and_pages,
    getting_a_user_shows_token_and_sessions,
    users_are_found_by_custom_id,
    users_can_be_updated,
    users_can_be_deleted,
);

#[track_caller]
fn assert_user_shape(user: &Value, with_token: bool) {
    let mut keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = vec![
        "created_at",
        "custom_id",
        "id",
        "joined_at",
        "left_at",
        "name",
        "profile_picture",
        "room_id",
        "status",
    ];
    if with_token {
        expected.push("token");
        expected.sort_unstable();
    }
    assert_eq!(keys, expected);
    assert_timestamp(&user["created_at"]);
    assert!(["online", "offline"].contains(&user["status"].as_str().unwrap()));
}

async fn creating_a_user_returns_the_user_and_a_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let reply = account
        .post(
            "/users",
            json!({
                "name": "Alice", "roomId": room_id,
                "profilePicture": "https://example.com/alice.png", "customId": "alice-001"
            }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "User created");
    let user = &reply.data()["user"];
    assert_user_shape(user, false);
    assert_eq!(user["name"], "Alice");
    assert_eq!(user["room_id"], room_id);
    assert_eq!(user["profile_picture"], "https://example.com/alice.png");
    assert_eq!(user["custom_id"], "alice-001");
    assert_eq!(user["status"], "offline");
    assert_eq!(user["joined_at"], Value::Null);
    assert_eq!(user["left_at"], Value::Null);
    assert!(reply.data()["token"].as_str().unwrap().starts_with("eyJ"));

    // Every call makes a new user with a new ID and a new token.
    let again = account.user(room_id, "Alice").await;
    assert_ne!(again["user"]["id"], user["id"]);
    assert_ne!(again["token"], reply.data()["token"]);
    let room = account.get(&format!("/rooms/{room_id}")).await;
    assert_eq!(room.data()["room"]["total_users_created"], 2);
}

async fn user_bodies_are_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let cases = [
        (json!({ "roomId": room_id }), "name"),
        (json!({ "name": "A" }), "roomId"),
        (json!({ "name": "A", "roomId": "not-a-uuid" }), "roomId"),
        (json!({ "name": "A", "roomId": 12 }), "roomId"),
        (json!({ "name": 1, "roomId": room_id }), "name"),
        (
            json!({ "name": "A", "roomId": room_id, "profilePicture": "javascript:alert(1)" }),
            "profilePicture",
        ),
        (
            json!({ "name": "A", "roomId": room_id, "profilePicture": 3 }),
            "profilePicture",
        ),
        (
            json!({ "name": "A", "roomId": room_id, "customId": "" }),
            "customId",
        ),
        (
            json!({ "name": "A", "roomId": room_id, "role": "admin" }),
            "role",
        ),
    ];
    for (body, field) in cases {
        let reply = account.post("/users", body.clone()).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
        assert_eq!(reply.body["error"]["module"], "Users");
    }
    let unknown = json!({ "name": "A", "roomId": uuid::Uuid::new_v4() });
    let reply = account.post("/users", unknown).await;
    reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(reply.body["error"]["message"], "Room not found");
    // A room of another account is not found either.
    let other = app.account().await;
    let reply = other
        .post("/users", json!({ "name": "A", "roomId": room_id }))
        .await;
    reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let room = account.get(&format!("/rooms/{room_id}")).await;
    assert_eq!(
        room.data()["room"]["total_users_created"],
        0,
        "failures created nobody"
    );
    assert_eq!(room.data()["usersTotal"], 0);
}

async fn custom_ids_are_unique_within_a_room(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("one").await;
    let other_room = account.room("two").await;
    let body = |room: &Value| json!({ "name": "A", "roomId": room["id"], "customId": "dup" });
    account
        .post("/users", body(&room))
        .await
        .expect(StatusCode::CREATED);
    let reply = account.post("/users", body(&room)).await;
    reply.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert_eq!(reply.body["error"]["module"], "Users");
    account
        .post("/users", body(&other_room))
        .await
        .expect(StatusCode::CREATED);
    let reply = account
        .get(&format!("/rooms/{}", room["id"].as_str().unwrap()))
        .await;
    assert_eq!(reply.data()["usersTotal"], 1);
    assert_eq!(
        reply.data()["room"]["total_users_created"],
        1,
        "the conflict counted nobody"
    );
}

async fn listing_users_needs_a_room_and_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let mut created = Vec::new();
    for name in ["Alice", "Bob", "Carol", "Dave"] {
        created.push(account.user(room_id, name).await);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let reply = account.get(&format!("/users?roomId={room_id}")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Users retrieved");
    assert_eq!(reply.data()["total"], 4);
    assert_eq!(reply.data()["limit"], 50);
    assert_eq!(reply.data()["offset"], 0);
    let users = reply.data()["users"].as_array().unwrap();
    for user in users {
        assert_user_shape(user, true);
    }
    let names: Vec<&str> = users.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Dave", "Carol", "Bob", "Alice"], "newest first");
    // Each user's token is the one it was created with.
    let dave = &created[3];
    assert_eq!(users[0]["token"], dave["token"]);

    let reply = account
        .get(&format!("/users?roomId={room_id}&limit=3&offset=3"))
        .await;
    assert_eq!(reply.data()["users"].as_array().unwrap().len(), 1);
    assert_eq!(reply.data()["total"], 4);
    // Search: name or ID, case-insensitive.
    let reply = account
        .get(&format!("/users?roomId={room_id}&search=CAR"))
        .await;
    assert_eq!(reply.data()["total"], 1);
    let bob_id = created[1]["user"]["id"].as_str().unwrap();
    let reply = account
        .get(&format!("/users?roomId={room_id}&search={}", &bob_id[..13]))
        .await;
    assert_eq!(reply.data()["total"], 1);
    assert_eq!(reply.data()["users"][0]["id"], bob_id);

    let reply = account.get("/users").await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "roomId");
    let reply = account.get("/users?roomId=nope").await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let reply = account
        .get(&format!("/users?roomId={}", uuid::Uuid::new_v4()))
        .await;
    reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let reply = account
        .get(&format!("/users?roomId={room_id}&limit=-1"))
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
}

async fn getting_a_user_shows_token_and_sessions(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let created = account.user(room_id, "Alice").await;
    let user_id = created["user"]["id"].as_str().unwrap();

    let reply = account
        .get(&format!("/users/{user_id}?roomId={room_id}"))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "User retrieved");
    assert_user_shape(&reply.data()["user"], true);
    assert_eq!(reply.data()["user"]["token"], created["token"]);
    assert_eq!(reply.data()["sessions"], json!([]));

    let reply = account.get(&format!("/users/{user_id}")).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "roomId");
    let other_room = account.room("other").await;
    let reply = account
        .get(&format!(
            "/users/{user_id}?roomId={}",
            other_room["id"].as_str().unwrap()
        ))
        .await;
    reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(reply.body["error"]["message"], "User not found");
    for missing in [uuid::Uuid::new_v4().to_string(), "garbage".to_owned()] {
        account
            .get(&format!("/users/{missing}?roomId={room_id}"))
            .await
            .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
}

async fn users_are_found_by_custom_id(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let reply = account
        .post(
            "/users",
            json!({ "name": "Alice", "roomId": room_id, "customId": "alice-001" }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let reply = account
        .get(&format!("/users/custom/alice-001?roomId={room_id}"))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "User retrieved");
    assert_eq!(reply.data()["user"]["custom_id"], "alice-001");
    assert!(reply.data()["user"]["token"].is_string());
    assert_eq!(reply.data()["sessions"], json!([]));
    account
        .get(&format!("/users/custom/bob?roomId={room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get("/users/custom/alice-001")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
}

async fn users_can_be_updated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let created = account.user(room_id, "Alice").await;
    let user_id = created["user"]["id"].as_str().unwrap();
    account
        .post(
            "/users",
            json!({ "name": "Bob", "roomId": room_id, "customId": "bob" }),
        )
        .await
        .expect(StatusCode::CREATED);
    let path = format!("/users/{user_id}?roomId={room_id}");

    let reply = account
        .patch(
            &path,
            json!({ "name": "Alice B.", "profilePicture": "https://example.com/a.png", "customId": "alice" }),
        )
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "User updated");
    let user = &reply.data()["user"];
    assert_user_shape(user, false);
    assert_eq!(user["name"], "Alice B.");
    assert_eq!(user["profile_picture"], "https://example.com/a.png");
    assert_eq!(user["custom_id"], "alice");

    let reply = account
        .patch(&path, json!({ "profilePicture": null }))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["user"]["profile_picture"], Value::Null);
    assert_eq!(reply.data()["user"]["name"], "Alice B.");

    account
        .patch(&path, json!({ "customId": "bob" }))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    for (body, field) in [
        (json!({}), "body"),
        (json!({ "name": null }), "name"),
        (json!({ "status": "online" }), "status"),
        (json!({ "roomId": room_id }), "roomId"),
    ] {
        let reply = account.patch(&path, body).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field);
    }
    let reply = account.get(&path).await;
    assert_eq!(
        reply.data()["user"]["custom_id"],
        "alice",
        "failed updates changed nothing"
    );
    // The token does not change with an update.
    assert_eq!(reply.data()["user"]["token"], created["token"]);
    account
        .patch(
            &format!("/users/{}?roomId={room_id}", uuid::Uuid::new_v4()),
            json!({ "name": "x" }),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn users_can_be_deleted(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("room").await;
    let room_id = room["id"].as_str().unwrap();
    let created = account.user(room_id, "Alice").await;
    let user_id = created["user"]["id"].as_str().unwrap();
    let path = format!("/users/{user_id}?roomId={room_id}");

    account
        .delete(&format!("/users/{user_id}"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let reply = account.delete(&path).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "User deleted");
    assert_eq!(reply.data()["id"], user_id);
    account
        .get(&path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .delete(&path)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let reply = account.get(&format!("/rooms/{room_id}")).await;
    assert_eq!(reply.data()["usersTotal"], 0);
    assert_eq!(
        reply.data()["room"]["total_users_created"],
        1,
        "a counter of users ever created"
    );
}
