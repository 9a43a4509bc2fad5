//! Liveness and readiness probes.

use std::time::Duration;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::Reply;
use super::openapi::Envelope;
use crate::error::ApiError;
use crate::state::AppState;

/// A readiness probe that waits longer than this on the database reports it unreachable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up and serving HTTP.
#[utoipa::path(
    get, path = "/healthz", tag = "Server", operation_id = "healthz", security(()),
    responses((status = 200, description = "OK", body = Envelope<Health>))
)]
pub async fn healthz() -> Reply {
    Reply::ok("OK", Health { status: "ok" })
}

/// What `/readyz` answers.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    status: &'static str,
    #[schema(example = "ok")]
    database: &'static str,
    /// Live nodes on the database, this one included.
    nodes: usize,
    /// `redis` or `none`: what relays room traffic between nodes (absent on one node
    /// without Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    relay: Option<&'static str>,
    /// Why the nodes may not hear each other.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    warning: Option<String>,
}

/// The process can do its work: the database answers.
#[utoipa::path(
    get, path = "/readyz", tag = "Server", operation_id = "readyz", security(()),
    responses((status = 200, description = "OK", body = Envelope<Readiness>))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Reply, ApiError> {
    match tokio::time::timeout(READINESS_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => {
            // Ready either way: each node serves its own sockets. What these tell an operator
            // is whether the nodes hear each other (docs/operations.md).
            let hub = state.engine().hub();
            let nodes = hub.other_nodes() + 1;
            let mut body = Readiness {
                status: "ready",
                database: "ok",
                nodes,
                relay: None,
                warning: None,
            };
            match hub.relay() {
                Some(relay) if relay.is_up() => body.relay = Some("redis"),
                Some(_) => {
                    body.relay = Some("redis");
                    body.warning = Some(
                        "Redis is unreachable: room traffic is not relayed between nodes until \
                         it is back"
                            .to_owned(),
                    );
                }
                None if nodes > 1 => {
                    body.relay = Some("none");
                    body.warning = Some(format!(
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
