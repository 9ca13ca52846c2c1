//! The state shared by the control plane (watches), the query path and the admin server.
//!
//! Two snapshots, each replaced whole by its single writer and read with `ArcSwap::load`
//! (lock-free; a query keeps the snapshots it loaded until it is answered, however many swaps
//! happen meanwhile):
//!
//! - the [`Pipeline`] built from the last valid config (`None` before the first one), written
//!   by [`crate::reload`];
//! - the [`ServiceIndex`], written by [`crate::kubernetes::watch`].
//!
//! [`State::handle`] is the one entry point of the transports: load, answer, count. A query
//! that must wait on an upstream comes back as [`Reply::Later`]; the transport finishes it
//! with [`State::finish`] off its receive loop.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::kubernetes::ServiceIndex;
use crate::metrics::Metrics;
use crate::pipeline::forward::{Chase, Deferred};
use crate::pipeline::{self, Flow, Pipeline, Sources};
use crate::request::Request;
use crate::request::Transport;
use crate::response::Answer;

/// Everything the tasks of one server share.
#[derive(Debug)]
pub struct State {
    pipeline: ArcSwapOption<Pipeline>,
    services: ArcSwap<ServiceIndex>,
    metrics: Metrics,
}

/// What the transport sends for one query.
#[derive(Debug)]
pub enum Reply {
    /// This response now, or nothing (the packet is dropped).
    Now(Option<Vec<u8>>),
    /// Several messages now, in order (a zone transfer; TCP only).
    Stream(Vec<Vec<u8>>),
    /// The answer waits on an upstream: send what [`State::finish`] returns.
    Later(Box<Later>),
}

/// A query waiting on an upstream, with what its metrics need.
#[derive(Debug)]
pub struct Later {
    deferred: Deferred,
    client: SocketAddr,
}

/// Why the server is not ready, or that it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// A valid config has been loaded.
    pub config_loaded: bool,
    /// The Service watch has completed its initial list.
    pub services_synced: bool,
}

impl Readiness {
    /// Ready to serve: both conditions hold.
    pub fn is_ready(self) -> bool {
        self.config_loaded && self.services_synced
    }
}

impl State {
    /// A state with no config and an empty, unsynced Service index.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            pipeline: ArcSwapOption::empty(),
            services: ArcSwap::from_pointee(ServiceIndex::new(0)),
            metrics,
        }
    }

    /// The current pipeline, if a valid config has been loaded.
    pub fn pipeline(&self) -> Option<Arc<Pipeline>> {
        self.pipeline.load_full()
    }

    /// Replaces the pipeline (after a successful reload).
    pub fn set_pipeline(&self, pipeline: Arc<Pipeline>) {
        self.pipeline.store(Some(pipeline));
    }

    /// The current Service index.
    pub fn services(&self) -> Arc<ServiceIndex> {
        self.services.load_full()
    }

    /// Replaces the Service index.
    pub fn publish_services(&self, services: Arc<ServiceIndex>) {
        self.services.store(services);
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the server can answer cluster names correctly.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            config_loaded: self.pipeline.load().is_some(),
            services_synced: self.services.load().synced(),
        }
    }

    /// Answers one DNS message from `client` and counts it, unless it must wait on an
    /// upstream ([`Reply::Later`]).
    pub fn handle(&self, packet: &[u8], transport: Transport, client: SocketAddr) -> Reply {
        let pipeline = self.pipeline.load();
        let services = self.services.load();
        let outcome = pipeline::answer(
            packet,
            transport,
            pipeline.as_deref(),
            &Sources {
                services: &services,
                client,
                metrics: &self.metrics,
            },
        );
        if let Some(deferred) = outcome.pending {
            return Reply::Later(Box::new(Later { deferred, client }));
        }
        if outcome.response.is_some() {
            self.metrics.request(transport, client, outcome.qtype);
            self.metrics.response(outcome.rcode, outcome.origin);
        }
        match outcome.response {
            Some(first) if !outcome.more.is_empty() => {
                let mut messages = Vec::with_capacity(outcome.more.len() + 1);
                messages.push(first);
                messages.extend(outcome.more);
                Reply::Stream(messages)
            }
            response => Reply::Now(response),
        }
    }

    /// Finishes a query that waited on an upstream and counts it.
    pub async fn finish(&self, later: Box<Later>) -> Vec<u8> {
        let transport = later.deferred.transport();
        let resolved = later
            .deferred
            .resolve(&self.metrics, self, later.client)
            .await;
        self.metrics
            .request(transport, later.client, Some(resolved.qtype));
        self.metrics.response(resolved.rcode, resolved.origin);
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
        match self.handle(packet, transport, client) {
            Reply::Now(response) => response.into_iter().collect(),
            Reply::Stream(messages) => messages,
            Reply::Later(later) => vec![self.finish(later).await],
        }
    }
}

impl Chase for State {
    fn chase<'a>(
        &'a self,
        request: Request,
        client: SocketAddr,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Option<Answer>> {
        Box::pin(async move {
            let pipeline = self.pipeline.load_full()?;
            let services = self.services.load_full();
            let flow = pipeline.resolve(
                &request,
                &Sources {
                    services: &services,
                    client,
                    metrics: &self.metrics,
                },
            );
            match flow {
                Flow::Answer(answer) => Some(answer),
                Flow::Forward(pending) => Some(
                    Deferred::new(request, pending)
                        .answer(&self.metrics, self, client, depth)
                        .await
                        .1,
                ),
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
        State::new(Metrics::new("127.0.0.1:53".parse().expect("addr")))
    }

    #[test]
    fn ready_needs_config_and_synced_services() {
        let state = state();
        assert!(!state.readiness().is_ready());
        let config = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5}}"#,
        )
        .expect("valid");
        state.set_pipeline(Arc::new(
            Pipeline::build(config, "h".into()).expect("builds"),
        ));
        assert_eq!(
            state.readiness(),
            Readiness {
                config_loaded: true,
                services_synced: false
            }
        );
        let mut index = ServiceIndex::new(1);
        index.set_synced(true);
        state.publish_services(Arc::new(index));
        assert!(state.readiness().is_ready());
    }

    #[test]
    fn handle_answers_and_counts() {
        let state = state();
        let client = "127.0.0.1:4000".parse().expect("addr");
        let bytes = query_bytes("example.com.", RecordType::A, None);
        let Reply::Now(Some(response)) = state.handle(&bytes, Transport::Udp, client) else {
            panic!("an immediate response");
        };
        let message = Message::from_vec(&response).expect("decodes");
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        assert!(state.metrics().encode().contains(r#"rcode="SERVFAIL""#));
        assert!(matches!(
            state.handle(&[1], Transport::Udp, client),
            Reply::Now(None)
        ));
    }
}
