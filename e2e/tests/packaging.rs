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
//!   its workload (binding the shipped ClusterRoles `nameplane-dns` and, for a server that
//!   needs Pods, `nameplane-dns-clients`, which it may bind but not hold) and removes a deleted
//!   DNSServer's bindings;
//! - that RBAC is enough for the DNS server too: the real `nameplane-dns` runs with a token of
//!   the ServiceAccount the operator made, reads its config through a Role limited to its own
//!   ConfigMap and answers;
//! - the RBAC is least privilege: a DNSServer outside the allow-list (`dnsServerNamespaces`)
//!   is `Stalled` with reason `NamespaceNotAllowed` and gets nothing; the shipped
//!   ValidatingAdmissionPolicy refuses the operator's ServiceAccount what RBAC cannot
//!   (unlabelled objects, bindings of other roles or for other namespaces); and what every
//!   ServiceAccount may do (`kubectl auth can-i --list`) matches the snapshots in
//!   `e2e/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them after an intended change);
//! - `helm uninstall` removes the release and keeps the CRDs and the default DNSServer.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::{
    DnsServer, Process, Transport, free_port, helm, helm_ok, kubectl, kubectl_ok,
    kubectl_with_stdin, poll_until, repo_root, service_account_kubeconfig, wait_for,
    workspace_binary, yaml_objects,
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
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the operator has published the DNSServer's config and looked at its Pods
/// (`Ready=False`, `PodsRollingOut`: no kubelet runs them here, and listing them needs the
/// chart's RBAC too); fails at once when the operator logs an RBAC refusal.
fn wait_ready(namespace: &str, server: &str, operator: &Process) {
    wait_for(
        &format!("DNSServer {namespace}/{server} published (PodsRollingOut)"),
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
            (ready_status(namespace, server) == "False/PodsRollingOut").then_some(())
        },
    );
}

/// A namespace the chart's release does not allow to hold DNSServers.
fn other_namespace(namespace: &str) -> String {
    format!("{namespace}-other")
}

/// A second namespace the chart's release allows to hold DNSServers.
fn extra_namespace(namespace: &str) -> String {
    format!("{namespace}-extra")
}

/// `kubectl --as=<user> <args>` with `manifest` on stdin: whether it succeeded, and stderr.
fn kubectl_as(user: &str, args: &[&str], manifest: &str) -> (bool, String) {
    let mut all = vec![format!("--as={user}")];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = kubectl_with_stdin(&all, Some(manifest));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The chart's aggregated ClusterRoles reach Kubernetes's default roles: a RoleBinding to
/// `edit` in a tenant namespace manages its config kinds and reads DNSServers, but never
/// writes a DNSServer (the clusterrole-aggregation controller of the real
/// kube-controller-manager merges the rules, so this waits for it).
fn assert_default_roles_manage_config_kinds(namespace: &str) {
    let user = "e2e-tenant-owner";
    kubectl_ok(&[
        "create",
        "rolebinding",
        "e2e-tenant-edit",
        "--clusterrole=edit",
        &format!("--user={user}"),
        "-n",
        namespace,
    ]);
    let can_sub = |verb: &str, resource: &str, subresource: &str| {
        let out = kubectl(&[
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            &format!("--as={user}"),
            &format!("--subresource={subresource}"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    let can = |verb: &str, resource: &str| can_sub(verb, resource, "");
    assert!(
        poll_until(Duration::from_secs(30), || can(
            "create",
            "dnszones.nameplane.io"
        )),
        "`edit` never got DNSZones: {FULLNAME}-edit did not aggregate"
    );
    for resource in ["stubdomains", "rewriterules", "dnspolicies"] {
        for verb in ["create", "update", "delete"] {
            assert!(
                can(verb, &format!("{resource}.nameplane.io")),
                "`edit` cannot {verb} {resource}"
            );
        }
    }
    assert!(
        can("list", "dnsservers.nameplane.io"),
        "`edit` reads DNSServers"
    );
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !can(verb, "dnsservers.nameplane.io"),
            "`edit` must not {verb} DNSServers: they are the platform's"
        );
    }
    assert!(
        !can_sub("patch", "dnszones.nameplane.io", "status"),
        "status belongs to the operator"
    );
}

/// A ClusterRoleBinding of `role` for ServiceAccount `sa_namespace/probe`, with the
/// operator's managed-by label when `labelled`.
fn binding(name: &str, role: &str, sa_namespace: &str, labelled: bool) -> String {
    let labels = if labelled {
        "\n  labels: {app.kubernetes.io/managed-by: nameplane-operator}"
    } else {
        ""
    };
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {name}{labels}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
subjects: [{{kind: ServiceAccount, name: probe, namespace: {sa_namespace}}}]\n"
    )
}

/// The operator's ServiceAccount may do what it needs and not more: RBAC refuses a binding
/// of `cluster-admin` and any write outside the allowed namespaces; the chart's
/// ValidatingAdmissionPolicy refuses what RBAC alone would allow (an unlabelled object, a
/// binding for a ServiceAccount of another namespace, taking over an object it did not make).
fn assert_admission_policy_limits_the_operator(ns: &str, other: &str) {
    let operator = format!("system:serviceaccount:{ns}:{OPERATOR}");
    let create = ["create", "-f", "-"];
    let dry_run = ["create", "--dry-run=server", "-f", "-"];
    let refused = |args: &[&str], manifest: &str, namespace: &str, expect: &str, what: &str| {
        let mut args = args.to_vec();
        args.extend(["-n", namespace]);
        let (ok, stderr) = kubectl_as(&operator, &args, manifest);
        assert!(
            !ok && stderr.contains(expect),
            "{what}: expected a refusal containing {expect:?}, got ok={ok}: {stderr}"
        );
        eprintln!(
            "refused, {what}: {}",
            stderr
                .lines()
                .find(|l| l.contains(expect))
                .unwrap_or_default()
        );
    };
    let policy = format!("ValidatingAdmissionPolicy '{OPERATOR}'");

    refused(
        &create,
        &binding("e2e-probe-admin", "cluster-admin", ns, true),
        ns,
        "forbidden",
        "a binding of cluster-admin",
    );
    refused(
        &create,
        &binding("e2e-probe-unlabelled", "nameplane-dns", ns, false),
        ns,
        &policy,
        "an unlabelled binding of nameplane-dns",
    );
    refused(
        &create,
        &binding("e2e-probe-other", "nameplane-dns-clients", other, true),
        ns,
        &policy,
        "a binding for a ServiceAccount outside the allow-list",
    );
    // What the operator itself makes is admitted (a server-side dry run runs admission).
    let (ok, stderr) = kubectl_as(
        &operator,
        &dry_run,
        &binding("e2e-probe-ok", "nameplane-dns", ns, true),
    );
    assert!(
        ok,
        "the operator's own kind of binding is refused: {stderr}"
    );

    let deployment = |labelled: bool| {
        let labels = if labelled {
            "\n  labels: {app.kubernetes.io/managed-by: nameplane-operator}"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: e2e-probe{labels}\nspec:\n  selector: {{matchLabels: {{app: probe}}}}\n  template:\n    metadata: {{labels: {{app: probe}}}}\n    spec: {{containers: [{{name: c, image: example.invalid/probe:1}}]}}\n"
        )
    };
    refused(
        &dry_run,
        &deployment(false),
        ns,
        &policy,
        "an unlabelled Deployment in an allowed namespace",
    );
    refused(
        &dry_run,
        &deployment(true),
        other,
        "forbidden",
        "a Deployment outside the allow-list",
    );
    // Handing on its own namespaced permissions: a Role with more than ConfigMap reads.
    refused(
        &dry_run,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: e2e-probe\n  labels: {app.kubernetes.io/managed-by: nameplane-operator}\nrules:\n- {apiGroups: [apps], resources: [deployments], verbs: [create]}\n",
        ns,
        &policy,
        "a Role granting more than ConfigMap reads",
    );
    // A ConfigMap someone else made: labelling it as the operator's is taking it over.
    kubectl_ok(&[
        "create",
        "configmap",
        "e2e-probe-foreign",
        "-n",
        ns,
        "--from-literal=k=v",
    ]);
    let (ok, stderr) = kubectl_as(
        &operator,
        &[
            "label",
            "configmap",
            "e2e-probe-foreign",
            "-n",
            ns,
            "app.kubernetes.io/managed-by=nameplane-operator",
        ],
        "",
    );
    assert!(
        !ok && stderr.contains(&policy),
        "the operator took over a ConfigMap it did not make: ok={ok} {stderr}"
    );
    eprintln!(
        "refused, taking over a foreign ConfigMap: {}",
        stderr.trim()
    );
    kubectl_ok(&["delete", "configmap", "e2e-probe-foreign", "-n", ns]);
}

/// `kubectl auth can-i --list` for `user` in `namespace`, sorted, with the test's
/// namespace names replaced by placeholders and the columns re-aligned (so the snapshot does
/// not depend on the process id in the namespace names).
fn can_i_list(user: &str, namespace: &str, names: &[(&str, &str)]) -> String {
    let out = kubectl_ok(&[
        "auth",
        "can-i",
        "--list",
        &format!("--as={user}"),
        "-n",
        namespace,
    ]);
    // Columns start where their titles do (kubectl aligns them with a tabwriter); a cell
    // may be empty (no resource on a non-resource URL row).
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let title = lines.next().unwrap_or_default();
    let starts: Vec<usize> = ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"]
        .iter()
        .map(|t| {
            title
                .find(t)
                .unwrap_or_else(|| panic!("no column {t} in {title:?}"))
        })
        .collect();
    let cell = |line: &str, c: usize| {
        let end = starts
            .get(c + 1)
            .copied()
            .unwrap_or(usize::MAX)
            .min(line.len());
        let mut text = line
            .get(starts[c].min(end)..end)
            .unwrap_or_default()
            .trim()
            .to_string();
        for (name, placeholder) in names {
            text = text.replace(name, placeholder);
        }
        text
    };
    let mut rows: Vec<Vec<String>> = std::iter::once(title)
        .chain(lines)
        .map(|line| (0..starts.len()).map(|c| cell(line, c)).collect())
        .collect();
    let header = rows.remove(0);
    rows.sort();
    rows.insert(0, header);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, text)| format!("{text:<width$}", width = widths[c]))
                .collect();
            format!("{}\n", cells.join("   ").trim_end())
        })
        .collect()
}

/// What the operator's and the DNS servers' ServiceAccounts may do, in an allowed namespace
/// and in another one (where only their cluster-wide grants show), against the committed
/// snapshots in e2e/snapshots/. `UPDATE_SNAPSHOTS=1` rewrites them.
fn assert_can_i_snapshots(ns: &str, other: &str, extra: &str) {
    // The longer names first: they start with `ns`.
    let names = [
        (other, "OTHER_NAMESPACE"),
        (extra, "EXTRA_NAMESPACE"),
        (ns, "NAMESPACE"),
    ];
    let sa = |name: &str| format!("system:serviceaccount:{ns}:{name}");
    let cases = [
        ("operator-in-own-namespace", sa(OPERATOR), ns),
        ("operator-cluster-wide", sa(OPERATOR), other),
        (
            "dns-server-in-own-namespace",
            sa(&format!("{FULLNAME}-dns")),
            ns,
        ),
        (
            "dns-server-cluster-wide",
            sa(&format!("{FULLNAME}-dns")),
            other,
        ),
        (
            "dns-server-with-clients-cluster-wide",
            format!("system:serviceaccount:{extra}:second-dns"),
            other,
        ),
        ("operator-in-extra-namespace", sa(OPERATOR), extra),
    ];
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let dir = repo_root().join("e2e/snapshots");
    let mut differing = Vec::new();
    for (name, user, namespace) in cases {
        let actual = can_i_list(&user, namespace, &names);
        let path = dir.join(format!("can-i-{name}.txt"));
        if update {
            std::fs::create_dir_all(&dir).expect("snapshot directory");
            std::fs::write(&path, &actual).expect("write snapshot");
            eprintln!("wrote {}", path.display());
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if expected != actual {
            differing.push(format!(
                "{}:\n--- committed\n{expected}\n+++ now\n{actual}",
                path.display()
            ));
        } else {
            eprintln!(
                "can-i snapshot {name}: {} rules, as committed",
                actual.lines().count() - 1
            );
        }
    }
    assert!(
        differing.is_empty(),
        "RBAC differs from the committed snapshots (after an intended change: UPDATE_SNAPSHOTS=1, and review the diff):\n{}",
        differing.join("\n")
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
        let extra = extra_namespace(ns);
        for (ns, server) in [(ns, FULLNAME), (extra.as_str(), "second")] {
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
            for role in ["nameplane-dns", "nameplane-dns-clients"] {
                let _ = kubectl(&[
                    "delete",
                    "clusterrolebinding",
                    &format!("{role}:{ns}:{server}"),
                    "--ignore-not-found",
                ]);
            }
        }
        // Made only if the admission policy failed to refuse them.
        let _ = kubectl(&[
            "delete",
            "clusterrolebinding",
            "e2e-probe-admin",
            "e2e-probe-unlabelled",
            "e2e-probe-other",
            "--ignore-not-found",
        ]);
        let other = other_namespace(ns);
        let _ = kubectl(&[
            "patch",
            "dnsserver",
            "elsewhere",
            "-n",
            &other,
            "--type=merge",
            "-p",
            "{\"metadata\":{\"finalizers\":null}}",
        ]);
        for namespace in [ns, other.as_str(), extra.as_str()] {
            let _ = kubectl(&["delete", "namespace", namespace, "--wait=false"]);
        }
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
    // dnsServerNamespaces: the release namespace and `extra`, not `other`.
    let other = other_namespace(&ns);
    create_restricted_namespace(&other);
    let extra = extra_namespace(&ns);
    create_restricted_namespace(&extra);

    let out = helm_ok(&[
        "install",
        RELEASE,
        "charts/nameplane",
        "--namespace",
        &ns,
        "--set",
        "dnsServer.enabled=true",
        "--set",
        &format!("dnsServerNamespaces={{{ns},{extra}}}"),
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
        ("clusterrole", "nameplane-dns", false),
        ("clusterrole", "nameplane-dns-clients", false),
        ("role", OPERATOR, true),
        ("rolebinding", OPERATOR, true),
        ("validatingadmissionpolicy", OPERATOR, false),
        ("validatingadmissionpolicybinding", OPERATOR, false),
    ] {
        assert_exists(kind, name, namespaced.then_some(ns.as_str()));
    }
    assert_exists("role", OPERATOR, Some(&extra));
    assert_exists("rolebinding", OPERATOR, Some(&extra));
    assert!(!exists("role", OPERATOR, Some(&other)));
    assert_default_roles_manage_config_kinds(&other);
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
        // The default DNSServer's namespace must be allowed.
        "--set",
        &format!("dnsServerNamespaces={{{ns}}}"),
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
    // The DNS server's cluster-wide access is a binding of the shipped ClusterRole, not a
    // ClusterRole of its own; it needs no Pods, so nameplane-dns-clients is not bound.
    let rbac = format!("nameplane-dns:{ns}:{FULLNAME}");
    assert_eq!(
        kubectl_ok(&[
            "get",
            "clusterrolebinding",
            &rbac,
            "-o",
            "jsonpath={.roleRef.kind}/{.roleRef.name} {.subjects[0].namespace}/{.subjects[0].name}",
        ]),
        format!("ClusterRole/nameplane-dns {ns}/{dns_service}")
    );
    assert!(
        !exists("clusterrole", &rbac, None),
        "no per-server ClusterRole"
    );
    assert!(!exists(
        "clusterrolebinding",
        &format!("nameplane-dns-clients:{ns}:{FULLNAME}"),
        None
    ));
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
        "the PodsRollingOut Event of the default DNSServer (published; no kubelet runs its Pods)",
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
            reasons.contains("PodsRollingOut").then_some(())
        },
    );

    // The DNS server runs with exactly the RBAC the operator gave it: the shipped
    // nameplane-dns ClusterRole and a Role that reads only its own ConfigMap (so its
    // ConfigMap watch must select it by name).
    let mut dns = DnsServer::start_as(
        "dns-chart-rbac",
        &service_account_kubeconfig(&ns, &dns_service),
        &format!("{ns}/{FULLNAME}-config"),
        &[],
    );
    let ready = dns.wait_ready(Duration::from_secs(30));
    eprintln!(
        "the DNS server under its own ServiceAccount: {}",
        ready.trim()
    );
    let answer = dns.dig("kubernetes.default.svc.cluster.local.", "A", Transport::Udp);
    assert_eq!(
        (answer.status.as_str(), answer.data("A")),
        ("NOERROR", vec!["10.96.0.1".to_string()]),
        "{}",
        answer.raw
    );
    assert!(
        !dns.process.log().to_lowercase().contains("forbidden"),
        "the DNS server was refused something:\n{}",
        dns.process.log()
    );
    drop(dns);

    // A second DNSServer, in the other allowed namespace, whose config needs Pods
    // (autopath): it also gets nameplane-dns-clients.
    let second = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: second\nspec:\n  replicas: 1\n  autopath: true\n";
    let out = apply_stdin(&["apply", "-n", &extra, "-f", "-"], second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_ready(&extra, "second", &operator);
    let second_rbac = format!("nameplane-dns:{extra}:second");
    let second_clients = format!("nameplane-dns-clients:{extra}:second");
    assert_pods_admitted(&extra, "second-dns");
    assert_eq!(
        kubectl_ok(&[
            "get",
            "clusterrolebinding",
            &second_clients,
            "-o",
            "jsonpath={.roleRef.name}"
        ]),
        "nameplane-dns-clients"
    );

    // A DNSServer outside the allow-list: Stalled with a reason, and nothing made for it.
    let elsewhere = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: elsewhere\nspec:\n  replicas: 1\n  autopath: true\n";
    let out = apply_stdin(&["apply", "-n", &other, "-f", "-"], elsewhere);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stalled = wait_for(
        "DNSServer elsewhere Stalled=True",
        Duration::from_secs(30),
        || {
            let conditions = kubectl_ok(&[
                "get",
                "dnsserver",
                "elsewhere",
                "-n",
                &other,
                "-o",
                "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
            ]);
            conditions.contains("Stalled=True").then_some(conditions)
        },
    );
    eprintln!("DNSServer {other}/elsewhere: {stalled}");
    assert!(
        stalled.contains("Ready=False/NamespaceNotAllowed")
            && stalled.contains("Stalled=True/NamespaceNotAllowed"),
        "{stalled}"
    );
    // Give a wrong operator time to make something, then look.
    std::thread::sleep(Duration::from_secs(2));
    let made = kubectl_ok(&[
        "get",
        "deployment,serviceaccount,role,rolebinding,configmap,service,poddisruptionbudget",
        "-n",
        &other,
        "-l",
        "app.kubernetes.io/managed-by=nameplane-operator",
        "-o",
        "name",
    ]);
    assert!(made.trim().is_empty(), "made for elsewhere: {made}");
    let bindings = kubectl_ok(&[
        "get",
        "clusterrolebinding",
        "-l",
        &format!("nameplane.io/dnsserver={other}.elsewhere"),
        "-o",
        "name",
    ]);
    assert!(
        bindings.trim().is_empty(),
        "bound for elsewhere: {bindings}"
    );
    assert_eq!(
        kubectl_ok(&[
            "get",
            "dnsserver",
            "elsewhere",
            "-n",
            &other,
            "-o",
            "jsonpath={.metadata.finalizers}"
        ]),
        "",
        "no finalizer: deleting it needs no operator"
    );

    assert_admission_policy_limits_the_operator(&ns, &other);
    assert_can_i_snapshots(&ns, &other, &extra);

    // Deleting a DNSServer: the operator's finalizer removes its cluster-scoped bindings.
    kubectl_ok(&[
        "delete",
        "dnsserver",
        "second",
        "-n",
        &extra,
        "--wait=false",
    ]);
    wait_gone("dnsserver", "second", Some(&extra));
    wait_gone("clusterrolebinding", &second_rbac, None);
    wait_gone("clusterrolebinding", &second_clients, None);
    kubectl_ok(&[
        "delete",
        "dnsserver",
        "elsewhere",
        "-n",
        &other,
        "--wait=false",
    ]);
    wait_gone("dnsserver", "elsewhere", Some(&other));

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
        ("clusterrole", "nameplane-dns", false),
        ("clusterrole", "nameplane-dns-clients", false),
        ("role", OPERATOR, true),
        ("rolebinding", OPERATOR, true),
        ("validatingadmissionpolicy", OPERATOR, false),
        ("validatingadmissionpolicybinding", OPERATOR, false),
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
        ("clusterrole", "nameplane-dns", false),
        ("clusterrole", "nameplane-dns-clients", false),
        ("role", "nameplane-operator", true),
        ("rolebinding", "nameplane-operator", true),
        ("validatingadmissionpolicy", "nameplane-operator", false),
        (
            "validatingadmissionpolicybinding",
            "nameplane-operator",
            false,
        ),
    ] {
        assert_exists(kind, name, namespaced.then_some(ns));
    }
    assert_pods_admitted(ns, "nameplane-operator");
}
