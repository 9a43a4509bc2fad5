//! Nodes: their heartbeats, and the sockets left behind by nodes that stopped beating.

use std::collections::BTreeSet;

use collabkit::domain::{ConnectionId, NodeId, Timestamp};
use collabkit::store::{ConnectionRecord, NewConnection, RoomScope};

use crate::fixture::{contract, Backend, Fixture};

contract!(
    sockets_of_silent_nodes_are_orphaned,
    stale_nodes_are_forgotten_once_empty,
    live_nodes_are_those_seen_since,
);

async fn live_nodes_are_those_seen_since(backend: Backend) {
    let f = Fixture::new(backend).await;
    let now = Timestamp::now();
    for (name, seen) in [("b-recent", 0), ("a-recent", -500), ("old", -60_000)] {
        f.store
            .heartbeat_node(&NodeId::new(name), now.plus_millis(seen))
            .await
            .unwrap();
    }
    let live = f.store.live_nodes(now.plus_millis(-1_000)).await.unwrap();
    let names: Vec<&str> = live.iter().map(NodeId::as_str).collect();
    assert_eq!(names, ["a-recent", "b-recent"]);
    f.store.remove_node(&NodeId::new("a-recent")).await.unwrap();
    let live = f.store.live_nodes(now.plus_millis(-1_000)).await.unwrap();
    assert_eq!(live, [NodeId::new("b-recent")]);
}

async fn join(f: &Fixture, scope: RoomScope, node: &NodeId) -> ConnectionRecord {
    let user = f.user(scope, "Someone").await;
    let record = ConnectionRecord {
        id: ConnectionId::new(),
        node_id: node.clone(),
        scope,
        user_id: user.id,
    };
    f.store
        .join_room(&NewConnection {
            id: record.id,
            node_id: node.clone(),
            scope,
            user_id: user.id,
            opened_at: Timestamp::now(),
        })
        .await
        .unwrap();
    record
}

fn ids(records: &[ConnectionRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.to_string()).collect()
}

async fn sockets_of_silent_nodes_are_orphaned(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let now = Timestamp::now();
    let stale_before = Timestamp::from_millis(now.as_millis() - 60_000);
    let (live, silent, unknown) = (
        NodeId::new("live"),
        NodeId::new("silent"),
        NodeId::new("unknown"),
    );
    f.store.heartbeat_node(&live, now).await.unwrap();
    f.store
        .heartbeat_node(&silent, Timestamp::from_millis(1_000))
        .await
        .unwrap();
    let on_live = join(&f, scope, &live).await;
    let on_silent = join(&f, scope, &silent).await;
    let on_unknown = join(&f, scope, &unknown).await;

    let orphaned = f
        .store
        .orphaned_connections(&live, stale_before)
        .await
        .unwrap();
    assert_eq!(
        ids(&orphaned),
        ids(&[on_silent.clone(), on_unknown.clone()])
    );
    assert!(orphaned.contains(&on_silent));
    assert_eq!(
        f.store.node_connections(&live).await.unwrap(),
        std::slice::from_ref(&on_live)
    );

    // A heartbeat brings a node back; a node removed on shutdown leaves its sockets behind.
    f.store.heartbeat_node(&silent, now).await.unwrap();
    let orphaned = f
        .store
        .orphaned_connections(&live, stale_before)
        .await
        .unwrap();
    assert_eq!(ids(&orphaned), ids(std::slice::from_ref(&on_unknown)));
    f.store.remove_node(&silent).await.unwrap();
    let orphaned = f
        .store
        .orphaned_connections(&live, stale_before)
        .await
        .unwrap();
    assert_eq!(ids(&orphaned), ids(&[on_silent, on_unknown]));
    // Seen from another node, the live node's sockets are orphans only once it is silent.
    let from_silent = f
        .store
        .orphaned_connections(&silent, stale_before)
        .await
        .unwrap();
    assert!(!ids(&from_silent).contains(&on_live.id.to_string()));
}

async fn stale_nodes_are_forgotten_once_empty(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let now = Timestamp::now();
    let old = Timestamp::from_millis(1_000);
    let (busy, idle, fresh) = (
        NodeId::new("busy"),
        NodeId::new("idle"),
        NodeId::new("fresh"),
    );
    for node in [&busy, &idle] {
        f.store.heartbeat_node(node, old).await.unwrap();
    }
    f.store.heartbeat_node(&fresh, now).await.unwrap();
    let socket = join(&f, scope, &busy).await;

    f.store
        .remove_stale_nodes(Timestamp::from_millis(2_000))
        .await
        .unwrap();
    let nodes = "SELECT COUNT(*) FROM nodes";
    assert_eq!(
        f.count(nodes).await,
        2,
        "busy (it holds a socket) and fresh stay"
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM nodes WHERE id = 'idle'")
            .await,
        0
    );

    f.store.leave_room(&socket, now).await.unwrap();
    f.store
        .remove_stale_nodes(Timestamp::from_millis(2_000))
        .await
        .unwrap();
    assert_eq!(f.count(nodes).await, 1);
}
