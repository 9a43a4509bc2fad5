//! Room reads from memory: `GET /rooms/:roomId`'s room and page of users, kept per room on
//! this node until a change to the room or its users drops them. An authenticated room read
//! is then no database round trip at all.
//!
//! What drops a room's answers: every change this node announces (`publish`, which every
//! write to a room or its users goes through), and on a database other nodes share, every
//! change they commit, which the database tells each node (`Store::watch_rooms`). While that
//! feed is down, nothing is kept. A read that raced a change never keeps its (maybe older)
//! answer: each room's answers carry a generation that a change bumps, and an answer read
//! under an older generation is served but not kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::actor::RoomCommand;
use super::Engine;
use serde_json::value::RawValue;

use crate::domain::{AccountId, Room, RoomId};
use crate::error::ApiError;
use crate::store::{Entity, ListFilter, Page, RoomScope, RoomSignal};

/// Rooms whose answers are kept at most; past it, everything kept is dropped (a bound, not
/// a policy: an answer costs one read to get back).
const MAX_ROOMS: usize = 10_000;
/// Different pages (filters, offsets) kept per room at most.
const MAX_PAGES_PER_ROOM: usize = 8;

/// The room and one page of its users, encoded (a user's JSON does not change until the
/// user does; the room's holds the time it has been in use, so it is encoded at each read).
pub struct RoomAnswer {
    pub room: Room,
    /// The page's users, a JSON array.
    pub users: Box<RawValue>,
    /// Users across all pages.
    pub users_total: i64,
}

/// Room answers kept in memory.
#[derive(Default)]
pub struct RoomReads {
    rooms: Mutex<HashMap<RoomId, Slot>>,
    /// Whether answers may be kept now.
    enabled: AtomicBool,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    pages: Vec<(ListFilter, Page, Arc<RoomAnswer>)>,
}

/// What a read that missed must show to keep its answer: the room's generation when it began.
pub struct Ticket {
    room_id: RoomId,
    generation: u64,
}

impl RoomReads {
    /// A cache that keeps answers from the start (`enabled`), or only once told it may.
    pub fn new(enabled: bool) -> Self {
        Self {
            rooms: Mutex::default(),
            enabled: AtomicBool::new(enabled),
        }
    }

    /// The answer kept for this page of the account's room, if any.
    pub fn get(
        &self,
        account_id: AccountId,
        room_id: RoomId,
        filter: &ListFilter,
        page: Page,
    ) -> Option<Arc<RoomAnswer>> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let rooms = self.rooms.lock().expect("room reads lock");
        let slot = rooms.get(&room_id)?;
        slot.pages
            .iter()
            .find(|(f, p, answer)| {
                f == filter && *p == page && answer.room.account_id == account_id
            })
            .map(|(_, _, answer)| answer.clone())
    }

    /// Before reading the database after a miss: the ticket that lets the answer be kept.
    pub fn ticket(&self, room_id: RoomId) -> Option<Ticket> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let mut rooms = self.rooms.lock().expect("room reads lock");
        if rooms.len() >= MAX_ROOMS && !rooms.contains_key(&room_id) {
            rooms.clear();
        }
        let generation = rooms.entry(room_id).or_default().generation;
        Some(Ticket {
            room_id,
            generation,
        })
    }

    /// Keeps an answer read under `ticket`, unless the room changed since.
    pub fn keep(&self, ticket: Ticket, filter: ListFilter, page: Page, answer: Arc<RoomAnswer>) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut rooms = self.rooms.lock().expect("room reads lock");
        let Some(slot) = rooms.get_mut(&ticket.room_id) else {
            return;
        };
        if slot.generation != ticket.generation {
            return;
        }
        if slot.pages.len() >= MAX_PAGES_PER_ROOM {
            slot.pages.clear();
        }
        slot.pages.retain(|(f, p, _)| !(*f == filter && *p == page));
        slot.pages.push((filter, page, answer));
    }

    /// The room or its users changed: its answers go, and reads under way are not kept.
    pub fn changed(&self, room_id: RoomId) {
        let mut rooms = self.rooms.lock().expect("room reads lock");
        if let Some(slot) = rooms.get_mut(&room_id) {
            slot.generation += 1;
            slot.pages.clear();
        }
    }

    /// Whether answers may be kept now (the room actors' first pages follow the same rule).
    pub fn keeps(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Starts or stops keeping answers; either way, what was kept goes (changes may have
    /// been missed while the feed was down).
    pub fn set_enabled(&self, enabled: bool) {
        let mut rooms = self.rooms.lock().expect("room reads lock");
        self.enabled.store(enabled, Ordering::Release);
        // Slots go with their generations: a read under way finds no slot and keeps nothing.
        rooms.clear();
    }
}

impl Engine {
    /// The account's room and one page of its users, as `GET /rooms/:roomId` answers: from
    /// memory when this node holds the answer, else from the database (and then kept).
    pub async fn room_answer(
        &self,
        account_id: AccountId,
        room_id: RoomId,
        filter: &ListFilter,
        page: Page,
    ) -> Result<Arc<RoomAnswer>, ApiError> {
        let reads = self.room_reads();
        if let Some(answer) = reads.get(account_id, room_id, filter, page) {
            return Ok(answer);
        }
        let ticket = reads.ticket(room_id);
        let room = self
            .store()
            .get_room(account_id, room_id)
            .await?
            .ok_or(ApiError::not_found(Entity::Room))?;
        let scope = RoomScope {
            account_id,
            room_id,
        };
        let users = self.store().list_users(scope, filter, page).await?;
        let answer = Arc::new(RoomAnswer {
            room,
            users: serde_json::value::to_raw_value(&users.items)
                .map_err(|error| ApiError::Internal(error.into()))?,
            users_total: users.total,
        });
        if let Some(ticket) = ticket {
            reads.keep(ticket, filter.clone(), page, answer.clone());
        }
        Ok(answer)
    }

    /// Follows the changes other nodes commit to rooms and their users, for as long as the
    /// store reports them (`Store::watch_rooms`): answers are kept only while it does. The
    /// room actors' first pages of users (`first_page`) go with them.
    pub async fn follow_room_changes(&self, mut feed: mpsc::Receiver<RoomSignal>) {
        while let Some(signal) = feed.recv().await {
            match signal {
                RoomSignal::Changed { room_id, own } => {
                    self.room_reads().changed(room_id);
                    // This node's own changes reached its rooms' actors as notices already
                    // (`publish`), and patched their first pages.
                    if !own {
                        if let Some(room) = self.hub().existing_room(room_id) {
                            room.send(RoomCommand::Forget).await;
                        }
                    }
                }
                RoomSignal::Listening => {
                    // Changes missed while the feed was down are forgotten before anything is
                    // kept again.
                    self.forget_first_pages().await;
                    self.room_reads().set_enabled(true);
                }
                RoomSignal::Lost => {
                    tracing::warn!("lost the database's feed of room changes: room reads go to the database until it is back");
                    self.room_reads().set_enabled(false);
                    self.forget_first_pages().await;
                }
            }
        }
    }

    async fn forget_first_pages(&self) {
        for room in self.hub().loaded_rooms() {
            room.send(RoomCommand::Forget).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RoomState, Timestamp};

    fn answer(account_id: AccountId, room_id: RoomId, name: &str) -> Arc<RoomAnswer> {
        Arc::new(RoomAnswer {
            room: Room {
                id: room_id,
                account_id,
                name: name.to_owned(),
                custom_id: None,
                created_at: Timestamp::from_millis(0),
                state: RoomState::Active,
                active_participants: 0,
                closed_sessions_ms: 0,
                session_started_at: None,
                total_users_created: 0,
            },
            users: serde_json::value::to_raw_value(&[0; 0]).unwrap(),
            users_total: 0,
        })
    }

    fn first_page() -> (ListFilter, Page) {
        let page = Page {
            limit: 50,
            offset: 0,
        };
        (ListFilter::default(), page)
    }

    #[test]
    fn an_answer_is_kept_until_its_room_changes() {
        let reads = RoomReads::new(true);
        let (account, room) = (AccountId::new(), RoomId::new());
        let (filter, page) = first_page();
        assert!(reads.get(account, room, &filter, page).is_none());
        let ticket = reads.ticket(room).unwrap();
        reads.keep(ticket, filter.clone(), page, answer(account, room, "a"));
        let hit = reads.get(account, room, &filter, page).unwrap();
        assert_eq!(hit.room.name, "a");
        // Not for another account, nor another page.
        assert!(reads.get(AccountId::new(), room, &filter, page).is_none());
        let other = Page { offset: 10, ..page };
        assert!(reads.get(account, room, &filter, other).is_none());
        reads.changed(room);
        assert!(reads.get(account, room, &filter, page).is_none());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let reads = RoomReads::new(true);
        let (account, room) = (AccountId::new(), RoomId::new());
        let (filter, page) = first_page();
        let ticket = reads.ticket(room).unwrap();
        // The database read happens here, then a change commits and is announced.
        reads.changed(room);
        reads.keep(ticket, filter.clone(), page, answer(account, room, "old"));
        assert!(reads.get(account, room, &filter, page).is_none());
        // Disabled (the feed of other nodes' changes is down): nothing is kept or served.
        let ticket = reads.ticket(room).unwrap();
        reads.keep(ticket, filter.clone(), page, answer(account, room, "a"));
        reads.set_enabled(false);
        assert!(reads.get(account, room, &filter, page).is_none());
        assert!(reads.ticket(room).is_none());
        reads.set_enabled(true);
        assert!(reads.get(account, room, &filter, page).is_none(), "dropped");
    }
}
