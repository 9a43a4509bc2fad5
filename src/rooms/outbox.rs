//! A member's mailbox: the bounded queue of encoded frames the engine fills (with
//! `try_send`, never waiting on a client) and a transport drains, and the way to close the
//! connection behind it from anywhere with a reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
// The socket library's shared UTF-8 bytes: an event encoded once goes to every mailbox, and
// out of each, without a copy.
pub use axum::extract::ws::Utf8Bytes;

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

/// How big a mailbox may grow before its reader counts as too slow.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub frames: usize,
    pub bytes: usize,
}

/// A mailbox for a connection closed by `closer`: the engine's sending side and the
/// transport's receiving side.
pub fn outbox(limits: OutboxLimits, closer: Closer) -> (Outbox, OutboxReceiver) {
    let (frames, receiver) = mpsc::channel(limits.frames);
    let queued = Arc::new(AtomicUsize::new(0));
    let outbox = Outbox {
        frames,
        queued: queued.clone(),
        max_bytes: limits.bytes,
        closer,
    };
    let receiver = OutboxReceiver {
        frames: receiver,
        queued,
    };
    (outbox, receiver)
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

/// The sending side of a connection's queue of frames, bounded in frames and in bytes.
#[derive(Clone)]
pub struct Outbox {
    frames: mpsc::Sender<Utf8Bytes>,
    /// Bytes of the frames queued and not yet written (the writer takes them off).
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    closer: Closer,
}

impl Outbox {
    /// Queues a frame without waiting. A full queue means the client cannot keep up: it is
    /// closed (4000) so that it reconnects and resynchronizes, instead of holding anyone up.
    /// Full in bytes too: a client that asks for large answers and never reads them must
    /// not make the server hold them all.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        let len = frame.len();
        let queued = self.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.max_bytes {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.closer
                .close(close::TOO_SLOW, "too slow: too much was waiting to be sent");
            return false;
        }
        match self.frames.try_send(frame) {
            Ok(()) => true,
            Err(error) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                if let mpsc::error::TrySendError::Full(_) = error {
                    self.closer
                        .close(close::TOO_SLOW, "too slow: messages were dropped");
                }
                false
            }
        }
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        self.closer.close(code, reason);
    }
}

/// The writer's side of the queue: what it takes is no longer counted as waiting.
pub struct OutboxReceiver {
    frames: mpsc::Receiver<Utf8Bytes>,
    queued: Arc<AtomicUsize>,
}

impl OutboxReceiver {
    pub async fn recv(&mut self) -> Option<Utf8Bytes> {
        let frame = self.frames.recv().await?;
        self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    pub fn try_recv(&mut self) -> Option<Utf8Bytes> {
        let frame = self.frames.try_recv().ok()?;
        self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}
