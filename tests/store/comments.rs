//! Comments: threads of a room, their comments and reactions; authors, limits (under
//! concurrent writers too), byte-bounded pages of threads and of comments.

use collabkit::domain::{CommentId, ThreadId, Timestamp, UserId};
use collabkit::store::comments::{
    Actor, CommentChanges, NewComment, NewThread, NotAuthor, ReactionChange, ReactionLimits,
    ReactionWrite, Resolution, ThreadFilter,
};
use collabkit::store::{Entity, Page, PageSize, RoomScope, StoreError};

use crate::fixture::{contract, seen_by, Backend, Fixture};

contract!(
    threads_live_and_die_with_their_comments,
    threads_are_scoped_to_their_room,
    threads_and_comments_are_limited,
    reactions_are_idempotent_and_limited,
    threads_resolve_and_reopen_once,
    thread_pages_end_by_bytes_and_skip_nothing,
    comment_pages_end_by_bytes_and_skip_nothing,
    concurrent_replies_cannot_exceed_the_limit,
);

const ALL: PageSize = PageSize {
    items: 100,
    bytes: i64::MAX,
};

fn new_thread(author: UserId, body: &str) -> NewThread {
    NewThread {
        id: ThreadId::new(),
        created_by: author,
        metadata: None,
        first_comment: CommentId::new(),
        body: body.to_owned(),
        created_at: Timestamp::now(),
    }
}

fn reply(thread: &ThreadId, author: UserId, body: &str) -> NewComment {
    NewComment {
        id: CommentId::new(),
        thread_id: thread.clone(),
        user_id: author,
        body: body.to_owned(),
        metadata: None,
        created_at: Timestamp::now(),
    }
}

fn reaction(user: UserId, emoji: &str, change: ReactionChange) -> ReactionWrite {
    ReactionWrite {
        user_id: user,
        emoji: emoji.to_owned(),
        change,
    }
}

async fn threads_live_and_die_with_their_comments(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let (ada, grace) = (UserId::new(), UserId::new());
    let new = new_thread(ada, "First!");
    let thread = f.store.create_thread(scope, &new, 10).await.unwrap();
    assert_eq!((thread.comment_count, thread.comments.len()), (1, 1));
    assert_eq!(thread.comments[0].id, new.first_comment);
    let second = f
        .store
        .add_comment(scope, &reply(&thread.id, grace, "Second"), 10)
        .await
        .unwrap();

    let changes = CommentChanges {
        body: Some("Edited".to_owned()),
        metadata: None,
    };
    let by_other = f.store.edit_comment(scope, &second.id, ada, &changes).await;
    assert_eq!(by_other.unwrap(), Err(NotAuthor));
    let edited = f
        .store
        .edit_comment(scope, &second.id, grace, &changes)
        .await;
    let edited = edited.unwrap().unwrap();
    assert_eq!(edited.body, "Edited");
    assert!(edited.edited_at.is_some());
    let stored = f.store.get_thread(scope, &thread.id, ALL).await.unwrap();
    assert_eq!(stored.comments[1].body, "Edited");
    assert!(stored.updated_at >= thread.updated_at);

    let deleted = f
        .store
        .delete_comment(scope, &second.id, Actor::User(ada))
        .await;
    assert_eq!(deleted.unwrap(), Err(NotAuthor));
    let deleted = f
        .store
        .delete_comment(scope, &second.id, Actor::Moderator)
        .await;
    assert!(!deleted.unwrap().unwrap().thread_deleted);
    // The last comment takes its thread with it.
    let last = f
        .store
        .delete_comment(scope, &new.first_comment, Actor::User(ada))
        .await;
    let last = last.unwrap().unwrap();
    assert!(last.thread_deleted);
    assert_eq!(last.thread_id, thread.id);
    let gone = f.store.get_thread(scope, &thread.id, ALL).await;
    assert!(matches!(gone, Err(StoreError::NotFound(Entity::Thread))));
}

async fn threads_are_scoped_to_their_room(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let (here, there) = (f.room(account).await, f.room(account).await);
    let foreign = seen_by(here, f.account().await);
    let ada = UserId::new();
    let thread = f
        .store
        .create_thread(here, &new_thread(ada, "Hi"), 10)
        .await
        .unwrap();
    let comment = thread.comments[0].id.clone();
    let not_found = |result: Result<(), StoreError>, entity: Entity| match result {
        Err(StoreError::NotFound(e)) => assert_eq!(e, entity),
        other => panic!("{other:?} instead of NotFound({entity:?})"),
    };

    for (scope, room_missing) in [(there, false), (foreign, true)] {
        let (thread_or_room, room_or_ok) = if room_missing {
            (Entity::Room, Err(StoreError::NotFound(Entity::Room)))
        } else {
            (Entity::Thread, Ok(()))
        };
        let get = f.store.get_thread(scope, &thread.id, ALL).await.map(drop);
        not_found(get, thread_or_room);
        let comments = f
            .store
            .list_comments(scope, &thread.id, 0, ALL)
            .await
            .map(drop);
        not_found(comments, thread_or_room);
        not_found(
            f.store.delete_thread(scope, &thread.id).await,
            thread_or_room,
        );
        let listed = f
            .store
            .list_threads(
                scope,
                ThreadFilter::default(),
                Page {
                    limit: 10,
                    offset: 0,
                },
                ALL,
            )
            .await;
        match (listed, room_or_ok) {
            (Ok(listed), Ok(())) => assert_eq!(listed.total, 0),
            (Err(StoreError::NotFound(Entity::Room)), Err(_)) => {}
            (other, _) => panic!("{other:?}"),
        }
        let added = f
            .store
            .add_comment(scope, &reply(&thread.id, ada, "x"), 10)
            .await;
        not_found(added.map(drop), Entity::Thread);
        let changes = CommentChanges::default();
        let edited = f.store.edit_comment(scope, &comment, ada, &changes).await;
        not_found(edited.map(drop), Entity::Comment);
        let deleted = f
            .store
            .delete_comment(scope, &comment, Actor::Moderator)
            .await;
        not_found(deleted.map(drop), Entity::Comment);
        let limits = ReactionLimits {
            max_emoji: 10,
            max_reactions: 10,
        };
        let add = reaction(ada, "👍", ReactionChange::Add);
        let reacted = f.store.react(scope, &comment, &add, limits).await;
        not_found(reacted.map(drop), Entity::Comment);
        let resolved = f
            .store
            .resolve_thread(scope, &thread.id, Resolution::Reopen, ALL)
            .await;
        not_found(resolved.map(drop), Entity::Thread);
    }
    assert_eq!(
        f.store
            .get_thread(here, &thread.id, ALL)
            .await
            .unwrap()
            .comment_count,
        1
    );
}

async fn threads_and_comments_are_limited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let ada = UserId::new();
    let thread = f
        .store
        .create_thread(scope, &new_thread(ada, "1"), 2)
        .await
        .unwrap();
    f.store
        .create_thread(scope, &new_thread(ada, "2"), 2)
        .await
        .unwrap();
    match f.store.create_thread(scope, &new_thread(ada, "3"), 2).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "params"),
        other => panic!("a third thread under a limit of two: {other:?}"),
    }
    // The first comment counts.
    f.store
        .add_comment(scope, &reply(&thread.id, ada, "a"), 2)
        .await
        .unwrap();
    match f
        .store
        .add_comment(scope, &reply(&thread.id, ada, "b"), 2)
        .await
    {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "threadId"),
        other => panic!("a third comment under a limit of two: {other:?}"),
    }
}

async fn reactions_are_idempotent_and_limited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let (ada, grace, edsger) = (UserId::new(), UserId::new(), UserId::new());
    let thread = f
        .store
        .create_thread(scope, &new_thread(ada, "Hi"), 10)
        .await
        .unwrap();
    let comment = thread.comments[0].id.clone();
    let limits = ReactionLimits {
        max_emoji: 2,
        max_reactions: 3,
    };
    let react = |user, emoji: &'static str, change| {
        let (store, comment) = (f.store.clone(), comment.clone());
        async move {
            store
                .react(scope, &comment, &reaction(user, emoji, change), limits)
                .await
        }
    };
    use ReactionChange::{Add, Remove};
    assert!(react(ada, "👍", Add).await.unwrap().changed);
    assert!(!react(ada, "👍", Add).await.unwrap().changed);
    let both = react(grace, "👍", Add).await.unwrap().value;
    assert_eq!(both.reactions.len(), 1);
    assert_eq!(both.reactions[0].user_ids, [ada, grace]);
    react(ada, "🎉", Add).await.unwrap();
    match react(ada, "🚀", Add).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "emoji"),
        other => panic!("a third emoji under a limit of two: {other:?}"),
    }
    match react(edsger, "🎉", Add).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "emoji"),
        other => panic!("a fourth reaction under a limit of three: {other:?}"),
    }
    assert!(react(ada, "👍", Remove).await.unwrap().changed);
    assert!(!react(ada, "👍", Remove).await.unwrap().changed);
    let after = react(edsger, "🎉", Add).await.unwrap().value;
    let emoji: Vec<_> = after.reactions.iter().map(|r| r.emoji.as_str()).collect();
    assert_eq!(emoji, ["👍", "🎉"]);
}

async fn threads_resolve_and_reopen_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let ada = UserId::new();
    let open = f
        .store
        .create_thread(scope, &new_thread(ada, "Open"), 10)
        .await
        .unwrap();
    let done = f
        .store
        .create_thread(scope, &new_thread(ada, "Done"), 10)
        .await
        .unwrap();
    let resolve = Resolution::Resolve { by: ada };
    let resolved = f
        .store
        .resolve_thread(scope, &done.id, resolve, ALL)
        .await
        .unwrap();
    assert!(resolved.changed);
    assert!(resolved.value.resolved);
    assert_eq!(resolved.value.resolved_by, Some(ada));
    assert!(
        !f.store
            .resolve_thread(scope, &done.id, resolve, ALL)
            .await
            .unwrap()
            .changed
    );

    let only = |resolved| {
        let store = f.store.clone();
        async move {
            let filter = ThreadFilter { resolved };
            let page = Page {
                limit: 10,
                offset: 0,
            };
            let listed = store.list_threads(scope, filter, page, ALL).await.unwrap();
            listed.items.into_iter().map(|t| t.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(only(Some(true)).await, std::slice::from_ref(&done.id));
    assert_eq!(only(Some(false)).await, std::slice::from_ref(&open.id));
    assert_eq!(only(None).await, [done.id.clone(), open.id.clone()]);

    let reopened = f
        .store
        .resolve_thread(scope, &done.id, Resolution::Reopen, ALL)
        .await
        .unwrap();
    assert!(reopened.changed);
    assert_eq!(reopened.value.resolved_by, None);
    assert_eq!(only(Some(true)).await, Vec::<ThreadId>::new());
}

async fn thread_pages_end_by_bytes_and_skip_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let ada = UserId::new();
    let mut expected = Vec::new();
    for i in 0..5 {
        let thread = f
            .store
            .create_thread(scope, &new_thread(ada, &"b".repeat(100 * i)), 10)
            .await
            .unwrap();
        for j in 0..3 {
            let body = "c".repeat(50 * j);
            f.store
                .add_comment(scope, &reply(&thread.id, ada, &body), 10)
                .await
                .unwrap();
        }
        expected.insert(0, thread.id);
    }
    for bytes in [1, 1_500, 4_000, i64::MAX] {
        let size = PageSize { items: 2, bytes };
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let page = Page {
                limit: 3,
                offset: seen.len() as i64,
            };
            let listed = f
                .store
                .list_threads(scope, ThreadFilter::default(), page, size)
                .await
                .unwrap();
            assert_eq!(listed.total, 5);
            assert!(!listed.items.is_empty(), "the first thread always comes");
            for thread in &listed.items {
                assert_eq!(thread.comment_count, 4);
                assert!(
                    !thread.comments.is_empty(),
                    "every thread has its first comment"
                );
                assert!(thread.comments.len() <= 2);
                assert_eq!(thread.comments_cursor.is_some(), thread.comments.len() < 4);
            }
            seen.extend(listed.items.into_iter().map(|t| t.id));
        }
        assert_eq!(seen, expected, "pages of at most {bytes} bytes");
    }
    // A budget that one thread spends ends the page after it.
    let small = PageSize {
        items: 2,
        bytes: 1_000,
    };
    let page = Page {
        limit: 5,
        offset: 0,
    };
    let listed = f
        .store
        .list_threads(scope, ThreadFilter::default(), page, small)
        .await
        .unwrap();
    assert!(listed.items.len() < 5);
}

async fn comment_pages_end_by_bytes_and_skip_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let scope = f.room(f.account().await).await;
    let ada = UserId::new();
    let thread = f
        .store
        .create_thread(scope, &new_thread(ada, "0"), 20)
        .await
        .unwrap();
    let mut expected = vec![thread.comments[0].id.clone()];
    for i in 1..10 {
        let body = "c".repeat(60 * i);
        let comment = f
            .store
            .add_comment(scope, &reply(&thread.id, ada, &body), 20)
            .await
            .unwrap();
        expected.push(comment.id);
    }
    for bytes in [1, 700, 1_500, i64::MAX] {
        let size = PageSize { items: 4, bytes };
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = f
                .store
                .list_comments(scope, &thread.id, after, size)
                .await
                .unwrap();
            assert!(!page.comments.is_empty(), "the first comment always comes");
            assert!(page.comments.len() <= 4);
            let weight: i64 = page
                .comments
                .iter()
                .map(|c| c.body.len() as i64 + 320)
                .sum();
            assert!(
                page.comments.len() == 1 || weight <= bytes,
                "{weight} > {bytes}"
            );
            seen.extend(page.comments.into_iter().map(|c| c.id));
            match page.cursor {
                Some(cursor) => after = cursor,
                None => break,
            }
        }
        assert_eq!(seen, expected, "pages of at most {bytes} bytes");
    }
}

async fn concurrent_replies_cannot_exceed_the_limit(backend: Backend) {
    const MAX_COMMENTS: i64 = 6;
    let f = Fixture::new(backend).await;
    let scope: RoomScope = f.room(f.account().await).await;
    let ada = UserId::new();
    let thread = f
        .store
        .create_thread(scope, &new_thread(ada, "0"), 10)
        .await
        .unwrap();
    let replies: Vec<_> = (0..12)
        .map(|i| {
            let store = f.store.clone();
            let new = reply(&thread.id, ada, &format!("{i}"));
            tokio::spawn(async move { store.add_comment(scope, &new, MAX_COMMENTS).await })
        })
        .collect();
    let mut added = 0;
    for reply in replies {
        match reply.await.unwrap() {
            Ok(_) => added += 1,
            Err(StoreError::Invalid { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(added, MAX_COMMENTS - 1);
    let all = f
        .store
        .list_comments(scope, &thread.id, 0, ALL)
        .await
        .unwrap();
    assert_eq!(all.comments.len() as i64, MAX_COMMENTS);
}
