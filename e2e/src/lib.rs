//! Test harness for nameplane's end-to-end tests: real kube-apiserver, etcd and
//! kube-controller-manager (started by `make cluster-up`), the real operator and DNS server
//! binaries as child processes, and real DNS queries with `dig` over UDP and TCP.
//!
//! Nothing here stands in for a real part: the harness only finds the binaries, starts and
//! stops processes, runs `kubectl` and `dig`, and waits for conditions with a deadline.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// `target/e2e`, where `make cluster-up` leaves the kubeconfig and binary links.
pub fn e2e_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("e2e")
}

/// The kubeconfig of the local control plane.
pub fn kubeconfig() -> PathBuf {
    let path = e2e_dir().join("kubeconfig");
    assert!(
        path.exists(),
        "{} does not exist: start the local control plane with `make cluster-up` (or run `make e2e`)",
        path.display()
    );
    path
}

/// Path of a workspace binary built by `cargo build` (debug profile unless
/// `NAMEPLANE_PROFILE` says otherwise).
pub fn workspace_binary(name: &str) -> PathBuf {
    let profile = std::env::var("NAMEPLANE_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = e2e_dir()
        .parent()
        .expect("target dir")
        .join(profile)
        .join(name);
    assert!(
        path.exists(),
        "{} does not exist: build it first with `cargo build --bins`",
        path.display()
    );
    path
}

/// Runs `kubectl` (the one built with the control plane) against the local cluster.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_with_stdin(args, None)
}

/// Runs `kubectl` with `stdin` piped in.
pub fn kubectl_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let bin = e2e_dir().join("bin/kubectl");
    let mut cmd = Command::new(&bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl finishes")
}

/// Runs `kubectl` and returns its stdout, panicking with its stderr when it fails.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process that is killed when dropped; its output goes to `target/e2e/logs/`.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, logging to `target/e2e/logs/<name>.log`.
    pub fn start(name: &str, program: &Path, args: &[String]) -> Self {
        let logs = e2e_dir().join("logs");
        std::fs::create_dir_all(&logs).expect("create log dir");
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(program)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        eprintln!(
            "started {name} (pid {}), log: {}",
            child.id(),
            log.display()
        );
        Self {
            name: name.into(),
            child,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the process has exited, showing its log.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}); its log:\n{}", self.name, self.log());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that is free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` every 100 ms until it returns `true` (then `true`) or `timeout` passes
/// (then `false`), for waits whose failure message needs what the last check saw.
pub fn poll_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Transport for a DNS query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain UDP.
    Udp,
    /// TCP (`dig +tcp`).
    Tcp,
}

/// What `dig` saw: the response code and the answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigResult {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, …
    pub status: String,
    /// Answer records as (name, ttl, type, data).
    pub answers: Vec<(String, u32, String, String)>,
    /// dig's whole output, for failure messages.
    pub raw: String,
}

impl DigResult {
    /// The data of every answer record of `rtype`.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.2 == rtype)
            .map(|a| a.3.clone())
            .collect()
    }
}

/// Asks 127.0.0.1:`port` for `name`/`rtype` with dig.
pub fn dig(port: u16, name: &str, rtype: &str, transport: Transport) -> DigResult {
    let mut cmd = Command::new("dig");
    cmd.arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg(name)
        .arg(rtype)
        .args(["+noall", "+answer", "+comments", "+tries=1", "+timeout=2"]);
    if transport == Transport::Tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .output()
        .expect("dig runs (apt-get install bind9-dnsutils)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO-RESPONSE")
        .to_string();
    let answers = raw
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            let ttl = f.next()?.parse().ok()?;
            let _class = f.next()?;
            let rtype = f.next()?.to_string();
            let data = f.collect::<Vec<_>>().join(" ");
            Some((name, ttl, rtype, data))
        })
        .collect();
    DigResult {
        status,
        answers,
        raw,
    }
}

/// What one in-process UDP query got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryResult {
    /// The response code, e.g. `NOERROR`.
    pub rcode: String,
    /// Answer records as (ttl, data in presentation form).
    pub answers: Vec<(u32, String)>,
}

/// Sends one UDP query for `name`/`rtype` to 127.0.0.1:`port` with a real socket, for the
/// tight loops (latency, load) where starting `dig` each time would measure `dig`.
/// `None` means no (matching) response arrived within `timeout`.
pub fn query_udp(
    port: u16,
    name: &str,
    rtype: hickory_proto::rr::RecordType,
    timeout: Duration,
) -> Option<QueryResult> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::Name;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).ok()?, rtype));
    let bytes = message.to_vec().ok()?;
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    socket.send_to(&bytes, ("127.0.0.1", port)).ok()?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let (len, _) = socket.recv_from(&mut buf).ok()?;
        let Ok(response) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        if response.metadata.id != message.metadata.id {
            continue;
        }
        return Some(QueryResult {
            rcode: format!("{:?}", response.metadata.response_code).to_uppercase(),
            answers: response
                .answers
                .iter()
                .map(|r| (r.ttl, r.data.to_string()))
                .collect(),
        });
    }
    None
}

/// `GET http://<addr><path>` with a plain socket; returns the body, or `None` on any error
/// or a status other than 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
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
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Sum of every sample of the metric `name` (all label sets) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `q`-quantile (0..=1) of `samples`, nearest-rank.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A running `nameplane-operator` and the address of its `/metrics`.
pub struct Operator {
    /// The process.
    pub process: Process,
    /// `127.0.0.1:<port>` of `/healthz`, `/readyz`, `/metrics`.
    pub metrics_addr: String,
}

impl Operator {
    /// Starts the operator (leader election on, Lease in `nameplane-system`) with `extra` args.
    pub fn start(name: &str, extra: &[&str]) -> Self {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--kubeconfig".to_string(),
            kubeconfig().display().to_string(),
            "--metrics-listen".into(),
            metrics_addr.clone(),
            "--identity".into(),
            name.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Process::start(name, &workspace_binary("nameplane-operator"), &args);
        Self {
            process,
            metrics_addr,
        }
    }

    /// The operator's metrics text (empty when it does not answer).
    pub fn metrics(&self) -> String {
        http_get(&self.metrics_addr, "/metrics").unwrap_or_default()
    }

    /// Total writes the operator made to the API so far.
    pub fn writes(&self) -> f64 {
        metric_sum(&self.metrics(), "nameplane_operator_writes_total")
    }

    /// Whether this replica holds the leader lease.
    pub fn is_leader(&self) -> bool {
        metric_sum(&self.metrics(), "nameplane_operator_leader") == 1.0
    }
}

/// A running `nameplane-dns` following one ConfigMap.
pub struct DnsServer {
    /// The process.
    pub process: Process,
    /// The DNS port on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    /// `127.0.0.1:<port>` of `/health`, `/ready`, `/metrics`.
    pub admin_addr: String,
}

impl DnsServer {
    /// Starts the DNS server on free loopback ports, following `namespace/config_map`.
    pub fn start(name: &str, config_map: &str) -> Self {
        Self::start_on(name, config_map, free_port())
    }

    /// Starts the DNS server on 127.0.0.1:`port` (UDP and TCP), e.g. to bring a stopped
    /// server back where its clients expect it.
    pub fn start_on(name: &str, config_map: &str, port: u16) -> Self {
        let admin_addr = format!("127.0.0.1:{}", free_port());
        let args = vec![
            "--kubeconfig".to_string(),
            kubeconfig().display().to_string(),
            "--config-map".into(),
            config_map.into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--health-listen".into(),
            admin_addr.clone(),
        ];
        let process = Process::start(name, &workspace_binary("nameplane-dns"), &args);
        Self {
            process,
            port,
            admin_addr,
        }
    }

    /// Waits until `/ready` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        wait_for("dns-server /ready", timeout, || {
            http_get(&self.admin_addr, "/ready")
        });
    }

    /// The server's metrics text (empty when it does not answer).
    pub fn metrics(&self) -> String {
        http_get(&self.admin_addr, "/metrics").unwrap_or_default()
    }
}

/// Runs `dig` with `args` after `@127.0.0.1 -p <port>` and returns its stdout.
pub fn dig_raw(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("dig runs (apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The helm binary, built from its Go module by `e2e/scripts/build-helm.sh` (cached by
/// version, so this is instant after the first build).
pub fn helm_binary() -> PathBuf {
    static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let script = repo_root().join("e2e/scripts/build-helm.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("build-helm.sh prints the path")
                .trim(),
        )
    })
    .clone()
}

/// Runs helm against the local cluster, from the repository root.
pub fn helm(args: &[&str]) -> Output {
    Command::new(helm_binary())
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("helm runs")
}

/// Runs helm and returns its stdout, panicking with its stderr when it fails.
pub fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects of a multi-document YAML stream (empty documents left out).
pub fn yaml_objects(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .unwrap_or_else(|e| panic!("not a YAML stream ({e}):\n{text}"))
        .into_iter()
        .filter(|doc| doc.is_object())
        .collect()
}

/// Writes a kubeconfig that authenticates to the local cluster as the ServiceAccount
/// `namespace/name`, with a token from the TokenRequest API (`kubectl create token`), so a
/// process started with it has exactly the permissions RBAC grants that ServiceAccount.
pub fn service_account_kubeconfig(namespace: &str, name: &str) -> PathBuf {
    let token = kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=1h"]);
    let cluster = |field: &str| {
        kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
        ])
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {namespace}-{name}\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context:\n    cluster: e2e\n    user: {namespace}-{name}\ncurrent-context: sa\n",
        cluster("server"),
        cluster("certificate-authority-data"),
        token.trim()
    );
    let path = e2e_dir().join(format!("kubeconfig-sa-{namespace}-{name}"));
    std::fs::write(&path, text).expect("write ServiceAccount kubeconfig");
    path
}
