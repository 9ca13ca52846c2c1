//! Status that tells the truth, on the real control plane (issue 13): a `DNSServer` is
//! `Ready` only once the Pods of its Deployment (made by the real ReplicaSet controller, run
//! here as `nameplane-dns` processes on their own loopback Pod IPs, see
//! [`Kube::run_dns_pods`]) serve the published config hash, which the operator reads from
//! each Pod's `/ready`; it is `Reconciling` while Pods or a config roll out, `Stalled` when a
//! Pod cannot pull its image or the config is over budget (naming `spec.limits.configBytes`);
//! config objects get one Event per verdict change. At every step kstatus (the cli-utils
//! library Flux uses, `e2e/kstatus`) and the Argo CD health check (`config/argocd/health.lua`
//! under `lua5.4`) are computed from the live object and must agree with its conditions.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_e2e::{
    Kube, NamespaceGuard, Operator, apply, argocd_health, install_crds, kstatus, kubectl,
    kubectl_ok, wait_for,
};
use std::time::{Duration, Instant};

const NS: &str = "e2e-status";

/// The live `DNSServer` (or other object) as JSON.
fn object(what: &str) -> serde_json::Value {
    serde_json::from_str(&kubectl_ok(&["get", "-n", NS, what, "-o", "json"])).expect("json")
}

fn condition(object: &serde_json::Value, type_: &str) -> (String, String, String) {
    let c = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_default();
    let s = |f: &str| c[f].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

/// Waits until `what` has `type_=True` with `reason`; then checks that kstatus and Argo CD
/// say `kstatus`/`argo` of the very same object. Returns the object.
fn wait_condition(
    what: &str,
    type_: &str,
    reason: &str,
    kstatus_want: &str,
    argo_want: &str,
) -> serde_json::Value {
    let found = wait_for(
        &format!("{what} {type_}=True ({reason})"),
        Duration::from_secs(45),
        || {
            let o = object(what);
            let (status, r, _) = condition(&o, type_);
            let current = o["status"]["observedGeneration"] == o["metadata"]["generation"];
            (status == "True" && r == reason && current).then_some(o)
        },
    );
    let (k, k_message) = kstatus(&found);
    let (argo, argo_message) = argocd_health(&found);
    eprintln!(
        "{what}: {type_}={reason}; kstatus {k} ({k_message}); Argo CD {argo} ({argo_message})"
    );
    assert_eq!(k, kstatus_want, "kstatus of {found}");
    assert_eq!(argo, argo_want, "Argo CD health of {found}");
    found
}

/// Events about `kind/name` with `reason`, as (count of Event objects, their notes).
fn events(kind: &str, name: &str, reason: &str) -> (usize, Vec<String>) {
    let list: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        NS,
        "-o",
        "json",
    ]))
    .expect("json");
    let notes: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["regarding"]["kind"] == kind
                && e["regarding"]["name"] == name
                && e["reason"] == reason
        })
        .map(|e| {
            format!(
                "{} (series {})",
                e["note"].as_str().unwrap_or_default(),
                e["series"]
            )
        })
        .collect();
    (notes.len(), notes)
}

#[test]
fn status_walks_reconciling_to_ready_only_when_pods_serve_the_hash() {
    install_crds();
    let _operator = Operator::start("operator-status", &["--lease-name", "e2e-status"]);
    let _namespaces = NamespaceGuard::fresh(&[(NS, &[])]);
    let kube = Kube::connect();

    // 1. Published, but no Pod runs yet: Reconciling (PodsRollingOut), not Ready.
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  replicas: 1\n  ttlSeconds: 5\n",
    );
    let o = wait_condition(
        "dnsserver/dns",
        "Reconciling",
        "PodsRollingOut",
        "InProgress",
        "Progressing",
    );
    assert_eq!(condition(&o, "Ready").0, "False");
    let first_hash = o["status"]["configHash"]
        .as_str()
        .expect("configHash")
        .to_string();

    // 2. The ReplicaSet's Pod runs and serves the hash: Ready.
    let started = Instant::now();
    let pods = kube.run_dns_pods(NS, "dns", 1);
    let o = wait_condition(
        "dnsserver/dns",
        "Ready",
        "ConfigPublished",
        "Current",
        "Healthy",
    );
    eprintln!(
        "Ready {:?} after the Pod was marked Ready",
        started.elapsed()
    );
    let (_, body) = pods[0].ready().expect("/ready");
    assert!(body.contains(&format!("config: {first_hash}")), "{body}");
    assert_eq!(o["status"]["readyReplicas"], 1);

    // 3. A new config while the Pod answers nothing (SIGSTOP): published at once, but the
    //    DNSServer stays Reconciling (ConfigRollingOut) and never Ready while no Pod serves it.
    pods[0].signal("STOP");
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  replicas: 1\n  ttlSeconds: 7\n",
    );
    let o = wait_condition(
        "dnsserver/dns",
        "Reconciling",
        "ConfigRollingOut",
        "InProgress",
        "Progressing",
    );
    let second_hash = o["status"]["configHash"]
        .as_str()
        .expect("configHash")
        .to_string();
    assert_ne!(first_hash, second_hash);
    let (_, _, message) = condition(&o, "Reconciling");
    assert!(
        message.contains(&format!("0 of 1 Pods serve config {}", &second_hash[..12])),
        "{message}"
    );
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(5) {
        let (ready, reason, _) = condition(&object("dnsserver/dns"), "Ready");
        assert_eq!(
            (ready.as_str(), reason.as_str()),
            ("False", "ConfigRollingOut")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Resumed, the Pod loads the new config; Ready follows once it serves it.
    pods[0].signal("CONT");
    let resumed = Instant::now();
    wait_condition(
        "dnsserver/dns",
        "Ready",
        "ConfigPublished",
        "Current",
        "Healthy",
    );
    let (_, body) = pods[0].ready().expect("/ready");
    assert!(body.contains(&format!("config: {second_hash}")), "{body}");
    eprintln!("Ready again {:?} after the Pod resumed", resumed.elapsed());

    // 4. A second replica whose image cannot be pulled: Stalled (ImagePullFailed).
    kubectl_ok(&[
        "patch",
        "dnsserver",
        "dns",
        "-n",
        NS,
        "--type=merge",
        "-p",
        "{\"spec\":{\"replicas\":2}}",
    ]);
    let stuck = wait_for("the second Pod", Duration::from_secs(30), || {
        kube.pods_matching(NS, "app.kubernetes.io/instance=dns")
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .find(|n| *n != pods[0].name)
    });
    kube.bind_pod(NS, &stuck);
    kubectl_ok(&[
        "patch",
        "pod",
        &stuck,
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        "{\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"dns\",\"image\":\"registry.invalid/nameplane:none\",\"imageID\":\"\",\"ready\":false,\"restartCount\":0,\"state\":{\"waiting\":{\"reason\":\"ImagePullBackOff\",\"message\":\"Back-off pulling image\"}}}]}}",
    ]);
    let o = wait_condition(
        "dnsserver/dns",
        "Stalled",
        "ImagePullFailed",
        "Failed",
        "Degraded",
    );
    let (_, _, message) = condition(&o, "Stalled");
    assert!(
        message.contains(&stuck) && message.contains("ImagePullBackOff"),
        "{message}"
    );
    kube.force_delete_pods(NS, &[&stuck]);
    kubectl_ok(&[
        "patch",
        "dnsserver",
        "dns",
        "-n",
        NS,
        "--type=merge",
        "-p",
        "{\"spec\":{\"replicas\":1}}",
    ]);
    wait_condition(
        "dnsserver/dns",
        "Ready",
        "ConfigPublished",
        "Current",
        "Healthy",
    );

    // 5. Config objects: one Event per verdict change, not one per reconcile.
    let zone = |name: &str, records: usize| {
        let records: String = (0..records)
            .map(|i| {
                format!(
                    "  - {{name: host-{i}, type: TXT, values: [\"{}\"]}}\n",
                    "x".repeat(200)
                )
            })
            .collect();
        format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: {name}\nspec:\n  zone: apps.status.example\n  records:\n  - {{name: www, type: A, values: [\"192.0.2.10\"]}}\n{records}"
        )
    };
    apply(NS, &zone("apps", 0));
    wait_condition("dnszone/apps", "Ready", "Accepted", "Current", "Healthy");
    std::thread::sleep(Duration::from_secs(1));
    apply(NS, &zone("apps-copy", 0));
    let o = wait_condition(
        "dnszone/apps-copy",
        "Stalled",
        "Conflict",
        "Failed",
        "Degraded",
    );
    eprintln!("conflict lost: {}", condition(&o, "Stalled").2);
    let (count, notes) = wait_for("the Conflict Event", Duration::from_secs(10), || {
        let found = events("DNSZone", "apps-copy", "Conflict");
        (found.0 > 0).then_some(found)
    });
    assert_eq!(count, 1, "{notes:?}");
    // Several re-renders (the Pod's Ready flips) change no verdict: still one Event each.
    let (accepted, notes) = events("DNSZone", "apps", "Accepted");
    assert_eq!(accepted, 1, "{notes:?}");
    assert!(
        notes[0].contains("series null"),
        "published once: {notes:?}"
    );
    let described =
        String::from_utf8_lossy(&kubectl(&["describe", "dnszone", "apps-copy", "-n", NS]).stdout)
            .into_owned();
    assert!(
        described.contains("Conflict"),
        "kubectl describe shows the Event:\n{described}"
    );
    kubectl_ok(&["delete", "dnszone", "apps-copy", "-n", NS]);

    // 6. The server's own objects over spec.limits.configBytes: nothing new is published,
    //    Stalled names the field.
    kubectl_ok(&[
        "patch",
        "dnsserver",
        "dns",
        "-n",
        NS,
        "--type=merge",
        "-p",
        "{\"spec\":{\"limits\":{\"configBytes\":10000}}}",
    ]);
    let o = wait_condition(
        "dnsserver/dns",
        "Ready",
        "ConfigPublished",
        "Current",
        "Healthy",
    );
    let last_good = o["status"]["configHash"]
        .as_str()
        .expect("configHash")
        .to_string();
    apply(NS, &zone("apps", 80));
    let o = wait_condition(
        "dnsserver/dns",
        "Stalled",
        "OverBudget",
        "Failed",
        "Degraded",
    );
    let (_, _, message) = condition(&o, "Stalled");
    assert!(message.contains("spec.limits.configBytes"), "{message}");
    assert_eq!(
        o["status"]["configHash"].as_str(),
        Some(last_good.as_str()),
        "the last config stays published"
    );
    let (_, body) = pods[0].ready().expect("/ready");
    assert!(
        body.contains(&format!("config: {last_good}")),
        "and served: {body}"
    );
}
