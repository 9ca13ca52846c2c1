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
//! Policies see the target like every answer name. Chains inside the zone are followed up
//! to [`MAX_CNAME_CHAIN`] links.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};
use nameplane_config::{PodsMode, ValidatedConfig};

use super::flow::{BuildError, Flow};
use crate::cluster::index::Cluster;
use crate::cluster::names::{self, ClusterName};
use crate::cluster::objects::{self, EndpointEntry, ServiceKind};
use crate::request::{QName, Request};
use crate::wire::answer::{Answer, Label, Origin, OutName, Rdata, Rr, Soa, WireLabels};

/// SOA refresh, in seconds (CoreDNS's value).
pub const SOA_REFRESH: u32 = 7200;
/// SOA retry, in seconds (CoreDNS's value).
pub const SOA_RETRY: u32 = 1800;
/// SOA expire, in seconds (CoreDNS's value).
pub const SOA_EXPIRE: u32 = 86400;
/// Largest TTL of the SOA record itself, in seconds (CoreDNS's cap).
pub const SOA_MAX_TTL: u32 = 300;
/// The Kubernetes DNS schema version this server implements (`dns-version` TXT).
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` record (CoreDNS's value).
pub const DNS_VERSION_TTL: u32 = 28800;
/// Most CNAME links followed inside the zone (CoreDNS caps chains at 10).
pub const MAX_CNAME_CHAIN: u8 = 10;

const SVC: &[u8] = b"svc";

/// What a lookup found for its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// Records of the asked type were added.
    Records,
    /// The name exists, without records of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The data needed is not there yet.
    ServFail,
}

fn found(any: bool) -> Found {
    if any { Found::Records } else { Found::NoData }
}

/// The Kubernetes stage, built from one config.
#[derive(Clone, Debug)]
pub struct KubernetesStage {
    zone: Box<[u8]>,
    zone_labels: usize,
    mname: Box<[u8]>,
    rname: Box<[u8]>,
    ttl: u32,
    pods: PodsMode,
    endpoint_pod_names: bool,
    namespaces: Option<HashSet<Box<str>>>,
    ignore_empty_service: bool,
    /// Whether the config needs the Pod list: only then does an unlisted Pod watch keep
    /// this stage from answering (a Pod watch a newer, waiting config started does not).
    needs_pods: bool,
    /// `resolveExternalNames`: the zone as a hickory name, to tell targets outside it.
    resolve_external_names: Option<hickory_proto::rr::Name>,
    /// Without `reverseFallthrough`: the reverse zones this stage answers NXDOMAIN for, and
    /// the names below them that belong to a zone or a stub domain instead.
    reverse: Option<Box<ReverseZones>>,
}

/// A reverse zone's name (wire form) and its SOA's `ns.dns.` and `hostmaster.` names.
type ReverseSoa = (&'static [u8], Box<[u8]>, Box<[u8]>);

/// The reverse zones (`in-addr.arpa`, `ip6.arpa`) when the stage is authoritative for them
/// (CoreDNS `kubernetes cluster.local in-addr.arpa ip6.arpa` without `fallthrough`).
#[derive(Clone, Debug)]
struct ReverseZones {
    /// Per zone, its name, and the `ns.dns.` and `hostmaster.` names of its SOA.
    zones: [ReverseSoa; 2],
    /// Zone apexes and stub domains (not `.`): names at or below them pass on.
    elsewhere: Vec<Box<[u8]>>,
}

/// What one lookup reads.
#[derive(Clone, Copy, Debug)]
struct Ctx<'a> {
    cluster: &'a Cluster,
    dns_ips: &'a [IpAddr],
    qtype: RecordType,
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
        let zone = name(format!("{domain}."))?;
        let settings = config.kubernetes();
        Ok(Self {
            zone_labels: WireLabels(&zone).count(),
            mname: name(format!("ns.dns.{domain}."))?,
            rname: name(format!("hostmaster.{domain}."))?,
            zone,
            ttl: settings.ttl_seconds,
            pods: settings.pods,
            endpoint_pod_names: settings.endpoint_pod_names,
            namespaces: (!settings.namespaces.is_empty()).then(|| {
                settings
                    .namespaces
                    .iter()
                    .map(|ns| Box::from(ns.as_str()))
                    .collect()
            }),
            ignore_empty_service: settings.ignore_empty_service,
            needs_pods: config.needs_pods(),
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
        name.is_in(&self.zone).then(|| {
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
        if !name.is_in(&self.zone) {
            if request.qtype == RecordType::PTR && names::is_reverse(name) {
                return self.reverse(name, cluster);
            }
            return Flow::Skip;
        }
        if !cluster.sync_state().ready(self.needs_pods, false) {
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
        let class = names::classify(name.labels(), self.zone_labels);
        let found = self.lookup(ctx, class, OutName::Query, &mut answer, 0);
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
            Found::NoData => answer.authorities.push(self.soa(cluster)),
            Found::NxDomain => {
                answer.rcode = ResponseCode::NXDomain;
                answer.authorities.push(self.soa(cluster));
            }
            Found::ServFail => return Answer::rcode(ResponseCode::ServFail, Origin::Kubernetes),
        }
        answer
    }

    fn rr<'a>(&self, owner: OutName<'a>, data: Rdata<'a>) -> Rr<'a> {
        Rr {
            owner,
            ttl: self.ttl,
            data,
        }
    }

    fn soa<'a>(&'a self, cluster: &Cluster) -> Rr<'a> {
        Rr {
            owner: OutName::wire(&self.zone),
            ttl: self.ttl.min(SOA_MAX_TTL),
            data: Rdata::Soa(Soa {
                mname: &self.mname,
                rname: &self.rname,
                serial: cluster.serial(),
                refresh: SOA_REFRESH,
                retry: SOA_RETRY,
                expire: SOA_EXPIRE,
                minimum: self.ttl,
            }),
        }
    }

    /// Whether names in `namespace` may be answered: it exists (and matches the namespace
    /// selector, which filters the watch) and the `namespaces` list allows it.
    fn exposed(&self, cluster: &Cluster, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.contains(namespace))
            && cluster.namespaces.contains(namespace)
    }

    /// `<svc>.<ns>.svc.<zone>` as an answer name, from names stored in the snapshot.
    fn service_name<'a>(&'a self, namespace: &'a str, service: &'a str) -> OutName<'a> {
        OutName::new(
            &self.zone,
            &[
                Label::from(service),
                Label::from(namespace),
                Label::Bytes(SVC),
            ],
        )
    }

    /// `<ep>.<svc>.<ns>.svc.<zone>` as an answer name.
    fn endpoint_name<'a>(
        &'a self,
        endpoint: &'a EndpointEntry,
        namespace: &'a str,
        service: &'a str,
    ) -> OutName<'a> {
        OutName::new(
            &self.zone,
            &[
                endpoint.label(self.endpoint_pod_names),
                Label::from(service),
                Label::from(namespace),
                Label::Bytes(SVC),
            ],
        )
    }

    fn address<'a>(&self, owner: OutName<'a>, ip: IpAddr) -> Rr<'a> {
        match ip {
            IpAddr::V4(ip) => self.rr(owner, Rdata::A(ip)),
            IpAddr::V6(ip) => self.rr(owner, Rdata::Aaaa(ip)),
        }
    }

    /// Adds an A or AAAA record for each of `ips` of the asked family; returns whether any.
    /// `may_repeat`: `ips` may hold an address twice, and the repeat is left out.
    fn addresses<'a>(
        &self,
        qtype: RecordType,
        owner: OutName<'a>,
        ips: impl Iterator<Item = IpAddr>,
        may_repeat: bool,
        out: &mut Vec<Rr<'a>>,
    ) -> bool {
        let before = out.len();
        for ip in ips {
            let wanted = match ip {
                IpAddr::V4(_) => qtype == RecordType::A,
                IpAddr::V6(_) => qtype == RecordType::AAAA,
            };
            if !wanted {
                continue;
            }
            let rr = self.address(owner, ip);
            // Every record here has the same owner: comparing the data is enough (and the
            // whole comparison is skipped unless a repeat is possible: it is quadratic).
            if may_repeat && out[before..].iter().any(|seen| seen.data == rr.data) {
                continue;
            }
            out.push(rr);
        }
        out.len() > before
    }

    fn lookup<'a>(
        &'a self,
        ctx: Ctx<'a>,
        name: ClusterName<'_>,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
        depth: u8,
    ) -> Found {
        let qtype = ctx.qtype;
        match name {
            ClusterName::Apex => match qtype {
                RecordType::SOA => {
                    let mut soa = self.soa(ctx.cluster);
                    soa.owner = owner;
                    out.answers.push(soa);
                    Found::Records
                }
                RecordType::NS => {
                    let ns = OutName::wire(&self.mname);
                    out.answers.push(self.rr(owner, Rdata::Ns(ns)));
                    for ip in self.dns_addresses(ctx) {
                        out.additionals.push(self.address(ns, ip));
                    }
                    Found::Records
                }
                _ => Found::NoData,
            },
            ClusterName::DnsVersion => {
                if qtype != RecordType::TXT {
                    return Found::NoData;
                }
                out.answers.push(Rr {
                    owner,
                    ttl: DNS_VERSION_TTL,
                    data: Rdata::Txt(DNS_SCHEMA_VERSION),
                });
                Found::Records
            }
            ClusterName::NsName => {
                let ips = self.dns_addresses(ctx);
                found(self.addresses(qtype, owner, ips.into_iter(), true, &mut out.answers))
            }
            ClusterName::EmptyNonTerminal => Found::NoData,
            ClusterName::Namespace { namespace } => {
                if self.exposed(ctx.cluster, namespace) {
                    Found::NoData
                } else {
                    Found::NxDomain
                }
            }
            ClusterName::PodNamespace { namespace } => {
                if self.pods != PodsMode::Disabled && self.exposed(ctx.cluster, namespace) {
                    Found::NoData
                } else {
                    Found::NxDomain
                }
            }
            ClusterName::Service { namespace, service } => {
                self.service(ctx, namespace, service, owner, out, depth)
            }
            ClusterName::Endpoint {
                namespace,
                service,
                endpoint,
            } => self.endpoint(ctx, namespace, service, endpoint, owner, out),
            ClusterName::Srv {
                namespace,
                service,
                port,
                protocol,
            } => self.srv(ctx, namespace, service, Some((port, protocol)), owner, out),
            ClusterName::Pod { namespace, address } => {
                self.pod(ctx, namespace, address, owner, out)
            }
            ClusterName::Unknown => Found::NxDomain,
        }
    }

    fn service<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        service: &str,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
        depth: u8,
    ) -> Found {
        if !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some((ns, svc, entry)) = ctx.cluster.services.entry(namespace, service) else {
            return Found::NxDomain;
        };
        match &entry.kind {
            ServiceKind::InvalidExternalName => Found::NxDomain,
            ServiceKind::ExternalName(target) => {
                out.answers
                    .push(self.rr(owner, Rdata::Cname(OutName::wire(target))));
                if ctx.qtype == RecordType::CNAME || depth >= MAX_CNAME_CHAIN {
                    return Found::Records;
                }
                let Some(target_name) = QName::from_wire(target) else {
                    return Found::Records;
                };
                if !target_name.is_in(&self.zone) {
                    // Outside the cluster domain: the CNAME alone (no forwarding yet).
                    return Found::Records;
                }
                let labels: Vec<&[u8]> = WireLabels(target).collect();
                let class = names::classify(labels.into_iter(), self.zone_labels);
                self.lookup(ctx, class, OutName::wire(target), out, depth + 1)
            }
            ServiceKind::ClusterIp { .. } => {
                if self.ignore_empty_service && self.without_endpoints(ctx, ns, svc) {
                    return Found::NxDomain;
                }
                match ctx.qtype {
                    RecordType::A | RecordType::AAAA => found(self.addresses(
                        ctx.qtype,
                        owner,
                        entry.cluster_ips(),
                        false,
                        &mut out.answers,
                    )),
                    RecordType::SRV => self.srv(ctx, namespace, service, None, owner, out),
                    _ => Found::NoData,
                }
            }
            ServiceKind::Headless => {
                let Some(endpoints) = ctx.cluster.endpoints.get(ns, svc) else {
                    return Found::NxDomain;
                };
                if endpoints.no_ready_endpoints() {
                    return Found::NxDomain;
                }
                match ctx.qtype {
                    RecordType::A | RecordType::AAAA => found(self.addresses(
                        ctx.qtype,
                        owner,
                        endpoints.endpoints().map(|(_, e)| e.ip),
                        endpoints.repeats(),
                        &mut out.answers,
                    )),
                    RecordType::SRV => self.srv(ctx, namespace, service, None, owner, out),
                    _ => Found::NoData,
                }
            }
        }
    }

    fn without_endpoints(&self, ctx: Ctx<'_>, namespace: &str, service: &str) -> bool {
        ctx.cluster
            .endpoints
            .get(namespace, service)
            .is_none_or(|e| e.no_ready_endpoints())
    }

    fn endpoint<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        service: &str,
        label: &[u8],
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        if !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some((ns, svc, entry)) = ctx.cluster.services.entry(namespace, service) else {
            return Found::NxDomain;
        };
        if !matches!(
            entry.kind,
            ServiceKind::ClusterIp { .. } | ServiceKind::Headless
        ) {
            return Found::NxDomain;
        }
        let Some(endpoints) = ctx.cluster.endpoints.get(ns, svc) else {
            return Found::NxDomain;
        };
        let mut matching = endpoints
            .endpoints()
            .map(|(_, e)| e)
            .filter(|e| e.name(self.endpoint_pod_names).as_bytes() == label)
            .peekable();
        if matching.peek().is_none() {
            return Found::NxDomain;
        }
        match ctx.qtype {
            RecordType::A | RecordType::AAAA => found(self.addresses(
                ctx.qtype,
                owner,
                matching.map(|e| e.ip),
                endpoints.repeats(),
                &mut out.answers,
            )),
            _ => Found::NoData,
        }
    }

    /// SRV records of a Service: for `_<port>._<proto>` names (`port` given), the matching
    /// named ports; for the Service name itself, every port.
    fn srv<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        service: &str,
        port: Option<(&[u8], objects::Protocol)>,
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        if !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some((ns, svc, entry)) = ctx.cluster.services.entry(namespace, service) else {
            return Found::NxDomain;
        };
        let wanted = |p: &objects::PortEntry| match port {
            Some((name, protocol)) => p.matches(name, protocol),
            None => true,
        };
        match &entry.kind {
            ServiceKind::ExternalName(_) | ServiceKind::InvalidExternalName => Found::NxDomain,
            ServiceKind::ClusterIp { .. } => {
                if self.ignore_empty_service && self.without_endpoints(ctx, ns, svc) {
                    return Found::NxDomain;
                }
                let ports = entry.ports.iter().filter(|p| wanted(p));
                let count = ports.clone().count();
                if count == 0 {
                    return if port.is_some() {
                        Found::NxDomain
                    } else {
                        Found::NoData
                    };
                }
                if ctx.qtype != RecordType::SRV {
                    return Found::NoData;
                }
                let target = self.service_name(ns, svc);
                let weight = srv_weight(count);
                for p in ports {
                    out.answers.push(self.rr(
                        owner,
                        Rdata::Srv {
                            priority: 0,
                            weight,
                            port: p.port,
                            target,
                        },
                    ));
                }
                for ip in entry.cluster_ips() {
                    out.additionals.push(self.address(target, ip));
                }
                Found::Records
            }
            ServiceKind::Headless => {
                let Some(endpoints) = ctx.cluster.endpoints.get(ns, svc) else {
                    return Found::NxDomain;
                };
                let pairs = || {
                    endpoints.endpoints().flat_map(move |(slice, endpoint)| {
                        slice
                            .ports
                            .iter()
                            .filter(move |p| wanted(p))
                            .map(move |p| (endpoint, p.port))
                    })
                };
                if pairs().next().is_none() {
                    return if port.is_none() && !endpoints.no_ready_endpoints() {
                        Found::NoData
                    } else {
                        Found::NxDomain
                    };
                }
                if ctx.qtype != RecordType::SRV {
                    return Found::NoData;
                }
                // One record per endpoint name and port: the same Pod appears in an IPv4
                // and an IPv6 slice under one hostname.
                let mut seen: HashSet<(Label<'a>, u16)> = HashSet::new();
                let distinct: Vec<_> = pairs()
                    .filter(|(e, p)| seen.insert((e.label(self.endpoint_pod_names), *p)))
                    .collect();
                let weight = srv_weight(distinct.len());
                for (endpoint, port) in &distinct {
                    out.answers.push(self.rr(
                        owner,
                        Rdata::Srv {
                            priority: 0,
                            weight,
                            port: *port,
                            target: self.endpoint_name(endpoint, ns, svc),
                        },
                    ));
                }
                let mut addressed = HashSet::new();
                for (endpoint, _) in pairs() {
                    if addressed.insert(endpoint.ip) {
                        out.additionals
                            .push(self.address(self.endpoint_name(endpoint, ns, svc), endpoint.ip));
                    }
                }
                Found::Records
            }
        }
    }

    fn pod<'a>(
        &'a self,
        ctx: Ctx<'a>,
        namespace: &str,
        address: &[u8],
        owner: OutName<'a>,
        out: &mut Answer<'a>,
    ) -> Found {
        if self.pods == PodsMode::Disabled || !self.exposed(ctx.cluster, namespace) {
            return Found::NxDomain;
        }
        let Some(ip) = objects::parse_dashed(address) else {
            return Found::NxDomain;
        };
        if self.pods == PodsMode::Verified {
            match &ctx.cluster.pods {
                Some(pods) if ctx.cluster.sync_state().pods == Some(true) => {
                    if !pods.contains(namespace, &ip) {
                        return Found::NxDomain;
                    }
                }
                // The Pod watch has not listed yet (just enabled by a reload).
                _ => return Found::ServFail,
            }
        }
        found(self.addresses(
            ctx.qtype,
            owner,
            std::iter::once(ip),
            false,
            &mut out.answers,
        ))
    }

    /// The addresses of `ns.dns.<zone>`: the cluster IPs of the Services whose endpoints are
    /// this server's own addresses, else those addresses themselves (CoreDNS `nsAddrs`).
    fn dns_addresses(&self, ctx: Ctx<'_>) -> Vec<IpAddr> {
        let mut ips = Vec::new();
        let mut found_endpoint = false;
        for own in ctx.dns_ips {
            for endpoint in ctx.cluster.endpoints.by_ip(own) {
                found_endpoint = true;
                if let Some(service) = ctx
                    .cluster
                    .services
                    .get(&endpoint.namespace, &endpoint.service)
                {
                    ips.extend(service.cluster_ips());
                }
            }
        }
        if !found_endpoint {
            ips.extend_from_slice(ctx.dns_ips);
        }
        let mut seen = HashSet::new();
        ips.retain(|ip| seen.insert(*ip));
        ips
    }

    /// PTR for a cluster IP (the Service's name) or a ready endpoint (its endpoint names);
    /// anything else passes to the next stage with `reverseFallthrough`, and is NXDOMAIN
    /// without it ([`KubernetesStage::reverse_miss`]).
    fn reverse<'a>(&'a self, name: &QName, cluster: &'a Cluster) -> Flow<'a> {
        let Some(ip) = names::reverse_address(name) else {
            return self.reverse_miss(name, cluster);
        };
        if !cluster.sync_state().ready(self.needs_pods, false) {
            return match self.reverse {
                // Authoritative for the reverse zones: not knowing yet is no NXDOMAIN, and
                // cluster addresses are not asked upstream.
                Some(_) => Flow::Answer(Answer::rcode(ResponseCode::ServFail, Origin::Kubernetes)),
                None => Flow::Skip,
            };
        }
        let mut answer = Answer::rcode(ResponseCode::NoError, Origin::Kubernetes);
        answer.authoritative = true;
        if let Some(service) = cluster
            .services
            .by_ip(&ip)
            .iter()
            .find(|s| self.exposed(cluster, &s.namespace))
        {
            let target = self.service_name(&service.namespace, &service.name);
            answer
                .answers
                .push(self.rr(OutName::Query, Rdata::Ptr(target)));
            return Flow::Answer(answer);
        }
        for endpoint in cluster.endpoints.by_ip(&ip) {
            if self.exposed(cluster, &endpoint.namespace) {
                let target =
                    self.endpoint_name(&endpoint.endpoint, &endpoint.namespace, &endpoint.service);
                let rr = self.rr(OutName::Query, Rdata::Ptr(target));
                if !answer.answers.contains(&rr) {
                    answer.answers.push(rr);
                }
            }
        }
        if answer.answers.is_empty() {
            self.reverse_miss(name, cluster)
        } else {
            Flow::Answer(answer)
        }
    }

    /// A reverse name that is no cluster address: the next stage's (the forwarders') with
    /// `reverseFallthrough` or when a zone or stub domain owns it, else NXDOMAIN with the
    /// reverse zone's SOA, as CoreDNS's *kubernetes* plugin answers for the reverse zones
    /// it is authoritative for.
    fn reverse_miss<'a>(&'a self, name: &QName, cluster: &Cluster) -> Flow<'a> {
        let Some(reverse) = &self.reverse else {
            return Flow::Skip;
        };
        if reverse.elsewhere.iter().any(|domain| name.is_in(domain)) {
            return Flow::Skip;
        }
        let Some((zone, mname, rname)) = reverse.zones.iter().find(|(z, _, _)| name.is_in(z))
        else {
            return Flow::Skip;
        };
        let mut answer = Answer::rcode(ResponseCode::NXDomain, Origin::Kubernetes);
        answer.authoritative = true;
        answer.authorities.push(Rr {
            owner: OutName::wire(zone),
            ttl: self.ttl.min(SOA_MAX_TTL),
            data: Rdata::Soa(Soa {
                mname,
                rname,
                serial: cluster.serial(),
                refresh: SOA_REFRESH,
                retry: SOA_RETRY,
                expire: SOA_EXPIRE,
                minimum: self.ttl,
            }),
        });
        Flow::Answer(answer)
    }
}

impl ReverseZones {
    fn new(
        config: &ValidatedConfig,
        name: impl Fn(String) -> Result<Box<[u8]>, BuildError>,
    ) -> Result<Self, BuildError> {
        let zone = |wire: &'static [u8], text: &str| {
            Ok::<_, BuildError>((
                wire,
                name(format!("ns.dns.{text}."))?,
                name(format!("hostmaster.{text}."))?,
            ))
        };
        let elsewhere = config
            .raw()
            .zones
            .iter()
            .map(|z| z.name.as_str())
            .chain(
                config
                    .raw()
                    .forward
                    .iter()
                    .map(|f| f.domain.as_str())
                    .filter(|d| *d != "."),
            )
            .map(|domain| name(format!("{domain}.")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            zones: [
                zone(names::IN_ADDR_ARPA, "in-addr.arpa")?,
                zone(names::IP6_ARPA, "ip6.arpa")?,
            ],
            elsewhere,
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

/// SRV weight for `count` records: `100 / count`, at least 1 (CoreDNS).
fn srv_weight(count: usize) -> u16 {
    u16::try_from(100 / count.max(1)).unwrap_or(1).max(1)
}
