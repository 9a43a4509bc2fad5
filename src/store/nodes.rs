//! Server nodes sharing the database: their heartbeats, and the sockets of nodes that
//! stopped beating. `NodeStore`, and its implementation on either database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect};
use super::membership::ConnectionRecord;
use super::sql::{parse, SqlStore};
use super::{RoomScope, StoreError, StoreResult};
use crate::domain::{NodeId, RoomId, Timestamp, UserId};

#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Records that a node is alive (creating its row at start-up).
    async fn heartbeat_node(&self, node_id: &NodeId, now: Timestamp) -> StoreResult<()>;
    async fn remove_node(&self, node_id: &NodeId) -> StoreResult<()>;
    /// The nodes whose last heartbeat is at `seen_after` or later.
    async fn live_nodes(&self, seen_after: Timestamp) -> StoreResult<Vec<NodeId>>;
    /// Joined sockets of nodes other than `live` whose heartbeat is older than
    /// `stale_before` or that have no node row at all.
    async fn orphaned_connections(
        &self,
        live: &NodeId,
        stale_before: Timestamp,
    ) -> StoreResult<Vec<ConnectionRecord>>;
    /// Joined sockets recorded for one node.
    async fn node_connections(&self, node_id: &NodeId) -> StoreResult<Vec<ConnectionRecord>>;
    /// Forgets nodes whose heartbeat is older than `stale_before` and that hold no sockets.
    async fn remove_stale_nodes(&self, stale_before: Timestamp) -> StoreResult<()>;
    /// The users of the room's joined sockets on nodes other than `node`, one per socket.
    async fn room_sockets_elsewhere(
        &self,
        room_id: RoomId,
        node: &NodeId,
    ) -> StoreResult<Vec<UserId>>;
}

/// The columns of a joined socket, its room's account included.
const CONNECTION_COLUMNS: &str = "c.id, c.node_id, c.room_id, c.user_id, r.account_id";

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    id: String,
    node_id: String,
    room_id: String,
    user_id: String,
    account_id: String,
}

impl TryFrom<ConnectionRow> for ConnectionRecord {
    type Error = StoreError;

    fn try_from(row: ConnectionRow) -> StoreResult<Self> {
        Ok(ConnectionRecord {
            id: parse(&row.id, "connection id")?,
            node_id: NodeId::new(row.node_id),
            scope: RoomScope {
                account_id: parse(&row.account_id, "account id")?,
                room_id: parse(&row.room_id, "room id")?,
            },
            user_id: parse(&row.user_id, "user id")?,
        })
    }
}

#[async_trait]
impl<DB> NodeStore for SqlStore<DB>
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
    async fn heartbeat_node(&self, node_id: &NodeId, now: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(node_id.as_str().to_owned())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_node(&self, node_id: &NodeId) -> StoreResult<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(node_id.as_str().to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn orphaned_connections(
        &self,
        live: &NodeId,
        stale_before: Timestamp,
    ) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c JOIN rooms r ON r.id = c.room_id \
             LEFT JOIN nodes n ON n.id = c.node_id \
             WHERE c.node_id <> $1 AND (n.id IS NULL OR n.heartbeat_at < $2)"
        );
        let rows: Vec<ConnectionRow> = sqlx::query_as(&sql)
            .bind(live.as_str().to_owned())
            .bind(stale_before.as_millis())
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter().map(ConnectionRecord::try_from).collect()
    }

    async fn node_connections(&self, node_id: &NodeId) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections c JOIN rooms r ON r.id = c.room_id \
             WHERE c.node_id = $1"
        );
        let rows: Vec<ConnectionRow> = sqlx::query_as(&sql)
            .bind(node_id.as_str().to_owned())
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter().map(ConnectionRecord::try_from).collect()
    }

    async fn live_nodes(&self, seen_after: Timestamp) -> StoreResult<Vec<NodeId>> {
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM nodes WHERE heartbeat_at >= $1 ORDER BY id")
                .bind(seen_after.as_millis())
                .fetch_all(&self.reads)
                .await?;
        Ok(ids.into_iter().map(|(id,)| NodeId::new(id)).collect())
    }

    async fn room_sockets_elsewhere(
        &self,
        room_id: RoomId,
        node: &NodeId,
    ) -> StoreResult<Vec<UserId>> {
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT user_id FROM connections WHERE room_id = $1 AND node_id <> $2")
                .bind(room_id.to_string())
                .bind(node.as_str().to_owned())
                .fetch_all(&self.reads)
                .await?;
        ids.iter().map(|(id,)| parse(id, "user id")).collect()
    }

    async fn remove_stale_nodes(&self, stale_before: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM nodes WHERE heartbeat_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.node_id = nodes.id)",
        )
        .bind(stale_before.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
