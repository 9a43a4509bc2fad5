//! One `Config`: the embedded defaults (`config/default.toml`), then an optional file, then
//! `COLLABKIT_*` environment variables; validated before anything starts. (Over our usual
//! 600 lines: every section's struct and its checks belong in the one place a reader looks
//! for a setting; a quarter of the file is its tests.)

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use toml::{Table, Value};

use crate::store::sealing::SecretsKey;

/// The defaults, compiled in so that the binary runs from any directory.
pub const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "COLLABKIT_";
/// Names the config file when the command line does not (`--config` comes first).
const CONFIG_FILE_VAR: &str = "COLLABKIT_CONFIG";

/// The config file named by `COLLABKIT_CONFIG`, for when `--config` names none.
pub fn file_from_env() -> Option<PathBuf> {
    env_var_os(CONFIG_FILE_VAR).map(PathBuf::from)
}

/// The host name in `HOSTNAME`, for a node id when the system does not give one.
pub fn hostname_from_env() -> Option<String> {
    env_var("HOSTNAME")
}

/// Reads the process environment: here and nowhere else (clippy.toml disallows `std::env::var`
/// and its kin outside this function), so that all the environment can change is a documented
/// `COLLABKIT_*` setting, the config file's path or the node's host name.
#[allow(clippy::disallowed_methods)]
fn env_var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// A variable that is set and is UTF-8.
fn env_var(name: &str) -> Option<String> {
    env_var_os(name)?.into_string().ok()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bind: String,
    pub data_dir: PathBuf,
    pub jwt_secret: String,
    /// 32 bytes in base64; empty: the key kept in (or generated into) the data directory.
    pub secrets_key: String,
    /// Keys that only open stored secrets: those sealed before a rotation.
    pub secrets_previous_keys: Vec<String>,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub traces: TracesConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub realtime: RealtimeConfig,
    pub stores: StoresConfig,
    pub comments: CommentsConfig,
    pub webhooks: WebhooksConfig,
    pub workflows: WorkflowsConfig,
    pub metrics: MetricsConfig,
    pub files: FilesConfig,
    pub dashboard: DashboardConfig,
    pub analytics: AnalyticsConfig,
    pub shutdown: ShutdownConfig,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// OpenTelemetry traces over OTLP/HTTP (docs/operations.md#traces).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Where spans are posted (`http://collector:4318/v1/traces`); empty: no traces.
    pub otlp_endpoint: String,
    pub service_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub key_cache_ttl_ms: u64,
    pub key_cache_max_entries: usize,
    pub max_keys_per_account: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_page_bytes: usize,
}

/// Limits on HTTP connections (`http::server`) and requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub max_connections: usize,
    pub listen_backlog: u32,
    pub request_timeout_ms: u64,
    pub cors_origins: Vec<String>,
}

impl HttpConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeConfig {
    pub node_id: String,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub auth_timeout_ms: u64,
    pub max_message_bytes: usize,
    pub max_broadcast_bytes: usize,
    pub max_presence_bytes: usize,
    pub messages_per_second: u32,
    pub message_burst: u32,
    pub presence_interval_ms: u64,
    /// No longer used (the outbox is bounded in bytes and time); accepted so that existing
    /// configurations still load, with a warning at start.
    #[serde(default)]
    pub outbox_frames: Option<usize>,
    pub outbox_max_delay_ms: u64,
    pub write_timeout_ms: u64,
    pub max_connections_per_room: usize,
    pub max_connections_per_user: usize,
    pub page_users: i64,
    pub outbox_bytes: usize,
    pub max_room_presence_bytes: usize,
    pub room_idle_ms: u64,
    pub node_heartbeat_ms: u64,
    pub node_timeout_ms: u64,
}

impl RealtimeConfig {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    pub fn presence_interval(&self) -> Duration {
        Duration::from_millis(self.presence_interval_ms)
    }

    pub fn outbox_max_delay(&self) -> Duration {
        Duration::from_millis(self.outbox_max_delay_ms)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    pub fn room_idle(&self) -> Duration {
        Duration::from_millis(self.room_idle_ms)
    }

    pub fn node_heartbeat(&self) -> Duration {
        Duration::from_millis(self.node_heartbeat_ms)
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoresConfig {
    pub max_entry_bytes: usize,
    pub max_entries_per_store: i64,
    pub max_stores: i64,
    pub max_fields: usize,
    pub client_schemas: bool,
    pub tombstone_retention_ms: u64,
    pub page_entries: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentsConfig {
    pub max_body_chars: usize,
    pub max_metadata_bytes: usize,
    pub max_threads_per_room: i64,
    pub max_comments_per_thread: i64,
    pub max_reactions_per_comment: i64,
    pub max_user_reactions_per_comment: i64,
    pub page_comments: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub allow_private_addresses: bool,
    pub attempt_timeout_ms: u64,
    pub retry_delays_ms: Vec<u64>,
    pub disable_after_failures: i64,
    pub max_concurrent_deliveries: usize,
    pub max_response_bytes: usize,
    pub poll_interval_ms: u64,
    pub event_retention_ms: u64,
    pub max_webhooks_per_account: i64,
}

/// Workflows: customer code run on room events (docs/workflows.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowsConfig {
    pub max_code_bytes: usize,
    pub max_workflows_per_account: i64,
    pub workers: usize,
    pub worker_program: String,
    pub time_limit_ms: u64,
    pub cpu_limit_ms: u64,
    pub memory_limit_bytes: usize,
    pub stack_limit_bytes: usize,
    pub max_log_bytes: usize,
    pub max_result_bytes: usize,
    pub max_binding_calls: usize,
    pub max_fetches_per_run: usize,
    pub fetch_timeout_ms: u64,
    pub max_fetch_response_bytes: usize,
    pub max_concurrent_runs_per_account: usize,
    pub max_runs_per_minute_per_account: u32,
    pub poll_interval_ms: u64,
}

/// `GET /metrics` (docs/operations.md#metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// An address of its own for `/metrics`; empty: the main one.
    pub bind: String,
}

impl MetricsConfig {
    /// Where `/metrics` has a listener of its own, if it has one.
    pub fn own_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if !self.enabled || self.bind.is_empty() {
            return Ok(None);
        }
        self.bind.parse().map(Some).with_context(|| {
            format!(
                "metrics.bind {:?} is not an address like 127.0.0.1:9090",
                self.bind
            )
        })
    }

    /// Whether the main listener serves `/metrics`.
    pub fn on_main_listener(&self) -> bool {
        self.enabled && self.bind.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilesBackend {
    Local,
    S3,
}

/// Room files: where they are kept and how large they may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    pub backend: FilesBackend,
    pub local_dir: PathBuf,
    pub max_file_bytes: u64,
    pub max_account_bytes: i64,
    pub public_url: String,
    pub upload_timeout_ms: u64,
    pub s3: S3Config,
}

impl FilesConfig {
    pub fn upload_timeout(&self) -> Duration {
        Duration::from_millis(self.upload_timeout_ms)
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub path_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Who may sign up in the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignupPolicy {
    Open,
    Invite,
    Closed,
}

/// When session cookies get `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecure {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    pub signup: SignupPolicy,
    pub session_ttl_ms: u64,
    pub cookie_secure: CookieSecure,
    pub invitation_ttl_ms: u64,
    pub login_window_ms: u64,
    pub login_attempts_per_address: u32,
    pub login_attempts_per_email: u32,
}

impl DashboardConfig {
    pub fn session_ttl(&self) -> Duration {
        Duration::from_millis(self.session_ttl_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    pub flush_interval_ms: u64,
    pub retention_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://...`: the relay of room traffic between nodes. Empty: one node, no relay.
    pub url: String,
}

impl Config {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_sources(file, env_var)
    }

    /// The defaults alone, as tests and tools start from.
    pub fn defaults() -> Self {
        Self::from_sources(None, |_| None).expect("the embedded defaults are valid")
    }

    pub fn from_sources(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut table: Table = toml::from_str(DEFAULTS).context("parsing the embedded defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            let overrides: Table = toml::from_str(&text)
                .with_context(|| format!("parsing the config file {}", path.display()))?;
            merge(&mut table, overrides, "").with_context(|| format!("in {}", path.display()))?;
        }
        apply_env(&mut table, "", &env)?;
        let config: Config = Value::Table(table)
            .try_into()
            .context("reading the configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.bind_addr()?;
        self.metrics.own_addr()?;
        if !self.redis.url.is_empty() {
            crate::relay::RedisUrl::parse(&self.redis.url).map_err(|e| anyhow::anyhow!(e))?;
            if self.database_url().starts_with("sqlite:") {
                bail!(
                    "redis.url is set but the database is SQLite, which serves one node: \
                     nothing to relay (use PostgreSQL for several nodes, or leave redis.url \
                     empty)"
                );
            }
        }
        if self.database.max_connections == 0 {
            bail!("database.max_connections must be at least 1");
        }
        if self.limits.max_body_bytes < 1024 {
            bail!("limits.max_body_bytes must be at least 1024");
        }
        if self.limits.max_page_bytes < 4096 {
            bail!("limits.max_page_bytes must be at least 4096");
        }
        let http = &self.http;
        if http.header_read_timeout_ms == 0
            || http.idle_timeout_ms == 0
            || http.body_read_timeout_ms == 0
            || http.max_connections == 0
            || http.listen_backlog == 0
            || http.request_timeout_ms <= http.body_read_timeout_ms
        {
            bail!("http: header_read_timeout_ms, idle_timeout_ms, body_read_timeout_ms, max_connections and listen_backlog must be at least 1, and request_timeout_ms greater than body_read_timeout_ms");
        }
        for origin in &http.cors_origins {
            let valid = origin == "*"
                || url::Url::parse(origin)
                    .is_ok_and(|u| u.origin().ascii_serialization() == *origin);
            if !valid {
                bail!("http.cors_origins: {origin:?} is not an origin (scheme://host[:port], no path) or \"*\"");
            }
        }
        let rt = &self.realtime;
        if rt.heartbeat_interval_ms == 0 || rt.heartbeat_timeout_ms <= rt.heartbeat_interval_ms {
            bail!("realtime.heartbeat_timeout_ms must be greater than realtime.heartbeat_interval_ms (> 0)");
        }
        if rt.node_heartbeat_ms == 0 || rt.node_timeout_ms <= rt.node_heartbeat_ms {
            bail!("realtime.node_timeout_ms must be greater than realtime.node_heartbeat_ms (> 0)");
        }
        if rt.messages_per_second == 0
            || rt.message_burst == 0
            || rt.presence_interval_ms == 0
            || rt.auth_timeout_ms == 0
            || rt.write_timeout_ms == 0
            || rt.outbox_max_delay_ms == 0
            || rt.room_idle_ms == 0
        {
            bail!("realtime: messages_per_second, message_burst, presence_interval_ms, auth_timeout_ms, write_timeout_ms, outbox_max_delay_ms and room_idle_ms must be at least 1");
        }
        if self.stores.page_entries < 1 {
            bail!("stores.page_entries must be at least 1");
        }
        if self.comments.page_comments < 1 {
            bail!("comments.page_comments must be at least 1");
        }
        if self.auth.max_keys_per_account < 1 {
            bail!("auth.max_keys_per_account must be at least 1");
        }
        if rt.max_message_bytes < 1024
            || rt.max_connections_per_room == 0
            || rt.max_connections_per_user == 0
            || rt.page_users < 1
            || rt.max_room_presence_bytes < rt.max_presence_bytes
            || rt.outbox_bytes < 2 * self.limits.max_page_bytes
        {
            bail!("realtime limits: max_message_bytes >= 1024, max_connections_per_room, max_connections_per_user and page_users >= 1, max_room_presence_bytes >= max_presence_bytes, outbox_bytes >= 2 x limits.max_page_bytes");
        }
        let hooks = &self.webhooks;
        if hooks.attempt_timeout_ms == 0
            || hooks.max_concurrent_deliveries == 0
            || hooks.poll_interval_ms == 0
            || hooks.disable_after_failures < 1
        {
            bail!("webhooks: attempt_timeout_ms, max_concurrent_deliveries, poll_interval_ms and disable_after_failures must be at least 1");
        }
        let flows = &self.workflows;
        if [
            flows.max_code_bytes,
            flows.workers,
            flows.time_limit_ms as usize,
            flows.cpu_limit_ms as usize,
            flows.memory_limit_bytes,
            flows.stack_limit_bytes,
            flows.max_result_bytes,
            flows.fetch_timeout_ms as usize,
            flows.max_concurrent_runs_per_account,
            flows.max_runs_per_minute_per_account as usize,
            flows.poll_interval_ms as usize,
        ]
        .contains(&0)
        {
            bail!("workflows: max_code_bytes, workers, time_limit_ms, cpu_limit_ms, memory_limit_bytes, stack_limit_bytes, max_result_bytes, fetch_timeout_ms, max_concurrent_runs_per_account, max_runs_per_minute_per_account and poll_interval_ms must be at least 1");
        }
        if flows.max_code_bytes > crate::workflows::engine::MAX_CODE_BYTES {
            bail!(
                "workflows.max_code_bytes must be at most {} (the compiler's stack is sized for it)",
                crate::workflows::engine::MAX_CODE_BYTES
            );
        }
        let files = &self.files;
        if files.max_file_bytes == 0 || files.max_account_bytes < 1 || files.upload_timeout_ms == 0
        {
            bail!(
                "files: max_file_bytes, max_account_bytes and upload_timeout_ms must be at least 1"
            );
        }
        if files.backend == FilesBackend::S3 && files.s3.bucket.is_empty() {
            bail!("files.s3.bucket must be set when files.backend is \"s3\"");
        }
        if !files.public_url.is_empty()
            && !url::Url::parse(&files.public_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        {
            bail!("files.public_url must be an http(s) address like https://collab.example.com");
        }
        let dash = &self.dashboard;
        if dash.session_ttl_ms < 60_000
            || dash.invitation_ttl_ms < 60_000
            || dash.login_window_ms == 0
            || dash.login_attempts_per_address == 0
            || dash.login_attempts_per_email == 0
        {
            bail!("dashboard: session_ttl_ms and invitation_ttl_ms must be at least 60000, login_window_ms, login_attempts_per_address and login_attempts_per_email at least 1");
        }
        if self.analytics.flush_interval_ms == 0 || self.analytics.retention_ms < 3_600_000 {
            bail!("analytics: flush_interval_ms must be at least 1 and retention_ms at least 3600000 (an hour)");
        }
        if self.auth.key_cache_max_entries == 0 {
            bail!("auth.key_cache_max_entries must be at least 1");
        }
        if !self.jwt_secret.is_empty()
            && self.jwt_secret.len() < crate::auth::signing_secret::MIN_SECRET_BYTES
        {
            bail!(
                "jwt_secret must be at least {} bytes long",
                crate::auth::signing_secret::MIN_SECRET_BYTES
            );
        }
        // The error names the key and says what is wrong, never what was given.
        if !self.secrets_key.is_empty() {
            SecretsKey::parse(&self.secrets_key).map_err(|e| anyhow!("secrets_key {e}"))?;
        }
        for (i, key) in self.secrets_previous_keys.iter().enumerate() {
            SecretsKey::parse(key).map_err(|e| anyhow!("secrets_previous_keys[{i}] {e}"))?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .with_context(|| format!("log.level {:?} is not a valid filter", self.log.level))?;
        Ok(())
    }

    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        self.bind
            .parse()
            .with_context(|| format!("bind {:?} is not an address like 0.0.0.0:8080", self.bind))
    }

    /// The configured database URL, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("collabkit.db").display())
        } else {
            self.database.url.clone()
        }
    }

    pub fn key_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.auth.key_cache_ttl_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown.grace_ms)
    }

    /// The directory of the local file backend.
    pub fn files_dir(&self) -> PathBuf {
        if self.files.local_dir.as_os_str().is_empty() {
            self.data_dir.join("files")
        } else {
            self.files.local_dir.clone()
        }
    }

    /// `limits.max_page_bytes`, as the store takes it.
    pub fn page_bytes(&self) -> i64 {
        i64::try_from(self.limits.max_page_bytes).unwrap_or(i64::MAX)
    }
}

/// The environment variable that overrides the key at `path` (`database.url` ->
/// `COLLABKIT_DATABASE_URL`).
pub fn env_name(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.replace('.', "_").to_uppercase())
}

/// Lays `overrides` over `base`, refusing keys the defaults do not have.
fn merge(base: &mut Table, overrides: Table, prefix: &str) -> anyhow::Result<()> {
    for (key, value) in overrides {
        let path = join(prefix, &key);
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base)), Value::Table(inner)) => merge(base, inner, &path)?,
            (Some(Value::Table(_)), _) => bail!("{path} must be a table"),
            (Some(slot), value) => *slot = value,
            (None, _) => bail!("unknown configuration key {path}"),
        }
    }
    Ok(())
}

/// Overrides each known key from its environment variable, parsed as the default's type.
fn apply_env(
    table: &mut Table,
    prefix: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for (key, slot) in table.iter_mut() {
        let path = join(prefix, key);
        if let Value::Table(inner) = slot {
            apply_env(inner, &path, env)?;
            continue;
        }
        let name = env_name(&path);
        let Some(text) = env(&name) else { continue };
        *slot = match slot {
            Value::Integer(_) => Value::Integer(
                text.trim()
                    .parse()
                    .with_context(|| format!("{name}={text:?} is not an integer"))?,
            ),
            Value::Boolean(_) => Value::Boolean(
                text.trim()
                    .parse()
                    .with_context(|| format!("{name}={text:?} is not true or false"))?,
            ),
            Value::Float(_) => Value::Float(
                text.trim()
                    .parse()
                    .with_context(|| format!("{name}={text:?} is not a number"))?,
            ),
            // Lists, comma-separated: of numbers where the list replaced holds numbers
            // (`5000,30000`), else of strings (keys in base64, which has no comma).
            Value::Array(items) if !items.first().is_some_and(Value::is_integer) => Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::String(item.to_owned()))
                    .collect(),
            ),
            Value::Array(_) => Value::Array(
                text.split(',')
                    .filter(|item| !item.trim().is_empty())
                    .map(|item| item.trim().parse().map(Value::Integer))
                    .collect::<Result<_, _>>()
                    .with_context(|| {
                        format!("{name}={text:?} is not a comma-separated list of integers")
                    })?,
            ),
            _ => Value::String(text),
        };
    }
    Ok(())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn leaf_paths(table: &Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = join(prefix, key);
            match value {
                Value::Table(inner) => leaf_paths(inner, &path, out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_names_exist() {
        let config = Config::defaults();
        assert_eq!(config.bind, "0.0.0.0:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.database_url(), "sqlite://./data/collabkit.db");
        let mut paths = Vec::new();
        leaf_paths(&toml::from_str(DEFAULTS).unwrap(), "", &mut paths);
        let names: HashSet<_> = paths.iter().map(|p| env_name(p)).collect();
        assert_eq!(
            names.len(),
            paths.len(),
            "two keys share an environment variable"
        );
        for required in [
            "COLLABKIT_BIND",
            "COLLABKIT_DATABASE_URL",
            "COLLABKIT_DATA_DIR",
            "COLLABKIT_JWT_SECRET",
        ] {
            assert!(names.contains(required), "{required}");
        }
    }

    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../docs/configuration.md");
        let mut paths = Vec::new();
        leaf_paths(&toml::from_str(DEFAULTS).unwrap(), "", &mut paths);
        for path in paths {
            assert!(
                docs.contains(&format!("`{}`", env_name(&path))),
                "{path} is not in docs"
            );
        }
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9000\"\n[rate_limit]\nper_second = 7\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("COLLABKIT_RATE_LIMIT_PER_SECOND", "9"),
            ("COLLABKIT_WEBHOOKS_RETRY_DELAYS_MS", "10, 20,30"),
            ("COLLABKIT_DATABASE_URL", "postgres://x@127.0.0.1/db"),
            (
                "COLLABKIT_SECRETS_PREVIOUS_KEYS",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=, \
                 AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
            ),
        ]
        .into();
        let config =
            Config::from_sources(Some(&file), |name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(config.bind, "127.0.0.1:9000");
        assert_eq!(config.rate_limit.per_second, 9);
        assert_eq!(config.database_url(), "postgres://x@127.0.0.1/db");
        assert_eq!(config.webhooks.retry_delays_ms, [10, 20, 30]);
        assert_eq!(config.secrets_previous_keys.len(), 2);
        assert!(config.secrets_previous_keys[1].starts_with("AQID"));
    }

    #[test]
    fn redis_is_for_postgresql_and_its_url_must_parse() {
        let env = |redis: &'static str, database: &'static str| {
            move |name: &str| match name {
                "COLLABKIT_REDIS_URL" => Some(redis.to_owned()),
                "COLLABKIT_DATABASE_URL" => Some(database.to_owned()),
                _ => None,
            }
        };
        let err = Config::from_sources(None, env("redis://127.0.0.1", "")).unwrap_err();
        assert!(format!("{err:#}").contains("SQLite"), "{err:#}");
        let err = Config::from_sources(None, env("localhost:6379", "postgres://db/x")).unwrap_err();
        assert!(format!("{err:#}").contains("redis://"), "{err:#}");
        let config =
            Config::from_sources(None, env("redis://cache:6380", "postgres://db/x")).unwrap();
        assert_eq!(config.redis.url, "redis://cache:6380");
        let config = Config::from_sources(None, env("", "")).unwrap();
        assert!(config.redis.url.is_empty());
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let err = Config::from_sources(None, |n| {
            (n == "COLLABKIT_RATE_LIMIT_PER_SECOND").then(|| "fast".to_owned())
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("COLLABKIT_RATE_LIMIT_PER_SECOND"));
        let err = Config::from_sources(None, |n| (n == "COLLABKIT_BIND").then(|| "nowhere".into()))
            .unwrap_err();
        assert!(format!("{err:#}").contains("bind"));
        let err = Config::from_sources(None, |n| {
            (n == "COLLABKIT_JWT_SECRET").then(|| "short".into())
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("jwt_secret"));
        for name in [
            "COLLABKIT_HTTP_HEADER_READ_TIMEOUT_MS",
            "COLLABKIT_HTTP_IDLE_TIMEOUT_MS",
            "COLLABKIT_HTTP_BODY_READ_TIMEOUT_MS",
            "COLLABKIT_HTTP_MAX_CONNECTIONS",
        ] {
            let err = Config::from_sources(None, |n| (n == name).then(|| "0".into())).unwrap_err();
            assert!(format!("{err:#}").contains("http:"), "{name}: {err:#}");
        }
        // A secrets key of the wrong length: named, and not echoed.
        let short = "c2hvcnQta2V5LXNob3J0LWtleQ==";
        let err = Config::from_sources(None, |n| {
            (n == "COLLABKIT_SECRETS_KEY").then(|| short.into())
        })
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("secrets_key must be 32 bytes"),
            "{message}"
        );
        assert!(!message.contains(short), "{message}");
        let good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let err = Config::from_sources(None, |n| {
            (n == "COLLABKIT_SECRETS_PREVIOUS_KEYS").then(|| format!("{good},not base64"))
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("secrets_previous_keys[1]"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "bnid = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::from_sources(Some(&file), |_| None).unwrap_err();
        assert!(format!("{err:#}").contains("unknown configuration key bnid"));
    }
}
