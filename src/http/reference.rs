//! The API reference page (`GET /docs/api`): a static shell, stylesheet and script of our own
//! (`reference/`) that render `/v1/openapi.json` in the browser. No authentication, like the
//! document itself; the dashboard's strict Content-Security-Policy.

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::dashboard::{asset, CONTENT_SECURITY_POLICY};
use crate::state::AppState;

const PAGE: &str = include_str!("reference/page.html");
const STYLESHEET: &str = include_str!("reference/reference.css");
const SCRIPT: &str = include_str!("reference/reference.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/docs/api", get(page))
        .route(
            "/docs/api/reference.css",
            get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }),
        )
        .route(
            "/docs/api/reference.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
}

async fn page() -> Response {
    let mut response = asset("text/html; charset=utf-8", PAGE);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}
