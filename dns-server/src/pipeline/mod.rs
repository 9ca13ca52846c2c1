//! The answer function: request bytes and the current snapshots in, response bytes out.
//!
//! [`answer`] is pure: no sockets, and no locks and no clock on the way to a local answer
//! (the cache stage reads the monotonic clock and a cache shard, for forwarded names only).
//! The transports call it (through [`crate::state::State::handle`]); the tests call it
//! directly. Its steps:
//!
//! 1. [`request::parse`], once: drop, FORMERR, NOTIMP, or a [`Request`];
//! 2. EDNS version above 0: BADVERS (RFC 6891 §6.1.3);
//! 3. no valid config loaded yet: SERVFAIL;
//! 4. the [`Pipeline`]'s stages, in their fixed order ([`Pipeline::resolve`]); the first
//!    one that does not return [`Flow::Skip`] decides; no stage owns the name: REFUSED;
//! 5. [`send::send`] writes what was decided into the caller's buffer, within the
//!    request's [`SizeLimit`] (on UDP the client's EDNS size, 512 without EDNS, capped at
//!    the server's `--max-udp-payload`), and returns what happened ([`Sent`]): a query
//!    that waits on an upstream comes back as a [`Deferred`] for the transport to finish.
//!
//! A [`Pipeline`] is built from one [`ValidatedConfig`] (parse → validate → build: three
//! types) and replaced whole on reload. Its stage order is fixed here, never by the config
//! (CoreDNS `plugin.cfg`), and written once, in [`Pipeline::resolve`]:
//!
//! ```text
//! [rewrite → autopath → policy] → cache → kubernetes → zones → forward → [policy → rewrite back]
//! ```
//!
//! - **rewrite** ([`client::rewrite`]), **autopath** ([`client::autopath`]) and **policy**
//!   ([`client::policy`]) depend on who asks, so they wrap the other stages ([`client`]):
//!   the question is rewritten and checked before them, and their answer (whichever stage
//!   gave it, now or from an upstream later) is checked and turned back after. A config
//!   without any of the three (and whose client classes deny nobody) skips the wrapper; a
//!   client they do not concern takes the plain path.
//! - **cache** ([`cache`]) sits before the local stages but only ever holds, and only ever
//!   looks up, names the forward stage would forward ([`routes`] decides that from the
//!   same config, without a lock): cluster names and zone names never touch it, so local
//!   answers stay lock-free and never stale. It answers fresh hits; misses and stale
//!   entries go on.
//! - **kubernetes** ([`kubernetes`]) owns the cluster domain.
//! - **zones** ([`zones`]) owns every configured zone apex and everything below it
//!   (authoritative answers, delegations, AXFR/IXFR).
//! - **forward** ([`forward`]) owns what is left under a configured forward domain (the
//!   longest one; `.` catches everything). It cannot answer synchronously: it returns
//!   [`Flow::Upstream`], and the transport finishes the query off its receive loop
//!   ([`deferred`]), within the forwarder's and the process's in-flight limits.
//!
//! The stages share a floor and import nothing above it: [`flow`] (what a stage returns
//! and reads), [`crate::request`], [`crate::reply`], [`crate::wire`],
//! [`crate::answer_cache`], [`crate::metrics`]. Dispatch is direct calls on the stage
//! fields: no trait objects, and no async until a query really needs the network. State
//! that must outlive a reload (the cache's entries, upstream health, in-flight queries,
//! zone serials) is carried from the serving pipeline to its replacement by
//! [`Pipeline::adopt`], where the configs allow it.

pub(crate) mod cache;
pub(crate) mod client;
pub(crate) mod deferred;
pub(crate) mod flow;
pub(crate) mod forward;
pub(crate) mod kubernetes;
pub(crate) mod routes;
pub(crate) mod send;
pub(crate) mod zones;

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use nameplane_config::ValidatedConfig;

pub use crate::settings::Settings;
pub use deferred::Deferred;
pub use flow::{BuildError, Flow, Resolve, Sources, Stats};
pub use send::Sent;

use crate::answer_cache::{ByteLimits, Cache, Hit};
use crate::cluster::index::Cluster;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::request::{self, QName, Rejected, Request, SizeLimit, Transport};
use crate::wire::answer::{Answer, Origin};
use crate::wire::writer::encode_error;

/// A built configuration: the stages that answer queries, in their fixed order.
#[derive(Debug)]
pub struct Pipeline {
    config: ValidatedConfig,
    hash: String,
    /// Fresh answers for forwarded names; only when the config forwards and caches.
    cache: Option<cache::CacheStage>,
    /// Cluster names and cluster addresses: every config has it.
    kubernetes: kubernetes::KubernetesStage,
    /// Authoritative zones, when the config has any.
    zones: Option<zones::ZonesStage>,
    /// Stub domains and upstreams, when the config forwards anything.
    forward: Option<forward::ForwardStage>,
    /// Policy, rewrite and autopath: `None` when the config has none of them, and queries
    /// take the plain path.
    clients: Option<client::ClientStages>,
    /// The rate limit of UDP answers to unidentified clients (`rateLimit`); `None` when the
    /// config has none. Applied by [`crate::state::State`] to the encoded answer.
    rate_limiter: Option<Arc<RateLimiter>>,
    /// `loadBalance: roundRobin`: responses go through [`crate::loadbalance::shuffle`].
    load_balance: bool,
    /// Which answers [`crate::state::State`] logs (`logging`); `None` when none.
    query_log: Option<crate::query_log::QueryLog>,
}

/// What the Kubernetes watches must select, derived from the config. A change restarts the
/// watches (each re-lists while the previous data keeps serving).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSpec {
    /// Label selector for Services and EndpointSlices (API server syntax).
    pub label_selector: Option<String>,
    /// Label selector for Namespaces.
    pub namespace_selector: Option<String>,
    /// Whether Pods are watched (`pods: verified`, policies, autopath, tenant rewrites,
    /// client classes).
    pub pods: bool,
    /// Whether Nodes are watched (the node client class takes their addresses).
    pub nodes: bool,
}

impl Pipeline {
    /// Builds the stages for `config`. `hash` identifies the config in logs, metrics and
    /// `/ready` (the operator's content hash).
    pub fn build(config: ValidatedConfig, hash: String) -> Result<Self, BuildError> {
        Self::build_with(config, hash, ByteLimits::default())
    }

    /// [`Pipeline::build`] with the process's cache byte limits ([`Settings::cache_limits`]).
    pub fn build_with(
        config: ValidatedConfig,
        hash: String,
        cache_limits: ByteLimits,
    ) -> Result<Self, BuildError> {
        let routes = Arc::new(routes::Routes::new(&config)?);
        let forwards = !config.raw().forward.is_empty();
        let answers = config
            .raw()
            .cache
            .as_ref()
            .filter(|_| forwards)
            .map(|settings| Arc::new(Cache::with_limits(settings, cache_limits)));
        Ok(Self {
            cache: answers
                .as_ref()
                .map(|answers| cache::CacheStage::new(Arc::clone(&routes), Arc::clone(answers))),
            kubernetes: kubernetes::KubernetesStage::new(&config)?,
            zones: if config.raw().zones.is_empty() {
                None
            } else {
                Some(zones::ZonesStage::new(&config, zones::unix_now())?)
            },
            forward: if forwards {
                Some(forward::ForwardStage::new(&config, routes, answers)?)
            } else {
                None
            },
            clients: client::ClientStages::new(&config),
            rate_limiter: config
                .raw()
                .rate_limit
                .as_ref()
                .map(|settings| Arc::new(RateLimiter::new(settings))),
            load_balance: config.raw().load_balance == nameplane_config::LoadBalance::RoundRobin,
            query_log: crate::query_log::QueryLog::new(config.raw().logging.as_ref()),
            config,
            hash,
        })
    }

    /// Takes over from `previous` (the pipeline serving until this one is swapped in) what
    /// must survive a reload: zone serials of unchanged zones, upstreams (health, in-flight
    /// queries) of unchanged forwarders, the cache when neither its settings nor the
    /// routing of names changed, and the rate limit's buckets when its settings did not.
    pub fn adopt(&mut self, previous: &Pipeline) {
        if let (Some(new), Some(old)) = (&self.rate_limiter, &previous.rate_limiter)
            && new.settings() == old.settings()
        {
            self.rate_limiter = Some(Arc::clone(old));
        }
        let old_cache = previous.cache();
        let routes = |pipeline: &Pipeline| pipeline.forward.as_ref().map(|f| f.routes());
        let keep_cache = match (&old_cache, routes(previous), routes(self)) {
            (Some(old_cache), Some(old_routes), Some(new_routes)) => {
                old_routes == new_routes
                    && self.config.raw().cache.as_ref() == Some(old_cache.settings())
                    && self.cache().map(|cache| cache.limits()) == Some(old_cache.limits())
            }
            _ => false,
        };
        if let (Some(zones), Some(old)) = (&mut self.zones, &previous.zones) {
            zones.adopt(old);
        }
        if let (Some(forward), Some(old)) = (&mut self.forward, &previous.forward) {
            forward.adopt(old);
        }
        if keep_cache && let Some(old_cache) = old_cache {
            if let Some(cache) = &mut self.cache {
                cache.replace_cache(Arc::clone(&old_cache));
            }
            if let Some(forward) = &mut self.forward {
                forward.replace_cache(old_cache);
            }
        }
    }

    /// The config this pipeline was built from.
    pub fn config(&self) -> &ValidatedConfig {
        &self.config
    }

    /// Probes the upstreams for forwarding loops in the background ([`forward::loops`]).
    pub fn probe_loops(&self, metrics: &Metrics) {
        if let Some(forward) = &self.forward {
            forward.probe_loops(metrics);
        }
    }

    /// The upstreams found to loop back to this server, as (forwarder domain, address).
    pub fn loops(&self) -> Vec<(String, SocketAddr)> {
        self.forward
            .as_ref()
            .map(|forward| forward.loops())
            .unwrap_or_default()
    }

    /// Whether responses are shuffled (`loadBalance: roundRobin`).
    pub fn load_balance(&self) -> bool {
        self.load_balance
    }

    /// The content hash of the config.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What the watches must select for this config.
    pub fn watch_spec(&self) -> WatchSpec {
        let k = self.config.kubernetes();
        let query = |selector: &Option<nameplane_config::LabelSelector>| {
            selector
                .as_ref()
                .map(|s| s.to_query())
                .filter(|q| !q.is_empty())
        };
        WatchSpec {
            label_selector: query(&k.label_selector),
            namespace_selector: query(&k.namespace_selector),
            pods: self.config.needs_pods(),
            nodes: self.config.needs_nodes(),
        }
    }

    /// Which answers are logged, when the config logs any.
    pub(crate) fn query_log(&self) -> Option<&crate::query_log::QueryLog> {
        self.query_log.as_ref()
    }

    /// The rate limit of UDP answers to unidentified clients, when the config has one.
    pub(crate) fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.rate_limiter.as_ref()
    }

    /// The cache of forwarded answers, when the config has one.
    pub(crate) fn cache(&self) -> Option<Arc<Cache>> {
        self.cache.as_ref().map(|stage| stage.shared())
    }

    /// The forward stage, when the config forwards anything.
    pub fn forward_stage(&self) -> Option<&forward::ForwardStage> {
        self.forward.as_ref()
    }

    /// The Kubernetes stage (every pipeline has one).
    pub fn kubernetes(&self) -> &kubernetes::KubernetesStage {
        &self.kubernetes
    }

    /// A popular cached answer near its expiry: answered from the cache, and sent upstream
    /// too (within the forwarder's in-flight limit), whose answer refreshes the entry.
    fn prefetch<'a>(
        &'a self,
        hit: Hit,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &Settings,
    ) -> Flow<'a> {
        let forwarded = self
            .forward
            .as_ref()
            .map(|forward| forward.handle(request, sources, &settings.forward_limit));
        match forwarded {
            Some(Flow::Upstream(upstream)) => Flow::CachedAndRefresh(hit, upstream),
            _ => Flow::Cached(hit),
        }
    }
}

/// `Some` for what a stage decided, `None` for [`Flow::Skip`] (ask the next one).
fn decided(flow: Flow<'_>) -> Option<Flow<'_>> {
    (!matches!(flow, Flow::Skip)).then_some(flow)
}

impl Resolve for Pipeline {
    /// Runs the stages in their fixed order; REFUSED when none owns the name.
    fn resolve<'a>(
        &'a self,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &'a Settings,
    ) -> Flow<'a> {
        let flow = self
            .cache
            .as_ref()
            .and_then(|cache| decided(cache.handle(request, sources)))
            .or_else(|| {
                decided(
                    self.kubernetes
                        .handle(request, sources.cluster, &settings.dns_ips),
                )
            })
            .or_else(|| {
                self.zones
                    .as_ref()
                    .and_then(|zones| decided(zones.handle(request, sources)))
            })
            .or_else(|| {
                self.forward.as_ref().and_then(|forward| {
                    decided(forward.handle(request, sources, &settings.forward_limit))
                })
            })
            .unwrap_or(Flow::Answer(Answer::rcode(
                ResponseCode::Refused,
                Origin::Server,
            )));
        match flow {
            Flow::Cached(hit) if hit.refresh => self.prefetch(hit, request, sources, settings),
            decided => decided,
        }
    }

    fn nxdomain<'a>(&'a self, name: &QName, cluster: &'a Cluster) -> Option<Answer<'a>> {
        self.kubernetes.nxdomain(name, cluster)
    }
}

/// Answers one DNS message, writing the response at the end of `out`. Never panics,
/// whatever `packet` holds.
///
/// `pipeline` is `None` until a valid config has been loaded.
pub fn answer(
    packet: &[u8],
    transport: Transport,
    pipeline: Option<&Pipeline>,
    sources: &Sources<'_>,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Sent {
    let request = match request::parse(packet, transport) {
        Ok(request) => request,
        Err(Rejected::Drop) => return Sent::Dropped,
        Err(Rejected::Reply(reply)) => {
            out.extend_from_slice(&encode_error(&reply));
            return Sent::replied(Stats::unparsed(ResponseCode::from(0, reply.rcode)));
        }
    };
    let limit = SizeLimit::of(&request, settings.max_udp_payload);
    let refuse = |rcode, out: &mut Vec<u8>| {
        send::rcode(&request, rcode, Origin::Server, limit, settings, out)
    };
    if request.edns.is_some_and(|edns| edns.version > 0) {
        return refuse(ResponseCode::BADVERS, out);
    }
    let Some(pipeline) = pipeline else {
        return refuse(ResponseCode::ServFail, out);
    };
    let Some(clients) = &pipeline.clients else {
        let flow = pipeline.resolve(&request, sources, settings);
        return send::send(packet, &request, flow, sources, settings, limit, out);
    };
    // This server's own loop probe, back from an upstream: recognised whoever sends it (a
    // client the policies or client classes would refuse).
    if let Some(echo) = pipeline
        .forward
        .as_ref()
        .and_then(|forward| forward.loop_echo(&request, sources))
    {
        return send::send(packet, &request, echo, sources, settings, limit, out);
    }
    clients.answer(packet, &request, pipeline, sources, settings, out)
}

#[cfg(test)]
pub(crate) mod tests;
