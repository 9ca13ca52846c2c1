//! The answer function: request bytes and the current snapshots in, response bytes out.
//!
//! [`answer`] is pure: no sockets, and no locks and no clock on the way to a local answer
//! (the cache stage reads the monotonic clock and a cache shard, for forwarded names only).
//! The transports call it (through [`crate::state::State::handle`]); the tests call it
//! directly. Its steps:
//!
//! 1. [`request::parse`]: drop, FORMERR, NOTIMP, or a [`Request`];
//! 2. EDNS version above 0: BADVERS (RFC 6891 §6.1.3);
//! 3. no valid config loaded yet: SERVFAIL;
//! 4. the [`Pipeline`]'s stages, in order; the first one that does not return
//!    [`Flow::Skip`] decides;
//! 5. no stage owns the name: REFUSED;
//! 6. [`response::encode`] into the caller's buffer (a cached answer with
//!    [`forward::encode::reply`], a zone transfer with [`zones::transfer::encode`], over
//!    TCP only: a transfer decided for a UDP query, whichever path it took, is REFUSED; a
//!    forwarded query returns [`Outcome::pending`] for the transport to finish). Every UDP
//!    response fits [`Request::max_response_len`]: the client's EDNS size (512 without
//!    EDNS) capped at the server's `--max-udp-payload`.
//!
//! A [`Pipeline`] is built from one [`ValidatedConfig`] (parse → validate → build: three
//! types) and replaced whole on reload. Its stage order is fixed here, never by the config
//! (CoreDNS `plugin.cfg`):
//!
//! ```text
//! [rewrite → autopath → policy] → cache → kubernetes → zones → forward → [policy → rewrite back]
//! ```
//!
//! - **rewrite** ([`client::rewrite`]), **autopath** ([`client::autopath`]) and **policy** ([`client::policy`])
//!   depend on who asks, so they wrap the other stages ([`client`]): the question is
//!   rewritten and checked before them, and their answer (whichever stage gave it, now or
//!   from an upstream later) is checked and turned back after. A config without any of the
//!   three (and whose client classes deny nobody) skips the wrapper; a client they do not
//!   concern takes the plain path.
//! - **cache** ([`cache`]) sits before the local stages but only ever holds, and only ever
//!   looks up, names the forward stage would forward ([`forward::Routes`] decides that from
//!   the same config, without a lock): cluster names and zone names never touch it, so local
//!   answers stay lock-free and never stale. It answers fresh hits; misses and stale entries
//!   go on.
//! - **kubernetes** ([`kubernetes`]) owns the cluster domain.
//! - **zones** ([`zones`]) owns every configured zone apex and everything below it
//!   (authoritative answers, delegations, AXFR/IXFR).
//! - **forward** ([`forward`]) owns what is left under a configured forward domain (the
//!   longest one; `.` catches everything). It cannot answer synchronously: it returns
//!   [`Flow::Forward`], and the transport finishes the query off its receive loop
//!   ([`forward::Deferred`]), within the forwarder's in-flight limit.
//!
//! Dispatch is a `match` over the closed [`Stage`] enum: no trait objects, and no async
//! until a query really needs the network. State that must outlive a reload (the cache's
//! entries, upstream health, in-flight queries, zone serials) is carried from the serving
//! pipeline to its replacement by [`Pipeline::adopt`], where the configs allow it.

pub mod cache;
pub mod client;
pub mod forward;
pub mod kubernetes;
pub mod zones;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nameplane_config::ValidatedConfig;

use crate::cluster::index::Cluster;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::request::{self, DEFAULT_MAX_UDP_PAYLOAD, QName, Rejected, Request, Transport};
use crate::response::{self, Answer, Origin};

/// A built configuration: the stages that answer queries, in order.
#[derive(Debug)]
pub struct Pipeline {
    config: ValidatedConfig,
    hash: String,
    stages: Box<[Stage]>,
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

/// Why a validated config could not be turned into a [`Pipeline`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Kubernetes stage refused its settings.
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    /// A zone could not be built.
    #[error("zones: {0}")]
    Zones(String),
    /// A forwarder could not be built.
    #[error("forward: {0}")]
    Forward(String),
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
        Self::build_with(config, hash, cache::ByteLimits::default())
    }

    /// [`Pipeline::build`] with the process's cache byte limits ([`Settings::cache_limits`]).
    pub fn build_with(
        config: ValidatedConfig,
        hash: String,
        cache_limits: cache::ByteLimits,
    ) -> Result<Self, BuildError> {
        let routes = Arc::new(forward::Routes::new(&config)?);
        let cache = config
            .raw()
            .cache
            .as_ref()
            .filter(|_| !config.raw().forward.is_empty())
            .map(|settings| Arc::new(cache::Cache::with_limits(settings, cache_limits)));
        let mut stages = Vec::with_capacity(4);
        if let Some(cache) = &cache {
            stages.push(Stage::Cache(cache::CacheStage::new(
                Arc::clone(&routes),
                Arc::clone(cache),
            )));
        }
        stages.push(Stage::Kubernetes(kubernetes::KubernetesStage::new(
            &config,
        )?));
        if !config.raw().zones.is_empty() {
            stages.push(Stage::Zones(zones::ZonesStage::new(
                &config,
                zones::unix_now(),
            )?));
        }
        if !config.raw().forward.is_empty() {
            stages.push(Stage::Forward(forward::ForwardStage::new(
                &config, routes, cache,
            )?));
        }
        Ok(Self {
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
            stages: stages.into_boxed_slice(),
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
        let old_cache = previous.stages.iter().find_map(|stage| match stage {
            Stage::Cache(stage) => Some(stage.shared()),
            _ => None,
        });
        let routes = |pipeline: &Pipeline| {
            pipeline.stages.iter().find_map(|stage| match stage {
                Stage::Forward(stage) => Some(stage.routes()),
                _ => None,
            })
        };
        let keep_cache = match (&old_cache, routes(previous), routes(self)) {
            (Some(old_cache), Some(old_routes), Some(new_routes)) => {
                old_routes == new_routes
                    && self.config.raw().cache.as_ref() == Some(old_cache.settings())
                    && self.cache().map(|cache| cache.limits()) == Some(old_cache.limits())
            }
            _ => false,
        };
        let old_zones = previous.stages.iter().find_map(|s| match s {
            Stage::Zones(old) => Some(old),
            _ => None,
        });
        let old_forward = previous.stages.iter().find_map(|s| match s {
            Stage::Forward(old) => Some(old),
            _ => None,
        });
        for stage in self.stages.iter_mut() {
            match stage {
                Stage::Cache(stage) if keep_cache => {
                    if let Some(cache) = &old_cache {
                        stage.replace_cache(Arc::clone(cache));
                    }
                }
                Stage::Zones(stage) => {
                    if let Some(old) = old_zones {
                        stage.adopt(old);
                    }
                }
                Stage::Forward(stage) => {
                    if let Some(old) = old_forward {
                        stage.adopt(old);
                    }
                    if keep_cache && let Some(cache) = &old_cache {
                        stage.replace_cache(Arc::clone(cache));
                    }
                }
                _ => {}
            }
        }
    }

    /// The config this pipeline was built from.
    pub fn config(&self) -> &ValidatedConfig {
        &self.config
    }

    /// Probes the upstreams for forwarding loops in the background ([`forward::loops`]).
    pub fn probe_loops(&self, metrics: &Metrics) {
        for stage in self.stages.iter() {
            if let Stage::Forward(stage) = stage {
                stage.probe_loops(metrics);
            }
        }
    }

    /// The upstreams found to loop back to this server, as (forwarder domain, address).
    pub fn loops(&self) -> Vec<(String, SocketAddr)> {
        self.stages
            .iter()
            .find_map(|stage| match stage {
                Stage::Forward(stage) => Some(stage.loops()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// A query for one of this server's loop probes: SERVFAIL, counted
    /// ([`forward::ForwardStage::loop_echo`]).
    fn loop_echo<'a>(&'a self, request: &Request<'_>, sources: &Sources<'_>) -> Option<Flow<'a>> {
        self.stages.iter().find_map(|stage| match stage {
            Stage::Forward(stage) => stage.loop_echo(request, sources),
            _ => None,
        })
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
    pub(crate) fn cache(&self) -> Option<Arc<cache::Cache>> {
        self.stages.iter().find_map(|stage| match stage {
            Stage::Cache(stage) => Some(stage.shared()),
            _ => None,
        })
    }

    /// The Kubernetes stage (every pipeline has one).
    pub fn kubernetes(&self) -> Option<&kubernetes::KubernetesStage> {
        self.stages.iter().find_map(|stage| match stage {
            Stage::Kubernetes(stage) => Some(stage),
            _ => None,
        })
    }

    /// A popular cached answer near its expiry: answered from the cache, and sent upstream
    /// too (within the forwarder's in-flight limit), whose answer refreshes the entry.
    fn prefetch<'a>(
        &'a self,
        hit: cache::Hit,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &Settings,
    ) -> Flow<'a> {
        let forwarded = self.stages.iter().find_map(|stage| match stage {
            Stage::Forward(stage) => Some(stage.handle(request, sources, &settings.forward_limit)),
            _ => None,
        });
        match forwarded {
            Some(Flow::Forward(pending)) => Flow::CachedAndRefresh(hit, pending),
            _ => Flow::Cached(hit),
        }
    }

    /// Runs the stages in order; REFUSED when none owns the name.
    pub fn resolve<'a>(
        &'a self,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &'a Settings,
    ) -> Flow<'a> {
        for stage in &self.stages {
            match stage.handle(request, sources, settings) {
                Flow::Skip => {}
                Flow::Cached(hit) if hit.refresh => {
                    return self.prefetch(hit, request, sources, settings);
                }
                decided => return decided,
            }
        }
        Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Server))
    }
}

/// One step of the pipeline, in the order of the module docs.
// A handful of stages are built once per reload; their sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Stage {
    /// Fresh cached answers for forwarded names.
    Cache(cache::CacheStage),
    /// Cluster names and cluster addresses from the Kubernetes watches.
    Kubernetes(kubernetes::KubernetesStage),
    /// Authoritative zones.
    Zones(zones::ZonesStage),
    /// Stub domains and upstreams.
    Forward(forward::ForwardStage),
}

impl Stage {
    fn handle<'a>(
        &'a self,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &'a Settings,
    ) -> Flow<'a> {
        match self {
            Self::Cache(stage) => stage.handle(request, sources),
            Self::Kubernetes(stage) => stage.handle(request, sources.cluster, &settings.dns_ips),
            Self::Zones(stage) => stage.handle(request, sources),
            Self::Forward(stage) => stage.handle(request, sources, &settings.forward_limit),
        }
    }
}

/// What a stage did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow<'a> {
    /// The stage answered; later stages are not asked.
    Answer(Answer<'a>),
    /// Not this stage's name; ask the next one.
    Skip,
    /// A fresh answer from the cache.
    Cached(cache::Hit),
    /// A fresh answer from the cache, and the upstream query that refreshes it (prefetch).
    CachedAndRefresh(cache::Hit, forward::Pending),
    /// A zone transfer: the records to send, in order, over several messages.
    Transfer(zones::Transfer),
    /// The answer must come from an upstream: finish it off the receive loop.
    Forward(forward::Pending),
}

/// The data the stages read that changes independently of the config (each from its own
/// watch), as one consistent set of snapshots for the duration of a query.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// The cluster, from the Kubernetes watches.
    pub cluster: &'a Cluster,
    /// Who asked (the zone transfer allow-list needs it).
    pub client: SocketAddr,
    /// Where stages count what they did.
    pub metrics: &'a Metrics,
}

/// Settings of the process (flags), fixed for its lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Largest UDP response, and the payload size advertised in EDNS.
    pub max_udp_payload: u16,
    /// This server's own addresses (its Pod IPs): `ns.dns.<zone>` answers the Service in
    /// front of them.
    pub dns_ips: Vec<IpAddr>,
    /// Whether each query is logged (`--query-log`), whatever the config's `logging` says.
    pub query_log: bool,
    /// Queries in flight to upstreams across every forwarder (`--forward-max-in-flight`).
    pub forward_limit: forward::GlobalLimit,
    /// The answer cache's byte budget and per-answer cap (`--cache-max-bytes`,
    /// `--cache-max-entry-bytes`).
    pub cache_limits: cache::ByteLimits,
    /// The resolv.conf whose nameservers the forwarders with `serversFromResolvConf` use,
    /// read at each config load ([`crate::resolv_conf`]).
    pub resolv_conf: std::path::PathBuf,
    /// Whether each new pipeline's upstreams are probed for forwarding loops
    /// ([`forward::loops`]). Always on in the binary; off in [`Settings::default`], so
    /// that tests counting an upstream's queries see only their own.
    pub probe_loops: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            dns_ips: Vec::new(),
            query_log: false,
            forward_limit: forward::GlobalLimit::default(),
            cache_limits: cache::ByteLimits::default(),
            resolv_conf: crate::resolv_conf::DEFAULT_PATH.into(),
            probe_loops: false,
        }
    }
}

/// The result of [`answer`]: what was sent, and what the metrics and logs need.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether a response was written (`false`: the packet is dropped, or the answer is
    /// [`Outcome::pending`]).
    pub replied: bool,
    /// Further messages after the one written (a zone transfer over TCP).
    pub more: Vec<Vec<u8>>,
    /// A query that waits on an upstream: [`forward::Deferred::resolve`] produces its
    /// response.
    pub pending: Option<forward::Deferred>,
    /// The question type, when the query parsed.
    pub qtype: Option<RecordType>,
    /// The response code sent (meaningless when dropped).
    pub rcode: ResponseCode,
    /// Who answered.
    pub origin: Origin,
    /// Whether TC was set.
    pub truncated: bool,
    /// Whether the query had the DO bit.
    pub dnssec_ok: bool,
    /// The question name, only when [`Settings::query_log`] is on.
    pub name: Option<QName>,
    /// A prefetch to run in the background; its answer only refreshes the cache.
    pub refresh: Option<forward::Deferred>,
    /// Who denied the query, when a policy or client class did (the query log's `policy`).
    pub denied_by: Option<Arc<str>>,
}

impl Outcome {
    fn dropped() -> Self {
        Self {
            replied: false,
            more: Vec::new(),
            pending: None,
            qtype: None,
            rcode: ResponseCode::FormErr,
            origin: Origin::Server,
            truncated: false,
            dnssec_ok: false,
            name: None,
            refresh: None,
            denied_by: None,
        }
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
) -> Outcome {
    let request = match request::parse(packet, transport) {
        Ok(request) => request,
        Err(Rejected::Drop) => return Outcome::dropped(),
        Err(Rejected::Reply(reply)) => {
            out.extend_from_slice(&response::encode_error(&reply));
            return Outcome {
                replied: true,
                rcode: ResponseCode::from(0, reply.rcode),
                ..Outcome::dropped()
            };
        }
    };
    let flow = if request.edns.is_some_and(|edns| edns.version > 0) {
        Flow::Answer(Answer::rcode(ResponseCode::BADVERS, Origin::Server))
    } else if let Some(pipeline) = pipeline {
        if let Some(clients) = &pipeline.clients {
            // This server's own loop probe, back from an upstream: recognised whoever sends
            // it (a client the policies or client classes would refuse).
            if let Some(echo) = pipeline.loop_echo(&request, sources) {
                return finish(
                    packet,
                    transport,
                    &request,
                    echo,
                    settings,
                    settings.max_udp_payload,
                    out,
                );
            }
            return client::answer(
                packet, transport, &request, pipeline, clients, sources, settings, out,
            );
        }
        pipeline.resolve(&request, sources, settings)
    } else {
        Flow::Answer(Answer::rcode(ResponseCode::ServFail, Origin::Server))
    };
    finish(
        packet,
        transport,
        &request,
        flow,
        settings,
        settings.max_udp_payload,
        out,
    )
}

/// Encodes what the stages decided for `request` (parsed from `packet`) at the end of
/// `out`, within `max_udp` for UDP.
fn finish(
    packet: &[u8],
    transport: Transport,
    request: &Request<'_>,
    flow: Flow<'_>,
    settings: &Settings,
    max_udp: u16,
    out: &mut Vec<u8>,
) -> Outcome {
    let done = |rcode, origin, truncated, more| Outcome {
        replied: true,
        more,
        pending: None,
        qtype: Some(request.qtype),
        rcode,
        origin,
        truncated,
        dnssec_ok: request.edns.is_some_and(|edns| edns.dnssec_ok),
        name: settings.query_log.then(|| request.name.clone()),
        refresh: None,
        denied_by: None,
    };
    match flow {
        Flow::CachedAndRefresh(hit, pending) => Outcome {
            refresh: Some(forward::Deferred::new(packet, transport, pending)),
            ..finish(
                packet,
                transport,
                request,
                Flow::Cached(hit),
                settings,
                max_udp,
                out,
            )
        },
        Flow::Answer(answer) => {
            let encoded = response::encode(request, &answer, max_udp, out);
            done(answer.rcode, answer.origin, encoded.truncated, Vec::new())
        }
        Flow::Skip => {
            let answer = Answer::rcode(ResponseCode::Refused, Origin::Server);
            let encoded = response::encode(request, &answer, max_udp, out);
            done(answer.rcode, answer.origin, encoded.truncated, Vec::new())
        }
        Flow::Cached(hit) => {
            if let Some(wire) = &hit.wire
                && wire.write(request, hit.ttl, hit.stale, max_udp, out)
            {
                return done(hit.reply.rcode, Origin::Cache, false, Vec::new());
            }
            let reply = hit.reply_for();
            let truncated = forward::encode::reply(request, &reply, Origin::Cache, max_udp, out);
            done(reply.rcode, Origin::Cache, truncated, Vec::new())
        }
        Flow::Transfer(_) if transport == Transport::Udp => {
            // The zones stage refuses transfers over UDP; this holds whatever path the
            // query took: a whole zone never goes into one datagram.
            let answer = Answer::rcode(ResponseCode::Refused, Origin::Zones);
            let encoded = response::encode(request, &answer, max_udp, out);
            done(answer.rcode, answer.origin, encoded.truncated, Vec::new())
        }
        Flow::Transfer(transfer) => {
            let mut messages = zones::transfer::encode(request, transfer).into_iter();
            out.extend_from_slice(&messages.next().unwrap_or_default());
            done(
                ResponseCode::NoError,
                Origin::Zones,
                false,
                messages.collect(),
            )
        }
        Flow::Forward(pending) => Outcome {
            replied: false,
            pending: Some(forward::Deferred::new(packet, transport, pending)),
            ..done(ResponseCode::NoError, Origin::Forward, false, Vec::new())
        },
    }
}

#[cfg(test)]
mod tests;
