//! The state shared by the control plane (config reload, watches), the query path and the
//! admin server.
//!
//! Two snapshots, each replaced whole by its single writer and read with `ArcSwap::load`
//! (lock-free; a query keeps the snapshots it loaded until it is answered, however many swaps
//! happen meanwhile):
//!
//! - the [`Pipeline`] built from the last valid config (`None` before the first one), written
//!   by [`crate::reload`];
//! - the [`Cluster`], written by [`crate::kubernetes::watch`].
//!
//! Setting a pipeline also publishes its [`WatchSpec`] to the watch task, which restarts its
//! watches when the selectors or the need for Pods change.
//!
//! [`State::handle`] is the one entry point of the transports: load, answer, count, log. A
//! query that must wait on an upstream comes back as [`Reply::Later`]; the transport
//! finishes it with [`State::finish`] off its receive loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;
use tracing::info;

use crate::kubernetes::index::{Cluster, SyncState};
use crate::metrics::{Metrics, QueryRecord, rcode_label};
use crate::pipeline::forward::{Chase, Deferred, Reply as Forwarded};
use crate::pipeline::{self, Flow, Pipeline, Settings, Sources, WatchSpec};
use crate::request::Transport;

/// Everything the tasks of one server share.
#[derive(Debug)]
pub struct State {
    pipeline: ArcSwapOption<Pipeline>,
    cluster: ArcSwap<Cluster>,
    settings: Settings,
    metrics: Arc<Metrics>,
    lameduck: AtomicBool,
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
    Later(Box<Later>),
}

/// A query waiting on an upstream, with what its metrics need.
#[derive(Debug)]
pub struct Later {
    deferred: Deferred,
    client: SocketAddr,
    started: Instant,
    request_size: usize,
}

/// Why the server is not ready, or that it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The hash of the config being served, once a valid config has been loaded.
    pub config_hash: Option<String>,
    /// Which watches have completed their initial list.
    pub sync: SyncState,
    /// The server is shutting down and answers only until its lameduck period ends.
    pub lameduck: bool,
}

impl Readiness {
    /// Ready to take traffic: a config is loaded, every watch has listed, not shutting down.
    pub fn is_ready(&self) -> bool {
        self.config_hash.is_some() && self.sync.all() && !self.lameduck
    }
}

impl State {
    /// A state with no config and an empty, unlisted cluster.
    pub fn new(metrics: Metrics, settings: Settings) -> Self {
        Self {
            pipeline: ArcSwapOption::empty(),
            cluster: ArcSwap::from_pointee(Cluster::new(0)),
            settings,
            metrics: Arc::new(metrics),
            lameduck: AtomicBool::new(false),
            watch_spec: watch::Sender::new(None),
        }
    }

    /// The current pipeline, if a valid config has been loaded.
    pub fn pipeline(&self) -> Option<Arc<Pipeline>> {
        self.pipeline.load_full()
    }

    /// Replaces the pipeline (after a successful reload) and tells the watch task what to
    /// watch for it.
    pub fn set_pipeline(&self, pipeline: Arc<Pipeline>) {
        let spec = pipeline.watch_spec();
        self.metrics
            .config_served(&pipeline.config().raw().server, pipeline.hash());
        self.pipeline.store(Some(pipeline));
        self.watch_spec.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&spec);
            *current = Some(spec);
            changed
        });
    }

    /// A receiver of the [`WatchSpec`] of every new pipeline (`None` before the first).
    pub fn watch_specs(&self) -> watch::Receiver<Option<WatchSpec>> {
        self.watch_spec.subscribe()
    }

    /// The current cluster snapshot.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.load_full()
    }

    /// Replaces the cluster snapshot.
    pub fn publish_cluster(&self, cluster: Arc<Cluster>) {
        self.cluster.store(cluster);
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

    /// Whether the server can answer cluster names correctly and should get traffic.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            config_hash: self.pipeline.load().as_ref().map(|p| p.hash().to_owned()),
            sync: self.cluster.load().sync_state(),
            lameduck: self.lameduck.load(Ordering::Relaxed),
        }
    }

    /// Answers one DNS message from `client`, writing the response at the end of `out`, and
    /// counts (and, with the query log on, logs) it; unless it must wait on an upstream
    /// ([`Reply::Later`]).
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
        let mut outcome = pipeline::answer(
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
        // A prefetch runs on its own; its slot in the forwarder's in-flight limit bounds
        // how many can. Without a runtime (some unit tests) it is dropped.
        if let Some(refresh) = outcome.refresh.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let metrics = Arc::clone(&self.metrics);
            runtime.spawn(async move { refresh.refresh(&metrics, client).await });
        }
        if let Some(deferred) = outcome.pending {
            return Reply::Later(Box::new(Later {
                deferred,
                client,
                started,
                request_size: packet.len(),
            }));
        }
        if !outcome.replied {
            return Reply::Now(false);
        }
        let duration = started.elapsed();
        let response_size = out.len() - start_len;
        self.metrics.query(&QueryRecord {
            transport,
            client,
            qtype: outcome.qtype,
            rcode: outcome.rcode,
            origin: outcome.origin,
            dnssec_ok: outcome.dnssec_ok,
            request_size: packet.len(),
            response_size,
            duration,
        });
        if let Some(name) = &outcome.name {
            info!(
                target: "nameplane_dns::query",
                client = %client,
                proto = transport.label(),
                name = %name,
                r#type = %outcome.qtype.map(|t| t.to_string()).unwrap_or_default(),
                rcode = rcode_label(outcome.rcode),
                truncated = outcome.truncated,
                size = response_size,
                duration_us = duration.as_micros() as u64,
                "query"
            );
        }
        if outcome.more.is_empty() {
            Reply::Now(true)
        } else {
            Reply::Stream(outcome.more)
        }
    }

    /// Finishes a query that waited on an upstream and counts it; returns the response.
    pub async fn finish(&self, later: Box<Later>) -> Vec<u8> {
        let Later {
            deferred,
            client,
            started,
            request_size,
        } = *later;
        let transport = deferred.transport();
        let resolved = deferred
            .resolve(&self.metrics, self, client, &self.settings)
            .await;
        self.metrics.query(&QueryRecord {
            transport,
            client,
            qtype: Some(resolved.qtype),
            rcode: resolved.rcode,
            origin: resolved.origin,
            dnssec_ok: resolved.dnssec_ok,
            request_size,
            response_size: resolved.response.len(),
            duration: started.elapsed(),
        });
        resolved.response
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
            Reply::Later(later) => vec![self.finish(later).await],
        }
    }
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
                Flow::Answer(answer) => {
                    // Local stages answer with borrowed records: encode, then read back.
                    let mut out = Vec::new();
                    crate::response::encode(&request, &answer, u16::MAX, &mut out);
                    Forwarded::from_wire(&out)
                }
                Flow::Cached(hit) | Flow::CachedAndRefresh(hit, _) => Some(hit.reply_for()),
                Flow::Forward(pending) => {
                    Deferred::new(&packet, Transport::Tcp, pending)
                        .reply(&self.metrics, self, client, depth)
                        .await
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

    fn pipeline(json: &str) -> Arc<Pipeline> {
        let config = ValidatedConfig::from_json(json).expect("valid");
        Arc::new(Pipeline::build(config, "h".into()).expect("builds"))
    }

    const CONFIG: &str = r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5}}"#;

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
