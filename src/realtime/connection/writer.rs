//! A socket's writer task: drains its mailbox in batches, pings it, closes it when it is
//! dead or too slow, and says goodbye with the reason it was closed for.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::handshake::Sink;
use super::CLOSE_TIMEOUT;
use crate::config::RealtimeConfig;
use crate::domain::Timestamp;
use crate::metrics::{Metrics, Tally};
use crate::realtime::protocol::{close, frame_label};
use crate::rooms::outbox::{Closer, OutboxReceiver, Utf8Bytes};

/// Frames taken from the mailbox for one write.
const WRITE_BATCH_FRAMES: usize = 64;
/// Room for every value of the frames-sent label (`protocol::frame_labels`).
const MAX_FRAME_LABELS: usize = 32;

/// The frames of one write, by label, counted on the stack and added to the metric once per
/// write rather than once per frame.
struct Sent<'m> {
    tally: &'m Tally,
    counts: [u32; MAX_FRAME_LABELS],
}

impl<'m> Sent<'m> {
    fn new(tally: &'m Tally) -> Self {
        Self {
            tally,
            counts: [0; MAX_FRAME_LABELS],
        }
    }

    fn feed(&mut self, sink: &mut Sink, frame: Utf8Bytes) {
        let label = frame_label(frame.as_str());
        let index = self
            .tally
            .index(label)
            .or_else(|| self.tally.index("other"));
        // Every label has a slot (the test below): one that did not would go uncounted.
        if let Some(count) = index.and_then(|i| self.counts.get_mut(i)) {
            *count += 1;
        }
        sink.feed(frame);
    }

    fn add_to_metric(&mut self) {
        for (index, count) in self.counts.iter_mut().enumerate() {
            if *count > 0 {
                self.tally.add_at(index, u64::from(*count));
                *count = 0;
            }
        }
    }
}

pub async fn write_loop(
    mut sink: Sink,
    mut outbox: OutboxReceiver,
    closer: Closer,
    last_seen: Arc<AtomicI64>,
    config: RealtimeConfig,
    metrics: Arc<Metrics>,
) {
    let mut sent = Sent::new(&metrics.frames_sent);
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let write_timeout = config.write_timeout();
    let dead_after = config.heartbeat_timeout().as_millis() as i64;
    loop {
        tokio::select! {
            biased;
            () = closer.closed() => break,
            frame = outbox.recv() => {
                // Everything already queued goes out in one write.
                sent.feed(&mut sink, frame);
                for _ in 1..WRITE_BATCH_FRAMES {
                    match outbox.try_recv() {
                        Some(frame) => sent.feed(&mut sink, frame),
                        None => break,
                    }
                }
            }
            () = sink.pong_due() => {}
            _ = heartbeat.tick() => {
                let silent = Timestamp::now().as_millis() - last_seen.load(Ordering::Relaxed);
                if silent > dead_after {
                    closer.close(close::DEAD_PEER, "no heartbeat");
                    continue;
                }
                sink.feed_ping();
            }
        }
        // A write under way is finished (or times out) even if the socket is closed meanwhile:
        // the close frame can only follow it, and a client that reads again in time gets the
        // reason it was closed for. (A write cut short resumes where it stopped.)
        let written = tokio::time::timeout(write_timeout, sink.flush()).await;
        sent.add_to_metric();
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                closer.close(close::NORMAL, "connection lost");
                break;
            }
            Err(_) => closer.close(close::TOO_SLOW, "too slow: a write timed out"),
        }
    }
    let (code, reason) = closer.reason();
    // Flush what is already queued (responses before a normal close), then say goodbye.
    if flushes(code) {
        while let Some(frame) = outbox.try_recv() {
            sent.feed(&mut sink, frame);
        }
    }
    sink.feed_close(code, reason);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await;
    sent.add_to_metric();
}

/// Whether a close lets the frames already queued go out first: a normal close, a
/// shutdown, a deletion (whose event must arrive) do; closing a slow or dead client does not.
fn flushes(code: u16) -> bool {
    matches!(code, close::NORMAL | close::GOING_AWAY | close::GONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_label_has_a_slot() {
        assert!(crate::realtime::protocol::frame_labels().len() <= MAX_FRAME_LABELS);
    }
}
