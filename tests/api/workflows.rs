//! Workflows over REST (docs/workflows.md): the documented endpoints and objects, the added
//! list and delete, validation, limits and scoping, on both databases.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{both_backends, Backend, TestApp};

both_backends!(
    the_documented_example_is_created_read_changed_and_deleted,
    bad_workflows_are_refused_with_the_field_at_fault,
    executions_of_a_workflow_are_paged_and_scoped,
);

/// The example of the contract (integrations.md, Workflows), verbatim.
pub const EXAMPLE: &str = r#"export default async function (event, { store, room, files }) {
  console.log(`User ${event.data.userId} joined room ${event.data.roomId}`);
  return { success: true };
}
"#;

fn keys(object: &Value) -> Vec<&str> {
    object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

async fn the_documented_example_is_created_read_changed_and_deleted(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("lobby").await;
    let room_id = room["id"].as_str().unwrap();
    let reply = account
        .post(
            "/workflows",
            json!({ "name": "Log joins", "code": EXAMPLE, "events": ["participant.joined"], "roomId": room_id }),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.body["description"], "Workflow created");
    let workflow = reply.data()["workflow"].clone();
    assert_eq!(
        keys(&workflow),
        [
            "id",
            "organization_id",
            "name",
            "code",
            "events",
            "room_id",
            "enabled",
            "created_at",
            "updated_at"
        ]
    );
    let id = workflow["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wf_") && id.len() == 35, "{id}");
    assert_eq!(workflow["code"], EXAMPLE);
    assert_eq!(workflow["events"], json!(["participant.joined"]));
    assert_eq!(workflow["room_id"], room_id);
    assert_eq!(workflow["enabled"], true);

    let read = account.get(&format!("/workflows/{id}")).await;
    read.expect(StatusCode::OK);
    assert_eq!(read.body["description"], "Workflow retrieved");
    assert_eq!(read.data()["workflow"], workflow);

    // Every field can change; roomId null means every room.
    let patch = json!({
        "name": "Log everything", "code": "export default async () => 2;",
        "events": ["user.created", "session.closed"], "roomId": null, "enabled": false
    });
    let updated = account.patch(&format!("/workflows/{id}"), patch).await;
    updated.expect(StatusCode::OK);
    assert_eq!(updated.body["description"], "Workflow updated");
    let changed = &updated.data()["workflow"];
    assert_eq!(changed["name"], "Log everything");
    assert_eq!(changed["code"], "export default async () => 2;");
    assert_eq!(changed["events"], json!(["user.created", "session.closed"]));
    assert_eq!(changed["room_id"], Value::Null);
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["created_at"], workflow["created_at"]);

    // The added list (newest first, searched by name) and delete.
    account
        .post(
            "/workflows",
            json!({ "name": "Other", "code": EXAMPLE, "events": ["user.deleted"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let listed = account.get("/workflows?search=everything").await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.body["description"], "Workflows retrieved");
    assert_eq!(listed.data()["total"], 1);
    assert_eq!(listed.data()["workflows"][0]["id"], id.as_str());
    assert_eq!(account.get("/workflows").await.data()["total"], 2);
    let deleted = account.delete(&format!("/workflows/{id}")).await;
    deleted.expect(StatusCode::OK);
    assert_eq!(deleted.data()["id"], id.as_str());
    account
        .get(&format!("/workflows/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .delete(&format!("/workflows/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn bad_workflows_are_refused_with_the_field_at_fault(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.workflows.max_code_bytes = 200;
        config.workflows.max_workflows_per_account = 1;
    })
    .await;
    let account = app.account().await;
    let valid = json!({ "name": "ok", "code": "export default async () => 1;", "events": ["user.created"] });
    let refused = |mut change: Value, field: &'static str| {
        let mut body = valid.clone();
        body.as_object_mut()
            .unwrap()
            .append(change.as_object_mut().unwrap());
        let account = &account;
        async move {
            let reply = account.post("/workflows", body).await;
            reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
            assert_eq!(reply.body["error"]["field"], field, "{:?}", reply.body);
        }
    };
    refused(json!({ "name": "  " }), "name").await;
    refused(json!({ "code": "" }), "code").await;
    refused(json!({ "code": "x".repeat(201) }), "code").await;
    refused(json!({ "events": [] }), "events").await;
    refused(json!({ "events": ["user.exploded"] }), "events").await;
    refused(json!({ "roomId": "not-a-uuid" }), "roomId").await;
    for missing in ["name", "code", "events"] {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(missing);
        let reply = account.post("/workflows", body).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], missing);
    }
    // A room of another account is not found; an unknown field is named.
    let other = app.account().await;
    let theirs = other.room("theirs").await;
    let mut body = valid.clone();
    body["roomId"] = theirs["id"].clone();
    account
        .post("/workflows", body)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let mut body = valid.clone();
    body["language"] = json!("python");
    let reply = account.post("/workflows", body).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "language");
    assert_eq!(reply.body["error"]["module"], "Workflows");

    // One workflow fits the account; a second does not.
    let created = account.post("/workflows", valid.clone()).await;
    created.expect(StatusCode::CREATED);
    let reply = account.post("/workflows", valid.clone()).await;
    reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert_eq!(reply.body["error"]["field"], "name");

    // PATCH: at least one field, none null but roomId.
    let path = format!(
        "/workflows/{}",
        created.data()["workflow"]["id"].as_str().unwrap()
    );
    account
        .patch(&path, json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    for field in ["name", "code", "events", "enabled"] {
        let reply = account.patch(&path, json!({ field: null })).await;
        reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert_eq!(reply.body["error"]["field"], field);
    }
    let reply = account
        .patch(&path, json!({ "code": "y".repeat(201) }))
        .await;
    assert_eq!(reply.body["error"]["field"], "code");
}

async fn executions_of_a_workflow_are_paged_and_scoped(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let created = account
        .post(
            "/workflows",
            json!({ "name": "n", "code": EXAMPLE, "events": ["session.started"] }),
        )
        .await;
    let id = created.data()["workflow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = account.get(&format!("/workflows/{id}/executions")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.body["description"], "Executions retrieved");
    assert_eq!(
        reply.data(),
        &json!({ "executions": [], "total": 0, "limit": 50, "offset": 0 })
    );
    account
        .get(&format!("/workflows/{id}/executions?limit=101"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let other = app.account().await;
    other
        .get(&format!("/workflows/{id}/executions"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    other
        .get(&format!("/workflows/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    account
        .get("/workflows/wf_nothing/executions")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}
