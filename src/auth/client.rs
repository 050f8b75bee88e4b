//! The client side of digest (RFC 3261 §22.2, RFC 7616 §3.4): denwa
//! answering a carrier's `WWW-Authenticate` (401, on REGISTER) or
//! `Proxy-Authenticate` (407, on INVITE) with credentials.
//!
//! Pure: the client nonce and nonce-count are parameters; nothing here
//! knows which trunk the password belongs to.

use super::digest::{self, quote, Algorithm, Credentials, DigestError, Param, Qop};

/// A parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    /// The server offered qop=auth.
    pub qop_auth: bool,
    pub opaque: Option<String>,
}

impl Challenge {
    /// Parse a `Digest realm=..., nonce=..., ...` challenge value.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let mut p = digest::parse_params(value)?;
        let algorithm = match p.take(Param::Algorithm) {
            Some(a) => Algorithm::from_token(&a)?,
            None => Algorithm::Md5,
        };
        let qop_auth = p
            .take(Param::Qop)
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")));
        Ok(Challenge {
            realm: p
                .take(Param::Realm)
                .ok_or(DigestError::Missing("realm"))?
                .into_owned(),
            nonce: p
                .take(Param::Nonce)
                .ok_or(DigestError::Missing("nonce"))?
                .into_owned(),
            algorithm,
            qop_auth,
            opaque: p.take(Param::Opaque).map(|o| o.into_owned()),
        })
    }

    /// The `Authorization`/`Proxy-Authorization` value answering this
    /// challenge for `method` on `uri`. `cnonce` and `nc` are used when
    /// the server offered qop=auth.
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let nc_text = format!("{nc:08x}");
        let creds = Credentials {
            username: username.into(),
            realm: self.realm.as_str().into(),
            nonce: self.nonce.as_str().into(),
            uri: uri.into(),
            response: "".into(),
            algorithm: self.algorithm,
            cnonce: self.qop_auth.then(|| cnonce.into()),
            qop: self.qop_auth.then_some(Qop::Auth),
            nc: self.qop_auth.then(|| nc_text.as_str().into()),
            opaque: None,
        };
        let response = digest::expected_response(&creds, method, password).unwrap_or_default();
        let mut v = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            quote(&response),
            self.algorithm.token()
        );
        if self.qop_auth {
            v.push_str(&format!(
                ", qop=auth, nc={nc_text}, cnonce={}",
                quote(cnonce)
            ));
        }
        if let Some(opaque) = &self.opaque {
            v.push_str(&format!(", opaque={}", quote(opaque)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_verifies_on_the_server_side() {
        let ch = Challenge::parse(
            "Digest realm=\"carrier.example\", nonce=\"abc123\", algorithm=MD5, qop=\"auth,auth-int\", opaque=\"xyz\", stale=FALSE",
        )
        .unwrap();
        assert!(ch.qop_auth);
        assert_eq!(ch.opaque.as_deref(), Some("xyz"));
        let value = ch.answer("u1", "pw", "INVITE", "sip:0312345678@192.0.2.1", "c1", 1);
        assert!(value.contains("nc=00000001"), "{value}");
        let creds = Credentials::parse(&value).unwrap();
        assert!(digest::verify(&creds, "INVITE", "pw"));
        assert!(!digest::verify(&creds, "INVITE", "other"));
        assert!(!digest::verify(&creds, "REGISTER", "pw"));
    }

    #[test]
    fn a_challenge_without_qop_gets_the_rfc2069_form() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!ch.qop_auth);
        let value = ch.answer("u", "p", "REGISTER", "sip:r", "ignored", 1);
        assert!(!value.contains("qop"), "{value}");
        let creds = Credentials::parse(&value).unwrap();
        assert!(digest::verify(&creds, "REGISTER", "p"));
        let sha = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=auth")
            .unwrap();
        let creds_text = sha.answer("u", "p", "REGISTER", "sip:r", "cn", 2);
        let creds = Credentials::parse(&creds_text).unwrap();
        assert_eq!(creds.algorithm, Algorithm::Sha256);
        assert!(digest::verify(&creds, "REGISTER", "p"));
    }

    #[test]
    fn malformed_challenges_are_errors() {
        assert!(Challenge::parse("Basic realm=\"x\"").is_err());
        assert!(Challenge::parse("Digest nonce=\"n\"").is_err());
        assert!(Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess").is_err());
    }
}
