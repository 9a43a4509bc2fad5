//! The writing half: frames go out straight from the bytes they were encoded into, many in
//! one vectored write, with nothing buffered between writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::frame::{self, opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_BYTES};
use super::{Shared, Utf8Bytes};

/// Frames given to one vectored write at most (two slices each).
const FRAMES_PER_WRITE: usize = 64;

pub struct Writer<W> {
    io: W,
    shared: Arc<Shared>,
    /// Frames fed and not yet written whole, oldest first.
    pub(super) queue: VecDeque<Outgoing>,
    /// Bytes of the oldest frame already written: a flush cut short (a timeout) resumes
    /// where it stopped, so the stream of frames stays whole.
    written: usize,
}

pub(super) struct Outgoing {
    header: [u8; MAX_HEADER_BYTES],
    header_len: usize,
    payload: Bytes,
}

impl Outgoing {
    fn new(opcode: u8, payload: Bytes) -> Self {
        let (header, header_len) = frame::server_header(opcode, payload.len());
        Self {
            header,
            header_len,
            payload,
        }
    }

    fn len(&self) -> usize {
        self.header_len + self.payload.len()
    }
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub(super) fn new(io: W, shared: Arc<Shared>) -> Self {
        Self {
            io,
            shared,
            queue: VecDeque::new(),
            written: 0,
        }
    }

    /// Queues a text frame; `flush` sends it.
    pub fn feed(&mut self, text: Utf8Bytes) {
        self.queue
            .push_back(Outgoing::new(opcode::TEXT, text.as_bytes().clone()));
    }

    pub fn feed_ping(&mut self) {
        self.queue
            .push_back(Outgoing::new(opcode::PING, Bytes::new()));
    }

    /// Queues the close frame: `code` and `reason` (cut to fit a control frame).
    pub fn feed_close(&mut self, code: u16, reason: &str) {
        let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = Vec::with_capacity(2 + cut);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        self.queue
            .push_back(Outgoing::new(opcode::CLOSE, payload.into()));
    }

    /// Resolves when a ping from the client waits for its pong (`flush` sends it). Holds no
    /// borrow of the writer, which stays free to write meanwhile.
    pub fn pong_due(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.pong_due.notified().await }
    }

    /// Writes every frame queued (and the pong a ping waits for). Cancel safe: a flush
    /// dropped halfway is resumed by the next.
    pub async fn flush(&mut self) -> io::Result<()> {
        let pong = self.shared.pong.lock().expect("pong lock").take();
        if let Some(payload) = pong {
            self.queue.push_back(Outgoing::new(opcode::PONG, payload));
        }
        while !self.queue.is_empty() {
            let mut slices = Vec::with_capacity(2 * FRAMES_PER_WRITE);
            let mut skip = self.written;
            for out in self.queue.iter().take(FRAMES_PER_WRITE) {
                for part in [&out.header[..out.header_len], &out.payload[..]] {
                    let from = skip.min(part.len());
                    skip -= from;
                    if from < part.len() {
                        slices.push(IoSlice::new(&part[from..]));
                    }
                }
            }
            let n = self.io.write_vectored(&slices).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        // The queue's room goes with its frames: an idle socket holds none.
        self.queue = VecDeque::new();
        self.io.flush().await
    }

    fn advance(&mut self, mut n: usize) {
        while let Some(out) = self.queue.front() {
            let left = out.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.queue.pop_front();
        }
    }
}
