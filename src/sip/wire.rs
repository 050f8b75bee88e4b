//! rsip values to and from wire text without rsip's parser or `Display`:
//! header names in both directions and the serialiser behind
//! [`super::message::to_bytes`].
//!
//! rsip keeps every header as a `String` newtype; this module maps a header
//! name to its variant exactly as rsip's own parser does (ignoring ASCII
//! case; unknown names become `Header::Other` with the name as given) and
//! writes each variant under the name rsip's `Display` would use, so bytes
//! written here are the bytes rsip would have written. Writing goes into one
//! pre-sized buffer with no formatting machinery except for a request URI.
//! It must not judge or rewrite header values.

use rsip::headers::untyped::UntypedHeader;
use rsip::{Header, SipMessage};

/// Generates the name ⇄ variant maps. `parsed` variants are the ones rsip's
/// parser recognises by name; `written_only` ones it writes but never
/// parses (a header of that name arrives as `Header::Other`).
macro_rules! header_names {
    (parsed: [$($p:ident => $pname:literal),* $(,)?],
     written_only: [$($w:ident => $wname:literal),* $(,)?]) => {
        /// The header for a name and value, as rsip's parser would build it.
        pub(super) fn header_from(name: &str, value: String) -> Header {
            $(
                if name.eq_ignore_ascii_case($pname) {
                    return Header::$p(rsip::headers::$p::new(value));
                }
            )*
            Header::Other(name.to_owned(), value)
        }

        /// The name rsip writes a header under, and its value.
        pub(super) fn name_and_value(header: &Header) -> (&str, &str) {
            match header {
                $( Header::$p(h) => ($pname, h.value()), )*
                $( Header::$w(h) => ($wname, h.value()), )*
                Header::Other(name, value) => (name, value),
            }
        }
    };
}

// The most frequent headers first: `header_from` tries them in this order.
header_names! {
    parsed: [
        Via => "Via",
        From => "From",
        To => "To",
        CallId => "Call-ID",
        CSeq => "CSeq",
        Contact => "Contact",
        ContentLength => "Content-Length",
        MaxForwards => "Max-Forwards",
        Expires => "Expires",
        Authorization => "Authorization",
        UserAgent => "User-Agent",
        ContentType => "Content-Type",
        Allow => "Allow",
        Supported => "Supported",
        ProxyAuthorization => "Proxy-Authorization",
        WwwAuthenticate => "WWW-Authenticate",
        ProxyAuthenticate => "Proxy-Authenticate",
        RecordRoute => "Record-Route",
        Route => "Route",
        Server => "Server",
        Accept => "Accept",
        AcceptEncoding => "Accept-Encoding",
        AcceptLanguage => "Accept-Language",
        AlertInfo => "Alert-Info",
        AuthenticationInfo => "Authentication-Info",
        CallInfo => "Call-Info",
        ContentDisposition => "Content-Disposition",
        ContentEncoding => "Content-Encoding",
        ContentLanguage => "Content-Language",
        Date => "Date",
        ErrorInfo => "Error-Info",
        Event => "Event",
        InReplyTo => "In-Reply-To",
        MimeVersion => "Mime-Version",
        MinExpires => "Min-Expires",
        Organization => "Organization",
        Priority => "Priority",
        ProxyRequire => "Proxy-Require",
        ReplyTo => "Reply-To",
        Require => "Require",
        RetryAfter => "Retry-After",
        Subject => "Subject",
        Timestamp => "Timestamp",
        Unsupported => "Unsupported",
        Warning => "Warning",
    ],
    written_only: [
        SubscriptionState => "Subscription-State",
    ]
}

/// The token rsip writes for a method.
pub(super) fn method_name(method: &rsip::Method) -> &'static str {
    use rsip::Method;
    match method {
        Method::Ack => "ACK",
        Method::Bye => "BYE",
        Method::Cancel => "CANCEL",
        Method::Info => "INFO",
        Method::Invite => "INVITE",
        Method::Message => "MESSAGE",
        Method::Notify => "NOTIFY",
        Method::Options => "OPTIONS",
        Method::PRack => "PRACK",
        Method::Publish => "PUBLISH",
        Method::Refer => "REFER",
        Method::Register => "REGISTER",
        Method::Subscribe => "SUBSCRIBE",
        Method::Update => "UPDATE",
    }
}

fn version_text(version: &rsip::Version) -> &'static str {
    match version {
        rsip::Version::V1 => "SIP/1.0",
        rsip::Version::V2 => "SIP/2.0",
    }
}

/// The decimal digits of `n`, written into `buf`.
pub(super) fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut start = buf.len();
    let mut rest = n;
    for slot in buf.iter_mut().rev() {
        // The remainder is below 10: the cast cannot truncate.
        *slot = b'0' + (rest % 10) as u8;
        start -= 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(buf.get(start..).unwrap_or_default()).unwrap_or("0")
}

/// Append the decimal digits of `n`.
pub(super) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut buf).as_bytes());
}

/// The reason phrase written for a status code: the one it arrived with,
/// if unusual, else the standard one.
fn reason_of(status: &rsip::StatusCode) -> &str {
    match status {
        rsip::StatusCode::Other(_, reason) if reason != "Other" => reason.as_str(),
        _ => super::message::reason_phrase(status.code()),
    }
}

/// Bytes of the head lines once written, to size the buffer in one go.
fn head_len(headers: &rsip::Headers) -> usize {
    headers
        .iter()
        .map(|h| {
            let (name, value) = name_and_value(h);
            name.len() + value.len() + 4
        })
        .sum()
}

/// Serialise a message: start line, every header as `Name: value`, the
/// empty line, and the body byte for byte. Hosts masked by
/// [`super::ipv6`] are restored.
pub(super) fn write_message(msg: &SipMessage) -> Vec<u8> {
    let (headers, body) = match msg {
        SipMessage::Request(r) => (&r.headers, &r.body),
        SipMessage::Response(r) => (&r.headers, &r.body),
    };
    // Exact for a response (kept as it is by a completed transaction, so it
    // must not need shrinking); a request's URI length is not known ahead.
    let start_len = match msg {
        SipMessage::Request(_) => 128,
        SipMessage::Response(r) => 16 + reason_of(&r.status_code).len(),
    };
    let mut out = Vec::with_capacity(head_len(headers) + body.len() + start_len);
    match msg {
        SipMessage::Request(r) => {
            use std::io::Write;
            out.extend_from_slice(method_name(&r.method).as_bytes());
            out.push(b' ');
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{}", r.uri);
            out.push(b' ');
            out.extend_from_slice(version_text(&r.version).as_bytes());
        }
        SipMessage::Response(r) => {
            out.extend_from_slice(version_text(&r.version).as_bytes());
            out.push(b' ');
            push_decimal(&mut out, u64::from(r.status_code.code()));
            out.push(b' ');
            out.extend_from_slice(reason_of(&r.status_code).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    for h in headers.iter() {
        let (name, value) = name_and_value(h);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    super::ipv6::unmask_in_place(&mut out);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One header of every variant, each with the value `v`.
    fn every_variant() -> Vec<Header> {
        use rsip::headers::*;
        vec![
            Header::Accept(Accept::new("v")),
            Header::AcceptEncoding(AcceptEncoding::new("v")),
            Header::AcceptLanguage(AcceptLanguage::new("v")),
            Header::AlertInfo(AlertInfo::new("v")),
            Header::Allow(Allow::new("v")),
            Header::AuthenticationInfo(AuthenticationInfo::new("v")),
            Header::Authorization(Authorization::new("v")),
            Header::CSeq(CSeq::new("v")),
            Header::CallId(CallId::new("v")),
            Header::CallInfo(CallInfo::new("v")),
            Header::Contact(Contact::new("v")),
            Header::ContentDisposition(ContentDisposition::new("v")),
            Header::ContentEncoding(ContentEncoding::new("v")),
            Header::ContentLanguage(ContentLanguage::new("v")),
            Header::ContentLength(ContentLength::new("v")),
            Header::ContentType(ContentType::new("v")),
            Header::Date(Date::new("v")),
            Header::ErrorInfo(ErrorInfo::new("v")),
            Header::Event(Event::new("v")),
            Header::Expires(Expires::new("v")),
            Header::From(From::new("v")),
            Header::InReplyTo(InReplyTo::new("v")),
            Header::MaxForwards(MaxForwards::new("v")),
            Header::MimeVersion(MimeVersion::new("v")),
            Header::MinExpires(MinExpires::new("v")),
            Header::Organization(Organization::new("v")),
            Header::Other("X-Other".into(), "v".into()),
            Header::Priority(Priority::new("v")),
            Header::ProxyAuthenticate(ProxyAuthenticate::new("v")),
            Header::ProxyAuthorization(ProxyAuthorization::new("v")),
            Header::ProxyRequire(ProxyRequire::new("v")),
            Header::RecordRoute(RecordRoute::new("v")),
            Header::ReplyTo(ReplyTo::new("v")),
            Header::Require(Require::new("v")),
            Header::RetryAfter(RetryAfter::new("v")),
            Header::Route(Route::new("v")),
            Header::Server(Server::new("v")),
            Header::Subject(Subject::new("v")),
            Header::SubscriptionState(SubscriptionState::new("v")),
            Header::Supported(Supported::new("v")),
            Header::Timestamp(Timestamp::new("v")),
            Header::To(To::new("v")),
            Header::Unsupported(Unsupported::new("v")),
            Header::UserAgent(UserAgent::new("v")),
            Header::Via(Via::new("v")),
            Header::Warning(Warning::new("v")),
            Header::WwwAuthenticate(WwwAuthenticate::new("v")),
        ]
    }

    #[test]
    fn names_are_the_ones_rsip_writes_and_parses() {
        for h in every_variant() {
            let (name, value) = name_and_value(&h);
            assert_eq!(format!("{name}: {value}"), h.to_string());
            let line = format!("{h}\r\n");
            let parsed: Header = rsip::headers::header::Tokenizer::tokenize(line.as_bytes())
                .map(|(_, t)| t)
                .expect("tokenizes")
                .try_into()
                .expect("parses");
            for spelling in [name.to_owned(), name.to_ascii_lowercase()] {
                let ours = header_from(&spelling, value.to_owned());
                let theirs = match &parsed {
                    Header::Other(_, v) => Header::Other(spelling.clone(), v.clone()),
                    other => other.clone(),
                };
                assert_eq!(ours, theirs, "{spelling}");
            }
        }
    }

    #[test]
    fn messages_are_written_as_rsip_displays_them() {
        let raw = "OPTIONS sip:1001@pbx.example.com;transport=udp SIP/2.0\r\n";
        let mut req = rsip::Request::try_from(format!("{raw}\r\n").as_str()).expect("request");
        req.headers = every_variant().into();
        let msg = SipMessage::Request(req);
        assert_eq!(write_message(&msg), msg.to_string().into_bytes());
        for code in [100u16, 200, 401, 486, 299] {
            let resp = rsip::Response {
                status_code: code.into(),
                version: rsip::Version::V2,
                headers: every_variant().into(),
                body: b"\x00\xffbody".to_vec(),
            };
            let text = write_message(&SipMessage::Response(resp));
            assert_eq!(
                text.capacity(),
                text.len(),
                "sized exactly: kept without shrinking"
            );
            let reason = super::super::message::reason_phrase(code);
            assert!(
                text.starts_with(format!("SIP/2.0 {code} {reason}\r\nAccept: v\r\n").as_bytes())
            );
            assert!(text.ends_with(b"\r\nWWW-Authenticate: v\r\n\r\n\x00\xffbody"));
        }
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 100, 65_535, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
