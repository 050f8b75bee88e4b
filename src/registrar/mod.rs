//! The registrar (RFC 3261 §10.3): processes authenticated REGISTER requests
//! against the [`location`] service and builds the response.
//!
//! [`Registrar::handle_register`] runs after authentication (steps 1–4 are the
//! caller's: the request is for our domain and `user` is the authenticated
//! address of record). It applies steps 5–8: Contact `*`, expiry (per-contact
//! `expires`, else `Expires`, else the default; 423 below the minimum, clamped
//! to the maximum), Call-ID/CSeq ordering, and the 200 OK listing every
//! current binding. All updates of one request succeed or none does. The
//! changes come back as [`BindingChange`]s so the caller can persist them.
//!
//! Pure: no clock (`now_unix` is a parameter), no I/O, no authentication.

pub mod location;
pub mod storage;

use rsip::prelude::*;
use rsip::{Header, Request, Response};
use sha2::{Digest, Sha256};

use crate::config::RegistrarConfig;
use crate::sip::message::{call_id, cseq, finish, from_value, push_decimal, response_for, tag_of};
use crate::sip::Peer;
pub use location::{Binding, Location};
pub use storage::{from_persisted, stored_expiry_cutoff, to_persisted, STORE_LAG_SECS};

/// Most bindings one address of record may hold (memory bound per user).
pub const MAX_CONTACTS_PER_AOR: usize = 16;
/// Longest Contact URI accepted.
const MAX_CONTACT_URI_LEN: usize = 1024;

/// A change to persist after a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    Upsert { user: String, binding: Binding },
    Remove { user: String, contact: String },
    RemoveAll { user: String },
}

/// The response to send and the changes made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    pub response: Response,
    pub changes: Vec<BindingChange>,
}

/// Why a REGISTER was refused; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// 400: malformed Contact, `*` misused, or a mandatory header missing.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// 423: a requested expiry is below `min_expires`.
    #[error("interval too brief")]
    IntervalTooBrief,
    /// 500: same Call-ID with a CSeq not higher than the binding's (§10.3
    /// step 7; the request fails with 500 as the step 8 commit rule says).
    #[error("out-of-order REGISTER")]
    OutOfOrder,
    /// 403: more than [`MAX_CONTACTS_PER_AOR`] bindings would result.
    #[error("too many contacts")]
    TooManyContacts,
}

impl RegisterError {
    fn status(&self) -> u16 {
        match self {
            RegisterError::BadRequest(_) => 400,
            RegisterError::IntervalTooBrief => 423,
            RegisterError::OutOfOrder => 500,
            RegisterError::TooManyContacts => 403,
        }
    }
}

/// One element of the Contact header fields of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ContactSpec {
    Star,
    Uri { uri: String, expires: Option<u32> },
}

/// REGISTER processing over an in-memory location service.
#[derive(Debug, Clone)]
pub struct Registrar {
    config: RegistrarConfig,
    location: Location,
    user_agent: String,
    /// Makes To tags unpredictable across processes.
    tag_salt: [u8; 16],
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Self {
        Registrar {
            config,
            location: Location::new(),
            user_agent: "denwa".to_owned(),
            tag_salt: rand::random(),
        }
    }

    /// The `Server` header value of responses.
    pub fn set_user_agent(&mut self, user_agent: impl Into<String>) {
        self.user_agent = user_agent.into();
    }

    /// New expiry limits (reload); existing bindings are kept as they are.
    pub fn reconfigure(&mut self, config: RegistrarConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Load a persisted binding at startup.
    pub fn restore(&mut self, user: &str, binding: Binding) {
        self.location.upsert(user, binding);
    }

    /// Live bindings of `user`.
    pub fn lookup(&self, user: &str, now_unix: u64) -> Vec<Binding> {
        self.location.lookup(user, now_unix)
    }

    /// Drop expired bindings; returns (user, contact URI) of each.
    pub fn purge_expired(&mut self, now_unix: u64) -> Vec<(String, String)> {
        self.location.purge_expired(now_unix)
    }

    /// Stored bindings (expired ones count until purged).
    pub fn binding_count(&self) -> usize {
        self.location.count()
    }

    /// Process a REGISTER from `source` already authenticated as `user`.
    pub fn handle_register(
        &mut self,
        req: &Request,
        user: &str,
        source: Peer,
        now_unix: u64,
    ) -> RegisterOutcome {
        match self.apply(req, user, source, now_unix) {
            Ok(changes) => RegisterOutcome {
                response: self.ok_response(req, user, now_unix),
                changes,
            },
            Err(e) => RegisterOutcome {
                response: self.error_response(req, &e),
                changes: Vec::new(),
            },
        }
    }

    /// Steps 5–7: validate everything first, then commit.
    fn apply(
        &mut self,
        req: &Request,
        user: &str,
        source: Peer,
        now_unix: u64,
    ) -> Result<Vec<BindingChange>, RegisterError> {
        let call_id = call_id(&req.headers).ok_or(RegisterError::BadRequest("no Call-ID"))?;
        let (seq, _) = cseq(req).ok_or(RegisterError::BadRequest("no CSeq"))?;
        let contacts = contact_specs(req)?;
        let header_expires = req
            .expires_header()
            .and_then(|e| parse_delta_seconds(e.value()));
        if contacts.contains(&ContactSpec::Star) {
            if contacts.len() != 1 || header_expires != Some(0) {
                return Err(RegisterError::BadRequest(
                    "Contact * needs Expires: 0 alone",
                ));
            }
            return self.remove_all(user, call_id, seq, now_unix);
        }
        let plan = self.plan(&contacts, header_expires)?;
        self.check_plan(user, &plan, call_id, seq, now_unix)?;
        let received = Received {
            source,
            call_id,
            cseq: seq,
            user_agent: req.user_agent_header().map(|h| h.value().to_owned()),
        };
        Ok(self.commit(user, plan, &received, now_unix))
    }

    /// Each Contact URI with its granted expiry (0 = remove).
    fn plan(
        &self,
        contacts: &[ContactSpec],
        header_expires: Option<u32>,
    ) -> Result<Vec<(String, u32)>, RegisterError> {
        let mut plan = Vec::with_capacity(contacts.len());
        for c in contacts {
            let ContactSpec::Uri { uri, expires } = c else {
                continue;
            };
            let requested = expires
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if requested != 0 && requested < self.config.min_expires {
                return Err(RegisterError::IntervalTooBrief);
            }
            plan.push((uri.clone(), requested.min(self.config.max_expires)));
        }
        Ok(plan)
    }

    /// Ordering (§10.3 step 7) and the per-user bound, before any change.
    fn check_plan(
        &self,
        user: &str,
        plan: &[(String, u32)],
        call_id: &str,
        seq: u32,
        now_unix: u64,
    ) -> Result<(), RegisterError> {
        let out_of_order = plan.iter().any(|(uri, _)| {
            self.location
                .live(user, now_unix)
                .any(|b| b.contact_uri == *uri && !b.accepts_update(call_id, seq))
        });
        if out_of_order {
            return Err(RegisterError::OutOfOrder);
        }
        let mut after: Vec<&str> = self
            .location
            .live(user, now_unix)
            .map(|b| b.contact_uri.as_str())
            .collect();
        for (uri, expires) in plan {
            after.retain(|u| u != uri);
            if *expires != 0 {
                after.push(uri);
            }
        }
        if after.len() > MAX_CONTACTS_PER_AOR {
            return Err(RegisterError::TooManyContacts);
        }
        Ok(())
    }

    fn commit(
        &mut self,
        user: &str,
        plan: Vec<(String, u32)>,
        received: &Received<'_>,
        now_unix: u64,
    ) -> Vec<BindingChange> {
        let mut changes = Vec::new();
        for (uri, expires) in plan {
            if expires == 0 {
                if self.location.remove(user, &uri) {
                    changes.push(BindingChange::Remove {
                        user: user.to_owned(),
                        contact: uri,
                    });
                }
                continue;
            }
            let expires_at_unix = now_unix.saturating_add(u64::from(expires));
            let mut binding = Binding {
                contact_uri: uri,
                expires_at_unix,
                stored_expires_at_unix: expires_at_unix,
                received: received.source,
                call_id: received.call_id.to_owned(),
                cseq: received.cseq,
                user_agent: received.user_agent.clone(),
            };
            let old = self.location.get(user, &binding.contact_uri);
            if storage::must_store(old, &binding) {
                changes.push(BindingChange::Upsert {
                    user: user.to_owned(),
                    binding: binding.clone(),
                });
            } else if let Some(old) = old {
                binding.stored_expires_at_unix = old.stored_expires_at_unix;
            }
            self.location.upsert(user, binding);
        }
        changes
    }

    /// `Contact: *` with `Expires: 0`: remove every binding, unless one of
    /// them was made by this Call-ID with a CSeq not lower than this one.
    fn remove_all(
        &mut self,
        user: &str,
        call_id: &str,
        seq: u32,
        now_unix: u64,
    ) -> Result<Vec<BindingChange>, RegisterError> {
        if self
            .location
            .live(user, now_unix)
            .any(|b| !b.accepts_update(call_id, seq))
        {
            return Err(RegisterError::OutOfOrder);
        }
        if self.location.remove_all(user) == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![BindingChange::RemoveAll {
            user: user.to_owned(),
        }])
    }

    /// 200 OK listing every live binding with its remaining time (step 8).
    fn ok_response(&self, req: &Request, user: &str, now_unix: u64) -> Response {
        let mut resp = response_for(req, 200, Some(&self.to_tag(req)));
        for b in self.location.live(user, now_unix) {
            let mut value = String::with_capacity(b.contact_uri.len() + 24);
            value.push('<');
            value.push_str(&b.contact_uri);
            value.push_str(">;expires=");
            push_decimal(&mut value, b.remaining(now_unix));
            resp.headers
                .push(Header::Contact(rsip::headers::Contact::new(value)));
        }
        resp.headers
            .push(Header::Date(rsip::headers::Date::new(http_date(now_unix))));
        resp.headers = finish(std::mem::take(&mut resp.headers), 0, &self.user_agent);
        resp
    }

    fn error_response(&self, req: &Request, e: &RegisterError) -> Response {
        let mut resp = response_for(req, e.status(), Some(&self.to_tag(req)));
        if *e == RegisterError::IntervalTooBrief {
            let min = rsip::headers::MinExpires::from(self.config.min_expires);
            resp.headers.push(Header::MinExpires(min));
        }
        resp.headers = finish(std::mem::take(&mut resp.headers), 0, &self.user_agent);
        resp
    }

    /// A To tag stable for one registration (Call-ID and From tag).
    fn to_tag(&self, req: &Request) -> String {
        let from_tag = from_value(&req.headers).and_then(tag_of).unwrap_or("");
        let mut h = Sha256::new();
        h.update(self.tag_salt);
        h.update(call_id(&req.headers).unwrap_or("").as_bytes());
        h.update([0u8]);
        h.update(from_tag.as_bytes());
        crate::auth::nonce::hex_string(&h.finalize()[..8])
    }
}

/// What a new binding records about the REGISTER that made it.
struct Received<'a> {
    source: Peer,
    call_id: &'a str,
    cseq: u32,
    user_agent: Option<String>,
}

/// Every Contact element of the request (several header fields, and
/// comma-separated values within one).
fn contact_specs(req: &Request) -> Result<Vec<ContactSpec>, RegisterError> {
    let mut specs = Vec::new();
    for h in req.headers.iter() {
        let value = match h {
            Header::Contact(c) => c.value(),
            Header::Other(name, value) if name.eq_ignore_ascii_case("m") => value.as_str(),
            _ => continue,
        };
        for element in split_top_level(value) {
            specs.push(parse_contact(element)?);
        }
    }
    Ok(specs)
}

/// Split on commas outside quoted strings and `<...>`.
fn split_top_level(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped, mut in_angle) = (0, false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                parts.extend(value.get(start..i));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.extend(value.get(start..));
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// One Contact element: `*`, `name-addr *(;param)` or `addr-spec *(;param)`.
fn parse_contact(element: &str) -> Result<ContactSpec, RegisterError> {
    let element = element.trim();
    if element == "*" {
        return Ok(ContactSpec::Star);
    }
    let (uri, params) = match angle_bracketed(element)? {
        Some(split) => split,
        // Without brackets, parameters after `;` belong to the header field.
        None => element.split_once(';').unwrap_or((element, "")),
    };
    let uri = uri.trim();
    if !valid_contact_uri(uri) {
        return Err(RegisterError::BadRequest("bad Contact URI"));
    }
    let expires = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("expires")
            .then(|| parse_delta_seconds(v))
            .flatten()
    });
    Ok(ContactSpec::Uri {
        uri: uri.to_owned(),
        expires,
    })
}

/// For a name-addr, (URI inside `<>`, the parameters after `>`).
fn angle_bracketed(element: &str) -> Result<Option<(&str, &str)>, RegisterError> {
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, c) in element.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => {
                let rest = element.get(i + 1..).unwrap_or("");
                let (uri, after) = rest
                    .split_once('>')
                    .ok_or(RegisterError::BadRequest("unclosed <"))?;
                return Ok(Some((uri, after)));
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(RegisterError::BadRequest("unclosed quote in Contact"));
    }
    Ok(None)
}

fn valid_contact_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
    scheme_ok
        && !rest.is_empty()
        && uri.len() <= MAX_CONTACT_URI_LEN
        && !uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

/// `delta-seconds`: digits only; values beyond 2^32-1 saturate (RFC 3261
/// §20.19). Anything else is `None` (treated as absent).
fn parse_delta_seconds(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u32>().unwrap_or(u32::MAX))
}

/// RFC 1123 date (RFC 3261 §20.17) for unix seconds.
fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let weekday = DAYS.get(((days + 4) % 7) as usize).unwrap_or(&"Sun");
    let (year, month, day) = civil_from_days(days);
    let month = MONTHS
        .get((month as usize).saturating_sub(1))
        .unwrap_or(&"Jan");
    let mut out = String::with_capacity(29);
    out.push_str(weekday);
    out.push_str(", ");
    push_two_digits(&mut out, day);
    out.push(' ');
    out.push_str(month);
    out.push(' ');
    push_decimal(&mut out, year);
    for (sep, n) in [
        (' ', secs / 3600),
        (':', secs % 3600 / 60),
        (':', secs % 60),
    ] {
        out.push(sep);
        push_two_digits(&mut out, n);
    }
    out.push_str(" GMT");
    out
}

/// Append `n` (below 100) with a leading zero.
fn push_two_digits(out: &mut String, n: u64) {
    if n < 10 {
        out.push('0');
    }
    push_decimal(out, n);
}

/// (year, month 1–12, day 1–31) of a count of days since 1970-01-01, by
/// the proleptic Gregorian calendar (400-year eras of 146 097 days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::TransportKind;

    const NOW: u64 = 1_700_000_000;

    fn config() -> RegistrarConfig {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
        }
    }

    fn peer() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            remote: "203.0.113.5:40000".parse().expect("address"),
            local: "192.0.2.1:5060".parse().expect("address"),
        }
    }

    /// A REGISTER for 1001 with the given CSeq and extra header lines.
    fn register(call_id: &str, seq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:pbx.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 203.0.113.5:40000;branch=z9hG4bKnashds7\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@pbx.example>;tag=456248\r\n\
             To: <sip:1001@pbx.example>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {seq} REGISTER\r\n\
             User-Agent: deskphone/1.0\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match rsip::SipMessage::try_from(text.as_bytes()) {
            Ok(rsip::SipMessage::Request(r)) => r,
            other => panic!("test request does not parse: {other:?}"),
        }
    }

    fn contacts_of(resp: &Response) -> Vec<String> {
        resp.headers
            .iter()
            .filter_map(|h| match h {
                Header::Contact(c) => Some(c.value().to_string()),
                _ => None,
            })
            .collect()
    }

    fn code(out: &RegisterOutcome) -> u16 {
        out.response.status_code.code()
    }

    fn registrar() -> Registrar {
        Registrar::new(config())
    }

    #[test]
    fn add_lists_the_binding_and_reports_an_upsert() {
        let mut r = registrar();
        let req = register(
            "c1",
            1,
            "Contact: <sip:1001@203.0.113.5:40000;transport=udp>;expires=300\r\n",
        );
        let out = r.handle_register(&req, "1001", peer(), NOW);
        assert_eq!(code(&out), 200);
        assert_eq!(
            contacts_of(&out.response),
            vec!["<sip:1001@203.0.113.5:40000;transport=udp>;expires=300"]
        );
        let text = out.response.to_string();
        assert!(
            text.contains("Date: Tue, 14 Nov 2023 22:13:20 GMT"),
            "{text}"
        );
        assert!(text.contains("To: <sip:1001@pbx.example>;tag="), "{text}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        let [BindingChange::Upsert { user, binding }] = out.changes.as_slice() else {
            panic!("expected one upsert, got {:?}", out.changes);
        };
        assert_eq!(user, "1001");
        assert_eq!(
            binding.contact_uri,
            "sip:1001@203.0.113.5:40000;transport=udp"
        );
        assert_eq!(binding.expires_at_unix, NOW + 300);
        assert_eq!(binding.received, peer());
        assert_eq!(binding.call_id, "c1");
        assert_eq!(binding.cseq, 1);
        assert_eq!(binding.user_agent.as_deref(), Some("deskphone/1.0"));
        assert_eq!(r.lookup("1001", NOW).len(), 1);
    }

    #[test]
    fn refresh_updates_expiry_and_default_and_header_expires_apply() {
        let mut r = registrar();
        let out = r.handle_register(
            &register("c1", 1, "Contact: <sip:a@x>\r\n"),
            "1001",
            peer(),
            NOW,
        );
        assert_eq!(
            contacts_of(&out.response),
            vec!["<sip:a@x>;expires=600"],
            "default"
        );
        let req = register("c1", 2, "Contact: <sip:a@x>\r\nExpires: 120\r\n");
        let out = r.handle_register(&req, "1001", peer(), NOW + 100);
        assert_eq!(code(&out), 200);
        assert_eq!(contacts_of(&out.response), vec!["<sip:a@x>;expires=120"]);
        assert_eq!(r.binding_count(), 1);
        assert_eq!(r.lookup("1001", NOW)[0].cseq, 2);
        // The per-contact parameter wins over the header.
        let req = register("c1", 3, "Contact: <sip:a@x>;expires=90\r\nExpires: 120\r\n");
        let out = r.handle_register(&req, "1001", peer(), NOW + 200);
        assert_eq!(contacts_of(&out.response), vec!["<sip:a@x>;expires=90"]);
    }

    #[test]
    fn frequent_refreshes_reach_the_store_only_when_the_expiry_moved_far() {
        let mut r = registrar();
        let req = |seq| register("c1", seq, "Contact: <sip:a@x>\r\n");
        let stored = |out: &RegisterOutcome| match out.changes.as_slice() {
            [BindingChange::Upsert { binding, .. }] => Some(binding.expires_at_unix),
            [] => None,
            other => panic!("unexpected changes {other:?}"),
        };
        assert_eq!(
            stored(&r.handle_register(&req(1), "1001", peer(), NOW)),
            Some(NOW + 600)
        );
        let out = r.handle_register(&req(2), "1001", peer(), NOW + STORE_LAG_SECS);
        assert_eq!(stored(&out), None, "the store lags by the allowed amount");
        assert_eq!(contacts_of(&out.response), vec!["<sip:a@x>;expires=600"]);
        assert_eq!(
            r.lookup("1001", NOW)[0].expires_at_unix,
            NOW + STORE_LAG_SECS + 600
        );
        let later = NOW + STORE_LAG_SECS + 1;
        assert_eq!(
            stored(&r.handle_register(&req(3), "1001", peer(), later)),
            Some(later + 600)
        );
        // Moving to another source port is always written.
        let mut moved = peer();
        moved.remote.set_port(40002);
        assert!(stored(&r.handle_register(&req(4), "1001", moved, later)).is_some());
    }

    #[test]
    fn expires_zero_removes_one_contact() {
        let mut r = registrar();
        let req = register("c1", 1, "Contact: <sip:a@x>, <sip:b@x>\r\n");
        r.handle_register(&req, "1001", peer(), NOW);
        let req = register("c1", 2, "Contact: <sip:a@x>;expires=0\r\n");
        let out = r.handle_register(&req, "1001", peer(), NOW + 1);
        assert_eq!(code(&out), 200);
        assert_eq!(contacts_of(&out.response), vec!["<sip:b@x>;expires=599"]);
        assert_eq!(
            out.changes,
            vec![BindingChange::Remove {
                user: "1001".into(),
                contact: "sip:a@x".into()
            }]
        );
        // Removing something absent changes nothing.
        let req = register("c1", 3, "Contact: <sip:zz@x>\r\nExpires: 0\r\n");
        assert!(r
            .handle_register(&req, "1001", peer(), NOW + 2)
            .changes
            .is_empty());
    }

    #[test]
    fn star_with_expires_zero_removes_all_else_400() {
        let mut r = registrar();
        let req = register(
            "c1",
            1,
            "Contact: <sip:a@x>\r\nContact: \"Desk, 2\" <sip:b@x>\r\n",
        );
        r.handle_register(&req, "1001", peer(), NOW);
        assert_eq!(r.binding_count(), 2);
        for bad in [
            "Contact: *\r\n",
            "Contact: *\r\nExpires: 30\r\n",
            "Contact: *, <sip:c@x>\r\nExpires: 0\r\n",
        ] {
            let out = r.handle_register(&register("c2", 1, bad), "1001", peer(), NOW);
            assert_eq!(code(&out), 400, "{bad}");
            assert!(out.changes.is_empty());
        }
        let out = r.handle_register(
            &register("c2", 1, "Contact: *\r\nExpires: 0\r\n"),
            "1001",
            peer(),
            NOW,
        );
        assert_eq!(code(&out), 200);
        assert!(contacts_of(&out.response).is_empty());
        assert_eq!(
            out.changes,
            vec![BindingChange::RemoveAll {
                user: "1001".into()
            }]
        );
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn star_does_not_undo_a_newer_registration_of_the_same_call_id() {
        let mut r = registrar();
        r.handle_register(
            &register("c1", 5, "Contact: <sip:a@x>\r\n"),
            "1001",
            peer(),
            NOW,
        );
        let out = r.handle_register(
            &register("c1", 5, "Contact: *\r\nExpires: 0\r\n"),
            "1001",
            peer(),
            NOW,
        );
        assert_eq!(code(&out), 500);
        assert_eq!(r.binding_count(), 1);
    }

    #[test]
    fn below_minimum_is_423_with_min_expires() {
        let mut r = registrar();
        let req = register("c1", 1, "Contact: <sip:a@x>;expires=30, <sip:b@x>\r\n");
        let out = r.handle_register(&req, "1001", peer(), NOW);
        assert_eq!(code(&out), 423);
        assert!(out.changes.is_empty(), "nothing committed");
        assert_eq!(r.binding_count(), 0);
        assert!(out.response.to_string().contains("Min-Expires: 60\r\n"));
        let req = register("c1", 2, "Contact: <sip:a@x>\r\nExpires: 59\r\n");
        assert_eq!(code(&r.handle_register(&req, "1001", peer(), NOW)), 423);
    }

    #[test]
    fn above_maximum_is_clamped() {
        let mut r = registrar();
        let req = register("c1", 1, "Contact: <sip:a@x>;expires=99999999999\r\n");
        let out = r.handle_register(&req, "1001", peer(), NOW);
        assert_eq!(code(&out), 200);
        assert_eq!(contacts_of(&out.response), vec!["<sip:a@x>;expires=3600"]);
    }

    #[test]
    fn no_contact_is_a_query() {
        let mut r = registrar();
        let out = r.handle_register(&register("c1", 1, ""), "1001", peer(), NOW);
        assert_eq!(code(&out), 200);
        assert!(contacts_of(&out.response).is_empty());
        r.handle_register(
            &register("c1", 2, "Contact: <sip:a@x>\r\n"),
            "1001",
            peer(),
            NOW,
        );
        let out = r.handle_register(&register("c9", 1, ""), "1001", peer(), NOW + 10);
        assert_eq!(contacts_of(&out.response), vec!["<sip:a@x>;expires=590"]);
        assert!(out.changes.is_empty());
    }

    #[test]
    fn multiple_contacts_from_several_devices() {
        let mut r = registrar();
        r.handle_register(
            &register("desk", 1, "Contact: <sip:1001@10.0.0.2>\r\n"),
            "1001",
            peer(),
            NOW,
        );
        let req = register("soft", 1, "Contact: sip:1001@10.0.0.3;expires=120\r\n");
        let out = r.handle_register(&req, "1001", peer(), NOW);
        assert_eq!(
            contacts_of(&out.response),
            vec![
                "<sip:1001@10.0.0.2>;expires=600",
                "<sip:1001@10.0.0.3>;expires=120"
            ]
        );
        // Another user's bindings are separate.
        r.handle_register(
            &register("x", 1, "Contact: <sip:1002@10.0.0.4>\r\n"),
            "1002",
            peer(),
            NOW,
        );
        assert_eq!(r.lookup("1001", NOW).len(), 2);
        assert_eq!(r.lookup("1002", NOW).len(), 1);
    }

    #[test]
    fn expired_bindings_vanish_and_are_purged() {
        let mut r = registrar();
        r.handle_register(
            &register("c1", 1, "Contact: <sip:a@x>;expires=60\r\n"),
            "1001",
            peer(),
            NOW,
        );
        r.handle_register(
            &register("c1", 2, "Contact: <sip:b@x>;expires=600\r\n"),
            "1001",
            peer(),
            NOW,
        );
        assert_eq!(r.lookup("1001", NOW + 60).len(), 1);
        let out = r.handle_register(&register("q", 1, ""), "1001", peer(), NOW + 60);
        assert_eq!(contacts_of(&out.response), vec!["<sip:b@x>;expires=540"]);
        assert_eq!(
            r.purge_expired(NOW + 60),
            vec![("1001".into(), "sip:a@x".into())]
        );
        assert_eq!(r.binding_count(), 1);
    }

    #[test]
    fn out_of_order_cseq_is_500_and_changes_nothing() {
        let mut r = registrar();
        r.handle_register(
            &register("c1", 10, "Contact: <sip:a@x>;expires=600\r\n"),
            "1001",
            peer(),
            NOW,
        );
        for seq in [9, 10] {
            let req = register("c1", seq, "Contact: <sip:a@x>;expires=0, <sip:b@x>\r\n");
            let out = r.handle_register(&req, "1001", peer(), NOW + 1);
            assert_eq!(code(&out), 500, "CSeq {seq}");
            assert!(out.changes.is_empty());
        }
        assert_eq!(r.lookup("1001", NOW + 1).len(), 1, "b was not added either");
        // A different Call-ID may update regardless of CSeq.
        let req = register("c2", 1, "Contact: <sip:a@x>;expires=0\r\n");
        assert_eq!(code(&r.handle_register(&req, "1001", peer(), NOW + 1)), 200);
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn malformed_contacts_are_400() {
        let mut r = registrar();
        for bad in [
            "Contact: <sip:a@x\r\n",
            "Contact: \"unclosed <sip:a@x>\r\n",
            "Contact: <http://example.com>\r\n",
            "Contact: <sip:>\r\n",
            "Contact: garbage\r\n",
        ] {
            let out = r.handle_register(&register("c1", 1, bad), "1001", peer(), NOW);
            assert_eq!(code(&out), 400, "{bad}");
        }
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn too_many_contacts_are_refused() {
        let mut r = registrar();
        let list: Vec<String> = (0..=MAX_CONTACTS_PER_AOR)
            .map(|i| format!("<sip:d{i}@x>"))
            .collect();
        let req = register("c1", 1, &format!("Contact: {}\r\n", list.join(", ")));
        let out = r.handle_register(&req, "1001", peer(), NOW);
        assert_eq!(code(&out), 403);
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn restore_and_persisted_round_trip() {
        let mut r = registrar();
        let out = r.handle_register(
            &register("c1", 4, "Contact: <sip:a@x>\r\n"),
            "1001",
            peer(),
            NOW,
        );
        let BindingChange::Upsert { binding, .. } = &out.changes[0] else {
            panic!("expected an upsert");
        };
        let stored = to_persisted("1001", binding);
        let (user, back) = from_persisted(&stored).expect("round trip");
        assert_eq!(back.stored_expires_at_unix, binding.expires_at_unix);
        let mut fresh = registrar();
        fresh.restore(&user, back);
        assert_eq!(fresh.location().lookup("1001", NOW).len(), 1);
        // The restored binding still guards ordering.
        let req = register("c1", 4, "Contact: <sip:a@x>;expires=0\r\n");
        assert_eq!(code(&fresh.handle_register(&req, "1001", peer(), NOW)), 500);
    }

    #[test]
    fn helpers_parse_edge_cases() {
        assert_eq!(parse_delta_seconds(" 42 "), Some(42));
        assert_eq!(parse_delta_seconds("4294967296"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(
            split_top_level("\"a,b\" <sip:x@y;a=1,2>;q=1, sip:z@w ,"),
            vec!["\"a,b\" <sip:x@y;a=1,2>;q=1", "sip:z@w"]
        );
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            parse_contact("Bob <SIPS:bob@x>;Expires=7;q=0.5"),
            Ok(ContactSpec::Uri {
                uri: "SIPS:bob@x".into(),
                expires: Some(7)
            })
        );
        assert_eq!(
            parse_contact("sip:bob@x;expires=bad"),
            Ok(ContactSpec::Uri {
                uri: "sip:bob@x".into(),
                expires: None
            })
        );
    }
}
