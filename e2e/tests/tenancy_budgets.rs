//! Budgets and the forwarder fence on a real control plane (issue 14): one tenant's config
//! too large for the server's budget is left out (`OverBudget`) while every other tenant's
//! changes keep going live (timed, through a real nameplane-dns); tenant StubDomains pointing
//! at loopback, the API server's ClusterIP or a Node's address are refused
//! (`ForwarderNotAllowed`), and the fence follows a Node's address as it changes.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::{
    DnsServer, NamespaceGuard, Operator, Transport, apply, install_crds, jsonpath, kubectl,
    wait_for, wait_ready_condition,
};
use std::time::{Duration, Instant};

const NS: &str = "e2e-budget-dns";
const BIG: &str = "e2e-budget-big";
const SMALL: &str = "e2e-budget-small";
const FWD: &str = "e2e-budget-fwd";
const NODE: &str = "e2e-budget-node";
const TENANT_LABEL: (&str, &str) = ("e2e-budget", "tenant");

/// Deletes the extra Node when dropped (also when the test panics).
struct NodeGuard;

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "node", NODE, "--ignore-not-found", "--wait=false"]);
    }
}

fn set_node_address(address: &str) {
    nameplane_e2e::set_node(NODE, &[("InternalIP", address)]);
}

fn stub(namespace: &str, name: &str, server: &str) -> String {
    format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata:\n  name: {name}\nspec:\n  domain: {name}.{namespace}.tenants.budget.example\n  servers: [\"{server}\"]\n  maxConcurrent: 10\n"
    )
}

#[test]
fn an_oversized_tenant_is_left_out_and_the_fence_holds() {
    install_crds();
    let tenant: &[(&str, &str)] = &[TENANT_LABEL];
    let _operator = Operator::start("operator-budget", &["--lease-name", "e2e-budget"]);
    let _namespaces =
        NamespaceGuard::fresh(&[(NS, &[]), (BIG, tenant), (SMALL, tenant), (FWD, tenant)]);
    let _node = NodeGuard;
    set_node_address("192.0.2.77");

    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  clients: {unidentified: Allow}\n  tenantDomainSuffix: tenants.budget.example\n  configSelector: {namespaceSelector: {matchLabels: {e2e-budget: tenant}}}\n  limits: {configBytes: 20000}\n",
    );
    apply(
        SMALL,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: small\nspec:\n  zone: e2e-budget-small.tenants.budget.example\n  ttlSeconds: 1\n  records:\n  - {name: www, type: A, values: [\"192.0.2.10\"]}\n",
    );
    wait_ready_condition(SMALL, "dnszone/small", "True", "Accepted");
    // Published: its Deployment's Pods never run in this test (the test runs its own DNS
    // server), so Ready stays False with PodsRollingOut (e2e/tests/status.rs runs them).
    wait_ready_condition(NS, "dnsserver/dns", "False", "PodsRollingOut");

    let mut dns = DnsServer::start("dns-budget", &format!("{NS}/dns-config"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let www = "www.e2e-budget-small.tenants.budget.example";
    assert_eq!(dns.dig(www, "A", Transport::Udp).data("A"), ["192.0.2.10"]);

    // 400 records: about twice the 20000-byte budget on their own.
    let records: String = (0..400)
        .map(|i| {
            format!(
                "  - {{name: r{i}, type: A, values: [\"192.0.2.{}\"]}}\n",
                i % 250
            )
        })
        .collect();
    apply(
        BIG,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: big\nspec:\n  zone: e2e-budget-big.tenants.budget.example\n  records:\n{records}"
        ),
    );
    let message = wait_ready_condition(BIG, "dnszone/big", "False", "OverBudget");
    eprintln!("oversized tenant zone: {message}");
    assert!(message.contains("spec.limits.configBytes"), "{message}");
    let published = jsonpath(NS, "configmap/dns-config", "{.data.config\\.json}");
    eprintln!("published config: {} bytes", published.len());
    assert!(published.len() <= 20000, "{} bytes", published.len());
    assert!(
        !published.contains("e2e-budget-big"),
        "the big zone is not published"
    );
    let unserved = dns.dig(
        "r1.e2e-budget-big.tenants.budget.example",
        "A",
        Transport::Udp,
    );
    assert!(
        unserved.data("A").is_empty(),
        "not served: {}",
        unserved.raw
    );
    // The DNSServer keeps publishing and says how many objects were left out.
    let server = wait_ready_condition(NS, "dnsserver/dns", "False", "PodsRollingOut");
    assert!(server.contains("1 selected objects rejected"), "{server}");

    // Another tenant's change still goes live, within a second of the API server storing it
    // (timed from `kubectl apply` returning: operator render and publish, server reload).
    apply(
        SMALL,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: small\nspec:\n  zone: e2e-budget-small.tenants.budget.example\n  ttlSeconds: 1\n  records:\n  - {name: www, type: A, values: [\"192.0.2.11\"]}\n",
    );
    let started = Instant::now();
    wait_for("the small tenant's change", Duration::from_secs(10), || {
        (dns.dig(www, "A", Transport::Udp).data("A") == ["192.0.2.11"]).then_some(())
    });
    let live = started.elapsed();
    eprintln!(
        "another tenant's change live after {} ms (stored by the API server to answered)",
        live.as_millis()
    );
    assert!(live < Duration::from_secs(1), "{live:?}");

    // The fence: loopback, the API server's ClusterIP and a Node's address.
    let api_server_ip = jsonpath("default", "service/kubernetes", "{.spec.clusterIP}");
    apply(FWD, &stub(FWD, "loopback", "127.0.0.1:5353"));
    apply(FWD, &stub(FWD, "apiserver", &api_server_ip));
    apply(FWD, &stub(FWD, "node", "192.0.2.77"));
    apply(FWD, &stub(FWD, "elsewhere", "192.0.2.53"));
    for (name, why) in [
        ("loopback", "is in 127.0.0.0/8"),
        ("apiserver", "is an address of the Kubernetes API server"),
        ("node", &format!("is an address of Node {NODE}")),
    ] {
        let message = wait_ready_condition(
            FWD,
            &format!("stubdomain/{name}"),
            "False",
            "ForwarderNotAllowed",
        );
        eprintln!("{name}: {message}");
        assert!(message.contains(why), "{name}: {message}");
    }
    wait_ready_condition(FWD, "stubdomain/elsewhere", "True", "Accepted");
    // The Node moves to another address: the old one is no longer the Node's.
    set_node_address("192.0.2.78");
    wait_ready_condition(FWD, "stubdomain/node", "True", "Accepted");
    let published = jsonpath(NS, "configmap/dns-config", "{.data.config\\.json}");
    assert!(!published.contains("127.0.0.1:5353"), "{published}");
    assert!(
        !published.contains(&format!("\"{api_server_ip}:53\"")),
        "{published}"
    );
}
