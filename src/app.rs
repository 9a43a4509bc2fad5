//! Builds the shared state and the router, binds the listener first (tests use port 0), and
//! serves until shut down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::auth::bearer::KeyChecks;
use crate::auth::login_limit::LoginLimiter;
use crate::auth::sessions::SessionChecks;
use crate::auth::signing_secret::{self, SecretSource};
use crate::auth::{JwtSigner, KeyVerifier, RateLimiter};
use crate::config::{Config, SignupPolicy};
use crate::data_dir;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::rooms::{nodes, Engine};
use crate::server;
use crate::state::{AppState, Shared};
use crate::store::sealing::{Sealer, SecretsKey};
use crate::store::webhooks::{reseal_all, Reseal};
use crate::store::{self, DynStore, StoreOptions};
use crate::workflows::runner::Runner;

/// Where a generated secrets key is kept, in the data directory (like `jwt-secret`).
const SECRETS_KEY_FILE: &str = "secrets-key";

/// What to do when no secrets key is configured and none is kept in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    /// Generate one and keep it there, as on a server's first start.
    Generate,
    /// Fail: re-sealing with a key invented on the spot would lock the servers out.
    Refuse,
}

/// Opens the configured database (running its migrations), with the secrets key configured or
/// kept in the data directory (generated there if there is none).
pub async fn open_store(config: &Config) -> anyhow::Result<DynStore> {
    open_store_with(config, load_sealer(config, MissingKey::Generate)?).await
}

/// `open_store` with the stored secrets sealed and opened by `sealer`.
pub async fn open_store_with(config: &Config, sealer: Sealer) -> anyhow::Result<DynStore> {
    let url = config.database_url();
    if let Some(file) = sqlite_file(&url) {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            data_dir::create(parent)?;
        }
        // Before SQLite opens it: SQLite would create it 0644 under the usual umask, and it
        // gives its -wal and -shm files the mode of the database file.
        data_dir::ensure_private_file(&file)?;
    }
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_millis(config.database.acquire_timeout_ms),
    };
    store::connect(&url, &options, sealer)
        .await
        .with_context(|| format!("opening the database ({})", redact_url(&url)))
}

/// The sealer of stored secrets: the configured key, else the one kept in the data directory,
/// else (as `missing` says) a new one written there; `secrets_previous_keys` only open.
/// Logs the key's id, never the key.
pub fn load_sealer(config: &Config, missing: MissingKey) -> anyhow::Result<Sealer> {
    let previous = config
        .secrets_previous_keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            SecretsKey::parse(key).map_err(|e| anyhow!("secrets_previous_keys[{i}] {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (current, source) = if config.secrets_key.is_empty() {
        let path = config.data_dir.join(SECRETS_KEY_FILE);
        let (text, source) = match missing {
            MissingKey::Generate => {
                data_dir::load_or_generate(&config.data_dir, SECRETS_KEY_FILE, || {
                    Ok(SecretsKey::generate()?.to_base64())
                })?
            }
            MissingKey::Refuse => {
                let text = data_dir::read(&path)?.with_context(|| {
                    format!(
                        "no secrets key: set secrets_key (COLLABKIT_SECRETS_KEY) to the servers' \
                         key, or run where {} holds it",
                        path.display()
                    )
                })?;
                (text, SecretSource::Loaded(path.clone()))
            }
        };
        let key = SecretsKey::parse(&text)
            .map_err(|e| anyhow!("the secrets key in {} {e}", path.display()))?;
        (key, source)
    } else {
        let key = SecretsKey::parse(&config.secrets_key).map_err(|e| anyhow!("secrets_key {e}"))?;
        (key, SecretSource::Configured)
    };
    let key_id = current.id();
    let previous_ids: Vec<String> = previous.iter().map(SecretsKey::id).collect();
    match &source {
        SecretSource::Configured => tracing::info!(
            key_id, previous_key_ids = ?previous_ids,
            "sealing stored secrets with the configured secrets_key; every node sharing this \
             database needs the same key"
        ),
        SecretSource::Loaded(path) => tracing::info!(
            key_id, previous_key_ids = ?previous_ids, path = %path.display(),
            "sealing stored secrets with the key kept in the data directory; every node sharing \
             this database needs the same key"
        ),
        SecretSource::Generated(path) => tracing::warn!(
            key_id, path = %path.display(),
            "no secrets_key configured: generated one and saved it in the data directory; set \
             COLLABKIT_SECRETS_KEY to the same value on every node of a cluster, and keep it \
             with the database's backups"
        ),
    }
    Ok(Sealer::new(&current, &previous))
}

/// On SQLite, takes the lock of the database file (`<file>.lock`), or refuses to start: a
/// SQLite file serves one node, and a second server on it would take the first one's sockets
/// for dead ones. Held until the server stops (a killed one's goes with its process). The
/// command-line tools (`accounts create`, ...) do not take it: they run beside the server.
fn lock_sqlite(config: &Config) -> anyhow::Result<Option<std::fs::File>> {
    let Some(file) = sqlite_file(&config.database_url()) else {
        return Ok(None);
    };
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        data_dir::create(parent)?;
    }
    let path = PathBuf::from(format!("{}.lock", file.display()));
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another server runs on {} (it holds {}): a SQLite database serves one node; stop \
             it, or use PostgreSQL (and redis.url) for several",
            file.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The database file a `sqlite:` URL names, unless the database is in memory or read-only.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let not_a_file = query
        .split('&')
        .any(|param| param == "mode=memory" || param == "mode=ro");
    if path.is_empty() || path == ":memory:" || not_a_file {
        return None;
    }
    Some(PathBuf::from(path))
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

/// The state of a server that listens on `port` (0: none yet, or tests): the database opened
/// and migrated, secrets loaded, this node registered.
pub async fn build_state(config: Config, port: u16) -> anyhow::Result<AppState> {
    let store = open_store(&config).await?;
    data_dir::warn_if_exposed(&config.data_dir);
    if let Some(file) = sqlite_file(&config.database_url()) {
        data_dir::warn_if_exposed(&file);
    }
    // Secrets an earlier version wrote in plaintext are sealed now; those sealed with a
    // previous key wait for `collabkit secrets rotate` (other nodes may lack the new key).
    let sealed = reseal_all(store.as_ref(), Reseal::Plaintext)
        .await
        .context("sealing the webhook secrets kept in plaintext")?;
    if sealed.resealed > 0 {
        tracing::info!(
            count = sealed.resealed,
            "sealed the webhook secrets an earlier version kept in plaintext"
        );
    }
    let (secret, source) = signing_secret::load_or_generate(&config.jwt_secret, &config.data_dir)
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
    let keys = KeyVerifier::new(
        store.clone(),
        config.key_cache_ttl(),
        config.auth.key_cache_max_entries,
    );
    let rate_limiter = RateLimiter::new(config.rate_limit.per_second, config.rate_limit.burst);
    let bus = EventBus::new();
    let node_id = nodes::node_id(&config.realtime.node_id, port);
    let files = crate::files::Storage::from_config(&config)?;
    tracing::info!(storage = files.name(), "room files storage");
    let metrics = Arc::new(Metrics::new(crate::realtime::protocol::frame_labels()));
    let engine = Engine::new(
        store.clone(),
        bus,
        config.clone(),
        node_id,
        files,
        metrics.clone(),
    );
    nodes::start(&engine)
        .await
        .context("registering this node and cleaning up after dead ones")?;
    tracing::info!(node = %engine.hub().node_id(), "node registered");
    // Before serving: no upload of this node is in flight yet.
    let abandoned = engine
        .sweep_abandoned_uploads()
        .await
        .context("removing uploads that a crash left unfinished")?;
    if abandoned > 0 {
        tracing::info!(abandoned, "removed unfinished uploads");
    }
    warn_if_signup_is_exposed(&config);
    if config.realtime.outbox_frames.is_some() {
        tracing::warn!(
            "realtime.outbox_frames is no longer used and is ignored: a socket's queue is \
             bounded by realtime.outbox_bytes and realtime.outbox_max_delay_ms"
        );
    }
    let workflows = Arc::new(Runner::from_config(
        &config,
        store.clone(),
        metrics.clone(),
    )?);
    let api_document = crate::http::openapi::document(&config);
    let state = AppState(Arc::new(Shared {
        workflows,
        metrics,
        api_document,
        key_checks: KeyChecks {
            keys: Arc::new(keys),
            rate_limiter: Arc::new(rate_limiter),
        },
        jwt: JwtSigner::new(secret),
        sessions: SessionChecks {
            store: store.clone(),
            ttl: config.dashboard.session_ttl(),
        },
        login_limiter: LoginLimiter::new(
            Duration::from_millis(config.dashboard.login_window_ms),
            config.dashboard.login_attempts_per_address,
            config.dashboard.login_attempts_per_email,
        ),
        config,
        store,
        engine,
        connections: Arc::default(),
    }));
    Ok(state)
}

/// Open sign-up on an address other people can reach lets anyone create an organization.
fn warn_if_signup_is_exposed(config: &Config) {
    let exposed = config
        .bind_addr()
        .is_ok_and(|addr| !addr.ip().is_loopback());
    if exposed && config.dashboard.signup == SignupPolicy::Open {
        tracing::warn!(
            bind = %config.bind,
            "dashboard sign-up is open to anyone who can reach this server; set \
             dashboard.signup (COLLABKIT_DASHBOARD_SIGNUP) to \"invite\" or \"closed\" unless \
             that is intended"
        );
    }
}

/// The whole router: the REST API and the socket transport, under the middleware.
pub fn router(state: AppState) -> axum::Router {
    crate::http::router(state, crate::realtime::upgrade::router())
}

/// A listening socket on `addr` whose kernel queue of connections not yet accepted holds
/// `backlog` (`http.listen_backlog`; tokio's `TcpListener::bind` takes 1,024).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restarted server binds while its old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A server ready to run: state built, listener bound.
pub struct App {
    state: AppState,
    listener: TcpListener,
    /// `metrics.bind`'s, when `/metrics` has an address of its own.
    metrics_listener: Option<TcpListener>,
    /// On SQLite, the file's lock, held while the server runs (`lock_sqlite`).
    _sqlite_lock: Option<std::fs::File>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let addr = config.bind_addr()?;
        let backlog = config.http.listen_backlog;
        let listener = listen(addr, backlog).with_context(|| format!("binding {addr}"))?;
        let metrics_listener = match config.metrics.own_addr()? {
            Some(addr) => Some(
                listen(addr, backlog).with_context(|| format!("binding metrics.bind {addr}"))?,
            ),
            None => None,
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let sqlite_lock = lock_sqlite(&config)?;
        let state = build_state(config, port).await?;
        Ok(Self {
            state,
            listener,
            metrics_listener,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// Where `/metrics` is served on an address of its own (`metrics.bind`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
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
        let engine = self.state.engine().clone();
        let hub = engine.hub().clone();
        let router = router(self.state.clone());
        tracing::info!(addr = %self.local_addr(), "listening");
        let retention = Duration::from_millis(self.state.config().stores.tombstone_retention_ms);
        let heartbeat = tokio::spawn(nodes::upkeep(engine.clone(), retention));
        // On a database other nodes share, the room answers kept in memory follow the changes
        // they commit (`rooms::reads`).
        let room_changes = self.state.store().watch_rooms().map(|feed| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.follow_room_changes(feed).await })
        });
        // Objects without a row (a crash between deleting the two): however many there are,
        // in the background.
        let sweep = {
            let engine = engine.clone();
            tokio::spawn(async move {
                match engine.sweep_orphan_objects().await {
                    Ok(0) => {}
                    Ok(swept) => tracing::info!(swept, "deleted file objects that had no row"),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "sweeping file objects failed")
                    }
                }
            })
        };
        let config = self.state.config();
        let deliveries = crate::webhooks::Worker::new(
            self.state.store().clone(),
            self.state.bus().clone(),
            config.webhooks.clone(),
            hub.node_id().clone(),
            self.state.metrics().clone(),
        )
        .context("building the webhook client")?;
        let deliveries = tokio::spawn(deliveries.run(shutdown.clone(), grace));
        let runs = tokio::spawn(crate::workflows::runner::run(
            self.state.workflows().clone(),
            self.state.store().clone(),
            self.state.bus().clone(),
            hub.node_id().clone(),
            Duration::from_millis(config.workflows.poll_interval_ms),
            shutdown.clone(),
            grace,
        ));
        // The same connection loop as the API's (timeouts, a connection cap), counted apart.
        let metrics = self.metrics_listener.map(|listener| {
            tracing::info!(addr = ?listener.local_addr(), "serving /metrics");
            tokio::spawn(server::serve(
                listener,
                crate::http::metrics::own_router(self.state.clone()),
                server::Limits::from_config(config),
                Arc::default(),
                shutdown.clone(),
            ))
        });
        let sessions = tokio::spawn(crate::auth::sessions::prune(
            self.state.store().clone(),
            shutdown.clone(),
        ));
        let analytics = tokio::spawn(crate::analytics::run(
            engine.analytics().clone(),
            self.state.store().clone(),
            Duration::from_millis(config.analytics.flush_interval_ms),
            Duration::from_millis(config.analytics.retention_ms),
            shutdown.clone(),
        ));
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
            if !engine.shut_down(grace).await {
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
        sweep.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(room_changes) = room_changes {
            room_changes.abort();
        }
        let _ = deliveries.await;
        let _ = runs.await;
        let _ = analytics.await;
        let _ = sessions.await;
        nodes::stop(&engine).await;
        tracing::info!("server stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sqlite_files() {
        assert_eq!(
            sqlite_file("sqlite://./data/x.db"),
            Some("./data/x.db".into())
        );
        assert_eq!(
            sqlite_file("sqlite:/tmp/a/b.db?mode=rwc"),
            Some("/tmp/a/b.db".into())
        );
        assert_eq!(sqlite_file("sqlite:x.db"), Some("x.db".into()));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite:x.db?mode=ro"), None);
        assert_eq!(sqlite_file("sqlite:x.db?cache=shared&mode=memory"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
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
