//! Stores: schemas per account, entries per room, every write a new room version, catch-up
//! from a version (with tombstones, or a reset once they are forgotten), byte-bounded pages.

use collabkit::domain::schema::{StoreName, StoreSchema};
use collabkit::domain::Timestamp;
use collabkit::store::entries::{
    EntryAction, EntryLimits, EntryPage, EntryWrite, SchemaWrite, SyncFrom,
};
use collabkit::store::{Entity, Page, PageSize, RoomScope, StoreError};
use serde_json::{json, Value};

use crate::fixture::{contract, seen_by, Backend, Fixture};

contract!(
    schemas_register_and_evolve_by_the_rules,
    schemas_are_scoped_and_limited,
    writes_take_consecutive_room_versions,
    writes_are_checked_against_the_schema_and_limits,
    entries_are_scoped_to_their_room,
    entry_pages_end_by_bytes_and_skip_nothing,
    catch_up_sends_tombstones_until_they_are_forgotten,
    change_pages_end_by_bytes_and_skip_nothing,
    concurrent_writers_cannot_exceed_the_entry_limit,
);

const LIMITS: EntryLimits = EntryLimits {
    max_entries: 1_000,
    max_entry_bytes: 64 * 1024,
};

fn name(text: &str) -> StoreName {
    StoreName::parse("store", text).unwrap()
}

fn schema(fields: Value) -> StoreSchema {
    StoreSchema::parse("schema", &fields, 64).unwrap()
}

fn tasks() -> StoreSchema {
    schema(json!({
        "title": { "type": "string", "required": true },
        "done": { "type": "boolean", "default": false },
    }))
}

/// A room whose account has the `tasks` store.
async fn tasks_room(f: &Fixture) -> RoomScope {
    let scope = f.room(f.account().await).await;
    f.store
        .save_schema(
            scope.account_id,
            &name("tasks"),
            &tasks(),
            SchemaWrite::Declare,
            10,
        )
        .await
        .unwrap();
    scope
}

async fn set(f: &Fixture, scope: RoomScope, key: &str, value: Value) -> i64 {
    f.store
        .write_entry(
            scope,
            &name("tasks"),
            key,
            &EntryWrite::Set(value),
            LIMITS,
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .version
}

async fn schemas_register_and_evolve_by_the_rules(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let account = scope.account_id;
    let save = |fields: Value, mode| {
        let store = f.store.clone();
        async move {
            store
                .save_schema(account, &name("tasks"), &schema(fields), mode, 10)
                .await
        }
    };
    let first = json!({ "title": { "type": "string", "required": true } });
    assert!(
        save(first.clone(), SchemaWrite::Declare)
            .await
            .unwrap()
            .created
    );
    // The same again changes nothing.
    let same = save(first.clone(), SchemaWrite::Declare).await.unwrap();
    assert!(!same.created);
    // A client cannot change a schema; the backend can, freely while no entry exists.
    let wider = json!({ "title": { "type": "number" } });
    match save(wider.clone(), SchemaWrite::Declare).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "schema"),
        other => panic!("a client changed a schema: {other:?}"),
    }
    let changed = save(wider, SchemaWrite::Register).await.unwrap();
    assert!(!changed.created);
    assert_eq!(changed.record.created_at, same.record.created_at);

    // With entries, only compatible changes.
    save(first.clone(), SchemaWrite::Register).await.unwrap();
    f.store
        .write_entry(
            scope,
            &name("tasks"),
            "a",
            &EntryWrite::Set(json!({ "title": "A" })),
            LIMITS,
            None,
        )
        .await
        .unwrap();
    let retyped = json!({ "title": { "type": "number", "required": true } });
    match save(retyped, SchemaWrite::Register).await {
        Err(StoreError::Invalid { field, message }) => {
            assert_eq!(field, "schema.title");
            assert!(message.contains("entries exist"), "{message}");
        }
        other => panic!("an incompatible change with entries: {other:?}"),
    }
    let compatible = json!({
        "title": { "type": "string", "required": true },
        "note": { "type": "string" },
    });
    save(compatible, SchemaWrite::Register).await.unwrap();
    let stored = f
        .store
        .get_schema(account, &name("tasks"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.schema.to_json()["note"]["type"], "string");
}

async fn schemas_are_scoped_and_limited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    for store in ["one", "two"] {
        f.store
            .save_schema(a, &name(store), &tasks(), SchemaWrite::Declare, 2)
            .await
            .unwrap();
    }
    match f
        .store
        .save_schema(a, &name("three"), &tasks(), SchemaWrite::Declare, 2)
        .await
    {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "store"),
        other => panic!("a third store under a limit of two: {other:?}"),
    }
    // Saving one that exists is no new store.
    f.store
        .save_schema(a, &name("two"), &tasks(), SchemaWrite::Declare, 2)
        .await
        .unwrap();
    let names: Vec<_> = f
        .store
        .list_schemas(a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["one", "two"]);
    assert!(f.store.list_schemas(b).await.unwrap().is_empty());
    assert!(f.store.get_schema(b, &name("one")).await.unwrap().is_none());
    let unknown = collabkit::domain::AccountId::new();
    let missing = f
        .store
        .save_schema(unknown, &name("one"), &tasks(), SchemaWrite::Declare, 2)
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::NotFound(Entity::Account))
    ));
}

async fn writes_take_consecutive_room_versions(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = tasks_room(&f).await;
    assert_eq!(set(&f, scope, "a", json!({ "title": "A" })).await, 1);
    assert_eq!(set(&f, scope, "b", json!({ "title": "B" })).await, 2);

    let tasks = name("tasks");
    let write = |key: &'static str, write: EntryWrite| {
        let (store, tasks) = (f.store.clone(), tasks.clone());
        async move {
            store
                .write_entry(scope, &tasks, key, &write, LIMITS, None)
                .await
        }
    };
    let updated = write("a", EntryWrite::Update(json!({ "done": true })))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.version, 3);
    assert_eq!(updated.action, EntryAction::Update);
    assert_eq!(updated.value.unwrap()["title"], "A");
    // Deleting what is not there changes nothing and takes no version.
    assert!(write("zzz", EntryWrite::Delete).await.unwrap().is_none());
    let deleted = write("b", EntryWrite::Delete).await.unwrap().unwrap();
    assert_eq!((deleted.version, deleted.action), (4, EntryAction::Delete));
    assert_eq!(deleted.value, None);

    let (counts, version) = f.store.count_entries(scope).await.unwrap();
    assert_eq!(version, 4);
    assert_eq!(counts, [(tasks.clone(), 1)]);
    let entry = f
        .store
        .get_entry(scope, &tasks, "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.version, 3);
    assert_eq!(entry.value["done"], true);
    assert!(f
        .store
        .get_entry(scope, &tasks, "b")
        .await
        .unwrap()
        .is_none());
}

async fn writes_are_checked_against_the_schema_and_limits(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = tasks_room(&f).await;
    let tasks = name("tasks");
    let limits = EntryLimits {
        max_entries: 2,
        max_entry_bytes: 100,
    };
    let write = |store_name: StoreName, key: &'static str, write: EntryWrite| {
        let store = f.store.clone();
        async move {
            store
                .write_entry(scope, &store_name, key, &write, limits, None)
                .await
        }
    };
    let set = |key, value| write(tasks.clone(), key, EntryWrite::Set(value));

    let unknown = write(name("notes"), "a", EntryWrite::Set(json!({}))).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(Entity::Store))));
    let update = write(
        tasks.clone(),
        "a",
        EntryWrite::Update(json!({ "done": true })),
    )
    .await;
    assert!(matches!(update, Err(StoreError::NotFound(Entity::Entry))));
    match set("a", json!({ "done": true })).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "value.title"),
        other => panic!("a value without its required field: {other:?}"),
    }
    let large = set("a", json!({ "title": "x".repeat(200) })).await;
    assert!(matches!(large, Err(StoreError::TooLarge { limit: 100 })));

    set("a", json!({ "title": "A" })).await.unwrap();
    set("b", json!({ "title": "B" })).await.unwrap();
    match set("c", json!({ "title": "C" })).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "key"),
        other => panic!("a third entry under a limit of two: {other:?}"),
    }
    // Replacing an entry is no new entry; a deleted one frees its place.
    set("b", json!({ "title": "B2" })).await.unwrap();
    write(tasks.clone(), "a", EntryWrite::Delete).await.unwrap();
    set("c", json!({ "title": "C" })).await.unwrap();
    // Refused writes took no version: five writes succeeded.
    assert_eq!(f.store.count_entries(scope).await.unwrap().1, 5);
}

async fn entries_are_scoped_to_their_room(backend: Backend) {
    let f = Fixture::new(backend).await;
    let here = tasks_room(&f).await;
    let there = f.room(here.account_id).await;
    set(&f, here, "a", json!({ "title": "A" })).await;
    let tasks = name("tasks");
    let foreign = seen_by(here, f.account().await);

    assert!(f
        .store
        .get_entry(there, &tasks, "a")
        .await
        .unwrap()
        .is_none());
    assert!(f
        .store
        .get_entry(foreign, &tasks, "a")
        .await
        .unwrap()
        .is_none());
    let listed = f
        .store
        .list_entries(
            there,
            &tasks,
            EntryPage::Offset(Page {
                limit: 10,
                offset: 0,
            }),
            i64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 0);
    let write = EntryWrite::Set(json!({ "title": "X" }));
    let refused = f
        .store
        .write_entry(foreign, &tasks, "a", &write, LIMITS, None)
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound(Entity::Room))));
    let size = PageSize {
        items: 10,
        bytes: i64::MAX,
    };
    let changes = f
        .store
        .changes_since(foreign, None, SyncFrom::Since(0), size)
        .await;
    assert!(matches!(changes, Err(StoreError::NotFound(Entity::Room))));
    let counted = f.store.count_entries(foreign).await;
    assert!(matches!(counted, Err(StoreError::NotFound(Entity::Room))));
    // The other room of the same account has the store, and its own versions.
    let version = f
        .store
        .write_entry(there, &tasks, "a", &write, LIMITS, None)
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(version, 1);
}

async fn entry_pages_end_by_bytes_and_skip_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = tasks_room(&f).await;
    let tasks = name("tasks");
    let mut keys = Vec::new();
    for i in 0..9 {
        let key = format!("key-{i}");
        set(
            &f,
            scope,
            &key,
            json!({ "title": "t".repeat(50 + 100 * i) }),
        )
        .await;
        keys.push(key);
    }
    for bytes in [1, 500, 1_200, i64::MAX] {
        // After a key: the socket's paging.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = EntryPage::AfterKey {
                after: after.clone(),
                limit: 4,
            };
            let listed = f
                .store
                .list_entries(scope, &tasks, page, bytes)
                .await
                .unwrap();
            assert_eq!((listed.total, listed.version), (9, 9));
            check_entry_page(&listed.entries, bytes);
            after = listed.entries.last().map(|e| e.key.clone());
            seen.extend(listed.entries.into_iter().map(|e| e.key));
            if !listed.has_more {
                break;
            }
        }
        assert_eq!(seen, keys, "pages of at most {bytes} bytes, after a key");

        // From an offset: REST's paging.
        let mut seen = Vec::new();
        loop {
            let page = EntryPage::Offset(Page {
                limit: 4,
                offset: seen.len() as i64,
            });
            let listed = f
                .store
                .list_entries(scope, &tasks, page, bytes)
                .await
                .unwrap();
            check_entry_page(&listed.entries, bytes);
            seen.extend(listed.entries.into_iter().map(|e| e.key));
            if !listed.has_more {
                break;
            }
        }
        assert_eq!(seen, keys, "pages of at most {bytes} bytes, from an offset");
    }
}

/// A page holds its first entry always, then only what fits (see `ENTRY_BYTES`).
fn check_entry_page(entries: &[collabkit::store::entries::Entry], bytes: i64) {
    assert!(!entries.is_empty(), "the first entry always comes");
    assert!(entries.len() <= 4);
    let weight: i64 = entries
        .iter()
        .map(|e| (e.key.len() + Value::Object(e.value.clone()).to_string().len()) as i64 + 96)
        .sum();
    assert!(entries.len() == 1 || weight <= bytes, "{weight} > {bytes}");
}

async fn catch_up_sends_tombstones_until_they_are_forgotten(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = tasks_room(&f).await;
    let tasks = name("tasks");
    for key in ["a", "b", "c"] {
        set(&f, scope, key, json!({ "title": key })).await;
    }
    f.store
        .write_entry(scope, &tasks, "b", &EntryWrite::Delete, LIMITS, None)
        .await
        .unwrap();
    let size = PageSize {
        items: 100,
        bytes: i64::MAX,
    };
    let since = |from| {
        let store = f.store.clone();
        async move { store.changes_since(scope, None, from, size).await.unwrap() }
    };

    // From version 1: what came after, the deletion as a tombstone.
    let caught = since(SyncFrom::Since(1)).await;
    assert!(!caught.reset && !caught.has_more);
    assert_eq!(caught.version, 4);
    let seen: Vec<_> = caught
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.action, c.version))
        .collect();
    assert_eq!(
        seen,
        [("c", EntryAction::Set, 3), ("b", EntryAction::Delete, 4)]
    );
    // From nothing, or from the future: a reset with the live entries only.
    for from in [0, 99] {
        let reset = since(SyncFrom::Since(from)).await;
        assert!(reset.reset);
        let keys: Vec<_> = reset.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
    }
    // Up to date: nothing.
    assert!(since(SyncFrom::Since(4)).await.changes.is_empty());

    // Tombstones forgotten: a client from before them must start over.
    let future = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000);
    assert_eq!(f.store.purge_tombstones(future).await.unwrap(), 1);
    let behind = since(SyncFrom::Since(1)).await;
    assert!(behind.reset);
    let keys: Vec<_> = behind.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["a", "c"]);
    assert!(!since(SyncFrom::Since(4)).await.reset);
}

async fn change_pages_end_by_bytes_and_skip_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = tasks_room(&f).await;
    let tasks = name("tasks");
    for i in 0..8 {
        set(
            &f,
            scope,
            &format!("k{i}"),
            json!({ "title": "t".repeat(40 + 90 * i) }),
        )
        .await;
    }
    for key in ["k2", "k5"] {
        f.store
            .write_entry(scope, &tasks, key, &EntryWrite::Delete, LIMITS, None)
            .await
            .unwrap();
    }
    for bytes in [1, 400, 900, i64::MAX] {
        let size = PageSize { items: 3, bytes };
        // Catching up from version 1: every change after it, tombstones included.
        let mut versions = Vec::new();
        let mut from = SyncFrom::Since(1);
        loop {
            let page = f
                .store
                .changes_since(scope, Some(&tasks), from, size)
                .await
                .unwrap();
            assert!(!page.reset);
            check_change_page(&page.changes, bytes);
            let last = page.changes.last().unwrap().version;
            versions.extend(page.changes.iter().map(|c| c.version));
            if !page.has_more {
                break;
            }
            from = SyncFrom::Since(last);
        }
        // Each key's last change: versions 3 and 6 were overwritten by their tombstones.
        assert_eq!(versions, [2, 4, 5, 7, 8, 9, 10], "{bytes} bytes");

        // A reset, page after page: the live entries only.
        let mut keys = Vec::new();
        let mut from = SyncFrom::Since(0);
        loop {
            let page = f
                .store
                .changes_since(scope, Some(&tasks), from, size)
                .await
                .unwrap();
            assert!(page.reset);
            check_change_page(&page.changes, bytes);
            keys.extend(page.changes.iter().map(|c| c.key.clone()));
            if !page.has_more {
                break;
            }
            from = SyncFrom::ResetAfter(page.changes.last().unwrap().version);
        }
        assert_eq!(keys, ["k0", "k1", "k3", "k4", "k6", "k7"], "{bytes} bytes");
    }
}

/// A page holds its first change always, then only what fits (see `CHANGE_BYTES`).
fn check_change_page(changes: &[collabkit::store::entries::EntryChange], bytes: i64) {
    assert!(!changes.is_empty(), "the first change always comes");
    assert!(changes.len() <= 3);
    let weight: i64 = changes
        .iter()
        .map(|c| {
            let value = c
                .value
                .as_ref()
                .map_or(0, |v| Value::Object(v.clone()).to_string().len());
            (c.key.len() + value) as i64 + 64
        })
        .sum();
    assert!(changes.len() == 1 || weight <= bytes, "{weight} > {bytes}");
}

async fn concurrent_writers_cannot_exceed_the_entry_limit(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = tasks_room(&f).await;
    let limits = EntryLimits {
        max_entries: 5,
        max_entry_bytes: 1024,
    };
    let writers: Vec<_> = (0..12)
        .map(|i| {
            let store = f.store.clone();
            tokio::spawn(async move {
                let write = EntryWrite::Set(json!({ "title": format!("{i}") }));
                let key = format!("key-{i}");
                store
                    .write_entry(scope, &name("tasks"), &key, &write, limits, None)
                    .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for writer in writers {
        match writer.await.unwrap() {
            Ok(change) => versions.push(change.unwrap().version),
            Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "key"),
            Err(e) => panic!("{e}"),
        }
    }
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4, 5], "one version each, in one order");
    let (counts, version) = f.store.count_entries(scope).await.unwrap();
    assert_eq!(counts[0].1, 5);
    assert_eq!(version, 5);
}
