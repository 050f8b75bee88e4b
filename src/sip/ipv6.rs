//! IPv6 literals in SIP URIs (`sip:1001@[2001:db8::1]:5060`, RFC 3261
//! §19.1.1 / RFC 5118).
//!
//! rsip splits a host from its port at the first `:`, so it cannot parse a
//! bracketed IPv6 host. Before rsip sees a message, [`mask_into`] rewrites
//! each bracketed literal into a host name that carries the address
//! (`denwa-ip6-2001-db8--1.invalid`); [`unmask`] turns it back when a
//! message is written to the wire. Inside denwa the masked form is just a
//! host name: routing never resolves it (requests go to the address a
//! message came from), and nothing leaves without passing through
//! [`crate::sip::message::to_bytes`].
//!
//! Digest credentials are never masked: their `uri` is hashed as sent.

use std::borrow::Cow;
use std::net::Ipv6Addr;

const PREFIX: &str = "denwa-ip6-";
const SUFFIX: &str = ".invalid";

/// The host name standing for `addr`: `:` becomes `-`, `.` (in an embedded
/// IPv4 part) becomes `x`, neither of which is a hex digit.
fn encode(addr: &str) -> String {
    let body: String = addr
        .chars()
        .map(|c| match c {
            ':' => '-',
            '.' => 'x',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{PREFIX}{body}{SUFFIX}")
}

/// Append `value`, with every bracketed IPv6 literal masked.
pub fn mask_into(out: &mut Vec<u8>, value: &[u8]) {
    let mut rest = value;
    while let Some(open) = rest.iter().position(|b| *b == b'[') {
        let (before, from_open) = rest.split_at(open);
        out.extend_from_slice(before);
        let inner = from_open.get(1..).unwrap_or_default();
        let literal = inner
            .iter()
            .position(|b| *b == b']')
            .and_then(|close| inner.get(..close).map(|addr| (close, addr)))
            .and_then(|(close, addr)| {
                let text = std::str::from_utf8(addr).ok()?;
                text.parse::<Ipv6Addr>().ok()?;
                Some((close, text))
            });
        match literal {
            Some((close, text)) => {
                out.extend_from_slice(encode(text).as_bytes());
                rest = inner.get(close + 1..).unwrap_or_default();
            }
            None => {
                out.push(b'[');
                rest = inner;
            }
        }
    }
    out.extend_from_slice(rest);
}

/// The address a masked host name stands for (`None` for any other name).
pub fn masked_addr(host: &str) -> Option<Ipv6Addr> {
    match unmask(host) {
        Cow::Owned(s) => s.strip_prefix('[')?.strip_suffix(']')?.parse().ok(),
        Cow::Borrowed(_) => None,
    }
}

/// Whether `text` contains a masked host's prefix (a searcher built once).
fn has_prefix(text: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(PREFIX.as_bytes()));
    FINDER.find(text).is_some()
}

/// Restore every masked host of a serialised head in place (it is left as
/// it is unless it contains a masked host and is UTF-8).
pub(super) fn unmask_in_place(head: &mut Vec<u8>) {
    if !has_prefix(head) {
        return;
    }
    let restored = match std::str::from_utf8(head).map(unmask) {
        Ok(Cow::Owned(restored)) => restored,
        _ => return,
    };
    *head = restored.into_bytes();
}

/// Restore every masked host of `text` to its bracketed IPv6 literal.
pub fn unmask(text: &str) -> Cow<'_, str> {
    if !has_prefix(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(PREFIX) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let after_prefix = &from[PREFIX.len()..];
        let decoded = after_prefix.find(SUFFIX).and_then(|end| {
            let body = &after_prefix[..end];
            let addr: String = body
                .chars()
                .map(|c| match c {
                    '-' => ':',
                    'x' => '.',
                    c => c,
                })
                .collect();
            addr.parse::<Ipv6Addr>().ok().map(|_| (end, addr))
        });
        match decoded {
            Some((end, addr)) => {
                out.push('[');
                out.push_str(&addr);
                out.push(']');
                rest = &after_prefix[end + SUFFIX.len()..];
            }
            None => {
                out.push_str(PREFIX);
                rest = after_prefix;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(s: &str) -> String {
        let mut out = Vec::new();
        mask_into(&mut out, s.as_bytes());
        String::from_utf8(out).expect("utf-8 in, utf-8 out")
    }

    #[test]
    fn literals_round_trip() {
        for s in [
            "sip:1001@[2001:db8::1]:5060;transport=udp",
            "<sip:[::1]>;tag=x",
            "SIP/2.0/UDP [fe80::1:2]:5070;branch=z9hG4bK1;received=::1",
            "sip:a@[::ffff:192.0.2.1]",
        ] {
            let masked = mask(s);
            assert!(!masked.contains('['), "{masked}");
            assert_eq!(unmask(&masked), s);
        }
        assert_eq!(mask("sip:[::1]:5060"), "sip:denwa-ip6---1.invalid:5060");
        assert_eq!(
            masked_addr("denwa-ip6---1.invalid"),
            Some(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(masked_addr("example.com"), None);
    }

    #[test]
    fn other_brackets_and_names_are_left_alone() {
        for s in [
            "[not an address]",
            "a[b",
            "x]y[",
            "[1.2.3.4]",
            "denwa-ip6-zz.invalid",
            "denwa-ip6-",
        ] {
            assert_eq!(mask(s), s);
            assert_eq!(unmask(s), s);
        }
    }
}
