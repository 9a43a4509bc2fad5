//! `GET /v1/openapi.json`: served without credentials, and every operation it lists is a route
//! the running server answers (the other direction, every route of the server in the
//! document, is the unit test in `http::openapi`); the documented 401 is the real one.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{both_backends, Backend, TestApp};

both_backends!(the_document_is_served_and_every_operation_is_routed);

/// Stands in for every path parameter but the account: well-formed, and nothing has it.
const ABSENT_ID: &str = "00000000-0000-4000-8000-000000000000";

/// `path` with the account's ID and `ABSENT_ID` in its parameters.
fn concrete(path: &str, account_id: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("a closed parameter") + start;
        out.push_str(&rest[..start]);
        out.push_str(match &rest[start + 1..end] {
            "accountId" => account_id,
            _ => ABSENT_ID,
        });
        rest = &rest[end + 1..];
    }
    out + rest
}

async fn the_document_is_served_and_every_operation_is_routed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let reply = app
        .client
        .get(format!("{}/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK, "no credentials needed");
    assert_eq!(reply.headers()["content-type"], "application/json");
    let document: Value = reply.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "collabkit_session");

    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = format!("{}{}", app.base, concrete(path, &account.id));
            let mut request = app
                .client
                .request(method.clone(), &url)
                .bearer_auth(&account.token);
            let body = &operation["requestBody"]["content"];
            if body.get("application/json").is_some() {
                request = request.json(&serde_json::json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {text}"
            );
            assert!(
                !(status == StatusCode::NOT_FOUND && text.contains("Route not found")),
                "{method} {path} is documented but not routed: {text}"
            );
            let documented = &operation["responses"][status.as_str()];
            assert!(
                !documented.is_null(),
                "{method} {path} answered {status}, which it does not document: {text}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 45, "{operations} operations");

    let example = &document["components"]["responses"]["Unauthorized"]["content"]
        ["application/json"]["example"];
    let real = app
        .call(
            Method::GET,
            &format!("/v1/accounts/{}/rooms", account.id),
            None,
        )
        .await;
    real.expect(StatusCode::UNAUTHORIZED);
    for field in ["type", "success", "description", "data", "error"] {
        assert_eq!(example[field], real.body[field], "{field}");
    }
}
