//! Queries against [`answer`]: bytes in, response decoded with hickory (an independent
//! decoder) and checked. No sockets. One fixture cluster covers every record kind.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nameplane_config::{FORMAT_VERSION, KubernetesConfig, PodsMode, ServerConfig, ValidatedConfig};

use super::*;
use crate::cluster::objects::{
    EndpointEntry, PortEntry, Protocol, ServiceEntry, ServiceKind, SliceEntry,
};
use crate::request::tests::query_bytes;

const SERIAL: u32 = 1_700_000_000;

/// What the tests read of a [`Sent`]: one flat view of whichever variant it is.
#[derive(Debug)]
pub(crate) struct Observed {
    /// A response was written.
    pub replied: bool,
    /// The response code written (FORMERR when nothing was).
    pub rcode: ResponseCode,
    /// Who answered.
    pub origin: Origin,
    /// Whether TC was set.
    pub truncated: bool,
    /// The messages after the first (a zone transfer).
    pub more: Vec<Vec<u8>>,
    /// The query waits on an upstream.
    pub pending: Option<Box<Deferred>>,
    /// Who denied the query.
    pub denied_by: Option<Arc<str>>,
    /// The question name, when every query is logged.
    pub name: Option<QName>,
}

impl From<Sent> for Observed {
    fn from(sent: Sent) -> Self {
        let quiet = Stats::unparsed(ResponseCode::FormErr);
        match sent {
            Sent::Dropped => Self {
                replied: false,
                rcode: quiet.rcode,
                origin: quiet.origin,
                truncated: false,
                more: Vec::new(),
                pending: None,
                denied_by: None,
                name: None,
            },
            Sent::Deferred(deferred) => Self {
                replied: false,
                rcode: ResponseCode::NoError,
                origin: Origin::Forward,
                truncated: false,
                more: Vec::new(),
                pending: Some(deferred),
                denied_by: None,
                name: None,
            },
            Sent::Replied { stats, more, .. } => Self {
                replied: true,
                rcode: stats.rcode,
                origin: stats.origin,
                truncated: stats.truncated,
                more,
                pending: None,
                denied_by: stats.denied_by,
                name: stats.name,
            },
        }
    }
}

/// [`super::answer`], observed as the tests read it.
pub(crate) fn answer(
    packet: &[u8],
    transport: Transport,
    pipeline: Option<&Pipeline>,
    sources: &Sources<'_>,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Observed {
    Observed::from(super::answer(
        packet, transport, pipeline, sources, settings, out,
    ))
}

pub(crate) fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn config_with(edit: impl FnOnce(&mut KubernetesConfig)) -> ValidatedConfig {
    let mut kubernetes = KubernetesConfig {
        cluster_domain: "cluster.local".into(),
        ttl_seconds: 30,
        ..KubernetesConfig::default()
    };
    edit(&mut kubernetes);
    ServerConfig {
        version: FORMAT_VERSION,
        server: "kube-system/cluster-dns".into(),
        kubernetes,
        ..Default::default()
    }
    .validate()
    .expect("valid config")
}

fn pipeline_with(edit: impl FnOnce(&mut KubernetesConfig)) -> Pipeline {
    Pipeline::build(config_with(edit), "hash".into()).expect("builds")
}

fn pipeline() -> Pipeline {
    pipeline_with(|_| {})
}

fn port(name: &str, protocol: Protocol, number: u16) -> PortEntry {
    PortEntry {
        name: name.into(),
        protocol,
        port: number,
    }
}

fn endpoint(address: &str, hostname: Option<&str>, pod: Option<&str>) -> EndpointEntry {
    EndpointEntry {
        ip: ip(address),
        hostname: hostname.map(Arc::from),
        pod: pod.map(Arc::from),
    }
}

fn slice(ports: Vec<PortEntry>, endpoints: Vec<EndpointEntry>) -> SliceEntry {
    SliceEntry {
        ports: ports.into(),
        endpoints: endpoints.into(),
    }
}

fn external(target: &str) -> ServiceEntry {
    ServiceEntry {
        kind: ServiceKind::ExternalName(
            crate::cluster::objects::external_name_wire(target).expect("host name"),
        ),
        ports: Box::new([]),
        has_selector: false,
    }
}

/// The fixture: namespaces `default`, `other` and `quiet` (no Services); Service `gone` in
/// namespace `ghost`, which does not exist.
pub(crate) fn cluster() -> Cluster {
    let mut c = Cluster::new(SERIAL);
    for ns in ["default", "other", "quiet"] {
        c.namespaces.add(ns);
    }
    let http = || port("http", Protocol::Tcp, 80);
    let s = &mut c.services;
    s.upsert(
        "default",
        "web",
        ServiceEntry::cluster_ip(
            [ip("10.96.0.10"), ip("fd00::10")],
            vec![
                http(),
                port("dns", Protocol::Udp, 53),
                port("", Protocol::Tcp, 9090),
            ],
        ),
    );
    s.upsert(
        "default",
        "v4only",
        ServiceEntry::cluster_ip([ip("10.96.0.11")], vec![http()]),
    );
    s.upsert(
        "default",
        "lonely",
        ServiceEntry::cluster_ip([ip("10.96.0.12")], vec![http()]),
    );
    s.upsert("default", "db", ServiceEntry::headless(vec![]));
    s.upsert("default", "empty", ServiceEntry::headless(vec![]));
    s.upsert("default", "portless", ServiceEntry::headless(vec![]));
    s.upsert("default", "wide", ServiceEntry::headless(vec![]));
    s.upsert("default", "ext", external("web.default.svc.cluster.local."));
    s.upsert("default", "ext-out", external("example.com"));
    s.upsert(
        "default",
        "ext-missing",
        external("nope.default.svc.cluster.local"),
    );
    s.upsert(
        "default",
        "loop-a",
        external("loop-b.default.svc.cluster.local"),
    );
    s.upsert(
        "default",
        "loop-b",
        external("loop-a.default.svc.cluster.local"),
    );
    s.upsert(
        "default",
        "bad-ext",
        ServiceEntry {
            kind: ServiceKind::InvalidExternalName,
            ports: Box::new([]),
            has_selector: false,
        },
    );
    s.upsert(
        "other",
        "api",
        ServiceEntry::cluster_ip([ip("10.96.1.1")], vec![http()]),
    );
    s.upsert(
        "ghost",
        "gone",
        ServiceEntry::cluster_ip([ip("10.96.2.2")], vec![http()]),
    );

    let e = &mut c.endpoints;
    e.put_slice(
        "default",
        "web",
        "web-abcde",
        slice(
            vec![port("http", Protocol::Tcp, 8080)],
            vec![endpoint("10.244.0.10", None, Some("web-7d9f"))],
        ),
    );
    e.put_slice(
        "default",
        "db",
        "db-v4",
        slice(
            vec![port("pg", Protocol::Tcp, 5432)],
            vec![
                endpoint("10.244.0.1", Some("db-0"), Some("db-0")),
                endpoint("10.244.0.2", None, Some("pod-b")),
            ],
        ),
    );
    e.put_slice(
        "default",
        "db",
        "db-v6",
        slice(
            vec![port("pg", Protocol::Tcp, 5432)],
            vec![endpoint("fd00::1", Some("db-0"), Some("db-0"))],
        ),
    );
    e.put_slice(
        "default",
        "empty",
        "empty-1",
        slice(vec![port("pg", Protocol::Tcp, 5432)], vec![]),
    );
    e.put_slice(
        "default",
        "portless",
        "portless-1",
        slice(vec![], vec![endpoint("10.244.0.30", None, None)]),
    );
    e.put_slice(
        "default",
        "wide",
        "wide-1",
        slice(
            vec![],
            (0..100)
                .map(|i| endpoint(&format!("10.97.0.{i}"), None, None))
                .collect(),
        ),
    );
    e.put_slice(
        "other",
        "api",
        "api-1",
        slice(vec![http()], vec![endpoint("10.244.1.1", None, None)]),
    );
    e.put_slice(
        "ghost",
        "gone",
        "gone-1",
        slice(vec![http()], vec![endpoint("10.244.2.2", None, None)]),
    );
    c.set_pods_watched(true);
    if let Some(pods) = c.pods.as_mut() {
        let pod = std::sync::Arc::new(crate::cluster::index::PodClient {
            namespace: "default".into(),
            name: "p".into(),
            ..Default::default()
        });
        pods.replace(None, Some((&[ip("10.244.0.5")], &pod)));
    }
    c.set_synced(true);
    c
}

struct Fixture {
    pipeline: Pipeline,
    cluster: Cluster,
    settings: Settings,
}

impl Fixture {
    fn new() -> Self {
        Self {
            pipeline: pipeline(),
            cluster: cluster(),
            settings: Settings::default(),
        }
    }

    fn with(edit: impl FnOnce(&mut KubernetesConfig)) -> Self {
        Self {
            pipeline: pipeline_with(edit),
            ..Self::new()
        }
    }

    fn raw(&self, bytes: &[u8], transport: Transport) -> (Observed, Vec<u8>) {
        let mut out = Vec::new();
        let outcome = answer(
            bytes,
            transport,
            Some(&self.pipeline),
            &Sources {
                cluster: &self.cluster,
                client: test_client(),
                metrics: &test_metrics(),
            },
            &self.settings,
            &mut out,
        );
        (outcome, out)
    }

    fn over(&self, bytes: &[u8], transport: Transport) -> Message {
        let (outcome, out) = self.raw(bytes, transport);
        assert!(outcome.replied);
        let message = Message::from_vec(&out).expect("response decodes");
        assert_eq!(message.metadata.response_code, outcome.rcode);
        message
    }

    fn ask(&self, name: &str, qtype: RecordType) -> Message {
        let udp = self.over(&query_bytes(name, qtype, Some(4096)), Transport::Udp);
        let tcp = self.over(&query_bytes(name, qtype, Some(4096)), Transport::Tcp);
        assert_eq!(
            render(&udp),
            render(&tcp),
            "{name} {qtype}: UDP and TCP agree below the UDP limit"
        );
        udp
    }
}

/// The records of a section as `name ttl TYPE data` lines, sorted.
pub(crate) fn lines(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name.to_ascii().to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            )
        })
        .collect();
    out.sort();
    out
}

fn render(message: &Message) -> String {
    format!(
        "{} aa={} tc={}\n{:?}\n{:?}\n{:?}",
        message.metadata.response_code,
        message.metadata.authoritative,
        message.metadata.truncation,
        lines(&message.answers),
        lines(&message.authorities),
        lines(&message.additionals)
    )
}

fn assert_negative(message: &Message, rcode: ResponseCode, what: &str) {
    assert_eq!(message.metadata.response_code, rcode, "{what}\n{message}");
    assert!(message.metadata.authoritative, "{what}");
    assert!(
        message.answers.is_empty(),
        "{what}: {:?}",
        lines(&message.answers)
    );
    assert_eq!(message.authorities.len(), 1, "{what}");
    let soa = &message.authorities[0];
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(soa.ttl, 30);
    let RData::SOA(data) = &soa.data else {
        panic!("{what}: not a SOA: {soa}");
    };
    assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(data.rname.to_ascii(), "hostmaster.cluster.local.");
    assert_eq!(data.serial, SERIAL);
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (7200, 1800, 86400, 30)
    );
}

fn answers(message: &Message) -> Vec<String> {
    assert_eq!(
        message.metadata.response_code,
        ResponseCode::NoError,
        "{message}"
    );
    assert!(message.metadata.authoritative);
    lines(&message.answers)
}

#[test]
fn dns_version_txt() {
    let f = Fixture::new();
    let message = f.ask("dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(
        answers(&message),
        ["dns-version.cluster.local. 28800 TXT 1.1.0"]
    );
    assert_negative(
        &f.ask("dns-version.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "dns-version A",
    );
}

#[test]
fn cluster_ip_a_and_aaaa_dual_stack() {
    let f = Fixture::new();
    assert_eq!(
        answers(&f.ask("web.default.svc.cluster.local.", RecordType::A)),
        ["web.default.svc.cluster.local. 30 A 10.96.0.10"]
    );
    assert_eq!(
        answers(&f.ask("web.default.svc.cluster.local.", RecordType::AAAA)),
        ["web.default.svc.cluster.local. 30 AAAA fd00::10"]
    );
    assert_negative(
        &f.ask("v4only.default.svc.cluster.local.", RecordType::AAAA),
        ResponseCode::NoError,
        "v4-only Service, AAAA",
    );
}

#[test]
fn srv_for_named_ports_of_a_cluster_ip_service() {
    let f = Fixture::new();
    let message = f.ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        answers(&message),
        [
            "_http._tcp.web.default.svc.cluster.local. 30 SRV 0 100 80 web.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        lines(&message.additionals),
        [
            "web.default.svc.cluster.local. 30 A 10.96.0.10",
            "web.default.svc.cluster.local. 30 AAAA fd00::10"
        ]
    );
    assert_eq!(
        answers(&f.ask("_dns._udp.web.default.svc.cluster.local.", RecordType::SRV)),
        ["_dns._udp.web.default.svc.cluster.local. 30 SRV 0 100 53 web.default.svc.cluster.local."]
    );
    // The Service name itself: every port, unnamed ones too (CoreDNS).
    assert_eq!(
        answers(&f.ask("web.default.svc.cluster.local.", RecordType::SRV)),
        [
            "web.default.svc.cluster.local. 30 SRV 0 33 53 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 30 SRV 0 33 80 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 30 SRV 0 33 9090 web.default.svc.cluster.local.",
        ]
    );
    for name in [
        "_dns._tcp.web.default.svc.cluster.local.",
        "_nope._tcp.web.default.svc.cluster.local.",
        "_http._tcp.nope.default.svc.cluster.local.",
        "_http._tcp.ext.default.svc.cluster.local.",
    ] {
        assert_negative(&f.ask(name, RecordType::SRV), ResponseCode::NXDomain, name);
    }
    assert_negative(
        &f.ask("_http._tcp.web.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "SRV name, A",
    );
}

#[test]
fn headless_records_per_ready_endpoint() {
    let f = Fixture::new();
    assert_eq!(
        answers(&f.ask("db.default.svc.cluster.local.", RecordType::A)),
        [
            "db.default.svc.cluster.local. 30 A 10.244.0.1",
            "db.default.svc.cluster.local. 30 A 10.244.0.2"
        ]
    );
    assert_eq!(
        answers(&f.ask("db.default.svc.cluster.local.", RecordType::AAAA)),
        ["db.default.svc.cluster.local. 30 AAAA fd00::1"]
    );
    let srv = f.ask("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        answers(&srv),
        [
            "_pg._tcp.db.default.svc.cluster.local. 30 SRV 0 50 5432 10-244-0-2.db.default.svc.cluster.local.",
            "_pg._tcp.db.default.svc.cluster.local. 30 SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
        ],
        "one SRV per endpoint name: db-0 is in both the IPv4 and the IPv6 slice"
    );
    assert_eq!(
        lines(&srv.additionals),
        [
            "10-244-0-2.db.default.svc.cluster.local. 30 A 10.244.0.2",
            "db-0.db.default.svc.cluster.local. 30 A 10.244.0.1",
            "db-0.db.default.svc.cluster.local. 30 AAAA fd00::1",
        ]
    );
    // Without ports, the name still has addresses but no SRV.
    assert_eq!(
        answers(&f.ask("portless.default.svc.cluster.local.", RecordType::A)),
        ["portless.default.svc.cluster.local. 30 A 10.244.0.30"]
    );
    assert_negative(
        &f.ask("portless.default.svc.cluster.local.", RecordType::SRV),
        ResponseCode::NoError,
        "headless without ports, SRV",
    );
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    let f = Fixture::new();
    for qtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::TXT,
    ] {
        assert_negative(
            &f.ask("empty.default.svc.cluster.local.", qtype),
            ResponseCode::NXDomain,
            "empty headless",
        );
    }
    assert_negative(
        &f.ask("_pg._tcp.empty.default.svc.cluster.local.", RecordType::SRV),
        ResponseCode::NXDomain,
        "empty headless SRV",
    );
}

#[test]
fn endpoint_names_hostname_dashed_ip_and_pod_name() {
    let f = Fixture::new();
    assert_eq!(
        answers(&f.ask("db-0.db.default.svc.cluster.local.", RecordType::A)),
        ["db-0.db.default.svc.cluster.local. 30 A 10.244.0.1"]
    );
    assert_eq!(
        answers(&f.ask("db-0.db.default.svc.cluster.local.", RecordType::AAAA)),
        ["db-0.db.default.svc.cluster.local. 30 AAAA fd00::1"]
    );
    assert_eq!(
        answers(&f.ask("10-244-0-2.db.default.svc.cluster.local.", RecordType::A)),
        ["10-244-0-2.db.default.svc.cluster.local. 30 A 10.244.0.2"]
    );
    // Endpoint names work for ClusterIP Services too (CoreDNS).
    assert_eq!(
        answers(&f.ask("10-244-0-10.web.default.svc.cluster.local.", RecordType::A)),
        ["10-244-0-10.web.default.svc.cluster.local. 30 A 10.244.0.10"]
    );
    for name in [
        "pod-b.db.default.svc.cluster.local.",
        "db-1.db.default.svc.cluster.local.",
        "db-0.nope.default.svc.cluster.local.",
        "x.ext.default.svc.cluster.local.",
    ] {
        assert_negative(&f.ask(name, RecordType::A), ResponseCode::NXDomain, name);
    }
    assert_negative(
        &f.ask("db-0.db.default.svc.cluster.local.", RecordType::TXT),
        ResponseCode::NoError,
        "endpoint, TXT",
    );

    let f = Fixture::with(|k| k.endpoint_pod_names = true);
    assert_eq!(
        answers(&f.ask("pod-b.db.default.svc.cluster.local.", RecordType::A)),
        ["pod-b.db.default.svc.cluster.local. 30 A 10.244.0.2"]
    );
    assert_negative(
        &f.ask("10-244-0-2.db.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
        "dashed name replaced by the pod name",
    );
    let srv = f.ask("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    assert!(
        answers(&srv)
            .iter()
            .any(|l| l.ends_with(" pod-b.db.default.svc.cluster.local.")),
        "{srv}"
    );
}

#[test]
fn external_name_is_a_cname_chased_inside_the_zone() {
    let f = Fixture::new();
    let message = f.ask("ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        answers(&message),
        [
            "ext.default.svc.cluster.local. 30 CNAME web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 30 A 10.96.0.10",
        ]
    );
    assert_eq!(
        answers(&f.ask("ext.default.svc.cluster.local.", RecordType::CNAME)),
        ["ext.default.svc.cluster.local. 30 CNAME web.default.svc.cluster.local."]
    );
    // Outside the zone: the CNAME only (no forwarding yet).
    assert_eq!(
        answers(&f.ask("ext-out.default.svc.cluster.local.", RecordType::A)),
        ["ext-out.default.svc.cluster.local. 30 CNAME example.com."]
    );
    // The chain ends at a name that does not exist: NXDOMAIN, with the CNAME.
    let missing = f.ask("ext-missing.default.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(lines(&missing.answers).len(), 1);
    assert_eq!(missing.authorities.len(), 1);
    // A loop stops after MAX_CNAME_CHAIN links.
    let looped = f.ask("loop-a.default.svc.cluster.local.", RecordType::A);
    assert_eq!(looped.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        looped.answers.len(),
        usize::from(kubernetes::MAX_CNAME_CHAIN) + 1
    );
    assert_negative(
        &f.ask("bad-ext.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
        "ExternalName that is an IP",
    );
}

fn reverse_v6(ip: Ipv6Addr) -> String {
    let hex: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
    let mut labels: Vec<String> = hex.chars().rev().map(String::from).collect();
    labels.push("ip6.arpa.".into());
    labels.join(".")
}

#[test]
fn ptr_for_cluster_ips_and_endpoints() {
    let f = Fixture::new();
    assert_eq!(
        answers(&f.ask("10.0.96.10.in-addr.arpa.", RecordType::PTR)),
        ["10.0.96.10.in-addr.arpa. 30 PTR web.default.svc.cluster.local."]
    );
    let v6 = reverse_v6("fd00::10".parse().expect("ip"));
    assert_eq!(
        answers(&f.ask(&v6, RecordType::PTR)),
        [format!("{v6} 30 PTR web.default.svc.cluster.local.")]
    );
    assert_eq!(
        answers(&f.ask("1.0.244.10.in-addr.arpa.", RecordType::PTR)),
        ["1.0.244.10.in-addr.arpa. 30 PTR db-0.db.default.svc.cluster.local."]
    );
    assert_eq!(
        answers(&f.ask("2.0.244.10.in-addr.arpa.", RecordType::PTR)),
        ["2.0.244.10.in-addr.arpa. 30 PTR 10-244-0-2.db.default.svc.cluster.local."]
    );
    let v6 = reverse_v6("fd00::1".parse().expect("ip"));
    assert_eq!(
        answers(&f.ask(&v6, RecordType::PTR)),
        [format!("{v6} 30 PTR db-0.db.default.svc.cluster.local.")]
    );
    // Other query types fall through (REFUSED here: no forwarder).
    let message = f.ask("10.0.96.10.in-addr.arpa.", RecordType::A);
    assert_eq!(message.metadata.response_code, ResponseCode::Refused);
    assert!(!message.metadata.authoritative);
}

/// PTR of addresses the cluster does not have: NXDOMAIN with the reverse zone's SOA (CoreDNS
/// `kubernetes cluster.local in-addr.arpa ip6.arpa`), or, with `reverseFallthrough`, the
/// next stage's (REFUSED here, without a forwarder; forwarded in tests/forward.rs).
#[test]
fn ptr_for_other_addresses_is_nxdomain_unless_it_falls_through() {
    let misses = [
        "9.9.9.9.in-addr.arpa.",
        "96.10.in-addr.arpa.",
        "2.2.96.10.in-addr.arpa.",
        "2.2.244.10.in-addr.arpa.",
        "1.1.96.10.in-addr.arpa.", // a Service in an unexposed namespace: hidden
    ];
    let f = Fixture::with(|k| k.namespaces = vec!["default".into()]);
    for name in misses {
        let message = f.ask(name, RecordType::PTR);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert!(message.metadata.authoritative, "{name}");
        assert_eq!(
            lines(&message.authorities),
            [format!(
                "in-addr.arpa. 30 SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. {SERIAL} 7200 1800 86400 30"
            )],
            "{name}"
        );
    }
    let v6 = reverse_v6("2001:db8::1".parse().expect("ip"));
    let message = f.ask(&v6, RecordType::PTR);
    assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        lines(&message.authorities)[0]
            .split(' ')
            .take(4)
            .collect::<Vec<_>>(),
        ["ip6.arpa.", "30", "SOA", "ns.dns.ip6.arpa."]
    );

    let through = Fixture::with(|k| {
        k.namespaces = vec!["default".into()];
        k.reverse_fallthrough = true;
    });
    for name in misses.iter().copied().chain([v6.as_str()]) {
        let message = through.ask(name, RecordType::PTR);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
    }
    // Cluster addresses answer either way.
    assert_eq!(
        answers(&through.ask("10.0.96.10.in-addr.arpa.", RecordType::PTR)),
        ["10.0.96.10.in-addr.arpa. 30 PTR web.default.svc.cluster.local."]
    );
}

#[test]
fn names_match_case_insensitively_and_keep_the_query_case() {
    let f = Fixture::new();
    let message = f.ask("WeB.DeFault.SVC.Cluster.LOCAL.", RecordType::A);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        message.answers[0].name.to_ascii(),
        "WeB.DeFault.SVC.Cluster.LOCAL."
    );
    assert_eq!(
        message.queries[0].name().to_ascii(),
        "WeB.DeFault.SVC.Cluster.LOCAL."
    );
    for (name, qtype) in [
        ("_HTTP._TCP.Web.Default.Svc.Cluster.Local.", RecordType::SRV),
        ("DB-0.DB.default.svc.cluster.local.", RecordType::A),
        ("10.0.96.10.IN-ADDR.ARPA.", RecordType::PTR),
        ("Dns-Version.Cluster.Local.", RecordType::TXT),
    ] {
        assert!(!f.ask(name, qtype).answers.is_empty(), "{name}");
    }
}

#[test]
fn nodata_for_existing_names_without_that_type() {
    let f = Fixture::new();
    for (name, qtype) in [
        ("web.default.svc.cluster.local.", RecordType::TXT),
        ("web.default.svc.cluster.local.", RecordType::MX),
        ("web.default.svc.cluster.local.", RecordType::ANY),
        ("db.default.svc.cluster.local.", RecordType::TXT),
        ("default.svc.cluster.local.", RecordType::A),
        ("quiet.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("pod.cluster.local.", RecordType::A),
        ("dns.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
    ] {
        assert_negative(
            &f.ask(name, qtype),
            ResponseCode::NoError,
            &format!("{name} {qtype}"),
        );
    }
}

#[test]
fn nxdomain_for_unknown_names_and_unexposed_namespaces() {
    let f = Fixture::new();
    for name in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "gone.ghost.svc.cluster.local.",
        "ghost.svc.cluster.local.",
        "a.b.web.default.svc.cluster.local.",
        "other.cluster.local.",
        "10-244-0-5.default.pod.cluster.local.",
        "default.pod.cluster.local.",
    ] {
        assert_negative(&f.ask(name, RecordType::A), ResponseCode::NXDomain, name);
    }

    // The namespaces list hides every other namespace, even existing ones.
    let f = Fixture::with(|k| k.namespaces = vec!["default".into()]);
    assert!(
        !f.ask("web.default.svc.cluster.local.", RecordType::A)
            .answers
            .is_empty()
    );
    for name in ["api.other.svc.cluster.local.", "other.svc.cluster.local."] {
        assert_negative(&f.ask(name, RecordType::A), ResponseCode::NXDomain, name);
    }
    assert_eq!(
        f.ask("1.1.96.10.in-addr.arpa.", RecordType::PTR)
            .metadata
            .response_code,
        ResponseCode::NXDomain,
        "no PTR into hidden namespaces"
    );
}

#[test]
fn negative_ttl_follows_the_ttl_and_the_soa_ttl_is_capped() {
    let f = Fixture::with(|k| k.ttl_seconds = 600);
    let message = f.ask("nope.default.svc.cluster.local.", RecordType::A);
    let soa = &message.authorities[0];
    assert_eq!(soa.ttl, 300);
    let RData::SOA(data) = &soa.data else {
        panic!("not a SOA: {soa}");
    };
    assert_eq!(data.minimum, 600);
    let f = Fixture::with(|k| k.ttl_seconds = 0);
    let message = f.ask("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(message.answers[0].ttl, 0, "ttl 0: no caching");
}

#[test]
fn apex_soa_and_ns() {
    let mut f = Fixture::new();
    let soa = f.ask("cluster.local.", RecordType::SOA);
    assert_eq!(
        answers(&soa),
        [format!(
            "cluster.local. 30 SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 30"
        )]
    );
    // This server is endpoint 10.244.0.10 of Service web: NS glue is web's cluster IPs.
    f.settings.dns_ips = vec![ip("10.244.0.10")];
    let ns = f.ask("cluster.local.", RecordType::NS);
    assert_eq!(answers(&ns), ["cluster.local. 30 NS ns.dns.cluster.local."]);
    assert_eq!(
        lines(&ns.additionals),
        [
            "ns.dns.cluster.local. 30 A 10.96.0.10",
            "ns.dns.cluster.local. 30 AAAA fd00::10"
        ]
    );
    assert_eq!(
        answers(&f.ask("ns.dns.cluster.local.", RecordType::A)),
        ["ns.dns.cluster.local. 30 A 10.96.0.10"]
    );
    // Not behind a Service: its own addresses.
    f.settings.dns_ips = vec![ip("192.0.2.53")];
    assert_eq!(
        answers(&f.ask("ns.dns.cluster.local.", RecordType::A)),
        ["ns.dns.cluster.local. 30 A 192.0.2.53"]
    );
    assert_negative(
        &f.ask("ns.dns.cluster.local.", RecordType::AAAA),
        ResponseCode::NoError,
        "ns.dns AAAA without IPv6",
    );
}

#[test]
fn servfail_until_every_watch_has_listed() {
    let mut f = Fixture::new();
    f.cluster.set_synced(false);
    for name in [
        "web.default.svc.cluster.local.",
        "nope.default.svc.cluster.local.",
        "cluster.local.",
    ] {
        let (outcome, _) = f.raw(&query_bytes(name, RecordType::A, None), Transport::Udp);
        assert_eq!(outcome.rcode, ResponseCode::ServFail, "{name}");
        assert_eq!(outcome.origin, Origin::Kubernetes);
    }
    // Reverse names: SERVFAIL too while the stage owns the reverse zones (never a false
    // NXDOMAIN, never a cluster address asked upstream); passed on with reverseFallthrough.
    let ptr = query_bytes("10.0.96.10.in-addr.arpa.", RecordType::PTR, None);
    let message = f.over(&ptr, Transport::Udp);
    assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
    let mut through = Fixture::with(|k| k.reverse_fallthrough = true);
    through.cluster.set_synced(false);
    let message = through.over(&ptr, Transport::Udp);
    assert_eq!(message.metadata.response_code, ResponseCode::Refused);
    // Names outside the zone do not depend on the watches.
    let message = f.over(
        &query_bytes("example.com.", RecordType::A, None),
        Transport::Udp,
    );
    assert_eq!(message.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn pod_records_disabled_insecure_verified() {
    let name = "10-244-0-5.default.pod.cluster.local.";
    let f = Fixture::new();
    assert_negative(
        &f.ask(name, RecordType::A),
        ResponseCode::NXDomain,
        "disabled",
    );

    let f = Fixture::with(|k| k.pods = PodsMode::Insecure);
    assert_eq!(
        answers(&f.ask(name, RecordType::A)),
        [format!("{name} 30 A 10.244.0.5")]
    );
    assert_eq!(
        answers(&f.ask("1-2-3-4.default.pod.cluster.local.", RecordType::A)),
        ["1-2-3-4.default.pod.cluster.local. 30 A 1.2.3.4"],
        "insecure: no Pod needed"
    );
    assert_eq!(
        answers(&f.ask("fd00--5.default.pod.cluster.local.", RecordType::AAAA)),
        ["fd00--5.default.pod.cluster.local. 30 AAAA fd00::5"]
    );
    assert_negative(
        &f.ask(name, RecordType::AAAA),
        ResponseCode::NoError,
        "v4 pod, AAAA",
    );
    assert_negative(
        &f.ask("default.pod.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "ns.pod",
    );
    for bad in [
        "x-y.default.pod.cluster.local.",
        "10-244-0-5.ghost.pod.cluster.local.",
        "ghost.pod.cluster.local.",
    ] {
        assert_negative(&f.ask(bad, RecordType::A), ResponseCode::NXDomain, bad);
    }

    let mut f = Fixture::with(|k| k.pods = PodsMode::Verified);
    assert_eq!(
        answers(&f.ask(name, RecordType::A)),
        [format!("{name} 30 A 10.244.0.5")]
    );
    for absent in [
        "1-2-3-4.default.pod.cluster.local.",
        "10-244-0-5.other.pod.cluster.local.",
    ] {
        assert_negative(
            &f.ask(absent, RecordType::A),
            ResponseCode::NXDomain,
            absent,
        );
    }
    // Just switched to verified: the Pod watch has not listed yet.
    f.cluster.set_pods_watched(true);
    let (outcome, _) = f.raw(&query_bytes(name, RecordType::A, None), Transport::Udp);
    assert_eq!(outcome.rcode, ResponseCode::ServFail);
}

#[test]
fn ignore_empty_service() {
    let f = Fixture::new();
    assert!(
        !f.ask("lonely.default.svc.cluster.local.", RecordType::A)
            .answers
            .is_empty()
    );
    let f = Fixture::with(|k| k.ignore_empty_service = true);
    for (name, qtype) in [
        ("lonely.default.svc.cluster.local.", RecordType::A),
        (
            "_http._tcp.lonely.default.svc.cluster.local.",
            RecordType::SRV,
        ),
    ] {
        assert_negative(&f.ask(name, qtype), ResponseCode::NXDomain, name);
    }
    assert!(
        !f.ask("web.default.svc.cluster.local.", RecordType::A)
            .answers
            .is_empty()
    );
}

#[test]
fn zone_transfers_are_refused() {
    let f = Fixture::new();
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let message = f.over(&query_bytes("cluster.local.", qtype, None), Transport::Tcp);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::Refused,
            "{qtype}"
        );
    }
}

#[test]
fn refused_outside_the_cluster_domain_and_for_other_classes() {
    let f = Fixture::new();
    for name in ["example.com.", "local.", "cluster.local.example.", "."] {
        let message = f.ask(name, RecordType::A);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(!message.metadata.authoritative);
        assert!(message.authorities.is_empty());
    }
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    let mut question = Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").expect("name"),
        RecordType::A,
    );
    question.set_query_class(DNSClass::CH);
    query.add_query(question);
    let message = f.over(&query.to_vec().expect("encodes"), Transport::Udp);
    assert_eq!(message.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn servfail_for_everything_before_the_first_config() {
    let c = cluster();
    for name in ["web.default.svc.cluster.local.", "example.com."] {
        let mut out = Vec::new();
        let outcome = answer(
            &query_bytes(name, RecordType::A, None),
            Transport::Udp,
            None,
            &Sources {
                cluster: &c,
                client: test_client(),
                metrics: &test_metrics(),
            },
            &Settings::default(),
            &mut out,
        );
        let message = Message::from_vec(&out).expect("decodes");
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(outcome.origin, Origin::Server);
        assert_eq!(message.queries.len(), 1, "question echoed");
    }
}

#[test]
fn formerr_notimp_and_drops() {
    let f = Fixture::new();
    let garbage = [
        0xab, 0xcd, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
    ];
    let (outcome, out) = f.raw(&garbage, Transport::Udp);
    assert_eq!(outcome.rcode, ResponseCode::FormErr);
    let message = Message::from_vec(&out).expect("decodes");
    assert_eq!(message.metadata.id, 0xabcd);
    assert_eq!(message.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(message.metadata.message_type, MessageType::Response);

    let mut update = query_bytes("web.default.svc.cluster.local.", RecordType::A, None);
    update[2] = (update[2] & !0x78) | (u8::from(OpCode::Update) << 3);
    let (outcome, out) = f.raw(&update, Transport::Udp);
    assert_eq!(outcome.rcode, ResponseCode::NotImp);
    let message = Message::from_vec(&out).expect("decodes");
    assert_eq!(message.metadata.op_code, OpCode::Update);

    let (outcome, out) = f.raw(&[1, 2, 3], Transport::Udp);
    assert!(!outcome.replied && out.is_empty(), "no header id: dropped");
}

#[test]
fn truncation_over_udp_and_the_whole_answer_over_tcp() {
    let f = Fixture::new();
    let name = "wide.default.svc.cluster.local.";
    // Without EDNS the limit is 512; with the default EDNS size 1232: 100 records fit neither.
    for edns in [None, Some(1232), Some(4096)] {
        let (outcome, out) = f.raw(&query_bytes(name, RecordType::A, edns), Transport::Udp);
        assert!(outcome.truncated, "{edns:?}");
        assert!(out.len() <= usize::from(edns.unwrap_or(512).min(1232)));
        let message = Message::from_vec(&out).expect("decodes");
        assert!(message.metadata.truncation);
        assert!(message.answers.is_empty());
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    }
    let message = f.over(&query_bytes(name, RecordType::A, None), Transport::Tcp);
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 100);

    // A server configured for larger UDP answers sends them whole to clients that can take it.
    let mut big = Fixture::new();
    big.settings.max_udp_payload = 4096;
    let message = big.over(
        &query_bytes(name, RecordType::A, Some(4096)),
        Transport::Udp,
    );
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 100);
    assert_eq!(message.edns.expect("OPT").max_payload(), 4096);
}

#[test]
fn badvers_for_unknown_edns_versions() {
    let f = Fixture::new();
    let mut query = Message::new(9, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").expect("name"),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_version(1);
    query.set_edns(edns);
    let (outcome, out) = f.raw(&query.to_vec().expect("encodes"), Transport::Udp);
    assert_eq!(outcome.rcode, ResponseCode::BADVERS);
    let message = Message::from_vec(&out).expect("decodes");
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    assert_eq!(u16::from(message.metadata.response_code), 16);
    assert_eq!(message.edns.expect("OPT").version(), 0);
}

#[test]
fn the_query_log_gets_the_name_only_when_on() {
    let mut f = Fixture::new();
    let bytes = query_bytes("Web.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(f.raw(&bytes, Transport::Udp).0.name, None);
    f.settings.query_log = true;
    let name = f.raw(&bytes, Transport::Udp).0.name.expect("logged");
    assert_eq!(name.to_string(), "web.default.svc.cluster.local.");
}

/// A small xorshift generator: deterministic, no dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

#[test]
fn never_panics_on_random_or_mutated_input() {
    let f = Fixture::with(|k| k.pods = PodsMode::Insecure);
    let seeds: Vec<Vec<u8>> = [
        ("web.default.svc.cluster.local.", RecordType::A, None),
        ("wide.default.svc.cluster.local.", RecordType::A, Some(4096)),
        (
            "_pg._tcp.db.default.svc.cluster.local.",
            RecordType::SRV,
            Some(1232),
        ),
        (
            "ext.default.svc.cluster.local.",
            RecordType::AAAA,
            Some(512),
        ),
        ("1.0.244.10.in-addr.arpa.", RecordType::PTR, None),
        ("10-244-0-5.default.pod.cluster.local.", RecordType::A, None),
        ("example.com.", RecordType::MX, None),
    ]
    .into_iter()
    .map(|(name, qtype, edns)| query_bytes(name, qtype, edns))
    .collect();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..8000 {
        let packet: Vec<u8> = if round % 3 == 0 {
            let len = rng.below(300);
            (0..len).map(|_| rng.byte()).collect()
        } else {
            let mut packet = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(4) {
                    0 => {
                        let at = rng.below(packet.len());
                        packet[at] = rng.byte();
                    }
                    1 => packet.truncate(rng.below(packet.len() + 1)),
                    2 => {
                        let at = rng.below(packet.len() + 1);
                        packet.insert(at, rng.byte());
                    }
                    _ => {
                        // Header counts are the classic crash surface.
                        let at = 4 + rng.below(8);
                        if let Some(byte) = packet.get_mut(at) {
                            *byte = rng.byte();
                        }
                    }
                }
                if packet.is_empty() {
                    break;
                }
            }
            packet
        };
        for transport in [Transport::Udp, Transport::Tcp] {
            let (outcome, out) = f.raw(&packet, transport);
            if outcome.replied {
                assert!(out.len() >= 12, "round {round}");
                assert_eq!(out[..2], packet[..2], "id echoed, round {round}");
                if transport == Transport::Udp {
                    assert!(out.len() <= 1232, "round {round}");
                }
                assert!(
                    Message::from_vec(&out).is_ok(),
                    "round {round}: our response must decode: {out:?}"
                );
            } else {
                assert!(out.is_empty());
            }
        }
    }
}

pub(crate) fn test_metrics() -> crate::metrics::Metrics {
    crate::metrics::Metrics::new("127.0.0.1:53".parse().expect("addr"))
}

pub(crate) fn test_client() -> std::net::SocketAddr {
    "127.0.0.1:40000".parse().expect("addr")
}

/// A synced, empty cluster, for stages that do not read it.
pub(crate) fn empty_cluster() -> crate::cluster::index::Cluster {
    let mut cluster = crate::cluster::index::Cluster::new(1);
    cluster.set_synced(true);
    cluster
}

/// Runs `answer` for `packet` from `client`: the outcome and what was written.
pub(crate) fn answer_from(
    packet: &[u8],
    transport: Transport,
    pipeline: &Pipeline,
    client: &str,
    metrics: &crate::metrics::Metrics,
) -> (Observed, Option<Vec<u8>>) {
    let cluster = empty_cluster();
    let mut out = Vec::new();
    let outcome = answer(
        packet,
        transport,
        Some(pipeline),
        &Sources {
            cluster: &cluster,
            client: client.parse().expect("addr"),
            metrics,
        },
        &Settings::default(),
        &mut out,
    );
    let response = outcome.replied.then_some(out);
    (outcome, response)
}

#[test]
fn an_address_in_two_slices_is_answered_once() {
    let mut f = Fixture::new();
    // An endpoint moving from one slice to another is briefly listed by both.
    let moved = || endpoint("10.244.0.2", None, Some("pod-b"));
    f.cluster.endpoints.put_slice(
        "default",
        "db",
        "db-moved",
        slice(vec![port("pg", Protocol::Tcp, 5432)], vec![moved()]),
    );
    assert!(
        f.cluster
            .endpoints
            .get("default", "db")
            .expect("db")
            .repeats()
    );
    assert_eq!(
        answers(&f.ask("db.default.svc.cluster.local.", RecordType::A)),
        [
            "db.default.svc.cluster.local. 30 A 10.244.0.1",
            "db.default.svc.cluster.local. 30 A 10.244.0.2"
        ]
    );
    assert_eq!(
        answers(&f.ask("10-244-0-2.db.default.svc.cluster.local.", RecordType::A)),
        ["10-244-0-2.db.default.svc.cluster.local. 30 A 10.244.0.2"]
    );
    // Slices without a shared address are answered without looking for repeats.
    let fixture = Fixture::new();
    let db = fixture.cluster.endpoints.get("default", "db").expect("db");
    assert!(!db.repeats(), "db-v4 and db-v6 share no address");
}
