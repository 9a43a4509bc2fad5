//! The reading half: client frames in, whole messages out, within the size limits.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::frame::{self, opcode, FrameError};
use super::{Limits, Message, Shared};

/// Room made in the read buffer for a read when it has less: client frames are small (a
/// presence update is ~150 bytes), and a larger frame makes room for itself.
const READ_CHUNK: usize = 1024;

/// Why reading failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// A frame or message over the limits (close 1009).
    TooBig,
    /// The client broke the protocol (close 1002).
    Protocol(&'static str),
    /// The connection failed.
    Io,
}

impl From<FrameError> for ReadError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::TooBig => Self::TooBig,
            FrameError::Protocol(what) => Self::Protocol(what),
        }
    }
}

pub struct Reader<R> {
    io: R,
    /// Bytes read and not yet taken as frames; empty (no allocation) between messages.
    pub(super) buf: BytesMut,
    limits: Limits,
    shared: Arc<Shared>,
    /// A fragmented message being put together: its opcode and what arrived so far.
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(super) fn new(io: R, limits: Limits, shared: Arc<Shared>) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            limits,
            shared,
            partial: None,
        }
    }

    /// The next message; `None` once the connection has ended. Cancel safe: what was read
    /// stays in the buffer for the next call.
    pub async fn next(&mut self) -> Option<Result<Message, ReadError>> {
        loop {
            match self.parse() {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_CHUNK);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(_) => return Some(Err(ReadError::Io)),
            }
        }
    }

    /// The next whole message in the buffer, if there is one.
    fn parse(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            let Some(header) = frame::parse_header(&self.buf, self.limits.max_frame_bytes)? else {
                return Ok(None);
            };
            let total = header.header_len + header.payload_len;
            if self.buf.len() < total {
                // Room for the rest of the frame, so that it takes few reads.
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let mut frame = self.buf.split_to(total);
            if self.buf.is_empty() {
                // Let the allocation go with the frame: an idle socket holds no buffer.
                self.buf = BytesMut::new();
            }
            let payload = &mut frame[header.header_len..];
            frame::unmask(payload, header.mask);
            match header.opcode {
                opcode::PING => {
                    let payload = Bytes::copy_from_slice(payload);
                    *self.shared.pong.lock().expect("pong lock") = Some(payload);
                    self.shared.pong_due.notify_one();
                    return Ok(Some(Message::Ping));
                }
                opcode::PONG => return Ok(Some(Message::Pong)),
                opcode::CLOSE => return check_close(payload).map(|()| Some(Message::Close)),
                opcode::CONTINUATION => {
                    let Some((_, data)) = &mut self.partial else {
                        return Err(ReadError::Protocol("a continuation frame with no message"));
                    };
                    if data.len() + payload.len() > self.limits.max_message_bytes {
                        return Err(ReadError::TooBig);
                    }
                    data.extend_from_slice(payload);
                    if header.fin {
                        let (opcode, data) = self.partial.take().expect("a message under way");
                        return message(opcode, data).map(Some);
                    }
                }
                data_opcode => {
                    if self.partial.is_some() {
                        return Err(ReadError::Protocol("a new message inside a fragmented one"));
                    }
                    if header.fin {
                        return message(data_opcode, payload.to_vec()).map(Some);
                    }
                    self.partial = Some((data_opcode, payload.to_vec()));
                }
            }
        }
    }
}

fn message(opcode: u8, data: Vec<u8>) -> Result<Message, ReadError> {
    if opcode == opcode::BINARY {
        return Ok(Message::Binary);
    }
    String::from_utf8(data)
        .map(Message::Text)
        .map_err(|_| ReadError::Protocol("a text message that is not UTF-8"))
}

/// A close frame's payload is empty, or a code and a UTF-8 reason.
fn check_close(payload: &[u8]) -> Result<(), ReadError> {
    match payload {
        [] => Ok(()),
        [_] => Err(ReadError::Protocol("a close frame of one byte")),
        [_, _, reason @ ..] => std::str::from_utf8(reason)
            .map(|_| ())
            .map_err(|_| ReadError::Protocol("a close reason that is not UTF-8")),
    }
}
