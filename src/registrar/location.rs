//! The location service (RFC 3261 §10.3): for each address of record (the
//! extension's user name), the Contact bindings registered for it.
//!
//! A binding is keyed by its Contact URI within its address of record and
//! remembers the Call-ID and CSeq of the REGISTER that made it, so that
//! out-of-order or replayed REGISTERs can be refused (§10.3 step 7). A binding
//! is live while `now_unix < expires_at_unix`; expired bindings are invisible
//! to lookups and are dropped by [`Location::purge_expired`].
//!
//! Contact URIs are compared as exact strings (not with the §19.1.4 rules):
//! user agents re-register with the same Contact text, and a differently
//! spelled duplicate merely lives until it expires.
//!
//! Pure data structure: no clock (time is `now_unix`, unix seconds), no I/O,
//! no SIP parsing.

use std::collections::HashMap;

use crate::sip::Peer;

/// One Contact bound to an address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI, without angle brackets or header parameters.
    pub contact_uri: String,
    /// Unix seconds at which the binding expires.
    pub expires_at_unix: u64,
    /// The expiry the store holds for this binding, which may lag
    /// `expires_at_unix` (see [`super::storage`]).
    pub stored_expires_at_unix: u64,
    /// Where the REGISTER came from and the socket it arrived on: requests
    /// for this contact go back the same way (it is usually behind NAT).
    pub received: Peer,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
}

impl Binding {
    /// Whether the binding is still valid at `now_unix`.
    pub fn is_live(&self, now_unix: u64) -> bool {
        now_unix < self.expires_at_unix
    }

    /// Seconds left at `now_unix` (zero once expired).
    pub fn remaining(&self, now_unix: u64) -> u64 {
        self.expires_at_unix.saturating_sub(now_unix)
    }

    /// RFC 3261 §10.3 step 7: a REGISTER may change this binding unless it
    /// carries the same Call-ID with a CSeq that is not higher.
    pub fn accepts_update(&self, call_id: &str, cseq: u32) -> bool {
        self.call_id != call_id || cseq > self.cseq
    }
}

/// Bindings by address of record.
#[derive(Debug, Clone, Default)]
pub struct Location {
    aors: HashMap<String, Vec<Binding>>,
    /// Sum of the lengths of `aors`' vectors, kept so `count` is O(1).
    bindings: usize,
}

impl Location {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live bindings of `user`, in registration order.
    pub fn lookup(&self, user: &str, now_unix: u64) -> Vec<Binding> {
        self.live(user, now_unix).cloned().collect()
    }

    /// The live bindings of `user`, in registration order, without copies.
    pub fn live<'a>(&'a self, user: &str, now_unix: u64) -> impl Iterator<Item = &'a Binding> {
        self.aors
            .get(user)
            .into_iter()
            .flatten()
            .filter(move |b| b.is_live(now_unix))
    }

    /// The binding of `user` for `contact_uri`, live or not.
    pub fn get(&self, user: &str, contact_uri: &str) -> Option<&Binding> {
        self.aors
            .get(user)?
            .iter()
            .find(|b| b.contact_uri == contact_uri)
    }

    /// Insert the binding, replacing any with the same Contact URI.
    pub fn upsert(&mut self, user: &str, binding: Binding) {
        if !self.aors.contains_key(user) {
            self.aors.insert(user.to_owned(), Vec::new());
        }
        let Some(bindings) = self.aors.get_mut(user) else {
            return;
        };
        match bindings
            .iter_mut()
            .find(|b| b.contact_uri == binding.contact_uri)
        {
            Some(existing) => *existing = binding,
            None => {
                bindings.push(binding);
                self.bindings += 1;
            }
        }
    }

    /// Remove one binding; true if it existed.
    pub fn remove(&mut self, user: &str, contact_uri: &str) -> bool {
        let Some(bindings) = self.aors.get_mut(user) else {
            return false;
        };
        let before = bindings.len();
        bindings.retain(|b| b.contact_uri != contact_uri);
        let removed = bindings.len() != before;
        self.bindings -= before - bindings.len();
        if bindings.is_empty() {
            self.aors.remove(user);
        }
        removed
    }

    /// Remove every binding of `user`; returns how many there were.
    pub fn remove_all(&mut self, user: &str) -> usize {
        let n = self.aors.remove(user).map(|bs| bs.len()).unwrap_or(0);
        self.bindings -= n;
        n
    }

    /// Drop the bindings expired at `now_unix`; returns (user, contact URI)
    /// of each.
    pub fn purge_expired(&mut self, now_unix: u64) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        self.aors.retain(|user, bindings| {
            bindings.retain(|b| {
                let live = b.is_live(now_unix);
                if !live {
                    gone.push((user.clone(), b.contact_uri.clone()));
                }
                live
            });
            !bindings.is_empty()
        });
        self.bindings -= gone.len();
        gone
    }

    /// Number of stored bindings (expired ones count until purged).
    pub fn count(&self) -> usize {
        debug_assert_eq!(
            self.bindings,
            self.aors.values().map(Vec::len).sum::<usize>()
        );
        self.bindings
    }

    /// Number of addresses of record with at least one stored binding.
    pub fn users(&self) -> usize {
        self.aors.len()
    }

    /// Whether `user` has any stored binding.
    pub fn has_user(&self, user: &str) -> bool {
        self.aors.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::TransportKind;

    fn peer() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            remote: "192.0.2.10:5060".parse().expect("address"),
            local: "192.0.2.1:5060".parse().expect("address"),
        }
    }

    fn binding(contact: &str, expires_at_unix: u64) -> Binding {
        Binding {
            contact_uri: contact.into(),
            expires_at_unix,
            stored_expires_at_unix: expires_at_unix,
            received: peer(),
            call_id: "cid".into(),
            cseq: 5,
            user_agent: None,
        }
    }

    #[test]
    fn several_contacts_per_aor_keyed_by_uri() {
        let mut loc = Location::new();
        loc.upsert("1001", binding("sip:1001@192.0.2.10", 100));
        loc.upsert("1001", binding("sip:1001@192.0.2.11", 200));
        loc.upsert("1002", binding("sip:1002@192.0.2.12", 100));
        assert_eq!(loc.count(), 3);
        assert_eq!(loc.users(), 2);
        // Same contact: replaced, not added.
        loc.upsert("1001", binding("sip:1001@192.0.2.10", 300));
        assert_eq!(loc.count(), 3);
        let got = loc.lookup("1001", 50);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].expires_at_unix, 300);
        assert!(loc.lookup("9999", 50).is_empty());
    }

    #[test]
    fn lookup_hides_expired_and_purge_removes_them() {
        let mut loc = Location::new();
        loc.upsert("1001", binding("sip:a@x", 100));
        loc.upsert("1001", binding("sip:b@x", 200));
        loc.upsert("1002", binding("sip:c@x", 100));
        let live = loc.lookup("1001", 100);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].contact_uri, "sip:b@x");
        assert_eq!(live[0].remaining(150), 50);
        assert_eq!(loc.count(), 3, "expired ones are kept until purged");
        let mut gone = loc.purge_expired(100);
        gone.sort();
        assert_eq!(
            gone,
            vec![
                ("1001".to_string(), "sip:a@x".to_string()),
                ("1002".to_string(), "sip:c@x".to_string())
            ]
        );
        assert_eq!(loc.count(), 1);
        assert!(!loc.has_user("1002"));
    }

    #[test]
    fn remove_and_remove_all() {
        let mut loc = Location::new();
        loc.upsert("1001", binding("sip:a@x", 100));
        loc.upsert("1001", binding("sip:b@x", 100));
        assert!(loc.remove("1001", "sip:a@x"));
        assert!(!loc.remove("1001", "sip:a@x"));
        assert!(!loc.remove("nobody", "sip:a@x"));
        assert_eq!(loc.remove_all("1001"), 1);
        assert_eq!(loc.count(), 0);
        assert!(!loc.has_user("1001"));
    }

    #[test]
    fn update_ordering_follows_call_id_and_cseq() {
        let b = binding("sip:a@x", 100);
        assert!(
            !b.accepts_update("cid", 5),
            "same CSeq is a retransmission or replay"
        );
        assert!(!b.accepts_update("cid", 4));
        assert!(b.accepts_update("cid", 6));
        assert!(
            b.accepts_update("other", 1),
            "another Call-ID may always update"
        );
    }
}
