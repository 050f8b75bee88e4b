//! Transaction timers: the RFC 3261 §17 timer values (Table 4 of §A, plus
//! RFC 6026 Timers L and M) derived from [`TimerConfig`], and the deadline
//! index the layer uses to answer `poll_timeout` and to fire expired timers in
//! a deterministic order.
//!
//! Owns no transaction state and never reads the clock: every deadline is
//! computed from a `now` handed in by the caller.

use std::collections::BTreeSet;

use std::time::{Duration, Instant};

use super::key::KeyHash;
use super::shards::ShardedMap;
use super::{TimerConfig, TransactionKey};
use crate::sip::TransportKind;

/// Timer C (RFC 3261 §16.6 step 11): how long an INVITE client transaction
/// may stay in Proceeding without a new provisional response. RFC 3261 only
/// requires it to exceed three minutes; a UAS refreshes it by sending a
/// provisional response every minute (§13.3.1.1).
pub(super) const TIMER_C: Duration = Duration::from_secs(181);

/// The shortest T1 the layer accepts: a zero T1 would make retransmission
/// timers fire forever at the same instant.
const MIN_T1: Duration = Duration::from_millis(1);

/// Timer D's floor on unreliable transports (RFC 3261 §17.1.1.2: "at least
/// 32 seconds").
const TIMER_D_FLOOR: Duration = Duration::from_secs(32);

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// A configuration whose timers always move forward: T1 ≥ 1 ms, T2 ≥ T1.
    pub(super) fn sanitized(self) -> Self {
        let t1 = self.t1.max(MIN_T1);
        TimerConfig {
            t1,
            t2: self.t2.max(t1),
            t4: self.t4,
        }
    }

    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub(super) fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next interval of Timers E and G: doubled, capped at T2.
    pub(super) fn backoff(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2).min(self.t2)
    }

    /// The next interval of Timer A: doubled, uncapped (Timer B ends it).
    pub(super) fn invite_backoff(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2)
    }

    /// Timer D: how long a completed INVITE client transaction absorbs
    /// retransmitted final responses. Covers the server's Timer H.
    pub(super) fn timer_d(&self, transport: TransportKind) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.timeout().max(TIMER_D_FLOOR)
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones.
    pub(super) fn timer_i_k(&self, transport: TransportKind) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on unreliable transports, zero on reliable ones.
    pub(super) fn timer_j(&self, transport: TransportKind) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.timeout()
        }
    }
}

/// `now + d`, saturating at `now` if the sum cannot be represented (only
/// possible with absurd configured durations; never panics).
pub(super) fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// The two timers a transaction can have running at once. Which RFC timer a
/// slot stands for depends on the transaction's kind and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum TimerSlot {
    /// A, E or G: retransmit the last message.
    Retransmit,
    /// B, C, D, F, H, I, J, K, L or M: leave the current state.
    Expiry,
}

impl TimerSlot {
    fn index(self) -> usize {
        match self {
            TimerSlot::Retransmit => 0,
            TimerSlot::Expiry => 1,
        }
    }
}

/// Armed timers of every transaction, ordered by deadline.
#[derive(Debug, Default)]
pub(super) struct Timers {
    armed: ShardedMap<TransactionKey, [Option<Instant>; 2], KeyHash>,
    queue: BTreeSet<(Instant, TransactionKey, TimerSlot)>,
}

impl Timers {
    /// Arm (or re-arm) `slot` of `key` to fire at `at`.
    pub(super) fn arm(&mut self, key: &TransactionKey, slot: TimerSlot, at: Instant) {
        self.disarm(key, slot);
        let slots = self.armed.entry(key.clone()).or_default();
        slots[slot.index()] = Some(at);
        self.queue.insert((at, key.clone(), slot));
    }

    /// Stop `slot` of `key` if it is running.
    pub(super) fn disarm(&mut self, key: &TransactionKey, slot: TimerSlot) {
        let Some(slots) = self.armed.get_mut(key) else {
            return;
        };
        if let Some(at) = slots[slot.index()].take() {
            self.queue.remove(&(at, key.clone(), slot));
        }
        if slots.iter().all(Option::is_none) {
            self.armed.remove(key);
        }
    }

    /// Stop every timer of `key`.
    pub(super) fn disarm_all(&mut self, key: &TransactionKey) {
        self.disarm(key, TimerSlot::Retransmit);
        self.disarm(key, TimerSlot::Expiry);
    }

    /// The earliest armed deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _, _)| *at)
    }

    /// Remove and return one timer whose deadline is at or before `now`,
    /// earliest first (ties broken by key, then slot: deterministic).
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<(TransactionKey, TimerSlot)> {
        let (at, _, _) = self.queue.first()?;
        if *at > now {
            return None;
        }
        let (_, key, slot) = self.queue.pop_first()?;
        if let Some(slots) = self.armed.get_mut(&key) {
            slots[slot.index()] = None;
            if slots.iter().all(Option::is_none) {
                self.armed.remove(&key);
            }
        }
        Some((key, slot))
    }

    /// Number of armed timers (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn key(branch: &str) -> TransactionKey {
        TransactionKey::new(
            super::super::key::Side::Client,
            branch,
            "",
            rsip::Method::Options,
        )
    }

    #[test]
    fn earliest_first_and_rearm_replaces() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let (a, b) = (key("a"), key("b"));
        timers.arm(&a, TimerSlot::Expiry, t0 + Duration::from_secs(3));
        timers.arm(&b, TimerSlot::Retransmit, t0 + Duration::from_secs(1));
        timers.arm(&a, TimerSlot::Retransmit, t0 + Duration::from_secs(2));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        // Re-arming moves the deadline instead of adding a second one.
        timers.arm(&b, TimerSlot::Retransmit, t0 + Duration::from_secs(5));
        assert_eq!(timers.len(), 3);
        assert_eq!(timers.pop_expired(t0 + Duration::from_secs(1)), None);
        let fired: Vec<_> =
            std::iter::from_fn(|| timers.pop_expired(t0 + Duration::from_secs(4))).collect();
        assert_eq!(
            fired,
            vec![
                (a.clone(), TimerSlot::Retransmit),
                (a.clone(), TimerSlot::Expiry)
            ]
        );
        timers.disarm_all(&b);
        assert_eq!(timers.next_deadline(), None);
        assert_eq!(timers.len(), 0);
        assert_eq!(timers.armed.len(), 0, "no bookkeeping left behind");
    }

    #[test]
    fn rfc3261_values() {
        let cfg = TimerConfig::default();
        assert_eq!(cfg.timeout(), Duration::from_secs(32));
        assert_eq!(cfg.backoff(Duration::from_secs(2)), Duration::from_secs(4));
        assert_eq!(cfg.backoff(Duration::from_secs(4)), Duration::from_secs(4));
        assert_eq!(
            cfg.invite_backoff(Duration::from_secs(4)),
            Duration::from_secs(8)
        );
        assert_eq!(cfg.timer_d(TransportKind::Udp), Duration::from_secs(32));
        assert_eq!(cfg.timer_d(TransportKind::Tcp), Duration::ZERO);
        assert_eq!(cfg.timer_i_k(TransportKind::Udp), Duration::from_secs(5));
        assert_eq!(cfg.timer_i_k(TransportKind::Tcp), Duration::ZERO);
        assert_eq!(cfg.timer_j(TransportKind::Udp), Duration::from_secs(32));
        assert_eq!(cfg.timer_j(TransportKind::Tcp), Duration::ZERO);
        let zero = TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        }
        .sanitized();
        assert!(zero.t1 > Duration::ZERO && zero.t2 >= zero.t1);
    }
}
