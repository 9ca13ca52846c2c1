//! The forward stage: stub domains, and `.` for the upstreams of everything else, after
//! CoreDNS's *forward* plugin, hardened after its advisories.
//!
//! **Routing** ([`super::routes`]). A name goes to the forwarder of the longest configured domain
//! at or above it (`.` matches every name), unless a local stage owns it: the cluster
//! domain (Kubernetes stage) and every zone apex (zones stage) come first, whatever the
//! depth, because those stages run first. A name nobody owns is REFUSED (no open resolver
//! by accident).
//!
//! **Off the receive loop.** The stage itself only decides: it takes a slot of the
//! process's in-flight limit over every forwarder ([`GlobalLimit`],
//! `--forward-max-in-flight`, default [`crate::settings::DEFAULT_MAX_IN_FLIGHT`]) and one of the
//! forwarder's own (`maxConcurrent`), REFUSED at once above either, as CoreDNS's
//! `max_concurrent`: memory and upstream sockets stay bounded whatever the upstreams do; and returns
//! [`Flow::Upstream`]. The transport then runs [`super::deferred::Deferred::resolve`] on its own task, so a
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
//! **A chain that leaves the domain** ([`super::deferred::Chase`]). When a stub domain's answer is a CNAME
//! to a name outside the stub domain (its records dropped as out of bailiwick), the target
//! is asked again through the whole pipeline (a cluster name, a zone, or the forwarder that
//! owns it) and its answer appended, at most [`super::deferred::MAX_CHASE_DEPTH`] times: clients get whole
//! answers (as from CoreDNS, which passes the stub server's records through unchecked),
//! from sources trusted for each name.
//!
//! **After the reply.** NOERROR and NXDOMAIN replies go into the cache (when configured),
//! whole chains included; failures answer from a stale cache entry when serve-stale allows
//! it, else SERVFAIL.
//!
//! Metrics: [`crate::metrics::forward`].

pub(crate) mod bailiwick;
pub(crate) mod forwarder;
pub(crate) mod loop_state;
pub(crate) mod loops;
pub(crate) mod upstream;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nameplane_config::ValidatedConfig;

use super::flow::{BuildError, Flow, Sources, Upstream};
use super::routes::{Route, Routes};
use crate::answer_cache::Cache;
use crate::metrics::Metrics;
use crate::request::Request;
use crate::settings::GlobalLimit;
use crate::wire::answer::{Answer, Origin};
use forwarder::Forwarder;

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
        Flow::Upstream(Upstream::forwarder(
            Arc::clone(forwarder),
            self.cache.clone(),
            permit,
            global,
        ))
    }
}
