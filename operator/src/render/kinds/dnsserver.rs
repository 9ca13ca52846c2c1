//! The `DNSServer`'s side of the per-kind checks: the [`Scope`] that every config object is
//! held against, made from the server's namespace and name, its cluster domain, its
//! `tenantDomainSuffix` and its forwarder fence. Which names an object may claim and which
//! forwarders it may use are decided here; what a rewrite may do is in [`super::rewriterule`].

use super::is_at_or_below;
use crate::api::dnsserver::DNSServer;
use crate::render::Verdict;
use crate::render::forwarders::{ClusterAddresses, ForwarderFence};
use kube::ResourceExt;
use nameplane_config::names;

/// Where config objects may claim names.
pub struct Scope {
    pub(super) server_namespace: String,
    server_name: String,
    pub(super) cluster_domain: String,
    tenant_suffix: Option<String>,
    fence: ForwarderFence,
    cluster_addresses: ClusterAddresses,
}

impl Scope {
    /// The scope of `server`, whose normalised cluster domain is `cluster_domain`.
    pub fn new(server: &DNSServer, cluster_domain: &str) -> Self {
        Self {
            server_namespace: server.namespace().unwrap_or_default(),
            server_name: server.name_any(),
            cluster_domain: cluster_domain.into(),
            tenant_suffix: server
                .spec
                .tenant_domain_suffix
                .as_ref()
                .and_then(|s| names::normalize_domain(s.as_str()).ok()),
            fence: ForwarderFence::new(server),
            cluster_addresses: ClusterAddresses::default(),
        }
    }

    /// The same scope, knowing the cluster's own addresses (which tenant forwarders may not
    /// use).
    pub fn with_cluster_addresses(mut self, cluster: &ClusterAddresses) -> Self {
        self.cluster_addresses = cluster.clone();
        self
    }

    /// Whether an object in `namespace` may forward to `addr` (`at`: the field path).
    pub(super) fn allows_forwarder(
        &self,
        namespace: &str,
        addr: &std::net::SocketAddr,
        at: &str,
    ) -> Result<(), Verdict> {
        if namespace == self.server_namespace {
            return Ok(());
        }
        self.fence.check(addr, &self.cluster_addresses, at)
    }

    /// Whether an object in `namespace` may claim `domain` (a zone apex or stub domain).
    pub(super) fn allows(&self, namespace: &str, domain: &str) -> Result<(), Verdict> {
        if is_at_or_below(domain, &self.cluster_domain)
            || is_at_or_below(&self.cluster_domain, domain)
        {
            return Err(Verdict::Rejected {
                reason: "ConflictsWithClusterDomain",
                message: format!(
                    "{domain} overlaps the cluster domain {} that DNSServer {}/{} serves from the Kubernetes API",
                    self.cluster_domain, self.server_namespace, self.server_name
                ),
            });
        }
        if namespace == self.server_namespace {
            return Ok(());
        }
        match &self.tenant_suffix {
            Some(suffix) if is_at_or_below(domain, &format!("{namespace}.{suffix}")) => Ok(()),
            Some(suffix) => Err(Verdict::Rejected {
                reason: "NotAllowed",
                message: format!(
                    "objects in namespace {namespace} may only use names at or below {namespace}.{suffix} (spec.tenantDomainSuffix of DNSServer {}/{})",
                    self.server_namespace, self.server_name
                ),
            }),
            None => Err(Verdict::Rejected {
                reason: "NotAllowed",
                message: format!(
                    "DNSServer {}/{} takes zones and stub domains only from its own namespace; set its spec.tenantDomainSuffix to let other namespaces use names below <namespace>.<suffix>",
                    self.server_namespace, self.server_name
                ),
            }),
        }
    }
}
