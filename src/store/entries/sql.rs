//! `EntryStore` on either database, and its rows.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{ColumnIndex, Executor};

use super::rows::{parse_value, ChangeRow, EntryRow, RoomVersions, SchemaRow, StoreCount};
use super::{
    apply_write, Changes, Entry, EntryChange, EntryLimits, EntryList, EntryPage, EntryStore,
    EntryWrite, SchemaRecord, SchemaSaved, SchemaWrite, SyncFrom, CHANGE_BYTES, ENTRY_BYTES,
};
use crate::domain::limits::Limit;
use crate::domain::schema::{check_change, Registration, StoreName, StoreSchema};
use crate::domain::{AccountId, Timestamp, UserId};
use crate::store::dialect::{Column, Dialect, RowLock, RowsAffected};
use crate::store::page::{fetch_fitted, page_bytes};
use crate::store::query::Sql;
use crate::store::sql::SqlStore;
use crate::store::{Entity, PageSize, RoomScope, StoreError, StoreResult};

#[async_trait]
impl<DB> EntryStore for SqlStore<DB>
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
    async fn list_schemas(&self, account_id: AccountId) -> StoreResult<Vec<SchemaRecord>> {
        let rows: Vec<SchemaRow> = sqlx::query_as(
            "SELECT name, fields, created_at, updated_at FROM store_schemas \
             WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id.to_string())
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter().map(SchemaRecord::try_from).collect()
    }

    async fn get_schema(
        &self,
        account_id: AccountId,
        name: &StoreName,
    ) -> StoreResult<Option<SchemaRecord>> {
        let mut conn = self.reads.acquire().await?;
        Self::load_schema(&mut conn, account_id, name, None).await
    }

    async fn save_schema(
        &self,
        account_id: AccountId,
        name: &StoreName,
        schema: &StoreSchema,
        mode: SchemaWrite,
        max_stores: i64,
    ) -> StoreResult<SchemaSaved> {
        let now = Timestamp::now();
        let fields = schema.to_json().to_string();
        let mut tx = self.pool.begin().await?;
        // A write first: it takes the lock (SQLite: the database's; PostgreSQL: the account's
        // row) before anything is read.
        let locked = sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(account_id.to_string())
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound(Entity::Account));
        }
        let existing = Self::load_schema(&mut tx, account_id, name, Some(RowLock::Update)).await?;
        let current = existing.as_ref().map(|record| &record.schema);
        let registration = mode.registration(name, current, schema)?;
        let created_at = match (existing, registration) {
            (Some(record), Registration::Unchanged) => {
                return Ok(SchemaSaved {
                    record,
                    created: false,
                })
            }
            (Some(record), Registration::Change) => {
                let used: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM store_entries e JOIN rooms r ON r.id = e.room_id \
                     WHERE r.account_id = $1 AND e.store_name = $2",
                )
                .bind(account_id.to_string())
                .bind(name.to_string())
                .fetch_one(&mut *tx)
                .await?;
                check_change(&record.schema, schema, used > 0)?;
                sqlx::query(
                    "UPDATE store_schemas SET fields = $1, updated_at = $2 \
                     WHERE account_id = $3 AND name = $4",
                )
                .bind(&fields)
                .bind(now.as_millis())
                .bind(account_id.to_string())
                .bind(name.to_string())
                .execute(&mut *tx)
                .await?;
                record.created_at
            }
            _ => {
                let stores: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM store_schemas WHERE account_id = $1")
                        .bind(account_id.to_string())
                        .fetch_one(&mut *tx)
                        .await?;
                Limit::Stores(max_stores).check_one_more(stores)?;
                sqlx::query(
                    "INSERT INTO store_schemas (account_id, name, fields, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(account_id.to_string())
                .bind(name.to_string())
                .bind(&fields)
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await?;
                now
            }
        };
        tx.commit().await?;
        Ok(SchemaSaved {
            record: SchemaRecord {
                name: name.clone(),
                schema: schema.clone(),
                created_at,
                updated_at: now,
            },
            created: registration == Registration::Create,
        })
    }

    async fn store_version(&self, scope: RoomScope) -> StoreResult<i64> {
        let mut conn = self.reads.acquire().await?;
        Ok(Self::room_versions(&mut conn, scope).await?.store_version)
    }

    async fn count_entries(&self, scope: RoomScope) -> StoreResult<(Vec<(StoreName, i64)>, i64)> {
        let mut conn = self.reads.acquire().await?;
        let versions = Self::room_versions(&mut conn, scope).await?;
        let rows: Vec<StoreCount> = sqlx::query_as(
            "SELECT s.name, (SELECT COUNT(*) FROM store_entries e \
               WHERE e.room_id = $1 AND e.store_name = s.name \
               AND e.entry_value IS NOT NULL) AS n \
             FROM store_schemas s WHERE s.account_id = $2 ORDER BY s.name",
        )
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let counts = rows
            .into_iter()
            .map(<(StoreName, i64)>::try_from)
            .collect::<StoreResult<_>>()?;
        Ok((counts, versions.store_version))
    }

    async fn get_entry(
        &self,
        scope: RoomScope,
        store: &StoreName,
        key: &str,
    ) -> StoreResult<Option<Entry>> {
        let row: Option<EntryRow> = sqlx::query_as(
            "SELECT e.entry_key, e.entry_value, e.version, e.updated_at, e.updated_by \
             FROM store_entries e JOIN rooms r ON r.id = e.room_id \
             WHERE e.room_id = $1 AND r.account_id = $2 AND e.store_name = $3 \
               AND e.entry_key = $4 AND e.entry_value IS NOT NULL",
        )
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .bind(store.to_string())
        .bind(key.to_owned())
        .fetch_optional(&self.reads)
        .await?;
        row.map(Entry::try_from).transpose()
    }

    async fn list_entries(
        &self,
        scope: RoomScope,
        store: &StoreName,
        page: EntryPage,
        max_bytes: i64,
    ) -> StoreResult<EntryList> {
        let mut conn = self.reads.acquire().await?;
        let version = Self::room_versions(&mut conn, scope).await?.store_version;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM store_entries \
             WHERE room_id = $1 AND store_name = $2 AND entry_value IS NOT NULL",
        )
        .bind(scope.room_id.to_string())
        .bind(store.to_string())
        .fetch_one(&mut *conn)
        .await?;
        let mut sql = Sql::new(page_bytes::start(ENTRY_BYTES, "entry_key"));
        sql.push(
            "SELECT entry_key, entry_value, version, updated_at, updated_by \
             FROM store_entries WHERE entry_value IS NOT NULL AND room_id = ",
        )
        .bind(scope.room_id.to_string())
        .push(" AND store_name = ")
        .bind(store.to_string());
        // One more than asked: whether there is more.
        let limit = match page {
            EntryPage::Offset(page) => {
                sql.push(" ORDER BY entry_key LIMIT ")
                    .bind(page.limit.saturating_add(1))
                    .push(" OFFSET ")
                    .bind(page.offset);
                page.limit
            }
            EntryPage::AfterKey { after, limit } => {
                if let Some(after) = after {
                    sql.push(" AND entry_key > ").bind(after);
                }
                sql.push(" ORDER BY entry_key LIMIT ")
                    .bind(limit.saturating_add(1));
                limit
            }
        };
        sql.push(page_bytes::END)
            .bind(max_bytes)
            .push(&page_bytes::end_order("entry_key"));
        let size = PageSize {
            items: limit,
            bytes: max_bytes,
        };
        let page = fetch_fitted::<DB, EntryRow>(&mut conn, &sql, size).await?;
        Ok(EntryList {
            entries: page
                .rows
                .into_iter()
                .map(Entry::try_from)
                .collect::<StoreResult<_>>()?,
            total,
            version,
            has_more: page.more,
        })
    }

    async fn write_entry(
        &self,
        scope: RoomScope,
        store: &StoreName,
        key: &str,
        write: &EntryWrite,
        limits: EntryLimits,
        by: Option<UserId>,
    ) -> StoreResult<Option<EntryChange>> {
        let now = Timestamp::now();
        let mut tx = self.pool.begin().await?;
        // The room's next version, under its row lock: writes to a room are ordered.
        let version: i64 = sqlx::query_scalar(
            "UPDATE rooms SET store_version = store_version + 1 \
             WHERE id = $1 AND account_id = $2 RETURNING store_version",
        )
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound(Entity::Room))?;
        let schema = Self::load_schema(&mut tx, scope.account_id, store, Some(RowLock::Share))
            .await?
            .ok_or(StoreError::NotFound(Entity::Store))?
            .schema;
        let current: Option<Option<String>> = sqlx::query_scalar(
            "SELECT entry_value FROM store_entries \
             WHERE room_id = $1 AND store_name = $2 AND entry_key = $3",
        )
        .bind(scope.room_id.to_string())
        .bind(store.to_string())
        .bind(key.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let current = current
            .flatten()
            .map(|text| parse_value(key, &text))
            .transpose()?;
        if current.is_none() && matches!(write, EntryWrite::Delete) {
            // Nothing to delete: the version taken above is given back.
            return Ok(None);
        }
        let (action, value) = apply_write(&schema, current.as_ref(), write)?;
        let text = value.as_ref().map(|v| Value::Object(v.clone()).to_string());
        if text
            .as_ref()
            .is_some_and(|t| t.len() > limits.max_entry_bytes)
        {
            return Err(StoreError::TooLarge {
                limit: limits.max_entry_bytes,
            });
        }
        if current.is_none() {
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM store_entries \
                 WHERE room_id = $1 AND store_name = $2 AND entry_value IS NOT NULL",
            )
            .bind(scope.room_id.to_string())
            .bind(store.to_string())
            .fetch_one(&mut *tx)
            .await?;
            let limit = Limit::Entries {
                store: store.as_str(),
                max: limits.max_entries,
            };
            limit.check_one_more(live)?;
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
        .bind(store.to_string())
        .bind(key.to_owned())
        .bind(text)
        .bind(version)
        .bind(now.as_millis())
        .bind(by.map(|user| user.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(EntryChange {
            store: store.clone(),
            key: key.to_owned(),
            action,
            value,
            version,
        }))
    }

    async fn changes_since(
        &self,
        scope: RoomScope,
        store: Option<&StoreName>,
        from: SyncFrom,
        size: PageSize,
    ) -> StoreResult<Changes> {
        // The versions and the rows from one snapshot: a purge between the two reads could
        // otherwise take tombstones the client still needs.
        let mut tx = self.reads.begin_with(DB::BEGIN_SNAPSHOT).await?;
        let versions = Self::room_versions(&mut tx, scope).await?;
        let (version, purged) = (versions.store_version, versions.store_purged_version);
        // Behind what was forgotten (or new): the whole contents, live entries only.
        let (reset, after) = match from {
            SyncFrom::ResetAfter(after) => (true, after),
            SyncFrom::Since(since) if since <= 0 || since < purged || since > version => (true, 0),
            SyncFrom::Since(since) => (false, since),
        };
        let mut sql = Sql::new(page_bytes::start(CHANGE_BYTES, "version"));
        sql.push(
            "SELECT store_name, entry_key, entry_value, version FROM store_entries \
             WHERE room_id = ",
        )
        .bind(scope.room_id.to_string());
        if reset {
            sql.push(" AND entry_value IS NOT NULL");
        }
        sql.push(" AND version > ").bind(after);
        if let Some(store) = store {
            sql.push(" AND store_name = ").bind(store.to_string());
        }
        // One more than asked: whether there is more.
        sql.push(" ORDER BY version LIMIT ")
            .bind(size.items.saturating_add(1))
            .push(page_bytes::END)
            .bind(size.bytes)
            .push(&page_bytes::end_order("version"));
        let page = fetch_fitted::<DB, ChangeRow>(&mut tx, &sql, size).await?;
        tx.commit().await?;
        Ok(Changes {
            changes: page
                .rows
                .into_iter()
                .map(EntryChange::try_from)
                .collect::<StoreResult<_>>()?,
            version,
            reset,
            has_more: page.more,
        })
    }

    async fn purge_tombstones(&self, before: Timestamp) -> StoreResult<u64> {
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
        let purged =
            sqlx::query("DELETE FROM store_entries WHERE entry_value IS NULL AND updated_at < $1")
                .bind(before.as_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(purged)
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
    /// A store's schema, its row locked as `lock` says when read inside a write.
    async fn load_schema(
        conn: &mut DB::Connection,
        account_id: AccountId,
        name: &StoreName,
        lock: Option<RowLock>,
    ) -> StoreResult<Option<SchemaRecord>> {
        let sql = format!(
            "SELECT name, fields, created_at, updated_at FROM store_schemas \
             WHERE account_id = $1 AND name = $2{}",
            lock.map_or("", DB::row_lock)
        );
        let row: Option<SchemaRow> = sqlx::query_as(&sql)
            .bind(account_id.to_string())
            .bind(name.to_string())
            .fetch_optional(conn)
            .await?;
        row.map(SchemaRecord::try_from).transpose()
    }

    /// The room's store version and purged version; `NotFound(Room)` if the account has no
    /// such room.
    async fn room_versions(
        conn: &mut DB::Connection,
        scope: RoomScope,
    ) -> StoreResult<RoomVersions> {
        sqlx::query_as(
            "SELECT store_version, store_purged_version FROM rooms \
             WHERE id = $1 AND account_id = $2",
        )
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound(Entity::Room))
    }
}
