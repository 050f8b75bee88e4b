//! The directory of running calls a supervisor can find by extension: each
//! answered two-leg call registers its caller's number (leg A) and its
//! callee's number (leg B) with the call's [`TapPoint`], and removes them
//! when it ends.
//!
//! A call takes one supervisor at a time: [`Directory::claim`] hands out a
//! [`Claim`] that a second supervisor cannot get until the first is gone.
//!
//! Owns: only that index. It is the one piece of call state shared between
//! actors, behind a short lock taken once when a call is answered, once when
//! it ends and once per supervisor lookup, never on the media path. Must
//! not: hold anything that keeps a call alive (a stale [`TapPoint`] only
//! makes an attach do nothing), or decide who may use it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::media::relay::{Leg, TapPoint};

/// Running calls by extension number. Cheap to clone; clones share the
/// index.
pub type Taps = Directory<TapPoint>;

/// The index behind [`Taps`], generic over what is stored so it can be
/// tested without a media engine.
#[derive(Debug)]
pub struct Directory<P> {
    inner: Arc<Mutex<Index<P>>>,
}

#[derive(Debug)]
struct Index<P> {
    /// Entries by extension number, the latest answered call last.
    numbers: HashMap<String, Vec<Entry<P>>>,
    /// Calls (by Call-ID) a supervisor is on.
    supervised: HashSet<String>,
}

/// What a supervisor finds under an extension.
#[derive(Debug)]
pub enum Lookup<P> {
    /// The extension is in no answered call.
    NotInCall,
    /// Its call has a supervisor already.
    Supervised,
    /// Its call, the leg it is on, and the call held for this supervisor.
    Found { point: P, leg: Leg, claim: Claim<P> },
}

/// One supervisor's hold on a call; dropping it lets the next one in.
#[derive(Debug)]
pub struct Claim<P> {
    directory: Directory<P>,
    call_id: String,
}

impl<P> Drop for Claim<P> {
    fn drop(&mut self) {
        let mut index = self
            .directory
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        index.supervised.remove(&self.call_id);
    }
}

#[derive(Debug)]
struct Entry<P> {
    call_id: String,
    point: P,
    leg: Leg,
}

impl<P> Clone for Directory<P> {
    fn clone(&self) -> Self {
        Directory {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P> Default for Directory<P> {
    fn default() -> Self {
        Directory {
            inner: Arc::new(Mutex::new(Index {
                numbers: HashMap::new(),
                supervised: HashSet::new(),
            })),
        }
    }
}

impl<P: Clone> Directory<P> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index<P>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The call `call_id` was answered: `caller` is on leg A, `callee` on
    /// leg B.
    pub fn register_call(&self, call_id: &str, point: P, caller: &str, callee: &str) {
        let mut index = self.lock();
        for (number, leg) in [(caller, Leg::A), (callee, Leg::B)] {
            index
                .numbers
                .entry(number.to_owned())
                .or_default()
                .push(Entry {
                    call_id: call_id.to_owned(),
                    point: point.clone(),
                    leg,
                });
        }
    }

    /// The call `number` is in (the latest answered one if several) and
    /// the leg it is on.
    pub fn find(&self, number: &str) -> Option<(P, Leg)> {
        let index = self.lock();
        let entry = index.numbers.get(number)?.last()?;
        Some((entry.point.clone(), entry.leg))
    }

    /// The call `number` is in, held for one supervisor until the
    /// [`Claim`] is dropped.
    pub fn claim(&self, number: &str) -> Lookup<P> {
        let mut index = self.lock();
        let Some(entry) = index.numbers.get(number).and_then(|e| e.last()) else {
            return Lookup::NotInCall;
        };
        let (point, leg, call_id) = (entry.point.clone(), entry.leg, entry.call_id.clone());
        if !index.supervised.insert(call_id.clone()) {
            return Lookup::Supervised;
        }
        let claim = Claim {
            directory: self.clone(),
            call_id,
        };
        Lookup::Found { point, leg, claim }
    }

    /// The call `call_id` has ended: forget every number it registered.
    pub fn remove_call(&self, call_id: &str) {
        let mut index = self.lock();
        index.numbers.retain(|_, entries| {
            entries.retain(|e| e.call_id != call_id);
            !entries.is_empty()
        });
    }

    /// How many numbers are in a call now.
    pub fn len(&self) -> usize {
        self.lock().numbers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parties_are_found_on_their_legs_until_the_call_ends() {
        let taps: Directory<u32> = Directory::new();
        taps.register_call("c1", 7, "1001", "1002");
        assert_eq!(taps.find("1001"), Some((7, Leg::A)));
        assert_eq!(taps.find("1002"), Some((7, Leg::B)));
        assert_eq!(taps.find("1003"), None);
        let other = taps.clone();
        other.remove_call("c1");
        assert_eq!(taps.find("1001"), None, "clones share the index");
        assert!(taps.is_empty());
    }

    #[test]
    fn an_extension_in_two_calls_keeps_the_one_still_running() {
        let taps: Directory<u32> = Directory::new();
        taps.register_call("c1", 1, "1001", "1002");
        taps.register_call("c2", 2, "1003", "1001");
        assert_eq!(taps.find("1001"), Some((2, Leg::B)), "latest call");
        taps.remove_call("c2");
        assert_eq!(taps.find("1001"), Some((1, Leg::A)), "first call goes on");
        assert_eq!(taps.find("1003"), None);
        assert_eq!(taps.len(), 2);
        taps.remove_call("unknown");
        assert_eq!(taps.len(), 2);
    }

    #[test]
    fn a_call_takes_one_supervisor_at_a_time() {
        let taps: Directory<u32> = Directory::new();
        assert!(matches!(taps.claim("1002"), Lookup::NotInCall));
        taps.register_call("c1", 5, "1001", "1002");
        let Lookup::Found { point, leg, claim } = taps.claim("1002") else {
            panic!("the agent's call is free");
        };
        assert_eq!((point, leg), (5, Leg::B));
        assert!(
            matches!(taps.claim("1001"), Lookup::Supervised),
            "the same call, through the other party"
        );
        drop(claim);
        assert!(matches!(
            taps.claim("1001"),
            Lookup::Found { leg: Leg::A, .. }
        ));
    }
}
