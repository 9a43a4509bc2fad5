//! `workflows` mode: customer code run on room events in the server's worker pool
//! (docs/workflows.md). Measures, per database: executions/s of a trivial workflow and of one
//! that reads a store entry and `fetch`es a receiver on loopback, with the delay from the REST
//! call that made each event to the end of its run (the execution's start plus its duration,
//! on the server's clock, which is this machine's); then `/healthz` and presence latency with
//! the pool idle and with it saturated by slow runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use axum::http::StatusCode;
use axum::routing::post;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::presence::{Live, Load, Measurement, Protocol, SetupFailures, Target};
use crate::server::{Db, Server};
use crate::stats::Summary;
use crate::webhooks::make_events;
use crate::ws::{create_users, realtime_url, rest_client, SETUP_CONCURRENCY};
use crate::wsclient::{self, After, SetupError};
use crate::Options;

const SERVER_ENV: [(&str, &str); 7] = [
    ("COLLABKIT_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true"),
    ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0"),
    (
        "COLLABKIT_WORKFLOWS_MAX_RUNS_PER_MINUTE_PER_ACCOUNT",
        "1000000",
    ),
    ("COLLABKIT_WORKFLOWS_MAX_CONCURRENT_RUNS_PER_ACCOUNT", "64"),
    ("COLLABKIT_REALTIME_MESSAGES_PER_SECOND", "1000"),
    ("COLLABKIT_REALTIME_MESSAGE_BURST", "1000"),
    ("COLLABKIT_REALTIME_MAX_CONNECTIONS_PER_ROOM", "100000"),
];
/// Longest wait for every run of a batch to be recorded.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Time the slow workflow keeps its worker busy, per run.
const SLOW_RUN_MS: u64 = 100;
/// Time between two `/healthz` probes.
const PROBE_EVERY: Duration = Duration::from_millis(50);

const TRIVIAL: &str = "export default async function (event) { return event.user.name; }";

fn store_and_fetch(receiver: &str) -> String {
    format!(
        r#"export default async function (event, {{ store }}) {{
  const task = await store.get("tasks", "a");
  const response = await fetch("{receiver}", {{
    method: "POST",
    headers: {{ "content-type": "application/json" }},
    body: JSON.stringify({{ user: event.user.name, task: task.title }}),
  }});
  if (!response.ok) throw new Error("receiver said " + response.status);
  return event.user.name;
}}"#
    )
}

fn slow() -> String {
    format!(
        "export default async function (event) {{ const end = Date.now() + {SLOW_RUN_MS}; \
         while (Date.now() < end) {{}} return event.user.name; }}"
    )
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let received = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { StatusCode::NO_CONTENT }
        }),
    );
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    for &db in &options.dbs {
        let server = Server::start(db, &SERVER_ENV).await?;
        let measured = measure(&server, db, options, &receiver_url).await;
        server.stop().await;
        measured?;
    }
    println!(
        "(the receiver got {} requests)",
        received.load(Ordering::Relaxed)
    );
    receiver.abort();
    Ok(())
}

async fn measure(server: &Server, db: Db, options: &Options, receiver: &str) -> anyhow::Result<()> {
    let client = rest_client()?;
    let room = server.create_room(&client, "workflow bench").await?;
    let call = |method: reqwest::Method, path: &str, body: Value| {
        client
            .request(method, server.account_url(path))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
    };
    let schema = json!({ "schema": { "title": { "type": "string", "required": true } } });
    call(reqwest::Method::PUT, "/stores/tasks", schema)
        .await?
        .error_for_status()?;
    let entry = json!({ "value": { "title": "ship it" } });
    call(
        reqwest::Method::PUT,
        &format!("/rooms/{room}/stores/tasks/a"),
        entry,
    )
    .await?
    .error_for_status()?;

    println!(
        "\n== workflows on {} ({} user.created events a batch, made over REST {}; the server's default 2 workers)",
        db.name(),
        options.events,
        if options.rate > 0 { format!("at {}/s", options.rate) } else { "as fast as possible".to_owned() }
    );
    println!(
        "{:<16} {:>11} {:>13} {:>13} {:>13} {:>8}",
        "workflow", "executions", "executions/s", "p50 delay ms", "p99 delay ms", "failed"
    );
    for (name, code) in [
        ("trivial", TRIVIAL.to_owned()),
        ("store + fetch", store_and_fetch(receiver)),
    ] {
        let workflow = create_workflow(server, &client, &room, &code).await?;
        let batch = batch(
            server,
            &client,
            &room,
            &workflow,
            options.events,
            options.rate,
        )
        .await?;
        println!(
            "{name:<16} {:>11} {:>13.0} {:>13.1} {:>13.1} {:>8}",
            batch.summary.completed,
            batch.summary.per_second(),
            batch.summary.percentile_ms(50.0),
            batch.summary.percentile_ms(99.0),
            batch.failed
        );
        call(
            reqwest::Method::PATCH,
            &format!("/workflows/{workflow}"),
            json!({ "enabled": false }),
        )
        .await?
        .error_for_status()?;
    }

    // Presence and /healthz with the pool idle, then saturated by a flood of slow runs.
    let load = Load {
        clients: options.clients[0],
        moving: options
            .moving
            .unwrap_or(options.clients[0])
            .min(options.clients[0]),
        rooms: 1,
        hz: options.hz,
        seconds: options.seconds.unwrap_or(10),
    };
    load.print_title(&format!("{} with the workflow pool idle", db.name()));
    presence_and_health(server, &client, &load).await?;
    let slow = create_workflow(server, &client, &room, &slow()).await?;
    // Enough slow runs to keep both workers busy past the measurement.
    let flood = (load.seconds as usize + 10) * 1000 / SLOW_RUN_MS as usize * 2;
    let flooding = make_events(server, &client, &room, flood, 0);
    load.print_title(&format!(
        "{} with the workflow pool saturated ({flood} runs of {SLOW_RUN_MS} ms queued)",
        db.name()
    ));
    let (made, measured) = tokio::join!(flooding, async {
        // The flood is under way (runs queued) before the measurement starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
        presence_and_health(server, &client, &load).await
    });
    measured?;
    let done = executions_total(server, &client, &slow).await?;
    println!(
        "(the flood: {} events made; {done} slow runs had finished by the end)",
        made.len()
    );
    call(
        reqwest::Method::DELETE,
        &format!("/workflows/{slow}"),
        json!({}),
    )
    .await?;
    Ok(())
}

async fn create_workflow(
    server: &Server,
    client: &reqwest::Client,
    room: &str,
    code: &str,
) -> anyhow::Result<String> {
    let reply: Value = client
        .post(server.account_url("/workflows"))
        .bearer_auth(&server.token)
        .json(&json!({ "name": "bench", "code": code, "events": ["user.created"], "roomId": room }))
        .send()
        .await?
        .json()
        .await?;
    reply["data"]["workflow"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("creating the workflow: {reply}"))
}

struct Batch {
    /// Delays from the REST call to the end of the run, of successful runs.
    summary: Summary,
    failed: usize,
}

/// Makes `events` events and waits for the workflow's runs of them all.
async fn batch(
    server: &Server,
    client: &reqwest::Client,
    room: &str,
    workflow: &str,
    events: usize,
    rate: usize,
) -> anyhow::Result<Batch> {
    // The server's timestamps are wall-clock; the calls' are monotonic: one fixed point maps them.
    let (wall, monotonic) = (SystemTime::now(), Instant::now());
    let sent = make_events(server, client, room, events, rate).await;
    let deadline = Instant::now() + RUN_TIMEOUT;
    while executions_total(server, client, workflow).await? < sent.len() {
        if Instant::now() > deadline {
            bail!("the runs of {} events did not all finish", sent.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent: HashMap<String, SystemTime> = sent
        .into_iter()
        .map(|(name, at)| (name, wall + at.duration_since(monotonic)))
        .collect();
    let first = sent.values().min().copied().context("no event was made")?;
    let mut delays = Vec::new();
    let (mut failed, mut last) = (0, first);
    for execution in executions(server, client, workflow).await? {
        let started =
            chrono::DateTime::parse_from_rfc3339(execution["created_at"].as_str().unwrap_or(""))?;
        let finished = SystemTime::from(started)
            + Duration::from_millis(execution["duration_ms"].as_u64().unwrap_or(0));
        last = last.max(finished);
        let name: Option<String> = execution["result"]
            .as_str()
            .and_then(|result| serde_json::from_str(result).ok());
        match name.and_then(|name| sent.get(&name)) {
            Some(at) if execution["status"] == "success" => {
                delays.push(finished.duration_since(*at).unwrap_or_default().as_micros() as u64)
            }
            _ => failed += 1,
        }
    }
    let elapsed = last.duration_since(first).unwrap_or_default();
    Ok(Batch {
        summary: Summary::from_samples(delays, failed, elapsed),
        failed,
    })
}

async fn executions_total(
    server: &Server,
    client: &reqwest::Client,
    workflow: &str,
) -> anyhow::Result<usize> {
    let reply: Value = client
        .get(server.account_url(&format!("/workflows/{workflow}/executions?limit=1")))
        .bearer_auth(&server.token)
        .send()
        .await?
        .json()
        .await?;
    Ok(reply["data"]["total"].as_u64().unwrap_or(0) as usize)
}

async fn executions(
    server: &Server,
    client: &reqwest::Client,
    workflow: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    loop {
        let path = format!(
            "/workflows/{workflow}/executions?limit=100&offset={}",
            all.len()
        );
        let reply: Value = client
            .get(server.account_url(&path))
            .bearer_auth(&server.token)
            .send()
            .await?
            .json()
            .await?;
        let page = reply["data"]["executions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// One presence run of `load` in a room of its own, with `/healthz` probed meanwhile.
async fn presence_and_health(
    server: &Server,
    client: &reqwest::Client,
    load: &Load,
) -> anyhow::Result<()> {
    let room = server.create_room(client, "presence").await?;
    let users = create_users(server, client, std::slice::from_ref(&room), load.clients).await?;
    let url = realtime_url(server);
    let measurement = Measurement::new(Protocol::CollabKit);
    let results: Vec<Result<Live, SetupError>> = futures_util::stream::iter(users.iter())
        .map(|user| {
            let (url, measurement) = (&url, &measurement);
            async move {
                let socket = wsclient::open(
                    url,
                    &user.token,
                    After::SyncEveryone,
                    WebSocketConfig::default(),
                )
                .await?;
                Ok(measurement.start_reading(user.room, 0, socket))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let (live, failures) = SetupFailures::sort(results);
    let targets = [Target {
        pid: server.pid(),
        name: "server".to_owned(),
    }];
    let health = probe_health(server, client, Duration::from_secs(load.seconds));
    let (measured, health) =
        tokio::join!(measurement.finish(load, &targets, live, &failures), health);
    measured?;
    println!(
        "/healthz meanwhile: {} probes, p50 {:.1} ms, p99 {:.1} ms, {} failed",
        health.completed,
        health.percentile_ms(50.0),
        health.percentile_ms(99.0),
        health.failed
    );
    Ok(())
}

async fn probe_health(server: &Server, client: &reqwest::Client, during: Duration) -> Summary {
    let started = Instant::now();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    while started.elapsed() < during {
        let at = Instant::now();
        match client.get(format!("{}/healthz", server.base)).send().await {
            Ok(reply) if reply.status().is_success() => {
                latencies.push(at.elapsed().as_micros() as u64)
            }
            _ => failed += 1,
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Summary::from_samples(latencies, failed, started.elapsed())
}
