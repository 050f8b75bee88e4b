//! The wire format boundary for one complete message, and the small helpers
//! every layer needs to read or build messages.
//!
//! [`parse`] turns what peers really send (bare LF line ends, folded and
//! compact headers, several Via elements per line) into rsip values, built
//! directly from the parts `head.rs` cut out (only a Request-URI goes through
//! rsip's parser), and adds the checks RFC 3261 asks of every message;
//! [`normalise`] writes the same accepted message back as canonical text;
//! [`to_bytes`] serialises (see `wire.rs`); [`bad_request_for`] builds the
//! stateless answer to a request that failed. It must not do I/O or cut
//! messages out of a stream (that is [`super::framing`]); its only state is
//! a small per-thread memo of parsed Request-URIs. Every byte here may come
//! from an attacker: no input may panic it.

use std::borrow::Cow;

use rsip::prelude::*;
use rsip::{Header, Headers, Request, Response, StatusCode};

use super::head::{
    classify_start_line, parse_field, split_at_byte, split_field, split_head, tokenize, trim_wsp,
    Start, StartLine,
};
pub use super::head::{declared_content_length, full_header_name, method_from};
use super::wire;

/// Build a response to `req` with the given status: copies every Via, From,
/// To, Call-ID and CSeq (RFC 3261 §8.2.6.2). When `to_tag` is given and the
/// request's To has no tag yet, the tag is added.
pub fn response_for(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut headers = Vec::with_capacity(10);
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) => match to_tag {
                Some(tag) if !contains_ignoring_case(to.value(), ";tag=") => {
                    let mut value = String::with_capacity(to.value().len() + tag.len() + 5);
                    value.push_str(to.value());
                    value.push_str(";tag=");
                    value.push_str(tag);
                    headers.push(Header::To(rsip::headers::To::new(value)));
                }
                _ => headers.push(h.clone()),
            },
            _ => {}
        }
    }
    Response {
        status_code: StatusCode::from(code),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// Whether `haystack` contains `needle`, ASCII case ignored.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Append a header and keep `Content-Length` last and correct: call after
/// setting the body.
pub fn finish(mut headers: Headers, body_len: usize, user_agent: &str) -> Headers {
    headers.retain(|h| !matches!(h, Header::ContentLength(_)));
    headers.push(Header::Server(rsip::headers::Server::new(user_agent)));
    let mut length = String::with_capacity(8);
    push_decimal(&mut length, body_len as u64);
    headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
        length,
    )));
    headers
}

/// Append the decimal digits of `n` to a string.
pub fn push_decimal(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    out.push_str(wire::decimal(n, &mut buf));
}

/// The token of a method as written on the wire (`REGISTER`).
pub fn method_name(method: &rsip::Method) -> &'static str {
    wire::method_name(method)
}

/// Serialise a message for the wire. The body is copied byte for byte
/// (rsip's `Display` would pass it through a lossy UTF-8 conversion).
pub fn to_bytes(msg: &rsip::SipMessage) -> Vec<u8> {
    wire::write_message(msg)
}

/// The standard reason phrase of a status code (RFC 3261 §21 and
/// extensions); a generic one per class for codes without one.
pub fn reason_phrase(code: u16) -> &'static str {
    known_reason(code).unwrap_or(match code {
        100..=199 => "Session Progress",
        200..=299 => "OK",
        300..=399 => "Redirection",
        400..=499 => "Request Failure",
        500..=599 => "Server Failure",
        _ => "Global Failure",
    })
}

fn known_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => return None,
    })
}

/// The `tag` parameter of a From or To header value, if any.
pub fn tag_of(value: &str) -> Option<&str> {
    param_of(value, "tag")
}

/// A `;name=value` parameter of a header value (outside `<...>`), case-insensitive name.
pub fn param_of<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after_uri = match memchr::memrchr(b'>', value.as_bytes()) {
        Some(i) => value.get(i + 1..).unwrap_or_default(),
        None => value,
    };
    let (_, mut rest) = split_at_byte(after_uri, b';')?;
    loop {
        let (p, next) = split_at_byte(rest, b';').map_or((rest, None), |(p, n)| (p, Some(n)));
        let (k, v) = split_at_byte(p, b'=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim());
        }
        rest = next?;
    }
}

/// The URI of a From, To or Contact value: inside `<...>` (a `<` inside the
/// quoted display name does not count), else everything before the first
/// `;` (RFC 3261 §20.10: without brackets, parameters belong to the header).
pub fn uri_of(value: &str) -> &str {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => {
                let inner = value.get(i + 1..).unwrap_or_default();
                return inner.split('>').next().unwrap_or(inner).trim();
            }
            _ => {}
        }
    }
    value.split(';').next().unwrap_or(value).trim()
}

/// The user part of a SIP URI (`sip:1001:pw@pbx.example` → `1001`); `None`
/// without a `sip`/`sips` scheme or a user.
pub fn user_of(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    (!user.is_empty()).then_some(user)
}

/// The value of the first From header. Unlike rsip's `from_header`, builds
/// no error when there is none (those allocate on every call).
pub fn from_value(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::From(v) => Some(v.value()),
        _ => None,
    })
}

/// The value of the first To header (see [`from_value`]).
pub fn to_value(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::To(v) => Some(v.value()),
        _ => None,
    })
}

/// The value of the first Via header (see [`from_value`]).
pub fn via_value(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::Via(v) => Some(v.value()),
        _ => None,
    })
}

/// Call-ID of a message, if present.
pub fn call_id(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::CallId(c) => Some(c.value()),
        _ => None,
    })
}

/// The (sequence number, method) of CSeq, if present and well-formed.
///
/// Read as rsip's typed CSeq reads it (digits up to the first SP, then the
/// method, case and surrounding white space ignored) without its parser.
pub fn cseq(msg: &impl HeadersExt) -> Option<(u32, rsip::Method)> {
    let value = msg.headers().iter().find_map(|h| match h {
        Header::CSeq(c) => Some(c.value()),
        _ => None,
    })?;
    let (seq, method) = value.split_once(' ')?;
    Some((seq.parse().ok()?, method_from(method)?))
}

// ---------------------------------------------------------------------------
// Wire format boundary: normalisation, parsing and the 400 of last resort.
// ---------------------------------------------------------------------------

/// Largest message denwa accepts, header section and body together. A UDP
/// datagram cannot be much larger anyway; TCP framing enforces the same cap.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Why bytes from the network were not accepted as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("no empty line ends the header section")]
    NoEndOfHead,
    #[error("malformed start line")]
    BadStartLine,
    #[error("malformed header line")]
    BadHeaderLine,
    #[error("control character in the header section")]
    ControlCharacter,
    #[error("header section is not UTF-8")]
    NotUtf8,
    #[error("unsupported method {0}")]
    UnknownMethod(String),
    #[error("invalid or conflicting Content-Length")]
    InvalidContentLength,
    #[error("Content-Length declares {declared} bytes but {actual} are present")]
    ContentLengthMismatch { declared: usize, actual: usize },
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("invalid {0} header")]
    InvalidHeader(&'static str),
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    #[error("CSeq method differs from the request method")]
    CSeqMethodMismatch,
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ParseError {
    /// The status code a UAS answers with (RFC 3261 §21): 513 for oversize,
    /// 501 for a method denwa does not know, 400 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::TooLarge { .. } => 513,
            ParseError::UnknownMethod(_) => 501,
            _ => 400,
        }
    }

    /// A reason phrase saying what was wrong. Never contains peer data.
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::Empty => "Empty Message".into(),
            ParseError::TooLarge { .. } => "Message Too Large".into(),
            ParseError::NoEndOfHead => "Incomplete Header Section".into(),
            ParseError::BadStartLine => "Malformed Request-Line".into(),
            ParseError::BadHeaderLine => "Malformed Header Line".into(),
            ParseError::ControlCharacter => "Control Character In Header".into(),
            ParseError::NotUtf8 => "Invalid UTF-8 In Header".into(),
            ParseError::UnknownMethod(_) => "Not Implemented".into(),
            ParseError::InvalidContentLength => "Invalid Content-Length".into(),
            ParseError::ContentLengthMismatch { .. } => "Content-Length Mismatch".into(),
            ParseError::MissingHeader(name) => format!("Missing {name} Header"),
            ParseError::InvalidHeader(name) => format!("Invalid {name} Header"),
            ParseError::DuplicateHeader(name) => format!("Duplicate {name} Header"),
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch".into(),
            ParseError::Malformed(_) => "Bad Request".into(),
        }
    }
}

const CRLF: &[u8] = b"\r\n";

/// Headers a response copies from the request (RFC 3261 §8.2.6.2).
const COPIED_TO_RESPONSE: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];

/// Digest credentials and challenges are hashed as sent: never rewritten.
fn is_digest_header(name: &str) -> bool {
    [
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A header value as rsip gets it: IPv6 literals masked (see
/// [`super::ipv6`]) unless it is a digest header or nothing needs masking.
fn value_for_rsip(name: &str, value: Cow<'_, str>, has_bracket: bool) -> String {
    if !has_bracket || !value.contains('[') || is_digest_header(name) {
        return value.into_owned();
    }
    let mut out = Vec::with_capacity(value.len().saturating_add(32));
    super::ipv6::mask_into(&mut out, value.as_bytes());
    // Masking replaces ASCII with ASCII: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Rewrite a complete message (a datagram, or one framed off a stream) into
/// canonical form: CRLF line endings, folded lines joined, compact names
/// expanded, one Via element per line, canonical start line (`SIP/2.0` upper
/// case, a SP before an empty reason phrase), IPv6 literals masked, the body
/// cut to Content-Length. [`parse`] accepts exactly what this accepts, with
/// the same errors, and more checks of its own.
pub fn normalise(raw: &[u8]) -> Result<Vec<u8>, ParseError> {
    let head = tokenize(raw)?;
    let mut out = Vec::with_capacity(raw.len().saturating_add(256));
    match head.start {
        Start::Request { token, uri, .. } => {
            out.extend_from_slice(token.as_bytes());
            out.push(b' ');
            super::ipv6::mask_into(&mut out, uri.as_bytes());
            out.extend_from_slice(b" SIP/2.0");
        }
        Start::Response { code, reason } => {
            out.extend_from_slice(b"SIP/2.0 ");
            wire::push_decimal(&mut out, u64::from(code));
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
        }
    }
    out.extend_from_slice(CRLF);
    for field in head.fields {
        let value = value_for_rsip(&field.name, field.value, head.has_bracket);
        out.extend_from_slice(field.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(CRLF);
    }
    out.extend_from_slice(CRLF);
    out.extend_from_slice(head.body);
    Ok(out)
}

/// Parse a complete message and check the headers every message needs: Via,
/// From, To, Call-ID, CSeq (RFC 3261 §8.1.1), each but Via at most once, and
/// a request's CSeq method equal to its method.
///
/// The head is cut by `head::tokenize` and the rsip values are built directly
/// from its parts; only the Request-URI goes through rsip's parser.
pub fn parse(raw: &[u8]) -> Result<rsip::SipMessage, ParseError> {
    let head = tokenize(raw)?;
    let has_bracket = head.has_bracket;
    let mut headers = Vec::with_capacity(head.fields.len().saturating_add(4));
    let mut counts = [0usize; 5];
    for field in head.fields {
        if let Some(i) = COPIED_TO_RESPONSE
            .iter()
            .position(|n| n.eq_ignore_ascii_case(&field.name))
        {
            if let Some(count) = counts.get_mut(i) {
                *count = count.saturating_add(1);
            }
        }
        let value = value_for_rsip(&field.name, field.value, has_bracket);
        headers.push(wire::header_from(&field.name, value));
    }
    let headers = Headers::from(headers);
    let body = head.body.to_vec();
    let msg = match head.start {
        Start::Request { method, uri, .. } => rsip::SipMessage::Request(Request {
            method,
            uri: request_uri(uri, has_bracket)?,
            version: rsip::Version::V2,
            headers,
            body,
        }),
        Start::Response { code, reason } => rsip::SipMessage::Response(Response {
            status_code: status_code(code, reason),
            version: rsip::Version::V2,
            headers,
            body,
        }),
    };
    check_mandatory_counts(&counts)?;
    check_header_values(&msg)?;
    Ok(msg)
}

/// The status code as rsip's parser gives it: a known code by itself, an
/// unknown one with its reason phrase.
fn status_code(code: u16, reason: &str) -> StatusCode {
    match StatusCode::from(code) {
        StatusCode::Other(code, _) => StatusCode::Other(code, reason.to_owned()),
        known => known,
    }
}

/// Request-URIs parsed lately on this thread: most requests carry one of
/// a handful (every REGISTER the registrar's), and rsip's URI parser is the
/// costliest part of parsing a message.
const RECENT_URIS: usize = 8;

thread_local! {
    static RECENT: std::cell::RefCell<std::collections::VecDeque<(String, rsip::Uri)>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

/// Parse a Request-URI, or take it from the few parsed lately (the result
/// depends on the text alone).
fn request_uri(uri: &str, has_bracket: bool) -> Result<rsip::Uri, ParseError> {
    let hit = RECENT.with(|recent| {
        recent
            .borrow()
            .iter()
            .find(|(text, _)| text == uri)
            .map(|(_, parsed)| parsed.clone())
    });
    if let Some(parsed) = hit {
        return Ok(parsed);
    }
    let parsed = parse_request_uri(uri, has_bracket)?;
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() >= RECENT_URIS {
            recent.pop_front();
        }
        recent.push_back((uri.to_owned(), parsed.clone()));
    });
    Ok(parsed)
}

/// Parse a Request-URI with rsip (behind `catch_unwind`), masked first. The
/// URI must be consumed whole, as it is when rsip parses a request line.
fn parse_request_uri(uri: &str, has_bracket: bool) -> Result<rsip::Uri, ParseError> {
    const AFTER: &[u8] = b" SIP/2.0";
    let mut line = Vec::with_capacity(uri.len().saturating_add(40));
    if has_bracket {
        super::ipv6::mask_into(&mut line, uri.as_bytes());
    } else {
        line.extend_from_slice(uri.as_bytes());
    }
    line.extend_from_slice(AFTER);
    let parsed = std::panic::catch_unwind(|| {
        let (rest, tokens) = rsip::common::uri::Tokenizer::tokenize(line.as_slice())
            .map_err(|e| ParseError::Malformed(summary(&e.to_string())))?;
        if rest != AFTER {
            return Err(ParseError::Malformed("unparsable Request-URI".into()));
        }
        rsip::Uri::try_from(tokens).map_err(|e| ParseError::Malformed(summary(&e.to_string())))
    });
    parsed.unwrap_or_else(|_| Err(ParseError::Malformed("parser panicked".into())))
}

/// A parser error message short enough to log (it quotes the input).
fn summary(message: &str) -> String {
    message.chars().take(160).collect()
}

/// Each of Via, From, To, Call-ID, CSeq present (counted in the order of
/// [`COPIED_TO_RESPONSE`]), and only Via more than once.
fn check_mandatory_counts(counts: &[usize; 5]) -> Result<(), ParseError> {
    for (name, count) in COPIED_TO_RESPONSE.iter().zip(counts) {
        match count {
            0 => return Err(ParseError::MissingHeader(name)),
            1 => {}
            _ if *name != "Via" => return Err(ParseError::DuplicateHeader(name)),
            _ => {}
        }
    }
    Ok(())
}

/// Light checks on the values other layers rely on. The top Via is only
/// checked for its protocol: rsip's typed Via rejects IPv6 sent-by hosts.
fn check_header_values(msg: &rsip::SipMessage) -> Result<(), ParseError> {
    let via_ok = via_value(msg.headers()).is_some_and(|via| {
        via.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/2.0/"))
    });
    if !via_ok {
        return Err(ParseError::InvalidHeader("Via"));
    }
    if call_id(msg.headers()).is_none_or(|id| id.trim().is_empty()) {
        return Err(ParseError::InvalidHeader("Call-ID"));
    }
    let (_, cseq_method) = cseq(msg).ok_or(ParseError::InvalidHeader("CSeq"))?;
    match msg {
        rsip::SipMessage::Request(req) if req.method != cseq_method => {
            Err(ParseError::CSeqMethodMismatch)
        }
        _ => Ok(()),
    }
}

/// The response to send when `raw` failed to parse with `err`: a status line
/// from [`ParseError::status_code`] and [`ParseError::reason_phrase`], the
/// Via, From, To, Call-ID and CSeq lines copied verbatim (a To without a tag
/// gets one), `Server` and `Content-Length: 0`. `None` when `raw` is not a
/// request, is an ACK (never answered), or has no usable Via.
pub fn bad_request_for(raw: &[u8], err: &ParseError, user_agent: &str) -> Option<Vec<u8>> {
    let raw = raw.get(..MAX_MESSAGE_SIZE).unwrap_or(raw);
    let head = split_head(raw);
    match classify_start_line(head.start_line)? {
        StartLine::Request { method, .. } if !method.eq_ignore_ascii_case("ACK") => {}
        _ => return None,
    }
    let copied = copied_fields(&head.fields);
    if !copied.iter().any(|(name, _)| *name == "Via") {
        return None;
    }
    let status = format!("SIP/2.0 {} {}\r\n", err.status_code(), err.reason_phrase());
    let mut out = status.into_bytes();
    let tag = local_tag(&copied);
    for (name, line) in &copied {
        out.extend_from_slice(trim_wsp(line));
        if *name == "To" && needs_tag(line) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag.as_bytes());
        }
        out.extend_from_slice(CRLF);
    }
    let trailer = format!("Server: {user_agent}\r\nContent-Length: 0\r\n\r\n");
    out.extend_from_slice(trailer.as_bytes());
    Some(out)
}

/// The lines a response copies, in order, with their full names: every Via,
/// the first From, To, Call-ID and CSeq. Lines with bad names or control
/// characters, and Vias with an empty value, are left out.
fn copied_fields<'a>(fields: &'a [Cow<'_, [u8]>]) -> Vec<(&'static str, &'a [u8])> {
    let mut copied: Vec<(&'static str, &[u8])> = Vec::new();
    for line in fields {
        let Ok((name, value)) = parse_field(line) else {
            continue;
        };
        let known = COPIED_TO_RESPONSE
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(name));
        let Some(name) = known else {
            continue;
        };
        let keep = if name == "Via" {
            !value.is_empty()
        } else {
            copied.iter().all(|(n, _)| *n != name)
        };
        if keep {
            copied.push((name, line.as_ref()));
        }
    }
    copied
}

fn needs_tag(to_line: &[u8]) -> bool {
    let value = split_field(to_line).map_or(&b""[..], |(_, value)| value);
    std::str::from_utf8(value).is_ok_and(|value| tag_of(value).is_none())
}

/// A To tag for a stateless error response: derived from the copied lines so
/// that a retransmitted request gets the identical response.
fn local_tag(copied: &[(&str, &[u8])]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (_, line) in copied {
        hasher.update(line);
        hasher.update(CRLF);
    }
    hex::encode(hasher.finalize().get(..8).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::super::head::split_list;
    use super::*;

    #[test]
    fn responses_carry_standard_reason_phrases() {
        let req = rsip::Request::try_from(
            &b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .expect("valid request");
        for (code, line) in [
            (486, "SIP/2.0 486 Busy Here\r\n"),
            (407, "SIP/2.0 407 Proxy Authentication Required\r\n"),
            (499, "SIP/2.0 499 Request Failure\r\n"),
        ] {
            let bytes = to_bytes(&rsip::SipMessage::Response(response_for(&req, code, None)));
            assert!(
                bytes.starts_with(line.as_bytes()),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn uris_and_users_of_name_addrs() {
        for (value, uri, user) in [
            (
                "<sip:1001@pbx.example>;tag=x",
                "sip:1001@pbx.example",
                Some("1001"),
            ),
            (
                "\"A <b>\" <sips:a.b@h;transport=tcp>",
                "sips:a.b@h;transport=tcp",
                Some("a.b"),
            ),
            ("sip:1001:pw@h;tag=1", "sip:1001:pw@h", Some("1001")),
            ("<sip:pbx.example>", "sip:pbx.example", None),
            ("<tel:+123@x>", "tel:+123@x", None),
            ("<sip:@h>", "sip:@h", None),
            ("", "", None),
        ] {
            assert_eq!(uri_of(value), uri, "{value}");
            assert_eq!(user_of(uri_of(value)), user, "{value}");
        }
    }

    #[test]
    fn params_read_as_a_plain_split_would() {
        let reference = |value: &str, name: &str| -> Option<String> {
            let after_uri = value.rfind('>').map_or(value, |i| &value[i + 1..]);
            after_uri.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        for value in [
            "<sip:a@b;tag=in>;tag=out;x",
            "sip:a@b; TAG = t ;;y=1=2",
            "<sip:a@b>",
            "<sip:a@b>;",
            "tag=nothing",
            "",
        ] {
            for name in ["tag", "x", "y", ""] {
                assert_eq!(
                    param_of(value, name).map(str::to_owned),
                    reference(value, name),
                    "{value} {name}"
                );
            }
        }
    }

    #[test]
    fn params_are_read_outside_the_uri() {
        let v = "\"Bob\" <sip:bob@x;tag=wrong>;tag=abc;foo";
        assert_eq!(tag_of(v), Some("abc"));
        assert_eq!(param_of(v, "foo"), Some(""));
        assert_eq!(tag_of("<sip:bob@x>"), None);
    }

    const INVITE: &[u8] = include_bytes!("../../tests/fixtures/sip/invite_sdp.sip");
    const REGISTER: &[u8] = include_bytes!("../../tests/fixtures/sip/register_auth.sip");
    const OK_200: &[u8] = include_bytes!("../../tests/fixtures/sip/ok_200_invite.sip");

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    /// The fixture INVITE with `from` replaced by `to` (which must occur).
    fn invite_with(from: &str, to: &str) -> Vec<u8> {
        let s = text(INVITE);
        assert!(s.contains(from), "fixture lacks {from:?}");
        s.replacen(from, to, 1).into_bytes()
    }

    fn request(msg: rsip::SipMessage) -> Request {
        match msg {
            rsip::SipMessage::Request(req) => req,
            other => panic!("expected a request, got {other}"),
        }
    }

    fn response(msg: rsip::SipMessage) -> Response {
        match msg {
            rsip::SipMessage::Response(resp) => resp,
            other => panic!("expected a response, got {other}"),
        }
    }

    fn vias(headers: &Headers) -> Vec<String> {
        headers
            .iter()
            .filter_map(|h| match h {
                Header::Via(v) => Some(v.value().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn to_bytes_keeps_binary_bodies_and_matches_the_fixtures() {
        for fixture in [INVITE, REGISTER, OK_200] {
            assert_eq!(to_bytes(&parse(fixture).unwrap()), fixture);
        }
        let raw = invite_with("a=sendrecv", "a=sendrec\u{e9}");
        let mut msg = parse(&raw).unwrap();
        let body_end = msg.body().len() - 3;
        msg.body_mut()[body_end] = 0xff;
        let bytes = to_bytes(&msg);
        assert_eq!(
            &bytes[bytes.len() - msg.body().len()..],
            msg.body().as_slice()
        );
        assert_eq!(parse(&bytes), Ok(msg));
    }

    #[test]
    fn fixtures_parse() {
        let invite = request(parse(INVITE).unwrap());
        assert_eq!(invite.method, rsip::Method::Invite);
        assert!(invite.body.starts_with(b"v=0\r\n"));
        let declared = invite.headers.iter().find_map(|h| match h {
            Header::ContentLength(l) => Some(l.value().to_owned()),
            _ => None,
        });
        assert_eq!(declared, Some(invite.body.len().to_string()));

        let register = request(parse(REGISTER).unwrap());
        assert_eq!(register.method, rsip::Method::Register);
        let auth = register.authorization_header().unwrap();
        assert!(auth.value().starts_with("Digest username=\"1002\""));

        let ok = response(parse(OK_200).unwrap());
        assert_eq!(ok.status_code, StatusCode::OK);
        assert_eq!(vias(&ok.headers).len(), 2);
        assert_eq!(cseq(&ok), Some((314159, rsip::Method::Invite)));
    }

    #[test]
    fn normalising_a_well_formed_message_changes_nothing() {
        for fixture in [INVITE, REGISTER, OK_200] {
            assert_eq!(normalise(fixture).unwrap(), fixture);
        }
    }

    #[test]
    fn compact_names_are_expanded_case_insensitively() {
        let raw = "SUBSCRIBE sip:2001@pbx.example.com SIP/2.0\r\n\
            v: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
            F: <sip:1001@pbx.example.com>;tag=1\r\n\
            t: <sip:2001@pbx.example.com>\r\n\
            I: abc@192.0.2.10\r\n\
            CSeq: 1 SUBSCRIBE\r\n\
            m: <sip:1001@192.0.2.10>\r\n\
            k: timer\r\n\
            s: hello\r\n\
            e: gzip\r\n\
            o: presence\r\n\
            r: <sip:3001@pbx.example.com>\r\n\
            b: <sip:1001@pbx.example.com>\r\n\
            u: dialog\r\n\
            X: 1800\r\n\
            c: text/plain\r\n\
            l: 2\r\n\r\nhi";
        let normalised = String::from_utf8(normalise(raw.as_bytes()).unwrap()).unwrap();
        for full in [
            "\r\nVia: ",
            "\r\nFrom: ",
            "\r\nTo: ",
            "\r\nCall-ID: ",
            "\r\nContact: ",
            "\r\nSupported: ",
            "\r\nSubject: ",
            "\r\nContent-Encoding: ",
            "\r\nEvent: ",
            "\r\nRefer-To: ",
            "\r\nReferred-By: ",
            "\r\nAllow-Events: ",
            "\r\nSession-Expires: ",
            "\r\nContent-Type: ",
            "\r\nContent-Length: 2\r\n",
        ] {
            assert!(
                normalised.contains(full),
                "{full:?} missing in {normalised}"
            );
        }
        let req = request(parse(raw.as_bytes()).unwrap());
        assert_eq!(call_id(&req.headers), Some("abc@192.0.2.10"));
        assert!(req.contact_header().is_ok());
        assert_eq!(req.body, b"hi");
    }

    #[test]
    fn full_header_name_leaves_other_names_alone() {
        assert_eq!(full_header_name("V"), "Via");
        assert_eq!(full_header_name("x"), "Session-Expires");
        assert_eq!(full_header_name("Via"), "Via");
        assert_eq!(full_header_name("y"), "y");
        assert_eq!(full_header_name("X-Custom"), "X-Custom");
    }

    #[test]
    fn folded_header_lines_are_unfolded() {
        let raw = invite_with(
            "Supported: replaces, timer\r\n",
            "Supported: replaces,  \r\n \t timer\r\nSubject: call\r\n\tback\r\n   please\r\n",
        );
        let req = request(parse(&raw).unwrap());
        let subject = req.headers.iter().find_map(|h| match h {
            Header::Subject(s) => Some(s.value().to_owned()),
            _ => None,
        });
        assert_eq!(subject.as_deref(), Some("call back please"));
        assert!(text(&normalise(&raw).unwrap()).contains("\r\nSupported: replaces, timer\r\n"));
    }

    #[test]
    fn a_folded_via_keeps_its_branch() {
        let raw = invite_with(
            "Via: SIP/2.0/UDP 192.0.2.10:5060;",
            "Via: SIP/2.0/UDP 192.0.2.10:5060\r\n ;",
        );
        let req = request(parse(&raw).unwrap());
        assert_eq!(
            vias(&req.headers),
            ["SIP/2.0/UDP 192.0.2.10:5060 ;branch=z9hG4bK776asdhds;rport"]
        );
    }

    #[test]
    fn a_continuation_before_any_header_is_refused() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\n Via: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(normalise(raw), Err(ParseError::BadHeaderLine));
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let head_end = text(INVITE).find("\r\n\r\n").unwrap();
        let lf_head = text(INVITE)[..head_end].replace("\r\n", "\n");
        let raw = [lf_head.as_bytes(), b"\n\n", &INVITE[head_end + 4..]].concat();
        assert_eq!(normalise(&raw).unwrap(), INVITE);
        let mixed = text(INVITE).replacen("\r\n", "\n", 3);
        assert_eq!(normalise(mixed.as_bytes()).unwrap(), INVITE);
    }

    #[test]
    fn leading_line_ends_and_space_before_colon_are_tolerated() {
        let raw = [&b"\r\n\r\n"[..], &invite_with("Call-ID:", "Call-ID \t:")].concat();
        assert_eq!(normalise(&raw).unwrap(), INVITE);
    }

    #[test]
    fn start_line_is_written_canonically() {
        let raw = text(OK_200).replacen("SIP/2.0 200 OK", "sip/2.0 200", 1);
        let ok = response(parse(raw.as_bytes()).unwrap());
        assert_eq!(ok.status_code, StatusCode::OK);
        let raw = invite_with("SIP/2.0\r\nVia", "sip/2.0\r\nVia");
        assert!(parse(&raw).is_ok());
    }

    #[test]
    fn malformed_start_lines_are_refused() {
        for line in [
            "INVITE  sip:a@b SIP/2.0",
            "INVITE sip:a@b",
            "INVITE sip:a@b SIP/3.0",
            "IN<VITE sip:a@b SIP/2.0",
            "SIP/2.0 2000 OK",
            "SIP/2.0 099 Odd",
            "HTTP/1.1 200 OK",
        ] {
            let raw = format!("{line}\r\nVia: SIP/2.0/UDP h\r\n\r\n");
            assert_eq!(
                normalise(raw.as_bytes()),
                Err(ParseError::BadStartLine),
                "{line}"
            );
        }
    }

    #[test]
    fn several_via_elements_in_one_line_become_one_via_each() {
        let raw = text(OK_200).replacen(
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.1\r\nVia:",
            "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.1 ,",
            1,
        );
        let ok = response(parse(raw.as_bytes()).unwrap());
        assert_eq!(
            vias(&ok.headers),
            vias(&response(parse(OK_200).unwrap()).headers)
        );
    }

    #[test]
    fn header_names_are_matched_case_insensitively() {
        let raw = text(OK_200)
            .replacen("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.1\r\nVia:",
                "VIA: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.1,", 1)
            .replacen("Content-Length: 201", "content-LENGTH: 202", 1);
        assert_eq!(
            parse(raw.as_bytes()),
            Err(ParseError::ContentLengthMismatch {
                declared: 202,
                actual: 201
            })
        );
        let fixed = raw.replacen("content-LENGTH: 202", "content-LENGTH: 201", 1);
        let ok = response(parse(fixed.as_bytes()).unwrap());
        assert_eq!(vias(&ok.headers).len(), 2);

        let request = String::from_utf8(invite_with("Via:", "vIA:"))
            .unwrap()
            .replacen("Call-ID:", "CALL-id:", 1);
        let truncated = &request.as_bytes()[..request.len() - 1];
        let resp = bad_request(truncated, &parse(truncated).unwrap_err());
        assert_eq!(call_id(&resp.headers), Some("a84b4c76e66710@192.0.2.10"));
        assert_eq!(vias(&resp.headers).len(), 1);
    }

    #[test]
    fn commas_inside_quotes_do_not_split_a_via() {
        let value = b"SIP/2.0/UDP h;x=\"a,\\\"b\", SIP/2.0/TCP k ,, ";
        assert_eq!(
            split_list(value),
            [&b"SIP/2.0/UDP h;x=\"a,\\\"b\""[..], b"SIP/2.0/TCP k"]
        );
    }

    #[test]
    fn content_length_declaring_more_than_present_is_a_mismatch() {
        let raw = &INVITE[..INVITE.len() - 10];
        let declared = INVITE.len() - text(INVITE).find("\r\n\r\n").unwrap() - 4;
        assert_eq!(
            parse(raw),
            Err(ParseError::ContentLengthMismatch {
                declared,
                actual: declared - 10
            })
        );
    }

    #[test]
    fn bytes_beyond_content_length_are_discarded() {
        let raw = [INVITE, b"\r\ntrailing junk"].concat();
        let req = request(parse(&raw).unwrap());
        assert!(req.body.ends_with(b"a=sendrecv\r\n"));
        assert_eq!(normalise(&raw).unwrap(), INVITE);
    }

    #[test]
    fn missing_content_length_means_the_rest_of_the_datagram() {
        let raw = text(INVITE).replace("Content-Length: 237\r\n", "");
        assert_ne!(raw.as_bytes(), INVITE, "fixture Content-Length changed");
        let req = request(parse(raw.as_bytes()).unwrap());
        assert_eq!(req.body.len(), 237);
    }

    #[test]
    fn invalid_or_conflicting_content_length_is_refused() {
        for replacement in [
            "Content-Length: 23x",
            "Content-Length: +237",
            "Content-Length: ",
            "Content-Length: 99999999999999999999999",
            "Content-Length: 237\r\nl: 270",
        ] {
            let raw = invite_with("Content-Length: 237", replacement);
            assert_eq!(
                parse(&raw),
                Err(ParseError::InvalidContentLength),
                "{replacement}"
            );
        }
        let agreeing = invite_with("Content-Length: 237", "Content-Length: 237\r\nl: 237");
        assert!(parse(&agreeing).is_ok());
    }

    #[test]
    fn declared_content_length_reads_full_and_compact_names() {
        assert_eq!(declared_content_length(INVITE), Ok(Some(237)));
        assert_eq!(
            declared_content_length(b"OPTIONS x SIP/2.0\nL:7\n\n"),
            Ok(Some(7))
        );
        assert_eq!(
            declared_content_length(b"OPTIONS x SIP/2.0\r\n\r\n"),
            Ok(None)
        );
        assert_eq!(
            declared_content_length(b"OPTIONS x SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\n"),
            Err(ParseError::InvalidContentLength)
        );
    }

    #[test]
    fn each_missing_mandatory_header_is_named() {
        for (line_start, name) in [
            ("Via:", "Via"),
            ("From:", "From"),
            ("To:", "To"),
            ("Call-ID:", "Call-ID"),
            ("CSeq:", "CSeq"),
        ] {
            let kept: String = text(INVITE)
                .split_inclusive("\r\n")
                .filter(|line| !line.starts_with(line_start))
                .collect();
            assert_eq!(parse(kept.as_bytes()), Err(ParseError::MissingHeader(name)));
        }
    }

    #[test]
    fn a_request_without_max_forwards_is_accepted() {
        let raw = invite_with("Max-Forwards: 70\r\n", "");
        assert!(parse(&raw).is_ok());
    }

    #[test]
    fn duplicate_and_invalid_mandatory_headers_are_refused() {
        let cases = [
            (
                "CSeq: 314159 INVITE",
                "CSeq: 314159 INVITE\r\nCSeq: 314160 INVITE",
                ParseError::DuplicateHeader("CSeq"),
            ),
            (
                "Call-ID: a84b4c76e66710@192.0.2.10",
                "i: other",
                ParseError::DuplicateHeader("Call-ID"),
            ),
            (
                "CSeq: 314159 INVITE",
                "CSeq: many INVITE",
                ParseError::InvalidHeader("CSeq"),
            ),
            (
                "Call-ID: a84b4c76e66710@192.0.2.10",
                "Call-ID:",
                ParseError::InvalidHeader("Call-ID"),
            ),
            (
                "Via: SIP/2.0/UDP",
                "Via: HTTP/1.1/UDP",
                ParseError::InvalidHeader("Via"),
            ),
            (
                "CSeq: 314159 INVITE",
                "CSeq: 314159 BYE",
                ParseError::CSeqMethodMismatch,
            ),
        ];
        for (from, to, expected) in cases {
            let raw = if matches!(expected, ParseError::DuplicateHeader("Call-ID")) {
                invite_with(from, &format!("{from}\r\n{to}"))
            } else {
                invite_with(from, to)
            };
            assert_eq!(parse(&raw), Err(expected), "{to}");
        }
    }

    #[test]
    fn an_ipv6_via_is_accepted() {
        let raw = invite_with("192.0.2.10:5060;branch", "[2001:db8::10]:5060;branch");
        assert!(parse(&raw).is_ok());
    }

    #[test]
    fn unknown_methods_are_reported_by_name() {
        let raw = invite_with("INVITE sip:", "FROBNICATE sip:");
        assert_eq!(
            parse(&raw),
            Err(ParseError::UnknownMethod("FROBNICATE".into()))
        );
    }

    #[test]
    fn control_characters_and_bad_names_are_refused() {
        for (from, to, expected) in [
            (
                "User-Agent: Ex",
                "User-Agent: E\rx",
                ParseError::ControlCharacter,
            ),
            (
                "User-Agent: Ex",
                "User-Agent: E\0x",
                ParseError::ControlCharacter,
            ),
            (
                "INVITE sip:",
                "INVITE\x7fsip:",
                ParseError::ControlCharacter,
            ),
            ("Max-Forwards", "Max Forwards", ParseError::BadHeaderLine),
            ("Max-Forwards:", "Max-Forwards", ParseError::BadHeaderLine),
            ("Max-Forwards", "Max/Forwards", ParseError::BadHeaderLine),
        ] {
            assert_eq!(normalise(&invite_with(from, to)), Err(expected), "{to:?}");
        }
        let not_utf8 = [&INVITE[..30], b"\xff", &INVITE[30..]].concat();
        assert_eq!(normalise(&not_utf8), Err(ParseError::NotUtf8));
        let uri_not_utf8 = [&INVITE[..12], b"\xc3", &INVITE[12..]].concat();
        assert_eq!(normalise(&uri_not_utf8), Err(ParseError::NotUtf8));
    }

    #[test]
    fn empty_oversize_and_headless_input_is_refused() {
        assert_eq!(normalise(b""), Err(ParseError::Empty));
        assert_eq!(normalise(b"\r\n\r\n"), Err(ParseError::Empty));
        let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert_eq!(
            normalise(&big),
            Err(ParseError::TooLarge {
                size: MAX_MESSAGE_SIZE + 1,
                max: MAX_MESSAGE_SIZE
            })
        );
        let head_end = text(INVITE).find("\r\n\r\n").unwrap();
        assert_eq!(
            normalise(&INVITE[..head_end + 2]),
            Err(ParseError::NoEndOfHead)
        );
    }

    fn bad_request(raw: &[u8], err: &ParseError) -> Response {
        let bytes = bad_request_for(raw, err, "denwa-test").expect("an answer");
        response(parse(&bytes).expect("the answer parses"))
    }

    #[test]
    fn bad_request_copies_the_transaction_headers() {
        let raw = &INVITE[..INVITE.len() - 1];
        let err = parse(raw).unwrap_err();
        let resp = bad_request(raw, &err);
        let original = request(parse(INVITE).unwrap());
        assert_eq!(resp.status_code, StatusCode::from(400));
        assert_eq!(vias(&resp.headers), vias(&original.headers));
        assert_eq!(call_id(&resp.headers), call_id(&original.headers));
        assert_eq!(cseq(&resp), cseq(&original));
        assert_eq!(resp.from_header().unwrap(), original.from_header().unwrap());
        let to_tag = tag_of(resp.to_header().unwrap().value()).map(str::to_owned);
        assert!(to_tag.is_some_and(|t| t.len() == 16));
        assert!(resp.body.is_empty());
    }

    #[test]
    fn bad_request_reason_phrase_says_what_was_wrong() {
        let raw = &INVITE[..INVITE.len() - 1];
        let bytes = bad_request_for(raw, &parse(raw).unwrap_err(), "denwa").unwrap();
        let text = text(&bytes);
        assert!(
            text.starts_with("SIP/2.0 400 Content-Length Mismatch\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Server: denwa\r\nContent-Length: 0\r\n\r\n"));
        let unknown = invite_with("INVITE sip:", "FROB sip:");
        let bytes = bad_request_for(&unknown, &parse(&unknown).unwrap_err(), "d").unwrap();
        assert!(text_starts(&bytes, "SIP/2.0 501 Not Implemented\r\n"));
    }

    fn text_starts(bytes: &[u8], prefix: &str) -> bool {
        bytes.starts_with(prefix.as_bytes())
    }

    #[test]
    fn bad_request_copies_compact_and_multi_value_lines_verbatim() {
        let raw = "OPTIONS sip:pbx.example.com SIP/2.0\n\
            v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKb\n\
            f: <sip:1001@pbx.example.com>;tag=9\n\
            t: <sip:pbx.example.com>;tag=known\n\
            i: xyz\n\
            CSeq: 5 OPTIONS\n\
            l: 10\n\nshort";
        let err = parse(raw.as_bytes()).unwrap_err();
        let bytes = bad_request_for(raw.as_bytes(), &err, "d").unwrap();
        let head = text(&bytes);
        assert!(head.contains("\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa, SIP/2.0/UDP"));
        assert!(
            head.contains("\r\nt: <sip:pbx.example.com>;tag=known\r\n"),
            "{head}"
        );
        let resp = bad_request(raw.as_bytes(), &err);
        assert_eq!(vias(&resp.headers).len(), 2);
        assert_eq!(cseq(&resp), Some((5, rsip::Method::Options)));
    }

    #[test]
    fn bad_request_tag_is_stable_for_a_retransmission() {
        let raw = &INVITE[..INVITE.len() - 3];
        let err = parse(raw).unwrap_err();
        assert_eq!(
            bad_request_for(raw, &err, "d"),
            bad_request_for(raw, &err, "d")
        );
    }

    #[test]
    fn no_bad_request_for_responses_acks_or_requests_without_via() {
        let err = ParseError::Malformed("test".into());
        assert_eq!(bad_request_for(OK_200, &err, "d"), None);
        let ack = invite_with("INVITE sip:", "ACK sip:");
        assert_eq!(bad_request_for(&ack, &err, "d"), None);
        let no_via = invite_with("Via: ", "X-Via: ");
        assert_eq!(bad_request_for(&no_via, &err, "d"), None);
        let empty_via = invite_with(
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport",
            "Via:",
        );
        assert_eq!(bad_request_for(&empty_via, &err, "d"), None);
        assert_eq!(bad_request_for(b"garbage\r\n\r\n", &err, "d"), None);
        assert_eq!(bad_request_for(b"", &ParseError::Empty, "d"), None);
    }

    #[test]
    fn oversize_requests_get_513() {
        let raw = invite_with("a=sendrecv", &"a=x\r\n".repeat(MAX_MESSAGE_SIZE / 5));
        let err = parse(&raw).unwrap_err();
        assert!(matches!(err, ParseError::TooLarge { .. }));
        let resp = bad_request(&raw, &err);
        assert_eq!(resp.status_code, StatusCode::from(513));
    }
}
