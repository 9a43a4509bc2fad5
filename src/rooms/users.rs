//! The users of a room as the engine changes and shows them: the account's backend creating,
//! changing and deleting users and rooms, users following each other, and pages of a room's
//! users with their follow graph.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::actor::RoomCommand;
use super::following::{FollowGraph, UserView};
use super::publish::Outcome;
use super::Engine;
use crate::domain::{AccountId, Room, RoomId, User, UserId};
use crate::error::ApiError;
use crate::store::{Entity, NewUser, Recounted, RoomChanges, RoomScope, UserChanges, UserCursor};

/// A follow starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Start,
    Stop,
}

/// A room after a reconcile, and its counter before.
pub struct Reconciled {
    pub recounted: Recounted,
    pub previous_active_participants: i64,
}

impl Engine {
    pub async fn create_user(&self, user: &NewUser) -> Result<User, ApiError> {
        let (user, events) = self.store().create_user(user).await?;
        let notice = RoomCommand::UserCreated(user.clone());
        self.publish(Outcome {
            room_id: user.room_id,
            events,
            notice: Some(notice),
        })
        .await;
        Ok(user)
    }

    pub async fn update_user(
        &self,
        scope: RoomScope,
        user_id: UserId,
        changes: &UserChanges,
    ) -> Result<User, ApiError> {
        let (user, events) = self.store().update_user(scope, user_id, changes).await?;
        let notice = RoomCommand::UserUpdated(user.clone());
        self.publish(Outcome {
            room_id: scope.room_id,
            events,
            notice: Some(notice),
        })
        .await;
        Ok(user)
    }

    /// Deletes a user: joined or not, none of their sockets may act any more (closed 4404),
    /// and the room's others hear of it.
    pub async fn delete_user(&self, scope: RoomScope, user_id: UserId) -> Result<User, ApiError> {
        let (user, left) = self.store().delete_user(scope, user_id).await?;
        self.publish(Outcome {
            room_id: scope.room_id,
            events: left.events,
            notice: Some(RoomCommand::UserDeleted(user.clone())),
        })
        .await;
        Ok(user)
    }

    /// Renames a room or changes its custom ID, and announces it (its answers kept in memory
    /// go).
    pub async fn update_room(
        &self,
        account_id: AccountId,
        room_id: RoomId,
        changes: &RoomChanges,
    ) -> Result<Room, ApiError> {
        let room = self
            .store()
            .update_room(account_id, room_id, changes)
            .await?;
        self.publish(Outcome::recorded(room_id, Vec::new())).await;
        Ok(room)
    }

    /// Deletes a room and all it holds, its files included; its sockets hear of it and are
    /// closed (4404).
    pub async fn delete_room(
        &self,
        account_id: AccountId,
        room_id: RoomId,
    ) -> Result<(), ApiError> {
        let scope = RoomScope {
            account_id,
            room_id,
        };
        // Read before the rows go with the room; an upload that begins meanwhile fails to
        // finish (its row is gone) and removes its own object.
        let files = self.store().room_file_keys(scope).await?;
        self.store().delete_room(account_id, room_id).await?;
        self.delete_room_objects(account_id, files).await;
        self.publish(Outcome {
            room_id,
            events: Vec::new(),
            notice: Some(RoomCommand::RoomDeleted),
        })
        .await;
        Ok(())
    }

    /// Recounts a room's online users: first the sockets nobody serves any more (dead nodes,
    /// leaked rows) leave, then the counter follows the sockets that remain.
    pub async fn reconcile_room(&self, scope: RoomScope) -> Result<Reconciled, ApiError> {
        let previous = self
            .store()
            .get_room(scope.account_id, scope.room_id)
            .await?
            .ok_or(ApiError::not_found(Entity::Room))?
            .active_participants;
        let node_timeout = self.hub().config().node_timeout_ms as i64;
        let stale_before = crate::domain::Timestamp::now().plus_millis(-node_timeout);
        self.reap(stale_before).await?;
        let recounted = self.store().recount_room(scope).await?;
        self.publish(Outcome::recorded(scope.room_id, recounted.events.clone()))
            .await;
        self.users_set_offline(scope.room_id, recounted.users_set_offline.clone())
            .await;
        Ok(Reconciled {
            recounted,
            previous_active_participants: previous,
        })
    }

    /// `follower` starts or stops following `followee` (idempotent); both hear of it, with the
    /// room. Returns the followee as now shown.
    pub async fn follow(
        &self,
        scope: RoomScope,
        follower: UserId,
        followee: UserId,
        change: Follow,
    ) -> Result<UserView, ApiError> {
        if followee == follower {
            return Err(ApiError::validation(
                "userId",
                "A user cannot follow themselves",
            ));
        }
        let store = self.store();
        let follows = change == Follow::Start;
        store.set_follow(scope, follower, followee, follows).await?;
        let (me, them) = tokio::try_join!(
            store.get_user(scope, follower),
            store.get_user(scope, followee)
        )?;
        let (Some(me), Some(them)) = (me, them) else {
            return Err(ApiError::not_found(Entity::User));
        };
        let shown = self.follow_graph(scope).await?.socket_user(them.clone());
        let notice = RoomCommand::FollowChanged {
            follower,
            followee,
            follows,
            users: vec![me, them],
        };
        self.publish(Outcome {
            room_id: scope.room_id,
            events: Vec::new(),
            notice: Some(notice),
        })
        .await;
        Ok(shown)
    }

    /// Who follows whom in a room, from the database.
    pub async fn follow_graph(&self, scope: RoomScope) -> Result<FollowGraph, ApiError> {
        Ok(FollowGraph::from_pairs(
            self.store().list_follows(scope).await?,
        ))
    }

    /// Who follows whom in a room: from its actor if the room is loaded on this node (a
    /// storm of sockets opening reads it once), else from the database.
    pub async fn kept_follow_graph(&self, scope: RoomScope) -> Result<Arc<FollowGraph>, ApiError> {
        if let Some(room) = self.hub().existing_room(scope.room_id) {
            let (reply, graph) = oneshot::channel();
            room.send(RoomCommand::FollowGraph { reply }).await;
            if let Ok(Some(graph)) = graph.await {
                return Ok(graph);
            }
        }
        Ok(Arc::new(self.follow_graph(scope).await?))
    }

    /// A user of the room as sockets see them.
    pub async fn user_view(&self, scope: RoomScope, user_id: UserId) -> Result<UserView, ApiError> {
        let user = self
            .store()
            .get_user(scope, user_id)
            .await?
            .ok_or(ApiError::not_found(Entity::User))?;
        Ok(self.follow_graph(scope).await?.socket_user(user))
    }

    /// A page of the room's users as sockets see them, oldest first, after `after` (a page's
    /// cursor), and the next page's cursor.
    pub async fn users_page(
        &self,
        scope: RoomScope,
        after: Option<&str>,
    ) -> Result<(Vec<UserView>, Option<String>), ApiError> {
        let (users, next, _graph) = self.users_page_and_graph(scope, after).await?;
        Ok((users, next))
    }

    /// `users_page`, and the follow graph it was drawn with.
    pub async fn users_page_and_graph(
        &self,
        scope: RoomScope,
        after: Option<&str>,
    ) -> Result<(Vec<UserView>, Option<String>, FollowGraph), ApiError> {
        let after = after
            .map(|text| {
                text.parse::<UserCursor>().map_err(|_| {
                    ApiError::validation("after", "after must be a cursor from an earlier answer")
                })
            })
            .transpose()?;
        let size = self.hub().users_page_size();
        let (page, graph) = tokio::try_join!(
            async {
                let page = self.store().list_room_users(scope, after.as_ref(), size);
                page.await.map_err(ApiError::from)
            },
            self.follow_graph(scope)
        )?;
        let users = page
            .users
            .into_iter()
            .map(|u| graph.socket_user(u))
            .collect();
        Ok((users, page.next.map(|cursor| cursor.to_string()), graph))
    }
}
