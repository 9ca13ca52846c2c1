//! Client identity that holds, end to end: which Pod a query comes from, when Pod addresses
//! are reused and when the Pod watch starts, and which ConfigMap versions the server takes.
//!
//! A real `nameplane-dns` follows a ConfigMap written here as the operator writes it (the
//! rendered config and its content hash; these tests are about the server, so no operator
//! runs). There is no kubelet: the tests create Pods on the fake Node and set their status
//! (`podIP`, `phase`) themselves. Client Pods have addresses in 127.0.51.0/24 and
//! 127.0.52.0/24 — all of 127/8 is loopback on Linux — so a query sent from such an address
//! reaches the server as that Pod's, as it would in a cluster. Namespaces (`e2e-tid-*`) and
//! addresses are this file's own.
//!
//! - `a_reused_ip_identifies_the_running_pod`: a Job-style Pod that has `Succeeded` gives its
//!   address back (alone, the address identifies nobody), and a Running Pod of another
//!   tenant with that address is judged by its own namespace's policy; of two live Pods on
//!   one address the Running one wins, and the case is counted.
//! - `the_first_policy_under_load_refuses_nobody`: the first `DNSPolicy` (which turns the
//!   Pod watch on) arrives while Pods of another namespace send a few hundred queries a
//!   second: not one is REFUSED, SERVFAIL or lost, and `/ready`, polled every 10 ms, never
//!   fails.
//! - `a_configmap_that_does_not_match_its_hash_is_not_served`: the previous config keeps
//!   serving, the refusal is logged, counted and shown on `/ready`.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use nameplane_config::ServerConfig;
use nameplane_e2e::{
    DnsServer, FakePod, Kube, NamespaceGuard, QueryResult, apply, apply_config_map, http_get,
    kubectl_ok, metric_sum, poll_until, publish_config, query_udp_from, wait_for,
};

const ZONE: &str = "cluster.local";
const READY: Duration = Duration::from_secs(60);

fn unique(prefix: &str) -> String {
    format!("e2e-tid-{prefix}-{}", std::process::id())
}

/// `<name>.<namespace>.svc.cluster.local.`
fn svc(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{ZONE}.")
}

/// A server config (as the operator renders it) for DNSServer `server`, with `extra` JSON
/// members (policies, `clients`, …) after `kubernetes`.
fn config(server: &str, ttl: u32, extra: &str) -> ServerConfig {
    let json = format!(
        r#"{{"version":1,"server":"{server}","kubernetes":{{"clusterDomain":"{ZONE}","ttlSeconds":{ttl}}}{extra}}}"#
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("test config {json}: {e}"))
}

/// A policy of `namespace` selecting all its Pods: `allowed` resolves, anything else is
/// NXDOMAIN.
fn allow_only(namespace: &str, allowed: &str) -> String {
    format!(
        r#"{{"source":"{namespace}/allow-only","namespace":"{namespace}","rules":[{{"action":"allow","domains":["{allowed}"]}}],"defaultAction":"deny","deniedResponse":"nxdomain"}}"#
    )
}

/// A ClusterIP Service `name` in `namespace` (no endpoints needed: its A record is the
/// cluster IP).
fn service(namespace: &str, name: &str) {
    apply(
        namespace,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80}}\n"
        ),
    );
}

/// Sets a Pod's `status.phase` (there is no kubelet to do it).
fn set_phase(namespace: &str, pod: &str, phase: &str) {
    kubectl_ok(&[
        "patch",
        "pod",
        pod,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"phase":"{phase}"}}}}"#),
    ]);
}

/// One UDP query for `name` A from `source`; its rcode (`TIMEOUT` when nothing came back).
fn rcode_from(port: u16, source: &str, name: &str) -> String {
    query_udp_from(source, port, name, RecordType::A, Duration::from_secs(2))
        .map_or_else(|| "TIMEOUT".to_owned(), |r: QueryResult| r.rcode)
}

/// Waits until asking `name` from `source` gets `rcode`; panics with what it got instead.
fn wait_rcode(port: u16, source: &str, name: &str, rcode: &str, why: &str) {
    let mut last = String::new();
    let settled = poll_until(Duration::from_secs(20), || {
        last = rcode_from(port, source, name);
        last == rcode
    });
    assert!(
        settled,
        "{why}: {name} from {source} should be {rcode}, is {last}"
    );
}

/// Starts a server following ConfigMap `namespace/dns` and waits until it serves `hash`.
fn start_server(name: &str, namespace: &str, hash: &str) -> DnsServer {
    let mut dns = DnsServer::start(name, &format!("{namespace}/dns"), &[]);
    let ready = dns.wait_ready(READY);
    assert!(ready.contains(&format!("config: {hash}")), "{ready}");
    dns
}

#[test]
fn a_reused_ip_identifies_the_running_pod() {
    let (a, b, home) = (unique("job"), unique("web"), unique("home"));
    let _guard = NamespaceGuard::create(&[(&a, &[]), (&b, &[]), (&home, &[])]);
    service(&a, "svc-a");
    service(&b, "svc-b");
    let (name_a, name_b) = (svc("svc-a", &a), svc("svc-b", &b));
    // Tenant a may resolve only svc-a, tenant b only svc-b; unidentified clients nothing.
    let policies = format!(
        r#","policies":[{},{}],"clients":{{"unidentified":"deny"}}"#,
        allow_only(&a, name_a.trim_end_matches('.')),
        allow_only(&b, name_b.trim_end_matches('.')),
    );
    let cfg = config(&format!("{home}/dns"), 5, &policies);
    publish_config(&home, "dns", &cfg);
    let dns = start_server("tid-reuse-dns", &home, &cfg.content_hash());

    let kube = Kube::connect();
    let ip = "127.0.51.10";
    kube.create_pods(&a, &[FakePod::new("job", "job", &[ip], false)]);
    // While it runs, the Job's Pod is tenant a.
    wait_rcode(
        dns.port,
        ip,
        &name_a,
        "NOERROR",
        "the Running Job Pod is in a",
    );
    assert_eq!(rcode_from(dns.port, ip, &name_b), "NXDOMAIN");

    // It completes: alone, its address identifies nobody (unidentified: REFUSED), where
    // the Pod, still in the API, was taken for tenant a before.
    set_phase(&a, "job", "Succeeded");
    let released = Instant::now();
    wait_rcode(
        dns.port,
        ip,
        &name_a,
        "REFUSED",
        "a lone Succeeded Pod's address is unidentified",
    );
    eprintln!(
        "Succeeded Pod's address unidentified {:?} after the phase change",
        released.elapsed()
    );
    assert_eq!(rcode_from(dns.port, ip, &name_b), "REFUSED");

    // Tenant b's new Pod gets the address: b's policy decides, both ways.
    kube.create_pods(&b, &[FakePod::new("web", "web", &[ip], true)]);
    wait_rcode(
        dns.port,
        ip,
        &name_b,
        "NOERROR",
        "allowed for the Running Pod's namespace, denied for the old Pod's: resolves",
    );
    assert_eq!(
        rcode_from(dns.port, ip, &name_a),
        "NXDOMAIN",
        "allowed for the old Pod's namespace, denied for the Running Pod's: denied"
    );

    // Two live Pods on one address: a Pending one of tenant a (given the address before
    // the API saw the other stop) and a Running one of tenant b. The Running one wins.
    let shared = "127.0.51.11";
    kube.create_pods(&a, &[FakePod::new("next", "next", &[shared], false)]);
    set_phase(&a, "next", "Pending");
    kube.create_pods(&b, &[FakePod::new("web2", "web2", &[shared], true)]);
    wait_rcode(
        dns.port,
        shared,
        &name_b,
        "NOERROR",
        "the Running Pod of two is the client",
    );
    assert_eq!(rcode_from(dns.port, shared, &name_a), "NXDOMAIN");
    let metrics = dns.metrics();
    let counted = metrics.lines().any(|l| {
        l.starts_with(r#"nameplane_kubernetes_shared_pod_ips{outcome="running_wins"}"#)
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)
    });
    assert!(counted, "the shared address is counted:\n{metrics}");
    eprintln!(
        "shared Pod IPs: {} (running_wins + ambiguous)",
        metric_sum(&metrics, "nameplane_kubernetes_shared_pod_ips")
    );
}

#[test]
fn the_first_policy_under_load_refuses_nobody() {
    const CLIENTS: usize = 150;
    const THREADS: usize = 4;
    /// Pause between one thread's queries: with the query itself, a few hundred a second
    /// from the four threads.
    const PACE: Duration = Duration::from_millis(8);
    let (clients, tenant, home) = (unique("load"), unique("tenant"), unique("home2"));
    let _guard = NamespaceGuard::create(&[(&clients, &[]), (&tenant, &[])]);
    let _home = NamespaceGuard::create(&[(&home, &[])]);
    service(&clients, "web");
    let web = svc("web", &clients);

    // No policy yet, so no Pod watch.
    let before = config(
        &format!("{home}/dns"),
        5,
        r#","clients":{"unidentified":"allow"}"#,
    );
    publish_config(&home, "dns", &before);
    let dns = start_server("tid-load-dns", &home, &before.content_hash());
    assert!(
        !dns.metrics().contains(r#"resource="pods""#),
        "no Pod watch before the first policy"
    );

    // Client Pods in their own namespace (which no policy will select); enough of them that
    // listing Pods takes a moment.
    let ips: Vec<String> = (1..=CLIENTS).map(|i| format!("127.0.52.{i}")).collect();
    let pods: Vec<FakePod> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| FakePod::new(&format!("client-{i}"), "client", &[ip], true))
        .collect();
    Kube::connect().create_pods(&clients, &pods);

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, web, ips) = (Arc::clone(&stop), web.clone(), ips.clone());
            let port = dns.port;
            thread::spawn(move || {
                let mut tally: std::collections::BTreeMap<String, u64> = Default::default();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let rcode = rcode_from(port, &ips[i % ips.len()], &web);
                    *tally.entry(rcode).or_default() += 1;
                    i += THREADS;
                    thread::sleep(PACE);
                }
                tally
            })
        })
        .collect();
    let poller = {
        let (stop, admin) = (Arc::clone(&stop), dns.admin_port);
        thread::spawn(move || {
            let (mut polls, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                polls += 1;
                match http_get(admin, "/ready") {
                    Some((200, _)) => {}
                    other => failures.push(format!("{other:?}")),
                }
                thread::sleep(Duration::from_millis(10));
            }
            (polls, failures)
        })
    };
    thread::sleep(Duration::from_secs(1));

    // The first DNSPolicy: in another namespace, selecting none of the clients.
    let policy = format!(
        r#","policies":[{}],"clients":{{"unidentified":"allow"}}"#,
        allow_only(&tenant, "nothing.invalid")
    );
    let after = config(&format!("{home}/dns"), 5, &policy);
    let published = Instant::now();
    publish_config(&home, "dns", &after);
    let served = format!("config: {}", after.content_hash());
    let mut waited = false;
    wait_for("the policy config to be served", READY, || {
        let body = dns
            .admin("/ready")
            .map(|(_, body)| body)
            .unwrap_or_default();
        waited |= body.contains("waiting: ");
        body.contains(&served).then_some(())
    });
    let swapped = published.elapsed();
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut tally: std::collections::BTreeMap<String, u64> = Default::default();
    for thread in load {
        for (rcode, n) in thread.join().expect("load thread") {
            *tally.entry(rcode).or_default() += n;
        }
    }
    let (polls, unready) = poller.join().expect("poller");
    let total: u64 = tally.values().sum();
    let seconds = 2.0 + swapped.as_secs_f64();
    eprintln!(
        "{total} queries from {CLIENTS} Pods (~{:.0}/s) across the first policy: {tally:?}; \
         policy config served {swapped:?} after it was written (waited for the Pod list: \
         {waited}); /ready polled {polls} times, failed {} times",
        total as f64 / seconds,
        unready.len()
    );
    assert!(
        total as f64 / seconds > 150.0,
        "the load was a few hundred queries a second"
    );
    assert_eq!(
        tally.get("NOERROR").copied(),
        Some(total),
        "every query answered NOERROR: no REFUSED, SERVFAIL or lost query ({tally:?})"
    );
    assert!(unready.is_empty(), "/ready failed: {unready:?}");
    let metrics = dns.metrics();
    assert!(
        metrics.contains(r#"nameplane_kubernetes_synced{resource="pods"} 1"#),
        "the Pod watch runs now:\n{metrics}"
    );
}

#[test]
fn a_configmap_that_does_not_match_its_hash_is_not_served() {
    let ns = unique("hash");
    let _guard = NamespaceGuard::create(&[(&ns, &[])]);
    service(&ns, "web");
    let web = svc("web", &ns);
    let good = config(&format!("{ns}/dns"), 5, "");
    publish_config(&ns, "dns", &good);
    let mut dns = start_server("tid-hash-dns", &ns, &good.content_hash());
    let ttl = |dns: &DnsServer| {
        query_udp_from("127.0.0.1", dns.port, &web, RecordType::A, READY)
            .and_then(|r| r.answers.first().map(|(ttl, _)| *ttl))
    };
    wait_for("the Service", Duration::from_secs(10), || ttl(&dns));
    assert_eq!(ttl(&dns), Some(5));

    // Edited after the operator wrote it: the content changes, the annotation does not.
    let edited = config(&format!("{ns}/dns"), 30, "");
    apply_config_map(&ns, "dns", &edited.to_json(), Some(&good.content_hash()));
    let (_, body) = wait_for("the refusal on /ready", Duration::from_secs(20), || {
        dns.admin("/ready")
            .filter(|(_, body)| body.contains("rejected: "))
    });
    eprintln!("/ready after the edit: {}", body.trim());
    assert!(body.starts_with("ready\n"), "still ready: {body}");
    assert!(
        body.contains(&format!("config: {}", good.content_hash())),
        "{body}"
    );
    assert_eq!(ttl(&dns), Some(5), "the previous config keeps serving");
    let metrics = dns.metrics();
    assert_eq!(
        metric_sum(&metrics, "nameplane_config_reload_failures_total"),
        1.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"nameplane_config_reload_failures_total{reason="hash_mismatch"} 1"#),
        "{metrics}"
    );
    let log = dns.process.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("config rejected"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{log}"));
    assert!(
        refusal.contains(&good.content_hash()) && refusal.contains(&edited.content_hash()),
        "both hashes in the log: {refusal}"
    );
    assert!(refusal.contains("ERROR"), "at error level: {refusal}");

    // Without the annotation (written by hand on purpose) it is served under its own hash.
    apply_config_map(&ns, "dns", &edited.to_json(), None);
    wait_for("the unannotated config", Duration::from_secs(20), || {
        (ttl(&dns) == Some(30)).then_some(())
    });
    let ready = dns.wait_ready(READY);
    assert!(
        ready.contains(&format!("config: {}", edited.content_hash())),
        "{ready}"
    );
    assert!(!ready.contains("rejected: "), "{ready}");
}
