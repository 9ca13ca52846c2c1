//! The cache stage: answers a forwarded name from the [`crate::answer_cache`] while its
//! entry is fresh, before any local stage looks at it.
//!
//! It looks a name up only when the [`Routes`] say the forward stage would forward it:
//! cluster names and zone names (answered locally, always current) never touch the cache
//! or its locks. Zone transfers, non-IN classes and reverse names of cluster addresses
//! are skipped at once. A hit that prefetch finds popular and near its expiry comes back
//! with [`crate::answer_cache::Hit::refresh`] set; the pipeline then also forwards it.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::time::Instant;

use hickory_proto::rr::{DNSClass, RecordType};

use super::flow::{Flow, Sources};
use super::routes::{Route, Routes};
use crate::answer_cache::{Cache, Kind};
use crate::reply::Key;
use crate::request::Request;

/// The cache stage.
#[derive(Debug)]
pub(crate) struct CacheStage {
    routes: Arc<Routes>,
    cache: Arc<Cache>,
}

impl CacheStage {
    /// A stage answering from `cache` for the names `routes` forwards.
    pub(crate) fn new(routes: Arc<Routes>, cache: Arc<Cache>) -> Self {
        Self { routes, cache }
    }

    /// The cache, to share with the next pipeline.
    pub(crate) fn shared(&self) -> Arc<Cache> {
        Arc::clone(&self.cache)
    }

    /// Uses `cache` (taken over from the previous pipeline) instead of a new one.
    pub(crate) fn replace_cache(&mut self, cache: Arc<Cache>) {
        self.cache = cache;
    }

    /// Answers from a fresh entry; anything else goes on.
    pub(crate) fn handle<'a>(&self, request: &Request<'_>, sources: &Sources<'_>) -> Flow<'a> {
        if request.qclass != DNSClass::IN
            || matches!(request.qtype, RecordType::AXFR | RecordType::IXFR)
        {
            return Flow::Skip;
        }
        // A reverse name of a cluster address is the Kubernetes stage's, never forwarded:
        // skip the key and the shard lookup for it.
        if request.qtype == RecordType::PTR
            && let Some(ip) = crate::cluster::names::reverse_address(&request.name)
            && (!sources.cluster.services.by_ip(&ip).is_empty()
                || !sources.cluster.endpoints.by_ip(&ip).is_empty())
        {
            return Flow::Skip;
        }
        // Routing first: it reads the question as received, while a key decodes its name.
        if !matches!(self.routes.route(&request.name), Route::Forward(_)) {
            return Flow::Skip;
        }
        let Some(key) = Key::of(request) else {
            return Flow::Skip;
        };
        let metrics = sources.metrics.cache();
        metrics.request();
        let found = self.cache.fresh(&key, Instant::now());
        // A lookup may have dropped a dead entry: keep the gauges true (atomic stores).
        for kind in [Kind::Success, Kind::Denial] {
            metrics.set_entries(kind, self.cache.len(kind));
            metrics.set_bytes(kind, self.cache.bytes(kind));
        }
        match found {
            Some(hit) => {
                metrics.hit(hit.kind);
                Flow::Cached(hit)
            }
            None => {
                metrics.miss();
                Flow::Skip
            }
        }
    }
}
