//! `webhooks` mode: events turned into signed deliveries to a receiver on loopback. Creates
//! users over REST (each makes a `user.created` event), and measures deliveries/s and the
//! delay from the REST call that caused an event to its delivery.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};

use crate::server::{Db, Server};
use crate::stats::Summary;

const SERVER_ENV: [(&str, &str); 2] = [
    ("COLLABKIT_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true"),
    ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0"),
];
/// REST calls in flight at once while making events.
const CONCURRENCY: usize = 16;
/// Longest wait for every delivery to arrive.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Arrivals: (when, which event by the user's name).
type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

async fn receive(State(arrivals): State<Arrivals>, body: axum::body::Bytes) -> StatusCode {
    let now = Instant::now();
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["user"]["name"].as_str().map(str::to_owned))
        .unwrap_or_default();
    arrivals.lock().unwrap().push((now, name));
    StatusCode::NO_CONTENT
}

pub async fn run(db: Db, events: usize, rate: usize) -> anyhow::Result<()> {
    let arrivals: Arrivals = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let server = Server::start(db, &SERVER_ENV).await?;
    let client = reqwest::Client::new();
    let room = server.create_room(&client, "webhook bench").await?;
    let reply = client
        .post(server.account_url("/webhooks"))
        .bearer_auth(&server.token)
        .json(&json!({ "url": receiver_url, "events": ["user.created"] }))
        .send()
        .await?;
    if !reply.status().is_success() {
        bail!("registering the webhook: {}", reply.status());
    }

    let started = Instant::now();
    let sent = make_events(&server, &client, &room, events, rate).await;
    let made = sent.len();
    let made_in = started.elapsed();

    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while arrivals.lock().unwrap().len() < made && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let sent: std::collections::HashMap<String, Instant> = sent.into_iter().collect();
    let delays: Vec<u64> = arrivals
        .iter()
        .filter_map(|(at, name)| {
            sent.get(name)
                .map(|s| at.duration_since(*s).as_micros() as u64)
        })
        .collect();
    let last = arrivals
        .iter()
        .map(|(at, _)| *at)
        .max()
        .context("nothing was delivered")?;
    let summary = Summary::from_samples(
        delays,
        made.saturating_sub(arrivals.len()),
        last.duration_since(started),
    );
    println!(
        "\n== webhooks on {} ({made} user.created events made over REST in {:.1} s ({}), {CONCURRENCY} at most at a time)",
        db.name(),
        made_in.as_secs_f64(),
        if rate > 0 { format!("{rate}/s") } else { "as fast as possible".to_owned() }
    );
    println!(
        "{:<14} {:>14} {:>14} {:>14} {:>10}",
        "delivered", "deliveries/s", "p50 delay ms", "p99 delay ms", "missing"
    );
    println!(
        "{:<14} {:>14.0} {:>14.1} {:>14.1} {:>10}",
        arrivals.len(),
        summary.per_second(),
        summary.percentile_ms(50.0),
        summary.percentile_ms(99.0),
        summary.failed
    );
    server.stop().await;
    receiver.abort();
    Ok(())
}

/// Makes `events` `user.created` events over REST (users `event-<i>` in `room`), at `rate` per
/// second (0: as fast as `CONCURRENCY` calls at a time go): for each one made, its user's name
/// and when its REST call started.
pub async fn make_events(
    server: &Server,
    client: &reqwest::Client,
    room: &str,
    events: usize,
    rate: usize,
) -> Vec<(String, Instant)> {
    let started = Instant::now();
    let sent: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::with_capacity(events)));
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..events {
        if rate > 0 {
            let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(at.into()).await;
        }
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (client, sent) = (client.clone(), sent.clone());
        let (url, token, room) = (
            server.account_url("/users"),
            server.token.clone(),
            room.to_owned(),
        );
        calls.spawn(async move {
            let name = format!("event-{i}");
            let at = Instant::now();
            let ok = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "name": name, "roomId": room }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                sent.lock().unwrap().push((name, at));
            }
            drop(permit);
        });
    }
    while calls.join_next().await.is_some() {}
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    sent
}
