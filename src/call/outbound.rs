//! The B leg of calls on the public network side: who it says is calling
//! (the DID's display text on a call from a carrier; the presented number,
//! or nothing when withheld, on a call to one), where it goes (a trunk
//! instead of a registered contact), and answering the carrier's digest
//! challenge on an outbound INVITE.
//!
//! What this module must not do: run a call (the B2BUA does) or decide a
//! route (see [`crate::routing`]).

use rsip::prelude::*;
use rsip::{Header, Request, Response};

use crate::auth::client::Challenge;
use crate::config::{DtmfMode, RegisterSettings, Trunk, TrunkCodec, TrunkKind};
use crate::media::dtmf::DigitEvent;
use crate::media::sdp::SessionDescription;
use crate::registrar::location::Binding;
use crate::routing::inbound::Delivery;
use crate::routing::number::NumberPlan;
use crate::routing::outbound::Departure;
use crate::sip::dialog::Dialog;
use crate::sip::message;
use crate::sip::Peer;
use crate::store::Direction;

/// A From party of the B leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub display: String,
    pub user: String,
    /// `None`: denwa's domain.
    pub host: Option<String>,
}

/// How a call's B leg differs from an internal call's, and what its call
/// record says about the public network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegPlan {
    pub direction: Direction,
    /// The number (national form) the call came in on or leaves from.
    pub did: Option<String>,
    pub trunk: Option<String>,
    /// The B leg's From; `None`: the calling extension and its name.
    pub from: Option<Party>,
    /// The B leg's To URI; `None`: the dialled user at denwa's domain.
    pub to_uri: Option<String>,
    /// Extra headers of the B leg's INVITE (P-Asserted-Identity, Privacy).
    pub headers: Vec<(String, String)>,
    /// Answer the far end's 401/407 with these.
    pub credentials: Option<RegisterSettings>,
    /// What the far end takes: the offer sent to it is cut down to these.
    pub media: Option<TrunkMedia>,
}

/// A trunk's codecs (in preference order) and DTMF mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkMedia {
    pub codecs: Vec<TrunkCodec>,
    pub dtmf: DtmfMode,
}

impl Default for LegPlan {
    fn default() -> Self {
        LegPlan {
            direction: Direction::Internal,
            did: None,
            trunk: None,
            from: None,
            to_uri: None,
            headers: Vec::new(),
            credentials: None,
            media: None,
        }
    }
}

fn name_addr(display: &str, uri: &str) -> String {
    if display.is_empty() {
        format!("<{uri}>")
    } else {
        format!("\"{display}\" <{uri}>")
    }
}

impl LegPlan {
    /// The B leg's From value with `tag`; `caller`/`caller_name` are used
    /// when the plan names no party.
    pub fn from_value(&self, caller: &str, caller_name: &str, domain: &str, tag: &str) -> String {
        let (display, user, host) = match &self.from {
            Some(p) => (
                p.display.as_str(),
                p.user.as_str(),
                p.host.as_deref().unwrap_or(domain),
            ),
            None => (caller_name, caller, domain),
        };
        format!(
            "{};tag={tag}",
            name_addr(display, &format!("sip:{user}@{host}"))
        )
    }

    /// The B leg's To value.
    pub fn to_value(&self, callee: &str, domain: &str) -> String {
        match &self.to_uri {
            Some(uri) => format!("<{uri}>"),
            None => format!("<sip:{callee}@{domain}>"),
        }
    }

    /// The extra headers as header values.
    pub fn extra_headers(&self) -> impl Iterator<Item = Header> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| Header::Other(n.clone(), v.clone()))
    }
}

/// `host:port` of a trunk in a URI.
fn trunk_hostport(trunk: &Trunk) -> String {
    std::net::SocketAddr::new(trunk.host, trunk.port).to_string()
}

/// The B-leg plan of a call from a carrier to an extension: the caller's
/// number with the DID's display text.
pub fn inbound_plan(d: &Delivery) -> LegPlan {
    LegPlan {
        direction: Direction::Inbound,
        did: Some(d.number.number.clone()),
        trunk: Some(d.trunk.clone()),
        from: Some(Party {
            display: d.number.incoming_display.clone(),
            user: d.caller.clone(),
            host: None,
        }),
        ..LegPlan::default()
    }
}

/// The B-leg plan of an outside call: the presented number written as the
/// trunk wants it (RFC 3325 P-Asserted-Identity always; RFC 3323
/// `Privacy: id` and an anonymous From when withheld).
pub fn departure_plan(d: &Departure, plan: &NumberPlan) -> LegPlan {
    let host = trunk_hostport(&d.trunk);
    let presented = plan.format(&d.number.number, d.trunk.number_format);
    let destination = plan.format(&d.destination, d.trunk.number_format);
    let asserted = format!("<sip:{presented}@{host}>");
    let (from, mut headers) = if d.withheld {
        (
            Party {
                display: "Anonymous".into(),
                user: "anonymous".into(),
                host: Some("anonymous.invalid".into()),
            },
            vec![("Privacy".to_owned(), "id".to_owned())],
        )
    } else {
        (
            Party {
                display: d.number.outgoing_display.clone(),
                user: presented,
                host: Some(host.clone()),
            },
            Vec::new(),
        )
    };
    headers.insert(0, ("P-Asserted-Identity".to_owned(), asserted));
    let credentials = match &d.trunk.kind {
        TrunkKind::Register(r) => Some(r.clone()),
        TrunkKind::Ip { .. } => None,
    };
    LegPlan {
        direction: Direction::Outbound,
        did: Some(d.number.number.clone()),
        trunk: Some(d.trunk.name.clone()),
        from: Some(from),
        to_uri: Some(format!("sip:{destination}@{host}")),
        headers,
        credentials,
        media: Some(TrunkMedia {
            codecs: d.trunk.codecs.clone(),
            dtmf: d.trunk.dtmf,
        }),
    }
}

/// The `application/dtmf-relay` body for a phone's key press when its
/// trunk takes keys as SIP INFO; `None` for any other trunk (denwa then
/// gives the trunk the key as RFC 4733 or as tones, like any leg).
pub fn info_key_press(media: Option<&TrunkMedia>, digit: &DigitEvent) -> Option<String> {
    (media?.dtmf == DtmfMode::Info)
        .then(|| dtmf_relay_body(digit.digit, digit.duration_ms.max(100)))
}

/// An in-dialog INFO carrying `body` (`application/dtmf-relay`).
pub fn info_request(
    dialog: &mut Dialog,
    via: &str,
    contact: &str,
    body: String,
    user_agent: &str,
) -> Request {
    let mut info = dialog.request(rsip::Method::Info, via, contact, None);
    info.headers
        .push(Header::ContentType(rsip::headers::ContentType::new(
            "application/dtmf-relay",
        )));
    let body = body.into_bytes();
    info.headers = message::finish(info.headers, body.len(), user_agent);
    info.body = body;
    info
}

/// A key press as a SIP INFO body (`application/dtmf-relay`).
pub fn dtmf_relay_body(digit: char, duration_ms: u32) -> String {
    format!("Signal={digit}\r\nDuration={duration_ms}\r\n")
}

/// Cut the audio stream of an offer going to a trunk down to the trunk's
/// codecs, in the trunk's order, with RFC 4733 telephone-event only when
/// the trunk takes DTMF that way (RFC 3264 §5: the offerer lists what it
/// accepts). False when none of the offered codecs is the trunk's.
pub fn restrict_offer(offer: &mut SessionDescription, media: &TrunkMedia) -> bool {
    let Some(audio) = offer
        .media
        .iter_mut()
        .find(|m| m.media == "audio" && m.port != 0)
    else {
        return false;
    };
    let wanted = |codec: TrunkCodec| match codec {
        TrunkCodec::Pcmu => "PCMU",
        TrunkCodec::Pcma => "PCMA",
    };
    let mut kept: Vec<u8> = Vec::new();
    for codec in &media.codecs {
        let name = wanted(*codec);
        kept.extend(audio.payload_types().into_iter().filter(|pt| {
            audio
                .codec(*pt)
                .is_some_and(|c| c.name.eq_ignore_ascii_case(name) && c.rate == 8000)
        }));
    }
    if kept.is_empty() {
        return false;
    }
    if media.dtmf == DtmfMode::Rfc4733 {
        kept.extend(audio.telephone_event_pt());
    }
    audio.formats = kept.iter().map(u8::to_string).collect();
    audio.attributes.retain(|a| {
        if !matches!(a.name.as_str(), "rtpmap" | "fmtp") {
            return true;
        }
        let pt = a
            .value
            .as_deref()
            .and_then(|v| v.split_whitespace().next())
            .and_then(|p| p.parse::<u8>().ok());
        pt.is_some_and(|pt| kept.contains(&pt))
    });
    true
}

/// The target of an outside call: a contact at the trunk, reached from
/// `peer` (our socket towards the carrier).
pub fn trunk_target(trunk: &Trunk, d: &Departure, plan: &NumberPlan, peer: Peer) -> Binding {
    let destination = plan.format(&d.destination, trunk.number_format);
    Binding {
        contact_uri: format!("sip:{destination}@{}", trunk_hostport(trunk)),
        expires_at_unix: u64::MAX,
        stored_expires_at_unix: u64::MAX,
        received: peer,
        call_id: String::new(),
        cseq: 0,
        user_agent: None,
    }
}

/// The INVITE again with credentials for the challenge in `resp` (401 or
/// 407), the next CSeq and the Via `via` (a new branch); `None` when the
/// challenge cannot be answered (none, malformed, or another realm).
pub fn authenticated_retry(
    invite: &Request,
    resp: &Response,
    creds: &RegisterSettings,
    via: &str,
    cnonce: &str,
) -> Option<Request> {
    let proxy = resp.status_code.code() == 407;
    let value = resp.headers.iter().find_map(|h| match (proxy, h) {
        (true, Header::ProxyAuthenticate(a)) => Some(a.value().to_owned()),
        (false, Header::WwwAuthenticate(a)) => Some(a.value().to_owned()),
        _ => None,
    })?;
    let challenge = Challenge::parse(&value).ok()?;
    if creds.realm.as_ref().is_some_and(|r| *r != challenge.realm) {
        return None;
    }
    let (seq, method) = message::cseq(invite)?;
    let uri = invite.uri.to_string();
    let answer = challenge.answer(
        &creds.username,
        &creds.password,
        message::method_name(&method),
        &uri,
        cnonce,
        1,
    );
    let mut out = invite.clone();
    let mut headers = rsip::Headers::default();
    for h in invite.headers.iter() {
        match h {
            Header::Via(_) => headers.push(Header::Via(rsip::headers::Via::new(via))),
            Header::CSeq(_) => headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
                "{} {}",
                seq.wrapping_add(1),
                message::method_name(&method)
            )))),
            Header::Authorization(_) | Header::ProxyAuthorization(_) => {}
            other => headers.push(other.clone()),
        }
    }
    headers.push(if proxy {
        Header::ProxyAuthorization(rsip::headers::ProxyAuthorization::new(answer))
    } else {
        Header::Authorization(rsip::headers::Authorization::new(answer))
    });
    out.headers = headers;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::lists::Lists;
    use crate::routing::outbound::{route, Outbound};
    use std::path::Path;

    fn departure(dialled: &str) -> (crate::config::Config, Departure) {
        let text = "\
[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\n\
[[trunks]]\nname = \"voip\"\nkind = \"register\"\nhost = \"192.0.2.1\"\nport = 5070\nusername = \"u1\"\npassword = \"p1\"\ncaller_id_format = \"e164_plus\"\n\
[[numbers]]\nnumber = \"0311110000\"\ntrunk = \"voip\"\nroute = \"extension:1001\"\noutgoing_display = \"Sales\"\noutbound_prefix = \"7\"\n";
        let c = crate::config::parse(text, Path::new("t.toml"), Path::new("/")).expect("valid");
        let Outbound::Depart(d) = route(
            &c.telephony,
            &Lists::default(),
            &c.extensions["1001"],
            dialled,
        ) else {
            panic!("no departure")
        };
        (c, *d)
    }

    #[test]
    fn an_outside_call_presents_its_number_as_the_trunk_wants() {
        let (c, d) = departure("70312345678");
        let plan = departure_plan(&d, &c.telephony.outbound.plan);
        assert_eq!(plan.direction, Direction::Outbound);
        assert_eq!(
            plan.from_value("1001", "Desk", "denwa.local", "t1"),
            "\"Sales\" <sip:+81311110000@192.0.2.1:5070>;tag=t1"
        );
        assert_eq!(
            plan.to_value("x", "denwa.local"),
            "<sip:+81312345678@192.0.2.1:5070>"
        );
        assert_eq!(
            plan.headers,
            [(
                "P-Asserted-Identity".to_owned(),
                "<sip:+81311110000@192.0.2.1:5070>".to_owned()
            )]
        );
        assert_eq!(
            plan.credentials.as_ref().map(|c| c.username.as_str()),
            Some("u1")
        );
    }

    #[test]
    fn the_offer_to_a_trunk_keeps_its_codecs_in_its_order() {
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";
        let parsed = crate::media::sdp::parse(body.as_bytes()).unwrap();
        let mut offer = parsed.clone();
        let alaw_first = TrunkMedia {
            codecs: vec![TrunkCodec::Pcma, TrunkCodec::Pcmu],
            dtmf: DtmfMode::Rfc4733,
        };
        assert!(restrict_offer(&mut offer, &alaw_first));
        let audio = &offer.media[0];
        assert_eq!(audio.formats, ["8", "0", "101"]);
        let names: Vec<String> = audio
            .attributes
            .iter()
            .map(|a| format!("{}:{}", a.name, a.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            names,
            [
                "rtpmap:0 PCMU/8000",
                "rtpmap:8 PCMA/8000",
                "rtpmap:101 telephone-event/8000",
                "fmtp:101 0-15",
                "sendrecv:"
            ]
        );
        let mut offer = parsed.clone();
        let info = TrunkMedia {
            codecs: vec![TrunkCodec::Pcmu],
            dtmf: DtmfMode::Info,
        };
        assert!(restrict_offer(&mut offer, &info));
        assert_eq!(offer.media[0].formats, ["0"], "no telephone-event");
        let mut g729_only = parsed;
        g729_only.media[0].formats = vec!["18".into()];
        assert!(!restrict_offer(&mut g729_only, &info));
    }

    #[test]
    fn a_key_goes_to_an_info_trunk_as_dtmf_relay() {
        let info = TrunkMedia {
            codecs: vec![TrunkCodec::Pcma],
            dtmf: DtmfMode::Info,
        };
        assert_eq!(dtmf_relay_body('5', 160), "Signal=5\r\nDuration=160\r\n");
        let press = DigitEvent {
            digit: '#',
            start: 0,
            duration_ms: 40,
            source: crate::media::dtmf::DigitSource::Rfc4733,
        };
        assert_eq!(
            info_key_press(Some(&info), &press).as_deref(),
            Some("Signal=#\r\nDuration=100\r\n"),
            "at least 100 ms"
        );
        for dtmf in [DtmfMode::Rfc4733, DtmfMode::Inband] {
            let other = TrunkMedia {
                dtmf,
                ..info.clone()
            };
            assert_eq!(info_key_press(Some(&other), &press), None);
        }
        assert_eq!(info_key_press(None, &press), None, "not a trunk call");
    }

    #[test]
    fn a_withheld_call_is_anonymous_with_privacy() {
        let (c, d) = departure("71840312345678");
        let plan = departure_plan(&d, &c.telephony.outbound.plan);
        let from = plan.from_value("1001", "Desk", "denwa.local", "t");
        assert!(
            from.starts_with("\"Anonymous\" <sip:anonymous@anonymous.invalid>"),
            "{from}"
        );
        assert!(plan
            .headers
            .contains(&("Privacy".to_owned(), "id".to_owned())));
    }

    #[test]
    fn internal_calls_keep_the_extension_as_caller() {
        let plan = LegPlan::default();
        assert_eq!(
            plan.from_value("1001", "Desk 1", "denwa.local", "t"),
            "\"Desk 1\" <sip:1001@denwa.local>;tag=t"
        );
        assert_eq!(plan.from_value("1001", "", "d", "t"), "<sip:1001@d>;tag=t");
        assert_eq!(plan.to_value("1002", "d"), "<sip:1002@d>");
    }

    #[test]
    fn a_407_is_answered_with_the_next_cseq_and_credentials() {
        let raw = "INVITE sip:0312345678@192.0.2.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let rsip::SipMessage::Request(invite) = crate::sip::message::parse(raw.as_bytes()).unwrap()
        else {
            panic!()
        };
        let resp_raw = "SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nProxy-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n";
        let rsip::SipMessage::Response(resp) =
            crate::sip::message::parse(resp_raw.as_bytes()).unwrap()
        else {
            panic!()
        };
        let creds = RegisterSettings {
            username: "u1".into(),
            password: "p1".into(),
            realm: None,
            expires: 3600,
        };
        let via = "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKb";
        let retry = authenticated_retry(&invite, &resp, &creds, via, "cn").expect("answered");
        assert_eq!(message::cseq(&retry).map(|(s, _)| s), Some(2));
        let auth = retry
            .headers
            .iter()
            .find_map(|h| match h {
                Header::ProxyAuthorization(a) => Some(a.value().to_owned()),
                _ => None,
            })
            .expect("Proxy-Authorization");
        let parsed = crate::auth::Credentials::parse(&auth).unwrap();
        assert!(crate::auth::verify(&parsed, "INVITE", "p1"));
        assert_eq!(message::via_value(&retry.headers), Some(via));
        let other_realm = RegisterSettings {
            realm: Some("elsewhere".into()),
            ..creds
        };
        assert!(authenticated_retry(&invite, &resp, &other_realm, via, "cn").is_none());
    }
}
