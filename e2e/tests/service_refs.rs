//! Service references on a real control plane: a DNSZone record that serves a Service's
//! ClusterIP follows the Service as it is deleted and re-created (a watch, timed), a
//! StubDomain and the DNSServer's upstreams forward to a Service's `ClusterIP:port` and say
//! `ServiceNotFound` while it is gone, and a tenant's reference to another namespace's
//! Service is refused.
//!
//! The local control plane runs no kube-proxy, so nothing routes a ClusterIP to a process:
//! the record is checked by asking a real nameplane-dns (which serves the ClusterIP as data),
//! the forwarders by reading the published ConfigMap.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::{
    DnsServer, NamespaceGuard, Operator, Transport, apply, ensure_namespace, install_crds,
    jsonpath, kubectl_ok, wait_for, wait_ready_condition,
};
use std::time::{Duration, Instant};

const NS: &str = "e2e-svcref-dns";
const TENANT: &str = "e2e-svcref-tenant";

fn wait_ready(namespace: &str, what: &str, status: &str, reason: &str) -> String {
    wait_ready_condition(namespace, what, status, reason)
}

fn cluster_ip(service: &str) -> String {
    kubectl_ok(&[
        "get",
        "service",
        service,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
}

/// The servers of the forwarder for `domain` in the published config (`None`: no such
/// forwarder).
fn forwarded_to(domain: &str) -> Option<Vec<String>> {
    let json = jsonpath(NS, "configmap/dns-config", "{.data.config\\.json}");
    let config: serde_json::Value = serde_json::from_str(&json).ok()?;
    config["forward"]
        .as_array()?
        .iter()
        .find(|f| f["domain"] == domain)
        .map(|f| {
            f["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
}

const WEB: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - {port: 80}\n";
const RESOLVER: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: resolver\nspec:\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n";

#[test]
fn service_references_follow_their_services() {
    install_crds();
    ensure_namespace("nameplane-system", &[]);
    let _namespaces = NamespaceGuard::create(&[(NS, &[]), (TENANT, &[("e2e-svcref", "tenant")])]);
    let _operator = Operator::start("operator-svcref", &["--lease-name", "e2e-svcref"]);

    apply(NS, WEB);
    apply(NS, RESOLVER);
    // Only the tenant namespace is selected, so other tests' leftovers (e.g. a DNSPolicy,
    // which would refuse queries from 127.0.0.1) stay out.
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  upstreams: [\"10.0.0.10\"]\n  upstreamServiceRefs: [{name: resolver}]\n  tenantDomainSuffix: tenants.svcref.example\n  configSelector: {namespaceSelector: {matchLabels: {e2e-svcref: tenant}}}\n",
    );
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: apps\nspec:\n  zone: apps.svcref.example\n  ttlSeconds: 1\n  records:\n  - {name: www, type: A, service: {name: web}}\n  - {name: static, type: A, values: [\"192.0.2.1\"]}\n",
    );
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata:\n  name: corp\nspec:\n  domain: corp.svcref.example\n  serviceRefs: [{name: resolver}]\n",
    );
    // A tenant may not publish another namespace's Service under its names.
    apply(
        TENANT,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: borrowed\nspec:\n  zone: {TENANT}.tenants.svcref.example\n  records:\n  - {{name: web, type: A, service: {{name: web, namespace: {NS}}}}}\n"
        ),
    );

    // Published: its Deployment's Pods never run in this test (the test runs its own DNS
    // server), so Ready stays False with PodsRollingOut (e2e/tests/status.rs runs them).
    let message = wait_ready(NS, "dnsserver/dns", "False", "PodsRollingOut");
    eprintln!("DNSServer: {message}");
    wait_ready(NS, "dnszone/apps", "True", "Accepted");
    wait_ready(NS, "stubdomain/corp", "True", "Accepted");
    let message = wait_ready(TENANT, "dnszone/borrowed", "False", "OutsideNamespace");
    eprintln!("tenant DNSZone: {message}");
    assert_eq!(
        jsonpath(
            TENANT,
            "dnszone/borrowed",
            "{.status.conditions[?(@.type==\"Stalled\")].status}"
        ),
        "True",
        "a reference the spec gets wrong stalls"
    );

    let mut dns = DnsServer::start("dns-svcref", &format!("{NS}/dns-config"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let answer = || dns.dig("www.apps.svcref.example", "A", Transport::Udp);

    // The record serves the Service's ClusterIP; the forwarders its ClusterIP:53.
    let web_ip = cluster_ip("web");
    let resolver_ip = cluster_ip("resolver");
    assert_eq!(answer().data("A"), [web_ip.as_str()]);
    assert_eq!(
        forwarded_to("corp.svcref.example"),
        Some(vec![format!("{resolver_ip}:53")])
    );
    assert_eq!(
        forwarded_to("."),
        Some(vec![
            "10.0.0.10:53".to_string(),
            format!("{resolver_ip}:53")
        ])
    );
    eprintln!(
        "www.apps.svcref.example A {web_ip}; corp.svcref.example and . forward to {resolver_ip}:53"
    );

    // Delete the Service: the record set goes (the rest of the zone stays), the zone says why.
    let started = Instant::now();
    kubectl_ok(&["delete", "service", "web", "-n", NS, "--wait=true"]);
    let status = wait_for("www to go", Duration::from_secs(30), || {
        let r = answer();
        r.data("A").is_empty().then_some(r.status)
    });
    let gone_after = started.elapsed();
    assert_eq!(status, "NXDOMAIN");
    assert_eq!(
        dns.dig("static.apps.svcref.example", "A", Transport::Udp)
            .data("A"),
        ["192.0.2.1"]
    );
    let message = wait_ready(NS, "dnszone/apps", "False", "ServiceNotFound");
    assert!(
        message.contains(&format!("Service {NS}/web does not exist")),
        "{message}"
    );
    assert_eq!(
        jsonpath(
            NS,
            "dnszone/apps",
            "{.status.conditions[?(@.type==\"Stalled\")].status}"
        ),
        "False",
        "a missing Service is waited for, not a broken spec"
    );
    eprintln!("Service deleted: answer gone after {gone_after:?}; DNSZone: {message}");

    // Re-create it: it gets a new ClusterIP, and the answer follows.
    let started = Instant::now();
    apply(NS, WEB);
    let new_ip = cluster_ip("web");
    wait_for(
        "www to answer the new ClusterIP",
        Duration::from_secs(30),
        || (answer().data("A") == [new_ip.as_str()]).then_some(()),
    );
    let back_after = started.elapsed();
    wait_ready(NS, "dnszone/apps", "True", "Accepted");
    eprintln!("Service re-created: {web_ip} -> {new_ip}, answered after {back_after:?}");

    // The stub domain's and the upstreams' Service goes: the stub domain has no server left
    // and is left out; the DNSServer keeps its other upstream and says what is missing.
    let started = Instant::now();
    kubectl_ok(&["delete", "service", "resolver", "-n", NS, "--wait=true"]);
    let message = wait_ready(NS, "stubdomain/corp", "False", "ServiceNotFound");
    eprintln!(
        "resolver deleted: StubDomain after {:?}: {message}",
        started.elapsed()
    );
    wait_for("the corp forwarder to go", Duration::from_secs(30), || {
        forwarded_to("corp.svcref.example").is_none().then_some(())
    });
    assert_eq!(forwarded_to("."), Some(vec!["10.0.0.10:53".to_string()]));
    let message = wait_ready(NS, "dnsserver/dns", "False", "ServiceNotFound");
    eprintln!("DNSServer: {message}");

    apply(NS, RESOLVER);
    let resolver_ip = cluster_ip("resolver");
    wait_ready(NS, "stubdomain/corp", "True", "Accepted");
    wait_ready(NS, "dnsserver/dns", "False", "PodsRollingOut");
    wait_for(
        "the corp forwarder to come back",
        Duration::from_secs(30),
        || {
            (forwarded_to("corp.svcref.example") == Some(vec![format!("{resolver_ip}:53")]))
                .then_some(())
        },
    );
    eprintln!(
        "resolver re-created: corp.svcref.example forwards to {resolver_ip}:53 after {:?}",
        started.elapsed()
    );
    dns.process.assert_running();
}
