//! Non-INVITE server transactions after their final response (RFC 3261
//! §17.2.2, Completed state), kept as nothing more than their key and the
//! bytes of that response, to answer retransmitted requests until Timer J
//! fires; and the 64·T1 guards of non-INVITE server transactions the TU has
//! not answered yet.
//!
//! Under load these are nearly all the transactions the layer holds. Both
//! kinds wait a fixed time (64·T1) from a moment that only moves forward, so
//! one FIFO queue orders their deadlines: no timer index, no re-arming, no
//! removal before expiry. A guard whose transaction ended early is simply
//! found stale when it comes due. Owns no transaction state machine and reads
//! no clock.

use std::collections::VecDeque;
use std::time::Instant;

use super::key::{KeyHash, TransactionKey};
use super::shards::ShardedMap;

/// What a queued deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The 64·T1 guard of a live non-INVITE server transaction.
    Guard,
    /// Timer J of a completed one.
    TimerJ,
}

/// Completed non-INVITE server transactions and the guards of live ones.
#[derive(Debug, Default)]
pub(super) struct Completed {
    responses: ShardedMap<TransactionKey, Box<[u8]>, KeyHash>,
    /// Deadlines in the order they were queued (and, time moving forward,
    /// in the order they fall due).
    queue: VecDeque<(Instant, Wait, TransactionKey)>,
}

impl Completed {
    /// Keep `response` for `key` until `until` (Timer J).
    pub(super) fn insert(&mut self, key: TransactionKey, response: Box<[u8]>, until: Instant) {
        self.queue.push_back((until, Wait::TimerJ, key.clone()));
        self.responses.insert(key, response);
    }

    /// The final response a completed transaction sent.
    pub(super) fn response(&self, key: &TransactionKey) -> Option<&[u8]> {
        self.responses.get(key).map(|r| &**r)
    }

    /// Queue the guard of a live transaction, due at `at`.
    pub(super) fn guard(&mut self, key: TransactionKey, at: Instant) {
        self.queue.push_back((at, Wait::Guard, key));
    }

    /// The earliest queued deadline. An entry never fires early; one queued
    /// behind a later deadline (a guard is queued a moment after its
    /// transaction started) fires that much late.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _, _)| *at)
    }

    /// Take the next entry due at `now`. Timer J entries drop their response
    /// here and come back as `None` inside `Some`; a guard comes back with
    /// its deadline and key for the layer to check against the live
    /// transaction. `None` when nothing is due.
    pub(super) fn pop_expired(
        &mut self,
        now: Instant,
    ) -> Option<Option<(Instant, TransactionKey)>> {
        let (at, _, _) = self.queue.front()?;
        if *at > now {
            return None;
        }
        let (at, wait, key) = self.queue.pop_front()?;
        Some(match wait {
            Wait::TimerJ => {
                self.responses.remove(&key);
                None
            }
            Wait::Guard => Some((at, key)),
        })
    }

    /// Completed transactions kept.
    pub(super) fn len(&self) -> usize {
        self.responses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::Side;
    use super::*;
    use std::time::Duration;

    fn key(branch: &str) -> TransactionKey {
        TransactionKey::new(Side::Server, branch, "h", rsip::Method::Register)
    }

    #[test]
    fn responses_live_until_timer_j_and_guards_come_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Completed::default();
        c.guard(key("a"), t0 + s(32));
        c.insert(key("b"), b"SIP/2.0 200 OK".to_vec().into(), t0 + s(33));
        assert_eq!(c.response(&key("b")), Some(&b"SIP/2.0 200 OK"[..]));
        assert_eq!(c.response(&key("a")), None);
        assert_eq!(c.next_deadline(), Some(t0 + s(32)));
        assert_eq!(c.pop_expired(t0 + s(31)), None);
        assert_eq!(
            c.pop_expired(t0 + s(32)),
            Some(Some((t0 + s(32), key("a"))))
        );
        assert_eq!(c.pop_expired(t0 + s(32)), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.pop_expired(t0 + s(40)), Some(None));
        assert_eq!(c.response(&key("b")), None);
        assert_eq!((c.len(), c.next_deadline()), (0, None));
    }
}
