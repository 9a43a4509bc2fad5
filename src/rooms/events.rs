//! What a room tells its sockets: one enum of every server event of the wire protocol
//! (`docs/protocol.md`), encoded once per event and shared by every recipient.

use serde::Serialize;
use serde_json::Value;

use super::following::UserView;
use super::outbox::Utf8Bytes;
use crate::domain::{Comment, CommentId, FileKey, RoomId, Thread, ThreadId, UserId};
use crate::store::entries::EntryChange;

/// A server event: its name on the wire is the variant's, in camelCase.
#[derive(Debug, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum ServerEvent<'a> {
    UserJoined {
        user: &'a UserView,
    },
    UserLeft {
        user: &'a UserView,
    },
    UserCreated {
        user: &'a UserView,
    },
    UserUpdated {
        user: &'a UserView,
    },
    UserDeleted {
        user: &'a UserView,
    },
    #[serde(rename_all = "camelCase")]
    Presence {
        user_id: UserId,
        state: &'a Value,
    },
    #[serde(rename_all = "camelCase")]
    Broadcast {
        event: &'a str,
        data: &'a Value,
        user_id: UserId,
    },
    #[serde(rename_all = "camelCase")]
    RoomDeleted {
        room_id: RoomId,
    },
    Changed(ChangedData<'a>),
    ThreadCreated {
        thread: &'a Thread,
    },
    ThreadUpdated {
        thread: &'a Thread,
    },
    #[serde(rename_all = "camelCase")]
    ThreadDeleted {
        thread_id: &'a ThreadId,
    },
    CommentCreated {
        comment: &'a Comment,
    },
    CommentUpdated {
        comment: &'a Comment,
    },
    #[serde(rename_all = "camelCase")]
    CommentDeleted {
        comment_id: &'a CommentId,
        thread_id: &'a ThreadId,
    },
    /// A file was uploaded to the room: its StorageFile.
    FileUploaded {
        file: &'a Value,
    },
    /// A file of the room was deleted: its key and StorageFile.
    FileDeleted {
        key: &'a FileKey,
        file: &'a Value,
    },
}

/// Every event name, in the order of the enum: what the SDK's event map must hold.
pub const EVENT_NAMES: &[&str] = &[
    "userJoined",
    "userLeft",
    "userCreated",
    "userUpdated",
    "userDeleted",
    "presence",
    "broadcast",
    "roomDeleted",
    "changed",
    "threadCreated",
    "threadUpdated",
    "threadDeleted",
    "commentCreated",
    "commentUpdated",
    "commentDeleted",
    "fileUploaded",
    "fileDeleted",
];

/// `changed`: a store entry changed; `user_id` is the writer (`None`: the REST API).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedData<'a> {
    pub store: &'a str,
    pub key: &'a str,
    pub action: &'static str,
    pub value: Option<&'a serde_json::Map<String, Value>>,
    pub version: i64,
    pub user_id: Option<UserId>,
}

impl<'a> ChangedData<'a> {
    pub fn new(change: &'a EntryChange, user_id: Option<UserId>) -> Self {
        Self {
            store: change.store.as_str(),
            key: &change.key,
            action: change.action.as_str(),
            value: change.value.as_ref(),
            version: change.version,
            user_id,
        }
    }
}

impl ServerEvent<'_> {
    /// The event's frame, `{ "type": "event", "event": ..., "data": ... }`, serialized once.
    pub fn encode(&self) -> Utf8Bytes {
        #[derive(Serialize)]
        struct Frame<'e, 'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            event: &'e ServerEvent<'a>,
        }
        let frame = Frame {
            kind: "event",
            event: self,
        };
        Utf8Bytes::from(serde_json::to_string(&frame).expect("server events serialize"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_have_the_documented_frame() {
        let state = json!({ "x": 1 });
        let user = UserId::new();
        let frame = ServerEvent::Presence {
            user_id: user,
            state: &state,
        }
        .encode();
        assert_eq!(
            serde_json::from_str::<Value>(frame.as_str()).unwrap(),
            json!({ "type": "event", "event": "presence",
                    "data": { "userId": user, "state": { "x": 1 } } })
        );
        let thread = ThreadId::new();
        let frame = ServerEvent::ThreadDeleted { thread_id: &thread }.encode();
        let value: Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(value["event"], "threadDeleted");
        assert_eq!(value["data"], json!({ "threadId": thread.as_str() }));
    }

    #[test]
    fn every_event_is_named() {
        let names: Vec<String> = [
            serde_json::to_value(ServerEvent::RoomDeleted {
                room_id: RoomId::new(),
            }),
            serde_json::to_value(ServerEvent::ThreadDeleted {
                thread_id: &ThreadId::new(),
            }),
        ]
        .into_iter()
        .map(|v| v.unwrap()["event"].as_str().unwrap().to_owned())
        .collect();
        for name in names {
            assert!(EVENT_NAMES.contains(&name.as_str()), "{name}");
        }
    }
}
