//! CoreDNS beside nameplane: the kubeadm default Corefile moved onto loopback, the CoreDNS
//! binary the bench builds, and a Knot upstream both servers forward to (named in one
//! resolv.conf, as a node's resolvers are).
//!
//! Used by `coredns_differential.rs` (same questions, same answers) and `coredns_cutover.rs`
//! (the `kube-dns` Service moved from CoreDNS to nameplane under load). The Corefile is the
//! one kubeadm writes (`operator/tests/import/kubeadm-1.35/Corefile`, also a case of
//! `nameplane import`'s corpus), changed only where a
//! process outside a Pod has to be: [`loopback_corefile`] lists each change and fails when one
//! does not apply, so a new kubeadm Corefile cannot be half-converted silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{
    Process, e2e_dir, free_port, http_get, jsonpath, kubeconfig, kubectl, poll_until, repo_root,
    start_knotd, wait_for, workspace_binary, yaml_objects,
};

/// The kubeadm default Corefile (Kubernetes v1.35.4's `CoreDNSConfigMap` in
/// `cmd/kubeadm/app/phases/addons/dns/manifests.go`, cluster domain `cluster.local`), shared
/// with `nameplane import`'s corpus.
pub fn kubeadm_corefile_path() -> PathBuf {
    repo_root().join("operator/tests/import/kubeadm-1.35/Corefile")
}

/// The CoreDNS binary, built from its Go module by `bench/scripts/build-coredns.sh` and cached
/// by version in the harness cache (instant after the first build).
pub fn coredns_binary() -> PathBuf {
    static COREDNS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COREDNS
        .get_or_init(|| {
            let script = repo_root().join("bench/scripts/build-coredns.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .expect("build-coredns.sh runs");
            assert!(
                out.status.success(),
                "build-coredns.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("build-coredns.sh prints the binary path")
                .trim()
                .to_owned();
            PathBuf::from(path)
        })
        .clone()
}

/// Where a CoreDNS outside a Pod listens and forwards.
#[derive(Clone, Debug)]
pub struct LoopbackSite {
    /// Address the server block binds (a 127.0.0.0/8 address).
    pub bind: String,
    /// DNS port.
    pub port: u16,
    /// `health` port (on 127.0.0.1).
    pub health: u16,
    /// `ready` port (on 127.0.0.1).
    pub ready: u16,
    /// `prometheus` port (on 127.0.0.1).
    pub metrics: u16,
    /// The resolv.conf `forward .` reads (instead of `/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
}

impl LoopbackSite {
    /// `bind`:`port`, free HTTP ports, forwarding to the nameservers of `resolv_conf`.
    pub fn new(bind: &str, port: u16, resolv_conf: &Path) -> Self {
        Self {
            bind: bind.into(),
            port,
            health: free_port(),
            ready: free_port(),
            metrics: free_port(),
            resolv_conf: resolv_conf.to_path_buf(),
        }
    }
}

/// The kubeadm Corefile `text` with exactly the changes a CoreDNS outside a Pod needs:
/// the server block on `site.bind`:`site.port`, `health`/`ready`/`prometheus` on loopback
/// ports, a `kubeconfig` line in the `kubernetes` block (no in-cluster ServiceAccount), and
/// `forward .` to the nameservers of `site.resolv_conf` instead of `/etc/resolv.conf`'s.
/// Panics when one of these
/// lines is not found, naming it.
pub fn loopback_corefile(text: &str, site: &LoopbackSite) -> String {
    let replacements: [(&str, String); 6] = [
        (
            ".:53 {",
            format!(".:{} {{\n    bind {}", site.port, site.bind),
        ),
        (
            "    health {",
            format!("    health 127.0.0.1:{} {{", site.health),
        ),
        (
            "    ready\n",
            format!("    ready 127.0.0.1:{}\n", site.ready),
        ),
        (
            "kubernetes cluster.local in-addr.arpa ip6.arpa {",
            format!(
                "kubernetes cluster.local in-addr.arpa ip6.arpa {{\n       kubeconfig {} nameplane-e2e",
                kubeconfig().display()
            ),
        ),
        (
            "    prometheus :9153",
            format!("    prometheus 127.0.0.1:{}", site.metrics),
        ),
        (
            "    forward . /etc/resolv.conf {",
            format!("    forward . {} {{", site.resolv_conf.display()),
        ),
    ];
    let mut out = text.to_owned();
    for (from, to) in replacements {
        assert_eq!(
            out.matches(from).count(),
            1,
            "the Corefile should have `{}` exactly once:\n{text}",
            from.trim()
        );
        out = out.replacen(from, &to, 1);
    }
    out
}

/// A running CoreDNS on the kubeadm Corefile (moved onto loopback).
pub struct CoreDns {
    /// Where it listens and forwards.
    pub site: LoopbackSite,
    /// The process.
    pub process: Process,
}

impl CoreDns {
    /// Writes the loopback Corefile under `target/e2e/<name>/` and starts CoreDNS on it.
    pub fn start(name: &str, site: LoopbackSite) -> Self {
        let dir = e2e_dir().join(name);
        std::fs::create_dir_all(&dir).expect("coredns dir");
        let kubeadm = std::fs::read_to_string(kubeadm_corefile_path()).expect("kubeadm Corefile");
        let corefile = dir.join("Corefile");
        std::fs::write(&corefile, loopback_corefile(&kubeadm, &site)).expect("Corefile");
        let process = Process::start(
            name,
            &coredns_binary(),
            &["-conf".into(), corefile.display().to_string()],
        );
        Self { site, process }
    }

    /// Waits until `/ready` answers 200 (the kubernetes plugin has synced).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let ready = self.site.ready;
        let ok = poll_until(timeout, || {
            http_get(ready, "/ready").is_some_and(|(status, _)| status == 200)
        });
        self.process.assert_running();
        assert!(ok, "CoreDNS not ready; its log:\n{}", self.process.log());
    }
}

/// A Knot server on loopback, authoritative for the zones it is given: the upstream both
/// CoreDNS and nameplane forward to. It listens on 127.0.0.1:`port` (for checks) and on
/// `resolver`:53, the one nameserver of [`KnotUpstream::resolv_conf`] (a resolv.conf has no
/// ports): both servers find it as `forward . /etc/resolv.conf` and `upstreamsFromResolvConf`
/// find a node's resolvers.
pub struct KnotUpstream {
    /// The process.
    pub process: Process,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// A resolv.conf naming `resolver` (port 53) as the only nameserver.
    pub resolv_conf: PathBuf,
}

impl KnotUpstream {
    /// Starts Knot as `name` on 127.0.0.1:<free port> and `resolver`:53 (a 127.0.0.0/8
    /// address; port 53 needs root, as the e2e tests run) with `zones` (origin, zone file
    /// text), and waits until it answers the first zone's SOA on both.
    pub fn start(name: &str, resolver: &str, zones: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir = e2e_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("knot dir");
        let mut zone_conf = String::from("zone:\n");
        for (origin, text) in zones {
            let file = format!("{origin}.zone");
            std::fs::write(dir.join(&file), text).expect("zone file");
            zone_conf.push_str(&format!("  - domain: {origin}\n    file: {file}\n"));
        }
        let d = dir.display();
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: [127.0.0.1@{port}, {resolver}@53]\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n  storage: \"{d}/db\"\n\
             template:\n  - id: default\n    storage: \"{d}\"\n{zone_conf}"
        );
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!(
                "# the test's Knot, standing in for a node's resolver\nnameserver {resolver}\n"
            ),
        )
        .expect("resolv.conf");
        let mut process = start_knotd(name, &dir, &conf);
        let first = zones.first().expect("at least one zone").0;
        let answers = |server: &str, port: &str| {
            let out = Command::new("dig")
                .args([server, "-p", port, first, "SOA", "+tries=1", "+timeout=1"])
                .output()
                .expect("dig runs");
            String::from_utf8_lossy(&out.stdout).contains("status: NOERROR")
        };
        let local = port.to_string();
        let ok = poll_until(Duration::from_secs(20), || {
            answers("@127.0.0.1", &local) && answers(&format!("@{resolver}"), "53")
        });
        process.assert_running();
        assert!(
            ok,
            "knot answers on 127.0.0.1:{port} and {resolver}:53; its log:\n{}",
            process.log()
        );
        Self {
            process,
            port,
            resolv_conf,
        }
    }
}

/// The `DNSServer` that `nameplane import --corefile <kubeadm Corefile> --namespace
/// <namespace>` writes, as a JSON object: the one object it makes of that Corefile (checked,
/// as is exit status 0: everything carried over).
pub fn imported_dnsserver(namespace: &str) -> serde_json::Value {
    let corefile = kubeadm_corefile_path();
    let out = Command::new(workspace_binary("nameplane"))
        .args(["import", "--corefile"])
        .arg(&corefile)
        .args(["--namespace", namespace])
        .output()
        .expect("nameplane import runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nameplane import --corefile {} failed ({}):\n{stderr}",
        corefile.display(),
        out.status
    );
    let mut objects = yaml_objects(&stdout);
    assert_eq!(
        objects.len(),
        1,
        "the kubeadm Corefile makes one DNSServer:\n{stdout}"
    );
    let server = objects.remove(0);
    assert_eq!(server["kind"], "DNSServer", "{stdout}");
    server
}

/// Waits (60 s) until `DNSServer` `namespace/name` has published the config of its current
/// generation: `status.configHash` is the hash annotation of its ConfigMap
/// (`status.configMap`) and `status.observedGeneration` is current. `Ready` is not looked at:
/// these tests serve the config with DNS processes of their own, not the Deployment's Pods,
/// and an operator that wants those Pods to serve before `Ready=True` would wait forever.
pub fn wait_published(namespace: &str, name: &str) {
    wait_for(
        &format!("DNSServer {namespace}/{name} to publish its config"),
        Duration::from_secs(60),
        || {
            let out = kubectl(&["get", "dnsserver", name, "-n", namespace, "-o", "json"]);
            let server: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let config_map = server["status"]["configMap"].as_str()?;
            let hash = server["status"]["configHash"].as_str()?;
            let published = jsonpath(
                namespace,
                &format!("configmap/{config_map}"),
                &format!(
                    "{{.metadata.annotations.{}}}",
                    nameplane_config::HASH_ANNOTATION.replace('.', "\\.")
                ),
            );
            (published == hash
                && server["status"]["observedGeneration"] == server["metadata"]["generation"])
                .then_some(())
        },
    );
}
