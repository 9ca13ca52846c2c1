//! The answer function: request bytes and the current snapshots in, response bytes out.
//!
//! [`answer`] is pure: no sockets, no clocks, no locks. The transports call it (through
//! [`crate::state::State::handle`]); the tests call it directly. Its steps:
//!
//! 1. [`request::parse`]: drop, FORMERR, NOTIMP, or a [`Request`];
//! 2. EDNS version above 0: BADVERS (RFC 6891 §6.1.3);
//! 3. no valid config loaded yet: SERVFAIL;
//! 4. the [`Pipeline`]'s stages, in order; the first one that returns [`Flow::Answer`] wins;
//! 5. no stage owns the name: REFUSED (forwarding will take this place);
//! 6. [`response::encode`] into the caller's buffer.
//!
//! A [`Pipeline`] is built from one [`ValidatedConfig`] (parse → validate → build: three
//! types) and replaced whole on reload. Its stage order is fixed here, never by the config
//! (CoreDNS `plugin.cfg`). The order this slice starts and later issues fill in:
//!
//! ```text
//! policy → rewrite → cache → kubernetes → zones → forward
//! ```
//!
//! Dispatch is a `match` over the closed [`Stage`] enum: no trait objects, no async on the
//! query path.

pub mod kubernetes;

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nameplane_config::ValidatedConfig;

use crate::kubernetes::index::Cluster;
use crate::request::{self, DEFAULT_MAX_UDP_PAYLOAD, QName, Rejected, Request, Transport};
use crate::response::{self, Answer, Origin};

/// A built configuration: the stages that answer queries, in order.
#[derive(Debug)]
pub struct Pipeline {
    config: ValidatedConfig,
    hash: String,
    stages: Box<[Stage]>,
}

/// Why a validated config could not be turned into a [`Pipeline`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Kubernetes stage refused its settings.
    #[error("kubernetes: {0}")]
    Kubernetes(String),
}

/// What the Kubernetes watches must select, derived from the config. A change restarts the
/// watches (each re-lists while the previous data keeps serving).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSpec {
    /// Label selector for Services and EndpointSlices (API server syntax).
    pub label_selector: Option<String>,
    /// Label selector for Namespaces.
    pub namespace_selector: Option<String>,
    /// Whether Pods are watched (`pods: verified`).
    pub pods: bool,
}

impl Pipeline {
    /// Builds the stages for `config`. `hash` identifies the config in logs, metrics and
    /// `/ready` (the operator's content hash).
    pub fn build(config: ValidatedConfig, hash: String) -> Result<Self, BuildError> {
        let stages = vec![Stage::Kubernetes(kubernetes::KubernetesStage::new(
            &config,
        )?)];
        Ok(Self {
            config,
            hash,
            stages: stages.into_boxed_slice(),
        })
    }

    /// The config this pipeline was built from.
    pub fn config(&self) -> &ValidatedConfig {
        &self.config
    }

    /// The content hash of the config.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What the watches must select for this config.
    pub fn watch_spec(&self) -> WatchSpec {
        let k = self.config.kubernetes();
        let query = |selector: &Option<nameplane_config::LabelSelector>| {
            selector
                .as_ref()
                .map(|s| s.to_query())
                .filter(|q| !q.is_empty())
        };
        WatchSpec {
            label_selector: query(&k.label_selector),
            namespace_selector: query(&k.namespace_selector),
            pods: self.stages.iter().any(|stage| match stage {
                Stage::Kubernetes(stage) => stage.needs_pods(),
            }),
        }
    }

    /// Runs the stages in order; REFUSED when none owns the name.
    pub fn resolve<'a>(
        &'a self,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &'a Settings,
    ) -> Answer<'a> {
        for stage in &self.stages {
            match stage.handle(request, sources, settings) {
                Flow::Answer(answer) => return answer,
                Flow::Skip => {}
            }
        }
        Answer::rcode(ResponseCode::Refused, Origin::Server)
    }
}

/// One step of the pipeline.
#[derive(Debug)]
pub enum Stage {
    /// Cluster names and cluster addresses from the Kubernetes watches.
    Kubernetes(kubernetes::KubernetesStage),
}

impl Stage {
    fn handle<'a>(
        &'a self,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &'a Settings,
    ) -> Flow<'a> {
        match self {
            Self::Kubernetes(stage) => stage.handle(request, sources.cluster, &settings.dns_ips),
        }
    }
}

/// What a stage did with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow<'a> {
    /// The stage answered; later stages are not asked.
    Answer(Answer<'a>),
    /// Not this stage's name; ask the next one.
    Skip,
}

/// The data the stages read that changes independently of the config (each from its own
/// watch), as one consistent set of snapshots for the duration of a query.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// The cluster, from the Kubernetes watches.
    pub cluster: &'a Cluster,
}

/// Settings of the process (flags), fixed for its lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Largest UDP response, and the payload size advertised in EDNS.
    pub max_udp_payload: u16,
    /// This server's own addresses (its Pod IPs): `ns.dns.<zone>` answers the Service in
    /// front of them.
    pub dns_ips: Vec<IpAddr>,
    /// Whether each query is logged.
    pub query_log: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            dns_ips: Vec::new(),
            query_log: false,
        }
    }
}

/// The result of [`answer`]: what was sent, and what the metrics and logs need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether a response was written (`false`: the packet is dropped).
    pub replied: bool,
    /// The question type, when the query parsed.
    pub qtype: Option<RecordType>,
    /// The response code sent (meaningless when dropped).
    pub rcode: ResponseCode,
    /// Who answered.
    pub origin: Origin,
    /// Whether TC was set.
    pub truncated: bool,
    /// Whether the query had the DO bit.
    pub dnssec_ok: bool,
    /// The question name, only when [`Settings::query_log`] is on.
    pub name: Option<QName>,
}

impl Outcome {
    fn dropped() -> Self {
        Self {
            replied: false,
            qtype: None,
            rcode: ResponseCode::FormErr,
            origin: Origin::Server,
            truncated: false,
            dnssec_ok: false,
            name: None,
        }
    }
}

/// Answers one DNS message, writing the response at the end of `out`. Never panics,
/// whatever `packet` holds.
///
/// `pipeline` is `None` until a valid config has been loaded.
pub fn answer(
    packet: &[u8],
    transport: Transport,
    pipeline: Option<&Pipeline>,
    sources: &Sources<'_>,
    settings: &Settings,
    out: &mut Vec<u8>,
) -> Outcome {
    let request = match request::parse(packet, transport) {
        Ok(request) => request,
        Err(Rejected::Drop) => return Outcome::dropped(),
        Err(Rejected::Reply(reply)) => {
            out.extend_from_slice(&response::encode_error(&reply));
            return Outcome {
                replied: true,
                rcode: ResponseCode::from(0, reply.rcode),
                ..Outcome::dropped()
            };
        }
    };
    let answer = if request.edns.is_some_and(|edns| edns.version > 0) {
        Answer::rcode(ResponseCode::BADVERS, Origin::Server)
    } else if let Some(pipeline) = pipeline {
        pipeline.resolve(&request, sources, settings)
    } else {
        Answer::rcode(ResponseCode::ServFail, Origin::Server)
    };
    let encoded = response::encode(&request, &answer, settings.max_udp_payload, out);
    Outcome {
        replied: true,
        qtype: Some(request.qtype),
        rcode: answer.rcode,
        origin: answer.origin,
        truncated: encoded.truncated,
        dnssec_ok: request.edns.is_some_and(|edns| edns.dnssec_ok),
        name: settings.query_log.then(|| request.name.clone()),
    }
}

#[cfg(test)]
mod tests;
