//! The wire types of `docs/protocol.md`: frames in both directions, method names, and the
//! socket's view of users.

use std::collections::{HashMap, HashSet};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Room, User, UserId};
use crate::error::ApiError;

pub const PROTOCOL_VERSION: u32 = 1;
pub const SUBPROTOCOL: &str = "collabkit.v1";

/// Close codes (see the protocol document).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const TOO_SLOW: u16 = 4000;
    pub const DEAD_PEER: u16 = 4001;
    pub const AUTH_FAILED: u16 = 4401;
    pub const GONE: u16 = 4404;
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
        #[allow(dead_code)]
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
        user: &'a SocketUser,
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
    Event {
        event: &'a str,
        data: &'a Value,
    },
    Error {
        error: ErrorBody,
    },
    Pong,
}

impl ServerFrame<'_> {
    /// Serialized once; the bytes are shared by every recipient.
    pub fn encode(&self) -> Utf8Bytes {
        Utf8Bytes::from(serde_json::to_string(self).expect("server frames serialize"))
    }
}

/// An event frame, encoded.
pub fn event(name: &str, data: &Value) -> Utf8Bytes {
    ServerFrame::Event { event: name, data }.encode()
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

/// A user as the socket shows it: the REST object (never with `token`) plus the follow graph.
#[derive(Debug, Clone, Serialize)]
pub struct SocketUser {
    #[serde(flatten)]
    pub user: User,
    pub following: Vec<UserId>,
    pub followers: Vec<UserId>,
}

/// Who follows whom in a room.
#[derive(Debug, Clone, Default)]
pub struct FollowGraph {
    following: HashMap<UserId, HashSet<UserId>>,
    followers: HashMap<UserId, HashSet<UserId>>,
}

impl FollowGraph {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (UserId, UserId)>) -> Self {
        let mut graph = Self::default();
        for (follower, followee) in pairs {
            graph.set(follower, followee, true);
        }
        graph
    }

    pub fn set(&mut self, follower: UserId, followee: UserId, follows: bool) {
        if follows {
            self.following.entry(follower).or_default().insert(followee);
            self.followers.entry(followee).or_default().insert(follower);
        } else {
            if let Some(set) = self.following.get_mut(&follower) {
                set.remove(&followee);
            }
            if let Some(set) = self.followers.get_mut(&followee) {
                set.remove(&follower);
            }
        }
    }

    pub fn remove_user(&mut self, user: UserId) {
        for followee in self.following.remove(&user).unwrap_or_default() {
            if let Some(set) = self.followers.get_mut(&followee) {
                set.remove(&user);
            }
        }
        for follower in self.followers.remove(&user).unwrap_or_default() {
            if let Some(set) = self.following.get_mut(&follower) {
                set.remove(&user);
            }
        }
    }

    pub fn follows(&self, follower: UserId, followee: UserId) -> bool {
        self.following
            .get(&follower)
            .is_some_and(|set| set.contains(&followee))
    }

    /// The user with its `following` and `followers`, each sorted for stable output.
    pub fn socket_user(&self, user: User) -> SocketUser {
        let sorted = |set: Option<&HashSet<UserId>>| {
            let mut ids: Vec<UserId> = set.map(|s| s.iter().copied().collect()).unwrap_or_default();
            ids.sort();
            ids
        };
        SocketUser {
            following: sorted(self.following.get(&user.id)),
            followers: sorted(self.followers.get(&user.id)),
            user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_graph_tracks_both_directions() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let mut graph = FollowGraph::from_pairs([(a, b), (c, b)]);
        assert!(graph.follows(a, b) && !graph.follows(b, a));
        graph.set(a, b, false);
        assert!(!graph.follows(a, b));
        graph.remove_user(b);
        assert!(!graph.follows(c, b));
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
