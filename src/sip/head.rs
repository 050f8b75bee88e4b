//! The header section of one complete SIP message, cut into its parts in one
//! pass over the bytes (RFC 3261 §7): start line, header fields, body.
//!
//! [`split_head`] never fails: it cuts lines (CRLF or bare LF), joins folded
//! continuation lines (§7.3.1) and finds the empty line; [`tokenize`] then
//! judges every part — start line syntax and method, header names (compact
//! forms expanded, §7.3.3), control characters, UTF-8, Content-Length — and
//! returns borrowed slices of the input wherever nothing had to be rewritten.
//! It builds no rsip value and does no IPv6 masking: that is
//! [`super::message`]'s business. A few byte-level helpers other parts of
//! the SIP core share live here too (method names, byte splits). Every byte
//! here may come from an attacker: no input may panic it.

use std::borrow::Cow;

use super::message::{ParseError, MAX_MESSAGE_SIZE};

/// Compact header names (RFC 3261 §7.3.3, RFC 3265, RFC 3515, RFC 3892,
/// RFC 4028) and the full names they stand for.
const COMPACT_FORMS: [(u8, &str); 15] = [
    (b'v', "Via"),
    (b'f', "From"),
    (b't', "To"),
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'k', "Supported"),
    (b's', "Subject"),
    (b'e', "Content-Encoding"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b'b', "Referred-By"),
    (b'u', "Allow-Events"),
    (b'x', "Session-Expires"),
];

/// The full header name for a compact one (case-insensitive); any other name
/// comes back unchanged.
pub fn full_header_name(name: &str) -> &str {
    match name.as_bytes() {
        [one] => COMPACT_FORMS
            .iter()
            .find(|(compact, _)| compact.eq_ignore_ascii_case(one))
            .map_or(name, |(_, full)| full),
        _ => name,
    }
}

/// RFC 3261 `token` characters (§25.1), as a table indexed by byte.
const TOKEN_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

/// RFC 3261 `token` characters (§25.1).
pub(super) fn is_token_char(b: u8) -> bool {
    TOKEN_CHARS[usize::from(b)]
}

/// Control characters other than HT are not allowed anywhere in a head.
fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(super) fn trim_wsp(mut s: &[u8]) -> &[u8] {
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

/// `s` cut at the first `b` (an ASCII byte, so both sides stay `str`s);
/// `None` when `s` has none. A byte search, cheaper than a `char` pattern.
pub(crate) fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(b, s.as_bytes())?;
    Some((s.get(..i)?, s.get(i.saturating_add(1)..)?))
}

/// A message split into lines, before any judgement on their content.
pub(super) struct RawHead<'a> {
    pub(super) start_line: &'a [u8],
    /// Header field lines, folded continuations joined with a single SP
    /// (RFC 3261 §7.3.1); borrowed unless a fold had to be joined.
    pub(super) fields: Vec<Cow<'a, [u8]>>,
    /// What follows the empty line; `None` when the input has no empty line.
    pub(super) body: Option<&'a [u8]>,
    /// A continuation line came before any header field.
    pub(super) stray_continuation: bool,
}

/// The next line (LF or CRLF terminated; the CR is dropped) and what follows
/// it, `None` when the line has no terminator.
fn next_line(rest: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (line, after) = match memchr::memchr(b'\n', rest) {
        Some(lf) => (
            rest.get(..lf).unwrap_or_default(),
            rest.get(lf.saturating_add(1)..),
        ),
        None => (rest, None),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), after)
}

/// Split the head into lines, tolerating bare LF line endings and ignoring
/// line ends before the start line (RFC 3261 §7.5). Never fails.
pub(super) fn split_head(raw: &[u8]) -> RawHead<'_> {
    let leading = raw
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let rest = raw.get(leading..).unwrap_or_default();
    let (start_line, mut after) = next_line(rest);
    let mut head = RawHead {
        start_line,
        fields: Vec::with_capacity(16),
        body: None,
        stray_continuation: false,
    };
    while let Some(rest) = after {
        let (line, next) = next_line(rest);
        if line.is_empty() {
            head.body = next;
            break;
        }
        if line.first().is_some_and(|b| is_wsp(*b)) {
            match head.fields.last_mut() {
                Some(field) => unfold_into(field.to_mut(), line),
                None => head.stray_continuation = true,
            }
        } else {
            head.fields.push(Cow::Borrowed(line));
        }
        after = next;
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
pub(super) fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let (name, value) = line.split_at_checked(colon)?;
    Some((trim_wsp(name), trim_wsp(value.get(1..)?)))
}

/// Whether `bytes` holds a control character other than HT. Written without
/// an early exit so that it compiles to a vector loop.
fn has_forbidden_control(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(false, |found, b| found | is_forbidden_control(*b))
}

/// A validated header field: its full name and trimmed value.
pub(super) fn parse_field(line: &[u8]) -> Result<(&str, &str), ParseError> {
    parse_field_within(line, None)
}

/// The head section of a message already known to be UTF-8, so that a field
/// can be taken as a `str` slice of it without validating it again.
#[derive(Clone, Copy)]
struct Utf8Head<'a> {
    raw: &'a [u8],
    text: &'a str,
}

impl<'a> Utf8Head<'a> {
    /// `part`, a slice of `raw`, as the same slice of `text`.
    fn str_of(&self, part: &'a [u8]) -> Option<&'a str> {
        let start = (part.as_ptr() as usize).checked_sub(self.raw.as_ptr() as usize)?;
        self.text.get(start..start.checked_add(part.len())?)
    }
}

/// [`parse_field`], taking the field as text from `head` when given.
fn parse_field_within<'a>(
    line: &'a [u8],
    head: Option<Utf8Head<'a>>,
) -> Result<(&'a str, &'a str), ParseError> {
    if has_forbidden_control(line) {
        return Err(ParseError::ControlCharacter);
    }
    let (name, value) = memchr::memchr(b':', line)
        .and_then(|colon| line.split_at_checked(colon))
        .ok_or(ParseError::BadHeaderLine)?;
    let (name, value) = (trim_wsp(name), trim_wsp(value.get(1..).unwrap_or_default()));
    if name.is_empty() || !name.iter().all(|b| is_token_char(*b)) {
        return Err(ParseError::BadHeaderLine);
    }
    let as_text = |part: &'a [u8]| match head.and_then(|h| h.str_of(part)) {
        Some(text) => Ok(text),
        None => std::str::from_utf8(part),
    };
    let name = as_text(name).map_err(|_| ParseError::BadHeaderLine)?;
    let value = as_text(value).map_err(|_| ParseError::NotUtf8)?;
    Ok((full_header_name(name), value))
}

/// What a start line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request { method: &'a str, uri: &'a [u8] },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase` (the reason may be absent).
    Response { code: &'a str, reason: &'a [u8] },
}

pub(super) fn classify_start_line(line: &[u8]) -> Option<StartLine<'_>> {
    if has_forbidden_control(line) {
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

/// The methods rsip knows, by their (case-insensitive) names.
const METHODS: [(&str, rsip::Method); 14] = [
    ("REGISTER", rsip::Method::Register),
    ("INVITE", rsip::Method::Invite),
    ("ACK", rsip::Method::Ack),
    ("BYE", rsip::Method::Bye),
    ("CANCEL", rsip::Method::Cancel),
    ("OPTIONS", rsip::Method::Options),
    ("INFO", rsip::Method::Info),
    ("UPDATE", rsip::Method::Update),
    ("PRACK", rsip::Method::PRack),
    ("MESSAGE", rsip::Method::Message),
    ("NOTIFY", rsip::Method::Notify),
    ("SUBSCRIBE", rsip::Method::Subscribe),
    ("REFER", rsip::Method::Refer),
    ("PUBLISH", rsip::Method::Publish),
];

/// The method a token names, compared as rsip does (ignoring ASCII case and
/// surrounding white space).
pub fn method_from(token: &str) -> Option<rsip::Method> {
    let token = token.trim();
    METHODS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(token))
        .map(|(_, m)| *m)
}

/// Elements of a comma-separated header value; commas inside quoted strings
/// and `<...>` do not separate. Empty elements are dropped.
pub(super) fn split_list(value: &[u8]) -> Vec<&[u8]> {
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

/// A start line that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start<'a> {
    Request {
        method: rsip::Method,
        /// The method as written (its case is kept on the wire).
        token: &'a str,
        uri: &'a str,
    },
    Response {
        code: u16,
        reason: &'a str,
    },
}

/// One header field that passed every check: its full name (compact forms
/// expanded) and its trimmed value, borrowed from the input unless a folded
/// line had to be joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field<'a> {
    pub(super) name: Cow<'a, str>,
    pub(super) value: Cow<'a, str>,
}

/// A message that passed every check of the wire format.
#[derive(Debug)]
pub(super) struct Head<'a> {
    pub(super) start: Start<'a>,
    /// In order; a Via line carrying several elements gives one field each.
    pub(super) fields: Vec<Field<'a>>,
    /// Cut to Content-Length.
    pub(super) body: &'a [u8],
    /// Some part of the head contains `[` (an IPv6 literal may need masking).
    pub(super) has_bracket: bool,
}

/// Check the start line: no control characters, UTF-8, the request or
/// status line grammar, a method rsip knows.
fn check_start_line(line: &[u8]) -> Result<Start<'_>, ParseError> {
    if has_forbidden_control(line) {
        return Err(ParseError::ControlCharacter);
    }
    if std::str::from_utf8(line).is_err() {
        return Err(ParseError::NotUtf8);
    }
    match classify_start_line(line) {
        Some(StartLine::Request { method, uri }) => {
            let parsed =
                method_from(method).ok_or_else(|| ParseError::UnknownMethod(method.to_owned()))?;
            let uri = std::str::from_utf8(uri).map_err(|_| ParseError::NotUtf8)?;
            Ok(Start::Request {
                method: parsed,
                token: method,
                uri,
            })
        }
        Some(StartLine::Response { code, reason }) => Ok(Start::Response {
            code: code.parse().map_err(|_| ParseError::BadStartLine)?,
            reason: std::str::from_utf8(reason).map_err(|_| ParseError::NotUtf8)?,
        }),
        None => Err(ParseError::BadStartLine),
    }
}

/// Cut a complete message (a datagram, or one framed off a stream) into its
/// checked parts. The checks and their order (so which error a message with
/// several faults gets): size, empty input, start line, a continuation before
/// any field, the empty line ending the head, then each field in order, and
/// last the body against Content-Length.
pub(super) fn tokenize(raw: &[u8]) -> Result<Head<'_>, ParseError> {
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
    let start = check_start_line(head.start_line)?;
    if head.stray_continuation {
        return Err(ParseError::BadHeaderLine);
    }
    let body = head.body.ok_or(ParseError::NoEndOfHead)?;
    // One UTF-8 check for the whole head instead of one per field.
    let head_bytes = raw
        .get(..raw.len().saturating_sub(body.len()))
        .unwrap_or_default();
    let utf8_head = std::str::from_utf8(head_bytes).ok().map(|text| Utf8Head {
        raw: head_bytes,
        text,
    });
    let (fields, declared) = check_fields(head.fields, utf8_head)?;
    let has_bracket = head.start_line.contains(&b'[')
        || fields
            .iter()
            .any(|f| memchr::memchr(b'[', f.value.as_bytes()).is_some());
    Ok(Head {
        start,
        fields,
        body: datagram_body(body, declared)?,
        has_bracket,
    })
}

/// Check each field line in order; the fields and the Content-Length they
/// declare.
fn check_fields<'a>(
    lines: Vec<Cow<'a, [u8]>>,
    utf8_head: Option<Utf8Head<'a>>,
) -> Result<(Vec<Field<'a>>, Option<usize>), ParseError> {
    let mut declared = None;
    let mut fields = Vec::with_capacity(lines.len().saturating_add(2));
    for line in lines {
        let field = match line {
            Cow::Borrowed(line) => {
                let (name, value) = parse_field_within(line, utf8_head)?;
                Field {
                    name: Cow::Borrowed(name),
                    value: Cow::Borrowed(value),
                }
            }
            Cow::Owned(line) => {
                let (name, value) = parse_field(&line)?;
                Field {
                    name: Cow::Owned(name.to_owned()),
                    value: Cow::Owned(value.to_owned()),
                }
            }
        };
        if field.name.eq_ignore_ascii_case("Content-Length") {
            declared = merge_content_length(declared, field.value.as_bytes())?;
        }
        push_field(&mut fields, field);
    }
    Ok((fields, declared))
}

/// Add a field. A Via value carrying several elements becomes one field per
/// element: rsip keeps such a line as a single Via whose typed form silently
/// drops every element after the first.
fn push_field<'a>(fields: &mut Vec<Field<'a>>, field: Field<'a>) {
    if !(field.name.eq_ignore_ascii_case("Via") && field.value.contains(',')) {
        fields.push(field);
        return;
    }
    let elements = split_list(field.value.as_bytes());
    if elements.len() < 2 {
        fields.push(field);
        return;
    }
    for element in elements {
        // Cut at ASCII commas and white space, so still UTF-8.
        let value = String::from_utf8_lossy(element).into_owned();
        fields.push(Field {
            name: field.name.clone(),
            value: Cow::Owned(value),
        });
    }
}
