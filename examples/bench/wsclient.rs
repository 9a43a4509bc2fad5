//! One bench WebSocket client of the real-time protocol (docs/protocol.md): connecting,
//! authenticating, joining, and reading the few server frames the bench looks at.

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::presence::{Incoming, Stamp};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The subprotocol of docs/protocol.md.
const SUBPROTOCOL: &str = "collabkit.v1";
/// The protocol version the bench speaks: 2 receives presence in batches, one frame per tick.
const PROTOCOL: u32 = 2;
/// How the server begins an event frame (`{"type":"event",...}`, its field order).
const EVENT_PREFIX: &str = r#"{"type":"event","#;
/// Longest wait for one frame during set-up; a loaded server on SQLite can take a while.
const SETUP_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a socket could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// TCP connect or WebSocket upgrade failed.
    Connect(String),
    /// The server answered `authFailed` (close 4401).
    AuthFailed(String),
    /// A request of the set-up (`room.join`, `presence.sync`) was refused.
    Refused(String),
    /// The socket closed during set-up.
    Closed(Option<u16>),
    /// A set-up frame did not arrive in time.
    Timeout,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "connect: {error}"),
            Self::AuthFailed(message) => write!(f, "authFailed: {message}"),
            Self::Refused(code) => write!(f, "request refused: {code}"),
            Self::Closed(code) => write!(f, "closed during set-up (code {code:?})"),
            Self::Timeout => write!(f, "timed out during set-up"),
        }
    }
}

/// What a set-up socket does after `room.join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Ask for everyone's presence (`presence.sync` with target `*`).
    SyncEveryone,
    /// Nothing: an idle socket.
    Idle,
}

/// The parts of a server frame the bench reads; serde skips the rest.
#[derive(Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    pub id: Option<u64>,
    pub ok: Option<bool>,
    #[serde(borrow)]
    pub event: Option<Cow<'a, str>>,
    pub data: Option<EventData>,
    pub error: Option<ErrorBody>,
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub struct EventData {
    /// A version 1 `presence` event's state; `None` for other events and for a cleared state.
    pub state: Option<PresenceState>,
    /// A version 2 `presence` event's states, each `{ userId, state }`.
    pub states: Option<Vec<PresenceEntry>>,
}

#[derive(Deserialize)]
pub struct PresenceEntry {
    pub state: Option<PresenceState>,
}

#[derive(Deserialize)]
pub struct PresenceState {
    /// The sender's clock when it sent the update, in microseconds since the Unix epoch.
    pub t: Option<u64>,
    /// The sender's node (cluster runs).
    pub o: Option<u8>,
}

impl PresenceState {
    fn stamp(&self) -> Option<Stamp> {
        Some(Stamp {
            sent_at: self.t?,
            node: self.o.unwrap_or(0),
        })
    }
}

#[derive(Deserialize)]
pub struct ErrorBody {
    pub code: String,
}

impl Frame<'_> {
    /// The stamps carried by a `presence` event from the bench: one per state it holds (none
    /// when this frame is something else).
    pub fn presence_stamps(&self) -> impl Iterator<Item = Stamp> + '_ {
        let presence = self.kind == "event" && self.event.as_deref() == Some("presence");
        let data = self.data.as_ref().filter(|_| presence);
        let single = data.and_then(|data| data.state.as_ref()?.stamp());
        let batch = data
            .and_then(|data| data.states.as_deref())
            .unwrap_or_default();
        let batch = batch
            .iter()
            .filter_map(|entry| entry.state.as_ref()?.stamp());
        single.into_iter().chain(batch)
    }
}

/// A presence update (a notification: no `id`, no answer) carrying its stamp: the send time
/// `t` and the sender's node `o`.
pub fn presence_update(stamp: Stamp, count: u64) -> String {
    let Stamp { sent_at, node } = stamp;
    format!(
        r#"{{"type":"req","method":"presence.update","params":{{"state":{{"t":{sent_at},"o":{node},"x":{count}}}}}}}"#
    )
}

/// What the measurement makes of a server frame; the stamps of a `presence` event's states go
/// onto `stamps`.
pub fn read_frame(text: &str, stamps: &mut Vec<Stamp>) -> Incoming {
    // Presence, the bulk of what the readers get, without parsing it whole: a batch of 500
    // states parsed into values would make the load generator the bottleneck. The server
    // writes `type`, `event` and `data` in that order, and a bench state's send time and node
    // are its only fields named `t` and `o`: each state has one of each, so the nth `o` is the
    // nth `t`'s, whatever order the keys come in.
    const PRESENCE: &str = r#"{"type":"event","event":"presence","data":"#;
    let before = stamps.len();
    if let Some(data) = text.strip_prefix(PRESENCE) {
        let nodes = numbers(data, r#""o":"#).map(|node| node as u8);
        for (sent_at, node) in numbers(data, r#""t":"#).zip(nodes) {
            stamps.push(Stamp { sent_at, node });
        }
        return if stamps.len() > before {
            Incoming::Presence
        } else {
            Incoming::Other
        };
    }
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return Incoming::Error("unreadable".to_owned());
    };
    stamps.extend(frame.presence_stamps());
    if stamps.len() > before {
        Incoming::Presence
    } else if frame.kind == "error" {
        Incoming::Error(frame.error.map_or_else(String::new, |e| e.code))
    } else {
        Incoming::Other
    }
}

/// The unsigned integers that follow `key` in `text`, in order.
fn numbers<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = u64> + 'a {
    text.match_indices(key).filter_map(move |(at, _)| {
        let digits = &text[at + key.len()..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    })
}

/// Microseconds since the Unix epoch: sender and receiver share this machine's clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How long each step of a socket's set-up took (`open_timed`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupTimes {
    /// TCP connect and WebSocket upgrade.
    pub upgraded: Duration,
    /// From the auth frame to `welcome`.
    pub authenticated: Duration,
    /// From `room.join` to its response.
    pub joined: Duration,
}

/// Connects, authenticates with `token`, joins the token's room and, if asked, syncs to
/// everyone's presence. Every wait is bounded.
pub async fn open(
    url: &str,
    token: &str,
    after: After,
    config: WebSocketConfig,
) -> Result<Socket, SetupError> {
    Ok(open_timed(url, token, after, config).await?.0)
}

/// `open`, with how long its steps took.
pub async fn open_timed(
    url: &str,
    token: &str,
    after: After,
    config: WebSocketConfig,
) -> Result<(Socket, SetupTimes), SetupError> {
    let mut times = SetupTimes::default();
    let began = Instant::now();
    let mut request = url
        .into_client_request()
        .map_err(|e| SetupError::Connect(e.to_string()))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut socket, _) = tokio::time::timeout(SETUP_FRAME_TIMEOUT, connect)
        .await
        .map_err(|_| SetupError::Timeout)?
        .map_err(|e| SetupError::Connect(e.to_string()))?;
    times.upgraded = began.elapsed();

    let began = Instant::now();
    let auth = serde_json::json!({ "type": "auth", "token": token, "protocol": PROTOCOL });
    send(&mut socket, auth.to_string()).await?;
    let first = next_text(&mut socket).await?;
    let frame: Frame = parse(&first)?;
    match frame.kind.as_ref() {
        "welcome" => {}
        "authFailed" => return Err(SetupError::AuthFailed(frame.message.unwrap_or_default())),
        other => {
            return Err(SetupError::Refused(format!(
                "unexpected first frame {other}"
            )))
        }
    }

    times.authenticated = began.elapsed();

    let began = Instant::now();
    request_and_wait(
        &mut socket,
        1,
        r#"{"type":"req","id":1,"method":"room.join"}"#,
    )
    .await?;
    times.joined = began.elapsed();
    if after == After::SyncEveryone {
        let sync = r#"{"type":"req","id":2,"method":"presence.sync","params":{"target":"*"}}"#;
        request_and_wait(&mut socket, 2, sync).await?;
    }
    Ok((socket, times))
}

/// Sends a request and waits for its response, skipping the events that arrive meanwhile.
async fn request_and_wait(socket: &mut Socket, id: u64, request: &str) -> Result<(), SetupError> {
    send(socket, request.to_owned()).await?;
    loop {
        let text = next_text(socket).await?;
        // Events (every join in the room sends one) are passed over without parsing them: in
        // a join storm, parsing them was a good share of the load generator's CPU.
        if text.starts_with(EVENT_PREFIX) {
            continue;
        }
        let frame: Frame = parse(&text)?;
        if frame.kind == "res" && frame.id == Some(id) {
            if frame.ok == Some(true) {
                return Ok(());
            }
            let code = frame.error.map(|e| e.code).unwrap_or_default();
            return Err(SetupError::Refused(code));
        }
    }
}

pub async fn send(socket: &mut Socket, text: String) -> Result<(), SetupError> {
    match tokio::time::timeout(SETUP_FRAME_TIMEOUT, socket.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SetupError::Closed(None)),
        Err(_) => Err(SetupError::Timeout),
    }
}

/// The next text frame; pings are answered by the library while reading.
pub async fn next_text(socket: &mut Socket) -> Result<String, SetupError> {
    loop {
        let message = tokio::time::timeout(SETUP_FRAME_TIMEOUT, socket.next())
            .await
            .map_err(|_| SetupError::Timeout)?;
        match message {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(SetupError::Closed(frame.map(|f| f.code.into())))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(SetupError::Closed(None)),
        }
    }
}

fn parse(text: &str) -> Result<Frame<'_>, SetupError> {
    serde_json::from_str(text).map_err(|e| SetupError::Refused(format!("unreadable frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sent_at: u64, node: u8) -> Stamp {
        Stamp { sent_at, node }
    }

    #[test]
    fn reads_the_stamps_of_a_presence_batch_whatever_the_order_of_their_keys() {
        let batch = r#"{"type":"event","event":"presence","data":{"states":[{"userId":"u1","state":{"o":2,"t":17,"x":1}},{"userId":"u2","state":{"t":18,"x":4,"o":0}}]}}"#;
        let mut stamps = Vec::new();
        assert!(matches!(read_frame(batch, &mut stamps), Incoming::Presence));
        assert_eq!(stamps, [stamp(17, 2), stamp(18, 0)]);
    }

    #[test]
    fn reads_a_version_1_presence_event_and_ignores_other_frames() {
        let single =
            r#"{"type":"event","data":{"userId":"u1","state":{"t":5,"o":1}},"event":"presence"}"#;
        let mut stamps = Vec::new();
        assert!(matches!(
            read_frame(single, &mut stamps),
            Incoming::Presence
        ));
        assert_eq!(stamps, [stamp(5, 1)]);
        let joined = r#"{"type":"event","event":"userJoined","data":{"user":{}}}"#;
        assert!(matches!(read_frame(joined, &mut stamps), Incoming::Other));
        let update = presence_update(stamp(9, 3), 0);
        assert!(update.contains(r#""t":9,"o":3"#), "{update}");
    }
}
