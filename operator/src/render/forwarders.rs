//! Where forwarders of other namespaces' StubDomains may point.
//!
//! A StubDomain makes every DNS replica send queries to its servers. Pointed at loopback it
//! reaches whatever listens on the DNS Pod's own network namespace (the server's admin port,
//! a node-local cache); at link-local addresses, the cloud's metadata service
//! (169.254.169.254); at the API server or a Node's address, control-plane and kubelet
//! ports. A tenant who may only write StubDomains must not get that reach, so tenant
//! forwarders are checked against the DNSServer's `spec.tenantForwarders.deniedCIDRs` and
//! against the cluster's own addresses ([`ClusterAddresses`]), which the controller reads
//! from the API (the renderer stays pure). The DNSServer's own namespace is trusted.

use super::Verdict;
use crate::api::dnsserver::DNSServer;
use nameplane_config::zone::{parse_prefix, prefix_contains};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// The addresses of the cluster itself, which no tenant forwarder may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterAddresses {
    /// The API server's: the `default/kubernetes` Service's ClusterIPs and the addresses of
    /// its EndpointSlices.
    pub api_server: BTreeSet<IpAddr>,
    /// Every Node's `status.addresses` of an IP type, with the Node's name.
    pub nodes: BTreeMap<IpAddr, String>,
}

/// No cluster addresses known (tests, and renders without a cluster).
pub static NO_CLUSTER_ADDRESSES: std::sync::LazyLock<ClusterAddresses> =
    std::sync::LazyLock::new(ClusterAddresses::default);

/// The deny-list for tenant forwarders of one DNSServer.
#[derive(Clone, Debug)]
pub struct ForwarderFence {
    /// Each denied network as written, and parsed.
    denied: Vec<(String, (IpAddr, u8))>,
    server: String,
}

impl ForwarderFence {
    /// The fence of `server`. CIDRs that do not parse (admission rejects them) are skipped.
    pub fn new(server: &DNSServer) -> Self {
        use kube::ResourceExt;
        Self {
            denied: server
                .spec
                .tenant_forwarders
                .denied_cidrs
                .iter()
                .filter_map(|c| Some((c.0.clone(), parse_prefix(&c.0).ok()?)))
                .collect(),
            server: format!(
                "{}/{}",
                server.namespace().unwrap_or_default(),
                server.name_any()
            ),
        }
    }

    /// Whether a tenant forwarder may send to `addr`; `at` is its field path.
    pub fn check(
        &self,
        addr: &SocketAddr,
        cluster: &ClusterAddresses,
        at: &str,
    ) -> Result<(), Verdict> {
        // An IPv4-mapped IPv6 address reaches the IPv4 address (`prefix_contains` and the
        // lookups below compare the canonical form).
        let ip = addr.ip().to_canonical();
        let why = if let Some((net, _)) = self
            .denied
            .iter()
            .find(|(_, prefix)| prefix_contains(*prefix, ip))
        {
            format!(
                "is in {net}, which DNSServer {} denies to other namespaces' forwarders (spec.tenantForwarders.deniedCIDRs)",
                self.server
            )
        } else if cluster.api_server.contains(&ip) {
            "is an address of the Kubernetes API server".to_string()
        } else if let Some(node) = cluster.nodes.get(&ip) {
            format!("is an address of Node {node}")
        } else {
            return Ok(());
        };
        Err(Verdict::Rejected {
            reason: "ForwarderNotAllowed",
            message: format!(
                "{at}: {addr} {why}; forwarders from namespaces other than {}'s may not point there",
                self.server
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence() -> ForwarderFence {
        let server: DNSServer = serde_saphyr::from_str(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {}\n",
        )
        .expect("server");
        ForwarderFence::new(&server)
    }

    #[test]
    fn defaults_deny_loopback_link_local_and_metadata() {
        let cluster = ClusterAddresses::default();
        for denied in [
            "127.0.0.1:53",
            "127.9.9.9:5353",
            "[::1]:53",
            "169.254.169.254:53",
            "[fe80::1]:53",
            "0.0.0.0:53",
            "[::]:53",
            "[fd00:ec2::254]:53",
            // IPv4-mapped loopback is loopback.
            "[::ffff:127.0.0.1]:53",
        ] {
            let addr: SocketAddr = denied.parse().expect("addr");
            let err = fence().check(&addr, &cluster, "spec.servers[0]");
            assert!(
                matches!(&err, Err(Verdict::Rejected { reason: "ForwarderNotAllowed", message }) if message.contains("spec.tenantForwarders.deniedCIDRs")),
                "{denied}: {err:?}"
            );
        }
        for allowed in ["192.0.2.53:53", "[2001:db8::53]:53"] {
            let addr: SocketAddr = allowed.parse().expect("addr");
            assert_eq!(fence().check(&addr, &cluster, "x"), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn cluster_addresses_are_denied() {
        let cluster = ClusterAddresses {
            api_server: BTreeSet::from(["192.0.2.1".parse().expect("ip")]),
            nodes: BTreeMap::from([("192.0.2.10".parse().expect("ip"), "node-a".into())]),
        };
        let check = |a: &str| fence().check(&a.parse().expect("addr"), &cluster, "spec.servers[1]");
        let api = check("192.0.2.1:53");
        assert!(
            matches!(&api, Err(Verdict::Rejected { message, .. }) if message == "spec.servers[1]: 192.0.2.1:53 is an address of the Kubernetes API server; forwarders from namespaces other than platform/dns's may not point there"),
            "{api:?}"
        );
        let node = check("192.0.2.10:53");
        assert!(
            matches!(&node, Err(Verdict::Rejected { message, .. }) if message.contains("is an address of Node node-a")),
            "{node:?}"
        );
        assert_eq!(check("192.0.2.11:53"), Ok(()));
    }
}
