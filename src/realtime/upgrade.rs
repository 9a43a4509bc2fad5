//! `GET /v1/realtime`: the WebSocket upgrade. Authentication happens on the socket (the
//! first frame), never in the URL.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

use super::protocol::SUBPROTOCOL;
use crate::auth::JwtSigner;
use crate::rooms::Engine;
use crate::server::ConnectionLease;

/// A frame this many times over the limit closes the socket (1009) instead of being answered.
const HARD_CAP_FACTOR: usize = 4;
/// The read buffer a socket starts with (it grows for a larger frame). Client frames are
/// small (a presence update is ~150 bytes), so 1 KiB still takes several per read; the
/// library's default of 128 KiB, touched on the first read, would be most of an idle socket's
/// memory, and even 4 KiB was a third of it.
const READ_BUFFER_BYTES: usize = 1024;
/// Frames queued for one write are sent once they reach this much (or at the batch's flush).
/// The library's default, 128 KiB, lets a busy socket's write buffer grow that large and keep
/// the capacity for good; a few KiB per write already make the system calls few.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

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
    upgrade: WebSocketUpgrade,
) -> Response {
    let lease = lease.map(|Extension(lease)| lease);
    let cap = engine.hub().config().max_message_bytes * HARD_CAP_FACTOR;
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(cap)
        .max_frame_size(cap)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let hub = engine.hub().clone();
            hub.track(super::connection::run(socket, engine, jwt, lease))
        })
}
