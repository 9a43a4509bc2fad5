//! Analytics: concurrent users, joins, messages per minute by kind and the busiest rooms, for
//! the organization or one room, over the last hour, day, 7 days or 30 days.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use maud::html;

use super::chart::{chart, Kind, Series};
use super::layout::{page, Nav};
use super::{PageResult, Signed};
use crate::domain::{RoomId, Timestamp};
use crate::http::extract::QueryParams;
use crate::state::AppState;
use crate::store::{MinuteRange, RoomMinute};

const MINUTE_MS: i64 = 60_000;

/// A selectable range: its name, its length and its bucket, in minutes.
const RANGES: [(&str, &str, i64, i64); 4] = [
    ("hour", "Last hour", 60, 1),
    ("day", "Last day", 24 * 60, 30),
    ("week", "Last 7 days", 7 * 24 * 60, 6 * 60),
    ("month", "Last 30 days", 30 * 24 * 60, 24 * 60),
];

pub fn router() -> Router<AppState> {
    Router::new().route("/dashboard/analytics", get(analytics_page))
}

async fn analytics_page(
    State(state): State<AppState>,
    session: Signed,
    query: QueryParams,
) -> PageResult {
    let (range_name, range_label, minutes, bucket) = RANGES
        .iter()
        .copied()
        .find(|(name, ..)| Some(*name) == query.get("range"))
        .unwrap_or(RANGES[0]);
    let room = match query.get("room").and_then(|id| id.parse::<RoomId>().ok()) {
        Some(id) => state.store().get_room(session.account.id, id).await?,
        None => None,
    };
    // Counters still in memory are written first, so that the page shows the last seconds.
    state.analytics().flush(state.store()).await;
    let now = Timestamp::now().as_millis();
    let bucket_ms = bucket * MINUTE_MS;
    let end = now - now.rem_euclid(bucket_ms) + bucket_ms;
    let start = end - minutes * MINUTE_MS;
    let range = MinuteRange {
        account_id: session.account.id,
        room_id: room.as_ref().map(|r| r.id),
        from: Timestamp::from_millis(start),
        to: Timestamp::from_millis(end),
        step_ms: bucket_ms,
    };
    let rows = state.store().room_minutes(range).await?;
    let session_steps = state
        .store()
        .session_steps(range, Timestamp::from_millis(now))
        .await?;
    let mut sessions = vec![0.0; usize::try_from((end - start) / bucket_ms).unwrap_or(0)];
    let mut durations = sessions.clone();
    for step in &session_steps {
        let i = usize::try_from((step.step - start) / bucket_ms).unwrap_or(0);
        if let Some(count) = sessions.get_mut(i) {
            *count = step.sessions as f64;
            durations[i] = step.average_ms as f64 / 60_000.0;
        }
    }
    let buckets = usize::try_from((end - start) / bucket_ms).unwrap_or(0);
    let mut sums = vec![RoomMinute::default(); buckets];
    for row in &rows {
        let i = usize::try_from((row.minute.as_millis() - start) / bucket_ms).unwrap_or(0);
        if let Some(sum) = sums.get_mut(i) {
            *sum = row.clone();
        }
    }
    let labels: Vec<String> = (0..buckets)
        .map(|i| {
            let at = start + i as i64 * bucket_ms;
            let format = if bucket >= 24 * 60 {
                "%m-%d"
            } else if minutes > 24 * 60 {
                "%m-%d %H:%M"
            } else {
                "%H:%M"
            };
            chrono::DateTime::from_timestamp_millis(at)
                .map_or_else(String::new, |t| t.format(format).to_string())
        })
        .collect();
    let per_minute = |f: fn(&RoomMinute) -> i64| -> Vec<f64> {
        sums.iter().map(|s| f(s) as f64 / bucket as f64).collect()
    };
    let busiest = if room.is_none() {
        let top = state.store().busiest_rooms(range, 10).await?;
        let mut named = Vec::with_capacity(top.len());
        for (id, total) in top {
            let name = state
                .store()
                .get_room(session.account.id, id)
                .await?
                .map_or_else(|| "(deleted room)".to_owned(), |r| r.name);
            named.push((id, name, total));
        }
        named
    } else {
        Vec::new()
    };
    let unit_per = if bucket == 1 {
        "per minute".to_owned()
    } else {
        "per minute (average)".to_owned()
    };
    let title = match &room {
        Some(room) => format!("Analytics: {}", room.name),
        None => "Analytics".to_owned(),
    };
    let body = html! {
        nav.ranges aria-label="Range" {
            @for (name, label, ..) in RANGES {
                @let href = match &room { Some(r) => format!("/dashboard/analytics?range={name}&room={}", r.id), None => format!("/dashboard/analytics?range={name}") };
                @if name == range_name { a href=(href) aria-current="true" { (label) } } @else { a href=(href) { (label) } }
            }
        }
        p.muted { (range_label) ", UTC, in steps of " (bucket) " minute" @if bucket != 1 { "s" } "." }
        (chart("Concurrent users (peak)", "users", &labels, &[Series { name: "Users online", values: sums.iter().map(|s| s.peak_users as f64).collect() }], Kind::Line))
        (chart("Messages", &format!("messages {unit_per}"), &labels, &[
            Series { name: "Presence updates", values: per_minute(|s| s.presence_updates) },
            Series { name: "Broadcasts", values: per_minute(|s| s.broadcasts) },
            Series { name: "Store writes", values: per_minute(|s| s.store_writes) },
            Series { name: "Comments", values: per_minute(|s| s.comments) },
        ], Kind::Line))
        (chart("Sessions started", "sessions", &labels, &[Series { name: "Sessions", values: sessions }], Kind::Bars))
        (chart("Session duration (average)", "minutes", &labels, &[Series { name: "Average session", values: durations }], Kind::Line))
        (chart("Joins (sockets joined)", "joins", &labels, &[Series { name: "Joins", values: sums.iter().map(|s| s.joins as f64).collect() }], Kind::Bars))
        @if room.is_none() {
            section aria-labelledby="busiest-title" {
                h2 #busiest-title { "Busiest rooms" }
                @if busiest.is_empty() { p.muted { "No activity in this range yet." } }
                ol.busiest {
                    @for (id, name, total) in &busiest {
                        li { a href={ "/dashboard/analytics?range=" (range_name) "&room=" (id) } { (name) } " — " (total) " messages and joins" }
                    }
                }
            }
        } @else if let Some(room) = &room {
            p { a href={ "/dashboard/rooms/" (room.id) } { "Back to the room" } " · " a href={ "/dashboard/analytics?range=" (range_name) } { "The whole organization" } }
        }
    };
    Ok(page(&session, Nav::Analytics, &title, body))
}
