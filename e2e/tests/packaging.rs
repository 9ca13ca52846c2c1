//! The packaging, installed on the real local control plane: the Helm chart
//! (`charts/nameplane`) and the kustomize bases (`config/default`).
//!
//! There is no kubelet, so no Pod runs. What is checked instead:
//! - every object of the release exists and the CRDs are established;
//! - the Pods pass PodSecurity `restricted`: the namespace enforces it *before* the install,
//!   and the kube-controller-manager's ReplicaSet controller really creates the Pods (the
//!   admission plugin would refuse them with a `FailedCreate` event);
//! - the chart's RBAC is enough for the operator: the real `nameplane-operator` binary runs
//!   as a local process with a token of the chart's ServiceAccount (so with exactly the
//!   permissions the chart grants), takes the Lease, publishes the default DNSServer, creates
//!   its workload (including the DNS server's ClusterRole: Kubernetes allows that only when
//!   the operator holds every permission in it) and removes a deleted DNSServer's RBAC;
//! - `helm uninstall` removes the release and keeps the CRDs and the default DNSServer.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::{
    Process, free_port, helm, helm_ok, kubectl, kubectl_ok, kubectl_with_stdin,
    service_account_kubeconfig, wait_for, workspace_binary, yaml_objects,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const RELEASE: &str = "np-e2e";
/// The release's full name (`<release>-<chart>`): the chart's naming.
const FULLNAME: &str = "np-e2e-nameplane";
const OPERATOR: &str = "np-e2e-nameplane-operator";
const CRDS: [&str; 5] = [
    "dnsservers",
    "dnszones",
    "stubdomains",
    "rewriterules",
    "dnspolicies",
];

fn apply_stdin(args: &[&str], yaml: &str) -> std::process::Output {
    kubectl_with_stdin(args, Some(yaml))
}

fn create_restricted_namespace(name: &str) {
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n"
    );
    let out = apply_stdin(&["apply", "-f", "-"], &manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace really enforces `restricted`: a plain Pod is refused (server-side dry run,
/// which runs admission).
fn assert_namespace_refuses_plain_pods(namespace: &str) {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: plain\nspec:\n  containers:\n  - name: c\n    image: example.invalid/plain:1\n";
    let out = apply_stdin(
        &["apply", "--dry-run=server", "-n", namespace, "-f", "-"],
        pod,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("violates PodSecurity \"restricted"),
        "namespace {namespace} does not enforce PodSecurity restricted: {stderr}"
    );
}

fn exists(kind: &str, name: &str, namespace: Option<&str>) -> bool {
    let mut args = vec!["get", kind, name, "-o", "name"];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    kubectl(&args).status.success()
}

fn assert_exists(kind: &str, name: &str, namespace: Option<&str>) {
    assert!(
        exists(kind, name, namespace),
        "{kind} {name} missing (namespace {namespace:?})"
    );
}

fn wait_gone(kind: &str, name: &str, namespace: Option<&str>) {
    wait_for(
        &format!("{kind} {name} to be deleted"),
        Duration::from_secs(60),
        || (!exists(kind, name, namespace)).then_some(()),
    );
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&kubectl_ok(args)).expect("kubectl -o json")
}

fn assert_crds_established() {
    for plural in CRDS {
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{plural}.nameplane.io"),
        ]);
    }
}

/// Messages of the namespace's `FailedCreate` events (the ReplicaSet controller's report of a
/// Pod refused at admission).
fn failed_creates(namespace: &str) -> String {
    kubectl_ok(&[
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "reason=FailedCreate",
        "-o",
        "jsonpath={.items[*].message}",
    ])
}

/// Waits until the Deployment's ReplicaSet has created all its Pods: they passed admission,
/// PodSecurity `restricted` included. Fails at once on a `FailedCreate` event.
fn assert_pods_admitted(namespace: &str, deployment: &str) {
    let d = json(&[
        "get",
        "deployment",
        deployment,
        "-n",
        namespace,
        "-o",
        "json",
    ]);
    let replicas = d["spec"]["replicas"].as_u64().expect("replicas") as usize;
    let selector = d["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().expect("label value")))
        .collect::<Vec<_>>()
        .join(",");
    let pods = wait_for(
        &format!("{replicas} Pods of Deployment {namespace}/{deployment}"),
        Duration::from_secs(60),
        || {
            let failed = failed_creates(namespace);
            assert!(
                failed.is_empty(),
                "Pods of {deployment} refused at admission: {failed}"
            );
            let names = kubectl_ok(&[
                "get", "pods", "-n", namespace, "-l", &selector, "-o", "name",
            ]);
            let names: Vec<String> = names.lines().map(str::to_string).collect();
            (names.len() >= replicas).then_some(names)
        },
    );
    eprintln!(
        "{namespace}/{deployment}: Pods admitted under PodSecurity restricted: {}",
        pods.join(" ")
    );
    assert!(failed_creates(namespace).is_empty());
}

fn ready_status(namespace: &str, server: &str) -> String {
    let out = kubectl(&[
        "get",
        "dnsserver",
        server,
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for the DNSServer's `Ready=True`; fails at once when the operator logs an RBAC
/// refusal.
fn wait_ready(namespace: &str, server: &str, operator: &Process) {
    wait_for(
        &format!("DNSServer {namespace}/{server} Ready=True"),
        Duration::from_secs(60),
        || {
            let forbidden: Vec<String> = operator
                .log()
                .lines()
                .filter(|l| l.to_lowercase().contains("forbidden"))
                .map(str::to_string)
                .collect();
            assert!(
                forbidden.is_empty(),
                "the chart's RBAC refused the operator something:\n{}",
                forbidden.join("\n")
            );
            (ready_status(namespace, server) == "True").then_some(())
        },
    );
}

/// Best-effort removal of everything the chart test may have left behind, also when it
/// failed half-way.
struct ChartCleanup {
    namespace: String,
}

impl Drop for ChartCleanup {
    fn drop(&mut self) {
        let ns = self.namespace.as_str();
        let _ = helm(&["uninstall", RELEASE, "-n", ns]);
        for server in [FULLNAME, "second"] {
            // Without a running operator nobody removes the finalizer.
            let _ = kubectl(&[
                "patch",
                "dnsserver",
                server,
                "-n",
                ns,
                "--type=merge",
                "-p",
                "{\"metadata\":{\"finalizers\":null}}",
            ]);
            let _ = kubectl(&[
                "delete",
                "dnsserver",
                server,
                "-n",
                ns,
                "--ignore-not-found",
                "--wait=false",
            ]);
            let rbac = format!("nameplane-dns:{ns}:{server}");
            let _ = kubectl(&[
                "delete",
                "clusterrolebinding,clusterrole",
                &rbac,
                "--ignore-not-found",
            ]);
        }
        let _ = kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
}

#[test]
fn helm_chart_installs_under_podsecurity_restricted_and_its_rbac_runs_the_operator() {
    let ns = format!("e2e-helm-{}", std::process::id());
    let _cleanup = ChartCleanup {
        namespace: ns.clone(),
    };
    create_restricted_namespace(&ns);
    assert_namespace_refuses_plain_pods(&ns);

    let out = helm_ok(&[
        "install",
        RELEASE,
        "charts/nameplane",
        "--namespace",
        &ns,
        "--set",
        "dnsServer.enabled=true",
    ]);
    eprintln!("{out}");
    assert!(out.contains("STATUS: deployed"), "{out}");

    // The release's objects.
    assert_crds_established();
    for (kind, name, namespaced) in [
        ("deployment", OPERATOR, true),
        ("serviceaccount", OPERATOR, true),
        ("clusterrole", OPERATOR, false),
        ("clusterrolebinding", OPERATOR, false),
        ("role", "np-e2e-nameplane-operator-leader-election", true),
        (
            "rolebinding",
            "np-e2e-nameplane-operator-leader-election",
            true,
        ),
        ("poddisruptionbudget", OPERATOR, true),
        ("service", "np-e2e-nameplane-operator-metrics", true),
        ("dnsserver", FULLNAME, true),
    ] {
        assert_exists(kind, name, namespaced.then_some(ns.as_str()));
    }
    // Every dnsServer value, rendered by the chart, is a DNSServer the API server accepts
    // (OpenAPI schema and CEL rules of the CRD; server-side dry run).
    let full = helm_ok(&[
        "template",
        RELEASE,
        "charts/nameplane",
        "--namespace",
        &ns,
        "-f",
        "e2e/testdata/chart/full-values.yaml",
        "--show-only",
        "templates/dnsserver.yaml",
    ]);
    let out = apply_stdin(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], &full);
    assert!(
        out.status.success(),
        "the API server refuses the chart's DNSServer with every value set: {}\n{full}",
        String::from_utf8_lossy(&out.stderr)
    );

    let binding = json(&["get", "clusterrolebinding", OPERATOR, "-o", "json"]);
    assert_eq!(binding["subjects"][0]["name"], OPERATOR);
    assert_eq!(binding["subjects"][0]["namespace"], ns.as_str());
    assert_pods_admitted(&ns, OPERATOR);

    // The `helm test` Pod targets the Service the operator creates for the default DNSServer
    // (`<server>-dns`), and passes PodSecurity restricted too.
    let hooks = helm_ok(&["get", "hooks", RELEASE, "-n", &ns]);
    let dns_service = format!("{FULLNAME}-dns");
    assert!(
        hooks.contains(&format!("{dns_service}.{ns}.svc.cluster.local"))
            && hooks.contains("NP_E2E_NAMEPLANE_DNS_SERVICE_HOST"),
        "the helm test Pod does not ask {dns_service}:\n{hooks}"
    );
    let out = apply_stdin(&["apply", "--dry-run=server", "-n", &ns, "-f", "-"], &hooks);
    assert!(
        out.status.success(),
        "the helm test Pod is refused at admission: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The operator binary with the chart's ServiceAccount and the Deployment's arguments.
    let deployment = json(&["get", "deployment", OPERATOR, "-n", &ns, "-o", "json"]);
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    assert_eq!(args[0..2], ["--metrics-listen", "0.0.0.0:8080"]);
    let mut operator_args: Vec<String> = vec![
        "--kubeconfig".into(),
        service_account_kubeconfig(&ns, OPERATOR)
            .display()
            .to_string(),
        "--lease-namespace".into(),
        ns.clone(),
        "--identity".into(),
        "e2e-chart-operator".into(),
    ];
    operator_args.extend(args[2..].iter().cloned());
    operator_args.extend([
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_port()),
    ]);
    let mut operator = Process::start(
        "operator-chart-rbac",
        &workspace_binary("nameplane-operator"),
        &operator_args,
    );
    wait_ready(&ns, FULLNAME, &operator);
    operator.assert_running();
    let lease = kubectl_ok(&[
        "get",
        "lease",
        OPERATOR,
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(lease, "e2e-chart-operator", "the operator holds the Lease");
    for kind in [
        "deployment",
        "service",
        "serviceaccount",
        "poddisruptionbudget",
        "role",
        "rolebinding",
    ] {
        assert_exists(kind, &dns_service, Some(&ns));
    }
    let rbac = format!("nameplane-dns:{ns}:{FULLNAME}");
    assert_exists("clusterrole", &rbac, None);
    assert_exists("clusterrolebinding", &rbac, None);
    assert_pods_admitted(&ns, &dns_service);
    let ports = kubectl_ok(&[
        "get",
        "service",
        &dns_service,
        "-n",
        &ns,
        "-o",
        "jsonpath={range .spec.ports[*]}{.protocol}/{.port} {end}",
    ]);
    assert!(
        ports.contains("UDP/53") && ports.contains("TCP/53"),
        "{ports}"
    );
    // Events (events.k8s.io) are allowed too.
    wait_for(
        "the ConfigPublished Event of the default DNSServer",
        Duration::from_secs(20),
        || {
            let reasons = kubectl_ok(&[
                "get",
                "events.events.k8s.io",
                "-n",
                &ns,
                "-o",
                "jsonpath={range .items[?(@.regarding.kind==\"DNSServer\")]}{.reason} {end}",
            ]);
            reasons.contains("ConfigPublished").then_some(())
        },
    );

    // Deleting a DNSServer: the operator's finalizer removes its cluster-scoped RBAC, which
    // needs `delete` on ClusterRoles and ClusterRoleBindings.
    let second = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: second\nspec:\n  replicas: 1\n";
    let out = apply_stdin(&["apply", "-n", &ns, "-f", "-"], second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_ready(&ns, "second", &operator);
    let second_rbac = format!("nameplane-dns:{ns}:second");
    assert_exists("clusterrole", &second_rbac, None);
    kubectl_ok(&["delete", "dnsserver", "second", "-n", &ns, "--wait=false"]);
    wait_gone("dnsserver", "second", Some(&ns));
    wait_gone("clusterrole", &second_rbac, None);
    wait_gone("clusterrolebinding", &second_rbac, None);

    operator.assert_running();
    let log = operator.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something by RBAC:\n{log}"
    );
    drop(operator);

    // Uninstall: the release's objects go; the CRDs (crds/ of the chart) and the default
    // DNSServer (helm.sh/resource-policy: keep), with the DNS it runs, stay.
    let out = helm_ok(&["uninstall", RELEASE, "-n", &ns]);
    eprintln!("{out}");
    assert!(
        out.contains("kept due to the resource policy") && out.contains(FULLNAME),
        "{out}"
    );
    for (kind, name, namespaced) in [
        ("deployment", OPERATOR, true),
        ("serviceaccount", OPERATOR, true),
        ("clusterrole", OPERATOR, false),
        ("clusterrolebinding", OPERATOR, false),
        ("role", "np-e2e-nameplane-operator-leader-election", true),
        (
            "rolebinding",
            "np-e2e-nameplane-operator-leader-election",
            true,
        ),
        ("poddisruptionbudget", OPERATOR, true),
        ("service", "np-e2e-nameplane-operator-metrics", true),
    ] {
        wait_gone(kind, name, namespaced.then_some(ns.as_str()));
    }
    assert!(
        helm(&["status", RELEASE, "-n", &ns]).status.code() != Some(0),
        "the release is gone"
    );
    assert_exists("dnsserver", FULLNAME, Some(&ns));
    assert_exists("service", &dns_service, Some(&ns));
    assert_crds_established();
}

/// The objects of `config/default`, by (kind, namespace, name).
fn by_key(objects: Vec<Value>) -> BTreeMap<(String, String, String), Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            (key, o)
        })
        .collect()
}

/// An object without what legitimately differs between Helm and kustomize: labels (Helm
/// adds its own), annotations, and the Pod template's labels.
fn comparable(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o["metadata"].as_object_mut() {
        meta.remove("labels");
        meta.remove("annotations");
    }
    if let Some(template) = o["spec"]["template"].as_object_mut() {
        template.remove("metadata");
    }
    o
}

#[test]
fn kustomize_default_installs_what_the_chart_installs() {
    let chart = helm_ok(&[
        "template",
        "nameplane",
        "charts/nameplane",
        "--namespace",
        "nameplane-system",
        "--include-crds",
    ]);
    let kustomize = kubectl_ok(&["kustomize", "config/default"]);
    let chart = by_key(yaml_objects(&chart));
    let mut kustomize = by_key(yaml_objects(&kustomize));
    let namespace = kustomize
        .remove(&("Namespace".into(), String::new(), "nameplane-system".into()))
        .expect("config/default creates its namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        kustomize.keys().collect::<Vec<_>>(),
        "the chart (release nameplane in nameplane-system) and config/default make other objects"
    );
    for (key, from_chart) in &chart {
        if key.0 == "CustomResourceDefinition" {
            // Byte-identical copies of crds/ on both sides (`make chart-lint` checks that);
            // kustomize only re-prints them (e.g. `maximum: 100.0` as `100`).
            continue;
        }
        let from_kustomize = &kustomize[key];
        assert_eq!(
            comparable(from_chart),
            comparable(from_kustomize),
            "{key:?} differs between the chart and config/default"
        );
        // kustomize's labels are a subset of the chart's.
        if let Some(labels) = from_kustomize["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                assert_eq!(
                    &from_chart["metadata"]["labels"][k], v,
                    "{key:?}: label {k}"
                );
            }
        }
    }
    eprintln!("chart and config/default agree on {} objects", chart.len());
}

/// Restores what `kubectl apply -k config/default` changed in a shared cluster: removes the
/// objects it created (never the CRDs, which other tests use) and the namespace if it was
/// new, or else the PodSecurity labels it added.
struct KustomizeCleanup {
    rendered: String,
    namespace_existed: bool,
    had_labels: bool,
}

impl Drop for KustomizeCleanup {
    fn drop(&mut self) {
        let objects: Vec<String> = self
            .rendered
            .split("\n---\n")
            .filter(|doc| !doc.contains("kind: CustomResourceDefinition"))
            .filter(|doc| !doc.contains("kind: Namespace"))
            .map(str::to_string)
            .collect();
        let _ = kubectl_with_stdin(
            &["delete", "--ignore-not-found", "-f", "-"],
            Some(&objects.join("\n---\n")),
        );
        if self.had_labels {
            // Nothing to restore.
        } else if self.namespace_existed {
            let _ = kubectl(&[
                "label",
                "namespace",
                "nameplane-system",
                "pod-security.kubernetes.io/enforce-",
                "pod-security.kubernetes.io/enforce-version-",
            ]);
        } else {
            let _ = kubectl(&["delete", "namespace", "nameplane-system", "--wait=false"]);
        }
    }
}

#[test]
fn kubectl_apply_k_config_default_installs_under_podsecurity_restricted() {
    let ns = "nameplane-system";
    let rendered = kubectl_ok(&["kustomize", "config/default"]);
    let namespace_existed = exists("namespace", ns, None);
    // Other tests share this namespace: put back its labels afterwards.
    let had_labels = namespace_existed
        && kubectl_ok(&["get", "namespace", ns, "-o", "jsonpath={.metadata.labels}"])
            .contains("pod-security.kubernetes.io/enforce");
    let _cleanup = KustomizeCleanup {
        rendered,
        namespace_existed,
        had_labels,
    };

    let out = kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=nameplane-e2e-kustomize",
        "-k",
        "config/default",
    ]);
    eprintln!("{out}");
    assert_crds_established();
    assert_namespace_refuses_plain_pods(ns);
    for (kind, name, namespaced) in [
        ("deployment", "nameplane-operator", true),
        ("serviceaccount", "nameplane-operator", true),
        ("clusterrole", "nameplane-operator", false),
        ("clusterrolebinding", "nameplane-operator", false),
        ("role", "nameplane-operator-leader-election", true),
        ("rolebinding", "nameplane-operator-leader-election", true),
        ("poddisruptionbudget", "nameplane-operator", true),
        ("service", "nameplane-operator-metrics", true),
    ] {
        assert_exists(kind, name, namespaced.then_some(ns));
    }
    assert_pods_admitted(ns, "nameplane-operator");
}
