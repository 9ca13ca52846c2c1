//! `StubDomain`: forward every query for one domain (and its subdomains) to given servers,
//! like a CoreDNS `forward` block or kube-dns `stubDomains`.

use super::{DomainName, ObjectStatus, UpstreamAddress, UpstreamServiceRef};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Forwards one domain to its own DNS servers, e.g. `corp.example.com` to the company's
/// resolvers.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "nameplane.io",
    version = "v1alpha1",
    kind = "StubDomain",
    plural = "stubdomains",
    singular = "stubdomain",
    namespaced,
    status = "ObjectStatus",
    shortname = "stub",
    category = "nameplane",
    doc = "Forwards one domain and its subdomains to the given DNS servers.",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.forceTcp) && self.forceTcp && has(self.preferUdp) && self.preferUdp)",
    "message": "forceTcp and preferUdp exclude each other"
}, {
    "rule": "(has(self.servers) ? self.servers.size() : 0) + (has(self.serviceRefs) ? self.serviceRefs.size() : 0) >= 1",
    "message": "give at least one server or service reference"
}]))]
pub struct StubDomainSpec {
    /// The domain to forward, e.g. `corp.example.com`. Its subdomains are forwarded too.
    pub domain: DomainName,

    /// The servers to forward to, as IP addresses with optional ports, e.g. `10.1.0.53` or
    /// `[fd00::53]:5353`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub servers: Vec<UpstreamAddress>,

    /// Services whose ClusterIPs are servers to forward to, besides `servers` (e.g. a DNS
    /// server running in the cluster), kept up to date as the Services change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub service_refs: Vec<UpstreamServiceRef>,

    /// How a server is picked for each query.
    #[serde(default)]
    pub policy: ForwardPolicy,

    /// Always forward over TCP, even when the client asked over UDP.
    #[serde(default)]
    pub force_tcp: bool,

    /// Forward over UDP even when the client asked over TCP (a truncated reply is still
    /// retried over TCP). Without this or `forceTcp`, queries go upstream over the client's
    /// transport.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefer_udp: bool,

    /// Most queries for this domain waiting on its servers at once; more are refused
    /// (REFUSED) until some finish. Left out: 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_concurrent: Option<u32>,
}

/// How a forwarder picks among its servers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardPolicy {
    /// A random healthy server per query (CoreDNS's default).
    #[default]
    Random,
    /// Healthy servers in turn.
    RoundRobin,
    /// The first healthy server in the order given.
    Sequential,
}
