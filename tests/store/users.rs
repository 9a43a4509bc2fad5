//! Users: one room's each, counted and announced, listed newest first or in byte-bounded
//! pages oldest first.

use collabkit::domain::{ConnectionId, EventKind, NodeId, Timestamp, UserId};
use collabkit::store::{
    ConnectionRecord, Entity, ListFilter, NewConnection, Page, PageSize, StoreError, UserChanges,
    UserCursor,
};

use crate::fixture::{contract, new_user, seen_by, Backend, Fixture};

contract!(
    users_are_counted_and_announced,
    users_are_scoped_to_their_room,
    handshakes_read_many_users_at_once,
    user_custom_ids_are_unique_per_room,
    updates_change_only_what_they_name,
    user_lists_search_names_and_ids,
    room_user_pages_end_by_bytes_and_skip_nothing,
    sessions_come_newest_first,
    deleting_an_online_user_closes_the_session,
);

async fn users_are_counted_and_announced(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let (user, events) = f.store.create_user(&new_user(scope, "Ada")).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::UserCreated);
    assert_eq!(events[0].user.as_ref(), Some(&user));
    f.user(scope, "Grace").await;
    let room = f
        .store
        .get_room(account, scope.room_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(room.total_users_created, 2);

    // Not in another account's room.
    let other = f.account().await;
    let refused = f
        .store
        .create_user(&new_user(seen_by(scope, other), "Eve"))
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound(Entity::Room))));
}

async fn users_are_scoped_to_their_room(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (here, there) = (f.room(account).await, f.room(account).await);
    let mut new = new_user(here, "Ada");
    new.custom_id = Some("ada".to_owned());
    let (user, _) = f.store.create_user(&new).await.unwrap();
    assert_eq!(
        f.store.get_user(here, user.id).await.unwrap(),
        Some(user.clone())
    );
    // With its room, in one read: the room as `get_room` reads it, column for column.
    let room = f.store.get_room(account, here.room_id).await.unwrap();
    let room = room.unwrap();
    assert_eq!(
        f.store
            .get_users_and_rooms(&[(here, user.id)])
            .await
            .unwrap(),
        [Some((user.clone(), room.clone()))]
    );

    let other_account = seen_by(here, f.account().await);
    for scope in [there, other_account] {
        assert_eq!(f.store.get_user(scope, user.id).await.unwrap(), None);
        assert_eq!(
            f.store
                .get_users_and_rooms(&[(scope, user.id)])
                .await
                .unwrap(),
            [None]
        );
        assert_eq!(
            f.store.get_user_by_custom_id(scope, "ada").await.unwrap(),
            None
        );
        let changes = UserChanges {
            name: Some("Mallory".to_owned()),
            ..UserChanges::default()
        };
        let updated = f.store.update_user(scope, user.id, &changes).await;
        assert!(matches!(updated, Err(StoreError::NotFound(Entity::User))));
        let deleted = f.store.delete_user(scope, user.id).await;
        assert!(matches!(deleted, Err(StoreError::NotFound(Entity::User))));
    }
    assert_eq!(
        f.store.get_user_by_custom_id(here, "ada").await.unwrap(),
        Some(user)
    );
}

/// Many sockets' handshakes in one read: each answered in its place, with its own room, and
/// nothing for a user asked in a room (or account) not theirs, or deleted.
async fn handshakes_read_many_users_at_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (here, there) = (f.room(account).await, f.room(account).await);
    let (ada, _) = f.store.create_user(&new_user(here, "Ada")).await.unwrap();
    let (grace, _) = f
        .store
        .create_user(&new_user(there, "Grace"))
        .await
        .unwrap();
    let (gone, _) = f.store.create_user(&new_user(here, "Gone")).await.unwrap();
    f.store.delete_user(here, gone.id).await.unwrap();
    let room_here = f
        .store
        .get_room(account, here.room_id)
        .await
        .unwrap()
        .unwrap();
    let room_there = f
        .store
        .get_room(account, there.room_id)
        .await
        .unwrap()
        .unwrap();
    let wanted = [
        (there, grace.id),
        (here, ada.id),
        (there, ada.id),
        (seen_by(here, f.account().await), ada.id),
        (here, gone.id),
        (here, UserId::new()),
        (here, ada.id),
    ];
    let found = f.store.get_users_and_rooms(&wanted).await.unwrap();
    assert_eq!(
        found,
        [
            Some((grace, room_there)),
            Some((ada.clone(), room_here.clone())),
            None,
            None,
            None,
            None,
            Some((ada, room_here)),
        ]
    );
    assert!(f.store.get_users_and_rooms(&[]).await.unwrap().is_empty());
}

async fn user_custom_ids_are_unique_per_room(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (here, there) = (f.room(account).await, f.room(account).await);
    let with_id = |scope, custom_id: &str| {
        let mut user = new_user(scope, "Someone");
        user.custom_id = Some(custom_id.to_owned());
        user
    };
    f.store.create_user(&with_id(here, "x")).await.unwrap();
    let taken = f.store.create_user(&with_id(here, "x")).await;
    assert!(matches!(taken, Err(StoreError::Conflict(Entity::User))));
    f.store.create_user(&with_id(there, "x")).await.unwrap();

    let (other, _) = f.store.create_user(&with_id(here, "y")).await.unwrap();
    let to_x = UserChanges {
        custom_id: Some(Some("x".to_owned())),
        ..UserChanges::default()
    };
    let clash = f.store.update_user(here, other.id, &to_x).await;
    assert!(matches!(clash, Err(StoreError::Conflict(Entity::User))));
}

async fn updates_change_only_what_they_name(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let mut new = new_user(scope, "Ada");
    new.profile_picture = Some("https://example.com/ada.png".to_owned());
    new.custom_id = Some("ada".to_owned());
    let (user, _) = f.store.create_user(&new).await.unwrap();

    let rename = UserChanges {
        name: Some("Ada L.".to_owned()),
        ..UserChanges::default()
    };
    let (renamed, events) = f.store.update_user(scope, user.id, &rename).await.unwrap();
    assert_eq!(renamed.name, "Ada L.");
    assert_eq!(renamed.profile_picture, user.profile_picture);
    assert_eq!(renamed.custom_id, user.custom_id);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::UserUpdated);
    assert_eq!(events[0].user.as_ref(), Some(&renamed));

    let clear = UserChanges {
        profile_picture: Some(None),
        ..UserChanges::default()
    };
    let (cleared, _) = f.store.update_user(scope, user.id, &clear).await.unwrap();
    assert_eq!(cleared.profile_picture, None);
    assert_eq!(cleared.name, "Ada L.");
    let missing = f.store.update_user(scope, UserId::new(), &clear).await;
    assert!(matches!(missing, Err(StoreError::NotFound(Entity::User))));
}

async fn user_lists_search_names_and_ids(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let base = Timestamp::now().as_millis();
    let mut users = Vec::new();
    for (i, name) in ["Ada Lovelace", "Grace", "Adele Lovett"]
        .into_iter()
        .enumerate()
    {
        let mut new = new_user(scope, name);
        new.created_at = Timestamp::from_millis(base + i as i64);
        users.push(f.store.create_user(&new).await.unwrap().0);
    }
    let list = |search: Option<String>, page: Page| {
        let store = f.store.clone();
        async move {
            let filter = ListFilter {
                search,
                ..ListFilter::default()
            };
            store.list_users(scope, &filter, page).await.unwrap()
        }
    };
    let all = list(
        None,
        Page {
            limit: 10,
            offset: 0,
        },
    )
    .await;
    let names: Vec<_> = all.items.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["Adele Lovett", "Grace", "Ada Lovelace"]);

    // Letters no ID holds (IDs are hex), in any case.
    let lov = list(
        Some("LOV".to_owned()),
        Page {
            limit: 1,
            offset: 1,
        },
    )
    .await;
    assert_eq!(lov.total, 2);
    assert_eq!(lov.items.len(), 1);
    assert_eq!(lov.items[0].name, "Ada Lovelace");

    let by_id = users[1].id.to_string();
    let found = list(
        Some(by_id[..13].to_owned()),
        Page {
            limit: 10,
            offset: 0,
        },
    )
    .await;
    assert_eq!(found.total, 1);
    assert_eq!(found.items[0].id, users[1].id);
}

async fn room_user_pages_end_by_bytes_and_skip_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let base = Timestamp::now().as_millis();
    let mut expected = Vec::new();
    for i in 0..9 {
        // Names of 10 to 810 bytes: pages hold a varying number of users.
        let mut new = new_user(scope, &"n".repeat(10 + 100 * i));
        new.created_at = Timestamp::from_millis(base + (i as i64) / 3);
        expected.push((new.created_at, new.id.to_string()));
        f.store.create_user(&new).await.unwrap();
    }
    expected.sort();
    let expected: Vec<_> = expected.into_iter().map(|(_, id)| id).collect();

    for bytes in [1, 1_500, 3_000, 1_000_000] {
        let size = PageSize { items: 4, bytes };
        let mut seen = Vec::new();
        let mut after: Option<UserCursor> = None;
        loop {
            let page = f
                .store
                .list_room_users(scope, after.as_ref(), size)
                .await
                .unwrap();
            // The first user always comes, and a page stops where the next would not fit.
            assert!(!page.users.is_empty());
            assert!(page.users.len() <= 4);
            let weight: i64 = page.users.iter().map(|u| u.name.len() as i64 + 512).sum();
            assert!(
                page.users.len() == 1 || weight <= bytes,
                "{weight} > {bytes}"
            );
            seen.extend(page.users.iter().map(|u| u.id.to_string()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "pages of at most {bytes} bytes");
    }

    // A cursor still works once the user it names is gone.
    let size = PageSize {
        items: 2,
        bytes: 1_000_000,
    };
    let first = f.store.list_room_users(scope, None, size).await.unwrap();
    let cursor = first.next.unwrap();
    f.store.delete_user(scope, cursor.id).await.unwrap();
    let rest = f
        .store
        .list_room_users(scope, Some(&cursor), size)
        .await
        .unwrap();
    assert_eq!(rest.users[0].id.to_string(), expected[2]);
}

async fn sessions_come_newest_first(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let user = f.user(scope, "Ada").await;
    let node = NodeId::new("node-a");
    let base = Timestamp::now().as_millis();
    for i in 0..3 {
        let connection = ConnectionRecord {
            id: ConnectionId::new(),
            node_id: node.clone(),
            scope,
            user_id: user.id,
        };
        let joined = f
            .store
            .join_room(&NewConnection {
                id: connection.id,
                node_id: node.clone(),
                scope,
                user_id: user.id,
                opened_at: Timestamp::from_millis(base + 10 * i),
            })
            .await
            .unwrap();
        assert!(joined.came_online);
        let at = Timestamp::from_millis(base + 10 * i + 5);
        f.store.leave_room(&connection, at).await.unwrap();
    }
    let listed = f
        .store
        .list_sessions(
            user.id,
            Page {
                limit: 2,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 3);
    let joined: Vec<_> = listed
        .items
        .iter()
        .map(|s| s.joined_at.as_millis())
        .collect();
    assert_eq!(joined, [base + 20, base + 10]);
    assert!(listed.items.iter().all(|s| s.left_at.is_some()));
    let rest = f
        .store
        .list_sessions(
            user.id,
            Page {
                limit: 2,
                offset: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].joined_at.as_millis(), base);
}

async fn deleting_an_online_user_closes_the_session(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let user = f.user(scope, "Ada").await;
    f.store
        .join_room(&NewConnection {
            id: ConnectionId::new(),
            node_id: NodeId::new("node-a"),
            scope,
            user_id: user.id,
            opened_at: Timestamp::now(),
        })
        .await
        .unwrap();

    let (deleted, left) = f.store.delete_user(scope, user.id).await.unwrap();
    assert_eq!(deleted.id, user.id);
    assert!(left.went_offline);
    assert!(left.session_closed);
    assert_eq!(left.session_users.len(), 1);
    let kinds: Vec<_> = left.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::ParticipantLeft,
            EventKind::UserDeleted,
            EventKind::SessionClosed
        ]
    );
    let room = left.room.unwrap();
    assert_eq!(room.active_participants, 0);
    assert_eq!(room.session_started_at, None);
    assert_eq!(f.store.get_user(scope, user.id).await.unwrap(), None);
    assert!(f
        .store
        .node_connections(&NodeId::new("node-a"))
        .await
        .unwrap()
        .is_empty());
}
