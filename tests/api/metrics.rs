//! `GET /metrics`: Prometheus text that follows what happens — requests by route pattern
//! (never an id), sockets, workflow runs and webhook attempts — and nothing when disabled.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{both_backends, eventually, Backend, TestApp};
use crate::receiver::Receiver;
use crate::socket::Socket;

both_backends!(metrics_follow_requests_sockets_runs_and_deliveries);

pub(crate) async fn scrape(app: &TestApp) -> String {
    scrape_at(app, &app.base).await
}

/// `/metrics` at `base` (the app's own address, or the one of `metrics.bind`).
async fn scrape_at(app: &TestApp, base: &str) -> String {
    let reply = app
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    reply.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, as exposed).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics_follow_requests_sockets_runs_and_deliveries(backend: Backend) {
    let receiver = Receiver::start().await;
    let app = TestApp::start_with(backend, |config| {
        config.webhooks.allow_private_addresses = true;
        config.webhooks.poll_interval_ms = 50;
    })
    .await;
    let account = app.account().await;
    let room = account.room("metered").await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    account
        .post(
            "/webhooks",
            json!({ "url": receiver.url(), "events": ["user.created"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    account
        .post(
            "/workflows",
            json!({ "name": "m", "code": "export default async () => 1;", "events": ["user.created"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    for _ in 0..3 {
        account
            .get(&format!("/rooms/{room_id}"))
            .await
            .expect(StatusCode::OK);
    }
    let alice = account.user(&room_id, "Alice").await;
    let (socket, _) = Socket::join(&app.base, alice["token"].as_str().unwrap()).await;

    let counted = eventually(Duration::from_secs(20), || async {
        let text = scrape(&app).await;
        sample(&text, "collabkit_workflow_runs_total{status=\"success\"}") == Some(1.0)
            && sample(
                &text,
                "collabkit_webhook_attempts_total{outcome=\"delivered\"}",
            ) == Some(1.0)
    })
    .await;
    let text = scrape(&app).await;
    assert!(counted, "{text}");
    let room_reads = "collabkit_http_requests_total{method=\"GET\",route=\"/v1/accounts/{accountId}/rooms/{roomId}\",status=\"200\"}";
    assert_eq!(sample(&text, room_reads), Some(3.0), "{text}");
    assert!(text.contains("collabkit_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/accounts/{accountId}/rooms/{roomId}\",le=\"+Inf\"} 3"));
    assert_eq!(sample(&text, "collabkit_sockets_open"), Some(1.0));
    assert_eq!(sample(&text, "collabkit_sockets_joined"), Some(1.0));
    assert!(sample(&text, "collabkit_rooms_active").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "collabkit_webhook_deliveries_pending"),
        Some(0.0)
    );
    assert!(sample(&text, "collabkit_db_connections{state=\"idle\"}").is_some());
    assert_eq!(
        sample(
            &text,
            "collabkit_socket_requests_total{method=\"room.join\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The socket was sent its welcome and the answer to its join, counted by type once
    // written.
    let framed = eventually(Duration::from_secs(10), || async {
        let text = scrape(&app).await;
        sample(
            &text,
            "collabkit_socket_frames_sent_total{type=\"welcome\"}",
        ) == Some(1.0)
            && sample(&text, "collabkit_socket_frames_sent_total{type=\"res\"}")
                .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(framed, "{}", scrape(&app).await);
    // No label carries an id, a name or a key.
    for secret in [room_id.as_str(), account.id.as_str(), "Alice", "metered"] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
    // A path no route takes is counted as such, not by its text.
    account.get("/no/such/route/abc123").await;
    let text = scrape(&app).await;
    assert!(!text.contains("abc123"));
    assert!(
        text.contains("route=\"unmatched\",status=\"404\""),
        "{text}"
    );
    socket.close().await;
    let closed = eventually(Duration::from_secs(10), || async {
        sample(
            &scrape(&app).await,
            "collabkit_socket_closes_total{code=\"1000\"}",
        ) == Some(1.0)
    })
    .await;
    assert!(closed, "{}", scrape(&app).await);

    // On an address of its own: there, and nowhere else.
    let apart =
        TestApp::start_with(backend, |config| config.metrics.bind = "127.0.0.1:0".into()).await;
    apart
        .call(reqwest::Method::GET, "/healthz", None)
        .await
        .expect(StatusCode::OK);
    let own = apart.metrics_base.clone().expect("a metrics listener");
    let text = scrape_at(&apart, &own).await;
    let healthz = "collabkit_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}";
    assert_eq!(sample(&text, healthz), Some(1.0), "{text}");
    apart
        .call(reqwest::Method::GET, "/metrics", None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let api_there = apart
        .client
        .get(format!("{own}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_there.status(), StatusCode::NOT_FOUND);

    let off = TestApp::start_with(backend, |config| config.metrics.enabled = false).await;
    let reply = off
        .client
        .get(format!("{}/metrics", off.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
}
