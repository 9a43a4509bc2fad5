//! Membership: sockets joining and leaving rooms, who is online, sessions, follows.

use collabkit::domain::{ConnectionId, EventKind, NodeId, Timestamp, User, UserStatus};
use collabkit::store::{ConnectionRecord, Entity, NewConnection, RoomJoins, RoomScope, StoreError};

use crate::fixture::{contract, seen_by, Backend, Fixture};

contract!(
    the_first_socket_brings_a_user_online,
    the_last_socket_takes_a_user_offline,
    joins_are_scoped_to_the_room,
    leaving_many_at_once_recounts_once,
    a_recount_sets_stranded_users_offline,
    the_online_counter_opens_and_closes_sessions,
    follows_are_idempotent_and_scoped,
    concurrent_joins_count_everyone,
    joins_in_one_batch_are_many_joins,
    joins_of_several_rooms_in_one_transaction_keep_to_their_rooms,
);

fn socket(scope: RoomScope, user: &User) -> ConnectionRecord {
    ConnectionRecord {
        id: ConnectionId::new(),
        node_id: NodeId::new("node-a"),
        scope,
        user_id: user.id,
    }
}

fn opening(socket: &ConnectionRecord) -> NewConnection {
    NewConnection {
        id: socket.id,
        node_id: socket.node_id.clone(),
        scope: socket.scope,
        user_id: socket.user_id,
        opened_at: Timestamp::now(),
    }
}

fn kinds(events: &[collabkit::domain::Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

async fn the_first_socket_brings_a_user_online(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let user = f.user(scope, "Ada").await;
    let (one, two) = (socket(scope, &user), socket(scope, &user));

    let joined = f.store.join_room(&opening(&one)).await.unwrap();
    assert!(joined.came_online);
    assert!(joined.session_started);
    assert_eq!(
        kinds(&joined.events),
        [EventKind::SessionStarted, EventKind::ParticipantJoined]
    );
    assert_eq!(joined.user.status, UserStatus::Online);
    assert_eq!(joined.room.active_participants, 1);
    assert!(joined.room.session_started_at.is_some());

    let again = f.store.join_room(&opening(&two)).await.unwrap();
    assert!(!again.came_online);
    assert!(!again.session_started);
    assert!(again.events.is_empty());
    assert_eq!(again.room.active_participants, 1);
}

async fn the_last_socket_takes_a_user_offline(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let user = f.user(scope, "Ada").await;
    let (one, two) = (socket(scope, &user), socket(scope, &user));
    f.store.join_room(&opening(&one)).await.unwrap();
    f.store.join_room(&opening(&two)).await.unwrap();

    let first = f.store.leave_room(&one, Timestamp::now()).await.unwrap();
    assert!(!first.went_offline);
    assert!(first.events.is_empty());
    let last = f.store.leave_room(&two, Timestamp::now()).await.unwrap();
    assert!(last.went_offline);
    assert!(last.session_closed);
    assert_eq!(last.user.as_ref().unwrap().status, UserStatus::Offline);
    let session_users: Vec<_> = last.session_users.iter().map(|u| u.id).collect();
    assert_eq!(session_users, [user.id]);
    assert_eq!(
        kinds(&last.events),
        [EventKind::ParticipantLeft, EventKind::SessionClosed]
    );
    assert_eq!(last.room.unwrap().active_participants, 0);

    // Leaving twice changes nothing.
    let twice = f.store.leave_room(&two, Timestamp::now()).await.unwrap();
    assert!(!twice.went_offline);
    assert!(!twice.session_closed);
    assert!(twice.events.is_empty());
}

async fn joins_are_scoped_to_the_room(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (here, there) = (f.room(account).await, f.room(account).await);
    let user = f.user(here, "Ada").await;

    let elsewhere = f.store.join_room(&opening(&socket(there, &user))).await;
    assert!(matches!(elsewhere, Err(StoreError::NotFound(Entity::User))));
    let other_account = seen_by(here, f.account().await);
    let foreign = f
        .store
        .join_room(&opening(&socket(other_account, &user)))
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound(Entity::Room))));

    // Leaving a room that is gone changes nothing and fails nothing.
    let one = socket(here, &user);
    f.store.join_room(&opening(&one)).await.unwrap();
    f.store.delete_room(account, here.room_id).await.unwrap();
    let left = f.store.leave_room(&one, Timestamp::now()).await.unwrap();
    assert!(left.room.is_none());
    assert!(left.user.is_none());
    assert!(left.events.is_empty());
}

async fn leaving_many_at_once_recounts_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let mut sockets = Vec::new();
    for name in ["Ada", "Grace", "Edsger"] {
        let user = f.user(scope, name).await;
        let one = socket(scope, &user);
        f.store.join_room(&opening(&one)).await.unwrap();
        sockets.push(one);
    }
    let leaving: Vec<_> = sockets[..2].iter().map(|s| s.id).collect();
    let recounted = f
        .store
        .leave_many(scope, &leaving, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(recounted.room.active_participants, 1);
    let mut offline: Vec<_> = recounted.users_set_offline.iter().map(|u| u.id).collect();
    offline.sort_by_key(|id| id.to_string());
    let mut expected = vec![sockets[0].user_id, sockets[1].user_id];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(offline, expected);
    assert_eq!(
        kinds(&recounted.events),
        [EventKind::ParticipantLeft, EventKind::ParticipantLeft]
    );
}

async fn a_recount_sets_stranded_users_offline(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let user = f.user(scope, "Ada").await;
    f.store
        .join_room(&opening(&socket(scope, &user)))
        .await
        .unwrap();
    // The socket's record goes without the user being told (as if its node had crashed
    // and its records had been cleaned up).
    f.execute("DELETE FROM connections").await;

    let recounted = f.store.recount_room(scope).await.unwrap();
    assert_eq!(recounted.room.active_participants, 0);
    assert_eq!(recounted.room.session_started_at, None);
    assert_eq!(recounted.users_set_offline.len(), 1);
    assert_eq!(recounted.users_set_offline[0].status, UserStatus::Offline);
    assert_eq!(
        kinds(&recounted.events),
        [EventKind::ParticipantLeft, EventKind::SessionClosed]
    );
    let again = f.store.recount_room(scope).await.unwrap();
    assert!(again.users_set_offline.is_empty());
    assert!(again.events.is_empty());
}

async fn the_online_counter_opens_and_closes_sessions(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let open = f.store.set_active_participants(scope, 2).await.unwrap();
    assert_eq!(open.active_participants, 2);
    let started = open.session_started_at.expect("a session runs");
    let still = f.store.set_active_participants(scope, 1).await.unwrap();
    assert_eq!(still.session_started_at, Some(started));
    let closed = f.store.set_active_participants(scope, 0).await.unwrap();
    assert_eq!(closed.session_started_at, None);
    assert!(closed.closed_sessions_ms >= 0);

    let foreign = f
        .store
        .set_active_participants(seen_by(scope, f.account().await), 1)
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound(Entity::Room))));
}

async fn follows_are_idempotent_and_scoped(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (here, there) = (f.room(account).await, f.room(account).await);
    let (ada, grace) = (f.user(here, "Ada").await, f.user(here, "Grace").await);
    let stranger = f.user(there, "Eve").await;

    f.store
        .set_follow(here, ada.id, grace.id, true)
        .await
        .unwrap();
    f.store
        .set_follow(here, ada.id, grace.id, true)
        .await
        .unwrap();
    assert_eq!(
        f.store.list_follows(here).await.unwrap(),
        [(ada.id, grace.id)]
    );
    assert!(f.store.list_follows(there).await.unwrap().is_empty());

    let across = f.store.set_follow(here, ada.id, stranger.id, true).await;
    assert!(matches!(across, Err(StoreError::NotFound(Entity::User))));
    let foreign = seen_by(here, f.account().await);
    let refused = f.store.set_follow(foreign, ada.id, grace.id, false).await;
    assert!(matches!(refused, Err(StoreError::NotFound(Entity::Room))));
    assert!(f.store.list_follows(foreign).await.unwrap().is_empty());

    f.store
        .set_follow(here, ada.id, grace.id, false)
        .await
        .unwrap();
    f.store
        .set_follow(here, ada.id, grace.id, false)
        .await
        .unwrap();
    assert!(f.store.list_follows(here).await.unwrap().is_empty());
}

async fn concurrent_joins_count_everyone(backend: Backend) {
    const USERS: usize = 8;
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let mut sockets = Vec::new();
    for i in 0..USERS {
        sockets.push(socket(scope, &f.user(scope, &format!("user {i}")).await));
    }
    let joins: Vec<_> = sockets
        .iter()
        .map(|one| {
            let (store, new) = (f.store.clone(), opening(one));
            tokio::spawn(async move { store.join_room(&new).await })
        })
        .collect();
    let mut started = 0;
    for join in joins {
        let joined = join.await.unwrap().unwrap();
        assert!(joined.came_online);
        started += usize::from(joined.session_started);
    }
    assert_eq!(started, 1, "one session, started once");
    let room = f
        .store
        .get_room(scope.account_id, scope.room_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(room.active_participants, USERS as i64);
}

/// A batch of joins (a reconnection storm) promises what as many joins would: each user
/// online once, one session, one `participant.joined` per user, a socket whose user is gone
/// refused in its place without failing the others.
async fn joins_in_one_batch_are_many_joins(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let scope = f.room(account).await;
    let (ada, grace) = (f.user(scope, "Ada").await, f.user(scope, "Grace").await);
    let gone = f.user(scope, "Gone").await;
    f.store.delete_user(scope, gone.id).await.unwrap();
    let batch = [
        opening(&socket(scope, &ada)),
        opening(&socket(scope, &gone)),
        opening(&socket(scope, &grace)),
        opening(&socket(scope, &ada)),
    ];

    let results = f.store.join_many(scope, &batch).await.unwrap();
    assert_eq!(results.len(), 4);
    let first = results[0].as_ref().unwrap();
    assert!(first.came_online && first.session_started);
    assert_eq!(
        kinds(&first.events),
        [EventKind::SessionStarted, EventKind::ParticipantJoined]
    );
    assert!(matches!(
        results[1],
        Err(StoreError::NotFound(Entity::User))
    ));
    let third = results[2].as_ref().unwrap();
    assert!(third.came_online && !third.session_started);
    assert_eq!(kinds(&third.events), [EventKind::ParticipantJoined]);
    let fourth = results[3].as_ref().unwrap();
    assert!(!fourth.came_online && fourth.events.is_empty());
    for joined in [first, third, fourth] {
        assert_eq!(joined.room.active_participants, 2);
        assert_eq!(joined.user.status, UserStatus::Online);
    }
    assert_eq!(f.count("SELECT COUNT(*) FROM connections").await, 3);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM user_sessions WHERE left_at IS NULL")
            .await,
        2
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM events WHERE kind = 'participant.joined'")
            .await,
        2
    );

    // A batch for a room that is gone fails as a whole.
    f.store.delete_room(account, scope.room_id).await.unwrap();
    let late = f
        .store
        .join_many(scope, &[opening(&socket(scope, &ada))])
        .await;
    assert!(matches!(late, Err(StoreError::NotFound(Entity::Room))));
}

/// Joins of several rooms recorded together (a storm across rooms): each room counts its
/// own, opens its own session and records its own events, in the order the rooms were
/// given; a room that is gone fails its own joins and nobody else's.
async fn joins_of_several_rooms_in_one_transaction_keep_to_their_rooms(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (first, gone, second) = (
        f.room(account).await,
        f.room(account).await,
        f.room(account).await,
    );
    let (ada, grace) = (f.user(first, "Ada").await, f.user(first, "Grace").await);
    let lost = f.user(gone, "Lost").await;
    let alan = f.user(second, "Alan").await;
    f.store.delete_room(account, gone.room_id).await.unwrap();
    let batches = [
        RoomJoins {
            scope: second,
            connections: vec![opening(&socket(second, &alan))],
        },
        RoomJoins {
            scope: gone,
            connections: vec![opening(&socket(gone, &lost))],
        },
        RoomJoins {
            scope: first,
            connections: vec![
                opening(&socket(first, &ada)),
                opening(&socket(first, &grace)),
            ],
        },
    ];

    let results = f.store.join_rooms(&batches).await.unwrap();
    assert_eq!(results.len(), 3);
    let alan_joined = results[0].as_ref().unwrap();
    assert_eq!(alan_joined.len(), 1);
    let alan_joined = alan_joined[0].as_ref().unwrap();
    assert_eq!(alan_joined.room.id, second.room_id);
    assert_eq!(alan_joined.room.active_participants, 1);
    assert_eq!(
        kinds(&alan_joined.events),
        [EventKind::SessionStarted, EventKind::ParticipantJoined]
    );
    assert!(matches!(
        results[1],
        Err(StoreError::NotFound(Entity::Room))
    ));
    let firsts = results[2].as_ref().unwrap();
    assert_eq!(firsts.len(), 2);
    for joined in firsts {
        let joined = joined.as_ref().unwrap();
        assert_eq!(joined.room.id, first.room_id);
        assert_eq!(joined.room.active_participants, 2);
        assert_eq!(joined.user.status, UserStatus::Online);
    }
    assert_eq!(f.count("SELECT COUNT(*) FROM connections").await, 3);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM events WHERE kind = 'session.started'")
            .await,
        2
    );
    assert_eq!(
        f.count("SELECT COUNT(*) FROM events WHERE kind = 'participant.joined'")
            .await,
        3
    );
}
