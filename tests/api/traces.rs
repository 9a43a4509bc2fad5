//! Traces: with `traces.otlp_endpoint` set, the server's request and socket spans reach an
//! OTLP/HTTP receiver (this test's own), as OpenTelemetry JSON, children under their parents.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use serde_json::{json, Value};

use crate::cli::ServerProcess;
use crate::harness::{eventually, Backend};

/// Every span received, flattened out of its batch.
type Spans = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| async move {
            let body: Value = serde_json::from_slice(&body).expect("OTLP JSON");
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                assert_eq!(
                    resource["resource"]["attributes"][0],
                    json!({ "key": "service.name", "value": { "stringValue": "collabkit-test" } })
                );
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    let batch = scope["spans"].as_array().cloned().unwrap_or_default();
                    kept.lock().unwrap().extend(batch);
                }
            }
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_socket_spans_reach_an_otlp_receiver() {
    let (url, spans) = receiver().await;
    let server = ServerProcess::start_with(
        Backend::Sqlite,
        &[
            ("COLLABKIT_TRACES_OTLP_ENDPOINT", url.as_str()),
            ("COLLABKIT_TRACES_SERVICE_NAME", "collabkit-test"),
        ],
    )
    .await;
    let room = server.post("/rooms", json!({ "name": "traced" })).await;
    let room_id = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let user = server
        .post("/users", json!({ "name": "Alice", "roomId": room_id }))
        .await;
    let (socket, _) =
        crate::socket::Socket::join(&server.base, user["data"]["token"].as_str().unwrap()).await;
    socket.close().await;

    let rooms_path = server.url("/rooms");
    let rooms_path = rooms_path.trim_start_matches(&server.base).to_owned();
    let arrived = eventually(Duration::from_secs(15), || {
        let spans = spans.lock().unwrap().clone();
        let rooms_path = rooms_path.clone();
        async move {
            let request = spans.iter().any(|span| {
                span["name"] == "request" && attribute(span, "path") == Some(rooms_path.as_str())
            });
            let socket = spans
                .iter()
                .any(|span| span["name"] == "socket" && attribute(span, "room").is_some());
            request && socket
        }
    })
    .await;
    let spans = spans.lock().unwrap().clone();
    assert!(arrived, "{spans:#?}");
    let request = spans
        .iter()
        .find(|span| span["name"] == "request" && attribute(span, "method") == Some("POST"))
        .unwrap();
    assert_eq!(request["kind"], 2, "a server span");
    let trace_id = request["traceId"].as_str().unwrap();
    assert!(trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(request["spanId"].as_str().unwrap().len(), 16);
    let start: u128 = request["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = request["endTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(end >= start && start > 1_600_000_000_000_000_000);
    let socket = spans.iter().find(|span| span["name"] == "socket").unwrap();
    assert_eq!(attribute(socket, "room"), Some(room_id.as_str()));
    // Children carry their root's trace: each child names a parent of the same trace.
    for child in spans
        .iter()
        .filter(|span| span.get("parentSpanId").is_some())
    {
        let parent = spans
            .iter()
            .find(|span| span["spanId"] == child["parentSpanId"]);
        if let Some(parent) = parent {
            assert_eq!(parent["traceId"], child["traceId"], "{child:#}");
        }
    }
}
