//! The real router and its extractors, called in-process (`oneshot`), without a network: the
//! envelope on every kind of failure the extractors produce, on both databases.

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::harness::{both_backends, test_config, Backend, TestApp, TestDatabase};

both_backends!(extractors_answer_in_the_envelope);

/// The app's router on a fresh database, with an account's Bearer token and ID.
async fn router(backend: Backend) -> (axum::Router, String, String, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    let config = test_config(&db);
    let state = collabkit::app::build_state(config, 0).await.unwrap();
    let router = collabkit::app::router(state);
    let account = TestApp::account_in(&db).await;
    (router, account.0, account.1, db)
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).expect("a JSON envelope");
    assert_eq!(body["type"], "response", "{body}");
    assert_eq!(body["requestId"], id);
    assert_eq!(body["success"], status.is_success());
    (status, body)
}

async fn extractors_answer_in_the_envelope(backend: Backend) {
    let (router, account_id, token, _db) = router(backend).await;
    let url = |path: &str| format!("/v1/accounts/{account_id}{path}");
    let bearer = format!("Bearer {token}");
    let authed = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(url(path))
            .header(header::AUTHORIZATION, bearer.clone())
    };
    // Routes and methods.
    let (status, body) = call(&router, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, _) = call(
        &router,
        authed("PUT", "/rooms").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Credentials.
    let request = Request::get(url("/rooms")).body(Body::empty()).unwrap();
    let (status, body) = call(&router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["module"], "Auth");
    // JSON bodies.
    let post = |content_type: &str, body: &str| {
        authed("POST", "/rooms")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    for (content_type, text, status, code, field) in [
        (
            "text/plain",
            "{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
        (
            "application/json",
            "{",
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            None,
        ),
        (
            "application/json",
            "[1]",
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            None,
        ),
        (
            "application/json",
            r#"{"nmae":"x"}"#,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("nmae"),
        ),
        (
            "application/json",
            r#"{"name":5}"#,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("name"),
        ),
        (
            "application/json",
            r#"{"name":"a\u0000"}"#,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("name"),
        ),
        (
            "application/json",
            r#"{"name":"\ud800"}"#,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            None,
        ),
    ] {
        let (got, body) = call(&router, post(content_type, text)).await;
        assert_eq!(got, status, "{text}: {body}");
        assert_eq!(body["error"]["code"], code, "{text}");
        assert_eq!(body["error"]["field"].as_str(), field, "{text}");
    }
    let (status, body) = call(&router, post("application/json", r#"{"name":"ok"}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Query and path parameters.
    for (path, code, field) in [
        ("/rooms?limit=0", "VALIDATION_ERROR", Some("limit")),
        ("/rooms?offset=-1", "VALIDATION_ERROR", Some("offset")),
        ("/rooms?from=yesterday", "VALIDATION_ERROR", Some("from")),
        ("/rooms?search=%00", "VALIDATION_ERROR", Some("search")),
        ("/rooms/not-a-room", "NOT_FOUND", None),
        ("/rooms/custom/%00", "NOT_FOUND", None),
    ] {
        let (_, body) = call(&router, authed("GET", path).body(Body::empty()).unwrap()).await;
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(body["error"]["field"].as_str(), field, "{path}");
    }
}
