//! REST: comment threads of a room, for backends (listing and moderation).

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
