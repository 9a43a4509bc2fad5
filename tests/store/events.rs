//! Events: recorded with the change they describe, turned into webhook deliveries once (by
//! however many nodes), forgotten once dispatched and old.

use collabkit::domain::webhook::Webhook;
use collabkit::domain::{AccountId, EventKind, Timestamp};
use collabkit::store::webhooks::NewWebhook;
use collabkit::store::{DynStore, Page};

use crate::fixture::{contract, Backend, Fixture};

contract!(
    events_are_dispatched_once_then_purged,
    racing_dispatchers_take_each_event_once,
);

/// A webhook of the account that wants `user.created`.
pub async fn webhook(store: &DynStore, account: AccountId) -> Webhook {
    store
        .create_webhook(
            &NewWebhook {
                id: Webhook::new_id(),
                account_id: account,
                url: "https://example.com/hook".to_owned(),
                secret: "whsec_contract".to_owned(),
                events: vec![EventKind::UserCreated],
                room_id: None,
                created_at: Timestamp::now(),
            },
            10,
        )
        .await
        .unwrap()
}

async fn events_are_dispatched_once_then_purged(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let hook = webhook(&f.store, account).await;
    let scope = f.room(account).await;
    f.user(scope, "Ada").await;

    assert_eq!(f.store.dispatch_events(100).await.unwrap(), 1);
    assert_eq!(f.store.dispatch_events(100).await.unwrap(), 0);
    let page = Page {
        limit: 10,
        offset: 0,
    };
    let deliveries = f
        .store
        .list_deliveries(account, &hook.id, page, i64::MAX)
        .await
        .unwrap();
    assert_eq!(deliveries.total, 1);
    assert_eq!(deliveries.items[0].event, "user.created");

    // An event not yet dispatched is never forgotten, however old.
    f.user(scope, "Grace").await;
    let later = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000);
    assert_eq!(f.store.purge_events(later).await.unwrap(), 1);
    assert_eq!(f.store.purge_events(later).await.unwrap(), 0);
    assert_eq!(f.store.dispatch_events(100).await.unwrap(), 1);
    // Only those older than the bound go.
    assert_eq!(
        f.store
            .purge_events(Timestamp::from_millis(1))
            .await
            .unwrap(),
        0
    );
}

async fn racing_dispatchers_take_each_event_once(backend: Backend) {
    const EVENTS: usize = 24;
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let hook = webhook(&f.store, account).await;
    let scope = f.room(account).await;
    for i in 0..EVENTS {
        f.user(scope, &format!("user {i}")).await;
    }
    let nodes = [f.store.clone(), f.second_node().await];
    let dispatchers: Vec<_> = nodes
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let mut handled = 0;
                loop {
                    match store.dispatch_events(5).await.unwrap() {
                        0 => return handled,
                        n => handled += n,
                    }
                }
            })
        })
        .collect();
    let mut handled = 0;
    for dispatcher in dispatchers {
        handled += dispatcher.await.unwrap();
    }
    assert_eq!(handled, EVENTS);
    let page = Page {
        limit: 100,
        offset: 0,
    };
    let deliveries = f
        .store
        .list_deliveries(account, &hook.id, page, i64::MAX)
        .await
        .unwrap();
    assert_eq!(deliveries.total, EVENTS as i64);
}
