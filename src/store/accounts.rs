//! Accounts and their API keys: `AccountStore`, and its implementation on either database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect};
use super::sql::{conflict_or_database, parse, SqlStore};
use super::{Entity, StoreError, StoreResult};
use crate::domain::limits::Limit;
use crate::domain::{Account, AccountId, ApiKey, ApiKeyId, Timestamp};

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    pub prefix: String,
    /// What the key is for, as its creator named it (may be empty).
    pub name: String,
    pub created_at: Timestamp,
}

/// The account a valid, unrevoked key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOwner {
    pub key_id: ApiKeyId,
    pub account_id: AccountId,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, account: &Account, first_key: &NewApiKey) -> StoreResult<()>;
    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>>;

    /// `Invalid` (field `keys`) when the account already holds `max_keys` unrevoked keys.
    async fn create_api_key(&self, key: &NewApiKey, max_keys: i64) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, account_id: AccountId) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked; `NotFound` if the account has no such key.
    async fn revoke_api_key(&self, account_id: AccountId, key_id: ApiKeyId) -> StoreResult<ApiKey>;
    /// The owner of an unrevoked key with this hash.
    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<KeyOwner>>;
    /// Records that a key was used at `at` (never moving the time back).
    async fn touch_api_key(&self, key_id: ApiKeyId, at: Timestamp) -> StoreResult<()>;
}

const API_KEY_COLUMNS: &str = "id, account_id, prefix, name, created_at, last_used_at, revoked_at";

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    created_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(row: AccountRow) -> StoreResult<Self> {
        Ok(Account {
            id: parse(&row.id, "account id")?,
            name: row.name,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    account_id: String,
    prefix: String,
    name: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> StoreResult<Self> {
        Ok(ApiKey {
            id: parse(&row.id, "api key id")?,
            account_id: parse(&row.account_id, "account id")?,
            prefix: row.prefix,
            name: row.name,
            created_at: Timestamp::from_millis(row.created_at),
            last_used_at: row.last_used_at.map(Timestamp::from_millis),
            revoked_at: row.revoked_at.map(Timestamp::from_millis),
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyOwnerRow {
    id: String,
    account_id: String,
}

impl TryFrom<KeyOwnerRow> for KeyOwner {
    type Error = StoreError;

    fn try_from(row: KeyOwnerRow) -> StoreResult<Self> {
        Ok(KeyOwner {
            key_id: parse(&row.id, "api key id")?,
            account_id: parse(&row.account_id, "account id")?,
        })
    }
}

#[async_trait]
impl<DB> AccountStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn create_account(&self, account: &Account, first_key: &NewApiKey) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(account.id.to_string())
            .bind(&account.name)
            .bind(account.created_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or_database(e, Entity::Account))?;
        Self::insert_api_key(&mut tx, first_key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        let row: Option<AccountRow> =
            sqlx::query_as("SELECT id, name, created_at FROM accounts WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.reads)
                .await?;
        row.map(Account::try_from).transpose()
    }

    async fn create_api_key(&self, key: &NewApiKey, max_keys: i64) -> StoreResult<ApiKey> {
        let mut tx = self.pool.begin().await?;
        // A write first: it takes the lock (SQLite: the database's; PostgreSQL: the account's
        // row), so that concurrent creations count one after the other.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(key.account_id.to_string())
            .execute(&mut *tx)
            .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(key.account_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        Limit::ApiKeys(max_keys).check_one_more(live)?;
        Self::insert_api_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(ApiKey {
            id: key.id,
            account_id: key.account_id,
            prefix: key.prefix.clone(),
            name: key.name.clone(),
            created_at: key.created_at,
            last_used_at: None,
            revoked_at: None,
        })
    }

    async fn list_api_keys(&self, account_id: AccountId) -> StoreResult<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<ApiKeyRow> = sqlx::query_as(&sql)
            .bind(account_id.to_string())
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_api_key(&self, account_id: AccountId, key_id: ApiKeyId) -> StoreResult<ApiKey> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE id = $2 AND account_id = $3 RETURNING {API_KEY_COLUMNS}"
        );
        let row: ApiKeyRow = sqlx::query_as(&sql)
            .bind(Timestamp::now().as_millis())
            .bind(key_id.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(Entity::ApiKey))?;
        row.try_into()
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<KeyOwner>> {
        let row: Option<KeyOwnerRow> = sqlx::query_as(
            "SELECT id, account_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash.to_owned())
        .fetch_optional(&self.reads)
        .await?;
        row.map(KeyOwner::try_from).transpose()
    }

    async fn touch_api_key(&self, key_id: ApiKeyId, at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(at.as_millis())
        .bind(key_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    pub(super) async fn insert_api_key(
        conn: &mut DB::Connection,
        key: &NewApiKey,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, key_hash, prefix, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.to_string())
        .bind(key.account_id.to_string())
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(&key.name)
        .bind(key.created_at.as_millis())
        .execute(conn)
        .await
        .map_err(|e| conflict_or_database(e, Entity::ApiKey))?;
        Ok(())
    }
}
