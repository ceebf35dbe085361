//! TCP transport (RFC 3261 §18.3): messages on a stream are framed by
//! Content-Length. [`Framer`] is the pure part: bytes in, whole messages
//! out; a framing error closes that connection only.

use crate::sip::msg::MAX_MESSAGE_SIZE;

/// Errors framing a SIP stream; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A message (headers + body) larger than 64 KiB.
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    /// Content-Length missing a number, negative or repeated differently.
    #[error("bad Content-Length")]
    BadContentLength,
}

/// Accumulates stream bytes and cuts whole SIP messages (pipelining and
/// partial reads handled).
#[derive(Debug, Default)]
pub struct Framer {
    /// Bytes received and not yet framed.
    buf: Vec<u8>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    /// CRLF keep-alives between messages (RFC 5626 §3.5.1) are skipped.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let skip = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        self.buf.drain(..skip);
        let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > MAX_MESSAGE_SIZE {
                return Err(FrameError::TooLarge);
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(self.buf.get(..head_end).unwrap_or_default()).to_string();
        let len = content_length(&head)?;
        let total = head_end + 4 + len;
        if total > MAX_MESSAGE_SIZE {
            return Err(FrameError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        Ok(Some(msg))
    }
}

/// Content-Length of a header block (0 when absent, as for a bodiless
/// request; any malformed value is an error).
fn content_length(head: &str) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let v = value.trim();
            if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FrameError::BadContentLength);
            }
            let n: usize = v.parse().map_err(|_| FrameError::BadContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(FrameError::BadContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";
    const B: &[u8] = b"BYE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";

    #[test]
    fn frames_pipelined_and_partial_messages() {
        let mut f = Framer::new();
        let mut all = b"\r\n\r\n".to_vec();
        all.extend_from_slice(A);
        all.extend_from_slice(B);
        let (first, second) = all.split_at(30);
        f.push(first);
        assert_eq!(f.next_message(), Ok(None));
        f.push(second);
        assert_eq!(f.next_message().unwrap().as_deref(), Some(A));
        assert_eq!(f.next_message().unwrap().as_deref(), Some(B));
        assert_eq!(f.next_message(), Ok(None));
    }

    #[test]
    fn rejects_bad_length_and_oversize() {
        let mut f = Framer::new();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::BadContentLength));
        let mut f = Framer::new();
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        let mut f = Framer::new();
        f.push(&vec![b'a'; MAX_MESSAGE_SIZE + 1]);
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
    }
}
