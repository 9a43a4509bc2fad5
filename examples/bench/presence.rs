//! The presence measurement both `ws` runs share, CollabKit's and the Socket.IO relay's: set-up
//! clients send updates at `--hz`, every client reads the others' and times them, and the
//! report. What differs by transport (the update's text, reading a frame) is `Protocol`;
//! connecting and joining stay with each transport (ws.rs, socketio.rs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::process::{cpu_ticks, rss_kib, ticks_per_second};
use crate::stats::Summary;
use crate::wsclient::{self, SetupError, Socket};
use crate::{socketio, Options};

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
/// Answers a reader hands its writer (Socket.IO's pong, one per 25 s ping): a few at most are
/// ever waiting.
const ANSWERS_CAPACITY: usize = 4;

/// One presence run's shape, the same for every transport it is measured on.
pub struct Load {
    pub clients: usize,
    /// Of `clients`, how many send updates; the others only read.
    pub moving: usize,
    pub rooms: usize,
    pub hz: f64,
    pub seconds: u64,
}

impl Load {
    pub fn new(options: &Options, clients: usize) -> Self {
        Self {
            clients,
            moving: options.moving.unwrap_or(clients).min(clients),
            rooms: options.rooms,
            hz: options.hz,
            seconds: options.seconds.unwrap_or(10),
        }
    }

    /// The block's title: the same for every transport so that their blocks compare line by line.
    pub fn print_title(&self, on: &str) {
        println!(
            "\n== ws presence on {on} ({} clients, {} moving, in {} rooms, {} Hz, {} s; server and load generator share this machine)",
            self.clients, self.moving, self.rooms, self.hz, self.seconds
        );
    }
}

/// A presence state from the bench as a reader read it: when and from which node its sender
/// sent it (`node` is the index of the sender's server in a cluster run, else 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's clock, in microseconds since the Unix epoch (`wsclient::now_micros`).
    pub sent_at: u64,
    pub node: u8,
}

/// The wire format of the updates and of the frames the readers look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// docs/protocol.md, version 2 (presence arrives in batches).
    CollabKit,
    /// Socket.IO 5 over Engine.IO 4, to the relay of scripts/socketio-relay.
    SocketIo,
}

/// What a reader makes of one text frame from the server.
pub enum Incoming {
    /// Presence from the bench: its send times were appended (none if it held no bench state).
    Presence,
    /// An error the server reported, by code.
    Error(String),
    /// A frame the client must answer with this text (Socket.IO's ping).
    Answer(&'static str),
    /// Anything else: the bench does not count it.
    Other,
}

impl Protocol {
    /// The text of the sender's `count`th presence update, stamped `stamp`.
    fn update(self, stamp: Stamp, count: u64) -> String {
        match self {
            Self::CollabKit => wsclient::presence_update(stamp, count),
            Self::SocketIo => socketio::presence_update(stamp.sent_at, count),
        }
    }

    /// Reads a text frame, appending the stamp of each bench presence state it carries.
    fn read(self, text: &str, stamps: &mut Vec<Stamp>) -> Incoming {
        match self {
            Self::CollabKit => wsclient::read_frame(text, stamps),
            Self::SocketIo => socketio::read_frame(text, stamps),
        }
    }
}

/// Set-up failures, by kind, with the first message of each for the report.
#[derive(Default)]
pub struct SetupFailures {
    pub auth: usize,
    pub other: usize,
    pub first: Option<String>,
}

impl SetupFailures {
    pub fn add(&mut self, error: &SetupError) {
        match error {
            SetupError::AuthFailed(_) => self.auth += 1,
            _ => self.other += 1,
        }
        self.first.get_or_insert_with(|| error.to_string());
    }

    pub fn total(&self) -> usize {
        self.auth + self.other
    }

    /// The set-ups that succeeded, and the failures of the others.
    pub fn sort<T>(results: Vec<Result<T, SetupError>>) -> (Vec<T>, Self) {
        let mut failures = Self::default();
        let mut done = Vec::new();
        for result in results {
            match result {
                Ok(value) => done.push(value),
                Err(error) => failures.add(&error),
            }
        }
        (done, failures)
    }
}

/// A process the clients' traffic goes through (a server node, the relay, Redis), whose CPU
/// time and memory the report shows.
#[derive(Debug, Clone)]
pub struct Target {
    pub pid: u32,
    /// How the report names it: `server`, `node 2`, `relay`, `redis`.
    pub name: String,
}

/// What one client's reader saw during the measurement.
#[derive(Default)]
struct Tally {
    /// Latencies of states sent through the reader's own node, and through another node.
    same_node_us: Vec<u64>,
    cross_node_us: Vec<u64>,
    /// `error` frames by code (for example `RATE_LIMITED`).
    errors: BTreeMap<String, u64>,
    /// Set if the socket closed before the bench stopped reading: the close code, if any.
    closed: Option<Option<u16>>,
}

/// One set-up client whose frames are being read.
pub struct Live {
    room: usize,
    /// The index of the node the client is connected to (0 but in cluster runs).
    node: u8,
    sink: SplitSink<Socket, Message>,
    reader: JoinHandle<Tally>,
    /// What the reader asks the writer to send back.
    answers: mpsc::Receiver<&'static str>,
}

/// One presence measurement: its readers start as each socket is set up, the rest in `finish`.
pub struct Measurement {
    protocol: Protocol,
    stop: CancellationToken,
    /// Presence states read so far by every reader, to see when deliveries stop.
    delivered: Arc<AtomicU64>,
}

impl Measurement {
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            stop: CancellationToken::new(),
            delivered: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts reading a set-up socket of a client in room `room` (an index below `Load::rooms`)
    /// connected to node `node`.
    pub fn start_reading(&self, room: usize, node: u8, socket: Socket) -> Live {
        let (sink, stream) = socket.split();
        let (answer, answers) = mpsc::channel(ANSWERS_CAPACITY);
        let reader = tokio::spawn(read_presence(
            self.protocol,
            stream,
            node,
            Readers {
                stop: self.stop.clone(),
                delivered: self.delivered.clone(),
                answer,
            },
        ));
        Live {
            room,
            node,
            sink,
            reader,
            answers,
        }
    }

    /// Runs the updates over the set-up clients, drains, and prints the block's rows.
    pub async fn finish(
        self,
        load: &Load,
        targets: &[Target],
        live: Vec<Live>,
        failures: &SetupFailures,
    ) -> anyhow::Result<()> {
        let schedule = Schedule::new(load);
        let count = load.moving.max(1) as u32;
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for (i, client) in live.into_iter().enumerate() {
            // Spread the clients' ticks over the period, as independent clients would be.
            let first = schedule.start + schedule.period * i as u32 / count;
            // A reading client's writer only keeps its sink (and answers) until the end.
            let sends = i < load.moving;
            let writer = Writer {
                protocol: self.protocol,
                node: client.node,
                sink: client.sink,
                answers: client.answers,
            };
            let task = writer.run(first, schedule.period, schedule.deadline, sends);
            writers.push((client.room, tokio::spawn(task)));
            readers.push(client.reader);
        }
        let cpu = || -> anyhow::Result<Vec<u64>> {
            let mut ticks = vec![cpu_ticks(std::process::id())?];
            for target in targets {
                ticks.push(cpu_ticks(target.pid)?);
            }
            Ok(ticks)
        };
        let cpu_before = cpu()?;
        let mut sent_per_room = vec![0_u64; load.rooms];
        let mut clients_per_room = vec![0_u64; load.rooms];
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
        let cpu_after = cpu()?;
        let mut rss = Vec::new();
        for target in targets {
            rss.push(rss_kib(target.pid)?);
        }
        drain(&self.delivered).await;
        self.stop.cancel();

        let (mut same_node, mut cross_node) = (Vec::new(), Vec::new());
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut closes: BTreeMap<String, u64> = BTreeMap::new();
        for reader in readers {
            let Ok(Ok(tally)) = tokio::time::timeout(TASK_TIMEOUT, reader).await else {
                *closes.entry("reader lost".to_owned()).or_default() += 1;
                continue;
            };
            same_node.extend(tally.same_node_us);
            cross_node.extend(tally.cross_node_us);
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

        let window = schedule.deadline - schedule.start;
        // The CPU time both took over the sending window, as a share of one core.
        let busy = |before: u64, after: u64| {
            100.0 * after.saturating_sub(before) as f64 / ticks_per_second() / window.as_secs_f64()
        };
        let cpu: Vec<f64> = (cpu_before.iter().zip(&cpu_after))
            .map(|(before, after)| busy(*before, *after))
            .collect();
        let sent: u64 = sent_per_room.iter().sum();
        let expected: u64 = sent_per_room
            .iter()
            .zip(&clients_per_room)
            .map(|(sent, clients)| sent * clients.saturating_sub(1))
            .sum();
        let crossed = !cross_node.is_empty();
        let paths = [
            ("same node", Summary::from_samples(same_node, 0, window)),
            ("cross node", Summary::from_samples(cross_node, 0, window)),
        ];
        let all = paths.iter().flat_map(|(_, path)| &path.latencies_us);
        let summary = Summary::from_samples(all.copied().collect(), 0, window);
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
        for (path, summary) in paths.iter().filter(|_| crossed) {
            println!(
                "{:<28} p50 {:.2}  p99 {:.2}   ({} deliveries)",
                format!("  {path}"),
                summary.percentile_ms(50.0),
                summary.percentile_ms(99.0),
                summary.completed
            );
        }
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
        let targets_cpu: Vec<String> = (targets.iter().zip(&cpu[1..]).zip(&rss))
            .map(|((target, cpu), rss)| {
                format!(
                    "{} {cpu:.0} % (RSS {:.1} MiB)",
                    target.name,
                    *rss as f64 / 1024.0
                )
            })
            .collect();
        println!(
            "{:<28} {}, load generator {:.0} % (of one core)",
            "cpu",
            targets_cpu.join(", "),
            cpu[0]
        );
        if let Some(first) = &failures.first {
            println!("first set-up failure: {first}");
        }
        Ok(())
    }
}

/// When the updates go out: from `start`, one per `period` per moving client, until `deadline`.
struct Schedule {
    start: Instant,
    period: Duration,
    deadline: Instant,
}

impl Schedule {
    fn new(load: &Load) -> Self {
        let start = Instant::now() + START_DELAY;
        Self {
            start,
            period: Duration::from_secs_f64(1.0 / load.hz),
            deadline: start + Duration::from_secs(load.seconds),
        }
    }
}

/// One client's sending half.
struct Writer {
    protocol: Protocol,
    /// The node the client is connected to, which its updates carry.
    node: u8,
    sink: SplitSink<Socket, Message>,
    answers: mpsc::Receiver<&'static str>,
}

/// What one client's writer did.
struct Sent {
    sink: SplitSink<Socket, Message>,
    count: u64,
    failed: bool,
}

impl Writer {
    /// Sends a presence update every `period` from `first` until `deadline` if it `sends`;
    /// else only waits for the deadline. Either way it sends the answers its reader asks for.
    /// A client that falls behind skips ticks rather than bursting: `sent/s` shows what went out.
    async fn run(
        mut self,
        first: Instant,
        period: Duration,
        deadline: Instant,
        sends: bool,
    ) -> Sent {
        let mut tick = tokio::time::interval_at(first, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let (mut count, mut failed) = (0, false);
        loop {
            let (text, update) = tokio::select! {
                biased;
                Some(answer) = self.answers.recv() => (answer.to_owned(), false),
                at = tick.tick(), if sends => {
                    if at >= deadline {
                        break;
                    }
                    let stamp = Stamp {
                        sent_at: wsclient::now_micros(),
                        node: self.node,
                    };
                    (self.protocol.update(stamp, count), true)
                }
                () = tokio::time::sleep_until(deadline), if !sends => break,
            };
            let write = self.sink.send(Message::text(text));
            if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
                failed = true;
                break;
            }
            count += u64::from(update);
        }
        Sent {
            sink: self.sink,
            count,
            failed,
        }
    }
}

/// What every reader of a measurement shares.
struct Readers {
    stop: CancellationToken,
    delivered: Arc<AtomicU64>,
    answer: mpsc::Sender<&'static str>,
}

/// Reads until told to stop: the latency of every presence state from the bench (sent through
/// this reader's `node` or through another), the error frames, and an early close.
async fn read_presence(
    protocol: Protocol,
    mut stream: SplitStream<Socket>,
    node: u8,
    readers: Readers,
) -> Tally {
    let mut tally = Tally::default();
    let mut stamps = Vec::new();
    loop {
        let message = tokio::select! {
            biased;
            () = readers.stop.cancelled() => break,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let received = wsclient::now_micros();
                stamps.clear();
                match protocol.read(text.as_str(), &mut stamps) {
                    Incoming::Presence => {
                        for stamp in &stamps {
                            let latency = received.saturating_sub(stamp.sent_at);
                            if stamp.node == node {
                                tally.same_node_us.push(latency);
                            } else {
                                tally.cross_node_us.push(latency);
                            }
                        }
                        readers
                            .delivered
                            .fetch_add(stamps.len() as u64, Ordering::Relaxed);
                    }
                    Incoming::Error(code) => *tally.errors.entry(code).or_default() += 1,
                    // A full channel means answers are already waiting: one more adds nothing.
                    Incoming::Answer(text) => {
                        let _ = readers.answer.try_send(text);
                    }
                    Incoming::Other => {}
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
