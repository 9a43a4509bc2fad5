//! What every contract test starts from: a store on a fresh database, and accounts, rooms
//! and users made through the store itself.

use std::time::Duration;

use collabkit::domain::{Account, AccountId, ApiKeyId, Room, RoomId, Timestamp, User, UserId};
use collabkit::store::sealing::{Sealer, SecretsKey};
use collabkit::store::{self, DynStore, NewApiKey, NewRoom, NewUser, RoomScope, StoreOptions};

pub use crate::database::Backend;
use crate::database::TestDatabase;

/// The key stored secrets are sealed with (32 bytes in base64), as a cluster's nodes share one.
const SECRETS_KEY: &str = "dGVzdC1zZWNyZXRzLWtleS10ZXN0LXNlY3JldHMta2U=";

/// Runs each contract once per backend: `contract!(a, b);` makes `a::{sqlite, postgres}`, and
/// so on, each calling `a(backend)`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::fixture::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::fixture::Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use contract;

pub struct Fixture {
    pub store: DynStore,
    // Declared last: the database outlives the store that uses it.
    db: TestDatabase,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Self {
        Self::on(TestDatabase::new(backend).await).await
    }

    /// A fixture on an existing database.
    pub async fn on(db: TestDatabase) -> Self {
        let store = open(&db.url).await;
        Self { store, db }
    }

    /// Another node on the same database: a store with a pool of its own.
    pub async fn second_node(&self) -> DynStore {
        open(&self.db.url).await
    }

    /// A new account (with one API key).
    pub async fn account(&self) -> AccountId {
        let account = Account {
            id: AccountId::new(),
            name: "Contract account".to_owned(),
            created_at: Timestamp::now(),
        };
        self.store
            .create_account(&account, &key(account.id))
            .await
            .unwrap();
        account.id
    }

    /// A new room of `account`.
    pub async fn room(&self, account: AccountId) -> RoomScope {
        let room = self
            .room_with(account, "Room", None, Timestamp::now())
            .await;
        RoomScope {
            account_id: account,
            room_id: room.id,
        }
    }

    pub async fn room_with(
        &self,
        account: AccountId,
        name: &str,
        custom_id: Option<&str>,
        created_at: Timestamp,
    ) -> Room {
        self.store
            .create_room(&NewRoom {
                id: RoomId::new(),
                account_id: account,
                name: name.to_owned(),
                custom_id: custom_id.map(str::to_owned),
                created_at,
            })
            .await
            .unwrap()
    }

    /// A new user of the room.
    pub async fn user(&self, scope: RoomScope, name: &str) -> User {
        self.store
            .create_user(&new_user(scope, name))
            .await
            .unwrap()
            .0
    }

    /// Runs a statement straight on the database, behind the store's back.
    pub async fn execute(&self, sql: &str) {
        if self.db.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    /// The one number a `SELECT COUNT(*) ...` answers, read straight from the database.
    pub async fn count(&self, sql: &str) -> i64 {
        if self.db.url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(&self.db.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

/// A store on the database at `url` (migrating it first, as every node does at start-up).
pub async fn open(url: &str) -> DynStore {
    let options = StoreOptions {
        max_connections: 5,
        acquire_timeout: Duration::from_secs(30),
    };
    let sealer = Sealer::new(&SecretsKey::parse(SECRETS_KEY).unwrap(), &[]);
    store::connect(url, &options, sealer).await.unwrap()
}

/// A new API key of `account`, with a hash of its own.
pub fn key(account: AccountId) -> NewApiKey {
    let id = ApiKeyId::new();
    NewApiKey {
        id,
        account_id: account,
        key_hash: format!("hash-of-{id}"),
        prefix: "ck_live_test".to_owned(),
        name: "test key".to_owned(),
        created_at: Timestamp::now(),
    }
}

pub fn new_user(scope: RoomScope, name: &str) -> NewUser {
    NewUser {
        id: UserId::new(),
        account_id: scope.account_id,
        room_id: scope.room_id,
        name: name.to_owned(),
        profile_picture: None,
        custom_id: None,
        created_at: Timestamp::now(),
    }
}

/// The scope of another account's view of a room: every ID in it is unknown there.
pub fn seen_by(scope: RoomScope, account: AccountId) -> RoomScope {
    RoomScope {
        account_id: account,
        room_id: scope.room_id,
    }
}
