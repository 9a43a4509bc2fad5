//! One connection: its phases and the timeout each implies, the socket and the service that
//! tell it when bytes and requests come and go, and the task that serves it with hyper.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ConnectionStats, Limits, OpenConnection, Registered, Shared};

/// Where a connection is between requests; it decides which timeout applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Accepted, no request yet: the header-read timeout runs from the accept.
    New = 0,
    /// Kept alive, nothing received since the last answer: the idle timeout runs.
    Idle = 1,
    /// Part of a request head received after idling: the header-read timeout runs from its
    /// first byte.
    Head = 2,
    /// A request in flight (the handler, the answer, however long a stream): no timeout of
    /// ours.
    Busy = 3,
    /// A request in flight whose body is still arriving: the client is the one to wait for,
    /// so at the cap it may be closed to make room like an idle one (else a client trickling
    /// bodies would hold its connections until `http.body_read_timeout_ms`, which bounds it).
    Body = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::New,
            1 => Self::Idle,
            2 => Self::Head,
            4 => Self::Body,
            _ => Self::Busy,
        }
    }
}

/// One connection's timing, shared by its task, its socket (which sees the bytes) and its
/// service (which sees requests start and end).
///
/// hyper's own `header_read_timeout` is not used: it starts whenever hyper waits for a head,
/// idle keep-alive included, so it cannot keep an idle connection for a minute while giving a
/// request head ten seconds.
pub(super) struct Connection {
    phase: AtomicU8,
    /// When the phase began, in milliseconds since `epoch`.
    since_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Set by the accept loop to ask for the connection to close (to make room).
    pub(super) evict: AtomicBool,
    /// Tells the task that the phase changed or that it should close.
    pub(super) wake: Notify,
    epoch: Instant,
}

impl Connection {
    pub(super) fn new(epoch: Instant) -> Self {
        let connection = Self {
            phase: AtomicU8::new(Phase::New as u8),
            since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evict: AtomicBool::new(false),
            wake: Notify::new(),
            epoch,
        };
        connection
            .since_ms
            .store(connection.now_ms(), Ordering::Relaxed);
        connection
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn enter(&self, phase: Phase) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Release);
        self.wake.notify_one();
    }

    /// Bytes arrived: on an idle connection, the next request has begun.
    fn on_read(&self) {
        if self.phase() == Phase::Idle {
            self.enter(Phase::Head);
        }
    }

    /// Bytes left: the end of the last answer is still draining to a slow reader, which is
    /// traffic, not idleness.
    fn on_write(&self) {
        if self.phase() == Phase::Idle {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    pub(super) fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.enter(Phase::Busy);
    }

    fn end_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.enter(Phase::Idle);
        }
    }

    /// The request's body starts to arrive (it has one).
    fn begin_body(&self) {
        if self.phase() == Phase::Busy {
            self.enter(Phase::Body);
        }
    }

    /// The request's body is all in (or dropped unread): the request is the server's now.
    fn end_body(&self) {
        if self.phase() == Phase::Body {
            self.enter(Phase::Busy);
        }
    }

    /// When the current phase's timeout runs out, if it has one.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let timeout = match self.phase() {
            Phase::New | Phase::Head => limits.header_read_timeout,
            Phase::Idle => limits.idle_timeout,
            Phase::Busy | Phase::Body => return None,
        };
        let since = Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        Some(self.epoch + since + timeout)
    }

    /// Since when the connection has been without a request in flight, if it has and is not
    /// already on its way out.
    pub(super) fn waiting_since(&self) -> Option<u64> {
        if self.evict.load(Ordering::Relaxed) || self.phase() == Phase::Busy {
            return None;
        }
        Some(self.since_ms.load(Ordering::Relaxed))
    }
}

/// Serves one connection until it ends, is upgraded, times out or is asked to make room.
pub(super) async fn run_connection(
    tcp: TcpStream,
    open: OpenConnection,
    registered: Arc<Registered>,
    router: Router,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    peer: SocketAddr,
) {
    let connection = registered.connection.clone();
    let io = TokioIo::new(WatchedStream {
        tcp,
        connection: connection.clone(),
        _open: open,
    });
    let service = TrackedService {
        inner: TowerToHyperService::new(router),
        connection: connection.clone(),
        lease: ConnectionLease(registered.clone()),
        peer,
    };
    let mut http = pin!(http1::Builder::new()
        // Ours instead; see `Connection`.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades());
    let limits = shared.limits;
    let mut draining = false;
    loop {
        let deadline = connection.deadline(&limits);
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = http.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                // Finishes the request in flight, then closes; an idle connection closes now.
                draining = true;
                http.as_mut().graceful_shutdown();
            }
            () = connection.wake.notified() => {}
            () = expiry => {
                if connection.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    ConnectionStats::count(&shared.stats.timed_out);
                    tracing::debug!(phase = ?connection.phase(), "closing a connection: timed out");
                    return;
                }
            }
        }
        if connection.evict.load(Ordering::Relaxed) {
            if connection.phase() != Phase::Busy {
                tracing::debug!("closing an idle connection to make room (http.max_connections)");
                return;
            }
            // A request began between the choice and now: it is not cut. The cap is exceeded
            // by one until the next newcomer makes room again.
            connection.evict.store(false, Ordering::Relaxed);
        }
    }
}

/// The TCP stream, telling its connection when bytes come and go. It also carries the
/// connection's place in the open count, into the WebSocket when upgraded.
struct WatchedStream {
    tcp: TcpStream,
    connection: Arc<Connection>,
    _open: OpenConnection,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.on_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.connection.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.connection.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The router, telling the connection when a request starts and when its answer has been
/// handed over whole (or dropped).
struct TrackedService {
    inner: TowerToHyperService<Router>,
    connection: Arc<Connection>,
    /// Handed to each request, for a WebSocket to keep the connection closable to make room
    /// until it authenticates.
    lease: ConnectionLease,
    /// The client's address, for handlers that limit per address (dashboard logins).
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(self.connection.clone());
        let connection = self.connection.clone();
        let rest = Arc::new(BodyRest::default());
        let mut request =
            request.map(|body| Body::new(TrackedIncoming::new(body, connection, rest.clone())));
        request.extensions_mut().insert(self.lease.clone());
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // An answer given before the request's body was read whole: the rest is read and
            // dropped if it is small and at hand; else hyper closes the connection (it cannot
            // tell where the next request starts), without saying so. Saying so keeps a
            // client from sending its next request into a connection that is closing.
            let upgraded = response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS;
            if !upgraded && !rest.drained().await {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A request in flight; ends when dropped.
struct InFlight(Arc<Connection>);

impl InFlight {
    fn begin(connection: Arc<Connection>) -> Self {
        connection.begin_request();
        Self(connection)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// What is left of a request's body once its handler is done with it: nothing (read to its
/// end), or the unread rest, which the answer may still drain (`drained`).
#[derive(Default)]
struct BodyRest {
    read: AtomicBool,
    unread: std::sync::Mutex<Option<Incoming>>,
}

impl BodyRest {
    /// Whether the body is read to its end now: if the handler left some, what is left is read
    /// and dropped, as long as it is at most `DRAIN_BYTES` and comes within `DRAIN_TIME`.
    async fn drained(&self) -> bool {
        if self.read.load(Ordering::Acquire) {
            return true;
        }
        let Some(mut body) = self.unread.lock().expect("not poisoned").take() else {
            // Still held somewhere: its end is unknown.
            return false;
        };
        let drain = async {
            let mut drained = 0;
            loop {
                let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
                match frame {
                    None => return true,
                    Some(Ok(frame)) => {
                        drained += frame.data_ref().map_or(0, Bytes::len);
                        if drained > DRAIN_BYTES {
                            return false;
                        }
                    }
                    Some(Err(_)) => return false,
                }
            }
        };
        tokio::time::timeout(DRAIN_TIME, drain)
            .await
            .unwrap_or(false)
    }
}

/// What an answer that left its request's body unread still reads of it to keep the connection:
/// a small body, already sent (a refused JSON call); not an upload.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_millis(50);

/// A request's body, telling its connection when it starts and stops waiting on the client,
/// and its request (`rest`) whether it was read to its end, or what was left.
struct TrackedIncoming {
    body: Option<Incoming>,
    connection: Arc<Connection>,
    rest: Arc<BodyRest>,
}

impl TrackedIncoming {
    fn new(body: Incoming, connection: Arc<Connection>, rest: Arc<BodyRest>) -> Self {
        if body.is_end_stream() {
            rest.read.store(true, Ordering::Release);
        } else {
            connection.begin_body();
        }
        Self {
            body: Some(body),
            connection,
            rest,
        }
    }
}

impl Drop for TrackedIncoming {
    fn drop(&mut self) {
        self.connection.end_body();
        if !self.rest.read.load(Ordering::Acquire) {
            *self.rest.unread.lock().expect("not poisoned") = self.body.take();
        }
    }
}

impl HttpBody for TrackedIncoming {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || body.is_end_stream() {
            this.connection.end_body();
            this.rest.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// A connection's place among those that may be closed to make room at the cap. Every
/// request carries one (in its extensions); a WebSocket keeps it past the upgrade until it
/// authenticates, so that sockets that never do cannot fill the cap for good.
#[derive(Clone)]
pub struct ConnectionLease(Arc<Registered>);

impl ConnectionLease {
    /// Resolves when the connection is asked to close to make room.
    pub async fn evicted(&self) {
        let connection = &self.0.connection;
        loop {
            let woken = connection.wake.notified();
            if connection.evict.load(Ordering::Relaxed) {
                return;
            }
            woken.await;
        }
    }
}

/// An answer's body; hyper drops it once it has taken the last byte, which ends the request.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::LIMITS;
    use super::*;

    /// How far `deadline` is from `epoch`, to the second.
    fn secs_after(epoch: Instant, deadline: Option<Instant>) -> Option<u64> {
        deadline.map(|d| d.duration_since(epoch).as_secs())
    }

    #[test]
    fn the_phase_picks_the_timeout() {
        let epoch = Instant::now();
        let connection = Connection::new(epoch);
        assert_eq!(connection.phase(), Phase::New);
        assert_eq!(secs_after(epoch, connection.deadline(&LIMITS)), Some(10));
        // Bytes of the first head do not move its deadline: trickling buys nothing.
        connection.on_read();
        assert_eq!(connection.phase(), Phase::New);
        connection.begin_request();
        assert_eq!(connection.deadline(&LIMITS), None);
        assert_eq!(connection.waiting_since(), None);
        connection.on_read();
        assert_eq!(connection.phase(), Phase::Busy);
        connection.end_request();
        assert_eq!(connection.phase(), Phase::Idle);
        assert_eq!(secs_after(epoch, connection.deadline(&LIMITS)), Some(60));
        connection.on_read();
        assert_eq!(connection.phase(), Phase::Head);
        assert_eq!(secs_after(epoch, connection.deadline(&LIMITS)), Some(10));
    }

    #[test]
    fn a_request_whose_body_is_arriving_waits_on_its_client() {
        let connection = Connection::new(Instant::now());
        connection.begin_request();
        assert_eq!(connection.waiting_since(), None);
        connection.begin_body();
        assert_eq!(connection.phase(), Phase::Body);
        assert_eq!(connection.deadline(&LIMITS), None);
        assert!(
            connection.waiting_since().is_some(),
            "closable to make room"
        );
        connection.end_body();
        assert_eq!(connection.phase(), Phase::Busy);
        assert_eq!(connection.waiting_since(), None);
        // A body dropped after the answer does not take the connection out of idleness.
        connection.end_request();
        connection.end_body();
        assert_eq!(connection.phase(), Phase::Idle);
    }
}
