//! The server's metric families, in groups registered together: per-query, config, watch
//! and runtime. [`super::Metrics`] owns one of each and fills them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use super::histogram::{
    HistogramFamily, PROGRAMMING_BUCKETS, SIZE_BUCKETS, TIME_BUCKETS, histograms,
};
use super::labels::{
    ActionLabels, BuildLabels, ConfigLabels, CorednsBuildLabels, DurationLabels, KindLabels,
    OutcomeLabels, ReasonLabels, ReloadLabels, RequestLabels, ResourceLabels, ResponseLabels,
    ServerLabels, SizeLabels, TaskLabels, VersionLabels,
};

/// The source revision of this build: `NAMEPLANE_REVISION` at compile time (the Dockerfile
/// passes the git commit), `unknown` otherwise.
pub(super) const REVISION: &str = match option_env!("NAMEPLANE_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// Registers `metric` under `name` and hands it back (the registry keeps a clone).
pub(super) fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The per-query families (CoreDNS's `dns_*`), filled through the slots of [`super::Metrics`].
#[derive(Debug)]
pub(super) struct QueryFamilies {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) responses: Family<ResponseLabels, Counter>,
    pub(super) durations: HistogramFamily<DurationLabels>,
    pub(super) request_sizes: HistogramFamily<SizeLabels>,
    pub(super) response_sizes: HistogramFamily<SizeLabels>,
    pub(super) do_requests: Family<ServerLabels, Counter>,
}

impl QueryFamilies {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            requests: registered(
                registry,
                "coredns_dns_requests",
                "Counter of DNS requests made per zone, protocol and family",
                Family::default(),
            ),
            responses: registered(
                registry,
                "coredns_dns_responses",
                "Counter of response status codes",
                Family::default(),
            ),
            durations: registered(
                registry,
                "coredns_dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took",
                histograms(&TIME_BUCKETS, 1e-9),
            ),
            request_sizes: registered(
                registry,
                "coredns_dns_request_size_bytes",
                "Size of the request in bytes",
                histograms(&SIZE_BUCKETS, 1.0),
            ),
            response_sizes: registered(
                registry,
                "coredns_dns_response_size_bytes",
                "Size of the returned response in bytes",
                histograms(&SIZE_BUCKETS, 1.0),
            ),
            do_requests: registered(
                registry,
                "coredns_dns_do_requests",
                "Counter of DNS requests with DO bit set per zone",
                Family::default(),
            ),
        }
    }
}

/// The config being served and its reloads; registering them also registers the build info.
#[derive(Debug)]
pub(super) struct ConfigFamilies {
    pub(super) reloads: Family<ReloadLabels, Counter>,
    pub(super) reload_failures: Family<ReasonLabels, Counter>,
    pub(super) reload_failed: Counter,
    pub(super) config_info: Family<ConfigLabels, Gauge>,
    pub(super) version_info: Family<VersionLabels, Gauge>,
}

impl ConfigFamilies {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &mut Registry) -> Self {
        register_build_info(registry);
        Self {
            reloads: registered(
                registry,
                "nameplane_config_reloads",
                "Counter of configuration reloads by result",
                Family::default(),
            ),
            reload_failures: registered(
                registry,
                "nameplane_config_reload_failures",
                "Counter of refused config versions by reason (the previous config keeps serving)",
                Family::default(),
            ),
            reload_failed: registered(
                registry,
                "coredns_reload_failed",
                "Counter of the number of failed reload attempts",
                Counter::default(),
            ),
            config_info: registered(
                registry,
                "nameplane_config_info",
                "The server config being served: constant 1, labelled with its DNSServer and content hash",
                Family::default(),
            ),
            version_info: registered(
                registry,
                "coredns_reload_version_info",
                "A metric with a constant '1' value labeled by hash, and value which type of hash generated",
                Family::default(),
            ),
        }
    }
}

/// The Kubernetes watches: objects held, sync state, errors, shared Pod IPs, programming latency.
#[derive(Debug)]
pub(super) struct WatchFamilies {
    pub(super) objects: Family<ResourceLabels, Gauge>,
    pub(super) synced: Family<ResourceLabels, Gauge>,
    pub(super) watch_errors: Family<ResourceLabels, Counter>,
    pub(super) shared_pod_ips: Family<OutcomeLabels, Gauge>,
    pub(super) programming: HistogramFamily<KindLabels>,
}

impl WatchFamilies {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &mut Registry) -> Self {
        Self {
            objects: registered(
                registry,
                "nameplane_kubernetes_objects",
                "Objects held per watched resource (Services, Services with EndpointSlices, Namespaces, Pod IPs, Node addresses)",
                Family::default(),
            ),
            synced: registered(
                registry,
                "nameplane_kubernetes_synced",
                "1 once the watch of a resource has completed its initial list",
                Family::default(),
            ),
            watch_errors: registered(
                registry,
                "nameplane_kubernetes_watch_errors",
                "Counter of errors of the Kubernetes watches (each is retried with backoff)",
                Family::default(),
            ),
            shared_pod_ips: registered(
                registry,
                "nameplane_kubernetes_shared_pod_ips",
                "Pod IPs that several live Pods claim: the Running one is the client (running_wins) or nobody is (ambiguous)",
                Family::default(),
            ),
            programming: registered(
                registry,
                "coredns_kubernetes_dns_programming_duration_seconds",
                "Histogram of the time (in seconds) it took to program a dns instance",
                histograms(&PROGRAMMING_BUCKETS, 1e-9),
            ),
        }
    }
}

/// The running server: failed tasks, closed TCP and admin connections, rate-limited answers.
#[derive(Debug)]
pub(super) struct RuntimeFamilies {
    pub(super) task_failures: Family<TaskLabels, Counter>,
    pub(super) tcp_closed: Family<ReasonLabels, Counter>,
    pub(super) admin_evicted: Counter,
    pub(super) rrl_dropped: Counter,
    pub(super) rrl_slipped: Counter,
}

impl RuntimeFamilies {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let rrl = Family::<ActionLabels, Counter>::default();
        // Both series exist from the start: a rate of 0 is an answer too.
        let rrl_dropped = rrl
            .get_or_create(&ActionLabels { action: "dropped" })
            .clone();
        let rrl_slipped = rrl
            .get_or_create(&ActionLabels { action: "slipped" })
            .clone();
        registry.register(
            "nameplane_rrl_responses",
            "UDP answers to unidentified clients over the rate limit: dropped, or sent truncated (slipped)",
            rrl,
        );
        Self {
            task_failures: registered(
                registry,
                "nameplane_task_failures",
                "Counter of tasks that stopped while the server runs (a panic); /health fails after one",
                Family::default(),
            ),
            tcp_closed: registered(
                registry,
                "nameplane_tcp_connections_closed",
                "Counter of closed TCP connections by reason (client, idle, write_timeout, evicted, per_source_limit, limit, unanswerable, shutdown, error)",
                Family::default(),
            ),
            admin_evicted: registered(
                registry,
                "nameplane_admin_connections_evicted",
                "Counter of admin connections closed to make room for a newer one (--admin-max-connections)",
                Counter::default(),
            ),
            rrl_dropped,
            rrl_slipped,
        }
    }
}

/// `nameplane_build_info` and `coredns_build_info`: constant 1, labelled with this build.
fn register_build_info(registry: &mut Registry) {
    let build_info = Family::<BuildLabels, Gauge>::default();
    build_info
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            revision: REVISION,
        })
        .set(1);
    registry.register(
        "nameplane_build_info",
        "Constant 1, labelled with the version of this build",
        build_info,
    );
    let coredns_build_info = Family::<CorednsBuildLabels, Gauge>::default();
    coredns_build_info
        .get_or_create(&CorednsBuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            revision: REVISION,
            goversion: "rust",
        })
        .set(1);
    registry.register("coredns_build_info", "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built", coredns_build_info);
}
