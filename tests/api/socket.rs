//! A WebSocket client that speaks the protocol of docs/protocol.md, with a time limit on
//! every wait.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for anything the server should send.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Frames read while looking for something else.
    pending: VecDeque<Value>,
    /// The close frame, once received: (code, reason).
    pub closed: Option<(u16, String)>,
}

impl Socket {
    /// Opens the socket (no auth yet).
    pub async fn open(http_base: &str) -> Self {
        let url = format!("{}/v1/realtime", http_base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "collabkit.v1".parse().unwrap());
        let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect in time")
            .expect("the upgrade succeeds");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("collabkit.v1")
        );
        Self {
            ws,
            next_id: 0,
            pending: VecDeque::new(),
            closed: None,
        }
    }

    /// Opens and authenticates (protocol version 1); panics unless the server welcomes the
    /// token.
    pub async fn connect(http_base: &str, token: &str) -> (Self, Value) {
        Self::connect_speaking(http_base, token, json!(1)).await
    }

    /// `connect`, asking for protocol version `protocol` (a number, or null for none).
    pub async fn connect_speaking(http_base: &str, token: &str, protocol: Value) -> (Self, Value) {
        let mut socket = Self::open(http_base).await;
        let welcome = socket.auth_speaking(token, protocol).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (socket, welcome)
    }

    /// Opens, authenticates (protocol version 1) and joins; returns the join's result.
    pub async fn join(http_base: &str, token: &str) -> (Self, Value) {
        Self::join_speaking(http_base, token, 1).await
    }

    /// `join`, speaking protocol version `protocol`.
    pub async fn join_speaking(http_base: &str, token: &str, protocol: u32) -> (Self, Value) {
        let (mut socket, welcome) = Self::connect_speaking(http_base, token, json!(protocol)).await;
        assert_eq!(welcome["protocol"], protocol);
        let joined = socket
            .request("room.join", json!({}))
            .await
            .expect("join succeeds");
        (socket, joined)
    }

    /// Sends the auth frame (protocol version 1) and returns the server's answer (welcome or
    /// authFailed).
    pub async fn auth(&mut self, token: &str) -> Value {
        self.auth_speaking(token, json!(1)).await
    }

    async fn auth_speaking(&mut self, token: &str, protocol: Value) -> Value {
        let mut frame = json!({ "type": "auth", "token": token });
        if !protocol.is_null() {
            frame["protocol"] = protocol;
        }
        self.send_json(frame).await;
        self.next_frame().await.expect("an answer to auth")
    }

    pub async fn send_json(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        tokio::time::timeout(WAIT, self.ws.send(Message::text(text)))
            .await
            .expect("send in time")
            .expect("send succeeds");
    }

    /// Sends a text frame; false if the connection is gone or sending took too long.
    pub async fn try_send_text(&mut self, text: String) -> bool {
        matches!(
            tokio::time::timeout(WAIT, self.ws.send(Message::text(text))).await,
            Ok(Ok(()))
        )
    }

    pub async fn send_message(&mut self, message: Message) {
        let _ = tokio::time::timeout(WAIT, self.ws.send(message)).await;
    }

    /// The next JSON frame, or None when the socket closed (the close is kept in `closed`).
    pub async fn next_frame(&mut self) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.read_frame(WAIT).await.expect("a frame in time")
    }

    /// Reads one frame from the wire; Err on timeout.
    async fn read_frame(&mut self, limit: Duration) -> Result<Option<Value>, ()> {
        loop {
            let message = match tokio::time::timeout(limit, self.ws.next()).await {
                Err(_) => return Err(()),
                Ok(None) => return Ok(None),
                Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    return Ok(Some(serde_json::from_str(text.as_str()).unwrap()))
                }
                Message::Close(frame) => {
                    self.closed = Some(
                        frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((u16::from(CloseCode::Status), String::new())),
                    );
                    return Ok(None);
                }
                _ => continue,
            }
        }
    }

    /// Sends a request and waits for its response: Ok(result) or Err(error object).
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        match self.try_request(method, params).await {
            Some(answer) => answer,
            None if self.closed.is_some() => {
                panic!("socket closed waiting for {method}: {:?}", self.closed)
            }
            None => panic!("no response to {method} in time"),
        }
    }

    /// Like `request`, but `None` when the socket closes or breaks, or nothing comes in time:
    /// for clients of a server that may be killed under them.
    pub async fn try_request(
        &mut self,
        method: &str,
        params: Value,
    ) -> Option<Result<Value, Value>> {
        self.next_id += 1;
        let id = self.next_id;
        let frame = json!({ "type": "req", "id": id, "method": method, "params": params });
        let sent = tokio::time::timeout(WAIT, self.ws.send(Message::text(frame.to_string()))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.read_frame(left).await.ok()??;
            if frame["type"] == "res" && frame["id"] == id {
                return Some(if frame["ok"] == true {
                    Ok(frame["result"].clone())
                } else {
                    Err(frame["error"].clone())
                });
            }
            self.pending.push_back(frame);
        }
    }

    /// The next frame that is not an event (a `res`, an `error`, a `pong`...), events read on
    /// the way dropped; `None` when the socket closed (the close is kept in `closed`) or
    /// nothing came within `WAIT`.
    pub async fn next_answer(&mut self) -> Option<Value> {
        while let Some(frame) = self.pending.pop_front() {
            if frame["type"] != "event" {
                return Some(frame);
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await {
                Err(()) | Ok(None) => return None,
                Ok(Some(frame)) if frame["type"] == "event" => continue,
                Ok(Some(frame)) => return Some(frame),
            }
        }
    }

    /// Sends a notification (no id, no response).
    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send_json(json!({ "type": "req", "method": method, "params": params }))
            .await;
    }

    /// The next event named `name` (other frames are kept for later), within `WAIT`.
    pub async fn event(&mut self, name: &str) -> Value {
        self.event_within(name, WAIT)
            .await
            .unwrap_or_else(|| panic!("no {name} event in time (closed: {:?})", self.closed))
    }

    pub async fn event_within(&mut self, name: &str, limit: Duration) -> Option<Value> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|f| f["type"] == "event" && f["event"] == name)
        {
            return self.pending.remove(i).map(|f| f["data"].clone());
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await {
                Err(()) | Ok(None) => return None,
                Ok(Some(frame)) if frame["type"] == "event" && frame["event"] == name => {
                    return Some(frame["data"].clone())
                }
                Ok(Some(frame)) => self.pending.push_back(frame),
            }
        }
    }

    /// Asserts that no `name` event arrives within `limit`.
    pub async fn expect_no_event(&mut self, name: &str, limit: Duration) {
        if let Some(data) = self.event_within(name, limit).await {
            panic!("unexpected {name} event: {data}");
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn closed_with(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await {
                Err(()) => panic!("the socket was not closed in time"),
                Ok(None) => break,
                Ok(Some(frame)) => self.pending.push_back(frame),
            }
        }
        self.closed.as_ref().map(|(code, _)| *code).unwrap_or(1006)
    }

    /// Events of one name received so far (read for `within`).
    pub async fn drain_events(&mut self, name: &str, within: Duration) -> Vec<Value> {
        let mut found = Vec::new();
        while let Some(data) = self.event_within(name, within).await {
            found.push(data);
        }
        found
    }

    /// The frames read so far and not consumed, in order.
    pub fn drain_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
    }

    /// Drops the TCP connection without a close frame.
    pub fn kill(self) {
        drop(self);
    }
}
