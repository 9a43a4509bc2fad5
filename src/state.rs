//! `AppState`: what every handler may use, built once at start-up (see `app`), cheap to
//! clone. Extractors take only their part of it (`FromRef`).

use std::sync::Arc;

use axum::extract::FromRef;

use crate::analytics::Analytics;
use crate::auth::bearer::KeyChecks;
use crate::auth::login_limit::LoginLimiter;
use crate::auth::sessions::SessionChecks;
use crate::auth::{JwtSigner, KeyVerifier, RateLimiter};
use crate::config::Config;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::rooms::Engine;
use crate::server::ConnectionStats;
use crate::store::DynStore;
use crate::workflows::runner::Runner;

/// What every handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: DynStore,
    pub(crate) key_checks: KeyChecks,
    pub(crate) jwt: JwtSigner,
    pub(crate) engine: Engine,
    pub(crate) connections: Arc<ConnectionStats>,
    pub(crate) sessions: SessionChecks,
    pub(crate) login_limiter: LoginLimiter,
    pub(crate) workflows: Arc<Runner>,
    pub(crate) metrics: Arc<Metrics>,
    /// The OpenAPI document, as served (`http::openapi`): built once, with this
    /// configuration's limits.
    pub(crate) api_document: bytes::Bytes,
}

impl AppState {
    pub fn api_document(&self) -> &bytes::Bytes {
        &self.0.api_document
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn store(&self) -> &DynStore {
        &self.0.store
    }

    pub fn keys(&self) -> &KeyVerifier {
        &self.0.key_checks.keys
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.0.key_checks.rate_limiter
    }

    pub fn jwt(&self) -> &JwtSigner {
        &self.0.jwt
    }

    pub fn bus(&self) -> &EventBus {
        self.0.engine.bus()
    }

    /// The engine: rooms, sockets, and the write paths both transports share.
    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// What `GET /metrics` shows.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// What runs workflows' code: `POST /workflows/:id/test` and the runner (`app`).
    pub fn workflows(&self) -> &Arc<Runner> {
        &self.0.workflows
    }

    /// The HTTP connection loop's counters (open connections, cap reached, accept errors).
    pub fn connections(&self) -> &ConnectionStats {
        &self.0.connections
    }
}

impl AppState {
    /// Dashboard sessions: the cookie's checks.
    pub fn sessions(&self) -> &SessionChecks {
        &self.0.sessions
    }

    /// Login attempts per client address and per email address.
    pub fn login_limiter(&self) -> &LoginLimiter {
        &self.0.login_limiter
    }

    /// The per-room per-minute activity counters.
    pub fn analytics(&self) -> &Arc<Analytics> {
        self.0.engine.analytics()
    }
}

impl FromRef<AppState> for SessionChecks {
    fn from_ref(state: &AppState) -> Self {
        state.0.sessions.clone()
    }
}

impl FromRef<AppState> for Engine {
    fn from_ref(state: &AppState) -> Self {
        state.0.engine.clone()
    }
}

impl FromRef<AppState> for JwtSigner {
    fn from_ref(state: &AppState) -> Self {
        state.0.jwt.clone()
    }
}

impl FromRef<AppState> for KeyChecks {
    fn from_ref(state: &AppState) -> Self {
        state.0.key_checks.clone()
    }
}
