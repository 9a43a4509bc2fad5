//! A socket's writer task: drains its mailbox in batches, pings it, closes it when it is
//! dead or too slow, and says goodbye with the reason it was closed for.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::handshake::Sink;
use super::CLOSE_TIMEOUT;
use crate::config::RealtimeConfig;
use crate::domain::Timestamp;
use crate::realtime::protocol::close;
use crate::rooms::outbox::{Closer, OutboxReceiver};

/// Frames taken from the mailbox for one write.
const WRITE_BATCH_FRAMES: usize = 64;

pub async fn write_loop(
    mut sink: Sink,
    mut outbox: OutboxReceiver,
    closer: Closer,
    last_seen: Arc<AtomicI64>,
    config: RealtimeConfig,
) {
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
                sink.feed(frame);
                for _ in 1..WRITE_BATCH_FRAMES {
                    match outbox.try_recv() {
                        Some(frame) => sink.feed(frame),
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
        match tokio::time::timeout(write_timeout, sink.flush()).await {
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
            sink.feed(frame);
        }
    }
    sink.feed_close(code, reason);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await;
}

/// Whether a close lets the frames already queued go out first: a normal close, a
/// shutdown, a deletion (whose event must arrive) do; closing a slow or dead client does not.
fn flushes(code: u16) -> bool {
    matches!(code, close::NORMAL | close::GOING_AWAY | close::GONE)
}
