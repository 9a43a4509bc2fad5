//! `ws --compare socketio`: the presence run of presence.rs against a Socket.IO relay
//! (scripts/socketio-relay, the `socket.io` npm package) instead of CollabKit, and the bench's
//! Socket.IO client: Engine.IO 4 / Socket.IO 5 framing spoken over a plain WebSocket.

use std::borrow::Cow;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt as _;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::presence::{Incoming, Live, Load, Measurement, Protocol, SetupFailures, Stamp, Target};
use crate::ws::SETUP_CONCURRENCY;
use crate::wsclient::{self, PresenceState, SetupError, Socket};

/// The relay's package; found from the bench's source tree, wherever the bench runs from.
const RELAY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/socketio-relay");
/// Longest wait for the relay to say which port it listens on (Node.js starts in well under).
const RELAY_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one frame during set-up, as for CollabKit's sockets.
const SETUP_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Engine.IO's ping (a text frame `2`) and the pong it must be answered with in time, or the
/// server closes the socket.
const PING: &str = "2";
const PONG: &str = "3";

/// The relay process: `node relay.mjs` on a free loopback port, killed when dropped.
pub struct Relay {
    child: Child,
    port: u16,
}

impl Relay {
    /// Makes sure the relay's packages are installed: `npm ci` (from the committed
    /// package-lock.json) if its node_modules is missing.
    pub fn install() -> anyhow::Result<()> {
        if Path::new(RELAY_DIR).join("node_modules").is_dir() {
            return Ok(());
        }
        println!("installing the Socket.IO relay's packages: npm ci in {RELAY_DIR}");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(RELAY_DIR)
            .stdout(Stdio::null())
            .status()
            .context("running npm (--compare socketio needs Node.js and npm)")?;
        if !status.success() {
            bail!("npm ci in {RELAY_DIR} failed ({status}): run it there and retry");
        }
        Ok(())
    }

    /// Starts the relay and waits for the port it listens on.
    pub async fn start() -> anyhow::Result<Self> {
        let child = Command::new("node")
            .args(["relay.mjs", "0"])
            .current_dir(RELAY_DIR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("running node (--compare socketio needs Node.js)")?;
        // From here on, an early return kills the child.
        let mut relay = Self { child, port: 0 };
        let stdout = relay.child.stdout.take().context("the relay's stdout")?;
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(RELAY_START_TIMEOUT, first_line)
            .await
            .context("the Socket.IO relay did not say its port in time")???;
        relay.port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .with_context(|| {
                format!("the Socket.IO relay said {line:?}, not `listening <port>`")
            })?;
        Ok(relay)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay's presence run: the clients of `load` connect and join their room (the relay has
/// no users and no auth), then the measurement and report CollabKit's run has.
pub async fn presence(load: &Load) -> anyhow::Result<()> {
    load.print_title("socket.io relay");
    let relay = Relay::start().await?;
    let measurement = Measurement::new(Protocol::SocketIo);
    let opened = Instant::now();
    let results: Vec<Result<Live, SetupError>> = futures_util::stream::iter(0..load.clients)
        .map(|i| {
            // As CollabKit's users: client `i` in room `i % rooms`.
            let (room, port, measurement) = (i % load.rooms, relay.port, &measurement);
            async move {
                let socket = open(port, &format!("bench room {room}")).await?;
                Ok(measurement.start_reading(room, 0, socket))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let (live, failures) = SetupFailures::sort(results);
    println!(
        "set-up: {} sockets connected and joined in {:.1} s (no users, no auth: the relay has neither)",
        live.len(),
        opened.elapsed().as_secs_f64()
    );
    let target = Target {
        pid: relay.pid(),
        name: "relay".to_owned(),
    };
    measurement.finish(load, &[target], live, &failures).await
}

/// Connects to the relay over the WebSocket transport alone (no HTTP long-polling first) and
/// joins the default namespace with `{ room }` as its auth. Every wait is bounded.
async fn open(port: u16, room: &str) -> Result<Socket, SetupError> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let config = WebSocketConfig::default();
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (mut socket, _) = tokio::time::timeout(SETUP_FRAME_TIMEOUT, connect)
        .await
        .map_err(|_| SetupError::Timeout)?
        .map_err(|e| SetupError::Connect(e.to_string()))?;
    // Engine.IO's open packet: `0{"sid":...,"pingInterval":...,"pingTimeout":...}`.
    let open = wsclient::next_text(&mut socket).await?;
    if !open.starts_with('0') {
        return Err(SetupError::Refused(format!(
            "expected the Engine.IO open packet, got {open}"
        )));
    }
    // Socket.IO CONNECT (4 = message, 0 = connect) to namespace `/` with the auth payload.
    let auth = serde_json::json!({ "room": room });
    wsclient::send(&mut socket, format!("40{auth}")).await?;
    loop {
        let text = wsclient::next_text(&mut socket).await?;
        if text == PING {
            wsclient::send(&mut socket, PONG.to_owned()).await?;
        } else if text.starts_with("40") {
            return Ok(socket);
        } else if let Some(error) = text.strip_prefix("44") {
            return Err(SetupError::Refused(format!("connect_error {error}")));
        }
    }
}

/// A presence update: a Socket.IO EVENT (`42`) named `presence` carrying its send time `t`.
pub fn presence_update(sent_at: u64, count: u64) -> String {
    format!(r#"42["presence",{{"t":{sent_at},"x":{count}}}]"#)
}

/// What the measurement makes of a relay frame: an EVENT `presence` relayed from another
/// client (its `t` goes onto `stamps`), the ping to answer, or the relay ending the session.
pub fn read_frame(text: &str, stamps: &mut Vec<Stamp>) -> Incoming {
    if text == PING {
        return Incoming::Answer(PONG);
    }
    if let Some(event) = text.strip_prefix("42") {
        let Ok((name, state)) = serde_json::from_str::<(Cow<'_, str>, PresenceState)>(event) else {
            return Incoming::Error("unreadable".to_owned());
        };
        if name != "presence" {
            return Incoming::Other;
        }
        stamps.extend(state.t.map(|sent_at| Stamp { sent_at, node: 0 }));
        return Incoming::Presence;
    }
    match text.get(..2) {
        // Socket.IO DISCONNECT and CONNECT_ERROR; Engine.IO CLOSE is `1`.
        Some("41") => Incoming::Error("disconnect".to_owned()),
        Some("44") => Incoming::Error("connect_error".to_owned()),
        _ if text == "1" => Incoming::Error("close".to_owned()),
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_relayed_presence_event_and_answers_pings() {
        let mut stamps = Vec::new();
        let update = presence_update(1_700_000_000_000_000, 7);
        assert!(matches!(
            read_frame(&update, &mut stamps),
            Incoming::Presence
        ));
        let sent_at = Stamp {
            sent_at: 1_700_000_000_000_000,
            node: 0,
        };
        assert_eq!(stamps, [sent_at]);
        assert!(matches!(
            read_frame("2", &mut stamps),
            Incoming::Answer("3")
        ));
        assert!(matches!(
            read_frame(r#"42["other",{}]"#, &mut stamps),
            Incoming::Other
        ));
        assert!(matches!(read_frame("41", &mut stamps), Incoming::Error(_)));
        assert_eq!(stamps.len(), 1);
    }
}
