//! The nameplane custom resources, group `nameplane.io`, version `v1alpha1`: one file per kind.
//!
//! | kind | scope | what it is |
//! |---|---|---|
//! | [`DNSServer`](dnsserver::DNSServer) | namespaced | a DNS deployment the operator runs, and which config objects apply to it (its Pod, Service and scaling fields in [`dnspods`]) |
//! | [`DNSZone`](dnszone::DNSZone) | namespaced | an authoritative zone and its records |
//! | [`StubDomain`](stubdomain::StubDomain) | namespaced | forward one domain to given servers |
//! | [`RewriteRule`](rewriterule::RewriteRule) | namespaced | rewrite query names, and answers back |
//! | [`DNSPolicy`](dnspolicy::DNSPolicy) | namespaced | which names the Pods of its namespace may resolve |
//!
//! Every kind is namespaced. A platform team keeps its `DNSServer` (and cluster-wide zones and
//! stub domains) in its own namespace; tenants keep their objects in theirs, where Kubernetes
//! RBAC already decides who may write them. A `DNSServer` picks the config objects it serves
//! with [`ConfigSelector`]: objects in its own namespace always apply; other namespaces only
//! when they match its namespace label selector (none by default, the Gateway API's
//! `allowedRoutes` pattern), and an object label selector narrows the choice. Namespaced
//! objects also let a `DNSPolicy` bind to "the Pods of this namespace" without naming them.

// clippy reads the repeated `type_ = "string"` inside separate `printcolumn(...)` groups of
// `#[kube(...)]` as duplicated attributes; they are not.
pub mod dnspods;
#[allow(clippy::duplicated_attributes)]
pub mod dnspolicy;
#[allow(clippy::duplicated_attributes)]
pub mod dnsserver;
#[allow(clippy::duplicated_attributes)]
pub mod dnszone;
#[allow(clippy::duplicated_attributes)]
pub mod rewriterule;
#[allow(clippy::duplicated_attributes)]
pub mod stubdomain;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every nameplane kind.
pub const GROUP: &str = "nameplane.io";
/// The API version of every nameplane kind.
pub const VERSION: &str = "v1alpha1";

/// Condition types every nameplane object reports (kstatus: `Ready`, plus the abnormal-true
/// `Reconciling` and `Stalled`).
pub mod condition {
    /// The object is accepted and in effect.
    pub const READY: &str = "Ready";
    /// The operator is working towards the desired state.
    pub const RECONCILING: &str = "Reconciling";
    /// The operator cannot make progress without a change to the object (e.g. invalid spec).
    pub const STALLED: &str = "Stalled";
}

/// A CEL-checked regular expression for a DNS name: labels of letters, digits and hyphens,
/// 1 to 63 characters, not starting or ending with a hyphen, with an optional trailing dot.
/// (Written with `[.]` rather than `\.` so it needs no escaping inside a CEL string.)
pub(crate) const DNS_NAME_REGEX: &str = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?[.])*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?[.]?$";

/// Status fields every nameplane kind shares.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The `metadata.generation` the conditions describe. When it is lower than
    /// `metadata.generation`, the operator has not yet looked at the latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The current state of the object: `Ready`, `Reconciling` and `Stalled`, with a
    /// machine-readable reason and a message for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A domain name such as `example.com` or `cluster.local` (letters, digits and `-` in labels of
/// up to 63 characters, separated by dots; an optional trailing dot).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": format!("self.matches('{DNS_NAME_REGEX}')"),
    "message": "must be a DNS name like example.com (letters, digits, '-' and '.')"
}]))]
pub struct DomainName(#[schemars(length(min = 1, max = 253))] pub String);

impl DomainName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of a Namespace or Service (an RFC 1123 label: lower-case letters, digits and `-`,
/// at most 63 characters, starting and ending with a letter or digit).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    "message": "must be a Kubernetes name like team-a (lower-case letters, digits and '-')"
}]))]
pub struct KubernetesName(#[schemars(length(min = 1, max = 63))] pub String);

impl KubernetesName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upstream DNS server: an IPv4 or IPv6 address with an optional port (default 53), as in
/// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "isIP(self) || (self.matches('^[0-9.]+:[0-9]{1,5}$') && isIP(self.split(':')[0]) && int(self.split(':')[1]) >= 1 && int(self.split(':')[1]) <= 65535) || (self.matches('^\\\\[[0-9A-Fa-f:.]+\\\\]:[0-9]{1,5}$') && isIP(self.substring(1, self.indexOf(']'))) && int(self.substring(self.indexOf(']') + 2)) >= 1 && int(self.substring(self.indexOf(']') + 2)) <= 65535)",
    "message": "must be an IP address with an optional port, like 192.0.2.53, 192.0.2.53:53, 2001:db8::53 or [2001:db8::53]:53"
}]))]
pub struct UpstreamAddress(
    // The pattern is the coarse shape (hex digits, dots, colons, brackets), which Helm's
    // values schema can check too; the CEL rule above is the exact one.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[0-9A-Fa-f:.\[\]]+$"))] pub String,
);

impl UpstreamAddress {
    /// Parses the address, adding port 53 when none is given.
    pub fn socket_addr(&self) -> Result<std::net::SocketAddr, String> {
        let text = self.0.as_str();
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(std::net::SocketAddr::new(ip, 53));
        }
        text.parse::<std::net::SocketAddr>()
            .map_err(|_| format!("{text:?} is not an IP address with an optional port"))
    }
}

/// A Service whose ClusterIPs are DNS servers to forward to, as in a `StubDomain`'s
/// `serviceRefs` or a `DNSServer`'s `upstreamServiceRefs`. The operator looks the Service up
/// when it renders and keeps the forwarder up to date as the Service changes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamServiceRef {
    /// The Service's name.
    pub name: KubernetesName,
    /// The Service's namespace; left out, the namespace of the object that names it. Objects
    /// in another namespace than their DNSServer's may only name Services of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<KubernetesName>,
    /// The Service port to send queries to. Left out: the Service's port named `dns`, else
    /// the one named `dns-udp`, else 53. The port must be one the Service lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// Which config objects (`DNSZone`, `StubDomain`, `RewriteRule`, `DNSPolicy`) a `DNSServer`
/// serves besides those in its own namespace (which always apply). An object in another
/// namespace applies when its namespace matches `namespaceSelector` and the object itself
/// matches `objectSelector`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSelector {
    /// Selects the other namespaces whose config objects apply. Left out, none does; `{}`
    /// selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Selects config objects by their labels. Leave out to take every object in the selected
    /// namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses_parse_like_the_cel_rule_says() {
        for (text, want) in [
            ("10.0.0.10", "10.0.0.10:53"),
            ("10.0.0.10:5353", "10.0.0.10:5353"),
            ("fd00::10", "[fd00::10]:53"),
            ("[fd00::10]:5353", "[fd00::10]:5353"),
        ] {
            let addr = UpstreamAddress(text.into()).socket_addr().expect(text);
            assert_eq!(addr.to_string(), want);
        }
        for bad in ["dns.google", "10.0.0.10:", "10.0.0.300", "[fd00::10]", ""] {
            assert!(UpstreamAddress(bad.into()).socket_addr().is_err(), "{bad}");
        }
    }
}
