//! REST: store schemas (`/stores`) and a room's store entries (`/rooms/:roomId/stores`), for
//! backends. Writes are validated like the socket's and reach the room's sockets as `changed`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::envelope::Reply;
use super::extract::{JsonBody, PageQuery, PathParams, QueryParams};
use super::openapi::Envelope;
use super::routes::Routes;
use crate::auth::AccountAuth;
use crate::domain::schema::{StoreName, StoreSchema, MAX_KEY_CHARS, MAX_NAME_CHARS};
use crate::domain::{RoomId, Timestamp};
use crate::error::ApiError;
use crate::rooms::entries::{key, schema_error, StoreEntry};
use crate::rooms::Origin;
use crate::state::AppState;
use crate::store::entries::{EntryPage, EntryWrite, SchemaRecord, SchemaWrite};
use crate::store::{Entity, RoomScope};

pub fn routes() -> Routes {
    const ENTRY: &str = "/rooms/{roomId}/stores/{store}/{key}";
    Routes::new()
        .get("/stores", list_stores)
        .get("/stores/{store}", get_store)
        .put("/stores/{store}", put_store)
        .get("/rooms/{roomId}/stores", list_room_stores)
        .get("/rooms/{roomId}/stores/{store}", list_entries)
        .get(ENTRY, get_entry)
        .put(ENTRY, set_entry)
        .patch(ENTRY, update_entry)
        .delete(ENTRY, delete_entry)
}

#[derive(OpenApi)]
#[openapi(paths(
    list_stores,
    get_store,
    put_store,
    list_room_stores,
    list_entries,
    get_entry,
    set_entry,
    update_entry,
    delete_entry
))]
pub struct Api;

/// A store's name in a path: a letter or `_`, then letters, digits, `_` or `-` (at most 64).
fn store_name_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^[A-Za-z_][A-Za-z0-9_-]{{0,{}}}$",
            MAX_NAME_CHARS - 1
        )))
        .examples(["tasks"])
}

/// An entry's key in a path (percent-encoded): 1 to 256 characters, no control characters.
fn entry_key_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_CHARS))
        .pattern(Some(r"^[^\u0000-\u001F\u007F-\u009F]+$".to_owned()))
        .examples(["task-1"])
}

/// A store of the account.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "describes what the handlers read with `PathParams`"
)]
struct StorePath {
    #[param(schema_with = store_name_schema)]
    store: String,
}

/// A store of a room.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "describes what the handlers read with `PathParams`"
)]
struct RoomStorePath {
    room_id: RoomId,
    #[param(schema_with = store_name_schema)]
    store: String,
}

/// An entry of a room's store.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "describes what the handlers read with `PathParams`"
)]
struct EntryPath {
    room_id: RoomId,
    #[param(schema_with = store_name_schema)]
    store: String,
    #[param(schema_with = entry_key_schema)]
    key: String,
}

/// A store's fields (`PutStoreBody::schema`, `StoreSchema::parse`): 1 to `stores.max_fields`
/// (64 by default), each named like an identifier and given a type, whether it is required,
/// and a default of that type.
fn store_fields_schema() -> ObjectBuilder {
    let field = |kind: &str, value: Type| {
        let or_null = |kind| SchemaType::from_iter([kind, Type::Null]);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([kind])),
            )
            .required("type")
            .property(
                "required",
                ObjectBuilder::new().schema_type(or_null(Type::Boolean)),
            )
            .property("default", ObjectBuilder::new().schema_type(or_null(value)))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
    };
    let field_name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^[A-Za-z_][A-Za-z0-9_]{{0,{}}}$",
            MAX_NAME_CHARS - 1
        )));
    let any_field = OneOfBuilder::new()
        .item(field("string", Type::String))
        .item(field("number", Type::Number))
        .item(field("boolean", Type::Boolean));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .min_properties(Some(1))
        .max_properties(Some(64))
        .property_names(Some(field_name))
        .additional_properties(Some(RefOr::T(Schema::from(any_field))))
        .examples([json!({
            "title": { "type": "string", "required": true },
            "done": { "type": "boolean", "default": false }
        })])
}

/// A store's schema, as registered (`defineStores` fields).
#[derive(Serialize, ToSchema)]
struct StoreRecord<'a> {
    #[schema(value_type = String, example = "tasks")]
    name: &'a str,
    /// The fields: `{ "title": { "type": "string", "required": true }, ... }`.
    #[schema(value_type = Object)]
    schema: Value,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a SchemaRecord> for StoreRecord<'a> {
    fn from(record: &'a SchemaRecord) -> Self {
        Self {
            name: record.name.as_str(),
            schema: record.schema.to_json(),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct StoreList<'a> {
    stores: Vec<StoreRecord<'a>>,
}

#[derive(Serialize, ToSchema)]
struct StoreData<'a> {
    store: StoreRecord<'a>,
}

/// How many entries a room holds in one store.
#[derive(Serialize, ToSchema)]
struct StoreCount<'a> {
    name: &'a str,
    entries: i64,
}

#[derive(Serialize, ToSchema)]
struct RoomStores<'a> {
    stores: Vec<StoreCount<'a>>,
    /// The room's stores version: it grows with every write.
    version: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EntryList<'a> {
    entries: Vec<StoreEntry<'a>>,
    total: i64,
    limit: i64,
    offset: i64,
    version: i64,
    /// The `offset` of the next page (`null`: nothing after); a page may end before `limit`
    /// (`limits.max_page_bytes`).
    #[schema(required = true)]
    next_offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct EntryData<'a> {
    entry: StoreEntry<'a>,
}

/// An entry as a write left it.
#[derive(Serialize, ToSchema)]
struct WrittenEntry {
    key: String,
    #[schema(value_type = Object, required = true)]
    value: Option<Map<String, Value>>,
    version: i64,
}

#[derive(Serialize, ToSchema)]
struct EntryWritten {
    entry: WrittenEntry,
}

#[derive(Serialize, ToSchema)]
struct EntryDeleted {
    key: String,
    version: i64,
}

#[utoipa::path(
    get, path = "/stores", tag = "Stores", operation_id = "list_stores",
    responses((status = 200, description = "Stores retrieved", body = Envelope<StoreList>))
)]
async fn list_stores(auth: AccountAuth, State(state): State<AppState>) -> Result<Reply, ApiError> {
    let records = state.store().list_schemas(auth.account_id).await?;
    let stores = records.iter().map(StoreRecord::from).collect();
    Ok(Reply::ok("Stores retrieved", StoreList { stores }))
}

#[utoipa::path(
    get, path = "/stores/{store}", tag = "Stores", operation_id = "get_store",
    params(StorePath),
    responses((status = 200, description = "Store retrieved", body = Envelope<StoreData>))
)]
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
        StoreData {
            store: StoreRecord::from(&record),
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PutStoreBody {
    /// The fields, as `defineStores` takes them.
    #[schema(schema_with = store_fields_schema, required = true)]
    schema: Option<Value>,
}

/// Registers a store's schema, or changes it.
///
/// While any room holds entries of the store, a change must keep them valid: no field removed
/// or retyped, a field made required only with a default, new fields optional or with a
/// default (else `VALIDATION_ERROR` naming the field).
#[utoipa::path(
    put, path = "/stores/{store}", tag = "Stores", operation_id = "put_store",
    params(StorePath),
    request_body = PutStoreBody,
    responses(
        (status = 200, description = "Store updated", body = Envelope<StoreData>),
        (status = 201, description = "Store created", body = Envelope<StoreData>),
    )
)]
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
    let data = StoreData {
        store: StoreRecord::from(&saved.record),
    };
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

#[utoipa::path(
    get, path = "/rooms/{roomId}/stores", tag = "Stores", operation_id = "list_room_stores",
    params(("roomId" = RoomId, Path)),
    responses((status = 200, description = "Stores retrieved: how many entries the room holds in each", body = Envelope<RoomStores>))
)]
async fn list_room_stores(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
) -> Result<Reply, ApiError> {
    let scope = path_scope(auth, &path)?;
    let (counts, version) = state.store().count_entries(scope).await?;
    let stores = counts
        .iter()
        .map(|(name, entries)| StoreCount {
            name: name.as_str(),
            entries: *entries,
        })
        .collect();
    Ok(Reply::ok(
        "Stores retrieved",
        RoomStores { stores, version },
    ))
}

#[utoipa::path(
    get, path = "/rooms/{roomId}/stores/{store}", tag = "Stores", operation_id = "list_entries",
    params(RoomStorePath, PageQuery),
    responses((status = 200, description = "Entries retrieved", body = Envelope<EntryList>))
)]
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
    let entries: Vec<_> = listed.entries.iter().map(StoreEntry::from).collect();
    let next_offset = page.next_offset(entries.len(), listed.has_more);
    Ok(Reply::ok(
        "Entries retrieved",
        EntryList {
            entries,
            total: listed.total,
            limit: page.limit,
            offset: page.offset,
            version: listed.version,
            next_offset,
        },
    ))
}

#[utoipa::path(
    get, path = "/rooms/{roomId}/stores/{store}/{key}", tag = "Stores", operation_id = "get_entry",
    params(EntryPath),
    responses((status = 200, description = "Entry retrieved", body = Envelope<EntryData>))
)]
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
        EntryData {
            entry: StoreEntry::from(&entry),
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EntryBody {
    /// The entry's fields (`PUT`: all of them; `PATCH`: the ones to change), validated against
    /// the store's schema; at most `stores.max_entry_bytes`.
    #[schema(value_type = Object, required = true, example = json!({ "title": "Write the docs", "done": false }))]
    value: Option<Value>,
}

async fn write(
    auth: AccountAuth,
    state: &AppState,
    path: &PathParams,
    write: impl FnOnce(Value) -> EntryWrite,
    body: EntryBody,
) -> Result<EntryWritten, ApiError> {
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
    Ok(EntryWritten {
        entry: WrittenEntry {
            key: change.key,
            value: change.value,
            version: change.version,
        },
    })
}

/// Writes the whole entry; the room's sockets receive `changed` (`userId: null`).
#[utoipa::path(
    put, path = "/rooms/{roomId}/stores/{store}/{key}", tag = "Stores", operation_id = "set_entry",
    params(EntryPath),
    request_body = EntryBody,
    responses((status = 200, description = "Entry saved", body = Envelope<EntryWritten>))
)]
async fn set_entry(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<EntryBody>,
) -> Result<Reply, ApiError> {
    let data = write(auth, &state, &path, EntryWrite::Set, body).await?;
    Ok(Reply::ok("Entry saved", data))
}

/// Changes some fields of an existing entry; the room's sockets receive `changed`.
#[utoipa::path(
    patch, path = "/rooms/{roomId}/stores/{store}/{key}", tag = "Stores", operation_id = "update_entry",
    params(EntryPath),
    request_body = EntryBody,
    responses((status = 200, description = "Entry updated", body = Envelope<EntryWritten>))
)]
async fn update_entry(
    auth: AccountAuth,
    State(state): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<EntryBody>,
) -> Result<Reply, ApiError> {
    let data = write(auth, &state, &path, EntryWrite::Update, body).await?;
    Ok(Reply::ok("Entry updated", data))
}

#[utoipa::path(
    delete, path = "/rooms/{roomId}/stores/{store}/{key}", tag = "Stores", operation_id = "delete_entry",
    params(EntryPath),
    responses((status = 200, description = "Entry deleted", body = Envelope<EntryDeleted>))
)]
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
        EntryDeleted {
            key: change.key,
            version: change.version,
        },
    ))
}
