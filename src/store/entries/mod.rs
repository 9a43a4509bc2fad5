//! Persistence of store schemas (per account) and store entries (per room). Every write to
//! a room's entries takes the room's next version under the room's row lock, so that writes
//! have one order that every client converges to.

use async_trait::async_trait;
use serde_json::{Map, Value};

mod rows;
mod sql;

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

    /// The room's store version: that of its latest write (0: none yet).
    async fn store_version(&self, scope: RoomScope) -> StoreResult<i64>;
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

/// The new value of an entry after `write`, checked against `schema`.
fn apply_write(
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
