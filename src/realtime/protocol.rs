//! The wire types of `docs/protocol.md`: frames in both directions, and one enum of the
//! requests a client may make, each with its params, parsed in one place. (Server events are
//! the engine's: `rooms::events`.)

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::Room;
use crate::error::ApiError;
pub use crate::rooms::comments::{
    CreateThreadParams, EditParams, ListCommentsParams, ListParams, ReactParams, ReplyParams,
    ThreadParams,
};
pub use crate::rooms::entries::SyncParams;
use crate::rooms::events::EVENT_NAMES;
use crate::rooms::following::UserView;
pub use crate::rooms::outbox::{close, Utf8Bytes};

/// The newest version of the protocol the server speaks (docs/protocol.md, Versions).
pub const PROTOCOL_VERSION: u32 = 2;
/// The WebSocket subprotocol: the same for every version, which the auth frame negotiates.
pub const SUBPROTOCOL: &str = "collabkit.v1";

/// The version a socket is served: the client's (1 when it names none), at most the server's.
pub fn negotiate(asked: Option<u32>) -> u32 {
    asked.unwrap_or(1).clamp(1, PROTOCOL_VERSION)
}

/// A request's correlation ID: a number or a short string, echoed as given. Any JSON number:
/// a client's `-1` or `1.5` is a number too, and must not leave it waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(serde_json::Number),
    Text(String),
}

pub const MAX_REQUEST_ID_CHARS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientFrame {
    Auth {
        token: String,
        #[serde(default)]
        protocol: Option<u32>,
    },
    Req {
        #[serde(default)]
        id: Option<RequestId>,
        method: String,
        #[serde(default)]
        params: Value,
    },
    Ping,
}

/// What can be read of a frame whose whole cannot: its type and its request ID. serde_json
/// skips the other fields without decoding them, so a request whose params hold what no
/// parser accepts (a lone surrogate, nesting past the recursion limit, a number out of
/// range) can still be answered by its ID, which its client is waiting for.
#[derive(Deserialize)]
struct FrameHead {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<RequestId>,
}

/// The ID of a request frame that could not be parsed whole, when it can be read.
pub fn unreadable_request_id(text: &str) -> Option<RequestId> {
    let head: FrameHead = serde_json::from_str(text).ok()?;
    if head.kind == "req" {
        head.id
    } else {
        None
    }
}

/// The error object of `res` and `error` frames.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<&ApiError> for ErrorBody {
    fn from(error: &ApiError) -> Self {
        Self {
            code: error.code(),
            message: error.message().into_owned(),
            field: match error {
                ApiError::Validation { field, .. } => Some(field.clone()),
                _ => None,
            },
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerFrame<'a> {
    #[serde(rename_all = "camelCase")]
    Welcome {
        protocol: u32,
        connection_id: String,
        user: &'a UserView,
        room: &'a Room,
        heartbeat_interval_ms: u64,
        limits: Limits,
    },
    AuthFailed {
        code: &'static str,
        message: &'a str,
    },
    Res {
        id: &'a RequestId,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    /// `room.join`'s answer: a `res` whose page of users is JSON encoded once for every join
    /// recorded in the same batch.
    #[serde(rename = "res")]
    Joined {
        id: &'a RequestId,
        ok: bool,
        result: JoinResult<'a>,
    },
    Error {
        error: ErrorBody,
    },
    Pong,
}

/// The result of `room.join` (docs/protocol.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResult<'a> {
    pub room: &'a Room,
    pub user: &'a UserView,
    /// The first page of the room's users, already JSON.
    pub users: &'a RawValue,
    pub users_cursor: Option<&'a str>,
    pub presence: &'a [Value],
}

impl ServerFrame<'_> {
    /// Serialized once; the bytes are shared by every recipient.
    pub fn encode(&self) -> Utf8Bytes {
        Utf8Bytes::from(serde_json::to_string(self).expect("server frames serialize"))
    }
}

/// The frame types a server sends besides events.
const FRAME_TYPES: [&str; 5] = ["res", "welcome", "error", "authFailed", "pong"];

/// The values of the frames-sent metric's label: every event name (`presence` first: it is
/// most of the traffic, and found first), the other frame types, and `other`.
pub fn frame_labels() -> Vec<&'static str> {
    let mut labels = vec!["presence"];
    labels.extend(EVENT_NAMES.iter().filter(|&&name| name != "presence"));
    labels.extend(FRAME_TYPES);
    labels.push("other");
    labels
}

/// What an encoded server frame is: its event's name, else its `type`, read from the start of
/// the JSON as `ServerFrame` and `ServerEvent` write it (`{"type":"event","event":"changed"`);
/// `other` when it does not start so.
pub fn frame_label(frame: &str) -> &str {
    fn string_at<'a>(text: &'a str, key: &str) -> Option<(&'a str, &'a str)> {
        let rest = text.strip_prefix(key)?;
        let end = rest.find('"')?;
        Some((&rest[..end], &rest[end + 1..]))
    }
    match string_at(frame, r#"{"type":""#) {
        Some(("event", rest)) => string_at(rest, r#","event":""#).map_or("other", |(name, _)| name),
        Some((kind, _)) => kind,
        None => "other",
    }
}

/// The methods of the protocol, by their wire names: what the SDK's request map must hold.
pub const METHOD_NAMES: &[&str] = &[
    "room.join",
    "room.leave",
    "room.get",
    "users.get",
    "users.getAll",
    "users.follow",
    "users.unfollow",
    "presence.update",
    "presence.sync",
    "presence.unsync",
    "broadcast",
    "stores.declare",
    "stores.set",
    "stores.update",
    "stores.delete",
    "stores.get",
    "stores.getAll",
    "stores.sync",
    "comments.createThread",
    "comments.reply",
    "comments.edit",
    "comments.delete",
    "comments.resolve",
    "comments.reopen",
    "comments.react",
    "comments.unreact",
    "comments.list",
    "comments.getThread",
    "comments.listComments",
];

/// A client's request: the method and its params, checked for shape (not yet for meaning:
/// ids and limits are the engine's to check).
#[derive(Debug)]
pub enum Request {
    RoomJoin,
    RoomLeave,
    RoomGet(RoomGetParams),
    UsersGet(UserParams),
    UsersGetAll(PageParams),
    UsersFollow(UserParams),
    UsersUnfollow(UserParams),
    PresenceUpdate(PresenceParams),
    PresenceSync(PresenceSyncParams),
    PresenceUnsync,
    Broadcast(BroadcastParams),
    StoresDeclare(DeclareParams),
    StoresSet(WriteParams),
    StoresUpdate(WriteParams),
    StoresDelete(KeyParams),
    StoresGet(KeyParams),
    StoresGetAll(GetAllParams),
    StoresSync(SyncParams),
    CommentsCreateThread(CreateThreadParams),
    CommentsReply(ReplyParams),
    CommentsEdit(EditParams),
    CommentsDelete(CommentIdParams),
    CommentsResolve(ThreadParams),
    CommentsReopen(ThreadParams),
    CommentsReact(ReactParams),
    CommentsUnreact(ReactParams),
    CommentsList(ListParams),
    CommentsGetThread(ThreadParams),
    CommentsListComments(ListCommentsParams),
}

impl Request {
    /// Parses a request: the method by its name, the params as that method's. Params are a
    /// JSON object, or `null`/absent for none; anything else (an array, which serde would
    /// read field by position) is a `VALIDATION_ERROR` naming `params`.
    pub fn parse(method: &str, params: Value) -> Result<Self, ApiError> {
        let params = match params {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            _ => {
                return Err(ApiError::validation(
                    "params",
                    "params must be a JSON object",
                ))
            }
        };
        let request = match method {
            "room.join" => {
                parse::<NoParams>(params)?;
                Self::RoomJoin
            }
            "room.leave" => {
                parse::<NoParams>(params)?;
                Self::RoomLeave
            }
            "room.get" => Self::RoomGet(parse(params)?),
            "users.get" => Self::UsersGet(parse(params)?),
            "users.getAll" => Self::UsersGetAll(parse(params)?),
            "users.follow" => Self::UsersFollow(parse(params)?),
            "users.unfollow" => Self::UsersUnfollow(parse(params)?),
            "presence.update" => Self::PresenceUpdate(parse(params)?),
            "presence.sync" => Self::PresenceSync(parse(params)?),
            "presence.unsync" => {
                parse::<NoParams>(params)?;
                Self::PresenceUnsync
            }
            "broadcast" => Self::Broadcast(parse(params)?),
            "stores.declare" => Self::StoresDeclare(parse(params)?),
            "stores.set" => Self::StoresSet(parse(params)?),
            "stores.update" => Self::StoresUpdate(parse(params)?),
            "stores.delete" => Self::StoresDelete(parse(params)?),
            "stores.get" => Self::StoresGet(parse(params)?),
            "stores.getAll" => Self::StoresGetAll(parse(params)?),
            "stores.sync" => Self::StoresSync(parse(params)?),
            "comments.createThread" => Self::CommentsCreateThread(parse(params)?),
            "comments.reply" => Self::CommentsReply(parse(params)?),
            "comments.edit" => Self::CommentsEdit(parse(params)?),
            "comments.delete" => Self::CommentsDelete(parse(params)?),
            "comments.resolve" => Self::CommentsResolve(parse(params)?),
            "comments.reopen" => Self::CommentsReopen(parse(params)?),
            "comments.react" => Self::CommentsReact(parse(params)?),
            "comments.unreact" => Self::CommentsUnreact(parse(params)?),
            "comments.list" => Self::CommentsList(parse(params)?),
            "comments.getThread" => Self::CommentsGetThread(parse(params)?),
            "comments.listComments" => Self::CommentsListComments(parse(params)?),
            other => {
                return Err(ApiError::BadRequest(
                    format!("Unknown method {other:?}").into(),
                ))
            }
        };
        Ok(request)
    }

    /// The method's wire name.
    pub fn method(&self) -> &'static str {
        match self {
            Self::RoomJoin => "room.join",
            Self::RoomLeave => "room.leave",
            Self::RoomGet(_) => "room.get",
            Self::UsersGet(_) => "users.get",
            Self::UsersGetAll(_) => "users.getAll",
            Self::UsersFollow(_) => "users.follow",
            Self::UsersUnfollow(_) => "users.unfollow",
            Self::PresenceUpdate(_) => "presence.update",
            Self::PresenceSync(_) => "presence.sync",
            Self::PresenceUnsync => "presence.unsync",
            Self::Broadcast(_) => "broadcast",
            Self::StoresDeclare(_) => "stores.declare",
            Self::StoresSet(_) => "stores.set",
            Self::StoresUpdate(_) => "stores.update",
            Self::StoresDelete(_) => "stores.delete",
            Self::StoresGet(_) => "stores.get",
            Self::StoresGetAll(_) => "stores.getAll",
            Self::StoresSync(_) => "stores.sync",
            Self::CommentsCreateThread(_) => "comments.createThread",
            Self::CommentsReply(_) => "comments.reply",
            Self::CommentsEdit(_) => "comments.edit",
            Self::CommentsDelete(_) => "comments.delete",
            Self::CommentsResolve(_) => "comments.resolve",
            Self::CommentsReopen(_) => "comments.reopen",
            Self::CommentsReact(_) => "comments.react",
            Self::CommentsUnreact(_) => "comments.unreact",
            Self::CommentsList(_) => "comments.list",
            Self::CommentsGetThread(_) => "comments.getThread",
            Self::CommentsListComments(_) => "comments.listComments",
        }
    }
}

fn parse<T: DeserializeOwned>(params: Map<String, Value>) -> Result<T, ApiError> {
    ApiError::parse_value(Value::Object(params))
}

/// Methods that take nothing refuse anything given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoomGetParams {
    pub room_id: Option<String>,
    /// The users after this cursor (a page's `cursor`).
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserParams {
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceParams {
    pub state: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSyncParams {
    pub target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BroadcastParams {
    pub event: String,
    #[serde(default)]
    pub data: Value,
    pub user_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclareParams {
    pub schemas: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    pub store: String,
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyParams {
    pub store: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetAllParams {
    pub store: String,
    /// Continue after this key (the previous page's `cursor`).
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommentIdParams {
    pub comment_id: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_broadcast_bytes: usize,
    pub max_presence_bytes: usize,
    pub messages_per_second: u32,
    pub message_burst: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_labelled_by_event_or_type() {
        let id = RequestId::Number(1.into());
        let res = ServerFrame::Res {
            id: &id,
            ok: true,
            result: None,
            error: None,
        };
        assert_eq!(frame_label(res.encode().as_str()), "res");
        assert_eq!(frame_label(ServerFrame::Pong.encode().as_str()), "pong");
        let refused = ServerFrame::AuthFailed {
            code: "UNAUTHORIZED",
            message: "no",
        };
        assert_eq!(frame_label(refused.encode().as_str()), "authFailed");
        let error = ServerFrame::Error {
            error: ErrorBody::from(&ApiError::Unauthorized),
        };
        assert_eq!(frame_label(error.encode().as_str()), "error");
        // Every frame type is a label (`welcome` needs a room and a user to build: its tag
        // is the variant's name, as the others').
        for label in [&res.encode(), &refused.encode(), &error.encode()]
            .map(|frame| frame_label(frame.as_str()).to_owned())
        {
            assert!(frame_labels().contains(&label.as_str()), "{label}");
        }
        let thread = crate::domain::ThreadId::new();
        let deleted = crate::rooms::events::ServerEvent::ThreadDeleted { thread_id: &thread };
        assert_eq!(frame_label(deleted.encode().as_str()), "threadDeleted");
        assert_eq!(
            frame_label(r#"{"type":"event","event":"presence","data":{"states":[]}}"#),
            "presence"
        );
        assert_eq!(frame_label("not json"), "other");
        let labels = frame_labels();
        assert_eq!(labels[0], "presence");
        for label in ["res", "threadDeleted", "changed", "other"] {
            assert_eq!(labels.iter().filter(|&&l| l == label).count(), 1, "{label}");
        }
    }

    #[test]
    fn frames_have_the_documented_shape() {
        let id = RequestId::Number(7.into());
        let result = serde_json::json!({ "x": 1 });
        let frame = ServerFrame::Res {
            id: &id,
            ok: true,
            result: Some(&result),
            error: None,
        };
        assert_eq!(
            serde_json::from_str::<Value>(frame.encode().as_str()).unwrap(),
            serde_json::json!({ "type": "res", "id": 7, "ok": true, "result": { "x": 1 } })
        );
        let parsed: ClientFrame =
            serde_json::from_str(r#"{"type":"req","id":"a","method":"room.join"}"#).unwrap();
        assert!(matches!(
            parsed,
            ClientFrame::Req {
                id: Some(RequestId::Text(_)),
                ..
            }
        ));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ping"}"#).is_ok());
        for id in ["-1", "1.5", "18446744073709551616", "1e300"] {
            let text = format!(r#"{{"type":"req","id":{id},"method":"room.join"}}"#);
            let Ok(ClientFrame::Req { id: Some(id), .. }) = serde_json::from_str(&text) else {
                panic!("{text}");
            };
            let echoed = ServerFrame::Res {
                id: &id,
                ok: true,
                result: None,
                error: None,
            };
            let echoed: Value = serde_json::from_str(echoed.encode().as_str()).unwrap();
            let sent: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(echoed["id"], sent["id"], "{text}");
        }
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn every_method_parses_by_its_name_and_only_objects_are_params() {
        for name in METHOD_NAMES {
            match Request::parse(name, Value::Null) {
                Ok(request) => assert_eq!(request.method(), *name),
                // Methods with required params say which field is missing, not "unknown".
                Err(ApiError::Validation { .. }) => {}
                Err(other) => panic!("{name}: {other:?}"),
            }
            let error = Request::parse(name, serde_json::json!(["x"])).unwrap_err();
            assert!(
                matches!(&error, ApiError::Validation { field, .. } if field == "params"),
                "{name}: {error:?}"
            );
        }
        assert!(matches!(
            Request::parse("room.explode", Value::Null),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn the_id_of_an_unreadable_request_is_read() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for (text, id) in [
            (
                r#"{"type":"req","id":7,"method":"x","params":{"a":"\ud800"}}"#.to_owned(),
                Some(RequestId::Number(7.into())),
            ),
            (
                format!(r#"{{"type":"req","params":{deep},"id":"a"}}"#),
                Some(RequestId::Text("a".into())),
            ),
            (
                r#"{"type":"req","id":8}"#.to_owned(),
                Some(RequestId::Number(8.into())),
            ),
            (
                r#"{"type":"req","id":9,"method":5}"#.to_owned(),
                Some(RequestId::Number(9.into())),
            ),
            (r#"{"type":"req","method":5}"#.to_owned(), None),
            (r#"{"type":"ping","id":1,"x":"\ud800"}"#.to_owned(), None),
            (r#"{"type":"req","id":1,"id":2}"#.to_owned(), None),
            (r#"{"type":"req","id":1"#.to_owned(), None),
            (r#"{"type":"req","id":"\ud800"}"#.to_owned(), None),
        ] {
            assert!(
                serde_json::from_str::<ClientFrame>(&text).is_err(),
                "{text}"
            );
            assert_eq!(unreadable_request_id(&text), id, "{text}");
        }
    }
}
