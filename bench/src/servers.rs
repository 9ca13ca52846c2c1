//! The servers under test and around them: CoreDNS (Corefile), nameplane-dns (its ConfigMap),
//! and Knot DNS (the static-zone ceiling, and the local upstream for external names).
//!
//! Every server under test runs pinned to CPU 0 (`taskset -c 0`); CoreDNS with `GOMAXPROCS=1`,
//! nameplane-dns with `--udp-sockets 1` (its runtime sizes itself from the affinity mask: one
//! worker). Equivalent configuration: cluster names with TTL 5 and pod records verified
//! against the API, reverse zones, `.` forwarded to the local upstream with at most 1000
//! queries in flight, a cache of 9984 answers capped at 30 s (CoreDNS's `cache 30`),
//! Prometheus metrics on, no query log. Both also forward the stub domain
//! [`scenarios::MISS_ZONE`] to the same upstream (a CoreDNS server block with `forward` and
//! `cache 30`, a nameplane `forward` entry), for the forwarded-miss rows. The client-aware
//! pair adds one policy, ten rewrites and autopath ([`scenarios::ClientAware`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::probe;
use crate::scenarios::{self, ClientAware};
use crate::sys::{Proc, free_port};

/// The CPU every server under test is pinned to.
pub const SERVER_CPU: u32 = 0;

/// `GET http://<addr><path>`: the status code and body, or `None` on a connection error.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The sum of every `name` series on the Prometheus endpoint at `addr` (both servers export
/// CoreDNS's metric names), or `None` when it cannot be read.
pub fn metric_sum(addr: &str, name: &str) -> Option<f64> {
    let (200, body) = http_get(addr, "/metrics")? else {
        return None;
    };
    let mut sum = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// Waits until `GET addr/path` answers 200, the process is alive, or `timeout` passes.
pub async fn wait_http_ok(
    proc: &mut Proc,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        proc.check_running()?;
        if http_get(addr, path).is_some_and(|(code, _)| code == 200) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("http://{addr}{path} not 200 after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settings shared by both servers under test.
#[derive(Clone, Debug)]
pub struct Common {
    /// The kubeconfig of the local control plane.
    pub kubeconfig: PathBuf,
    /// The upstream for `.` on 127.0.0.1.
    pub upstream_port: u16,
    /// TTL of cluster answers.
    pub ttl: u32,
    /// Forward the stub domain [`scenarios::MISS_ZONE`] to the upstream too.
    pub stub_domain: bool,
    /// The client-aware behaviour (policy, rewrites, autopath), when on.
    pub client_aware: Option<ClientAware>,
}

/// The Corefile: the default Kubernetes Corefile (coredns/deployment) with `pods verified`,
/// an out-of-cluster kubeconfig, loopback ports and the local upstream; with the stub
/// domain's server block and the client-aware plugins when `common` asks for them.
pub fn corefile(common: &Common, port: u16, admin: &CoreDnsPorts, reload: &str) -> String {
    let client_aware = common
        .client_aware
        .as_ref()
        .map(ClientAware::corefile_lines)
        .unwrap_or_default();
    let stub = if common.stub_domain {
        format!(
            "{zone}:{port} {{
    bind 127.0.0.1
    errors
    forward . 127.0.0.1:{upstream} {{
        max_concurrent 1000
    }}
    cache 30
}}
",
            zone = scenarios::MISS_ZONE.trim_end_matches('.'),
            upstream = common.upstream_port,
        )
    } else {
        String::new()
    };
    format!(
        ".:{port} {{
    bind 127.0.0.1
    errors
{client_aware}    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} {context}
        pods verified
        fallthrough in-addr.arpa ip6.arpa
        ttl {ttl}
    }}
    prometheus 127.0.0.1:{metrics}
    forward . 127.0.0.1:{upstream} {{
        max_concurrent 1000
    }}
    cache 30
    loop
    reload{reload_args}
    loadbalance
}}
{stub}",
        health = admin.health,
        ready = admin.ready,
        metrics = admin.metrics,
        kubeconfig = common.kubeconfig.display(),
        context = crate::cluster::CONTEXT,
        ttl = common.ttl,
        upstream = common.upstream_port,
        reload_args = if reload.is_empty() {
            String::new()
        } else {
            format!(" {reload}")
        },
    )
}

/// CoreDNS's HTTP ports.
#[derive(Clone, Debug)]
pub struct CoreDnsPorts {
    /// `health`.
    pub health: u16,
    /// `ready` (200 once the kubernetes plugin has synced).
    pub ready: u16,
    /// `prometheus`.
    pub metrics: u16,
}

/// A running CoreDNS.
pub struct CoreDns {
    /// The process.
    pub proc: Proc,
    /// DNS port on 127.0.0.1.
    pub port: u16,
    /// Its HTTP ports.
    pub ports: CoreDnsPorts,
    corefile_path: PathBuf,
    common: Common,
    reload: String,
}

impl CoreDns {
    /// Writes the Corefile under `dir` and starts `bin` on CPU 0 with `GOMAXPROCS=1`.
    pub fn start(bin: &Path, dir: &Path, common: &Common, reload: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let ports = CoreDnsPorts {
            health: free_port(),
            ready: free_port(),
            metrics: free_port(),
        };
        let corefile_path = dir.join("Corefile");
        std::fs::write(&corefile_path, corefile(common, port, &ports, reload))?;
        let proc = Proc::start(
            "coredns",
            Some(SERVER_CPU),
            bin,
            &["-conf".into(), corefile_path.display().to_string()],
            &[("GOMAXPROCS", "1".into())],
            &dir.join("coredns.log"),
        )?;
        Ok(Self {
            proc,
            port,
            ports,
            corefile_path,
            common: common.clone(),
            reload: reload.into(),
        })
    }

    /// Waits for `/ready` (the kubernetes plugin synced).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let addr = format!("127.0.0.1:{}", self.ports.ready);
        wait_http_ok(&mut self.proc, &addr, "/ready", timeout).await
    }

    /// Rewrites the Corefile with another TTL (the `reload` plugin picks it up).
    pub fn write_ttl(&mut self, ttl: u32) -> Result<()> {
        self.common.ttl = ttl;
        let text = corefile(&self.common, self.port, &self.ports, &self.reload);
        let tmp = self.corefile_path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.corefile_path)?;
        Ok(())
    }
}

/// The nameplane config equivalent to the Corefile, as JSON (the `ServerConfig` contract).
pub fn nameplane_config(common: &Common) -> Value {
    let mut config = plain_nameplane_config(common);
    if common.stub_domain
        && let Some(forward) = config["forward"].as_array_mut()
    {
        forward.push(json!({
            "domain": scenarios::MISS_ZONE.trim_end_matches('.'),
            "source": "bench/misses",
            "servers": [format!("127.0.0.1:{}", common.upstream_port)],
            "maxConcurrent": 1000,
        }));
    }
    if let Some(client_aware) = &common.client_aware {
        client_aware.add_to_nameplane_config(&mut config);
    }
    config
}

fn plain_nameplane_config(common: &Common) -> Value {
    json!({
        "version": 1,
        "server": "bench/nameplane",
        "kubernetes": {
            "clusterDomain": "cluster.local",
            "ttlSeconds": common.ttl,
            "pods": "verified",
        },
        "forward": [{
            "domain": ".",
            "source": "bench/upstream",
            "servers": [format!("127.0.0.1:{}", common.upstream_port)],
            "maxConcurrent": 1000,
        }],
        "cache": {
            "capacity": 9984,
            "denialCapacity": 9984,
            "maxTtlSeconds": 30,
            "minTtlSeconds": 5,
            "denialTtlSeconds": 30,
        },
    })
}

/// Removes every object key `key` anywhere in `value`; returns whether one was removed.
pub fn remove_key(value: &mut Value, key: &str) -> bool {
    match value {
        Value::Object(map) => {
            let mut removed = map.remove(key).is_some();
            for v in map.values_mut() {
                removed |= remove_key(v, key);
            }
            removed
        }
        Value::Array(items) => {
            // Every item, not just up to the first hit.
            let mut removed = false;
            for v in items {
                removed |= remove_key(v, key);
            }
            removed
        }
        _ => false,
    }
}

/// The nameplane config this build accepts: `wanted`, less every field the build's contract
/// (`nameplane-config`, the same crate the server parses with) does not know. Returns the
/// config and the fields dropped; a config still refused for another reason is an error.
pub fn accepted_config(wanted: &Value) -> Result<(Value, Vec<String>)> {
    let mut config = wanted.clone();
    let mut dropped = Vec::new();
    for _ in 0..16 {
        match nameplane_config::ValidatedConfig::from_json(&config.to_string()) {
            Ok(_) => return Ok((config, dropped)),
            Err(error) => {
                let text = error.to_string();
                let field = text
                    .split("unknown field `")
                    .nth(1)
                    .and_then(|rest| rest.split('`').next())
                    .map(str::to_string);
                match field {
                    Some(field) if remove_key(&mut config, &field) => dropped.push(field),
                    _ => bail!("nameplane refuses the bench config: {text}"),
                }
            }
        }
    }
    bail!("nameplane refuses the bench config after dropping {dropped:?}")
}

/// Writes `config` into ConfigMap `namespace/name` under `config.json` (server-side apply).
pub async fn write_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    config: &Value,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"config.json": serde_json::to_string_pretty(config)?},
    });
    api.patch(
        name,
        &PatchParams::apply("nameplane-bench").force(),
        &Patch::Apply(&cm),
    )
    .await
    .with_context(|| format!("writing ConfigMap {namespace}/{name}"))?;
    Ok(())
}

/// A running nameplane-dns.
pub struct Nameplane {
    /// The process.
    pub proc: Proc,
    /// DNS port on 127.0.0.1.
    pub port: u16,
    /// `127.0.0.1:<port>` of /health, /ready, /metrics.
    pub admin: String,
}

impl Nameplane {
    /// Starts `bin` following ConfigMap `config_map`, on `cpu` when given, with one UDP socket.
    pub fn start(
        name: &str,
        bin: &Path,
        dir: &Path,
        config_map: &str,
        cpu: Option<u32>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let admin = format!("127.0.0.1:{}", free_port());
        let kubeconfig = crate::cluster::kubeconfig()?;
        let proc = Proc::start(
            name,
            cpu,
            bin,
            &[
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                "--config-map".into(),
                config_map.into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--health-listen".into(),
                admin.clone(),
                "--udp-sockets".into(),
                "1".into(),
                // CoreDNS answers up to the client's EDNS buffer (dnsperf and the probes
                // send 4096); nameplane's default cap is 1232 (DNS flag day 2020). Same
                // limit for both, so the 100-endpoint answer fits for both.
                "--max-udp-payload".into(),
                "4096".into(),
            ],
            &[(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )],
            &dir.join(format!("{name}.log")),
        )?;
        Ok(Self { proc, port, admin })
    }

    /// Waits for `/ready` (config loaded, watches synced).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let admin = self.admin.clone();
        wait_http_ok(&mut self.proc, &admin, "/ready", timeout).await
    }
}

/// One zone of a Knot instance: apex and zone-file text.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Apex with a trailing dot.
    pub apex: String,
    /// RFC 1035 zone file.
    pub text: String,
}

/// The SOA + NS head of a zone file.
pub fn zone_head(apex: &str) -> String {
    format!(
        "$ORIGIN {apex}\n$TTL 5\n@ 5 SOA ns.dns.{apex} hostmaster.{apex} 1 7200 1800 86400 5\n@ 5 NS ns.dns.{apex}\nns.dns 5 A 127.0.0.1\n"
    )
}

/// knotd.conf for one instance: one UDP and one TCP worker, zones loaded read-only.
pub fn knot_conf(dir: &Path, port: u16, zones: &[Zone]) -> String {
    let mut conf = format!(
        "server:\n    rundir: {dir}\n    listen: 127.0.0.1@{port}\n    udp-max-payload: 4096\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
database:\n    storage: {dir}\n\
log:\n  - target: stderr\n    any: warning\n\
template:\n  - id: default\n    storage: {dir}\n    journal-content: none\n    zonefile-sync: -1\n    semantic-checks: off\n\
zone:\n",
        dir = dir.display()
    );
    for zone in zones {
        conf.push_str(&format!(
            "  - domain: {}\n    file: {}.zone\n",
            zone.apex,
            zone.apex.trim_end_matches('.')
        ));
    }
    conf
}

/// Starts knotd serving `zones` on a free port, pinned to `cpu`; waits until it answers.
pub async fn start_knot(name: &str, dir: &Path, cpu: u32, zones: &[Zone]) -> Result<(Proc, u16)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    for zone in zones {
        std::fs::write(
            dir.join(format!("{}.zone", zone.apex.trim_end_matches('.'))),
            &zone.text,
        )?;
    }
    let port = free_port();
    let conf = dir.join("knot.conf");
    std::fs::write(&conf, knot_conf(dir, port, zones))?;
    let mut proc = Proc::start(
        name,
        Some(cpu),
        Path::new("knotd"),
        &["-c".into(), conf.display().to_string()],
        &[],
        &dir.join("knotd.log"),
    )?;
    let started = Instant::now();
    let apex = zones.first().map(|z| z.apex.clone()).unwrap_or_default();
    loop {
        proc.check_running()?;
        if probe::query(port, &apex, RecordType::SOA, Duration::from_millis(300))
            .await
            .is_some_and(|r| r.rcode == "NOERROR")
        {
            return Ok((proc, port));
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("{name} does not answer for {apex} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> Common {
        Common {
            kubeconfig: PathBuf::from("/k/kubeconfig"),
            upstream_port: 5300,
            ttl: 5,
            stub_domain: false,
            client_aware: None,
        }
    }

    #[test]
    fn corefile_is_the_default_with_bench_ports() {
        let ports = CoreDnsPorts {
            health: 1,
            ready: 2,
            metrics: 3,
        };
        let text = corefile(&common(), 1053, &ports, "");
        for want in [
            ".:1053 {",
            "kubernetes cluster.local in-addr.arpa ip6.arpa {",
            "kubeconfig /k/kubeconfig nameplane-e2e",
            "pods verified",
            "ttl 5",
            "forward . 127.0.0.1:5300 {",
            "max_concurrent 1000",
            "cache 30",
            "ready 127.0.0.1:2",
            "prometheus 127.0.0.1:3",
            "    reload\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(corefile(&common(), 1053, &ports, "2s 1s").contains("reload 2s 1s\n"));
    }

    #[test]
    fn drops_only_fields_the_contract_does_not_know() {
        let wanted = nameplane_config(&common());
        let (accepted, dropped) = accepted_config(&wanted).expect("accepted");
        nameplane_config::ValidatedConfig::from_json(&accepted.to_string()).expect("valid");
        for field in &dropped {
            assert!(
                ["pods", "maxConcurrent", "denialCapacity"].contains(&field.as_str()),
                "dropped {field}"
            );
        }
        assert_eq!(accepted["kubernetes"]["ttlSeconds"], 5);
        assert_eq!(accepted["forward"][0]["servers"][0], "127.0.0.1:5300");
    }

    #[test]
    fn remove_key_reaches_nested_objects_and_arrays() {
        let mut v = json!({"a": 1, "b": [{"a": 2, "c": 3}], "d": {"a": {"x": 1}}});
        assert!(remove_key(&mut v, "a"));
        assert_eq!(v, json!({"b": [{"c": 3}], "d": {}}));
        assert!(!remove_key(&mut v, "zz"));
    }

    #[test]
    fn knot_conf_lists_zones() {
        let zones = [Zone {
            apex: "cluster.local.".into(),
            text: zone_head("cluster.local."),
        }];
        let conf = knot_conf(Path::new("/tmp/k"), 5301, &zones);
        assert!(conf.contains("listen: 127.0.0.1@5301"));
        assert!(conf.contains("  - domain: cluster.local.\n    file: cluster.local.zone\n"));
        assert!(zone_head("cluster.local.").contains("SOA ns.dns.cluster.local."));
    }
}
