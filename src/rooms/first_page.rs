//! The first page of a room's users, which every `room.join` answers with: kept by the room's
//! actor while the room is loaded, and patched with each change to a user that the actor
//! hears of, so that a storm of joins reads it from the database once rather than once per
//! batch of joins.
//!
//! Why a kept page stays true: it is the page the database held when it was read (after the
//! actor handed out the epoch it is kept under), and every later change to the room's users
//! reaches the actor as a notice, in the order `publish` sends them. A user's change (joined,
//! left, updated) replaces that user in place: a page is ordered by creation, which no change
//! moves, so the page holds the same users. A user created or deleted, the room deleted, or a
//! change another node committed (`forget`) drops the page, and the next join reads it again.
//! A page is kept only while it has room to change size: it holds the whole room or is cut
//! by its count (never by its bytes), and its JSON uses at most half the byte budget.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::following::{FollowGraph, UserView};
use crate::domain::User;
use crate::error::ApiError;
use crate::store::{PageSize, UserPage};

/// The first page of a room's users as a join answers with it, JSON encoded once for every
/// join that shares it.
pub struct FirstPage {
    /// The follow graph the users are shown with (and the joiner, `socket_user`).
    graph: Arc<FollowGraph>,
    /// The users (`UserView`s), a JSON array.
    pub users: Box<RawValue>,
    /// Where the rest of the room's users start, if there are more.
    pub cursor: Option<String>,
}

impl FirstPage {
    pub fn new(
        users: &[User],
        cursor: Option<String>,
        graph: Arc<FollowGraph>,
    ) -> Result<Self, ApiError> {
        let views: Vec<UserView> = users.iter().map(|u| graph.socket_user(u.clone())).collect();
        let users =
            serde_json::value::to_raw_value(&views).map_err(|e| ApiError::Internal(e.into()))?;
        Ok(Self {
            graph,
            users,
            cursor,
        })
    }

    /// A user as this page's graph shows them.
    pub fn socket_user(&self, user: User) -> UserView {
        self.graph.socket_user(user)
    }
}

/// What the actor answers a join asking for the first page.
pub enum Lookup {
    Kept(Arc<FirstPage>),
    /// Not kept: read it and hand it back (`KeptPage::keep`) under this epoch.
    Missing {
        epoch: u64,
    },
    /// The actor cannot show users (its follow graph did not load): read page and graph.
    Unavailable,
}

/// The actor's first page, if kept.
pub struct KeptPage {
    size: PageSize,
    kept: Option<Kept>,
    /// Bumped by every drop: a page read before a drop must not be kept after it.
    epoch: u64,
}

struct Kept {
    users: Vec<KeptUser>,
    cursor: Option<String>,
    /// The page as joins get it, encoded at the first join after a change.
    encoded: Option<Arc<FirstPage>>,
}

/// A user of the kept page, and their JSON as the page shows it, until they or the graph
/// change: a change re-encodes one user, not the page.
struct KeptUser {
    user: User,
    json: Option<Box<RawValue>>,
}

impl Kept {
    /// The page, encoding only the users whose JSON went with a change.
    fn encode(&mut self, graph: &Arc<FollowGraph>) -> Result<FirstPage, ApiError> {
        let mut text = String::from("[");
        for (i, kept) in self.users.iter_mut().enumerate() {
            if kept.json.is_none() {
                let view = graph.socket_user(kept.user.clone());
                let json = serde_json::value::to_raw_value(&view)
                    .map_err(|e| ApiError::Internal(e.into()))?;
                kept.json = Some(json);
            }
            if i > 0 {
                text.push(',');
            }
            text.push_str(kept.json.as_deref().map_or("null", RawValue::get));
        }
        text.push(']');
        let users = RawValue::from_string(text).map_err(|e| ApiError::Internal(e.into()))?;
        Ok(FirstPage {
            graph: graph.clone(),
            users,
            cursor: self.cursor.clone(),
        })
    }
}

impl KeptPage {
    pub fn new(size: PageSize) -> Self {
        Self {
            size,
            kept: None,
            epoch: 0,
        }
    }

    /// The page, encoded with `graph` if a change came since it last was.
    pub fn get(&mut self, graph: &Arc<FollowGraph>) -> Lookup {
        let Some(kept) = &mut self.kept else {
            return Lookup::Missing { epoch: self.epoch };
        };
        if let Some(page) = &kept.encoded {
            return Lookup::Kept(page.clone());
        }
        match kept.encode(graph) {
            Ok(page) if fits(self.size, &page) => {
                let page = Arc::new(page);
                kept.encoded = Some(page.clone());
                Lookup::Kept(page)
            }
            _ => {
                self.forget();
                Lookup::Missing { epoch: self.epoch }
            }
        }
    }

    /// A page read from the database under `epoch`, encoded for the joins that read it, and
    /// kept if nothing dropped the kept page since the epoch was handed out.
    pub fn keep(
        &mut self,
        epoch: u64,
        page: UserPage,
        graph: &Arc<FollowGraph>,
    ) -> Result<Arc<FirstPage>, ApiError> {
        let cut_by_count = usize::try_from(self.size.items).is_ok_and(|n| page.users.len() == n);
        let mut kept = Kept {
            users: page
                .users
                .into_iter()
                .map(|user| KeptUser { user, json: None })
                .collect(),
            cursor: page.next.map(|cursor| cursor.to_string()),
            encoded: None,
        };
        let encoded = Arc::new(kept.encode(graph)?);
        if epoch == self.epoch
            && (kept.cursor.is_none() || cut_by_count)
            && fits(self.size, &encoded)
        {
            kept.encoded = Some(encoded.clone());
            self.kept = Some(kept);
        }
        Ok(encoded)
    }

    /// A user changed (joined, left, updated): replaced in place if on the page.
    pub fn patch(&mut self, user: &User) {
        let Some(kept) = &mut self.kept else { return };
        if let Some(slot) = kept.users.iter_mut().find(|u| u.user.id == user.id) {
            *slot = KeptUser {
                user: user.clone(),
                json: None,
            };
            kept.encoded = None;
        }
    }

    /// The follow graph changed: the users are shown anew at the next join.
    pub fn regraph(&mut self) {
        if let Some(kept) = &mut self.kept {
            kept.encoded = None;
            for user in &mut kept.users {
                user.json = None;
            }
        }
    }

    /// Drops the page: the next join reads it again.
    pub fn forget(&mut self) {
        self.kept = None;
        self.epoch += 1;
    }
}

/// Whether a page has room to change size: its JSON takes at most half the byte budget.
fn fits(size: PageSize, page: &FirstPage) -> bool {
    i64::try_from(page.users.get().len()).is_ok_and(|len| len <= size.bytes / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, RoomId, Timestamp, UserId, UserStatus};
    use crate::store::UserCursor;

    fn user(name: &str, created_at: i64) -> User {
        User {
            id: UserId::new(),
            account_id: AccountId::new(),
            room_id: RoomId::new(),
            name: name.to_owned(),
            profile_picture: None,
            custom_id: None,
            status: UserStatus::Offline,
            created_at: Timestamp::from_millis(created_at),
            joined_at: None,
            left_at: None,
            token_issued_at: Timestamp::from_millis(created_at),
        }
    }

    fn page(users: &[User], more: bool) -> UserPage {
        UserPage {
            users: users.to_vec(),
            next: more.then(|| UserCursor {
                created_at: users[users.len() - 1].created_at,
                id: users[users.len() - 1].id,
            }),
        }
    }

    fn size(items: i64) -> PageSize {
        PageSize {
            items,
            bytes: 64 * 1024,
        }
    }

    fn kept(lookup: Lookup) -> Arc<FirstPage> {
        match lookup {
            Lookup::Kept(page) => page,
            _ => panic!("the page is not kept"),
        }
    }

    fn names(page: &FirstPage) -> Vec<(String, String)> {
        let users: Vec<serde_json::Value> = serde_json::from_str(page.users.get()).unwrap();
        users
            .iter()
            .map(|u| {
                (
                    u["name"].as_str().unwrap().into(),
                    u["status"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    #[test]
    fn a_kept_page_is_patched_in_place_and_dropped_by_what_moves_users() {
        let graph = Arc::new(FollowGraph::default());
        let (ann, bob) = (user("ann", 1), user("bob", 2));
        let mut first = KeptPage::new(size(100));
        let Lookup::Missing { epoch } = first.get(&graph) else {
            panic!("nothing is kept at first")
        };
        first
            .keep(epoch, page(&[ann.clone(), bob.clone()], false), &graph)
            .unwrap();
        let shown = kept(first.get(&graph));
        assert_eq!(
            names(&shown),
            [
                ("ann".into(), "offline".into()),
                ("bob".into(), "offline".into())
            ]
        );
        // The same encoding until a change.
        assert!(Arc::ptr_eq(&shown, &kept(first.get(&graph))));

        let mut online = bob.clone();
        online.status = UserStatus::Online;
        first.patch(&online);
        first.patch(&user("not in the room", 3));
        let shown = kept(first.get(&graph));
        assert_eq!(
            names(&shown),
            [
                ("ann".into(), "offline".into()),
                ("bob".into(), "online".into())
            ]
        );

        first.forget();
        assert!(matches!(first.get(&graph), Lookup::Missing { .. }));
    }

    #[test]
    fn a_page_read_before_a_drop_is_answered_but_not_kept() {
        let graph = Arc::new(FollowGraph::default());
        let mut first = KeptPage::new(size(100));
        let Lookup::Missing { epoch } = first.get(&graph) else {
            panic!("nothing is kept at first")
        };
        first.forget();
        let answered = first
            .keep(epoch, page(&[user("ann", 1)], false), &graph)
            .unwrap();
        assert_eq!(names(&answered), [("ann".into(), "offline".into())]);
        assert!(matches!(first.get(&graph), Lookup::Missing { .. }));
    }

    #[test]
    fn only_pages_with_room_to_change_are_kept() {
        let graph = Arc::new(FollowGraph::default());
        let users = [user("ann", 1), user("bob", 2)];
        // Cut by its count: kept.
        let mut first = KeptPage::new(size(2));
        first.keep(0, page(&users, true), &graph).unwrap();
        assert!(matches!(first.get(&graph), Lookup::Kept(_)));
        // Cut before its count (by bytes): a patch could change where it ends.
        let mut first = KeptPage::new(size(3));
        first.keep(0, page(&users, true), &graph).unwrap();
        assert!(matches!(first.get(&graph), Lookup::Missing { .. }));
        // Over half the byte budget.
        let mut first = KeptPage::new(PageSize {
            items: 100,
            bytes: 200,
        });
        first.keep(0, page(&users, false), &graph).unwrap();
        assert!(matches!(first.get(&graph), Lookup::Missing { .. }));
    }
}
