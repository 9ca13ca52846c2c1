//! The Kubernetes stage: authoritative answers for the cluster domain, and PTR records for
//! cluster addresses, with CoreDNS's semantics.
//!
//! It owns every class-IN name under the configured cluster domain, and PTR queries for
//! reverse names (`in-addr.arpa`, `ip6.arpa`), as CoreDNS's `kubernetes <zone> in-addr.arpa
//! ip6.arpa` does: a cluster address gets its names; any other reverse name is NXDOMAIN
//! with the reverse zone's SOA (`in-addr.arpa. ns.dns.in-addr.arpa. hostmaster.in-addr.arpa.`),
//! or, with `reverseFallthrough` (CoreDNS `fallthrough in-addr.arpa ip6.arpa`, as in
//! kubeadm's Corefile), passes to the next stage, i.e. the forwarders. A reverse name at or
//! below a configured zone or stub domain always passes on (in CoreDNS, the more specific
//! server block wins); other query types for reverse names always pass on. Answers under
//! the zone have AA set.
//!
//! | name                                   | answer                                                   |
//! |----------------------------------------|----------------------------------------------------------|
//! | `<zone>`                               | SOA; NS `ns.dns.<zone>` with its addresses as additional |
//! | `ns.dns.<zone>`                        | A/AAAA: the cluster IPs of the Service in front of this server (else its own IPs) |
//! | `dns-version.<zone>`                   | TXT `"1.1.0"`, TTL 28800                                 |
//! | `svc.<zone>`, `pod.<zone>`, `dns.<zone>` | NODATA (empty non-terminals)                           |
//! | `<ns>.svc.<zone>`                      | NODATA if the namespace is exposed, else NXDOMAIN        |
//! | `<svc>.<ns>.svc.<zone>` ClusterIP      | A/AAAA per cluster IP of that family; SRV per port       |
//! | `<svc>.<ns>.svc.<zone>` headless       | A/AAAA per ready endpoint; SRV per endpoint × port; NXDOMAIN without ready endpoints |
//! | `<svc>.<ns>.svc.<zone>` ExternalName   | CNAME to the target, then the target's records if it is a cluster name |
//! | `<ep>.<svc>.<ns>.svc.<zone>`           | A/AAAA of the endpoints with that name (hostname, Pod name, or dashed IP) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV per matching port (ClusterIP) or per ready endpoint × port (headless), addresses as additional |
//! | `<a-b-c-d>.<ns>.pod.<zone>`            | A/AAAA per the `pods` mode: NXDOMAIN (disabled), from the name (insecure), only if such a Pod exists (verified) |
//! | PTR of a cluster IP / ready endpoint   | `<svc>.<ns>.svc.<zone>` / `<ep>.<svc>.<ns>.svc.<zone>`   |
//!
//! Rules where the spec is silent follow CoreDNS (`plugin/kubernetes`):
//!
//! - a name that exists without records of the asked type is NODATA (NOERROR, no answer,
//!   the SOA in the authority section); a name that does not exist is NXDOMAIN with the SOA;
//! - a namespace that does not exist, or that the `namespaces` list or namespace selector
//!   leaves out, is NXDOMAIN for every name in it (not NODATA: tenants learn nothing);
//! - with `ignoreEmptyService`, a ClusterIP Service without ready endpoints is NXDOMAIN;
//! - until every watch has completed its initial list, names under the zone are SERVFAIL,
//!   never NXDOMAIN (reverse names pass on with `reverseFallthrough`, else SERVFAIL too),
//!   and zone transfers are REFUSED;
//! - the SOA: `ns.dns.<zone>. hostmaster.<zone>.`, serial = unix time of the last change,
//!   refresh 7200, retry 1800, expire 86400, minimum = the TTL (negative answers are cached
//!   that long); the SOA record's own TTL is the TTL capped at [`SOA_MAX_TTL`].
//! - SRV records have priority 0 and weight `100 / n` (at least 1) for `n` records.
//!
//! An ExternalName whose target is outside the cluster domain answers the CNAME alone, as
//! CoreDNS 1.14 does (the client's resolver follows it); with `resolveExternalNames` the
//! stage hands the answer on as an alias ([`super::flow::Upstream::alias`]) and the
//! target's records, resolved through the whole pipeline (cache, zones, forwarders), are
//! appended after the CNAME; a target that does not resolve leaves the CNAME alone.
//!
//! The stage and its dispatch by name live here; the answers by kind of name in the
//! children: `zone` (the zone's settings and shared record builders), `apex` (SOA, NS,
//! `ns.dns`, `dns-version`), `service`, `endpoints`, `srv`, `pods` and `reverse`.

mod apex;
mod endpoints;
mod pods;
mod reverse;
mod service;
mod srv;
mod zone;

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};
use nameplane_config::ValidatedConfig;

use self::reverse::ReverseZones;
use self::service::ServiceFound;
pub(crate) use self::zone::MAX_CNAME_CHAIN;
use self::zone::{Ctx, Found, Zone};
use super::flow::{BuildError, Flow};
use crate::cluster::index::Cluster;
use crate::cluster::names::{self, ClusterName};
use crate::request::{QName, Request};
use crate::wire::answer::{Answer, Origin, OutName, Rdata, Rr, WireLabels};

/// The Kubernetes stage, built from one config.
#[derive(Clone, Debug)]
pub struct KubernetesStage {
    zone: Zone,
    /// `resolveExternalNames`: the zone as a hickory name, to tell targets outside it.
    resolve_external_names: Option<hickory_proto::rr::Name>,
    /// Without `reverseFallthrough`: the reverse zones this stage answers NXDOMAIN for, and
    /// the names below them that belong to a zone or a stub domain instead.
    reverse: Option<Box<ReverseZones>>,
}

impl KubernetesStage {
    /// Builds the stage: the zone and SOA names are encoded once, here.
    pub fn new(config: &ValidatedConfig) -> Result<Self, BuildError> {
        let domain = config.cluster_domain();
        let name = |text: String| {
            QName::from_ascii(&text)
                .map(|name| Box::<[u8]>::from(name.wire()))
                .ok_or_else(|| BuildError::Kubernetes(format!("{text:?} is not a valid name")))
        };
        let settings = config.kubernetes();
        Ok(Self {
            zone: Zone::new(config, name)?,
            resolve_external_names: if settings.resolve_external_names {
                Some(
                    hickory_proto::rr::Name::from_ascii(format!("{domain}."))
                        .map_err(|e| BuildError::Kubernetes(format!("{domain:?}: {e}")))?
                        .to_lowercase(),
                )
            } else {
                None
            },
            reverse: if settings.reverse_fallthrough {
                None
            } else {
                Some(Box::new(ReverseZones::new(config, name)?))
            },
        })
    }

    /// The answer for a name of this zone that does not exist (NXDOMAIN with the zone's
    /// SOA): what a policy denial looks like, so that it cannot be told from one. `None`
    /// for a name outside the zone.
    pub fn nxdomain<'a>(&'a self, name: &QName, cluster: &Cluster) -> Option<Answer<'a>> {
        self.zone.contains(name).then(|| {
            let mut answer = Answer::rcode(ResponseCode::NoError, Origin::Kubernetes);
            answer.authoritative = true;
            self.finish(answer, Found::NxDomain, cluster)
        })
    }

    /// Answers `request` if it is a name of this stage. `dns_ips` are this server's own
    /// addresses (for `ns.dns.<zone>`).
    pub fn handle<'a>(
        &'a self,
        request: &Request<'_>,
        cluster: &'a Cluster,
        dns_ips: &'a [IpAddr],
    ) -> Flow<'a> {
        if request.qclass != DNSClass::IN {
            return Flow::Skip;
        }
        let name = &request.name;
        if !self.zone.contains(name) {
            if request.qtype == RecordType::PTR && names::is_reverse(name) {
                return match self.zone.reverse(self.reverse.as_deref(), name, cluster) {
                    Some(answer) => Flow::Answer(answer),
                    None => Flow::Skip,
                };
            }
            return Flow::Skip;
        }
        if !cluster.sync_state().ready(self.zone.needs_pods, false) {
            return Flow::Answer(Answer::rcode(ResponseCode::ServFail, Origin::Kubernetes));
        }
        if matches!(request.qtype, RecordType::AXFR | RecordType::IXFR) {
            return Flow::Answer(Answer::rcode(ResponseCode::Refused, Origin::Kubernetes));
        }
        let ctx = Ctx {
            cluster,
            dns_ips,
            qtype: request.qtype,
        };
        let mut answer = Answer::rcode(ResponseCode::NoError, Origin::Kubernetes);
        answer.authoritative = true;
        let class = names::classify(name.labels(), self.zone.apex_labels);
        let found = self.lookup(ctx, class, &mut answer);
        if found == Found::Records
            && let Some(zone) = &self.resolve_external_names
            && !matches!(request.qtype, RecordType::CNAME | RecordType::ANY)
            && matches!(
                answer.answers.last(),
                Some(Rr {
                    data: Rdata::Cname(_),
                    ..
                })
            )
            && let Some(alias) = external_alias(request, &answer, zone)
        {
            return alias;
        }
        Flow::Answer(self.finish(answer, found, cluster))
    }

    /// Sets the rcode and the negative-answer SOA.
    fn finish<'a>(&'a self, mut answer: Answer<'a>, found: Found, cluster: &Cluster) -> Answer<'a> {
        match found {
            Found::Records => {}
            Found::NoData => answer.authorities.push(self.zone.soa(cluster)),
            Found::NxDomain => {
                answer.rcode = ResponseCode::NXDomain;
                answer.authorities.push(self.zone.soa(cluster));
            }
            Found::ServFail => return Answer::rcode(ResponseCode::ServFail, Origin::Kubernetes),
        }
        answer
    }

    /// Looks the query name (`name`, classified) up, following CNAMEs of ExternalName
    /// Services inside the zone up to [`MAX_CNAME_CHAIN`] links.
    fn lookup<'a>(&'a self, ctx: Ctx<'a>, name: ClusterName<'_>, out: &mut Answer<'a>) -> Found {
        let mut step = self.lookup_name(ctx, name, OutName::Query, out);
        for _ in 0..MAX_CNAME_CHAIN {
            let ServiceFound::Follow(target) = step else {
                break;
            };
            let labels: Vec<&[u8]> = WireLabels(target).collect();
            let class = names::classify(labels.into_iter(), self.zone.apex_labels);
            step = self.lookup_name(ctx, class, OutName::wire(target), out);
        }
        match step {
            ServiceFound::Done(found) => found,
            // A longer chain: the CNAMEs so far (CoreDNS stops there too).
            ServiceFound::Follow(_) => Found::Records,
        }
    }

    /// One name's records, by the kind of name: done, or a CNAME to follow.
    fn lookup_name<'a>(
        &'a self,
        ctx: Ctx<'a>,
        name: ClusterName<'_>,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> ServiceFound<'a> {
        let zone = &self.zone;
        ServiceFound::Done(match name {
            ClusterName::Apex => zone.apex(ctx, owner, out),
            ClusterName::DnsVersion => apex::dns_version(ctx.qtype, owner, out),
            ClusterName::NsName => zone.ns_name(ctx, owner, out),
            ClusterName::EmptyNonTerminal => Found::NoData,
            ClusterName::Namespace { namespace } => {
                if zone.exposed(ctx.cluster, namespace) {
                    Found::NoData
                } else {
                    Found::NxDomain
                }
            }
            ClusterName::PodNamespace { namespace } => zone.pod_namespace(ctx, namespace),
            ClusterName::Service { namespace, service } => {
                return zone.service(ctx, namespace, service, owner, out);
            }
            ClusterName::Endpoint {
                namespace,
                service,
                endpoint,
            } => zone.endpoint(ctx, namespace, service, endpoint, owner, out),
            ClusterName::Srv {
                namespace,
                service,
                port,
                protocol,
            } => zone.srv(ctx, namespace, service, Some((port, protocol)), owner, out),
            ClusterName::Pod { namespace, address } => {
                zone.pod(ctx, namespace, address, owner, out)
            }
            ClusterName::Unknown => Found::NxDomain,
        })
    }
}

/// With `resolveExternalNames`: an answer ending in a CNAME to a name outside the cluster
/// domain `zone` (an ExternalName Service) becomes an alias whose target the whole pipeline
/// resolves ([`super::flow::Upstream::alias`]). Only on this path is the answer encoded
/// and read back (its records are borrowed from the snapshot).
fn external_alias<'a>(
    request: &Request<'_>,
    answer: &Answer<'_>,
    zone: &hickory_proto::rr::Name,
) -> Option<Flow<'a>> {
    let head = crate::wire::writer::to_reply(request, answer)?;
    let target = match &head.answers.last()?.data {
        hickory_proto::rr::RData::CNAME(target) => target.0.to_lowercase(),
        _ => return None,
    };
    if zone.zone_of(&target) {
        return None;
    }
    Some(Flow::Upstream(super::flow::Upstream::alias(head, target)))
}
