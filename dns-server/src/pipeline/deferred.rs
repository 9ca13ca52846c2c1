//! A query waiting on the network: the one name for it from the stage that decided it
//! (an [`Upstream`]) to the transport that sends its answer.
//!
//! The forward stage (or the Kubernetes stage, for an alias to resolve) returns
//! [`Flow::Upstream`](super::flow::Flow::Upstream); the pipeline keeps the request with it
//! ([`OwnedRequest`]: the packet copied once, never parsed again) and, on the client-aware
//! path, what is still to be done to the answer ([`Shaping`]). The transport runs
//! [`Deferred::resolve`] off its receive loop: ask the upstreams (or join an identical
//! query in flight), follow a chain that leaves the forwarder's domain ([`Chase`]), fill
//! the cache, encode the response. A prefetch runs [`Deferred::refresh`] instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::client::shaping::Shaping;
use super::flow::{Stats, Upstream, Work};
use crate::answer_cache::Hit;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::reply::{Key, Reply};
use crate::request::{OwnedRequest, SizeLimit};
use crate::settings::Settings;
use crate::wire::answer::Origin;

/// A query whose answer needs the network, with what its accounting needs.
#[derive(Debug)]
pub struct Deferred {
    query: OwnedRequest,
    upstream: Upstream,
    /// What the client-aware stages still do to the answer (policy, rewrite, autopath).
    shaping: Option<Box<Shaping>>,
    /// Who asked.
    client: SocketAddr,
    /// When the query arrived (the duration metric).
    started: Instant,
    /// The rate limit its answer counts against (UDP, an unidentified client).
    limiter: Option<Arc<RateLimiter>>,
}

impl PartialEq for Deferred {
    /// Same query waiting on the same upstream (for tests comparing outcomes).
    fn eq(&self, other: &Self) -> bool {
        self.query == other.query && self.upstream == other.upstream
    }
}

impl Eq for Deferred {}

/// The response [`Deferred::resolve`] produced, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The response bytes.
    pub response: Vec<u8>,
    /// For the metrics and the query log.
    pub stats: Stats,
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
pub(crate) const MAX_CHASE_DEPTH: usize = 4;

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
    /// `query` (from `client`), waiting on `upstream`.
    pub fn new(query: OwnedRequest, upstream: Upstream, client: SocketAddr) -> Self {
        Self {
            query,
            upstream,
            shaping: None,
            client,
            started: Instant::now(),
            limiter: None,
        }
    }

    /// The same query, whose answer `shaping` finishes for the client.
    pub fn shaped(mut self, shaping: Shaping) -> Self {
        self.shaping = Some(Box::new(shaping));
        self
    }

    /// Counts the answer against `limiter`.
    pub(crate) fn limit_by(&mut self, limiter: Option<Arc<RateLimiter>>) {
        self.limiter = limiter;
    }

    /// The client's query.
    pub fn query(&self) -> &OwnedRequest {
        &self.query
    }

    /// Who asked.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// When the query arrived.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The rate limit its answer counts against, if any.
    pub(crate) fn limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.limiter.as_ref()
    }

    /// Asks the upstreams (or joins an identical query in flight), follows a chain that
    /// leaves the forwarder's domain through `chase`, fills the cache, and encodes the
    /// response; a stale cache entry or SERVFAIL when the upstreams fail.
    pub async fn resolve(
        self,
        metrics: &Metrics,
        chase: &dyn Chase,
        settings: &Settings,
    ) -> Finished {
        let Self {
            query,
            upstream,
            shaping,
            client,
            ..
        } = self;
        let request = query.request();
        let (reply, origin) = answer(&query, upstream, metrics, chase, client, 0).await;
        let mut stats = Stats::of(&request, reply.rcode, origin, settings.query_log);
        let mut response = Vec::new();
        match shaping {
            // A shaped answer is shaped from the whole reply; the client's limit applies
            // to the response written for its own question.
            Some(shaping) => {
                let shaped = shaping.finish(reply, origin, metrics, client.ip(), &mut response);
                stats.rcode = shaped.rcode;
                stats.truncated = shaped.truncated;
                stats.denied_by = shaped.denied_by;
            }
            None => {
                stats.truncated = crate::wire::reply::encode(
                    &request,
                    &reply,
                    origin,
                    SizeLimit::of(&request, settings.max_udp_payload),
                    &mut response,
                );
            }
        }
        Finished { response, stats }
    }

    /// Asks the upstreams only to refresh the cache (prefetch): no response, no chase.
    pub async fn refresh(self, metrics: &Metrics) {
        metrics.cache().prefetch();
        answer(
            &self.query,
            self.upstream,
            metrics,
            &NoChase,
            self.client,
            MAX_CHASE_DEPTH,
        )
        .await;
    }

    /// The reply without the encoding (for a chase), `depth` chases deep.
    pub async fn reply(self, metrics: &Metrics, chase: &dyn Chase, depth: usize) -> Reply {
        answer(
            &self.query,
            self.upstream,
            metrics,
            chase,
            self.client,
            depth,
        )
        .await
        .0
    }
}

/// The reply to `query` from `upstream`, and who gave it.
async fn answer(
    query: &OwnedRequest,
    upstream: Upstream,
    metrics: &Metrics,
    chase: &dyn Chase,
    client: SocketAddr,
    depth: usize,
) -> (Reply, Origin) {
    let transport = query.transport();
    let Some(key) = Key::of(&query.request()) else {
        return (Reply::servfail(), Origin::Forward);
    };
    let (forwarder, cache) = match upstream.work {
        Work::Upstream {
            forwarder, cache, ..
        } => (forwarder, cache),
        Work::Alias { head, target } => {
            return complete_alias(*head, &key, target, chase, client, depth).await;
        }
    };
    let stale = |now| cache.as_ref().and_then(|cache| cache.stale(&key, now));
    let served_stale = |hit: Hit| {
        metrics.cache().served_stale();
        (hit.reply_for(), Origin::Cache)
    };
    // Every upstream known down and a stale answer at hand: answer now, let the health
    // probes find out when the upstreams are back.
    if forwarder.all_down()
        && let Some(hit) = stale(tokio::time::Instant::now())
    {
        return served_stale(hit);
    }
    let result = forwarder.query(&key, transport, metrics.forward()).await;
    match result {
        Ok(reply) if matches!(reply.rcode, ResponseCode::NoError | ResponseCode::NXDomain) => {
            let reply = match dangling_target(&reply, &key, forwarder.domain()) {
                Some(target) if depth < MAX_CHASE_DEPTH => {
                    follow(reply, &key, target, chase, client, depth).await
                }
                _ => reply,
            };
            if let Some(cache) = &cache {
                cache.insert(
                    key.clone(),
                    Arc::clone(&reply),
                    tokio::time::Instant::now(),
                    metrics.cache(),
                );
            }
            ((*reply).clone(), Origin::Forward)
        }
        failed => match stale(tokio::time::Instant::now()) {
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
        .chase(
            crate::pipeline::forward::upstream::encode_query(0, &sub),
            client,
            depth + 1,
        )
        .await
    {
        Some(found) if matches!(found.rcode, ResponseCode::NoError | ResponseCode::NXDomain) => {
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
        .chase(
            crate::pipeline::forward::upstream::encode_query(0, &sub),
            client,
            depth + 1,
        )
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
