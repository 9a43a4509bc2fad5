//! `ws` mode: presence fan-out over real sockets (updates/s, deliveries/s and end-to-end
//! latency), then the server's memory per idle, joined socket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::process::{cpu_ticks, open_files_limit, rss_kib, settle, ticks_per_second};
use crate::server::{Db, Server};
use crate::stats::Summary;
use crate::wsclient::{self, After, Frame, SetupError, Socket};
use crate::Options;

/// Limits raised so that the bench measures fan-out, not the per-connection rate limit, the
/// room cap or the REST rate limit used during set-up.
const SERVER_ENV: [(&str, &str); 4] = [
    ("COLLABKIT_REALTIME_MESSAGES_PER_SECOND", "1000"),
    ("COLLABKIT_REALTIME_MESSAGE_BURST", "1000"),
    ("COLLABKIT_REALTIME_MAX_CONNECTIONS_PER_ROOM", "100000"),
    ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0"),
];
/// REST calls and socket set-ups in flight at once: quick set-up without a thundering herd.
const SETUP_CONCURRENCY: usize = 32;
/// Idle sockets being set up at once, when `--concurrency` does not say: a reconnection storm
/// after a deploy, every client at once.
const STORM_CONCURRENCY: usize = 1000;
/// Every socket is set up before the first update; this gives the writers time to start.
const START_DELAY: Duration = Duration::from_millis(200);
/// A write to the server that takes longer than this ends that client's updates.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last update: deliveries have stopped when none arrived for this long...
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// ...or at the latest after this long.
const DRAIN_MAX: Duration = Duration::from_secs(5);
/// Longest wait for the bench's own tasks once told to stop.
const TASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle sockets read nothing but pings: a small read buffer keeps 10,000 of them light in the
/// bench process (the library's default is 128 KiB, touched on the first read).
const IDLE_READ_BUFFER_BYTES: usize = 4096;
/// File descriptors the bench needs beside its idle sockets.
const SPARE_FDS: u64 = 256;
/// Longest REST call during set-up.
const REST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(db: Db, options: &Options) -> anyhow::Result<()> {
    for &clients in options.clients.iter().filter(|&&n| n > 0) {
        presence(db, options, clients).await?;
    }
    if options.idle > 0 {
        idle(db, options).await?;
    }
    Ok(())
}

fn realtime_url(server: &Server) -> String {
    format!(
        "{}/v1/realtime",
        server.base.replacen("http://", "ws://", 1)
    )
}

fn rest_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(REST_TIMEOUT)
        .pool_max_idle_per_host(SETUP_CONCURRENCY)
        .build()?)
}

/// A user created for the bench, with the room they belong to.
struct BenchUser {
    token: String,
    room: usize,
}

async fn create_rooms(
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
async fn create_users(
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

/// Set-up failures, by kind, with the first message of each for the report.
#[derive(Default)]
struct SetupFailures {
    auth: usize,
    other: usize,
    first: Option<String>,
}

impl SetupFailures {
    fn add(&mut self, error: &SetupError) {
        match error {
            SetupError::AuthFailed(_) => self.auth += 1,
            _ => self.other += 1,
        }
        self.first.get_or_insert_with(|| error.to_string());
    }

    fn total(&self) -> usize {
        self.auth + self.other
    }
}

/// What one client's reader saw during the measurement.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    /// `error` frames by code (for example `RATE_LIMITED`).
    errors: BTreeMap<String, u64>,
    /// Set if the socket closed before the bench stopped reading: the close code, if any.
    closed: Option<Option<u16>>,
}

/// One joined, synced client of the measurement.
struct Live {
    room: usize,
    sink: SplitSink<Socket, Message>,
    reader: JoinHandle<Tally>,
}

/// `clients` clients join; the first `--moving` of them (all by default) send presence updates
/// at `hz`; every client reads the others' and measures how long each took from its sender's
/// send to its arrival.
async fn presence(db: Db, options: &Options, clients: usize) -> anyhow::Result<()> {
    let seconds = options.seconds.unwrap_or(10);
    let moving = options.moving.unwrap_or(clients).min(clients);
    println!(
        "\n== ws presence on {} ({clients} clients, {moving} moving, in {} rooms, {} Hz, {} s; server and load generator share this machine)",
        db.name(),
        options.rooms,
        options.hz,
        seconds
    );
    let server = Server::start(db, &SERVER_ENV).await?;
    let client = rest_client()?;
    let set_up = Instant::now();
    let rooms = create_rooms(&server, &client, options.rooms).await?;
    let users = create_users(&server, &client, &rooms, clients).await?;
    let created = set_up.elapsed();

    let url = realtime_url(&server);
    let stop = CancellationToken::new();
    let delivered = Arc::new(AtomicU64::new(0));
    let opened = Instant::now();
    let results: Vec<Result<Live, SetupError>> = futures_util::stream::iter(users)
        .map(|user| {
            let (url, stop, delivered) = (&url, stop.clone(), delivered.clone());
            async move {
                let config = WebSocketConfig::default();
                let socket = wsclient::open(url, &user.token, After::SyncEveryone, config).await?;
                let (sink, stream) = socket.split();
                let reader = tokio::spawn(read_presence(stream, stop, delivered));
                Ok(Live {
                    room: user.room,
                    sink,
                    reader,
                })
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let mut failures = SetupFailures::default();
    let mut live = Vec::new();
    for result in results {
        match result {
            Ok(client) => live.push(client),
            Err(error) => failures.add(&error),
        }
    }
    println!(
        "set-up: {} rooms and {} users in {:.1} s; {} sockets authenticated, joined and synced in {:.1} s",
        rooms.len(),
        clients,
        created.as_secs_f64(),
        live.len(),
        opened.elapsed().as_secs_f64()
    );

    let period = Duration::from_secs_f64(1.0 / options.hz);
    let start = Instant::now() + START_DELAY;
    let deadline = start + Duration::from_secs(seconds);
    let count = moving.max(1) as u32;
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, client) in live.into_iter().enumerate() {
        // Spread the clients' ticks over the period, as independent clients would be.
        let first = start + period * i as u32 / count;
        // A reading client's writer only keeps its sink until the end.
        let sends = i < moving;
        writers.push((
            client.room,
            tokio::spawn(send_presence(client.sink, first, period, deadline, sends)),
        ));
        readers.push(client.reader);
    }
    let cpu_before = (cpu_ticks(server.pid())?, cpu_ticks(std::process::id())?);
    let mut sent_per_room = vec![0_u64; rooms.len()];
    let mut clients_per_room = vec![0_u64; rooms.len()];
    let mut sinks = Vec::new();
    let mut write_failures = 0;
    for (room, writer) in writers {
        clients_per_room[room] += 1;
        if let Ok(sent) = writer.await {
            sent_per_room[room] += sent.count;
            write_failures += usize::from(sent.failed);
            sinks.push(sent.sink);
        }
    }
    let cpu_after = (cpu_ticks(server.pid())?, cpu_ticks(std::process::id())?);
    let rss = rss_kib(server.pid())?;
    drain(&delivered).await;
    stop.cancel();

    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut closes: BTreeMap<String, u64> = BTreeMap::new();
    for reader in readers {
        let Ok(Ok(tally)) = tokio::time::timeout(TASK_TIMEOUT, reader).await else {
            *closes.entry("reader lost".to_owned()).or_default() += 1;
            continue;
        };
        latencies.extend(tally.latencies_us);
        for (code, n) in tally.errors {
            *errors.entry(code).or_default() += n;
        }
        if let Some(code) = tally.closed {
            let code = code.map_or("no code".to_owned(), |c| c.to_string());
            *closes.entry(code).or_default() += 1;
        }
    }
    futures_util::future::join_all(sinks.iter_mut().map(|sink| async move {
        let _ = tokio::time::timeout(TASK_TIMEOUT, sink.close()).await;
    }))
    .await;

    let window = deadline - start;
    // The CPU time both took over the sending window, as a share of one core.
    let busy = |before: u64, after: u64| {
        100.0 * after.saturating_sub(before) as f64 / ticks_per_second() / window.as_secs_f64()
    };
    let server_cpu = busy(cpu_before.0, cpu_after.0);
    let generator_cpu = busy(cpu_before.1, cpu_after.1);
    let sent: u64 = sent_per_room.iter().sum();
    let expected: u64 = sent_per_room
        .iter()
        .zip(&clients_per_room)
        .map(|(sent, clients)| sent * clients.saturating_sub(1))
        .sum();
    let summary = Summary::from_samples(latencies, 0, window);
    let per_second = |n: u64| n as f64 / window.as_secs_f64();
    let max_ms = summary
        .latencies_us
        .last()
        .map_or(f64::NAN, |us| *us as f64 / 1000.0);
    println!("{:<28} {:>12.0}", "updates sent/s", per_second(sent));
    println!(
        "{:<28} {:>12.0}",
        "presence delivered/s",
        summary.per_second()
    );
    println!(
        "{:<28} {:>12.0}   (delivered {:.1} % of expected)",
        "expected deliveries/s",
        per_second(expected),
        100.0 * summary.completed as f64 / expected.max(1) as f64
    );
    println!(
        "{:<28} p50 {:.2}  p99 {:.2}  max {:.2}   ({} deliveries, sender's send to receiver's read)",
        "latency ms",
        summary.percentile_ms(50.0),
        summary.percentile_ms(99.0),
        max_ms,
        summary.completed
    );
    let error_frames: u64 = errors.values().sum();
    let close_count: u64 = closes.values().sum();
    println!(
        "{:<28} {:>12}   auth failures {}, other set-up failures {}, closes {} {:?}, error frames {} {:?}, write failures {}",
        "errors",
        failures.total() as u64 + close_count + error_frames + write_failures as u64,
        failures.auth,
        failures.other,
        close_count,
        closes,
        error_frames,
        errors,
        write_failures
    );
    println!(
        "{:<28} server {server_cpu:.0} %, load generator {generator_cpu:.0} % (of one core; server RSS {:.1} MiB)",
        "cpu",
        rss as f64 / 1024.0
    );
    if let Some(first) = &failures.first {
        println!("first set-up failure: {first}");
    }
    server.stop().await;
    Ok(())
}

/// What one client's writer did.
struct Sent {
    sink: SplitSink<Socket, Message>,
    count: u64,
    failed: bool,
}

/// Sends a presence update (as a notification) every `period` from `first` until `deadline`
/// if it `sends`; else only waits for the deadline. A client that falls behind skips ticks
/// rather than bursting: `sent/s` shows what went out.
async fn send_presence(
    mut sink: SplitSink<Socket, Message>,
    first: Instant,
    period: Duration,
    deadline: Instant,
    sends: bool,
) -> Sent {
    if !sends {
        tokio::time::sleep_until(deadline).await;
        return Sent {
            sink,
            count: 0,
            failed: false,
        };
    }
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut count, mut failed) = (0, false);
    loop {
        if tick.tick().await >= deadline {
            break;
        }
        let update = format!(
            r#"{{"type":"req","method":"presence.update","params":{{"state":{{"t":{},"x":{count}}}}}}}"#,
            wsclient::now_micros()
        );
        match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::text(update))).await {
            Ok(Ok(())) => count += 1,
            _ => {
                failed = true;
                break;
            }
        }
    }
    Sent {
        sink,
        count,
        failed,
    }
}

/// Reads until told to stop: the latency of every presence event from the bench, the error
/// frames, and an early close.
async fn read_presence(
    mut stream: SplitStream<Socket>,
    stop: CancellationToken,
    delivered: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let message = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let received = wsclient::now_micros();
                let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
                    *tally.errors.entry("unreadable".to_owned()).or_default() += 1;
                    continue;
                };
                let before = tally.latencies_us.len();
                for sent in frame.presence_sent_at() {
                    tally.latencies_us.push(received.saturating_sub(sent));
                }
                let states = tally.latencies_us.len() - before;
                if states > 0 {
                    delivered.fetch_add(states as u64, Ordering::Relaxed);
                } else if frame.kind == "error" {
                    let code = frame.error.map_or_else(String::new, |e| e.code);
                    *tally.errors.entry(code).or_default() += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                tally.closed = Some(frame.map(|f| f.code.into()));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                tally.closed = Some(None);
                break;
            }
        }
    }
    tally
}

/// Waits until deliveries stop (none for `DRAIN_QUIET`), at most `DRAIN_MAX`.
async fn drain(delivered: &AtomicU64) {
    let began = Instant::now();
    let mut last = delivered.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while began.elapsed() < DRAIN_MAX && quiet_since.elapsed() < DRAIN_QUIET {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
}

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
    println!(
        "set-up: {} rooms and {count} users in {:.1} s",
        rooms.len(),
        set_up.elapsed().as_secs_f64()
    );
    let before = rss_kib(server.pid())?;

    let url = realtime_url(&server);
    let stop = CancellationToken::new();
    let opened = Instant::now();
    let results: Vec<Result<(Duration, JoinHandle<Held>), SetupError>> =
        futures_util::stream::iter(&users)
            .map(|user| {
                let (url, stop) = (&url, stop.clone());
                async move {
                    let began = Instant::now();
                    let config =
                        WebSocketConfig::default().read_buffer_size(IDLE_READ_BUFFER_BYTES);
                    let socket = wsclient::open(url, &user.token, After::Idle, config).await?;
                    Ok((began.elapsed(), tokio::spawn(hold(socket, stop))))
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let open_time = opened.elapsed();
    let mut failures = SetupFailures::default();
    let mut holders = Vec::new();
    let mut join_times = Vec::new();
    for result in results {
        match result {
            Ok((took, holder)) => {
                join_times.push(took.as_micros() as u64);
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
