//! What the client-aware and forwarded-miss rows configure, shared by the servers that
//! are given it ([`crate::servers`]) and the steps that measure it ([`crate::paths`]): the
//! client Pod, the ten rewrites, the policy and autopath ([`ClientAware`]), and the stub
//! domain of the forwarded misses ([`MISS_ZONE`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::objects::Layout;
use crate::settings::ObjectSet;

/// The client Pod's address: dnsperf and the probes send from it (`-a`).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

/// The client Pod's namespace (its first search domain is `bench-client.svc.cluster.local`).
pub const CLIENT_NAMESPACE: &str = "bench-client";

/// The client Pod's name and its `app` label, which the policy selects.
pub const CLIENT_APP: &str = "bench-client";

/// Names the rewrites match: `r<k>.rewrite.example`.
pub const REWRITE_ZONE: &str = "rewrite.example";

/// How many rewrites the client-aware pair has.
pub const REWRITES: usize = 10;

/// The domains the client's policy allows; it refuses everything else.
pub const ALLOWED: [&str; 3] = ["cluster.local", REWRITE_ZONE, "bench.example"];

/// The stub domain of the forwarded-miss rows; the upstream answers every name under it
/// (a wildcard).
pub const MISS_ZONE: &str = "misses.example.";

/// Address of every name under [`MISS_ZONE`] (198.18.0.0/15: benchmarking range).
pub const MISS_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// The client-aware behaviour: what both servers of the second pair add to the plain config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAware {
    /// `(from, to)` of each exact rewrite, without trailing dots: `r<k>.rewrite.example` to a
    /// ClusterIP Service.
    pub rewrites: Vec<(String, String)>,
}

impl ClientAware {
    /// The rewrites of `set`: `r<k>` to the Service `k * n / 10` of its `n` ClusterIP
    /// Services.
    pub fn for_set(set: &ObjectSet) -> Self {
        let layout = Layout::for_set(set);
        let services = set.cluster_ip_services();
        Self {
            rewrites: (0..REWRITES)
                .map(|k| {
                    (
                        format!("r{k}.{REWRITE_ZONE}"),
                        layout
                            .service_fqdn(rewrite_target(k, services))
                            .trim_end_matches('.')
                            .to_string(),
                    )
                })
                .collect(),
        }
    }

    /// The plugins CoreDNS's `.` block gains: `acl` (the client's address may resolve
    /// [`ALLOWED`], and is refused everything else), the rewrites, `autopath @kubernetes`.
    pub fn corefile_lines(&self) -> String {
        let mut text = format!(
            "    acl {} {{\n        allow net {CLIENT_IP}/32\n    }}\n    acl {{\n        block net {CLIENT_IP}/32\n    }}\n",
            ALLOWED.join(" ")
        );
        for (from, to) in &self.rewrites {
            let _ = writeln!(text, "    rewrite name exact {from} {to} answer auto");
        }
        text.push_str("    autopath @kubernetes\n");
        text
    }

    /// Adds the same to a nameplane config: the policy of namespace [`CLIENT_NAMESPACE`]
    /// selecting `app: bench-client`, the rewrites (from the server's own namespace: every
    /// client), `kubernetes.autopath`.
    pub fn add_to_nameplane_config(&self, config: &mut Value) {
        config["kubernetes"]["autopath"] = json!(true);
        config["rewrites"] = json!(
            self.rewrites
                .iter()
                .enumerate()
                .map(|(k, (from, to))| json!({
                    "source": format!("bench/r{k}"),
                    "match": "exact",
                    "from": from,
                    "to": to,
                    "rewriteAnswers": true,
                }))
                .collect::<Vec<_>>()
        );
        config["policies"] = json!([{
            "source": format!("{CLIENT_NAMESPACE}/only-known-domains"),
            "namespace": CLIENT_NAMESPACE,
            "podSelector": {"matchLabels": {"app": CLIENT_APP}},
            "rules": [{"action": "allow", "domains": ALLOWED}],
            "defaultAction": "deny",
            "deniedResponse": "refused",
        }]);
    }
}

/// The Service a rewrite `k` points at, of `services` ClusterIP Services.
pub(crate) fn rewrite_target(k: usize, services: usize) -> usize {
    k * services / REWRITES
}
