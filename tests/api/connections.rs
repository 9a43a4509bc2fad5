//! Slow clients: a request body that stops short. Transport only, so on SQLite alone.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::harness::{Backend, TestApp};

/// Slack on top of a configured timeout before a test gives up waiting for its effect: the
/// machine may be busy with other builds.
const MARGIN: Duration = Duration::from_secs(3);

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
