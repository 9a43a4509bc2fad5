//! The REST API: one file per resource, each with its own `router()`, under the envelope; and
//! the dashboard's pages (`dashboard/`), under the same middleware.

pub mod accounts;
pub mod comments;
pub mod dashboard;
pub mod envelope;
pub mod extract;
pub mod files;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod rooms;
pub mod stores;
pub mod users;
pub mod validation;
pub mod webhooks;
pub mod workflows;

use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The REST API, with `sockets` (the socket transport's routes) under the same middleware.
pub fn router(state: AppState, sockets: Router<AppState>) -> Router {
    let layers = middleware::Layers::from_config(state.config());
    let account = Router::new()
        .merge(rooms::router())
        .merge(users::router())
        .merge(accounts::router())
        .merge(comments::router())
        .merge(stores::router())
        .merge(webhooks::router())
        .merge(workflows::router())
        .merge(files::router());
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(sockets)
        .merge(dashboard::router())
        .route("/v1/accounts/{accountId}", get(accounts::get_account))
        .nest("/v1/accounts/{accountId}", account)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .with_state(state);
    middleware::around(routes, &layers)
}

async fn route_not_found() -> ApiError {
    ApiError::NotFound("Route not found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
