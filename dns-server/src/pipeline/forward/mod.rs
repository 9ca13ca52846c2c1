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
//! process's in-flight limit over every forwarder ([`GlobalLimit`],
//! `--forward-max-in-flight`, default [`DEFAULT_MAX_IN_FLIGHT`]) and one of the
//! forwarder's own (`maxConcurrent`), REFUSED at once above either, as CoreDNS's
//! `max_concurrent`: memory and upstream sockets stay bounded whatever the upstreams do; and returns
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
pub mod encode;
pub mod forwarder;
pub mod loops;
pub mod upstream;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use nameplane_config::ValidatedConfig;
use tokio::sync::OwnedSemaphorePermit;

pub use crate::metrics::forward::ForwardMetrics;
pub use forwarder::Forwarder;

use super::cache::{Cache, Key};
use super::{BuildError, Flow, Sources};
use crate::metrics::Metrics;
use crate::request::{QName, Request, Transport};
use crate::response::{Answer, Origin};

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
///
/// Every domain is kept in wire form, lower case, and matched against the question's own
/// wire form ([`QName::is_in`]): routing a query decodes and allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// The cluster domain and every zone apex: names the local stages own.
    local: Vec<Box<[u8]>>,
    /// Forwarded domains with their forwarder's index, longest first, so the first that
    /// holds a name is the most specific.
    forwarders: Vec<(Box<[u8]>, usize)>,
    /// Forward configs, by index, so equality covers servers and settings too.
    settings: Vec<nameplane_config::forward::ForwardConfig>,
    /// `reverseFallthrough`: whether PTR queries of non-cluster addresses may be forwarded
    /// (and cached). Not used for routing (the Kubernetes stage, first, keeps them when
    /// off), but part of equality: a cache filled with forwarded PTR answers must not
    /// outlive a change to off.
    reverse_fallthrough: bool,
}

/// `domain` (presentation form, `.` for the root) in lower-case wire form.
fn domain_wire(domain: &str) -> Result<Box<[u8]>, String> {
    let name = if domain == "." {
        Some(QName::root())
    } else {
        QName::from_ascii(domain)
    };
    name.map(|name| name.wire().into())
        .ok_or_else(|| format!("{domain:?} is not a domain name"))
}

impl Routes {
    /// The routes of `config`.
    pub fn new(config: &ValidatedConfig) -> Result<Self, BuildError> {
        let local = std::iter::once(config.cluster_domain())
            .chain(config.raw().zones.iter().map(|zone| zone.name.as_str()))
            .map(domain_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Forward)?;
        let mut forwarders = Vec::new();
        for (i, forward) in config.raw().forward.iter().enumerate() {
            let wire = domain_wire(&forward.domain).map_err(BuildError::Forward)?;
            // A domain listed twice: the later forward wins, as it always has.
            forwarders.retain(|(seen, _): &(Box<[u8]>, usize)| *seen != wire);
            forwarders.push((wire, i));
        }
        forwarders.sort_by_key(|(wire, _)| std::cmp::Reverse(wire.len()));
        Ok(Self {
            local,
            forwarders,
            settings: config.raw().forward.clone(),
            reverse_fallthrough: config.kubernetes().reverse_fallthrough,
        })
    }

    /// Where `name` goes.
    pub fn route(&self, name: &QName) -> Route {
        if self.local.iter().any(|domain| name.is_in(domain)) {
            return Route::Local;
        }
        self.forwarders
            .iter()
            .find(|(domain, _)| name.is_in(domain))
            .map_or(Route::Nowhere, |&(_, index)| Route::Forward(index))
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
    /// A SERVFAIL with no records.
    pub fn servfail() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            truncated: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// The records of an encoded response (a local stage's answer to a chased name).
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        let message = hickory_proto::op::Message::from_vec(bytes).ok()?;
        Some(Self {
            rcode: message.metadata.response_code,
            truncated: message.metadata.truncation,
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        })
    }
}

/// The question name of a request as a hickory [`Name`] (lower case, absolute).
pub fn name_of(request: &Request<'_>) -> Option<Name> {
    use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
    Name::read(&mut BinDecoder::new(request.name.wire())).ok()
}

/// Default of [`GlobalLimit`]: queries in flight to upstreams across every forwarder.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// One in-flight limit over every forwarder of the process, whatever the config: each
/// forwarded query holds a slot (and at most one upstream socket) until it is answered, so
/// this bounds the sockets and the memory that forwarding can take even when a config has
/// many forwarders each with its own `maxConcurrent`. Above it a query is REFUSED at once,
/// as above a forwarder's own limit (CoreDNS's `max_concurrent` answers REFUSED too).
/// Made once per process (`--forward-max-in-flight`) and shared by every pipeline, so a
/// reload neither resets nor doubles it.
#[derive(Clone, Debug)]
pub struct GlobalLimit {
    slots: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl GlobalLimit {
    /// A limit of `max` queries in flight.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(
                max.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            max,
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Queries currently holding a slot.
    pub fn in_flight(&self) -> usize {
        self.max
            .min(tokio::sync::Semaphore::MAX_PERMITS)
            .saturating_sub(self.slots.available_permits())
    }

    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

impl Default for GlobalLimit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

/// Two handles on one limit are equal; two limits of the same size are not the same limit.
impl PartialEq for GlobalLimit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slots, &other.slots)
    }
}

impl Eq for GlobalLimit {}

/// A query whose answer needs the network: one the forward stage accepted, or an alias a
/// local stage answered whose target must be resolved.
#[derive(Debug)]
pub struct Pending {
    work: Work,
}

#[derive(Debug)]
enum Work {
    /// Ask a forwarder: which one, the cache to fill, and the slots the query holds in the
    /// forwarder's and the process's in-flight limits (released when this is dropped).
    Upstream {
        forwarder: Arc<Forwarder>,
        cache: Option<Arc<Cache>>,
        _permit: OwnedSemaphorePermit,
        _global: OwnedSemaphorePermit,
    },
    /// A local answer ending in a CNAME to `target` (an ExternalName Service with
    /// `resolveExternalNames`): the target is resolved through the whole pipeline (cache,
    /// zones, forwarders, as a [`Chase`]) and its records appended.
    Alias { head: Box<Reply>, target: Name },
}

impl Pending {
    /// The local answer `head`, which ends in a CNAME to `target`, to be completed with the
    /// target's records.
    pub fn alias(head: Reply, target: Name) -> Self {
        Self {
            work: Work::Alias {
                head: Box::new(head),
                target,
            },
        }
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        match (&self.work, &other.work) {
            (Work::Upstream { forwarder: a, .. }, Work::Upstream { forwarder: b, .. }) => {
                Arc::ptr_eq(a, b)
            }
            (Work::Alias { head: a, target: x }, Work::Alias { head: b, target: y }) => {
                a == b && x == y
            }
            _ => false,
        }
    }
}

impl Eq for Pending {}

/// A forwarded query (a copy of its bytes) and the stage's decision, to finish off the
/// receive loop.
#[derive(Debug, PartialEq, Eq)]
pub struct Deferred {
    packet: Vec<u8>,
    transport: Transport,
    pending: Pending,
    /// What the client-aware stages still do to the answer (policy, rewrite, autopath).
    shaping: Option<Box<crate::pipeline::client::Shaping>>,
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
    /// Whether the query had the DO bit.
    pub dnssec_ok: bool,
    /// Who denied the answer, when a policy or client class did (for the query log).
    pub denied_by: Option<std::sync::Arc<str>>,
}

/// Resolves a name that a forwarded answer's CNAME chain points to outside the
/// forwarder's domain (the records the upstream sent for it were dropped as out of
/// bailiwick): the whole pipeline answers it, as a new question. Implemented by
/// [`crate::state::State`].
pub trait Chase: Sync {
    /// The reply to the query `packet` (from `client`), `depth` chases deep; `None` if
    /// there is none.
    fn chase<'a>(
        &'a self,
        packet: Vec<u8>,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Option<Reply>>;
}

/// Chases nothing (a prefetch refreshes what the upstream said, as it said it).
struct NoChase;

impl Chase for NoChase {
    fn chase<'a>(
        &'a self,
        _: Vec<u8>,
        _: std::net::SocketAddr,
        _: usize,
    ) -> futures::future::BoxFuture<'a, Option<Reply>> {
        Box::pin(async { None })
    }
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
    /// Keeps a copy of the query for the stage's decision.
    pub fn new(packet: &[u8], transport: Transport, pending: Pending) -> Self {
        Self {
            packet: packet.to_vec(),
            transport,
            pending,
            shaping: None,
        }
    }

    /// The same query, whose answer `shaping` finishes for the client.
    pub fn shaped(mut self, shaping: crate::pipeline::client::Shaping) -> Self {
        self.shaping = Some(Box::new(shaping));
        self
    }

    /// The client's query.
    pub(crate) fn packet(&self) -> &[u8] {
        &self.packet
    }

    /// The transport the query came in on.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Asks the upstreams (or joins an identical query in flight), follows a chain that
    /// leaves the forwarder's domain through `chase`, fills the cache, and encodes the
    /// response; a stale cache entry or SERVFAIL when the upstreams fail.
    pub async fn resolve(
        mut self,
        metrics: &Metrics,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        settings: &crate::pipeline::Settings,
    ) -> Resolved {
        let packet = self.packet.clone();
        let shaping = self.shaping.take();
        // A shaped answer is encoded whole first; the client's limits apply after shaping.
        let transport = if shaping.is_some() {
            Transport::Tcp
        } else {
            self.transport
        };
        let (reply, origin) = self.answer(metrics, chase, client, 0).await;
        let mut response = Vec::new();
        let Ok(request) = crate::request::parse(&packet, transport) else {
            // The query parsed before it was deferred; it parses again.
            return Resolved {
                response,
                qtype: RecordType::A,
                rcode: ResponseCode::ServFail,
                origin,
                dnssec_ok: false,
                denied_by: None,
            };
        };
        encode::reply(
            &request,
            &reply,
            origin,
            settings.max_udp_payload,
            &mut response,
        );
        if let Some(shaping) = shaping {
            let (qtype, dnssec_ok) = (
                request.qtype,
                request.edns.is_some_and(|edns| edns.dnssec_ok),
            );
            let mut shaped = Vec::new();
            let finished = shaping.finish(
                &response,
                origin,
                metrics,
                client.ip(),
                settings,
                &mut shaped,
            );
            return Resolved {
                response: shaped,
                qtype,
                rcode: finished.rcode,
                origin,
                dnssec_ok,
                denied_by: finished.denied_by,
            };
        }
        Resolved {
            response,
            qtype: request.qtype,
            rcode: reply.rcode,
            origin,
            dnssec_ok: request.edns.is_some_and(|edns| edns.dnssec_ok),
            denied_by: None,
        }
    }

    /// Asks the upstreams only to refresh the cache (prefetch): no response, no chase.
    pub async fn refresh(self, metrics: &Metrics, client: std::net::SocketAddr) {
        metrics.cache().prefetch();
        self.answer(metrics, &NoChase, client, MAX_CHASE_DEPTH)
            .await;
    }

    /// The reply without the encoding (for a chase), `depth` chases deep.
    pub async fn reply(
        self,
        metrics: &Metrics,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> Option<Reply> {
        Some(self.answer(metrics, chase, client, depth).await.0)
    }

    async fn answer(
        self,
        metrics: &Metrics,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> (Reply, Origin) {
        let Self {
            packet,
            transport,
            pending,
            ..
        } = self;
        let Some(key) = crate::request::parse(&packet, transport)
            .ok()
            .and_then(|request| Key::of(&request))
        else {
            return (Reply::servfail(), Origin::Forward);
        };
        let (forwarder, cache) = match pending.work {
            Work::Upstream {
                forwarder, cache, ..
            } => (forwarder, cache),
            Work::Alias { head, target } => {
                return Self::complete_alias(*head, &key, target, chase, client, depth).await;
            }
        };
        let stale = |now| cache.as_ref().and_then(|cache| cache.stale(&key, now));
        let served_stale = |hit: super::cache::Hit| {
            metrics.cache().served_stale();
            (hit.reply_for(), Origin::Cache)
        };
        // Every upstream known down and a stale answer at hand: answer now, let the health
        // probes find out when the upstreams are back.
        if forwarder.all_down()
            && let Some(hit) = stale(Instant::now())
        {
            return served_stale(hit);
        }
        let result = forwarder.query(&key, transport, metrics.forward()).await;
        match result {
            Ok(reply) if matches!(reply.rcode, ResponseCode::NoError | ResponseCode::NXDomain) => {
                let reply = match dangling_target(&reply, &key, forwarder.domain()) {
                    Some(target) if depth < MAX_CHASE_DEPTH => {
                        Self::follow(reply, &key, target, chase, client, depth).await
                    }
                    _ => reply,
                };
                if let Some(cache) = &cache {
                    cache.insert(
                        key.clone(),
                        Arc::clone(&reply),
                        Instant::now(),
                        metrics.cache(),
                    );
                }
                ((*reply).clone(), Origin::Forward)
            }
            failed => match stale(Instant::now()) {
                Some(hit) => served_stale(hit),
                None => match failed {
                    Ok(reply) => ((*reply).clone(), Origin::Forward),
                    Err(_) => (Reply::servfail(), Origin::Forward),
                },
            },
        }
    }

    /// A local alias completed: `head` with the records of `target` for the asked type,
    /// resolved through the whole pipeline (the cache stage first). A target that does not
    /// resolve (SERVFAIL, REFUSED, too deep) leaves the CNAME alone, NOERROR, for the
    /// client's resolver to follow; NXDOMAIN and NODATA come with the target's SOA.
    async fn complete_alias(
        mut head: Reply,
        key: &Key,
        target: Name,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> (Reply, Origin) {
        if depth >= MAX_CHASE_DEPTH {
            return (head, Origin::Kubernetes);
        }
        let sub = Key {
            name: target,
            ..key.clone()
        };
        match chase
            .chase(upstream::encode_query(0, &sub), client, depth + 1)
            .await
        {
            Some(found)
                if matches!(found.rcode, ResponseCode::NoError | ResponseCode::NXDomain) =>
            {
                head.rcode = found.rcode;
                head.answers.extend(found.answers);
                head.authorities = found.authorities;
                head.additionals.extend(found.additionals);
                (head, Origin::Forward)
            }
            _ => (head, Origin::Kubernetes),
        }
    }

    /// Appends the answer for `target` (asked through the whole pipeline) to `reply`.
    async fn follow(
        reply: Arc<Reply>,
        key: &Key,
        target: Name,
        chase: &dyn Chase,
        client: std::net::SocketAddr,
        depth: usize,
    ) -> Arc<Reply> {
        let sub = Key {
            name: target,
            ..key.clone()
        };
        let Some(found) = chase
            .chase(upstream::encode_query(0, &sub), client, depth + 1)
            .await
        else {
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

    /// A query for one of this server's loop probes ([`loops`]): counted, and answered
    /// SERVFAIL at once so the probe goes round the loop only once. `None` for any other
    /// name.
    pub fn loop_echo<'a>(&self, request: &Request<'_>, sources: &Sources<'_>) -> Option<Flow<'a>> {
        if !request.name.is_in(loops::PROBE_ZONE) {
            return None;
        }
        let name = request.name.wire();
        let echoed = self
            .forwarders
            .iter()
            .flat_map(|f| f.upstreams())
            .any(|upstream| upstream.loops().echo(name));
        echoed.then(|| {
            sources.metrics.forward().loop_echo();
            Flow::Answer(Answer::rcode(ResponseCode::ServFail, Origin::Forward))
        })
    }

    /// Every upstream that loops back to this server, as (forwarder domain, address).
    pub fn loops(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.forwarders
            .iter()
            .flat_map(|f| {
                f.upstreams()
                    .iter()
                    .filter(|u| u.loops().looping())
                    .map(|u| (f.settings().domain.clone(), u.addr()))
            })
            .collect()
    }

    /// Probes every upstream not probed yet for loops, in the background (a no-op
    /// without a Tokio runtime).
    pub fn probe_loops(&self, metrics: &Metrics) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for forwarder in &self.forwarders {
            for upstream in forwarder.upstreams() {
                runtime.spawn(loops::probe(
                    forwarder.settings().domain.clone(),
                    Arc::clone(upstream),
                    metrics.forward().clone(),
                ));
            }
        }
    }

    /// Takes the query if a forwarder owns its name, within the forwarder's and the
    /// process's (`global`) in-flight limits.
    pub fn handle<'a>(
        &self,
        request: &Request<'_>,
        sources: &Sources<'_>,
        global: &GlobalLimit,
    ) -> Flow<'a> {
        if let Some(echo) = self.loop_echo(request, sources) {
            return echo;
        }
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
        let Some(global) = global.admit() else {
            sources.metrics.forward().global_limit_reject();
            return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Forward));
        };
        let Some(permit) = forwarder.admit() else {
            sources.metrics.forward().max_concurrent_reject();
            return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Forward));
        };
        Flow::Forward(Pending {
            work: Work::Upstream {
                forwarder: Arc::clone(forwarder),
                cache: self.cache.clone(),
                _permit: permit,
                _global: global,
            },
        })
    }
}
