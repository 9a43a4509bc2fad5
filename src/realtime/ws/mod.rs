//! WebSocket framing (RFC 6455) over an upgraded HTTP connection, written for memory: an
//! idle socket holds no buffers. The library the server used before kept its write buffer
//! at the size of the largest frame it ever wrote (a `room.join` answer with the first page
//! of users: tens of KiB), for the socket's whole life; that was most of what an idle, joined
//! socket cost. Here frames are written straight from the shared bytes they were encoded
//! into (one vectored write for a batch), and the read buffer grows for a frame and is let
//! go once it has been read.
//!
//! `split` gives the two halves a connection needs: a reader (this task) and a writer (the
//! writer task); a ping read is answered through the writer.

mod frame;
mod read;
mod write;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

pub use crate::rooms::outbox::Utf8Bytes;
use tokio::sync::Notify;

pub use read::{ReadError, Reader};
pub use write::Writer;

/// A message read from a client.
#[derive(Debug)]
pub enum Message {
    Text(String),
    Binary,
    Ping,
    Pong,
    /// The client closes.
    Close,
}

/// Size limits of what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_message_bytes: usize,
}

/// What the halves share: the payload of a ping still to be answered (only the latest ping
/// needs an answer), and the writer's wake-up for it.
#[derive(Default)]
struct Shared {
    pong: Mutex<Option<Bytes>>,
    pong_due: Notify,
}

/// The reading and writing halves of a WebSocket over `io`, an upgraded connection.
pub fn split<S>(
    io: S,
    limits: Limits,
) -> (
    Reader<tokio::io::ReadHalf<S>>,
    Writer<tokio::io::WriteHalf<S>>,
)
where
    S: AsyncRead + AsyncWrite,
{
    let (read, write) = tokio::io::split(io);
    let shared = Arc::new(Shared::default());
    (
        Reader::new(read, limits, shared.clone()),
        Writer::new(write, shared),
    )
}

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key` (RFC 6455, 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = sha1::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const LIMITS: Limits = Limits {
        max_frame_bytes: 1024,
        max_message_bytes: 2048,
    };

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![first];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        let mut masked = payload.to_vec();
        frame::unmask(&mut masked, mask);
        frame.extend_from_slice(&masked);
        frame
    }

    #[tokio::test]
    async fn fragments_make_one_message_and_a_ping_between_them_is_answered() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut reader, mut writer) = split(server, LIMITS);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        // "héllo" split inside the two bytes of "é", with a ping between the fragments.
        let text = "héllo".as_bytes();
        let mut bytes = client_frame(0x01, &text[..2]);
        bytes.extend(client_frame(0x89, b"are you there"));
        bytes.extend(client_frame(0x80, &text[2..]));
        client_write.write_all(&bytes).await.unwrap();
        assert!(matches!(reader.next().await, Some(Ok(Message::Ping))));
        match reader.next().await {
            Some(Ok(Message::Text(text))) => assert_eq!(text, "héllo"),
            other => panic!("{other:?}"),
        }
        // Nothing is held between messages.
        assert_eq!(reader.buf.capacity(), 0);
        // The writer writes what it was given, unmasked, and answers the ping.
        writer.pong_due().await;
        writer.feed(Utf8Bytes::from_static("hi"));
        writer.flush().await.unwrap();
        let mut wire = [0; 19];
        client_read.read_exact(&mut wire).await.unwrap();
        assert_eq!(&wire[..4], b"\x81\x02hi");
        assert_eq!(&wire[4..], b"\x8a\x0dare you there");
        assert_eq!(writer.queue.capacity(), 0);
    }

    #[tokio::test]
    async fn what_breaks_the_protocol_or_the_limits_is_an_error() {
        let cases: [(Vec<u8>, ReadError); 5] = [
            (client_frame(0x81, &[b'x'; 1025]), ReadError::TooBig),
            (
                [
                    client_frame(0x01, &[b'x'; 1000]),
                    client_frame(0x00, &[b'x'; 1000]),
                    client_frame(0x80, &[b'x'; 100]),
                ]
                .concat(),
                ReadError::TooBig,
            ),
            (
                client_frame(0x80, b"x"),
                ReadError::Protocol("a continuation frame with no message"),
            ),
            (
                [client_frame(0x01, b"x"), client_frame(0x81, b"y")].concat(),
                ReadError::Protocol("a new message inside a fragmented one"),
            ),
            (
                client_frame(0x81, &[0xff, 0xfe]),
                ReadError::Protocol("a text message that is not UTF-8"),
            ),
        ];
        for (bytes, expected) in cases {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let (mut reader, _writer) = split(server, LIMITS);
            client.write_all(&bytes).await.unwrap();
            assert_eq!(reader.next().await.unwrap().unwrap_err(), expected);
        }
    }

    #[tokio::test]
    async fn a_write_cut_short_resumes_where_it_stopped() {
        // A pipe that holds 10 bytes: the first flush cannot finish.
        let (mut client, server) = tokio::io::duplex(10);
        let (_reader, mut writer) = split(server, LIMITS);
        writer.feed(Utf8Bytes::from("a".repeat(40)));
        let cut = tokio::time::timeout(std::time::Duration::from_millis(50), writer.flush()).await;
        assert!(cut.is_err(), "the flush waits for the reader");
        writer.feed(Utf8Bytes::from_static("b"));
        let read = async {
            let mut wire = vec![0; 2 + 40 + 3];
            client.read_exact(&mut wire).await.unwrap();
            wire
        };
        let (flushed, wire) = tokio::join!(writer.flush(), read);
        flushed.unwrap();
        assert_eq!(&wire[..2], [0x81, 40]);
        assert!(wire[2..42].iter().all(|b| *b == b'a'));
        assert_eq!(&wire[42..], b"\x81\x01b");
    }

    #[test]
    fn the_accept_key_is_the_rfcs() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
