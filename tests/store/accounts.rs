//! Accounts and their API keys.

use collabkit::domain::{Account, AccountId, Timestamp};
use collabkit::store::{Entity, KeyOwner, StoreError};

use crate::fixture::{contract, key, Backend, Fixture};

contract!(
    accounts_and_keys_round_trip,
    keys_are_scoped_to_their_account,
    revoked_keys_stop_working_and_free_a_slot,
    concurrent_key_creations_cannot_exceed_the_limit,
);

async fn accounts_and_keys_round_trip(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = Account {
        id: AccountId::new(),
        name: "Acme".to_owned(),
        created_at: Timestamp::from_millis(1_700_000_000_000),
    };
    let first = key(account.id);
    f.store.create_account(&account, &first).await.unwrap();

    assert_eq!(
        f.store.get_account(account.id).await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(f.store.get_account(AccountId::new()).await.unwrap(), None);
    assert_eq!(
        f.store.find_api_key(&first.key_hash).await.unwrap(),
        Some(KeyOwner {
            key_id: first.id,
            account_id: account.id
        })
    );
    assert_eq!(f.store.find_api_key("no such hash").await.unwrap(), None);

    // The same account twice, and a key hash that is taken, are conflicts; neither leaves
    // anything behind.
    let again = f.store.create_account(&account, &key(account.id)).await;
    assert!(matches!(again, Err(StoreError::Conflict(Entity::Account))));
    let mut taken = key(account.id);
    taken.key_hash = first.key_hash.clone();
    let reused = f.store.create_api_key(&taken, 10).await;
    assert!(matches!(reused, Err(StoreError::Conflict(Entity::ApiKey))));
    assert_eq!(f.store.list_api_keys(account.id).await.unwrap().len(), 1);
}

async fn keys_are_scoped_to_their_account(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.account().await, f.account().await);
    let mut second = key(a);
    second.created_at = Timestamp::from_millis(Timestamp::now().as_millis() + 1_000);
    let created = f.store.create_api_key(&second, 10).await.unwrap();
    assert_eq!(created.revoked_at, None);

    // Oldest first, and only the account's own.
    let listed = f.store.list_api_keys(a).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].id, second.id);
    assert!(listed.iter().all(|k| k.account_id == a));
    assert!(!f
        .store
        .list_api_keys(b)
        .await
        .unwrap()
        .iter()
        .any(|k| k.id == second.id));

    let revoked = f.store.revoke_api_key(b, second.id).await;
    assert!(matches!(revoked, Err(StoreError::NotFound(Entity::ApiKey))));
    assert!(f
        .store
        .find_api_key(&second.key_hash)
        .await
        .unwrap()
        .is_some());
}

async fn revoked_keys_stop_working_and_free_a_slot(backend: Backend) {
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let second = key(account);
    f.store.create_api_key(&second, 2).await.unwrap();
    match f.store.create_api_key(&key(account), 2).await {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "keys"),
        other => panic!("a third key under a limit of two: {other:?}"),
    }

    let revoked = f.store.revoke_api_key(account, second.id).await.unwrap();
    let revoked_at = revoked.revoked_at.expect("revoked");
    assert_eq!(f.store.find_api_key(&second.key_hash).await.unwrap(), None);
    // Revoking again changes nothing: the first time stays.
    let again = f.store.revoke_api_key(account, second.id).await.unwrap();
    assert_eq!(again.revoked_at, Some(revoked_at));

    // A revoked key no longer counts against the limit.
    f.store.create_api_key(&key(account), 2).await.unwrap();
}

async fn concurrent_key_creations_cannot_exceed_the_limit(backend: Backend) {
    const MAX_KEYS: i64 = 4;
    let f = Fixture::new(backend).await;
    let account = f.account().await;
    let attempts = (0..8).map(|_| {
        let store = f.store.clone();
        tokio::spawn(async move { store.create_api_key(&key(account), MAX_KEYS).await })
    });
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Invalid { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // The account's first key is one of the four.
    assert_eq!(created, MAX_KEYS - 1);
    let live = f.store.list_api_keys(account).await.unwrap();
    assert_eq!(live.len() as i64, MAX_KEYS);
}
