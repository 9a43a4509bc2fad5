//! The envelope on every answer, and bad input that never yields a 500.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{both_backends, eventually, test_config, Backend, Reply, TestApp};

both_backends!(
    probes_answer,
    unknown_routes_and_methods_answer_in_the_envelope,
    request_ids_are_echoed_or_made,
    bodies_over_the_limit_get_413,
    bad_input_never_yields_a_500,
);

async fn probes_answer(backend: Backend) {
    let app = TestApp::start(backend).await;
    let reply = app.call(Method::GET, "/healthz", None).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["status"], "ok");
    let reply = app.call(Method::GET, "/readyz", None).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["database"], "ok");
    assert_eq!(reply.data()["nodes"], 1);
    assert!(reply.data().get("warning").is_none());
}

/// Nothing relays room traffic between nodes yet: a node that shares the database with
/// another says so on `/readyz` (and logs it), and stops saying so once the other is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_tells_of_other_nodes_that_nothing_relays_to() {
    let fast = |config: &mut collabkit::config::Config| {
        config.realtime.node_heartbeat_ms = 100;
        config.realtime.node_timeout_ms = 2_000;
    };
    let a = TestApp::start_with(Backend::Postgres, fast).await;
    let mut config = test_config(&a.db);
    fast(&mut config);
    config.realtime.node_id = "readyz-b".to_owned();
    let b = TestApp::start_on(a.db.share(), config).await;

    // B saw A as it started; A sees B at its next look.
    let on_b = b.call(Method::GET, "/readyz", None).await;
    on_b.expect(StatusCode::OK);
    assert_eq!(on_b.data()["nodes"], 2);
    assert_eq!(on_b.data()["relay"], "none");
    assert!(on_b.data()["warning"]
        .as_str()
        .unwrap()
        .contains("nothing relays"));
    let a_sees_b = eventually(Duration::from_secs(5), || async {
        a.call(Method::GET, "/readyz", None).await.data()["nodes"] == 2
    })
    .await;
    assert!(a_sees_b, "node A never reported node B");

    b.stop().await;
    let a_alone = eventually(Duration::from_secs(5), || async {
        let reply = a.call(Method::GET, "/readyz", None).await;
        reply.data()["nodes"] == 1 && reply.data().get("warning").is_none()
    })
    .await;
    assert!(a_alone, "node A still reports a stopped node");
}

async fn unknown_routes_and_methods_answer_in_the_envelope(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    // `/` leads to the dashboard (tests/api/dashboard.rs).
    for path in [
        "/nope",
        "/dashboard/nope",
        "/v1",
        "/v1/accounts",
        &format!("/v1/accounts/{}/nothing", account.id),
    ] {
        let reply = app.call(Method::GET, path, None).await;
        reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let reply = account.send(account.request(Method::PUT, "/rooms")).await;
    reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    let reply = app.call(Method::POST, "/healthz", None).await;
    reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
}

async fn request_ids_are_echoed_or_made(backend: Backend) {
    let app = TestApp::start(backend).await;
    let request = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-abc-123");
    let reply = Reply::from(request.send().await.unwrap()).await;
    assert_eq!(reply.body["requestId"], "trace-abc-123");
    assert_eq!(reply.headers["x-request-id"], "trace-abc-123");
    let first = app.call(Method::GET, "/healthz", None).await;
    let second = app.call(Method::GET, "/healthz", None).await;
    assert_ne!(first.body["requestId"], second.body["requestId"]);
}

async fn bodies_over_the_limit_get_413(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.limits.max_body_bytes = 4096).await;
    let account = app.account().await;
    let body = json!({ "name": "x".repeat(5000) }).to_string();
    let request = account
        .request(Method::POST, "/rooms")
        .header("content-type", "application/json")
        .body(body);
    let reply = account.send(request).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("4096"));
    // A body streamed without a length is cut off at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(vec![b' '; 1024])).collect();
    let request = account
        .request(Method::POST, "/rooms")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
    let reply = account.send(request).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_eq!(account.get("/rooms").await.data()["total"], 0);
}

async fn bad_input_never_yields_a_500(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let room = account.room("target").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let user = account.user(&room_id, "Alice").await;
    let user_id = user["user"]["id"].as_str().unwrap().to_owned();

    let huge = vec![b'{'; 2 * 1024 * 1024];
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"{\"name\":".to_vec()),
        ("application/json", b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ("application/json", b"\xef\xbb\xbf{}".to_vec()),
        (
            "application/json",
            b"{\"name\": {\"deep\": [1, 2, {\"x\": null}]}}".to_vec(),
        ),
        ("application/json", b"{\"name\": 1e999}".to_vec()),
        (
            "application/json",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        ("application/json", huge),
        ("text/plain", b"name=x".to_vec()),
        ("application/x-www-form-urlencoded", b"name=x".to_vec()),
    ];
    let targets = [
        (Method::POST, "/rooms".to_owned()),
        (Method::PATCH, format!("/rooms/{room_id}")),
        (Method::POST, "/users".to_owned()),
        (Method::PATCH, format!("/users/{user_id}?roomId={room_id}")),
    ];
    for (method, path) in &targets {
        for (content_type, body) in &bodies {
            let request = account
                .request(method.clone(), path)
                .header("content-type", *content_type)
                .body(body.clone());
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let reply = Reply::from(response).await;
            assert!(
                reply.status.is_client_error(),
                "{method} {path} with {content_type} {:?}: {} {:#}",
                String::from_utf8_lossy(&body[..body.len().min(40)]),
                reply.status,
                reply.body
            );
            reply.assert_envelope();
        }
    }
    let paths = [
        "/rooms/%FF%FE".to_owned(),
        "/rooms/custom/%FF".to_owned(),
        "/rooms/%00".to_owned(),
        format!("/rooms/{}", "9".repeat(5000)),
        "/rooms?limit=-1".to_owned(),
        "/rooms?limit=1000000".to_owned(),
        "/rooms?offset=-5&limit=abc".to_owned(),
        "/rooms?search=%FF%FE".to_owned(),
        format!("/rooms?search={}", "a".repeat(300)),
        "/rooms?from=%FF".to_owned(),
        "/rooms?limit=1&limit=2&limit=".to_owned(),
        "/users?roomId=%FF".to_owned(),
        format!("/users/{user_id}?roomId=00000000-0000-0000-0000-000000000000"),
        format!("/users/%FF?roomId={room_id}"),
        "/keys/not-a-key".to_owned(),
    ];
    for path in paths {
        for method in [Method::GET, Method::DELETE] {
            let reply = account.send(account.request(method.clone(), &path)).await;
            assert!(
                reply.status.is_client_error() || reply.status.is_success(),
                "{method} {path}: {} {:#}",
                reply.status,
                reply.body
            );
            reply.assert_envelope();
        }
    }
    // The target room and user survived all of it.
    let reply = account.get(&format!("/rooms/{room_id}")).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.data()["room"]["name"], "target");
    assert_eq!(reply.data()["usersTotal"], 1);
}
