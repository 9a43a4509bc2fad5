//! Liveness and readiness probes.

use std::time::Duration;

use axum::extract::State;
use serde_json::json;

use super::envelope::Reply;
use crate::error::ApiError;
use crate::state::AppState;

/// A readiness probe that waits longer than this on the database reports it unreachable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up and serving HTTP.
pub async fn healthz() -> Reply {
    Reply::ok("OK", json!({ "status": "ok" }))
}

/// The process can do its work: the database answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Reply, ApiError> {
    match tokio::time::timeout(READINESS_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => {
            // Ready either way: each node serves its own sockets. What the count tells an
            // operator is that they do not hear each other (docs/operations.md).
            let nodes = state.engine().hub().other_nodes() + 1;
            let mut body = json!({ "status": "ready", "database": "ok", "nodes": nodes });
            if nodes > 1 {
                body["relay"] = json!("none");
                body["warning"] = json!(format!(
                    "{nodes} nodes share the database and nothing relays room traffic between \
                     them: presence, broadcasts and room events reach only the sockets of the \
                     node where they happen"
                ));
            }
            Ok(Reply::ok("OK", body))
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database unreachable");
            Err(ApiError::Unavailable)
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            Err(ApiError::Unavailable)
        }
    }
}
