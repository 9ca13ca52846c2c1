//! Routing: which stage owns which names, from one config, decided without a lock and
//! without decoding the name.
//!
//! A name goes to the forwarder of the longest configured domain at or above it (`.`
//! matches every name), unless a local stage owns it: the cluster domain (Kubernetes
//! stage) and every zone apex (zones stage) come first, whatever the depth, because those
//! stages run first. A name nobody owns is REFUSED (no open resolver by accident). Shared
//! by the cache stage (which looks up only names that would be forwarded) and the forward
//! stage; equal routes mean a cache filled under one is right under the other.

use nameplane_config::ValidatedConfig;

use super::flow::BuildError;
use crate::request::QName;

/// Where a name goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A local stage (Kubernetes, zones) owns it.
    Local,
    /// The forwarder with this index owns it.
    Forward(usize),
    /// Nobody: REFUSED.
    Nowhere,
}

/// Which stage owns which names, from one config; equal routes mean a cache filled under
/// one is right under the other.
///
/// Every domain is kept in wire form, lower case, and matched against the question's own
/// wire form ([`QName::is_in`]): routing a query decodes and allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// The cluster domain and every zone apex: names the local stages own.
    local: Vec<Box<[u8]>>,
    /// Forwarded domains with their forwarder's index, longest first, so the first that
    /// holds a name is the most specific.
    forwarders: Vec<(Box<[u8]>, usize)>,
    /// Forward configs, by index, so equality covers servers and settings too.
    settings: Vec<nameplane_config::forward::ForwardConfig>,
    /// `reverseFallthrough`: whether PTR queries of non-cluster addresses may be forwarded
    /// (and cached). Not used for routing (the Kubernetes stage, first, keeps them when
    /// off), but part of equality: a cache filled with forwarded PTR answers must not
    /// outlive a change to off.
    reverse_fallthrough: bool,
}

/// `domain` (presentation form, `.` for the root) in lower-case wire form.
fn domain_wire(domain: &str) -> Result<Box<[u8]>, String> {
    let name = if domain == "." {
        Some(QName::root())
    } else {
        QName::from_ascii(domain)
    };
    name.map(|name| name.wire().into())
        .ok_or_else(|| format!("{domain:?} is not a domain name"))
}

impl Routes {
    /// The routes of `config`.
    pub fn new(config: &ValidatedConfig) -> Result<Self, BuildError> {
        let local = std::iter::once(config.cluster_domain())
            .chain(config.raw().zones.iter().map(|zone| zone.name.as_str()))
            .map(domain_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Forward)?;
        let mut forwarders = Vec::new();
        for (i, forward) in config.raw().forward.iter().enumerate() {
            let wire = domain_wire(&forward.domain).map_err(BuildError::Forward)?;
            // A domain listed twice: the later forward wins, as it always has.
            forwarders.retain(|(seen, _): &(Box<[u8]>, usize)| *seen != wire);
            forwarders.push((wire, i));
        }
        forwarders.sort_by_key(|(wire, _)| std::cmp::Reverse(wire.len()));
        Ok(Self {
            local,
            forwarders,
            settings: config.raw().forward.clone(),
            reverse_fallthrough: config.kubernetes().reverse_fallthrough,
        })
    }

    /// Where `name` goes.
    pub fn route(&self, name: &QName) -> Route {
        if self.local.iter().any(|domain| name.is_in(domain)) {
            return Route::Local;
        }
        self.forwarders
            .iter()
            .find(|(domain, _)| name.is_in(domain))
            .map_or(Route::Nowhere, |&(_, index)| Route::Forward(index))
    }
}
