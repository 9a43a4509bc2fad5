//! One WebSocket: authentication first, then a reader (this task) that serves requests and a
//! writer task that drains the bounded outbox, sends heartbeats and closes dead peers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, RoomHandle};
use super::presence::{NewState, SyncTarget};
use super::protocol::{
    close, unreadable_request_id, ClientFrame, ErrorBody, FollowGraph, Limits, RequestId,
    ServerFrame, SocketUser, MAX_REQUEST_ID_CHARS, PROTOCOL_VERSION,
};
use super::room::RoomCommand;
use crate::app::AppState;
use crate::auth::rate_limit::TokenBucket;
use crate::domain::{ConnectionId, Room, Timestamp, User, UserId};
use crate::error::ApiError;
use crate::store::{ConnectionRecord, Entity, NewConnection, PageSize, RoomScope, UserCursor};

/// Frames written to a socket before one flush.
const WRITE_BATCH_FRAMES: usize = 64;
/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes a connection from anywhere (its room, its writer, shutdown) with a reason.
#[derive(Clone)]
pub struct Closer {
    token: CancellationToken,
    reason: Arc<OnceLock<(u16, &'static str)>>,
}

impl Closer {
    fn new(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.reason.set((code, reason));
        self.token.cancel();
    }

    /// The first reason given; a bare cancellation is the server shutting down.
    fn reason(&self) -> (u16, &'static str) {
        self.reason
            .get()
            .copied()
            .unwrap_or((close::GOING_AWAY, "server shutting down"))
    }
}

/// The sending side of a connection's bounded queue of frames.
#[derive(Clone)]
pub struct Outbox {
    frames: mpsc::Sender<Utf8Bytes>,
    closer: Closer,
}

impl Outbox {
    /// Queues a frame without waiting. A full queue means the client cannot keep up: it is
    /// closed (4000) so that it reconnects and resynchronizes, instead of holding anyone up.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        match self.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.closer
                    .close(close::TOO_SLOW, "too slow: messages were dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        self.closer.close(code, reason);
    }
}

/// Who the socket authenticated as.
struct Identity {
    scope: RoomScope,
    user: User,
    room: Room,
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

pub async fn run(socket: WebSocket, state: AppState) {
    let hub = state.hub().clone();
    let config = hub.config().clone();
    let connection_id = ConnectionId::new();
    let (mut sink, mut stream) = socket.split();
    let identity = tokio::select! {
        identity = authenticate(&mut stream, &state) => identity,
        () = hub.shutdown_token().cancelled() => return,
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(refusal) => {
            let (frame, close) = match refusal {
                Refusal::Rejected(message) => {
                    tracing::info!(connection = %connection_id, reason = message, "socket auth failed");
                    let frame = ServerFrame::AuthFailed {
                        code: "UNAUTHORIZED",
                        message,
                    };
                    (
                        frame.encode(),
                        close_message(close::AUTH_FAILED, "authFailed"),
                    )
                }
                Refusal::TooBig => {
                    let limit = config.max_message_bytes;
                    let error = ErrorBody::from(&ApiError::PayloadTooLarge { limit });
                    let frame = ServerFrame::Error { error };
                    (
                        frame.encode(),
                        close_message(close::TOO_BIG, "frame too large"),
                    )
                }
                Refusal::Unavailable => {
                    let error = ErrorBody::from(&ApiError::Unavailable);
                    let frame = ServerFrame::Error { error };
                    (
                        frame.encode(),
                        close_message(close::TRY_AGAIN_LATER, "try again later"),
                    )
                }
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                sink.send(Message::Text(frame)).await?;
                sink.send(close).await
            })
            .await;
            return;
        }
    };
    let span = tracing::info_span!(
        "socket",
        connection = %connection_id,
        user = %identity.user.id,
        room = %identity.scope.room_id,
    );
    let _entered = span.enter();
    drop(_entered);

    let closer = Closer::new(hub.shutdown_token());
    let (frames, outbox_rx) = mpsc::channel(config.outbox_frames);
    let outbox = Outbox {
        frames,
        closer: closer.clone(),
    };
    let Ok(_registered) = hub.register_socket(
        connection_id,
        identity.scope,
        identity.user.id,
        outbox.clone(),
    ) else {
        tracing::info!(parent: &span, "socket refused: the user holds too many connections");
        let error = ErrorBody {
            code: ApiError::RateLimited {
                retry_after_secs: 0,
            }
            .code(),
            message: format!(
                "This user holds {} connections on this server already; close one first",
                config.max_connections_per_user
            ),
            field: None,
        };
        let frame = ServerFrame::Error { error }.encode();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            sink.send(Message::Text(frame)).await?;
            sink.send(close_message(
                close::TRY_AGAIN_LATER,
                "too many connections",
            ))
            .await
        })
        .await;
        return;
    };
    let last_seen = Arc::new(AtomicI64::new(Timestamp::now().as_millis()));
    let writer = tokio::spawn(write_loop(
        sink,
        outbox_rx,
        closer.clone(),
        last_seen.clone(),
        hub.clone(),
    ));

    let mut connection = Connection {
        id: connection_id,
        scope: identity.scope,
        user_id: identity.user.id,
        state: state.clone(),
        hub: hub.clone(),
        outbox,
        bucket: TokenBucket::full(f64::from(config.message_burst), Instant::now()),
        room: None,
    };
    connection.welcome(identity.user, &identity.room).await;
    tracing::debug!(parent: &span, "socket authenticated");
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = closer.token.cancelled() => break,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                let (code, reason) = read_failure(error);
                closer.close(code, reason);
                break;
            }
            None => break,
        };
        last_seen.store(Timestamp::now().as_millis(), Ordering::Relaxed);
        match message {
            Message::Text(text) => connection.handle_text(text.as_str()).await,
            Message::Binary(_) => connection.error(
                None,
                ApiError::BadRequest("Binary frames are not supported".into()),
            ),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    connection.leave().await;
    // The client went away (or closed): let the writer flush and say goodbye. Otherwise the
    // writer already has the reason (shutdown, too slow, deleted...).
    if !closer.token.is_cancelled() {
        closer.close(close::NORMAL, "bye");
    }
    let _ = writer.await;
    tracing::debug!(parent: &span, "socket closed");
}

/// Why reading a socket failed, as a close code: a frame over the hard cap (1009), or
/// anything else the peer did wrong or a lost connection (1002).
fn read_failure(error: axum::Error) -> (u16, &'static str) {
    match error.into_inner().downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => (close::TOO_BIG, "frame too large"),
        _ => (close::PROTOCOL_ERROR, "connection error"),
    }
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Waits for the auth frame and checks its token: signature, expiry, and that the account,
/// room and user still exist. The error is the reason told to the client.
/// Why a socket was not authenticated.
enum Refusal {
    /// The token is no good: the client must not retry it (4401).
    Rejected(&'static str),
    /// The server could not check it (its database failed): the client may retry (1013).
    Unavailable,
    /// The first frame was over the frame limit: a broken client, not a bad token, so it
    /// is told so (1009) rather than never to retry its token.
    TooBig,
}

impl From<&'static str> for Refusal {
    fn from(reason: &'static str) -> Self {
        Self::Rejected(reason)
    }
}

async fn authenticate(stream: &mut Stream, state: &AppState) -> Result<Identity, Refusal> {
    let timeout = state.hub().config().auth_timeout();
    let first = match tokio::time::timeout(timeout, stream.next()).await {
        Err(_) => return Err("No auth frame in time".into()),
        Ok(Some(Err(error))) => {
            return Err(match read_failure(error) {
                (close::TOO_BIG, _) => Refusal::TooBig,
                _ => "Connection closed before authenticating".into(),
            })
        }
        Ok(None) => return Err("Connection closed before authenticating".into()),
        Ok(Some(Ok(message))) => message,
    };
    let Message::Text(text) = first else {
        return Err("The first frame must be an auth frame".into());
    };
    if text.len() > state.hub().config().max_message_bytes {
        return Err(Refusal::TooBig);
    }
    let Ok(ClientFrame::Auth { token, .. }) = serde_json::from_str::<ClientFrame>(text.as_str())
    else {
        return Err("The first frame must be an auth frame".into());
    };
    let claims = state
        .jwt()
        .verify(&token, Timestamp::now())
        .map_err(|error| match error {
            crate::auth::JwtError::Expired => "Token has expired",
            crate::auth::JwtError::WrongAlgorithm => "Token is not signed with HS256",
            crate::auth::JwtError::BadSignature => "Token signature is invalid",
            crate::auth::JwtError::Malformed => "Token is malformed",
        })?;
    let scope = RoomScope {
        account_id: claims.account_id,
        room_id: claims.room_id,
    };
    let store = state.store();
    let (user, room) = tokio::try_join!(
        store.get_user(scope, claims.user_id),
        store.get_room(claims.account_id, claims.room_id)
    )
    .map_err(|error| {
        tracing::error!(%error, "socket auth: database error");
        Refusal::Unavailable
    })?;
    match (user, room) {
        (Some(user), Some(room)) => Ok(Identity { scope, user, room }),
        _ => Err("The token's user or room no longer exists".into()),
    }
}

async fn write_loop(
    mut sink: Sink,
    mut outbox: mpsc::Receiver<Utf8Bytes>,
    closer: Closer,
    last_seen: Arc<AtomicI64>,
    hub: Hub,
) {
    let config = hub.config();
    let mut heartbeat = tokio::time::interval(config.heartbeat_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let write_timeout = config.write_timeout();
    let dead_after = config.heartbeat_timeout().as_millis() as i64;
    loop {
        tokio::select! {
            biased;
            () = closer.token.cancelled() => break,
            frame = outbox.recv() => {
                let Some(frame) = frame else { break };
                // Everything already queued goes out in one flush.
                let batch = async {
                    sink.feed(Message::Text(frame)).await?;
                    for _ in 1..WRITE_BATCH_FRAMES {
                        match outbox.try_recv() {
                            Ok(frame) => sink.feed(Message::Text(frame)).await?,
                            Err(_) => break,
                        }
                    }
                    sink.flush().await
                };
                match tokio::time::timeout(write_timeout, batch).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => { closer.close(close::NORMAL, "connection lost"); break }
                    Err(_) => closer.close(close::TOO_SLOW, "too slow: a write timed out"),
                }
            }
            _ = heartbeat.tick() => {
                let silent = Timestamp::now().as_millis() - last_seen.load(Ordering::Relaxed);
                if silent > dead_after {
                    closer.close(close::DEAD_PEER, "no heartbeat");
                    continue;
                }
                if tokio::time::timeout(write_timeout, sink.send(Message::Ping(Default::default()))).await.is_err() {
                    closer.close(close::TOO_SLOW, "too slow: a write timed out");
                }
            }
        }
    }
    let (code, reason) = closer.reason();
    // Flush what is already queued (responses before a normal close), then say goodbye.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if code == close::NORMAL || code == close::GOING_AWAY || code == close::GONE {
            while let Ok(frame) = outbox.try_recv() {
                sink.send(Message::Text(frame)).await?;
            }
        }
        sink.send(close_message(code, reason)).await
    })
    .await;
}

/// The authenticated side of one socket.
struct Connection {
    id: ConnectionId,
    scope: RoomScope,
    user_id: UserId,
    state: AppState,
    hub: Hub,
    outbox: Outbox,
    bucket: TokenBucket,
    /// Set once `room.join` succeeded.
    room: Option<Arc<RoomHandle>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoomGetParams {
    room_id: Option<String>,
    /// The users after this cursor (a page's `cursor`).
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersPageParams {
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserParams {
    user_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceParams {
    state: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncParams {
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BroadcastParams {
    event: String,
    #[serde(default)]
    data: Value,
    user_ids: Option<Vec<String>>,
}

/// Longest custom event name of a broadcast.
const MAX_EVENT_NAME_CHARS: usize = 128;

impl Connection {
    fn limits(&self) -> Limits {
        let config = self.hub.config();
        Limits {
            max_message_bytes: config.max_message_bytes,
            max_broadcast_bytes: config.max_broadcast_bytes,
            max_presence_bytes: config.max_presence_bytes,
            messages_per_second: config.messages_per_second,
            message_burst: config.message_burst,
        }
    }

    async fn welcome(&mut self, user: User, room: &Room) {
        let user = self
            .graph()
            .await
            .map(|g| g.socket_user(user.clone()))
            .unwrap_or(SocketUser {
                user,
                following: Vec::new(),
                followers: Vec::new(),
            });
        let frame = ServerFrame::Welcome {
            protocol: PROTOCOL_VERSION,
            connection_id: self.id.to_string(),
            user: &user,
            room,
            heartbeat_interval_ms: self.hub.config().heartbeat_interval_ms,
            limits: self.limits(),
        };
        self.outbox.send(frame.encode());
    }

    fn error(&self, id: Option<&RequestId>, error: ApiError) {
        if let ApiError::Internal(detail) = &error {
            tracing::error!(error = format!("{detail:#}"), "socket request failed");
        }
        let body = ErrorBody::from(&error);
        let frame = match id {
            Some(id) => ServerFrame::Res {
                id,
                ok: false,
                result: None,
                error: Some(body),
            },
            None => ServerFrame::Error { error: body },
        };
        self.outbox.send(frame.encode());
    }

    async fn handle_text(&mut self, text: &str) {
        let config = self.hub.config();
        let (per_second, burst) = (
            f64::from(config.messages_per_second),
            f64::from(config.message_burst),
        );
        let too_big = text.len() > config.max_message_bytes;
        let frame = serde_json::from_str::<ClientFrame>(text);
        let id = match &frame {
            Ok(ClientFrame::Req { id, .. }) => id.clone(),
            Ok(_) => None,
            Err(_) => unreadable_request_id(text),
        };
        if let Some(RequestId::Text(text)) = &id {
            if text.chars().count() > MAX_REQUEST_ID_CHARS {
                return self.error(
                    None,
                    ApiError::validation("id", "id must be at most 64 characters"),
                );
            }
        }
        if self.bucket.take(per_second, burst, Instant::now()).is_err() {
            return self.error(
                id.as_ref(),
                ApiError::RateLimited {
                    retry_after_secs: 1,
                },
            );
        }
        if too_big {
            let limit = config.max_message_bytes;
            return self.error(id.as_ref(), ApiError::PayloadTooLarge { limit });
        }
        match frame {
            Err(error) => self.error(
                id.as_ref(),
                ApiError::BadRequest(format!("Unreadable frame: {error}").into()),
            ),
            Ok(ClientFrame::Ping) => {
                self.outbox.send(ServerFrame::Pong.encode());
            }
            Ok(ClientFrame::Auth { .. }) => {
                self.error(None, ApiError::BadRequest("Already authenticated".into()))
            }
            Ok(ClientFrame::Req { id, method, params }) => match self.call(&method, params).await {
                Ok(result) => {
                    if let Some(id) = &id {
                        let frame = ServerFrame::Res {
                            id,
                            ok: true,
                            result: Some(&result),
                            error: None,
                        };
                        self.outbox.send(frame.encode());
                    }
                }
                Err(error) => self.error(id.as_ref(), error),
            },
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Result<Value, ApiError> {
        // Checked once here for every method: no string of a frame reaches the store with a
        // character it cannot hold.
        ApiError::check_storable(&params, "params")?;
        // A request without params may send `null` or leave them out.
        let params = if params.is_null() { json!({}) } else { params };
        match method {
            "room.join" => {
                no_params(params)?;
                self.join().await
            }
            "room.leave" => {
                no_params(params)?;
                self.leave().await;
                Ok(json!({}))
            }
            "room.get" => {
                let params: RoomGetParams = ApiError::parse_value(params)?;
                if let Some(room_id) = params.room_id {
                    if room_id != self.scope.room_id.to_string() {
                        return Err(ApiError::NotAllowed(
                            "A token gives access to its own room only".into(),
                        ));
                    }
                }
                let room = self
                    .state
                    .store()
                    .get_room(self.scope.account_id, self.scope.room_id)
                    .await?
                    .ok_or(ApiError::not_found(Entity::Room))?;
                let (users, cursor) = self.users_page(params.after.as_deref()).await?;
                Ok(json!({
                    "room": room, "users": users, "hasMore": cursor.is_some(), "cursor": cursor,
                }))
            }
            "users.get" => {
                let params: UserParams = ApiError::parse_value(params)?;
                let user_id = match params.user_id {
                    Some(text) => parse_user_id("userId", &text)?,
                    None => self.user_id,
                };
                Ok(json!({ "user": self.socket_user(user_id).await? }))
            }
            "users.getAll" => {
                let params: UsersPageParams = ApiError::parse_value(params)?;
                let (users, cursor) = self.users_page(params.after.as_deref()).await?;
                Ok(json!({ "users": users, "hasMore": cursor.is_some(), "cursor": cursor }))
            }
            "users.follow" | "users.unfollow" => {
                let params: UserParams = ApiError::parse_value(params)?;
                let text = params
                    .user_id
                    .ok_or_else(|| ApiError::validation("userId", "userId is required"))?;
                let target = parse_user_id("userId", &text)?;
                self.follow(target, method == "users.follow").await
            }
            "presence.update" => {
                let params: PresenceParams = ApiError::parse_value(params)?;
                if !params.state.is_object() {
                    return Err(ApiError::validation("state", "state must be a JSON object"));
                }
                let bytes = params.state.to_string().len();
                let limit = self.hub.config().max_presence_bytes;
                if bytes > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                let room = self.joined_room()?;
                let (reply, taken) = oneshot::channel();
                room.send(RoomCommand::Presence {
                    connection: self.id,
                    state: NewState {
                        state: params.state,
                        bytes,
                    },
                    reply,
                })
                .await;
                if taken.await == Ok(false) {
                    let limit = self.hub.config().max_room_presence_bytes;
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                Ok(json!({}))
            }
            "presence.sync" => {
                let params: SyncParams = ApiError::parse_value(params)?;
                let target = SyncTarget::parse(&params.target).ok_or_else(|| {
                    ApiError::validation(
                        "target",
                        "target must be \"*\", \"following\" or a user ID",
                    )
                })?;
                let room = self.joined_room()?;
                let (reply, states) = oneshot::channel();
                room.send(RoomCommand::Sync {
                    connection: self.id,
                    target,
                    reply,
                })
                .await;
                let states = states.await.unwrap_or_default();
                Ok(json!({ "states": states }))
            }
            "presence.unsync" => {
                no_params(params)?;
                let room = self.joined_room()?;
                room.send(RoomCommand::Unsync {
                    connection: self.id,
                })
                .await;
                Ok(json!({}))
            }
            "broadcast" => {
                let params: BroadcastParams = ApiError::parse_value(params)?;
                if params.event.is_empty() || params.event.chars().count() > MAX_EVENT_NAME_CHARS {
                    return Err(ApiError::validation(
                        "event",
                        "event must be 1 to 128 characters",
                    ));
                }
                let limit = self.hub.config().max_broadcast_bytes;
                if params.data.to_string().len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                let user_ids = params
                    .user_ids
                    .map(|ids| {
                        ids.iter()
                            .map(|id| parse_user_id("userIds", id))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?;
                let room = self.joined_room()?;
                let (reply, recipients) = oneshot::channel();
                room.send(RoomCommand::Broadcast {
                    connection: self.id,
                    event: params.event,
                    data: params.data,
                    user_ids,
                    reply,
                })
                .await;
                Ok(json!({ "recipients": recipients.await.unwrap_or(0) }))
            }
            method if method.starts_with("stores.") => {
                super::stores::call(&self.caller(), method, params).await
            }
            method if method.starts_with("comments.") => {
                super::comments::call(&self.caller(), method, params).await
            }
            other => Err(unknown_method(other)),
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            connection: self.id,
            scope: self.scope,
            user_id: self.user_id,
            state: &self.state,
        }
    }

    fn joined_room(&self) -> Result<&Arc<RoomHandle>, ApiError> {
        self.room
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("Join the room first (room.join)".into()))
    }

    async fn graph(&self) -> Result<FollowGraph, ApiError> {
        Ok(FollowGraph::from_pairs(
            self.state.store().list_follows(self.scope).await?,
        ))
    }

    async fn socket_user(&self, user_id: UserId) -> Result<SocketUser, ApiError> {
        let user = self
            .state
            .store()
            .get_user(self.scope, user_id)
            .await?
            .ok_or(ApiError::not_found(Entity::User))?;
        Ok(self.graph().await?.socket_user(user))
    }

    /// A page of the room's users as the socket shows them, oldest first, after `after` (a
    /// page's cursor), and the next page's cursor.
    async fn users_page(
        &self,
        after: Option<&str>,
    ) -> Result<(Vec<SocketUser>, Option<String>), ApiError> {
        let after = after
            .map(|text| {
                text.parse::<UserCursor>().map_err(|_| {
                    ApiError::validation("after", "after must be a cursor from an earlier answer")
                })
            })
            .transpose()?;
        let size = PageSize {
            items: self.hub.config().page_users,
            bytes: self.state.config().page_bytes(),
        };
        let page = self
            .state
            .store()
            .list_room_users(self.scope, after.as_ref(), size)
            .await?;
        let graph = self.graph().await?;
        let users = page
            .users
            .into_iter()
            .map(|u| graph.socket_user(u))
            .collect();
        Ok((users, page.next.map(|cursor| cursor.to_string())))
    }

    async fn join(&mut self) -> Result<Value, ApiError> {
        if self.room.is_some() {
            return Err(ApiError::BadRequest("Already joined".into()));
        }
        let room = self.hub.room(self.scope);
        if !room.reserve(self.hub.config().max_connections_per_room) {
            return Err(ApiError::RateLimited {
                retry_after_secs: 5,
            });
        }
        // Marked live before the row exists, so that a concurrent reap never takes it for a
        // leaked one.
        self.hub.mark_joined(self.id);
        let new = NewConnection {
            id: self.id,
            node_id: self.hub.node_id().clone(),
            scope: self.scope,
            user_id: self.user_id,
            opened_at: Timestamp::now(),
        };
        let (reply, presence) = oneshot::channel();
        let joined = {
            let _order = room.membership().await;
            let joined = match self.state.store().join_room(&new).await {
                Ok(joined) => joined,
                Err(error) => {
                    room.release();
                    self.hub.unmark_joined(self.id);
                    return Err(error.into());
                }
            };
            self.hub.bus().publish(joined.events.clone());
            room.send(RoomCommand::Joined {
                connection: self.id,
                user_id: self.user_id,
                outbox: self.outbox.clone(),
                joined: Box::new(joined.clone()),
                reply,
            })
            .await;
            joined
        };
        self.room = Some(room);
        let presence = presence.await.unwrap_or_default();
        let loaded = async {
            let graph = self.graph().await?;
            let users = self.users_page(None).await?;
            Ok::<_, ApiError>((graph, users))
        };
        match loaded.await {
            Ok((graph, (users, cursor))) => Ok(json!({
                "room": joined.room,
                "user": graph.socket_user(joined.user),
                "users": users,
                "usersCursor": cursor,
                "presence": presence,
            })),
            Err(error) => {
                // The client hears of a failure: it must not stay joined.
                self.leave().await;
                Err(error)
            }
        }
    }

    fn record(&self) -> ConnectionRecord {
        ConnectionRecord {
            id: self.id,
            node_id: self.hub.node_id().clone(),
            scope: self.scope,
            user_id: self.user_id,
        }
    }

    /// Leaves the room if joined: the room stops sending at once, then the leave is recorded
    /// (at shutdown, by the hub for every socket at once).
    async fn leave(&mut self) {
        let Some(room) = self.room.take() else { return };
        room.send(RoomCommand::Detach {
            connection: self.id,
        })
        .await;
        if !self.hub.shutting_down() {
            self.hub.record_leave(&self.record()).await;
        }
        room.release();
    }

    async fn follow(&mut self, target: UserId, follows: bool) -> Result<Value, ApiError> {
        if target == self.user_id {
            return Err(ApiError::validation(
                "userId",
                "A user cannot follow themselves",
            ));
        }
        let store = self.state.store();
        store
            .set_follow(self.scope, self.user_id, target, follows)
            .await?;
        let (me, them) = tokio::try_join!(
            store.get_user(self.scope, self.user_id),
            store.get_user(self.scope, target)
        )?;
        let (Some(me), Some(them)) = (me, them) else {
            return Err(ApiError::not_found(Entity::User));
        };
        let graph = self.graph().await?;
        let result = json!({ "user": graph.socket_user(them.clone()) });
        self.hub
            .notify(
                self.scope.room_id,
                RoomCommand::FollowChanged {
                    follower: self.user_id,
                    followee: target,
                    follows,
                    users: vec![me, them],
                },
            )
            .await;
        Ok(result)
    }
}

/// Who is calling a socket method, for the method groups in their own modules.
pub struct Caller<'a> {
    pub connection: ConnectionId,
    pub scope: RoomScope,
    pub user_id: UserId,
    pub state: &'a AppState,
}

pub fn unknown_method(method: &str) -> ApiError {
    ApiError::BadRequest(format!("Unknown method {method:?}").into())
}

/// Refuses any params (an empty object or none is fine).
pub fn no_params(params: Value) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    ApiError::parse_value::<Nothing>(params).map(|_| ())
}

pub fn parse_user_id(field: &str, text: &str) -> Result<UserId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::validation(field, format!("{field} must be a user ID (a UUID)")))
}
