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

    /// Which transport queries go upstream over: `Auto` (the default) the client's own, a
    /// truncated UDP reply retried over TCP; `TCP` always TCP; `PreferUDP` UDP even for a
    /// client that asked over TCP (a truncated reply is still retried over TCP).
    #[serde(default)]
    pub transport: ForwardTransport,

    /// Most queries for this domain waiting on its servers at once; more are refused
    /// (REFUSED) until some finish. Left out: 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_concurrent: Option<u32>,
}

/// Which transport a forwarder sends queries upstream over (CoreDNS `forward`'s
/// `force_tcp` and `prefer_udp`, as one choice so they cannot be combined).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardTransport {
    /// The client's transport; a truncated UDP reply is retried over TCP.
    #[default]
    Auto,
    /// Always TCP, even when the client asked over UDP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP, even when the client asked over TCP; a truncated reply is still retried over TCP.
    #[serde(rename = "PreferUDP")]
    PreferUdp,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The spellings are the API (docs/api-versioning.md): CamelCase with `TCP`/`UDP` kept
    /// upper case, and the old booleans are not read as a transport.
    #[test]
    fn transport_spellings() {
        for (text, transport) in [
            ("Auto", ForwardTransport::Auto),
            ("TCP", ForwardTransport::Tcp),
            ("PreferUDP", ForwardTransport::PreferUdp),
        ] {
            let json = serde_json::json!(text);
            assert_eq!(
                serde_json::to_value(transport).expect("a spelling the enum has"),
                json
            );
            assert_eq!(
                serde_json::from_value::<ForwardTransport>(json).expect("a spelling the enum has"),
                transport
            );
        }
        for old in ["Tcp", "PreferUdp", "UDP", "auto"] {
            assert!(serde_json::from_value::<ForwardTransport>(serde_json::json!(old)).is_err());
        }
        let spec: StubDomainSpec = serde_json::from_value(
            serde_json::json!({"domain": "corp.example.com", "servers": ["192.0.2.53"]}),
        )
        .expect("a valid spec without transport");
        assert_eq!(spec.transport, ForwardTransport::Auto, "left out: Auto");
    }
}
