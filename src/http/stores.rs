//! REST: store schemas (`/stores`) and a room's store entries (`/rooms/:roomId/stores`), for
//! backends. Writes are validated like the socket's and reach the room's sockets as `changed`.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::envelope::Reply;
use super::extract::{JsonBody, PathParams, QueryParams};
use crate::auth::AccountAuth;
use crate::domain::schema::{StoreName, StoreSchema};
use crate::domain::RoomId;
use crate::error::ApiError;
use crate::rooms::entries::{entry_json, key, schema_error};
use crate::rooms::Origin;
use crate::state::AppState;
use crate::store::entries::{EntryPage, EntryWrite, SchemaRecord, SchemaWrite};
use crate::store::{Entity, RoomScope};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/stores", get(list_stores))
        .route("/stores/{store}", get(get_store).put(put_store))
        .route("/rooms/{roomId}/stores", get(list_room_stores))
        .route("/rooms/{roomId}/stores/{store}", get(list_entries))
        .route(
            "/rooms/{roomId}/stores/{store}/{key}",
            get(get_entry)
                .put(set_entry)
                .patch(update_entry)
                .delete(delete_entry),
        )
}

fn schema_json(record: &SchemaRecord) -> Value {
    json!({
        "name": record.name.as_str(),
        "schema": record.schema.to_json(),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })
}

async fn list_stores(auth: AccountAuth, State(state): State<AppState>) -> Result<Reply, ApiError> {
    let records = state.store().list_schemas(auth.account_id).await?;
    let stores: Vec<Value> = records.iter().map(schema_json).collect();
    Ok(Reply::ok("Stores retrieved", json!({ "stores": stores })))
}

async fn get_store(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let name = path_store(&path)?;
    let record = state
        .store()
        .get_schema(auth.account_id, &name)
        .await?
        .ok_or(ApiError::not_found(Entity::Store))?;
    Ok(Reply::ok(
        "Store retrieved",
        json!({ "store": schema_json(&record) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutStoreBody {
    schema: Option<Value>,
}

/// Registers a store's schema, or changes it compatibly with the entries already written.
async fn put_store(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<PutStoreBody>,
) -> Result<Reply, ApiError> {
    let name = path_store(&path)?;
    let config = &state.config().stores;
    let fields = body
        .schema
        .ok_or_else(|| ApiError::validation("schema", "schema is required"))?;
    let schema = StoreSchema::parse("schema", &fields, config.max_fields).map_err(schema_error)?;
    let saved = state
        .store()
        .save_schema(
            auth.account_id,
            &name,
            &schema,
            SchemaWrite::Register,
            config.max_stores,
        )
        .await?;
    let data = json!({ "store": schema_json(&saved.record) });
    Ok(if saved.created {
        Reply::created("Store created", data)
    } else {
        Reply::ok("Store updated", data)
    })
}

fn path_store(path: &PathParams) -> Result<StoreName, ApiError> {
    StoreName::parse("store", path.text("store")).map_err(|_| ApiError::not_found(Entity::Store))
}

fn path_scope(auth: AccountAuth, path: &PathParams) -> Result<RoomScope, ApiError> {
    let room_id: RoomId = path.id("roomId", Entity::Room)?;
    Ok(RoomScope {
        account_id: auth.account_id,
        room_id,
    })
}

/// The path's room, checked to be one of the account's before anything loads it.
async fn existing_scope(
    state: &AppState,
    auth: AccountAuth,
    path: &PathParams,
) -> Result<RoomScope, ApiError> {
    let scope = path_scope(auth, path)?;
    state
        .store()
        .get_room(scope.account_id, scope.room_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    Ok(scope)
}

async fn list_room_stores(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = path_scope(auth, &path)?;
    let (counts, version) = state.store().count_entries(scope).await?;
    let stores: Vec<Value> = counts
        .iter()
        .map(|(name, entries)| json!({ "name": name.as_str(), "entries": entries }))
        .collect();
    Ok(Reply::ok(
        "Stores retrieved",
        json!({ "stores": stores, "version": version }),
    ))
}

async fn list_entries(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let scope = path_scope(auth, &path)?;
    let page = query.page()?;
    let store = path_store(&path)?;
    state.engine().known_store(scope, &store).await?;
    let listed = state
        .store()
        .list_entries(
            scope,
            &store,
            EntryPage::Offset(page),
            state.config().page_bytes(),
        )
        .await?;
    let list: Vec<Value> = listed.entries.iter().map(entry_json).collect();
    Ok(Reply::ok(
        "Entries retrieved",
        json!({
            "entries": list, "total": listed.total, "limit": page.limit,
            "offset": page.offset, "version": listed.version,
            "nextOffset": page.next_offset(list.len(), listed.has_more),
        }),
    ))
}

async fn get_entry(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = path_scope(auth, &path)?;
    let store = path_store(&path)?;
    state
        .store()
        .get_room(scope.account_id, scope.room_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    state.engine().known_store(scope, &store).await?;
    let entry = state
        .store()
        .get_entry(scope, &store, path.text("key"))
        .await?
        .ok_or(ApiError::not_found(Entity::Entry))?;
    Ok(Reply::ok(
        "Entry retrieved",
        json!({ "entry": entry_json(&entry) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryBody {
    value: Option<Value>,
}

async fn write(
    auth: AccountAuth,
    state: &AppState,
    path: &PathParams,
    write: impl FnOnce(Value) -> EntryWrite,
    body: EntryBody,
) -> Result<Value, ApiError> {
    let scope = existing_scope(state, auth, path).await?;
    let store = path_store(path)?;
    let entry_key = path.text("key");
    key(entry_key)?;
    let value = body
        .value
        .ok_or_else(|| ApiError::validation("value", "value is required"))?;
    let change = state
        .engine()
        .write_entry(scope, Origin::Backend, &store, entry_key, write(value))
        .await?
        .expect("only a delete can change nothing");
    Ok(json!({ "entry": { "key": change.key, "value": change.value, "version": change.version } }))
}

async fn set_entry(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<EntryBody>,
) -> Result<Reply, ApiError> {
    let data = write(auth, &state, &path, EntryWrite::Set, body).await?;
    Ok(Reply::ok("Entry saved", data))
}

async fn update_entry(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<EntryBody>,
) -> Result<Reply, ApiError> {
    let data = write(auth, &state, &path, EntryWrite::Update, body).await?;
    Ok(Reply::ok("Entry updated", data))
}

async fn delete_entry(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = existing_scope(&state, auth, &path).await?;
    let store = path_store(&path)?;
    let entry_key = path.text("key");
    let change = state
        .engine()
        .write_entry(
            scope,
            Origin::Backend,
            &store,
            entry_key,
            EntryWrite::Delete,
        )
        .await?
        .ok_or(ApiError::not_found(Entity::Entry))?;
    Ok(Reply::ok(
        "Entry deleted",
        json!({ "key": change.key, "version": change.version }),
    ))
}
