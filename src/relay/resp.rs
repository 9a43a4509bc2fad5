//! RESP2, the protocol Redis speaks: commands out, replies (and pub/sub pushes) in. Only
//! what the relay uses.

use bytes::{Buf, BytesMut};

/// Longest bulk string taken from the server: above any message the relay publishes
/// (frames are bounded by `realtime.max_message_bytes` and the like), so that a confused
/// peer cannot make a node allocate without bound.
const MAX_BULK_BYTES: usize = 64 * 1024 * 1024;
/// Most elements of one array reply (a `SUBSCRIBE` confirmation has three).
const MAX_ARRAY_LEN: usize = 1024;

/// A reply, or a push of a subscribed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("redis protocol: {0}")]
pub struct ProtocolError(&'static str);

/// Appends a command (its name and arguments, each a bulk string) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Takes the first complete reply off `buf`; None while it is incomplete.
pub fn take(buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    match parse(buf, 0)? {
        Some((reply, used)) => {
            buf.advance(used);
            Ok(Some(reply))
        }
        None => Ok(None),
    }
}

/// The reply starting at `at`, and where it ends.
fn parse(buf: &[u8], at: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some((kind, line, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Integer(number(line)?), next))),
        b'$' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| ProtocolError("bad length"))?;
            if len > MAX_BULK_BYTES {
                return Err(ProtocolError("bulk string too long"));
            }
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not ended by CRLF"));
            }
            let data = buf[next..next + len].to_vec();
            Ok(Some((Reply::Bulk(Some(data)), next + len + 2)))
        }
        b'*' => {
            let len = number(line)?;
            if len < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| ProtocolError("bad length"))?;
            if len > MAX_ARRAY_LEN {
                return Err(ProtocolError("array too long"));
            }
            let mut items = Vec::with_capacity(len);
            let mut at = next;
            for _ in 0..len {
                let Some((item, end)) = parse(buf, at)? else {
                    return Ok(None);
                };
                items.push(item);
                at = end;
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(ProtocolError("unknown reply type")),
    }
}

/// A line of a reply: its type byte, the rest of it, and where the next line begins.
type Line<'a> = (u8, &'a [u8], usize);

/// The line starting at `at`.
fn line(buf: &[u8], at: usize) -> Result<Option<Line<'_>>, ProtocolError> {
    let Some(rest) = buf.get(at..) else {
        return Ok(None);
    };
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        // A line is short (a type, a number or a status): a long one is not RESP.
        return if rest.len() > 1024 {
            Err(ProtocolError("line too long"))
        } else {
            Ok(None)
        };
    };
    if end == 0 {
        return Err(ProtocolError("empty line"));
    }
    Ok(Some((rest[0], &rest[1..end], at + end + 2)))
}

fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ProtocolError("bad number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"room", b"hi\r\n"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$4\r\nhi\r\n\r\n"
        );
    }

    #[test]
    fn replies_are_taken_whole_and_one_at_a_time() {
        let mut buf = BytesMut::from(
            &b"+OK\r\n:3\r\n-ERR no\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n$-1\r\n"[..],
        );
        assert_eq!(take(&mut buf), Ok(Some(Reply::Simple("OK".into()))));
        assert_eq!(take(&mut buf), Ok(Some(Reply::Integer(3))));
        assert_eq!(take(&mut buf), Ok(Some(Reply::Error("ERR no".into()))));
        assert_eq!(
            take(&mut buf),
            Ok(Some(Reply::Array(Some(vec![
                Reply::Bulk(Some(b"message".to_vec())),
                Reply::Bulk(Some(b"ch".to_vec())),
                Reply::Bulk(Some(Vec::new())),
            ]))))
        );
        assert_eq!(take(&mut buf), Ok(Some(Reply::Bulk(None))));
        assert!(buf.is_empty());
        assert_eq!(take(&mut buf), Ok(None));
    }

    #[test]
    fn an_incomplete_reply_waits_for_the_rest() {
        let whole = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(take(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing taken from an incomplete reply");
        }
        let mut buf = BytesMut::from(&whole[..]);
        assert!(matches!(take(&mut buf), Ok(Some(Reply::Array(Some(_))))));
    }

    #[test]
    fn garbage_is_an_error_not_a_wait() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"$3\r\nabcde",
            b"\r\n",
            &[b'+'; 2000],
        ] {
            assert!(take(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
        let huge = format!("${}\r\n", MAX_BULK_BYTES + 1);
        assert!(take(&mut BytesMut::from(huge.as_bytes())).is_err());
    }
}
