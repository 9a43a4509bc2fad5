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
            // Ready either way: each node serves its own sockets. What these tell an operator
            // is whether the nodes hear each other (docs/operations.md).
            let hub = state.engine().hub();
            let nodes = hub.other_nodes() + 1;
            let mut body = json!({ "status": "ready", "database": "ok", "nodes": nodes });
            match hub.relay() {
                Some(relay) if relay.is_up() => body["relay"] = json!("redis"),
                Some(_) => {
                    body["relay"] = json!("redis");
                    body["warning"] = json!(
                        "Redis is unreachable: room traffic is not relayed between nodes until \
                         it is back"
                    );
                }
                None if nodes > 1 => {
                    body["relay"] = json!("none");
                    body["warning"] = json!(format!(
                        "{nodes} nodes share the database and nothing relays room traffic \
                         between them (redis.url is not set): presence, broadcasts and room \
                         events reach only the sockets of the node where they happen"
                    ));
                }
                None => {}
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
