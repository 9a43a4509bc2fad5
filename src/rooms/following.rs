//! Following: who follows whom in a room, and the user as sockets see them (the REST object,
//! never with its token, plus `following` and `followers`).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::domain::{User, UserId};

/// A user as the socket shows it: the REST object (never with `token`) plus the follow graph.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    #[serde(flatten)]
    pub user: User,
    pub following: Vec<UserId>,
    pub followers: Vec<UserId>,
}

impl UserView {
    /// A user shown without their follow graph (one being deleted).
    pub fn alone(user: User) -> Self {
        Self {
            user,
            following: Vec::new(),
            followers: Vec::new(),
        }
    }
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

    /// Whom `user` follows, sorted for stable output.
    pub fn following_of(&self, user: UserId) -> Vec<UserId> {
        sorted(self.following.get(&user))
    }

    /// The user with its `following` and `followers`, each sorted for stable output.
    pub fn socket_user(&self, user: User) -> UserView {
        UserView {
            following: sorted(self.following.get(&user.id)),
            followers: sorted(self.followers.get(&user.id)),
            user,
        }
    }
}

fn sorted(set: Option<&HashSet<UserId>>) -> Vec<UserId> {
    let mut ids: Vec<UserId> = set.map(|s| s.iter().copied().collect()).unwrap_or_default();
    ids.sort();
    ids
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
}
