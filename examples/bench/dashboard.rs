//! The dashboard's heaviest pages: the rooms list of an organization with 10,000 rooms (first
//! page, a later page, a search) and the analytics page over 30 days of per-minute activity
//! (the organization's, and one room's). Each page is requested back to back by a few
//! clients on loopback; the latencies are the server's time plus a loopback round trip.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt as _;

use crate::server::{Db, Server};
use crate::stats::{run_load, Summary};

const ROOMS: usize = 10_000;
/// Rooms with activity in every minute of the 30 days.
const BUSY_ROOMS: usize = 5;
const DAYS: i64 = 30;
const CONCURRENCY: usize = 4;

pub async fn run(db: Db, seconds: u64) -> anyhow::Result<()> {
    let server = Server::start(db, &[("COLLABKIT_RATE_LIMIT_PER_SECOND", "0")]).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Sign up: a session cookie and a key of the new organization.
    let signup = client
        .post(format!("{}/dashboard/signup", server.base))
        .form(&[
            ("email", "bench@example.com"),
            ("password", "bench password"),
            ("organization", "Bench"),
        ])
        .send()
        .await?;
    let cookie = signup
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let page = signup.text().await?;
    let value_of = |id: &str| -> anyhow::Result<String> {
        let at = page
            .find(&format!("id=\"{id}\""))
            .context("no such field")?;
        let rest = &page[at..];
        let start = rest.find("value=\"").context("no value")? + 7;
        let end = rest[start..].find('"').context("no value's end")?;
        Ok(rest[start..start + end].to_owned())
    };
    let (account_id, token) = (value_of("account-id")?, value_of("new-token")?);
    let rooms_url = format!("{}/v1/accounts/{account_id}/rooms", server.base);
    let started = std::time::Instant::now();
    let ids: Vec<String> = futures_util::stream::iter(0..ROOMS)
        .map(|i| {
            let (client, url, token) = (client.clone(), rooms_url.clone(), token.clone());
            async move {
                let reply: serde_json::Value = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "name": format!("room {i:05}") }))
                    .send()
                    .await?
                    .json()
                    .await?;
                reply["data"]["room"]["id"]
                    .as_str()
                    .map(str::to_owned)
                    .context("no room")
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "created {ROOMS} rooms in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let minutes = seed_minutes(&server, db, &account_id, &ids[..BUSY_ROOMS]).await?;
    eprintln!(
        "wrote {minutes} activity minutes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    println!(
        "\n== dashboard on {} ({ROOMS} rooms, {DAYS} days x {BUSY_ROOMS} rooms of per-minute activity, {CONCURRENCY} clients, {seconds} s each)",
        db.name()
    );
    println!("{}", Summary::header());
    let room = ids[0].clone();
    for (name, path) in [
        ("rooms, first page", "/dashboard/rooms".to_owned()),
        ("rooms, page 200", "/dashboard/rooms?offset=5000".to_owned()),
        (
            "rooms, search",
            "/dashboard/rooms?search=room%2009".to_owned(),
        ),
        (
            "analytics, 30 days",
            "/dashboard/analytics?range=month".to_owned(),
        ),
        (
            "analytics, 1 room 30 d",
            format!("/dashboard/analytics?range=month&room={room}"),
        ),
        (
            "analytics, last hour",
            "/dashboard/analytics?range=hour".to_owned(),
        ),
    ] {
        let url = format!("{}{path}", server.base);
        let (client, cookie) = (client.clone(), cookie.clone());
        let summary = run_load(CONCURRENCY, Duration::from_secs(seconds), move |_| {
            let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
            async move {
                match client.get(url).header("cookie", cookie).send().await {
                    Ok(response) => {
                        let ok = response.status().as_u16() == 200;
                        let _ = response.bytes().await;
                        ok
                    }
                    Err(_) => false,
                }
            }
        })
        .await;
        println!("{}", summary.row(name));
    }
    server.stop().await;
    Ok(())
}

/// 30 days of minutes for `rooms`, written straight into the database (as the server's
/// flusher would, in batches).
async fn seed_minutes(
    server: &Server,
    db: Db,
    account_id: &str,
    rooms: &[String],
) -> anyhow::Result<usize> {
    let now = chrono::Utc::now().timestamp_millis();
    let first = now - now.rem_euclid(60_000) - DAYS * 24 * 60 * 60_000;
    let minutes: Vec<i64> = (0..DAYS * 24 * 60).map(|m| first + m * 60_000).collect();
    let sql = "INSERT INTO room_minutes (account_id, room_id, minute, joins, peak_users, \
               presence_updates, broadcasts, store_writes, comments) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    let mut written = 0;
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&server.database_url).await?;
            for room in rooms {
                for chunk in minutes.chunks(5000) {
                    let mut tx = pool.begin().await?;
                    for (i, minute) in chunk.iter().enumerate() {
                        let n = (i % 60) as i64;
                        sqlx::query(sql)
                            .bind(account_id)
                            .bind(room)
                            .bind(minute)
                            .bind(n % 3)
                            .bind(n % 12)
                            .bind(n * 20)
                            .bind(n)
                            .bind(n / 2)
                            .bind(n % 5)
                            .execute(&mut *tx)
                            .await?;
                        written += 1;
                    }
                    tx.commit().await?;
                }
            }
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&server.database_url).await?;
            for room in rooms {
                for chunk in minutes.chunks(5000) {
                    let mut tx = pool.begin().await?;
                    for (i, minute) in chunk.iter().enumerate() {
                        let n = (i % 60) as i64;
                        sqlx::query(sql)
                            .bind(account_id)
                            .bind(room)
                            .bind(minute)
                            .bind(n % 3)
                            .bind(n % 12)
                            .bind(n * 20)
                            .bind(n)
                            .bind(n / 2)
                            .bind(n % 5)
                            .execute(&mut *tx)
                            .await?;
                        written += 1;
                    }
                    tx.commit().await?;
                }
            }
        }
    }
    // The hourly table, as the server's flushes fill it alongside.
    let rollup = "INSERT INTO room_hours (account_id, room_id, minute, joins, peak_users, \
                  presence_updates, broadcasts, store_writes, comments) \
                  SELECT account_id, room_id, minute - minute % 3600000, SUM(joins), \
                  MAX(peak_users), SUM(presence_updates), SUM(broadcasts), SUM(store_writes), \
                  SUM(comments) FROM room_minutes GROUP BY account_id, room_id, \
                  minute - minute % 3600000";
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&server.database_url).await?;
            sqlx::query(rollup).execute(&pool).await?;
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&server.database_url).await?;
            sqlx::query(rollup).execute(&pool).await?;
        }
    }
    Ok(written)
}
