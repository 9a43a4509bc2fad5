//! `cluster` mode: one room's presence served by 1, 2 or 3 nodes on one PostgreSQL database,
//! the nodes relaying room traffic through one Redis (docs/scaling.md). The room's clients
//! are spread evenly over the nodes (client `i` on node `i % nodes`), so that most of what a
//! client reads crossed Redis; the report splits latency into same node and cross node, and
//! shows each node's CPU and Redis's. Every process shares this machine's cores with the
//! others and with the load generator: the figures are for the whole, not per core.

use std::process::Command;

use anyhow::{bail, Context};
use futures_util::StreamExt as _;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::presence::{Live, Load, Measurement, Protocol, SetupFailures, Target};
use crate::server::{Db, Server};
use crate::ws::{
    create_rooms, create_users, realtime_url, rest_client, SERVER_ENV, SETUP_CONCURRENCY,
};
use crate::wsclient::{self, After, SetupError};
use crate::Options;

// The benchmark drives the servers from outside, like an operator: which Redis they share
// comes from its own environment (the server's reads stay in src/config.rs).
#[allow(clippy::disallowed_methods)]
fn redis_url() -> String {
    std::env::var("COLLABKIT_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let redis = redis_url();
    let redis_pid = redis_pid(&redis)?;
    for &clients in options.clients.iter().filter(|&&n| n > 0) {
        let load = Load::new(options, clients);
        for &nodes in &options.nodes {
            presence(nodes, &load, &redis, redis_pid).await?;
        }
    }
    Ok(())
}

/// Redis's process id, from `INFO server` (its CPU time is part of the report).
fn redis_pid(url: &str) -> anyhow::Result<u32> {
    let output = Command::new("redis-cli")
        .args(["-u", url, "info", "server"])
        .output()
        .context("running redis-cli (the cluster bench reads Redis's process id with it)")?;
    let info = String::from_utf8_lossy(&output.stdout);
    match info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
    {
        Some(pid) => Ok(pid.trim().parse()?),
        None => bail!("Redis at {url} did not answer INFO: {info}"),
    }
}

/// One presence run of `load` on `nodes` nodes (one node runs without Redis, as a single
/// node does).
async fn presence(nodes: usize, load: &Load, redis: &str, redis_pid: u32) -> anyhow::Result<()> {
    let relayed = nodes > 1;
    load.print_title(&format!(
        "{nodes} node{} on PostgreSQL{}",
        if relayed { "s" } else { "" },
        if relayed { " and Redis" } else { "" }
    ));
    let servers =
        Server::start_nodes(Db::Postgres, nodes, relayed.then_some(redis), &SERVER_ENV).await?;
    let measured = measure(&servers, load, relayed.then_some(redis_pid)).await;
    // The first node owns the database: it stops last.
    for server in servers.into_iter().rev() {
        server.stop().await;
    }
    measured
}

async fn measure(servers: &[Server], load: &Load, redis_pid: Option<u32>) -> anyhow::Result<()> {
    let first = &servers[0];
    let client = rest_client()?;
    let set_up = Instant::now();
    let rooms = create_rooms(first, &client, load.rooms).await?;
    let users = create_users(first, &client, &rooms, load.clients).await?;
    let created = set_up.elapsed();

    let urls: Vec<String> = servers.iter().map(realtime_url).collect();
    let measurement = Measurement::new(Protocol::CollabKit);
    let opened = Instant::now();
    let results: Vec<Result<Live, SetupError>> =
        futures_util::stream::iter(users.iter().enumerate())
            .map(|(i, user)| {
                let node = i % urls.len();
                let (url, measurement) = (&urls[node], &measurement);
                async move {
                    let config = WebSocketConfig::default();
                    let socket =
                        wsclient::open(url, &user.token, After::SyncEveryone, config).await?;
                    Ok(measurement.start_reading(user.room, node as u8, socket))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
    let (live, failures) = SetupFailures::sort(results);
    println!(
        "set-up: {} rooms and {} users in {:.1} s; {} sockets over {} nodes authenticated, joined and synced in {:.1} s",
        rooms.len(),
        load.clients,
        created.as_secs_f64(),
        live.len(),
        servers.len(),
        opened.elapsed().as_secs_f64()
    );
    let mut targets: Vec<Target> = (servers.iter().enumerate())
        .map(|(i, server)| Target {
            pid: server.pid(),
            name: format!("node {}", i + 1),
        })
        .collect();
    targets.extend(redis_pid.map(|pid| Target {
        pid,
        name: "redis".to_owned(),
    }));
    measurement.finish(load, &targets, live, &failures).await
}
