//! HTTP Digest as used by SIP (RFC 2617, RFC 7616, RFC 8760 for SHA-256;
//! RFC 3261 §22.4): parsing `Authorization`/`Proxy-Authorization` values,
//! building challenges and verifying responses.
//!
//! Supported: algorithms MD5 and SHA-256, qop=auth, and the legacy RFC 2069
//! form without qop. Not supported (parsed, then refused as
//! [`DigestError::Unsupported`]): the `-sess` algorithms and qop=auth-int.
//!
//! This module is pure text and hashing: it must not look up users, check
//! nonces or count failures (that is [`super::Authenticator`]'s job), and it
//! never panics on attacker-controlled input.

use std::borrow::Cow;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::nonce::constant_time_eq;

/// Why a credentials header value was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("authorization scheme is not Digest")]
    NotDigest,
    #[error("malformed digest credentials")]
    Malformed,
    #[error("digest parameter `{0}` appears twice")]
    Duplicate(String),
    #[error("digest parameter `{0}` is missing")]
    Missing(&'static str),
    #[error("unsupported digest {0}")]
    Unsupported(String),
}

/// Digest hash algorithm (RFC 7616 §3.4.2, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm=` token (case-insensitive).
    pub fn from_token(token: &str) -> Result<Algorithm, DigestError> {
        if token.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::Unsupported(format!("algorithm {token}")))
        }
    }

    /// Lower-case hex of the hash of the concatenated `parts`.
    fn hex(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Md5 => hex_of::<Md5>(parts),
            Algorithm::Sha256 => hex_of::<Sha256>(parts),
        }
    }

    /// Preference order of challenges: stronger first (RFC 8760 §2.4).
    fn rank(self) -> u8 {
        match self {
            Algorithm::Sha256 => 0,
            Algorithm::Md5 => 1,
        }
    }
}

fn hex_of<D: Digest>(parts: &[&str]) -> String {
    let mut hasher = D::new();
    for p in parts {
        hasher.update(p.as_bytes());
    }
    super::nonce::hex_string(&hasher.finalize())
}

/// Quality of protection. Only `auth` is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
}

/// Parsed digest credentials (RFC 7616 §3.4). Values are unquoted and
/// unescaped, borrowed from the header value unless an escape had to be
/// removed; `nc` is kept as sent because it is hashed verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: Cow<'a, str>,
    pub realm: Cow<'a, str>,
    pub nonce: Cow<'a, str>,
    pub uri: Cow<'a, str>,
    pub response: Cow<'a, str>,
    pub algorithm: Algorithm,
    pub cnonce: Option<Cow<'a, str>>,
    pub qop: Option<Qop>,
    pub nc: Option<Cow<'a, str>>,
    pub opaque: Option<Cow<'a, str>>,
}

impl<'a> Credentials<'a> {
    /// Parse a `Digest ...` credentials value in one pass. Parameter names
    /// are case-insensitive, in any order, values are tokens or quoted
    /// strings; a parameter may appear once.
    pub fn parse(value: &'a str) -> Result<Credentials<'a>, DigestError> {
        let mut p = parse_params(value)?;
        let algorithm = match p.take(Param::Algorithm) {
            Some(a) => Algorithm::from_token(&a)?,
            None => Algorithm::Md5,
        };
        let qop = match p.take(Param::Qop) {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) => return Err(DigestError::Unsupported(format!("qop {q}"))),
        };
        let creds = Credentials {
            username: p.required(Param::Username)?,
            realm: p.required(Param::Realm)?,
            nonce: p.required(Param::Nonce)?,
            uri: p.required(Param::Uri)?,
            response: p.required(Param::Response)?,
            algorithm,
            cnonce: p.take(Param::Cnonce),
            qop,
            nc: p.take(Param::Nc),
            opaque: p.take(Param::Opaque),
        };
        creds.check_qop_params()?;
        Ok(creds)
    }

    /// With qop, `cnonce` and an 8-hex-digit `nc` are mandatory.
    fn check_qop_params(&self) -> Result<(), DigestError> {
        if self.qop.is_none() {
            return Ok(());
        }
        if self.cnonce.is_none() {
            return Err(DigestError::Missing("cnonce"));
        }
        match &self.nc {
            None => Err(DigestError::Missing("nc")),
            Some(_) if self.nonce_count().is_none() => Err(DigestError::Malformed),
            Some(_) => Ok(()),
        }
    }

    /// The nonce-count as a number, when present and well-formed.
    pub fn nonce_count(&self) -> Option<u32> {
        let nc = self.nc.as_deref()?;
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(nc, 16).ok()
    }
}

/// The parameters denwa reads, in the order of [`PARAM_NAMES`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Param {
    Username,
    Realm,
    Nonce,
    Uri,
    Response,
    Algorithm,
    Cnonce,
    Qop,
    Nc,
    Opaque,
}

const PARAM_NAMES: [&str; 10] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "qop",
    "nc",
    "opaque",
];

/// The values of one credentials header, by parameter.
#[derive(Debug, Default)]
pub(super) struct Params<'a> {
    known: [Option<Cow<'a, str>>; 10],
}

impl<'a> Params<'a> {
    pub(super) fn take(&mut self, param: Param) -> Option<Cow<'a, str>> {
        self.known.get_mut(param as usize).and_then(Option::take)
    }

    fn required(&mut self, param: Param) -> Result<Cow<'a, str>, DigestError> {
        let name = PARAM_NAMES.get(param as usize).copied().unwrap_or("?");
        self.take(param).ok_or(DigestError::Missing(name))
    }
}

/// Split `Digest k=v, k="v", ...` into the known parameters' unquoted
/// values; other parameters are checked and skipped.
pub(super) fn parse_params(value: &str) -> Result<Params<'_>, DigestError> {
    let mut p = Parser {
        text: value,
        s: value.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    let scheme = p.token().ok_or(DigestError::NotDigest)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let mut params = Params::default();
    let mut others: Vec<&str> = Vec::new();
    loop {
        p.skip_ws_and_commas();
        if p.at_end() {
            break;
        }
        let name = p.token().ok_or(DigestError::Malformed)?;
        p.skip_ws();
        if !p.eat(b'=') {
            return Err(DigestError::Malformed);
        }
        p.skip_ws();
        let value = match p.peek() {
            Some(b'"') => p.quoted()?,
            _ => Cow::Borrowed(p.token().ok_or(DigestError::Malformed)?),
        };
        let duplicate = match PARAM_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
        {
            Some(i) => match params.known.get_mut(i) {
                Some(slot @ None) => {
                    *slot = Some(value);
                    false
                }
                _ => true,
            },
            None if others.iter().any(|o| o.eq_ignore_ascii_case(name)) => true,
            None => {
                others.push(name);
                false
            }
        };
        if duplicate {
            return Err(DigestError::Duplicate(name.to_ascii_lowercase()));
        }
        p.skip_ws();
        if !p.at_end() && !p.eat(b',') {
            return Err(DigestError::Malformed);
        }
    }
    Ok(params)
}

/// A byte cursor over a `str`; it stops only at ASCII delimiters, so every
/// piece it returns is a valid `str` slice of the input.
struct Parser<'a> {
    text: &'a str,
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            self.pos += 1;
        }
    }

    /// RFC 7230 token characters (one or more).
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        self.text.get(start..self.pos)
    }

    /// A quoted-string with `\` escapes; the cursor is on the opening quote.
    /// Borrowed from the input when it holds no escape.
    fn quoted(&mut self) -> Result<Cow<'a, str>, DigestError> {
        if !self.eat(b'"') {
            return Err(DigestError::Malformed);
        }
        let start = self.pos;
        let rest = self.s.get(start..).unwrap_or_default();
        let end = memchr::memchr2(b'"', b'\\', rest).ok_or(DigestError::Malformed)?;
        if rest.get(end) == Some(&b'"') {
            self.pos = start + end + 1;
            return self
                .text
                .get(start..start + end)
                .map(Cow::Borrowed)
                .ok_or(DigestError::Malformed);
        }
        let mut out = rest.get(..end).unwrap_or_default().to_vec();
        self.pos = start + end;
        loop {
            match self.peek() {
                None => return Err(DigestError::Malformed),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(DigestError::Malformed)?;
                    out.push(escaped);
                    self.pos += 1;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| DigestError::Malformed)
    }
}

/// RFC 7230 token characters, plus `/`, `:` and `@`, which some user agents
/// leave unquoted in `uri=` and `nonce=` values.
fn is_tchar(b: u8) -> bool {
    TCHARS[usize::from(b)]
}

/// [`is_tchar`] as a table indexed by byte.
const TCHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
                    | b'/'
                    | b':'
                    | b'@'
            );
        b += 1;
    }
    table
};

/// Quote a value for a header parameter, escaping `"` and `\`.
pub(super) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    if !value.contains(['"', '\\']) {
        out.push_str(value);
        out.push('"');
        return out;
    }
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `WWW-Authenticate`/`Proxy-Authenticate` values: one challenge per
/// algorithm, SHA-256 before MD5 whatever the configured order (RFC 8760
/// §2.4: clients use the first one they support).
pub fn challenge_headers(
    realm: &str,
    nonce: &str,
    stale: bool,
    algorithms: &[Algorithm],
) -> Vec<String> {
    let mut algs = algorithms.to_vec();
    algs.sort_by_key(|a| a.rank());
    algs.dedup();
    algs.into_iter()
        .map(|alg| {
            let mut v = String::with_capacity(realm.len() + nonce.len() + 80);
            v.push_str("Digest realm=");
            v.push_str(&quote(realm));
            v.push_str(", nonce=");
            v.push_str(&quote(nonce));
            v.push_str(", algorithm=");
            v.push_str(alg.token());
            v.push_str(", qop=\"auth\"");
            if stale {
                v.push_str(", stale=true");
            }
            v
        })
        .collect()
}

/// The `response` value expected for `creds` under `method` and `password`
/// (RFC 7616 §3.4.1; RFC 2069 form when there is no qop).
pub fn expected_response(creds: &Credentials, method: &str, password: &str) -> Option<String> {
    let alg = creds.algorithm;
    let ha1 = alg.hex(&[&creds.username, ":", &creds.realm, ":", password]);
    let ha2 = alg.hex(&[method, ":", &creds.uri]);
    match creds.qop {
        None => Some(alg.hex(&[&ha1, ":", &creds.nonce, ":", &ha2])),
        Some(Qop::Auth) => {
            let nc = creds.nc.as_deref()?;
            let cnonce = creds.cnonce.as_deref()?;
            Some(alg.hex(&[
                &ha1,
                ":",
                &creds.nonce,
                ":",
                nc,
                ":",
                cnonce,
                ":auth:",
                &ha2,
            ]))
        }
    }
}

/// Whether the credentials' `response` is right for `method` and `password`.
/// The comparison runs in constant time; hex case is ignored.
pub fn verify(creds: &Credentials, method: &str, password: &str) -> bool {
    let Some(expected) = expected_response(creds, method, password) else {
        return false;
    };
    let given = creds.response.to_ascii_lowercase();
    constant_time_eq(expected.as_bytes(), given.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617_HEADER: &str =
        "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n \
        nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n \
        qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n \
        response=\"6629fae49393a05397450978507c4ef1\",\r\n \
        opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    #[test]
    fn rfc2617_md5_example() {
        let c = Credentials::parse(RFC2617_HEADER).expect("parses");
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.realm, "testrealm@host.com");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.nonce_count(), Some(1));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(
            expected_response(&c, "GET", "Circle Of Life").as_deref(),
            Some("6629fae49393a05397450978507c4ef1")
        );
        assert!(verify(&c, "GET", "Circle Of Life"));
        assert!(!verify(&c, "GET", "circle of life"));
        assert!(!verify(&c, "POST", "Circle Of Life"));
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1, SHA-256 variant.
        let h = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
            uri=\"/dir/index.html\", algorithm=SHA-256, \
            nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
            cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
            response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
            opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let c = Credentials::parse(h).expect("parses");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(verify(&c, "GET", "Circle of Life"));
        assert!(!verify(&c, "GET", "Circle Of Life"));
        // Same example with MD5 (RFC 7616 §3.9.1, first response).
        let md5 = Credentials {
            algorithm: Algorithm::Md5,
            response: "8ca523f5e9506fed4657c9700eebdbec".into(),
            ..c
        };
        assert!(verify(&md5, "GET", "Circle of Life"));
    }

    #[test]
    fn rfc2069_form_without_qop() {
        let h = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
            nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
            response=\"670FD8C2DF070C60B045671B8B24FF02\"";
        let c = Credentials::parse(h).expect("parses");
        assert_eq!(c.qop, None);
        assert!(
            verify(&c, "GET", "Circle Of Life"),
            "upper-case hex accepted"
        );
        assert!(!verify(&c, "GET", "wrong"));
    }

    #[test]
    fn parsing_is_tolerant_of_order_case_and_escapes() {
        let h = "  digest   RESPONSE = \"abc\" ,Uri=\"sip:pbx\",NONCE=n1,\
            Realm=\"a \\\"quoted\\\" realm\",  UserName=\"al\\\\ice\", algorithm=\"sha-256\",";
        let c = Credentials::parse(h).expect("parses");
        assert_eq!(c.username, "al\\ice");
        assert_eq!(c.realm, "a \"quoted\" realm");
        assert_eq!(c.nonce, "n1");
        assert_eq!(c.uri, "sip:pbx");
        assert_eq!(c.response, "abc");
        assert_eq!(c.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: &[(&str, DigestError)] = &[
            ("", DigestError::NotDigest),
            ("Basic QWxhZGRpbjpvcGVu", DigestError::NotDigest),
            ("Digest username=\"a", DigestError::Malformed),
            ("Digest username=\"a\\", DigestError::Malformed),
            ("Digest username", DigestError::Malformed),
            ("Digest =x", DigestError::Malformed),
            ("Digest username=\"a\" realm=\"b\"", DigestError::Malformed),
            (
                "Digest username=a, username=b",
                DigestError::Duplicate("username".into()),
            ),
            ("Digest username=a", DigestError::Missing("realm")),
            (
                "Digest username=\"é\", realm=r, nonce=n, uri=u",
                DigestError::Missing("response"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Credentials::parse(input).as_ref().err(),
                Some(want),
                "{input:?}"
            );
        }
        let base = "Digest username=a, realm=r, nonce=n, uri=u, response=x";
        let more = |extra: &str| Credentials::parse(&format!("{base}, {extra}")).map(|_| ());
        assert!(matches!(
            more("algorithm=MD5-sess"),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            more("qop=auth-int"),
            Err(DigestError::Unsupported(_))
        ));
        assert_eq!(
            more("qop=auth, nc=00000001").err(),
            Some(DigestError::Missing("cnonce"))
        );
        assert_eq!(
            more("qop=auth, cnonce=c").err(),
            Some(DigestError::Missing("nc"))
        );
        assert_eq!(
            more("qop=auth, cnonce=c, nc=1").err(),
            Some(DigestError::Malformed)
        );
        assert!(more("qop=auth, cnonce=c, nc=0000000a").is_ok());
        // Arbitrary bytes never panic.
        for s in [
            "Digest \u{0}=\"\u{7f}\"",
            "Digest a=\"\u{1F600}\", b=\u{e9}",
            "Digest ,,,,",
        ] {
            let _ = Credentials::parse(s);
        }
    }

    #[test]
    fn challenges_put_sha256_first_and_mark_stale() {
        let v = challenge_headers("pbx", "n1", false, &[Algorithm::Md5, Algorithm::Sha256]);
        assert_eq!(
            v,
            vec![
                "Digest realm=\"pbx\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"".to_string(),
                "Digest realm=\"pbx\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"".to_string(),
            ]
        );
        let s = challenge_headers("a\"b", "n", true, &[Algorithm::Md5, Algorithm::Md5]);
        assert_eq!(
            s,
            vec!["Digest realm=\"a\\\"b\", nonce=\"n\", algorithm=MD5, qop=\"auth\", stale=true"]
        );
    }

    #[test]
    fn a_client_answer_to_our_challenge_round_trips() {
        let challenge = &challenge_headers("denwa", "abc", false, &[Algorithm::Sha256])[0];
        assert!(challenge.starts_with("Digest "));
        let mut c = Credentials {
            username: "1001".into(),
            realm: "denwa".into(),
            nonce: "abc".into(),
            uri: "sip:pbx.example".into(),
            response: Cow::Borrowed(""),
            algorithm: Algorithm::Sha256,
            cnonce: Some("xyz".into()),
            qop: Some(Qop::Auth),
            nc: Some("00000002".into()),
            opaque: None,
        };
        c.response = expected_response(&c, "REGISTER", "s3cret")
            .unwrap_or_default()
            .into();
        assert_eq!(c.response.len(), 64);
        assert!(verify(&c, "REGISTER", "s3cret"));
        c.nc = None;
        assert!(
            !verify(&c, "REGISTER", "s3cret"),
            "qop without nc never verifies"
        );
    }
}
