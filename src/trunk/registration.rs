//! Registration to a carrier (RFC 3261 §10.2) as a sans-IO state machine:
//! REGISTER, answer the 401/407 challenge once with the trunk's
//! credentials, refresh at half the granted interval, and after a refusal
//! or no answer retry with exponential back-off (a 503's Retry-After
//! wins). A 423 takes the carrier's Min-Expires and tries again at once.
//!
//! Time is a parameter; the task in `client.rs` feeds it responses and
//! timeouts and sends what it returns. Must not: touch a socket or read
//! the clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Method, Request, Response};

use crate::auth::client::Challenge;
use crate::config::RegisterSettings;
use crate::sip::message;

/// The first retry after a failure; doubled each time up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
pub const MAX_RETRY: Duration = Duration::from_secs(600);
/// A refresh is never scheduled sooner than this after the REGISTER.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// What the registration is doing, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing sent yet.
    Idle,
    /// A REGISTER is out.
    Registering,
    /// The carrier accepted it until `until`.
    Registered { until: Instant },
    /// The last attempt failed (`reason`); the next one is at `at`.
    Retrying { at: Instant, reason: String },
}

/// How denwa addresses itself in a REGISTER (from the task's socket).
#[derive(Debug, Clone, Copy)]
pub struct Local<'a> {
    /// `host:port` for Via and Contact.
    pub sent_by: &'a str,
    /// A fresh Via branch for this request.
    pub branch: &'a str,
    /// A fresh client nonce, used when a challenge is answered.
    pub cnonce: &'a str,
}

/// One trunk's registration.
#[derive(Debug)]
pub struct Registration {
    settings: RegisterSettings,
    registrar: SocketAddr,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The interval asked for (raised by a 423).
    expires: u32,
    status: Status,
    /// When the next REGISTER is due (`None` while one is out).
    next: Option<Instant>,
    /// When the REGISTER out now was sent.
    sent_at: Instant,
    /// The REGISTER out now already carries credentials.
    answered_challenge: bool,
    /// The REGISTER out now ends the registration (Expires: 0).
    unregistering: bool,
    failures: u32,
    /// Registered until then, even while a refresh is failing.
    valid_until: Option<Instant>,
}

impl Registration {
    pub fn new(
        settings: RegisterSettings,
        registrar: SocketAddr,
        call_id: String,
        from_tag: String,
        now: Instant,
    ) -> Registration {
        let expires = settings.expires;
        Registration {
            settings,
            registrar,
            call_id,
            from_tag,
            cseq: 0,
            expires,
            status: Status::Idle,
            next: Some(now),
            sent_at: now,
            answered_challenge: false,
            unregistering: false,
            failures: 0,
            valid_until: None,
        }
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether the carrier holds a registration at `now`.
    pub fn is_registered(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|until| now < until)
    }

    /// Failed attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When [`Registration::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// A REGISTER when one is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, local: Local) -> Option<Request> {
        if self.next.is_none_or(|due| now < due) {
            return None;
        }
        self.next = None;
        self.answered_challenge = false;
        Some(self.send(now, local, self.expires, None))
    }

    /// The transaction got no final response (timer F).
    pub fn handle_no_response(&mut self, now: Instant) {
        if self.next.is_none() {
            self.fail(now, "no response", None);
        }
    }

    /// A response to our REGISTER; may return the next request (the
    /// challenge answered, or a 423 retried).
    pub fn handle_response(
        &mut self,
        resp: &Response,
        now: Instant,
        local: Local,
    ) -> Option<Request> {
        let code = resp.status_code.code();
        let ours =
            message::cseq(resp).is_some_and(|(seq, m)| seq == self.cseq && m == Method::Register);
        if code < 200 || !ours || self.next.is_some() {
            return None;
        }
        if self.unregistering && !matches!(code, 401 | 407) {
            self.unregistering = false;
            self.status = Status::Idle;
            return None;
        }
        match code {
            200..=299 => {
                self.registered(resp, now);
                None
            }
            401 | 407 if !self.answered_challenge => match self.credentials(resp, local) {
                Some(value) => {
                    self.answered_challenge = true;
                    let expires = if self.unregistering { 0 } else { self.expires };
                    Some(self.send(now, local, expires, Some((code, value))))
                }
                None => {
                    self.fail(now, "challenge cannot be answered", None);
                    None
                }
            },
            401 | 407 => {
                self.fail(now, "credentials refused", None);
                None
            }
            423 => match min_expires(resp).filter(|m| *m > self.expires) {
                Some(min) => {
                    self.expires = min;
                    self.answered_challenge = false;
                    Some(self.send(now, local, min, None))
                }
                None => {
                    self.fail(now, "423 without a usable Min-Expires", None);
                    None
                }
            },
            _ => {
                let reason = format!("{code} {}", message::reason_phrase(code));
                self.fail(now, &reason, retry_after(resp));
                None
            }
        }
    }

    fn registered(&mut self, resp: &Response, now: Instant) {
        let granted = granted_expires(resp).unwrap_or(self.expires);
        if granted == 0 {
            self.fail(now, "registration granted for 0 seconds", None);
            return;
        }
        let span = Duration::from_secs(u64::from(granted));
        let until = self.sent_at + span;
        self.valid_until = Some(until);
        self.failures = 0;
        self.status = Status::Registered { until };
        self.next = Some(self.sent_at + (span / 2).max(MIN_REFRESH));
    }

    fn fail(&mut self, now: Instant, reason: &str, retry_after: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let backoff = retry_after.unwrap_or_else(|| backoff(self.failures));
        let mut at = now + backoff;
        // Still registered: refresh again before the registration ends.
        if let Some(until) = self.valid_until.filter(|u| now < *u) {
            let before_end = now + (until - now) / 2;
            at = at.min(before_end.max(now + MIN_REFRESH));
        }
        self.next = Some(at);
        self.status = Status::Retrying {
            at,
            reason: reason.to_owned(),
        };
    }

    /// The credentials header value answering `resp`'s challenge.
    fn credentials(&self, resp: &Response, local: Local) -> Option<String> {
        let proxy = resp.status_code.code() == 407;
        let value = resp.headers.iter().find_map(|h| match (proxy, h) {
            (false, Header::WwwAuthenticate(a)) => Some(a.value()),
            (true, Header::ProxyAuthenticate(a)) => Some(a.value()),
            _ => None,
        })?;
        let challenge = Challenge::parse(value).ok()?;
        if self
            .settings
            .realm
            .as_ref()
            .is_some_and(|r| *r != challenge.realm)
        {
            return None;
        }
        Some(challenge.answer(
            &self.settings.username,
            &self.settings.password,
            "REGISTER",
            &self.request_uri(),
            local.cnonce,
            1,
        ))
    }

    fn request_uri(&self) -> String {
        format!("sip:{}", self.registrar)
    }

    /// Build the next REGISTER (`auth`: the status it answers and the
    /// credentials).
    fn send(
        &mut self,
        now: Instant,
        local: Local,
        expires: u32,
        auth: Option<(u16, String)>,
    ) -> Request {
        self.cseq = self.cseq.wrapping_add(1).max(1);
        self.sent_at = now;
        self.status = Status::Registering;
        let aor = format!("<sip:{}@{}>", self.settings.username, self.registrar.ip());
        let mut h = rsip::Headers::default();
        h.push(Header::Via(rsip::headers::Via::new(format!(
            "SIP/2.0/UDP {};branch={};rport",
            local.sent_by, local.branch
        ))));
        h.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        h.push(Header::From(rsip::headers::From::new(format!(
            "{aor};tag={}",
            self.from_tag
        ))));
        h.push(Header::To(rsip::headers::To::new(aor)));
        h.push(Header::CallId(rsip::headers::CallId::new(
            self.call_id.clone(),
        )));
        h.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{} REGISTER",
            self.cseq
        ))));
        h.push(Header::Contact(rsip::headers::Contact::new(format!(
            "<sip:{}@{}>",
            self.settings.username, local.sent_by
        ))));
        h.push(Header::Expires(rsip::headers::Expires::new(
            expires.to_string(),
        )));
        match auth {
            Some((407, value)) => h.push(Header::ProxyAuthorization(
                rsip::headers::ProxyAuthorization::new(value),
            )),
            Some((_, value)) => h.push(Header::Authorization(rsip::headers::Authorization::new(
                value,
            ))),
            None => {}
        }
        let uri = rsip::Uri::try_from(self.request_uri().as_str()).unwrap_or_default();
        Request {
            method: Method::Register,
            uri,
            version: rsip::Version::V2,
            headers: h,
            body: Vec::new(),
        }
    }

    /// An un-REGISTER (Expires: 0) ending the registration; its challenge
    /// is answered like any other (with Expires: 0 again).
    pub fn unregister(&mut self, now: Instant, local: Local) -> Request {
        self.next = None;
        self.valid_until = None;
        self.unregistering = true;
        self.answered_challenge = false;
        self.send(now, local, 0, None)
    }

    /// An un-REGISTER is out and not finally answered yet.
    pub fn is_unregistering(&self) -> bool {
        self.unregistering
    }
}

/// Back-off after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(8);
    FIRST_RETRY.saturating_mul(1u32 << doublings).min(MAX_RETRY)
}

/// The interval the registrar granted: our Contact's `expires` parameter,
/// else the Expires header.
fn granted_expires(resp: &Response) -> Option<u32> {
    let from_contact = resp.headers.iter().find_map(|h| match h {
        Header::Contact(c) => {
            message::param_of(c.value(), "expires").and_then(|v| v.trim().parse().ok())
        }
        _ => None,
    });
    from_contact.or_else(|| {
        resp.headers.iter().find_map(|h| match h {
            Header::Expires(e) => e.value().trim().parse().ok(),
            _ => None,
        })
    })
}

fn min_expires(resp: &Response) -> Option<u32> {
    resp.headers.iter().find_map(|h| match h {
        Header::MinExpires(m) => m.value().trim().parse().ok(),
        _ => None,
    })
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers.iter().find_map(|h| match h {
        Header::RetryAfter(r) => r
            .value()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Local = Local {
        sent_by: "192.0.2.9:5060",
        branch: "z9hG4bKt",
        cnonce: "cn",
    };

    fn settings() -> RegisterSettings {
        RegisterSettings {
            username: "u1".into(),
            password: "p1".into(),
            realm: None,
            expires: 600,
        }
    }

    fn reg(now: Instant) -> Registration {
        Registration::new(
            settings(),
            "198.51.100.7:5060".parse().unwrap(),
            "cid".into(),
            "tag".into(),
            now,
        )
    }

    /// The response `code` to `req`, with `extra` header lines.
    fn answer(req: &Request, code: u16, extra: &str) -> Response {
        let (seq, _) = message::cseq(req).unwrap();
        let raw = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKt\r\nFrom: <sip:u1@198.51.100.7>;tag=tag\r\nTo: <sip:u1@198.51.100.7>;tag=r\r\nCall-ID: cid\r\nCSeq: {seq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match message::parse(raw.as_bytes()).unwrap() {
            rsip::SipMessage::Response(r) => r,
            _ => unreachable!(),
        }
    }

    fn header(req: &Request, name: &str) -> Option<String> {
        let text =
            String::from_utf8(message::to_bytes(&rsip::SipMessage::Request(req.clone()))).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    }

    #[test]
    fn challenge_answered_then_refreshed_at_half_the_granted_interval() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        assert_eq!(r.poll_timeout(), Some(t0));
        let first = r.handle_timeout(t0, LOCAL).expect("REGISTER now");
        assert_eq!(header(&first, "Expires").as_deref(), Some("600"));
        assert!(header(&first, "Authorization").is_none());
        let challenge = answer(
            &first,
            401,
            "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\"\r\n",
        );
        let t1 = t0 + Duration::from_millis(20);
        let second = r.handle_response(&challenge, t1, LOCAL).expect("answered");
        let creds = header(&second, "Authorization").expect("credentials");
        let parsed = crate::auth::Credentials::parse(&creds).unwrap();
        assert!(crate::auth::verify(&parsed, "REGISTER", "p1"));
        assert_eq!(message::cseq(&second).map(|(s, _)| s), Some(2));
        assert!(r.poll_timeout().is_none(), "waiting for the answer");
        let ok = answer(
            &second,
            200,
            "Contact: <sip:u1@192.0.2.9:5060>;expires=120\r\n",
        );
        assert!(r.handle_response(&ok, t1, LOCAL).is_none());
        assert!(r.is_registered(t1));
        assert_eq!(
            r.status(),
            &Status::Registered {
                until: t1 + Duration::from_secs(120)
            }
        );
        assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_secs(60)));
        assert!(r
            .handle_timeout(t1 + Duration::from_secs(59), LOCAL)
            .is_none());
        let refresh = r
            .handle_timeout(t1 + Duration::from_secs(60), LOCAL)
            .expect("refresh");
        assert_eq!(message::cseq(&refresh).map(|(s, _)| s), Some(3));
        assert!(
            r.is_registered(t1 + Duration::from_secs(61)),
            "still registered meanwhile"
        );
    }

    #[test]
    fn failures_back_off_and_a_success_resets_them() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let req = r.handle_timeout(t0, LOCAL).unwrap();
        assert!(r
            .handle_response(&answer(&req, 403, ""), t0, LOCAL)
            .is_none());
        assert!(!r.is_registered(t0));
        assert_eq!(r.poll_timeout(), Some(t0 + FIRST_RETRY));
        assert!(matches!(r.status(), Status::Retrying { reason, .. } if reason.starts_with("403")));
        let t1 = t0 + FIRST_RETRY;
        r.handle_timeout(t1, LOCAL).unwrap();
        r.handle_no_response(t1 + Duration::from_secs(32));
        assert_eq!(
            r.poll_timeout(),
            Some(t1 + Duration::from_secs(32) + FIRST_RETRY * 2)
        );
        assert_eq!(r.failures(), 2);
        let t2 = r.poll_timeout().unwrap();
        let req = r.handle_timeout(t2, LOCAL).unwrap();
        let busy = answer(&req, 503, "Retry-After: 7\r\n");
        r.handle_response(&busy, t2, LOCAL);
        assert_eq!(
            r.poll_timeout(),
            Some(t2 + Duration::from_secs(7)),
            "Retry-After wins"
        );
        let t3 = r.poll_timeout().unwrap();
        let req = r.handle_timeout(t3, LOCAL).unwrap();
        r.handle_response(&answer(&req, 200, "Expires: 300\r\n"), t3, LOCAL);
        assert_eq!(r.failures(), 0);
        assert_eq!(r.poll_timeout(), Some(t3 + Duration::from_secs(150)));
        assert_eq!(backoff(30), MAX_RETRY);
    }

    #[test]
    fn wrong_credentials_are_not_retried_in_a_loop() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let req = r.handle_timeout(t0, LOCAL).unwrap();
        let ch = "WWW-Authenticate: Digest realm=\"c\", nonce=\"n\"\r\n";
        let again = r
            .handle_response(&answer(&req, 401, ch), t0, LOCAL)
            .unwrap();
        assert!(r
            .handle_response(&answer(&again, 401, ch), t0, LOCAL)
            .is_none());
        assert!(
            matches!(r.status(), Status::Retrying { reason, .. } if reason == "credentials refused")
        );
    }

    #[test]
    fn a_423_raises_the_interval_and_a_stale_response_is_ignored() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let req = r.handle_timeout(t0, LOCAL).unwrap();
        let brief = answer(&req, 423, "Min-Expires: 1800\r\n");
        let again = r.handle_response(&brief, t0, LOCAL).expect("retried");
        assert_eq!(header(&again, "Expires").as_deref(), Some("1800"));
        // A late answer to the first REGISTER changes nothing.
        assert!(r
            .handle_response(&answer(&req, 200, ""), t0, LOCAL)
            .is_none());
        assert!(!r.is_registered(t0));
        r.handle_response(&answer(&again, 200, ""), t0, LOCAL);
        assert_eq!(
            r.status(),
            &Status::Registered {
                until: t0 + Duration::from_secs(1800)
            }
        );
    }

    #[test]
    fn a_failing_refresh_retries_before_the_registration_ends() {
        let t0 = Instant::now();
        let mut r = reg(t0);
        let req = r.handle_timeout(t0, LOCAL).unwrap();
        r.handle_response(&answer(&req, 200, "Expires: 40\r\n"), t0, LOCAL);
        let t1 = t0 + Duration::from_secs(20);
        r.handle_timeout(t1, LOCAL).unwrap();
        r.handle_no_response(t1 + Duration::from_secs(4));
        let next = r.poll_timeout().unwrap();
        assert!(
            next < t0 + Duration::from_secs(40),
            "before the end, not after 30 s of back-off"
        );
        assert!(r.is_registered(next));
        let unreg = r.unregister(next, LOCAL);
        assert_eq!(header(&unreg, "Expires").as_deref(), Some("0"));
        assert!(!r.is_registered(next));
        let ch = "WWW-Authenticate: Digest realm=\"c\", nonce=\"n\"\r\n";
        let answered = r
            .handle_response(&answer(&unreg, 401, ch), next, LOCAL)
            .expect("answered");
        assert_eq!(
            header(&answered, "Expires").as_deref(),
            Some("0"),
            "still ending it"
        );
        assert!(header(&answered, "Authorization").is_some());
        assert!(r.is_unregistering());
        assert!(r
            .handle_response(&answer(&answered, 200, ""), next, LOCAL)
            .is_none());
        assert!(!r.is_unregistering());
        assert_eq!(r.poll_timeout(), None, "nothing more to send");
    }
}
