//! A webhook receiver on loopback that records what it gets and answers as told.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// The documented verifier: hex HMAC-SHA256 of the raw body, keyed with the secret.
    pub fn verify_documented(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.header("x-collabkit-signature") == expected
    }

    /// A Standard Webhooks verifier: the key is the base64 after `whsec_`; the signed content
    /// is `{webhook-id}.{webhook-timestamp}.{body}`; the header lists `v1,<base64>` values.
    pub fn verify_standard(&self, secret: &str) -> bool {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(self.header("webhook-id").as_bytes());
        mac.update(b".");
        mac.update(self.header("webhook-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let timestamp: i64 = self.header("webhook-timestamp").parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now - timestamp).abs() < 300
            && self
                .header("webhook-signature")
                .split(' ')
                .any(|s| s == expected)
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Statuses to answer next, in order; then 200.
    plan: VecDeque<u16>,
}

/// The longest a held request waits for `release`.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

struct Inner {
    shared: Mutex<Shared>,
    /// Whether answers go out; while not, requests are recorded and kept waiting.
    open: tokio::sync::watch::Sender<bool>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = {
        let mut shared = inner.shared.lock().unwrap();
        shared.received.push(Received { headers, body });
        shared.plan.pop_front().unwrap_or(200)
    };
    let mut open = inner.open.subscribe();
    let _ = tokio::time::timeout(HOLD_LIMIT, open.wait_for(|open| *open)).await;
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Self {
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared::default()),
            open: tokio::sync::watch::Sender::new(true),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Self {
            addr,
            inner,
            server,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests with these statuses.
    pub fn answer(&self, statuses: &[u16]) {
        self.inner.shared.lock().unwrap().plan.extend(statuses);
    }

    /// From now on, records requests but keeps them waiting for an answer (a slow endpoint,
    /// so that deliveries are in flight), until `release`.
    pub fn hold(&self) {
        self.inner.open.send_replace(false);
    }

    /// Answers the requests held, and the next ones at once.
    pub fn release(&self) {
        self.inner.open.send_replace(true);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.shared.lock().unwrap().received.clone()
    }

    /// Waits until `count` requests arrived (or the time is up); returns them all.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let received = self.received();
            if received.len() >= count || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops listening and closes its connections (the port refuses connections afterwards).
    pub async fn stop(self) -> SocketAddr {
        self.release();
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(5), &mut { self.server })
            .await
            .is_err()
        {
            panic!("the receiver did not stop");
        }
        self.addr
    }
}
