//! The operator on a real control plane: the objects that run a `DNSServer` (and that its Pods
//! pass PodSecurity `restricted`), that applying, changing and deleting each kind changes the
//! answers and how fast, that reloads under load drop no query, and that a standby operator
//! takes over when the leader dies.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use hickory_proto::rr::RecordType;
use nameplane_config::ServerConfig;
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_e2e::{
    DnsServer, FakePod, Kube, Operator, QueryResult, apply, install_crds, jsonpath, kubectl,
    kubectl_ok, quantile, query_udp, query_udp_from, wait_for,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn namespace(name: &str, labels: &str) {
    apply(
        "default",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n"
        ),
    );
    // The operator's Lease lives in nameplane-system.
    apply(
        "default",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: nameplane-system\n",
    );
}

/// Waits until the DNSServer's config is published and its workload applied: `Ready=False`
/// with `PodsRollingOut`, as no kubelet runs its Deployment's Pods here (these tests run
/// their own DNS servers; e2e/tests/status.rs runs the Pods and sees `Ready=True`).
fn wait_ready(namespace: &str, server: &str) {
    wait_for(
        &format!("DNSServer {namespace}/{server} published (PodsRollingOut)"),
        Duration::from_secs(30),
        || {
            (jsonpath(
                namespace,
                &format!("dnsserver/{server}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}",
            ) == "False/PodsRollingOut")
                .then_some(())
        },
    );
}

#[test]
fn dns_server_workload_is_created_restricted_and_cleaned_up() {
    install_crds();
    let ns = "e2e-workload";
    namespace(ns, "pod-security.kubernetes.io/enforce: restricted");
    // What earlier versions made: a ClusterRole per server and a binding of the same name to
    // it. A binding's roleRef cannot change, so the operator must replace it.
    let rbac = "nameplane-dns:e2e-workload:edge";
    apply(
        "default",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {rbac}\n  labels: {{app.kubernetes.io/managed-by: nameplane-operator}}\nrules: []\n\
---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {rbac}\n  labels: {{app.kubernetes.io/managed-by: nameplane-operator}}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {rbac}}}\n\
subjects: [{{kind: ServiceAccount, name: edge-dns, namespace: {ns}}}]\n"
        ),
    );
    let operator = Operator::start("operator-workload", &["--lease-name", "e2e-workload"]);
    apply(
        ns,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: edge\nspec:\n  replicas: 2\n  clusterIP: 10.96.0.53\n",
    );
    wait_ready(ns, "edge");

    // The Deployment's Pods are admitted under PodSecurity `restricted`: the real
    // replicaset controller creates them, and admission would refuse a non-compliant Pod.
    let pods = wait_for(
        "2 DNS Pods created by the ReplicaSet",
        Duration::from_secs(30),
        || {
            let names = jsonpath(ns, "pods", "{.items[*].metadata.name}");
            (names.split_whitespace().count() == 2).then_some(names)
        },
    );
    let failed = jsonpath(
        ns,
        "events",
        "{.items[?(@.reason==\"FailedCreate\")].message}",
    );
    assert!(failed.is_empty(), "Pods refused: {failed}");
    eprintln!("DNS Pods admitted under PodSecurity restricted: {pods}");

    assert_eq!(
        jsonpath(ns, "service/edge-dns", "{.spec.clusterIP}"),
        "10.96.0.53",
        "fixed ClusterIP"
    );
    let ports = jsonpath(
        ns,
        "service/edge-dns",
        "{range .spec.ports[*]}{.protocol}/{.port}->{.targetPort} {end}",
    );
    assert!(
        ports.contains("UDP/53->5353") && ports.contains("TCP/53->5353"),
        "{ports}"
    );
    assert_eq!(jsonpath(ns, "pdb/edge-dns", "{.spec.maxUnavailable}"), "1");
    assert_eq!(jsonpath(ns, "deployment/edge-dns", "{.spec.replicas}"), "2");
    // Cluster-wide read access is a binding of the shipped ClusterRole nameplane-dns (the
    // operator writes no ClusterRole); in its namespace the server reads only its ConfigMap.
    assert_eq!(
        jsonpath(
            "default",
            &format!("clusterrolebinding/{rbac}"),
            "{.roleRef.kind}/{.roleRef.name} {.subjects[*].namespace}/{.subjects[*].name}",
        ),
        "ClusterRole/nameplane-dns e2e-workload/edge-dns"
    );
    // The old per-server ClusterRole is the admin's to delete (the operator may not); the
    // README says how.
    kubectl_ok(&["delete", "clusterrole", rbac]);
    let role = jsonpath(
        ns,
        "role/edge-dns",
        "{range .rules[*]}{.resources} {.resourceNames} {.verbs}{end}",
    );
    assert_eq!(
        role, "[\"configmaps\"] [\"edge-config\"] [\"get\",\"list\",\"watch\"]",
        "the DNS server reads only its own ConfigMap"
    );
    let events = jsonpath(
        ns,
        "events",
        "{.items[?(@.involvedObject.kind==\"DNSServer\")].reason}",
    );
    assert!(
        // Published, its Pods not running (no kubelet): Reconciling, PodsRollingOut.
        events.contains("PodsRollingOut"),
        "an Event on the DNSServer: {events:?}"
    );

    // An owned object deleted by hand is put back.
    let old_uid = jsonpath(ns, "service/edge-dns", "{.metadata.uid}");
    kubectl_ok(&["delete", "service", "edge-dns", "-n", ns]);
    wait_for(
        "the Service to be recreated",
        Duration::from_secs(20),
        || {
            let uid = jsonpath(ns, "service/edge-dns", "{.metadata.uid}");
            (!uid.is_empty() && uid != old_uid).then_some(())
        },
    );

    // Deleting the DNSServer removes everything: its cluster binding by finalizer, the rest
    // by GC.
    kubectl_ok(&[
        "delete",
        "dnsserver",
        "edge",
        "-n",
        ns,
        "--wait=true",
        "--timeout=30s",
    ]);
    wait_for(
        "the cluster binding and the Deployment to be gone",
        Duration::from_secs(30),
        || {
            let left = kubectl(&["get", "clusterrolebinding", rbac])
                .status
                .success()
                || kubectl(&["get", "deployment", "edge-dns", "-n", ns])
                    .status
                    .success();
            (!left).then_some(())
        },
    );
    drop(operator);
    // Pods of the fake node never report termination; remove them so the namespace can go.
    kubectl(&[
        "delete",
        "pods",
        "--all",
        "-n",
        ns,
        "--force",
        "--grace-period=0",
    ]);
}

#[test]
fn a_namespace_taken_off_the_allow_list_loses_its_cluster_access() {
    install_crds();
    let ns = "e2e-allow-list";
    namespace(ns, "");
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: edge\nspec:\n  replicas: 1\n  autopath: true\n";
    let bindings = || {
        let roles = kubectl_ok(&[
            "get",
            "clusterrolebinding",
            "-l",
            &format!("nameplane.io/dnsserver={ns}.edge"),
            "-o",
            "jsonpath={.items[*].roleRef.name}",
        ]);
        let mut roles: Vec<&str> = roles.split_whitespace().collect();
        roles.sort();
        roles.join(" ")
    };
    let lease = ["--lease-name", "e2e-allow-list"];
    let everywhere = Operator::start("operator-allow-all", &lease);
    apply(ns, server);
    wait_ready(ns, "edge");
    assert_eq!(bindings(), "nameplane-dns nameplane-dns-clients");
    drop(everywhere);

    // The same operator, now serving nameplane-system only.
    let mut args = lease.to_vec();
    args.extend(["--dns-server-namespaces", "nameplane-system"]);
    let _operator = Operator::start("operator-allow-one", &args);
    let conditions = wait_for(
        "DNSServer edge Stalled=True/NamespaceNotAllowed",
        Duration::from_secs(60),
        || {
            let c = jsonpath(
                ns,
                "dnsserver/edge",
                "{range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
            );
            c.contains("Stalled=True/NamespaceNotAllowed").then_some(c)
        },
    );
    eprintln!("after the allow-list shrank: {conditions}");
    assert!(
        conditions.contains("Ready=False/NamespaceNotAllowed"),
        "{conditions}"
    );
    assert_eq!(bindings(), "", "its cluster-wide bindings are removed");
    assert_eq!(
        jsonpath(ns, "dnsserver/edge", "{.metadata.finalizers}"),
        "",
        "no finalizer left for an operator that no longer serves it"
    );
    // Deleting it needs nothing from the operator now.
    kubectl_ok(&[
        "delete",
        "dnsserver",
        "edge",
        "-n",
        ns,
        "--wait=true",
        "--timeout=30s",
    ]);
    kubectl(&[
        "delete",
        "pods",
        "--all",
        "-n",
        ns,
        "--force",
        "--grace-period=0",
    ]);
}

/// Starts an operator and a DNS server for DNSServer `live` in `ns`, with Service `web`.
fn live_setup(ns: &str, operator_args: &[&str]) -> (Operator, DnsServer, String) {
    install_crds();
    namespace(ns, "");
    let operator = Operator::start(&format!("operator-{ns}"), operator_args);
    apply(
        ns,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: live\nspec:\n  ttlSeconds: 5\n",
    );
    apply(
        ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - {port: 80}\n",
    );
    wait_ready(ns, "live");
    let mut dns = DnsServer::start(&format!("dns-{ns}"), &format!("{ns}/live-config"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let name = format!("web.{ns}.svc.cluster.local.");
    wait_for("the Service's answer", Duration::from_secs(20), || {
        query_udp(dns.port, &name, RecordType::A, Duration::from_secs(1))
            .filter(|r| !r.answers.is_empty())
    });
    (operator, dns, name)
}

fn set_ttl(ns: &str, ttl: u32) {
    kubectl_ok(&[
        "patch",
        "dnsserver",
        "live",
        "-n",
        ns,
        "--type=merge",
        "-p",
        &format!("{{\"spec\":{{\"ttlSeconds\":{ttl}}}}}"),
    ]);
}

#[test]
fn a_change_reaches_answers_in_under_a_second() {
    let ns = "e2e-latency";
    let (_operator, dns, name) = live_setup(ns, &["--lease-name", "e2e-latency"]);
    let mut samples = Vec::new();
    for i in 0..20u32 {
        let ttl = 100 + i;
        let started = Instant::now();
        set_ttl(ns, ttl);
        wait_for(
            &format!("TTL {ttl} in answers"),
            Duration::from_secs(10),
            || {
                query_udp(dns.port, &name, RecordType::A, Duration::from_millis(500))
                    .filter(|r| r.answers.first().map(|a| a.0) == Some(ttl))
            },
        );
        samples.push(started.elapsed());
    }
    let (p50, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
    eprintln!(
        "apply -> answer over {} changes (kubectl patch start to first answer with the new TTL): p50 {p50:?}, p99 {p99:?}, max {:?}",
        samples.len(),
        samples.iter().max().expect("samples")
    );
    assert!(
        p99 < Duration::from_secs(1),
        "p99 {p99:?} is over the 1 s goal: {samples:?}"
    );
}

#[test]
fn hundred_reloads_under_query_load_fail_no_query() {
    let ns = "e2e-reload";
    let (_operator, dns, name) = live_setup(ns, &["--lease-name", "e2e-reload"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, name, port) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                name.clone(),
                dns.port,
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match query_udp(port, &name, RecordType::A, Duration::from_secs(2)) {
                        Some(r) if r.rcode == "NOERROR" && r.answers.len() == 1 => {
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        other => {
                            eprintln!("failed query: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let started = Instant::now();
    for i in 0..100u32 {
        set_ttl(ns, 200 + i);
    }
    wait_for("the last TTL in answers", Duration::from_secs(10), || {
        query_udp(dns.port, &name, RecordType::A, Duration::from_millis(500))
            .filter(|r| r.answers.first().map(|a| a.0) == Some(299))
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let reloads = nameplane_e2e::metric_sum(
        &dns.admin("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default(),
        "nameplane_config_reloads_total",
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "100 config changes in {took:?}: {reloads} reloads seen by the server, {ok} queries answered, {failed} failed"
    );
    assert_eq!(failed, 0, "queries failed during reloads");
    assert!(ok > 100, "too few queries to mean anything: {ok}");
    assert!(reloads > 1.0, "the server reloaded under load");
}

#[test]
fn a_standby_operator_takes_over_when_the_leader_dies() {
    let ns = "e2e-failover";
    let lease = [
        "--lease-name",
        "e2e-failover",
        "--lease-duration-seconds",
        "4",
    ];
    let (a, _dns, _name) = live_setup(ns, &lease);
    let b = Operator::start("operator-b", &lease);
    let (leader, standby) = wait_for("exactly one leader", Duration::from_secs(40), || {
        match (a.is_leader(), b.is_leader()) {
            (true, false) => Some(("a", "b")),
            (false, true) => Some(("b", "a")),
            _ => None,
        }
    });
    let (mut leader_op, standby_op) = if leader == "a" { (a, b) } else { (b, a) };
    eprintln!("operator-{leader} leads, operator-{standby} stands by");
    assert!(!standby_op.is_leader());

    leader_op.process.assert_running();
    let killed = Instant::now();
    drop(leader_op); // SIGKILL: no release, the standby must wait for the lease to expire.
    set_ttl(ns, 42);
    let generation = jsonpath(ns, "dnsserver/live", "{.metadata.generation}");
    wait_for(
        "the standby to reconcile the change",
        Duration::from_secs(30),
        || {
            (jsonpath(ns, "dnsserver/live", "{.status.observedGeneration}") == generation)
                .then_some(())
        },
    );
    eprintln!(
        "operator-{standby} took over and reconciled {:?} after the leader was killed",
        killed.elapsed()
    );
    assert!(standby_op.is_leader());
}

/// A nameplane-dns upstream serving zone `stub.kinds` with `a.stub.kinds A <ip>`, from its own
/// ConfigMap `ns/<name>`.
fn zone_upstream(ns: &str, name: &str, ip: &str) -> DnsServer {
    let config = ServerConfig {
        server: format!("{ns}/{name}"),
        zones: vec![ZoneConfig {
            name: "stub.kinds".into(),
            source: format!("{ns}/{name}"),
            ttl_seconds: 30,
            records: vec![RecordConfig {
                name: "a.stub.kinds".into(),
                record_type: RecordKind::A,
                ttl_seconds: 30,
                values: vec![ip.into()],
            }],
            allow_transfer: vec![],
        }],
        ..ServerConfig::default()
    };
    nameplane_e2e::publish_config(ns, name, &config);
    let mut dns = DnsServer::start(name, &format!("{ns}/{name}"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    dns
}

#[test]
fn each_kind_applied_changed_and_deleted_changes_the_answers() {
    let ns = "e2e-kinds";
    let (_operator, dns, web) = live_setup(ns, &["--lease-name", "e2e-kinds"]);
    apply(
        ns,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  ports:\n  - {port: 80}\n",
    );
    let ip_of = |service: &str| {
        kubectl_ok(&[
            "get",
            "service",
            service,
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    };
    let (web_ip, api_ip) = (ip_of("web"), ip_of("api"));
    // A client Pod of this namespace (DNSPolicy selects clients by their Pod).
    let client = "127.0.40.1";
    let kube = Kube::connect();
    kube.create_pods(ns, &[FakePod::new("client", "client", &[client], true)]);
    let first = zone_upstream(ns, "upstream-first", "192.0.2.10");
    let second = zone_upstream(ns, "upstream-second", "192.0.2.20");
    let ask = |name: &str| {
        query_udp_from(
            client,
            dns.port,
            name,
            RecordType::A,
            Duration::from_millis(500),
        )
    };
    let answer_is = |name: &str, rcode: &str, data: Option<&str>| {
        ask(name).is_some_and(|r: QueryResult| {
            r.rcode == rcode && r.answers.first().map(|a| a.1.as_str()) == data
        })
    };
    // Shared by `step` and the label steps below.
    let samples: std::cell::RefCell<Vec<(String, Duration)>> = Default::default();
    let step =
        |what: &str, manifest: Option<&str>, delete: Option<&str>, done: &dyn Fn() -> bool| {
            let started = Instant::now();
            if let Some(manifest) = manifest {
                apply(ns, manifest);
            }
            if let Some(object) = delete {
                kubectl_ok(&["delete", object, "-n", ns]);
            }
            wait_for(what, Duration::from_secs(10), || done().then_some(()));
            samples
                .borrow_mut()
                .push((what.to_owned(), started.elapsed()));
        };

    let zone = |ip: &str| {
        format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: kinds\nspec:\n  zone: zone.kinds\n  records:\n  - {{name: www, type: A, values: [\"{ip}\"]}}\n"
        )
    };
    step("DNSZone applied", Some(&zone("192.0.2.1")), None, &|| {
        answer_is("www.zone.kinds.", "NOERROR", Some("192.0.2.1"))
    });
    step("DNSZone changed", Some(&zone("192.0.2.2")), None, &|| {
        answer_is("www.zone.kinds.", "NOERROR", Some("192.0.2.2"))
    });
    step("DNSZone deleted", None, Some("dnszone/kinds"), &|| {
        answer_is("www.zone.kinds.", "REFUSED", None)
    });

    let stub = |port: u16| {
        format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata:\n  name: kinds\nspec:\n  domain: stub.kinds\n  servers: [\"127.0.0.1:{port}\"]\n"
        )
    };
    step("StubDomain applied", Some(&stub(first.port)), None, &|| {
        answer_is("a.stub.kinds.", "NOERROR", Some("192.0.2.10"))
    });
    step(
        "StubDomain changed",
        Some(&stub(second.port)),
        None,
        &|| answer_is("a.stub.kinds.", "NOERROR", Some("192.0.2.20")),
    );
    step(
        "StubDomain deleted",
        None,
        Some("stubdomain/kinds"),
        &|| answer_is("a.stub.kinds.", "REFUSED", None),
    );

    let rewrite = |service: &str| {
        format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata:\n  name: kinds\nspec:\n  rules:\n  - {{match: Exact, from: alias.kinds.example, to: {service}.{ns}.svc.cluster.local}}\n"
        )
    };
    step("RewriteRule applied", Some(&rewrite("web")), None, &|| {
        answer_is("alias.kinds.example.", "NOERROR", Some(&web_ip))
    });
    step("RewriteRule changed", Some(&rewrite("api")), None, &|| {
        answer_is("alias.kinds.example.", "NOERROR", Some(&api_ip))
    });
    step(
        "RewriteRule deleted",
        None,
        Some("rewriterule/kinds"),
        &|| answer_is("alias.kinds.example.", "REFUSED", None),
    );

    // The client may resolve only `api`; denied names look like names that do not exist,
    // then (changed) are refused.
    let policy = |response: &str| {
        format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata:\n  name: kinds\nspec:\n  podSelector: {{matchLabels: {{app: client}}}}\n  rules:\n  - {{action: Allow, services: [{{name: api}}]}}\n  deniedResponse: {response}\n"
        )
    };
    step(
        "DNSPolicy applied",
        Some(&policy("NXDomain")),
        None,
        &|| answer_is(&web, "NXDOMAIN", None),
    );
    assert!(
        answer_is(
            &format!("api.{ns}.svc.cluster.local."),
            "NOERROR",
            Some(&api_ip)
        ),
        "what the policy allows still resolves"
    );
    step("DNSPolicy changed", Some(&policy("Refused")), None, &|| {
        answer_is(&web, "REFUSED", None)
    });
    // Services by label: a Service is allowed while it carries the label.
    apply(
        ns,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata:\n  name: kinds\nspec:\n  podSelector: {matchLabels: {app: client}}\n  rules:\n  - {action: Allow, services: [{selector: {matchLabels: {dns: open}}}]}\n  deniedResponse: Refused\n",
    );
    let label = |value: &str| {
        kubectl_ok(&["label", "--overwrite", "service", "web", "-n", ns, value]);
    };
    let started = Instant::now();
    label("dns=open");
    wait_for("web allowed once labelled", Duration::from_secs(10), || {
        answer_is(&web, "NOERROR", Some(&web_ip)).then_some(())
    });
    samples
        .borrow_mut()
        .push(("Service labelled into a policy".into(), started.elapsed()));
    let started = Instant::now();
    label("dns-");
    wait_for(
        "web refused once unlabelled",
        Duration::from_secs(10),
        || answer_is(&web, "REFUSED", None).then_some(()),
    );
    samples
        .borrow_mut()
        .push(("Service unlabelled".into(), started.elapsed()));
    step("DNSPolicy deleted", None, Some("dnspolicy/kinds"), &|| {
        answer_is(&web, "NOERROR", Some(&web_ip))
    });

    let samples = samples.into_inner();
    for (what, took) in &samples {
        eprintln!("{what}: the answer changed {took:?} after kubectl started");
    }
    let times: Vec<Duration> = samples.iter().map(|(_, t)| *t).collect();
    let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
    eprintln!(
        "apply/change/delete -> answer over {} changes of 4 kinds and Service labels (kubectl start to the first changed answer): p50 {p50:?}, p99 {p99:?}",
        times.len()
    );
    // The goal is p99 under 1 s (a_change_reaches_answers_in_under_a_second holds it over 20
    // changes). These 12 include starting kubectl each time and, for the first DNSPolicy, the
    // server starting its Pod watch; the bound here leaves room for a loaded CI machine.
    assert!(
        p99 < Duration::from_secs(2),
        "p99 {p99:?} is over 2 s: {samples:?}"
    );
    kube.force_delete_pods(ns, &["client"]);
}
