//! The interface between the pipeline and its stages: what a stage returns ([`Flow`]),
//! what it reads besides its config ([`Sources`]), why it could not be built
//! ([`BuildError`]), and what a query waits on when its answer needs the network
//! ([`Upstream`]).
//!
//! Every stage imports this module and nothing above it; the pipeline runs the stages and
//! turns their [`Flow`] into bytes ([`super::send`]), counting what happened ([`Stats`]).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use tokio::sync::OwnedSemaphorePermit;

use super::forward::forwarder::Forwarder;
use crate::answer_cache::{Cache, Hit};
use crate::cluster::index::Cluster;
use crate::metrics::Metrics;
use crate::reply::{Reply, Transfer};
use crate::request::{QName, Request};
use crate::settings::Settings;
use crate::wire::answer::{Answer, Origin};

/// What a stage did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow<'a> {
    /// The stage answered; later stages are not asked.
    Answer(Answer<'a>),
    /// Not this stage's name; ask the next one.
    Skip,
    /// A fresh answer from the cache.
    Cached(Hit),
    /// A fresh answer from the cache, and the upstream query that refreshes it (prefetch).
    CachedAndRefresh(Hit, Upstream),
    /// A zone transfer: the records to send, in order, over several messages.
    Transfer(Transfer),
    /// The answer must come from an upstream: finish it off the receive loop.
    Upstream(Upstream),
}

/// The data the stages read that changes independently of the config (each from its own
/// watch), as one consistent set of snapshots for the duration of a query.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// The cluster, from the Kubernetes watches.
    pub cluster: &'a Cluster,
    /// Who asked (the zone transfer allow-list needs it).
    pub client: SocketAddr,
    /// Where stages count what they did.
    pub metrics: &'a Metrics,
}

/// Why a validated config could not be turned into a [`super::Pipeline`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Kubernetes stage refused its settings.
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    /// A zone could not be built.
    #[error("zones: {0}")]
    Zones(String),
    /// A forwarder could not be built.
    #[error("forward: {0}")]
    Forward(String),
}

/// A query whose answer needs the network: one the forward stage accepted, or an alias a
/// local stage answered whose target must be resolved.
#[derive(Debug)]
pub struct Upstream {
    pub(super) work: Work,
}

#[derive(Debug)]
pub(super) enum Work {
    /// Ask a forwarder: which one, the cache to fill, and the slots the query holds in the
    /// forwarder's and the process's in-flight limits (released when this is dropped).
    Upstream {
        forwarder: Arc<Forwarder>,
        cache: Option<Arc<Cache>>,
        _permit: OwnedSemaphorePermit,
        _global: OwnedSemaphorePermit,
    },
    /// A local answer ending in a CNAME to `target` (an ExternalName Service with
    /// `resolveExternalNames`): the target is resolved through the whole pipeline (cache,
    /// zones, forwarders, as a [`super::deferred::Chase`]) and its records appended.
    Alias { head: Box<Reply>, target: Name },
}

impl Upstream {
    /// The local answer `head`, which ends in a CNAME to `target`, to be completed with the
    /// target's records.
    pub fn alias(head: Reply, target: Name) -> Self {
        Self {
            work: Work::Alias {
                head: Box::new(head),
                target,
            },
        }
    }
}

impl PartialEq for Upstream {
    fn eq(&self, other: &Self) -> bool {
        match (&self.work, &other.work) {
            (Work::Upstream { forwarder: a, .. }, Work::Upstream { forwarder: b, .. }) => {
                Arc::ptr_eq(a, b)
            }
            (Work::Alias { head: a, target: x }, Work::Alias { head: b, target: y }) => {
                a == b && x == y
            }
            _ => false,
        }
    }
}

impl Eq for Upstream {}

impl Upstream {
    /// Ask `forwarder`, filling `cache`, holding `permit` (the forwarder's in-flight limit)
    /// and `global` (the process's) until the answer is in.
    pub fn forwarder(
        forwarder: Arc<Forwarder>,
        cache: Option<Arc<Cache>>,
        permit: OwnedSemaphorePermit,
        global: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            work: Work::Upstream {
                forwarder,
                cache,
                _permit: permit,
                _global: global,
            },
        }
    }
}

/// What happened to one query, for the metrics and the query log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The question type, when the query parsed.
    pub qtype: Option<RecordType>,
    /// The response code sent.
    pub rcode: ResponseCode,
    /// Who answered.
    pub origin: Origin,
    /// Whether TC was set.
    pub truncated: bool,
    /// Whether the query had the DO bit.
    pub dnssec_ok: bool,
    /// The question name, only when every query is logged (`--query-log`); the query log
    /// reads it from the packet otherwise.
    pub name: Option<QName>,
    /// Who denied the query, when a policy or client class did (the query log's `policy`).
    pub denied_by: Option<Arc<str>>,
}

impl Stats {
    /// The answer to `request`: `rcode` from `origin`; with the name when `log_name`.
    pub fn of(request: &Request<'_>, rcode: ResponseCode, origin: Origin, log_name: bool) -> Self {
        Self {
            qtype: Some(request.qtype),
            rcode,
            origin,
            truncated: false,
            dnssec_ok: request.edns.is_some_and(|edns| edns.dnssec_ok),
            name: log_name.then(|| request.name.clone()),
            denied_by: None,
        }
    }

    /// A header-only answer to a packet that did not parse as a query.
    pub fn unparsed(rcode: ResponseCode) -> Self {
        Self {
            qtype: None,
            rcode,
            origin: Origin::Server,
            truncated: false,
            dnssec_ok: false,
            name: None,
            denied_by: None,
        }
    }
}

/// What the client-aware path needs of a pipeline: the stages run for a name it chose,
/// and the cluster zone's NXDOMAIN for a denial. Implemented by
/// [`super::Pipeline`]; a trait so that the client path does not import the pipeline
/// that calls it.
pub trait Resolve {
    /// Runs the stages in their fixed order for `request`.
    fn resolve<'a>(
        &'a self,
        request: &Request<'_>,
        sources: &Sources<'a>,
        settings: &'a Settings,
    ) -> Flow<'a>;

    /// The NXDOMAIN (with the cluster zone's SOA) of `name`, when it is a cluster name.
    fn nxdomain<'a>(&'a self, name: &QName, cluster: &'a Cluster) -> Option<Answer<'a>>;
}
