//! The relay between nodes over Redis pub/sub: a room's traffic is published on the room's
//! channel by the node where it happens and received by every node subscribed to the room
//! (those with the room loaded). Two connections per node, one publishing and one subscribed,
//! each reconnecting with backoff. Best effort, as Redis pub/sub is: what is published while
//! a connection is down is lost (docs/scaling.md says what repairs it).

pub mod resp;
mod url;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::domain::{NodeId, RoomId};
use resp::Reply;
pub use url::RedisUrl;

/// Messages waiting to be published; past this they are dropped (and counted): a relay that
/// cannot keep up must not hold memory for it.
const PUBLISH_QUEUE: usize = 16_384;
/// Messages received and not yet handed to the rooms; past this they are dropped.
const RECEIVE_QUEUE: usize = 16_384;
/// Messages published in one write (pipelined).
const PUBLISH_BATCH: usize = 256;
/// Channels named in one `SUBSCRIBE` when a connection starts over.
const SUBSCRIBE_BATCH: usize = 512;
/// How long connecting (and authenticating) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between attempts to reconnect: doubling from the first to the last.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Prefix of the rooms' channels.
const CHANNEL_PREFIX: &str = "collabkit:room:";

/// What the relay hands to the node.
#[derive(Debug)]
pub enum Received {
    /// A message on a room's channel.
    Message { room_id: RoomId, payload: Bytes },
    /// The subscribed connection is back after a failure: what was published meanwhile on
    /// the node's rooms is lost.
    Resumed,
    /// The publishing connection is back: messages of these rooms were dropped meanwhile (or
    /// the queue overflowed), so the other nodes missed them.
    Lost(Vec<RoomId>),
}

enum Subscription {
    Subscribe(RoomId),
    Unsubscribe(RoomId),
}

/// What a relay has carried, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayCounts {
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
}

/// The node's side of the relay; cheap to clone.
#[derive(Clone)]
pub struct Relay(Arc<Inner>);

struct Inner {
    /// The node this relay is of: what it sends is marked as its own.
    node: NodeId,
    publish: mpsc::Sender<(RoomId, Bytes)>,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    dropped: AtomicU64,
    /// Messages handed to the publisher, and received from other nodes (for metrics).
    published: AtomicU64,
    received: AtomicU64,
    /// Rooms whose messages were dropped since the publisher last reported them.
    lost: std::sync::Mutex<HashSet<RoomId>>,
    /// Rooms whose received messages were dropped (the node did not keep up).
    missed: std::sync::Mutex<HashSet<RoomId>>,
    /// Rooms whose subscription Redis confirmed on the current connection.
    confirmed: std::sync::Mutex<HashSet<RoomId>>,
    /// Woken when `confirmed` grows or the subscribed connection goes.
    confirmations: Notify,
}

impl Relay {
    /// Starts the connections; what arrives on subscribed rooms goes to the returned
    /// receiver. They stop with `shutdown`.
    pub fn start(
        url: RedisUrl,
        node: NodeId,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::Receiver<Received>) {
        let (publish, to_publish) = mpsc::channel(PUBLISH_QUEUE);
        let (subscriptions, wanted) = mpsc::unbounded_channel();
        let (received, incoming) = mpsc::channel(RECEIVE_QUEUE);
        let relay = Self(Arc::new(Inner {
            node,
            publish,
            subscriptions,
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lost: std::sync::Mutex::default(),
            missed: std::sync::Mutex::default(),
            confirmed: std::sync::Mutex::default(),
            confirmations: Notify::new(),
        }));
        tokio::spawn(relay.clone().publisher(
            url.clone(),
            to_publish,
            received.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(relay.clone().subscriber(url, wanted, received, shutdown));
        (relay, incoming)
    }

    /// Messages published, received and dropped (either way) since start.
    pub fn counts(&self) -> RelayCounts {
        RelayCounts {
            published: self.0.published.load(Ordering::Relaxed),
            received: self.0.received.load(Ordering::Relaxed),
            dropped: self.0.dropped.load(Ordering::Relaxed),
        }
    }

    /// The node this relay is of.
    pub fn node(&self) -> &NodeId {
        &self.0.node
    }

    /// Publishes on the room's channel, without waiting (dropped if the queue is full).
    pub fn publish(&self, room_id: RoomId, payload: Bytes) {
        // Closed: the node is shutting down, nothing more goes out.
        let sent = self.0.publish.try_send((room_id, payload));
        if sent.is_ok() {
            self.0.published.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = sent {
            self.lose(room_id);
            let dropped = self.0.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "relay: the publish queue is full; messages dropped"
                );
            }
        }
    }

    fn lock_missed(&self) -> std::sync::MutexGuard<'_, HashSet<RoomId>> {
        self.0.missed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rooms whose received messages were dropped since the last call: their sockets
    /// must be resynchronized.
    pub fn take_missed(&self) -> Vec<RoomId> {
        std::mem::take(&mut *self.lock_missed())
            .into_iter()
            .collect()
    }

    fn lock_confirmed(&self) -> std::sync::MutexGuard<'_, HashSet<RoomId>> {
        self.0.confirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until Redis confirms the room's subscription (asked for as the room loaded), so
    /// that what other nodes publish from then on arrives: a join reads the room after it.
    /// Returns at once while the subscribed connection is down (nothing would arrive anyway;
    /// its return resynchronizes the room), and after `within` at the latest.
    pub async fn subscribed(&self, room_id: RoomId, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.0.confirmations.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.0.subscriber_up.load(Ordering::Relaxed)
                || self.lock_confirmed().contains(&room_id)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(room = %room_id, "relay: Redis did not confirm a subscription in time");
                return;
            }
        }
    }

    /// Whether Redis confirmed the room's subscription on the current connection.
    pub fn is_subscribed(&self, room_id: RoomId) -> bool {
        self.lock_confirmed().contains(&room_id)
    }

    /// Notes that a message of the room was dropped.
    fn lose(&self, room_id: RoomId) {
        self.0
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room_id);
    }

    /// Receives the room's messages from now on (the room was loaded on this node).
    pub fn subscribe(&self, room_id: RoomId) {
        self.lock_confirmed().remove(&room_id);
        let _ = self.0.subscriptions.send(Subscription::Subscribe(room_id));
    }

    /// Stops receiving the room's messages (the room was unloaded).
    pub fn unsubscribe(&self, room_id: RoomId) {
        self.lock_confirmed().remove(&room_id);
        let _ = self
            .0
            .subscriptions
            .send(Subscription::Unsubscribe(room_id));
    }

    /// Whether both connections to Redis are up.
    pub fn is_up(&self) -> bool {
        self.0.publisher_up.load(Ordering::Relaxed) && self.0.subscriber_up.load(Ordering::Relaxed)
    }

    async fn publisher(
        self,
        url: RedisUrl,
        mut queue: mpsc::Receiver<(RoomId, Bytes)>,
        received: mpsc::Sender<Received>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = FIRST_BACKOFF;
        while !shutdown.is_cancelled() {
            let mut conn = match connect(&url, &self.0.node).await {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "relay: cannot connect to Redis to publish");
                    // What waits is dropped rather than sent late, after the moment it was for.
                    let mut stale = 0;
                    while let Ok((room_id, _)) = queue.try_recv() {
                        self.lose(room_id);
                        stale += 1;
                    }
                    self.0.dropped.fetch_add(stale, Ordering::Relaxed);
                    sleep_or_stop(&mut backoff, &shutdown).await;
                    continue;
                }
            };
            backoff = FIRST_BACKOFF;
            self.0.publisher_up.store(true, Ordering::Relaxed);
            let lost: Vec<RoomId> =
                std::mem::take(&mut *self.0.lost.lock().unwrap_or_else(|p| p.into_inner()))
                    .into_iter()
                    .collect();
            if !lost.is_empty() {
                let _ = received.send(Received::Lost(lost)).await;
            }
            let outcome = publish_until_error(&mut conn, &mut queue, &shutdown).await;
            self.0.publisher_up.store(false, Ordering::Relaxed);
            if let Err(error) = outcome {
                tracing::warn!(%error, "relay: lost the Redis connection that publishes");
            }
        }
    }

    async fn subscriber(
        self,
        url: RedisUrl,
        mut wanted: mpsc::UnboundedReceiver<Subscription>,
        received: mpsc::Sender<Received>,
        shutdown: CancellationToken,
    ) {
        let mut rooms: HashSet<RoomId> = HashSet::new();
        let mut backoff = FIRST_BACKOFF;
        // Whether a connection failed (or never came) since the last one: its rooms' messages
        // published meanwhile are lost.
        let mut failed = false;
        while !shutdown.is_cancelled() {
            let mut conn = match connect(&url, &self.0.node).await {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "relay: cannot connect to Redis to subscribe");
                    // Meanwhile, keep track of the rooms wanted.
                    while let Ok(change) = wanted.try_recv() {
                        apply(&mut rooms, change);
                    }
                    failed = true;
                    sleep_or_stop(&mut backoff, &shutdown).await;
                    continue;
                }
            };
            backoff = FIRST_BACKOFF;
            if std::mem::take(&mut failed) {
                let _ = received.send(Received::Resumed).await;
            }
            let outcome = receive_until_error(
                &self,
                &mut conn,
                &mut rooms,
                &mut wanted,
                &received,
                &shutdown,
            )
            .await;
            self.0.subscriber_up.store(false, Ordering::Relaxed);
            self.lock_confirmed().clear();
            self.0.confirmations.notify_waiters();
            if let Err(error) = outcome {
                tracing::warn!(%error, "relay: lost the Redis connection that receives");
                failed = true;
            }
        }
    }
}

/// Adds or removes a room; whether that changed anything.
fn apply(rooms: &mut HashSet<RoomId>, change: Subscription) -> Option<(&'static [u8], RoomId)> {
    match change {
        Subscription::Subscribe(room) => rooms.insert(room).then_some((b"SUBSCRIBE", room)),
        Subscription::Unsubscribe(room) => rooms.remove(&room).then_some((b"UNSUBSCRIBE", room)),
    }
}

fn channel(room_id: RoomId) -> String {
    format!("{CHANNEL_PREFIX}{room_id}")
}

async fn sleep_or_stop(backoff: &mut Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = shutdown.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// A connection, authenticated and on its database.
struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

impl Connection {
    async fn send(&mut self, out: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(out).await
    }

    /// The next reply (or push).
    async fn reply(&mut self) -> std::io::Result<Reply> {
        loop {
            if let Some(reply) = resp::take(&mut self.buf).map_err(std::io::Error::other)? {
                return Ok(reply);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Sends one command and wants `+OK`.
    async fn ok(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut out = Vec::new();
        resp::command(&mut out, args);
        self.send(&out).await?;
        match self.reply().await? {
            Reply::Simple(_) => Ok(()),
            Reply::Error(error) => Err(std::io::Error::other(error)),
            _ => Err(std::io::Error::other("unexpected reply")),
        }
    }
}

async fn connect(url: &RedisUrl, node: &NodeId) -> std::io::Result<Connection> {
    let attempt = async {
        let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        match (&url.user, &url.password) {
            (Some(user), Some(password)) => {
                conn.ok(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                    .await?;
            }
            (None, Some(password)) => conn.ok(&[b"AUTH", password.as_bytes()]).await?,
            _ => {}
        }
        if url.db != 0 {
            conn.ok(&[b"SELECT", url.db.to_string().as_bytes()]).await?;
        }
        // Named for `CLIENT LIST`: which node holds which connection.
        let name: String = format!("collabkit-relay:{node}")
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        conn.ok(&[b"CLIENT", b"SETNAME", name.as_bytes()]).await?;
        Ok(conn)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Publishes what is queued, in pipelined batches, until the connection fails.
async fn publish_until_error(
    conn: &mut Connection,
    queue: &mut mpsc::Receiver<(RoomId, Bytes)>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    loop {
        let first = tokio::select! {
            message = queue.recv() => match message {
                Some(message) => message,
                None => return Ok(()),
            },
            () = shutdown.cancelled() => return Ok(()),
        };
        out.clear();
        let mut count = 0;
        let mut next = Some(first);
        while let Some((room_id, payload)) = next.take() {
            resp::command(
                &mut out,
                &[b"PUBLISH", channel(room_id).as_bytes(), &payload],
            );
            count += 1;
            if count < PUBLISH_BATCH {
                next = queue.try_recv().ok();
            }
        }
        conn.send(&out).await?;
        for _ in 0..count {
            if let Reply::Error(error) = conn.reply().await? {
                tracing::warn!(%error, "relay: Redis refused a publish");
            }
        }
    }
}

/// Keeps the subscriptions as wanted and hands over what arrives, until the connection fails.
async fn receive_until_error(
    relay: &Relay,
    conn: &mut Connection,
    rooms: &mut HashSet<RoomId>,
    wanted: &mut mpsc::UnboundedReceiver<Subscription>,
    received: &mpsc::Sender<Received>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    // Start over with every room wanted, those asked for meanwhile included.
    while let Ok(change) = wanted.try_recv() {
        apply(rooms, change);
    }
    let all: Vec<String> = rooms.iter().map(|room| channel(*room)).collect();
    for batch in all.chunks(SUBSCRIBE_BATCH) {
        let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        args.extend(batch.iter().map(String::as_bytes));
        let mut out = Vec::new();
        resp::command(&mut out, &args);
        conn.send(&out).await?;
    }
    relay.0.subscriber_up.store(true, Ordering::Relaxed);
    loop {
        if let Some(reply) = resp::take(&mut conn.buf).map_err(std::io::Error::other)? {
            hand_over(relay, reply, received);
            continue;
        }
        tokio::select! {
            change = wanted.recv() => {
                let Some(change) = change else { return Ok(()) };
                if let Some((verb, room)) = apply(rooms, change) {
                    let mut out = Vec::new();
                    resp::command(&mut out, &[verb, channel(room).as_bytes()]);
                    conn.send(&out).await?;
                }
            }
            read = conn.stream.read_buf(&mut conn.buf) => {
                if read? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// A `message` push goes to the rooms; confirmations of (un)subscribing are nothing to do.
fn hand_over(relay: &Relay, reply: Reply, received: &mpsc::Sender<Received>) {
    let Reply::Array(Some(parts)) = reply else {
        if let Reply::Error(error) = reply {
            tracing::warn!(%error, "relay: Redis refused a subscription");
        }
        return;
    };
    // `message`, channel, payload; or `subscribe`/`unsubscribe`, channel, count.
    let [Reply::Bulk(Some(kind)), Reply::Bulk(Some(channel)), third] = parts.as_slice() else {
        return;
    };
    let room_id = std::str::from_utf8(channel)
        .ok()
        .and_then(|channel| channel.strip_prefix(CHANNEL_PREFIX))
        .and_then(|id| id.parse().ok());
    let Some(room_id) = room_id else { return };
    let payload = match (kind.as_slice(), third) {
        (b"message", Reply::Bulk(Some(payload))) => payload,
        (b"subscribe", _) => {
            relay.lock_confirmed().insert(room_id);
            relay.0.confirmations.notify_waiters();
            return;
        }
        (b"unsubscribe", _) => {
            relay.lock_confirmed().remove(&room_id);
            return;
        }
        _ => return,
    };
    relay.0.received.fetch_add(1, Ordering::Relaxed);
    let message = Received::Message {
        room_id,
        payload: Bytes::copy_from_slice(payload),
    };
    if let Err(mpsc::error::TrySendError::Full(_)) = received.try_send(message) {
        relay.lock_missed().insert(room_id);
        let dropped = relay.0.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, "relay: the rooms do not keep up; messages dropped");
        }
    }
}
