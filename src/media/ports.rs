//! RTP/RTCP port pairs for the relay.
//!
//! Owns: the bookkeeping of which even RTP ports (with their odd RTCP
//! companion, RTP + 1, RFC 3550 §11) of the configured range are handed out.
//! Allocation is round-robin: the cursor moves past every port it hands out,
//! so a port freed by a call that just ended is not reused at once and late
//! packets of the old call cannot leak into a new one.
//!
//! Must not: bind sockets. Whether a handed-out port can really be bound is
//! the relay's business ([`super::relay::MediaEndpoint::bind`] retries on the
//! next pair when something else holds it).

use std::sync::{Arc, Mutex, MutexGuard};

/// Thread-safe handle on the pool of RTP port pairs; clones share the pool.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    pool: Arc<Mutex<Pool>>,
}

#[derive(Debug)]
struct Pool {
    /// The lowest RTP port of the range (even, never 0).
    first: u16,
    /// `in_use[i]` is the pair starting at `first + 2 i`.
    in_use: Vec<bool>,
    /// Where the next search starts.
    cursor: usize,
    used: usize,
}

impl PortAllocator {
    /// A pool of the even ports `p` with `min <= p` and `p + 1 <= max`. An
    /// empty or inverted range gives a pool that allocates nothing.
    pub fn new(min: u16, max: u16) -> PortAllocator {
        let first = u32::from(min.max(2)).next_multiple_of(2);
        let last_rtp = u32::from(max).saturating_sub(1);
        let pairs = if first <= last_rtp {
            (last_rtp - first) / 2 + 1
        } else {
            0
        };
        let pool = Pool {
            first: u16::try_from(first).unwrap_or(u16::MAX),
            in_use: vec![false; pairs as usize],
            cursor: 0,
            used: 0,
        };
        PortAllocator {
            pool: Arc::new(Mutex::new(pool)),
        }
    }

    /// The next free even RTP port after the last one handed out, or `None`
    /// when every pair is in use.
    pub fn allocate(&self) -> Option<u16> {
        let mut pool = self.lock();
        let pairs = pool.in_use.len();
        let free = (0..pairs)
            .map(|step| (pool.cursor + step) % pairs)
            .find(|i| pool.in_use.get(*i) == Some(&false))?;
        let port = pool.port_of(free)?;
        if let Some(slot) = pool.in_use.get_mut(free) {
            *slot = true;
        }
        pool.used += 1;
        pool.cursor = (free + 1) % pairs;
        Some(port)
    }

    /// Gives `rtp_port` back. Returns false (and changes nothing) for a port
    /// that is not an allocated RTP port of this pool.
    pub fn release(&self, rtp_port: u16) -> bool {
        let mut pool = self.lock();
        let Some(index) = pool.index_of(rtp_port) else {
            return false;
        };
        match pool.in_use.get_mut(index) {
            Some(slot) if *slot => {
                *slot = false;
                pool.used -= 1;
                true
            }
            _ => false,
        }
    }

    /// Whether `rtp_port` is currently handed out.
    pub fn is_allocated(&self, rtp_port: u16) -> bool {
        let pool = self.lock();
        pool.index_of(rtp_port)
            .and_then(|i| pool.in_use.get(i).copied())
            .unwrap_or(false)
    }

    /// Number of pairs handed out.
    pub fn in_use(&self) -> usize {
        self.lock().used
    }

    /// Number of pairs in the range.
    pub fn capacity(&self) -> usize {
        self.lock().in_use.len()
    }

    /// The pool holds plain flags that no panic can leave half-updated, so a
    /// poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pool {
    fn port_of(&self, index: usize) -> Option<u16> {
        let offset = u16::try_from(index.checked_mul(2)?).ok()?;
        self.first.checked_add(offset)
    }

    fn index_of(&self, port: u16) -> Option<usize> {
        let offset = port.checked_sub(self.first)?;
        if offset % 2 != 0 {
            return None;
        }
        let index = usize::from(offset / 2);
        (index < self.in_use.len()).then_some(index)
    }
}

/// An allocated pair that goes back to its pool when dropped.
#[derive(Debug)]
pub struct PortLease {
    allocator: PortAllocator,
    rtp_port: u16,
}

impl PortLease {
    /// Allocates a pair from `allocator`.
    pub fn acquire(allocator: &PortAllocator) -> Option<PortLease> {
        let rtp_port = allocator.allocate()?;
        Some(PortLease {
            allocator: allocator.clone(),
            rtp_port,
        })
    }

    /// The even RTP port.
    pub fn rtp_port(&self) -> u16 {
        self.rtp_port
    }

    /// The odd RTCP port (RTP + 1; the pool never hands out 65535).
    pub fn rtcp_port(&self) -> u16 {
        self.rtp_port.saturating_add(1)
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.allocator.release(self.rtp_port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_even_ports_with_room_for_rtcp() {
        let ports = PortAllocator::new(41001, 41008);
        assert_eq!(
            ports.capacity(),
            3,
            "41002, 41004, 41006 (41008 has no 41009)"
        );
        let got: Vec<u16> = std::iter::from_fn(|| ports.allocate()).collect();
        assert_eq!(got, vec![41002, 41004, 41006]);
        assert_eq!(ports.allocate(), None, "exhausted");
        assert_eq!(ports.in_use(), 3);
    }

    #[test]
    fn round_robin_does_not_reuse_a_just_freed_port() {
        let ports = PortAllocator::new(41000, 41009);
        let first = ports.allocate().unwrap();
        assert_eq!(first, 41000);
        assert!(ports.release(first));
        assert_eq!(ports.allocate(), Some(41002));
        assert_eq!(ports.allocate(), Some(41004));
        assert!(ports.release(41002));
        assert_eq!(ports.allocate(), Some(41006));
        assert_eq!(ports.allocate(), Some(41008));
        // Wraps around and finds the freed ones, skipping the taken 41004.
        assert_eq!(ports.allocate(), Some(41000));
        assert_eq!(ports.allocate(), Some(41002));
        assert_eq!(ports.allocate(), None);
    }

    #[test]
    fn release_ignores_foreign_and_double_frees() {
        let ports = PortAllocator::new(41000, 41003);
        let port = ports.allocate().unwrap();
        assert!(!ports.release(port + 1), "odd port is not an RTP port");
        assert!(!ports.release(40000), "below the range");
        assert!(!ports.release(41004), "above the range");
        assert!(ports.is_allocated(port));
        assert!(ports.release(port));
        assert!(!ports.release(port), "double free");
        assert!(!ports.is_allocated(port));
        assert_eq!(ports.in_use(), 0);
    }

    #[test]
    fn degenerate_ranges_allocate_nothing() {
        for (min, max) in [
            (41000, 41000),
            (41001, 41001),
            (42000, 41000),
            (65535, 65535),
        ] {
            let ports = PortAllocator::new(min, max);
            assert_eq!(ports.capacity(), 0, "{min}-{max}");
            assert_eq!(ports.allocate(), None);
        }
        let low = PortAllocator::new(0, 3);
        assert_eq!(low.allocate(), Some(2), "port 0 is never handed out");
        let top = PortAllocator::new(65530, 65535);
        let got: Vec<u16> = std::iter::from_fn(|| top.allocate()).collect();
        assert_eq!(got, vec![65530, 65532, 65534]);
    }

    #[test]
    fn lease_returns_its_port_on_drop() {
        let ports = PortAllocator::new(41000, 41099);
        let lease = PortLease::acquire(&ports).unwrap();
        assert_eq!((lease.rtp_port(), lease.rtcp_port()), (41000, 41001));
        assert!(ports.is_allocated(41000));
        drop(lease);
        assert!(!ports.is_allocated(41000));
        assert_eq!(ports.in_use(), 0);
    }

    #[test]
    fn clones_share_the_pool_across_threads() {
        let ports = PortAllocator::new(41000, 41999);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ports = ports.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter_map(|_| ports.allocate())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u16> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 400, "no port handed out twice");
        assert_eq!(ports.in_use(), 400);
    }
}
