//! `bench files`: upload throughput and the server's resident memory while one large file
//! streams in (it must stay flat: the peak is printed), then public GETs of a 100 KB file per
//! second; on local disk and on S3 (a `moto` server started here).
//!
//!   scripts/bench files [--db sqlite|postgres|both] [--storage local|s3|both] [--mb 1024]
//!                       [--seconds 5] [--concurrency 32]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::process::rss_kib;
use crate::server::{Db, Server};
use crate::stats;

/// Where the server keeps files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    S3,
}

impl Storage {
    pub fn parse(text: &str) -> Option<Vec<Self>> {
        match text {
            "local" => Some(vec![Self::Local]),
            "s3" => Some(vec![Self::S3]),
            "both" => Some(vec![Self::Local, Self::S3]),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Local => "local disk",
            Self::S3 => "S3 (moto)",
        }
    }
}

pub struct FilesOptions {
    pub storages: Vec<Storage>,
    /// Size of the large upload, in MiB.
    pub mb: u64,
    pub seconds: u64,
    pub concurrency: usize,
}

/// Bytes the bench sends per chunk of the large upload (generated, never held whole).
const CHUNK_BYTES: usize = 1024 * 1024;
/// How often the server's memory is sampled during the upload.
const RSS_SAMPLE: Duration = Duration::from_millis(20);
/// The file fetched by the GET load.
const SMALL_FILE_BYTES: usize = 100 * 1024;
const BUCKET: &str = "collabkit-bench";

fn usage() -> ! {
    eprintln!(
        "usage: bench files [--db sqlite|postgres|both] [--storage local|s3|both] [--mb N]\n\
         \x20                  [--seconds N] [--concurrency N]"
    );
    std::process::exit(2)
}

/// `bench files ...`: its own options (main.rs only hands them over).
pub async fn main(args: &[String]) -> anyhow::Result<()> {
    let mut dbs = vec![Db::Sqlite, Db::Postgres];
    let mut options = FilesOptions {
        storages: vec![Storage::Local, Storage::S3],
        mb: 1024,
        seconds: 5,
        concurrency: 32,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().cloned().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--db" => {
                dbs = match value.as_str() {
                    "sqlite" => vec![Db::Sqlite],
                    "postgres" => vec![Db::Postgres],
                    "both" => vec![Db::Sqlite, Db::Postgres],
                    _ => usage(),
                }
            }
            "--storage" => options.storages = Storage::parse(&value).unwrap_or_else(|| usage()),
            "--mb" => {
                options.mb = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage())
            }
            "--seconds" => options.seconds = value.parse().unwrap_or_else(|_| usage()),
            "--concurrency" => {
                options.concurrency = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }
    for db in dbs {
        for storage in &options.storages {
            run_on(db, *storage, &options).await?;
        }
    }
    Ok(())
}

async fn run_on(db: Db, storage: Storage, options: &FilesOptions) -> anyhow::Result<()> {
    let moto = match storage {
        Storage::Local => None,
        Storage::S3 => Some(Moto::start().await?),
    };
    let max_bytes = ((options.mb + 1) * 1024 * 1024).to_string();
    let mut env: Vec<(&str, String)> = vec![
        ("COLLABKIT_RATE_LIMIT_PER_SECOND", "0".to_owned()),
        ("COLLABKIT_FILES_MAX_FILE_BYTES", max_bytes),
        (
            "COLLABKIT_FILES_MAX_ACCOUNT_BYTES",
            (1_i64 << 50).to_string(),
        ),
    ];
    if let Some(moto) = &moto {
        env.extend([
            ("COLLABKIT_FILES_BACKEND", "s3".to_owned()),
            ("COLLABKIT_FILES_S3_ENDPOINT", moto.endpoint.clone()),
            ("COLLABKIT_FILES_S3_BUCKET", BUCKET.to_owned()),
            ("COLLABKIT_FILES_S3_ACCESS_KEY_ID", "bench".to_owned()),
            ("COLLABKIT_FILES_S3_SECRET_ACCESS_KEY", "bench".to_owned()),
            ("COLLABKIT_FILES_S3_PATH_STYLE", "true".to_owned()),
        ]);
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(db, &env).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let room = server.create_room(&client, "bench files").await?;
    let user: Value = client
        .post(server.account_url("/users"))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({ "name": "uploader", "roomId": room }))
        .send()
        .await?
        .json()
        .await?;
    let user = user["data"]["user"]["id"]
        .as_str()
        .context("no user in the reply")?
        .to_owned();
    println!(
        "\n== files on {} / {} (server and load generator share this machine)",
        db.name(),
        storage.name()
    );

    // One large upload, its bytes generated as they are sent; the server's RSS sampled.
    let idle_rss = rss_kib(server.pid())?;
    let peak = Arc::new(AtomicU64::new(idle_rss));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), server.pid());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(RSS_SAMPLE).await;
            }
        })
    };
    let total = options.mb * 1024 * 1024;
    let chunks = total.div_ceil(CHUNK_BYTES as u64);
    let body = futures_util::stream::iter((0..chunks).map(move |i| {
        let start = i * CHUNK_BYTES as u64;
        let len = (total - start).min(CHUNK_BYTES as u64) as usize;
        Ok::<_, std::io::Error>(vec![(i % 251) as u8; len])
    }));
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), total)
            .file_name("large.bin");
    let form = reqwest::multipart::Form::new()
        .text("roomId", room.clone())
        .text("userId", user.clone())
        .part("file", part);
    let started = Instant::now();
    let reply = client
        .post(server.account_url("/upload"))
        .bearer_auth(&server.token)
        .multipart(form)
        .send()
        .await?;
    let status = reply.status();
    let text = reply.text().await?;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    if status.as_u16() != 201 {
        bail!("the large upload failed: {status} {text}");
    }
    let mb_per_s = total as f64 / 1_048_576.0 / elapsed.as_secs_f64();
    println!(
        "upload {} MiB: {:.1} s, {:.1} MiB/s; server RSS {:.1} MiB before, peak {:.1} MiB during",
        options.mb,
        elapsed.as_secs_f64(),
        mb_per_s,
        idle_rss as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
    );

    // Public GETs of a 100 KB file.
    let form = reqwest::multipart::Form::new()
        .text("roomId", room)
        .text("userId", user)
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7_u8; SMALL_FILE_BYTES]).file_name("small.bin"),
        );
    let reply: Value = client
        .post(server.account_url("/upload"))
        .bearer_auth(&server.token)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    let url = reply["data"]["file"]["url"]
        .as_str()
        .context("no url in the upload's reply")?
        .to_owned();
    println!("{}", stats::Summary::header());
    let shared = client.clone();
    let summary = stats::run_load(
        options.concurrency,
        Duration::from_secs(options.seconds),
        move |_| {
            let (client, url) = (shared.clone(), url.clone());
            async move {
                match client.get(url).send().await {
                    Ok(response) if response.status().as_u16() == 200 => response
                        .bytes()
                        .await
                        .is_ok_and(|b| b.len() == SMALL_FILE_BYTES),
                    _ => false,
                }
            }
        },
    )
    .await;
    println!(
        "{}",
        summary.row(&format!(
            "GET /storage/<key> ({} clients, 100 KB)",
            options.concurrency
        ))
    );
    server.stop().await;
    drop(moto);
    Ok(())
}

/// A `moto` S3 server on loopback (`pip install 'moto[server]'`), stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto (pip install 'moto[server]')")?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = client
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("moto did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
            .put(format!("{}/{BUCKET}", moto.endpoint))
            .send()
            .await?
            .error_for_status()?;
        Ok(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
