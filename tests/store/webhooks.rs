//! Webhooks and the outbox of their deliveries: scoping, limits, leases (one node at a time,
//! even when nodes race), attempts, byte-bounded delivery logs.

use std::collections::BTreeSet;

use collabkit::domain::webhook::{DeliveryStatus, Webhook};
use collabkit::domain::{AccountId, EventKind, NodeId, Timestamp};
use collabkit::store::webhooks::{Attempt, AttemptOutcome, NewWebhook, WebhookChanges};
use collabkit::store::{DynStore, Entity, Page, StoreError};

use crate::fixture::{contract, Backend, Fixture};

contract!(
    webhooks_are_scoped_and_limited,
    webhook_lists_search_urls_and_page,
    a_lease_holds_a_delivery_for_one_node,
    racing_claimers_never_share_a_delivery,
    failures_in_a_row_disable_a_webhook,
    delivery_logs_end_by_bytes_and_skip_nothing,
);

fn new_webhook(account: AccountId, url: &str) -> NewWebhook {
    NewWebhook {
        id: Webhook::new_id(),
        account_id: account,
        url: url.to_owned(),
        secret: "whsec_contract-secret".to_owned(),
        events: vec![EventKind::UserCreated, EventKind::UserDeleted],
        room_id: None,
        created_at: Timestamp::now(),
    }
}

fn page(limit: i64, offset: i64) -> Page {
    Page { limit, offset }
}

/// Queues `count` test deliveries to `hook`, with bodies of `body_bytes` each.
async fn queue(store: &DynStore, hook: &Webhook, count: usize, body_bytes: usize) {
    for i in 0..count {
        let event_id = format!("evt_{i}_{}", uuid());
        let body = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(body_bytes));
        store
            .queue_delivery(hook.account_id, &hook.id, "webhook.test", &event_id, &body)
            .await
            .unwrap();
    }
}

fn uuid() -> String {
    Webhook::new_id().trim_start_matches("wh_").to_owned()
}

async fn webhooks_are_scoped_and_limited(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    let hook = f
        .store
        .create_webhook(&new_webhook(a, "https://a.example/1"), 2)
        .await
        .unwrap();
    assert!(hook.enabled);
    assert_eq!(
        f.store.get_webhook(a, &hook.id).await.unwrap(),
        Some(hook.clone())
    );
    f.store
        .create_webhook(&new_webhook(a, "https://a.example/2"), 2)
        .await
        .unwrap();
    match f
        .store
        .create_webhook(&new_webhook(a, "https://a.example/3"), 2)
        .await
    {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "url"),
        other => panic!("a third webhook under a limit of two: {other:?}"),
    }

    assert_eq!(f.store.get_webhook(b, &hook.id).await.unwrap(), None);
    let disable = WebhookChanges {
        enabled: Some(false),
        ..WebhookChanges::default()
    };
    let not_theirs = |result: Result<_, StoreError>| {
        assert!(matches!(result, Err(StoreError::NotFound(Entity::Webhook))));
    };
    not_theirs(
        f.store
            .update_webhook(b, &hook.id, &disable)
            .await
            .map(drop),
    );
    not_theirs(
        f.store
            .set_webhook_secret(b, &hook.id, "whsec_x")
            .await
            .map(drop),
    );
    not_theirs(f.store.delete_webhook(b, &hook.id).await);
    not_theirs(
        f.store
            .list_deliveries(b, &hook.id, page(10, 0), i64::MAX)
            .await
            .map(drop),
    );
    not_theirs(
        f.store
            .queue_delivery(b, &hook.id, "webhook.test", "evt_1", "{}")
            .await
            .map(drop),
    );
    assert_eq!(
        f.store
            .list_webhooks(b, None, page(10, 0))
            .await
            .unwrap()
            .total,
        0
    );

    f.store.delete_webhook(a, &hook.id).await.unwrap();
    assert_eq!(f.store.get_webhook(a, &hook.id).await.unwrap(), None);
}

async fn webhook_lists_search_urls_and_page(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let base = Timestamp::now().as_millis();
    for (i, url) in [
        "https://Alpha.example/x",
        "https://beta.example/a_b",
        "https://beta.example/aXb",
    ]
    .into_iter()
    .enumerate()
    {
        let mut new = new_webhook(account, url);
        new.created_at = Timestamp::from_millis(base + i as i64);
        f.store.create_webhook(&new, 10).await.unwrap();
    }
    let urls = |search: Option<&'static str>, page: Page| {
        let store = f.store.clone();
        async move {
            let listed = store.list_webhooks(account, search, page).await.unwrap();
            let urls: Vec<_> = listed.items.into_iter().map(|w| w.url).collect();
            (listed.total, urls)
        }
    };
    let (total, newest) = urls(None, page(2, 0)).await;
    assert_eq!(total, 3);
    assert_eq!(
        newest,
        ["https://beta.example/aXb", "https://beta.example/a_b"]
    );
    let (_, oldest) = urls(None, page(2, 2)).await;
    assert_eq!(oldest, ["https://Alpha.example/x"]);
    assert_eq!(urls(Some("ALPHA"), page(10, 0)).await.0, 1);
    assert_eq!(
        urls(Some("a_b"), page(10, 0)).await.1,
        ["https://beta.example/a_b"]
    );
}

async fn a_lease_holds_a_delivery_for_one_node(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let hook = f
        .store
        .create_webhook(&new_webhook(account, "https://a.example/hook"), 10)
        .await
        .unwrap();
    queue(&f.store, &hook, 1, 10).await;
    let (a, b) = (NodeId::new("node-a"), NodeId::new("node-b"));
    let now = Timestamp::now();
    let until = Timestamp::from_millis(now.as_millis() + 30_000);
    assert!(f.store.next_delivery_due().await.unwrap().unwrap() <= now);

    let claimed = f.store.claim_deliveries(&a, now, until, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].url, hook.url);
    assert_eq!(
        claimed[0].secret.as_deref().unwrap(),
        "whsec_contract-secret"
    );
    let delivery = claimed[0].delivery.clone();
    // Held: another node gets nothing until the lease runs out, then it takes it over.
    assert!(f
        .store
        .claim_deliveries(&b, now, until, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(f.store.next_delivery_due().await.unwrap(), Some(until));
    let after = Timestamp::from_millis(until.as_millis() + 1);
    let later = Timestamp::from_millis(after.as_millis() + 30_000);
    let taken = f
        .store
        .claim_deliveries(&b, after, later, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].delivery.id, delivery.id);

    // The node that lost the lease cannot record its attempt; the holder can.
    let attempt = |outcome| Attempt {
        delivery_id: delivery.id.clone(),
        webhook_id: hook.id.clone(),
        at: after,
        status_code: Some(200),
        error: None,
        outcome,
    };
    assert!(!f
        .store
        .record_attempt(&a, &attempt(AttemptOutcome::Delivered), 3)
        .await
        .unwrap());
    f.store
        .record_attempt(&b, &attempt(AttemptOutcome::Delivered), 3)
        .await
        .unwrap();
    let log = f
        .store
        .list_deliveries(account, &hook.id, page(10, 0), i64::MAX)
        .await
        .unwrap();
    assert_eq!(log.items[0].status, DeliveryStatus::Success);
    assert_eq!(log.items[0].attempts, 1);
    assert_eq!(f.store.next_delivery_due().await.unwrap(), None);
}

async fn racing_claimers_never_share_a_delivery(backend: Backend) {
    const DELIVERIES: usize = 40;
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let hook = f
        .store
        .create_webhook(&new_webhook(account, "https://a.example/hook"), 10)
        .await
        .unwrap();
    queue(&f.store, &hook, DELIVERIES, 10).await;
    let now = Timestamp::now();
    let until = Timestamp::from_millis(now.as_millis() + 60_000);
    let nodes = [
        (NodeId::new("node-a"), f.store.clone()),
        (NodeId::new("node-b"), f.second_node().await),
        (NodeId::new("node-c"), f.second_node().await),
    ];
    let claimers: Vec<_> = nodes
        .into_iter()
        .map(|(node, store)| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_deliveries(&node, now, until, 3).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|d| d.delivery.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), all.len(), "a delivery was leased twice");
    assert_eq!(all.len(), DELIVERIES);
}

async fn failures_in_a_row_disable_a_webhook(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let hook = f
        .store
        .create_webhook(&new_webhook(account, "https://a.example/hook"), 10)
        .await
        .unwrap();
    queue(&f.store, &hook, 3, 10).await;
    let node = NodeId::new("node-a");
    let now = Timestamp::now();
    let until = Timestamp::from_millis(now.as_millis() + 30_000);
    let claimed = f
        .store
        .claim_deliveries(&node, now, until, 2)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let mut disabled = Vec::new();
    for due in &claimed {
        let attempt = Attempt {
            delivery_id: due.delivery.id.clone(),
            webhook_id: hook.id.clone(),
            at: now,
            status_code: Some(500),
            error: Some("answered HTTP 500".to_owned()),
            outcome: AttemptOutcome::RetryAt(until),
        };
        disabled.push(f.store.record_attempt(&node, &attempt, 2).await.unwrap());
    }
    assert_eq!(disabled, [false, true]);
    let hook = f
        .store
        .get_webhook(account, &hook.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!hook.enabled);
    // A disabled webhook receives nothing: its pending deliveries failed.
    let log = f
        .store
        .list_deliveries(account, &hook.id, page(10, 0), i64::MAX)
        .await
        .unwrap();
    assert!(log.items.iter().all(|d| d.status == DeliveryStatus::Failed));
    let later = Timestamp::from_millis(until.as_millis() + 1);
    assert!(f
        .store
        .claim_deliveries(&node, later, later, 10)
        .await
        .unwrap()
        .is_empty());

    // Enabled again, it starts from no failures.
    let enable = WebhookChanges {
        enabled: Some(true),
        ..WebhookChanges::default()
    };
    assert!(
        f.store
            .update_webhook(account, &hook.id, &enable)
            .await
            .unwrap()
            .enabled
    );
}

async fn delivery_logs_end_by_bytes_and_skip_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let hook = f
        .store
        .create_webhook(&new_webhook(account, "https://a.example/hook"), 10)
        .await
        .unwrap();
    queue(&f.store, &hook, 7, 600).await;
    let everything = f
        .store
        .list_deliveries(account, &hook.id, page(100, 0), i64::MAX)
        .await
        .unwrap();
    assert_eq!(everything.items.len(), 7);
    let expected: Vec<_> = everything.items.iter().map(|d| d.id.clone()).collect();

    for bytes in [1, 1_100, 2_500] {
        let mut seen = Vec::new();
        let mut offset = 0;
        while offset < everything.total {
            let listed = f
                .store
                .list_deliveries(account, &hook.id, page(5, offset), bytes)
                .await
                .unwrap();
            assert!(!listed.items.is_empty(), "the first delivery always comes");
            let weight: i64 = listed
                .items
                .iter()
                .map(|d| d.payload.len() as i64 + 400)
                .sum();
            assert!(listed.items.len() == 1 || weight <= bytes);
            offset += listed.items.len() as i64;
            seen.extend(listed.items.into_iter().map(|d| d.id));
        }
        assert_eq!(seen, expected, "pages of at most {bytes} bytes");
    }
}
