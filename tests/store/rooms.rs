//! Rooms: scoped to their account, custom IDs unique per account, listed newest first.

use collabkit::domain::{RoomId, Timestamp};
use collabkit::store::{Entity, ListFilter, Page, RoomChanges, StoreError};

use crate::fixture::{contract, Backend, Fixture};

contract!(
    rooms_are_scoped_to_their_account,
    custom_ids_are_unique_per_account,
    room_lists_come_newest_first_and_page_without_gaps,
    room_search_is_case_insensitive_and_literal,
    deleting_a_room_deletes_what_it_holds,
);

async fn rooms_are_scoped_to_their_account(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    let room = f.room_with(a, "Mine", Some("mine"), Timestamp::now()).await;
    assert_eq!(room.name, "Mine");
    assert_eq!(room.active_participants, 0);
    assert_eq!(
        f.store.get_room(a, room.id).await.unwrap(),
        Some(room.clone())
    );
    assert_eq!(
        f.store.get_room_by_custom_id(a, "mine").await.unwrap(),
        Some(room.clone())
    );

    assert_eq!(f.store.get_room(b, room.id).await.unwrap(), None);
    assert_eq!(
        f.store.get_room_by_custom_id(b, "mine").await.unwrap(),
        None
    );
    let rename = RoomChanges {
        name: Some("Theirs".to_owned()),
        custom_id: None,
    };
    let updated = f.store.update_room(b, room.id, &rename).await;
    assert!(matches!(updated, Err(StoreError::NotFound(Entity::Room))));
    let deleted = f.store.delete_room(b, room.id).await;
    assert!(matches!(deleted, Err(StoreError::NotFound(Entity::Room))));
    let listed = f
        .store
        .list_rooms(b, &ListFilter::default(), page(10, 0))
        .await
        .unwrap();
    assert_eq!(listed.total, 0);
    assert_eq!(f.store.get_room(a, room.id).await.unwrap(), Some(room));
}

async fn custom_ids_are_unique_per_account(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    let first = f.room_with(a, "First", Some("x"), Timestamp::now()).await;
    let taken = f
        .store
        .create_room(&collabkit::store::NewRoom {
            id: RoomId::new(),
            account_id: a,
            name: "Second".to_owned(),
            custom_id: Some("x".to_owned()),
            created_at: Timestamp::now(),
        })
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(Entity::Room))));
    // Another account's custom IDs are its own.
    f.room_with(b, "Elsewhere", Some("x"), Timestamp::now())
        .await;

    let second = f.room_with(a, "Second", Some("y"), Timestamp::now()).await;
    let to_x = RoomChanges {
        name: None,
        custom_id: Some(Some("x".to_owned())),
    };
    let clash = f.store.update_room(a, second.id, &to_x).await;
    assert!(matches!(clash, Err(StoreError::Conflict(Entity::Room))));

    // Cleared, the custom ID is free again; the name stays as it was.
    let clear = RoomChanges {
        name: None,
        custom_id: Some(None),
    };
    let cleared = f.store.update_room(a, first.id, &clear).await.unwrap();
    assert_eq!(cleared.custom_id, None);
    assert_eq!(cleared.name, "First");
    let moved = f.store.update_room(a, second.id, &to_x).await.unwrap();
    assert_eq!(moved.custom_id.as_deref(), Some("x"));
}

async fn room_lists_come_newest_first_and_page_without_gaps(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let base = Timestamp::now().as_millis();
    let mut created = Vec::new();
    for i in 0..7 {
        // Two rooms share each time but the last: the ID breaks the tie.
        let at = Timestamp::from_millis(base + i / 2);
        created.push(f.room_with(account, &format!("room {i}"), None, at).await);
    }
    created.sort_by_key(|room| std::cmp::Reverse((room.created_at, room.id.to_string())));

    let mut seen = Vec::new();
    for offset in (0..7).step_by(3) {
        let listed = f
            .store
            .list_rooms(account, &ListFilter::default(), page(3, offset))
            .await
            .unwrap();
        assert_eq!(listed.total, 7);
        seen.extend(listed.items.into_iter().map(|room| room.id));
    }
    let expected: Vec<_> = created.iter().map(|room| room.id).collect();
    assert_eq!(seen, expected);
}

async fn room_search_is_case_insensitive_and_literal(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let base = Timestamp::now().as_millis();
    for (i, name) in ["Alpha Room", "alpha_beta", "alphaXbeta", "50% off", "Other"]
        .into_iter()
        .enumerate()
    {
        let at = Timestamp::from_millis(base + 1_000 * i as i64);
        f.room_with(account, name, None, at).await;
    }
    let names = |search: &str| {
        let filter = ListFilter {
            search: Some(search.to_owned()),
            ..ListFilter::default()
        };
        let store = f.store.clone();
        async move {
            let listed = store
                .list_rooms(account, &filter, page(10, 0))
                .await
                .unwrap();
            assert_eq!(listed.total, listed.items.len() as i64);
            let mut names: Vec<_> = listed.items.into_iter().map(|r| r.name).collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        names("ALPHA").await,
        ["Alpha Room", "alphaXbeta", "alpha_beta"]
    );
    // `_` and `%` match themselves, not any character.
    assert_eq!(names("a_b").await, ["alpha_beta"]);
    assert_eq!(names("0%").await, ["50% off"]);
    assert!(names("zzz").await.is_empty());

    // A window of creation times: from inclusive, before exclusive.
    let window = ListFilter {
        search: None,
        created_from: Some(Timestamp::from_millis(base + 1_000)),
        created_before: Some(Timestamp::from_millis(base + 3_000)),
    };
    let listed = f
        .store
        .list_rooms(account, &window, page(10, 0))
        .await
        .unwrap();
    let names: Vec<_> = listed.items.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["alphaXbeta", "alpha_beta"]);
}

async fn deleting_a_room_deletes_what_it_holds(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let user = f.user(scope, "Ada").await;
    f.store.delete_room(account, scope.room_id).await.unwrap();
    assert_eq!(
        f.store.get_room(account, scope.room_id).await.unwrap(),
        None
    );
    assert_eq!(f.store.get_user(scope, user.id).await.unwrap(), None);
    let again = f.store.delete_room(account, scope.room_id).await;
    assert!(matches!(again, Err(StoreError::NotFound(Entity::Room))));
}

fn page(limit: i64, offset: i64) -> Page {
    Page { limit, offset }
}
