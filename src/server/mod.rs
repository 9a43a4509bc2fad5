//! The HTTP/1 connection loop: accepts, caps and times out connections, and hands each one to
//! hyper (with upgrades, for WebSockets). `axum::serve` offers neither timeouts nor a cap.
//! One connection's life is in `connection`.

mod connection;

pub use connection::ConnectionLease;
use connection::{run_connection, Connection};

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;

/// Pause after a failed accept that is not about one connection (EMFILE, ENFILE, ENOBUFS):
/// the listener stays readable, so retrying at once would spin. A tenth of a second lets a
/// closed connection free its descriptor and keeps the loop at ten attempts a second.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this interval for a condition that repeats with every connection
/// (the cap, accept errors): a flood of connections must not become a flood of log lines.
const WARNING_INTERVAL: Duration = Duration::from_secs(5);
/// Descriptors kept for everything but clients: stdio, the runtime's epoll and wake-up
/// descriptors, the listener, the log, the JWT secret file and slack for what a library opens.
const RESERVED_FDS: u64 = 32;
/// What one database connection may hold: SQLite opens the database file, its WAL and its
/// shared-memory index; a PostgreSQL connection is one socket.
const FDS_PER_DATABASE_CONNECTION: u64 = 3;
/// One webhook delivery in flight: its socket and a DNS lookup's.
const FDS_PER_DELIVERY: u64 = 2;

/// The limits the loop enforces, from `[http]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The configured limits, with the connection cap lowered to what the open-files limit can
    /// hold (the limit is raised to its hard maximum first).
    pub fn from_config(config: &Config) -> Self {
        let reserved = RESERVED_FDS
            + FDS_PER_DATABASE_CONNECTION * u64::from(config.database.max_connections)
            + FDS_PER_DELIVERY * config.webhooks.max_concurrent_deliveries as u64;
        Self {
            header_read_timeout: config.http.header_read_timeout(),
            idle_timeout: config.http.idle_timeout(),
            max_connections: fit_open_files_limit(config.http.max_connections, reserved),
        }
    }
}

/// What the loop has done, for the log and for `AppState`. Counts are since start-up, except
/// `open`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    cap: AtomicUsize,
    accept_errors: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now, upgraded WebSockets included.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The cap in force (`http.max_connections`, or less when the open-files limit is lower).
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// Failed accepts other than a client giving up (out of descriptors, say).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Idle connections closed to make room for a new one at the cap (or when out of
    /// descriptors).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// New connections closed at once because the cap was reached and none could make room.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed by the header-read or the idle timeout.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops accepting and
/// returns once every connection has finished its request in flight (the caller bounds that
/// wait). Upgraded connections are no longer the loop's: the hub closes WebSockets.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) {
    accept_loop(listener, router, limits, stats, shutdown).await;
}

/// Where connections come from: the listener, or a test's stand-in for a failing one.
trait Accept {
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

async fn accept_loop(
    listener: impl Accept,
    router: Router,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) {
    stats.cap.store(limits.max_connections, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        limits,
        stats,
        registry: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
    });
    // Dropping the set (when the caller's grace period runs out) aborts the connections left.
    let mut tasks = JoinSet::new();
    let mut cap_warning = Throttle::default();
    let mut accept_warning = Throttle::default();
    let mut next_id: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            // The client gave up between its SYN and our accept: nothing to do about it.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                let total = ConnectionStats::count(&shared.stats.accept_errors);
                // Out of descriptors, the next accept fails the same way until one is freed:
                // free one, rather than let silent connections lock everybody out.
                let freed = shared.evict_longest_idle();
                if freed {
                    ConnectionStats::count(&shared.stats.evicted);
                }
                if accept_warning.ready() {
                    tracing::warn!(
                        %error,
                        errno = error.raw_os_error(),
                        accept_errors = total,
                        open = shared.stats.open(),
                        closed_an_idle_connection = freed,
                        "accepting a connection failed; backing off"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                }
            }
        };
        // Small frames (presence) go out at once instead of waiting for the peer's delayed
        // ACK; the socket writer batches what is queued, so this costs no extra writes.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let open = OpenConnection::new(&shared.stats);
        if open.count > shared.limits.max_connections {
            // At the cap, make room by closing the connection that has waited longest without
            // a request in flight, instead of pausing accept: a paused accept lets a flood of
            // silent or trickling connections lock out every newcomer (the health probe
            // included) until their timeouts run out, while closing the longest idle one costs
            // a legitimate client at most a reconnect. Requests in flight and WebSockets are
            // never cut; when nothing else can go, the newcomer is refused.
            let made_room = shared.evict_longest_idle();
            let counter = if made_room {
                &shared.stats.evicted
            } else {
                &shared.stats.refused
            };
            ConnectionStats::count(counter);
            if cap_warning.ready() {
                tracing::warn!(
                    open = open.count,
                    cap = shared.limits.max_connections,
                    evicted = shared.stats.evicted(),
                    refused = shared.stats.refused(),
                    "connection cap reached (http.max_connections): closing the longest-idle \
                     connections to make room, refusing new ones when every connection is busy"
                );
            }
            if !made_room {
                continue;
            }
        }
        next_id += 1;
        let connection = Arc::new(shared.register(next_id));
        let span = tracing::debug_span!("connection", %peer);
        tasks.spawn(
            run_connection(
                tcp,
                open,
                connection,
                router.clone(),
                shared.clone(),
                shutdown.clone(),
                peer,
            )
            .instrument(span),
        );
    }
    // New connections are now refused by the kernel; those open saw the same cancellation and
    // finish their request in flight.
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Errors that concern one connection only (as hyper and axum classify them).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What the accept loop and the connections share.
struct Shared {
    limits: Limits,
    stats: Arc<ConnectionStats>,
    /// Connections still speaking HTTP (not upgraded), by ID, for picking one to close.
    registry: Mutex<HashMap<u64, Arc<Connection>>>,
    epoch: Instant,
}

impl Shared {
    fn register(self: &Arc<Self>, id: u64) -> Registered {
        let connection = Arc::new(Connection::new(self.epoch));
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, connection.clone());
        Registered {
            id,
            connection,
            shared: self.clone(),
        }
    }

    /// Asks the connection that has been without a request in flight the longest to close;
    /// false when every connection is busy. A scan of the registry, only done at the cap.
    fn evict_longest_idle(&self) -> bool {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Ties (the same millisecond) go to the earlier accepted, for a predictable order.
        let victim = registry
            .iter()
            .filter_map(|(id, c)| c.waiting_since().map(|since| ((since, *id), c)))
            .min_by_key(|(key, _)| *key);
        match victim {
            Some((_, connection)) => {
                connection.evict.store(true, Ordering::Relaxed);
                connection.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the registry, given up when its task ends (or is aborted).
struct Registered {
    id: u64,
    connection: Arc<Connection>,
    shared: Arc<Shared>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// One open connection in the count; released when its socket closes, which for a WebSocket
/// is when the socket ends, not when the HTTP exchange does.
struct OpenConnection {
    stats: Arc<ConnectionStats>,
    /// Open connections, this one included, when it was counted.
    count: usize,
}

impl OpenConnection {
    fn new(stats: &Arc<ConnectionStats>) -> Self {
        Self {
            count: stats.open.fetch_add(1, Ordering::Relaxed) + 1,
            stats: stats.clone(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lets a repeated warning through at most once per `WARNING_INTERVAL`.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARNING_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The connection cap that fits under the open-files limit with `reserved` descriptors to
/// spare, after raising the soft limit to the hard one. A limit too small even for the
/// reserve still leaves a quarter of it to clients rather than none.
fn fit_open_files_limit(wanted: usize, reserved: u64) -> usize {
    let Some(limit) = open_files_limit() else {
        return wanted;
    };
    let room = limit.saturating_sub(reserved).max(limit / 4).max(1);
    let fitted = usize::try_from(room).unwrap_or(usize::MAX);
    if fitted < wanted {
        tracing::warn!(
            open_files_limit = limit,
            reserved,
            max_connections = wanted,
            serving_at_most = fitted,
            "http.max_connections does not fit under the open-files limit with room for the \
             database pool and files; lowering it (raise the limit: ulimit -n, LimitNOFILE=)"
        );
        fitted
    } else {
        wanted
    }
}

/// The soft open-files limit, raised to the hard one when it is lower; `None` if unlimited.
#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    let Some(maximum) = limit.maximum.filter(|max| *max > current) else {
        return Some(current);
    };
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(from = current, to = maximum, "raised the open-files limit");
            Some(maximum)
        }
        Err(error) => {
            tracing::warn!(%error, current, maximum, "could not raise the open-files limit");
            Some(current)
        }
    }
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits for the tests of the loop and of one connection.
    pub(super) const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 10,
    };

    #[test]
    fn the_longest_waiting_idle_connection_makes_room_and_busy_ones_never_do() {
        let shared = Arc::new(Shared {
            limits: LIMITS,
            stats: Arc::default(),
            registry: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        });
        let first = shared.register(1);
        let busy = shared.register(2);
        let third = shared.register(3);
        busy.connection.begin_request();
        assert!(shared.evict_longest_idle());
        assert!(first.connection.evict.load(Ordering::Relaxed));
        assert!(!third.connection.evict.load(Ordering::Relaxed));
        assert!(shared.evict_longest_idle());
        assert!(third.connection.evict.load(Ordering::Relaxed));
        assert!(
            !shared.evict_longest_idle(),
            "only a busy connection is left"
        );
        assert!(!busy.connection.evict.load(Ordering::Relaxed));
        drop(first);
        assert_eq!(shared.registry.lock().unwrap().len(), 2);
    }

    /// A listener that is out of file descriptors for good.
    struct OutOfDescriptors;

    impl Accept for OutOfDescriptors {
        fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
            std::future::ready(Err(io::Error::other("Too many open files")))
        }
    }

    #[tokio::test]
    async fn failing_accepts_are_counted_and_backed_off() {
        let stats = Arc::new(ConnectionStats::default());
        let shutdown = CancellationToken::new();
        let run = accept_loop(
            OutOfDescriptors,
            Router::new(),
            LIMITS,
            stats.clone(),
            shutdown.clone(),
        );
        let stop = async {
            tokio::time::sleep(Duration::from_millis(450)).await;
            shutdown.cancel();
        };
        tokio::join!(run, stop);
        // One attempt per backoff at most (at 0, 100, ... 400 ms): a busy loop would have
        // made millions, and starved this very test of its timer.
        let errors = stats.accept_errors();
        assert!((1..=5).contains(&errors), "{errors} accept errors");
    }

    #[test]
    fn warnings_are_throttled() {
        let mut throttle = Throttle::default();
        assert!(throttle.ready());
        assert!(!throttle.ready());
    }
}
