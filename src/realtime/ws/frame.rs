//! WebSocket frame headers (RFC 6455, section 5.2): parsing a client's, writing the server's.

/// Frame opcodes.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The longest header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER_BYTES: usize = 14;
/// Largest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    pub payload_len: usize,
    /// Bytes the header took.
    pub header_len: usize,
}

/// Why a client's frame is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Over the size limit (close 1009).
    TooBig,
    /// A frame no client may send (close 1002): what is wrong with it.
    Protocol(&'static str),
}

/// Parses the header at the start of `buf`: `None` until enough bytes are there. Frames over
/// `max_payload` are refused before their payload is read.
pub fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let opcode = first & 0x0F;
    if !matches!(
        opcode,
        opcode::CONTINUATION
            | opcode::TEXT
            | opcode::BINARY
            | opcode::CLOSE
            | opcode::PING
            | opcode::PONG
    ) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (len, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut len = [0; 8];
                len.copy_from_slice(bytes);
                (u64::from_be_bytes(len), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let fin = first & 0x80 != 0;
    let control = opcode & 0x8 != 0;
    if control && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::Protocol(
            "control frames must be whole and short",
        ));
    }
    let payload_len = usize::try_from(len).map_err(|_| FrameError::TooBig)?;
    if payload_len > max_payload {
        return Err(FrameError::TooBig);
    }
    let Some(key) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [key[0], key[1], key[2], key[3]];
    at += 4;
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        payload_len,
        header_len: at,
    }))
}

/// Unmasks a client frame's payload in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// A server frame's header (final, unmasked) for a payload of `len` bytes.
pub fn server_header(opcode: u8, len: usize) -> ([u8; MAX_HEADER_BYTES], usize) {
    let mut header = [0; MAX_HEADER_BYTES];
    header[0] = 0x80 | opcode;
    let used = if len < 126 {
        header[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (header, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a client would send it.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        let mut masked = payload.to_vec();
        unmask(&mut masked, mask);
        frame.extend_from_slice(&masked);
        frame
    }

    #[test]
    fn client_frames_parse_at_every_length_form() {
        let mask = [1, 2, 3, 4];
        for len in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = client_frame(0x81, &payload, mask);
            // Too short: wait for more, whatever the cut.
            for cut in 0..14.min(frame.len() - len) {
                assert_eq!(
                    parse_header(&frame[..cut], 1 << 20),
                    Ok(None),
                    "{len} {cut}"
                );
            }
            let header = parse_header(&frame, 1 << 20).unwrap().unwrap();
            assert_eq!((header.fin, header.opcode), (true, opcode::TEXT));
            assert_eq!(header.payload_len, len);
            assert_eq!(header.header_len + len, frame.len());
            let mut body = frame[header.header_len..].to_vec();
            unmask(&mut body, header.mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn frames_no_client_may_send_are_refused() {
        let mask = [9, 9, 9, 9];
        let refused = |frame: &[u8]| parse_header(frame, 1000).unwrap_err();
        assert_eq!(
            refused(&client_frame(0x81, &[0; 1001], mask)),
            FrameError::TooBig
        );
        assert!(matches!(
            refused(&client_frame(0xC1, b"x", mask)),
            FrameError::Protocol(_)
        ));
        assert!(matches!(
            refused(&client_frame(0x83, b"x", mask)),
            FrameError::Protocol(_)
        ));
        // A fragmented or long control frame.
        assert!(matches!(
            refused(&client_frame(0x09, b"x", mask)),
            FrameError::Protocol(_)
        ));
        assert!(matches!(
            refused(&client_frame(0x89, &[0; 126], mask)),
            FrameError::Protocol(_)
        ));
        // Unmasked.
        assert!(matches!(
            refused(&[0x81, 0x01, b'x']),
            FrameError::Protocol(_)
        ));
        // A length past what a usize holds is too big, not a crash.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&mask);
        assert_eq!(refused(&huge), FrameError::TooBig);
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        assert_eq!(server_header(opcode::TEXT, 5).0[..2], [0x81, 5]);
        let (header, used) = server_header(opcode::TEXT, 300);
        assert_eq!((&header[..used], used), (&[0x81, 126, 1, 44][..], 4));
        let (header, used) = server_header(opcode::BINARY, 70_000);
        assert_eq!(used, 10);
        assert_eq!(header[..2], [0x82, 127]);
        assert_eq!(
            u64::from_be_bytes(header[2..10].try_into().unwrap()),
            70_000
        );
    }
}
