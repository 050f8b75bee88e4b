//! Digest authentication of SIP requests (RFC 3261 §22, RFC 7616, RFC 8760)
//! with per-source lockout.
//!
//! [`Authenticator`] answers one question per request: is it authenticated,
//! and if not, what goes back. REGISTER is challenged as a registrar (401,
//! `WWW-Authenticate` / `Authorization`), INVITE as a proxy (407,
//! `Proxy-Authenticate` / `Proxy-Authorization`).
//!
//! Rules it keeps:
//! - An unknown user and a wrong password are indistinguishable: the same
//!   fresh challenge, the same status, the same headers, and the same digest
//!   work (an unknown user is checked against a dummy password).
//! - A request without credentials is challenged and is not a failure. A
//!   request whose credentials do not verify is a failure for the lockout.
//!   Credentials that cannot be verified at all (malformed, another realm, an
//!   algorithm we did not offer) are re-challenged without counting: they
//!   cannot be a password guess.
//! - A correct response on a stale (or no longer recognised, e.g. after a
//!   restart) nonce, or a replayed nonce-count, is re-challenged with
//!   `stale=true` and is not a failure.
//! - A locked source gets [`AuthOutcome::Locked`]; the caller decides whether
//!   to drop or answer 403.
//!
//! This module must not read the clock or sockets (time and the source address
//! are parameters) and does not know where passwords live (`lookup`).

pub mod client;
pub mod digest;
pub mod lockout;
pub mod nonce;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Request, Response};

use crate::sip::message::{
    call_id, finish, from_value, method_name, response_for, tag_of, to_value, uri_of, user_of,
};
pub use digest::{challenge_headers, verify, Algorithm, Credentials, DigestError};
pub use lockout::{Lockout, LockoutConfig};
pub use nonce::{NonceIssuer, NonceStatus};

use nonce::{HmacKey, NonceCounts};

/// Verified nonces whose nonce-count is remembered (replay protection).
const NONCE_COUNT_CAPACITY: usize = 4096;
/// Source addresses the lockout remembers when the settings do not say.
const DEFAULT_LOCKOUT_TRACKED: usize = 10_000;
/// Checked against when the user does not exist, so the work is the same.
const DUMMY_PASSWORD: &str = "denwa-no-such-user-\u{1}";

/// Authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Digest realm (the SIP domain).
    pub realm: String,
    /// Algorithms offered and accepted.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh.
    pub nonce_ttl: Duration,
    pub lockout: LockoutConfig,
    /// Value of the `Server` header of challenges.
    pub user_agent: String,
}

impl AuthConfig {
    /// Build from the validated configuration file settings.
    pub fn from_settings(domain: &str, settings: &crate::config::AuthSettings) -> Self {
        use crate::config::DigestAlgorithm;
        let algorithms = settings
            .algorithms
            .iter()
            .map(|a| match a {
                DigestAlgorithm::Sha256 => Algorithm::Sha256,
                DigestAlgorithm::Md5 => Algorithm::Md5,
            })
            .collect();
        AuthConfig {
            realm: domain.to_owned(),
            algorithms,
            nonce_ttl: settings.nonce_ttl,
            lockout: LockoutConfig {
                threshold: settings.lockout_threshold,
                window: settings.lockout_window,
                lock_for: settings.lockout_for,
                max_tracked: DEFAULT_LOCKOUT_TRACKED,
            },
            user_agent: "denwa".to_owned(),
        }
    }
}

/// Which side of RFC 3261 §22 is challenging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// Registrar / UAS: 401, `WWW-Authenticate`, `Authorization`.
    Www,
    /// Proxy: 407, `Proxy-Authenticate`, `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    fn status(self) -> u16 {
        match self {
            ChallengeKind::Www => 401,
            ChallengeKind::Proxy => 407,
        }
    }

    fn challenge_header(self, value: String) -> Header {
        match self {
            ChallengeKind::Www => {
                Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(value))
            }
            ChallengeKind::Proxy => {
                Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(value))
            }
        }
    }

    fn credentials_value(self, h: &Header) -> Option<&str> {
        match (self, h) {
            (ChallengeKind::Www, Header::Authorization(a)) => Some(a.value()),
            (ChallengeKind::Proxy, Header::ProxyAuthorization(a)) => Some(a.value()),
            _ => None,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials verified for this user.
    Authenticated { username: String },
    /// Send this 401/407. `failed` is true when the request counted as an
    /// authentication failure (wrong password or unknown user).
    Challenge { response: Response, failed: bool },
    /// Send this 403: the credentials are right but do not cover the request
    /// (a REGISTER for somebody else's address of record).
    Forbidden(Response),
    /// The source is locked out: drop or answer 403, as configured.
    Locked,
}

/// Digest authenticator with nonce issuing and lockout.
#[derive(Debug, Clone)]
pub struct Authenticator {
    config: AuthConfig,
    secret: [u8; 32],
    tag_key: HmacKey,
    issuer: NonceIssuer,
    counts: NonceCounts,
    lockout: Lockout,
}

/// How the credentials of a request turned out, before lockout policy.
enum Verdict {
    NoCredentials,
    Unusable,
    Failed,
    StaleButRight,
    Verified(String),
}

impl Authenticator {
    /// An authenticator with a random nonce secret.
    pub fn new(config: AuthConfig) -> Self {
        Self::with_secret(config, rand::random())
    }

    /// An authenticator with a given nonce secret (tests, or a secret kept
    /// across restarts).
    pub fn with_secret(config: AuthConfig, secret: [u8; 32]) -> Self {
        Authenticator {
            issuer: NonceIssuer::new(secret, config.nonce_ttl),
            counts: NonceCounts::new(NONCE_COUNT_CAPACITY),
            lockout: Lockout::new(config.lockout.clone()),
            secret,
            tag_key: HmacKey::new(&secret),
            config,
        }
    }

    /// Apply new settings (reload). Nonces already issued stay valid; lockout
    /// records are kept.
    pub fn reconfigure(&mut self, config: AuthConfig) {
        self.issuer = NonceIssuer::new(self.secret, config.nonce_ttl);
        self.lockout.set_config(config.lockout.clone());
        self.config = config;
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The lockout state (for metrics and housekeeping).
    pub fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    /// Forget lockout records that no longer matter.
    pub fn prune(&mut self, now: Instant) {
        self.lockout.prune(now);
    }

    /// Authenticate `req` from `source`. `lookup` maps a username to its
    /// password; `now` drives the lockout, `now_unix_ms` the nonces.
    pub fn authenticate<'p>(
        &mut self,
        req: &Request,
        source: IpAddr,
        lookup: impl Fn(&str) -> Option<&'p str>,
        now: Instant,
        now_unix_ms: u64,
        kind: ChallengeKind,
    ) -> AuthOutcome {
        if self.lockout.is_locked(source, now) {
            return AuthOutcome::Locked;
        }
        match self.verdict(req, kind, lookup, now_unix_ms) {
            Verdict::NoCredentials | Verdict::Unusable => AuthOutcome::Challenge {
                response: self.challenge(req, kind, false, now_unix_ms),
                failed: false,
            },
            Verdict::StaleButRight => AuthOutcome::Challenge {
                response: self.challenge(req, kind, true, now_unix_ms),
                failed: false,
            },
            Verdict::Failed => {
                if self.lockout.record_failure(source, now) {
                    return AuthOutcome::Locked;
                }
                AuthOutcome::Challenge {
                    response: self.challenge(req, kind, false, now_unix_ms),
                    failed: true,
                }
            }
            Verdict::Verified(username) => {
                self.lockout.record_success(source, now);
                if kind == ChallengeKind::Www && to_user(req).as_deref() != Some(&username) {
                    return AuthOutcome::Forbidden(self.forbidden(req));
                }
                AuthOutcome::Authenticated { username }
            }
        }
    }

    /// Check the credentials of `req`, if any, without lockout policy.
    fn verdict<'p>(
        &mut self,
        req: &Request,
        kind: ChallengeKind,
        lookup: impl Fn(&str) -> Option<&'p str>,
        now_unix_ms: u64,
    ) -> Verdict {
        let mut values = req
            .headers
            .iter()
            .filter_map(|h| kind.credentials_value(h))
            .peekable();
        if values.peek().is_none() {
            return Verdict::NoCredentials;
        }
        let Some(creds) = values
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| c.realm == self.config.realm)
        else {
            return Verdict::Unusable;
        };
        if !self.offered().contains(&creds.algorithm) {
            return Verdict::Unusable;
        }
        // Same work whether or not the user exists.
        let password = lookup(&creds.username);
        let known = password.is_some();
        let right = verify(
            &creds,
            method_name(&req.method),
            password.unwrap_or(DUMMY_PASSWORD),
        );
        if !(right & known) {
            return Verdict::Failed;
        }
        match self.issuer.check(&creds.nonce, now_unix_ms) {
            NonceStatus::Valid if self.fresh_count(&creds, now_unix_ms) => {
                Verdict::Verified(creds.username.into_owned())
            }
            _ => Verdict::StaleButRight,
        }
    }

    /// False when a qop=auth nonce-count was already used with this nonce.
    fn fresh_count(&mut self, creds: &Credentials<'_>, now_unix_ms: u64) -> bool {
        match (creds.qop, creds.nonce_count()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(nc)) => {
                self.counts
                    .accept(&creds.nonce, nc, now_unix_ms, self.config.nonce_ttl)
            }
        }
    }

    /// The algorithms offered; both when the configuration names none, so a
    /// challenge always carries at least one.
    fn offered(&self) -> &[Algorithm] {
        if self.config.algorithms.is_empty() {
            &[Algorithm::Sha256, Algorithm::Md5]
        } else {
            &self.config.algorithms
        }
    }

    /// A 401/407 with a fresh nonce.
    fn challenge(
        &mut self,
        req: &Request,
        kind: ChallengeKind,
        stale: bool,
        now_ms: u64,
    ) -> Response {
        let nonce = self.issuer.issue(now_ms);
        let tag = self.to_tag(req);
        let mut resp = response_for(req, kind.status(), Some(&tag));
        for value in challenge_headers(&self.config.realm, &nonce, stale, self.offered()) {
            resp.headers.push(kind.challenge_header(value));
        }
        resp.headers = finish(
            std::mem::take(&mut resp.headers),
            0,
            &self.config.user_agent,
        );
        resp
    }

    fn forbidden(&self, req: &Request) -> Response {
        let tag = self.to_tag(req);
        let mut resp = response_for(req, 403, Some(&tag));
        resp.headers = finish(
            std::mem::take(&mut resp.headers),
            0,
            &self.config.user_agent,
        );
        resp
    }

    /// A To tag derived from the request's Call-ID and From tag: the same for
    /// retransmissions, unguessable without the secret.
    fn to_tag(&self, req: &Request) -> String {
        let cid = call_id(&req.headers).unwrap_or("");
        let from_tag = from_value(&req.headers).and_then(tag_of).unwrap_or("");
        let mac = self
            .tag_key
            .mac(&[b"denwa-to-tag", cid.as_bytes(), b"\0", from_tag.as_bytes()]);
        nonce::hex_string(&mac[..8])
    }
}

/// The user part of the To URI (the address of record of a REGISTER).
fn to_user(req: &Request) -> Option<String> {
    user_of(uri_of(to_value(&req.headers)?)).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SECRET: [u8; 32] = [42u8; 32];
    const T0_MS: u64 = 1_700_000_000_000;

    fn config() -> AuthConfig {
        AuthConfig {
            realm: "pbx.example".into(),
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            nonce_ttl: Duration::from_secs(300),
            lockout: LockoutConfig {
                threshold: 3,
                window: Duration::from_secs(60),
                lock_for: Duration::from_secs(600),
                max_tracked: 100,
            },
            user_agent: "denwa-test".into(),
        }
    }

    fn lookup(user: &str) -> Option<&'static str> {
        (user == "1001").then_some("s3cret")
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
    }

    /// A request with optional extra header lines (each ending in CRLF).
    fn request(method: &str, to_user: &str, extra: &str) -> Request {
        let text = format!(
            "{method} sip:pbx.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@pbx.example>;tag=1928301774\r\n\
             To: <sip:{to_user}@pbx.example>\r\n\
             Call-ID: a84b4c76e66710@198.51.100.7\r\n\
             CSeq: 1 {method}\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match rsip::SipMessage::try_from(text.as_bytes()) {
            Ok(rsip::SipMessage::Request(r)) => r,
            other => panic!("test request does not parse: {other:?}"),
        }
    }

    /// Credentials answering `nonce` for `user`/`password`.
    fn answer(
        user: &str,
        password: &str,
        nonce: &str,
        alg: Algorithm,
        nc: u32,
        method: &str,
    ) -> String {
        let mut c = Credentials {
            username: user.into(),
            realm: "pbx.example".into(),
            nonce: nonce.into(),
            uri: "sip:pbx.example".into(),
            response: "".into(),
            algorithm: alg,
            cnonce: Some("0a4f113b".into()),
            qop: Some(digest::Qop::Auth),
            nc: Some(format!("{nc:08x}").into()),
            opaque: None,
        };
        c.response = digest::expected_response(&c, method, password)
            .unwrap_or_default()
            .into();
        format!(
            "Digest username=\"{}\", realm=\"pbx.example\", nonce=\"{}\", uri=\"sip:pbx.example\", \
             response=\"{}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={:08x}",
            user,
            nonce,
            c.response,
            alg.token(),
            nc
        )
    }

    fn register_with(auth: &str) -> Request {
        request("REGISTER", "1001", &format!("Authorization: {auth}\r\n"))
    }

    fn challenge_values(resp: &Response) -> Vec<String> {
        resp.headers
            .iter()
            .filter_map(|h| match h {
                Header::WwwAuthenticate(v) => Some(v.value().to_string()),
                Header::ProxyAuthenticate(v) => Some(v.value().to_string()),
                _ => None,
            })
            .collect()
    }

    fn nonce_of(resp: &Response) -> String {
        let values = challenge_values(resp);
        let first = values.first().map(String::as_str).unwrap_or("");
        let after = first.split_once("nonce=\"").map(|(_, a)| a).unwrap_or("");
        after.split('"').next().unwrap_or("").to_string()
    }

    fn expect_challenge(outcome: AuthOutcome) -> (Response, bool) {
        match outcome {
            AuthOutcome::Challenge { response, failed } => (response, failed),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    struct Fixture {
        auth: Authenticator,
        now: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                auth: Authenticator::with_secret(config(), SECRET),
                now: Instant::now(),
            }
        }

        fn run(
            &mut self,
            req: &Request,
            from: IpAddr,
            at_ms: u64,
            kind: ChallengeKind,
        ) -> AuthOutcome {
            let now = self.now + Duration::from_millis(at_ms.saturating_sub(T0_MS));
            self.auth.authenticate(req, from, lookup, now, at_ms, kind)
        }

        fn register(&mut self, req: &Request, at_ms: u64) -> AuthOutcome {
            self.run(req, ip(7), at_ms, ChallengeKind::Www)
        }

        fn fresh_nonce(&mut self) -> String {
            let (resp, _) =
                expect_challenge(self.register(&request("REGISTER", "1001", ""), T0_MS));
            nonce_of(&resp)
        }
    }

    #[test]
    fn no_credentials_gets_a_401_offering_sha256_then_md5() {
        let mut f = Fixture::new();
        let (resp, failed) = expect_challenge(f.register(&request("REGISTER", "1001", ""), T0_MS));
        assert!(!failed);
        assert_eq!(resp.status_code, rsip::StatusCode::Unauthorized);
        let values = challenge_values(&resp);
        assert_eq!(values.len(), 2);
        assert!(values[0].contains("algorithm=SHA-256"), "{}", values[0]);
        assert!(values[1].contains("algorithm=MD5"), "{}", values[1]);
        assert!(values[0].starts_with("Digest realm=\"pbx.example\", nonce=\""));
        assert!(!values[0].contains("stale"));
        let text = resp.to_string();
        assert!(text.contains("To: <sip:1001@pbx.example>;tag="), "{text}");
        assert!(text.contains("Content-Length: 0"), "{text}");
        assert!(
            text.contains("\r\nWWW-Authenticate: Digest realm=\"pbx.example\", nonce=\""),
            "{text}"
        );
        assert!(text.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{text}");
        assert_eq!(f.auth.lockout().tracked(), 0);
    }

    #[test]
    fn right_password_authenticates_with_either_algorithm() {
        let mut f = Fixture::new();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let nonce = f.fresh_nonce();
            let req = register_with(&answer("1001", "s3cret", &nonce, alg, 1, "REGISTER"));
            assert_eq!(
                f.register(&req, T0_MS + 10),
                AuthOutcome::Authenticated {
                    username: "1001".into()
                }
            );
        }
    }

    #[test]
    fn unknown_user_and_wrong_password_look_the_same() {
        let mut f = Fixture::new();
        let n1 = f.fresh_nonce();
        let n2 = f.fresh_nonce();
        let wrong = register_with(&answer(
            "1001",
            "guess",
            &n1,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        let unknown = register_with(&answer(
            "1001x",
            "guess",
            &n2,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        let (a, a_failed) = expect_challenge(f.register(&wrong, T0_MS + 5));
        let (b, b_failed) = expect_challenge(f.register(&unknown, T0_MS + 5));
        assert!(a_failed && b_failed);
        let (na, nb) = (nonce_of(&a), nonce_of(&b));
        assert_ne!(na, nb);
        assert_eq!(
            a.to_string().replace(&na, "N"),
            b.to_string().replace(&nb, "N")
        );
        assert_eq!(a.status_code, rsip::StatusCode::Unauthorized);
    }

    #[test]
    fn correct_response_on_stale_nonce_gets_stale_true_without_failure() {
        let mut f = Fixture::new();
        let nonce = f.fresh_nonce();
        let late = T0_MS + 301_000;
        let req = register_with(&answer(
            "1001",
            "s3cret",
            &nonce,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        let (resp, failed) = expect_challenge(f.register(&req, late));
        assert!(!failed);
        assert!(challenge_values(&resp)
            .iter()
            .all(|v| v.ends_with(", stale=true")));
        assert_ne!(nonce_of(&resp), nonce, "a fresh nonce comes with it");
        // Wrong password on a stale nonce is an ordinary failure.
        let bad = register_with(&answer(
            "1001",
            "nope",
            &nonce,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        let (resp, failed) = expect_challenge(f.register(&bad, late));
        assert!(failed);
        assert!(challenge_values(&resp).iter().all(|v| !v.contains("stale")));
    }

    #[test]
    fn forged_nonce_never_authenticates() {
        let mut f = Fixture::new();
        let forged = "0000018bcfe5680000000001000000000000000000000000000000000";
        let right = register_with(&answer(
            "1001",
            "s3cret",
            forged,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        let (resp, failed) = expect_challenge(f.register(&right, T0_MS));
        assert!(
            !failed,
            "right password on an unknown nonce: re-challenge only"
        );
        assert!(challenge_values(&resp)[0].contains("stale=true"));
        let wrong = register_with(&answer(
            "1001",
            "x",
            forged,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        let (_, failed) = expect_challenge(f.register(&wrong, T0_MS));
        assert!(failed);
        // A nonce from another secret is just as unknown.
        let mut other = Authenticator::with_secret(config(), [1u8; 32]);
        let foreign = nonce_of(
            &expect_challenge(other.authenticate(
                &request("REGISTER", "1001", ""),
                ip(7),
                lookup,
                f.now,
                T0_MS,
                ChallengeKind::Www,
            ))
            .0,
        );
        let req = register_with(&answer(
            "1001",
            "s3cret",
            &foreign,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        assert!(matches!(
            f.register(&req, T0_MS),
            AuthOutcome::Challenge { failed: false, .. }
        ));
    }

    #[test]
    fn replayed_nonce_count_is_rechallenged() {
        let mut f = Fixture::new();
        let nonce = f.fresh_nonce();
        let req = register_with(&answer(
            "1001",
            "s3cret",
            &nonce,
            Algorithm::Md5,
            1,
            "REGISTER",
        ));
        assert!(matches!(
            f.register(&req, T0_MS + 1),
            AuthOutcome::Authenticated { .. }
        ));
        let (resp, failed) = expect_challenge(f.register(&req, T0_MS + 2));
        assert!(!failed);
        assert!(challenge_values(&resp)[0].contains("stale=true"));
        let next = register_with(&answer(
            "1001",
            "s3cret",
            &nonce,
            Algorithm::Md5,
            2,
            "REGISTER",
        ));
        assert!(matches!(
            f.register(&next, T0_MS + 3),
            AuthOutcome::Authenticated { .. }
        ));
    }

    #[test]
    fn lockout_after_threshold_then_expiry_and_other_sources_unaffected() {
        let mut f = Fixture::new();
        let nonce = f.fresh_nonce();
        let bad = register_with(&answer(
            "1001",
            "bad",
            &nonce,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        assert!(matches!(
            f.register(&bad, T0_MS),
            AuthOutcome::Challenge { failed: true, .. }
        ));
        assert!(matches!(
            f.register(&bad, T0_MS + 1),
            AuthOutcome::Challenge { failed: true, .. }
        ));
        assert_eq!(f.register(&bad, T0_MS + 2), AuthOutcome::Locked);
        // Locked: even the right password and even no credentials are refused.
        let good = register_with(&answer(
            "1001",
            "s3cret",
            &nonce,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        assert_eq!(f.register(&good, T0_MS + 3), AuthOutcome::Locked);
        assert_eq!(
            f.register(&request("REGISTER", "1001", ""), T0_MS + 4),
            AuthOutcome::Locked
        );
        // Another source is served normally.
        let other = f.run(&good, ip(8), T0_MS + 5, ChallengeKind::Www);
        assert_eq!(
            other,
            AuthOutcome::Authenticated {
                username: "1001".into()
            }
        );
        // After lock_for the source may try again.
        let later = T0_MS + 601_000;
        let n2 = expect_challenge(f.register(&request("REGISTER", "1001", ""), later)).0;
        let good2 = register_with(&answer(
            "1001",
            "s3cret",
            &nonce_of(&n2),
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        assert!(matches!(
            f.register(&good2, later + 1),
            AuthOutcome::Authenticated { .. }
        ));
    }

    #[test]
    fn success_clears_earlier_failures() {
        let mut f = Fixture::new();
        let nonce = f.fresh_nonce();
        let bad = register_with(&answer(
            "1001",
            "bad",
            &nonce,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        f.register(&bad, T0_MS);
        f.register(&bad, T0_MS);
        let good = register_with(&answer(
            "1001",
            "s3cret",
            &nonce,
            Algorithm::Sha256,
            1,
            "REGISTER",
        ));
        assert!(matches!(
            f.register(&good, T0_MS),
            AuthOutcome::Authenticated { .. }
        ));
        assert_eq!(f.auth.lockout().tracked(), 0);
        f.register(&bad, T0_MS);
        f.register(&bad, T0_MS);
        assert!(matches!(f.register(&bad, T0_MS), AuthOutcome::Locked));
    }

    #[test]
    fn register_for_another_users_aor_is_forbidden() {
        let mut f = Fixture::new();
        let nonce = f.fresh_nonce();
        let auth = answer("1001", "s3cret", &nonce, Algorithm::Sha256, 1, "REGISTER");
        let req = request("REGISTER", "1002", &format!("Authorization: {auth}\r\n"));
        match f.register(&req, T0_MS) {
            AuthOutcome::Forbidden(resp) => {
                assert_eq!(resp.status_code, rsip::StatusCode::Forbidden);
                assert!(challenge_values(&resp).is_empty());
            }
            other => panic!("expected 403, got {other:?}"),
        }
    }

    #[test]
    fn invite_is_challenged_as_a_proxy() {
        let mut f = Fixture::new();
        let req = request("INVITE", "1002", "");
        let (resp, failed) = expect_challenge(f.run(&req, ip(7), T0_MS, ChallengeKind::Proxy));
        assert!(!failed);
        assert_eq!(
            resp.status_code,
            rsip::StatusCode::ProxyAuthenticationRequired
        );
        assert!(resp
            .headers
            .iter()
            .any(|h| matches!(h, Header::ProxyAuthenticate(_))));
        assert!(!resp
            .headers
            .iter()
            .any(|h| matches!(h, Header::WwwAuthenticate(_))));
        let nonce = nonce_of(&resp);
        let auth = answer("1001", "s3cret", &nonce, Algorithm::Sha256, 1, "INVITE");
        // Authorization (not Proxy-) is not looked at for a proxy challenge.
        let wrong_header = request("INVITE", "1002", &format!("Authorization: {auth}\r\n"));
        let out = f.run(&wrong_header, ip(7), T0_MS, ChallengeKind::Proxy);
        assert!(matches!(out, AuthOutcome::Challenge { failed: false, .. }));
        let ok = request(
            "INVITE",
            "1002",
            &format!("Proxy-Authorization: {auth}\r\n"),
        );
        assert_eq!(
            f.run(&ok, ip(7), T0_MS, ChallengeKind::Proxy),
            AuthOutcome::Authenticated {
                username: "1001".into()
            }
        );
    }

    #[test]
    fn unusable_credentials_are_rechallenged_without_counting() {
        let mut f = Fixture::new();
        let nonce = f.fresh_nonce();
        let other_realm = answer("1001", "s3cret", &nonce, Algorithm::Sha256, 1, "REGISTER")
            .replace("realm=\"pbx.example\"", "realm=\"elsewhere\"");
        let cases = [
            other_realm,
            "Digest username=\"1001\", realm=\"pbx.example\"".to_string(),
            "Basic MTAwMTpzM2NyZXQ=".to_string(),
            "Digest username=\"1001\", realm=\"pbx.example\", nonce=\"x\", uri=\"sip:a\", \
             response=\"00\", algorithm=SHA-512-256"
                .to_string(),
        ];
        for auth in cases {
            let out = f.register(&register_with(&auth), T0_MS);
            assert!(
                matches!(out, AuthOutcome::Challenge { failed: false, .. }),
                "{auth}"
            );
        }
        // An algorithm we did not offer is not accepted even if right.
        f.auth.reconfigure(AuthConfig {
            algorithms: vec![Algorithm::Sha256],
            ..config()
        });
        let md5 = register_with(&answer(
            "1001",
            "s3cret",
            &nonce,
            Algorithm::Md5,
            1,
            "REGISTER",
        ));
        let (resp, failed) = expect_challenge(f.register(&md5, T0_MS));
        assert!(!failed);
        assert_eq!(challenge_values(&resp).len(), 1);
        assert_eq!(f.auth.lockout().tracked(), 0);
    }

    #[test]
    fn empty_algorithm_list_still_offers_a_challenge() {
        let mut auth = Authenticator::with_secret(
            AuthConfig {
                algorithms: vec![],
                ..config()
            },
            SECRET,
        );
        let req = request("REGISTER", "1001", "");
        let out = auth.authenticate(
            &req,
            ip(7),
            lookup,
            Instant::now(),
            T0_MS,
            ChallengeKind::Www,
        );
        let (resp, _) = expect_challenge(out);
        assert_eq!(challenge_values(&resp).len(), 2);
    }

    #[test]
    fn from_settings_maps_the_configuration() {
        let settings = crate::config::AuthSettings {
            algorithms: vec![
                crate::config::DigestAlgorithm::Sha256,
                crate::config::DigestAlgorithm::Md5,
            ],
            nonce_ttl: Duration::from_secs(120),
            lockout_threshold: 5,
            lockout_window: Duration::from_secs(30),
            lockout_for: Duration::from_secs(900),
            lockout_response: crate::config::LockoutResponse::Drop,
        };
        let c = AuthConfig::from_settings("example.net", &settings);
        assert_eq!(c.realm, "example.net");
        assert_eq!(c.algorithms, vec![Algorithm::Sha256, Algorithm::Md5]);
        assert_eq!(c.nonce_ttl, Duration::from_secs(120));
        assert_eq!(c.lockout.threshold, 5);
        assert_eq!(c.lockout.lock_for, Duration::from_secs(900));
    }
}
