//! A room's page (its users and who is online and whom they follow, its current and past
//! sessions, its stores, comment threads and files) and its actions: create a user (its JWT
//! shown once), reconcile, delete a file, delete the room; and a store's page.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::layout::{self, page, secret_once, when, Nav};
use super::rooms::duration;
use super::{see_other, CsrfForm, PageError, PageForm, PageResult, Signed};
use crate::domain::{FileKey, RoomId, Timestamp, UserId, UserStatus};
use crate::http::files::public_base;
use crate::http::validation;
use crate::state::AppState;
use crate::store::comments::ThreadFilter;
use crate::store::entries::EntryPage;
use crate::store::files::FileFilter;
use crate::store::{ListFilter, NewUser, Page, PageSize, RoomScope};

/// Latest user sessions shown on a room's page.
const SESSIONS_SHOWN: i64 = 20;
/// Comment threads shown on a room's page (newest first).
const THREADS_SHOWN: i64 = 20;
/// Entries shown on a store's page.
const ENTRIES_SHOWN: i64 = 100;
/// Users shown on a room's page.
const USERS_SHOWN: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/rooms/{roomId}", get(room_page))
        .route("/dashboard/rooms/{roomId}/stores/{store}", get(store_page))
        .route("/dashboard/rooms/{roomId}/users", post(create_user))
        .route("/dashboard/rooms/{roomId}/reconcile", post(reconcile))
        .route("/dashboard/rooms/{roomId}/delete", post(delete_room))
        .route("/dashboard/rooms/{roomId}/files/delete", post(delete_file))
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
