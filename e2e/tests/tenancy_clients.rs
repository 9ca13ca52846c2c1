//! Clients the server cannot tie to a Pod, end to end (issue 14): what node addresses and
//! other unidentified clients get is the `DNSServer`'s choice, never a tenant's
//! `DNSPolicy`'s; node addresses (from the Node objects, or a CIDR list) are a class the
//! `DNSServer` can allow while it refuses other unidentified clients.
//!
//! Configured the way users configure it (`kubectl apply` of a `DNSServer` and a tenant
//! `DNSPolicy`, rendered by the real operator), served by a real `nameplane-dns` that runs
//! with the ServiceAccount and RBAC the operator made for it (so the Node watch's grant is
//! tested too), and asked with `dig -b <source>`: every address here is in 127/8, which is
//! all loopback on Linux. There is no kubelet: the test creates the Pods and a Node of its
//! own (`e2e-tc-node`) and writes their status itself.
//!
//! | source          | who                                                            |
//! |-----------------|----------------------------------------------------------------|
//! | 127.0.50.2      | Pod `client` of tenant `e2e-tc-a` (its policy denies everything) |
//! | 127.0.50.3      | Pod `control` of `e2e-tc-system` (no policy selects it)        |
//! | 127.0.50.10/.11 | Node `e2e-tc-node` (InternalIP / ExternalIP); .10 is also the address of a host-network Pod of `e2e-tc-a` |
//! | 127.0.50.12     | Node `e2e-tc-node`'s InternalIP after it moves                 |
//! | 127.0.51.7      | inside the `cidrs` of the node class                           |
//! | 127.0.50.250    | nobody: no Pod, no Node                                        |
//! | 127.0.0.1       | Node `fake-node`'s InternalIP                                  |
//!
//! Every name, namespace, Node and address here is this file's own (127.0.50.0/24,
//! 127.0.51.0/24), so other tests' Pods cannot make a client ambiguous.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::FakePod;
use nameplane_e2e::{
    DigResult, DnsServer, Kube, Operator, Transport, apply, dig_with, ensure_namespace,
    install_crds, jsonpath, kubectl, kubectl_ok, poll_until, service_account_kubeconfig, wait_for,
};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);
const SYSTEM: &str = "e2e-tc-system";
const TENANT: &str = "e2e-tc-a";
const LABEL: (&str, &str) = ("e2e-tc", "tenant");
const NODE: &str = "e2e-tc-node";

const TENANT_POD: &str = "127.0.50.2";
const CONTROL_POD: &str = "127.0.50.3";
const NODE_INTERNAL: &str = "127.0.50.10";
const NODE_EXTERNAL: &str = "127.0.50.11";
const NODE_MOVED: &str = "127.0.50.12";
const IN_CIDRS: &str = "127.0.51.7";
const STRANGER: &str = "127.0.50.250";
const FAKE_NODE: &str = "127.0.0.1";

/// One UDP query for the tenant's Service from `source`.
fn ask(port: u16, source: &str) -> DigResult {
    dig_with(
        port,
        &format!("web.{TENANT}.svc.cluster.local."),
        "A",
        Transport::Udp,
        &["-b", source],
    )
}

/// What `source` gets, in short: `NOERROR <ip>`, `NXDOMAIN`, `REFUSED`.
fn outcome(port: u16, source: &str) -> String {
    let r = ask(port, source);
    match r.data("A").as_slice() {
        [] => r.status,
        ips => format!("{} {}", r.status, ips.join(",")),
    }
}

/// Waits until every source gets what `want` says; returns how long that took.
fn wait_outcomes(port: u16, what: &str, want: &[(&str, &str)]) -> Duration {
    let started = Instant::now();
    let mut last = Vec::new();
    let settled = poll_until(READY, || {
        last = want
            .iter()
            .map(|(source, expected)| (*source, outcome(port, source), *expected))
            .collect();
        last.iter().all(|(_, got, expected)| got == expected)
    });
    assert!(settled, "{what}: (source, got, want) {last:#?}");
    let took = started.elapsed();
    eprintln!("{what}: every source as expected after {took:?}");
    for (source, got, _) in &last {
        eprintln!("  {source:>14} -> {got}");
    }
    took
}

/// The sum of `nameplane_dns_policy_decisions_total` for one policy label and decision.
fn decisions(metrics: &str, policy: &str, decision: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("nameplane_dns_policy_decisions_total{"))
        .filter(|l| {
            l.contains(&format!("policy=\"{policy}\""))
                && l.contains(&format!("decision=\"{decision}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0
}

/// Creates (or replaces) Node `NODE` with these `status.addresses` (type, address).
fn set_node(addresses: &[(&str, &str)]) {
    nameplane_e2e::set_node(NODE, addresses);
}

/// The DNSServer `SYSTEM/dns`, with `clients` as YAML flow (empty: left out).
fn server(clients: &str) -> String {
    let clients = if clients.is_empty() {
        String::new()
    } else {
        format!("  clients: {clients}\n")
    };
    format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  replicas: 1\n{clients}  configSelector:\n    namespaceSelector:\n      matchLabels: {{{}: {}}}\n",
        LABEL.0, LABEL.1
    )
}

const LOCKDOWN: &str = "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata:\n  name: lockdown\nspec:\n  rules: []\n";

/// Waits until the operator has published a config for `SYSTEM/dns` that holds every
/// string of `contains` and none of `lacks`.
fn wait_published(contains: &[&str], lacks: &[&str]) {
    let mut last = String::new();
    let published = poll_until(READY, || {
        let hash = jsonpath(SYSTEM, "dnsserver/dns", "{.status.configHash}");
        let annotation = jsonpath(
            SYSTEM,
            "configmap/dns-config",
            "{.metadata.annotations.nameplane\\.io/config-hash}",
        );
        last = jsonpath(SYSTEM, "configmap/dns-config", "{.data.config\\.json}");
        !hash.is_empty()
            && hash == annotation
            && contains.iter().all(|c| last.contains(c))
            && !lacks.iter().any(|l| last.contains(l))
    });
    assert!(
        published,
        "never published a config with {contains:?} and without {lacks:?}; last:\n{last}"
    );
}

/// Removes what this test (or a crashed earlier run) made: namespaces and the Node. The
/// DNSServer goes first, while the operator still runs, so its finalizer is taken off.
struct Cleanup {
    kube: Kube,
}

impl Cleanup {
    fn fresh() -> Self {
        let cleanup = Self {
            kube: Kube::connect(),
        };
        cleanup.remove(true);
        cleanup
    }

    fn remove(&self, wait: bool) {
        for namespace in [SYSTEM, TENANT] {
            if !kubectl(&["get", "namespace", namespace]).status.success() {
                continue;
            }
            let _ = kubectl(&[
                "patch",
                "dnsserver",
                "dns",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
            self.kube.delete_namespace(namespace);
            if wait {
                wait_for(
                    &format!("namespace {namespace} of an earlier run to be deleted"),
                    Duration::from_secs(120),
                    || (!kubectl(&["get", "namespace", namespace]).status.success()).then_some(()),
                );
            }
        }
        let _ = kubectl(&["delete", "node", NODE, "--ignore-not-found"]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "dnsserver",
            "dns",
            "-n",
            SYSTEM,
            "--wait=true",
            "--timeout=30s",
        ]);
        self.remove(false);
    }
}

#[test]
fn unidentified_clients_are_the_platforms_choice_and_nodes_a_class() {
    install_crds();
    ensure_namespace("nameplane-system", &[]);
    // The DNS server runs as the ServiceAccount the operator binds to the shipped roles.
    let _roles = nameplane_e2e::ShippedDnsServerRoles::install();
    let _operator = Operator::start("e2e-tc", &["--lease-name", "e2e-tc"]);
    // Dropped before the operator: the DNSServer's finalizer comes off while it runs.
    let cleanup = Cleanup::fresh();
    ensure_namespace(SYSTEM, &[]);
    ensure_namespace(TENANT, &[LABEL]);

    set_node(&[
        ("InternalIP", NODE_INTERNAL),
        ("ExternalIP", NODE_EXTERNAL),
        ("Hostname", NODE),
    ]);
    apply(
        TENANT,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n",
    );
    let web = kubectl_ok(&[
        "get",
        "service",
        "web",
        "-n",
        TENANT,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let answered = format!("NOERROR {web}");
    let answered = answered.as_str();
    cleanup.kube.create_pods(
        TENANT,
        &[FakePod::new("client", "client", &[TENANT_POD], true)],
    );
    cleanup.kube.create_pods(
        SYSTEM,
        &[FakePod::new("control", "control", &[CONTROL_POD], true)],
    );
    // A host-network Pod of the tenant: its address is the node's.
    apply(
        TENANT,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: agent\n  labels: {app: agent}\nspec:\n  nodeName: fake-node\n  hostNetwork: true\n  containers:\n  - {name: c, image: registry.invalid/none}\n",
    );
    cleanup
        .kube
        .set_pod_status(TENANT, "agent", &[NODE_INTERNAL], true);

    // 1. The DNSServer says nothing about clients (unidentified: Allow, the default).
    apply(SYSTEM, &server(""));
    wait_published(&[r#""unidentified": "allow""#], &["e2e-tc-a/lockdown"]);
    let kubeconfig = service_account_kubeconfig(SYSTEM, "dns-dns");
    let mut dns = DnsServer::start_as(
        "dns-e2e-tc",
        &kubeconfig,
        &format!("{SYSTEM}/dns-config"),
        &[],
    );
    dns.wait_ready(READY);
    let port = dns.port;
    let everyone = [
        TENANT_POD,
        CONTROL_POD,
        NODE_INTERNAL,
        NODE_EXTERNAL,
        IN_CIDRS,
        STRANGER,
        FAKE_NODE,
    ];
    let all_answered: Vec<(&str, &str)> = everyone.iter().map(|s| (*s, answered)).collect();
    wait_outcomes(port, "no policy, no client class", &all_answered);

    // The tenant's policy denies everything: its own Pod gets NXDOMAIN; nobody else's
    // answer changes — not the node address (which is also the tenant's host-network Pod's),
    // not any unidentified client.
    apply(TENANT, LOCKDOWN);
    wait_published(&["e2e-tc-a/lockdown"], &[]);
    wait_outcomes(
        port,
        "a tenant policy that denies everything",
        &[
            (TENANT_POD, "NXDOMAIN"),
            (CONTROL_POD, answered),
            (NODE_INTERNAL, answered),
            (NODE_EXTERNAL, answered),
            (IN_CIDRS, answered),
            (STRANGER, answered),
            (FAKE_NODE, answered),
        ],
    );
    let metrics = dns.metrics();
    assert_eq!(
        decisions(&metrics, "(unidentified)", "denied"),
        0.0,
        "{metrics}"
    );

    // 2. The platform denies unidentified clients: every client that is not one Pod is
    // refused, node addresses included (no node class yet); Pods are as before.
    apply(SYSTEM, &server("{unidentified: Deny}"));
    let took = wait_outcomes(
        port,
        "DNSServer clients.unidentified: Deny",
        &[
            (TENANT_POD, "NXDOMAIN"),
            (CONTROL_POD, answered),
            (NODE_INTERNAL, "REFUSED"),
            (NODE_EXTERNAL, "REFUSED"),
            (IN_CIDRS, "REFUSED"),
            (STRANGER, "REFUSED"),
            (FAKE_NODE, "REFUSED"),
        ],
    );
    eprintln!("DNSServer change -> new behaviour: {took:?}");
    // Without any policy it holds all the same: the DNSServer's choice, not the policies'.
    kubectl_ok(&["delete", "dnspolicy", "lockdown", "-n", TENANT]);
    wait_published(&[r#""unidentified": "deny""#], &["e2e-tc-a/lockdown"]);
    wait_outcomes(
        port,
        "clients.unidentified: Deny without any policy",
        &[
            (TENANT_POD, answered),
            (CONTROL_POD, answered),
            (NODE_INTERNAL, "REFUSED"),
            (STRANGER, "REFUSED"),
            (FAKE_NODE, "REFUSED"),
        ],
    );

    // 3. Node addresses as a class, allowed: the Node objects' addresses (both nodes, both
    // address types) and the CIDR list; other unidentified clients are still refused, and
    // the tenant's policy (back again) still restricts only the tenant's Pod.
    apply(TENANT, LOCKDOWN);
    apply(
        SYSTEM,
        &server(
            "{unidentified: Deny, nodes: {action: Allow, fromNodes: true, cidrs: [127.0.51.0/24]}}",
        ),
    );
    wait_published(&["e2e-tc-a/lockdown", r#""fromNodes": true"#], &[]);
    let took = wait_outcomes(
        port,
        "node class allowed, other unidentified clients denied",
        &[
            (TENANT_POD, "NXDOMAIN"),
            (CONTROL_POD, answered),
            (NODE_INTERNAL, answered),
            (NODE_EXTERNAL, answered),
            (IN_CIDRS, answered),
            (FAKE_NODE, answered),
            (STRANGER, "REFUSED"),
        ],
    );
    eprintln!("DNSServer change (Node watch started) -> new behaviour: {took:?}");
    let ready = dns
        .admin("/ready")
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert!(ready.starts_with("ready"), "{ready}");
    let metrics = dns.metrics();
    assert!(
        metrics.contains(r#"nameplane_kubernetes_synced{resource="nodes"} 1"#),
        "{metrics}"
    );

    // The Node watch follows the Nodes: an address that moves, a Node that goes away.
    set_node(&[("InternalIP", NODE_MOVED), ("Hostname", NODE)]);
    let took = wait_outcomes(
        port,
        "the Node's address changed",
        &[
            (NODE_MOVED, answered),
            (NODE_INTERNAL, "REFUSED"),
            (NODE_EXTERNAL, "REFUSED"),
        ],
    );
    eprintln!("Node status change -> new behaviour: {took:?}");
    kubectl_ok(&["delete", "node", NODE]);
    wait_outcomes(
        port,
        "the Node was deleted",
        &[(NODE_MOVED, "REFUSED"), (FAKE_NODE, answered)],
    );

    // Both classes were counted under their own label.
    let metrics = dns.metrics();
    let (nodes_allowed, unidentified_denied) = (
        decisions(&metrics, "(nodes)", "allowed"),
        decisions(&metrics, "(unidentified)", "denied"),
    );
    eprintln!(
        "decisions: (nodes) allowed {nodes_allowed}, (unidentified) denied {unidentified_denied}"
    );
    assert!(
        nodes_allowed >= 5.0 && unidentified_denied >= 5.0,
        "{metrics}"
    );
    assert!(
        dns.process.log().contains("denied: client class"),
        "class denials are in the audit log"
    );

    // 4. The other way round, to show the action is the DNSServer's to choose: node
    // addresses (here the CIDRs only) denied, other unidentified clients allowed.
    apply(
        SYSTEM,
        &server("{unidentified: Allow, nodes: {action: Deny, cidrs: [127.0.51.0/24]}}"),
    );
    wait_outcomes(
        port,
        "node class denied, unidentified allowed",
        &[
            (IN_CIDRS, "REFUSED"),
            (STRANGER, answered),
            (FAKE_NODE, answered),
            (TENANT_POD, "NXDOMAIN"),
        ],
    );

    dns.process.assert_running();
}
