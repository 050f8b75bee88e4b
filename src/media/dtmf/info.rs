//! DTMF in SIP INFO bodies.
//!
//! Owns: reading the key (and the duration, when given) out of the two
//! body types phones send: `application/dtmf-relay`
//!
//! ```text
//! Signal=5
//! Duration=160
//! ```
//!
//! and `application/dtmf`, whose body is the key alone.
//!
//! Must not: answer the INFO or decide whether INFO is accepted on this
//! call; the call actor does. The body comes from the network: anything
//! unexpected gives `None`, never a panic.

use super::event_to_digit;

/// Bodies larger than this are not DTMF.
const MAX_BODY: usize = 1024;

/// The key and duration (ms, when the body has one) of an INFO body, or
/// `None` when the content type is not a DTMF one or the body holds no
/// valid key. Keys are `0`–`9`, `*`, `#`, `A`–`D` (any case) or their
/// RFC 4733 event codes `10`–`15`, which some phones send for `*`–`D`.
/// Field names and the content type are case-insensitive; lines end in
/// CRLF or LF.
pub fn parse_info(content_type: &str, body: &[u8]) -> Option<(char, Option<u32>)> {
    if body.len() > MAX_BODY {
        return None;
    }
    let body = std::str::from_utf8(body).ok()?;
    let media_type = content_type.split(';').next()?.trim();
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        parse_relay(body)
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        Some((parse_key(body.trim())?, None))
    } else {
        None
    }
}

/// `Signal=` and `Duration=` lines, in any order; other lines are skipped.
fn parse_relay(body: &str) -> Option<(char, Option<u32>)> {
    let mut key = None;
    let mut duration = None;
    for line in body.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("signal") {
            key = Some(parse_key(value)?);
        } else if name.eq_ignore_ascii_case("duration") {
            duration = value.parse::<u32>().ok();
        }
    }
    Some((key?, duration))
}

fn parse_key(value: &str) -> Option<char> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => {
            let c = c.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => match value.parse::<u8>() {
            Ok(code @ 10..=15) => event_to_digit(code),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "application/dtmf-relay";

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(
            parse_info(RELAY, b"Signal=5\r\nDuration=160\r\n"),
            Some(('5', Some(160)))
        );
        assert_eq!(
            parse_info(RELAY, b"signal= #\nduration =250\n"),
            Some(('#', Some(250)))
        );
        assert_eq!(
            parse_info(RELAY, b"Duration=100\r\nSIGNAL=*"),
            Some(('*', Some(100)))
        );
        assert_eq!(parse_info(RELAY, b"Signal=d\r\n"), Some(('D', None)));
        assert_eq!(
            parse_info(RELAY, b"Signal=11\r\nDuration=x"),
            Some(('#', None))
        );
        assert_eq!(parse_info(RELAY, b"Signal=10"), Some(('*', None)));
    }

    #[test]
    fn content_type_is_case_insensitive_and_may_have_parameters() {
        let body = b"Signal=1\r\nDuration=160\r\n";
        assert!(parse_info("Application/DTMF-Relay", body).is_some());
        assert!(parse_info("application/dtmf-relay; charset=utf-8", body).is_some());
        assert_eq!(parse_info("application/sdp", body), None);
        assert_eq!(parse_info("", body), None);
    }

    #[test]
    fn application_dtmf_bodies() {
        assert_eq!(parse_info("application/dtmf", b"7"), Some(('7', None)));
        assert_eq!(parse_info("application/DTMF", b" b\r\n"), Some(('B', None)));
        assert_eq!(parse_info("application/dtmf", b"11"), Some(('#', None)));
        assert_eq!(parse_info("application/dtmf", b""), None);
        assert_eq!(parse_info("application/dtmf", b"77"), None);
    }

    #[test]
    fn invalid_bodies_give_nothing() {
        for body in [
            &b""[..],
            b"Signal=\r\n",
            b"Signal=E\r\nDuration=160",
            b"Signal=16",
            b"Signal=55",
            b"Duration=160\r\n",
            b"Signal 5",
            b"Signal=\xff",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_info(RELAY, body), None, "{body:?}");
        }
        assert_eq!(parse_info(RELAY, &[b'x'; 2000]), None, "oversized");
        let mut long = b"Signal=5\r\n".to_vec();
        long.resize(MAX_BODY + 1, b' ');
        assert_eq!(parse_info(RELAY, &long), None);
    }
}
