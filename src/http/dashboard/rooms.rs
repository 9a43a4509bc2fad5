//! Rooms: the list (search, pages, live online counts over server-sent events), a room's page
//! (its users and who is online, its current and past sessions, its stores), and the actions:
//! create a room, create a user (its JWT shown once), reconcile, delete.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::Stream;
use maud::html;
use serde::Deserialize;

use super::layout::{self, page, secret_once, when, Nav};
use super::{see_other, PageError, PageForm, PageResult, Signed};
use crate::domain::{FileKey, RoomId, Timestamp, UserId, UserStatus};
use crate::http::extract::QueryParams;
use crate::http::files::public_base;
use crate::http::validation;
use crate::state::AppState;
use crate::store::comments::ThreadFilter;
use crate::store::entries::EntryPage;
use crate::store::files::FileFilter;
use crate::store::{ListFilter, NewRoom, NewUser, Page, PageSize, RoomScope};

/// Latest user sessions shown on a room's page.
const SESSIONS_SHOWN: i64 = 20;
/// Comment threads shown on a room's page (newest first).
const THREADS_SHOWN: i64 = 20;
/// Entries shown on a store's page.
const ENTRIES_SHOWN: i64 = 100;

/// Rooms on one page of the list.
const ROOMS_PER_PAGE: i64 = 25;
/// Users shown on a room's page.
const USERS_SHOWN: i64 = 100;
/// How often the live counts are read again: "online within a second".
const LIVE_INTERVAL: Duration = Duration::from_millis(400);
/// Every this many ticks (10 s) a live stream checks its session is still live.
const SESSION_RECHECK_TICKS: u32 = 25;
/// Rooms one live stream follows (a page of the list).
const MAX_LIVE_ROOMS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/rooms", get(rooms_page).post(create_room))
        .route("/dashboard/rooms/live", get(live_counts))
        .route("/dashboard/rooms/{roomId}", get(room_page))
        .route("/dashboard/rooms/{roomId}/stores/{store}", get(store_page))
        .route("/dashboard/rooms/{roomId}/users", post(create_user))
        .route("/dashboard/rooms/{roomId}/reconcile", post(reconcile))
        .route("/dashboard/rooms/{roomId}/delete", post(delete_room))
        .route("/dashboard/rooms/{roomId}/files/delete", post(delete_file))
}

async fn rooms_page(
    State(state): State<AppState>,
    session: Signed,
    query: QueryParams,
) -> PageResult {
    let search = query
        .get("search")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(256).collect::<String>());
    let offset = query
        .get("offset")
        .and_then(|o| o.parse::<i64>().ok())
        .filter(|o| *o >= 0)
        .unwrap_or(0);
    let filter = ListFilter {
        search: search.clone(),
        ..ListFilter::default()
    };
    let listed = state
        .store()
        .list_rooms(
            session.account.id,
            &filter,
            Page {
                limit: ROOMS_PER_PAGE,
                offset,
            },
        )
        .await?;
    let csrf = session.csrf();
    let search_text = search.clone().unwrap_or_default();
    let page_link = |offset: i64| {
        let mut link = format!("/dashboard/rooms?offset={offset}");
        if let Some(search) = &search {
            link.push_str("&search=");
            link.push_str(
                &url::form_urlencoded::byte_serialize(search.as_bytes()).collect::<String>(),
            );
        }
        link
    };
    let ids: Vec<String> = listed.items.iter().map(|r| r.id.to_string()).collect();
    let now = Timestamp::now();
    let body = html! {
        div.toolbar {
            form.inline role="search" method="get" action="/dashboard/rooms" {
                label for="search" { "Search rooms" }
                input #search type="search" name="search" value=(search_text) maxlength="256";
                button type="submit" { "Search" }
            }
            @if session.role.may_write() {
                form.inline method="post" action="/dashboard/rooms" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="room-name" { "New room" }
                    input #room-name type="text" name="name" required maxlength=(validation::MAX_NAME_CHARS) placeholder="Weekly sync";
                    label for="room-custom-id" { "Custom ID (optional)" }
                    input #room-custom-id type="text" name="customId" maxlength="128";
                    button type="submit" { "Create room" }
                }
            }
        }
        p.muted { (listed.total) @if listed.total == 1 { " room" } @else { " rooms" } @if search.is_some() { " matching" } }
        div.scroll {
            table data-live=(ids.join(",")) {
                thead { tr { th { "Name" } th { "Custom ID" } th { "Online" } th { "Users created" } th { "Active time" } th { "Created" } } }
                tbody {
                    @for room in &listed.items {
                        tr {
                            td { a href={ "/dashboard/rooms/" (room.id) } { (room.name) } }
                            td { @if let Some(custom) = &room.custom_id { code { (custom) } } }
                            td { span.online data-room=(room.id) aria-live="polite" { (room.active_participants) } }
                            td { (room.total_users_created) }
                            td { (duration(room.duration_seconds(now))) }
                            td { (when(room.created_at)) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if offset > 0 {
                a href=(page_link((offset - ROOMS_PER_PAGE).max(0))) { "← Previous" }
            }
            @if offset + ROOMS_PER_PAGE < listed.total {
                a href=(page_link(offset + ROOMS_PER_PAGE)) { "Next →" }
            }
        }
    };
    Ok(page(&session, Nav::Rooms, "Rooms", body))
}

/// `1h 02m`, `3m 05s`.
fn duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {s:02}s")
    }
}

#[derive(Deserialize)]
struct RoomForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "customId")]
    custom_id: String,
}

async fn create_room(
    State(state): State<AppState>,
    session: Signed,
    PageForm(form): PageForm<RoomForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let custom_id = Some(form.custom_id.trim().to_owned()).filter(|c| !c.is_empty());
    let room = NewRoom {
        id: RoomId::new(),
        account_id: session.account.id,
        name: validation::required_name("name", Some(form.name))?,
        custom_id: custom_id
            .map(|id| validation::custom_id("customId", id))
            .transpose()?,
        created_at: Timestamp::now(),
    };
    let room = state.store().create_room(&room).await?;
    Ok(see_other(&format!("/dashboard/rooms/{}", room.id)))
}

async fn room_scope(
    state: &AppState,
    session: &Signed,
    room_id: &str,
) -> Result<crate::domain::Room, PageError> {
    let missing = || {
        layout::problem(
            StatusCode::NOT_FOUND,
            "Room not found",
            "There is no such room in this organization.",
        )
    };
    let room_id: RoomId = room_id.parse().map_err(|_| missing())?;
    state
        .store()
        .get_room(session.account.id, room_id)
        .await
        .map_err(PageError::from)?
        .ok_or_else(|| missing().into())
}

async fn room_page(
    State(state): State<AppState>,
    session: Signed,
    Path(room_id): Path<String>,
) -> PageResult {
    let room = room_scope(&state, &session, &room_id).await?;
    render_room(&state, &session, room, None).await
}

async fn render_room(
    state: &AppState,
    session: &Signed,
    room: crate::domain::Room,
    new_token: Option<(String, String)>,
) -> PageResult {
    let scope = RoomScope {
        account_id: session.account.id,
        room_id: room.id,
    };
    let users = state
        .store()
        .list_users(
            scope,
            &ListFilter::default(),
            Page {
                limit: USERS_SHOWN,
                offset: 0,
            },
        )
        .await?;
    let (stores, version) = state.store().count_entries(scope).await?;
    let sessions = state.store().recent_sessions(scope, SESSIONS_SHOWN).await?;
    let threads = state
        .store()
        .list_threads(
            scope,
            ThreadFilter::default(),
            Page {
                limit: THREADS_SHOWN,
                offset: 0,
            },
            PageSize {
                items: 1,
                bytes: state.config().page_bytes(),
            },
        )
        .await?;
    let files = state
        .store()
        .list_files(scope, &FileFilter::default())
        .await?;
    let graph = state.engine().follow_graph(scope).await?;
    let names: std::collections::HashMap<UserId, &str> = users
        .items
        .iter()
        .map(|user| (user.id, user.name.as_str()))
        .collect();
    let csrf = session.csrf();
    let writes = session.role.may_write();
    let now = Timestamp::now();
    let base = format!("/dashboard/rooms/{}", room.id);
    let storage = format!("/v1/accounts/{}/storage/", session.account.id);
    let body = html! {
        @if let Some((name, token)) = &new_token {
            section.notice aria-labelledby="jwt-title" {
                h2 #jwt-title { "User " (name) " created" }
                p { "Give this JWT to the client SDK (" code { "authToken" } "). It is valid for 90 days." }
                (secret_once("User JWT", "user-jwt", token))
            }
        }
        dl.facts {
            dt { "Room ID" } dd { code #room-id { (room.id) } }
            dt { "Custom ID" } dd { @match &room.custom_id { Some(c) => code { (c) }, None => span.muted { "none" } } }
            dt { "Online now" } dd { span.online data-room=(room.id) aria-live="polite" { (room.active_participants) } }
            dt { "Current session" } dd {
                @match room.session_started_at {
                    Some(start) => { "since " (when(start)) }
                    None => span.muted { "nobody online" }
                }
            }
            dt { "Active time (all sessions)" } dd { (duration(room.duration_seconds(now))) }
            dt { "Users created" } dd { (room.total_users_created) }
            dt { "Created" } dd { (when(room.created_at)) }
        }
        div.live-anchor data-live=(room.id) {}
        @if writes {
            div.actions {
                form.inline method="post" action={ (base) "/users" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="user-name" { "New user's name" }
                    input #user-name type="text" name="name" required maxlength=(validation::MAX_NAME_CHARS);
                    button type="submit" #create-user { "Create user" }
                }
                form.inline method="post" action={ (base) "/reconcile" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Reconcile online count" }
                }
                form.inline method="post" action={ (base) "/delete" } data-confirm="Delete this room, its users, stores and comments?" {
                    input type="hidden" name="csrf" value=(csrf);
                    button.danger type="submit" { "Delete room" }
                }
            }
        }
        section aria-labelledby="users-title" {
            h2 #users-title { "Users (" (users.total) ")" }
            div.scroll {
                table #users {
                    thead { tr { th { "Name" } th { "Status" } th { "Follows" } th { "Custom ID" } th { "Joined" } th { "Left" } } }
                    tbody {
                        @for user in &users.items {
                            tr data-user=(user.id) {
                                td { (user.name) }
                                td {
                                    @if user.status == UserStatus::Online { span.badge.on { "online" } }
                                    @else { span.badge.off { "offline" } }
                                }
                                td.follows {
                                    @for (i, followee) in graph.following_of(user.id).iter().enumerate() {
                                        @if i > 0 { ", " }
                                        @match names.get(followee) {
                                            Some(name) => { (name) }
                                            None => code { (followee) }
                                        }
                                    }
                                }
                                td { @if let Some(c) = &user.custom_id { code { (c) } } }
                                td { @if let Some(at) = user.joined_at { (when(at)) } }
                                td { @if let Some(at) = user.left_at { (when(at)) } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="stores-title" {
            h2 #stores-title { "Stores" }
            @if stores.is_empty() { p.muted { "No entries in this room's stores." } }
            @else {
                p.muted { "Room version " (version) }
                ul { @for (name, count) in &stores { li { a href={ (base) "/stores/" (name.as_str()) } { code { (name.as_str()) } } " — " (count) " entries" } } }
            }
        }
        section aria-labelledby="files-title" {
            h2 #files-title { "Files (" (files.len()) ")" }
            @if files.is_empty() { p.muted { "No files uploaded to this room." } }
            @else {
                div.scroll {
                    table #files {
                        thead { tr { th { "Name" } th { "Type" } th { "Size" } th { "Uploaded by" } th { "Uploaded" } @if writes { th { span.visually-hidden { "Actions" } } } } }
                        tbody {
                            @for file in &files {
                                tr data-file=(file.key.as_str()) {
                                    td { a href={ (storage) (file.key.as_str()) } { (file.filename) } }
                                    td { code { (file.mime_type) } }
                                    td { (file_size(file.size)) }
                                    td { code { (file.uploaded_by) } }
                                    td { (when(file.uploaded_at)) }
                                    @if writes {
                                        td {
                                            form.inline method="post" action={ (base) "/files/delete" } data-confirm="Delete this file?" {
                                                input type="hidden" name="csrf" value=(csrf);
                                                input type="hidden" name="key" value=(file.key.as_str());
                                                button.danger type="submit" aria-label={ "Delete " (file.filename) } { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="sessions-title" {
            h2 #sessions-title { "Latest sessions" }
            @if sessions.is_empty() { p.muted { "Nobody has joined yet." } }
            @else {
                div.scroll {
                    table {
                        thead { tr { th { "User" } th { "Joined" } th { "Left" } th { "Time online" } } }
                        tbody {
                            @for (session, name) in &sessions {
                                tr {
                                    td { (name) }
                                    td { (when(session.joined_at)) }
                                    td { @match session.left_at { Some(at) => (when(at)), None => span.badge.on { "still online" } } }
                                    td { (duration((session.left_at.unwrap_or(now).as_millis() - session.joined_at.as_millis()).max(0) / 1000)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="threads-title" {
            h2 #threads-title { "Comment threads (" (threads.total) ")" }
            @if threads.items.is_empty() { p.muted { "No comments yet." } }
            ul.threads {
                @for thread in &threads.items {
                    li {
                        @if let Some(first) = thread.comments.first() { q { (first.body) } }
                        " — " (thread.comment_count) " comment" @if thread.comment_count != 1 { "s" }
                        ", " (when(thread.updated_at))
                        @if thread.resolved { " " span.badge { "resolved" } }
                    }
                }
            }
        }
        section {
            p { a href={ "/dashboard/analytics?room=" (room.id) } { "This room's analytics" } }
        }
    };
    Ok(page(session, Nav::Rooms, &room.name, body))
}

#[derive(Deserialize)]
struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn create_user(
    State(state): State<AppState>,
    session: Signed,
    Path(room_id): Path<String>,
    PageForm(form): PageForm<UserForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let room = room_scope(&state, &session, &room_id).await?;
    let user = NewUser {
        id: UserId::new(),
        account_id: session.account.id,
        room_id: room.id,
        name: validation::required_name("name", Some(form.name))?,
        profile_picture: None,
        custom_id: None,
        created_at: Timestamp::now(),
    };
    let user = state.engine().create_user(&user).await?;
    let token = state.jwt().user_token(&user);
    let room = room_scope(&state, &session, &room_id).await?;
    render_room(&state, &session, room, Some((user.name, token))).await
}

async fn reconcile(
    State(state): State<AppState>,
    session: Signed,
    Path(room_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let room = room_scope(&state, &session, &room_id).await?;
    state
        .engine()
        .reconcile_room(RoomScope {
            account_id: session.account.id,
            room_id: room.id,
        })
        .await?;
    Ok(see_other(&format!("/dashboard/rooms/{}", room.id)))
}

async fn delete_room(
    State(state): State<AppState>,
    session: Signed,
    Path(room_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let room = room_scope(&state, &session, &room_id).await?;
    state
        .engine()
        .delete_room(session.account.id, room.id)
        .await?;
    Ok(see_other("/dashboard/rooms"))
}

#[derive(Deserialize)]
struct FileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
}

async fn delete_file(
    State(state): State<AppState>,
    session: Signed,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    PageForm(form): PageForm<FileForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let room = room_scope(&state, &session, &room_id).await?;
    let key: FileKey = form.key.parse().map_err(|_| {
        layout::problem(
            StatusCode::NOT_FOUND,
            "File not found",
            "There is no such file in this room.",
        )
    })?;
    let base = public_base(&state, &headers);
    state
        .engine()
        .delete_file(session.account.id, Some(room.id), &key, &base)
        .await?;
    Ok(see_other(&format!("/dashboard/rooms/{}", room.id)))
}

/// A file's size for people: bytes, KiB or MiB.
fn file_size(bytes: i64) -> String {
    const KIB: f64 = 1024.0;
    let size = bytes as f64;
    if size < KIB {
        format!("{bytes} B")
    } else if size < KIB * KIB {
        format!("{:.1} KiB", size / KIB)
    } else {
        format!("{:.1} MiB", size / (KIB * KIB))
    }
}

/// Server-sent events: `{"<roomId>": online, ...}` for the rooms in `ids`, when it changes.
async fn live_counts(
    State(state): State<AppState>,
    session: Signed,
    query: QueryParams,
) -> Response {
    let ids: Vec<RoomId> = query
        .get("ids")
        .unwrap_or("")
        .split(',')
        .filter_map(|id| id.parse().ok())
        .take(MAX_LIVE_ROOMS)
        .collect();
    let account_id = session.account.id;
    let store = state.store().clone();
    let token_hash = session.token().hash();
    let stream = futures_util::stream::unfold(
        (None::<String>, tokio::time::interval(LIVE_INTERVAL), 0_u32),
        move |(last, mut ticker, mut ticks)| {
            let (store, ids) = (store.clone(), ids.clone());
            let token_hash = token_hash.clone();
            async move {
                loop {
                    ticker.tick().await;
                    ticks = ticks.wrapping_add(1);
                    // A stream outlives neither its session nor its login's membership (and,
                    // an open tab not being a use, it does not move the session's end).
                    if ticks % SESSION_RECHECK_TICKS == 0 {
                        let access = store
                            .session_access(&token_hash, Some(account_id), Timestamp::now())
                            .await;
                        if !matches!(access, Ok(Some(ref a)) if a.role.is_some()) {
                            return None;
                        }
                    }
                    let mut counts = serde_json::Map::new();
                    // A failed read sends nothing new; the next tick tries again.
                    if let Ok(online) = store.online_counts(account_id, &ids).await {
                        for (id, count) in online {
                            counts.insert(id.to_string(), count.into());
                        }
                    }
                    let text = serde_json::Value::Object(counts).to_string();
                    if last.as_deref() != Some(text.as_str()) {
                        let event: Result<Event, Infallible> =
                            Ok(Event::default().data(text.clone()));
                        return Some((event, (Some(text), ticker, ticks)));
                    }
                }
            }
        },
    );
    live_response(stream)
}

fn live_response(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A store of the room: its schema and its entries (read-only).
async fn store_page(
    State(state): State<AppState>,
    session: Signed,
    Path((room_id, store)): Path<(String, String)>,
) -> PageResult {
    let room = room_scope(&state, &session, &room_id).await?;
    let missing = || {
        PageError::from(layout::problem(
            StatusCode::NOT_FOUND,
            "Store not found",
            "This organization has no store of that name.",
        ))
    };
    let name = crate::domain::schema::StoreName::parse("store", &store).map_err(|_| missing())?;
    let schema = state
        .store()
        .get_schema(session.account.id, &name)
        .await?
        .ok_or_else(missing)?;
    let scope = RoomScope {
        account_id: session.account.id,
        room_id: room.id,
    };
    let list = state
        .store()
        .list_entries(
            scope,
            &name,
            EntryPage::Offset(Page {
                limit: ENTRIES_SHOWN,
                offset: 0,
            }),
            state.config().page_bytes(),
        )
        .await?;
    let schema_text = serde_json::to_string_pretty(&schema.schema.to_json()).unwrap_or_default();
    let body = html! {
        p { a href={ "/dashboard/rooms/" (room.id) } { "← " (room.name) } }
        h2 { "Schema" }
        pre { (schema_text) }
        h2 { "Entries (" (list.total) ")" }
        @if list.entries.is_empty() { p.muted { "No entries." } }
        div.scroll {
            table {
                thead { tr { th { "Key" } th { "Value" } th { "Version" } th { "Updated" } } }
                tbody {
                    @for entry in &list.entries {
                        tr {
                            td { code { (entry.key) } }
                            td { pre { (serde_json::to_string_pretty(&entry.value).unwrap_or_default()) } }
                            td { (entry.version) }
                            td { (when(entry.updated_at)) }
                        }
                    }
                }
            }
        }
        @if list.has_more { p.muted { "Showing the first entries only." } }
    };
    Ok(page(
        &session,
        Nav::Rooms,
        &format!("Store {}", name.as_str()),
        body,
    ))
}
