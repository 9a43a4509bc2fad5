//! The API reference page (`GET /docs/api`): a static shell, stylesheet and script of our own
//! (`reference/`) that render `/v1/openapi.json` in the browser. No authentication, like the
//! document itself; the dashboard's strict Content-Security-Policy.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::dashboard::CONTENT_SECURITY_POLICY;
use crate::state::AppState;

const PAGE: &str = include_str!("reference/page.html");
const STYLESHEET: &str = include_str!("reference/reference.css");
const SCRIPT: &str = include_str!("reference/reference.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/docs/api",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/docs/api/reference.css",
            get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }),
        )
        .route(
            "/docs/api/reference.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
