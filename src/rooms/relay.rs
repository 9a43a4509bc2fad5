//! What of a room crosses to the other nodes through the relay (`crate::relay`), and what a
//! node does with what arrives: frames for the room's sockets (store changes, comment
//! events) and broadcasts. Each message names the node it comes from, which ignores it.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::actor::RoomCommand;
use super::outbox::Utf8Bytes;
use super::Engine;
use crate::domain::{RoomId, UserId};
use crate::relay::Received;

/// A message on a room's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relayed {
    /// The node that sent it.
    origin: String,
    /// For every socket of the room but those below, in order.
    frames: Vec<String>,
    /// A broadcast's sender: none of their sockets gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    except_user: Option<UserId>,
    /// A broadcast's recipients, when it named them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    only: Option<Vec<UserId>>,
}

/// Who of a room's sockets get relayed frames.
#[derive(Debug, Default, Clone)]
pub struct Recipients {
    /// Not this user's sockets (a broadcast's sender).
    pub except_user: Option<UserId>,
    /// Only these users' sockets, if given.
    pub only: Option<Vec<UserId>>,
}

impl Recipients {
    pub fn includes(&self, user_id: UserId) -> bool {
        self.except_user != Some(user_id)
            && self
                .only
                .as_ref()
                .is_none_or(|only| only.contains(&user_id))
    }
}

impl Engine {
    /// Sends frames to the room's sockets on the other nodes (nothing without a relay).
    pub(super) fn relay_frames(&self, room_id: RoomId, frames: &[Utf8Bytes], to: Recipients) {
        let Some(relay) = self.hub().relay() else {
            return;
        };
        let message = Relayed {
            origin: self.hub().node_id().as_str().to_owned(),
            frames: frames.iter().map(|f| f.as_str().to_owned()).collect(),
            except_user: to.except_user,
            only: to.only,
        };
        match serde_json::to_vec(&message) {
            Ok(payload) => relay.publish(room_id, payload.into()),
            Err(error) => tracing::error!(%error, "relay: cannot encode a message"),
        }
    }

    /// Hands what other nodes relayed to the rooms' actors, until the relay stops.
    pub(super) async fn receive_relayed(self, mut incoming: mpsc::Receiver<Received>) {
        while let Some(Received { room_id, payload }) = incoming.recv().await {
            let message: Relayed = match serde_json::from_slice(&payload) {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, room = %room_id, "relay: a message that does not parse");
                    continue;
                }
            };
            if message.origin == self.hub().node_id().as_str() {
                continue;
            }
            let Some(room) = self.hub().existing_room(room_id) else {
                continue;
            };
            room.send(RoomCommand::Deliver {
                frames: message.frames.into_iter().map(Utf8Bytes::from).collect(),
                to: Recipients {
                    except_user: message.except_user,
                    only: message.only,
                },
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_leave_out_the_sender_and_keep_to_those_named() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        assert!(Recipients::default().includes(a));
        let broadcast = Recipients {
            except_user: Some(a),
            only: Some(vec![a, b]),
        };
        assert!(!broadcast.includes(a));
        assert!(broadcast.includes(b));
        assert!(!broadcast.includes(c));
    }

    #[test]
    fn messages_name_their_origin_and_leave_out_what_is_unset() {
        let message = Relayed {
            origin: "node-a".into(),
            frames: vec!["{}".into()],
            except_user: None,
            only: None,
        };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(text, r#"{"origin":"node-a","frames":["{}"]}"#);
        let back: Relayed = serde_json::from_str(&text).unwrap();
        assert_eq!(back.frames, ["{}"]);
    }
}
