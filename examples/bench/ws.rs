//! `ws` mode: presence fan-out over real sockets (updates/s, deliveries/s and end-to-end
//! latency; the measurement is presence.rs), with `--compare socketio` the same load on a
//! Socket.IO relay (socketio.rs), then the server's memory per idle, joined socket.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::presence::{Live, Load, Measurement, Protocol, SetupFailures, Target};
use crate::process::{
    cpu_ticks, machine_busy_ticks, open_files_limit, rss_kib, settle, ticks_per_second,
};
use crate::server::{Db, Server};
use crate::socketio::{self, Relay};
use crate::stats::Summary;
use crate::wsclient::{self, After, SetupError, SetupTimes, Socket};
use crate::{Compare, Options};

/// Limits raised so that the bench measures fan-out, not the per-connection rate limit, the
/// room cap or the REST rate limit used during set-up.
pub const SERVER_ENV: [(&str, &str); 4] = [
    ("COLLABKIT_REALTIME_MESSAGES_PER_SECOND", "1000"),
    ("COLLABKIT_REALTIME_MESSAGE_BURST", "1000"),
    ("COLLABKIT_REALTIME_MAX_CONNECTIONS_PER_ROOM", "100000"),
    ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0"),
];
/// REST calls and socket set-ups in flight at once: quick set-up without a thundering herd.
pub const SETUP_CONCURRENCY: usize = 32;
/// Idle sockets being set up at once, when `--concurrency` does not say: a reconnection storm
/// after a deploy, every client at once.
const STORM_CONCURRENCY: usize = 1000;
/// Longest wait for the idle sockets once the server has stopped.
const TASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle sockets read nothing but pings: a small read buffer keeps 10,000 of them light in the
/// bench process (the library's default is 128 KiB, touched on the first read).
const IDLE_READ_BUFFER_BYTES: usize = 4096;
/// File descriptors the bench needs beside its idle sockets.
const SPARE_FDS: u64 = 256;
/// Longest REST call during set-up.
const REST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(db: Db, options: &Options) -> anyhow::Result<()> {
    // Checked before the first run, so that a missing relay does not end the bench midway.
    if options.compare == Some(Compare::SocketIo) {
        Relay::install()?;
    }
    for &clients in options.clients.iter().filter(|&&n| n > 0) {
        let load = Load::new(options, clients);
        presence(db, &load).await?;
        if options.compare == Some(Compare::SocketIo) {
            socketio::presence(&load).await?;
        }
    }
    if options.idle > 0 {
        idle(db, options).await?;
    }
    Ok(())
}

pub fn realtime_url(server: &Server) -> String {
    format!(
        "{}/v1/realtime",
        server.base.replacen("http://", "ws://", 1)
    )
}

pub fn rest_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(REST_TIMEOUT)
        .pool_max_idle_per_host(SETUP_CONCURRENCY)
        .build()?)
}

/// A user created for the bench, with the room they belong to.
pub struct BenchUser {
    pub token: String,
    pub room: usize,
}

pub async fn create_rooms(
    server: &Server,
    client: &reqwest::Client,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    futures_util::stream::iter(0..count)
        .map(|i| async move { server.create_room(client, &format!("bench room {i}")).await })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Creates `count` users, user `i` in room `i % rooms.len()`.
pub async fn create_users(
    server: &Server,
    client: &reqwest::Client,
    rooms: &[String],
    count: usize,
) -> anyhow::Result<Vec<BenchUser>> {
    let url = server.account_url("/users");
    futures_util::stream::iter(0..count)
        .map(|i| {
            let room = i % rooms.len();
            let body =
                serde_json::json!({ "name": format!("bench user {i}"), "roomId": rooms[room] });
            let request = client.post(&url).bearer_auth(&server.token).json(&body);
            async move {
                let response = request.send().await.context("POST /users")?;
                let status = response.status();
                let reply: serde_json::Value = response.json().await.context("POST /users")?;
                let Some(token) = reply["data"]["token"].as_str() else {
                    bail!("POST /users answered {status}: {reply}");
                };
                Ok(BenchUser {
                    token: token.to_owned(),
                    room,
                })
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// CollabKit's presence run (see presence.rs): `load.clients` users, each with a token,
/// connect, authenticate, join their room and sync to everyone's presence on a fresh server.
async fn presence(db: Db, load: &Load) -> anyhow::Result<()> {
    load.print_title(db.name());
    let server = Server::start(db, &SERVER_ENV).await?;
    let client = rest_client()?;
    let set_up = Instant::now();
    let rooms = create_rooms(&server, &client, load.rooms).await?;
    let users = create_users(&server, &client, &rooms, load.clients).await?;
    let created = set_up.elapsed();

    let url = realtime_url(&server);
    let measurement = Measurement::new(Protocol::CollabKit);
    let opened = Instant::now();
    let results: Vec<Result<Live, SetupError>> = futures_util::stream::iter(users)
        .map(|user| {
            let (url, measurement) = (&url, &measurement);
            async move {
                let config = WebSocketConfig::default();
                let socket = wsclient::open(url, &user.token, After::SyncEveryone, config).await?;
                Ok(measurement.start_reading(user.room, 0, socket))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let (live, failures) = SetupFailures::sort(results);
    println!(
        "set-up: {} rooms and {} users in {:.1} s; {} sockets authenticated, joined and synced in {:.1} s",
        rooms.len(),
        load.clients,
        created.as_secs_f64(),
        live.len(),
        opened.elapsed().as_secs_f64()
    );
    let target = Target {
        pid: server.pid(),
        name: "server".to_owned(),
    };
    let measured = measurement.finish(load, &[target], live, &failures).await;
    server.stop().await;
    measured
}

/// An idle socket set up: the time from connect to joined, each step's, and its holder.
type SetUp = (Duration, SetupTimes, JoinHandle<Held>);

/// How an idle socket ended.
enum Held {
    /// The bench stopped holding it.
    Released,
    /// The server closed it, with this code.
    Closed(Option<u16>),
    /// The connection broke without a close frame.
    Lost,
}

/// The join storm, then idle memory: `--idle` users (one socket each, in `--rooms` rooms)
/// connect, authenticate and join, `--concurrency` at a time (1,000: everyone reconnecting at
/// once after a deploy), on a fresh server; reports the time until all are joined, each
/// socket's time from connect to joined, and the server's resident memory per socket. A fresh
/// server, because the allocator keeps what the presence run freed and idle sockets would
/// reuse it, making the figure too low.
async fn idle(db: Db, options: &Options) -> anyhow::Result<()> {
    let count = options.idle;
    let concurrency = options.concurrency.unwrap_or(STORM_CONCURRENCY);
    let limit = open_files_limit()?;
    if limit < count as u64 + SPARE_FDS {
        bail!(
            "the open files limit is {limit}, and {count} idle sockets need about {}: raise it \
             (ulimit -n; scripts/bench raises it to the hard limit) or lower --idle",
            count as u64 + SPARE_FDS
        );
    }
    println!(
        "\n== ws join storm and idle sockets on {} ({count} users with a socket each in {} rooms, {concurrency} at once, fresh server)",
        db.name(),
        options.rooms
    );
    let server = Server::start(db, &SERVER_ENV).await?;
    let client = rest_client()?;
    let set_up = Instant::now();
    let rooms = create_rooms(&server, &client, options.rooms).await?;
    let users = create_users(&server, &client, &rooms, count).await?;
    server.analyze().await?;
    println!(
        "set-up: {} rooms and {count} users in {:.1} s (and the database analyzed)",
        rooms.len(),
        set_up.elapsed().as_secs_f64()
    );
    let before = rss_kib(server.pid())?;

    let url = realtime_url(&server);
    let stop = CancellationToken::new();
    let cpu_before = (cpu_ticks(server.pid())?, cpu_ticks(std::process::id())?);
    let busy_before = machine_busy_ticks()?;
    let opened = Instant::now();
    let results: Vec<Result<SetUp, SetupError>> = futures_util::stream::iter(&users)
        .map(|user| {
            let (url, stop) = (&url, stop.clone());
            async move {
                let began = Instant::now();
                let config = WebSocketConfig::default().read_buffer_size(IDLE_READ_BUFFER_BYTES);
                let (socket, steps) =
                    wsclient::open_timed(url, &user.token, After::Idle, config).await?;
                Ok((began.elapsed(), steps, tokio::spawn(hold(socket, stop))))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let open_time = opened.elapsed();
    let cpu_after = (cpu_ticks(server.pid())?, cpu_ticks(std::process::id())?);
    let busy_after = machine_busy_ticks()?;
    let mut failures = SetupFailures::default();
    let mut holders = Vec::new();
    let mut join_times = Vec::new();
    let mut steps: [Vec<u64>; 3] = Default::default();
    for result in results {
        match result {
            Ok((took, times, holder)) => {
                join_times.push(took.as_micros() as u64);
                let took = [times.upgraded, times.authenticated, times.joined];
                for (samples, took) in steps.iter_mut().zip(took) {
                    samples.push(took.as_micros() as u64);
                }
                holders.push(holder);
            }
            Err(error) => failures.add(&error),
        }
    }
    let joins = Summary::from_samples(join_times, 0, open_time);
    println!(
        "storm: {} sockets connected, authenticated and joined in {:.2} s ({:.0}/s); connect to joined p50 {:.0} ms, p99 {:.0} ms; set-up failures {} (auth {}, other {})",
        holders.len(),
        open_time.as_secs_f64(),
        holders.len() as f64 / open_time.as_secs_f64(),
        joins.percentile_ms(50.0),
        joins.percentile_ms(99.0),
        failures.total(),
        failures.auth,
        failures.other
    );
    let [upgraded, authenticated, joined] =
        steps.map(|samples| Summary::from_samples(samples, 0, open_time));
    println!(
        "storm steps, p50 / p99: connect and upgrade {:.0} / {:.0} ms, auth to welcome {:.0} / {:.0} ms, room.join to its response {:.0} / {:.0} ms",
        upgraded.percentile_ms(50.0),
        upgraded.percentile_ms(99.0),
        authenticated.percentile_ms(50.0),
        authenticated.percentile_ms(99.0),
        joined.percentile_ms(50.0),
        joined.percentile_ms(99.0)
    );
    let seconds =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / ticks_per_second();
    let (server_cpu, generator_cpu) = (
        seconds(cpu_before.0, cpu_after.0),
        seconds(cpu_before.1, cpu_after.1),
    );
    let busy = seconds(busy_before, busy_after);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "storm cpu: server {server_cpu:.1} s ({:.0} % of a core), load generator {generator_cpu:.1} s ({:.0} %), the rest (the database, ...) {:.1} s; the machine busy {:.0} % of its {cores} cores",
        100.0 * server_cpu / open_time.as_secs_f64(),
        100.0 * generator_cpu / open_time.as_secs_f64(),
        (busy - server_cpu - generator_cpu).max(0.0),
        100.0 * busy / (cores * open_time.as_secs_f64())
    );
    if let Some(first) = &failures.first {
        println!("first set-up failure: {first}");
    }
    // The events of the storm (every join tells the room) settle before memory is read.
    settle(server.pid()).await?;
    let after = rss_kib(server.pid())?;
    let open = holders.len();
    println!(
        "server RSS {:.1} MiB before, {:.1} MiB after: {:.1} KiB per idle connection",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / open.max(1) as f64
    );

    // Stop the server with every socket open: each should be told 1001 (going away).
    let stopped = server.stop().await;
    // Sockets the server left open are released after a while, so that this wait is bounded.
    let release = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TASK_TIMEOUT).await;
            stop.cancel();
        })
    };
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for held in futures_util::future::join_all(holders).await {
        let end = match held {
            Ok(Held::Closed(Some(code))) => format!("close {code}"),
            Ok(Held::Closed(None)) => "close without code".to_owned(),
            Ok(Held::Lost) => "lost without close".to_owned(),
            Ok(Held::Released) | Err(_) => "still open".to_owned(),
        };
        *ends.entry(end).or_default() += 1;
    }
    release.abort();
    match stopped {
        Some(took) => println!(
            "server stopped (SIGTERM) with {open} sockets open in {:.1} s; sockets: {ends:?}",
            took.as_secs_f64()
        ),
        None => println!("server did not stop after SIGTERM and was killed; sockets: {ends:?}"),
    }
    Ok(())
}

/// Keeps an idle socket open: reading answers the server's pings, so it is not a dead peer.
async fn hold(mut socket: Socket, stop: CancellationToken) -> Held {
    loop {
        let message = tokio::select! {
            biased;
            () = stop.cancelled() => return Held::Released,
            message = socket.next() => message,
        };
        match message {
            Some(Ok(Message::Close(frame))) => return Held::Closed(frame.map(|f| f.code.into())),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Held::Lost,
        }
    }
}
