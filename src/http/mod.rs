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
pub mod openapi;
pub mod reference;
pub mod rooms;
pub mod routes;
pub mod stores;
pub mod users;
pub mod validation;
pub mod webhooks;
pub mod workflows;

use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;
use routes::Routes;

/// The REST API's routes: what the OpenAPI document describes (`openapi`). The dashboard's
/// pages, the API reference page and the socket's upgrade are added beside them by `router`.
pub fn api_routes() -> Routes {
    let account = Routes::new()
        .merge(rooms::routes())
        .merge(users::routes())
        .merge(accounts::routes())
        .merge(comments::routes())
        .merge(stores::routes())
        .merge(webhooks::routes())
        .merge(workflows::routes())
        .merge(files::routes());
    Routes::new()
        .get("/healthz", health::healthz)
        .get("/readyz", health::readyz)
        .get("/metrics", metrics::metrics)
        .get("/v1/openapi.json", openapi::openapi_json)
        .get("/v1/accounts/{accountId}", accounts::get_account)
        .nest("/v1/accounts/{accountId}", account)
}

/// The REST API, with `sockets` (the socket transport's routes) under the same middleware.
pub fn router(state: AppState, sockets: Router<AppState>) -> Router {
    let layers = middleware::Layers::from_config(state.config());
    let routes = api_routes()
        .into_router()
        .merge(sockets)
        .merge(dashboard::router())
        .merge(reference::router())
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
