//! A bounded map from [`Key`] to cached replies, split into shards so that concurrent
//! queries for different names rarely meet on one lock. A full shard evicts an entry past
//! its stale window if it finds one among a few, else a random one (CoreDNS also evicts at
//! random: no per-hit bookkeeping).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::RngExt as _;

use super::Key;
use crate::pipeline::forward::Reply;

/// Most shards of one store. Shards hold about [`MIN_PER_SHARD`] entries up to 256k entries
/// per store; an eviction walks at most one shard, so shards stay small.
const MAX_SHARDS: usize = 4096;

/// Fewest entries per shard: a small cache is one shard, so it holds exactly its capacity.
const MIN_PER_SHARD: usize = 64;

/// Entries looked at for an expired one before evicting at random.
const EVICTION_PROBES: usize = 8;

/// One cached reply.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) reply: Arc<Reply>,
    /// The reply encoded for a fast hit, when it could be.
    pub(super) wire: Option<Arc<super::wire::WireReply>>,
    /// How often it is asked (for prefetch), shared by every copy of the entry.
    pub(super) popularity: Arc<super::Popularity>,
    pub(super) stored: Instant,
    /// How long the entry is fresh, after min/max clamping.
    pub(super) ttl: Duration,
}

impl Entry {
    /// Past its TTL and its stale window: never served again.
    fn dead(&self, now: Instant, stale: Duration) -> bool {
        now.saturating_duration_since(self.stored) > self.ttl + stale
    }
}

/// A sharded, bounded map.
#[derive(Debug)]
pub(super) struct Store {
    shards: Box<[Mutex<HashMap<Key, Entry>>]>,
    per_shard: usize,
    hasher: RandomState,
    len: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a map half-updated in a way that matters
    // for a cache; keep serving.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// A store for at most about `capacity` entries (rounded up to a whole number per shard).
    pub(super) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(shards),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Entry>> {
        let hash = self.hasher.hash_one(key);
        // The modulo keeps the index in range; truncating the hash first is harmless.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hash as usize) % self.shards.len();
        &self.shards[index]
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Largest number of entries.
    pub(super) fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// The entry for `key`, unless it is dead (then it is removed).
    pub(super) fn get(&self, key: &Key, now: Instant, stale: Duration) -> Option<Entry> {
        let mut shard = lock(self.shard(key));
        let entry = shard.get(key)?;
        if entry.dead(now, stale) {
            shard.remove(key);
            self.len.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(entry.clone())
    }

    /// Stores `entry`; returns whether another entry was evicted to make room.
    pub(super) fn insert(&self, key: Key, entry: Entry, stale: Duration) -> bool {
        let now = entry.stored;
        let mut shard = lock(self.shard(&key));
        let mut evicted = false;
        if !shard.contains_key(&key) && shard.len() >= self.per_shard {
            let len = shard.len();
            let start = rand::rng().random_range(0..len);
            let victim = shard
                .iter()
                .skip(start)
                .take(EVICTION_PROBES)
                .find(|(_, entry)| entry.dead(now, stale))
                .map(|(key, _)| key.clone());
            let expired = victim.is_some();
            let victim = victim.or_else(|| shard.keys().nth(start).cloned());
            if let Some(victim) = victim {
                shard.remove(&victim);
                self.len.fetch_sub(1, Ordering::Relaxed);
                evicted = !expired;
            }
        }
        if shard.insert(key, entry).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        evicted
    }

    /// Removes every entry.
    #[cfg(test)]
    pub(super) fn clear(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            self.len.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
        }
    }
}
