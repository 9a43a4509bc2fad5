//! Stores: the schemas a room's entries obey and the entries themselves, as both transports
//! read and write them. A write is applied in the database, then `changed` goes to the room's
//! sockets but the writer's, in the order the room's writes were applied.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::events::{ChangedData, ServerEvent};
use super::publish::Told;
use super::{Engine, Origin};
use crate::analytics::Activity;
use crate::domain::schema::{check_key, StoreName, StoreSchema};
use crate::error::ApiError;
use crate::store::entries::{
    Changes, Entry, EntryChange, EntryLimits, EntryList, EntryPage, EntryWrite, SchemaWrite,
    SyncFrom,
};
use crate::store::{Entity, PageSize, RoomScope};

/// Where a catch-up (`stores.sync`) starts: after version `since`, or, while a reset pages,
/// after version `after` of the live entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    pub store: Option<String>,
    pub since: Option<i64>,
    /// Continue a reset after this version (the previous page's `cursor`).
    pub after: Option<i64>,
}

impl Engine {
    /// Registers the schemas a client knows (when allowed) and answers with the ones the
    /// server enforces, which may differ.
    pub async fn declare_stores(
        &self,
        scope: RoomScope,
        schemas: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiError> {
        let config = &self.config().stores;
        let mut enforced = Map::new();
        for (name, fields) in schemas {
            let store = StoreName::parse(&format!("schemas.{name}"), name).map_err(schema_error)?;
            let schema = StoreSchema::parse(&format!("schemas.{name}"), fields, config.max_fields)
                .map_err(schema_error)?;
            let account_id = scope.account_id;
            let record = if config.client_schemas {
                self.store()
                    .save_schema(
                        account_id,
                        &store,
                        &schema,
                        SchemaWrite::Declare,
                        config.max_stores,
                    )
                    .await
                    .map_err(|error| match ApiError::from(error) {
                        ApiError::Validation { message, .. } => {
                            ApiError::validation(format!("schemas.{name}"), message)
                        }
                        other => other,
                    })?
                    .record
            } else {
                let record = self
                    .store()
                    .get_schema(account_id, &store)
                    .await?
                    .ok_or(ApiError::not_found(Entity::Store))?;
                if !record.schema.same_as(&schema) {
                    return Err(ApiError::validation(
                        format!("schemas.{name}"),
                        format!(
                            "the schema of store {name} differs from the one the server enforces"
                        ),
                    ));
                }
                record
            };
            enforced.insert(name.clone(), record.schema.to_json());
        }
        Ok(enforced)
    }

    /// Applies a write to a store entry and tells the room's sockets but the origin's.
    /// `None`: a delete of an entry that did not exist.
    pub async fn write_entry(
        &self,
        scope: RoomScope,
        origin: Origin,
        store: &StoreName,
        key: &str,
        write: EntryWrite,
    ) -> Result<Option<EntryChange>, ApiError> {
        let config = &self.config().stores;
        let limits = EntryLimits {
            max_entries: config.max_entries_per_store,
            max_entry_bytes: config.max_entry_bytes,
        };
        let by = origin.user();
        self.write_in_order(scope, origin, async {
            let started = std::time::Instant::now();
            let change = self
                .store()
                .write_entry(scope, store, key, &write, limits, by)
                .await?;
            self.metrics().store_writes.observe(started.elapsed());
            self.count(scope, Activity::StoreWrite);
            let told = Told {
                frames: change
                    .iter()
                    .map(|c| ServerEvent::Changed(ChangedData::new(c, by)).encode())
                    .collect(),
                version: change.as_ref().map(|c| c.version),
            };
            Ok::<_, ApiError>((change, told))
        })
        .await
    }

    /// `NotFound(Store)` unless the account has a schema of that name.
    pub async fn known_store(&self, scope: RoomScope, store: &StoreName) -> Result<(), ApiError> {
        self.store()
            .get_schema(scope.account_id, store)
            .await?
            .map(|_| ())
            .ok_or(ApiError::not_found(Entity::Store))
    }

    pub async fn get_entry(
        &self,
        scope: RoomScope,
        store: &StoreName,
        key: &str,
    ) -> Result<Option<Entry>, ApiError> {
        self.known_store(scope, store).await?;
        Ok(self.store().get_entry(scope, store, key).await?)
    }

    /// A page of a store's live entries, by key, after `after`.
    pub async fn entries_after(
        &self,
        scope: RoomScope,
        store: &StoreName,
        after: Option<String>,
    ) -> Result<EntryList, ApiError> {
        self.known_store(scope, store).await?;
        let page = EntryPage::AfterKey {
            after,
            limit: self.config().stores.page_entries,
        };
        Ok(self
            .store()
            .list_entries(scope, store, page, self.config().page_bytes())
            .await?)
    }

    /// A page of what changed in the room's stores (or one of them) since a version.
    pub async fn changes(&self, scope: RoomScope, params: SyncParams) -> Result<Changes, ApiError> {
        let store = params.store.as_deref().map(store_name).transpose()?;
        if let Some(store) = &store {
            self.known_store(scope, store).await?;
        }
        let from = match (params.after, params.since) {
            (Some(after), _) => SyncFrom::ResetAfter(after),
            (None, since) => SyncFrom::Since(since.unwrap_or(0)),
        };
        let size = PageSize {
            items: self.config().stores.page_entries,
            bytes: self.config().page_bytes(),
        };
        Ok(self
            .store()
            .changes_since(scope, store.as_ref(), from, size)
            .await?)
    }
}

pub fn change_json(change: &EntryChange) -> Value {
    json!({
        "store": change.store.as_str(),
        "key": change.key,
        "action": change.action.as_str(),
        "value": change.value,
        "version": change.version,
    })
}

pub fn entry_json(entry: &Entry) -> Value {
    serde_json::to_value(StoreEntry::from(entry)).expect("an entry serializes")
}

// As both transports show it.
/// A store entry.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StoreEntry<'a> {
    key: &'a str,
    /// The entry's fields, as the store's schema defines them.
    #[schema(value_type = Object)]
    value: &'a Map<String, Value>,
    /// The room's stores version of the entry's last write.
    version: i64,
    updated_at: crate::domain::Timestamp,
    /// `null`: written by a backend (REST).
    #[schema(required = true)]
    updated_by: Option<crate::domain::UserId>,
}

impl<'a> From<&'a Entry> for StoreEntry<'a> {
    fn from(entry: &'a Entry) -> Self {
        Self {
            key: &entry.key,
            value: &entry.value,
            version: entry.version,
            updated_at: entry.updated_at,
            updated_by: entry.updated_by,
        }
    }
}

pub fn store_name(text: &str) -> Result<StoreName, ApiError> {
    StoreName::parse("store", text).map_err(schema_error)
}

pub fn key(text: &str) -> Result<(), ApiError> {
    check_key("key", text).map_err(schema_error)
}

pub fn schema_error(error: crate::domain::schema::SchemaError) -> ApiError {
    ApiError::validation(error.field, error.message)
}
