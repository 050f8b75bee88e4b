//! Per-source lockout after repeated authentication failures.
//!
//! A failure is a request whose credentials did not verify (wrong password and
//! unknown user count the same). After `threshold` failures from one source
//! address within `window`, that address is locked for `lock_for`; a verified
//! request clears its record. Memory is bounded by `max_tracked`: expired
//! records are pruned first, then the least recently seen record is evicted.
//! (So a source able to present more than `max_tracked` distinct addresses can
//! flush records: size it generously.)
//!
//! This module owns the failure bookkeeping only; it must not read the clock
//! (time is a parameter) nor decide what to answer a locked source.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lockout policy. `threshold == 0` disables lockout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failures within `window` that lock a source.
    pub threshold: u32,
    /// How long failures are remembered, counted from the first one.
    pub window: Duration,
    /// How long a locked source stays locked.
    pub lock_for: Duration,
    /// Most source addresses remembered at once.
    pub max_tracked: usize,
}

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    window_start: Instant,
    locked_at: Option<Instant>,
    last_seen: Instant,
}

/// Failure records keyed by source address.
#[derive(Debug, Clone)]
pub struct Lockout {
    config: LockoutConfig,
    records: HashMap<IpAddr, Record>,
    /// (last_seen, ip) for every record, oldest first.
    by_age: BTreeSet<(Instant, IpAddr)>,
}

impl Lockout {
    pub fn new(config: LockoutConfig) -> Self {
        Lockout {
            config,
            records: HashMap::new(),
            by_age: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &LockoutConfig {
        &self.config
    }

    /// Replace the policy (on reload), keeping current records.
    pub fn set_config(&mut self, config: LockoutConfig) {
        self.config = config;
    }

    /// Count a failed authentication from `ip`. Returns true if `ip` is
    /// locked now (by this failure or an earlier one).
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.config.threshold == 0 {
            return false;
        }
        if self.is_locked(ip, now) {
            self.touch(ip, now);
            return true;
        }
        if !self.records.contains_key(&ip) {
            self.make_room(now);
        }
        let config = self.config.clone();
        let record = self.records.entry(ip).or_insert(Record {
            failures: 0,
            window_start: now,
            locked_at: None,
            last_seen: now,
        });
        if record.locked_at.is_some() || elapsed(record.window_start, now) >= config.window {
            // A lock that ran out, or a window that closed: start afresh.
            record.failures = 0;
            record.window_start = now;
            record.locked_at = None;
        }
        record.failures = record.failures.saturating_add(1);
        let locked = record.failures >= config.threshold;
        if locked {
            record.locked_at = Some(now);
        }
        self.touch(ip, now);
        locked
    }

    /// A verified request from `ip`: forget its failures.
    pub fn record_success(&mut self, ip: IpAddr, _now: Instant) {
        if let Some(r) = self.records.remove(&ip) {
            self.by_age.remove(&(r.last_seen, ip));
        }
    }

    /// Whether requests from `ip` must be refused at `now`.
    pub fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        self.records
            .get(&ip)
            .and_then(|r| r.locked_at)
            .is_some_and(|at| elapsed(at, now) < self.config.lock_for)
    }

    /// Number of source addresses currently remembered.
    pub fn tracked(&self) -> usize {
        self.records.len()
    }

    /// Number of source addresses locked at `now`.
    pub fn locked_count(&self, now: Instant) -> usize {
        self.records
            .keys()
            .filter(|ip| self.is_locked(**ip, now))
            .count()
    }

    /// Drop every record that no longer affects anything.
    pub fn prune(&mut self, now: Instant) {
        let horizon = self.config.window.max(self.config.lock_for);
        while let Some(&(seen, ip)) = self.by_age.first() {
            if elapsed(seen, now) < horizon {
                break;
            }
            self.by_age.pop_first();
            self.records.remove(&ip);
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.records.len() < self.config.max_tracked {
            return;
        }
        self.prune(now);
        while self.records.len() >= self.config.max_tracked.max(1) {
            let Some((_, ip)) = self.by_age.pop_first() else {
                break;
            };
            self.records.remove(&ip);
        }
    }

    fn touch(&mut self, ip: IpAddr, now: Instant) {
        if let Some(r) = self.records.get_mut(&ip) {
            self.by_age.remove(&(r.last_seen, ip));
            r.last_seen = r.last_seen.max(now);
            self.by_age.insert((r.last_seen, ip));
        }
    }
}

/// Time from `since` to `now`, zero if `now` is earlier.
fn elapsed(since: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn config() -> LockoutConfig {
        LockoutConfig {
            threshold: 3,
            window: Duration::from_secs(60),
            lock_for: Duration::from_secs(300),
            max_tracked: 100,
        }
    }

    #[test]
    fn locks_after_threshold_and_unlocks_after_lock_for() {
        let t0 = Instant::now();
        let mut l = Lockout::new(config());
        assert!(!l.record_failure(ip(1), t0));
        assert!(!l.record_failure(ip(1), t0 + Duration::from_secs(1)));
        assert!(!l.is_locked(ip(1), t0 + Duration::from_secs(2)));
        assert!(l.record_failure(ip(1), t0 + Duration::from_secs(2)));
        assert!(l.is_locked(ip(1), t0 + Duration::from_secs(3)));
        assert!(l.is_locked(ip(1), t0 + Duration::from_secs(301)));
        assert_eq!(l.locked_count(t0 + Duration::from_secs(3)), 1);
        // Failures while locked do not extend the lock.
        assert!(l.record_failure(ip(1), t0 + Duration::from_secs(200)));
        let after = t0 + Duration::from_secs(302);
        assert!(!l.is_locked(ip(1), after));
        // After the lock the count starts again from zero.
        assert!(!l.record_failure(ip(1), after));
    }

    #[test]
    fn other_sources_are_unaffected() {
        let t0 = Instant::now();
        let mut l = Lockout::new(config());
        for _ in 0..3 {
            l.record_failure(ip(1), t0);
        }
        assert!(l.is_locked(ip(1), t0));
        assert!(!l.is_locked(ip(2), t0));
        assert!(!l.record_failure(ip(2), t0));
        let v6: IpAddr = "2001:db8::1".parse().unwrap_or(ip(9));
        assert!(!l.is_locked(v6, t0));
    }

    #[test]
    fn success_clears_failures() {
        let t0 = Instant::now();
        let mut l = Lockout::new(config());
        l.record_failure(ip(1), t0);
        l.record_failure(ip(1), t0);
        l.record_success(ip(1), t0);
        assert_eq!(l.tracked(), 0);
        assert!(!l.record_failure(ip(1), t0));
        assert!(!l.record_failure(ip(1), t0));
        assert!(l.record_failure(ip(1), t0));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut l = Lockout::new(config());
        l.record_failure(ip(1), t0);
        l.record_failure(ip(1), t0 + Duration::from_secs(30));
        // Window (60 s from the first failure) closed: this is failure #1 again.
        assert!(!l.record_failure(ip(1), t0 + Duration::from_secs(61)));
        assert!(!l.record_failure(ip(1), t0 + Duration::from_secs(62)));
        assert!(l.record_failure(ip(1), t0 + Duration::from_secs(63)));
    }

    #[test]
    fn memory_is_bounded_and_expired_records_go_first() {
        let t0 = Instant::now();
        let mut l = Lockout::new(LockoutConfig {
            max_tracked: 3,
            ..config()
        });
        for i in 0..3 {
            l.record_failure(ip(1), t0);
            if i == 2 {
                assert!(l.is_locked(ip(1), t0));
            }
        }
        l.record_failure(ip(2), t0 + Duration::from_secs(1));
        l.record_failure(ip(3), t0 + Duration::from_secs(2));
        // Full: a new source evicts the least recently seen (ip 1).
        l.record_failure(ip(4), t0 + Duration::from_secs(3));
        assert_eq!(l.tracked(), 3);
        assert!(!l.is_locked(ip(1), t0 + Duration::from_secs(3)));
        for i in 5..50 {
            l.record_failure(ip(i), t0 + Duration::from_secs(4));
            assert!(l.tracked() <= 3);
        }
        // Much later, everything has expired and is pruned.
        l.prune(t0 + Duration::from_secs(1000));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn zero_threshold_disables_lockout() {
        let t0 = Instant::now();
        let mut l = Lockout::new(LockoutConfig {
            threshold: 0,
            ..config()
        });
        for _ in 0..10 {
            assert!(!l.record_failure(ip(1), t0));
        }
        assert!(!l.is_locked(ip(1), t0));
        assert_eq!(l.tracked(), 0);
    }
}
