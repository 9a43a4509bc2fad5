//! Rooms: the five documented endpoints plus PATCH and DELETE.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, TestAccount, TestApp};

both_backends!(
    creating_a_room_returns_the_documented_shape,
    custom_ids_are_unique_within_an_account,
    room_bodies_are_validated,
    listing_rooms_pages_through_them,
    limit_and_offset_are_bounded,
    search_matches_names_case_insensitively,
    from_and_to_filter_by_creation_time,
    getting_a_room_lists_its_users,
    rooms_are_found_by_custom_id,
    rooms_can_be_renamed_and_their_custom_id_changed,
    deleting_a_room_deletes_its_users,
    reconcile_recounts_active_participants,
);

/// ISO-8601 UTC with milliseconds: `2026-05-29T10:00:00.000Z`.
#[track_caller]
pub fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 24, "{text}");
    assert!(
        text.ends_with('Z') && bytes[10] == b'T' && bytes[19] == b'.',
        "{text}"
    );
}

#[track_caller]
fn assert_room_shape(room: &Value) {
    let mut keys: Vec<&str> = room
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account_id",
            "active_participants",
            "created_at",
            "custom_id",
            "duration_seconds",
            "id",
            "name",
            "state",
            "total_users_created"
        ]
    );
    assert_timestamp(&room["created_at"]);
    uuid::Uuid::parse_str(room["id"].as_str().unwrap()).expect("room id is a UUID");
}

fn ids(rooms: &Value) -> Vec<String> {
    rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn creating_a_room_returns_the_documented_shape(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let reply = account
        .post("/rooms", json!({ "name": "whiteboard/room-one" }))
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "Room created");
    let room = &reply.data()["room"];
    assert_room_shape(room);
    assert_eq!(room["account_id"], account.id.as_str());
    assert_eq!(room["name"], "whiteboard/room-one");
    assert_eq!(room["custom_id"], Value::Null);
    assert_eq!(room["state"], "active");
    assert_eq!(room["duration_seconds"], 0);
    assert_eq!(room["active_participants"], 0);
    assert_eq!(room["total_users_created"], 0);

    let reply = account
        .post(
            "/rooms",
            json!({ "name": "second", "customId": "my-room-1" }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.data()["room"]["custom_id"], "my-room-1");
    // `customId: null` is the same as leaving it out.
    let reply = account
        .post("/rooms", json!({ "name": "third", "customId": null }))
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.data()["room"]["custom_id"], Value::Null);
}

async fn custom_ids_are_unique_within_an_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let other = app.account().await;
    let body = json!({ "name": "a", "customId": "shared" });
    account
        .post("/rooms", body.clone())
        .await
        .expect(StatusCode::CREATED);
    let reply = account.post("/rooms", body.clone()).await;
    reply.expect_error(StatusCode::CONFLICT, "CONFLICT");
    assert_eq!(reply.body["error"]["module"], "Rooms");
    // Another account may use the same custom ID.
    other.post("/rooms", body).await.expect(StatusCode::CREATED);
    // The conflict lost nothing and added nothing.
    let list = account.get("/rooms").await;
    assert_eq!(list.data()["total"], 1);
}

async fn room_bodies_are_validated(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let cases = [
        (json!({}), "name"),
        (json!({ "name": null }), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": "   " }), "name"),
        (json!({ "name": 5 }), "name"),
        (json!({ "name": ["a"] }), "name"),
        (json!({ "name": "x".repeat(257) }), "name"),
        (json!({ "name": "ok", "customId": 7 }), "customId"),
        (json!({ "name": "ok", "customId": "" }), "customId"),
        (
            json!({ "name": "ok", "customId": "x".repeat(129) }),
            "customId",
        ),
        (json!({ "name": "ok", "colour": "red" }), "colour"),
    ];
    for (body, field) in cases {
        let reply = account.post("/rooms", body.clone()).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "the message names {field}: {:#}",
            reply.body
        );
        assert_eq!(reply.body["error"]["module"], "Rooms");
    }
    // Nothing was created by any of them.
    assert_eq!(account.get("/rooms").await.data()["total"], 0);
}

async fn create_rooms(account: &TestAccount, names: &[&str]) -> Vec<Value> {
    let mut rooms = Vec::new();
    for name in names {
        rooms.push(account.room(name).await);
        // Distinct creation milliseconds make the order and the date filters unambiguous.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    rooms
}

async fn listing_rooms_pages_through_them(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let other = app.account().await;
    other.room("not mine").await;
    let rooms = create_rooms(&account, &["r0", "r1", "r2", "r3", "r4"]).await;
    let newest_first: Vec<String> = rooms
        .iter()
        .rev()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    let reply = account.get("/rooms").await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Rooms retrieved");
    let data = reply.data();
    assert_eq!(
        (
            data["total"].clone(),
            data["limit"].clone(),
            data["offset"].clone()
        ),
        (json!(5), json!(50), json!(0))
    );
    assert_eq!(ids(&data["rooms"]), newest_first);
    for room in data["rooms"].as_array().unwrap() {
        assert_room_shape(room);
    }

    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let reply = account
            .get(&format!("/rooms?limit=2&offset={offset}"))
            .await;
        reply.expect(StatusCode::OK);
        assert_eq!(reply.data()["total"], 5);
        assert_eq!(reply.data()["limit"], 2);
        assert_eq!(reply.data()["offset"], offset);
        seen.extend(ids(&reply.data()["rooms"]));
    }
    assert_eq!(seen, newest_first);
    let past_the_end = account.get("/rooms?offset=5").await;
    past_the_end.expect(StatusCode::OK);
    assert_eq!(past_the_end.data()["rooms"], json!([]));
    assert_eq!(past_the_end.data()["total"], 5);
}

async fn limit_and_offset_are_bounded(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    create_rooms(&account, &["a", "b"]).await;
    for query in [
        "limit=100",
        "limit=1",
        "offset=0",
        "offset=9223372036854775807",
        "limit=%2010",
    ] {
        account
            .get(&format!("/rooms?{query}"))
            .await
            .expect(StatusCode::OK);
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=101", "limit"),
        ("limit=1000000", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
    ] {
        let reply = account.get(&format!("/rooms?{query}")).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field, "{query}");
    }
}

async fn search_matches_names_case_insensitively(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    create_rooms(
        &account,
        &[
            "Design Review",
            "design sync",
            "Standup",
            "100% done",
            "a_b",
            "École",
        ],
    )
    .await;
    let names = |reply: &crate::harness::Reply| -> Vec<String> {
        let mut names: Vec<String> = reply.data()["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let reply = account.get("/rooms?search=DESIGN").await;
    reply.expect(StatusCode::OK);
    assert_eq!(names(&reply), ["Design Review", "design sync"]);
    assert_eq!(reply.data()["total"], 2);
    assert_eq!(
        names(&account.get("/rooms?search=eSiGn%20r").await),
        ["Design Review"]
    );
    assert_eq!(names(&account.get("/rooms?search=up").await), ["Standup"]);
    // Wildcards are matched literally.
    assert_eq!(
        names(&account.get("/rooms?search=%25").await),
        ["100% done"]
    );
    assert_eq!(names(&account.get("/rooms?search=_").await), ["a_b"]);
    assert_eq!(
        names(&account.get("/rooms?search=zzz").await),
        Vec::<String>::new()
    );
    // Non-ASCII letters match as written on both databases (PostgreSQL folds their case too).
    assert_eq!(
        names(&account.get("/rooms?search=%C3%89co").await),
        ["École"]
    );
    assert_eq!(
        names(&account.get("/rooms?search=%C3%89COLE").await),
        ["École"]
    );
    // Search and paging combine.
    let reply = account.get("/rooms?search=design&limit=1").await;
    assert_eq!(reply.data()["total"], 2);
    assert_eq!(reply.data()["rooms"].as_array().unwrap().len(), 1);
}

async fn from_and_to_filter_by_creation_time(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let rooms = create_rooms(&account, &["r0", "r1", "r2", "r3"]).await;
    let created = |i: usize| rooms[i]["created_at"].as_str().unwrap().to_owned();
    let today = &created(0)[..10];
    let total = |path: String| {
        let account = account.clone();
        async move {
            let reply = account.get(&path).await;
            reply.expect(StatusCode::OK);
            reply.data()["total"].as_i64().unwrap()
        }
    };
    // Date-only bounds: `to` includes the whole day.
    assert_eq!(total(format!("/rooms?from={today}")).await, 4);
    assert_eq!(total(format!("/rooms?to={today}")).await, 4);
    assert_eq!(total(format!("/rooms?from={today}&to={today}")).await, 4);
    assert_eq!(total("/rooms?to=2000-01-01".to_owned()).await, 0);
    assert_eq!(total("/rooms?from=2999-01-01".to_owned()).await, 0);
    // Date-time bounds are inclusive at both ends.
    assert_eq!(total(format!("/rooms?from={}", created(1))).await, 3);
    assert_eq!(total(format!("/rooms?to={}", created(1))).await, 2);
    assert_eq!(
        total(format!("/rooms?from={}&to={}", created(1), created(2))).await,
        2
    );
    let reply = account
        .get(&format!("/rooms?from={}&to={}", created(2), created(2)))
        .await;
    assert_eq!(
        ids(&reply.data()["rooms"]),
        [rooms[2]["id"].as_str().unwrap()]
    );
    // An offset in the bound is honoured (`+` must be sent as %2B in a query string).
    let shifted = format!("{}T{}%2B01:00", &created(1)[..10], &created(1)[11..23]);
    let hour_later: i64 = total(format!("/rooms?from={shifted}")).await;
    assert!(
        hour_later == 4,
        "an hour-ahead offset names an earlier instant: {hour_later}"
    );

    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-45", "to"),
        ("from=1700000000", "from"),
    ] {
        let reply = account.get(&format!("/rooms?{query}")).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field);
    }
}

async fn getting_a_room_lists_its_users(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("with users").await;
    let room_id = room["id"].as_str().unwrap();
    let other_room = account.room("other").await;
    account
        .user(other_room["id"].as_str().unwrap(), "Elsewhere")
        .await;
    for name in ["Alice", "Bob", "Carol"] {
        account.user(room_id, name).await;
    }

    let reply = account.get(&format!("/rooms/{room_id}")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Room retrieved");
    let data = reply.data();
    assert_room_shape(&data["room"]);
    assert_eq!(data["room"]["total_users_created"], 3);
    assert_eq!(data["usersTotal"], 3);
    assert_eq!(
        (data["limit"].clone(), data["offset"].clone()),
        (json!(50), json!(0))
    );
    let users = data["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert!(
        users.iter().all(|u| u.get("token").is_none()),
        "no tokens in get-room"
    );
    assert!(users.iter().all(|u| u["room_id"] == room["id"]));

    let reply = account
        .get(&format!("/rooms/{room_id}?limit=1&offset=1&search=o"))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["usersTotal"], 2, "Bob and Carol match 'o'");
    assert_eq!(reply.data()["users"].as_array().unwrap().len(), 1);
    let reply = account
        .get(&format!("/rooms/{room_id}?to=2000-01-01"))
        .await;
    assert_eq!(reply.data()["usersTotal"], 0);

    for missing in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let reply = account.get(&format!("/rooms/{missing}")).await;
        reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
        assert_eq!(reply.body["error"]["message"], "Room not found");
        assert_eq!(reply.body["error"]["module"], "Rooms");
    }
    account
        .get(&format!("/rooms/{room_id}?limit=500"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
}

async fn rooms_are_found_by_custom_id(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let reply = account
        .post(
            "/rooms",
            json!({ "name": "custom", "customId": "my room/1" }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let room_id = reply.data()["room"]["id"].as_str().unwrap().to_owned();
    account.user(&room_id, "Alice").await;

    let reply = account.get("/rooms/custom/my%20room%2F1").await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Room retrieved");
    assert_eq!(reply.data()["room"]["id"], room_id.as_str());
    assert_eq!(reply.data()["usersTotal"], 1);
    assert_eq!(reply.data()["users"].as_array().unwrap().len(), 1);

    let reply = account.get("/rooms/custom/nope").await;
    reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // `custom` is not taken for a room ID, and a room ID is not a custom ID.
    account
        .get("/rooms/custom")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get(&format!("/rooms/custom/{room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // Another account cannot see it by custom ID.
    let other = app.account().await;
    other
        .get("/rooms/custom/my%20room%2F1")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn rooms_can_be_renamed_and_their_custom_id_changed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("before").await;
    let path = format!("/rooms/{}", room["id"].as_str().unwrap());
    account
        .post("/rooms", json!({ "name": "taken", "customId": "taken" }))
        .await
        .expect(StatusCode::CREATED);

    let reply = account
        .patch(&path, json!({ "name": "after", "customId": "c1" }))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Room updated");
    assert_room_shape(&reply.data()["room"]);
    assert_eq!(reply.data()["room"]["name"], "after");
    assert_eq!(reply.data()["room"]["custom_id"], "c1");
    assert_eq!(reply.data()["room"]["created_at"], room["created_at"]);

    let reply = account.patch(&path, json!({ "customId": null })).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["room"]["custom_id"], Value::Null);
    assert_eq!(reply.data()["room"]["name"], "after");

    account
        .patch(&path, json!({ "customId": "taken" }))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT");
    for (body, field) in [
        (json!({}), "body"),
        (json!({ "name": null }), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "state": "closed" }), "state"),
    ] {
        let reply = account.patch(&path, body).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field);
    }
    let reply = account.get(&path).await;
    assert_eq!(
        reply.data()["room"]["name"],
        "after",
        "failed updates changed nothing"
    );

    let missing = format!("/rooms/{}", uuid::Uuid::new_v4());
    account
        .patch(&missing, json!({ "name": "x" }))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn deleting_a_room_deletes_its_users(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("doomed").await;
    let keep = account.room("kept").await;
    let room_id = room["id"].as_str().unwrap();
    let keep_id = keep["id"].as_str().unwrap();
    let doomed_user = account.user(room_id, "Alice").await;
    let kept_user = account.user(keep_id, "Bob").await;

    let reply = account.delete(&format!("/rooms/{room_id}")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Room deleted");
    assert_eq!(reply.data()["id"], room_id);

    account
        .get(&format!("/rooms/{room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .delete(&format!("/rooms/{room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let user_id = doomed_user["user"]["id"].as_str().unwrap();
    account
        .get(&format!("/users/{user_id}?roomId={room_id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // The user is gone from the database, not only unreachable through the room.
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    let scope = collabkit::store::RoomScope {
        account_id: account.id.parse().unwrap(),
        room_id: room_id.parse().unwrap(),
    };
    assert!(store
        .get_user(scope, user_id.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    // The other room and its user are untouched.
    let kept_user_id = kept_user["user"]["id"].as_str().unwrap();
    account
        .get(&format!("/users/{kept_user_id}?roomId={keep_id}"))
        .await
        .expect(StatusCode::OK);
}

async fn reconcile_recounts_active_participants(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("recount").await;
    let room_id = room["id"].as_str().unwrap();
    let reply = account
        .post(&format!("/rooms/{room_id}/reconcile"), json!({}))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "OK");
    assert_room_shape(&reply.data()["room"]);
    assert_eq!(reply.data()["previous_active_participants"], 0);
    assert_eq!(reply.data()["reconciled_active_participants"], 0);

    // A counter that drifted (say, a node died with users online) is put right.
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    let scope = collabkit::store::RoomScope {
        account_id: account.id.parse().unwrap(),
        room_id: room_id.parse().unwrap(),
    };
    store.set_active_participants(scope, 7).await.unwrap();
    let reply = account
        .post(&format!("/rooms/{room_id}/reconcile"), json!({}))
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["previous_active_participants"], 7);
    assert_eq!(reply.data()["reconciled_active_participants"], 0);
    assert_eq!(reply.data()["room"]["active_participants"], 0);

    account
        .post(
            &format!("/rooms/{}/reconcile", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}
