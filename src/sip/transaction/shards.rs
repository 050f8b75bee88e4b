//! A hash map split into a fixed number of shards.
//!
//! Under load the layer holds hundreds of thousands of finished UDP
//! transactions (kept 64·T1 = 32 s). One `HashMap` that size doubles in one
//! go, copying everything while every message waits: the B1 benchmark saw
//! p99 spikes of hundreds of milliseconds at the rates where that happened.
//! With the entries spread over shards, each growth copies a small part.

use std::borrow::Borrow;
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::{BuildHasher, Hash};

const SHARDS: usize = 64;

/// The shards all use one hasher; a key's shard comes from bits of its hash
/// that the shard's own table does not use for buckets (low bits) or tags
/// (top bits), so the keys of one shard still spread over its table.
#[derive(Debug)]
pub(super) struct ShardedMap<K, V, S = RandomState> {
    shards: [HashMap<K, V, S>; SHARDS],
    hasher: S,
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone + Default> Default for ShardedMap<K, V, S> {
    fn default() -> Self {
        let hasher = S::default();
        ShardedMap {
            shards: std::array::from_fn(|_| HashMap::with_hasher(hasher.clone())),
            hasher,
        }
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> ShardedMap<K, V, S> {
    fn index<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The modulo keeps the index below SHARDS.
        ((self.hasher.hash_one(key) >> 32) % SHARDS as u64) as usize
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.index(key)].get(key)
    }

    pub(super) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.index(key);
        self.shards[i].get_mut(key)
    }

    pub(super) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.index(key)].contains_key(key)
    }

    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let i = self.index(&key);
        self.shards[i].insert(key, value)
    }

    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.index(key);
        self.shards[i].remove(key)
    }

    pub(super) fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let i = self.index(&key);
        self.shards[i].entry(key)
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_one_map() {
        let mut m: ShardedMap<u32, u32> = ShardedMap::default();
        for i in 0..1000u32 {
            assert_eq!(m.insert(i, i * 2), None);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.insert(7, 0), Some(14));
        assert_eq!(m.get(&7), Some(&0));
        *m.get_mut(&8).expect("present") += 1;
        assert_eq!(m.get(&8), Some(&17));
        assert!(m.contains_key(&999) && !m.contains_key(&1000));
        *m.entry(1000).or_default() += 5;
        assert_eq!(m.remove(&1000), Some(5));
        assert_eq!(m.remove(&1000), None);
        assert_eq!(m.len(), 1000);
        // Entries really are spread out.
        assert!(m.shards.iter().filter(|s| !s.is_empty()).count() > SHARDS / 2);
    }
}
