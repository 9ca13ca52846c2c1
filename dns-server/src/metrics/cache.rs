//! The cache's metrics, under CoreDNS's names and labels (`plugin/cache/metrics.go`), so the
//! CoreDNS dashboards and alerts read them unchanged:
//!
//! | metric                              | labels                            |
//! |-------------------------------------|-----------------------------------|
//! | `coredns_cache_entries`             | `server`, `type`, `zones`, `view` |
//! | `coredns_cache_requests_total`      | `server`, `zones`, `view`         |
//! | `coredns_cache_hits_total`          | `server`, `type`, `zones`, `view` |
//! | `coredns_cache_misses_total`        | `server`, `zones`, `view`         |
//! | `coredns_cache_served_stale_total`  | `server`, `zones`, `view`         |
//! | `coredns_cache_prefetch_total`      | `server`, `zones`, `view`         |
//! | `coredns_cache_evictions_total`     | `server`, `type`, `zones`, `view` |
//! | `nameplane_cache_bytes`             | `server`, `type`, `zones`, `view` |
//! | `nameplane_cache_too_large_total`   | `server`, `type`, `zones`, `view` |
//!
//! `nameplane_cache_bytes` is the stored size of the entries (what the byte budget
//! counts); `nameplane_cache_too_large_total` counts answers not cached because they were
//! larger than the per-entry cap (or than a shard's whole budget).
//!
//! `type` is `success` or `denial`; `zones` is `.` (one cache serves every forwarded name);
//! `view` is empty (no views yet). Handles are created once, so counting takes no lock.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which of the two caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Answers with records.
    Success,
    /// NXDOMAIN and NODATA.
    Denial,
}

impl Kind {
    /// The `type` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denial => "denial",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypedLabels {
    server: Arc<str>,
    r#type: &'static str,
    zones: &'static str,
    view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    server: Arc<str>,
    zones: &'static str,
    view: &'static str,
}

/// Counter and gauge handles of the cache stage.
#[derive(Clone, Debug)]
pub struct CacheMetrics {
    entries: [Gauge; 2],
    hits: [Counter; 2],
    evictions: [Counter; 2],
    bytes: [Gauge; 2],
    too_large: [Counter; 2],
    requests: Counter,
    misses: Counter,
    served_stale: Counter,
    prefetches: Counter,
}

impl CacheMetrics {
    /// Registers the cache families in `registry`; `server` is the `server` label value.
    pub fn register(registry: &mut Registry, server: &Arc<str>) -> Self {
        let typed = |kind: Kind| TypedLabels {
            server: Arc::clone(server),
            r#type: kind.label(),
            zones: ".",
            view: "",
        };
        let plain = Labels {
            server: Arc::clone(server),
            zones: ".",
            view: "",
        };
        let entries = Family::<TypedLabels, Gauge>::default();
        let hits = Family::<TypedLabels, Counter>::default();
        let evictions = Family::<TypedLabels, Counter>::default();
        let bytes = Family::<TypedLabels, Gauge>::default();
        let too_large = Family::<TypedLabels, Counter>::default();
        let requests = Family::<Labels, Counter>::default();
        let misses = Family::<Labels, Counter>::default();
        let served_stale = Family::<Labels, Counter>::default();
        let prefetches = Family::<Labels, Counter>::default();
        registry.register(
            "coredns_cache_prefetch",
            "The number of times the cache has prefetched a cached item",
            prefetches.clone(),
        );
        registry.register(
            "coredns_cache_entries",
            "The number of elements in the cache",
            entries.clone(),
        );
        registry.register(
            "coredns_cache_requests",
            "The count of cache requests",
            requests.clone(),
        );
        registry.register(
            "coredns_cache_hits",
            "The count of cache hits",
            hits.clone(),
        );
        registry.register(
            "coredns_cache_misses",
            "The count of cache misses",
            misses.clone(),
        );
        registry.register(
            "coredns_cache_served_stale",
            "The number of requests served from stale cache entries",
            served_stale.clone(),
        );
        registry.register(
            "coredns_cache_evictions",
            "The count of cache evictions",
            evictions.clone(),
        );
        registry.register(
            "nameplane_cache_bytes",
            "Bytes the cached answers take (what --cache-max-bytes bounds)",
            bytes.clone(),
        );
        registry.register(
            "nameplane_cache_too_large",
            "Answers not cached because they were larger than --cache-max-entry-bytes",
            too_large.clone(),
        );
        let both = |family: &Family<TypedLabels, Counter>| {
            [Kind::Success, Kind::Denial].map(|kind| family.get_or_create(&typed(kind)).clone())
        };
        Self {
            entries: [Kind::Success, Kind::Denial]
                .map(|kind| entries.get_or_create(&typed(kind)).clone()),
            hits: both(&hits),
            evictions: both(&evictions),
            bytes: [Kind::Success, Kind::Denial]
                .map(|kind| bytes.get_or_create(&typed(kind)).clone()),
            too_large: both(&too_large),
            requests: requests.get_or_create(&plain).clone(),
            misses: misses.get_or_create(&plain).clone(),
            served_stale: served_stale.get_or_create(&plain).clone(),
            prefetches: prefetches.get_or_create(&plain).clone(),
        }
    }

    fn index(kind: Kind) -> usize {
        match kind {
            Kind::Success => 0,
            Kind::Denial => 1,
        }
    }

    /// A lookup in the cache (a name the forward stage would forward).
    pub fn request(&self) {
        self.requests.inc();
    }

    /// A fresh hit.
    pub fn hit(&self, kind: Kind) {
        self.hits[Self::index(kind)].inc();
    }

    /// A miss (nothing cached, or only a stale entry).
    pub fn miss(&self) {
        self.misses.inc();
    }

    /// A stale answer sent because the upstreams failed.
    pub fn served_stale(&self) {
        self.served_stale.inc();
    }

    /// A popular entry refreshed ahead of its expiry.
    pub fn prefetch(&self) {
        self.prefetches.inc();
    }

    /// `count` entries pushed out to make room.
    pub fn evictions(&self, kind: Kind, count: usize) {
        if count > 0 {
            self.evictions[Self::index(kind)].inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }

    /// An answer not cached because it was too large.
    pub fn too_large(&self, kind: Kind) {
        self.too_large[Self::index(kind)].inc();
    }

    /// The current stored size of the entries of one kind.
    pub fn set_bytes(&self, kind: Kind, bytes: usize) {
        self.bytes[Self::index(kind)].set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The current number of entries of one kind.
    pub fn set_entries(&self, kind: Kind, entries: usize) {
        self.entries[Self::index(kind)].set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
}
