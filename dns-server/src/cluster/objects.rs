//! The cut-down forms of Kubernetes objects: only the fields DNS needs.
//!
//! After CoreDNS's `plugin/kubernetes/object` (whose comment warns that every extra field
//! costs memory times the number of objects, and caused OOMs at scale): a watch event is
//! turned into one of these at once and the full object is dropped.
//!
//! | object          | kept                                                                 |
//! |-----------------|----------------------------------------------------------------------|
//! | Service         | kind (cluster IPs by family, headless, ExternalName target), named ports, whether it has a selector |
//! | EndpointSlice   | owning Service, ports, and per *ready* endpoint: IP, hostname, Pod name |
//! | Pod             | its IPs (none once `Succeeded` or `Failed`), namespace, name, labels, `hostNetwork`, whether `Running` (only when the config needs Pods) |
//! | Namespace       | its name                                                             |
//!
//! A Pod in a terminal phase has stopped and its IP is free for the next Pod (a Job's
//! completed Pods stay in the API for a long time): it keeps no IP here, so it neither
//! answers a verified pod record nor identifies a DNS client.
//!
//! Ready follows CoreDNS: an endpoint counts when `conditions.ready` is true or absent.
//! `publishNotReadyAddresses` needs no code here: the EndpointSlice controller then marks
//! every endpoint ready.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use kube::ResourceExt;

use crate::request::QName;
use std::collections::BTreeMap;

/// A Pod as a DNS client: what DNS policies, autopath and tenant rewrites need to know
/// about who is asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodClient {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name (for the audit log).
    pub name: Arc<str>,
    /// Labels (what a policy's pod selector matches).
    pub labels: BTreeMap<String, String>,
    /// Whether the Pod uses the node's network: its IP is the node's, shared with every
    /// other such Pod and the node itself, so it never identifies this Pod.
    pub host_network: bool,
    /// Whether the Pod's phase is `Running`: when two live Pods claim one IP (a Pending
    /// Pod that was given an address still held by one the API has not yet seen stop),
    /// the Running one is the client.
    pub running: bool,
}
pub use crate::wire::answer::DashedIp;

/// The label that names an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The annotation with the time of the change that caused an EndpointSlice update (the
/// start of the DNS programming latency, as CoreDNS measures it).
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The transport protocol of a port (the `_<proto>` label of SRV names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `_tcp`.
    Tcp,
    /// `_udp`.
    Udp,
    /// `_sctp`.
    Sctp,
}

impl Protocol {
    /// From the API's `protocol` field (TCP when absent); `None` for anything else.
    pub fn from_api(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// From an SRV name label without its underscore (`tcp`, `udp`, `sctp`; lower case).
    pub fn from_label(label: &[u8]) -> Option<Self> {
        match label {
            b"tcp" => Some(Self::Tcp),
            b"udp" => Some(Self::Udp),
            b"sctp" => Some(Self::Sctp),
            _ => None,
        }
    }
}

/// One port of a Service or EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// The port's name, lower case; empty for an unnamed port (no SRV record).
    pub name: Box<str>,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub port: u16,
}

impl PortEntry {
    /// Whether this port answers `_<name>._<protocol>`.
    pub fn matches(&self, name: &[u8], protocol: Protocol) -> bool {
        !self.name.is_empty() && self.name.as_bytes() == name && self.protocol == protocol
    }
}

fn port_entry(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<PortEntry> {
    Some(PortEntry {
        name: name.unwrap_or_default().to_ascii_lowercase().into(),
        protocol: Protocol::from_api(protocol)?,
        port: u16::try_from(port?).ok()?,
    })
}

/// How a Service is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP per family: A/AAAA records of the cluster IPs.
    ClusterIp {
        /// IPv4 cluster IPs.
        v4: Box<[Ipv4Addr]>,
        /// IPv6 cluster IPs.
        v6: Box<[Ipv6Addr]>,
    },
    /// `clusterIP: None`: the ready endpoints are the records.
    Headless,
    /// A CNAME to this name (wire form, lower case).
    ExternalName(Box<[u8]>),
    /// An ExternalName whose target is not a host name (e.g. an IP address): CoreDNS answers
    /// NXDOMAIN for these, and so does this server.
    InvalidExternalName,
}

impl ServiceKind {
    /// A ClusterIP kind with these addresses, split by family (order kept).
    pub fn cluster_ip(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(ip) => v4.push(ip),
                IpAddr::V6(ip) => v6.push(ip),
            }
        }
        Self::ClusterIp {
            v4: v4.into(),
            v6: v6.into(),
        }
    }
}

/// What DNS needs to know about one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// How it is answered.
    pub kind: ServiceKind,
    /// Its ports.
    pub ports: Box<[PortEntry]>,
    /// Whether it has a selector (for the programming latency metric's `service_kind`).
    pub has_selector: bool,
}

impl ServiceEntry {
    /// A ClusterIP Service with these cluster IPs and ports.
    pub fn cluster_ip(ips: impl IntoIterator<Item = IpAddr>, ports: Vec<PortEntry>) -> Self {
        Self {
            kind: ServiceKind::cluster_ip(ips),
            ports: ports.into(),
            has_selector: true,
        }
    }

    /// A headless Service with these ports.
    pub fn headless(ports: Vec<PortEntry>) -> Self {
        Self {
            kind: ServiceKind::Headless,
            ports: ports.into(),
            has_selector: true,
        }
    }

    /// Every cluster IP, both families.
    pub fn cluster_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (v4, v6): (&[Ipv4Addr], &[Ipv6Addr]) = match &self.kind {
            ServiceKind::ClusterIp { v4, v6 } => (v4, v6),
            _ => (&[], &[]),
        };
        v4.iter()
            .map(|ip| IpAddr::V4(*ip))
            .chain(v6.iter().map(|ip| IpAddr::V6(*ip)))
    }

    /// The `service_kind` label of `coredns_kubernetes_dns_programming_duration_seconds`.
    pub fn kind_label(&self) -> &'static str {
        match (&self.kind, self.has_selector) {
            (ServiceKind::Headless, true) => "headless_with_selector",
            (ServiceKind::Headless, false) => "headless_without_selector",
            _ => "cluster_ip",
        }
    }
}

/// Namespace and name of an object, if it is namespaced.
fn key<K: ResourceExt>(object: &K) -> Option<(String, String)> {
    Some((object.namespace()?, object.name_any()))
}

/// Parses an ExternalName target into wire form (lower case, trailing dot optional); `None`
/// for an IP address or anything that is not a host name.
pub fn external_name_wire(target: &str) -> Option<Box<[u8]>> {
    if target.parse::<IpAddr>().is_ok() {
        return None;
    }
    let name = QName::from_ascii(target)?;
    if name.label_count() == 0 {
        return None;
    }
    Some(name.wire().into())
}

/// The cut-down form of a Service: namespace, name and entry.
pub fn compact_service(service: &Service) -> Option<(String, String, ServiceEntry)> {
    let (namespace, name) = key(service)?;
    let spec = service.spec.as_ref();
    let ports = spec
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|p: &ServicePort| {
            port_entry(p.name.as_deref(), p.protocol.as_deref(), Some(p.port))
        })
        .collect::<Vec<_>>();
    let has_selector = spec
        .and_then(|spec| spec.selector.as_ref())
        .is_some_and(|selector| !selector.is_empty());
    let kind = if spec.and_then(|spec| spec.type_.as_deref()) == Some("ExternalName") {
        match spec
            .and_then(|spec| spec.external_name.as_deref())
            .and_then(external_name_wire)
        {
            Some(target) => ServiceKind::ExternalName(target),
            None => ServiceKind::InvalidExternalName,
        }
    } else {
        let ips: &[String] = spec
            .and_then(|spec| {
                spec.cluster_ips
                    .as_deref()
                    .filter(|ips| !ips.is_empty())
                    .or(spec.cluster_ip.as_ref().map(std::slice::from_ref))
            })
            .unwrap_or_default();
        if ips.iter().any(|ip| ip == "None") {
            ServiceKind::Headless
        } else {
            ServiceKind::cluster_ip(ips.iter().filter_map(|ip| ip.parse().ok()))
        }
    };
    Some((
        namespace,
        name,
        ServiceEntry {
            kind,
            ports: ports.into(),
            has_selector,
        },
    ))
}

/// One ready endpoint address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointEntry {
    /// Its address.
    pub ip: IpAddr,
    /// The endpoint's `hostname` (a Pod's `hostname` when its `subdomain` names the Service).
    pub hostname: Option<Arc<str>>,
    /// The Pod behind it, when it is a Pod.
    pub pod: Option<Arc<str>>,
}

/// An endpoint's DNS label: its hostname, else (with `endpoint_pod_names`) its Pod's name,
/// else its dashed IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointName<'a> {
    /// A hostname or Pod name.
    Text(&'a str),
    /// The dashed IP.
    Dashed(DashedIp),
}

impl EndpointName<'_> {
    /// The label's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Dashed(dashed) => dashed.as_bytes(),
        }
    }
}

impl EndpointEntry {
    /// The endpoint's DNS label as an answer label (a dashed IP is formatted when written).
    pub fn label(&self, endpoint_pod_names: bool) -> crate::wire::answer::Label<'_> {
        match self.name(endpoint_pod_names) {
            EndpointName::Text(text) => crate::wire::answer::Label::Bytes(text.as_bytes()),
            EndpointName::Dashed(_) => crate::wire::answer::Label::Dashed(self.ip),
        }
    }

    /// The endpoint's DNS label (CoreDNS `endpointHostname`).
    pub fn name(&self, endpoint_pod_names: bool) -> EndpointName<'_> {
        if let Some(hostname) = &self.hostname {
            return EndpointName::Text(hostname);
        }
        if endpoint_pod_names && let Some(pod) = self.pod.as_deref().filter(|pod| usable_label(pod))
        {
            return EndpointName::Text(pod);
        }
        EndpointName::Dashed(DashedIp::new(self.ip))
    }
}

/// Whether a Pod name can stand as one DNS label (at most 63 octets, no dots).
fn usable_label(name: &str) -> bool {
    !name.is_empty() && name.len() < 64 && !name.contains('.')
}

/// The address a dashed label stands for, the inverse of [`DashedIp::new`] as CoreDNS reads
/// pod names: three dashes and no `--` is IPv4, anything else is tried as IPv6.
pub fn parse_dashed(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    let dashes = text.bytes().filter(|b| *b == b'-').count();
    if dashes == 3 && !text.contains("--") {
        return text
            .replace('-', ".")
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4);
    }
    text.replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The ready endpoints and ports of one EndpointSlice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceEntry {
    /// The slice's ports.
    pub ports: Box<[PortEntry]>,
    /// Its ready endpoints, one entry per address.
    pub endpoints: Box<[EndpointEntry]>,
}

/// A compacted EndpointSlice with its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactSlice {
    /// Namespace.
    pub namespace: String,
    /// The slice's own name.
    pub name: String,
    /// The Service it belongs to.
    pub service: String,
    /// Its content.
    pub entry: SliceEntry,
    /// The trigger-time annotation, as unix nanoseconds, when present and valid.
    pub trigger_time: Option<u128>,
}

/// The cut-down form of an EndpointSlice; `None` when it belongs to no Service.
pub fn compact_slice(slice: &EndpointSlice) -> Option<CompactSlice> {
    let (namespace, name) = key(slice)?;
    let service = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
    let ports = slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|p: &EndpointPort| port_entry(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect::<Vec<_>>();
    let fqdn = slice.address_type == "FQDN";
    let endpoints = slice
        .endpoints
        .iter()
        .filter(|_| !fqdn)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| {
            let hostname: Option<Arc<str>> = e
                .hostname
                .as_deref()
                .filter(|h| usable_label(h))
                .map(|h| Arc::from(h.to_ascii_lowercase()));
            let pod: Option<Arc<str>> = e
                .target_ref
                .as_ref()
                .filter(|target| target.kind.as_deref() == Some("Pod"))
                .and_then(|target| target.name.as_deref())
                .map(|name| Arc::from(name.to_ascii_lowercase()));
            e.addresses.iter().filter_map(move |address| {
                Some(EndpointEntry {
                    ip: address.parse().ok()?,
                    hostname: hostname.clone(),
                    pod: pod.clone(),
                })
            })
        })
        .collect::<Vec<_>>();
    let trigger_time = slice
        .annotations()
        .get(TRIGGER_TIME_ANNOTATION)
        .and_then(|time| parse_rfc3339_nanos(time));
    Some(CompactSlice {
        namespace,
        name,
        service,
        entry: SliceEntry {
            ports: ports.into(),
            endpoints: endpoints.into(),
        },
        trigger_time,
    })
}

/// The cut-down form of a Pod: its IPs (none in a terminal phase) and what identifies it
/// as a DNS client.
pub fn compact_pod(pod: &Pod) -> Option<(Box<[IpAddr]>, PodClient)> {
    let (namespace, name) = key(pod)?;
    let status = pod.status.as_ref();
    let phase = status.and_then(|status| status.phase.as_deref());
    let terminal = matches!(phase, Some("Succeeded" | "Failed"));
    let mut ips: Vec<IpAddr> = status
        .filter(|_| !terminal)
        .and_then(|status| status.pod_ips.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && !terminal
        && let Some(ip) = status
            .and_then(|status| status.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    let client = PodClient {
        namespace: namespace.into(),
        name: name.into(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        host_network: pod
            .spec
            .as_ref()
            .and_then(|spec| spec.host_network)
            .unwrap_or(false),
        running: phase == Some("Running"),
    };
    Some((ips.into(), client))
}

/// Parses an RFC 3339 UTC time as Kubernetes writes it (`2024-05-01T10:20:30Z`, optional
/// fraction) into nanoseconds since the unix epoch.
pub fn parse_rfc3339_nanos(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = bytes.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') || bytes.get(10) != Some(&b'T') {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = bytes.get(19..)?;
    let mut nanos = 0u64;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let end = fraction
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(fraction.len());
        for (i, digit) in fraction[..end].iter().take(9).enumerate() {
            nanos += u64::from(digit - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &fraction[end..];
    }
    if rest != b"Z" {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(u128::from(seconds) * 1_000_000_000 + u128::from(nanos))
}

#[cfg(test)]
mod tests;
