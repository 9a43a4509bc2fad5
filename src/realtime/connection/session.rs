//! An authenticated socket's requests: each frame is checked (rate, size, shape), parsed into
//! a `Request`, and served by the engine; the answer goes to the socket's mailbox.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::auth::rate_limit::TokenBucket;
use crate::domain::{Room, User, UserId};
use crate::error::ApiError;
use crate::realtime::protocol::{
    unreadable_request_id, ClientFrame, ErrorBody, JoinResult, Limits, Request, RequestId,
    ServerFrame, MAX_REQUEST_ID_CHARS,
};
use crate::rooms::entries::{change_json, entry_json, key, store_name};
use crate::rooms::following::UserView;
use crate::rooms::hub::RoomHandle;
use crate::rooms::membership::{Joined, Member};
use crate::rooms::presence::Broadcast;
use crate::rooms::users::Follow;
use crate::rooms::{comments, Engine, Origin};
use crate::store::comments::{ReactionChange, Resolution};
use crate::store::entries::EntryWrite;
use crate::store::Entity;

/// What a request is answered with.
enum Answer {
    Value(Value),
    Joined(Box<Joined>),
}

/// `room.join`'s result, as docs/protocol.md shows it.
fn join_result(joined: &Joined) -> JoinResult<'_> {
    JoinResult {
        room: &joined.room,
        user: &joined.user,
        users: &joined.page.users,
        users_cursor: joined.page.cursor.as_deref(),
        presence: &joined.presence,
    }
}

/// The authenticated side of one socket.
pub struct Session {
    engine: Engine,
    member: Member,
    bucket: TokenBucket,
    /// Set once `room.join` succeeded.
    room: Option<Arc<RoomHandle>>,
}

impl Session {
    pub fn new(engine: Engine, member: Member, bucket: TokenBucket) -> Self {
        Self {
            engine,
            member,
            bucket,
            room: None,
        }
    }

    fn origin(&self) -> Origin {
        Origin::User {
            user: self.member.user_id,
            connection: self.member.connection,
        }
    }

    fn limits(&self) -> Limits {
        let config = self.engine.hub().config();
        Limits {
            max_message_bytes: config.max_message_bytes,
            max_broadcast_bytes: config.max_broadcast_bytes,
            max_presence_bytes: config.max_presence_bytes,
            messages_per_second: config.messages_per_second,
            message_burst: config.message_burst,
        }
    }

    pub async fn welcome(&mut self, user: User, room: &Room) {
        let user = match self.engine.kept_follow_graph(self.member.scope).await {
            Ok(graph) => graph.socket_user(user),
            Err(_) => UserView::alone(user),
        };
        let frame = ServerFrame::Welcome {
            protocol: self.member.outbox.protocol(),
            connection_id: self.member.connection.to_string(),
            user: &user,
            room,
            heartbeat_interval_ms: self.engine.hub().config().heartbeat_interval_ms,
            limits: self.limits(),
        };
        self.member.outbox.send(frame.encode());
    }

    pub fn error(&self, id: Option<&RequestId>, error: ApiError) {
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
        self.member.outbox.send(frame.encode());
    }

    pub async fn handle_text(&mut self, text: &str) {
        let config = self.engine.hub().config();
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
                self.member.outbox.send(ServerFrame::Pong.encode());
            }
            Ok(ClientFrame::Auth { .. }) => {
                self.error(None, ApiError::BadRequest("Already authenticated".into()))
            }
            Ok(ClientFrame::Req { id, method, params }) => {
                // Checked once here for every method: no string of a frame reaches the store
                // with a character it cannot hold.
                let request = ApiError::check_storable(&params, "params")
                    .and_then(|()| Request::parse(&method, params));
                // Only methods that parsed are named: the label's values stay the protocol's.
                let counted = if request.is_ok() {
                    method.as_str()
                } else {
                    "invalid"
                };
                self.engine.metrics().socket_request(counted);
                // `room.join` has an answer of its own, encoded without a `Value` between.
                let answer = match request {
                    Ok(Request::RoomJoin) => self.join().await.map(|j| Answer::Joined(Box::new(j))),
                    Ok(request) => self.serve(request).await.map(Answer::Value),
                    Err(error) => Err(error),
                };
                match answer {
                    Ok(answer) => {
                        if let Some(id) = &id {
                            let frame = match &answer {
                                Answer::Value(result) => ServerFrame::Res {
                                    id,
                                    ok: true,
                                    result: Some(result),
                                    error: None,
                                },
                                Answer::Joined(joined) => ServerFrame::Joined {
                                    id,
                                    ok: true,
                                    result: join_result(joined),
                                },
                            };
                            self.member.outbox.send(frame.encode());
                        }
                    }
                    Err(error) => self.error(id.as_ref(), error),
                }
            }
        }
    }

    fn joined_room(&self) -> Result<&Arc<RoomHandle>, ApiError> {
        self.room
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("Join the room first (room.join)".into()))
    }

    /// Joins the room (once).
    async fn join(&mut self) -> Result<Joined, ApiError> {
        if self.room.is_some() {
            return Err(ApiError::BadRequest("Already joined".into()));
        }
        let joined = self.engine.join(&self.member).await?;
        self.room = Some(joined.handle.clone());
        Ok(joined)
    }

    /// Leaves the room if joined.
    pub async fn leave(&mut self) {
        if let Some(room) = self.room.take() {
            self.engine.leave(&self.member, room).await;
        }
    }

    async fn serve(&mut self, request: Request) -> Result<Value, ApiError> {
        let engine = self.engine.clone();
        let scope = self.member.scope;
        let origin = self.origin();
        let connection = self.member.connection;
        match request {
            Request::RoomJoin => {
                let joined = self.join().await?;
                serde_json::to_value(join_result(&joined))
                    .map_err(|error| ApiError::Internal(error.into()))
            }
            Request::RoomLeave => {
                self.leave().await;
                Ok(json!({}))
            }
            Request::RoomGet(params) => {
                if let Some(room_id) = params.room_id {
                    if room_id != scope.room_id.to_string() {
                        return Err(ApiError::NotAllowed(
                            "A token gives access to its own room only".into(),
                        ));
                    }
                }
                let room = engine
                    .store()
                    .get_room(scope.account_id, scope.room_id)
                    .await?
                    .ok_or(ApiError::not_found(Entity::Room))?;
                let (users, cursor) = engine.users_page(scope, params.after.as_deref()).await?;
                Ok(json!({
                    "room": room, "users": users, "hasMore": cursor.is_some(), "cursor": cursor,
                }))
            }
            Request::UsersGet(params) => {
                let user_id = match params.user_id {
                    Some(text) => user_id("userId", &text)?,
                    None => self.member.user_id,
                };
                Ok(json!({ "user": engine.user_view(scope, user_id).await? }))
            }
            Request::UsersGetAll(params) => {
                let (users, cursor) = engine.users_page(scope, params.after.as_deref()).await?;
                Ok(json!({ "users": users, "hasMore": cursor.is_some(), "cursor": cursor }))
            }
            Request::UsersFollow(params) => self.follow(params.user_id, Follow::Start).await,
            Request::UsersUnfollow(params) => self.follow(params.user_id, Follow::Stop).await,
            Request::PresenceUpdate(params) => {
                let room = self.joined_room()?;
                engine
                    .update_presence(room, connection, params.state)
                    .await?;
                Ok(json!({}))
            }
            Request::PresenceSync(params) => {
                let room = self.joined_room()?;
                let states = engine
                    .sync_presence(room, connection, &params.target)
                    .await?;
                Ok(json!({ "states": states }))
            }
            Request::PresenceUnsync => {
                let room = self.joined_room()?;
                engine.unsync_presence(room, connection).await;
                Ok(json!({}))
            }
            Request::Broadcast(params) => {
                let user_ids = params
                    .user_ids
                    .map(|ids| {
                        ids.iter()
                            .map(|id| user_id("userIds", id))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?;
                let room = self.joined_room()?;
                let broadcast = Broadcast {
                    event: params.event,
                    data: params.data,
                    user_ids,
                };
                let recipients = engine.broadcast(room, connection, broadcast).await?;
                Ok(json!({ "recipients": recipients }))
            }
            Request::StoresDeclare(params) => {
                let schemas = engine.declare_stores(scope, &params.schemas).await?;
                Ok(json!({ "schemas": schemas }))
            }
            Request::StoresSet(params) => {
                self.write(params.store, params.key, EntryWrite::Set(params.value))
                    .await
            }
            Request::StoresUpdate(params) => {
                self.write(params.store, params.key, EntryWrite::Update(params.value))
                    .await
            }
            Request::StoresDelete(params) => {
                let store = store_name(&params.store)?;
                key(&params.key)?;
                let change = engine
                    .write_entry(scope, origin, &store, &params.key, EntryWrite::Delete)
                    .await?;
                Ok(json!({
                    "key": params.key,
                    "deleted": change.is_some(),
                    "version": change.map(|c| c.version),
                }))
            }
            Request::StoresGet(params) => {
                let store = store_name(&params.store)?;
                key(&params.key)?;
                let entry = engine.get_entry(scope, &store, &params.key).await?;
                Ok(json!({
                    "key": params.key,
                    "value": entry.as_ref().map(|e| &e.value),
                    "version": entry.as_ref().map(|e| e.version),
                }))
            }
            Request::StoresGetAll(params) => {
                let store = store_name(&params.store)?;
                let listed = engine.entries_after(scope, &store, params.after).await?;
                let cursor = listed
                    .entries
                    .last()
                    .filter(|_| listed.has_more)
                    .map(|e| e.key.clone());
                let entries: Vec<Value> = listed.entries.iter().map(entry_json).collect();
                Ok(json!({
                    "entries": entries, "version": listed.version, "hasMore": listed.has_more,
                    "cursor": cursor,
                }))
            }
            Request::StoresSync(params) => {
                let changes = engine.changes(scope, params).await?;
                let cursor = changes
                    .changes
                    .last()
                    .filter(|_| changes.has_more)
                    .map(|c| c.version);
                let list: Vec<Value> = changes.changes.iter().map(change_json).collect();
                Ok(json!({
                    "changes": list, "version": changes.version, "reset": changes.reset,
                    "hasMore": changes.has_more, "cursor": cursor,
                }))
            }
            Request::CommentsCreateThread(params) => {
                engine.create_thread(scope, origin, params).await
            }
            Request::CommentsReply(params) => engine.reply(scope, origin, params).await,
            Request::CommentsEdit(params) => engine.edit_comment(scope, origin, params).await,
            Request::CommentsDelete(params) => {
                let comment_id = comments::comment_id(&params.comment_id)?;
                let deleted = engine.delete_comment(scope, origin, &comment_id).await?;
                Ok(json!({
                    "commentId": comment_id,
                    "threadDeleted": deleted.thread_deleted,
                }))
            }
            Request::CommentsResolve(params) => {
                let resolution = Resolution::Resolve {
                    by: self.member.user_id,
                };
                engine
                    .resolve_thread(scope, origin, params, resolution)
                    .await
            }
            Request::CommentsReopen(params) => {
                engine
                    .resolve_thread(scope, origin, params, Resolution::Reopen)
                    .await
            }
            Request::CommentsReact(params) => {
                engine
                    .react(scope, origin, params, ReactionChange::Add)
                    .await
            }
            Request::CommentsUnreact(params) => {
                engine
                    .react(scope, origin, params, ReactionChange::Remove)
                    .await
            }
            Request::CommentsList(params) => {
                let (threads, page) = engine.list_threads(scope, params).await?;
                Ok(comments::thread_list_json(threads, page))
            }
            Request::CommentsGetThread(params) => {
                let thread_id = comments::thread_id(&params.thread_id)?;
                let thread = engine.get_thread(scope, &thread_id).await?;
                Ok(json!({ "thread": thread }))
            }
            Request::CommentsListComments(params) => {
                let page = engine.list_comments(scope, params).await?;
                Ok(comments::comment_page_json(page))
            }
        }
    }
}

impl Session {
    async fn follow(&self, target: Option<String>, change: Follow) -> Result<Value, ApiError> {
        let text = target.ok_or_else(|| ApiError::validation("userId", "userId is required"))?;
        let target = user_id("userId", &text)?;
        let user = self
            .engine
            .follow(self.member.scope, self.member.user_id, target, change)
            .await?;
        Ok(json!({ "user": user }))
    }

    /// `stores.set` and `stores.update`.
    async fn write(
        &self,
        store: String,
        entry: String,
        write: EntryWrite,
    ) -> Result<Value, ApiError> {
        let store = store_name(&store)?;
        key(&entry)?;
        let change = self
            .engine
            .write_entry(self.member.scope, self.origin(), &store, &entry, write)
            .await?
            .expect("only a delete can change nothing");
        Ok(json!({ "key": change.key, "value": change.value, "version": change.version }))
    }
}

fn user_id(field: &str, text: &str) -> Result<UserId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::validation(field, format!("{field} must be a user ID (a UUID)")))
}
