//! The HTTP connection loop against slow, silent and numerous clients: the header, idle and
//! body timeouts, the connection cap (in process and under a real open-files limit), and
//! WebSockets left to their own heartbeats. Transport only, so on SQLite alone.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::{eventually, Backend, TestApp, TestDatabase};
use crate::realtime::{room_with_users, token};
use crate::socket::Socket;

/// Slack on top of a configured timeout before a test gives up waiting for its effect: the
/// machine may be busy with other builds.
const MARGIN: Duration = Duration::from_secs(3);
/// How long a request that must not be held up may take.
const PROMPT: Duration = Duration::from_secs(2);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("the server accepts TCP connections")
}

/// Reads (and drops) whatever comes until the server closes the connection; the time from
/// `since` when it did, or `None` if it was still open `limit` after `since`.
async fn closed_within(tcp: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(since + limit, tcp.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// One HTTP/1.1 answer, as read off the wire.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{}: body is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one answer (a head, then `Content-Length` bytes) within `limit`.
async fn read_answer(tcp: &mut TcpStream, limit: Duration) -> RawAnswer {
    let read = async {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = tcp.read(&mut chunk).await.expect("reading the answer");
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(bytes[..head_end].to_vec()).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = bytes[head_end..].to_vec();
        while body.len() < length {
            let n = tcp.read(&mut chunk).await.expect("reading the body");
            assert!(n > 0, "closed in the middle of the body");
            body.extend_from_slice(&chunk[..n]);
        }
        RawAnswer {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("an answer in time")
}

/// `GET /healthz` on `tcp`, kept alive; asserts a prompt 200.
async fn healthz(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: collabkit\r\n\r\n")
        .await
        .expect("sending the request");
    let answer = read_answer(tcp, PROMPT).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["data"]["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(500);
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.header_read_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    let since = Instant::now();
    let mut tcp = connect(&app).await;
    let closed = closed_within(&mut tcp, since, timeout + MARGIN)
        .await
        .expect("the server closes a connection that sends nothing");
    assert!(
        closed >= timeout * 8 / 10,
        "closed after {closed:?} already"
    );
    assert!(app.state.connections().timed_out() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_request_head_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(1000);
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.header_read_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    let since = Instant::now();
    let tcp = connect(&app).await;
    let (mut reader, mut writer) = tcp.into_split();
    writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: collabkit\r\nX-Slow: ")
        .await
        .unwrap();
    // One byte every 200 ms, for ever: each one is progress, none completes the head. A
    // failed write means the server closed the connection, as does the end of the reads.
    let trickle = async {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return since.elapsed();
            }
        }
    };
    let closed = async {
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => continue,
            }
        }
    };
    let closed = tokio::time::timeout(timeout + MARGIN, async {
        tokio::select! {
            closed = closed => closed,
            closed = trickle => closed,
        }
    })
    .await
    .expect("the server closes a connection that trickles its head");
    assert!(
        closed >= timeout * 8 / 10,
        "closed after {closed:?} already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_and_an_active_one_is_not() {
    // The idle timeout is the longer one here: a kept-alive connection must get it, not the
    // header timeout, between requests.
    let header = Duration::from_millis(300);
    let idle = Duration::from_millis(1500);
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.header_read_timeout_ms = header.as_millis() as u64;
        c.http.idle_timeout_ms = idle.as_millis() as u64;
    })
    .await;

    let idle_one = async {
        let mut tcp = connect(&app).await;
        healthz(&mut tcp).await;
        let since = Instant::now();
        let closed = closed_within(&mut tcp, since, idle + MARGIN)
            .await
            .expect("the server closes an idle kept-alive connection");
        assert!(
            closed >= idle * 8 / 10,
            "an idle connection closed after {closed:?}, before the idle timeout"
        );
    };
    let active_one = async {
        let mut tcp = connect(&app).await;
        let since = Instant::now();
        // Requests 600 ms apart (longer than the header timeout, shorter than the idle one)
        // for more than twice the idle timeout, all on one connection.
        while since.elapsed() < idle * 2 + Duration::from_millis(500) {
            healthz(&mut tcp).await;
            tokio::time::sleep(header * 2).await;
        }
        healthz(&mut tcp).await;
    };
    tokio::join!(idle_one, active_one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_short_gets_408_in_the_envelope() {
    let timeout = Duration::from_millis(800);
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.body_read_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    let account = app.account().await;
    let mut tcp = connect(&app).await;
    let body = br#"{"name":"abc""#;
    assert_eq!(body.len(), 13);
    let head = format!(
        "POST /v1/accounts/{}/rooms HTTP/1.1\r\nHost: collabkit\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n",
        account.id, account.token
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let since = Instant::now();
    let answer = read_answer(&mut tcp, timeout + MARGIN).await;
    assert!(
        since.elapsed() >= timeout * 8 / 10,
        "answered before the timeout"
    );
    assert_eq!(answer.status, 408, "{answer:?}");
    let envelope = answer.json();
    assert_eq!(envelope["type"], "response");
    assert_eq!(envelope["success"], false);
    assert_eq!(envelope["data"], json!({}));
    assert_eq!(envelope["error"]["code"], "REQUEST_TIMEOUT");
    assert_eq!(envelope["error"]["module"], "Rooms");
    assert_eq!(
        answer.header("x-request-id"),
        envelope["requestId"].as_str()
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(
        closed_within(&mut tcp, Instant::now(), MARGIN)
            .await
            .is_some(),
        "the connection is not kept alive after a 408"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_silent_connections_make_room_for_healthz() {
    const CAP: usize = 50;
    const FLOOD: usize = CAP + 10;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.max_connections = CAP;
        // Long enough that no timeout helps: only the cap's policy can.
        c.http.header_read_timeout_ms = 60_000;
        c.http.idle_timeout_ms = 60_000;
    })
    .await;
    let stats = || app.state.connections();
    let mut flood = Vec::new();
    for _ in 0..CAP {
        flood.push(connect(&app).await);
    }
    assert!(
        eventually(MARGIN, || async { stats().open() >= CAP }).await,
        "{} open",
        stats().open()
    );
    for _ in CAP..FLOOD {
        flood.push(connect(&app).await);
    }
    assert!(
        eventually(MARGIN, || async { stats().evicted() >= 10 }).await,
        "{} evicted",
        stats().evicted()
    );
    // The ones that waited longest went first.
    for (i, tcp) in flood.iter_mut().take(FLOOD - CAP).enumerate() {
        assert!(
            closed_within(tcp, Instant::now(), MARGIN).await.is_some(),
            "silent connection {i} is still open"
        );
    }
    // The first probe makes room by closing the next silent connection; once it has gone,
    // the others find that room free.
    for _ in 0..5 {
        let mut tcp = connect(&app).await;
        healthz(&mut tcp).await;
    }
    assert!(
        stats().evicted() > (FLOOD - CAP) as u64,
        "{} evicted",
        stats().evicted()
    );
    assert_eq!(stats().refused(), 0);
    assert!(
        eventually(MARGIN, || async { stats().open() <= CAP }).await,
        "{} open over a cap of {CAP}",
        stats().open()
    );
}

/// The server binary, killed when dropped (a failed assertion must not leave it running).
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_files_limit_a_flood_does_not_lock_out_healthz() {
    // The campaign's case: 256 descriptors, more silent connections than that.
    const OPEN_FILES: usize = 256;
    const FLOOD: usize = 300;
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -n {OPEN_FILES} && exec \"$0\" serve"),
            env!("CARGO_BIN_EXE_collabkit"),
        ])
        .env("COLLABKIT_DATABASE_URL", &db.url)
        .env("COLLABKIT_DATA_DIR", db.dir.path())
        .env("COLLABKIT_BIND", "127.0.0.1:0")
        .env("COLLABKIT_LOG_FORMAT", "json")
        .env("COLLABKIT_LOG_LEVEL", "info")
        .env("COLLABKIT_HTTP_HEADER_READ_TIMEOUT_MS", "60000")
        .env_remove("COLLABKIT_CONFIG")
        .env_remove("COLLABKIT_JWT_SECRET")
        .env_remove("COLLABKIT_HTTP_MAX_CONNECTIONS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs collabkit");
    let stderr = child.stderr.take().unwrap();
    let _server = ServerProcess(child);
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let (addr_tx, addr_rx) = mpsc::channel();
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "listening" {
                let _ = addr_tx.send(entry["addr"].as_str().unwrap_or("").to_owned());
            }
            collected.lock().unwrap().push(entry);
        }
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the server starts");

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(&addr).await.expect("a TCP connection"));
    }
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        healthz(&mut tcp).await;
    }
    let logged = |needle: &str| {
        lines.lock().unwrap().iter().any(|entry| {
            entry["level"] == "WARN" && entry["message"].as_str().unwrap_or("").contains(needle)
        })
    };
    assert!(
        logged("does not fit under the open-files limit"),
        "the lowered cap is logged"
    );
    assert!(
        eventually(MARGIN, || async { logged("connection cap reached") }).await,
        "reaching the cap is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_http_timeouts() {
    let timeout = Duration::from_millis(300);
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.header_read_timeout_ms = timeout.as_millis() as u64;
        c.http.idle_timeout_ms = timeout.as_millis() as u64;
    })
    .await;
    let account = app.account().await;
    let (_, users) = room_with_users(&account, &["Alice"]).await;
    let (mut socket, _) = Socket::connect(&app.base, token(&users[0])).await;
    // A plain kept-alive connection opened alongside, to show that the timeouts do apply.
    let mut plain = connect(&app).await;
    healthz(&mut plain).await;
    let since = Instant::now();
    // Here the wait is the behaviour under test: more than twice both timeouts.
    tokio::time::sleep(timeout * 3).await;
    assert!(
        closed_within(&mut plain, since, timeout + MARGIN)
            .await
            .is_some(),
        "the idle HTTP connection is closed"
    );
    let joined = socket.request("room.join", json!({})).await;
    assert!(joined.is_ok(), "{joined:?}");
    assert!(socket.closed.is_none());
}

/// `GET /healthz` on a new connection: `Err` says why it was not a prompt 200.
async fn probe_healthz(app: &TestApp) -> Result<(), String> {
    let mut tcp = connect(app).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: collabkit\r\n\r\n")
        .await
        .map_err(|e| format!("the request could not be sent: {e}"))?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let answered = tokio::time::timeout(PROMPT, async {
        while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    match answered {
        Err(_) => Err("no answer in time".to_owned()),
        Ok(false) => Err("the connection was closed without an answer".to_owned()),
        Ok(true) if bytes.starts_with(b"HTTP/1.1 200") => Ok(()),
        Ok(true) => Err(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// A slowloris proper: more connections than the cap, each trickling its request head a
/// byte at a time and never finishing it. `/healthz` answers every probe, all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_throughout_a_slowloris_at_the_connection_cap() {
    const CAP: usize = 40;
    const LORIS: usize = CAP + 20;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.max_connections = CAP;
        // Long enough that no timeout helps: only the cap's policy can.
        c.http.header_read_timeout_ms = 60_000;
    })
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut lorises = tokio::task::JoinSet::new();
    for _ in 0..LORIS {
        let tcp = connect(&app).await;
        let stop = stop.clone();
        lorises.spawn(async move {
            let (_reader, mut writer) = tcp.into_split();
            let _ = writer
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: collabkit\r\nX-Slow: ")
                .await;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.is_cancelled() {
                tick.tick().await;
                if writer.write_all(b"a").await.is_err() {
                    return;
                }
            }
        });
    }
    // Probes at a steady pace while the lorises trickle (the pace is the test's, not a wait
    // for some state).
    let mut failures = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for probe in 0..20 {
        pace.tick().await;
        if let Err(problem) = probe_healthz(&app).await {
            failures.push(format!("probe {probe}: {problem}"));
        }
    }
    stop.cancel();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(app.state.connections().evicted() >= (LORIS - CAP) as u64);
    assert_eq!(app.state.connections().refused(), 0);
    while lorises.join_next().await.is_some() {}
}

/// WebSockets that never authenticate are closed to make room at the cap, like idle
/// connections: without credentials, nobody can keep `/healthz` and every client out by
/// opening `http.max_connections` of them every `realtime.auth_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_websockets_at_the_cap_do_not_lock_out_healthz() {
    const CAP: usize = 20;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.max_connections = CAP;
        c.realtime.auth_timeout_ms = 30_000;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..CAP {
        flood.push(Socket::open(&app.base).await);
    }
    let probed = probe_healthz(&app).await;
    assert!(probed.is_ok(), "/healthz at the cap: {probed:?}");
}

/// A request whose body has not all arrived waits on its client, and may be closed to make
/// room at the cap: a client with an API key cannot hold every place for
/// `http.body_read_timeout_ms` by sending request heads and then their bodies slowly or not
/// at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_at_the_cap_do_not_lock_out_healthz() {
    const CAP: usize = 20;
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.max_connections = CAP;
        c.http.body_read_timeout_ms = 60_000;
    })
    .await;
    let account = app.account().await;
    let mut flood = Vec::new();
    for _ in 0..CAP {
        let mut tcp = connect(&app).await;
        let head = format!(
            "POST /v1/accounts/{}/rooms HTTP/1.1\r\nHost: collabkit\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{",
            account.id, account.token
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        flood.push(tcp);
    }
    // The server has taken every request in (each is in flight) before the probe.
    let busy = eventually(MARGIN, || async { app.state.connections().open() >= CAP }).await;
    assert!(busy);
    let probed = probe_healthz(&app).await;
    assert!(probed.is_ok(), "/healthz at the cap: {probed:?}");
}

/// An answer given before the request's body was read whole (credentials refused first): a
/// small rest already sent is read and dropped, and the connection serves the next request; a
/// large one is not waited for, and the answer says `Connection: close` before the server
/// closes (hyper cannot reuse the connection, and a client not told would send its next
/// request into it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_leaves_the_body_unread_keeps_or_closes_the_connection_openly() {
    let app = TestApp::start(Backend::Sqlite).await;
    let account = app.account().await;
    let post = |length: usize| {
        format!(
            "POST /v1/accounts/{}/rooms HTTP/1.1\r\nHost: collabkit\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            account.id
        )
    };

    let mut tcp = connect(&app).await;
    let small = json!({ "name": "x".repeat(1000) }).to_string();
    let request = post(small.len()) + &small;
    tcp.write_all(request.as_bytes()).await.unwrap();
    let answer = read_answer(&mut tcp, PROMPT).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.header("connection"), None, "{answer:?}");
    healthz(&mut tcp).await;

    // A megabyte announced, a tenth of it sent: more than is drained.
    let mut tcp = connect(&app).await;
    let mut request = post(1024 * 1024).into_bytes();
    request.extend(std::iter::repeat_n(b'x', 100 * 1024));
    tcp.write_all(&request).await.unwrap();
    let answer = read_answer(&mut tcp, PROMPT).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(
        closed_within(&mut tcp, Instant::now(), PROMPT)
            .await
            .is_some(),
        "the connection stayed open"
    );
}
