//! What of a room crosses to the other nodes through the relay (`crate::relay`), and what a
//! node does with what arrives: frames for the room's sockets (store changes, comment
//! events) and broadcasts. Each message names the node it comes from, which ignores it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::actor::RoomCommand;
use super::outbox::Utf8Bytes;
use super::presence;
use super::Engine;
use crate::domain::{AccountId, RoomId, Timestamp, User, UserId, UserStatus};
use crate::relay::{Received, Relay};
use crate::store::Left;

/// A message on a room's channel, naming the node that sent it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relayed {
    origin: String,
    /// When the origin published it (milliseconds since the epoch, its clock): the relay's
    /// lag metric. Absent from nodes of versions before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at: Option<i64>,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum What {
    /// Frames for every socket of the room but those `to` leaves out, in order.
    #[serde(rename_all = "camelCase")]
    Frames {
        frames: Vec<String>,
        /// A store write's: the room's store version it took (the receiving nodes hand
        /// store events to their sockets in version order).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i64>,
        /// A broadcast's sender: none of their sockets gets it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except_user: Option<UserId>,
        /// A broadcast's recipients, when it named them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only: Option<Vec<UserId>>,
    },
    /// A user came online (their first socket anywhere).
    CameOnline {
        user: RelayedUser,
    },
    /// A user went offline (their last socket anywhere left).
    WentOffline {
        user: RelayedUser,
    },
    UserCreated {
        user: RelayedUser,
    },
    UserUpdated {
        user: RelayedUser,
    },
    /// Its sockets close on every node.
    UserDeleted {
        user: RelayedUser,
    },
    /// A follow was made or undone; `users` are the two users as they now are.
    #[serde(rename_all = "camelCase")]
    FollowChanged {
        follower: UserId,
        followee: UserId,
        follows: bool,
        users: Vec<RelayedUser>,
    },
    /// Its sockets close on every node.
    RoomDeleted,
    /// A tick's presence of the node's own users: `{ userId, state }`, `null` for a cleared
    /// state.
    Presence {
        states: Vec<Value>,
    },
    /// The sender dropped messages of the room: the others resynchronize its sockets.
    Resync,
}

/// A user as relayed: every field, times in milliseconds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelayedUser {
    id: UserId,
    account_id: AccountId,
    room_id: RoomId,
    name: String,
    profile_picture: Option<String>,
    custom_id: Option<String>,
    status: String,
    created_at: i64,
    joined_at: Option<i64>,
    left_at: Option<i64>,
    token_issued_at: i64,
}

impl From<&User> for RelayedUser {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            account_id: user.account_id,
            room_id: user.room_id,
            name: user.name.clone(),
            profile_picture: user.profile_picture.clone(),
            custom_id: user.custom_id.clone(),
            status: user.status.as_str().to_owned(),
            created_at: user.created_at.as_millis(),
            joined_at: user.joined_at.map(Timestamp::as_millis),
            left_at: user.left_at.map(Timestamp::as_millis),
            token_issued_at: user.token_issued_at.as_millis(),
        }
    }
}

impl RelayedUser {
    fn into_user(self) -> Option<User> {
        Some(User {
            id: self.id,
            account_id: self.account_id,
            room_id: self.room_id,
            name: self.name,
            profile_picture: self.profile_picture,
            custom_id: self.custom_id,
            status: UserStatus::parse(&self.status)?,
            created_at: Timestamp::from_millis(self.created_at),
            joined_at: self.joined_at.map(Timestamp::from_millis),
            left_at: self.left_at.map(Timestamp::from_millis),
            token_issued_at: Timestamp::from_millis(self.token_issued_at),
        })
    }
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
    /// Sends frames to the room's sockets on the other nodes (nothing without a relay); a
    /// store write's with the store version it took.
    pub(super) fn relay_frames(
        &self,
        room_id: RoomId,
        frames: &[Utf8Bytes],
        to: Recipients,
        version: Option<i64>,
    ) {
        self.relay(
            room_id,
            What::Frames {
                frames: frames.iter().map(|f| f.as_str().to_owned()).collect(),
                version,
                except_user: to.except_user,
                only: to.only,
            },
        );
    }

    /// Tells the other nodes of a notice to the room that their sockets must hear of too.
    pub(super) fn relay_notice(&self, room_id: RoomId, notice: &RoomCommand) {
        let what = match notice {
            RoomCommand::Joined { joined, .. } if joined.came_online => What::CameOnline {
                user: (&joined.user).into(),
            },
            RoomCommand::Left { left, .. } if left.went_offline => match &left.user {
                Some(user) => What::WentOffline { user: user.into() },
                None => return,
            },
            RoomCommand::UserCreated(user) => What::UserCreated { user: user.into() },
            RoomCommand::UserUpdated(user) => What::UserUpdated { user: user.into() },
            RoomCommand::UserDeleted(user) => What::UserDeleted { user: user.into() },
            RoomCommand::FollowChanged {
                follower,
                followee,
                follows,
                users,
            } => What::FollowChanged {
                follower: *follower,
                followee: *followee,
                follows: *follows,
                users: users.iter().map(RelayedUser::from).collect(),
            },
            RoomCommand::RoomDeleted => What::RoomDeleted,
            RoomCommand::Publish {
                frames, version, ..
            } => return self.relay_frames(room_id, frames, Recipients::default(), *version),
            _ => return,
        };
        self.relay(room_id, what);
    }

    fn relay(&self, room_id: RoomId, what: What) {
        if let Some(relay) = self.hub().relay() {
            send(relay, room_id, what);
        }
    }

    /// Hands what other nodes relayed to the rooms (`tell_room`, as this node's own changes),
    /// until the relay stops. Where messages were lost, the
    /// room's sockets are closed to resynchronize (4000: the SDK reconnects and reads the
    /// room again from the database), so that clients end as if nothing had been lost.
    pub(super) async fn receive_relayed(self, mut incoming: mpsc::Receiver<Received>) {
        while let Some(received) = incoming.recv().await {
            match received {
                Received::Message { room_id, payload } => {
                    self.take_relayed(room_id, &payload).await;
                    let missed = self.hub().relay().map(Relay::take_missed);
                    for room_id in missed.into_iter().flatten() {
                        self.tell_room(room_id, RoomCommand::Resync).await;
                    }
                }
                Received::Resumed => {
                    let rooms = self.hub().loaded_rooms();
                    tracing::warn!(
                        rooms = rooms.len(),
                        "relay: back after missing messages; resynchronizing the sockets of \
                         every loaded room"
                    );
                    for room in rooms {
                        self.tell_room(room.scope.room_id, RoomCommand::Resync)
                            .await;
                    }
                }
                Received::Lost(rooms) => {
                    tracing::warn!(
                        rooms = rooms.len(),
                        "relay: messages were dropped; the other nodes resynchronize those rooms"
                    );
                    for room_id in rooms {
                        self.relay(room_id, What::Resync);
                    }
                }
            }
        }
    }

    async fn take_relayed(&self, room_id: RoomId, payload: &[u8]) {
        let message: Relayed = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, room = %room_id, "relay: a message that does not parse");
                return;
            }
        };
        if message.origin == self.hub().node_id().as_str() {
            return;
        }
        if let Some(sent_at) = message.sent_at {
            // Clocks of two machines differ a little: a message from the future took no time.
            let lag = Timestamp::now().as_millis().saturating_sub(sent_at).max(0);
            self.metrics()
                .relay_lag
                .observe(std::time::Duration::from_millis(lag as u64));
        }
        if let Some(command) = Self::command_for(message.what) {
            self.tell_room(room_id, command).await;
        }
    }

    /// What the room's actor does with a relayed message; None if it does not make sense.
    fn command_for(what: What) -> Option<RoomCommand> {
        Some(match what {
            What::Frames {
                frames,
                version,
                except_user,
                only,
            } => RoomCommand::Deliver {
                frames: frames.into_iter().map(Utf8Bytes::from).collect(),
                to: Recipients { except_user, only },
                version,
            },
            What::CameOnline { user } => RoomCommand::CameOnline(user.into_user()?),
            What::WentOffline { user } => {
                let user = user.into_user()?;
                RoomCommand::Left {
                    user_id: user.id,
                    left: Box::new(Left {
                        user: Some(user),
                        went_offline: true,
                        ..Left::default()
                    }),
                }
            }
            What::UserCreated { user } => RoomCommand::UserCreated(user.into_user()?),
            What::UserUpdated { user } => RoomCommand::UserUpdated(user.into_user()?),
            What::UserDeleted { user } => RoomCommand::UserDeleted(user.into_user()?),
            What::FollowChanged {
                follower,
                followee,
                follows,
                users,
            } => RoomCommand::FollowChanged {
                follower,
                followee,
                follows,
                users: users
                    .into_iter()
                    .map(RelayedUser::into_user)
                    .collect::<Option<_>>()?,
            },
            What::RoomDeleted => RoomCommand::RoomDeleted,
            What::Resync => RoomCommand::Resync,
            What::Presence { states } => RoomCommand::RemotePresence(
                states
                    .into_iter()
                    .map(|entry| {
                        let user = entry.get("userId")?.as_str()?.parse().ok()?;
                        Some((user, entry.get("state")?.clone()))
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }
}

/// Tells the other nodes of a tick's presence of this node's users (a room's actor does).
pub(super) fn relay_presence(relay: &Relay, room_id: RoomId, states: &[(UserId, &Value)]) {
    let states = states
        .iter()
        .map(|(user, state)| presence::entry(*user, state))
        .collect();
    send(relay, room_id, What::Presence { states });
}

fn send(relay: &Relay, room_id: RoomId, what: What) {
    let message = Relayed {
        origin: relay.node().as_str().to_owned(),
        sent_at: Some(Timestamp::now().as_millis()),
        what,
    };
    match serde_json::to_vec(&message) {
        Ok(payload) => relay.publish(room_id, payload.into()),
        Err(error) => tracing::error!(%error, "relay: cannot encode a message"),
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
            sent_at: None,
            what: What::Frames {
                frames: vec!["{}".into()],
                version: None,
                except_user: None,
                only: None,
            },
        };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(
            text,
            r#"{"origin":"node-a","kind":"frames","frames":["{}"]}"#
        );
        let back: Relayed = serde_json::from_str(&text).unwrap();
        assert!(matches!(back.what, What::Frames { frames, .. } if frames == ["{}"]));
        let store_write = r#"{"origin":"node-b","kind":"frames","frames":["{}"],"version":7}"#;
        let back: Relayed = serde_json::from_str(store_write).unwrap();
        assert!(matches!(
            back.what,
            What::Frames {
                version: Some(7),
                ..
            }
        ));
    }

    #[test]
    fn users_cross_whole() {
        let user = User {
            id: UserId::new(),
            account_id: AccountId::new(),
            room_id: RoomId::new(),
            name: "Ada".into(),
            profile_picture: Some("https://example.com/a.png".into()),
            custom_id: None,
            status: UserStatus::Online,
            created_at: Timestamp::from_millis(1_000),
            joined_at: Some(Timestamp::from_millis(2_000)),
            left_at: None,
            token_issued_at: Timestamp::from_millis(1_000),
        };
        let text = serde_json::to_string(&RelayedUser::from(&user)).unwrap();
        let back: RelayedUser = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_user(), Some(user));
    }
}
