//! `GET /v1/realtime`: the WebSocket upgrade (RFC 6455, 4.2), answered here and handed to
//! the server's own framing (`ws`). Authentication happens on the socket (the first frame),
//! never in the URL.

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;

use super::protocol::SUBPROTOCOL;
use super::ws;
use crate::auth::JwtSigner;
use crate::error::ApiError;
use crate::rooms::Engine;
use crate::server::ConnectionLease;

/// A frame this many times over the limit closes the socket (1009) instead of being answered.
const HARD_CAP_FACTOR: usize = 4;

/// `GET /v1/realtime`, for the app to mount beside the REST API.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Engine: FromRef<S>,
    JwtSigner: FromRef<S>,
{
    Router::new().route("/v1/realtime", get(connect))
}

pub async fn connect(
    State(engine): State<Engine>,
    State(jwt): State<JwtSigner>,
    lease: Option<Extension<ConnectionLease>>,
    mut request: Request,
) -> Response {
    let accept = match accept_key(request.headers()) {
        Ok(accept) => accept,
        Err(error) => return error.into_response(),
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return ApiError::BadRequest("This connection cannot be upgraded".into()).into_response();
    };
    let lease = lease.map(|Extension(lease)| lease);
    let cap = engine.hub().config().max_message_bytes * HARD_CAP_FACTOR;
    let limits = ws::Limits {
        max_frame_bytes: cap,
        max_message_bytes: cap,
    };
    let hub = engine.hub().clone();
    tokio::spawn(hub.track(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                super::connection::run(io, limits, engine, jwt, lease).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    }));
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if offers(request.headers(), SUBPROTOCOL) {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    response
}

/// The `Sec-WebSocket-Accept` value for a well-formed upgrade request, or why it is not one.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let refuse = |what: &str| {
        ApiError::BadRequest(
            format!("This endpoint takes a WebSocket upgrade (docs/protocol.md): {what}").into(),
        )
    };
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(refuse("Connection must include \"upgrade\""));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(refuse("Upgrade must be \"websocket\""));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version.as_bytes() != b"13")
    {
        return Err(refuse("Sec-WebSocket-Version must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| refuse("Sec-WebSocket-Key is missing"))?;
    HeaderValue::from_str(&ws::accept_key(key.as_bytes()))
        .map_err(|_| refuse("Sec-WebSocket-Key is malformed"))
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    items(headers, name).any(|item| item.eq_ignore_ascii_case(token))
}

/// Whether the client offers the subprotocol `name` (case-sensitive, as RFC 6455 has it).
fn offers(headers: &HeaderMap, name: &str) -> bool {
    items(headers, header::SEC_WEBSOCKET_PROTOCOL).any(|item| item == name)
}

/// The items of a comma-separated header, however many times it is given.
fn items(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}
