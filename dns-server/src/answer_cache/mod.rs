//! The answer cache: forwarded answers, kept for their TTL, answered without asking upstream.
//!
//! Shared by two stages (behind an `Arc`), neither of which owns it: the cache stage
//! ([`crate::pipeline::cache`]) reads it, the forward stage fills it.
//!
//! **What is cached.** Only answers that came back through the forward stage. The cache
//! stage looks up a name only when the routes say the forward stage would forward it, so
//! cluster names and zone names (answered locally, always current) never touch the cache
//! or its locks. Zone transfers and non-IN classes are never cached.
//!
//! **Two caches** (CoreDNS `success` / `denial`), each with its own capacity, so a flood of
//! random names (NXDOMAIN) cannot push out the positive answers:
//!
//! | reply                                   | cache   | kept for                                              |
//! |-----------------------------------------|---------|-------------------------------------------------------|
//! | NOERROR with answers                    | success | smallest answer TTL, clamped to `[minTtl, maxTtl]`     |
//! | NXDOMAIN, or NOERROR without answers    | denial  | min(SOA TTL, SOA minimum) (RFC 2308 §5), clamped to `[minTtl, denialTtl]` |
//! | a denial without a SOA, any other rcode, a truncated reply | not cached |                               |
//!
//! Every record of an answer goes out with the entry's remaining time (TTL counting down
//! from when it was stored), never more than what the upstream said.
//!
//! **Key.** Everything that changes the answer: the lower-cased name, type, class, and the
//! DO and CD bits (a DNSSEC-aware client must not get an answer fetched without them).
//! Routing (which forwarder a name goes to, which names are local) is not in the key
//! because a cache lives only as long as the routing it was filled under: when the zones'
//! apexes, the cluster domain or a forwarder change, the next pipeline starts a new cache
//! ([`crate::pipeline::Pipeline::adopt`]). A later policy stage that answers differently per client
//! must add its decision to [`Key`] (`partition`), so one client's answer never
//! reaches another through the cache. The policy stage does not need to: it checks every
//! answer, cached or not, for the client it goes to ([`crate::pipeline::client::policy`]), so entries are
//! shared safely.
//!
//! **Hits** are written from the reply encoded when it was stored
//! ([`crate::wire::cached`]): a copy with the TTLs patched.
//!
//! **Prefetch** (CoreDNS `prefetch`). With `prefetch` set, each entry counts its hits in a
//! window; the first hit that finds it popular (`amount` hits in `durationSeconds`) with
//! less than `percentage` % of its TTL left is answered from the cache as usual and also
//! forwarded ([`crate::pipeline::flow::Flow::CachedAndRefresh`]), in the background, within the
//! forwarder's in-flight limit; the answer replaces the entry. Popular names then never
//! expire for their clients (`coredns_cache_prefetch_total` counts refreshes).
//!
//! **Serve-stale** (RFC 8767). With `serveStaleSeconds` set, an entry stays for that long
//! after it expired. It is never answered while the forwarder works; when every upstream
//! attempt fails (timeout, network error, SERVFAIL/REFUSED), or every upstream is already
//! known down, the forward stage answers it with TTL [`STALE_TTL`] instead of SERVFAIL.
//! Past the window the entry is gone and failures are SERVFAIL again.
//!
//! **Bounded in bytes** ([`ByteLimits`]). Besides its entry capacities the cache has a
//! byte budget for the process (`--cache-max-bytes`, default [`DEFAULT_MAX_BYTES`]), split
//! between the success and the denial cache in proportion to their capacities, and an
//! answer whose stored size is above `--cache-max-entry-bytes` (default
//! [`DEFAULT_MAX_ENTRY_BYTES`]) is not cached at all (it is still answered). The stored
//! size ([`stored_size`]) counts the entry's structs, its records' structs, its key, and
//! its records' names and data as they are encoded (the template a hit is written from,
//! [`crate::wire::cached`]); an answer that cannot be encoded as one message is never cached. A store
//! over its budget evicts as it does when over its capacity ([`store`]).
//!
//! Metrics: [`crate::metrics::cache`] (CoreDNS names, and `nameplane_cache_bytes`,
//! `nameplane_cache_too_large_total`).

mod store;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, Record};
use nameplane_config::forward::CacheConfig;

pub use crate::metrics::cache::{CacheMetrics, Kind};

use crate::reply::{Key, Reply};
use crate::wire::cached::WireReply;
use store::{Entry, Popularity, Store};

/// TTL of records answered from a stale entry (RFC 8767 §4 suggests 30 s).
pub const STALE_TTL: u32 = 30;

/// Default byte budget of the answer cache (success and denial together).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Default largest stored size of one cached answer; larger answers are not cached. A
/// decoded record takes about 270 bytes besides its data, so this is an answer of about
/// 200 records (a headless Service of 100 endpoints from a stub domain fits twice).
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 64 * 1024;

/// The cache's memory bounds, process flags (`--cache-max-bytes`,
/// `--cache-max-entry-bytes`): the same for every config, so a reload never changes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteLimits {
    /// Bytes all entries may take, success and denial cache together.
    pub max_bytes: usize,
    /// Largest stored size of one entry.
    pub max_entry_bytes: usize,
}

impl Default for ByteLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
        }
    }
}

/// Bytes an entry for `key` holding `reply`, encoded as `wire`, takes in a store: the
/// structs (exact sizes) plus the encoded records (the template itself, and as an estimate
/// of what the decoded records own on the heap: their names and data).
pub(crate) fn stored_size(key: &Key, reply: &Reply, wire: &WireReply) -> usize {
    use std::mem::size_of;
    let records = reply.answers.len() + reply.authorities.len() + reply.additionals.len();
    // The map's slot (key and entry side by side, plus its control byte), the shared
    // reply and template behind their Arcs (two counters each), the prefetch counters.
    size_of::<(Key, store::Entry)>()
        + 1
        + key.name.len()
        + size_of::<Reply>()
        + records * size_of::<Record>()
        + size_of::<WireReply>()
        + 2 * wire.encoded_len()
        + size_of::<Popularity>()
        + 3 * 2 * size_of::<usize>()
}

/// A cached reply and how much of its life is left.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The reply as stored.
    pub reply: Arc<Reply>,
    /// Which cache it came from.
    pub kind: Kind,
    /// The TTL to put on its records (at most: a record keeps a smaller TTL of its own,
    /// except in a stale answer, where every record gets [`STALE_TTL`]).
    pub ttl: u32,
    /// Past its TTL, answered because the upstreams failed.
    pub stale: bool,
    /// The reply encoded, for [`WireReply::write`].
    pub wire: Option<Arc<WireReply>>,
    /// Popular and close to expiry: refresh it in the background (prefetch). Set on one
    /// hit per entry.
    pub refresh: bool,
}

impl Hit {
    /// The reply to answer with: every record's TTL at most [`Hit::ttl`] (exactly that in a
    /// stale answer).
    pub fn reply_for(&self) -> Reply {
        let ttl = self.ttl;
        let adjust = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    record.ttl = if self.stale { ttl } else { record.ttl.min(ttl) };
                    record
                })
                .collect()
        };
        Reply {
            rcode: self.reply.rcode,
            truncated: false,
            answers: adjust(&self.reply.answers),
            authorities: adjust(&self.reply.authorities),
            additionals: adjust(&self.reply.additionals),
        }
    }
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.reply, &other.reply) && self.ttl == other.ttl
    }
}

impl Eq for Hit {}

/// The success and denial caches with their settings. Shared (behind an `Arc`) by the cache
/// stage, which reads it, and the forward stage, which fills it.
#[derive(Debug)]
pub struct Cache {
    settings: CacheConfig,
    success: Store,
    denial: Store,
    stale: Duration,
    /// Where prefetch windows are counted from.
    epoch: Instant,
    limits: ByteLimits,
}

fn seconds(value: u32) -> Duration {
    Duration::from_secs(u64::from(value))
}

impl Cache {
    /// An empty cache with these settings and the default [`ByteLimits`].
    pub fn new(settings: &CacheConfig) -> Self {
        Self::with_limits(settings, ByteLimits::default())
    }

    /// An empty cache with these settings within `limits`: the byte budget is split between
    /// the success and the denial cache in proportion to their capacities.
    pub fn with_limits(settings: &CacheConfig, limits: ByteLimits) -> Self {
        let capacity = |n: u32| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        let (success, denial) = (
            capacity(settings.capacity),
            capacity(settings.denial_capacity()),
        );
        // In u128: capacities up to u32::MAX times budgets up to usize::MAX.
        let share = u128::try_from(limits.max_bytes).unwrap_or(u128::MAX)
            * u128::try_from(success).unwrap_or(u128::MAX)
            / (u128::try_from(success).unwrap_or(u128::MAX)
                + u128::try_from(denial).unwrap_or(u128::MAX));
        let success_bytes = usize::try_from(share).unwrap_or(limits.max_bytes);
        Self {
            success: Store::new(success, success_bytes, limits.max_entry_bytes),
            denial: Store::new(
                denial,
                limits.max_bytes - success_bytes,
                limits.max_entry_bytes,
            ),
            stale: seconds(settings.serve_stale_seconds),
            epoch: Instant::now(),
            settings: settings.clone(),
            limits,
        }
    }

    /// The byte limits the cache was built with.
    pub fn limits(&self) -> ByteLimits {
        self.limits
    }

    /// The settings the cache was built with.
    pub fn settings(&self) -> &CacheConfig {
        &self.settings
    }

    fn store(&self, kind: Kind) -> &Store {
        match kind {
            Kind::Success => &self.success,
            Kind::Denial => &self.denial,
        }
    }

    /// Entries in one cache.
    pub fn len(&self, kind: Kind) -> usize {
        self.store(kind).len()
    }

    /// Whether both caches are empty.
    pub fn is_empty(&self) -> bool {
        self.success.len() == 0 && self.denial.len() == 0
    }

    /// Largest number of entries one cache holds.
    pub fn capacity(&self, kind: Kind) -> usize {
        self.store(kind).capacity()
    }

    /// Bytes the entries of one cache take ([`stored_size`] summed).
    pub fn bytes(&self, kind: Kind) -> usize {
        self.store(kind).bytes()
    }

    /// Largest number of bytes one cache holds.
    pub fn max_bytes(&self, kind: Kind) -> usize {
        self.store(kind).max_bytes()
    }

    fn find(&self, key: &Key, now: Instant) -> Option<(Kind, Entry)> {
        [Kind::Success, Kind::Denial]
            .into_iter()
            .find_map(|kind| Some((kind, self.store(kind).get(key, now, self.stale)?)))
    }

    /// A fresh entry for `key`: its reply with the TTL left.
    pub fn fresh(&self, key: &Key, now: Instant) -> Option<Hit> {
        let (kind, entry) = self.find(key, now)?;
        let age = now.saturating_duration_since(entry.stored);
        let left = entry.ttl.checked_sub(age).filter(|left| !left.is_zero())?;
        // Round up: an entry with 0.4 s left still goes out with TTL 1, never 0.
        let ttl =
            u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0)).unwrap_or(u32::MAX);
        let refresh = self.settings.prefetch.as_ref().is_some_and(|prefetch| {
            let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
                .unwrap_or(u64::MAX);
            let window_ms = u64::from(prefetch.duration_seconds) * 1000;
            let popular = entry.popularity.hit(now_ms, window_ms) >= prefetch.amount;
            let nearly_expired =
                left.as_millis() * 100 <= entry.ttl.as_millis() * u128::from(prefetch.percentage);
            popular && nearly_expired && !entry.popularity.refreshing.swap(true, Ordering::Relaxed)
        });
        Some(Hit {
            reply: entry.reply,
            kind,
            ttl,
            stale: false,
            wire: entry.wire,
            refresh,
        })
    }

    /// An entry for `key` that may be served because the upstreams failed: any entry still
    /// inside its stale window, with TTL [`STALE_TTL`]. `None` when serve-stale is off.
    pub fn stale(&self, key: &Key, now: Instant) -> Option<Hit> {
        if self.stale.is_zero() {
            return None;
        }
        let (kind, entry) = self.find(key, now)?;
        Some(Hit {
            reply: entry.reply,
            kind,
            ttl: STALE_TTL,
            stale: true,
            wire: entry.wire,
            refresh: false,
        })
    }

    /// How long `reply` may be cached, and in which cache; `None` when it must not be.
    pub fn classify(&self, reply: &Reply) -> Option<(Kind, Duration)> {
        if reply.truncated {
            return None;
        }
        let (kind, ttl, max) = match reply.rcode {
            ResponseCode::NoError if !reply.answers.is_empty() => (
                Kind::Success,
                reply.answers.iter().map(|r| r.ttl).min()?,
                self.settings.max_ttl_seconds,
            ),
            ResponseCode::NoError | ResponseCode::NXDomain => {
                let soa_ttl = reply.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?;
                (Kind::Denial, soa_ttl, self.settings.denial_ttl_seconds)
            }
            _ => return None,
        };
        let ttl = ttl.min(max).max(self.settings.min_ttl_seconds.min(max));
        (ttl > 0).then(|| (kind, seconds(ttl)))
    }

    /// Stores `reply` for `key` if it may be cached and is not larger than the per-entry
    /// cap (else counts it as too large); counts evictions, entries and bytes.
    pub fn insert(&self, key: Key, reply: Arc<Reply>, now: Instant, metrics: &CacheMetrics) {
        let Some((kind, ttl)) = self.classify(&reply) else {
            return;
        };
        // One name is in one cache at a time.
        let other = match kind {
            Kind::Success => Kind::Denial,
            Kind::Denial => Kind::Success,
        };
        let store = self.store(kind);
        // Encoded here, once per stored reply, outside the shard's lock. An answer that
        // does not encode as one message is larger than any entry may be.
        let Some(wire) = WireReply::build(&key, &reply) else {
            metrics.too_large(kind);
            return;
        };
        let size = stored_size(&key, &reply, &wire);
        if size > self.limits.max_entry_bytes {
            metrics.too_large(kind);
            return;
        }
        let entry = Entry {
            reply,
            wire: Some(Arc::new(wire)),
            popularity: Arc::default(),
            stored: now,
            ttl,
            size,
        };
        match store.insert(key, entry, self.stale) {
            Some(evicted) => metrics.evictions(kind, evicted),
            None => metrics.too_large(kind),
        }
        for kind in [kind, other] {
            metrics.set_entries(kind, self.store(kind).len());
            metrics.set_bytes(kind, self.store(kind).bytes());
        }
    }

    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.success.clear();
        self.denial.clear();
    }
}
