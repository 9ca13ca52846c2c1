//! The forward stage: stub domains, and `.` for the upstreams of everything else, after
//! CoreDNS's *forward* plugin, hardened after its advisories.
//!
//! **Routing** ([`Routes`]). A name goes to the forwarder of the longest configured domain
//! at or above it (`.` matches every name), unless a local stage owns it: the cluster
//! domain (Kubernetes stage) and every zone apex (zones stage) come first, whatever the
//! depth, because those stages run first. A name nobody owns is REFUSED (no open resolver
//! by accident).
//!
//! **Off the receive loop.** The stage itself only decides: it takes a slot of the
//! forwarder's in-flight limit (`maxConcurrent`, REFUSED at once above it, as CoreDNS's
//! `max_concurrent`: memory stays bounded whatever the upstreams do) and returns
//! [`Flow::Forward`]. The transport then runs [`Deferred::resolve`] on its own task, so a
//! slow upstream never holds up local answers.
//!
//! **One query upstream, whatever the number of clients** ([`forwarder`]). Identical
//! questions in flight (same cache key) share one upstream exchange: a burst of clients
//! cannot open a birthday-attack window (CVE-2023-30464) nor multiply upstream load.
//!
//! **An exchange** ([`upstream`]). Each attempt uses a fresh UDP socket on a source port
//! and a query id, both drawn from a CSPRNG (CVE-2019-19794). A reply is accepted only if
//! it comes from the upstream's address and port, carries the id, is a response and asks
//! the same question (case-insensitively); anything else is counted and ignored, and the
//! wait goes on for the real reply until the attempt's deadline (CVE-2023-28452, Cure53
//! DNS-01-003). Transport: `forceTcp` → TCP; `preferUdp` → UDP; otherwise the client's
//! transport; a truncated UDP reply is retried over TCP in every mode, so the cache holds
//! whole answers.
//!
//! **Which upstream** ([`forwarder`]). `random` (CoreDNS's default), `roundRobin` or
//! `sequential` order, healthy upstreams first; at most [`forwarder::MAX_ATTEMPTS`]
//! attempts of at most [`forwarder::ATTEMPT_TIMEOUT`] each, all within
//! [`forwarder::QUERY_TIMEOUT`], then SERVFAIL: a dead upstream costs one attempt, not
//! the client's whole timeout. SERVFAIL, REFUSED, NOTIMP and FORMERR from one upstream
//! move on to the next.
//!
//! **Health** ([`upstream`]). After a failed exchange an upstream is probed (`. IN NS`,
//! any reply counts as alive) every [`upstream::PROBE_INTERVAL`] until it answers;
//! [`upstream::MAX_FAILS`] consecutive failures mark it down and it is skipped until a
//! probe or an exchange succeeds. When every upstream is down, one is still tried (it may
//! be back), unless the cache has a stale answer to give at once.
//!
//! **What is kept of a reply** ([`bailiwick`]). Answer records only along the CNAME chain
//! from the question, authority SOA/NS only for zones above the question's final name,
//! additional A/AAAA only for NS/MX/SRV targets of kept records, and for a stub domain
//! only names inside that domain. The rest is dropped and counted: a server answering for
//! `corp.example.com` cannot plant records for `bank.example.` in the cache.
//!
//! **A chain that leaves the domain** ([`Chase`]). When a stub domain's answer is a CNAME
//! to a name outside the stub domain (its records dropped as out of bailiwick), the target
//! is asked again through the whole pipeline (a cluster name, a zone, or the forwarder that
//! owns it) and its answer appended, at most [`MAX_CHASE_DEPTH`] times: clients get whole
//! answers (as from CoreDNS, which passes the stub server's records through unchecked),
//! from sources trusted for each name.
//!
//! **After the reply.** NOERROR and NXDOMAIN replies go into the cache (when configured),
//! whole chains included; failures answer from a stale cache entry when serve-stale allows
//! it, else SERVFAIL.
//!
//! Metrics: [`metrics`].

pub mod bailiwick;
pub mod forwarder;
pub mod metrics;
pub mod upstream;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use nameplane_config::ValidatedConfig;
use tokio::sync::OwnedSemaphorePermit;

pub use forwarder::Forwarder;
pub use metrics::ForwardMetrics;

use super::cache::{Cache, Key};
use super::{BuildError, Flow, Sources};
use crate::metrics::Metrics;
use crate::request::{Request, Transport};
use crate::response::{self, Answer, Origin};

/// Where a name goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A local stage (Kubernetes, zones) owns it.
    Local,
    /// The forwarder with this index owns it.
    Forward(usize),
    /// Nobody: REFUSED.
    Nowhere,
}

/// Which stage owns which names, from one config; equal routes mean a cache filled under
/// one is right under the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    cluster_domain: Name,
    zones: Vec<Name>,
    forwarders: HashMap<Name, usize>,
    /// Forward configs, by index, so equality covers servers and settings too.
    settings: Vec<nameplane_config::forward::ForwardConfig>,
}

fn domain_name(domain: &str) -> Result<Name, String> {
    if domain == "." {
        return Ok(Name::root());
    }
    Name::from_ascii(format!("{domain}."))
        .map(|name| name.to_lowercase())
        .map_err(|e| format!("{domain:?}: {e}"))
}

impl Routes {
    /// The routes of `config`.
    pub fn new(config: &ValidatedConfig) -> Result<Self, BuildError> {
        let cluster_domain = domain_name(config.cluster_domain()).map_err(BuildError::Forward)?;
        let zones = config
            .raw()
            .zones
            .iter()
            .map(|zone| domain_name(&zone.name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Forward)?;
        let mut forwarders = HashMap::new();
        for (i, forward) in config.raw().forward.iter().enumerate() {
            forwarders.insert(
                domain_name(&forward.domain).map_err(BuildError::Forward)?,
                i,
            );
        }
        Ok(Self {
            cluster_domain,
            zones,
            forwarders,
            settings: config.raw().forward.clone(),
        })
    }

    /// Where `name` (lower case) goes.
    pub fn route(&self, name: &Name) -> Route {
        if self.cluster_domain.zone_of(name) || self.zones.iter().any(|zone| zone.zone_of(name)) {
            return Route::Local;
        }
        (0..=name.num_labels())
            .rev()
            .find_map(|labels| {
                self.forwarders
                    .get(&name.trim_to(usize::from(labels)))
                    .copied()
            })
            .map_or(Route::Nowhere, Route::Forward)
    }
}

/// A forwarded reply, after [`bailiwick::sanitize`]: what is cached and answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The upstream's response code.
    pub rcode: ResponseCode,
    /// The reply had TC set (a UDP reply that could not be retried over TCP).
    pub truncated: bool,
    /// Kept answer records.
    pub answers: Vec<Record>,
    /// Kept authority records.
    pub authorities: Vec<Record>,
    /// Kept additional records.
    pub additionals: Vec<Record>,
}

impl Reply {
    /// The answer to `request` from this reply, as received (TTLs unchanged).
    pub fn answer(&self, request: &Request) -> Answer {
        let respell = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    if record.name == request.name {
                        record.name = request.query.name().clone();
                    }
                    record
                })
                .collect()
        };
        Answer {
            rcode: self.rcode,
            authoritative: false,
            answers: respell(&self.answers),
            authorities: respell(&self.authorities),
            additionals: respell(&self.additionals),
            recursion_available: true,
            origin: Origin::Forward,
        }
    }
}

/// A query the forward stage accepted: which forwarder, the cache to fill, and the slot
/// it holds in the forwarder's in-flight limit (released when this is dropped).
#[derive(Debug)]
pub struct Pending {
    forwarder: Arc<Forwarder>,
    cache: Option<Arc<Cache>>,
    _permit: OwnedSemaphorePermit,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.forwarder, &other.forwarder)
    }
}

impl Eq for Pending {}

/// A forwarded query and its request, to finish off the receive loop.
#[derive(Debug, PartialEq, Eq)]
pub struct Deferred {
    request: Request,
    pending: Pending,
}

/// What [`Deferred::resolve`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The response bytes.
    pub response: Vec<u8>,
    /// The question type.
    pub qtype: RecordType,
    /// The response code sent.
    pub rcode: ResponseCode,
    /// Who answered (forward, or cache for a stale answer).
    pub origin: Origin,
}

/// Resolves a name that a forwarded answer's CNAME chain points to outside the
/// forwarder's domain (the records the upstream sent for it were dropped as out of
/// bailiwick): the whole pipeline answers it, as a new question. Implemented by
/// [`crate::state::State`].
pub trait Chase: Sync {
    /// The answer to `request` (from `client`), `depth` chases deep; `None` if there is none.
    fn chase<'a>(
        &'a self,
        request: Request,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Option<Answer>>;
}

/// Most chases for one client query.
pub const MAX_CHASE_DEPTH: usize = 4;

/// The end of the CNAME chain in `reply` when it leaves `domain` with no record of the
/// asked type at its end: the name to chase.
fn dangling_target(reply: &Reply, key: &Key, domain: &Name) -> Option<Name> {
    if reply.rcode != ResponseCode::NoError
        || matches!(key.qtype, RecordType::CNAME | RecordType::ANY)
    {
        return None;
    }
    let mut name = key.name.clone();
    for _ in 0..=reply.answers.len() {
        if reply
            .answers
            .iter()
            .any(|r| r.name == name && r.record_type() == key.qtype)
        {
            return None;
        }
        let next = reply.answers.iter().find_map(|r| match &r.data {
            hickory_proto::rr::RData::CNAME(target) if r.name == name => Some(target.0.clone()),
            _ => None,
        });
        match next {
            Some(target) => name = target.to_lowercase(),
            None => break,
        }
    }
    (name != key.name && !domain.zone_of(&name)).then_some(name)
}

impl Deferred {
    /// Pairs the request with the stage's decision.
    pub fn new(request: Request, pending: Pending) -> Self {
        Self { request, pending }
    }

    /// The transport the query came in on.
    pub fn transport(&self) -> Transport {
        self.request.transport
    }

    /// Asks the upstreams (or joins an identical query in flight), follows a chain that
    /// leaves the forwarder's domain through `chase`, fills the cache, and encodes the
    /// response; a stale cache entry or SERVFAIL when the upstreams fail.
    pub async fn resolve(
        self,
        metrics: &Metrics,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
    ) -> Resolved {
        let qtype = self.request.qtype();
        let (request, answer) = self.answer(metrics, chase, client, 0).await;
        let (rcode, origin) = (answer.rcode, answer.origin);
        Resolved {
            response: response::encode(request, answer),
            qtype,
            rcode,
            origin,
        }
    }

    /// [`Deferred::resolve`] without the encoding, `depth` chases deep.
    pub async fn answer(
        self,
        metrics: &Metrics,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> (Request, Answer) {
        let Self { request, pending } = self;
        let key = Key::of(&request);
        let stale = |now| {
            pending
                .cache
                .as_ref()
                .and_then(|cache| cache.stale(&key, now))
        };
        let served_stale = |hit: super::cache::Hit| {
            metrics.cache().served_stale();
            hit.answer(&request, Origin::Cache)
        };
        // Every upstream known down and a stale answer at hand: answer now, let the health
        // probes find out when the upstreams are back.
        if pending.forwarder.all_down()
            && let Some(hit) = stale(Instant::now())
        {
            let answer = served_stale(hit);
            return (request, answer);
        }
        let result = pending
            .forwarder
            .query(&key, request.transport, metrics.forward())
            .await;
        let answer = match result {
            Ok(reply) if matches!(reply.rcode, ResponseCode::NoError | ResponseCode::NXDomain) => {
                let reply = match dangling_target(&reply, &key, pending.forwarder.domain()) {
                    Some(target) if depth < MAX_CHASE_DEPTH => {
                        Self::follow(reply, &request, target, chase, client, depth).await
                    }
                    _ => reply,
                };
                if let Some(cache) = &pending.cache {
                    cache.insert(
                        key.clone(),
                        Arc::clone(&reply),
                        Instant::now(),
                        metrics.cache(),
                    );
                }
                reply.answer(&request)
            }
            failed => match stale(Instant::now()) {
                Some(hit) => served_stale(hit),
                None => match failed {
                    Ok(reply) => reply.answer(&request),
                    Err(_) => {
                        let mut answer = Answer::rcode(ResponseCode::ServFail, Origin::Forward);
                        answer.recursion_available = true;
                        answer
                    }
                },
            },
        };
        (request, answer)
    }

    /// Appends the answer for `target` (asked through the whole pipeline) to `reply`.
    async fn follow(
        reply: Arc<Reply>,
        request: &Request,
        target: Name,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> Arc<Reply> {
        let mut query = hickory_proto::op::Query::query(target.clone(), request.qtype());
        query.set_query_class(request.query.query_class());
        let sub = Request {
            id: request.id,
            recursion_desired: true,
            checking_disabled: request.checking_disabled,
            query,
            name: target,
            edns: request.edns,
            // No size limit on the way: the client's transport applies to the whole answer.
            transport: Transport::Tcp,
        };
        let Some(found) = chase.chase(sub, client, depth + 1).await else {
            return reply;
        };
        if !matches!(found.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            return reply;
        }
        let mut merged = (*reply).clone();
        merged.rcode = found.rcode;
        merged.answers.extend(found.answers);
        merged.authorities = found.authorities;
        merged.additionals.extend(found.additionals);
        Arc::new(merged)
    }
}

/// The forward stage, built from one config.
#[derive(Debug)]
pub struct ForwardStage {
    routes: Arc<Routes>,
    forwarders: Vec<Arc<Forwarder>>,
    cache: Option<Arc<Cache>>,
}

impl ForwardStage {
    /// Builds a forwarder per forward entry of `config`, sharing `routes` with the cache
    /// stage and filling `cache`.
    pub fn new(
        config: &ValidatedConfig,
        routes: Arc<Routes>,
        cache: Option<Arc<Cache>>,
    ) -> Result<Self, BuildError> {
        let forwarders = config
            .raw()
            .forward
            .iter()
            .map(|settings| Forwarder::new(settings).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Forward)?;
        Ok(Self {
            routes,
            forwarders,
            cache,
        })
    }

    /// The routes, to compare with the next pipeline's.
    pub fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.routes)
    }

    /// The forwarders, in config order.
    pub fn forwarders(&self) -> &[Arc<Forwarder>] {
        &self.forwarders
    }

    /// Fills `cache` (taken over from the previous pipeline) instead of a new one.
    pub fn replace_cache(&mut self, cache: Arc<Cache>) {
        self.cache = Some(cache);
    }

    /// Keeps the forwarders of `previous` whose settings did not change (their upstreams'
    /// health, running probes and in-flight queries carry on).
    pub fn adopt(&mut self, previous: &ForwardStage) {
        for forwarder in &mut self.forwarders {
            if let Some(old) = previous
                .forwarders
                .iter()
                .find(|old| old.settings() == forwarder.settings())
            {
                *forwarder = Arc::clone(old);
            }
        }
    }

    /// Takes the query if a forwarder owns its name.
    pub fn handle(&self, request: &Request, sources: &Sources<'_>) -> Flow {
        let Route::Forward(index) = self.routes.route(&request.name) else {
            return Flow::Skip;
        };
        let Some(forwarder) = self.forwarders.get(index) else {
            return Flow::Skip;
        };
        // Zone transfers are never forwarded (nor cached).
        if matches!(request.qtype(), RecordType::AXFR | RecordType::IXFR) {
            return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Forward));
        }
        let Some(permit) = forwarder.admit() else {
            sources.metrics.forward().max_concurrent_reject();
            return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Forward));
        };
        Flow::Forward(Pending {
            forwarder: Arc::clone(forwarder),
            cache: self.cache.clone(),
            _permit: permit,
        })
    }
}
