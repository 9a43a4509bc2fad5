//! Files' metadata: an upload is pending (invisible) until finished, the account's quota holds
//! under concurrent finishes, lists are scoped and filtered, deletes record their event,
//! a room's rows go with it while a user's files outlive the user, and abandoned uploads are
//! found for sweeping.

use collabkit::domain::file::MimeFilter;
use collabkit::domain::{EventKind, FileKey, NodeId, Timestamp, UserId};
use collabkit::store::files::{FileFilter, FinishedUpload, NewUpload};
use collabkit::store::{DynStore, Entity, RoomScope, StoreError};

use crate::fixture::{contract, seen_by, Backend, Fixture};

contract!(
    uploads_are_invisible_until_finished,
    quota_holds_under_concurrent_finishes,
    lists_are_scoped_and_filtered,
    deletes_record_their_event_and_users_files_outlive_them,
    abandoned_uploads_are_found,
);

const BASE: &str = "http://files.test";

fn new_upload(scope: RoomScope, user: UserId, filename: &str, node: &str) -> NewUpload {
    NewUpload {
        key: FileKey::generate(scope.room_id, filename).unwrap(),
        scope,
        uploaded_by: user,
        filename: filename.to_owned(),
        started_at: Timestamp::now(),
        node_id: NodeId::new(node),
    }
}

/// Begins and finishes an upload of `size` bytes of type `mime`.
async fn stored(
    store: &DynStore,
    scope: RoomScope,
    user: UserId,
    filename: &str,
    mime: &str,
    size: i64,
) -> FileKey {
    let upload = new_upload(scope, user, filename, "node-a");
    store.begin_upload(&upload).await.unwrap();
    store
        .finish_upload(&finished(scope, &upload.key, mime, size, i64::MAX))
        .await
        .unwrap();
    upload.key
}

fn finished<'a>(
    scope: RoomScope,
    key: &'a FileKey,
    mime: &str,
    size: i64,
    quota: i64,
) -> FinishedUpload<'a> {
    FinishedUpload {
        account_id: scope.account_id,
        key,
        mime_type: mime.to_owned(),
        size,
        max_account_bytes: quota,
        base_url: BASE,
    }
}

async fn uploads_are_invisible_until_finished(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let user = f.user(scope, "Ada").await;

    // The uploader must be a user of the room.
    let other_room = f.room(account).await;
    let stranger = f.user(other_room, "Eve").await;
    let refused = f
        .store
        .begin_upload(&new_upload(scope, stranger.id, "a.png", "node-a"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(Entity::User))),
        "{refused:?}"
    );
    let other = f.account().await;
    let refused = f
        .store
        .begin_upload(&new_upload(
            seen_by(scope, other),
            user.id,
            "a.png",
            "node-a",
        ))
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(Entity::Room))),
        "{refused:?}"
    );

    let upload = new_upload(scope, user.id, "photo.png", "node-a");
    f.store.begin_upload(&upload).await.unwrap();
    assert_eq!(f.store.get_file(account, &upload.key).await.unwrap(), None);
    let all = FileFilter::default();
    assert!(f.store.list_files(scope, &all).await.unwrap().is_empty());
    assert_eq!(f.store.account_file_bytes(account).await.unwrap(), 0);
    // Known to the sweep all the same: its object is not an orphan.
    let known = f
        .store
        .known_file_keys(std::slice::from_ref(&upload.key))
        .await
        .unwrap();
    assert_eq!(known, std::slice::from_ref(&upload.key));

    let (file, events) = f
        .store
        .finish_upload(&finished(scope, &upload.key, "image/png", 1234, i64::MAX))
        .await
        .unwrap();
    assert_eq!(file.filename, "photo.png");
    assert_eq!(file.size, 1234);
    assert_eq!(file.uploaded_by, user.id);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::FileUploaded);
    let payload = events[0].payload();
    assert_eq!(payload.file.as_ref().unwrap()["key"], upload.key.as_str());
    assert_eq!(payload.user.as_ref().unwrap()["id"], user.id.to_string());
    assert_eq!(
        f.store.get_file(account, &upload.key).await.unwrap(),
        Some(file.clone())
    );
    // Another account never sees it.
    assert_eq!(f.store.get_file(other, &upload.key).await.unwrap(), None);
    assert_eq!(f.store.account_file_bytes(account).await.unwrap(), 1234);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM events WHERE kind = 'file.uploaded'")
            .await,
        1
    );

    // A key is never reused.
    let again = NewUpload {
        key: upload.key.clone(),
        ..new_upload(scope, user.id, "photo.png", "node-a")
    };
    assert!(matches!(
        f.store.begin_upload(&again).await,
        Err(StoreError::Conflict(Entity::File))
    ));

    // Forgetting an upload forgets a pending one only.
    let pending = new_upload(scope, user.id, "b.png", "node-a");
    f.store.begin_upload(&pending).await.unwrap();
    f.store.forget_upload(account, &pending.key).await.unwrap();
    f.store.forget_upload(account, &upload.key).await.unwrap();
    assert!(f
        .store
        .known_file_keys(&[pending.key])
        .await
        .unwrap()
        .is_empty());
    assert!(f
        .store
        .get_file(account, &upload.key)
        .await
        .unwrap()
        .is_some());
}

async fn quota_holds_under_concurrent_finishes(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let user = f.user(scope, "Ada").await;
    // Ten uploads of 100 bytes racing for a quota of 450: four fit, whatever the order.
    let mut uploads = Vec::new();
    for i in 0..10 {
        let upload = new_upload(scope, user.id, &format!("f{i}.bin"), "node-a");
        f.store.begin_upload(&upload).await.unwrap();
        uploads.push(upload);
    }
    let second = f.second_node().await;
    let tasks: Vec<_> = uploads
        .iter()
        .enumerate()
        .map(|(i, upload)| {
            let store = if i % 2 == 0 {
                f.store.clone()
            } else {
                second.clone()
            };
            let key = upload.key.clone();
            tokio::spawn(async move {
                store
                    .finish_upload(&finished(scope, &key, "application/octet-stream", 100, 450))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Quota { limit }) => assert_eq!(limit, 450),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 4);
    assert_eq!(f.store.account_file_bytes(account).await.unwrap(), 400);
}

async fn lists_are_scoped_and_filtered(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let ada = f.user(scope, "Ada").await;
    let bob = f.user(scope, "Bob").await;
    let png = stored(&f.store, scope, ada.id, "a.png", "image/png", 1).await;
    let jpg = stored(&f.store, scope, bob.id, "b.jpg", "image/jpeg", 2).await;
    let pdf = stored(&f.store, scope, ada.id, "c.pdf", "application/pdf", 3).await;
    // A category with a LIKE wildcard in it matches only itself.
    let odd = stored(&f.store, scope, ada.id, "d.bin", "x_y/z", 4).await;
    let elsewhere = f.room(account).await;
    let carl = f.user(elsewhere, "Carl").await;
    stored(&f.store, elsewhere, carl.id, "e.png", "image/png", 5).await;

    let keys = |files: Vec<collabkit::domain::StoredFile>| {
        let mut keys: Vec<FileKey> = files.into_iter().map(|f| f.key).collect();
        keys.sort();
        keys
    };
    let sorted = |mut k: Vec<FileKey>| {
        k.sort();
        k
    };
    let list = |filter: FileFilter| {
        let store = f.store.clone();
        async move { store.list_files(scope, &filter).await.unwrap() }
    };
    assert_eq!(
        keys(list(FileFilter::default()).await),
        sorted(vec![png.clone(), jpg.clone(), pdf.clone(), odd.clone()])
    );
    let images = FileFilter {
        mime_types: vec![MimeFilter::parse("image/")],
        uploaded_by: None,
    };
    assert_eq!(
        keys(list(images).await),
        sorted(vec![png.clone(), jpg.clone()])
    );
    let png_or_pdf = FileFilter {
        mime_types: vec![
            MimeFilter::parse("image/png"),
            MimeFilter::parse("application/pdf"),
        ],
        uploaded_by: None,
    };
    assert_eq!(
        keys(list(png_or_pdf).await),
        sorted(vec![png.clone(), pdf.clone()])
    );
    let adas_images = FileFilter {
        mime_types: vec![MimeFilter::parse("image/")],
        uploaded_by: Some(ada.id),
    };
    assert_eq!(keys(list(adas_images).await), vec![png.clone()]);
    let wildcard = FileFilter {
        mime_types: vec![MimeFilter::parse("x_y/")],
        uploaded_by: None,
    };
    assert_eq!(keys(list(wildcard).await), vec![odd.clone()]);
    let not_wild = FileFilter {
        mime_types: vec![MimeFilter::parse("x%/")],
        uploaded_by: None,
    };
    assert!(list(not_wild).await.is_empty());
    // Another account's view of the room is empty.
    let other = f.account().await;
    let seen = f
        .store
        .list_files(seen_by(scope, other), &FileFilter::default())
        .await
        .unwrap();
    assert!(seen.is_empty());
}

async fn deletes_record_their_event_and_users_files_outlive_them(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let ada = f.user(scope, "Ada").await;
    let kept = stored(&f.store, scope, ada.id, "kept.png", "image/png", 10).await;
    let gone = stored(&f.store, scope, ada.id, "gone.png", "image/png", 20).await;

    // Not in another room, not of another account.
    let elsewhere = f.room(account).await;
    let other = f.account().await;
    for (account_id, room) in [(account, Some(elsewhere.room_id)), (other, None)] {
        let refused = f.store.delete_file(account_id, room, &gone, BASE).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(Entity::File))),
            "{refused:?}"
        );
    }
    let (file, events) = f
        .store
        .delete_file(account, Some(scope.room_id), &gone, BASE)
        .await
        .unwrap();
    assert_eq!(file.key, gone);
    assert_eq!(events[0].kind, EventKind::FileDeleted);
    assert_eq!(events[0].payload().file.unwrap()["size"], 20);
    assert!(matches!(
        f.store.delete_file(account, None, &gone, BASE).await,
        Err(StoreError::NotFound(Entity::File))
    ));

    // The uploader deleted: the file stays, uploaded by them.
    f.store.delete_user(scope, ada.id).await.unwrap();
    let file = f.store.get_file(account, &kept).await.unwrap().unwrap();
    assert_eq!(file.uploaded_by, ada.id);

    // The room deleted: its rows go, pending ones too (their keys were read first).
    let bob = f.user(scope, "Bob").await;
    let pending = new_upload(scope, bob.id, "p.bin", "node-a");
    f.store.begin_upload(&pending).await.unwrap();
    let mut keys = f.store.room_file_keys(scope).await.unwrap();
    keys.sort();
    let mut expected = vec![kept.clone(), pending.key.clone()];
    expected.sort();
    assert_eq!(keys, expected);
    f.store.delete_room(account, scope.room_id).await.unwrap();
    assert_eq!(f.store.get_file(account, &kept).await.unwrap(), None);
    assert!(f.store.known_file_keys(&expected).await.unwrap().is_empty());
    // An upload whose room went cannot finish.
    let finishing = f
        .store
        .finish_upload(&finished(scope, &pending.key, "image/png", 1, i64::MAX))
        .await;
    assert!(
        matches!(finishing, Err(StoreError::NotFound(Entity::Room))),
        "{finishing:?}"
    );
}

async fn abandoned_uploads_are_found(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let ada = f.user(scope, "Ada").await;
    let now = Timestamp::now();
    f.store
        .heartbeat_node(&NodeId::new("alive"), now)
        .await
        .unwrap();
    f.store
        .heartbeat_node(&NodeId::new("dead"), now.plus_millis(-60_000))
        .await
        .unwrap();
    let mut by_node = Vec::new();
    for node in ["me", "alive", "dead", "never-registered"] {
        let upload = new_upload(scope, ada.id, "x.bin", node);
        f.store.begin_upload(&upload).await.unwrap();
        by_node.push((node, upload.key));
    }
    // A finished file is never abandoned, whoever wrote it.
    stored(&f.store, scope, ada.id, "done.bin", "text/plain", 1).await;

    let mut found: Vec<FileKey> = f
        .store
        .abandoned_uploads(&NodeId::new("me"), now.plus_millis(-30_000))
        .await
        .unwrap()
        .into_iter()
        .map(|(account_id, key)| {
            assert_eq!(account_id, account);
            key
        })
        .collect();
    found.sort();
    let mut expected: Vec<FileKey> = by_node
        .iter()
        .filter(|(node, _)| *node != "alive")
        .map(|(_, key)| key.clone())
        .collect();
    expected.sort();
    assert_eq!(found, expected);
}
