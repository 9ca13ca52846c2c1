//! DNS Pods shaped like cluster DNS, on a real control plane: the Deployment a `DNSServer`
//! renders has kubeadm's CoreDNS defaults and its Pods are admitted under PodSecurity
//! `restricted`; overrides (`podLabels`, `kubeDNSLabel`, `podTemplate`…) merge into it
//! without touching the selector; a `podTemplate` that is no Pod spec stalls the server; the
//! dual-stack Service fields reach the Service and admission keeps their primary immutable;
//! `kubectl scale dnsserver` sets the replica count through the `/scale` subresource and the
//! operator keeps it; the proportional mode follows Nodes as they come, are cordoned and go.
//!
//! Needs `make cluster-up` and `cargo build --bins` first.

use nameplane_e2e::{
    NamespaceGuard, Operator, apply, install_crds, jsonpath, kubectl, kubectl_ok,
    kubectl_with_stdin, metric_sum, set_node, wait_for,
};
use std::time::Duration;

const SERVER: &str =
    "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: edge\n";

/// Waits until the operator has applied the current generation of `edge`: its Deployment
/// and Service are written and it waits for the Pods (no kubelet runs them here, so
/// `Ready` is False with `PodsRollingOut`; `e2e/tests/status.rs` runs them to Ready).
fn wait_ready(namespace: &str) {
    wait_for(
        &format!("DNSServer {namespace}/edge applied (PodsRollingOut or Ready)"),
        Duration::from_secs(30),
        || {
            let at = |path: &str| jsonpath(namespace, "dnsserver/edge", path);
            let reason = at("{.status.conditions[?(@.type==\"Ready\")].reason}");
            let current = at("{.status.observedGeneration}") == at("{.metadata.generation}");
            (current && (reason == "PodsRollingOut" || reason == "ConfigPublished")).then_some(())
        },
    );
}

/// Waits until `path` of `what` in `namespace` reads `want`.
fn wait_jsonpath(namespace: &str, what: &str, path: &str, want: &str) {
    wait_for(
        &format!("{namespace}/{what} {path} = {want:?}"),
        Duration::from_secs(30),
        || (jsonpath(namespace, what, path) == want).then_some(()),
    );
}

/// Waits until the Deployment `edge-dns` has made its Pods and says so in its status, and a
/// moment more: the operator reconciles on those status writes, so a change after this is
/// seen only if the operator was told about it.
fn wait_settled(namespace: &str) {
    wait_for("the Deployment to settle", Duration::from_secs(30), || {
        let d = jsonpath(
            namespace,
            "deployment/edge-dns",
            "{.spec.replicas} {.status.replicas} {.metadata.generation} {.status.observedGeneration}",
        );
        let f: Vec<&str> = d.split_whitespace().collect();
        (f.len() == 4 && f[0] == f[1] && f[2] == f[3]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
}

/// Deletes the Pods the ReplicaSets made (no kubelet ever stops them), so the namespace goes.
fn delete_pods(namespace: &str) {
    kubectl(&[
        "delete",
        "pods",
        "--all",
        "-n",
        namespace,
        "--force",
        "--grace-period=0",
    ]);
}

#[test]
fn deployment_has_cluster_dns_defaults_and_overrides_merge() {
    install_crds();
    let ns = "e2e-pods-shape";
    let operator = Operator::start("operator-pods-shape", &["--lease-name", "e2e-pods-shape"]);
    let _guard =
        NamespaceGuard::fresh(&[(ns, &[("pod-security.kubernetes.io/enforce", "restricted")])]);
    apply(ns, &format!("{SERVER}spec:\n  replicas: 2\n"));
    wait_ready(ns);
    let deployment = "deployment/edge-dns";
    let pod = |path: &str| jsonpath(ns, deployment, &format!("{{.spec.template.spec.{path}}}"));
    assert_eq!(pod("priorityClassName"), "system-cluster-critical");
    assert_eq!(
        pod("tolerations[*].key"),
        "CriticalAddonsOnly node-role.kubernetes.io/control-plane"
    );
    assert_eq!(pod("nodeSelector"), r#"{"kubernetes.io/os":"linux"}"#);
    assert_eq!(
        pod("topologySpreadConstraints[*].topologyKey"),
        "topology.kubernetes.io/zone kubernetes.io/hostname"
    );
    assert_eq!(
        pod("topologySpreadConstraints[*].whenUnsatisfiable"),
        "ScheduleAnyway ScheduleAnyway"
    );
    assert_eq!(
        pod(
            "affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey"
        ),
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pod("securityContext.runAsUser") + &pod("securityContext.runAsGroup"),
        "",
        "no fixed UID: OpenShift assigns one"
    );
    assert_eq!(pod("securityContext.runAsNonRoot"), "true");
    let selector = jsonpath(ns, deployment, "{.spec.selector.matchLabels}");

    // The real replicaset controller creates the Pods: admission (PodSecurity restricted,
    // the Priority plugin resolving system-cluster-critical) lets them in.
    let pods = wait_for(
        "2 DNS Pods created by the ReplicaSet",
        Duration::from_secs(30),
        || {
            let priorities = jsonpath(ns, "pods", "{.items[*].spec.priority}");
            (priorities.split_whitespace().count() == 2).then_some(priorities)
        },
    );
    assert_eq!(
        pods, "2000000000 2000000000",
        "system-cluster-critical resolved by admission"
    );
    let failed = jsonpath(
        ns,
        "events",
        "{.items[?(@.reason==\"FailedCreate\")].message}",
    );
    assert!(failed.is_empty(), "Pods refused: {failed}");

    // Overrides: dedicated fields, then podTemplate over them.
    apply(
        ns,
        &format!(
            "{SERVER}spec:\n  replicas: 2\n  kubeDNSLabel: true\n  podLabels: {{team: net, app.kubernetes.io/instance: hijack}}\n  podAnnotations: {{example.org/owner: platform}}\n  nodeSelector: {{pool: dns}}\n  resources: {{requests: {{cpu: 200m, memory: 100Mi}}, limits: {{memory: 300Mi}}}}\n  podTemplate:\n    metadata: {{labels: {{tier: dns}}}}\n    spec:\n      containers:\n      - {{name: dns, env: [{{name: GOMAXPROCS, value: '2'}}]}}\n      - name: sidecar\n        image: example.org/sidecar:1\n        securityContext: {{allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: {{drop: [ALL]}}}}\n      tolerations: [{{key: dedicated, operator: Equal, value: dns, effect: NoSchedule}}]\n"
        ),
    );
    wait_jsonpath(
        ns,
        deployment,
        "{.spec.template.spec.containers[*].name}",
        "dns sidecar",
    );
    let labels = jsonpath(ns, deployment, "{.spec.template.metadata.labels}");
    for want in [
        r#""k8s-app":"kube-dns""#,
        r#""team":"net""#,
        r#""tier":"dns""#,
        r#""app.kubernetes.io/instance":"edge""#,
    ] {
        assert!(labels.contains(want), "{want} in {labels}");
    }
    assert_eq!(
        jsonpath(ns, deployment, "{.spec.selector.matchLabels}"),
        selector,
        "the selector (immutable) did not change"
    );
    assert_eq!(
        jsonpath(
            ns,
            deployment,
            "{.spec.template.metadata.annotations.example\\.org/owner}"
        ),
        "platform"
    );
    assert_eq!(pod("nodeSelector"), r#"{"pool":"dns"}"#);
    assert_eq!(
        pod("tolerations[*].key"),
        "CriticalAddonsOnly node-role.kubernetes.io/control-plane dedicated",
        "podTemplate tolerations are appended"
    );
    assert_eq!(pod("containers[0].resources.requests.cpu"), "200m");
    assert_eq!(pod("containers[0].env[*].name"), "POD_NAME GOMAXPROCS");
    assert!(
        pod("containers[0].image").contains("nameplane"),
        "the DNS container keeps its image"
    );
    assert_eq!(
        jsonpath(ns, "service/edge-dns", "{.metadata.labels.k8s-app}"),
        "kube-dns"
    );
    assert!(
        !jsonpath(ns, "service/edge-dns", "{.spec.selector}").contains("k8s-app"),
        "the Service selects by the operator's labels only"
    );
    wait_ready(ns);

    // The merged Deployment is stable: a reconcile with nothing to change writes nothing
    // (no field the API server defaults or canonicalises differently from what is sent).
    std::thread::sleep(Duration::from_secs(2));
    let reconciles = || metric_sum(&operator.metrics(), "nameplane_operator_reconciles_total");
    let (writes, reconciled) = (operator.writes(), reconciles());
    kubectl_ok(&[
        "annotate",
        "--overwrite",
        "dnsserver",
        "edge",
        "-n",
        ns,
        "e2e/touched=1",
    ]);
    wait_for(
        "a reconcile after the annotation",
        Duration::from_secs(10),
        || (reconciles() > reconciled).then_some(()),
    );
    assert_eq!(operator.writes(), writes, "writes although nothing changed");

    // A podTemplate that is no Pod spec: Stalled, and the Deployment is left alone.
    let generation = jsonpath(ns, deployment, "{.metadata.generation}");
    apply(
        ns,
        &format!("{SERVER}spec:\n  podTemplate: {{spec: {{nodeSelectr: {{pool: other}}}}}}\n"),
    );
    let message = wait_for(
        "Stalled=True/InvalidPodTemplate",
        Duration::from_secs(30),
        || {
            let reason = jsonpath(
                ns,
                "dnsserver/edge",
                "{.status.conditions[?(@.type==\"Stalled\")].reason}",
            );
            (reason == "InvalidPodTemplate").then(|| {
                jsonpath(
                    ns,
                    "dnsserver/edge",
                    "{.status.conditions[?(@.type==\"Stalled\")].message}",
                )
            })
        },
    );
    assert!(message.contains("spec.podTemplate.spec"), "{message}");
    assert_eq!(
        jsonpath(ns, deployment, "{.metadata.generation}"),
        generation
    );

    // `[]`/`""` turn a default off.
    apply(
        ns,
        &format!(
            "{SERVER}spec:\n  priorityClassName: ''\n  tolerations: []\n  nodeSelector: {{}}\n  topologySpreadConstraints: []\n"
        ),
    );
    wait_jsonpath(ns, deployment, "{.spec.template.spec.tolerations}", "");
    assert_eq!(pod("priorityClassName"), "");
    assert_eq!(pod("nodeSelector"), "");
    assert_eq!(pod("topologySpreadConstraints"), "");
    wait_ready(ns);

    // A Pod spec the API server refuses (a sidecar without an image): Stalled with its
    // message, not Ready from before; fixing the spec makes it Ready again.
    apply(
        ns,
        &format!("{SERVER}spec:\n  podTemplate: {{spec: {{containers: [{{name: sidecar}}]}}}}\n"),
    );
    let message = wait_for(
        "Stalled=True/WorkloadRefused",
        Duration::from_secs(30),
        || {
            let reason = jsonpath(
                ns,
                "dnsserver/edge",
                "{.status.conditions[?(@.type==\"Ready\")].reason}",
            );
            (reason == "WorkloadRefused").then(|| {
                jsonpath(
                    ns,
                    "dnsserver/edge",
                    "{.status.conditions[?(@.type==\"Stalled\")].status} {.status.conditions[?(@.type==\"Stalled\")].message}",
                )
            })
        },
    );
    assert!(
        message.starts_with("True ") && message.contains("image"),
        "{message}"
    );
    apply(ns, &format!("{SERVER}spec:\n  replicas: 2\n"));
    wait_ready(ns);
    delete_pods(ns);
}

#[test]
fn dual_stack_service_and_immutable_primary() {
    install_crds();
    let ns = "e2e-pods-dualstack";
    let _operator = Operator::start(
        "operator-pods-dualstack",
        &["--lease-name", "e2e-pods-dualstack"],
    );
    let _guard = NamespaceGuard::fresh(&[(ns, &[])]);
    let spec = "spec:\n  replicas: 1\n  clusterIP: 10.96.0.63\n  clusterIPs: [10.96.0.63, 'fd00:10:96::63']\n  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n";
    apply(ns, &format!("{SERVER}{spec}"));
    wait_ready(ns);
    let service = "service/edge-dns";
    assert_eq!(
        jsonpath(ns, service, "{.spec.clusterIPs}"),
        r#"["10.96.0.63","fd00:10:96::63"]"#
    );
    assert_eq!(
        jsonpath(ns, service, "{.spec.ipFamilies}"),
        r#"["IPv4","IPv6"]"#
    );
    assert_eq!(
        jsonpath(ns, service, "{.spec.ipFamilyPolicy}"),
        "RequireDualStack"
    );
    // Admission refuses what Kubernetes would refuse on the Service.
    for (bad, why) in [
        (
            "spec:\n  clusterIPs: ['fd00:10:96::64', 10.96.0.64]\n  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6, IPv4]\n".to_string(),
            "cannot be changed",
        ),
        (
            spec.replace("'fd00:10:96::63'", "10.96.0.64"),
            "at most one address per IP family",
        ),
        (
            spec.replace("clusterIP: 10.96.0.63", "clusterIP: 10.96.0.65"),
            "must equal clusterIP",
        ),
    ] {
        let out = kubectl_with_stdin(
            &["apply", "-n", ns, "-f", "-"],
            Some(&format!("{SERVER}{bad}")),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{bad}: {stderr}"
        );
    }
    delete_pods(ns);
}

#[test]
fn kubectl_scale_sets_replicas_and_the_operator_keeps_them() {
    install_crds();
    let ns = "e2e-pods-scale";
    let _operator = Operator::start("operator-pods-scale", &["--lease-name", "e2e-pods-scale"]);
    let _guard = NamespaceGuard::fresh(&[(ns, &[])]);
    apply(ns, &format!("{SERVER}spec:\n  replicas: 2\n"));
    wait_ready(ns);
    kubectl_ok(&["scale", "dnsserver", "edge", "-n", ns, "--replicas=3"]);
    wait_jsonpath(ns, "deployment/edge-dns", "{.spec.replicas}", "3");
    wait_jsonpath(ns, "dnsserver/edge", "{.status.replicas}", "3");
    // The /scale subresource an HPA or KEDA reads: count and Pod selector.
    let scale = kubectl_ok(&[
        "get",
        "--raw",
        &format!("/apis/nameplane.io/v1alpha1/namespaces/{ns}/dnsservers/edge/scale"),
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("Scale json");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 3);
    let selector = scale["status"]["selector"].as_str().unwrap_or_default();
    wait_for(
        "the ReplicaSet's 3 Pods to match the /scale selector",
        Duration::from_secs(30),
        || {
            let pods = kubectl_ok(&["get", "pods", "-n", ns, "-l", selector, "-o", "name"]);
            (pods.lines().count() == 3).then_some(())
        },
    );
    eprintln!("/scale: {scale}");

    // A later reconcile (a spec change elsewhere) keeps the count someone else set.
    kubectl_ok(&[
        "patch",
        "dnsserver",
        "edge",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"ttlSeconds":7}}"#,
    ]);
    wait_for("the change to be observed", Duration::from_secs(30), || {
        (jsonpath(ns, "dnsserver/edge", "{.status.observedGeneration}")
            == jsonpath(ns, "dnsserver/edge", "{.metadata.generation}"))
        .then_some(())
    });
    assert_eq!(jsonpath(ns, "dnsserver/edge", "{.spec.replicas}"), "3");
    assert_eq!(jsonpath(ns, "deployment/edge-dns", "{.spec.replicas}"), "3");
    kubectl_ok(&["scale", "dnsserver", "edge", "-n", ns, "--replicas=1"]);
    wait_jsonpath(ns, "deployment/edge-dns", "{.spec.replicas}", "1");
    delete_pods(ns);
}

#[test]
fn proportional_mode_follows_node_count() {
    install_crds();
    let ns = "e2e-pods-proportional";
    let _operator = Operator::start(
        "operator-pods-proportional",
        &["--lease-name", "e2e-pods-proportional"],
    );
    let _guard = NamespaceGuard::fresh(&[(ns, &[])]);
    let added = ["e2e-pods-node-a", "e2e-pods-node-b", "e2e-pods-node-c"];
    for node in added {
        kubectl(&["delete", "node", node, "--ignore-not-found"]);
    }
    let schedulable = || {
        let out = kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.spec.unschedulable}{\"\\n\"}{end}",
        ]);
        out.lines().filter(|l| l.trim() != "true").count() as i64
    };
    // One replica per node, at most 20; spec.replicas (5) is ignored.
    apply(
        ns,
        &format!(
            "{SERVER}spec:\n  replicas: 5\n  autoscaling: {{mode: Proportional, nodesPerReplica: 1, coresPerReplica: 100000, max: 20}}\n"
        ),
    );
    wait_ready(ns);
    let base = schedulable();
    // ceil(nodes / 1), at least 1 (and at least 2 past one node, which it already is).
    let expect = |nodes: i64| nodes.max(1).to_string();
    wait_jsonpath(ns, "deployment/edge-dns", "{.spec.replicas}", &expect(base));
    wait_jsonpath(ns, "dnsserver/edge", "{.status.replicas}", &expect(base));

    wait_settled(ns);
    for node in added {
        set_node(node, &[("InternalIP", "192.0.2.61")]);
    }
    wait_jsonpath(
        ns,
        "deployment/edge-dns",
        "{.spec.replicas}",
        &expect(base + 3),
    );
    wait_settled(ns);
    kubectl_ok(&["cordon", added[0]]);
    wait_jsonpath(
        ns,
        "deployment/edge-dns",
        "{.spec.replicas}",
        &expect(base + 2),
    );
    wait_settled(ns);
    kubectl_ok(&["delete", "node", added[1], added[2]]);
    wait_jsonpath(ns, "deployment/edge-dns", "{.spec.replicas}", &expect(base));
    // The operator owns the count but never writes spec.replicas.
    assert_eq!(jsonpath(ns, "dnsserver/edge", "{.spec.replicas}"), "5");
    kubectl_ok(&["delete", "node", added[0]]);
    delete_pods(ns);
}
