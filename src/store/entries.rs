//! Persistence of store schemas (per account) and store entries (per room). Every write to
//! a room's entries takes the room's next version under the room's row lock, so that writes
//! have one order that every client converges to.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{Page, PageSize, RoomScope, StoreError, StoreResult};
use crate::domain::schema::{StoreName, StoreSchema};
use crate::domain::{AccountId, Timestamp, UserId};

/// What an entry weighs in a page (see `page_bytes`): its key and value as stored, and
/// room for the rest of its JSON (version, time, author).
pub const ENTRY_BYTES: &str = "octet_length(entry_key) + octet_length(entry_value) + 96";
/// What a change weighs: a deletion has no value.
pub const CHANGE_BYTES: &str =
    "octet_length(entry_key) + COALESCE(octet_length(entry_value), 0) + 64";

#[derive(Debug, Clone)]
pub struct SchemaRecord {
    pub name: StoreName,
    pub schema: StoreSchema,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub use crate::domain::schema::SchemaWrite;

#[derive(Debug, Clone)]
pub struct SchemaSaved {
    pub record: SchemaRecord,
    pub created: bool,
}

/// A live entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Map<String, Value>,
    pub version: i64,
    pub updated_at: Timestamp,
    pub updated_by: Option<UserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryAction {
    Set,
    Update,
    Delete,
}

impl EntryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A write asked for; the value is checked against the store's schema inside the write's
/// transaction (an update against the entry as it is then).
#[derive(Debug, Clone)]
pub enum EntryWrite {
    Set(Value),
    Update(Value),
    Delete,
}

#[derive(Debug, Clone, Copy)]
pub struct EntryLimits {
    pub max_entries: i64,
    pub max_entry_bytes: usize,
}

/// A change applied to an entry, with the version it got.
#[derive(Debug, Clone)]
pub struct EntryChange {
    pub store: StoreName,
    pub key: String,
    pub action: EntryAction,
    /// The entry after the change; `None` when deleted.
    pub value: Option<Map<String, Value>>,
    pub version: i64,
}

/// What a client that has seen up to some version needs.
#[derive(Debug, Clone)]
pub struct Changes {
    pub changes: Vec<EntryChange>,
    /// The room's store version now.
    pub version: i64,
    /// The client is too far behind (or had nothing): `changes` is the whole contents, as
    /// `set`s, and the client must drop what it holds first.
    pub reset: bool,
    /// Only the first `limit` changes are here: ask for the rest.
    pub has_more: bool,
}

/// A page of live entries.
#[derive(Debug, Clone)]
pub struct EntryList {
    pub entries: Vec<Entry>,
    /// Live entries in the store, all pages together.
    pub total: i64,
    /// The room's store version when read.
    pub version: i64,
    /// More entries follow this page (it was full, in items or in bytes).
    pub has_more: bool,
}

/// Where a sync starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncFrom {
    /// After this version (0: from nothing, a reset).
    Since(i64),
    /// The next page of a reset: live entries after this version.
    ResetAfter(i64),
}

/// Which live entries to list.
#[derive(Debug, Clone)]
pub enum EntryPage {
    /// `limit` entries from `offset` (REST).
    Offset(Page),
    /// `limit` entries after this key (the socket's paging, stable under writes).
    AfterKey { after: Option<String>, limit: i64 },
}

#[async_trait]
pub trait EntryStore: Send + Sync {
    async fn list_schemas(&self, account_id: AccountId) -> StoreResult<Vec<SchemaRecord>>;
    async fn get_schema(
        &self,
        account_id: AccountId,
        name: &StoreName,
    ) -> StoreResult<Option<SchemaRecord>>;
    /// Saves a schema; `Invalid` when it conflicts with the one in place, `Invalid` (field
    /// `store`) when the account already has `max_stores` stores.
    async fn save_schema(
        &self,
        account_id: AccountId,
        name: &StoreName,
        schema: &StoreSchema,
        mode: SchemaWrite,
        max_stores: i64,
    ) -> StoreResult<SchemaSaved>;

    /// Each store of the room with its number of live entries, and the room's version.
    async fn count_entries(&self, scope: RoomScope) -> StoreResult<(Vec<(StoreName, i64)>, i64)>;
    async fn get_entry(
        &self,
        scope: RoomScope,
        store: &StoreName,
        key: &str,
    ) -> StoreResult<Option<Entry>>;
    /// Live entries by key, a page at a time, and the room's version.
    /// A page of live entries, of at most `max_bytes` (see `page_bytes`).
    async fn list_entries(
        &self,
        scope: RoomScope,
        store: &StoreName,
        page: EntryPage,
        max_bytes: i64,
    ) -> StoreResult<EntryList>;
    /// Applies a write; `None` when deleting an entry that does not exist (nothing changes).
    /// `NotFound(Room)`, `NotFound(Store)` (no schema), `NotFound(Entry)` (update of a missing
    /// key), `Invalid` (the schema refuses it, or the store is full), `TooLarge`.
    async fn write_entry(
        &self,
        scope: RoomScope,
        store: &StoreName,
        key: &str,
        write: &EntryWrite,
        limits: EntryLimits,
        by: Option<UserId>,
    ) -> StoreResult<Option<EntryChange>>;
    /// A page of changes (of one store, or all) in version order: those after `since`, or
    /// the whole live contents if `since` is 0 or older than the forgotten tombstones (a
    /// reset); a reset continues with `SyncFrom::ResetAfter`.
    async fn changes_since(
        &self,
        scope: RoomScope,
        store: Option<&StoreName>,
        from: SyncFrom,
        size: PageSize,
    ) -> StoreResult<Changes>;
    /// Forgets deleted entries older than `before`; returns how many.
    async fn purge_tombstones(&self, before: Timestamp) -> StoreResult<u64>;
}

pub(super) fn parse_schema_row(name: &str, fields: &str) -> StoreResult<(StoreName, StoreSchema)> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("store schema {name}: {what}"));
    let name = StoreName::parse("name", name).map_err(|_| corrupt("name"))?;
    let value: Value = serde_json::from_str(fields).map_err(|_| corrupt("fields"))?;
    let schema = StoreSchema::parse("schema", &value, usize::MAX).map_err(|_| corrupt("fields"))?;
    Ok((name, schema))
}

pub(super) fn parse_value(key: &str, text: &str) -> StoreResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(format!("entry {key}: value"))),
    }
}

pub(super) fn parse_user(text: Option<String>) -> StoreResult<Option<UserId>> {
    text.map(|t| {
        t.parse()
            .map_err(|_| StoreError::Corrupt(format!("entry author {t}")))
    })
    .transpose()
}

/// The new value of an entry after `write`, checked against `schema`.
pub(super) fn apply_write(
    schema: &StoreSchema,
    current: Option<&Map<String, Value>>,
    write: &EntryWrite,
) -> StoreResult<(EntryAction, Option<Map<String, Value>>)> {
    match write {
        EntryWrite::Set(value) => Ok((EntryAction::Set, Some(schema.check_set(value)?))),
        EntryWrite::Update(patch) => {
            let current = current.ok_or(StoreError::NotFound(super::Entity::Entry))?;
            Ok((
                EntryAction::Update,
                Some(schema.check_update(current, patch)?),
            ))
        }
        EntryWrite::Delete => Ok((EntryAction::Delete, None)),
    }
}

/// Implements `EntryStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_entry_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::entries::EntryStore for $store {
            async fn list_schemas(
                &self,
                account_id: $crate::domain::AccountId,
            ) -> $crate::store::StoreResult<Vec<$crate::store::entries::SchemaRecord>> {
                let rows = sqlx::query(
                    "SELECT name, fields, created_at, updated_at FROM store_schemas \
                     WHERE account_id = $1 ORDER BY name",
                )
                .bind(account_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|row| entry_rows::schema(row)).collect()
            }

            async fn get_schema(
                &self,
                account_id: $crate::domain::AccountId,
                name: &$crate::domain::schema::StoreName,
            ) -> $crate::store::StoreResult<Option<$crate::store::entries::SchemaRecord>> {
                let mut conn = self.pool.acquire().await?;
                entry_rows::load_schema(&mut conn, account_id, name, entry_rows::Lock::None).await
            }

            async fn save_schema(
                &self,
                account_id: $crate::domain::AccountId,
                name: &$crate::domain::schema::StoreName,
                schema: &$crate::domain::schema::StoreSchema,
                mode: $crate::store::entries::SchemaWrite,
                max_stores: i64,
            ) -> $crate::store::StoreResult<$crate::store::entries::SchemaSaved> {
                use $crate::domain::limits::Limit;
                use $crate::domain::schema::{check_change, Registration};
                use $crate::store::StoreError;
                let now = $crate::domain::Timestamp::now();
                let fields = schema.to_json().to_string();
                let mut tx = self.pool.begin().await?;
                // A write first: it takes the lock (SQLite: the database's; PostgreSQL: the
                // account's row) before anything is read.
                let locked = sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
                    .bind(account_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                if locked.rows_affected() == 0 {
                    return Err(StoreError::NotFound($crate::store::Entity::Account));
                }
                let existing =
                    entry_rows::load_schema(&mut tx, account_id, name, entry_rows::Lock::Update).await?;
                let registration =
                    mode.registration(name, existing.as_ref().map(|record| &record.schema), schema)?;
                let saved = match (existing, registration) {
                    (Some(record), Registration::Unchanged) => {
                        $crate::store::entries::SchemaSaved { record, created: false }
                    }
                    (Some(record), Registration::Change) => {
                        let used: i64 = sqlx::Row::try_get(
                            &sqlx::query(
                                "SELECT COUNT(*) AS n FROM store_entries e \
                                 JOIN rooms r ON r.id = e.room_id \
                                 WHERE r.account_id = $1 AND e.store_name = $2",
                            )
                            .bind(account_id.to_string())
                            .bind(name.as_str())
                            .fetch_one(&mut *tx)
                            .await?,
                            "n",
                        )?;
                        check_change(&record.schema, schema, used > 0)?;
                        sqlx::query(
                            "UPDATE store_schemas SET fields = $1, updated_at = $2 \
                             WHERE account_id = $3 AND name = $4",
                        )
                        .bind(&fields)
                        .bind(now.as_millis())
                        .bind(account_id.to_string())
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                        $crate::store::entries::SchemaSaved {
                            record: $crate::store::entries::SchemaRecord {
                                name: name.clone(),
                                schema: schema.clone(),
                                created_at: record.created_at,
                                updated_at: now,
                            },
                            created: false,
                        }
                    }
                    _ => {
                        let count: i64 = sqlx::Row::try_get(
                            &sqlx::query("SELECT COUNT(*) AS n FROM store_schemas WHERE account_id = $1")
                                .bind(account_id.to_string())
                                .fetch_one(&mut *tx)
                                .await?,
                            "n",
                        )?;
                        Limit::Stores(max_stores).check_one_more(count)?;
                        sqlx::query(
                            "INSERT INTO store_schemas (account_id, name, fields, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $4)",
                        )
                        .bind(account_id.to_string())
                        .bind(name.as_str())
                        .bind(&fields)
                        .bind(now.as_millis())
                        .execute(&mut *tx)
                        .await?;
                        $crate::store::entries::SchemaSaved {
                            record: $crate::store::entries::SchemaRecord {
                                name: name.clone(),
                                schema: schema.clone(),
                                created_at: now,
                                updated_at: now,
                            },
                            created: true,
                        }
                    }
                };
                tx.commit().await?;
                Ok(saved)
            }

            async fn count_entries(
                &self,
                scope: $crate::store::RoomScope,
            ) -> $crate::store::StoreResult<(Vec<($crate::domain::schema::StoreName, i64)>, i64)> {
                let version = entry_rows::room_versions(&mut *self.pool.acquire().await?, scope)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?
                    .0;
                let rows = sqlx::query(
                    "SELECT s.name, (SELECT COUNT(*) FROM store_entries e \
                       WHERE e.room_id = $1 AND e.store_name = s.name \
                       AND e.entry_value IS NOT NULL) AS n \
                     FROM store_schemas s WHERE s.account_id = $2 ORDER BY s.name",
                )
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                let mut counts = Vec::with_capacity(rows.len());
                for row in &rows {
                    let name: String = sqlx::Row::try_get(row, "name")?;
                    let n: i64 = sqlx::Row::try_get(row, "n")?;
                    let name = $crate::domain::schema::StoreName::parse("name", &name)
                        .map_err(|_| $crate::store::StoreError::Corrupt(format!("store name {name}")))?;
                    counts.push((name, n));
                }
                Ok((counts, version))
            }

            async fn get_entry(
                &self,
                scope: $crate::store::RoomScope,
                store: &$crate::domain::schema::StoreName,
                key: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::entries::Entry>> {
                let row = sqlx::query(
                    "SELECT e.entry_key, e.entry_value, e.version, e.updated_at, e.updated_by \
                     FROM store_entries e JOIN rooms r ON r.id = e.room_id \
                     WHERE e.room_id = $1 AND r.account_id = $2 AND e.store_name = $3 \
                       AND e.entry_key = $4 AND e.entry_value IS NOT NULL",
                )
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .bind(store.as_str())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| entry_rows::entry(&row)).transpose()
            }

            async fn list_entries(
                &self,
                scope: $crate::store::RoomScope,
                store: &$crate::domain::schema::StoreName,
                page: $crate::store::entries::EntryPage,
                max_bytes: i64,
            ) -> $crate::store::StoreResult<$crate::store::entries::EntryList> {
                let version = entry_rows::room_versions(&mut *self.pool.acquire().await?, scope)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?
                    .0;
                let total: i64 = sqlx::Row::try_get(
                    &sqlx::query(
                        "SELECT COUNT(*) AS n FROM store_entries \
                         WHERE room_id = $1 AND store_name = $2 AND entry_value IS NOT NULL",
                    )
                    .bind(scope.room_id.to_string())
                    .bind(store.as_str())
                    .fetch_one(&self.pool)
                    .await?,
                    "n",
                )?;
                use $crate::store::page_bytes;
                let mut query = sqlx::QueryBuilder::<$db>::new(page_bytes::start(
                    $crate::store::entries::ENTRY_BYTES,
                    "entry_key",
                ));
                query
                    .push(
                        "SELECT entry_key, entry_value, version, updated_at, updated_by \
                         FROM store_entries WHERE entry_value IS NOT NULL AND room_id = ",
                    )
                    .push_bind(scope.room_id.to_string())
                    .push(" AND store_name = ")
                    .push_bind(store.as_str().to_owned());
                // One more than asked: whether there is more.
                let limit = match page {
                    $crate::store::entries::EntryPage::Offset(page) => {
                        query
                            .push(" ORDER BY entry_key LIMIT ")
                            .push_bind(page.limit.saturating_add(1))
                            .push(" OFFSET ")
                            .push_bind(page.offset);
                        page.limit
                    }
                    $crate::store::entries::EntryPage::AfterKey { after, limit } => {
                        if let Some(after) = after {
                            query.push(" AND entry_key > ").push_bind(after);
                        }
                        query
                            .push(" ORDER BY entry_key LIMIT ")
                            .push_bind(limit.saturating_add(1));
                        limit
                    }
                };
                query
                    .push(page_bytes::END)
                    .push_bind(max_bytes)
                    .push(page_bytes::end_order("entry_key"));
                let mut rows = query.build().fetch_all(&self.pool).await?;
                let totals = rows
                    .iter()
                    .map(|row| sqlx::Row::try_get::<i64, _>(row, "page_bytes"))
                    .collect::<Result<Vec<_>, _>>()?;
                let fit = page_bytes::keep_within(totals, max_bytes).min(limit.max(1) as usize);
                let has_more = rows.len() > fit;
                rows.truncate(fit);
                let entries = rows
                    .iter()
                    .map(|row| entry_rows::entry(row))
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                Ok($crate::store::entries::EntryList { entries, total, version, has_more })
            }

            async fn write_entry(
                &self,
                scope: $crate::store::RoomScope,
                store: &$crate::domain::schema::StoreName,
                key: &str,
                write: &$crate::store::entries::EntryWrite,
                limits: $crate::store::entries::EntryLimits,
                by: Option<$crate::domain::UserId>,
            ) -> $crate::store::StoreResult<Option<$crate::store::entries::EntryChange>> {
                use $crate::store::{Entity, StoreError};
                let now = $crate::domain::Timestamp::now();
                let mut tx = self.pool.begin().await?;
                // The room's next version, under its row lock: writes to a room are ordered.
                let row = sqlx::query(
                    "UPDATE rooms SET store_version = store_version + 1 \
                     WHERE id = $1 AND account_id = $2 RETURNING store_version",
                )
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound(Entity::Room))?;
                let version: i64 = sqlx::Row::try_get(&row, "store_version")?;
                let schema = entry_rows::load_schema(&mut tx, scope.account_id, store, entry_rows::Lock::Share)
                    .await?
                    .ok_or(StoreError::NotFound(Entity::Store))?
                    .schema;
                let current = sqlx::query(
                    "SELECT entry_value FROM store_entries \
                     WHERE room_id = $1 AND store_name = $2 AND entry_key = $3",
                )
                .bind(scope.room_id.to_string())
                .bind(store.as_str())
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| sqlx::Row::try_get::<Option<String>, _>(&row, "entry_value"))
                .transpose()?
                .flatten()
                .map(|text| $crate::store::entries::parse_value(key, &text))
                .transpose()?;
                if current.is_none() && matches!(write, $crate::store::entries::EntryWrite::Delete) {
                    // Nothing to delete: the version taken above is given back.
                    return Ok(None);
                }
                let (action, value) =
                    $crate::store::entries::apply_write(&schema, current.as_ref(), write)?;
                let text = value.as_ref().map(|v| serde_json::Value::Object(v.clone()).to_string());
                if text.as_ref().is_some_and(|t| t.len() > limits.max_entry_bytes) {
                    return Err(StoreError::TooLarge { limit: limits.max_entry_bytes });
                }
                if current.is_none() {
                    let live: i64 = sqlx::Row::try_get(
                        &sqlx::query(
                            "SELECT COUNT(*) AS n FROM store_entries \
                             WHERE room_id = $1 AND store_name = $2 AND entry_value IS NOT NULL",
                        )
                        .bind(scope.room_id.to_string())
                        .bind(store.as_str())
                        .fetch_one(&mut *tx)
                        .await?,
                        "n",
                    )?;
                    $crate::domain::limits::Limit::Entries {
                        store: store.as_str(),
                        max: limits.max_entries,
                    }
                    .check_one_more(live)?;
                }
                sqlx::query(
                    "INSERT INTO store_entries \
                       (room_id, store_name, entry_key, entry_value, version, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (room_id, store_name, entry_key) DO UPDATE SET \
                       entry_value = excluded.entry_value, version = excluded.version, \
                       updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(scope.room_id.to_string())
                .bind(store.as_str())
                .bind(key)
                .bind(text)
                .bind(version)
                .bind(now.as_millis())
                .bind(by.map(|u| u.to_string()))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some($crate::store::entries::EntryChange {
                    store: store.clone(),
                    key: key.to_owned(),
                    action,
                    value,
                    version,
                }))
            }

            async fn changes_since(
                &self,
                scope: $crate::store::RoomScope,
                store: Option<&$crate::domain::schema::StoreName>,
                from: $crate::store::entries::SyncFrom,
                size: $crate::store::PageSize,
            ) -> $crate::store::StoreResult<$crate::store::entries::Changes> {
                use $crate::store::entries::SyncFrom;
                // The versions and the rows from one snapshot: a purge between the two reads
                // could otherwise take tombstones the client still needs.
                let mut tx = self
                    .pool
                    .begin_with(<$db as $crate::store::dialect::Dialect>::BEGIN_SNAPSHOT)
                    .await?;
                let (version, purged) = entry_rows::room_versions(&mut tx, scope)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound($crate::store::Entity::Room))?;
                // Behind what was forgotten (or new): the whole contents, live entries only.
                let (reset, after) = match from {
                    SyncFrom::ResetAfter(after) => (true, after),
                    SyncFrom::Since(since) if since <= 0 || since < purged || since > version => {
                        (true, 0)
                    }
                    SyncFrom::Since(since) => (false, since),
                };
                use $crate::store::page_bytes;
                let mut query = sqlx::QueryBuilder::<$db>::new(page_bytes::start(
                    $crate::store::entries::CHANGE_BYTES,
                    "version",
                ));
                query
                    .push(
                        "SELECT store_name, entry_key, entry_value, version FROM store_entries \
                         WHERE room_id = ",
                    )
                    .push_bind(scope.room_id.to_string());
                if reset {
                    query.push(" AND entry_value IS NOT NULL");
                }
                query.push(" AND version > ").push_bind(after);
                if let Some(store) = store {
                    query.push(" AND store_name = ").push_bind(store.as_str().to_owned());
                }
                // One more than asked: whether there is more.
                query
                    .push(" ORDER BY version LIMIT ")
                    .push_bind(size.items.saturating_add(1))
                    .push(page_bytes::END)
                    .push_bind(size.bytes)
                    .push(page_bytes::end_order("version"));
                let mut rows = query.build().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                let totals = rows
                    .iter()
                    .map(|row| sqlx::Row::try_get::<i64, _>(row, "page_bytes"))
                    .collect::<Result<Vec<_>, _>>()?;
                let fit = page_bytes::keep_within(totals, size.bytes).min(size.items.max(1) as usize);
                let has_more = rows.len() > fit;
                rows.truncate(fit);
                let mut changes = Vec::with_capacity(rows.len());
                for row in &rows {
                    let name: String = sqlx::Row::try_get(row, "store_name")?;
                    let key: String = sqlx::Row::try_get(row, "entry_key")?;
                    let value: Option<String> = sqlx::Row::try_get(row, "entry_value")?;
                    let value = value
                        .map(|text| $crate::store::entries::parse_value(&key, &text))
                        .transpose()?;
                    changes.push($crate::store::entries::EntryChange {
                        store: $crate::domain::schema::StoreName::parse("store", &name)
                            .map_err(|_| $crate::store::StoreError::Corrupt(format!("store name {name}")))?,
                        action: if value.is_some() {
                            $crate::store::entries::EntryAction::Set
                        } else {
                            $crate::store::entries::EntryAction::Delete
                        },
                        key,
                        value,
                        version: sqlx::Row::try_get(row, "version")?,
                    });
                }
                Ok($crate::store::entries::Changes { changes, version, reset, has_more })
            }

            async fn purge_tombstones(
                &self,
                before: $crate::domain::Timestamp,
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    // The marker only moves forward, whatever the clocks of the nodes did.
                    "UPDATE rooms SET store_purged_version = CASE \
                       WHEN (SELECT MAX(version) FROM store_entries e WHERE e.room_id = rooms.id \
                             AND e.entry_value IS NULL AND e.updated_at < $1) > store_purged_version \
                       THEN (SELECT MAX(version) FROM store_entries e WHERE e.room_id = rooms.id \
                             AND e.entry_value IS NULL AND e.updated_at < $1) \
                       ELSE store_purged_version END \
                     WHERE id IN (SELECT room_id FROM store_entries \
                                  WHERE entry_value IS NULL AND updated_at < $1)",
                )
                .bind(before.as_millis())
                .execute(&mut *tx)
                .await?;
                let purged = sqlx::query(
                    "DELETE FROM store_entries WHERE entry_value IS NULL AND updated_at < $1",
                )
                .bind(before.as_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(purged)
            }
        }

        mod entry_rows {
            use sqlx::Row as _;

            type DbRow = <$db as sqlx::Database>::Row;

            pub fn schema(row: &DbRow) -> $crate::store::StoreResult<$crate::store::entries::SchemaRecord> {
                let name: String = row.try_get("name")?;
                let fields: String = row.try_get("fields")?;
                let (name, schema) = $crate::store::entries::parse_schema_row(&name, &fields)?;
                Ok($crate::store::entries::SchemaRecord {
                    name,
                    schema,
                    created_at: $crate::domain::Timestamp::from_millis(row.try_get("created_at")?),
                    updated_at: $crate::domain::Timestamp::from_millis(row.try_get("updated_at")?),
                })
            }

            pub fn entry(row: &DbRow) -> $crate::store::StoreResult<$crate::store::entries::Entry> {
                let key: String = row.try_get("entry_key")?;
                let value: String = row.try_get("entry_value")?;
                Ok($crate::store::entries::Entry {
                    value: $crate::store::entries::parse_value(&key, &value)?,
                    key,
                    version: row.try_get("version")?,
                    updated_at: $crate::domain::Timestamp::from_millis(row.try_get("updated_at")?),
                    updated_by: $crate::store::entries::parse_user(row.try_get("updated_by")?)?,
                })
            }

            /// How a schema read inside a write locks the row (PostgreSQL; SQLite has one
            /// writer at a time anyway).
            #[derive(Clone, Copy)]
            pub enum Lock {
                None,
                /// A write to entries: the schema cannot change under it.
                Share,
                /// A change of the schema: entry writes wait for it, it waits for them.
                Update,
            }

            pub async fn load_schema(
                conn: &mut <$db as sqlx::Database>::Connection,
                account_id: $crate::domain::AccountId,
                name: &$crate::domain::schema::StoreName,
                lock: Lock,
            ) -> $crate::store::StoreResult<Option<$crate::store::entries::SchemaRecord>> {
                use $crate::store::dialect::{Dialect, RowLock};
                let clause = match lock {
                    Lock::None => "",
                    Lock::Share => <$db as Dialect>::row_lock(RowLock::Share),
                    Lock::Update => <$db as Dialect>::row_lock(RowLock::Update),
                };
                let sql = format!(
                    "SELECT name, fields, created_at, updated_at FROM store_schemas \
                     WHERE account_id = $1 AND name = $2{clause}"
                );
                let row = sqlx::query(&sql)
                .bind(account_id.to_string())
                .bind(name.as_str())
                .fetch_optional(conn)
                .await?;
                row.map(|row| schema(&row)).transpose()
            }

            /// The room's store version and purged version; `None` if there is no such room.
            pub async fn room_versions(
                conn: &mut <$db as sqlx::Database>::Connection,
                scope: $crate::store::RoomScope,
            ) -> $crate::store::StoreResult<Option<(i64, i64)>> {
                let row = sqlx::query(
                    "SELECT store_version, store_purged_version FROM rooms \
                     WHERE id = $1 AND account_id = $2",
                )
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_optional(conn)
                .await?;
                row.map(|row| -> $crate::store::StoreResult<(i64, i64)> {
                    Ok((row.try_get("store_version")?, row.try_get("store_purged_version")?))
                })
                .transpose()
            }
        }
    };
}

pub(super) use impl_entry_store;
