//! The cluster zone as every lookup of the Kubernetes stage sees it: its names, TTL and
//! settings ([`Zone`]), what a lookup found ([`Found`]), and the record builders the
//! lookups share (SOA, answer names, addresses, SRV weight).

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::rr::RecordType;
use nameplane_config::{PodsMode, ValidatedConfig};

use crate::cluster::index::Cluster;
use crate::cluster::objects::EndpointEntry;
use crate::request::QName;
use crate::wire::answer::{Label, OutName, Rdata, Rr, Soa, WireLabels};

/// SOA refresh, in seconds (CoreDNS's value).
pub(crate) const SOA_REFRESH: u32 = 7200;
/// SOA retry, in seconds (CoreDNS's value).
pub(crate) const SOA_RETRY: u32 = 1800;
/// SOA expire, in seconds (CoreDNS's value).
pub(crate) const SOA_EXPIRE: u32 = 86400;
/// Largest TTL of the SOA record itself, in seconds (CoreDNS's cap).
pub(crate) const SOA_MAX_TTL: u32 = 300;
/// The Kubernetes DNS schema version this server implements (`dns-version` TXT).
pub(crate) const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` record (CoreDNS's value).
pub(crate) const DNS_VERSION_TTL: u32 = 28800;
/// Most CNAME links followed inside the zone (CoreDNS caps chains at 10).
pub(crate) const MAX_CNAME_CHAIN: u8 = 10;

const SVC: &[u8] = b"svc";

/// What a lookup found for its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Records of the asked type were added.
    Records,
    /// The name exists, without records of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The data needed is not there yet.
    ServFail,
}

/// [`Found::Records`] if `any` record was added, else [`Found::NoData`].
pub(super) fn found(any: bool) -> Found {
    if any { Found::Records } else { Found::NoData }
}

/// What one lookup reads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ctx<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) dns_ips: &'a [IpAddr],
    pub(super) qtype: RecordType,
}

/// The cluster zone and the settings its lookups follow, built from one config.
#[derive(Clone, Debug)]
pub(super) struct Zone {
    /// The cluster domain, in wire form.
    pub(super) apex: Box<[u8]>,
    pub(super) apex_labels: usize,
    mname: Box<[u8]>,
    rname: Box<[u8]>,
    pub(super) ttl: u32,
    pub(super) pods: PodsMode,
    pub(super) endpoint_pod_names: bool,
    namespaces: Option<HashSet<Box<str>>>,
    pub(super) ignore_empty_service: bool,
    /// Whether the config needs the Pod list: only then does an unlisted Pod watch keep
    /// this stage from answering (a Pod watch a newer, waiting config started does not).
    pub(super) needs_pods: bool,
}

impl Zone {
    /// Reads the zone from `config`; `name` encodes a name once, here.
    pub(super) fn new<E>(
        config: &ValidatedConfig,
        name: impl Fn(String) -> Result<Box<[u8]>, E>,
    ) -> Result<Self, E> {
        let domain = config.cluster_domain();
        let apex = name(format!("{domain}."))?;
        let settings = config.kubernetes();
        Ok(Self {
            apex_labels: WireLabels(&apex).count(),
            mname: name(format!("ns.dns.{domain}."))?,
            rname: name(format!("hostmaster.{domain}."))?,
            apex,
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
        })
    }

    /// `ns.dns.<zone>` in wire form.
    pub(super) fn mname(&self) -> &[u8] {
        &self.mname
    }

    pub(super) fn rr<'a>(&self, owner: OutName<'a>, data: Rdata<'a>) -> Rr<'a> {
        Rr {
            owner,
            ttl: self.ttl,
            data,
        }
    }

    /// The zone's SOA record.
    pub(super) fn soa<'a>(&'a self, cluster: &Cluster) -> Rr<'a> {
        self.soa_of(&self.apex, &self.mname, &self.rname, cluster)
    }

    /// The SOA record of zone `apex` (the cluster zone or a reverse zone) with its
    /// `ns.dns.` and `hostmaster.` names: the TTL capped, the serial the last change.
    pub(super) fn soa_of<'a>(
        &self,
        apex: &'a [u8],
        mname: &'a [u8],
        rname: &'a [u8],
        cluster: &Cluster,
    ) -> Rr<'a> {
        Rr {
            owner: OutName::wire(apex),
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
        }
    }

    /// Whether names in `namespace` may be answered: it exists (and matches the namespace
    /// selector, which filters the watch) and the `namespaces` list allows it.
    pub(super) fn exposed(&self, cluster: &Cluster, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.contains(namespace))
            && cluster.namespaces.contains(namespace)
    }

    /// `<svc>.<ns>.svc.<zone>` as an answer name, from names stored in the snapshot.
    pub(super) fn service_name<'a>(&'a self, namespace: &'a str, service: &'a str) -> OutName<'a> {
        OutName::new(
            &self.apex,
            &[
                Label::from(service),
                Label::from(namespace),
                Label::Bytes(SVC),
            ],
        )
    }

    /// `<ep>.<svc>.<ns>.svc.<zone>` as an answer name.
    pub(super) fn endpoint_name<'a>(
        &'a self,
        endpoint: &'a EndpointEntry,
        namespace: &'a str,
        service: &'a str,
    ) -> OutName<'a> {
        OutName::new(
            &self.apex,
            &[
                endpoint.label(self.endpoint_pod_names),
                Label::from(service),
                Label::from(namespace),
                Label::Bytes(SVC),
            ],
        )
    }

    pub(super) fn address<'a>(&self, owner: OutName<'a>, ip: IpAddr) -> Rr<'a> {
        match ip {
            IpAddr::V4(ip) => self.rr(owner, Rdata::A(ip)),
            IpAddr::V6(ip) => self.rr(owner, Rdata::Aaaa(ip)),
        }
    }

    /// Adds an A or AAAA record for each of `ips` of the asked family; returns whether any.
    /// `may_repeat`: `ips` may hold an address twice, and the repeat is left out.
    pub(super) fn addresses<'a>(
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

    /// Whether the Service has no ready endpoint (for `ignoreEmptyService`).
    pub(super) fn without_endpoints(&self, ctx: Ctx<'_>, namespace: &str, service: &str) -> bool {
        ctx.cluster
            .endpoints
            .get(namespace, service)
            .is_none_or(|e| e.no_ready_endpoints())
    }

    /// Whether `name` is at or below the cluster zone.
    pub(super) fn contains(&self, name: &QName) -> bool {
        name.is_in(&self.apex)
    }
}

/// SRV weight for `count` records: `100 / count`, at least 1 (CoreDNS).
pub(super) fn srv_weight(count: usize) -> u16 {
    u16::try_from(100 / count.max(1)).unwrap_or(1).max(1)
}
