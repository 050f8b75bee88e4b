//! The one place denwa touches rsip: parsing (after normalisation) and the
//! small helpers every layer needs to read or build messages.
//!
//! This module owns the wire format boundary for one complete message:
//! [`normalise`] turns what peers really send (bare LF line ends, folded and
//! compact headers, several Via elements per line) into what rsip parses,
//! [`parse`] adds the checks RFC 3261 asks of every message, and
//! [`bad_request_for`] builds the stateless answer to a request that failed.
//! It must not do I/O, keep state, or cut messages out of a stream (that is
//! [`super::framing`]). Every byte here may come from an attacker: no input
//! may panic it.

use rsip::prelude::*;
use rsip::{Header, Headers, Request, Response, StatusCode};

/// Build a response to `req` with the given status: copies every Via, From,
/// To, Call-ID and CSeq (RFC 3261 §8.2.6.2). When `to_tag` is given and the
/// request's To has no tag yet, the tag is added.
pub fn response_for(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) => {
                let has_tag = to.value().to_ascii_lowercase().contains(";tag=");
                match (to_tag, has_tag) {
                    (Some(tag), false) => headers.push(Header::To(rsip::headers::To::new(
                        format!("{};tag={}", to.value(), tag),
                    ))),
                    _ => headers.push(h.clone()),
                }
            }
            _ => {}
        }
    }
    Response {
        status_code: StatusCode::from(code),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// Append a header and keep `Content-Length` last and correct: call after
/// setting the body.
pub fn finish(mut headers: Headers, body_len: usize, user_agent: &str) -> Headers {
    headers.retain(|h| !matches!(h, Header::ContentLength(_)));
    headers.push(Header::Server(rsip::headers::Server::new(user_agent)));
    headers.push(Header::ContentLength(rsip::headers::ContentLength::from(
        body_len as u32,
    )));
    headers
}

/// Serialise a message for the wire. The body is copied byte for byte
/// (rsip's `Display` would pass it through a lossy UTF-8 conversion).
pub fn to_bytes(msg: &rsip::SipMessage) -> Vec<u8> {
    let (head, body) = match msg {
        rsip::SipMessage::Request(r) => (
            format!("{} {} {}\r\n{}\r\n", r.method, r.uri, r.version, r.headers),
            &r.body,
        ),
        rsip::SipMessage::Response(r) => {
            let code = r.status_code.code();
            let reason = match &r.status_code {
                rsip::StatusCode::Other(_, reason) if reason != "Other" => reason.as_str(),
                _ => reason_phrase(code),
            };
            (
                format!("{} {code} {reason}\r\n{}\r\n", r.version, r.headers),
                &r.body,
            )
        }
    };
    let mut out = super::ipv6::unmask(&head).into_owned().into_bytes();
    out.extend_from_slice(body);
    out
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
    let after_uri = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
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
pub fn cseq(msg: &impl HeadersExt) -> Option<(u32, rsip::Method)> {
    let c = msg.cseq_header().ok()?.typed().ok()?;
    Some((c.seq, c.method))
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

/// Compact header names (RFC 3261 §7.3.3, RFC 3265, RFC 3515, RFC 3892,
/// RFC 4028) and the full names they stand for.
const COMPACT_FORMS: [(&str, &str); 15] = [
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
];

/// Headers a response copies from the request (RFC 3261 §8.2.6.2).
const COPIED_TO_RESPONSE: [&str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];

/// The full header name for a compact one (case-insensitive); any other name
/// comes back unchanged.
pub fn full_header_name(name: &str) -> &str {
    COMPACT_FORMS
        .iter()
        .find(|(compact, _)| compact.eq_ignore_ascii_case(name))
        .map_or(name, |(_, full)| full)
}

/// RFC 3261 `token` characters (§25.1).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Control characters other than HT are not allowed anywhere in a head.
fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_wsp(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_wsp(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// A message split into lines, before any judgement on their content.
struct RawHead<'a> {
    start_line: &'a [u8],
    /// Header field lines, folded continuations joined with a single SP
    /// (RFC 3261 §7.3.1).
    fields: Vec<Vec<u8>>,
    /// What follows the empty line; `None` when the input has no empty line.
    body: Option<&'a [u8]>,
    /// A continuation line came before any header field.
    stray_continuation: bool,
}

/// The next line (LF or CRLF terminated; the CR is dropped) and what follows
/// it, `None` when the line has no terminator.
fn next_line(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut parts = rest.splitn(2, |b| *b == b'\n');
    let line = parts.next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (line, parts.next())
}

/// Split the head into lines, tolerating bare LF line endings and ignoring
/// line ends before the start line (RFC 3261 §7.5). Never fails.
fn split_head(raw: &[u8]) -> RawHead<'_> {
    let leading = raw
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let mut rest = raw.get(leading..).unwrap_or_default();
    let mut head = RawHead {
        start_line: &[],
        fields: Vec::new(),
        body: None,
        stray_continuation: false,
    };
    let mut first = true;
    loop {
        let (line, after) = next_line(rest);
        if first {
            head.start_line = line;
            first = false;
        } else if line.is_empty() {
            head.body = after;
            break;
        } else if line.first().is_some_and(|b| is_wsp(*b)) {
            match head.fields.last_mut() {
                Some(field) => unfold_into(field, line),
                None => head.stray_continuation = true,
            }
        } else {
            head.fields.push(line.to_vec());
        }
        match after {
            Some(after) => rest = after,
            None => break,
        }
    }
    head
}

/// Append a continuation line: the line break and surrounding white space
/// become one SP.
fn unfold_into(field: &mut Vec<u8>, continuation: &[u8]) {
    while field.last().is_some_and(|b| is_wsp(*b)) {
        field.pop();
    }
    field.push(b' ');
    field.extend_from_slice(trim_wsp(continuation));
}

/// `name: value` split at the first colon, both trimmed. No validation.
fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|b| *b == b':')?;
    let (name, value) = line.split_at_checked(colon)?;
    Some((trim_wsp(name), trim_wsp(value.get(1..)?)))
}

/// A validated header field: its full name and trimmed value.
fn parse_field(line: &[u8]) -> Result<(&str, &[u8]), ParseError> {
    if line.iter().any(|b| is_forbidden_control(*b)) {
        return Err(ParseError::ControlCharacter);
    }
    let (name, value) = split_field(line).ok_or(ParseError::BadHeaderLine)?;
    if name.is_empty() || !name.iter().all(|b| is_token_char(*b)) {
        return Err(ParseError::BadHeaderLine);
    }
    let name = std::str::from_utf8(name).map_err(|_| ParseError::BadHeaderLine)?;
    std::str::from_utf8(value).map_err(|_| ParseError::NotUtf8)?;
    Ok((full_header_name(name), value))
}

/// What a start line is.
#[derive(Debug, PartialEq, Eq)]
enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request { method: &'a str, uri: &'a [u8] },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase` (the reason may be absent).
    Response { code: &'a str, reason: &'a [u8] },
}

fn classify_start_line(line: &[u8]) -> Option<StartLine<'_>> {
    if line.iter().any(|b| is_forbidden_control(*b)) {
        return None;
    }
    let mut parts = line.splitn(3, |b| *b == b' ');
    let (first, second) = (parts.next()?, parts.next()?);
    let third = parts.next();
    let is_version = |v: &[u8]| v.eq_ignore_ascii_case(b"SIP/2.0");
    if is_version(first) {
        let code = std::str::from_utf8(second).ok()?;
        let valid_code = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
        let code_in_range = matches!(code.as_bytes().first(), Some(b'1'..=b'6'));
        return (valid_code && code_in_range).then_some(StartLine::Response {
            code,
            reason: third.unwrap_or_default(),
        });
    }
    let method_ok = !first.is_empty() && first.iter().all(|b| is_token_char(*b));
    let uri_ok = !second.is_empty() && !second.contains(&b'\t');
    if !(method_ok && uri_ok && third.is_some_and(is_version)) {
        return None;
    }
    let method = std::str::from_utf8(first).ok()?;
    Some(StartLine::Request {
        method,
        uri: second,
    })
}

/// Check the start line and write it in canonical form (`SIP/2.0` upper case,
/// a SP before an empty reason phrase).
fn write_start_line(out: &mut Vec<u8>, line: &[u8]) -> Result<(), ParseError> {
    if line.iter().any(|b| is_forbidden_control(*b)) {
        return Err(ParseError::ControlCharacter);
    }
    if std::str::from_utf8(line).is_err() {
        return Err(ParseError::NotUtf8);
    }
    match classify_start_line(line) {
        Some(StartLine::Request { method, uri }) => {
            if method.parse::<rsip::Method>().is_err() {
                return Err(ParseError::UnknownMethod(method.to_owned()));
            }
            out.extend_from_slice(method.as_bytes());
            out.push(b' ');
            super::ipv6::mask_into(out, uri);
            out.extend_from_slice(b" SIP/2.0");
        }
        Some(StartLine::Response { code, reason }) => {
            out.extend_from_slice(b"SIP/2.0 ");
            out.extend_from_slice(code.as_bytes());
            out.push(b' ');
            out.extend_from_slice(reason);
        }
        None => return Err(ParseError::BadStartLine),
    }
    out.extend_from_slice(CRLF);
    Ok(())
}

/// Elements of a comma-separated header value; commas inside quoted strings
/// and `<...>` do not separate. Empty elements are dropped.
fn split_list(value: &[u8]) -> Vec<&[u8]> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped, mut angle) = (0, false, false, false);
    for (i, b) in value.iter().enumerate() {
        match (quoted, escaped, *b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b'<') => angle = true,
            (false, _, b'>') => angle = false,
            (false, _, b',') if !angle => {
                items.extend(value.get(start..i));
                start = i.saturating_add(1);
            }
            _ => {}
        }
    }
    items.extend(value.get(start..));
    items
        .into_iter()
        .map(trim_wsp)
        .filter(|item| !item.is_empty())
        .collect()
}

/// Write one header field as `Name: value`. Via values carrying several
/// elements become one Via per line: rsip keeps such a line as a single Via
/// whose typed form silently drops every element after the first.
fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    // Digest credentials and challenges are hashed as sent: never rewritten.
    let is_digest = [
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h));
    let mut write = |value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if is_digest {
            out.extend_from_slice(value);
        } else {
            super::ipv6::mask_into(out, value);
        }
        out.extend_from_slice(CRLF);
    };
    let elements = if name.eq_ignore_ascii_case("Via") {
        split_list(value)
    } else {
        Vec::new()
    };
    if elements.len() > 1 {
        elements.into_iter().for_each(write);
    } else {
        write(value);
    }
}

fn is_content_length(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l")
}

/// Fold one Content-Length value into what was declared so far: it must be
/// plain decimal digits, and repeated headers must agree.
fn merge_content_length(
    declared: Option<usize>,
    value: &[u8],
) -> Result<Option<usize>, ParseError> {
    let digits_only = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
    let parsed = std::str::from_utf8(value)
        .ok()
        .filter(|_| digits_only)
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or(ParseError::InvalidContentLength)?;
    match declared {
        Some(previous) if previous != parsed => Err(ParseError::InvalidContentLength),
        _ => Ok(Some(parsed)),
    }
}

/// The Content-Length a header section declares (full or compact name),
/// `None` when it has none. For stream framing: other lines are not judged.
pub fn declared_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut declared = None;
    for field in split_head(head).fields {
        match split_field(&field) {
            Some((name, value)) if is_content_length(name) => {
                declared = merge_content_length(declared, value)?;
            }
            _ => {}
        }
    }
    Ok(declared)
}

/// The body of a datagram (RFC 3261 §18.3): with no Content-Length it is the
/// rest of the datagram; fewer bytes than declared is an error; bytes beyond
/// the declared length are discarded.
fn datagram_body(body: &[u8], declared: Option<usize>) -> Result<&[u8], ParseError> {
    match declared {
        None => Ok(body),
        Some(declared) => body
            .get(..declared)
            .ok_or(ParseError::ContentLengthMismatch {
                declared,
                actual: body.len(),
            }),
    }
}

/// Rewrite a complete message (a datagram, or one framed off a stream) into
/// the form rsip parses: CRLF line endings, folded lines joined, compact
/// names expanded, one Via element per line, canonical start line, the body
/// cut to Content-Length.
pub fn normalise(raw: &[u8]) -> Result<Vec<u8>, ParseError> {
    if raw.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge {
            size: raw.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    let head = split_head(raw);
    if head.start_line.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut out = Vec::with_capacity(raw.len().saturating_add(256));
    write_start_line(&mut out, head.start_line)?;
    if head.stray_continuation {
        return Err(ParseError::BadHeaderLine);
    }
    let body = head.body.ok_or(ParseError::NoEndOfHead)?;
    let mut declared = None;
    for field in &head.fields {
        let (name, value) = parse_field(field)?;
        if name.eq_ignore_ascii_case("Content-Length") {
            declared = merge_content_length(declared, value)?;
        }
        write_field(&mut out, name, value);
    }
    out.extend_from_slice(CRLF);
    out.extend_from_slice(datagram_body(body, declared)?);
    Ok(out)
}

/// Normalise, parse with rsip and check the headers every message needs:
/// Via, From, To, Call-ID, CSeq (RFC 3261 §8.1.1), each but Via at most once,
/// and a request's CSeq method equal to its method.
pub fn parse(raw: &[u8]) -> Result<rsip::SipMessage, ParseError> {
    let normalised = normalise(raw)?;
    let parsed = std::panic::catch_unwind(|| {
        let msg = rsip::SipMessage::try_from(normalised.as_slice())
            .map_err(|e| ParseError::Malformed(summary(&e.to_string())))?;
        check_mandatory_headers(&msg)?;
        Ok(msg)
    });
    parsed.unwrap_or_else(|_| Err(ParseError::Malformed("parser panicked".into())))
}

/// A parser error message short enough to log (it quotes the input).
fn summary(message: &str) -> String {
    message.chars().take(160).collect()
}

fn mandatory_name(header: &Header) -> Option<&'static str> {
    match header {
        Header::Via(_) => Some("Via"),
        Header::From(_) => Some("From"),
        Header::To(_) => Some("To"),
        Header::CallId(_) => Some("Call-ID"),
        Header::CSeq(_) => Some("CSeq"),
        _ => None,
    }
}

fn check_mandatory_headers(msg: &rsip::SipMessage) -> Result<(), ParseError> {
    let mut counts = COPIED_TO_RESPONSE.map(|name| (name, 0usize));
    for name in msg.headers().iter().filter_map(mandatory_name) {
        if let Some((_, count)) = counts.iter_mut().find(|(n, _)| *n == name) {
            *count = count.saturating_add(1);
        }
    }
    for (name, count) in counts {
        match count {
            0 => return Err(ParseError::MissingHeader(name)),
            1 => {}
            _ if name != "Via" => return Err(ParseError::DuplicateHeader(name)),
            _ => {}
        }
    }
    check_header_values(msg)
}

/// Light checks on the values other layers rely on. The top Via is only
/// checked for its protocol: rsip's typed Via rejects IPv6 sent-by hosts.
fn check_header_values(msg: &rsip::SipMessage) -> Result<(), ParseError> {
    let via_ok = msg.via_header().is_ok_and(|via| {
        via.value()
            .get(..8)
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
fn copied_fields(fields: &[Vec<u8>]) -> Vec<(&'static str, &[u8])> {
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
            copied.push((name, line.as_slice()));
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
