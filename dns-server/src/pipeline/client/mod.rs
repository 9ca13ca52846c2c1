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
//!    which case [`Shaping`] travels with the forwarded query;
//! 5. [`Shaping::finish`]: the policy checks every name of the answer section, the
//!    autopath CNAME is put in front, the rewrite is turned back, and the response is
//!    written for the question the client sent.
//!
//! The stages of step 4 see the client's own transport (so a zone transfer is refused over
//! UDP here as on the plain path), but their answer is encoded whole: the client's size
//! limit (its EDNS size, capped at the server's) applies once, in step 5, to the response
//! written for its own question.
//!
//! Steps 3–5 cost a copy of the answer (parsed and re-encoded); a client no policy
//! restricts, whose question no rule rewrites and autopath does not touch, takes the plain
//! path without it.

pub mod autopath;
pub mod policy;
pub mod rewrite;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use nameplane_config::ValidatedConfig;
use nameplane_config::policy::DeniedResponse;

use super::{Flow, Outcome, Pipeline, Settings, Sources, forward};
use crate::metrics::Metrics;
use crate::request::{self, QName, Request, Transport};
use crate::response::{self, Answer, Origin};
use autopath::Autopath;
use policy::{PolicySet, Restriction};
use rewrite::{RewriteRule, RewriteSet};

/// The client-aware stages of one config.
#[derive(Debug)]
pub struct ClientStages {
    policies: Option<Arc<PolicySet>>,
    rewrites: Option<RewriteSet>,
    autopath: Option<Autopath>,
    /// TTL of autopath's CNAME: the cluster names' TTL.
    ttl: u32,
    /// Whether the config needs to know which Pod asks (policies, client classes, tenant
    /// rewrites, autopath); a config with only the platform's rewrites does not.
    needs_pods: bool,
}

impl ClientStages {
    /// `None` when the config has no policy, denied client class, rewrite or autopath.
    pub fn new(config: &ValidatedConfig) -> Option<Self> {
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
}

/// What must be done to the answer of a query before its client sees it; travels with a
/// forwarded query to its answer.
#[derive(Debug)]
pub struct Shaping {
    /// The client's query.
    original: Vec<u8>,
    transport: Transport,
    /// The question after rewriting (the first autopath candidate).
    first: QName,
    /// The name whose answer comes back.
    resolved: QName,
    rewrite: Option<Arc<RewriteRule>>,
    /// Whether autopath walked the search path for this query.
    autopath: bool,
    /// Autopath: the answer to `first` (NXDOMAIN), for when the rest of the path is
    /// NXDOMAIN too.
    fallback: Option<Vec<u8>>,
    restriction: Option<Restriction>,
    /// A forwarded query's NXDOMAIN denial, encoded up front (it needs the cluster
    /// snapshot, which the forwarded answer no longer has); empty for an answer shaped at
    /// once, whose denial is encoded only if it happens.
    nx_denial: Vec<u8>,
    cname_ttl: u32,
}

impl PartialEq for Shaping {
    /// Same client query, same resolved name (for comparing [`forward::Deferred`]s).
    fn eq(&self, other: &Self) -> bool {
        self.original == other.original && self.resolved == other.resolved
    }
}

impl Eq for Shaping {}

/// The inner query for `name`: the client's packet with only the question name replaced.
fn splice(packet: &[u8], request: &Request<'_>, name: &QName) -> Vec<u8> {
    let start = request.question.as_ptr() as usize - packet.as_ptr() as usize;
    let end = start + request.question.len();
    let mut inner = Vec::with_capacity(packet.len() + name.wire().len());
    inner.extend_from_slice(&packet[..start]);
    inner.extend_from_slice(name.wire());
    inner.extend_from_slice(&request.question[request.question.len() - 4..]);
    inner.extend_from_slice(&packet[end..]);
    inner
}

/// Writes the denial of `request` at the end of `out`: NXDOMAIN (with the cluster zone's
/// SOA for a cluster name) or REFUSED.
fn deny(
    request: &Request<'_>,
    response: DeniedResponse,
    pipeline: &Pipeline,
    sources: &Sources<'_>,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> ResponseCode {
    let answer = match response {
        DeniedResponse::Nxdomain => pipeline
            .kubernetes()
            .and_then(|k| k.nxdomain(&request.name, sources.cluster))
            .unwrap_or_else(|| Answer::rcode(ResponseCode::NXDomain, Origin::Server)),
        DeniedResponse::Refused => return refused(request, settings.max_udp_payload, out),
    };
    response::encode(request, &answer, settings.max_udp_payload, out);
    answer.rcode
}

fn refused(request: &Request<'_>, max_udp: u16, out: &mut Vec<u8>) -> ResponseCode {
    let answer = Answer::rcode(ResponseCode::Refused, Origin::Server);
    response::encode(request, &answer, max_udp, out);
    answer.rcode
}

/// Answers `request` (parsed from `packet`) through the client-aware stages.
#[allow(clippy::too_many_arguments)]
pub(super) fn answer(
    packet: &[u8],
    transport: Transport,
    request: &Request<'_>,
    pipeline: &Pipeline,
    stages: &ClientStages,
    sources: &Sources<'_>,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Outcome {
    // A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d; Pods have the plain address.
    let ip = sources.client.ip().to_canonical();
    let pod = sources
        .cluster
        .pods
        .as_ref()
        .and_then(|pods| pods.client(&ip));
    let restriction = stages
        .policies
        .as_ref()
        .and_then(|set| set.restriction(ip, pod, sources.cluster, sources.metrics));
    let transfer = matches!(request.qtype, RecordType::AXFR | RecordType::IXFR);
    let rewritten = stages
        .rewrites
        .as_ref()
        .filter(|_| !transfer)
        .and_then(|set| set.apply(&request.name, pod.map(|p| &*p.namespace)));
    let first = rewritten
        .as_ref()
        .map_or_else(|| request.name.clone(), |r| r.name.clone());
    let walk = |first: &QName| match (&stages.autopath, pod) {
        (Some(autopath), Some(pod)) => autopath.candidates(first, request.qtype, &pod.namespace),
        _ => None,
    };
    let outcome = |rcode, origin, truncated| Outcome {
        replied: true,
        more: Vec::new(),
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
    // Who asks is known only from a listed Pod watch. A config that needs it is swapped in
    // only once its Pod list is complete, except a process's first one: until then, SERVFAIL
    // (as with no config at all) rather than a verdict about the wrong client. A config with
    // only the platform's rewrites never watches Pods and never waits.
    if stages.needs_pods && sources.cluster.sync_state().pods != Some(true) {
        let answer = Answer::rcode(ResponseCode::ServFail, Origin::Server);
        response::encode(request, &answer, settings.max_udp_payload, out);
        return outcome(answer.rcode, Origin::Server, false);
    }
    // Nothing to check or turn back: the plain path, unless autopath has a name to find.
    // Most queries under a Pod's first search domain exist, so the walk starts only at a
    // NXDOMAIN, and answers found at once cost nothing extra.
    let candidates = if restriction.is_none() && rewritten.is_none() {
        let flow = pipeline.resolve(request, sources, settings);
        let missing = matches!(&flow, Flow::Answer(a) if a.rcode == ResponseCode::NXDomain);
        match missing.then(|| walk(&first)).flatten() {
            Some(candidates) => Some(candidates),
            None => {
                return super::finish(
                    packet,
                    transport,
                    request,
                    flow,
                    settings,
                    settings.max_udp_payload,
                    out,
                );
            }
        }
    } else {
        walk(&first)
    };
    if let Some(rewritten) = &rewritten {
        rewritten.rule.count(sources.metrics);
    }
    if let Some(r) = &restriction
        && let Err(denial) = r.check(&first)
    {
        r.record(Err(denial), sources.metrics, ip, &request.name);
        let rcode = deny(request, denial.response, pipeline, sources, settings, out);
        return Outcome {
            denied_by: Some(r.denied_by(&denial)),
            ..outcome(rcode, Origin::Server, false)
        };
    }
    let walking = candidates.is_some();
    let names = candidates.unwrap_or_else(|| vec![first.clone()]);
    let mut fallback: Option<Vec<u8>> = None;
    let shaping = |resolved: &QName, autopath: bool, fallback: Option<Vec<u8>>| Shaping {
        original: packet.to_vec(),
        transport,
        first: first.clone(),
        resolved: resolved.clone(),
        rewrite: rewritten.as_ref().map(|r| Arc::clone(&r.rule)),
        autopath,
        fallback,
        restriction: restriction.clone(),
        nx_denial: Vec::new(),
        cname_ttl: stages.ttl,
    };
    // The denial of an answer shaped here, encoded only when it happens.
    let deny_nx = |out: &mut Vec<u8>| {
        deny(
            request,
            DeniedResponse::Nxdomain,
            pipeline,
            sources,
            settings,
            out,
        );
    };
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        // A later autopath step the client may not resolve does not exist for it.
        if i > 0 && restriction.as_ref().is_some_and(|r| r.check(name).is_err()) {
            continue;
        }
        let inner_packet = splice(packet, request, name);
        // The stages see the client's transport (a zone transfer is refused over UDP)…
        let Ok(inner) = request::parse(&inner_packet, transport) else {
            continue;
        };
        let flow = pipeline.resolve(&inner, sources, settings);
        // …but the inner answer is encoded whole: the client's size limit applies once, to
        // the shaped response written for its own question.
        let unbounded = Request {
            transport: Transport::Tcp,
            ..inner.clone()
        };
        // Autopath goes on past a name that does not exist, and past a later step no stage
        // owns (the bare name without a forwarder).
        let not_found = matches!(&flow, Flow::Answer(a) if a.rcode == ResponseCode::NXDomain
            || (i > 0 && a.rcode == ResponseCode::Refused));
        if walking && !last && not_found {
            if i == 0 {
                let mut first_answer = Vec::new();
                super::finish(
                    &inner_packet,
                    transport,
                    &unbounded,
                    flow,
                    settings,
                    u16::MAX,
                    &mut first_answer,
                );
                fallback = Some(first_answer);
            }
            continue;
        }
        let mut shaped = shaping(name, walking, fallback.take());
        if let Flow::Forward(pending) = flow {
            if restriction.is_some() {
                deny_nx(&mut shaped.nx_denial);
            }
            let deferred = forward::Deferred::new(&inner_packet, transport, pending).shaped(shaped);
            return Outcome {
                replied: false,
                pending: Some(deferred),
                ..outcome(ResponseCode::NoError, Origin::Forward, false)
            };
        }
        let mut inner_out = Vec::new();
        let done = super::finish(
            &inner_packet,
            transport,
            &unbounded,
            flow,
            settings,
            u16::MAX,
            &mut inner_out,
        );
        if !done.more.is_empty() {
            // A zone transfer (over TCP only: `finish` refuses one on UDP): every message is
            // checked; any denied name refuses it all.
            let allowed = restriction.as_ref().is_none_or(|r| {
                std::iter::once(&inner_out)
                    .chain(done.more.iter())
                    .all(|message| {
                        Message::from_vec(message)
                            .is_ok_and(|m| r.check_records(&m.answers).is_ok())
                    })
            });
            if let Some(r) = &restriction {
                r.record(
                    if allowed { Ok(()) } else { Err(r.refusal()) },
                    sources.metrics,
                    ip,
                    &request.name,
                );
            }
            if let Some(r) = restriction.as_ref().filter(|_| !allowed) {
                let rcode = refused(request, settings.max_udp_payload, out);
                return Outcome {
                    denied_by: Some(r.denied_by(&r.refusal())),
                    ..outcome(rcode, Origin::Server, false)
                };
            }
            out.extend_from_slice(&inner_out);
            return Outcome {
                more: done.more,
                ..outcome(done.rcode, done.origin, false)
            };
        }
        let finished = shaped.finish_with(
            &inner_out,
            done.origin,
            sources.metrics,
            ip,
            settings,
            &deny_nx,
            out,
        );
        return Outcome {
            refresh: done.refresh,
            denied_by: finished.denied_by,
            ..outcome(finished.rcode, done.origin, finished.truncated)
        };
    }
    // Only reached when autopath skipped the last step: the first step's NXDOMAIN stands.
    let first_answer = fallback.unwrap_or_default();
    sources.metrics.clients().autopath(false);
    let finished = shaping(&first, false, None).finish_with(
        &first_answer,
        Origin::Kubernetes,
        sources.metrics,
        ip,
        settings,
        &deny_nx,
        out,
    );
    Outcome {
        denied_by: finished.denied_by,
        ..outcome(finished.rcode, Origin::Kubernetes, finished.truncated)
    }
}

/// What [`Shaping::finish`] wrote.
#[derive(Debug)]
pub struct Shaped {
    /// The response code sent.
    pub rcode: ResponseCode,
    /// Whether TC was set.
    pub truncated: bool,
    /// Who denied the answer (see [`Restriction::denied_by`]), when a policy or client class
    /// did.
    pub denied_by: Option<Arc<str>>,
}

impl Shaped {
    fn plain(rcode: ResponseCode, truncated: bool) -> Self {
        Self {
            rcode,
            truncated,
            denied_by: None,
        }
    }
}

impl Shaping {
    /// Writes the client's response made of `inner` (the encoded answer for the resolved
    /// name, from `origin`, here a forwarded one) at the end of `out`.
    pub fn finish(
        mut self,
        inner: &[u8],
        origin: Origin,
        metrics: &Metrics,
        client: IpAddr,
        settings: &Settings,
        out: &mut Vec<u8>,
    ) -> Shaped {
        let nx_denial = std::mem::take(&mut self.nx_denial);
        let deny_nx = |out: &mut Vec<u8>| out.extend_from_slice(&nx_denial);
        self.finish_with(inner, origin, metrics, client, settings, &deny_nx, out)
    }

    /// [`Shaping::finish`], with `deny_nx` writing the NXDOMAIN of a denial.
    #[allow(clippy::too_many_arguments)]
    fn finish_with(
        self,
        inner: &[u8],
        origin: Origin,
        metrics: &Metrics,
        client: IpAddr,
        settings: &Settings,
        deny_nx: &dyn Fn(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) -> Shaped {
        let Ok(request) = request::parse(&self.original, self.transport) else {
            // It parsed when it arrived; it parses again.
            return Shaped::plain(ResponseCode::ServFail, false);
        };
        let max_udp = settings.max_udp_payload;
        let parsed = Message::from_vec(inner);
        let (mut message, resolved, walked) = match (parsed, &self.fallback) {
            (Ok(m), Some(fallback)) if m.metadata.response_code != ResponseCode::NoError => {
                match Message::from_vec(fallback) {
                    Ok(first) => (first, &self.first, false),
                    Err(_) => (m, &self.resolved, self.autopath),
                }
            }
            (Ok(m), _) => (m, &self.resolved, self.autopath),
            (Err(_), _) => {
                let answer = Answer::rcode(ResponseCode::ServFail, origin);
                response::encode(&request, &answer, max_udp, out);
                return Shaped::plain(ResponseCode::ServFail, false);
            }
        };
        // Counted when the walk went past the asked name: found further on, or not at all.
        if self.autopath && self.resolved != self.first {
            metrics.clients().autopath(walked);
        }
        if let Some(r) = &self.restriction {
            let verdict = r.check_records(&message.answers);
            r.record(verdict, metrics, client, &request.name);
            if let Err(denial) = verdict {
                let rcode = match denial.response {
                    DeniedResponse::Nxdomain => {
                        deny_nx(out);
                        ResponseCode::NXDomain
                    }
                    DeniedResponse::Refused => refused(&request, max_udp, out),
                };
                return Shaped {
                    rcode,
                    truncated: false,
                    denied_by: Some(r.denied_by(&denial)),
                };
            }
            message
                .additionals
                .retain(|record| r.check_records(std::slice::from_ref(record)).is_ok());
        }
        let name = |q: &QName| Name::read(&mut BinDecoder::new(q.wire())).ok();
        let (Some(first), Some(resolved), Ok(asked)) = (
            name(&self.first),
            name(resolved),
            hickory_proto::op::Query::read(&mut BinDecoder::new(request.question)),
        ) else {
            return Shaped::plain(refused(&request, max_udp, out), false);
        };
        let asked = asked.name().clone();
        let mut answers = std::mem::take(&mut message.answers);
        if walked && resolved != first {
            // The client asked `first`; the search path found `resolved`.
            let cname = Record::from_rdata(
                first.clone(),
                self.cname_ttl,
                RData::CNAME(CNAME(resolved.clone())),
            );
            answers.insert(0, cname);
        }
        if let Some(rule) = &self.rewrite {
            rule.back(&mut answers, &first, &asked);
            rule.back(&mut message.additionals, &first, &asked);
        }
        let reply = forward::Reply {
            rcode: message.metadata.response_code,
            truncated: message.metadata.truncation,
            answers,
            authorities: message.authorities,
            additionals: message.additionals,
        };
        let start = out.len();
        let truncated = forward::encode::reply(&request, &reply, origin, max_udp, out);
        if message.metadata.authoritative
            && let Some(flags) = out.get_mut(start + 2)
        {
            *flags |= 0x04;
        }
        Shaped::plain(reply.rcode, truncated)
    }
}

#[cfg(test)]
mod tests;
