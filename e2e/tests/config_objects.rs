//! Config objects on a real control plane: every kind gets a `Ready` condition from the
//! renderer's verdict, conflicts are decided oldest-first with the loser told why, a
//! semantically wrong object never reaches the published config (the last good config keeps
//! serving), and fixing it puts the new config live.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use hickory_proto::rr::RecordType;
use nameplane_e2e::{
    DnsServer, Operator, apply, jsonpath, kubectl_ok, kubectl_with_stdin, query_udp, wait_for,
};
use std::time::Duration;

const NS: &str = "e2e-config";

fn ready(what: &str) -> (String, String, String) {
    let at = |field: &str| {
        jsonpath(
            NS,
            what,
            &format!("{{.status.conditions[?(@.type==\"Ready\")].{field}}}"),
        )
    };
    (at("status"), at("reason"), at("message"))
}

fn wait_ready(what: &str, status: &str, reason: &str) -> String {
    wait_for(
        &format!("{what} Ready={status} ({reason})"),
        Duration::from_secs(30),
        || {
            let (s, r, m) = ready(what);
            (s == status && r == reason).then_some(m)
        },
    )
}

fn zone(name: &str, apex: &str, ip: &str) -> String {
    format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: {name}\nspec:\n  zone: {apex}\n  records:\n  - {{name: www, type: A, values: [\"{ip}\"]}}\n"
    )
}

#[test]
fn config_objects_report_status_and_bad_ones_never_reach_the_server() {
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=nameplane-e2e",
        "-f",
        "crds/",
    ]);
    kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/dnszones.nameplane.io",
    ]);
    for ns in [NS, "nameplane-system"] {
        let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        assert!(
            kubectl_with_stdin(&["apply", "-f", "-"], Some(&yaml))
                .status
                .success()
        );
    }
    let _operator = Operator::start("operator-config", &["--lease-name", "e2e-config"]);
    apply(
        NS,
        // This test queries from 127.0.0.1, which is no Pod; a DNSPolicy never restricts
        // such a client, and this DNSServer leaves them allowed (the default).
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  upstreams: [\"10.0.0.10\"]\n",
    );
    apply(
        NS,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - {port: 80}\n",
    );
    // Published: its Deployment's Pods never run in this test (the test runs its own DNS
    // server), so Ready stays False with PodsRollingOut (e2e/tests/status.rs runs them).
    wait_ready("dnsserver/dns", "False", "PodsRollingOut");
    let mut dns = DnsServer::start("dns-config", &format!("{NS}/dns-config"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let cluster_name = format!("web.{NS}.svc.cluster.local.");
    let answers_cluster_name = || {
        query_udp(
            dns.port,
            &cluster_name,
            RecordType::A,
            Duration::from_secs(1),
        )
        .is_some_and(|r| r.rcode == "NOERROR" && r.answers.len() == 1)
    };

    // One object of each kind, all valid: each says it is served, and the config grows.
    apply(NS, &zone("first", "example.internal", "192.0.2.1"));
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata:\n  name: corp\nspec:\n  domain: corp.example.com\n  servers: [\"10.1.0.53\"]\n",
    );
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata:\n  name: alias\nspec:\n  rules:\n  - {match: Exact, from: db.example.com, to: web.e2e-config.svc.cluster.local}\n",
    );
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata:\n  name: lock\nspec:\n  rules:\n  - {action: Allow, domains: [cluster.local]}\n  defaultAction: Deny\n",
    );
    for what in [
        "dnszone/first",
        "stubdomain/corp",
        "rewriterule/alias",
        "dnspolicy/lock",
    ] {
        let message = wait_ready(what, "True", "Accepted");
        assert!(
            message.contains(&format!("DNSServer {NS}/dns")),
            "{what}: {message}"
        );
    }
    let message = wait_for(
        "the DNSServer to count the objects",
        Duration::from_secs(30),
        || {
            let (_, _, m) = ready("dnsserver/dns");
            m.contains("1 zones, 2 forwarders, 1 rewrites, 1 policies")
                .then_some(m)
        },
    );
    eprintln!("DNSServer: {message}");
    let good_hash = jsonpath(NS, "dnsserver/dns", "{.status.configHash}");
    let published = || {
        jsonpath(
            NS,
            "configmap/dns-config",
            "{.metadata.annotations.nameplane\\.io/config-hash}",
        )
    };
    assert_eq!(published(), good_hash);

    // A second zone for the same apex passes the schema but conflicts: it is rejected with the
    // winner named, and the published config does not change.
    std::thread::sleep(Duration::from_millis(1100)); // creationTimestamp has one-second resolution
    apply(NS, &zone("second", "Example.Internal.", "192.0.2.2"));
    let message = wait_ready("dnszone/second", "False", "Conflict");
    assert!(
        message.contains("already served from DNSZone e2e-config/first"),
        "{message}"
    );
    assert_eq!(ready("dnszone/first").0, "True");
    // A zone record that passes the schema but is semantically wrong (a CNAME beside other data).
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: broken\nspec:\n  zone: broken.example\n  records:\n  - {name: www, type: CNAME, values: [a.broken.example.]}\n  - {name: www, type: TXT, values: [\"x\"]}\n",
    );
    let message = wait_ready("dnszone/broken", "False", "InvalidRecord");
    assert!(message.contains("must stand alone"), "{message}");
    // A rewrite loop, a zone claiming the cluster domain.
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata:\n  name: back\nspec:\n  rules:\n  - {match: Exact, from: web.e2e-config.svc.cluster.local, to: db.example.com}\n",
    );
    let message = wait_ready("rewriterule/back", "False", "RewriteLoop");
    assert!(
        message.contains("RewriteRule e2e-config/alias"),
        "{message}"
    );
    apply(NS, &zone("hijack", "svc.cluster.local", "192.0.2.3"));
    wait_ready("dnszone/hijack", "False", "ConflictsWithClusterDomain");
    let message = wait_for(
        "the DNSServer to report rejected objects",
        Duration::from_secs(30),
        || {
            let (_, _, m) = ready("dnsserver/dns");
            m.contains("4 selected objects rejected").then_some(m)
        },
    );
    eprintln!("DNSServer: {message}");
    assert_eq!(
        jsonpath(NS, "dnsserver/dns", "{.status.configHash}"),
        good_hash,
        "rejected objects changed the config"
    );
    assert_eq!(published(), good_hash);
    assert!(
        answers_cluster_name(),
        "the server keeps answering from the last good config"
    );

    // Fix them: the loser of the conflict takes over when the winner goes, the broken zone
    // is corrected, and each new config goes live.
    kubectl_ok(&["delete", "dnszone", "first", "-n", NS]);
    wait_ready("dnszone/second", "True", "Accepted");
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: broken\nspec:\n  zone: broken.example\n  records:\n  - {name: www, type: CNAME, values: [a.broken.example.]}\n",
    );
    wait_ready("dnszone/broken", "True", "Accepted");
    let fixed_hash = wait_for("a new config", Duration::from_secs(30), || {
        let h = jsonpath(NS, "dnsserver/dns", "{.status.configHash}");
        (h != good_hash && published() == h).then_some(h)
    });
    let config = jsonpath(NS, "configmap/dns-config", "{.data.config\\.json}");
    assert!(
        config.contains("\"source\": \"e2e-config/second\"") && config.contains("192.0.2.2"),
        "{config}"
    );
    assert!(config.contains("broken.example"), "{config}");
    wait_for(
        "the server to load the new config",
        Duration::from_secs(10),
        || {
            let metrics = dns
                .admin("/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default();
            (nameplane_e2e::metric_sum(&metrics, "nameplane_config_reloads_total") >= 2.0)
                .then_some(())
        },
    );
    eprintln!("fixed config {fixed_hash} published and loaded");
    assert!(answers_cluster_name());

    // An object no DNSServer selects says so.
    kubectl_ok(&["delete", "dnsserver", "dns", "-n", NS]);
    wait_ready("dnszone/second", "False", "NotSelected");
}
