//! The command line: `serve` (the default), `migrate`, `accounts`, `keys`, `secrets`, `db`
//! and `healthcheck`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::{load_sealer, open_store, open_store_with, App, MissingKey};
use crate::auth::{passwords, GeneratedKey};
use crate::config::{self, Config};
use crate::domain::dashboard::password_problem;
use crate::domain::{Account, AccountId, ApiKeyId, Email, LoginId, Role, Timestamp};
use crate::store::copy::{self, Progress};
use crate::store::webhooks::{reseal_all, Reseal};
use crate::store::NewLogin;

#[derive(Debug, Parser)]
#[command(
    name = "collabkit",
    version,
    about = "CollabKit: real-time collaboration backend"
)]
pub struct Cli {
    /// A TOML file laid over the defaults (also COLLABKIT_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP and WebSocket server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Manage an account's API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the encryption of stored secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Move the data to another database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Exit 0 if the local server answers GET /healthz (for container health checks).
    Healthcheck {
        /// Address to probe; default: the configured bind address on loopback.
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account and its first API key.
    Create {
        #[arg(long)]
        name: String,
        /// Print one JSON object {"accountId", "apiKey", "token"} and nothing else.
        #[arg(long)]
        json: bool,
    },
    /// Give an account a dashboard login: the password is read from standard input (its
    /// first line). An existing login gets the new password (its sessions end) and joins the
    /// account with the role.
    CreateLogin {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        email: String,
        /// owner, admin or viewer.
        #[arg(long, default_value = "owner")]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create another API key for an account.
    Create {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        json: bool,
    },
    /// List an account's keys (never the keys themselves).
    List {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key. Running servers stop accepting it within auth.key_cache_ttl_ms.
    Revoke {
        #[arg(long)]
        account: AccountId,
        /// The key's ID, as `keys list` shows it.
        #[arg(long)]
        key: ApiKeyId,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every stored secret with secrets_key, opening each with it or any of
    /// secrets_previous_keys (after a key change; see docs/operations.md). Idempotent.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy every table of the configured SQLite database into an empty PostgreSQL database
    /// (stop the server first; see docs/operations.md). Each table is verified by row count
    /// and checksum; nothing is kept on the target unless all of it is.
    Copy {
        /// The PostgreSQL database to copy into: postgres://user@host:5432/name
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

impl Cli {
    /// The config file from `--config`, else from COLLABKIT_CONFIG.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(config::file_from_env)
    }
}

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open_store(&config).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Accounts(AccountsCommand::Create { name, json }) => {
            create_account(&config, name, json).await
        }
        Command::Accounts(AccountsCommand::CreateLogin {
            account,
            email,
            role,
        }) => create_login(&config, account, &email, &role).await,
        Command::Keys(command) => keys(&config, command).await,
        Command::Secrets(SecretsCommand::Rotate) => rotate_secrets(&config).await,
        Command::Db(DbCommand::Copy { to }) => copy_database(&config, &to).await,
        Command::Healthcheck { addr } => healthcheck(&config, addr),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.serve(shutdown).await
}

/// Cancels `shutdown` on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
    shutdown.cancel();
}

async fn copy_database(config: &Config, to: &str) -> anyhow::Result<()> {
    let from = config.database_url();
    if !from.starts_with("sqlite:") {
        bail!("db copy copies a SQLite database (the configured one is {from})");
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a PostgreSQL URL (postgres://...)");
    }
    eprintln!("copying {from} into the PostgreSQL database");
    let live_within_ms = i64::try_from(config.realtime.node_timeout_ms).unwrap_or(i64::MAX);
    let copied = copy::sqlite_to_postgres(&from, to, live_within_ms, |progress| match progress {
        Progress::Rows { table, rows } => eprintln!("  {table}: {rows} rows..."),
        Progress::Verified(table) => eprintln!(
            "  {}: {} rows, checksum {} on both sides",
            table.table, table.rows, table.checksum
        ),
    })
    .await
    .context("copying the database (nothing was copied)")?;
    let rows: u64 = copied.iter().map(|table| table.rows).sum();
    eprintln!(
        "copied {} tables, {rows} rows. Start the server with COLLABKIT_DATABASE_URL set to the \
         new database, the same data directory and the same secrets_key.",
        copied.len()
    );
    Ok(())
}

async fn create_account(config: &Config, name: String, json: bool) -> anyhow::Result<()> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > crate::http::validation::MAX_NAME_CHARS {
        bail!(
            "--name must be 1 to {} characters",
            crate::http::validation::MAX_NAME_CHARS
        );
    }
    let store = open_store(config).await?;
    let account = Account {
        id: AccountId::new(),
        name,
        created_at: Timestamp::now(),
    };
    let key = GeneratedKey::new(account.id);
    store
        .create_account(&account, &key.record)
        .await
        .context("creating the account")?;
    let token = key.bearer_token();
    let mut out = std::io::stdout().lock();
    if json {
        let body = json!({ "accountId": account.id, "apiKey": key.secret, "token": token });
        writeln!(out, "{body}")?;
    } else {
        writeln!(out, "Account created: {}", account.name)?;
        writeln!(out, "  Account ID: {}", account.id)?;
        writeln!(
            out,
            "  API key:    {}   (shown once: keep it secret)",
            key.secret
        )?;
        writeln!(out, "  Token:      {token}")?;
        writeln!(out)?;
        writeln!(
            out,
            "Try: curl http://localhost:8080/v1/accounts/{}/rooms -H \"Authorization: Bearer {token}\"",
            account.id
        )?;
    }
    Ok(())
}

async fn create_login(
    config: &Config,
    account_id: AccountId,
    email: &str,
    role: &str,
) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let role: Role = role
        .parse()
        .map_err(|()| anyhow::anyhow!("--role must be owner, admin or viewer"))?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if let Some(problem) = password_problem(&password) {
        bail!("the password on standard input: {problem}");
    }
    let store = open_store(config).await?;
    if store.get_account(account_id).await?.is_none() {
        bail!("no account {account_id}");
    }
    let hash = passwords::hash(password).await?;
    let login_id = match store.find_login(&email).await? {
        Some(found) => {
            store.set_password(found.login.id, &hash).await?;
            found.login.id
        }
        None => {
            let login = NewLogin {
                id: LoginId::new(),
                email: email.clone(),
                password_hash: hash,
                created_at: Timestamp::now(),
            };
            store.create_login(&login).await?;
            login.id
        }
    };
    store
        .set_member(account_id, login_id, role)
        .await
        .map_err(|e| anyhow::anyhow!("adding the member: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{email} can log in to the dashboard as {role} of {account_id}"
    )?;
    Ok(())
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let account_id = match &command {
        KeysCommand::Create { account, .. }
        | KeysCommand::List { account, .. }
        | KeysCommand::Revoke { account, .. } => *account,
    };
    if store.get_account(account_id).await?.is_none() {
        bail!("no account {account_id}");
    }
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create { json, .. } => {
            let key = GeneratedKey::new(account_id);
            store
                .create_api_key(&key.record, config.auth.max_keys_per_account)
                .await
                .map_err(|e| anyhow::anyhow!("creating the key: {e}"))?;
            let token = key.bearer_token();
            if json {
                let body = json!({
                    "accountId": account_id, "keyId": key.record.id,
                    "apiKey": key.secret, "token": token,
                });
                writeln!(out, "{body}")?;
            } else {
                writeln!(out, "  Key ID:  {}", key.record.id)?;
                writeln!(
                    out,
                    "  API key: {}   (shown once: keep it secret)",
                    key.secret
                )?;
                writeln!(out, "  Token:   {token}")?;
            }
        }
        KeysCommand::List { json, .. } => {
            let keys = store.list_api_keys(account_id).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&keys)?)?;
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<9}  {:<24}  status",
                    "key id", "prefix", "created"
                )?;
                for key in keys {
                    let status = match key.revoked_at {
                        Some(at) => format!("revoked {at}"),
                        None => "active".to_owned(),
                    };
                    writeln!(
                        out,
                        "{:<36}  {:<9}  {:<24}  {status}",
                        key.id, key.prefix, key.created_at
                    )?;
                }
            }
        }
        KeysCommand::Revoke { key, .. } => {
            let key = store
                .revoke_api_key(account_id, key)
                .await
                .map_err(|e| anyhow::anyhow!("revoking the key: {e}"))?;
            writeln!(out, "revoked {} ({})", key.id, key.prefix)?;
        }
    }
    Ok(())
}

/// Re-seals every stored secret not sealed with the current key. Never with a key made up
/// here: without a configured or kept key it fails.
async fn rotate_secrets(config: &Config) -> anyhow::Result<()> {
    let sealer = load_sealer(config, MissingKey::Refuse)?;
    let key_id = sealer.current_key_id().to_owned();
    let store = open_store_with(config, sealer).await?;
    let done = reseal_all(store.as_ref(), Reseal::NotCurrent)
        .await
        .context("re-sealing the webhook secrets")?;
    writeln!(
        std::io::stdout().lock(),
        "re-sealed {} webhook secrets with key {key_id}",
        done.resealed
    )?;
    for (webhook, error) in &done.unreadable {
        tracing::error!(webhook = %webhook, %error, "webhook secret left as it was");
    }
    if !done.unreadable.is_empty() {
        bail!(
            "{} webhook secrets could not be opened with any configured key; add the key that \
             sealed them to secrets_previous_keys and run this again",
            done.unreadable.len()
        );
    }
    Ok(())
}

/// A minimal HTTP/1.1 probe, so that the container image needs no curl.
fn healthcheck(config: &Config, addr: Option<SocketAddr>) -> anyhow::Result<()> {
    let addr = match addr {
        Some(addr) => addr,
        None => {
            let mut bind = config.bind_addr()?;
            if bind.ip().is_unspecified() {
                bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            bind
        }
    };
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .context("reading the response")?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        bail!("unhealthy: {}", String::from_utf8_lossy(&head))
    }
}
