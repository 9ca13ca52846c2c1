//! The `nameplane-dns` process itself: started as a container runtime often starts it (a soft
//! open-file limit of 256 here, 1024 in many runtimes), it raises its soft limit to the hard
//! one before it accepts connections, so the TCP connection cap is not cut short by file
//! descriptors. The API server it is pointed at does not exist (127.0.0.1:1): the process
//! keeps running and retrying, which is all these tests need. Started with a hard limit below
//! its TCP connection cap, it lowers the cap to fit, so a flood of idle connections does not
//! exhaust its descriptors and shut new clients out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Kills the process when dropped, also when the test panics.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(soft, hard)` of "Max open files" in `/proc/<pid>/limits`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().expect("soft").to_owned(),
        fields.next().expect("hard").to_owned(),
    )
}

/// The admin endpoint's reply to `GET path` (empty when it does not answer within 1 s).
fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .is_err()
    {
        return String::new();
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

fn health(port: u16) -> bool {
    get(port, "/health").starts_with("HTTP/1.1 200")
}

/// A kubeconfig pointing at an API server that does not exist, in a fresh directory.
fn unreachable_kubeconfig(test: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "nameplane-dns-process-{test}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: none\n  user: {token: none}\ncontexts:\n- name: none\n  context: {cluster: none, user: none}\ncurrent-context: none\n",
    )
    .expect("kubeconfig");
    (dir, kubeconfig)
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let (dir, kubeconfig) = unreachable_kubeconfig("rlimit");
    let (dns, admin) = (free_port(), free_port());
    // The shell lowers its soft limit, then becomes the server (exec), which inherits it.
    let running = start_under_ulimit(
        "-Sn 256",
        &kubeconfig,
        dns,
        admin,
        "--tcp-max-connections 64",
    );
    let pid = running.0.id();
    let (soft, hard) = open_file_limits(pid);
    eprintln!("open files: soft {soft}, hard {hard} (started with soft 256)");
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_limit_flags_parse_and_idle_admin_connections_cannot_lock_out_health() {
    let (dir, kubeconfig) = unreachable_kubeconfig("limits");
    let (dns, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_nameplane-dns"))
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .args(["--listen", &format!("127.0.0.1:{dns}")])
        .args(["--health-listen", &format!("127.0.0.1:{admin}")])
        .args(["--config-map", "ns/none"])
        .args(["--forward-max-in-flight", "100"])
        .args(["--cache-max-bytes", "1048576"])
        .args(["--cache-max-entry-bytes", "8192"])
        .args(["--admin-max-connections", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runs");
    let _running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health(admin) {
        assert!(Instant::now() < deadline, "the server's /health answers");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 40 connections that never send a byte: ten times the cap.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", admin)).expect("connects"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert!(health(admin), "/health answers behind 40 idle connections");
    assert!(started.elapsed() < Duration::from_secs(1));
    let metrics = get(admin, "/metrics");
    let evicted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nameplane_admin_connections_evicted_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the eviction counter");
    // 40 idle connections through 4 slots: at least 36 made room.
    assert!(evicted >= 36.0, "{evicted}");
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the binary through `sh -c "ulimit <limit> && exec ..."` (so it inherits the
/// shell's lowered limit), pointed at `kubeconfig`, with `extra` flags, and waits for its
/// `/health`.
fn start_under_ulimit(
    limit: &str,
    kubeconfig: &std::path::Path,
    dns: u16,
    admin: u16,
    extra: &str,
) -> Running {
    let script = format!(
        "ulimit {limit} && exec \"$0\" --kubeconfig {} --listen 127.0.0.1:{dns} --health-listen 127.0.0.1:{admin} --config-map ns/none {extra}",
        kubeconfig.display()
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_nameplane-dns"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health(admin) {
        assert!(Instant::now() < deadline, "the server's /health answers");
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

/// A TCP connection from the loopback address `127.4.<i / 250>.<i % 250 + 1>`.
fn connect_from(i: usize, port: u16) -> std::io::Result<TcpStream> {
    let from = std::net::Ipv4Addr::new(127, 4, (i / 250) as u8, (i % 250 + 1) as u8);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(2),
    )?;
    Ok(socket.into())
}

#[test]
fn at_the_open_file_limit_a_new_tcp_client_still_gets_an_answer() {
    const NOFILE: usize = 256;
    let (dir, kubeconfig) = unreachable_kubeconfig("nofile");
    let (dns, admin) = (free_port(), free_port());
    // Soft and hard: the server cannot raise it; the default TCP connection cap.
    let _running = start_under_ulimit(&format!("-n {NOFILE}"), &kubeconfig, dns, admin, "");
    // Idle connections from many addresses (8 each, under the per-source cap), more than
    // the server has file descriptors: the TCP cap (1024 by default) is not what stops them.
    let held: Vec<TcpStream> = (0..NOFILE + 100)
        .filter_map(|i| connect_from(i / 8, dns).ok())
        .collect();
    assert!(held.len() > NOFILE, "{} connections opened", held.len());
    std::thread::sleep(Duration::from_millis(500));

    // A new client: answered (whatever the rcode: there is no config), not left in the
    // listen backlog of a server that cannot accept.
    let mut stream = TcpStream::connect(("127.0.0.1", dns)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let query = [
        0, 26, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'e', b'b', 4, b't', b'e', b's',
        b't', 0, 0, 1, 0, 1,
    ];
    stream.write_all(&query).expect("write");
    let mut reply = [0; 4];
    let read = stream.read_exact(&mut reply);
    assert!(
        read.is_ok(),
        "no answer with {} idle connections held: {read:?}",
        held.len()
    );
    assert_eq!(reply[2..4], [0x12, 0x34], "the answer to this query");
    let _ = std::fs::remove_dir_all(&dir);
}
