//! Builds the shared state and the router, binds the listener first (tests use port 0), and
//! serves until shut down.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::signing_secret::{self, SecretSource};
use crate::auth::{JwtSigner, KeyVerifier, RateLimiter};
use crate::config::Config;
use crate::events::EventBus;
use crate::http::server::{self, ConnectionStats};
use crate::realtime::{nodes, Hub};
use crate::store::{self, DynStore, StoreOptions};

/// What every handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    config: Config,
    store: DynStore,
    keys: KeyVerifier,
    rate_limiter: RateLimiter,
    jwt: JwtSigner,
    bus: EventBus,
    hub: Hub,
    connections: Arc<ConnectionStats>,
}

impl AppState {
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn store(&self) -> &DynStore {
        &self.0.store
    }

    pub fn keys(&self) -> &KeyVerifier {
        &self.0.keys
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.0.rate_limiter
    }

    pub fn jwt(&self) -> &JwtSigner {
        &self.0.jwt
    }

    pub fn bus(&self) -> &EventBus {
        &self.0.bus
    }

    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    /// The HTTP connection loop's counters (open connections, cap reached, accept errors).
    pub fn connections(&self) -> &ConnectionStats {
        &self.0.connections
    }
}

/// Opens the configured database (running its migrations).
pub async fn open_store(config: &Config) -> anyhow::Result<DynStore> {
    let url = config.database_url();
    if let Some(parent) = sqlite_parent_dir(&url) {
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating the directory {}", parent.display()))?;
    }
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_millis(config.database.acquire_timeout_ms),
    };
    store::connect(&url, &options)
        .await
        .with_context(|| format!("opening the database ({})", redact_url(&url)))
}

/// The directory a `sqlite:` URL's file lives in, if it names a file.
fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path)
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A server ready to run: state built, listener bound.
pub struct App {
    state: AppState,
    listener: TcpListener,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        let (secret, source) =
            signing_secret::load_or_generate(&config.jwt_secret, &config.data_dir)
                .context("loading the JWT signing secret")?;
        match &source {
            SecretSource::Configured => {
                tracing::info!("signing user JWTs with the configured secret")
            }
            SecretSource::Loaded(path) => {
                tracing::info!(path = %path.display(), "signing user JWTs with the secret kept in the data directory")
            }
            SecretSource::Generated(path) => tracing::warn!(
                path = %path.display(),
                "no jwt_secret configured: generated one and saved it in the data directory; \
                 set COLLABKIT_JWT_SECRET to the same value on every node of a cluster"
            ),
        }
        let addr = config.bind_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let keys = KeyVerifier::new(
            store.clone(),
            config.key_cache_ttl(),
            config.auth.key_cache_max_entries,
        );
        let rate_limiter = RateLimiter::new(config.rate_limit.per_second, config.rate_limit.burst);
        let bus = EventBus::new();
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let node_id = nodes::node_id(&config.realtime.node_id, port);
        let hub = Hub::new(store.clone(), bus.clone(), config.realtime.clone(), node_id);
        nodes::start(&hub)
            .await
            .context("registering this node and cleaning up after dead ones")?;
        tracing::info!(node = %hub.node_id(), "node registered");
        let state = AppState(Arc::new(Shared {
            config,
            store,
            keys,
            rate_limiter,
            jwt: JwtSigner::new(secret),
            bus,
            hub,
            connections: Arc::default(),
        }));
        Ok(Self { state, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, closes every WebSocket
    /// (1001) and records its leave, and lets in-flight requests finish, all within the
    /// configured grace period.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let grace = self.state.config().shutdown_grace();
        let hub = self.state.hub().clone();
        let router = crate::http::router(self.state.clone());
        tracing::info!(addr = %self.local_addr(), "listening");
        let retention = Duration::from_millis(self.state.config().stores.tombstone_retention_ms);
        let heartbeat = tokio::spawn(nodes::upkeep(hub.clone(), retention));
        let config = self.state.config();
        let deliveries = crate::webhooks::Worker::new(
            self.state.store().clone(),
            self.state.bus().clone(),
            config.webhooks.clone(),
            hub.node_id().clone(),
        )
        .context("building the webhook client")?;
        let deliveries = tokio::spawn(deliveries.run(shutdown.clone(), grace));
        let server = server::serve(
            self.listener,
            router,
            server::Limits::from_config(config),
            self.state.0.connections.clone(),
            shutdown.clone(),
        );
        // Upgraded sockets are not the HTTP server's any more: close them ourselves, at once,
        // so that their users go offline while the database is still at hand.
        let sockets = async {
            shutdown.cancelled().await;
            if !hub.shut_down(grace).await {
                tracing::warn!(?grace, "shutdown grace period over with sockets still open");
            }
        };
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::join!(
            async {
                tokio::select! {
                    () = server => {}
                    () = deadline => {
                        tracing::warn!(?grace, "shutdown grace period over; dropping connections");
                    }
                }
            },
            sockets,
        );
        heartbeat.abort();
        let _ = deliveries.await;
        nodes::stop(&hub).await;
        tracing::info!("server stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sqlite_directories() {
        assert_eq!(
            sqlite_parent_dir("sqlite://./data/x.db"),
            Some("./data".into())
        );
        assert_eq!(
            sqlite_parent_dir("sqlite:/tmp/a/b.db?mode=rwc"),
            Some("/tmp/a".into())
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite:x.db"), None);
        assert_eq!(sqlite_parent_dir("postgres://h/db"), None);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
