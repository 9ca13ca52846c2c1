//! The walking skeleton, end to end on a real control plane: CRDs install, every sample
//! applies, invalid objects are rejected at admission with a readable message, the operator
//! publishes a config and reports `Ready`, and the DNS server answers a real Service over UDP
//! and TCP.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::{
    DnsServer, FakePod, Kube, Operator, Transport, dig_with, ensure_namespace, install_crds,
    kubectl, kubectl_ok, kubectl_with_stdin, metric_sum, repo_root, wait_for,
};
use std::time::{Duration, Instant};

const SYSTEM_NS: &str = "nameplane-system";

#[test]
fn api_server_is_real_and_reports_its_version() {
    let version = kubectl_ok(&["version", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&version).expect("version json");
    let server = doc["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("kube-apiserver version: {server}");
    assert!(
        server.starts_with("v1."),
        "unexpected server version {server:?}"
    );
}

#[test]
fn invalid_objects_are_rejected_at_admission_with_readable_messages() {
    install_crds();
    ensure_namespace("e2e-invalid", &[]);
    let dir = repo_root().join("e2e/testdata/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut kinds = std::collections::BTreeSet::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read fixture");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .expect("kind")
            .to_string();
        let out = kubectl(&[
            "apply",
            "-n",
            "e2e-invalid",
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = path.file_name().expect("name").to_string_lossy();
        assert!(
            !out.status.success(),
            "{name}: the API server accepted an invalid {kind}"
        );
        assert!(
            stderr.contains(expect),
            "{name}: rejected, but the message lacks {expect:?}:\n{stderr}"
        );
        eprintln!("rejected {name}: {}", stderr.trim());
        kinds.insert(kind);
    }
    assert_eq!(
        kinds.len(),
        5,
        "an invalid object of each kind, got {kinds:?}"
    );
}

#[test]
fn operator_and_dns_server_answer_a_real_service() {
    install_crds();
    ensure_namespace(SYSTEM_NS, &[]);
    kubectl_ok(&["apply", "-f", "config/samples/"]);

    let mut operator = Operator::start("operator", &[]);

    // The operator publishes the config and reports Ready=True once the Deployment's two
    // Pods (made by the ReplicaSet controller, run here as nameplane-dns processes on Pod IPs
    // of their own) serve it.
    let pod_kube = Kube::connect();
    let _pods = pod_kube.run_dns_pods(SYSTEM_NS, "cluster-dns", 2);
    let ready = || {
        let out = kubectl(&[
            "get",
            "dnsserver",
            "cluster-dns",
            "-n",
            SYSTEM_NS,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    };
    wait_for(
        "DNSServer cluster-dns Ready=True",
        Duration::from_secs(30),
        ready,
    );
    operator.process.assert_running();
    let table = kubectl_ok(&["get", "dnsservers", "-n", SYSTEM_NS]);
    eprintln!("{table}");
    let header: Vec<_> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    let row: Vec<_> = table
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    let ready_col = header
        .iter()
        .position(|h| *h == "READY")
        .expect("READY column");
    assert_eq!(
        row[ready_col], "True",
        "kubectl get dnsservers READY column:\n{table}"
    );

    let hash = kubectl_ok(&[
        "get",
        "dnsserver",
        "cluster-dns",
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.status.configHash}",
    ]);
    let published = kubectl_ok(&[
        "get",
        "configmap",
        "cluster-dns-config",
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.metadata.annotations.nameplane\\.io/config-hash}",
    ]);
    assert_eq!(
        hash, published,
        "status.configHash names the published ConfigMap's hash"
    );
    assert_eq!(hash.len(), 64);

    // A reconcile with nothing to change makes no writes: touch an annotation (which triggers
    // a reconcile but changes no spec) and check the operator wrote nothing, by its own count
    // and by the objects' resourceVersions. This operator serves every namespace, so it also
    // finishes what earlier test files left behind (a DNSServer in a namespace being deleted
    // still needs its finalizer); its writes are counted only once those are gone.
    let mut left = String::new();
    let mut recreated = std::collections::BTreeSet::new();
    let kube = nameplane_e2e::Kube::connect();
    let gone = nameplane_e2e::poll_until(Duration::from_secs(90), || {
        let terminating = kubectl_ok(&[
            "get",
            "namespaces",
            "-o",
            "jsonpath={.items[?(@.status.phase==\"Terminating\")].metadata.name}",
        ]);
        // No kubelet runs here to finish the Pods of a namespace being deleted (a Pod bound
        // to a node waits for its kubelet forever), so the harness does its part; the
        // DNSServers' finalizers are left to the operator, which is what this checks.
        for namespace in terminating.split_whitespace() {
            kube.delete_namespace(namespace);
        }
        // A DNSServer can outlive its namespace: seen when a namespace's deletion was under
        // way while the shutdown test stopped and restarted kube-apiserver (the namespace
        // controller finished it without the DNSServer). The API server then refuses every
        // write to the object, its finalizer included, so the operator cannot finish it:
        // give it its namespace back (deleted again below once it is empty).
        let orphaned = kubectl_ok(&[
            "get",
            "dnsservers",
            "-A",
            "-o",
            "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.namespace}{\"\\n\"}{end}",
        ]);
        for namespace in orphaned.lines().filter(|ns| !ns.is_empty()) {
            if !kubectl(&["get", "namespace", namespace]).status.success() {
                nameplane_e2e::ensure_namespace(namespace, &[]);
                recreated.insert(namespace.to_owned());
            }
        }
        for namespace in &recreated {
            if !orphaned.lines().any(|ns| ns == namespace) {
                kube.delete_namespace(namespace);
            }
        }
        let deleted = kubectl_ok(&[
            "get",
            "dnsservers",
            "-A",
            "-o",
            "jsonpath={.items[?(@.metadata.deletionTimestamp)].metadata.name}",
        ]);
        left = format!(
            "terminating namespaces: [{}], DNSServers being deleted: [{}]",
            terminating.trim(),
            deleted.trim()
        );
        terminating.trim().is_empty() && deleted.trim().is_empty()
    });
    assert!(
        gone,
        "namespaces and DNSServers of earlier tests are not gone after 90 s ({left}); what holds them: {}",
        kubectl_ok(&["get", "pods,dnsservers", "-A", "-o", "wide"])
    );
    std::thread::sleep(Duration::from_millis(500));
    let version = |kind: &str, name: &str| {
        kubectl_ok(&[
            "get",
            kind,
            name,
            "-n",
            SYSTEM_NS,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let reconciles = || metric_sum(&operator.metrics(), "nameplane_operator_reconciles_total");
    let (writes_before, cm_before) = (
        operator.writes(),
        version("configmap", "cluster-dns-config"),
    );
    let reconciles_before = reconciles();
    assert!(
        writes_before > 0.0,
        "the operator counted the writes that published the config"
    );
    kubectl_ok(&[
        "annotate",
        "--overwrite",
        "dnsserver",
        "cluster-dns",
        "-n",
        SYSTEM_NS,
        "e2e/touched=1",
    ]);
    let server_after_touch = version("dnsserver", "cluster-dns");
    wait_for(
        "a reconcile after the annotation",
        Duration::from_secs(10),
        || (reconciles() > reconciles_before).then_some(()),
    );
    assert_eq!(
        operator.writes(),
        writes_before,
        "writes although nothing changed"
    );
    assert_eq!(
        version("configmap", "cluster-dns-config"),
        cm_before,
        "ConfigMap rewritten"
    );
    assert_eq!(
        version("dnsserver", "cluster-dns"),
        server_after_touch,
        "status rewritten"
    );

    // The DNS server follows the published ConfigMap and the Services.
    let mut dns = DnsServer::start(
        "dns-server",
        &format!("{SYSTEM_NS}/cluster-dns-config"),
        &[],
    );
    let port = dns.port;

    let ns = format!("e2e-{}", std::process::id());
    ensure_namespace(&ns, &[]);
    // The sample DNSServer refuses clients it cannot tie to one Pod, node addresses
    // excepted (clients: {unidentified: Deny, nodes: {fromNodes: true}}). So this test asks
    // from a Pod's address: a loopback address registered as the IP of a Pod in `ns` (unique
    // per run, so a leftover Pod of an earlier run cannot make it ambiguous).
    let pid = std::process::id();
    let client_ip = format!("127.10.{}.{}", (pid >> 8) & 0xff, (pid & 0xff).max(1));
    let kube = Kube::connect();
    kube.create_pods(
        &ns,
        &[FakePod::new("client", "client", &[&client_ip], true)],
    );
    let dig = |port: u16, name: &str, rtype: &str, transport: Transport| {
        dig_with(port, name, rtype, transport, &["-b", &client_ip])
    };
    let created = Instant::now();
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n";
    let out = kubectl_with_stdin(&["apply", "-n", &ns, "-f", "-"], Some(service));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster_ip = kubectl_ok(&[
        "get",
        "service",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(
        cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "cluster IP {cluster_ip:?}"
    );

    let name = format!("web.{ns}.svc.cluster.local");
    let answer = wait_for(
        "the Service's A record over UDP",
        Duration::from_secs(20),
        || {
            let r = dig(port, &name, "A", Transport::Udp);
            (r.status == "NOERROR" && !r.answers.is_empty()).then_some(r)
        },
    );
    eprintln!(
        "Service answered over UDP {:?} after it was created",
        created.elapsed()
    );
    dns.process.assert_running();
    assert_eq!(answer.data("A"), vec![cluster_ip.clone()], "{}", answer.raw);
    assert_eq!(answer.answers[0].1, 5, "TTL is the DNSServer's ttlSeconds");

    let tcp = dig(port, &name, "A", Transport::Tcp);
    assert_eq!(tcp.status, "NOERROR", "{}", tcp.raw);
    assert_eq!(tcp.data("A"), vec![cluster_ip], "{}", tcp.raw);

    // Fail closed: a client that is no Pod and no Node is refused; 127.0.0.1, Node
    // fake-node's address, is answered as a node.
    let unidentified = dig_with(port, &name, "A", Transport::Udp, &["-b", "127.0.0.3"]);
    assert_eq!(unidentified.status, "REFUSED", "{}", unidentified.raw);
    let node = nameplane_e2e::dig(port, &name, "A", Transport::Udp);
    assert_eq!(node.status, "NOERROR", "{}", node.raw);

    // Mixed case is the same name.
    let upper = dig(port, &name.to_uppercase(), "A", Transport::Udp);
    assert_eq!(upper.status, "NOERROR", "{}", upper.raw);

    for transport in [Transport::Udp, Transport::Tcp] {
        let unknown = dig(
            port,
            &format!("nope.{ns}.svc.cluster.local"),
            "A",
            transport,
        );
        assert_eq!(unknown.status, "NXDOMAIN", "{transport:?}: {}", unknown.raw);
        assert!(unknown.answers.is_empty());
    }

    // A change to the DNSServer reaches the answers without a restart.
    let changed = Instant::now();
    kubectl_ok(&[
        "patch",
        "dnsserver",
        "cluster-dns",
        "-n",
        SYSTEM_NS,
        "--type=merge",
        "-p",
        "{\"spec\":{\"ttlSeconds\":7}}",
    ]);
    wait_for("the new TTL in answers", Duration::from_secs(10), || {
        let r = dig(port, &name, "A", Transport::Udp);
        (r.answers.first().map(|a| a.1) == Some(7)).then_some(())
    });
    eprintln!(
        "ttlSeconds change served {:?} after kubectl patch returned",
        changed.elapsed()
    );

    // Deleting the Service removes its name.
    kubectl_ok(&["delete", "service", "web", "-n", &ns, "--wait=false"]);
    wait_for(
        "NXDOMAIN after the Service is deleted",
        Duration::from_secs(20),
        || (dig(port, &name, "A", Transport::Udp).status == "NXDOMAIN").then_some(()),
    );
    operator.process.assert_running();
    dns.process.assert_running();
    // No kubelet confirms a graceful deletion: delete the Pod at once.
    kube.force_delete_pods(&ns, &["client"]);
    kubectl_ok(&["delete", "namespace", &ns, "--wait=false"]);
}
