//! `GET /metrics` (Prometheus text format) and the layer that counts every HTTP request by
//! its route pattern.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::Gauges;
use crate::state::AppState;

/// The metrics, in Prometheus text format.
///
/// 404 when `metrics.enabled` is off or `metrics.bind` gives them an address of their own.
#[utoipa::path(
    get, path = "/metrics", tag = "Server", operation_id = "metrics", security(()),
    responses(
        (status = 200, description = "Prometheus text format (metric names: docs/operations.md)", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 404, description = "`NOT_FOUND`: `metrics.enabled` is off, or `metrics.bind` serves it on another address", body = super::openapi::ErrorEnvelope),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if !state.config().metrics.on_main_listener() {
        return crate::error::ApiError::NotFound("Route not found".into()).into_response();
    }
    exposition(&state).await
}

/// The listener of `metrics.bind`: `/metrics` alone, nothing else (404 without the envelope's
/// middleware: it is not the API).
pub fn own_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |State(state): State<AppState>| async move { exposition(&state).await },
            ),
        )
        .with_state(state)
}

async fn exposition(state: &AppState) -> Response {
    let hub = state.engine().hub();
    let (in_use, idle) = state.store().pool_connections();
    // A database that does not answer leaves its gauges out rather than the whole scrape.
    let depths = state.store().queue_depths().await.ok();
    let gauges = Gauges {
        http_connections: state.connections().open(),
        sockets_open: hub.open_sockets(),
        sockets_joined: hub.joined_now().len(),
        rooms_active: hub.loaded_rooms().len(),
        db_connections_in_use: in_use,
        db_connections_idle: idle,
        webhook_deliveries_pending: depths.map(|(pending, _)| pending),
        workflow_runs_queued: depths.map(|(_, queued)| queued),
        relay: hub.relay().map(|relay| relay.counts()),
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(&gauges),
    )
        .into_response()
}

/// Counts the request under its route's pattern (`unmatched` when no route took it).
pub async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Both cheap to keep (a standard method, a shared pattern): nothing is copied per request.
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    state.metrics().http_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
