//! The PostgreSQL backend, for production and for several server nodes on one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Executor, Pool, Postgres};
use tokio::sync::mpsc;

use super::sealing::Sealer;
use super::sql::SqlStore;
use super::{RoomSignal, StoreOptions, StoreResult};
use crate::domain::RoomId;

/// The channel on which the database reports changes to rooms and their users: a trigger on
/// `rooms` and `users` (migrations 0008 to 0010) notifies it when they change and commit, with the
/// room's ID and the origin of the connection that made the change (`collabkit.origin`).
const ROOM_CHANNEL: &str = "collabkit_room_changes";
/// Signals waiting for the engine before the listener waits for it.
const SIGNALS_QUEUED: usize = 1024;
/// First wait before listening again after the feed broke; it doubles, up to the most.
const RELISTEN_DELAY: Duration = Duration::from_millis(100);
const RELISTEN_DELAY_MAX: Duration = Duration::from_secs(5);

pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to the database the URL names, and migrates it.
    pub async fn connect(url: &str, options: &StoreOptions, sealer: Sealer) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        // Every connection of the pool carries this store's origin, with which the database
        // tags the room changes it reports (`watch_rooms`): the node tells its own from
        // other nodes'.
        let origin = uuid::Uuid::new_v4().simple().to_string();
        // No test before each acquire: it is a round trip to the server, doubling a short
        // query's cost. A connection the server dropped fails its next query, and the pool
        // then closes it and opens another.
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                let set = format!("SET collabkit.origin = '{origin}'");
                Box::pin(async move { conn.execute(set.as_str()).await.map(|_| ()) })
            })
            .connect_with(connect)
            .await?;
        SqlStore::open(pool.clone(), pool, sealer).await
    }
}

/// Listens for the room changes that commit, on a connection of its own, until the receiver
/// is dropped: `Listening` once subscribed, `Changed` for each change, `Lost` when the
/// connection broke (notifications sent meanwhile are gone), then `Listening` again.
pub(super) fn watch_rooms(pool: Pool<Postgres>) -> mpsc::Receiver<RoomSignal> {
    let (signals, receiver) = mpsc::channel(SIGNALS_QUEUED);
    tokio::spawn(async move {
        let mut delay = RELISTEN_DELAY;
        while !signals.is_closed() && !pool.is_closed() {
            tokio::select! {
                () = signals.closed() => return,
                () = listen(&pool, &signals, &mut delay) => {}
            }
            let _ = signals.send(RoomSignal::Lost).await;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RELISTEN_DELAY_MAX);
        }
    });
    receiver
}

/// One subscription, until it breaks.
async fn listen(pool: &Pool<Postgres>, signals: &mpsc::Sender<RoomSignal>, delay: &mut Duration) {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "listening for room changes: cannot connect");
            return;
        }
    };
    if let Err(error) = listener.listen(ROOM_CHANNEL).await {
        tracing::warn!(%error, "listening for room changes failed");
        return;
    }
    let origin: String = match sqlx::query_scalar("SELECT current_setting('collabkit.origin')")
        .fetch_one(pool)
        .await
    {
        Ok(origin) => origin,
        Err(error) => {
            tracing::warn!(%error, "listening for room changes: cannot read this node's origin");
            return;
        }
    };
    if signals.send(RoomSignal::Listening).await.is_err() {
        return;
    }
    *delay = RELISTEN_DELAY;
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let (room_id, from) = notification
                    .payload()
                    .split_once(' ')
                    .unwrap_or((notification.payload(), ""));
                let Ok(room_id) = room_id.parse::<RoomId>() else {
                    continue;
                };
                let signal = RoomSignal::Changed {
                    room_id,
                    own: from == origin,
                };
                if signals.send(signal).await.is_err() {
                    return;
                }
            }
            // The connection was lost: what was notified meanwhile is gone.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "listening for room changes failed");
                return;
            }
        }
    }
}
