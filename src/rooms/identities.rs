//! Who a socket is: each socket's handshake reads its user and room, and a reconnection storm
//! makes thousands of handshakes at once. They are read together: a few readers run at once,
//! each answering with one query every handshake that waited while its last query ran
//! (`Identities`), where a query each made the database answer (and the pool check)
//! thousands of round trips.

use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, MutexGuard};

use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use super::Engine;
use crate::domain::{Room, User, UserId};
use crate::error::ApiError;
use crate::store::RoomScope;

/// Handshakes one query answers at most: bounds the statement's list.
const MAX_READ: usize = 500;
/// Readers at once: a lone handshake is read at once, as before batching, and SQLite's
/// readers (or PostgreSQL's connections) serve a few queries in parallel.
const MAX_READERS: usize = 4;

/// A handshake's answer: its user and room, `None` if either is gone. (Not the handshake's
/// `Identity`, which it makes of them.)
type Found = Result<Option<(User, Room)>, ApiError>;

/// The handshakes waiting for a read, and how many readers run.
#[derive(Default)]
pub struct Identities(Mutex<Waiting>);

#[derive(Default)]
struct Waiting {
    wanted: Vec<Wanted>,
    readers: usize,
}

struct Wanted {
    scope: RoomScope,
    user_id: UserId,
    reply: oneshot::Sender<Found>,
}

impl Identities {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a handshake's read; true when fewer than `MAX_READERS` run, and the caller
    /// starts one.
    fn queue(&self, wanted: Wanted) -> bool {
        let mut waiting = self.lock();
        waiting.wanted.push(wanted);
        let start = waiting.readers < MAX_READERS;
        if start {
            waiting.readers += 1;
        }
        start
    }

    /// A reader's next handshakes; `None` when none wait, and the reader stops (the next
    /// handshake starts another).
    fn take(&self) -> Option<Vec<Wanted>> {
        let mut waiting = self.lock();
        if waiting.wanted.is_empty() {
            waiting.readers -= 1;
            return None;
        }
        let taken = waiting.wanted.len().min(MAX_READ);
        let rest = waiting.wanted.split_off(taken);
        Some(std::mem::replace(&mut waiting.wanted, rest))
    }
}

impl Engine {
    /// The user of `scope` and their room, read with the other handshakes waiting
    /// (`Identities`). `Unavailable` when the database fails.
    pub async fn identify(&self, scope: RoomScope, user_id: UserId) -> Found {
        let (reply, answer) = oneshot::channel();
        let wanted = Wanted {
            scope,
            user_id,
            reply,
        };
        if self.identities().queue(wanted) {
            let engine = self.clone();
            tokio::spawn(async move { engine.read_identities().await });
        }
        // No answer: the read panicked.
        answer.await.unwrap_or(Err(ApiError::Unavailable))
    }

    /// A reader: answers the waiting handshakes, a query for as many as waited, until none
    /// wait.
    async fn read_identities(&self) {
        while let Some(batch) = self.identities().take() {
            let wanted: Vec<(RoomScope, UserId)> = batch
                .iter()
                .map(|wanted| (wanted.scope, wanted.user_id))
                .collect();
            // A bug in one read must not stop the reader: its handshakes get no answer.
            let read = AssertUnwindSafe(self.store().get_users_and_rooms(&wanted)).catch_unwind();
            match read.await {
                Ok(Ok(found)) => {
                    for (wanted, found) in batch.into_iter().zip(found) {
                        let _ = wanted.reply.send(Ok(found));
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, sockets = batch.len(), "socket auth: database error");
                    for wanted in batch {
                        let _ = wanted.reply.send(Err(ApiError::Unavailable));
                    }
                }
                Err(_) => tracing::error!(sockets = batch.len(), "socket auth: the read panicked"),
            }
        }
    }
}
