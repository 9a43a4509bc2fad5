//! Rooms: the list (search, pages, live online counts over server-sent events) and creating a
//! room. A room's own page and its actions are in `room.rs`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::Stream;
use maud::html;
use serde::Deserialize;

use super::layout::{page, when, Nav};
use super::{see_other, PageForm, PageResult, Signed};
use crate::domain::{RoomId, Timestamp};
use crate::http::extract::QueryParams;
use crate::http::validation;
use crate::state::AppState;
use crate::store::{ListFilter, NewRoom, Page};

/// Rooms on one page of the list.
const ROOMS_PER_PAGE: i64 = 25;
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
pub(super) fn duration(seconds: i64) -> String {
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
