//! A member's mailbox: the queue of encoded frames the engine fills (with `send`, never
//! waiting on a client) and a transport drains, bounded in bytes and in time, and the way to
//! close the connection behind it from anywhere with a reason.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Close codes (see the protocol document): why a connection ends.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const TOO_SLOW: u16 = 4000;
    pub const DEAD_PEER: u16 = 4001;
    pub const AUTH_FAILED: u16 = 4401;
    pub const GONE: u16 = 4404;
}

/// UTF-8 text in shared bytes: a frame encoded once goes to every mailbox, and out of each
/// to its socket, without a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("built from a str")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes, to write.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(text: &'static str) -> Self {
        Self::from_static(text)
    }
}

/// When a mailbox's reader counts as too slow: it holds more than `bytes`, or frames have
/// waited in it for `max_delay` without the transport taking any.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub bytes: usize,
    pub max_delay: Duration,
}

/// A mailbox for a connection closed by `closer`, whose client speaks protocol version
/// `protocol`: the engine's sending side and the transport's receiving side.
pub fn outbox(limits: OutboxLimits, closer: Closer, protocol: u32) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared::default());
    let outbox = Outbox {
        shared: shared.clone(),
        limits,
        protocol,
        closer,
    };
    (outbox, OutboxReceiver { shared })
}

/// What the two sides of a mailbox share. The queue is a plain deque that holds no memory
/// while it is empty (a channel would keep a block of slots for every idle socket).
#[derive(Default)]
struct Shared {
    frames: Mutex<VecDeque<Utf8Bytes>>,
    /// Wakes the transport when a frame is queued (a wake-up given while it is not waiting
    /// is kept for its next wait).
    ready: Notify,
    /// Set when the transport is gone: nothing more is queued.
    receiver_gone: AtomicBool,
    /// Bytes of the frames queued and not yet taken by the transport.
    queued: AtomicUsize,
    /// When the transport last took a frame, or the queue last went from empty to not
    /// (`millis_now`).
    moved_at: AtomicI64,
}

/// Milliseconds on a monotonic clock (a wall clock set forward must not make every queue look
/// stuck).
fn millis_now() -> i64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    ORIGIN.elapsed().as_millis() as i64
}

/// Closes a connection from anywhere (its room, its writer, shutdown) with a reason.
#[derive(Clone)]
pub struct Closer {
    token: CancellationToken,
    reason: Arc<OnceLock<(u16, &'static str)>>,
}

impl Closer {
    pub fn new(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.reason.set((code, reason));
        self.token.cancel();
    }

    /// Resolves once the connection is being closed.
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }

    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The first reason given; a bare cancellation is the server shutting down.
    pub fn reason(&self) -> (u16, &'static str) {
        self.reason
            .get()
            .copied()
            .unwrap_or((close::GOING_AWAY, "server shutting down"))
    }
}

/// The sending side of a connection's queue of frames.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    limits: OutboxLimits,
    protocol: u32,
    closer: Closer,
}

impl Outbox {
    /// Queues a frame without waiting. A client that cannot keep up is closed (4000) so that
    /// it reconnects and resynchronizes, instead of holding anyone up: when the queue would
    /// pass its byte limit (a client that asks for large answers and never reads them must
    /// not make the server hold them all), or when frames have waited longer than the delay
    /// limit with none taken.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        let len = frame.len();
        let shared = &self.shared;
        if shared.receiver_gone.load(Ordering::Acquire) {
            return false;
        }
        let now = millis_now();
        let before = shared.queued.fetch_add(len, Ordering::AcqRel);
        if before == 0 {
            shared.moved_at.store(now, Ordering::Relaxed);
        } else if now - shared.moved_at.load(Ordering::Relaxed)
            > self.limits.max_delay.as_millis() as i64
        {
            shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.closer
                .close(close::TOO_SLOW, "too slow: messages waited too long");
            return false;
        }
        if before + len > self.limits.bytes {
            shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.closer
                .close(close::TOO_SLOW, "too slow: too much was waiting to be sent");
            return false;
        }
        shared.frames.lock().expect("outbox lock").push_back(frame);
        shared.ready.notify_one();
        true
    }

    /// The protocol version the client behind it speaks (docs/protocol.md): what shape of
    /// frames it takes.
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        self.closer.close(code, reason);
    }
}

/// The writer's side of the queue: what it takes is no longer counted as waiting.
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl OutboxReceiver {
    /// The next frame, once there is one. (The connection ends through its `Closer`.)
    pub async fn recv(&mut self) -> Utf8Bytes {
        loop {
            if let Some(frame) = self.try_recv() {
                return frame;
            }
            self.shared.ready.notified().await;
        }
    }

    pub fn try_recv(&mut self) -> Option<Utf8Bytes> {
        let shared = &self.shared;
        let mut frames = shared.frames.lock().expect("outbox lock");
        let Some(frame) = frames.pop_front() else {
            // Empty: its room goes, so that an idle socket holds none.
            *frames = VecDeque::new();
            return None;
        };
        drop(frames);
        shared.moved_at.store(millis_now(), Ordering::Relaxed);
        shared.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        self.shared.frames.lock().expect("outbox lock").clear();
    }
}
