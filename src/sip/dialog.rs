//! Dialog state (RFC 3261 §12): the identifiers, route set, remote target and
//! CSeq counters of one SIP dialog, and the construction of in-dialog requests.
//!
//! Pure: no sockets and no clock. The B2BUA (in [`crate::call`]) holds one
//! `Dialog` per leg.

use rsip::prelude::*;
use rsip::{Header, Headers, Method, Request, Response};

use super::message::{call_id, cseq, tag_of};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DialogError {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error("remote target is not a SIP URI: {0}")]
    Target(String),
}

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub role: Role,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From/To header value, without tag.
    pub local_uri: String,
    /// The peer's From/To header value, without tag.
    pub remote_uri: String,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: rsip::Uri,
    /// Route header values for in-dialog requests, in sending order.
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

/// The URI inside a Contact / Route style value: `"x" <sip:a@b>;p` → `sip:a@b`.
pub fn uri_in(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// A header value with its `;tag=` parameter removed.
pub fn without_tag(value: &str) -> String {
    match tag_of(value) {
        Some(tag) => value
            .replacen(&format!(";tag={tag}"), "", 1)
            .trim()
            .to_owned(),
        None => value.trim().to_owned(),
    }
}

fn header_value<'a>(
    headers: &'a Headers,
    pick: fn(&'a Header) -> Option<&'a str>,
) -> Option<&'a str> {
    headers.iter().find_map(pick)
}

fn from_value(h: &Header) -> Option<&str> {
    match h {
        Header::From(f) => Some(f.value()),
        _ => None,
    }
}

fn to_value(h: &Header) -> Option<&str> {
    match h {
        Header::To(t) => Some(t.value()),
        _ => None,
    }
}

fn contact_target(headers: &Headers) -> Result<rsip::Uri, DialogError> {
    let contact = header_value(headers, |h| match h {
        Header::Contact(c) => Some(c.value()),
        _ => None,
    })
    .ok_or(DialogError::Header("Contact"))?;
    let uri = uri_in(contact);
    rsip::Uri::try_from(uri).map_err(|_| DialogError::Target(uri.to_owned()))
}

fn record_routes(headers: &Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .collect()
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with `local_tag`.
    pub fn uas(invite: &Request, local_tag: &str) -> Result<Dialog, DialogError> {
        let from = header_value(&invite.headers, from_value).ok_or(DialogError::Header("From"))?;
        let to = header_value(&invite.headers, to_value).ok_or(DialogError::Header("To"))?;
        let (seq, _) = cseq(invite).ok_or(DialogError::Header("CSeq"))?;
        Ok(Dialog {
            role: Role::Uas,
            call_id: call_id(&invite.headers)
                .ok_or(DialogError::Header("Call-ID"))?
                .to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: tag_of(from).ok_or(DialogError::Header("From"))?.to_owned(),
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            remote_target: contact_target(&invite.headers)?,
            route_set: record_routes(&invite.headers),
            local_cseq: 0,
            remote_cseq: seq,
        })
    }

    /// The dialog a UAC gets from a 2xx (or 1xx with To tag) to `invite`.
    pub fn uac(invite: &Request, resp: &Response) -> Result<Dialog, DialogError> {
        let from = header_value(&invite.headers, from_value).ok_or(DialogError::Header("From"))?;
        let to = header_value(&resp.headers, to_value).ok_or(DialogError::Header("To"))?;
        let (seq, _) = cseq(invite).ok_or(DialogError::Header("CSeq"))?;
        let mut route_set = record_routes(&resp.headers);
        route_set.reverse();
        Ok(Dialog {
            role: Role::Uac,
            call_id: call_id(&invite.headers)
                .ok_or(DialogError::Header("Call-ID"))?
                .to_owned(),
            local_tag: tag_of(from).ok_or(DialogError::Header("From"))?.to_owned(),
            remote_tag: tag_of(to).ok_or(DialogError::Header("To"))?.to_owned(),
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            remote_target: contact_target(&resp.headers)?,
            route_set,
            local_cseq: seq,
            remote_cseq: 0,
        })
    }

    /// Update the remote target from a target-refresh request or response.
    pub fn refresh_target(&mut self, headers: &Headers) {
        if let Ok(uri) = contact_target(headers) {
            self.remote_target = uri;
        }
    }

    /// Accept a request's CSeq; false when it is out of order (§12.2.2: 500).
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        if seq <= self.remote_cseq && self.remote_cseq != 0 {
            return false;
        }
        self.remote_cseq = seq;
        true
    }

    /// Build an in-dialog request. `via` is the complete Via value (with a
    /// fresh branch), `contact` our Contact URI. ACK reuses `ack_cseq`;
    /// every other method takes the next local CSeq.
    pub fn request(
        &mut self,
        method: Method,
        via: &str,
        contact: &str,
        ack_cseq: Option<u32>,
    ) -> Request {
        let seq = match (method, ack_cseq) {
            (Method::Ack, Some(seq)) => seq,
            _ => {
                self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
                self.local_cseq
            }
        };
        let mut headers = Headers::default();
        headers.push(Header::Via(rsip::headers::Via::new(via)));
        headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        for r in &self.route_set {
            headers.push(Header::Route(rsip::headers::Route::new(r.clone())));
        }
        headers.push(Header::From(rsip::headers::From::new(format!(
            "{};tag={}",
            self.local_uri, self.local_tag
        ))));
        headers.push(Header::To(rsip::headers::To::new(format!(
            "{};tag={}",
            self.remote_uri, self.remote_tag
        ))));
        headers.push(Header::CallId(rsip::headers::CallId::new(
            self.call_id.clone(),
        )));
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{seq} {method}"
        ))));
        headers.push(Header::Contact(rsip::headers::Contact::new(format!(
            "<{contact}>"
        ))));
        Request {
            method,
            uri: self.remote_target.clone(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request {
        Request::try_from(text.replace('\n', "\r\n").as_bytes()).expect("fixture parses")
    }

    fn resp(text: &str) -> Response {
        Response::try_from(text.replace('\n', "\r\n").as_bytes()).expect("fixture parses")
    }

    const INVITE: &str = "INVITE sip:1002@denwa SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\nFrom: \"A\" <sip:1001@denwa>;tag=aaa\nTo: <sip:1002@denwa>\nCall-ID: c1\nCSeq: 7 INVITE\nContact: <sip:1001@10.0.0.1:5060>\nContent-Length: 0\n\n";

    #[test]
    fn uas_dialog_takes_route_set_in_order_and_targets_contact() {
        let invite = req(INVITE);
        let mut d = Dialog::uas(&invite, "bbb").expect("dialog");
        assert_eq!(d.remote_tag, "aaa");
        assert_eq!(d.route_set, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(d.remote_cseq, 7);
        let bye = d.request(
            Method::Bye,
            "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKx",
            "sip:denwa@10.0.0.9",
            None,
        );
        let text = bye.to_string();
        assert!(
            text.starts_with("BYE sip:1001@10.0.0.1:5060 SIP/2.0"),
            "{text}"
        );
        assert!(text.contains("From: <sip:1002@denwa>;tag=bbb"), "{text}");
        assert!(
            text.contains("To: \"A\" <sip:1001@denwa>;tag=aaa"),
            "{text}"
        );
        assert!(text.contains("CSeq: 1 BYE"), "{text}");
        assert!(!d.accept_remote_cseq(7));
        assert!(d.accept_remote_cseq(8));
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_continues_cseq() {
        let invite = req(INVITE);
        let ok = resp("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\nRecord-Route: <sip:p1;lr>\nRecord-Route: <sip:p2;lr>\nFrom: \"A\" <sip:1001@denwa>;tag=aaa\nTo: <sip:1002@denwa>;tag=ccc\nCall-ID: c1\nCSeq: 7 INVITE\nContact: <sip:1002@10.0.0.2:5070;transport=udp>\nContent-Length: 0\n\n");
        let mut d = Dialog::uac(&invite, &ok).expect("dialog");
        assert_eq!(d.route_set, vec!["<sip:p2;lr>", "<sip:p1;lr>"]);
        let ack = d.request(
            Method::Ack,
            "SIP/2.0/UDP x;branch=z9hG4bKa",
            "sip:d@x",
            Some(7),
        );
        assert!(ack.to_string().contains("CSeq: 7 ACK"));
        let bye = d.request(
            Method::Bye,
            "SIP/2.0/UDP x;branch=z9hG4bKb",
            "sip:d@x",
            None,
        );
        assert!(bye.to_string().contains("CSeq: 8 BYE"));
        // URI parameters compare case-insensitively (RFC 3261 §19.1.4).
        assert_eq!(
            bye.uri.to_string().to_ascii_lowercase(),
            "sip:1002@10.0.0.2:5070;transport=udp"
        );
    }

    #[test]
    fn missing_contact_is_an_error() {
        let invite = req(&INVITE.replace("Contact: <sip:1001@10.0.0.1:5060>\n", ""));
        assert_eq!(
            Dialog::uas(&invite, "t").err(),
            Some(DialogError::Header("Contact"))
        );
    }
}
