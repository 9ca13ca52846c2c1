//! The forward stage's metrics: CoreDNS's names where CoreDNS has one
//! (`plugin/forward/metrics.go`, `plugin/pkg/proxy/metrics.go`), `nameplane_forward_*`
//! for what CoreDNS does not count.
//!
//! | metric                                          | labels                        |
//! |-------------------------------------------------|-------------------------------|
//! | `coredns_forward_healthcheck_broken_total`      |                               |
//! | `coredns_forward_max_concurrent_rejects_total`  |                               |
//! | `nameplane_forward_global_limit_rejects_total`  |                               |
//! | `coredns_proxy_request_duration_seconds`        | `proxy_name`, `to`, `rcode`   |
//! | `coredns_proxy_healthcheck_failures_total`      | `proxy_name`, `to`            |
//! | `nameplane_forward_rejected_replies_total`      | `to`, `reason` (`source`, `id`, `question`, `malformed`, `not_response`, `too_many_records`) |
//! | `nameplane_forward_failures_total`              | `to`, `reason` (`timeout`, `network`, `too_much_data`) |
//! | `nameplane_forward_tcp_connections_total`       | `to`, `connection` (`new`, `reused`): TCP exchanges by the connection they used |
//! | `nameplane_forward_coalesced_total`             |                               |
//! | `nameplane_forward_dropped_records_total`       | `reason` (`out_of_chain`, `out_of_bailiwick`) |
//! | `nameplane_forward_loops_detected_total`        | `forwarder` (domain), `to`    |
//! | `nameplane_forward_loop_probe_echoes_total`     |                               |
//!
//! `proxy_name` is `forward`; `to` is the upstream's `ip:port`. The forward path waits on
//! the network anyway, so label sets are looked up per event (a read lock in the family).

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::families::registered;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    proxy_name: &'static str,
    to: String,
    rcode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    proxy_name: &'static str,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    to: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    to: String,
    connection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    forwarder: String,
    to: String,
}

/// The rcode as CoreDNS labels it (`NOERROR`, `SERVFAIL`, …; the number otherwise).
fn rcode_label(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // CoreDNS's buckets: 0.25 ms doubling 16 times (up to ~8 s).
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Metric handles of the forward stage.
#[derive(Clone, Debug)]
pub struct ForwardMetrics {
    healthcheck_broken: Counter,
    max_concurrent_rejects: Counter,
    global_limit_rejects: Counter,
    coalesced: Counter,
    durations: HistogramFamily<DurationLabels>,
    healthcheck_failures: Family<ProxyLabels, Counter>,
    rejected_replies: Family<ReasonLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    dropped_records: Family<DroppedLabels, Counter>,
    tcp_connections: Family<ConnectionLabels, Counter>,
    loops: Family<LoopLabels, Counter>,
    loop_echoes: Counter,
}

/// Why a reply was not accepted as the answer to a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// It came from another address or port.
    Source,
    /// Its id was not the query's.
    Id,
    /// Its question was not the query's.
    Question,
    /// It did not decode.
    Malformed,
    /// It was not a response (QR clear) or not a QUERY.
    NotResponse,
    /// A section held more records than its cap.
    TooManyRecords,
}

impl RejectReason {
    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Id => "id",
            Self::Question => "question",
            Self::Malformed => "malformed",
            Self::NotResponse => "not_response",
            Self::TooManyRecords => "too_many_records",
        }
    }
}

impl ForwardMetrics {
    /// Registers the forward families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            healthcheck_broken: registered(
                registry,
                "coredns_forward_healthcheck_broken",
                "Counter of the number of complete failures of the healthchecks",
                Counter::default(),
            ),
            max_concurrent_rejects: registered(
                registry,
                "coredns_forward_max_concurrent_rejects",
                "Counter of the number of queries rejected because the concurrent queries were at maximum",
                Counter::default(),
            ),
            global_limit_rejects: registered(
                registry,
                "nameplane_forward_global_limit_rejects",
                "Queries refused because the process had --forward-max-in-flight queries in flight to upstreams",
                Counter::default(),
            ),
            coalesced: registered(
                registry,
                "nameplane_forward_coalesced",
                "Queries that joined an identical query already in flight instead of going upstream",
                Counter::default(),
            ),
            durations: registered(
                registry,
                "coredns_proxy_request_duration_seconds",
                "Histogram of the time each request took",
                Family::new_with_constructor(duration_histogram),
            ),
            healthcheck_failures: registered(
                registry,
                "coredns_proxy_healthcheck_failures",
                "Counter of the number of failed healthchecks",
                Family::<ProxyLabels, Counter>::default(),
            ),
            rejected_replies: registered(
                registry,
                "nameplane_forward_rejected_replies",
                "Replies ignored while waiting for an upstream's answer, by reason",
                Family::<ReasonLabels, Counter>::default(),
            ),
            failures: registered(
                registry,
                "nameplane_forward_failures",
                "Upstream exchanges that got no usable reply, by reason",
                Family::<ReasonLabels, Counter>::default(),
            ),
            dropped_records: registered(
                registry,
                "nameplane_forward_dropped_records",
                "Records removed from upstream replies before caching and answering, by reason",
                Family::<DroppedLabels, Counter>::default(),
            ),
            tcp_connections: registered(
                registry,
                "nameplane_forward_tcp_connections",
                "TCP exchanges with upstreams by the connection they used: new, or reused from an earlier exchange",
                Family::<ConnectionLabels, Counter>::default(),
            ),
            loops: registered(
                registry,
                "nameplane_forward_loops_detected",
                "Forwarding loops found at config load: the upstream sent this server's own probe query back to it (CoreDNS loop)",
                Family::<LoopLabels, Counter>::default(),
            ),
            loop_echoes: registered(
                registry,
                "nameplane_forward_loop_probe_echoes",
                "Loop probe queries of this server that came back to it as client queries (answered SERVFAIL at once)",
                Counter::default(),
            ),
        }
    }

    /// The forwarder of `forwarder` (its domain) loops through the upstream `to`.
    pub fn loop_detected(&self, forwarder: &str, to: &str) {
        self.loops
            .get_or_create(&LoopLabels {
                forwarder: forwarder.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }

    /// A loop probe of this server came back to it.
    pub fn loop_echo(&self) {
        self.loop_echoes.inc();
    }

    /// Every upstream of a forwarder was down when a query came.
    pub fn healthcheck_broken(&self) {
        self.healthcheck_broken.inc();
    }

    /// A query refused because its forwarder was at its in-flight limit.
    pub fn max_concurrent_reject(&self) {
        self.max_concurrent_rejects.inc();
    }

    /// A query refused because the process was at its in-flight limit over all forwarders.
    pub fn global_limit_reject(&self) {
        self.global_limit_rejects.inc();
    }

    /// A query joined one in flight.
    pub fn coalesced(&self) {
        self.coalesced.inc();
    }

    /// An exchange with `to` that got a reply with `rcode` after `elapsed`.
    pub fn request_duration(&self, to: &str, rcode: ResponseCode, elapsed: Duration) {
        self.durations
            .get_or_create(&DurationLabels {
                proxy_name: "forward",
                to: to.to_owned(),
                rcode: rcode_label(rcode),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A health probe of `to` failed.
    pub fn healthcheck_failure(&self, to: &str) {
        self.healthcheck_failures
            .get_or_create(&ProxyLabels {
                proxy_name: "forward",
                to: to.to_owned(),
            })
            .inc();
    }

    /// A reply from (or claiming to be from) `to` was ignored.
    pub fn rejected_reply(&self, to: &str, reason: RejectReason) {
        self.rejected_replies
            .get_or_create(&ReasonLabels {
                to: to.to_owned(),
                reason: reason.label(),
            })
            .inc();
    }

    /// An exchange with `to` failed: `timeout` or `network`.
    pub fn failure(&self, to: &str, reason: &'static str) {
        self.failures
            .get_or_create(&ReasonLabels {
                to: to.to_owned(),
                reason,
            })
            .inc();
    }

    /// A TCP exchange with `to` on a new or a `reused` connection.
    pub fn tcp_connection(&self, to: &str, reused: bool) {
        self.tcp_connections
            .get_or_create(&ConnectionLabels {
                to: to.to_owned(),
                connection: if reused { "reused" } else { "new" },
            })
            .inc();
    }

    /// `count` records dropped from a reply for `reason`.
    pub fn dropped_records(&self, reason: &'static str, count: usize) {
        if count > 0 {
            self.dropped_records
                .get_or_create(&DroppedLabels { reason })
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }
}
