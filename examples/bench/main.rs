//! Load benchmarks against a real `collabkit` server process on loopback. Prints figures;
//! asserts nothing. Run through `scripts/bench`, which builds the release binary first:
//!
//!   scripts/bench http [--db sqlite|postgres|both] [--seconds 5] [--concurrency 32]
//!   scripts/bench ws [--db sqlite|postgres|both] [--clients 200[,500,...]] [--moving N]
//!                    [--rooms 4] [--seconds 10] [--hz 20] [--idle 10000] [--concurrency 1000]
//!                    [--compare socketio]
//!   scripts/bench cluster [--nodes 1,2,3] [--clients 200[,...]] [--moving N] [--rooms 1]
//!                    [--seconds 10] [--hz 20]   (PostgreSQL and Redis; see cluster.rs)
//!   scripts/bench stores [--db sqlite|postgres|both] [--writers 1,50] [--seconds 5]
//!   scripts/bench webhooks [--db sqlite|postgres|both] [--events 2000] [--rate 200]
//!   scripts/bench workflows [--db sqlite|postgres|both] [--events 500] [--rate 0]
//!                    [--clients 50] [--seconds 10] [--hz 20]   (see workflows.rs)
//!   scripts/bench files [--db ...] [--storage local|s3|both] [--mb 1024] (see files.rs)
//!   scripts/bench dashboard [--db sqlite|postgres|both] [--seconds 5]

mod cluster;
mod dashboard;
mod files;
mod presence;
mod process;
mod server;
mod socketio;
mod stats;
mod stores;
mod webhooks;
mod workflows;
mod ws;
mod wsclient;

use std::time::Duration;

use server::{Db, Server};

struct Options {
    dbs: Vec<Db>,
    /// Default: 5 for `http`, 10 for `ws`.
    seconds: Option<u64>,
    /// `http`: clients at once (32); `ws --idle`: sockets being set up at once (1,000: a
    /// reconnection storm).
    concurrency: Option<usize>,
    /// Client counts of `ws`'s presence run, one run each.
    clients: Vec<usize>,
    /// Of those clients, how many send updates (`None`: all); the others only read.
    moving: Option<usize>,
    rooms: usize,
    hz: f64,
    idle: usize,
    /// Node counts of `cluster`, one run each.
    nodes: Vec<usize>,
    /// What `ws` also runs each presence load on, after CollabKit.
    compare: Option<Compare>,
    /// Writer counts of `stores`, one row each.
    writers: Vec<usize>,
    /// Events made by `webhooks`, and how many per second (0: as fast as possible).
    events: usize,
    rate: usize,
}

/// A server `ws --compare` measures beside CollabKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// A Socket.IO relay: scripts/socketio-relay, started by the bench (needs Node.js).
    SocketIo,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench http [--db sqlite|postgres|both] [--seconds N] [--concurrency N]\n\
         \x20      bench ws [--db sqlite|postgres|both] [--clients N,N,...] [--moving N]\n\
         \x20               [--rooms N] [--seconds N] [--hz N] [--idle N] [--concurrency N]\n\
         \x20               [--compare socketio]\n\
         \x20      bench cluster [--nodes N,N,...] [--clients N,N,...] [--moving N] [--rooms N]\n\
         \x20               [--seconds N] [--hz N]\n\
         \x20      bench stores [--db sqlite|postgres|both] [--writers N,N,...] [--seconds N]\n\
         \x20      bench webhooks [--db sqlite|postgres|both] [--events N] [--rate N]\n\
         \x20      bench workflows [--db sqlite|postgres|both] [--events N] [--rate N]\n\
         \x20               [--clients N] [--seconds N] [--hz N]\n\
         \x20      bench dashboard [--db sqlite|postgres|both] [--seconds N]\n\
         environment: COLLABKIT_BIN (default target/release/collabkit),\n\
         COLLABKIT_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test),\n\
         BENCH_SERVER_STDERR (a file for the servers' log; default: dropped)"
    );
    std::process::exit(2)
}

/// The options of `mode` (whose defaults differ: `cluster` measures one room).
fn parse(mode: &str, args: &[String]) -> Options {
    let mut options = Options {
        dbs: vec![Db::Sqlite, Db::Postgres],
        seconds: None,
        concurrency: None,
        clients: vec![if mode == "workflows" { 50 } else { 200 }],
        moving: None,
        rooms: if mode == "cluster" { 1 } else { 4 },
        hz: 20.0,
        idle: 10_000,
        nodes: vec![1, 2, 3],
        compare: None,
        writers: vec![1, 50],
        events: if mode == "workflows" { 500 } else { 2000 },
        rate: if mode == "workflows" { 0 } else { 200 },
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--db" => {
                options.dbs = match value().as_str() {
                    "sqlite" => vec![Db::Sqlite],
                    "postgres" => vec![Db::Postgres],
                    "both" => vec![Db::Sqlite, Db::Postgres],
                    _ => usage(),
                }
            }
            "--seconds" => options.seconds = Some(value().parse().unwrap_or_else(|_| usage())),
            "--concurrency" => {
                options.concurrency = Some(value().parse().unwrap_or_else(|_| usage()))
            }
            "--clients" => {
                options.clients = value()
                    .split(',')
                    .map(|n| n.trim().parse().ok())
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| usage())
            }
            "--moving" => options.moving = Some(value().parse().unwrap_or_else(|_| usage())),
            "--rooms" => options.rooms = value().parse().unwrap_or_else(|_| usage()),
            "--hz" => options.hz = value().parse().unwrap_or_else(|_| usage()),
            "--idle" => options.idle = value().parse().unwrap_or_else(|_| usage()),
            "--compare" => {
                options.compare = match value().as_str() {
                    "socketio" => Some(Compare::SocketIo),
                    _ => usage(),
                }
            }
            "--nodes" => {
                options.nodes = value()
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|n| (1..=255).contains(n)))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| usage())
            }
            "--writers" => {
                options.writers = value()
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|n| *n > 0))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| usage())
            }
            "--events" => options.events = value().parse().unwrap_or_else(|_| usage()),
            "--rate" => options.rate = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if options.rooms == 0 || !(options.hz > 0.0 && options.hz.is_finite()) {
        usage()
    }
    options
}

/// Users of the room `http` reads.
const ROOM_USERS: usize = 10;
/// Clients of `http` at once, when `--concurrency` does not say.
const HTTP_CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        usage()
    };
    if mode == "files" {
        return files::main(rest).await;
    }
    let options = parse(mode, rest);
    match mode.as_str() {
        "http" => {
            for db in &options.dbs {
                http(*db, &options).await?;
            }
        }
        "ws" => {
            for db in &options.dbs {
                ws::run(*db, &options).await?;
            }
        }
        "cluster" => cluster::run(&options).await?,
        "stores" => {
            for db in &options.dbs {
                stores::run(*db, &options.writers, options.seconds.unwrap_or(5)).await?;
            }
        }
        "dashboard" => {
            for db in &options.dbs {
                dashboard::run(*db, options.seconds.unwrap_or(5)).await?;
            }
        }
        "webhooks" => {
            for db in &options.dbs {
                webhooks::run(*db, options.events, options.rate).await?;
            }
        }
        "workflows" => workflows::run(&options).await?,
        _ => usage(),
    }
    Ok(())
}

/// Requests/s and latency of three REST calls: unauthenticated, an authenticated read, and an
/// authenticated write.
async fn http(db: Db, options: &Options) -> anyhow::Result<()> {
    let concurrency = options.concurrency.unwrap_or(HTTP_CONCURRENCY);
    let server = Server::start(db, &[("COLLABKIT_RATE_LIMIT_PER_SECOND", "0")]).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let room = server.create_room(&client, "bench room").await?;
    // The room read returns the room with its users: ten, as a small real room would have.
    for i in 0..ROOM_USERS {
        let body = serde_json::json!({ "name": format!("member {i}"), "roomId": room });
        let created = client
            .post(server.account_url("/users"))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            created.status().as_u16() == 201,
            "POST /users: {}",
            created.status()
        );
    }
    let seconds = options.seconds.unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    println!(
        "\n== http on {} ({} clients, {} s per scenario, server and load generator share this machine)",
        db.name(),
        concurrency,
        seconds
    );
    println!("{}", stats::Summary::header());

    let healthz = format!("{}/healthz", server.base);
    let shared = client.clone();
    let healthz_summary = stats::run_load(concurrency, duration, move |_| {
        let client = &shared;
        let (client, url) = (client.clone(), healthz.clone());
        async move { expect_status(client.get(url).send().await, 200).await }
    })
    .await;
    println!("{}", healthz_summary.row("GET /healthz"));

    let room_url = server.account_url(&format!("/rooms/{room}"));
    let token = server.token.clone();
    let (shared, shared_token) = (client.clone(), token.clone());
    let summary = stats::run_load(concurrency, duration, move |_| {
        let (client, token) = (&shared, &shared_token);
        let (client, url, token) = (client.clone(), room_url.clone(), token.clone());
        async move { expect_status(client.get(url).bearer_auth(token).send().await, 200).await }
    })
    .await;
    println!("{}", summary.row("GET /rooms/:roomId"));
    println!(
        "authenticated GET /rooms/:roomId (10 users) / GET /healthz: {:.3}",
        summary.per_second() / healthz_summary.per_second()
    );

    let users_url = server.account_url("/users");
    let shared = client.clone();
    let summary = stats::run_load(concurrency, duration, move |i| {
        let (client, token) = (&shared, &token);
        let (client, url, token) = (client.clone(), users_url.clone(), token.clone());
        let body = serde_json::json!({ "name": format!("user {i}"), "roomId": room });
        async move {
            expect_status(
                client.post(url).bearer_auth(token).json(&body).send().await,
                201,
            )
            .await
        }
    })
    .await;
    println!("{}", summary.row("POST /users"));
    server.stop().await;
    Ok(())
}

async fn expect_status(response: reqwest::Result<reqwest::Response>, status: u16) -> bool {
    match response {
        Ok(response) => {
            let ok = response.status().as_u16() == status;
            // Read the body so the connection goes back to the pool.
            let _ = response.bytes().await;
            ok
        }
        Err(_) => false,
    }
}
