//! A map from [`Key`] to cached replies bounded in entries and in bytes, split into shards
//! so that concurrent queries for different names rarely meet on one lock. A full shard
//! (too many entries, or the new entry would take it past its share of the byte budget)
//! evicts an entry past its stale window if it finds one among a few, else a random one
//! (CoreDNS also evicts at random: no per-hit bookkeeping), until the new entry fits.
//!
//! Every entry carries its stored size ([`Entry::size`], computed once when it is made);
//! each shard keeps the sum of its entries' sizes, so checking the budget is an addition.
//! An entry is at most the per-entry cap (larger ones are never offered: see
//! [`super::Cache::insert`]) and a shard's budget is at least [`MIN_ENTRIES_PER_SHARD_BUDGET`]
//! such entries, so one insert evicts a bounded number of entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use rand::RngExt as _;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use crate::reply::{Key, Reply};
use crate::wire::cached::WireReply;

/// Most shards of one store. Shards hold about [`MIN_PER_SHARD`] entries up to 256k entries
/// per store; an eviction walks at most one shard, so shards stay small.
const MAX_SHARDS: usize = 4096;

/// Fewest entries per shard: a small cache is one shard, so it holds exactly its capacity.
const MIN_PER_SHARD: usize = 64;

/// A shard's byte budget holds at least this many entries of the largest cacheable size:
/// the budget is split into fewer shards rather than into shards too small for one answer.
pub(super) const MIN_ENTRIES_PER_SHARD_BUDGET: usize = 4;

/// Entries looked at for an expired one before evicting at random.
const EVICTION_PROBES: usize = 8;

/// One cached reply.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) reply: Arc<Reply>,
    /// The reply encoded for a fast hit, when it could be.
    pub(super) wire: Option<Arc<WireReply>>,
    /// How often it is asked (for prefetch), shared by every copy of the entry.
    pub(super) popularity: Arc<Popularity>,
    pub(super) stored: Instant,
    /// How long the entry is fresh, after min/max clamping.
    pub(super) ttl: Duration,
    /// Bytes the entry (with its key) takes in the store: [`super::stored_size`].
    pub(super) size: usize,
}

impl Entry {
    /// Past its TTL and its stale window: never served again.
    fn dead(&self, now: Instant, stale: Duration) -> bool {
        now.saturating_duration_since(self.stored) > self.ttl + stale
    }
}

/// One shard: its entries and the sum of their sizes.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Key, Entry>,
    bytes: usize,
}

/// A sharded map bounded in entries and bytes.
#[derive(Debug)]
pub(super) struct Store {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    per_shard_bytes: usize,
    hasher: RandomState,
    len: AtomicUsize,
    bytes: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a map half-updated in a way that matters
    // for a cache; keep serving.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// A store for at most about `capacity` entries (rounded up to a whole number per
    /// shard) and at most `max_bytes` bytes, of entries of at most `max_entry_bytes`.
    pub(super) fn new(capacity: usize, max_bytes: usize, max_entry_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        let by_bytes = max_bytes / (max_entry_bytes.max(1) * MIN_ENTRIES_PER_SHARD_BUDGET);
        let shards = (capacity / MIN_PER_SHARD)
            .min(by_bytes)
            .clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(shards),
            per_shard_bytes: max_bytes / shards,
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
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

    /// Bytes the entries take ([`Entry::size`] summed).
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Largest number of entries.
    pub(super) fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Largest number of bytes.
    pub(super) fn max_bytes(&self) -> usize {
        self.per_shard_bytes * self.shards.len()
    }

    fn remove(&self, shard: &mut Shard, key: &Key) -> Option<Entry> {
        let entry = shard.map.remove(key)?;
        shard.bytes -= entry.size;
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(entry.size, Ordering::Relaxed);
        Some(entry)
    }

    /// The entry for `key`, unless it is dead (then it is removed).
    pub(super) fn get(&self, key: &Key, now: Instant, stale: Duration) -> Option<Entry> {
        let mut shard = lock(self.shard(key));
        let entry = shard.map.get(key)?;
        if entry.dead(now, stale) {
            self.remove(&mut shard, key);
            return None;
        }
        Some(entry.clone())
    }

    /// Stores `entry`; returns how many live entries were evicted to make room (`None`:
    /// the entry is larger than a shard's whole budget and was not stored).
    pub(super) fn insert(&self, key: Key, entry: Entry, stale: Duration) -> Option<usize> {
        if entry.size > self.per_shard_bytes {
            return None;
        }
        let now = entry.stored;
        let mut shard = lock(self.shard(&key));
        self.remove(&mut shard, &key);
        let mut evicted = 0;
        while !shard.map.is_empty()
            && (shard.map.len() >= self.per_shard
                || shard.bytes + entry.size > self.per_shard_bytes)
        {
            let len = shard.map.len();
            let start = rand::rng().random_range(0..len);
            let expired = shard
                .map
                .iter()
                .skip(start)
                .take(EVICTION_PROBES)
                .find(|(_, entry)| entry.dead(now, stale))
                .map(|(key, _)| key.clone());
            let live = expired.is_none();
            let victim = expired.or_else(|| shard.map.keys().nth(start).cloned());
            match victim {
                Some(victim) => {
                    self.remove(&mut shard, &victim);
                    evicted += usize::from(live);
                }
                None => break,
            }
        }
        shard.bytes += entry.size;
        self.len.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(entry.size, Ordering::Relaxed);
        shard.map.insert(key, entry);
        Some(evicted)
    }

    /// Removes every entry.
    #[cfg(test)]
    pub(super) fn clear(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            self.len.fetch_sub(shard.map.len(), Ordering::Relaxed);
            self.bytes.fetch_sub(shard.bytes, Ordering::Relaxed);
            shard.map.clear();
            shard.bytes = 0;
        }
    }
}

/// How often one entry was asked in the current prefetch window, and whether a refresh
/// of it is under way.
#[derive(Debug, Default)]
pub(super) struct Popularity {
    window_start_ms: AtomicU64,
    hits: AtomicU32,
    pub(super) refreshing: AtomicBool,
}

impl Popularity {
    /// Counts a hit at `now_ms` (milliseconds since the cache's epoch); returns the hits
    /// within the window of `window_ms` that this one falls in.
    pub(super) fn hit(&self, now_ms: u64, window_ms: u64) -> u32 {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(start) >= window_ms {
            // A new window; racing hits may each restart it, which only undercounts.
            self.window_start_ms.store(now_ms, Ordering::Relaxed);
            self.hits.store(1, Ordering::Relaxed);
            return 1;
        }
        self.hits.fetch_add(1, Ordering::Relaxed) + 1
    }
}
