//! Stateless digest nonces (RFC 7616 §3.3 "nonce") and bounded nonce-count
//! replay tracking.
//!
//! A nonce is `hex(timestamp_ms) ‖ hex(sequence) ‖ hex(tag)` where the tag is
//! HMAC-SHA-256 (RFC 2104), keyed with a process secret and truncated to 128
//! bits, over the timestamp and sequence. Checking a nonce needs only the
//! secret: issuing a challenge stores nothing, so a flood of unauthenticated
//! REGISTERs costs no memory.
//!
//! Replay protection (the `nc` nonce-count of qop=auth): [`NonceCounts`]
//! remembers the highest `nc` seen per nonce, but only for nonces that carried
//! a *verified* response, so its entries are bounded by the number of real
//! users; it is capped at a fixed size and forgets nonces once they are stale.
//! A nonce evicted early could be replayed until it goes stale; the registrar's
//! Call-ID/CSeq ordering check is the second line of defence for REGISTER.
//!
//! This module owns nonce syntax and keyed tags; it must not read the clock
//! (time is a parameter) nor know anything about SIP.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Length in bytes of the truncated tag carried inside a nonce.
const TAG_LEN: usize = 16;
/// Bytes of timestamp (u64) plus sequence (u32) before the tag.
const HEADER_LEN: usize = 12;
/// Hex length of a well-formed nonce.
const NONCE_HEX_LEN: usize = 2 * (HEADER_LEN + TAG_LEN);
/// SHA-256 block size, for HMAC padding.
const BLOCK: usize = 64;

/// An HMAC-SHA-256 key (RFC 2104) with its padded inner and outer blocks
/// hashed once: each MAC then costs two compressions instead of four.
#[derive(Clone)]
pub(crate) struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key.iter()) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = Sha256::new();
        inner.update(ipad);
        let mut outer = Sha256::new();
        outer.update(opad);
        HmacKey { inner, outer }
    }

    /// The MAC of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for p in parts {
            inner.update(p);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// HMAC-SHA-256 over the concatenation of `parts` (RFC 2104).
#[cfg(test)]
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    HmacKey::new(key).mac(parts)
}

/// Compare two byte strings without an early exit on the first difference.
/// The lengths are not secret: different lengths compare unequal at once.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What [`NonceIssuer::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Issued by us and still fresh.
    Valid,
    /// Issued by us but older than the TTL (or from a clock that went back).
    Stale,
    /// Not issued by us: wrong syntax or wrong tag.
    Invalid,
}

/// Issues and checks stateless nonces.
#[derive(Debug, Clone)]
pub struct NonceIssuer {
    key: HmacKey,
    ttl: Duration,
    /// Makes nonces issued in the same millisecond distinct.
    sequence: u32,
}

impl NonceIssuer {
    pub fn new(secret: [u8; 32], ttl: Duration) -> Self {
        NonceIssuer {
            key: HmacKey::new(&secret),
            ttl,
            sequence: 0,
        }
    }

    /// The nonce lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh nonce stamped with `now_unix_ms`.
    pub fn issue(&mut self, now_unix_ms: u64) -> String {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&now_unix_ms.to_be_bytes());
        header[8..].copy_from_slice(&self.sequence.to_be_bytes());
        let tag = self.tag(&header);
        let mut raw = [0u8; HEADER_LEN + TAG_LEN];
        raw[..HEADER_LEN].copy_from_slice(&header);
        raw[HEADER_LEN..].copy_from_slice(&tag);
        hex_string(&raw)
    }

    /// Whether `nonce` is ours, and if so whether it is still fresh.
    pub fn check(&self, nonce: &str, now_unix_ms: u64) -> NonceStatus {
        let Some((header, tag)) = split_nonce(nonce) else {
            return NonceStatus::Invalid;
        };
        if !constant_time_eq(&self.tag(&header), &tag) {
            return NonceStatus::Invalid;
        }
        let issued = timestamp_of(&header);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let age = now_unix_ms.saturating_sub(issued);
        let from_future = issued > now_unix_ms.saturating_add(ttl_ms);
        if age > ttl_ms || from_future {
            NonceStatus::Stale
        } else {
            NonceStatus::Valid
        }
    }

    /// The issue time (unix ms) written in a syntactically valid nonce. Does
    /// not authenticate the nonce: call [`NonceIssuer::check`] first.
    pub fn issued_at(nonce: &str) -> Option<u64> {
        split_nonce(nonce).map(|(header, _)| timestamp_of(&header))
    }

    fn tag(&self, header: &[u8; HEADER_LEN]) -> [u8; TAG_LEN] {
        let full = self.key.mac(&[b"denwa-nonce", header]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// The bytes a nonce's hex stands for, when it is a well-formed nonce.
fn nonce_bytes(nonce: &str) -> Option<[u8; HEADER_LEN + TAG_LEN]> {
    if nonce.len() != NONCE_HEX_LEN {
        return None;
    }
    let mut raw = [0u8; HEADER_LEN + TAG_LEN];
    hex::decode_to_slice(nonce, &mut raw).ok()?;
    Some(raw)
}

fn split_nonce(nonce: &str) -> Option<([u8; HEADER_LEN], [u8; TAG_LEN])> {
    let raw = nonce_bytes(nonce)?;
    let header: [u8; HEADER_LEN] = raw.get(..HEADER_LEN)?.try_into().ok()?;
    let tag: [u8; TAG_LEN] = raw.get(HEADER_LEN..)?.try_into().ok()?;
    Some((header, tag))
}

/// Lower-case hex of `bytes`, without going through `char`s.
pub(crate) fn hex_string(bytes: &[u8]) -> String {
    let mut buf = [0u8; 128];
    let Some(out) = buf.get_mut(..bytes.len().saturating_mul(2)) else {
        return hex::encode(bytes);
    };
    match hex::encode_to_slice(bytes, out) {
        Ok(()) => std::str::from_utf8(out).map_or_else(|_| hex::encode(bytes), str::to_owned),
        Err(_) => hex::encode(bytes),
    }
}

fn timestamp_of(header: &[u8; HEADER_LEN]) -> u64 {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&header[..8]);
    u64::from_be_bytes(ts)
}

/// Highest nonce-count seen per verified nonce, bounded in size.
#[derive(Debug, Clone)]
pub struct NonceCounts {
    max_tracked: usize,
    /// nonce (its bytes) → (issued at unix ms, highest nc accepted)
    seen: HashMap<NonceId, (u64, u32), TagHash>,
    /// The nonces of `seen` in the order they were first accepted, oldest
    /// first: eviction takes from the front, so it costs O(1) per nonce.
    order: VecDeque<NonceId>,
}

/// A nonce as the bytes its hex stands for.
type NonceId = [u8; HEADER_LEN + TAG_LEN];

/// Hashes a [`NonceId`] by bytes of its tag: only nonces we issued (tags of
/// our keyed MAC, unpredictable to peers) are ever stored, so the tag is as
/// good as a keyed hash, and costs nothing to compute.
#[derive(Debug, Clone, Copy, Default)]
struct TagHash;

impl std::hash::BuildHasher for TagHash {
    type Hasher = TagHasher;

    fn build_hasher(&self) -> TagHasher {
        TagHasher(0)
    }
}

#[derive(Debug, Clone, Copy)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// A [`NonceId`] arrives here whole (after its length): take eight bytes
    /// of its tag; anything shorter is mixed in.
    fn write(&mut self, bytes: &[u8]) {
        let tag = bytes
            .get(HEADER_LEN..HEADER_LEN + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok());
        match tag {
            Some(tag) => self.0 ^= u64::from_le_bytes(tag),
            None => {
                for b in bytes {
                    self.0 =
                        (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                }
            }
        }
    }
}

impl NonceCounts {
    pub fn new(max_tracked: usize) -> Self {
        NonceCounts {
            max_tracked: max_tracked.max(1),
            seen: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Record `nc` for a nonce whose response was verified. Returns false when
    /// `nc` is not higher than one already accepted for the same nonce (a
    /// replay, or a client that reuses counts: either way, re-challenge).
    pub fn accept(&mut self, nonce: &str, nc: u32, now_unix_ms: u64, ttl: Duration) -> bool {
        let Some(id) = nonce_bytes(nonce) else {
            return false;
        };
        if let Some((_, highest)) = self.seen.get_mut(&id) {
            if nc <= *highest {
                return false;
            }
            *highest = nc;
            return true;
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&id[..8]);
        let issued = u64::from_be_bytes(stamp);
        if self.seen.len() >= self.max_tracked {
            self.make_room(now_unix_ms, ttl);
        }
        self.seen.insert(id, (issued, nc));
        self.order.push_back(id);
        true
    }

    /// Number of nonces currently tracked.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drop the oldest nonces while they are stale or the map is full.
    fn make_room(&mut self, now_unix_ms: u64, ttl: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        while let Some(front) = self.order.front() {
            let stale = self
                .seen
                .get(front)
                .is_none_or(|(issued, _)| now_unix_ms.saturating_sub(*issued) > ttl_ms);
            if !stale && self.seen.len() < self.max_tracked {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7u8; 32];
    const TTL: Duration = Duration::from_secs(300);
    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key; zero-padding to 32 bytes
        // gives the same HMAC since keys are zero-padded to the block anyway.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hex_strings_are_lower_case() {
        assert_eq!(hex_string(&[0x00, 0xab, 0x5f]), "00ab5f");
        assert_eq!(hex_string(&[]), "");
        let long = [0xffu8; 100];
        assert_eq!(hex_string(&long), "ff".repeat(100));
    }

    #[test]
    fn fresh_nonce_is_valid_and_unique() {
        let mut issuer = NonceIssuer::new(SECRET, TTL);
        let a = issuer.issue(T0);
        let b = issuer.issue(T0);
        assert_ne!(a, b);
        assert_eq!(a.len(), NONCE_HEX_LEN);
        assert_eq!(issuer.check(&a, T0), NonceStatus::Valid);
        assert_eq!(issuer.check(&b, T0 + 300_000), NonceStatus::Valid);
        assert_eq!(NonceIssuer::issued_at(&a), Some(T0));
    }

    #[test]
    fn old_nonce_is_stale() {
        let mut issuer = NonceIssuer::new(SECRET, TTL);
        let n = issuer.issue(T0);
        assert_eq!(issuer.check(&n, T0 + 300_001), NonceStatus::Stale);
        // A clock that went far backwards also makes it stale, not invalid.
        assert_eq!(issuer.check(&n, T0 - 400_000), NonceStatus::Stale);
    }

    #[test]
    fn forged_or_foreign_nonces_are_invalid() {
        let mut issuer = NonceIssuer::new(SECRET, TTL);
        let n = issuer.issue(T0);
        // Flip the last hex digit of the tag.
        let mut forged = n.clone();
        let last = forged.pop().unwrap_or('0');
        forged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(issuer.check(&forged, T0), NonceStatus::Invalid);
        // Move the timestamp forward without re-tagging.
        let moved = format!("{:016x}{}", T0 + 1, &n[16..]);
        assert_eq!(issuer.check(&moved, T0), NonceStatus::Invalid);
        // Another secret.
        let other = NonceIssuer::new([8u8; 32], TTL);
        assert_eq!(other.check(&n, T0), NonceStatus::Invalid);
        for junk in [
            "",
            "zz",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            &"é".repeat(28),
        ] {
            assert_eq!(issuer.check(junk, T0), NonceStatus::Invalid, "{junk}");
        }
    }

    #[test]
    fn nonce_counts_reject_replays() {
        let mut issuer = NonceIssuer::new(SECRET, TTL);
        let n = issuer.issue(T0);
        let mut counts = NonceCounts::new(8);
        assert!(counts.accept(&n, 1, T0, TTL));
        assert!(!counts.accept(&n, 1, T0, TTL));
        assert!(counts.accept(&n, 2, T0, TTL));
        assert!(!counts.accept(&n, 1, T0, TTL));
        assert!(!counts.accept("not-a-nonce", 1, T0, TTL));
    }

    #[test]
    fn nonce_counts_stay_bounded() {
        let mut issuer = NonceIssuer::new(SECRET, TTL);
        let mut counts = NonceCounts::new(4);
        let first = issuer.issue(T0);
        assert!(counts.accept(&first, 1, T0, TTL));
        for i in 1..10u64 {
            let n = issuer.issue(T0 + i);
            assert!(counts.accept(&n, 1, T0 + i, TTL));
            assert!(counts.len() <= 4);
        }
        // The oldest was evicted, so it is accepted again (documented trade-off).
        assert!(counts.accept(&first, 1, T0 + 10, TTL));
        // Stale entries are pruned first when room is needed.
        let late = T0 + 1_000_000;
        let n = issuer.issue(late);
        assert!(counts.accept(&n, 1, late, TTL));
        assert_eq!(counts.len(), 1);
    }
}
