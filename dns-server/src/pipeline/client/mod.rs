//! The client-aware path: rewrite, autopath and policy around the stages, for the queries
//! of clients they concern.
//!
//! A pipeline whose config has no policy, denied client class, rewrite or autopath never
//! comes here. Otherwise each query first learns who asks (the Pod its source address
//! identifies, from the Pod watch; else a node address or an unidentified client, see
//! [`policy`]; SERVFAIL while the Pod watch has not listed) and then:
//!
//! 1. [`rewrite`]: the first rule that applies to this client rewrites the question;
//! 2. [`autopath`]: a Pod asking under its first search domain gets the search path walked
//!    for it;
//! 3. [`policy`]: the (rewritten) question must be allowed, else the denial answers;
//! 4. the stages answer the resolved name — synchronously, or later from an upstream, in
//!    which case a [`Shaping`] travels with the [`Deferred`] query;
//! 5. [`shaping`]: the policy checks every name of the answer section, the autopath CNAME
//!    is put in front, the rewrite is turned back, and the response is written for the
//!    question the client sent, within the client's size limit (once, for the shaped
//!    response).
//!
//! The stages of step 4 see the client's own transport (a zone transfer is refused over
//! UDP here as on the plain path). No answer is encoded and parsed again on the way: a
//! local answer is shaped as borrowed records, an owned one in place ([`shaping`]); a
//! client no policy restricts, whose question no rule rewrites and autopath does not
//! touch, takes the plain path.

pub(crate) mod autopath;
pub(crate) mod policy;
pub(crate) mod rewrite;
pub(crate) mod shaping;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use nameplane_config::ValidatedConfig;
use nameplane_config::policy::DeniedResponse;

use super::deferred::Deferred;
use super::flow::{Flow, Resolve, Sources, Stats};
use super::send::{self, Sent};
use crate::cluster::index::PodClient;
use crate::request::{OwnedRequest, QName, Request, SizeLimit, Transport};
use crate::settings::Settings;
use crate::wire;
use crate::wire::answer::{Answer, Origin};
use autopath::Autopath;
use policy::{PolicySet, Restriction};
use rewrite::{RewriteSet, Rewritten};
use shaping::{Shape, Shaped, Shaping};

/// The client-aware stages of one config.
#[derive(Debug)]
pub(crate) struct ClientStages {
    policies: Option<Arc<PolicySet>>,
    rewrites: Option<RewriteSet>,
    autopath: Option<Autopath>,
    /// TTL of autopath's CNAME: the cluster names' TTL.
    ttl: u32,
    /// Whether the config needs to know which Pod asks (policies, client classes, tenant
    /// rewrites, autopath); a config with only the platform's rewrites does not.
    needs_pods: bool,
}

/// Who asks, and what that means for this query.
struct Asker<'c> {
    ip: IpAddr,
    pod: Option<&'c Arc<PodClient>>,
    restriction: Option<Restriction>,
    rewritten: Option<Rewritten>,
}

impl ClientStages {
    /// `None` when the config has no policy, denied client class, rewrite or autopath.
    pub(crate) fn new(config: &ValidatedConfig) -> Option<Self> {
        let stages = Self {
            policies: PolicySet::new(config),
            rewrites: RewriteSet::new(config),
            autopath: Autopath::new(config),
            ttl: config.ttl_seconds(),
            needs_pods: config.needs_pods(),
        };
        (stages.policies.is_some() || stages.rewrites.is_some() || stages.autopath.is_some())
            .then_some(stages)
    }

    /// Who asks `request`, and the restriction and rewrite that apply to them.
    fn asker<'c>(&self, request: &Request<'_>, sources: &Sources<'c>) -> Asker<'c> {
        // A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d; Pods have the plain
        // address.
        let ip = sources.client.ip().to_canonical();
        let pod = sources
            .cluster
            .pods
            .as_ref()
            .and_then(|pods| pods.client(&ip));
        let restriction = self
            .policies
            .as_ref()
            .and_then(|set| set.restriction(ip, pod, sources.cluster, sources.metrics));
        let transfer = matches!(
            request.qtype,
            hickory_proto::rr::RecordType::AXFR | hickory_proto::rr::RecordType::IXFR
        );
        let rewritten = self
            .rewrites
            .as_ref()
            .filter(|_| !transfer)
            .and_then(|set| set.apply(&request.name, pod.map(|p| &*p.namespace)));
        Asker {
            ip,
            pod,
            restriction,
            rewritten,
        }
    }

    /// The search path autopath walks for `first`, when it applies to this client.
    fn walk(&self, first: &QName, request: &Request<'_>, asker: &Asker<'_>) -> Option<Vec<QName>> {
        match (&self.autopath, asker.pod) {
            (Some(autopath), Some(pod)) => {
                autopath.candidates(first, request.qtype, &pod.namespace)
            }
            _ => None,
        }
    }

    /// Answers `request` (parsed from `packet`) through the client-aware stages.
    pub(super) fn answer<P: Resolve>(
        &self,
        packet: &[u8],
        request: &Request<'_>,
        pipeline: &P,
        sources: &Sources<'_>,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        let limit = SizeLimit::of(request, settings.max_udp_payload);
        // Who asks is known only from a listed Pod watch. A config that needs it is swapped
        // in only once its Pod list is complete, except a process's first one: until then,
        // SERVFAIL (as with no config at all) rather than a verdict about the wrong client.
        // A config with only the platform's rewrites never watches Pods and never waits.
        if self.needs_pods && sources.cluster.sync_state().pods != Some(true) {
            return send::rcode(
                request,
                ResponseCode::ServFail,
                Origin::Server,
                limit,
                settings,
                out,
            );
        }
        let asker = self.asker(request, sources);
        let first = asker
            .rewritten
            .as_ref()
            .map_or_else(|| request.name.clone(), |r| r.name.clone());
        // Nothing to check or turn back: the plain path, unless autopath has a name to
        // find. Most queries under a Pod's first search domain exist, so the walk starts
        // only at a NXDOMAIN, and answers found at once cost nothing extra.
        let mut first_flow = None;
        let candidates = if asker.restriction.is_none() && asker.rewritten.is_none() {
            let flow = pipeline.resolve(request, sources, settings);
            let missing = matches!(&flow, Flow::Answer(a) if a.rcode == ResponseCode::NXDomain);
            match missing
                .then(|| self.walk(&first, request, &asker))
                .flatten()
            {
                Some(candidates) => {
                    first_flow = Some(flow);
                    Some(candidates)
                }
                None => return send::send(packet, request, flow, sources, settings, limit, out),
            }
        } else {
            self.walk(&first, request, &asker)
        };
        let walking = candidates.is_some();
        if let Some(rewritten) = &asker.rewritten {
            rewritten.rule.count(sources.metrics);
        }
        if let Some(r) = &asker.restriction
            && let Err(denial) = r.check(&first)
        {
            r.record(Err(denial), sources.metrics, asker.ip, &request.name);
            let sent = self.deny(
                request,
                denial.response,
                pipeline,
                sources,
                limit,
                settings,
                out,
            );
            return with_stats(sent, |stats| stats.denied_by = Some(r.denied_by(&denial)));
        }
        let walk = Walk {
            stages: self,
            packet,
            request,
            asker: &asker,
            first: &first,
            walking,
            limit,
        };
        // Without autopath, one step: the (rewritten) question itself.
        let names = candidates
            .as_deref()
            .unwrap_or(std::slice::from_ref(&first));
        walk.run(names, first_flow, pipeline, sources, settings, out)
    }

    /// Writes the denial of `request`: NXDOMAIN (with the cluster zone's SOA for a cluster
    /// name) or REFUSED.
    #[allow(clippy::too_many_arguments)]
    fn deny<P: Resolve>(
        &self,
        request: &Request<'_>,
        response: DeniedResponse,
        pipeline: &P,
        sources: &Sources<'_>,
        limit: SizeLimit,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        let answer = match response {
            DeniedResponse::Nxdomain => nx_denial(pipeline, &request.name, sources),
            DeniedResponse::Refused => Answer::rcode(ResponseCode::Refused, Origin::Server),
        };
        let sent = send::answer(request, &answer, limit, settings, out);
        // A denial is the server's answer, whichever stage's zone it borrowed.
        with_stats(sent, |stats| stats.origin = Origin::Server)
    }
}

/// Whether `flow` found the name (anything but a failure rcode, or a transfer or an upstream
/// query, which find out later).
fn flow_found(flow: &Flow<'_>) -> bool {
    match flow {
        Flow::Answer(answer) => answer.rcode == ResponseCode::NoError,
        Flow::Cached(hit) | Flow::CachedAndRefresh(hit, _) => {
            hit.reply.rcode == ResponseCode::NoError
        }
        Flow::Skip => false,
        Flow::Transfer(_) | Flow::Upstream(_) => true,
    }
}

/// The NXDOMAIN a denial of `name` answers: with the cluster zone's SOA for a cluster name.
fn nx_denial<'a, P: Resolve>(pipeline: &'a P, name: &QName, sources: &Sources<'a>) -> Answer<'a> {
    pipeline
        .nxdomain(name, sources.cluster)
        .unwrap_or_else(|| Answer::rcode(ResponseCode::NXDomain, Origin::Server))
}

/// `sent` with its stats changed by `change`.
fn with_stats(mut sent: Sent, change: impl FnOnce(&mut Stats)) -> Sent {
    if let Sent::Replied { stats, .. } = &mut sent {
        change(stats);
    }
    sent
}

/// One query's way down the search path (a single step without autopath).
struct Walk<'w> {
    stages: &'w ClientStages,
    packet: &'w [u8],
    /// The client's request.
    request: &'w Request<'w>,
    asker: &'w Asker<'w>,
    /// The question after rewriting.
    first: &'w QName,
    /// Whether autopath walks the search path.
    walking: bool,
    limit: SizeLimit,
}

impl Walk<'_> {
    /// The shape of the answer for `resolved`.
    fn shape<'s>(&'s self, resolved: &'s QName, autopath: bool) -> Shape<'s> {
        Shape {
            request: self.request,
            first: self.first,
            resolved,
            rewrite: self.asker.rewritten.as_ref().map(|r| &r.rule),
            autopath,
            restriction: self.asker.restriction.as_ref(),
            cname_ttl: self.stages.ttl,
            client: self.asker.ip,
            limit: self.limit,
        }
    }

    /// Tries each candidate in turn; the first that exists is shaped and written.
    fn run<P: Resolve>(
        &self,
        names: &[QName],
        mut first_flow: Option<Flow<'_>>,
        pipeline: &P,
        sources: &Sources<'_>,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        let mut fallback: Option<Answer<'_>> = None;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            // A later autopath step the client may not resolve does not exist for it.
            if i > 0
                && self
                    .asker
                    .restriction
                    .as_ref()
                    .is_some_and(|r| r.check(name).is_err())
            {
                continue;
            }
            // The stages see the client's request with the name to resolve.
            let inner = Request {
                name: name.clone(),
                ..self.request.clone()
            };
            let flow = match first_flow.take().filter(|_| i == 0) {
                Some(flow) => flow,
                None => pipeline.resolve(&inner, sources, settings),
            };
            // Autopath goes on past a name that does not exist, and past a later step no
            // stage owns (the bare name without a forwarder).
            let not_found = matches!(&flow, Flow::Answer(a) if a.rcode == ResponseCode::NXDomain
                || (i > 0 && a.rcode == ResponseCode::Refused));
            if self.walking && !last && not_found {
                if i == 0
                    && let Flow::Answer(answer) = flow
                {
                    fallback = Some(answer);
                }
                continue;
            }
            return self.finish(
                &inner, name, flow, fallback, pipeline, sources, settings, out,
            );
        }
        // Only reached when autopath skipped the last step: the first step's NXDOMAIN stands.
        sources.metrics.clients().autopath(false);
        let answer =
            fallback.unwrap_or_else(|| Answer::rcode(ResponseCode::NXDomain, Origin::Kubernetes));
        let shape = self.shape(self.first, false);
        let deny_nx = |out: &mut Vec<u8>| self.write_nx_denial(pipeline, sources, out);
        let shaped = shape.local(answer, sources.metrics, &deny_nx, out);
        self.sent(shaped, Origin::Kubernetes, settings)
    }

    /// Writes the NXDOMAIN denial of the client's question.
    fn write_nx_denial<P: Resolve>(&self, pipeline: &P, sources: &Sources<'_>, out: &mut Vec<u8>) {
        let answer = nx_denial(pipeline, &self.request.name, sources);
        wire::writer::encode(self.request, &answer, self.limit, out);
    }

    /// The stats of a shaped response.
    fn sent(&self, shaped: Shaped, origin: Origin, settings: &Settings) -> Sent {
        Sent::replied(Stats {
            truncated: shaped.truncated,
            denied_by: shaped.denied_by,
            ..Stats::of(self.request, shaped.rcode, origin, settings.query_log)
        })
    }

    /// Shapes and writes what the stages decided for `resolved` (`inner` asks it).
    #[allow(clippy::too_many_arguments)]
    fn finish<P: Resolve>(
        &self,
        inner: &Request<'_>,
        resolved: &QName,
        flow: Flow<'_>,
        fallback: Option<Answer<'_>>,
        pipeline: &P,
        sources: &Sources<'_>,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        let shape = self.shape(resolved, self.walking);
        let deny_nx = |out: &mut Vec<u8>| self.write_nx_denial(pipeline, sources, out);
        let metrics = sources.metrics;
        // Counted when the walk went past the asked name: found further on, or not at all.
        let count_walk = |found| {
            if self.walking && resolved != self.first {
                metrics.clients().autopath(found);
            }
        };
        // The rest of the search path did not exist either: the first step's NXDOMAIN.
        if !flow_found(&flow)
            && let Some(first) = fallback
        {
            count_walk(false);
            let shaped = self
                .shape(self.first, false)
                .local(first, metrics, &deny_nx, out);
            return self.sent(shaped, Origin::Kubernetes, settings);
        }
        let (hit, refresh) = match flow {
            Flow::Answer(answer) => {
                count_walk(true);
                let origin = answer.origin;
                let shaped = shape.local(answer, metrics, &deny_nx, out);
                return self.sent(shaped, origin, settings);
            }
            Flow::Skip => {
                let answer = Answer::rcode(ResponseCode::Refused, Origin::Server);
                let shaped = shape.local(answer, metrics, &deny_nx, out);
                return self.sent(shaped, Origin::Server, settings);
            }
            Flow::Transfer(_) if inner.transport == Transport::Udp => {
                return self.rcode(ResponseCode::Refused, Origin::Zones, settings, out);
            }
            Flow::Transfer(transfer) => return self.transfer(transfer, sources, settings, out),
            Flow::Upstream(upstream) => {
                return self.defer(
                    inner, &shape, upstream, fallback, &deny_nx, sources, settings, out,
                );
            }
            Flow::Cached(hit) => (hit, None),
            Flow::CachedAndRefresh(hit, upstream) => (hit, Some(upstream)),
        };
        count_walk(true);
        let reply = hit.reply_for();
        let shaped = shape.owned(
            reply,
            Origin::Cache,
            false,
            self.walking,
            metrics,
            &deny_nx,
            out,
        );
        match self.sent(shaped, Origin::Cache, settings) {
            Sent::Replied { stats, more, .. } => Sent::Replied {
                stats,
                more,
                refresh: refresh.and_then(|upstream| {
                    OwnedRequest::new(self.packet, inner)
                        .map(|query| Box::new(Deferred::new(query, upstream, sources.client)))
                }),
            },
            other => other,
        }
    }

    /// A bare `rcode` for the client's question.
    fn rcode(
        &self,
        rcode: ResponseCode,
        origin: Origin,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        send::rcode(self.request, rcode, origin, self.limit, settings, out)
    }

    /// The query for `inner` waits on `upstream`, with what its answer must go through.
    #[allow(clippy::too_many_arguments)]
    fn defer(
        &self,
        inner: &Request<'_>,
        shape: &Shape<'_>,
        upstream: super::flow::Upstream,
        fallback: Option<Answer<'_>>,
        deny_nx: &dyn Fn(&mut Vec<u8>),
        sources: &Sources<'_>,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        let (Some(original), Some(query)) = (
            OwnedRequest::new(self.packet, self.request),
            OwnedRequest::new(self.packet, inner),
        ) else {
            return self.rcode(ResponseCode::ServFail, Origin::Server, settings, out);
        };
        // A forwarded answer no longer has the cluster snapshot: its denial is written now,
        // and the first step's NXDOMAIN kept encoded.
        let mut nx_denial = Vec::new();
        if self.asker.restriction.is_some() {
            deny_nx(&mut nx_denial);
        }
        let first_request = Request {
            name: self.first.clone(),
            ..self.request.clone()
        };
        let fallback =
            fallback.map(|answer| wire::writer::encode_for_name(&first_request, &answer));
        let shaping = Shaping::new(original, shape, fallback, nx_denial);
        Sent::Deferred(Box::new(
            Deferred::new(query, upstream, sources.client).shaped(shaping),
        ))
    }

    /// A zone transfer (over TCP only): every record is checked; any denied name refuses
    /// it all.
    fn transfer(
        &self,
        transfer: crate::reply::Transfer,
        sources: &Sources<'_>,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Sent {
        if let Some(r) = &self.asker.restriction {
            let verdict = r.check_records(&transfer.records).map_err(|_| r.refusal());
            r.record(verdict, sources.metrics, self.asker.ip, &self.request.name);
            if let Err(denial) = verdict {
                let sent = self.rcode(ResponseCode::Refused, Origin::Server, settings, out);
                return with_stats(sent, |stats| stats.denied_by = Some(r.denied_by(&denial)));
            }
        }
        send::send(
            self.packet,
            self.request,
            Flow::Transfer(transfer),
            sources,
            settings,
            self.limit,
            out,
        )
    }
}

#[cfg(test)]
mod tests;
