//! Framing of SIP over stream transports (RFC 3261 §18.3): cutting a TCP byte
//! stream into whole messages by their Content-Length, and recognising the
//! double-CRLF keep-alive ping of RFC 5626 §3.5.1.
//!
//! This module owns message boundaries only. It must not judge a message
//! beyond finding the end of its header section and its Content-Length: that
//! is [`super::message`]'s job. It does no I/O; the connection task pushes
//! the bytes it reads and pulls frames out. After any [`FramingError`] the
//! stream can no longer be trusted and the caller closes the connection.

use bytes::{Buf, BytesMut};

use super::message::{declared_content_length, MAX_MESSAGE_SIZE};

/// Largest header section (start line included) accepted on a stream.
pub const MAX_HEAD_SIZE: usize = 16 * 1024;

/// Largest body accepted on a stream; head and body together stay within
/// [`MAX_MESSAGE_SIZE`].
pub const MAX_BODY_SIZE: usize = MAX_MESSAGE_SIZE - MAX_HEAD_SIZE;

/// The RFC 5626 keep-alive ping; the answer (pong) is a single CRLF.
const PING: &[u8] = b"\r\n\r\n";

/// What the stream delivered next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message: header section and exactly Content-Length bytes.
    Message(Vec<u8>),
    /// A double-CRLF ping: answer with a single CRLF.
    KeepAlive,
}

/// Why the stream cannot be framed; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("{part} of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        part: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("invalid or conflicting Content-Length")]
    InvalidContentLength,
}

/// Cuts one stream connection's bytes into frames.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    /// How far the search for the end of the head has looked.
    scanned: usize,
    /// Head and body length of the message being received, once known.
    pending: Option<(usize, usize)>,
    /// The first error; every later call repeats it.
    failed: Option<FramingError>,
    max_head: usize,
    max_body: usize,
}

/// Outcome of looking at line ends before a start line.
enum Leading {
    KeepAlive,
    NeedMore,
    StartLine,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// A framer with the default limits ([`MAX_HEAD_SIZE`], [`MAX_BODY_SIZE`]).
    pub fn new() -> Self {
        Self::with_limits(MAX_HEAD_SIZE, MAX_BODY_SIZE)
    }

    /// A framer with explicit limits on the head and the body.
    pub fn with_limits(max_head: usize, max_body: usize) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            scanned: 0,
            pending: None,
            failed: None,
            max_head,
            max_body,
        }
    }

    /// Append bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, `Ok(None)` while more bytes are needed. Call until it
    /// returns `Ok(None)` after every [`push`](Self::push).
    pub fn next_message(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let frame = self.next_frame();
        if let Err(err) = &frame {
            self.failed = Some(err.clone());
        }
        frame
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        let (head_len, body_len) = match self.pending {
            Some(lengths) => lengths,
            None => {
                match self.skip_leading_line_ends() {
                    Leading::KeepAlive => return Ok(Some(Frame::KeepAlive)),
                    Leading::NeedMore => return Ok(None),
                    Leading::StartLine => {}
                }
                let Some(head_len) = self.find_head_end()? else {
                    return Ok(None);
                };
                let lengths = (head_len, self.body_len(head_len)?);
                self.pending = Some(lengths);
                lengths
            }
        };
        let total = head_len.saturating_add(body_len);
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).to_vec())))
    }

    /// Drop CR and LF bytes before a start line (RFC 3261 §7.5); a ping at
    /// the front is consumed and reported.
    fn skip_leading_line_ends(&mut self) -> Leading {
        let mut skip = 0;
        let outcome = loop {
            let rest = self.buf.get(skip..).unwrap_or_default();
            match rest.first() {
                None => break Leading::NeedMore,
                Some(b'\r' | b'\n') => {}
                Some(_) => break Leading::StartLine,
            }
            if rest.starts_with(PING) {
                skip = skip.saturating_add(PING.len());
                break Leading::KeepAlive;
            }
            if PING.starts_with(rest) {
                break Leading::NeedMore;
            }
            skip = skip.saturating_add(1);
        };
        self.buf.advance(skip.min(self.buf.len()));
        outcome
    }

    /// Length of the head including its empty line, once it has arrived. A
    /// head ends at an empty line; bare LF line ends are tolerated.
    fn find_head_end(&mut self) -> Result<Option<usize>, FramingError> {
        let from = self.scanned.saturating_sub(2);
        let window = self.buf.get(from..).unwrap_or_default();
        let end = window.iter().enumerate().find_map(|(i, b)| {
            let after = window.get(i.saturating_add(1)..).unwrap_or_default();
            match (b, after) {
                (b'\n', [b'\n', ..]) => Some(i.saturating_add(2)),
                (b'\n', [b'\r', b'\n', ..]) => Some(i.saturating_add(3)),
                _ => None,
            }
        });
        let too_large = |size| FramingError::TooLarge {
            part: "header section",
            size,
            limit: self.max_head,
        };
        match end.map(|end| end.saturating_add(from)) {
            Some(end) if end > self.max_head => Err(too_large(end)),
            Some(end) => Ok(Some(end)),
            None if self.buf.len() > self.max_head => Err(too_large(self.buf.len())),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    /// The declared body length; a stream message without Content-Length
    /// has no body.
    fn body_len(&self, head_len: usize) -> Result<usize, FramingError> {
        let head = self.buf.get(..head_len).unwrap_or_default();
        let declared = declared_content_length(head)
            .map_err(|_| FramingError::InvalidContentLength)?
            .unwrap_or(0);
        if declared > self.max_body {
            return Err(FramingError::TooLarge {
                part: "body",
                size: declared,
                limit: self.max_body,
            });
        }
        Ok(declared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const INVITE: &[u8] = include_bytes!("../../tests/fixtures/sip/invite_sdp.sip");
    const REGISTER: &[u8] = include_bytes!("../../tests/fixtures/sip/register_auth.sip");
    const OK_200: &[u8] = include_bytes!("../../tests/fixtures/sip/ok_200_invite.sip");

    /// Push everything, then drain all frames.
    fn frames(framer: &mut StreamFramer) -> Result<Vec<Frame>, FramingError> {
        let mut out = Vec::new();
        while let Some(frame) = framer.next_message()? {
            out.push(frame);
        }
        Ok(out)
    }

    fn message(bytes: &[u8]) -> Frame {
        Frame::Message(bytes.to_vec())
    }

    #[test]
    fn a_whole_message_is_one_frame() {
        let mut framer = StreamFramer::new();
        framer.push(INVITE);
        assert_eq!(frames(&mut framer), Ok(vec![message(INVITE)]));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn a_message_split_at_every_offset_is_reassembled() {
        for fixture in [INVITE, REGISTER, OK_200] {
            for cut in 0..=fixture.len() {
                let (a, b) = fixture.split_at(cut);
                let mut framer = StreamFramer::new();
                framer.push(a);
                let early = frames(&mut framer).unwrap();
                framer.push(b);
                let late = frames(&mut framer).unwrap();
                let all: Vec<Frame> = early.into_iter().chain(late).collect();
                assert_eq!(all, vec![message(fixture)], "cut at {cut}");
            }
        }
    }

    #[test]
    fn nothing_is_delivered_before_the_body_is_complete() {
        let mut framer = StreamFramer::new();
        framer.push(&INVITE[..INVITE.len() - 1]);
        assert_eq!(framer.next_message(), Ok(None));
        framer.push(&INVITE[INVITE.len() - 1..]);
        assert_eq!(framer.next_message(), Ok(Some(message(INVITE))));
    }

    #[test]
    fn two_messages_in_one_push_are_two_frames() {
        let mut framer = StreamFramer::new();
        framer.push(&[INVITE, REGISTER].concat());
        assert_eq!(
            frames(&mut framer),
            Ok(vec![message(INVITE), message(REGISTER)])
        );
    }

    #[test]
    fn random_chunking_of_a_stream_with_pings_keeps_order() {
        let stream = [PING, INVITE, b"\r\n", REGISTER, PING, PING, OK_200].concat();
        let expected = vec![
            Frame::KeepAlive,
            message(INVITE),
            message(REGISTER),
            Frame::KeepAlive,
            Frame::KeepAlive,
            message(OK_200),
        ];
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..200 {
            let mut framer = StreamFramer::new();
            let mut got = Vec::new();
            let mut rest: &[u8] = &stream;
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len().min(97));
                let (chunk, tail) = rest.split_at(n);
                framer.push(chunk);
                got.extend(frames(&mut framer).unwrap());
                rest = tail;
            }
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn keep_alive_ping_is_reported_and_a_lone_crlf_is_skipped() {
        let mut framer = StreamFramer::new();
        framer.push(b"\r\n\r");
        assert_eq!(framer.next_message(), Ok(None), "ping not complete yet");
        framer.push(b"\n");
        assert_eq!(framer.next_message(), Ok(Some(Frame::KeepAlive)));
        framer.push(b"\r\n");
        framer.push(OK_200);
        assert_eq!(frames(&mut framer), Ok(vec![message(OK_200)]));
    }

    #[test]
    fn missing_content_length_on_a_stream_means_no_body() {
        let head = b"OPTIONS sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        let mut framer = StreamFramer::new();
        framer.push(&[&head[..], b"OPTIONS"].concat());
        assert_eq!(framer.next_message(), Ok(Some(message(head))));
        assert_eq!(framer.next_message(), Ok(None));
        assert_eq!(framer.buffered(), 7);
    }

    #[test]
    fn compact_and_lower_case_content_length_and_lf_only_heads_are_read() {
        let first: &[u8] = b"MESSAGE sip:a@b SIP/2.0\nl: 5\n\nhello";
        let second: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\ncontent-length:  3 \r\n\r\nabc";
        let mut framer = StreamFramer::new();
        framer.push(&[first, second].concat());
        assert_eq!(
            frames(&mut framer),
            Ok(vec![message(first), message(second)])
        );
    }

    #[test]
    fn unparsable_or_conflicting_content_length_is_an_error_that_sticks() {
        for bad in [
            &b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 12x\r\n\r\n"[..],
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab",
        ] {
            let mut framer = StreamFramer::new();
            framer.push(bad);
            assert_eq!(
                framer.next_message(),
                Err(FramingError::InvalidContentLength)
            );
            framer.push(OK_200);
            assert_eq!(
                framer.next_message(),
                Err(FramingError::InvalidContentLength)
            );
        }
    }

    #[test]
    fn oversize_head_is_refused_even_without_its_end() {
        let mut framer = StreamFramer::with_limits(64, 64);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nSubject: ");
        assert_eq!(framer.next_message(), Ok(None));
        framer.push(&[b'x'; 64]);
        assert!(matches!(
            framer.next_message(),
            Err(FramingError::TooLarge {
                part: "header section",
                limit: 64,
                ..
            })
        ));
    }

    #[test]
    fn oversize_body_is_refused_before_it_arrives() {
        let mut framer = StreamFramer::new();
        let declared = MAX_BODY_SIZE + 1;
        framer.push(
            format!("INVITE sip:a@b SIP/2.0\r\nContent-Length: {declared}\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            framer.next_message(),
            Err(FramingError::TooLarge {
                part: "body",
                size: declared,
                limit: MAX_BODY_SIZE
            })
        );
    }

    #[test]
    fn a_long_run_of_line_ends_is_consumed_without_messages() {
        let mut framer = StreamFramer::new();
        framer.push(&b"\n".repeat(100_000));
        assert_eq!(framer.next_message(), Ok(None));
        assert_eq!(framer.buffered(), 0);
        framer.push(&b"\r\n\r\n".repeat(1000));
        assert_eq!(frames(&mut framer).map(|f| f.len()), Ok(1000));
    }
}
