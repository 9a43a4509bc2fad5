//! Activity over time: per-room per-minute counters (joins, peak online users, presence
//! updates, broadcasts, store writes, comments), added up in memory as things happen and
//! written in one batch every `analytics.flush_interval_ms`, never once per message. The
//! dashboard's charts read them back (`store::analytics`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{AccountId, RoomId, Timestamp};
use crate::store::{DynStore, RoomMinute};

const MINUTE_MS: i64 = 60_000;

/// Something that happened in a room, counted in its minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Join,
    PresenceUpdate,
    Broadcast,
    StoreWrite,
    Comment,
}

/// The counters not written yet.
#[derive(Default)]
pub struct Analytics {
    pending: Mutex<HashMap<(RoomId, i64), RoomMinute>>,
    /// One flush at a time: a flush that finds nothing pending while another is still
    /// writing waits for it, so that whoever flushes before reading (the analytics page)
    /// reads what was counted.
    flushing: tokio::sync::Mutex<()>,
}

impl Analytics {
    /// Counts one `activity` in the room, now.
    pub fn record(&self, account_id: AccountId, room_id: RoomId, activity: Activity) {
        self.update(account_id, room_id, |minute| {
            let counter = match activity {
                Activity::Join => &mut minute.joins,
                Activity::PresenceUpdate => &mut minute.presence_updates,
                Activity::Broadcast => &mut minute.broadcasts,
                Activity::StoreWrite => &mut minute.store_writes,
                Activity::Comment => &mut minute.comments,
            };
            *counter += 1;
        });
    }

    /// Notes how many users are online in the room now (the minute keeps its peak).
    pub fn online(&self, account_id: AccountId, room_id: RoomId, users: i64) {
        self.update(account_id, room_id, |minute| {
            minute.peak_users = minute.peak_users.max(users);
        });
    }

    fn update(&self, account_id: AccountId, room_id: RoomId, change: impl FnOnce(&mut RoomMinute)) {
        let now = Timestamp::now().as_millis();
        let start = now - now.rem_euclid(MINUTE_MS);
        let mut pending = self.lock();
        let minute = pending
            .entry((room_id, start))
            .or_insert_with(|| RoomMinute {
                account_id,
                room_id,
                minute: Timestamp::from_millis(start),
                ..RoomMinute::default()
            });
        change(minute);
    }

    /// Writes what was counted since the last flush, in one batch. Counters a failed write
    /// held are put back for the next one.
    pub async fn flush(&self, store: &DynStore) {
        let _turn = self.flushing.lock().await;
        let batch: Vec<RoomMinute> = self.lock().drain().map(|(_, minute)| minute).collect();
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.add_room_minutes(&batch).await {
            tracing::warn!(%error, minutes = batch.len(), "writing activity counters failed; will retry");
            let mut pending = self.lock();
            for minute in batch {
                let key = (minute.room_id, minute.minute.as_millis());
                match pending.get_mut(&key) {
                    Some(newer) => newer.absorb(&minute),
                    None => {
                        pending.insert(key, minute);
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RoomId, i64), RoomMinute>> {
        // Counters hold no invariant a panic could break halfway.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Flushes every `interval` until `shutdown`, then once more; deletes minutes older than
/// `retention` once an hour.
pub async fn run(
    analytics: std::sync::Arc<Analytics>,
    store: DynStore,
    interval: Duration,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        analytics.flush(&store).await;
        if last_prune.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
            last_prune = Some(tokio::time::Instant::now());
            let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let before = Timestamp::from_millis(Timestamp::now().as_millis() - retention_ms);
            if let Err(error) = store.delete_room_minutes_before(before).await {
                tracing::warn!(%error, "deleting old activity counters failed");
            }
        }
    }
    analytics.flush(&store).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_room_and_minute() {
        let analytics = Analytics::default();
        let (account, room, other) = (AccountId::new(), RoomId::new(), RoomId::new());
        analytics.record(account, room, Activity::Broadcast);
        analytics.record(account, room, Activity::Broadcast);
        analytics.record(account, room, Activity::Comment);
        analytics.online(account, room, 3);
        analytics.online(account, room, 1);
        analytics.record(account, other, Activity::Join);
        let pending = analytics.lock();
        let minutes: Vec<_> = pending.values().filter(|m| m.room_id == room).collect();
        // A minute may have turned between two calls; add the minutes up.
        let broadcasts: i64 = minutes.iter().map(|m| m.broadcasts).sum();
        assert_eq!(broadcasts, 2);
        assert_eq!(minutes.iter().map(|m| m.peak_users).max(), Some(3));
        assert!(pending.values().any(|m| m.room_id == other && m.joins == 1));
        assert!(pending
            .values()
            .all(|m| m.minute.as_millis() % MINUTE_MS == 0));
    }
}
