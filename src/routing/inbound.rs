//! Calls from carriers: an INVITE whose source address is a trunk's is a
//! trunk call (no digest authentication: the carrier is trusted by
//! address); anything else is for the phones' authentication to judge.
//! A trunk call is for one of that trunk's numbers, found in the
//! Request-URI or else in To (a register trunk's carrier often puts
//! denwa's registered user in the Request-URI); a blocked caller is
//! turned away before anything rings.

use std::net::IpAddr;

use super::lists::Lists;
use super::Refusal;
use crate::config::{Number, Telephony};
use crate::store::Disposition;

/// What the SIP core knows of a new INVITE.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub source: IpAddr,
    /// User part of the Request-URI.
    pub request_user: &'a str,
    /// User part of To.
    pub to_user: Option<&'a str>,
    /// User part of From: the caller's number as the carrier sent it.
    pub caller: &'a str,
}

/// A trunk call to deliver to its number's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub trunk: String,
    pub number: Number,
    /// The caller's number, national form when it is a number.
    pub caller: String,
    /// The number's screen-pop URL with the caller filled in.
    pub screen_pop: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Not from a trunk: authenticate it as a phone.
    NotTrunk,
    Refuse(Refusal),
    Deliver(Box<Delivery>),
}

/// Decide what a new INVITE from `offer.source` is.
pub fn classify(telephony: &Telephony, lists: &Lists, offer: &Offer) -> Inbound {
    let Some(trunk) = telephony.trunks.iter().find(|t| t.trusts(offer.source)) else {
        return Inbound::NotTrunk;
    };
    let plan = &telephony.outbound.plan;
    let number = [Some(offer.request_user), offer.to_user]
        .into_iter()
        .flatten()
        .filter_map(|user| plan.to_national(user))
        .find_map(|n| {
            telephony
                .numbers
                .get(&n)
                .filter(|number| number.trunk == trunk.name)
        });
    let Some(number) = number else {
        return Inbound::Refuse(Refusal {
            trunk: Some(trunk.name.clone()),
            ..Refusal::new(404, Disposition::NotFound, "not a number of this trunk")
        });
    };
    if lists.is_blocked(plan, offer.caller) {
        return Inbound::Refuse(Refusal {
            did: Some(number.number.clone()),
            trunk: Some(trunk.name.clone()),
            ..Refusal::new(603, Disposition::Blocked, "caller is on the blocklist")
        });
    }
    let caller = plan
        .to_national(offer.caller)
        .unwrap_or_else(|| safe_user(offer.caller));
    let screen_pop = number
        .screen_pop_url
        .as_ref()
        .map(|url| url.replace("@@@@", &url_encode(&caller)));
    Inbound::Deliver(Box::new(Delivery {
        trunk: trunk.name.clone(),
        number: number.clone(),
        caller,
        screen_pop,
    }))
}

/// Longest caller user part denwa passes on.
const MAX_USER: usize = 64;

/// A caller that is no number (`anonymous`, a name) as a user part denwa
/// can write into its own headers: RFC 3261 unreserved characters only,
/// at most [`MAX_USER`]; `anonymous` when nothing is left.
fn safe_user(user: &str) -> String {
    let kept: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+".contains(*c))
        .take(MAX_USER)
        .collect();
    if kept.is_empty() {
        "anonymous".to_owned()
    } else {
        kept
    }
}

/// Percent-encoding of everything but unreserved characters (RFC 3986
/// §2.3), for a caller's number put into a URL.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> crate::config::Config {
        let text = "\
[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\n\
[[trunks]]\nname = \"hikari\"\nkind = \"ip\"\nhost = \"192.0.2.1\"\naddresses = [\"192.0.2.1\", \"192.0.2.2\"]\n\
[[trunks]]\nname = \"voip\"\nkind = \"register\"\nhost = \"198.51.100.7\"\nusername = \"u1\"\npassword = \"p1\"\n\
[[numbers]]\nnumber = \"0312345678\"\ntrunk = \"hikari\"\nroute = \"extension:1001\"\nscreen_pop_url = \"https://crm.example/?tel=@@@@\"\n\
[[numbers]]\nnumber = \"+81612345678\"\ntrunk = \"voip\"\nroute = \"extension:1001\"\n";
        crate::config::parse(text, Path::new("t.toml"), Path::new("/")).expect("valid")
    }

    fn offer<'a>(source: &str, ruri: &'a str, to: Option<&'a str>, from: &'a str) -> Offer<'a> {
        Offer {
            source: source.parse().unwrap(),
            request_user: ruri,
            to_user: to,
            caller: from,
        }
    }

    #[test]
    fn a_trunk_call_reaches_its_number_with_the_screen_pop() {
        let c = config();
        let got = classify(
            &c.telephony,
            &Lists::default(),
            &offer("192.0.2.2", "81312345678", None, "+819011112222"),
        );
        let Inbound::Deliver(d) = got else {
            panic!("{got:?}")
        };
        assert_eq!(d.trunk, "hikari");
        assert_eq!(d.number.number, "0312345678");
        assert_eq!(d.caller, "09011112222");
        assert_eq!(
            d.screen_pop.as_deref(),
            Some("https://crm.example/?tel=09011112222")
        );
    }

    #[test]
    fn a_register_trunk_names_the_number_in_to() {
        let c = config();
        let got = classify(
            &c.telephony,
            &Lists::default(),
            &offer("198.51.100.7", "u1", Some("0612345678"), "anonymous"),
        );
        let Inbound::Deliver(d) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            (d.trunk.as_str(), d.number.number.as_str()),
            ("voip", "0612345678")
        );
        assert_eq!(d.caller, "anonymous");
    }

    #[test]
    fn unknown_sources_wrong_numbers_and_blocked_callers() {
        let c = config();
        let none = Lists::default();
        assert_eq!(
            classify(
                &c.telephony,
                &none,
                &offer("192.0.2.9", "0312345678", None, "1")
            ),
            Inbound::NotTrunk
        );
        let Inbound::Refuse(r) = classify(
            &c.telephony,
            &none,
            &offer("192.0.2.1", "0612345678", None, "1"),
        ) else {
            panic!("another trunk's number")
        };
        assert_eq!((r.code, r.disposition), (404, Disposition::NotFound));
        let blocked = Lists::new(["819011112222".to_owned()], []);
        let Inbound::Refuse(r) = classify(
            &c.telephony,
            &blocked,
            &offer("192.0.2.1", "0312345678", None, "09011112222"),
        ) else {
            panic!("blocked")
        };
        assert_eq!((r.code, r.disposition), (603, Disposition::Blocked));
        assert_eq!(r.did.as_deref(), Some("0312345678"));
    }

    #[test]
    fn a_caller_that_is_no_number_is_made_safe_to_pass_on() {
        assert_eq!(safe_user("anonymous"), "anonymous");
        assert_eq!(safe_user("a\"b> c;d"), "abcd");
        assert_eq!(safe_user("%%%"), "anonymous");
        assert_eq!(safe_user(&"x".repeat(200)).len(), MAX_USER);
    }

    #[test]
    fn url_encoding_keeps_digits() {
        assert_eq!(url_encode("+8190"), "%2B8190");
        assert_eq!(url_encode("a b"), "a%20b");
    }
}
