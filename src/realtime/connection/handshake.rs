//! The first frame of a socket: the `auth` frame, whose token must be valid and whose
//! account, room and user must still exist; and how a refusal is told to the client.

use hyper_util::rt::TokioIo;

use super::CLOSE_TIMEOUT;
use crate::auth::{JwtError, JwtSigner};
use crate::domain::{Room, Timestamp, User};
use crate::error::ApiError;
use crate::realtime::protocol::{close, negotiate, ClientFrame, ErrorBody, ServerFrame, Utf8Bytes};
use crate::realtime::ws::{self, Message, ReadError};
use crate::rooms::Engine;
use crate::store::RoomScope;

/// An upgraded connection.
pub type Io = TokioIo<hyper::upgrade::Upgraded>;
pub type Sink = ws::Writer<tokio::io::WriteHalf<Io>>;
pub type Stream = ws::Reader<tokio::io::ReadHalf<Io>>;

/// Who the socket authenticated as.
pub struct Identity {
    pub scope: RoomScope,
    /// The protocol version the socket is served (`negotiate`).
    pub protocol: u32,
    pub user: User,
    pub room: Room,
}

/// Why a socket was not authenticated.
pub enum Refusal {
    /// The token is no good: the client must not retry it (4401).
    Rejected(&'static str),
    /// The server could not check it (its database failed): the client may retry (1013).
    Unavailable,
    /// The first frame was over the frame limit: a broken client, not a bad token, so it
    /// is told so (1009) rather than never to retry its token.
    TooBig,
}

impl From<&'static str> for Refusal {
    fn from(reason: &'static str) -> Self {
        Self::Rejected(reason)
    }
}

/// Waits for the auth frame and checks its token: signature, expiry, and that the account,
/// room and user still exist.
pub async fn authenticate(
    stream: &mut Stream,
    engine: &Engine,
    jwt: &JwtSigner,
) -> Result<Identity, Refusal> {
    let config = engine.hub().config();
    let first = match tokio::time::timeout(config.auth_timeout(), stream.next()).await {
        Err(_) => return Err("No auth frame in time".into()),
        Ok(Some(Err(error))) => {
            return Err(match read_failure(error) {
                (close::TOO_BIG, _) => Refusal::TooBig,
                _ => "Connection closed before authenticating".into(),
            })
        }
        Ok(None) => return Err("Connection closed before authenticating".into()),
        Ok(Some(Ok(message))) => message,
    };
    let Message::Text(text) = first else {
        return Err("The first frame must be an auth frame".into());
    };
    if text.len() > config.max_message_bytes {
        return Err(Refusal::TooBig);
    }
    let Ok(ClientFrame::Auth { token, protocol }) = serde_json::from_str::<ClientFrame>(&text)
    else {
        return Err("The first frame must be an auth frame".into());
    };
    let claims = jwt
        .verify(&token, Timestamp::now())
        .map_err(|error| match error {
            JwtError::Expired => "Token has expired",
            JwtError::WrongAlgorithm => "Token is not signed with HS256",
            JwtError::BadSignature => "Token signature is invalid",
            JwtError::Malformed => "Token is malformed",
        })?;
    let scope = RoomScope {
        account_id: claims.account_id,
        room_id: claims.room_id,
    };
    let found = engine
        .identify(scope, claims.user_id)
        .await
        .map_err(|_| Refusal::Unavailable)?;
    match found {
        Some((user, room)) => Ok(Identity {
            scope,
            protocol: negotiate(protocol),
            user,
            room,
        }),
        None => Err("The token's user or room no longer exists".into()),
    }
}

/// Tells the client why it is refused, then closes.
pub async fn refuse(sink: &mut Sink, refusal: Refusal, engine: &Engine) {
    let (frame, code, reason) = match refusal {
        Refusal::Rejected(message) => {
            tracing::info!(reason = message, "socket auth failed");
            let frame = ServerFrame::AuthFailed {
                code: "UNAUTHORIZED",
                message,
            };
            (frame.encode(), close::AUTH_FAILED, "authFailed")
        }
        Refusal::TooBig => {
            let limit = engine.hub().config().max_message_bytes;
            let error = ErrorBody::from(&ApiError::PayloadTooLarge { limit });
            let frame = ServerFrame::Error { error };
            (frame.encode(), close::TOO_BIG, "frame too large")
        }
        Refusal::Unavailable => {
            let error = ErrorBody::from(&ApiError::Unavailable);
            let frame = ServerFrame::Error { error };
            (frame.encode(), close::TRY_AGAIN_LATER, "try again later")
        }
    };
    say_goodbye(sink, frame, code, reason).await;
}

/// Sends one last frame and the close, within `CLOSE_TIMEOUT`.
pub async fn say_goodbye(sink: &mut Sink, frame: Utf8Bytes, code: u16, reason: &'static str) {
    sink.feed(frame);
    sink.feed_close(code, reason);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.flush()).await;
}

/// Why reading a socket failed, as a close code: a frame over the hard cap (1009), or
/// anything else the peer did wrong or a lost connection (1002).
pub fn read_failure(error: ReadError) -> (u16, &'static str) {
    match error {
        ReadError::TooBig => (close::TOO_BIG, "frame too large"),
        ReadError::Protocol(_) | ReadError::Io => (close::PROTOCOL_ERROR, "connection error"),
    }
}
