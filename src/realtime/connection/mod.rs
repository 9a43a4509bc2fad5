//! One WebSocket: authentication first (`handshake`), then a reader (this task, serving
//! requests through `session`) and a writer task (`writer`) that drains the socket's bounded
//! mailbox, sends heartbeats and closes dead peers. Both run in the socket's span
//! (connection, user, room).

mod handshake;
mod session;
mod writer;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::auth::rate_limit::TokenBucket;
use crate::auth::JwtSigner;
use crate::domain::{ConnectionId, Timestamp};
use crate::error::ApiError;
use crate::realtime::protocol::{close, ErrorBody, ServerFrame};
use crate::realtime::ws::{self, Message};
use crate::rooms::membership::Member;
use crate::rooms::outbox::{outbox, Closer, OutboxLimits};
use crate::rooms::Engine;
use crate::server::ConnectionLease;

use handshake::{authenticate, read_failure, refuse, say_goodbye, Io};
use session::Session;

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves a socket. Until it authenticates, its connection may still be closed to make room
/// at the connection cap (`lease`): sockets that never authenticate must not fill it.
pub async fn run(
    io: Io,
    limits: ws::Limits,
    engine: Engine,
    jwt: JwtSigner,
    lease: Option<ConnectionLease>,
) {
    let connection = ConnectionId::new();
    let span = tracing::info_span!(
        "socket",
        connection = %connection,
        user = tracing::field::Empty,
        room = tracing::field::Empty,
    );
    let (sink, stream) = {
        let (stream, sink) = ws::split(io, limits);
        (sink, stream)
    };
    serve(sink, stream, engine, jwt, lease, connection)
        .instrument(span)
        .await
}

async fn serve(
    mut sink: handshake::Sink,
    mut stream: handshake::Stream,
    engine: Engine,
    jwt: JwtSigner,
    lease: Option<ConnectionLease>,
    connection: ConnectionId,
) {
    let hub = engine.hub().clone();
    let config = hub.config().clone();
    let evicted = async {
        match &lease {
            Some(lease) => lease.evicted().await,
            None => std::future::pending().await,
        }
    };
    // The larger steps are boxed: a task's size is its largest await point's, and a socket
    // spends its life idle in the loop below, so the rare steps must not set its size.
    let identity = tokio::select! {
        identity = Box::pin(authenticate(&mut stream, &engine, &jwt)) => identity,
        () = hub.shutdown_token().cancelled() => return,
        () = evicted => {
            tracing::debug!("closing an unauthenticated socket to make room (http.max_connections)");
            return;
        }
    };
    // Authenticated: the connection is in use for good, no longer one to close for room.
    drop(lease);
    let identity = match identity {
        Ok(identity) => identity,
        Err(refusal) => return Box::pin(refuse(&mut sink, refusal, &engine)).await,
    };
    let span = tracing::Span::current();
    span.record("user", tracing::field::display(identity.user.id));
    span.record("room", tracing::field::display(identity.scope.room_id));

    let closer = Closer::new(hub.shutdown_token());
    let limits = OutboxLimits {
        bytes: config.outbox_bytes,
        max_delay: config.outbox_max_delay(),
    };
    let (outbox, mailbox) = outbox(limits, closer.clone(), identity.protocol);
    let member = Member {
        connection,
        scope: identity.scope,
        user_id: identity.user.id,
        outbox: outbox.clone(),
    };
    let Ok(_registered) = hub.register_socket(connection, identity.scope, identity.user.id, outbox)
    else {
        tracing::info!("socket refused: the user holds too many connections");
        let error = ErrorBody {
            code: ApiError::RateLimited {
                retry_after_secs: 0,
            }
            .code(),
            message: format!(
                "This user holds {} connections on this server already; close one first",
                config.max_connections_per_user
            ),
            field: None,
        };
        let frame = ServerFrame::Error { error }.encode();
        let reason = "too many connections";
        return Box::pin(say_goodbye(
            &mut sink,
            frame,
            close::TRY_AGAIN_LATER,
            reason,
        ))
        .await;
    };
    let last_seen = Arc::new(AtomicI64::new(Timestamp::now().as_millis()));
    let writer = tokio::spawn(
        writer::write_loop(
            sink,
            mailbox,
            closer.clone(),
            last_seen.clone(),
            config.clone(),
            engine.metrics().clone(),
        )
        .instrument(span),
    );

    let bucket = TokenBucket::full(f64::from(config.message_burst), Instant::now());
    let metrics = engine.metrics().clone();
    let mut session = Session::new(engine, member, bucket);
    // Once the socket is told it is in, what other nodes tell its room's sockets (its user or
    // room deleted) reaches it.
    hub.listening(identity.scope.room_id).await;
    Box::pin(session.welcome(identity.user, &identity.room)).await;
    tracing::debug!("socket authenticated");
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = closer.closed() => break,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                let (code, reason) = read_failure(error);
                closer.close(code, reason);
                break;
            }
            None => break,
        };
        last_seen.store(Timestamp::now().as_millis(), Ordering::Relaxed);
        match message {
            Message::Text(text) => Box::pin(session.handle_text(&text)).await,
            Message::Binary => session.error(
                None,
                ApiError::BadRequest("Binary frames are not supported".into()),
            ),
            Message::Close => break,
            Message::Ping | Message::Pong => {}
        }
    }
    Box::pin(session.leave()).await;
    // The client went away (or closed): let the writer flush and say goodbye. Otherwise the
    // writer already has the reason (shutdown, too slow, deleted...).
    if !closer.is_closed() {
        closer.close(close::NORMAL, "bye");
    }
    metrics.socket_closed(closer.reason().0);
    // Until the writer has said goodbye, and a moment after for the client's own close, read
    // (and drop) what the client still sends: a socket closed with unread input is reset,
    // and the client would lose the close frame with its reason.
    let mut writer = writer;
    loop {
        tokio::select! {
            _ = &mut writer => break,
            message = stream.next() => {
                if !matches!(message, Some(Ok(_))) {
                    let _ = (&mut writer).await;
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close) {
                break;
            }
        }
    })
    .await;
    tracing::debug!("socket closed");
}
