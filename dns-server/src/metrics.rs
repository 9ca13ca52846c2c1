//! Prometheus metrics, named as CoreDNS names them so existing dashboards and alerts work.
//!
//! | metric                                   | labels                              |
//! |------------------------------------------|-------------------------------------|
//! | `coredns_dns_requests_total`             | `server`, `zone`, `proto`, `family`, `type` |
//! | `coredns_dns_responses_total`            | `server`, `zone`, `rcode`, `plugin` |
//! | `nameplane_config_reloads_total`         | `result` (`success`, `failure`)     |
//!
//! The cache and forward stages register their own families here too (CoreDNS's `cache_*`,
//! `forward_*` and `proxy_*` names): see [`crate::pipeline::cache::CacheMetrics`] and
//! [`crate::pipeline::forward::ForwardMetrics`].
//!
//! `server` is `dns://<listen address>`; `zone` is `.` (one server block serves every zone);
//! `family` is `1` (IPv4) or `2` (IPv6); `type` is one of CoreDNS's monitored types or
//! `other`; `plugin` is the stage that answered (`kubernetes`), empty for the server itself.
//!
//! The query path takes no lock here either: each label combination is a slot holding its
//! counter handle, filled from the registry's family on first use and read lock-free after
//! (only series that were used appear, as with CoreDNS).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::pipeline::cache::CacheMetrics;
use crate::pipeline::forward::ForwardMetrics;
use crate::request::Transport;
use crate::response::Origin;

/// The `zone` label: the server serves every zone from one block.
const ZONE: &str = ".";

/// Query types counted under their own name (CoreDNS `plugin/metrics/vars/monitor.go`);
/// everything else is `other`, the last entry.
const TYPES: [&str; 19] = [
    "A", "AAAA", "MX", "SOA", "CNAME", "PTR", "TXT", "NS", "SRV", "DS", "DNSKEY", "RRSIG", "NSEC",
    "NSEC3", "HTTPS", "IXFR", "AXFR", "ANY", "other",
];

/// The record types of [`TYPES`], in the same order.
const MONITORED: [RecordType; 18] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::MX,
    RecordType::SOA,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SRV,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::RRSIG,
    RecordType::NSEC,
    RecordType::NSEC3,
    RecordType::HTTPS,
    RecordType::IXFR,
    RecordType::AXFR,
    RecordType::ANY,
];

/// Response codes this server sends, by CoreDNS's label; anything else is `other`.
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];

const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];
const FAMILIES: [&str; 2] = ["1", "2"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    server: Arc<str>,
    zone: &'static str,
    proto: &'static str,
    family: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    server: Arc<str>,
    zone: &'static str,
    rcode: &'static str,
    plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Every metric of the server, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    server: Arc<str>,
    requests: Family<RequestLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    request_slots: Box<[OnceLock<Counter>]>,
    response_slots: Box<[OnceLock<Counter>]>,
    cache: CacheMetrics,
    forward: ForwardMetrics,
}

fn type_index(qtype: Option<RecordType>) -> usize {
    qtype
        .and_then(|qtype| MONITORED.iter().position(|t| *t == qtype))
        .unwrap_or(TYPES.len() - 1)
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => RCODES.len() - 1,
    }
}

fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

impl Metrics {
    /// Registers every metric; `listen` is the DNS listen address (the `server` label).
    pub fn new(listen: SocketAddr) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family",
            requests.clone(),
        );
        registry.register(
            "coredns_dns_responses",
            "Counter of response status codes",
            responses.clone(),
        );
        registry.register(
            "nameplane_config_reloads",
            "Counter of configuration reloads by result",
            reloads.clone(),
        );
        let slots = |n: usize| (0..n).map(|_| OnceLock::new()).collect();
        let server: Arc<str> = Arc::from(format!("dns://{listen}"));
        let cache = CacheMetrics::register(&mut registry, &server);
        let forward = ForwardMetrics::register(&mut registry);
        Self {
            registry,
            server,
            cache,
            forward,
            requests,
            responses,
            reloads,
            request_slots: slots(TRANSPORTS.len() * FAMILIES.len() * TYPES.len()),
            response_slots: slots(RCODES.len() * Origin::ALL.len()),
        }
    }

    /// Counts one request (a query that had at least a header).
    pub fn request(&self, transport: Transport, client: SocketAddr, qtype: Option<RecordType>) {
        let (t, f, q) = (
            transport_index(transport),
            usize::from(client.is_ipv6()),
            type_index(qtype),
        );
        let slot = (t * FAMILIES.len() + f) * TYPES.len() + q;
        if let Some(slot) = self.request_slots.get(slot) {
            slot.get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        server: self.server.clone(),
                        zone: ZONE,
                        proto: TRANSPORTS[t].label(),
                        family: FAMILIES[f],
                        r#type: TYPES[q],
                    })
                    .clone()
            })
            .inc();
        }
    }

    /// Counts one response.
    pub fn response(&self, rcode: ResponseCode, origin: Origin) {
        let r = rcode_index(rcode);
        let slot = r * Origin::ALL.len() + origin.index();
        if let Some(slot) = self.response_slots.get(slot) {
            slot.get_or_init(|| {
                self.responses
                    .get_or_create(&ResponseLabels {
                        server: self.server.clone(),
                        zone: ZONE,
                        rcode: RCODES[r],
                        plugin: origin.label(),
                    })
                    .clone()
            })
            .inc();
        }
    }

    /// Counts one config reload attempt.
    pub fn reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// The cache stage's metrics.
    pub fn cache(&self) -> &CacheMetrics {
        &self.cache
    }

    /// The forward stage's metrics.
    pub fn forward(&self) -> &ForwardMetrics {
        &self.forward
    }

    /// Renders every metric in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_coredns_names_and_labels() {
        let metrics = Metrics::new("127.0.0.1:5353".parse().expect("addr"));
        let v4: SocketAddr = "10.0.0.1:4000".parse().expect("addr");
        let v6: SocketAddr = "[fd00::1]:4000".parse().expect("addr");
        metrics.request(Transport::Udp, v4, Some(RecordType::A));
        metrics.request(Transport::Udp, v4, Some(RecordType::A));
        metrics.request(Transport::Tcp, v6, Some(RecordType::CAA));
        metrics.request(Transport::Udp, v4, None);
        metrics.response(ResponseCode::NXDomain, Origin::Kubernetes);
        metrics.response(ResponseCode::Refused, Origin::Server);
        metrics.reload(true);
        metrics.reload(false);
        metrics.reload(false);

        let text = metrics.encode();
        for line in [
            r#"coredns_dns_requests_total{server="dns://127.0.0.1:5353",zone=".",proto="udp",family="1",type="A"} 2"#,
            r#"coredns_dns_requests_total{server="dns://127.0.0.1:5353",zone=".",proto="tcp",family="2",type="other"} 1"#,
            r#"coredns_dns_responses_total{server="dns://127.0.0.1:5353",zone=".",rcode="NXDOMAIN",plugin="kubernetes"} 1"#,
            r#"coredns_dns_responses_total{server="dns://127.0.0.1:5353",zone=".",rcode="REFUSED",plugin=""} 1"#,
            r#"nameplane_config_reloads_total{result="success"} 1"#,
            r#"nameplane_config_reloads_total{result="failure"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(
            !text.contains("type=\"AAAA\""),
            "unused series are not rendered"
        );
    }

    #[test]
    fn every_type_and_rcode_has_a_slot() {
        for (i, qtype) in MONITORED.iter().enumerate() {
            assert_eq!(TYPES[i], qtype.to_string(), "TYPES and MONITORED line up");
        }
        assert_eq!(type_index(Some(RecordType::ANY)), 17);
        assert_eq!(type_index(Some(RecordType::NULL)), TYPES.len() - 1);
        assert_eq!(rcode_index(ResponseCode::BADVERS), 6);
        assert_eq!(rcode_index(ResponseCode::YXDomain), RCODES.len() - 1);
    }
}
