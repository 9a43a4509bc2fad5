//! This node's record in the database: its heartbeat, and the clean-up of sockets left behind
//! by nodes that died (including this one's previous run, after a crash).

use crate::domain::{NodeId, Timestamp};

use super::Engine;

/// The node's name: configured, else `<hostname>:<port>` (stable across restarts, so that a
/// restarted node cleans up after itself at once), else random (port 0: tests).
pub fn node_id(configured: &str, port: u16) -> NodeId {
    if !configured.is_empty() {
        return NodeId::new(configured);
    }
    if port != 0 {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(crate::config::hostname_from_env)
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "collabkit".to_owned());
        return NodeId::new(format!("{host}:{port}"));
    }
    NodeId::new(format!("node-{}", uuid::Uuid::new_v4().simple()))
}

/// Registers the node and cleans up what dead nodes left. On a database only one node can
/// use (SQLite), every other node's sockets are dead by definition.
pub async fn start(engine: &Engine) -> anyhow::Result<()> {
    let hub = engine.hub();
    let store = engine.store();
    let now = Timestamp::now();
    store.heartbeat_node(hub.node_id(), now).await?;
    let stale_before = if store.shared() {
        now.plus_millis(-(hub.config().node_timeout().as_millis() as i64))
    } else {
        now.plus_millis(1)
    };
    let reaped = engine.reap(stale_before).await?;
    if reaped > 0 {
        tracing::info!(reaped, "set users of dead connections offline");
    }
    look_for_other_nodes(engine).await;
    Ok(())
}

/// Counts the other nodes alive on the database (`/readyz` reports it). Without a relay,
/// presence, broadcasts and room events reach only the sockets of the node where they happen
/// while others share the database: that is logged as an error when it begins.
async fn look_for_other_nodes(engine: &Engine) {
    let hub = engine.hub();
    if !engine.store().shared() {
        return;
    }
    let timeout = hub.config().node_timeout().as_millis() as i64;
    let seen_after = Timestamp::now().plus_millis(-timeout);
    let others: Vec<NodeId> = match engine.store().live_nodes(seen_after).await {
        Ok(nodes) => nodes.into_iter().filter(|id| id != hub.node_id()).collect(),
        Err(error) => {
            tracing::warn!(%error, "listing the live nodes failed");
            return;
        }
    };
    let before = hub.set_other_nodes(others.len());
    if hub.relay().is_some() {
        if others.len() != before {
            tracing::info!(
                other_nodes = others.len(),
                "nodes sharing the database changed"
            );
        }
    } else if !others.is_empty() && before == 0 {
        let others: Vec<&str> = others.iter().map(NodeId::as_str).collect();
        tracing::error!(
            ?others,
            "other nodes share this database, and nothing relays room traffic between nodes \
             (redis.url is not set): presence, broadcasts and room events reach only the \
             sockets of the node where they happen (docs/operations.md, Several nodes)"
        );
    } else if others.is_empty() && before > 0 {
        tracing::info!("no other node shares this database any more");
    }
}

/// Until shutdown: every `node_heartbeat`, refresh this node's heartbeat (on a task of its
/// own, so that a long clean-up never makes this node look dead), clean up after dead nodes,
/// and forget store tombstones older than `tombstone_retention`.
pub async fn upkeep(engine: Engine, tombstone_retention: std::time::Duration) {
    let _beat = AbortOnDrop(tokio::spawn(heartbeat(engine.clone())));
    let hub = engine.hub();
    let config = hub.config().clone();
    let mut tick = tokio::time::interval(config.node_heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = hub.shutdown_token().cancelled() => break,
        }
        let now = Timestamp::now();
        let stale_before = now.plus_millis(-(config.node_timeout().as_millis() as i64));
        match engine.reap(stale_before).await {
            Ok(0) => {}
            Ok(reaped) => tracing::info!(reaped, "set users of dead connections offline"),
            Err(error) => tracing::warn!(%error, "cleaning up dead connections failed"),
        }
        look_for_other_nodes(&engine).await;
        let forget_before = now.plus_millis(-(tombstone_retention.as_millis() as i64));
        match engine.store().purge_tombstones(forget_before).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "forgot old store tombstones"),
            Err(error) => tracing::warn!(%error, "forgetting old store tombstones failed"),
        }
    }
}

/// Stops the heartbeat with the upkeep, however the upkeep ends (even aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn heartbeat(engine: Engine) {
    let hub = engine.hub();
    let mut tick = tokio::time::interval(hub.config().node_heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = engine
            .store()
            .heartbeat_node(hub.node_id(), Timestamp::now())
            .await
        {
            tracing::warn!(%error, "node heartbeat failed");
        }
    }
}

/// After shutdown: forget this node if it left nothing behind.
pub async fn stop(engine: &Engine) {
    let hub = engine.hub();
    let store = engine.store();
    match store.node_connections(hub.node_id()).await {
        Ok(rows) if rows.is_empty() => {
            if let Err(error) = store.remove_node(hub.node_id()).await {
                tracing::warn!(%error, "removing the node record failed");
            }
        }
        Ok(rows) => tracing::warn!(left = rows.len(), "stopping with sockets still recorded"),
        Err(error) => tracing::warn!(%error, "checking the node's sockets failed"),
    }
}
