//! `stores` mode: acknowledged store writes over real sockets. Each writer sends
//! `stores.set` and waits for its acknowledgement (which the server gives only after the
//! write is committed), back to back; prints writes/s and acknowledgement latency.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{Db, Server};
use crate::stats::Summary;

/// Raised so that the bench measures writes, not the per-connection rate limit.
const SERVER_ENV: [(&str, &str); 3] = [
    ("COLLABKIT_REALTIME_MESSAGES_PER_SECOND", "100000"),
    ("COLLABKIT_REALTIME_MESSAGE_BURST", "100000"),
    ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0"),
];
/// Keys each writer cycles through (overwrites after the first round).
const KEYS_PER_WRITER: u64 = 100;
/// Longest wait for one acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn run(db: Db, writer_counts: &[usize], seconds: u64) -> anyhow::Result<()> {
    let server = Server::start(db, &SERVER_ENV).await?;
    let client = reqwest::Client::new();
    let room = server.create_room(&client, "store bench").await?;
    let schema = json!({ "schema": {
        "n": { "type": "number", "required": true },
        "writer": { "type": "string", "required": true },
        "note": { "type": "string", "default": "" },
    } });
    let reply = client
        .put(server.account_url("/stores/bench"))
        .bearer_auth(&server.token)
        .json(&schema)
        .send()
        .await?;
    if !reply.status().is_success() {
        bail!("registering the store: {}", reply.status());
    }
    let most = writer_counts.iter().copied().max().unwrap_or(1);
    // Writers sharing one room (each write fans out to the others as `changed`), and writers
    // each in a room of their own (no fan-out: the database's parallelism alone).
    let mut shared = Vec::with_capacity(most);
    let mut alone = Vec::with_capacity(most);
    for i in 0..most {
        shared.push(user_token(&client, &server, &room, i).await?);
        let own = server
            .create_room(&client, &format!("writer room {i}"))
            .await?;
        alone.push(user_token(&client, &server, &own, i).await?);
    }
    println!(
        "\n== stores on {} ({seconds} s per row; each writer waits for its acknowledgement)",
        db.name()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "writers", "writes/s", "p50 ms", "p99 ms", "writes", "errors"
    );
    let ws_url = format!("{}/v1/realtime", server.base.replacen("http", "ws", 1));
    for &writers in writer_counts {
        let layouts: &[(&str, &Vec<String>)] = if writers == 1 {
            &[("", &shared)]
        } else {
            &[(" in one room", &shared), (" in own rooms", &alone)]
        };
        for (label, tokens) in layouts {
            let summary = measure(&ws_url, &tokens[..writers], seconds).await?;
            println!(
                "{:<22} {:>10.0} {:>10.2} {:>10.2} {:>10} {:>8}",
                format!("{writers}{label}"),
                summary.per_second(),
                summary.percentile_ms(50.0),
                summary.percentile_ms(99.0),
                summary.completed,
                summary.failed
            );
        }
    }
    server.stop().await;
    Ok(())
}

async fn user_token(
    client: &reqwest::Client,
    server: &Server,
    room: &str,
    i: usize,
) -> anyhow::Result<String> {
    let created: Value = client
        .post(server.account_url("/users"))
        .bearer_auth(&server.token)
        .json(&json!({ "name": format!("writer {i}"), "roomId": room }))
        .send()
        .await?
        .json()
        .await?;
    Ok(created["data"]["token"]
        .as_str()
        .context("a user token")?
        .to_owned())
}

/// Runs one writer per token for `seconds`.
async fn measure(url: &str, tokens: &[String], seconds: u64) -> anyhow::Result<Summary> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| tokio::spawn(writer(url.to_owned(), token.clone(), i, deadline)))
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok(Ok((l, e))) => {
                latencies.extend(l);
                errors += e;
            }
            Ok(Err(error)) => {
                eprintln!("writer failed: {error:#}");
                errors += 1;
            }
            Err(error) => bail!("writer task: {error}"),
        }
    }
    Ok(Summary::from_samples(latencies, errors, started.elapsed()))
}

/// One writer: authenticates, then writes until `deadline`; returns latencies (µs) and errors.
async fn writer(
    url: String,
    token: String,
    index: usize,
    deadline: Instant,
) -> anyhow::Result<(Vec<u64>, usize)> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    socket
        .send(Message::text(
            json!({ "type": "auth", "token": token }).to_string(),
        ))
        .await?;
    let welcome = next_json(&mut socket).await?;
    if welcome["type"] != "welcome" {
        bail!("not welcomed: {welcome}");
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        n += 1;
        let request = json!({
            "type": "req", "id": n, "method": "stores.set",
            "params": { "store": "bench", "key": format!("w{index}-{}", n % KEYS_PER_WRITER),
                        "value": { "n": n, "writer": format!("w{index}") } },
        });
        let sent = Instant::now();
        socket.send(Message::text(request.to_string())).await?;
        let answer = loop {
            let frame = tokio::time::timeout(ACK_TIMEOUT, next_json(&mut socket)).await??;
            if frame["type"] == "res" && frame["id"] == n {
                break frame;
            }
        };
        if answer["ok"] == true {
            latencies.push(sent.elapsed().as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    let _ = socket.close(None).await;
    Ok((latencies, errors))
}

async fn next_json(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
            None => bail!("the socket closed"),
        }
    }
}
