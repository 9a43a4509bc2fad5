//! Migrations: nodes that start together on a fresh database apply each step once.

use crate::database::TestDatabase;
use crate::fixture::{contract, open, Backend, Fixture};

contract!(nodes_starting_together_migrate_once);

async fn nodes_starting_together_migrate_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for node in nodes {
        stores.push(node.await.expect("every node starts"));
    }
    for store in &stores {
        store.ping().await.unwrap();
    }
    let f = Fixture::on(db).await;
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let steps = std::fs::read_dir(folder).unwrap().count() as i64;
    let applied = f.count("SELECT COUNT(*) FROM collabkit_migrations").await;
    assert_eq!(applied, steps);
    let versions = f
        .count("SELECT COUNT(DISTINCT version) FROM collabkit_migrations")
        .await;
    assert_eq!(versions, steps);
    // Every node sees the same schema: what one writes, another reads.
    let account = f.account().await;
    assert!(stores[0].get_account(account).await.unwrap().is_some());
}
