//! The torture harness (issue 15, "the standing suite"): the real `nameplane-dns`, under
//! `ulimit -n 1024` and a memory limit, attacked on loopback while a well-behaved client keeps
//! resolving a cluster name (a real Service's ClusterIP) and a zone name. Attacks, one after
//! the other (`TORTURE_ATTACKS=slowloris,admin` picks some by name):
//!
//! - **slowloris**: hundreds of TCP connections from 127.1.0.0/16 that send one byte of a
//!   length prefix and hold;
//! - **slow readers**: hundreds of TCP connections from 127.2.0.0/16 with a 4 KiB receive
//!   buffer that pipeline large answers and never read;
//! - **connection flood**: connections opened as fast as four threads can from 62,500 source
//!   addresses in 127.3.0.0/16 (Linux routes all of 127.0.0.0/8 to `lo`), half asking one
//!   query, half held silent (up to 2,000: past the connection cap and the open-file limit);
//! - **admin flood**: hundreds of idle connections to the admin endpoint while `/health` is
//!   probed every 500 ms as a kubelet would;
//! - **random-subdomain flood**: `dnsperf` asking unique names under `big.torture`, a zone the
//!   server forwards to a local Knot that answers every name with 30 TXT strings and 60 A
//!   records, so each query misses the cache and goes upstream, at `TORTURE_FLOOD_QPS`.
//!
//! During each attack (and a baseline with none) the well-behaved client (UDP every 10 ms, a
//! fresh TCP connection every 100 ms, from 127.0.0.1, which no attacker uses) must get every
//! answer right, with p99 under `TORTURE_P99_MS` (default 10, the bound; the smoke in
//! `make test` passes 1000: a debug build on a shared 2-core machine); the server must stay
//! alive (past the memory limit the kernel kills it; it cannot exceed the open-file limit, so
//! it must keep serving at it), and slow readers must not keep their connections. Recorded per
//! attack: its volume, the attacker's connections the server still held at the end (server
//! sockets still ESTABLISHED in `/proc/net/tcp`), the client's p50/p99 over UDP and TCP, the
//! server's peak RSS (`VmHWM`, reset before each attack) and peak open fds (sampled every
//! 20 ms). Figures go to `target/torture/figures.json`, which `make bench` puts in its report.
//!
//! Bounded: `TORTURE_SECONDS` per attack (default 4, slow readers at least 8 so the 5 s write
//! deadline passes; `make torture` 20), `TORTURE_CLIENTS` slow connections (default 300;
//! `make torture` 800). `TORTURE_MEMORY_MIB` (default 256) is the memory limit, applied by the
//! first mechanism this machine allows: a `systemd-run --scope` unit with `MemoryMax` when
//! systemd is the init system (a Debian VM); else a memory cgroup (v2 or v1) made next to this
//! process's own, when writable (these workplace machines: cgroup v1, writable by root); else
//! `ulimit -v` (address space: far looser, a Rust process maps much more than it touches, so
//! the limit is then 4x). The figures name the mechanism used. `TORTURE_DNS_FLAGS` adds flags
//! to the server; resource flags of newer builds (`LIMIT_FLAGS`) are attacked at their
//! defaults and named in the figures when the binary has them.
//!
//! Needs `make cluster-up`, `cargo build --bins`, `knotd` and `dnsperf` (`make deps`).

use nameplane_config::ServerConfig;
use nameplane_config::forward::{CacheConfig, ForwardConfig, ForwardPolicy};
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_e2e::{
    DnsServer, Process, apply, e2e_dir, ensure_namespace, free_port, jsonpath, quantile,
    start_knotd, wait_for, workspace_binary,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "torture";
const READY: Duration = Duration::from_secs(30);
/// The server's open-file limit (soft and hard: it cannot raise it).
const NOFILE: u64 = 1024;
/// The zone name the well-behaved client asks, and its address.
const ZONE_NAME: &str = "db.internal.torture.";
const ZONE_IP: [u8; 4] = [192, 0, 2, 5];
/// How long slow readers still held when their attack stops get to be closed: the server's
/// write deadline (5 s by default) and a margin.
const SLOW_READER_GRACE: Duration = Duration::from_secs(8);
/// A large answer from memory (30 TXT strings, about 2 KB) for the slow readers.
const BIG_TXT_NAME: &str = "big.internal.torture.";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How hard and how long to attack, from the environment.
struct Budget {
    seconds: u64,
    clients: usize,
    p99: Duration,
    memory_bytes: u64,
    flood_qps: u64,
}

impl Budget {
    fn from_env() -> Self {
        Self {
            seconds: env_number("TORTURE_SECONDS", 4),
            clients: usize::try_from(env_number("TORTURE_CLIENTS", 300)).expect("fits"),
            p99: Duration::from_millis(env_number("TORTURE_P99_MS", 10)),
            memory_bytes: env_number("TORTURE_MEMORY_MIB", 256) << 20,
            flood_qps: env_number("TORTURE_FLOOD_QPS", 3000),
        }
    }
}

// ---------------------------------------------------------------------------------------
// DNS messages, by hand: the harness checks bytes, it does not trust a library's parser.

/// A query for `name` (`type_code`, class IN), with EDNS (4096) when `edns`.
fn query(id: u16, name: &str, type_code: u16, edns: bool) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.trim_end_matches('.').split('.') {
        packet.push(u8::try_from(label.len()).expect("short label"));
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&type_code.to_be_bytes());
    packet.extend_from_slice(&[0, 1]);
    if edns {
        packet.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    }
    packet
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(packet.len())
        .expect("fits")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(packet);
    out
}

/// Whether `reply` answers query `id`: QR set, NOERROR, at least one answer, and `expected`
/// (an address) among its bytes after the question.
fn answers(reply: &[u8], id: u16, expected: [u8; 4]) -> bool {
    reply.len() > 12
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) > 0
        && reply[12..].windows(4).any(|w| w == expected)
}

// ---------------------------------------------------------------------------------------
// The server's process: limits, memory, fds.

/// How the memory limit is applied on this machine.
enum MemoryLimit {
    SystemdScope,
    Cgroup { dir: PathBuf, version: u8 },
    AddressSpace,
}

impl MemoryLimit {
    /// The first mechanism this machine allows (see the module doc).
    fn pick(bytes: u64) -> Self {
        let systemd = Path::new("/run/systemd/system").exists()
            && Command::new("systemd-run")
                .args(["--scope", "--quiet", "-p", "MemoryMax=64M", "true"])
                .status()
                .is_ok_and(|s| s.success());
        if systemd {
            return Self::SystemdScope;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let name = format!("nameplane-torture-{}", std::process::id());
        for line in own.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
            let (Some(controllers), Some(path)) = (controllers, path) else {
                continue;
            };
            let (version, base, limit_file) = match controllers {
                "" => (2, PathBuf::from("/sys/fs/cgroup"), "memory.max"),
                c if c.split(',').any(|c| c == "memory") => (
                    1,
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    "memory.limit_in_bytes",
                ),
                _ => continue,
            };
            let dir = base.join(path.trim_start_matches('/')).join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let limited = std::fs::write(dir.join(limit_file), bytes.to_string()).is_ok();
            if version == 1 {
                // No swap either, where the kernel accounts it (a write that fails is fine).
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
            } else {
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            }
            if limited {
                return Self::Cgroup { dir, version };
            }
            let _ = std::fs::remove_dir(&dir);
        }
        Self::AddressSpace
    }

    fn describe(&self, bytes: u64) -> String {
        let mib = bytes >> 20;
        match self {
            Self::SystemdScope => format!("systemd-run --scope -p MemoryMax={mib}M"),
            Self::Cgroup { version, .. } => format!("cgroup v{version} memory limit {mib} MiB"),
            Self::AddressSpace => format!("ulimit -v {} MiB (address space)", 4 * mib),
        }
    }

    /// A shell command that applies the limits and then becomes `$0 "$@"`.
    fn script(&self, bytes: u64) -> String {
        let nofile = format!("ulimit -n {NOFILE}");
        match self {
            Self::SystemdScope => format!(
                "{nofile} && exec systemd-run --scope --quiet -p MemoryMax={bytes} -p MemorySwapMax=0 -- \"$0\" \"$@\""
            ),
            Self::Cgroup { dir, .. } => format!(
                "echo $$ > {}/cgroup.procs && {nofile} && exec \"$0\" \"$@\"",
                dir.display()
            ),
            Self::AddressSpace => {
                format!(
                    "{nofile} && ulimit -v {} && exec \"$0\" \"$@\"",
                    4 * (bytes >> 10)
                )
            }
        }
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        if let Self::Cgroup { dir, .. } = self {
            // Empty once the server has exited (Process's drop runs first: it is declared
            // after the limit in the test).
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The pid of the `nameplane-dns` process: `pid` itself once the shell has exec'd it, or its
/// child when a wrapper (`systemd-run`) forked.
fn server_pid(pid: u32) -> Option<u32> {
    let is_server = |p: u32| {
        std::fs::read_link(format!("/proc/{p}/exe"))
            .is_ok_and(|exe| exe.to_string_lossy().contains("nameplane-dns"))
    };
    if is_server(pid) {
        return Some(pid);
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|&c| is_server(c))
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Resets the peak RSS (`VmHWM`) of `pid`.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// This process's soft open-file limit raised to its hard one (the attackers need thousands;
/// `prlimit` from util-linux, so the harness needs no unsafe code).
fn raise_own_nofile() {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let hard = line["Max open files".len()..]
        .split_whitespace()
        .nth(1)
        .expect("hard")
        .to_owned();
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status()
        .expect("prlimit runs (util-linux)");
    assert!(status.success(), "prlimit --nofile={hard}:{hard}");
}

// ---------------------------------------------------------------------------------------
// The well-behaved client and the sampler.

/// What the well-behaved client saw during one attack.
#[derive(Default)]
struct Observed {
    udp: Vec<Duration>,
    tcp: Vec<Duration>,
    failures: Vec<String>,
    peak_fds: u64,
}

/// Runs the well-behaved client and the fd sampler until `stop`.
fn observe(
    server: SocketAddr,
    pid: u32,
    cluster_name: String,
    cluster_ip: [u8; 4],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Observed> {
    std::thread::spawn(move || {
        let mut seen = Observed::default();
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binds");
        udp.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let targets = [(cluster_name.as_str(), cluster_ip), (ZONE_NAME, ZONE_IP)];
        let mut id = 0_u16;
        let mut next_tcp = Instant::now();
        let mut next_sample = Instant::now();
        let mut buf = vec![0; 65535];
        while !stop.load(Ordering::Relaxed) {
            id = id.wrapping_add(1);
            let (name, expected) = targets[usize::from(id % 2)];
            let started = Instant::now();
            udp.send_to(&query(id, name, 1, false), server)
                .expect("udp send");
            // Skip late answers to earlier queries: only this id counts.
            let ok = loop {
                match udp.recv_from(&mut buf) {
                    Ok((n, _)) if buf[..2] == id.to_be_bytes() => {
                        break answers(&buf[..n], id, expected);
                    }
                    Ok(_) => {}
                    Err(_) => break false,
                }
            };
            if ok {
                seen.udp.push(started.elapsed());
            } else {
                seen.failures.push(format!("UDP {name} (id {id})"));
            }
            if Instant::now() >= next_tcp {
                next_tcp += Duration::from_millis(100);
                let started = Instant::now();
                match tcp_ask(server, id, name, expected) {
                    Ok(()) => seen.tcp.push(started.elapsed()),
                    Err(e) => seen.failures.push(format!("TCP {name}: {e}")),
                }
            }
            if Instant::now() >= next_sample {
                next_sample += Duration::from_millis(20);
                seen.peak_fds = seen.peak_fds.max(open_fds(pid).unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(10).saturating_sub(started.elapsed()));
        }
        seen
    })
}

/// One query over a fresh TCP connection, as a stub resolver retrying after TC does.
fn tcp_ask(server: SocketAddr, id: u16, name: &str, expected: [u8; 4]) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&framed(&query(id, name, 1, false)))
        .map_err(|e| format!("write: {e}"))?;
    let mut prefix = [0; 2];
    stream
        .read_exact(&mut prefix)
        .map_err(|e| format!("read: {e}"))?;
    let mut reply = vec![0; usize::from(u16::from_be_bytes(prefix))];
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if answers(&reply, id, expected) {
        Ok(())
    } else {
        Err("wrong answer".into())
    }
}

// ---------------------------------------------------------------------------------------
// Attackers.

/// Loopback source address number `i` in `127.<block>.0.0/16` (never .0 or .255).
fn source(block: u8, i: usize) -> Ipv4Addr {
    let i = i % (250 * 250);
    Ipv4Addr::new(
        127,
        block,
        u8::try_from(i / 250).expect("fits"),
        u8::try_from(i % 250 + 1).expect("fits"),
    )
}

thread_local! {
    /// Each attacker thread's runtime, only for tokio's bind-before-connect (std has none).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("a runtime");
}

/// A blocking TCP connection to `server` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    connect_with(from, server, None)
}

/// [`connect_from`] with a receive buffer of `recv_buffer` bytes (set before the handshake,
/// so the window the server sees stays that small).
fn connect_with(
    from: Ipv4Addr,
    server: SocketAddr,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            if let Some(size) = recv_buffer {
                socket.set_recv_buffer_size(size)?;
            }
            socket.bind(SocketAddr::new(from.into(), 0))?;
            let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(server))
                .await
                .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect"))??;
            let stream = stream.into_std()?;
            stream.set_nonblocking(false)?;
            Ok(stream)
        })
    })
}

/// The `q` quantile of `samples`, zero when there are none.
fn quantile_or_zero(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        Duration::ZERO
    } else {
        quantile(samples, q)
    }
}

/// Connections from `127.<block>.0.0/16` to the server's `port` that the server has not
/// closed: server-side sockets still ESTABLISHED in `/proc/net/tcp` (accepted, or waiting in
/// the listen backlog, which holds a slot in the kernel all the same).
fn held_from(port: u16, block: u8) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let address = |field: &str| -> Option<(Ipv4Addr, u16)> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?.to_le_bytes();
        Some((Ipv4Addr::from(ip), u16::from_str_radix(port, 16).ok()?))
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote)) = (
                fields.get(1).and_then(|f| address(f)),
                fields.get(2).and_then(|f| address(f)),
            ) else {
                return false;
            };
            fields.get(3) == Some(&"01") && local.1 == port && remote.0.octets()[1] == block
        })
        .count()
}

/// One attack's figures.
struct Figures {
    attack: &'static str,
    volume: String,
    held: Option<usize>,
    observed: Observed,
    peak_rss_kib: u64,
}

impl Figures {
    fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        serde_json::json!({
            "attack": self.attack,
            "volume": self.volume,
            "held": self.held,
            "udp_queries": self.observed.udp.len(),
            "tcp_queries": self.observed.tcp.len(),
            "failures": self.observed.failures.len(),
            "udp_p50_ms": ms(quantile_or_zero(&self.observed.udp, 0.5)),
            "udp_p99_ms": ms(quantile_or_zero(&self.observed.udp, 0.99)),
            "tcp_p50_ms": ms(quantile_or_zero(&self.observed.tcp, 0.5)),
            "tcp_p99_ms": ms(quantile_or_zero(&self.observed.tcp, 0.99)),
            "peak_rss_kib": self.peak_rss_kib,
            "peak_fds": self.observed.peak_fds,
        })
    }
}

/// The server under attack and what the well-behaved client asks it.
struct Target {
    addr: SocketAddr,
    admin: u16,
    pid: u32,
    cluster_name: String,
    cluster_ip: [u8; 4],
}

impl Target {
    /// Runs `attack` (given a stop flag; returns the volume and the connections it still
    /// held when told to stop) while the well-behaved client observes.
    fn under(
        &self,
        attack: &'static str,
        seconds: u64,
        run: impl FnOnce(Arc<AtomicBool>) -> (String, Option<usize>),
    ) -> Figures {
        reset_peak_rss(self.pid);
        let stop_client = Arc::new(AtomicBool::new(false));
        let client = observe(
            self.addr,
            self.pid,
            self.cluster_name.clone(),
            self.cluster_ip,
            Arc::clone(&stop_client),
        );
        let stop_attack = Arc::new(AtomicBool::new(false));
        let timer = {
            let stop = Arc::clone(&stop_attack);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(seconds));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let (volume, held) = run(stop_attack);
        timer.join().expect("timer");
        stop_client.store(true, Ordering::Relaxed);
        let observed = client.join().expect("client");
        let figures = Figures {
            attack,
            volume,
            held,
            observed,
            peak_rss_kib: status_kib(self.pid, "VmHWM:").unwrap_or(0),
        };
        eprintln!("[torture] {}", figures.json());
        figures
    }
}

/// Opens `clients` connections from many 127.1.x.y addresses, sends one byte, holds them.
fn slowloris(target: SocketAddr, clients: usize, stop: &AtomicBool) -> (String, Option<usize>) {
    let mut held = Vec::with_capacity(clients);
    let mut refused = 0;
    for i in 0..clients {
        // Eight per address: under the per-source cap, as a set of patient Pods would.
        match connect_from(source(1, i / 8), target) {
            Ok(mut stream) => {
                let _ = stream.write_all(&[0]);
                held.push(stream);
            }
            Err(_) => refused += 1,
        }
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let open = held_from(target.port(), 1);
    drop(held);
    (
        format!("{clients} connections, 1 byte each ({refused} not accepted)"),
        Some(open),
    )
}

/// `clients` connections (127.2.x.y) each pipelining large answers every 200 ms, never
/// reading, with a 4 KiB receive buffer (as a stalled client's would fill): the server's
/// writes block after a few answers.
fn slow_readers(target: SocketAddr, clients: usize, stop: &AtomicBool) -> (String, Option<usize>) {
    let batch: Vec<u8> = (0..50_u16)
        .flat_map(|i| framed(&query(i, BIG_TXT_NAME, 16, false)))
        .collect();
    let mut streams: Vec<TcpStream> = (0..clients)
        .filter_map(|i| connect_with(source(2, i / 8), target, Some(4096)).ok())
        .collect();
    for stream in &streams {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(5)));
    }
    let mut sent = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        for stream in &mut streams {
            if stream.write_all(&batch).is_ok() {
                sent += 50;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Connections made late (connecting hundreds takes seconds on a loaded machine) may not
    // have reached their write deadline yet: give them that long again, still unread.
    let at_stop = held_from(target.port(), 2);
    let grace = Instant::now();
    let mut open = at_stop;
    while open > clients / 10 && grace.elapsed() < SLOW_READER_GRACE {
        std::thread::sleep(Duration::from_millis(250));
        open = held_from(target.port(), 2);
    }
    drop(streams);
    (
        format!(
            "{clients} connections, {sent} queries sent, answers never read; {at_stop} open when the attack stopped, {open} after {:.1?} more",
            grace.elapsed()
        ),
        Some(open),
    )
}

/// Four threads connecting from random addresses in 127.3.0.0/16: even connections ask one
/// query and close, odd ones stay silent and are held (up to 2,000, past the server's cap).
fn connection_flood(target: SocketAddr, stop: &Arc<AtomicBool>) -> (String, Option<usize>) {
    let opened = Arc::new(AtomicU64::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4_usize)
        .map(|t| {
            let (stop, opened, held) = (Arc::clone(stop), Arc::clone(&opened), Arc::clone(&held));
            std::thread::spawn(move || {
                let mut i = t;
                let question = framed(&query(7, ZONE_NAME, 1, false));
                while !stop.load(Ordering::Relaxed) {
                    i = i.wrapping_mul(2_654_435_761).wrapping_add(12_345) % 62_500;
                    let Ok(mut stream) = connect_from(source(3, i), target) else {
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    if i % 2 == 0 {
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                        let _ = stream.write_all(&question);
                        let _ = stream.read(&mut [0; 512]);
                    } else {
                        let mut held = held.lock().expect("lock");
                        if held.len() < 2000 {
                            held.push(stream);
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("flood thread");
    }
    let open = held_from(target.port(), 3);
    drop(held);
    (
        format!(
            "{} connections from 127.3.0.0/16",
            opened.load(Ordering::Relaxed)
        ),
        Some(open),
    )
}

/// `clients` idle connections to the admin endpoint (127.5.x.y), then `/health` asked from
/// 127.0.0.1 as the kubelet would: its status and time go into the volume text; a probe that
/// fails is a failure of the attack.
fn admin_flood(admin: u16, clients: usize, stop: &AtomicBool) -> (String, Option<usize>, bool) {
    let target = SocketAddr::from(([127, 0, 0, 1], admin));
    let held: Vec<TcpStream> = (0..clients)
        .filter_map(|i| connect_from(source(5, i / 8), target).ok())
        .collect();
    let mut probes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let status = nameplane_e2e::http_get(admin, "/health").map(|(status, _)| status);
        probes.push((status, started.elapsed()));
        std::thread::sleep(Duration::from_millis(500));
    }
    let open = held_from(admin, 5);
    drop(held);
    let healthy = !probes.is_empty() && probes.iter().all(|(status, _)| *status == Some(200));
    let slowest = probes
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    (
        format!(
            "{} idle admin connections; /health probes: {} of {} answered 200, slowest {slowest:.1?}",
            clients,
            probes.iter().filter(|(s, _)| *s == Some(200)).count(),
            probes.len()
        ),
        Some(open),
        healthy,
    )
}

/// `dnsperf` asking unique names under `big.torture` (forwarded to Knot) for `seconds`.
fn random_subdomains(
    target: SocketAddr,
    seconds: u64,
    qps: u64,
    dir: &Path,
) -> (String, Option<usize>) {
    let file = dir.join("random-subdomains.txt");
    let mut names = String::new();
    let mut x = 0x9e37_79b9_u64;
    for i in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let kind = if i % 2 == 0 { "TXT" } else { "A" };
        names.push_str(&format!("r{x:016x}.big.torture {kind}\n"));
    }
    std::fs::write(&file, names).expect("query file");
    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &target.port().to_string(), "-d"])
        .arg(&file)
        .args([
            "-l",
            &seconds.to_string(),
            "-c",
            "4",
            "-q",
            "200",
            "-t",
            "2",
        ])
        .args(["-Q", &qps.to_string()])
        .output()
        .expect("dnsperf runs (make deps: apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim().to_owned())
            .unwrap_or_default()
    };
    (
        format!(
            "dnsperf: {}; {}; {}",
            pick("Queries sent:"),
            pick("Queries completed:"),
            pick("Queries per second:")
        ),
        None,
    )
}

// ---------------------------------------------------------------------------------------
// The stage: Service, zones, Knot, the server.

fn record(name: &str, kind: RecordKind, values: Vec<String>) -> RecordConfig {
    RecordConfig {
        name: name.into(),
        record_type: kind,
        ttl_seconds: 300,
        values,
    }
}

/// Knot serving `big.torture`: every name answers 30 TXT strings and 60 A records.
fn start_knot(dir: &Path) -> (Process, u16) {
    let port = free_port();
    std::fs::create_dir_all(dir.join("zones")).expect("knot dir");
    let mut zone = String::from(
        "$ORIGIN big.torture.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.53\n",
    );
    for i in 0..30 {
        zone.push_str(&format!(
            "* TXT \"large answer number {i:02}, long enough to need TCP or a big EDNS buffer\"\n"
        ));
    }
    for i in 1..=60 {
        zone.push_str(&format!("* A 192.0.2.{i}\n"));
    }
    std::fs::write(dir.join("zones/big.torture.zone"), zone).expect("zone file");
    let d = dir.display();
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
         control:\n  listen: \"{d}/knot.sock\"\n\
         log:\n  - target: stderr\n    any: warning\n\
         database:\n  storage: \"{d}/db\"\n\
         template:\n  - id: default\n    storage: \"{d}/zones\"\n\
         zone:\n  - domain: big.torture\n    file: big.torture.zone\n"
    );
    (start_knotd("torture-knotd", dir, &conf), port)
}

fn server_config(knot: u16) -> ServerConfig {
    let txt: Vec<String> = (0..30)
        .map(|i| format!("a large answer from memory, string {i:02} of thirty"))
        .collect();
    ServerConfig {
        server: format!("{NAMESPACE}/dns"),
        zones: vec![ZoneConfig {
            name: "internal.torture".into(),
            source: format!("{NAMESPACE}/internal"),
            ttl_seconds: 300,
            records: vec![
                record(
                    ZONE_NAME.trim_end_matches('.'),
                    RecordKind::A,
                    vec![Ipv4Addr::from(ZONE_IP).to_string()],
                ),
                record(BIG_TXT_NAME.trim_end_matches('.'), RecordKind::TXT, txt),
            ],
            allow_transfer: vec![],
        }],
        forward: vec![ForwardConfig {
            domain: "big.torture".into(),
            source: format!("{NAMESPACE}/knot"),
            servers: vec![format!("127.0.0.1:{knot}")],
            policy: ForwardPolicy::Random,
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: None,
            servers_from_resolv_conf: false,
        }],
        cache: Some(CacheConfig {
            capacity: 10_000,
            max_ttl_seconds: 3600,
            min_ttl_seconds: 0,
            denial_ttl_seconds: 60,
            denial_capacity: None,
            serve_stale_seconds: 0,
            prefetch: None,
        }),
        ..Default::default()
    }
}

/// The server's flags: ports, ConfigMap, and `TORTURE_DNS_FLAGS`.
fn server_args(port: u16, admin: u16) -> Vec<String> {
    let mut args = vec![
        "--kubeconfig".to_owned(),
        nameplane_e2e::kubeconfig().display().to_string(),
        "--config-map".into(),
        format!("{NAMESPACE}/dns"),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--health-listen".into(),
        format!("127.0.0.1:{admin}"),
        "--udp-sockets".into(),
        "1".into(),
    ];
    if let Ok(extra) = std::env::var("TORTURE_DNS_FLAGS") {
        args.extend(extra.split_whitespace().map(str::to_owned));
    }
    args
}

fn ipv4_bytes(ip: &str) -> [u8; 4] {
    ip.parse::<Ipv4Addr>().expect("an IPv4 ClusterIP").octets()
}

/// Whether `attack` is selected by `TORTURE_ATTACKS` (comma-separated words; all by default).
fn selected(attack: &str) -> bool {
    std::env::var("TORTURE_ATTACKS").map_or(true, |list| {
        list.split(',')
            .any(|word| !word.is_empty() && attack.contains(word.trim()))
    })
}

/// Flags of newer builds that bound resources (issue 15), each reported when this binary has
/// it: the harness then attacks the server with them at their defaults.
const LIMIT_FLAGS: [&str; 5] = [
    "--forward-max-in-flight",
    "--cache-max-bytes",
    "--cache-max-entry-bytes",
    "--admin-max-connections",
    "--rate-limit",
];

fn limits_in_binary() -> Vec<&'static str> {
    let help = Command::new(workspace_binary("nameplane-dns"))
        .arg("--help")
        .output()
        .expect("nameplane-dns --help");
    let help = String::from_utf8_lossy(&help.stdout);
    LIMIT_FLAGS
        .into_iter()
        .filter(|flag| help.contains(flag))
        .collect()
}

fn write_figures(budget: &Budget, limit: &str, all: &[Figures]) {
    let dir = e2e_dir().parent().expect("target").join("torture");
    std::fs::create_dir_all(&dir).expect("figures dir");
    let json = serde_json::json!({
        "when": String::from_utf8_lossy(
            &Command::new("date").args(["-u", "+%FT%TZ"]).output().expect("date").stdout
        ).trim(),
        "profile": std::env::var("NAMEPLANE_PROFILE").unwrap_or_else(|_| "debug".into()),
        "seconds_per_attack": budget.seconds,
        "slow_clients": budget.clients,
        "open_file_limit": NOFILE,
        "memory_limit": limit,
        "p99_threshold_ms": budget.p99.as_millis() as u64,
        "flood_qps": budget.flood_qps,
        "limits_in_binary": limits_in_binary().join(" "),
        "dns_flags": std::env::var("TORTURE_DNS_FLAGS").unwrap_or_default(),
        "attacks": all.iter().map(Figures::json).collect::<Vec<_>>(),
    });
    let path = dir.join("figures.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).expect("figures");
    eprintln!("[torture] figures: {}", path.display());
}

#[test]
fn the_server_keeps_answering_a_well_behaved_client_under_attack() {
    let budget = Budget::from_env();
    raise_own_nofile();
    ensure_namespace(NAMESPACE, &[]);
    apply(
        NAMESPACE,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ipFamilies: [IPv4]\n  ports:\n  - {port: 80}\n",
    );
    let cluster_ip = jsonpath(NAMESPACE, "service/web", "{.spec.clusterIP}");
    let cluster_name = format!("web.{NAMESPACE}.svc.cluster.local.");

    let dir = e2e_dir().join(format!("torture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut knot, knot_port) = start_knot(&dir);
    nameplane_e2e::publish_config(NAMESPACE, "dns", &server_config(knot_port));

    let limit = MemoryLimit::pick(budget.memory_bytes);
    let limit_text = limit.describe(budget.memory_bytes);
    let (port, admin) = (free_port(), free_port());
    let mut args = vec!["-c".to_owned(), limit.script(budget.memory_bytes)];
    args.push(workspace_binary("nameplane-dns").display().to_string());
    args.extend(server_args(port, admin));
    let process = Process::start("torture-dns", Path::new("sh"), &args);
    let mut server = DnsServer {
        port,
        admin_port: admin,
        process,
    };
    server.wait_ready(READY);
    let pid = wait_for("the nameplane-dns process", READY, || {
        server_pid(server.process.pid())
    });
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    eprintln!(
        "[torture] server pid {pid}; {limit_text}; {}",
        limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_default()
    );
    let target = Target {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        admin,
        pid,
        cluster_name,
        cluster_ip: ipv4_bytes(&cluster_ip),
    };
    // The names answer before any attack (the config and the Service have arrived).
    wait_for("the cluster name and the zone name", READY, || {
        (tcp_ask(target.addr, 1, &target.cluster_name, target.cluster_ip).is_ok()
            && tcp_ask(target.addr, 2, ZONE_NAME, ZONE_IP).is_ok())
        .then_some(())
    });

    let (seconds, clients) = (budget.seconds, budget.clients);
    let mut all = vec![
        target.under("baseline (no attack)", seconds.min(3), |stop| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            ("none".into(), None)
        }),
    ];
    if selected("slowloris") {
        all.push(target.under("slowloris", seconds, |stop| {
            slowloris(target.addr, clients, &stop)
        }));
    }
    if selected("slow readers") {
        // Closed by the write deadline (5 s by default): attack for longer than that.
        all.push(target.under("slow readers", seconds.max(8), |stop| {
            slow_readers(target.addr, clients, &stop)
        }));
    }
    if selected("connection flood") {
        all.push(target.under("connection flood", seconds, |stop| {
            connection_flood(target.addr, &stop)
        }));
    }
    let mut admin_healthy = true;
    if selected("admin flood") {
        all.push(target.under("admin flood", seconds, |stop| {
            let (volume, held, healthy) = admin_flood(target.admin, clients, &stop);
            admin_healthy = healthy;
            (volume, held)
        }));
    }
    if selected("random-subdomain flood") {
        all.push(target.under("random-subdomain flood", seconds, |_| {
            random_subdomains(target.addr, seconds, budget.flood_qps, &dir)
        }));
    }
    write_figures(&budget, &limit_text, &all);

    server.process.assert_running();
    knot.assert_running();
    let mut problems = Vec::new();
    if !admin_healthy {
        problems.push("admin flood: /health did not answer 200 to every probe".to_owned());
    }
    for figures in &all {
        let seen = &figures.observed;
        if !seen.failures.is_empty() {
            problems.push(format!(
                "{}: {} failed queries, first: {:?}",
                figures.attack,
                seen.failures.len(),
                &seen.failures[..seen.failures.len().min(3)]
            ));
        }
        for (transport, samples) in [("UDP", &seen.udp), ("TCP", &seen.tcp)] {
            let p99 = quantile_or_zero(samples, 0.99);
            if samples.is_empty() || p99 >= budget.p99 {
                problems.push(format!(
                    "{}: {transport} p99 {p99:?} over {} answers (limit {:?})",
                    figures.attack,
                    samples.len(),
                    budget.p99
                ));
            }
        }
        if figures.peak_rss_kib << 10 >= budget.memory_bytes {
            problems.push(format!(
                "{}: peak RSS {} KiB",
                figures.attack, figures.peak_rss_kib
            ));
        }
    }
    // Slow readers must not keep their slots: the write deadline closes them.
    for figures in all.iter().filter(|f| f.attack == "slow readers") {
        if let Some(held) = figures.held.filter(|&held| held > clients / 10) {
            problems.push(format!("slow readers: {held} of {clients} still held"));
        }
    }
    drop(server);
    drop(limit);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
