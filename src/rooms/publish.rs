//! The one way a change is announced: the room's answers kept in memory go (`reads`), the
//! events it recorded go to the event bus (webhooks, workflows), and what the room's sockets
//! must hear goes to the room's actor on this node.
//! What the room's sockets on other nodes must hear is relayed here too (`relay`), behind
//! the same call.

use std::future::Future;

use super::actor::RoomCommand;
use super::following::UserView;
use super::outbox::Utf8Bytes;
use super::{Engine, Origin};
use crate::domain::{Event, RoomId};
use crate::store::RoomScope;

/// What a write to a room's data tells its sockets: events, and for a store write the room's
/// store version it took (so that every node hands store events out in version order).
#[derive(Debug, Default)]
pub struct Told {
    pub frames: Vec<Utf8Bytes>,
    pub version: Option<i64>,
}

impl From<Vec<Utf8Bytes>> for Told {
    /// Events that are not a store write's.
    fn from(frames: Vec<Utf8Bytes>) -> Self {
        Self {
            frames,
            version: None,
        }
    }
}

/// What a change did that others must hear of.
pub struct Outcome {
    pub room_id: RoomId,
    /// Recorded in the change's transaction: for the bus.
    pub events: Vec<Event>,
    /// What the room's actor does about it (an event for its sockets, a member gone...).
    pub notice: Option<RoomCommand>,
}

impl Outcome {
    /// Events recorded, nothing for the room's sockets.
    pub fn recorded(room_id: RoomId, events: Vec<Event>) -> Self {
        Self {
            room_id,
            events,
            notice: None,
        }
    }
}

impl Engine {
    /// Announces a change: its events to the bus, in order, then its notice to the room, if
    /// the room is loaded on this node (nobody here to tell otherwise). A deleted user's or
    /// room's sockets, joined or not, are told and closed.
    pub async fn publish(&self, outcome: Outcome) {
        self.room_reads().changed(outcome.room_id);
        self.bus().publish(outcome.events);
        let Some(notice) = outcome.notice else { return };
        self.relay_notice(outcome.room_id, &notice);
        self.tell_room(outcome.room_id, notice).await;
    }

    /// Hands a notice to the room's actor, if the room is loaded on this node (nobody here to
    /// tell otherwise), after closing a deleted user's or room's sockets, joined or not (or,
    /// to resynchronize, the room's). The same for this node's changes and for those other
    /// nodes relay.
    pub(super) async fn tell_room(&self, room_id: RoomId, notice: RoomCommand) {
        match &notice {
            RoomCommand::UserDeleted(user) => {
                self.hub()
                    .close_user_sockets(&UserView::alone(user.clone()));
            }
            RoomCommand::RoomDeleted => self.hub().close_room_sockets(room_id),
            RoomCommand::Resync => self.hub().resync_room_sockets(room_id),
            _ => {}
        }
        if let Some(room) = self.hub().existing_room(room_id) {
            room.send(notice).await;
        }
    }

    /// Runs a write to a room's data (stores, comments) and publishes the events it returns
    /// to the room's sockets but the origin's, in the order the writes were applied. The room
    /// is loaded for the duration, so that a socket joining meanwhile cannot miss them.
    pub async fn write_in_order<T, E, F: Into<Told>>(
        &self,
        scope: RoomScope,
        origin: Origin,
        write: impl Future<Output = Result<(T, F), E>>,
    ) -> Result<T, E> {
        let room = self.hub().room(scope);
        let _order = room.writes().await;
        let (value, told) = write.await?;
        let Told { frames, version } = told.into();
        if !frames.is_empty() {
            let notice = RoomCommand::Publish {
                except: origin.connection(),
                frames,
                version,
            };
            self.publish(Outcome {
                room_id: scope.room_id,
                events: Vec::new(),
                notice: Some(notice),
            })
            .await;
        }
        Ok(value)
    }
}
