//! Transaction identity: [`TransactionKey`] (RFC 3261 §17.1.3, §17.2.3) and
//! the hashing of keys.
//!
//! A key is built once per message and then looked up, cloned into timer
//! queues and compared many times, so it is made cheap for that: its text
//! (branch and sent-by) is shared behind an `Arc`, and its hash is computed
//! once, keyed with a per-process random seed so that peers cannot aim
//! branches at one hash bucket. Maps of keys use [`KeyHash`], which passes
//! that hash through instead of hashing again. This module owns no state
//! besides the seed and reads no clock.

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

use rsip::Method;

use crate::sip::message::method_name;

/// Which side of a transaction a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Side {
    Client,
    Server,
}

/// Identifies one transaction (RFC 3261 §17.1.3 for clients: branch + CSeq
/// method; §17.2.3 for servers: branch + sent-by + method, with ACK folded
/// onto INVITE). For server requests whose branch lacks the magic cookie
/// (RFC 2543 peers) the branch is replaced by Call-ID, CSeq number, From tag
/// and the whole top Via, so an INVITE, its retransmissions, its non-2xx ACK
/// and its CANCEL still find each other.
#[derive(Clone, Debug)]
pub struct TransactionKey {
    /// Keyed hash of everything below, computed once.
    hash: u64,
    side: Side,
    method: Method,
    /// The branch followed by the sent-by (empty for client keys).
    text: Arc<str>,
    branch_len: u32,
}

/// The per-process seed of key hashes.
fn seed() -> &'static RandomState {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    SEED.get_or_init(RandomState::new)
}

impl TransactionKey {
    pub(super) fn new(side: Side, branch: &str, sent_by: &str, method: Method) -> Self {
        let mut text = String::with_capacity(branch.len() + sent_by.len());
        text.push_str(branch);
        text.push_str(sent_by);
        TransactionKey {
            hash: seed().hash_one((side, method_name(&method), branch, sent_by)),
            side,
            method,
            text: text.into(),
            // A branch is cut from one message: far below 4 GiB.
            branch_len: u32::try_from(branch.len()).unwrap_or(u32::MAX),
        }
    }

    /// The branch (or the RFC 2543 substitute) this key was built from.
    pub fn branch(&self) -> &str {
        self.text
            .get(..self.branch_len as usize)
            .unwrap_or_default()
    }

    /// The sent-by of a server key's top Via (lower case); empty for clients.
    pub(super) fn sent_by(&self) -> &str {
        self.text
            .get(self.branch_len as usize..)
            .unwrap_or_default()
    }

    /// The method of the transaction (`INVITE` for the ACK of a non-2xx).
    pub fn method(&self) -> &str {
        method_name(&self.method)
    }

    /// True for a server transaction key, false for a client one.
    pub fn is_server(&self) -> bool {
        self.side == Side::Server
    }

    pub(super) fn side(&self) -> Side {
        self.side
    }

    pub(super) fn is_invite(&self) -> bool {
        self.method == Method::Invite
    }

    /// The same transaction identity for another method (CANCEL → INVITE).
    pub(super) fn with_method(&self, method: Method) -> Self {
        TransactionKey::new(self.side, self.branch(), self.sent_by(), method)
    }
}

impl PartialEq for TransactionKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.side == other.side
            && self.method == other.method
            && self.branch_len == other.branch_len
            && self.text == other.text
    }
}

impl Eq for TransactionKey {}

impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// By side, branch, sent-by, then method: independent of the random seed,
/// so that timers due at the same instant fire in a deterministic order.
impl Ord for TransactionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.side, self.branch(), self.sent_by(), self.method()).cmp(&(
            other.side,
            other.branch(),
            other.sent_by(),
            other.method(),
        ))
    }
}

impl PartialOrd for TransactionKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The hasher of maps keyed by [`TransactionKey`]: the key's own (already
/// keyed) hash is used as it is. Other key types fall back to a simple
/// multiplicative mix and must not be used with it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_content_and_hash_through() {
        let a = TransactionKey::new(Side::Server, "z9hG4bK1", "h:5060", Method::Register);
        let b = TransactionKey::new(Side::Server, "z9hG4bK1", "h:5060", Method::Register);
        let c = TransactionKey::new(Side::Server, "z9hG4bK1h", ":5060", Method::Register);
        assert_eq!(a, b);
        assert_ne!(a, c, "branch and sent-by do not run together");
        assert_eq!(KeyHash.hash_one(&a), KeyHash.hash_one(&b));
        assert_eq!(a.branch(), "z9hG4bK1");
        assert_eq!(a.sent_by(), "h:5060");
        assert_eq!(a.method(), "REGISTER");
        let invite = a.with_method(Method::Invite);
        assert!(invite.is_invite() && invite.is_server());
        assert_eq!(invite.branch(), a.branch());
        assert!(a < c, "ordered by branch first");
        let client = TransactionKey::new(Side::Client, "z9hG4bK1", "", Method::Register);
        assert!(client < a && !client.is_server());
    }
}
