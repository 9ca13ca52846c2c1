//! Prometheus metrics, named and labelled as CoreDNS names them so existing dashboards and
//! alerts keep working.
//!
//! | metric                                              | labels                                       |
//! |-----------------------------------------------------|----------------------------------------------|
//! | `coredns_dns_requests_total`                        | `server`, `zone`, `view`, `proto`, `family`, `type` |
//! | `coredns_dns_responses_total`                       | `server`, `zone`, `view`, `rcode`, `plugin`  |
//! | `coredns_dns_request_duration_seconds` (histogram)  | `server`, `zone`, `view`, `type`             |
//! | `coredns_dns_request_size_bytes` (histogram)        | `server`, `zone`, `view`, `proto`            |
//! | `coredns_dns_response_size_bytes` (histogram)       | `server`, `zone`, `view`, `proto`            |
//! | `coredns_dns_do_requests_total`                     | `server`, `zone`, `view`                     |
//! | `coredns_kubernetes_dns_programming_duration_seconds` (histogram) | `service_kind`                 |
//! | `coredns_reload_failed_total`                       |                                              |
//! | `coredns_reload_version_info`                       | `hash` (`sha256`), `value`                   |
//! | `nameplane_config_info`                             | `server`, `hash`: the config being served    |
//! | `nameplane_config_reloads_total`                    | `result` (`success`, `failure`)              |
//! | `nameplane_config_reload_failures_total`            | `reason` (`missing_key`, `invalid`, `build`, `hash_mismatch`) |
//! | `nameplane_build_info`                              | `version`, `revision`                        |
//! | `coredns_build_info`                                | `version`, `revision`, `goversion` (`rust`): CoreDNS's shape, so build panels and alerts written for CoreDNS see nameplane replicas |
//! | `nameplane_kubernetes_objects`                      | `resource`                                   |
//! | `nameplane_kubernetes_synced`                       | `resource`: 1 once its initial list completed |
//! | `nameplane_kubernetes_watch_errors_total`           | `resource`                                   |
//! | `nameplane_kubernetes_shared_pod_ips`               | `outcome`: IPs several live Pods claim, `running_wins` (the Running one is the client) or `ambiguous` (nobody is) |
//! | `nameplane_task_failures_total`                     | `task` (`udp`, `tcp`, `dns`, `config`, `watch`, `admin`): stopped while serving; `/health` fails |
//! | `nameplane_tcp_connections_closed_total`            | `reason`: see [`crate::server::tcp`]         |
//! | `nameplane_admin_connections_evicted_total`         | admin connections closed for a newer one at `--admin-max-connections` |
//! | `nameplane_rrl_responses_total`                     | `action` (`dropped`, `slipped`): UDP answers to unidentified clients over the config's `rateLimit` ([`crate::rate_limit`]) |
//!
//! `server` is `dns://<listen address>`; `zone` is `.` (one server block serves every zone);
//! `view` is empty; `family` is `1` (IPv4) or `2` (IPv6); `type` is one of CoreDNS's
//! monitored types or `other`; `plugin` is the stage that answered (`kubernetes`), empty for
//! the server itself. Histogram buckets are CoreDNS's.
//!
//! The cache and forward stages register their own families here too (CoreDNS's `cache_*`,
//! `forward_*` and `proxy_*` names), defined beside this file so that no stage is imported
//! here: see [`cache::CacheMetrics`] and [`forward::ForwardMetrics`]; so do policy, rewrite
//! and autopath ([`ClientMetrics`]).
//!
//! The query path takes no lock here: each label combination of a per-query metric is a
//! slot holding its handle, filled from the registry's family on first use and read
//! lock-free after (only series that were used appear, as with CoreDNS). Histograms are
//! [`AtomicHistogram`]s: atomic counters per bucket, where prometheus-client's own histogram
//! takes a lock per observation.
//!
//! The families are created and registered in groups (`families`: per-query, config,
//! watch, runtime), with their label sets in `labels` and the lock-free histograms and
//! slots in `histogram`; this file keeps [`Metrics`], which fills them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

pub(crate) mod cache;
pub(crate) mod client;
mod families;
pub(crate) mod forward;
mod histogram;
mod labels;

use cache::CacheMetrics;
use client::ClientMetrics;
use families::{ConfigFamilies, QueryFamilies, RuntimeFamilies, WatchFamilies};
use forward::ForwardMetrics;
use histogram::Slots;
pub use histogram::{
    AtomicHistogram, HistogramConstructor, PROGRAMMING_BUCKETS, SIZE_BUCKETS, TIME_BUCKETS,
};
use labels::{
    ConfigLabels, DurationLabels, KindLabels, OutcomeLabels, ReasonLabels, ReloadLabels,
    RequestLabels, ResourceLabels, ResponseLabels, ServerLabels, SizeLabels, TaskLabels,
    VersionLabels,
};

use crate::request::Transport;
use crate::wire::answer::Origin;

/// The `zone` label: the server serves every zone from one block.
const ZONE: &str = ".";
/// The `view` label: no views.
const VIEW: &str = "";

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

/// What one answered query contributes to the metrics.
#[derive(Clone, Copy, Debug)]
pub struct QueryRecord {
    /// The transport.
    pub transport: Transport,
    /// The client's address (for `family`).
    pub client: SocketAddr,
    /// The question type, when the query parsed.
    pub qtype: Option<RecordType>,
    /// The response code sent.
    pub rcode: ResponseCode,
    /// Who answered.
    pub origin: Origin,
    /// Whether the query had the DO bit.
    pub dnssec_ok: bool,
    /// Query size, bytes.
    pub request_size: usize,
    /// Response size, bytes.
    pub response_size: usize,
    /// Time from receiving the query to having the response.
    pub duration: Duration,
}

/// Every metric of the server, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    server: Arc<str>,
    queries: QueryFamilies,
    config: ConfigFamilies,
    watch: WatchFamilies,
    runtime: RuntimeFamilies,
    request_slots: Slots<Counter>,
    response_slots: Slots<Counter>,
    duration_slots: Slots<AtomicHistogram>,
    request_size_slots: Slots<AtomicHistogram>,
    response_size_slots: Slots<AtomicHistogram>,
    do_slot: Slots<Counter>,
    cache: CacheMetrics,
    forward: ForwardMetrics,
    clients: ClientMetrics,
}

fn type_index(qtype: Option<RecordType>) -> usize {
    qtype
        .and_then(|qtype| MONITORED.iter().position(|t| *t == qtype))
        .unwrap_or(TYPES.len() - 1)
}

/// The name CoreDNS uses for `rcode` (`NOERROR`, `NXDOMAIN`, …; `other` for the rest).
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    RCODES[rcode_index(rcode)]
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
        let runtime = RuntimeFamilies::register(&mut registry);
        let queries = QueryFamilies::register(&mut registry);
        let config = ConfigFamilies::register(&mut registry);
        let watch = WatchFamilies::register(&mut registry);
        let server: Arc<str> = Arc::from(format!("dns://{listen}"));
        let cache = CacheMetrics::register(&mut registry, &server);
        let forward = ForwardMetrics::register(&mut registry);
        let clients = ClientMetrics::register(&mut registry);
        Self {
            registry,
            server,
            queries,
            config,
            watch,
            runtime,
            request_slots: Slots::new(TRANSPORTS.len() * FAMILIES.len() * TYPES.len()),
            response_slots: Slots::new(RCODES.len() * Origin::ALL.len()),
            duration_slots: Slots::new(TYPES.len()),
            request_size_slots: Slots::new(TRANSPORTS.len()),
            response_size_slots: Slots::new(TRANSPORTS.len()),
            do_slot: Slots::new(1),
            cache,
            forward,
            clients,
        }
    }

    /// Counts one answered query in every per-query metric.
    pub fn query(&self, record: &QueryRecord) {
        let (t, f, q) = (
            transport_index(record.transport),
            usize::from(record.client.is_ipv6()),
            type_index(record.qtype),
        );
        let server = || self.server.clone();
        if let Some(counter) =
            self.request_slots
                .get((t * FAMILIES.len() + f) * TYPES.len() + q, || {
                    self.queries
                        .requests
                        .get_or_create(&RequestLabels {
                            server: server(),
                            zone: ZONE,
                            view: VIEW,
                            proto: TRANSPORTS[t].label(),
                            family: FAMILIES[f],
                            r#type: TYPES[q],
                        })
                        .clone()
                })
        {
            counter.inc();
        }
        let r = rcode_index(record.rcode);
        if let Some(counter) =
            self.response_slots
                .get(r * Origin::ALL.len() + record.origin.index(), || {
                    self.queries
                        .responses
                        .get_or_create(&ResponseLabels {
                            server: server(),
                            zone: ZONE,
                            view: VIEW,
                            rcode: RCODES[r],
                            plugin: record.origin.label(),
                        })
                        .clone()
                })
        {
            counter.inc();
        }
        if let Some(histogram) = self.duration_slots.get(q, || {
            self.queries
                .durations
                .get_or_create(&DurationLabels {
                    server: server(),
                    zone: ZONE,
                    view: VIEW,
                    r#type: TYPES[q],
                })
                .clone()
        }) {
            histogram.observe_units(u64::try_from(record.duration.as_nanos()).unwrap_or(u64::MAX));
        }
        self.observe_sizes(record, t);
    }

    /// The per-query metrics past the counters: request and response sizes (by transport
    /// index `t`) and the DO counter.
    fn observe_sizes(&self, record: &QueryRecord, t: usize) {
        let server = || self.server.clone();
        let size_labels = || SizeLabels {
            server: server(),
            zone: ZONE,
            view: VIEW,
            proto: TRANSPORTS[t].label(),
        };
        if let Some(histogram) = self.request_size_slots.get(t, || {
            self.queries
                .request_sizes
                .get_or_create(&size_labels())
                .clone()
        }) {
            histogram.observe_units(record.request_size as u64);
        }
        if let Some(histogram) = self.response_size_slots.get(t, || {
            self.queries
                .response_sizes
                .get_or_create(&size_labels())
                .clone()
        }) {
            histogram.observe_units(record.response_size as u64);
        }
        if record.dnssec_ok
            && let Some(counter) = self.do_slot.get(0, || {
                self.queries
                    .do_requests
                    .get_or_create(&ServerLabels {
                        server: server(),
                        zone: ZONE,
                        view: VIEW,
                    })
                    .clone()
            })
        {
            counter.inc();
        }
    }

    /// Counts one config reload attempt.
    pub fn reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.config
            .reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        if !success {
            self.config.reload_failed.inc();
        }
    }

    /// Counts one refused config version and why (a [`crate::reload::ReloadError`]'s
    /// metric label).
    pub fn reload_failure(&self, reason: &'static str) {
        self.reload(false);
        self.config
            .reload_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a task that stopped while the server runs.
    pub fn task_failure(&self, task: &'static str) {
        self.runtime
            .task_failures
            .get_or_create(&TaskLabels { task })
            .inc();
    }

    /// Counts one answer the rate limit dropped (`slipped: false`) or truncated.
    pub fn rate_limited(&self, slipped: bool) {
        if slipped {
            self.runtime.rrl_slipped.inc();
        } else {
            self.runtime.rrl_dropped.inc();
        }
    }

    /// Counts an admin connection closed for a newer one.
    pub fn admin_connection_evicted(&self) {
        self.runtime.admin_evicted.inc();
    }

    /// Counts one closed TCP connection and why it closed.
    pub fn tcp_closed(&self, reason: &'static str) {
        self.runtime
            .tcp_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records how many Pod IPs several live Pods claim (`None`: Pods are not watched).
    pub fn shared_pod_ips(&self, shared: Option<crate::cluster::index::SharedIps>) {
        for (outcome, count) in [
            ("running_wins", shared.map(|s| s.running_wins)),
            ("ambiguous", shared.map(|s| s.ambiguous)),
        ] {
            let labels = OutcomeLabels { outcome };
            match count {
                Some(count) => {
                    self.watch
                        .shared_pod_ips
                        .get_or_create(&labels)
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
                None => {
                    self.watch.shared_pod_ips.remove(&labels);
                }
            }
        }
    }

    /// Records the config now being served (replacing the previous one's series).
    pub fn config_served(&self, server: &str, hash: &str) {
        self.config.config_info.clear();
        self.config
            .config_info
            .get_or_create(&ConfigLabels {
                server: server.to_owned(),
                hash: hash.to_owned(),
            })
            .set(1);
        self.config.version_info.clear();
        self.config
            .version_info
            .get_or_create(&VersionLabels {
                hash: "sha256",
                value: hash.to_owned(),
            })
            .set(1);
    }

    /// Records the size and sync state of one watched resource.
    pub fn watched(&self, resource: &'static str, objects: usize, synced: Option<bool>) {
        let labels = ResourceLabels { resource };
        self.watch
            .objects
            .get_or_create(&labels)
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
        match synced {
            Some(synced) => {
                self.watch
                    .synced
                    .get_or_create(&labels)
                    .set(i64::from(synced));
            }
            None => {
                self.watch.synced.remove(&labels);
                self.watch.objects.remove(&labels);
            }
        }
    }

    /// Counts one watch error.
    pub fn watch_error(&self, resource: &'static str) {
        self.watch
            .watch_errors
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    /// Records one DNS programming latency sample.
    pub fn programming(&self, service_kind: &'static str, latency: Duration) {
        self.watch
            .programming
            .get_or_create(&KindLabels { service_kind })
            .observe_units(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The cache stage's metrics.
    pub fn cache(&self) -> &CacheMetrics {
        &self.cache
    }

    /// The forward stage's metrics.
    pub fn forward(&self) -> &ForwardMetrics {
        &self.forward
    }

    /// The policy, rewrite and autopath metrics.
    pub fn clients(&self) -> &ClientMetrics {
        &self.clients
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
mod tests;
