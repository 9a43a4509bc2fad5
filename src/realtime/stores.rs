//! Socket methods `stores.*`, and the write path both the socket and the REST API use: the
//! write is applied in the database, then `changed` goes to the room's other sockets.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::connection::{unknown_method, Caller};
use super::protocol;
use crate::app::AppState;
use crate::domain::schema::{check_key, StoreName, StoreSchema};
use crate::domain::{ConnectionId, UserId};
use crate::error::ApiError;
use crate::store::entries::{
    Entry, EntryChange, EntryLimits, EntryPage, EntryWrite, SchemaWrite, SyncFrom,
};
use crate::store::{Entity, PageSize, RoomScope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclareParams {
    schemas: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetAllParams {
    store: String,
    /// Continue after this key (the previous page's `cursor`).
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    store: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteParams {
    store: String,
    key: String,
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncParams {
    store: Option<String>,
    since: Option<i64>,
    /// Continue a reset after this version (the previous page's `cursor`).
    after: Option<i64>,
}

pub async fn call(caller: &Caller<'_>, method: &str, params: Value) -> Result<Value, ApiError> {
    let state = caller.state;
    match method {
        "stores.declare" => {
            let params: DeclareParams = ApiError::parse_value(params)?;
            declare(caller, params.schemas).await
        }
        "stores.set" | "stores.update" => {
            let params: WriteParams = ApiError::parse_value(params)?;
            let store = store_name(&params.store)?;
            key(&params.key)?;
            let write = if method == "stores.set" {
                EntryWrite::Set(params.value)
            } else {
                EntryWrite::Update(params.value)
            };
            let change = write_entry(
                state,
                caller.scope,
                &store,
                &params.key,
                write,
                Some(caller),
            )
            .await?
            .expect("only a delete can change nothing");
            Ok(json!({ "key": change.key, "value": change.value, "version": change.version }))
        }
        "stores.delete" => {
            let params: KeyParams = ApiError::parse_value(params)?;
            let store = store_name(&params.store)?;
            key(&params.key)?;
            let change = write_entry(
                state,
                caller.scope,
                &store,
                &params.key,
                EntryWrite::Delete,
                Some(caller),
            )
            .await?;
            Ok(json!({
                "key": params.key,
                "deleted": change.is_some(),
                "version": change.map(|c| c.version),
            }))
        }
        "stores.get" => {
            let params: KeyParams = ApiError::parse_value(params)?;
            let store = store_name(&params.store)?;
            key(&params.key)?;
            known_store(state, caller.scope, &store).await?;
            let entry = state
                .store()
                .get_entry(caller.scope, &store, &params.key)
                .await?;
            Ok(json!({
                "key": params.key,
                "value": entry.as_ref().map(|e| &e.value),
                "version": entry.as_ref().map(|e| e.version),
            }))
        }
        "stores.getAll" => {
            let params: GetAllParams = ApiError::parse_value(params)?;
            let store = store_name(&params.store)?;
            known_store(state, caller.scope, &store).await?;
            let page = EntryPage::AfterKey {
                after: params.after,
                limit: state.config().stores.page_entries,
            };
            let listed = state
                .store()
                .list_entries(caller.scope, &store, page, state.config().page_bytes())
                .await?;
            let cursor = listed
                .entries
                .last()
                .filter(|_| listed.has_more)
                .map(|e| e.key.clone());
            let entries: Vec<Value> = listed.entries.iter().map(entry_json).collect();
            Ok(json!({
                "entries": entries, "version": listed.version, "hasMore": listed.has_more,
                "cursor": cursor,
            }))
        }
        "stores.sync" => {
            let params: SyncParams = ApiError::parse_value(params)?;
            let store = params.store.as_deref().map(store_name).transpose()?;
            if let Some(store) = &store {
                known_store(state, caller.scope, store).await?;
            }
            let from = match (params.after, params.since) {
                (Some(after), _) => SyncFrom::ResetAfter(after),
                (None, since) => SyncFrom::Since(since.unwrap_or(0)),
            };
            let size = PageSize {
                items: state.config().stores.page_entries,
                bytes: state.config().page_bytes(),
            };
            let changes = state
                .store()
                .changes_since(caller.scope, store.as_ref(), from, size)
                .await?;
            let cursor = changes
                .changes
                .last()
                .filter(|_| changes.has_more)
                .map(|c| c.version);
            let list: Vec<Value> = changes.changes.iter().map(change_json).collect();
            Ok(json!({
                "changes": list, "version": changes.version, "reset": changes.reset,
                "hasMore": changes.has_more, "cursor": cursor,
            }))
        }
        other => Err(unknown_method(other)),
    }
}

/// Registers the schemas the client knows (when allowed) and answers with the ones the server
/// enforces, which may differ.
async fn declare(caller: &Caller<'_>, schemas: Map<String, Value>) -> Result<Value, ApiError> {
    let state = caller.state;
    let config = &state.config().stores;
    let mut enforced = Map::new();
    for (name, fields) in &schemas {
        let store = StoreName::parse(&format!("schemas.{name}"), name).map_err(schema_error)?;
        let schema = StoreSchema::parse(&format!("schemas.{name}"), fields, config.max_fields)
            .map_err(schema_error)?;
        let account_id = caller.scope.account_id;
        let record = if config.client_schemas {
            state
                .store()
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
            let record = state
                .store()
                .get_schema(account_id, &store)
                .await?
                .ok_or(ApiError::not_found(Entity::Store))?;
            if !record.schema.same_as(&schema) {
                return Err(ApiError::validation(
                    format!("schemas.{name}"),
                    format!("the schema of store {name} differs from the one the server enforces"),
                ));
            }
            record
        };
        enforced.insert(name.clone(), record.schema.to_json());
    }
    Ok(json!({ "schemas": enforced }))
}

/// Applies a write to a store entry and tells the room's sockets (all but the writing one).
/// `None`: a delete of an entry that did not exist.
pub async fn write_entry(
    state: &AppState,
    scope: RoomScope,
    store: &StoreName,
    key: &str,
    write: EntryWrite,
    caller: Option<&Caller<'_>>,
) -> Result<Option<EntryChange>, ApiError> {
    let config = &state.config().stores;
    let limits = EntryLimits {
        max_entries: config.max_entries_per_store,
        max_entry_bytes: config.max_entry_bytes,
    };
    let by: Option<UserId> = caller.map(|c| c.user_id);
    let except: Option<ConnectionId> = caller.map(|c| c.connection);
    state
        .hub()
        .write_in_order(scope, except, async {
            let change = state
                .store()
                .write_entry(scope, store, key, &write, limits, by)
                .await?;
            let frames = change
                .iter()
                .map(|c| {
                    let mut data = change_json(c);
                    data["userId"] = json!(by);
                    protocol::event("changed", &data)
                })
                .collect();
            Ok::<_, ApiError>((change, frames))
        })
        .await
}

/// `NotFound(Store)` unless the account has a schema of that name.
pub async fn known_store(
    state: &AppState,
    scope: RoomScope,
    store: &StoreName,
) -> Result<(), ApiError> {
    state
        .store()
        .get_schema(scope.account_id, store)
        .await?
        .map(|_| ())
        .ok_or(ApiError::not_found(Entity::Store))
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
    json!({
        "key": entry.key,
        "value": entry.value,
        "version": entry.version,
        "updated_at": entry.updated_at,
        "updated_by": entry.updated_by,
    })
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
