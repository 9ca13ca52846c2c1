//! The state shared by the control plane (config reload, watches), the query path and the
//! admin server.
//!
//! Two snapshots, each replaced whole by its single writer and read with `ArcSwap::load`
//! (lock-free; a query keeps the snapshots it loaded until it is answered, however many swaps
//! happen meanwhile):
//!
//! - the [`Pipeline`] built from the last valid config (`None` before the first one), written
//!   by [`crate::reload`];
//! - the [`Cluster`], written by [`crate::cluster::watch`].
//!
//! Setting a pipeline also publishes its [`WatchSpec`] to the watch task, which restarts its
//! watches when the selectors or the need for Pods change.
//!
//! A pipeline that needs the Pod index (policies, autopath, tenant rewrites, verified pod
//! records) while the serving snapshot has no listed one (the config turns the Pod watch
//! on) is not swapped in at once: it would identify no client, so policies would refuse
//! everyone and `/ready` would fail on every replica at the same moment. It waits, while
//! the previous pipeline keeps serving and the replica stays ready, until the watch task
//! publishes a snapshot whose Pod list is complete ([`State::publish_cluster`]), and is
//! swapped in then. A newer config replaces a waiting one. The first config of a process
//! is installed at once (nothing else could serve); until its Pod list completes the
//! replica is not ready, and the stages answer SERVFAIL for what needs the missing lists.
//!
//! [`State::handle`] is the one entry point of the transports: load, answer, count, log, and,
//! only when the config has `rateLimit`, count a UDP answer to a client that is not one
//! identified Pod against the [`crate::rate_limit`] buckets (it may be dropped or slipped). A
//! query that must wait on an upstream comes back as [`Reply::Deferred`]; the transport
//! finishes it with [`State::finish`] off its receive loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;
use tracing::info;

use crate::cluster::index::{Cluster, SyncState};
use crate::metrics::{Metrics, QueryRecord};
use crate::pipeline::deferred::Chase;
use crate::pipeline::{
    self, Deferred, Flow, Pipeline, Resolve, Sent, Settings, Sources, Stats, WatchSpec,
};
use crate::query_log;
use crate::rate_limit::{self, RateLimiter, Verdict};
use crate::reply::Reply as Forwarded;
use crate::request::{QName, Transport};

/// Everything the tasks of one server share.
#[derive(Debug)]
pub struct State {
    pipeline: ArcSwapOption<Pipeline>,
    /// A pipeline waiting for the Pod list (control plane only, never the query path). The
    /// lock also orders a new pipeline against a new snapshot, so a list that completes
    /// while a pipeline starts to wait is never missed.
    waiting: Mutex<Option<Pipeline>>,
    /// Why the last version of the ConfigMap was refused, until a good one loads.
    rejected: ArcSwapOption<String>,
    cluster: ArcSwap<Cluster>,
    settings: Settings,
    metrics: Arc<Metrics>,
    lameduck: AtomicBool,
    /// Why the process is unhealthy: a task that must run until shutdown stopped.
    failed: ArcSwapOption<String>,
    watch_spec: watch::Sender<Option<WatchSpec>>,
}

/// What the transport sends for one query.
#[derive(Debug)]
pub enum Reply {
    /// The response is in the buffer (`true`), or nothing is sent (`false`).
    Now(bool),
    /// The first message is in the buffer; these follow, in order (a zone transfer; TCP).
    Stream(Vec<Vec<u8>>),
    /// The answer waits on an upstream: send what [`State::finish`] returns.
    Deferred(Box<Deferred>),
}

/// What [`State::account`] records of one answered query besides its [`Stats`].
struct Answered<'a> {
    pipeline: Option<&'a Pipeline>,
    cluster: &'a Cluster,
    transport: Transport,
    client: SocketAddr,
    request_size: usize,
    response_size: usize,
    duration: std::time::Duration,
}

/// Why the server is not ready, or that it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The hash of the config being served, once a valid config has been loaded.
    pub config_hash: Option<String>,
    /// Whether the config being served needs the Pod list.
    pub needs_pods: bool,
    /// Whether the config being served needs the Node list.
    pub needs_nodes: bool,
    /// Which watches have completed their initial list.
    pub sync: SyncState,
    /// The hash of a newer config that waits for the Pod list before it is served.
    pub waiting: Option<String>,
    /// Why the last version of the ConfigMap was refused (the config being served is an
    /// older one), until a good version loads.
    pub rejected: Option<Arc<String>>,
    /// The server is shutting down and answers only until its lameduck period ends.
    pub lameduck: bool,
    /// Upstreams that send queries back to this server, as (forwarder domain, address):
    /// reported, without making the server unready (it still answers cluster names).
    pub loops: Vec<(String, SocketAddr)>,
}

impl Readiness {
    /// Ready to take traffic: a config is loaded, every watch it needs has listed, not
    /// shutting down. A watch that only a waiting config needs does not count.
    pub fn is_ready(&self) -> bool {
        self.config_hash.is_some()
            && self.sync.ready(self.needs_pods, self.needs_nodes)
            && !self.lameduck
    }
}

/// Whether [`State::set_pipeline`] swapped the pipeline in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// It is serving.
    Now,
    /// It waits for the Pod list; the previous pipeline keeps serving.
    WhenPodsListed,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded value is replaced whole: a panic elsewhere cannot leave it half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// A state with no config and an empty, unlisted cluster.
    pub fn new(metrics: Metrics, settings: Settings) -> Self {
        Self {
            pipeline: ArcSwapOption::empty(),
            waiting: Mutex::new(None),
            rejected: ArcSwapOption::empty(),
            cluster: ArcSwap::from_pointee(Cluster::new(0)),
            settings,
            metrics: Arc::new(metrics),
            lameduck: AtomicBool::new(false),
            failed: ArcSwapOption::empty(),
            watch_spec: watch::Sender::new(None),
        }
    }

    /// The current pipeline, if a valid config has been loaded.
    pub fn pipeline(&self) -> Option<Arc<Pipeline>> {
        self.pipeline.load_full()
    }

    /// Whether a pipeline built from `config` waits for the Pod list.
    pub fn is_waiting(&self, config: &nameplane_config::ValidatedConfig) -> bool {
        lock(&self.waiting)
            .as_ref()
            .is_some_and(|waiting| waiting.config() == config)
    }

    /// Whether a pipeline waits for the Pod list.
    pub fn has_waiting(&self) -> bool {
        lock(&self.waiting).is_some()
    }

    /// Offers a new pipeline (after a successful reload; it replaces any waiting one) and
    /// tells the watch task what to watch for it. It is swapped in at once unless it needs
    /// the Pod list and the serving snapshot has none that will stay (see the module docs);
    /// it takes over from the pipeline it replaces when it is swapped in
    /// ([`Pipeline::adopt`]).
    pub fn set_pipeline(&self, pipeline: Pipeline) -> Swap {
        self.rejected.store(None);
        let spec = pipeline.watch_spec();
        let mut waiting = lock(&self.waiting);
        // A table in the snapshot stays only if the watch task was not told to drop it.
        let (pods_kept, nodes_kept) = self
            .watch_spec
            .borrow()
            .as_ref()
            .map_or((false, false), |current| (current.pods, current.nodes));
        let sync = self.cluster.load().sync_state();
        let listed = (!spec.pods || (pods_kept && sync.pods == Some(true)))
            && (!spec.nodes || (nodes_kept && sync.nodes == Some(true)));
        let swap = if !listed && self.pipeline.load().is_some() {
            info!(
                hash = pipeline.hash(),
                "the new config needs the Pod or Node list; serving it once the list completes"
            );
            *waiting = Some(pipeline);
            Swap::WhenPodsListed
        } else {
            if let Some(dropped) = waiting.take() {
                info!(
                    hash = dropped.hash(),
                    "a newer config replaces the one waiting for the Pod list"
                );
            }
            self.swap(pipeline);
            Swap::Now
        };
        self.watch_spec.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&spec);
            *current = Some(spec);
            changed
        });
        swap
    }

    /// Swaps `pipeline` in, after it has taken over what it can from the serving one.
    fn swap(&self, mut pipeline: Pipeline) {
        if let Some(current) = self.pipeline.load_full() {
            // Zone serials, upstream health and the cache carry over where they can.
            pipeline.adopt(&current);
        }
        self.metrics
            .config_served(&pipeline.config().raw().server, pipeline.hash());
        let pipeline = Arc::new(pipeline);
        self.pipeline.store(Some(Arc::clone(&pipeline)));
        // Its probes must find it serving: the echo is recognised by the serving pipeline.
        if self.settings.probe_loops {
            pipeline.probe_loops(&self.metrics);
        }
    }

    /// Records why the latest version of the config was refused (shown on `/ready` until a
    /// good version loads).
    pub fn set_rejected(&self, reason: String) {
        self.rejected.store(Some(Arc::new(reason)));
    }

    /// Forgets the last refusal: the ConfigMap holds the config being served again.
    pub fn clear_rejected(&self) {
        self.rejected.store(None);
    }

    /// A receiver of the [`WatchSpec`] of every new pipeline (`None` before the first).
    pub fn watch_specs(&self) -> watch::Receiver<Option<WatchSpec>> {
        self.watch_spec.subscribe()
    }

    /// The current cluster snapshot.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.load_full()
    }

    /// Replaces the cluster snapshot, and swaps in the pipeline waiting for the Pod list
    /// once the snapshot has it.
    pub fn publish_cluster(&self, cluster: Arc<Cluster>) {
        let sync = cluster.sync_state();
        self.cluster.store(cluster);
        let mut waiting = lock(&self.waiting);
        let listed = waiting.as_ref().is_some_and(|pipeline| {
            let spec = pipeline.watch_spec();
            (!spec.pods || sync.pods == Some(true)) && (!spec.nodes || sync.nodes == Some(true))
        });
        if !listed {
            return;
        }
        if let Some(pipeline) = waiting.take() {
            info!(
                hash = pipeline.hash(),
                "the lists are complete; serving the config that waited for them"
            );
            self.swap(pipeline);
        }
    }

    /// The process settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Enters lameduck: `/ready` fails from now on; DNS keeps answering.
    pub fn enter_lameduck(&self) {
        self.lameduck.store(true, Ordering::Relaxed);
    }

    /// Records that the task `task` stopped before shutdown (`why`): logged, counted
    /// (`nameplane_task_failures_total{task}`), and `/health` fails from now on, so the
    /// kubelet restarts the process.
    pub fn fail_health(&self, task: &'static str, why: String) {
        tracing::error!(
            task,
            why,
            "a task stopped while the server runs; /health now fails"
        );
        self.metrics.task_failure(task);
        self.failed.store(Some(Arc::new(format!("{task} {why}"))));
    }

    /// Why the process is unhealthy (`None`: healthy).
    pub fn health_failure(&self) -> Option<Arc<String>> {
        self.failed.load_full()
    }

    /// Whether the server can answer cluster names correctly and should get traffic.
    pub fn readiness(&self) -> Readiness {
        let pipeline = self.pipeline.load();
        Readiness {
            config_hash: pipeline.as_ref().map(|p| p.hash().to_owned()),
            needs_pods: pipeline.as_ref().is_some_and(|p| p.config().needs_pods()),
            needs_nodes: pipeline.as_ref().is_some_and(|p| p.config().needs_nodes()),
            sync: self.cluster.load().sync_state(),
            waiting: lock(&self.waiting).as_ref().map(|p| p.hash().to_owned()),
            rejected: self.rejected.load_full(),
            lameduck: self.lameduck.load(Ordering::Relaxed),
            loops: pipeline.as_ref().map(|p| p.loops()).unwrap_or_default(),
        }
    }

    /// Answers one DNS message from `client`, writing the response at the end of `out`, and
    /// counts (and, with the query log on, logs) it; unless it must wait on an upstream
    /// ([`Reply::Deferred`]).
    pub fn handle(
        &self,
        packet: &[u8],
        transport: Transport,
        client: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Reply {
        let started = Instant::now();
        let start_len = out.len();
        let pipeline = self.pipeline.load();
        let cluster = self.cluster.load();
        let sent = pipeline::answer(
            packet,
            transport,
            pipeline.as_deref(),
            &Sources {
                cluster: &cluster,
                client,
                metrics: &self.metrics,
            },
            &self.settings,
            out,
        );
        // Only with `rateLimit` in the config: UDP answers to clients that are not one
        // identified Pod count against it.
        let limiter = || match pipeline.as_deref().and_then(Pipeline::rate_limiter) {
            Some(limiter) if transport == Transport::Udp && unidentified(&cluster, client) => {
                Some(limiter)
            }
            _ => None,
        };
        let (stats, more, refresh) = match sent {
            Sent::Dropped => return Reply::Now(false),
            Sent::Deferred(deferred) => {
                let mut deferred = deferred;
                deferred.limit_by(limiter().cloned());
                return Reply::Deferred(deferred);
            }
            Sent::Replied {
                stats,
                more,
                refresh,
            } => (stats, more, refresh),
        };
        // A prefetch runs on its own; its slot in the forwarder's in-flight limit bounds
        // how many can. Without a runtime (some unit tests) it is dropped.
        if let Some(refresh) = refresh
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let metrics = Arc::clone(&self.metrics);
            runtime.spawn(async move { refresh.refresh(&metrics).await });
        }
        if more.is_empty() && pipeline.as_deref().is_some_and(Pipeline::load_balance) {
            crate::loadbalance::shuffle(out, start_len);
        }
        self.account(
            &Answered {
                pipeline: pipeline.as_deref(),
                cluster: &cluster,
                transport,
                client,
                request_size: packet.len(),
                response_size: out.len() - start_len,
                duration: started.elapsed(),
            },
            &stats,
            // The name, when the query log wants it and the stats do not have it: read
            // from the packet again only then (nothing is logged on the usual path).
            || {
                crate::request::parse(packet, transport)
                    .ok()
                    .map(|r| r.name)
            },
        );
        if let Some(limiter) = limiter()
            && !self.rate_limit(limiter, client, out, start_len)
        {
            return Reply::Now(false);
        }
        if more.is_empty() {
            Reply::Now(true)
        } else {
            Reply::Stream(more)
        }
    }

    /// Counts one answered query, and logs it when `--query-log` or the config's `logging`
    /// asks for it; `name` gives the question name when `stats` does not carry it.
    fn account(
        &self,
        answered: &Answered<'_>,
        stats: &Stats,
        name: impl FnOnce() -> Option<QName>,
    ) {
        self.metrics.query(&QueryRecord {
            transport: answered.transport,
            client: answered.client,
            qtype: stats.qtype,
            rcode: stats.rcode,
            origin: stats.origin,
            dnssec_ok: stats.dnssec_ok,
            request_size: answered.request_size,
            response_size: answered.response_size,
            duration: answered.duration,
        });
        // One branch when nothing is logged: no flag, and no `logging` in the config.
        let logged = self.settings.query_log
            || answered
                .pipeline
                .and_then(Pipeline::query_log)
                .is_some_and(|log| log.take(stats.rcode, stats.denied_by.is_some()));
        if !logged {
            return;
        }
        let read;
        let name = match &stats.name {
            Some(name) => Some(name),
            None => {
                read = name();
                read.as_ref()
            }
        };
        query_log::write(
            &query_log::Line {
                client: answered.client,
                transport: answered.transport,
                name,
                qtype: stats.qtype,
                rcode: stats.rcode,
                truncated: stats.truncated,
                size: answered.response_size,
                duration: answered.duration,
                denied_by: stats.denied_by.as_deref(),
            },
            answered.cluster,
        );
    }

    /// Counts the answer at `out[start..]` against `limiter`: `false` when it must not be
    /// sent (and it is removed from `out`); a slipped answer is rewritten in place.
    fn rate_limit(
        &self,
        limiter: &RateLimiter,
        client: SocketAddr,
        out: &mut Vec<u8>,
        start: usize,
    ) -> bool {
        let Some(response) = out.get(start..) else {
            return true;
        };
        match limiter.check(client.ip(), response) {
            Verdict::Send => true,
            Verdict::Drop => {
                self.metrics.rate_limited(false);
                out.truncate(start);
                false
            }
            Verdict::Slip => {
                self.metrics.rate_limited(true);
                rate_limit::slip(out, start);
                true
            }
        }
    }

    /// Finishes a query that waited on an upstream and counts it; returns the response,
    /// empty when the rate limit drops it (UDP only: send nothing).
    pub async fn finish(&self, deferred: Box<Deferred>) -> Vec<u8> {
        let transport = deferred.query().transport();
        let client = deferred.client();
        let started = deferred.started();
        let request_size = deferred.query().packet().len();
        let limiter = deferred.limiter().cloned();
        let pipeline = self.pipeline.load();
        // The question, kept only when this answer may be logged.
        let asked = (self.settings.query_log
            || pipeline.as_deref().and_then(Pipeline::query_log).is_some())
        .then(|| deferred.query().name().clone());
        let finished = deferred.resolve(&self.metrics, self, &self.settings).await;
        let stats = finished.stats;
        let mut response = finished.response;
        if pipeline.as_deref().is_some_and(Pipeline::load_balance) {
            crate::loadbalance::shuffle(&mut response, 0);
        }
        self.account(
            &Answered {
                pipeline: pipeline.as_deref(),
                cluster: &self.cluster.load(),
                transport,
                client,
                request_size,
                response_size: response.len(),
                duration: started.elapsed(),
            },
            &stats,
            move || asked,
        );
        if let Some(limiter) = limiter
            && !self.rate_limit(&limiter, client, &mut response, 0)
        {
            response.clear();
        }
        response
    }

    /// Answers one DNS message completely, waiting on upstreams if needed: the messages to
    /// send, in order (none: drop). For transports that handle one query at a time.
    pub async fn answer(
        &self,
        packet: &[u8],
        transport: Transport,
        client: SocketAddr,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self.handle(packet, transport, client, &mut out) {
            Reply::Now(true) => vec![out],
            Reply::Now(false) => Vec::new(),
            Reply::Stream(more) => {
                let mut messages = vec![out];
                messages.extend(more);
                messages
            }
            Reply::Deferred(deferred) => {
                let response = self.finish(deferred).await;
                if response.is_empty() {
                    Vec::new()
                } else {
                    vec![response]
                }
            }
        }
    }
}

/// Whether `client` is not one identified Pod (the rate limit's clients). Nobody is, until
/// the Pod list is complete: a Pod is never limited for the server not knowing it yet.
fn unidentified(cluster: &Cluster, client: SocketAddr) -> bool {
    cluster.sync_state().pods == Some(true)
        && cluster
            .pods
            .as_ref()
            .is_some_and(|pods| pods.client(&client.ip().to_canonical()).is_none())
}

impl Chase for State {
    fn chase<'a>(
        &'a self,
        packet: Vec<u8>,
        client: SocketAddr,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Option<Forwarded>> {
        Box::pin(async move {
            let pipeline = self.pipeline.load_full()?;
            let cluster = self.cluster.load_full();
            let request = crate::request::parse(&packet, Transport::Tcp).ok()?;
            let flow = pipeline.resolve(
                &request,
                &Sources {
                    cluster: &cluster,
                    client,
                    metrics: &self.metrics,
                },
                &self.settings,
            );
            match flow {
                // Local stages answer with borrowed records: the chase keeps them owned.
                Flow::Answer(answer) => crate::wire::writer::to_reply(&request, &answer),
                Flow::Cached(hit) | Flow::CachedAndRefresh(hit, _) => Some(hit.reply_for()),
                Flow::Upstream(upstream) => {
                    let query = crate::request::OwnedRequest::new(&packet, &request)?;
                    Some(
                        Deferred::new(query, upstream, client)
                            .reply(&self.metrics, self, depth)
                            .await,
                    )
                }
                Flow::Skip | Flow::Transfer(_) => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::query_bytes;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RecordType;
    use nameplane_config::ValidatedConfig;

    fn state() -> State {
        State::new(
            Metrics::new("127.0.0.1:53".parse().expect("addr")),
            Settings::default(),
        )
    }

    fn pipeline(json: &str) -> Pipeline {
        hashed(json, "h")
    }

    fn hashed(json: &str, hash: &str) -> Pipeline {
        let config = ValidatedConfig::from_json(json).expect("valid");
        Pipeline::build(config, hash.into()).expect("builds")
    }

    const CONFIG: &str = r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5}}"#;

    /// [`CONFIG`] with a policy for namespace `t`, which needs the Pod list.
    const POLICY: &str = r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5},
        "clients":{"unidentified":"deny"},
        "policies":[{"source":"t/p","namespace":"t","rules":[],"defaultAction":"deny","deniedResponse":"refused"}]}"#;

    /// A listed cluster with Service `web` in `other` and, when `pods` is `Some(listed)`, a
    /// Pod table (with Pod `other/client` at 10.244.0.9 once listed).
    fn cluster(pods: Option<bool>) -> Arc<Cluster> {
        let mut cluster = Cluster::new(1);
        cluster.services.upsert(
            "other",
            "web",
            crate::cluster::ServiceEntry::cluster_ip(
                ["10.96.0.7".parse().expect("ip")],
                Vec::new(),
            ),
        );
        cluster.namespaces.add("other");
        cluster.set_synced(true);
        if let Some(listed) = pods {
            cluster.set_pods_watched(true);
            if listed {
                cluster.set_synced(true);
                let pod = Arc::new(crate::cluster::index::PodClient {
                    namespace: "other".into(),
                    name: "client".into(),
                    running: true,
                    ..Default::default()
                });
                if let Some(table) = cluster.pods.as_mut() {
                    table.replace(None, Some((&["10.244.0.9".parse().expect("ip")], &pod)));
                }
            }
        }
        Arc::new(cluster)
    }

    /// The rcode of `web.other.svc.cluster.local` A asked from the Pod's address.
    fn ask(state: &State) -> ResponseCode {
        let client = "10.244.0.9:4000".parse().expect("addr");
        let bytes = query_bytes("web.other.svc.cluster.local.", RecordType::A, None);
        let mut out = Vec::new();
        state.handle(&bytes, Transport::Udp, client, &mut out);
        Message::from_vec(&out)
            .expect("decodes")
            .metadata
            .response_code
    }

    /// `loadBalance: roundRobin` shuffles the addresses of every response (here a zone's);
    /// without it their order is fixed.
    #[test]
    fn round_robin_shuffles_answers_only_when_on() {
        let zone = r#""zones":[{"name":"example.org","source":"a/z","ttlSeconds":60,"records":[
            {"name":"www.example.org","type":"A","ttlSeconds":60,
             "values":["192.0.2.1","192.0.2.2","192.0.2.3","192.0.2.4","192.0.2.5"]}]}]"#;
        let orders = |extra: &str| {
            let state = state();
            let json = format!(
                r#"{{"version":1,"server":"a/b","kubernetes":{{"clusterDomain":"cluster.local","ttlSeconds":5}},{zone}{extra}}}"#
            );
            state.set_pipeline(pipeline(&json));
            state.publish_cluster(cluster(None));
            let bytes = query_bytes("www.example.org.", RecordType::A, None);
            (0..40)
                .map(|_| {
                    let mut out = Vec::new();
                    state.handle(
                        &bytes,
                        Transport::Udp,
                        "127.0.0.1:4000".parse().expect("addr"),
                        &mut out,
                    );
                    let message = Message::from_vec(&out).expect("decodes");
                    assert_eq!(message.answers.len(), 5);
                    message
                        .answers
                        .iter()
                        .map(|r| r.data.to_string())
                        .collect::<Vec<_>>()
                })
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        assert_eq!(orders(""), 1);
        assert!(orders(r#","loadBalance":"roundRobin""#) > 5);
    }

    #[test]
    fn a_config_that_turns_the_pod_watch_on_waits_for_the_pod_list() {
        let state = state();
        let mut specs = state.watch_specs();
        assert_eq!(state.set_pipeline(hashed(CONFIG, "old")), Swap::Now);
        state.publish_cluster(cluster(None));
        assert!(state.readiness().is_ready());
        assert_eq!(ask(&state), ResponseCode::NoError);

        // The first policy: the Pod watch starts, the old config keeps serving, ready.
        assert_eq!(
            state.set_pipeline(hashed(POLICY, "new")),
            Swap::WhenPodsListed
        );
        assert!(specs.borrow_and_update().as_ref().is_some_and(|s| s.pods));
        state.publish_cluster(cluster(Some(false)));
        let readiness = state.readiness();
        assert_eq!(readiness.config_hash.as_deref(), Some("old"));
        assert_eq!(readiness.waiting.as_deref(), Some("new"));
        assert!(readiness.is_ready(), "{readiness:?}");
        assert_eq!(
            ask(&state),
            ResponseCode::NoError,
            "not SERVFAIL, not REFUSED"
        );

        // The list completes: the new config serves, and knows the Pod (not selected by
        // the policy of `t`, so it resolves).
        state.publish_cluster(cluster(Some(true)));
        let readiness = state.readiness();
        assert_eq!(readiness.config_hash.as_deref(), Some("new"));
        assert_eq!(readiness.waiting, None);
        assert!(readiness.is_ready(), "{readiness:?}");
        assert_eq!(ask(&state), ResponseCode::NoError);

        // Pods off, then on again before the watch task dropped its table: the table is
        // about to go, so the config waits, and a republished snapshot swaps it in.
        assert_eq!(state.set_pipeline(hashed(CONFIG, "off")), Swap::Now);
        assert_eq!(
            state.set_pipeline(hashed(POLICY, "on")),
            Swap::WhenPodsListed
        );
        state.publish_cluster(cluster(Some(true)));
        assert_eq!(state.readiness().config_hash.as_deref(), Some("on"));

        // Pods listed and kept: a config that needs them is swapped in at once; one that
        // does not replaces a waiting one.
        assert_eq!(state.set_pipeline(hashed(POLICY, "again")), Swap::Now);
        state.publish_cluster(cluster(None));
        assert_eq!(state.set_pipeline(hashed(CONFIG, "x")), Swap::Now);
        assert_eq!(
            state.set_pipeline(hashed(POLICY, "y")),
            Swap::WhenPodsListed
        );
        assert_eq!(state.set_pipeline(hashed(CONFIG, "z")), Swap::Now);
        let readiness = state.readiness();
        assert_eq!(
            (readiness.config_hash.as_deref(), readiness.waiting),
            (Some("z"), None)
        );
        assert!(!specs.borrow_and_update().as_ref().is_some_and(|s| s.pods));
    }

    #[test]
    fn a_first_config_that_needs_pods_serves_at_once_but_not_ready_until_listed() {
        let state = state();
        state.publish_cluster(cluster(Some(false)));
        assert_eq!(state.set_pipeline(hashed(POLICY, "first")), Swap::Now);
        let readiness = state.readiness();
        assert_eq!(readiness.config_hash.as_deref(), Some("first"));
        assert!(!readiness.is_ready(), "{readiness:?}");
        assert_eq!(
            ask(&state),
            ResponseCode::ServFail,
            "no verdict about a client it cannot know yet"
        );
        state.publish_cluster(cluster(Some(true)));
        assert!(state.readiness().is_ready());
        assert_eq!(ask(&state), ResponseCode::NoError);
    }

    #[test]
    fn ready_needs_config_sync_and_no_lameduck() {
        let state = state();
        assert!(!state.readiness().is_ready());
        state.set_pipeline(pipeline(CONFIG));
        let readiness = state.readiness();
        assert_eq!(readiness.config_hash.as_deref(), Some("h"));
        assert!(!readiness.sync.all());
        assert!(!readiness.is_ready());
        let mut cluster = Cluster::new(1);
        cluster.set_synced(true);
        state.publish_cluster(Arc::new(cluster));
        assert!(state.readiness().is_ready());
        state.enter_lameduck();
        assert!(!state.readiness().is_ready());
        assert!(
            state
                .metrics()
                .encode()
                .contains(r#"nameplane_config_info{server="a/b",hash="h"} 1"#)
        );
    }

    #[test]
    fn pipelines_publish_their_watch_spec() {
        let state = state();
        let mut specs = state.watch_specs();
        assert_eq!(*specs.borrow_and_update(), None);
        state.set_pipeline(pipeline(CONFIG));
        assert!(specs.has_changed().expect("open"));
        assert_eq!(*specs.borrow_and_update(), Some(WatchSpec::default()));
        // Another TTL does not touch the watches.
        state.set_pipeline(pipeline(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":9}}"#,
        ));
        assert!(!specs.has_changed().expect("open"));
        state.set_pipeline(pipeline(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":9,
                "pods":"verified","labelSelector":{"matchLabels":{"dns":"on"}}}}"#,
        ));
        assert_eq!(
            *specs.borrow_and_update(),
            Some(WatchSpec {
                label_selector: Some("dns=on".into()),
                namespace_selector: None,
                pods: true,
                nodes: false,
            })
        );
        // A node class fed by the Nodes: both watches.
        state.set_pipeline(pipeline(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":9},
                "clients":{"unidentified":"deny","nodes":{"action":"allow","fromNodes":true}}}"#,
        ));
        assert_eq!(
            *specs.borrow_and_update(),
            Some(WatchSpec {
                pods: true,
                nodes: true,
                ..WatchSpec::default()
            })
        );
    }

    #[test]
    fn handle_answers_and_counts() {
        let state = state();
        let client = "127.0.0.1:4000".parse().expect("addr");
        let bytes = query_bytes("example.com.", RecordType::A, None);
        let mut out = Vec::new();
        assert!(matches!(
            state.handle(&bytes, Transport::Udp, client, &mut out),
            Reply::Now(true)
        ));
        let message = Message::from_vec(&out).expect("decodes");
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        let text = state.metrics().encode();
        assert!(text.contains(r#"rcode="SERVFAIL""#), "{text}");
        assert!(
            text.contains("coredns_dns_request_duration_seconds_count"),
            "{text}"
        );
        let mut out = Vec::new();
        assert!(matches!(
            state.handle(&[1], Transport::Udp, client, &mut out),
            Reply::Now(false)
        ));
        assert!(out.is_empty());
    }
}
