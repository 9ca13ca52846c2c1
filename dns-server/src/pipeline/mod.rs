//! The answer function: request bytes and the current snapshots in, response bytes out.
//!
//! [`answer`] is pure: no sockets, no clocks, no locks. The transports call it; the tests
//! call it directly. Its steps:
//!
//! 1. [`request::parse`]: drop, FORMERR, NOTIMP, or a [`Request`];
//! 2. EDNS version above 0: BADVERS (RFC 6891 §6.1.3);
//! 3. no valid config loaded yet: SERVFAIL;
//! 4. the [`Pipeline`]'s stages, in order; the first one that returns [`Flow::Answer`] wins;
//! 5. no stage owns the name: REFUSED (forwarding will take this place);
//! 6. [`response::encode`].
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

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nameplane_config::ValidatedConfig;

use crate::kubernetes::ServiceIndex;
use crate::request::{self, Rejected, Request, Transport};
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

impl Pipeline {
    /// Builds the stages for `config`. `hash` identifies the config in logs (the operator's
    /// content hash).
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

    /// Runs the stages in order; REFUSED when none owns the name.
    pub fn resolve(&self, request: &Request, sources: &Sources<'_>) -> Answer {
        for stage in &self.stages {
            match stage.handle(request, sources) {
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
    /// Cluster names from the Service index.
    Kubernetes(kubernetes::KubernetesStage),
}

impl Stage {
    fn handle(&self, request: &Request, sources: &Sources<'_>) -> Flow {
        match self {
            Self::Kubernetes(stage) => stage.handle(request, sources.services),
        }
    }
}

/// What a stage did with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The stage answered; later stages are not asked.
    Answer(Answer),
    /// Not this stage's name; ask the next one.
    Skip,
}

/// The data the stages read that changes independently of the config (each from its own
/// watch), as one consistent set of snapshots for the duration of a query.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// Services, from the Service watch.
    pub services: &'a ServiceIndex,
}

/// The result of [`answer`]: the bytes to send, and what the metrics need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The response, or `None` when the packet is dropped.
    pub response: Option<Vec<u8>>,
    /// The question type, when the query parsed.
    pub qtype: Option<RecordType>,
    /// The response code sent (meaningless when dropped).
    pub rcode: ResponseCode,
    /// Who answered.
    pub origin: Origin,
}

/// Answers one DNS message. Never panics, whatever `packet` holds.
///
/// `pipeline` is `None` until a valid config has been loaded.
pub fn answer(
    packet: &[u8],
    transport: Transport,
    pipeline: Option<&Pipeline>,
    sources: &Sources<'_>,
) -> Outcome {
    let request = match request::parse(packet, transport) {
        Ok(request) => request,
        Err(Rejected::Drop) => {
            return Outcome {
                response: None,
                qtype: None,
                rcode: ResponseCode::FormErr,
                origin: Origin::Server,
            };
        }
        Err(Rejected::Reply(reply)) => {
            return Outcome {
                response: Some(response::encode_error(&reply).to_vec()),
                qtype: None,
                rcode: reply.rcode,
                origin: Origin::Server,
            };
        }
    };
    let qtype = request.qtype();
    let answer = if request.edns.is_some_and(|edns| edns.version > 0) {
        Answer::rcode(ResponseCode::BADVERS, Origin::Server)
    } else if let Some(pipeline) = pipeline {
        pipeline.resolve(&request, sources)
    } else {
        Answer::rcode(ResponseCode::ServFail, Origin::Server)
    };
    let (rcode, origin) = (answer.rcode, answer.origin);
    Outcome {
        response: Some(response::encode(request, answer)),
        qtype: Some(qtype),
        rcode,
        origin,
    }
}

#[cfg(test)]
mod tests;
