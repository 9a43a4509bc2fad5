//! Load benchmarks against a real `collabkit` server process on loopback. Prints figures;
//! asserts nothing. Run through `scripts/bench`, which builds the release binary first:
//!
//!   scripts/bench http [--db sqlite|postgres|both] [--seconds 5] [--concurrency 32]

mod server;
mod stats;

use std::time::Duration;

use server::{Db, Server};

struct Options {
    dbs: Vec<Db>,
    seconds: u64,
    concurrency: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench http [--db sqlite|postgres|both] [--seconds N] [--concurrency N]\n\
         environment: COLLABKIT_BIN (default target/release/collabkit),\n\
         COLLABKIT_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test)"
    );
    std::process::exit(2)
}

fn parse(args: &[String]) -> Options {
    let mut options = Options {
        dbs: vec![Db::Sqlite, Db::Postgres],
        seconds: 5,
        concurrency: 32,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--db" => {
                options.dbs = match value().as_str() {
                    "sqlite" => vec![Db::Sqlite],
                    "postgres" => vec![Db::Postgres],
                    "both" => vec![Db::Sqlite, Db::Postgres],
                    _ => usage(),
                }
            }
            "--seconds" => options.seconds = value().parse().unwrap_or_else(|_| usage()),
            "--concurrency" => options.concurrency = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    options
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        usage()
    };
    let options = parse(rest);
    match mode.as_str() {
        "http" => {
            for db in &options.dbs {
                http(*db, &options).await?;
            }
        }
        _ => usage(),
    }
    Ok(())
}

/// Requests/s and latency of three REST calls: unauthenticated, an authenticated read, and an
/// authenticated write.
async fn http(db: Db, options: &Options) -> anyhow::Result<()> {
    let server = Server::start(db, &[("COLLABKIT_RATE_LIMIT_PER_SECOND", "0")]).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let room = server.create_room(&client, "bench room").await?;
    let duration = Duration::from_secs(options.seconds);
    println!(
        "\n== http on {} ({} clients, {} s per scenario, server and load generator share this machine)",
        db.name(),
        options.concurrency,
        options.seconds
    );
    println!("{}", stats::Summary::header());

    let healthz = format!("{}/healthz", server.base);
    let shared = client.clone();
    let summary = stats::run_load(options.concurrency, duration, move |_| {
        let client = &shared;
        let (client, url) = (client.clone(), healthz.clone());
        async move { expect_status(client.get(url).send().await, 200).await }
    })
    .await;
    println!("{}", summary.row("GET /healthz"));

    let room_url = server.account_url(&format!("/rooms/{room}"));
    let token = server.token.clone();
    let (shared, shared_token) = (client.clone(), token.clone());
    let summary = stats::run_load(options.concurrency, duration, move |_| {
        let (client, token) = (&shared, &shared_token);
        let (client, url, token) = (client.clone(), room_url.clone(), token.clone());
        async move { expect_status(client.get(url).bearer_auth(token).send().await, 200).await }
    })
    .await;
    println!("{}", summary.row("GET /rooms/:roomId"));

    let users_url = server.account_url("/users");
    let shared = client.clone();
    let summary = stats::run_load(options.concurrency, duration, move |i| {
        let (client, token) = (&shared, &token);
        let (client, url, token) = (client.clone(), users_url.clone(), token.clone());
        let body = serde_json::json!({ "name": format!("user {i}"), "roomId": room });
        async move {
            expect_status(
                client.post(url).bearer_auth(token).json(&body).send().await,
                201,
            )
            .await
        }
    })
    .await;
    println!("{}", summary.row("POST /users"));
    server.stop().await;
    Ok(())
}

async fn expect_status(response: reqwest::Result<reqwest::Response>, status: u16) -> bool {
    match response {
        Ok(response) => {
            let ok = response.status().as_u16() == status;
            // Read the body so the connection goes back to the pool.
            let _ = response.bytes().await;
            ok
        }
        Err(_) => false,
    }
}
