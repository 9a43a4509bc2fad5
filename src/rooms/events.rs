//! What a room tells its sockets: one enum of every server event of the wire protocol
//! (`docs/protocol.md`), encoded once per event and shared by every recipient.

use std::cell::OnceCell;

use serde::Serialize;
use serde_json::Value;

use super::following::UserView;
use super::outbox::Utf8Bytes;
use crate::domain::{Comment, CommentId, FileKey, RoomId, Thread, ThreadId, UserId};
use crate::store::entries::EntryChange;

/// A server event: its name on the wire is the variant's, in camelCase. (`presence` goes
/// out in ticks, many states at once: `PresenceBatch`.)
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

/// One tick of a room's presence, encoded for its recipients: version 1 clients take one
/// `presence` event per state, version 2 clients one event with every state they should see,
/// `{ "states": [{ userId, state }, ...] }`. What many recipients share is encoded once.
pub struct PresenceBatch {
    users: Vec<UserId>,
    /// Each `{"userId":...,"state":...}`, in the order of `users`.
    entries: Vec<String>,
    /// Version 1 frames, one per entry, made when first asked for.
    singles: Vec<OnceCell<Utf8Bytes>>,
    /// The version 2 frame of every entry.
    everyone: OnceCell<Utf8Bytes>,
}

impl PresenceBatch {
    pub fn new(states: &[(UserId, Value)]) -> Self {
        let entries = states
            .iter()
            .map(|(user_id, state)| {
                let entry = PresenceEntry {
                    user_id: *user_id,
                    state,
                };
                serde_json::to_string(&entry).expect("presence serializes")
            })
            .collect();
        Self {
            users: states.iter().map(|(user, _)| *user).collect(),
            entries,
            singles: states.iter().map(|_| OnceCell::new()).collect(),
            everyone: OnceCell::new(),
        }
    }

    pub fn users(&self) -> &[UserId] {
        &self.users
    }

    /// The frames for a client of version `protocol` that sees the states of the users
    /// `shown` accepts.
    pub fn frames_for(&self, protocol: u32, shown: impl Fn(UserId) -> bool) -> Vec<Utf8Bytes> {
        let shown: Vec<usize> = (0..self.users.len())
            .filter(|&i| shown(self.users[i]))
            .collect();
        if shown.is_empty() {
            return Vec::new();
        }
        if protocol < 2 {
            return shown.into_iter().map(|i| self.single(i)).collect();
        }
        if shown.len() == self.users.len() {
            let all = self
                .everyone
                .get_or_init(|| self.batch(0..self.users.len()));
            return vec![all.clone()];
        }
        vec![self.batch(shown.into_iter())]
    }

    fn single(&self, i: usize) -> Utf8Bytes {
        self.singles[i]
            .get_or_init(|| {
                Utf8Bytes::from(format!(
                    r#"{{"type":"event","event":"presence","data":{}}}"#,
                    self.entries[i]
                ))
            })
            .clone()
    }

    fn batch(&self, shown: impl Iterator<Item = usize>) -> Utf8Bytes {
        const HEAD: &str = r#"{"type":"event","event":"presence","data":{"states":["#;
        const TAIL: &str = "]}}";
        let mut frame = String::with_capacity(
            HEAD.len() + TAIL.len() + self.entries.iter().map(|e| e.len() + 1).sum::<usize>(),
        );
        frame.push_str(HEAD);
        for (n, i) in shown.enumerate() {
            if n > 0 {
                frame.push(',');
            }
            frame.push_str(&self.entries[i]);
        }
        frame.push_str(TAIL);
        Utf8Bytes::from(frame)
    }
}

/// One user's presence on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceEntry<'a> {
    user_id: UserId,
    state: &'a Value,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_have_the_documented_frame() {
        let (a, b) = (UserId::new(), UserId::new());
        let batch = PresenceBatch::new(&[(a, json!({ "x": 1 })), (b, Value::Null)]);
        let parse = |frame: &Utf8Bytes| serde_json::from_str::<Value>(frame.as_str()).unwrap();
        // Version 1: one event per state.
        let singles = batch.frames_for(1, |_| true);
        assert_eq!(
            singles.iter().map(parse).collect::<Vec<_>>(),
            [
                json!({ "type": "event", "event": "presence",
                        "data": { "userId": a, "state": { "x": 1 } } }),
                json!({ "type": "event", "event": "presence",
                        "data": { "userId": b, "state": null } }),
            ]
        );
        // Version 2: one event with the states the recipient sees.
        let all = batch.frames_for(2, |_| true);
        assert_eq!(
            all.iter().map(parse).collect::<Vec<_>>(),
            [
                json!({ "type": "event", "event": "presence", "data": { "states": [
                { "userId": a, "state": { "x": 1 } }, { "userId": b, "state": null } ] } })
            ]
        );
        // Everyone's frame is encoded once and shared.
        assert_eq!(
            batch.frames_for(2, |_| true)[0].as_str().as_ptr(),
            all[0].as_str().as_ptr()
        );
        let but_a = batch.frames_for(2, |user| user != a);
        assert_eq!(
            parse(&but_a[0])["data"],
            json!({ "states": [{ "userId": b, "state": null }] })
        );
        assert!(batch.frames_for(2, |_| false).is_empty());
        assert!(batch.frames_for(1, |_| false).is_empty());
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
