//! The dashboard's workflow pages: the editor keeps code that does not parse and says where it
//! fails, a test run shows its execution at once (not recorded), real runs list with their
//! logs, and a workflow is enabled, disabled, edited and deleted.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::dashboard::{bearer, Browser};
use crate::harness::{both_backends, eventually, Backend, TestApp};

both_backends!(workflows_are_written_tested_and_read_from_the_dashboard);

async fn workflows_are_written_tested_and_read_from_the_dashboard(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut browser = Browser::new(&app);
    let (account_id, token) = browser.sign_up("owner@example.com", "Acme").await;
    let rest = |path: &str| format!("/v1/accounts/{account_id}{path}");

    // Code that does not parse comes back in the editor, with where it fails.
    let broken = "export default async function (event) {\n  return { ok: true ;\n}";
    let refused = browser
        .act(
            "/dashboard/workflows",
            &[
                ("name", "Greeter"),
                ("code", broken),
                ("events", "user.created"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(refused.text.contains("line 2, column"), "{}", refused.text);
    assert!(
        refused.text.contains("return { ok: true ;"),
        "the code is kept in the editor"
    );

    let code = "export default async function (event, { room }) {\n  console.log(\"hello from\", (await room.get()).name);\n  return { event: event.event };\n}";
    let created = browser
        .act(
            "/dashboard/workflows",
            &[
                ("name", "Greeter"),
                ("code", code),
                ("events", "user.created"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let path = created.location();
    let workflows = bearer(&app, &token, Method::GET, &rest("/workflows"), None).await;
    let workflow = workflows.data()["workflows"][0].clone();
    assert_eq!(workflow["code"], code);
    assert_eq!(workflow["events"], json!(["user.created"]));
    assert_eq!(
        path,
        format!("/dashboard/workflows/{}", workflow["id"].as_str().unwrap())
    );

    // A test run needs a room when the workflow is for every room; its execution shows at once.
    let no_room = browser.act(&format!("{path}/test"), &[]).await;
    assert_eq!(no_room.status, StatusCode::BAD_REQUEST);
    assert!(no_room.text.contains("Name the room"), "{}", no_room.text);
    let room = bearer(
        &app,
        &token,
        Method::POST,
        &rest("/rooms"),
        Some(json!({ "name": "Lobby" })),
    )
    .await;
    let room_id = room.data()["room"]["id"].as_str().unwrap().to_owned();
    let tested = browser
        .act(&format!("{path}/test"), &[("room", &room_id)])
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    assert!(tested.text.contains("Test run: success"), "{}", tested.text);
    assert!(
        tested.text.contains("[log] hello from Lobby"),
        "{}",
        tested.text
    );
    assert!(
        tested.text.contains("No runs yet."),
        "a test run is not recorded"
    );

    // A real event runs it; the page lists the execution with its logs.
    bearer(
        &app,
        &token,
        Method::POST,
        &rest("/users"),
        Some(json!({ "name": "Alice", "roomId": room_id })),
    )
    .await
    .expect(StatusCode::CREATED);
    // The page shows executions as they are recorded: wait for the record, then read it.
    let executions = rest(&format!(
        "/workflows/{}/executions",
        workflow["id"].as_str().unwrap()
    ));
    let listed = eventually(Duration::from_secs(20), || async {
        let reply = bearer(&app, &token, Method::GET, &executions, None).await;
        reply.data()["total"] == 1
    })
    .await;
    let page = browser.get(&path).await;
    assert!(listed, "{}", page.text);
    assert!(page.text.contains("[log] hello from Lobby"));
    assert!(
        page.text
            .contains("{&quot;event&quot;:&quot;user.created&quot;}"),
        "{}",
        page.text
    );

    // Disable, edit (a refused edit keeps the draft), delete.
    browser.act(&path, &[("toggle", "1")]).await;
    let id = workflow["id"].as_str().unwrap();
    let read = bearer(
        &app,
        &token,
        Method::GET,
        &rest(&format!("/workflows/{id}")),
        None,
    )
    .await;
    assert_eq!(read.data()["workflow"]["enabled"], false);
    let bad_edit = browser
        .act(
            &path,
            &[
                ("name", "Greeter"),
                ("code", "export default ("),
                ("events", "user.deleted"),
            ],
        )
        .await;
    assert_eq!(bad_edit.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_edit.text.contains("code does not parse: line 1"),
        "{}",
        bad_edit.text
    );
    let edited = browser
        .act(
            &path,
            &[
                ("name", "Farewell"),
                ("code", "export default async () => 1;"),
                ("events", "user.deleted"),
                ("room", &room_id),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.text);
    let read = bearer(
        &app,
        &token,
        Method::GET,
        &rest(&format!("/workflows/{id}")),
        None,
    )
    .await;
    assert_eq!(read.data()["workflow"]["name"], "Farewell");
    assert_eq!(read.data()["workflow"]["room_id"], room_id.as_str());
    let list = browser.get("/dashboard/workflows").await;
    assert!(list.text.contains("Farewell") && list.text.contains("disabled"));
    assert_eq!(
        browser.act(&format!("{path}/delete"), &[]).await.status,
        StatusCode::SEE_OTHER
    );
    let gone = bearer(
        &app,
        &token,
        Method::GET,
        &rest(&format!("/workflows/{id}")),
        None,
    )
    .await;
    gone.expect(StatusCode::NOT_FOUND);
}
