//! Who follows whom in a room: `FollowStore`, and its implementation on either database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect};
use super::sql::{parse, SqlStore};
use super::{Entity, RoomScope, StoreError, StoreResult};
use crate::domain::{Timestamp, UserId};

#[async_trait]
pub trait FollowStore: Send + Sync {
    /// `(follower, followee)` pairs of a room.
    async fn list_follows(&self, scope: RoomScope) -> StoreResult<Vec<(UserId, UserId)>>;
    /// Makes `follower` follow (or stop following) `followee`; idempotent. `NotFound(User)`
    /// when either is not a user of the room.
    async fn set_follow(
        &self,
        scope: RoomScope,
        follower: UserId,
        followee: UserId,
        follow: bool,
    ) -> StoreResult<()>;
}

#[async_trait]
impl<DB> FollowStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn list_follows(&self, scope: RoomScope) -> StoreResult<Vec<(UserId, UserId)>> {
        let pairs: Vec<(String, String)> = sqlx::query_as(
            "SELECT f.follower_id, f.followee_id FROM follows f \
             JOIN rooms r ON r.id = f.room_id \
             WHERE f.room_id = $1 AND r.account_id = $2 \
             ORDER BY f.created_at, f.follower_id, f.followee_id",
        )
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .fetch_all(&self.reads)
        .await?;
        pairs
            .into_iter()
            .map(|(follower, followee)| {
                Ok((
                    parse(&follower, "follower id")?,
                    parse(&followee, "followee id")?,
                ))
            })
            .collect()
    }

    async fn set_follow(
        &self,
        scope: RoomScope,
        follower: UserId,
        followee: UserId,
        follow: bool,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        let both: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE room_id = $1 AND id IN ($2, $3)")
                .bind(scope.room_id.to_string())
                .bind(follower.to_string())
                .bind(followee.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if both != 2 {
            return Err(StoreError::NotFound(Entity::User));
        }
        let change = if follow {
            sqlx::query(
                "INSERT INTO follows (room_id, follower_id, followee_id, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (follower_id, followee_id) DO NOTHING",
            )
            .bind(scope.room_id.to_string())
            .bind(follower.to_string())
            .bind(followee.to_string())
            .bind(Timestamp::now().as_millis())
        } else {
            sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                .bind(follower.to_string())
                .bind(followee.to_string())
        };
        change.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
