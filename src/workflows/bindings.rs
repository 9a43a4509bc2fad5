//! The server's side of a run's bindings: what `store`, `room`, `files` and `fetch` answer,
//! always within the event's account and room (the code names no other: the bindings take
//! no room argument). Reads only; `fetch` through the webhooks' address guard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::pool::Bindings;
use crate::domain::schema::StoreName;
use crate::store::entries::EntryPage;
use crate::store::files::FileFilter;
use crate::store::{DynStore, ListFilter, Page, RoomScope};
use crate::webhooks::guard;

/// Entries `store.getAll` and users `room.getUsers` return at most: a larger answer is an
/// error, never a silent cut.
const MAX_ITEMS: usize = 10_000;
/// Read a page at a time.
const PAGE: i64 = 100;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// What every run's bindings share.
pub struct Shared {
    pub store: DynStore,
    pub http: reqwest::Client,
    pub allow_private: bool,
    pub max_fetches: usize,
    pub fetch_timeout: Duration,
    pub max_fetch_response_bytes: usize,
    /// The files' public base URL (`files.public_url`, or `http://localhost`).
    pub files_base: String,
    /// `limits.max_page_bytes`: one read of entries at most.
    pub page_bytes: i64,
}

/// One run's bindings.
pub struct RoomBindings {
    shared: Arc<Shared>,
    scope: RoomScope,
    fetches: usize,
    /// The run's end: no `fetch` waits past it.
    deadline: Instant,
}

impl RoomBindings {
    pub fn new(shared: Arc<Shared>, scope: RoomScope, deadline: Instant) -> Self {
        Self {
            shared,
            scope,
            fetches: 0,
            deadline,
        }
    }

    async fn store_get(&self, args: &[Value]) -> Result<Value, String> {
        let store = store_name(args.first())?;
        let key = text(args.get(1), "store.get: the key")?;
        let entry = self
            .shared
            .store
            .get_entry(self.scope, &store, key)
            .await
            .map_err(unavailable)?;
        Ok(entry.map_or(Value::Null, |entry| Value::Object(entry.value)))
    }

    /// Every live entry of the store, as an object from key to value.
    async fn store_get_all(&self, args: &[Value]) -> Result<Value, String> {
        let store = store_name(args.first())?;
        let mut all = Map::new();
        let mut after = None;
        loop {
            let page = EntryPage::AfterKey {
                after: after.take(),
                limit: PAGE,
            };
            let listed = self
                .shared
                .store
                .list_entries(self.scope, &store, page, self.shared.page_bytes)
                .await
                .map_err(unavailable)?;
            after = listed.entries.last().map(|entry| entry.key.clone());
            for entry in listed.entries {
                all.insert(entry.key, Value::Object(entry.value));
            }
            if all.len() > MAX_ITEMS {
                return Err(format!(
                    "store.getAll: the store holds more than {MAX_ITEMS} entries"
                ));
            }
            if !listed.has_more || after.is_none() {
                return Ok(Value::Object(all));
            }
        }
    }

    async fn room_get(&self) -> Result<Value, String> {
        let room = self
            .shared
            .store
            .get_room(self.scope.account_id, self.scope.room_id)
            .await
            .map_err(unavailable)?
            .ok_or("room.get: the room no longer exists")?;
        serde_json::to_value(room).map_err(|error| error.to_string())
    }

    async fn room_get_users(&self) -> Result<Value, String> {
        let mut users = Vec::new();
        loop {
            let page = Page {
                limit: PAGE,
                offset: users.len() as i64,
            };
            let listed = self
                .shared
                .store
                .list_users(self.scope, &ListFilter::default(), page)
                .await
                .map_err(unavailable)?;
            let last = listed.items.len() < PAGE as usize;
            for user in &listed.items {
                users.push(serde_json::to_value(user).map_err(|error| error.to_string())?);
            }
            if users.len() > MAX_ITEMS {
                return Err(format!(
                    "room.getUsers: the room has more than {MAX_ITEMS} users"
                ));
            }
            if last || users.len() as i64 >= listed.total {
                return Ok(Value::Array(users));
            }
        }
    }

    async fn files_list(&self) -> Result<Value, String> {
        let filter = FileFilter {
            mime_types: Vec::new(),
            uploaded_by: None,
        };
        let files = self
            .shared
            .store
            .list_files(self.scope, &filter)
            .await
            .map_err(unavailable)?;
        let base = &self.shared.files_base;
        Ok(Value::Array(
            files.iter().map(|file| file.json(base)).collect(),
        ))
    }

    /// `fetch(url, { method, headers, body })`: the answer's status, headers and body.
    async fn fetch(&mut self, args: &[Value]) -> Result<Value, String> {
        let shared = self.shared.clone();
        if self.fetches >= shared.max_fetches {
            return Err(format!(
                "fetch: limit of {} requests per run reached",
                shared.max_fetches
            ));
        }
        self.fetches += 1;
        let url = guard::check_url(text(args.first(), "fetch: the URL")?, shared.allow_private)
            .map_err(|refused| format!("fetch: {refused}"))?;
        let init = args.get(1).filter(|init| !init.is_null());
        let method = match init
            .and_then(|init| init.get("method"))
            .filter(|m| !m.is_null())
        {
            None => "GET".to_owned(),
            Some(method) => text(Some(method), "fetch: the method")?.to_ascii_uppercase(),
        };
        if !METHODS.contains(&method.as_str()) {
            return Err(format!("fetch: method {method} is not supported"));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = shared.http.request(method, url);
        if let Some(headers) = init
            .and_then(|init| init.get("headers"))
            .and_then(Value::as_object)
        {
            for (name, value) in headers {
                let value = text(Some(value), "fetch: a header value")?;
                request = request.header(name.as_str(), value);
            }
        }
        if let Some(body) = init
            .and_then(|init| init.get("body"))
            .filter(|b| !b.is_null())
        {
            request = request.body(text(Some(body), "fetch: the body")?.to_owned());
        }
        let timeout = shared
            .fetch_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(timeout, exchange(request, shared.max_fetch_response_bytes))
            .await
        {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "fetch: no answer within {} ms",
                timeout.as_millis()
            )),
        }
    }
}

/// Sends the request and reads the answer, up to `cap` bytes of body.
async fn exchange(request: reqwest::RequestBuilder, cap: usize) -> Result<Value, String> {
    let fail = |error| format!("fetch: {}", guard::describe(error));
    let mut response = request.send().await.map_err(fail)?;
    let status = response.status();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let url = response.url().to_string();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fail)? {
        if body.len() + chunk.len() > cap {
            return Err(format!("fetch: the response is larger than {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(json!({
        "status": status.as_u16(),
        "statusText": status.canonical_reason().unwrap_or(""),
        "url": url,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

#[async_trait]
impl Bindings for RoomBindings {
    async fn call(&mut self, name: &str, args: Value) -> Result<Value, String> {
        let args = match args {
            Value::Array(args) => args,
            _ => Vec::new(),
        };
        match name {
            "store.get" => self.store_get(&args).await,
            "store.getAll" => self.store_get_all(&args).await,
            "room.get" => self.room_get().await,
            "room.getUsers" => self.room_get_users().await,
            "files.list" => self.files_list().await,
            "fetch" => self.fetch(&args).await,
            other => Err(format!("{other} is not a binding")),
        }
    }
}

fn text<'a>(value: Option<&'a Value>, what: &str) -> Result<&'a str, String> {
    value
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} must be a string"))
}

fn store_name(value: Option<&Value>) -> Result<StoreName, String> {
    let name = text(value, "the store name")?;
    StoreName::parse("store", name).map_err(|_| format!("{name:?} is not a store name"))
}

/// A database error, without its details (they are the server's, not the customer's).
fn unavailable(error: crate::store::StoreError) -> String {
    tracing::warn!(%error, "a workflow binding's read failed");
    "the data is unavailable right now".to_owned()
}
