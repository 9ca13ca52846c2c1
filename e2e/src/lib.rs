//! Test harness for nameplane's end-to-end tests: real kube-apiserver, etcd and
//! kube-controller-manager (started by `make cluster-up`), the real operator and DNS server
//! binaries as child processes, and real DNS queries with `dig` over UDP and TCP.
//!
//! Nothing here stands in for a real part: the harness only finds the binaries, starts and
//! stops processes, runs `kubectl` and `dig`, and waits for conditions with a deadline.

pub mod coredns;

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

    /// Sends SIGTERM (with `kill`, the harness needs no unsafe code).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; returns its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
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

/// Transport for a DNS query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain UDP.
    Udp,
    /// TCP (`dig +tcp`).
    Tcp,
}

/// One record as dig prints it: (owner, TTL, type, data).
pub type DigRecord = (String, u32, String, String);

/// What `dig` saw: status, flags, EDNS payload and every section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigResult {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `NO-RESPONSE`, …
    pub status: String,
    /// Header flags (`qr`, `aa`, `tc`, `rd`, …).
    pub flags: Vec<String>,
    /// The UDP payload size of the response's OPT record, if it had one.
    pub edns_udp: Option<u16>,
    /// Answer records.
    pub answers: Vec<DigRecord>,
    /// Authority records.
    pub authority: Vec<DigRecord>,
    /// Additional records (the OPT pseudo-record is not listed).
    pub additional: Vec<DigRecord>,
    /// dig's whole output, for failure messages.
    pub raw: String,
}

impl DigResult {
    /// The data of every answer record of `rtype`, sorted.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        let mut data: Vec<String> = self
            .answers
            .iter()
            .filter(|a| a.2 == rtype)
            .map(|a| a.3.clone())
            .collect();
        data.sort();
        data
    }

    /// Whether the header has `flag` (e.g. `aa`, `tc`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// `name type data` of each additional record, sorted.
    pub fn additional_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .additional
            .iter()
            .map(|(name, _, rtype, data)| format!("{name} {rtype} {data}"))
            .collect();
        lines.sort();
        lines
    }
}

/// Asks 127.0.0.1:`port` for `name`/`rtype` with dig.
pub fn dig(port: u16, name: &str, rtype: &str, transport: Transport) -> DigResult {
    dig_with(port, name, rtype, transport, &[])
}

/// Like [`dig`], with extra dig options (`+ignore`, `+bufsize=512`, `+edns=1`, …).
pub fn dig_with(
    port: u16,
    name: &str,
    rtype: &str,
    transport: Transport,
    extra: &[&str],
) -> DigResult {
    let mut cmd = Command::new("dig");
    cmd.arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg(name)
        .arg(rtype)
        .args([
            "+noall",
            "+answer",
            "+authority",
            "+additional",
            "+comments",
            "+tries=1",
            "+timeout=2",
        ])
        .args(extra);
    if transport == Transport::Tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .output()
        .expect("dig runs (apt-get install bind9-dnsutils)");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

/// Parses dig's `+noall +answer +authority +additional +comments` output.
pub fn parse_dig(raw: &str) -> DigResult {
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO-RESPONSE")
        .to_string();
    let flags = raw
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|rest| rest.split(';').next())
        .map(|flags| flags.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let edns_udp = raw
        .lines()
        .find(|l| l.starts_with("; EDNS:"))
        .and_then(|l| l.split("udp: ").nth(1))
        .and_then(|n| n.trim().parse().ok());
    let (mut answers, mut authority, mut additional) = (Vec::new(), Vec::new(), Vec::new());
    let mut section = 0;
    for line in raw.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            section = 1;
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = 2;
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = 3;
        }
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        let mut f = line.split_whitespace();
        let record = (|| {
            let name = f.next()?.to_string();
            let ttl = f.next()?.parse().ok()?;
            let _class = f.next()?;
            let rtype = f.next()?.to_string();
            let data = f.collect::<Vec<_>>().join(" ");
            Some((name, ttl, rtype, data))
        })();
        if let Some(record) = record {
            match section {
                2 => authority.push(record),
                3 => additional.push(record),
                _ => answers.push(record),
            }
        }
    }
    DigResult {
        status,
        flags,
        edns_udp,
        answers,
        authority,
        additional,
        raw: raw.to_owned(),
    }
}

/// Sends raw bytes to 127.0.0.1:`port` and returns the raw response (`None`: no answer
/// within 2 s). Over TCP the two-byte length prefix is added and removed here.
pub fn raw_query(port: u16, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(2);
    match transport {
        Transport::Udp => {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.set_read_timeout(Some(timeout)).expect("timeout");
            socket.send_to(packet, ("127.0.0.1", port)).expect("send");
            let mut buf = vec![0; 65535];
            let (len, _) = socket.recv_from(&mut buf).ok()?;
            buf.truncate(len);
            Some(buf)
        }
        Transport::Tcp => {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_read_timeout(Some(timeout)).expect("timeout");
            let len = u16::try_from(packet.len()).expect("fits").to_be_bytes();
            stream.write_all(&len).expect("write");
            stream.write_all(packet).expect("write");
            let mut prefix = [0; 2];
            stream.read_exact(&mut prefix).ok()?;
            let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut body).ok()?;
            Some(body)
        }
    }
}

/// `GET path` on 127.0.0.1:`port`: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// `POST path` with a JSON body on 127.0.0.1:`port`: (status code, body).
pub fn http_post(port: u16, path: &str, json: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The client port of the cluster's etcd (from `target/e2e/cluster/etcd.cmd`).
pub fn etcd_port() -> u16 {
    let cmd = std::fs::read_to_string(e2e_dir().join("cluster/etcd.cmd")).expect("etcd.cmd");
    cmd.lines()
        .find_map(|l| l.strip_prefix("--listen-client-urls=http://127.0.0.1:"))
        .and_then(|port| port.trim().parse().ok())
        .expect("etcd client port in etcd.cmd")
}

/// Writes a key outside Kubernetes' prefix in etcd (through etcd's JSON gateway) `writes`
/// times, then compacts etcd's history up to the new revision: every watch that resumes
/// from an older resource version then gets `410 Gone` and must re-list. Returns the
/// compacted revision.
pub fn etcd_advance_and_compact(writes: usize) -> u64 {
    let port = etcd_port();
    let mut revision = 0;
    for i in 0..writes {
        // key "/nameplane-e2e/bump", value the counter (base64)
        let value = match i % 3 {
            0 => "MA==",
            1 => "MQ==",
            _ => "Mg==",
        };
        let (status, body) = http_post(
            port,
            "/v3/kv/put",
            &format!(r#"{{"key":"L25hbWVwbGFuZS1lMmUvYnVtcA==","value":"{value}"}}"#),
        )
        .expect("etcd answers");
        assert_eq!(status, 200, "etcd put: {body}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("etcd json");
        revision = doc["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("revision");
    }
    let (status, body) = http_post(
        port,
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{revision}","physical":true}}"#),
    )
    .expect("etcd answers");
    assert_eq!(status, 200, "etcd compaction: {body}");
    revision
}

/// A running `nameplane-dns` on loopback, reading its config from a ConfigMap.
pub struct DnsServer {
    /// DNS port (UDP and TCP) on 127.0.0.1.
    pub port: u16,
    /// Admin port (/health, /ready, /metrics) on 127.0.0.1.
    pub admin_port: u16,
    /// The process.
    pub process: Process,
}

impl DnsServer {
    /// Starts the server as `name` (its log file) on free ports, with `extra` flags, as the
    /// cluster's admin.
    pub fn start(name: &str, config_map: &str, extra: &[&str]) -> Self {
        Self::start_as(name, &kubeconfig(), config_map, extra)
    }

    /// Like [`DnsServer::start`], on 127.0.0.1:`port` (e.g. to bring a stopped server back
    /// where its clients expect it).
    pub fn start_on(name: &str, config_map: &str, port: u16, extra: &[&str]) -> Self {
        Self::start_with(name, &kubeconfig(), config_map, port, extra)
    }

    /// Like [`DnsServer::start`], with the credentials of another kubeconfig.
    pub fn start_as(name: &str, kubeconfig: &Path, config_map: &str, extra: &[&str]) -> Self {
        Self::start_with(name, kubeconfig, config_map, free_port(), extra)
    }

    fn start_with(
        name: &str,
        kubeconfig: &Path,
        config_map: &str,
        port: u16,
        extra: &[&str],
    ) -> Self {
        let admin_port = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        let mut args = vec![
            "--kubeconfig".to_owned(),
            kubeconfig.display().to_string(),
            "--config-map".into(),
            config_map.into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--health-listen".into(),
            format!("127.0.0.1:{admin_port}"),
        ];
        // Loopback only: a config with `upstreamsFromResolvConf` (the samples, the chart's
        // default) must not reach this machine's real resolvers. Unless the test gives its
        // own, the resolv.conf has no nameserver (such forwarders answer SERVFAIL).
        if !extra.contains(&"--resolv-conf") {
            let empty = e2e_dir().join("resolv.conf.none");
            if !empty.exists() {
                std::fs::create_dir_all(e2e_dir()).expect("e2e dir");
                std::fs::write(&empty, "# no upstreams in tests (loopback only)\n")
                    .expect("resolv.conf.none");
            }
            args.extend(["--resolv-conf".to_owned(), empty.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let process = Process::start(name, &workspace_binary("nameplane-dns"), &args);
        Self {
            port,
            admin_port,
            process,
        }
    }

    /// `GET path` on the admin endpoint.
    pub fn admin(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.admin_port, path)
    }

    /// Waits until `/ready` answers 200; returns its body.
    pub fn wait_ready(&mut self, timeout: Duration) -> String {
        let body = wait_for("the DNS server's /ready", timeout, || {
            self.admin("/ready")
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| body)
        });
        self.process.assert_running();
        body
    }

    /// Asks this server with dig.
    pub fn dig(&self, name: &str, rtype: &str, transport: Transport) -> DigResult {
        dig(self.port, name, rtype, transport)
    }

    /// The server's metrics text (empty when it does not answer).
    pub fn metrics(&self) -> String {
        self.admin("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
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

/// Writes a kubeconfig for the local cluster that authenticates with a token of the
/// ServiceAccount `namespace/name` (valid for an hour) and returns its path.
pub fn service_account_kubeconfig(namespace: &str, name: &str) -> PathBuf {
    let token = kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=1h"]);
    let field = |path: &str| {
        kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={{.clusters[0].cluster.{path}}}"),
        ])
    };
    let (server, ca) = (field("server"), field("certificate-authority-data"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {name}}}\ncurrent-context: e2e\n",
        token.trim()
    );
    let path = e2e_dir().join(format!("kubeconfig-{namespace}-{name}"));
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// Writes (creates or replaces) a ConfigMap holding a server config, as the operator would.
/// `hash`, when given, goes in the `nameplane.io/config-hash` annotation.
pub fn apply_config_map(namespace: &str, name: &str, config_json: &str, hash: Option<&str>) {
    let annotations = hash.map_or(String::new(), |h| {
        format!("  annotations:\n    nameplane.io/config-hash: \"{h}\"\n")
    });
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}data:\n  config.json: '{}'\n",
        config_json.replace('\'', "''")
    );
    let out = kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(
        out.status.success(),
        "applying ConfigMap {namespace}/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `config` (validated first) into ConfigMap `namespace/name`, created or replaced,
/// with its content hash, as the operator would.
pub fn publish_config(namespace: &str, name: &str, config: &nameplane_config::ServerConfig) {
    config
        .clone()
        .validate()
        .expect("the test's config is valid");
    apply_config_map(
        namespace,
        name,
        &config.to_json(),
        Some(&config.content_hash()),
    );
}

/// The reverse name of an address, as `dig -x` asks it.
pub fn reverse_name(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>().expect("ip") {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        std::net::IpAddr::V6(v6) => {
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            let mut labels: Vec<String> = hex.chars().rev().map(String::from).collect();
            labels.push("ip6.arpa.".into());
            labels.join(".")
        }
    }
}

/// `kubectl get -n <namespace> <what> -o jsonpath=<path>`: its output (empty when `what`
/// does not exist).
pub fn jsonpath(namespace: &str, what: &str, path: &str) -> String {
    let out = kubectl(&[
        "get",
        "-n",
        namespace,
        what,
        "-o",
        &format!("jsonpath={path}"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Applies a manifest (YAML) in `namespace`.
pub fn apply(namespace: &str, manifest: &str) {
    let out = kubectl_with_stdin(&["apply", "-n", namespace, "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "kubectl apply in {namespace}: {}\n{manifest}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates `name` (idempotent), with `labels`.
pub fn ensure_namespace(name: &str, labels: &[(&str, &str)]) {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("  labels:\n{labels}")
    };
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n{labels}");
    let out = kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs (or updates) nameplane's CRDs and waits until the API server serves them.
pub fn install_crds() {
    kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=nameplane-e2e",
        "--force-conflicts",
        "-f",
        "crds/",
    ]);
    for plural in [
        "dnsservers",
        "dnszones",
        "stubdomains",
        "rewriterules",
        "dnspolicies",
    ] {
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{plural}.nameplane.io"),
        ]);
    }
}

/// Stops (`"stop"`: SIGTERM; `"kill"`: SIGKILL) or starts (`"start"`) one control-plane
/// component (`kube-apiserver`, `kube-controller-manager`) with its recorded flags
/// (`e2e/scripts/component.sh`).
pub fn component(name: &str, action: &str) {
    let status = Command::new(repo_root().join("e2e/scripts/component.sh"))
        .args([name, action])
        .current_dir(repo_root())
        .status()
        .expect("component.sh runs");
    assert!(status.success(), "component.sh {name} {action} failed");
}

/// A Pod bound to the fake Node, with its status set by the test (there is no kubelet).
#[derive(Clone, Debug, Default)]
pub struct FakePod {
    /// Name.
    pub name: String,
    /// Labels (what Services select).
    pub labels: Vec<(String, String)>,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// Pod IPs (one per family at most); the first is `status.podIP`.
    pub ips: Vec<String>,
    /// Whether the Ready condition is true.
    pub ready: bool,
    /// Container ports as (name, protocol, number), what a named `targetPort` resolves to.
    pub ports: Vec<(String, String, u16)>,
}

impl FakePod {
    /// A Pod named `name` labelled `app=<app>`, with these IPs and readiness.
    pub fn new(name: &str, app: &str, ips: &[&str], ready: bool) -> Self {
        Self {
            name: name.into(),
            labels: vec![("app".into(), app.into())],
            ips: ips.iter().map(|ip| (*ip).to_owned()).collect(),
            ready,
            ..Self::default()
        }
    }

    /// Adds a named container port (`protocol` `UDP` or `TCP`).
    pub fn with_port(mut self, name: &str, protocol: &str, number: u16) -> Self {
        self.ports.push((name.into(), protocol.into(), number));
        self
    }

    /// Sets `spec.hostname` and `spec.subdomain`.
    pub fn with_hostname(mut self, hostname: &str, subdomain: &str) -> Self {
        self.hostname = Some(hostname.into());
        self.subdomain = Some(subdomain.into());
        self
    }
}

/// The Kubernetes API from the tests, for what kubectl would make slow (many Pods).
pub struct Kube {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
}

/// How many API requests run at once.
const CONCURRENCY: usize = 16;

impl Kube {
    /// Connects with the local cluster's kubeconfig.
    pub fn connect() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(kubeconfig()).expect("kubeconfig"),
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .expect("kubeconfig loads");
            kube::Client::try_from(config).expect("client")
        });
        Self { runtime, client }
    }

    fn pods(&self, namespace: &str) -> kube::Api<k8s_openapi::api::core::v1::Pod> {
        kube::Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates `pods` on the fake Node and sets their status (IPs, Ready).
    pub fn create_pods(&self, namespace: &str, pods: &[FakePod]) {
        use futures::StreamExt;
        let api = self.pods(namespace);
        self.runtime.block_on(async {
            let results: Vec<Result<(), String>> = futures::stream::iter(pods.iter().cloned())
                .map(|pod| {
                    let api = api.clone();
                    async move {
                        let labels: serde_json::Map<String, serde_json::Value> = pod
                            .labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone().into()))
                            .collect();
                        let mut spec = serde_json::json!({
                            "nodeName": "fake-node",
                            "containers": [{"name": "c", "image": "registry.invalid/none"}],
                        });
                        if !pod.ports.is_empty() {
                            spec["containers"][0]["ports"] = pod
                                .ports
                                .iter()
                                .map(|(name, protocol, number)| {
                                    serde_json::json!({
                                        "name": name,
                                        "protocol": protocol,
                                        "containerPort": number,
                                    })
                                })
                                .collect();
                        }
                        if let Some(hostname) = &pod.hostname {
                            spec["hostname"] = hostname.clone().into();
                        }
                        if let Some(subdomain) = &pod.subdomain {
                            spec["subdomain"] = subdomain.clone().into();
                        }
                        let object: k8s_openapi::api::core::v1::Pod =
                            serde_json::from_value(serde_json::json!({
                                "apiVersion": "v1",
                                "kind": "Pod",
                                "metadata": {"name": pod.name, "labels": labels},
                                "spec": spec,
                            }))
                            .map_err(|e| e.to_string())?;
                        api.create(&kube::api::PostParams::default(), &object)
                            .await
                            .map_err(|e| format!("create {}: {e}", pod.name))?;
                        patch_status(&api, &pod.name, &pod.ips, pod.ready).await
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for result in results {
                result.expect("pod created");
            }
        });
    }

    /// Sets a Pod's IPs and Ready condition.
    pub fn set_pod_status(&self, namespace: &str, name: &str, ips: &[&str], ready: bool) {
        let api = self.pods(namespace);
        let ips: Vec<String> = ips.iter().map(|ip| (*ip).to_owned()).collect();
        self.runtime
            .block_on(patch_status(&api, name, &ips, ready))
            .expect("status patched");
    }

    /// Deletes Pods at once (grace period 0: there is no kubelet to confirm).
    pub fn force_delete_pods(&self, namespace: &str, names: &[&str]) {
        use futures::StreamExt;
        let api = self.pods(namespace);
        self.runtime.block_on(async {
            futures::stream::iter(names.iter().map(|n| (*n).to_owned()))
                .for_each_concurrent(CONCURRENCY, |name| {
                    let api = api.clone();
                    async move {
                        let params = kube::api::DeleteParams {
                            grace_period_seconds: Some(0),
                            ..kube::api::DeleteParams::default()
                        };
                        let _ = api.delete(&name, &params).await;
                    }
                })
                .await;
        });
    }

    /// Force-deletes every Pod of `namespace`, then the namespace (without waiting).
    pub fn delete_namespace(&self, namespace: &str) {
        let names: Vec<String> = self
            .runtime
            .block_on(self.pods(namespace).list(&kube::api::ListParams::default()))
            .map(|list| {
                list.items
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.force_delete_pods(namespace, &names);
        let _ = kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    }
}

/// Deletes a test namespace (force-deleting its Pods first) when dropped, also when the
/// test panics, so a failed test leaves no Pod addresses behind for the next one.
pub struct NamespaceGuard {
    names: Vec<String>,
}

impl NamespaceGuard {
    /// Creates the namespaces (with these labels) and returns their guard.
    pub fn create(namespaces: &[(&str, &[(&str, &str)])]) -> Self {
        for (name, labels) in namespaces {
            ensure_namespace(name, labels);
        }
        Self {
            names: namespaces.iter().map(|(n, _)| (*n).to_owned()).collect(),
        }
    }
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let kube = Kube::connect();
        for name in &self.names {
            kube.delete_namespace(name);
        }
    }
}

async fn patch_status(
    api: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    ips: &[String],
    ready: bool,
) -> Result<(), String> {
    let pod_ips: Vec<serde_json::Value> =
        ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    let status = serde_json::json!({
        "status": {
            "phase": "Running",
            "podIP": ips.first(),
            "podIPs": pod_ips,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        }
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("status of {name}: {e}"))
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
    query_udp_from("127.0.0.1", port, name, rtype, timeout)
}

/// Like [`query_udp`], sent from `source` (a loopback address such as `127.0.40.1`
/// registered as a Pod's IP, so the server sees that Pod asking).
pub fn query_udp_from(
    source: &str,
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
    let socket = UdpSocket::bind((source, 0)).ok()?;
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
pub fn http_body(addr: &str, path: &str) -> Option<String> {
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
        // The Lease lives there; a test file run on its own on a fresh cluster may be the
        // first to need it.
        ensure_namespace("nameplane-system", &[]);
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
        http_body(&self.metrics_addr, "/metrics").unwrap_or_default()
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

/// Waits (30 s) until `what` (e.g. `dnszone/apps`) in `namespace` has `Ready=<status>` with
/// `reason`; returns the condition's message.
pub fn wait_ready_condition(namespace: &str, what: &str, status: &str, reason: &str) -> String {
    wait_for(
        &format!("{namespace}/{what} Ready={status} ({reason})"),
        Duration::from_secs(30),
        || {
            let at = |field: &str| {
                jsonpath(
                    namespace,
                    what,
                    &format!("{{.status.conditions[?(@.type==\"Ready\")].{field}}}"),
                )
            };
            (at("status") == status && at("reason") == reason).then(|| at("message"))
        },
    )
}

impl NamespaceGuard {
    /// Like [`NamespaceGuard::create`], after deleting what an earlier (crashed) run left in
    /// these namespaces and waiting until they are gone ([`remove_namespace`]). Declare the
    /// guard after the operator, so it is dropped first while the operator still runs.
    pub fn fresh(namespaces: &[(&str, &[(&str, &str)])]) -> Self {
        let kube = Kube::connect();
        for (namespace, _) in namespaces {
            remove_namespace(&kube, namespace, true);
        }
        Self::create(namespaces)
    }
}

/// Deletes `namespace` if it exists, with what is in it, and (with `wait`) waits until it is
/// gone. The DNSServer finalizer is dropped first: without the operator that put it there (a
/// crashed earlier run), nothing would ever remove it.
pub fn remove_namespace(kube: &Kube, namespace: &str, wait: bool) {
    if !kubectl(&["get", "namespace", namespace]).status.success() {
        return;
    }
    let servers = kubectl(&["get", "dnsservers", "-n", namespace, "-o", "name"]);
    for server in String::from_utf8_lossy(&servers.stdout).lines() {
        let _ = kubectl(&[
            "patch",
            "-n",
            namespace,
            server,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
    kube.delete_namespace(namespace);
    if wait {
        wait_for(
            &format!("namespace {namespace} of an earlier run to be deleted"),
            Duration::from_secs(120),
            || (!kubectl(&["get", "namespace", namespace]).status.success()).then_some(()),
        );
    }
}

/// Starts `knotd` (Debian's `knot`, installed by `make deps`) as `name` with the
/// configuration `conf`, written to `<dir>/knot.conf`.
pub fn start_knotd(name: &str, dir: &Path, conf: &str) -> Process {
    let conf_path = dir.join("knot.conf");
    std::fs::write(&conf_path, conf).expect("knot.conf");
    let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("knotd is installed (make deps: apt-get install knot)");
    Process::start(
        name,
        &knotd,
        &["-c".into(), conf_path.display().to_string()],
    )
}

/// Creates (or keeps) Node `name` and sets its `status.addresses` to these (type, address)
/// pairs, as a kubelet would. There is no kubelet: the Node stays as the test leaves it.
pub fn set_node(name: &str, addresses: &[(&str, &str)]) {
    let manifest = format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {{\"name\": \"{name}\"}}}}"
    );
    let out = kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<String> = addresses
        .iter()
        .map(|(kind, address)| format!("{{\"type\": \"{kind}\", \"address\": \"{address}\"}}"))
        .collect();
    kubectl_ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!("{{\"status\": {{\"addresses\": [{}]}}}}", list.join(", ")),
    ]);
}

/// The DNS servers' shipped ClusterRoles (`config/rbac/dns_server_cluster_roles.yaml`), which
/// the chart or kustomize install and the operator only binds: applied for a test that runs
/// a DNS server under the RBAC the operator made, deleted again when dropped (so a later
/// `helm install` of the chart can own them).
pub struct ShippedDnsServerRoles;

impl ShippedDnsServerRoles {
    /// Applies the shipped ClusterRoles.
    pub fn install() -> Self {
        let path = repo_root().join("config/rbac/dns_server_cluster_roles.yaml");
        kubectl_ok(&["apply", "-f", &path.display().to_string()]);
        Self
    }
}

impl Drop for ShippedDnsServerRoles {
    fn drop(&mut self) {
        let path = repo_root().join("config/rbac/dns_server_cluster_roles.yaml");
        let _ = kubectl(&[
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            &path.display().to_string(),
        ]);
    }
}

/// One Pod of a `DNSServer`'s Deployment, run as a kubelet would run it: bound to
/// `fake-node`, its container's command (`nameplane-dns` with the Pod's own arguments) as a
/// process on a loopback address of its own (the Pod IP), and marked Ready only once that
/// process's `/ready` answers 200 (the Pod's readiness probe).
pub struct DnsPod {
    /// The Pod's name.
    pub name: String,
    /// Its Pod IP (127.x.y.z), where it listens for DNS (5353) and admin requests.
    pub ip: String,
    /// The container port named `admin` (`/health`, `/ready`, `/metrics`).
    pub admin_port: u16,
    /// The container's process.
    pub process: Process,
}

impl DnsPod {
    /// `GET /ready`: (status code, body), whatever the status.
    pub fn ready(&self) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let addr = format!("{}:{}", self.ip, self.admin_port);
        let mut stream = std::net::TcpStream::connect(&addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET /ready HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text.split_once("\r\n\r\n")?.1.to_string()))
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the process: a Pod that answers nothing.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.process.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.process.pid());
    }
}

/// A loopback address (127.x.y.z, from a range chosen by this process's id) where `port`
/// is free for TCP and 5353 for UDP and TCP.
fn free_pod_ip(port: u16) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 100 + std::process::id() % 100;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ip = format!("127.{base}.{}.{}", (n / 250) % 250, n % 250 + 1);
        let free = TcpListener::bind((ip.as_str(), port)).is_ok()
            && TcpListener::bind((ip.as_str(), 5353)).is_ok()
            && UdpSocket::bind((ip.as_str(), 5353)).is_ok();
        if free {
            return ip;
        }
    }
}

impl Kube {
    /// The Pods of `namespace` matching the label selector `labels`.
    pub fn pods_matching(
        &self,
        namespace: &str,
        labels: &str,
    ) -> Vec<k8s_openapi::api::core::v1::Pod> {
        self.runtime
            .block_on(
                self.pods(namespace)
                    .list(&kube::api::ListParams::default().labels(labels)),
            )
            .expect("pods listed")
            .items
    }

    /// Binds a Pod to `fake-node`, as the scheduler would (the `binding` subresource).
    pub fn bind_pod(&self, namespace: &str, name: &str) {
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "fake-node"},
        });
        self.runtime
            .block_on(
                self.pods(namespace)
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        name,
                        &kube::api::PostParams::default(),
                        &binding,
                    ),
            )
            .unwrap_or_else(|e| panic!("binding {namespace}/{name}: {e}"));
    }

    /// Runs `count` unscheduled Pods of `DNSServer` `namespace/server`'s Deployment (made by
    /// the real ReplicaSet controller) as [`DnsPod`]s: bound, started with the Pod's own
    /// arguments on a Pod IP of their own, Ready once `/ready` answers 200. Pods of that
    /// server bound earlier (by an earlier run, whose processes are gone) are deleted first.
    pub fn run_dns_pods(&self, namespace: &str, server: &str, count: usize) -> Vec<DnsPod> {
        let labels =
            format!("app.kubernetes.io/name=nameplane-dns,app.kubernetes.io/instance={server}");
        // Pods bound by an earlier run have no process behind them any more: gone, as after
        // a node loss; the ReplicaSet makes new ones.
        let stale: Vec<String> = self
            .pods_matching(namespace, &labels)
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .filter_map(|p| p.metadata.name)
            .collect();
        let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
        self.force_delete_pods(namespace, &stale);
        let pods = wait_for(
            &format!("{count} unscheduled Pods of DNSServer {namespace}/{server}"),
            Duration::from_secs(30),
            || {
                let waiting: Vec<_> = self
                    .pods_matching(namespace, &labels)
                    .into_iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
                    })
                    .collect();
                (waiting.len() >= count).then_some(waiting)
            },
        );
        pods.into_iter()
            .take(count)
            .map(|pod| {
                let name = pod.metadata.name.clone().expect("name");
                let container = pod.spec.as_ref().expect("spec").containers[0].clone();
                let admin_port = container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some("admin"))
                    .map(|p| p.container_port as u16)
                    .expect("a container port named admin");
                let ip = free_pod_ip(admin_port);
                self.bind_pod(namespace, &name);
                let mut args = vec![
                    "--kubeconfig".to_string(),
                    kubeconfig().display().to_string(),
                ];
                args.extend(
                    container
                        .args
                        .iter()
                        .flatten()
                        .map(|a| a.replace("0.0.0.0", &ip)),
                );
                let process = Process::start(
                    &format!("pod-{name}"),
                    &workspace_binary("nameplane-dns"),
                    &args,
                );
                let pod = DnsPod {
                    name: name.clone(),
                    ip: ip.clone(),
                    admin_port,
                    process,
                };
                wait_for(
                    &format!("Pod {name}'s /ready at {ip}:{admin_port}"),
                    Duration::from_secs(30),
                    || pod.ready().filter(|(status, _)| *status == 200),
                );
                self.set_pod_status(namespace, &name, &[&ip], true);
                pod
            })
            .collect()
    }
}

/// kstatus (`sigs.k8s.io/cli-utils`, what Flux's `wait: true` uses) of `object`, computed
/// by `e2e/kstatus` (built by `e2e/scripts/build-kstatus.sh`, cached): (status, message).
pub fn kstatus(object: &serde_json::Value) -> (String, String) {
    static KSTATUS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let binary = KSTATUS.get_or_init(|| {
        let script = repo_root().join("e2e/scripts/build-kstatus.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("path")
                .trim(),
        )
    });
    let out = run_with_stdin(binary, &[], &object.to_string());
    // "<Kind> <namespace>/<name> <status> <message>"
    let mut fields = out.trim_end().splitn(4, ' ').skip(2);
    (
        fields.next().unwrap_or_default().to_string(),
        fields.next().unwrap_or_default().to_string(),
    )
}

/// Argo CD's health of `object` by `config/argocd/health.lua`, run by `lua5.4` as Argo CD
/// runs a custom health check (the object as the global `obj`): (status, message).
pub fn argocd_health(object: &serde_json::Value) -> (String, String) {
    fn lua(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Null => "nil".into(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => format!("{s:?}"),
            serde_json::Value::Array(items) => {
                format!(
                    "{{{}}}",
                    items.iter().map(lua).collect::<Vec<_>>().join(", ")
                )
            }
            serde_json::Value::Object(fields) => format!(
                "{{{}}}",
                fields
                    .iter()
                    .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let script = repo_root().join("config/argocd/health.lua");
    let runner = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(object),
        script.display().to_string()
    );
    let out = Command::new("lua5.4")
        .args(["-e", &runner])
        .output()
        .expect("lua5.4 runs (make deps)");
    assert!(
        out.status.success(),
        "lua5.4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

fn run_with_stdin(program: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
