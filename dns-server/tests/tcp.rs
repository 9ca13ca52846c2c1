//! The TCP transport against misbehaving and pipelining clients, over real sockets on
//! loopback (RFC 7766): answers out of order, write deadlines, per-address connection
//! limits. Client addresses other than 127.0.0.1 are other loopback addresses (127.0.0.x),
//! which Linux routes to `lo` without configuration.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use nameplane_config::forward::{ForwardConfig, ForwardPolicy};
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_config::{KubernetesConfig, ServerConfig};
use nameplane_dns::metrics::Metrics;
use nameplane_dns::pipeline::{Pipeline, Settings};
use nameplane_dns::server::{self, Listeners};
use nameplane_dns::shutdown::{self, Trigger};
use nameplane_dns::state::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// A server answering `cluster.local` (Services `web` and `wide`, 40 addresses), the zone
/// `internal.test`, and forwarding everything else to an upstream that never answers.
struct Running {
    addr: SocketAddr,
    state: Arc<State>,
    trigger: Trigger,
    task: JoinHandle<()>,
    /// The silent upstream: bound, so queries to it are not refused, and never read.
    _silent: UdpSocket,
}

async fn start() -> Running {
    start_with(server::tcp::Limits::default()).await
}

async fn start_with(limits: server::tcp::Limits) -> Running {
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 1).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let state = Arc::new(State::new(Metrics::new(addr), Settings::default()));
    let config = ServerConfig {
        server: "kube-system/dns".into(),
        kubernetes: KubernetesConfig {
            cluster_domain: "cluster.local".into(),
            ttl_seconds: 5,
            ..KubernetesConfig::default()
        },
        zones: vec![ZoneConfig {
            name: "internal.test".into(),
            source: "team/internal".into(),
            ttl_seconds: 30,
            records: vec![RecordConfig {
                name: "db.internal.test".into(),
                record_type: RecordKind::A,
                ttl_seconds: 45,
                values: vec!["192.0.2.5".into()],
            }],
            allow_transfer: vec![],
        }],
        forward: vec![ForwardConfig {
            servers_from_resolv_conf: false,
            domain: ".".into(),
            source: "test/forward".into(),
            servers: vec![silent.local_addr().expect("addr").to_string()],
            policy: ForwardPolicy::Random,
            force_tcp: false,
            // Over UDP to the silent socket (over TCP, a closed port fails at once).
            prefer_udp: true,
            max_concurrent: None,
        }],
        ..Default::default()
    }
    .validate()
    .expect("valid config");
    state.set_pipeline(Pipeline::build(config, "test".into()).expect("builds"));
    state.publish_cluster(Arc::new(common::cluster()));
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve_with(
        listeners,
        Arc::clone(&state),
        limits,
        shutdown,
    ));
    Running {
        addr,
        state,
        trigger,
        task,
        _silent: silent,
    }
}

async fn stop(running: Running) {
    running.trigger.fire();
    timeout(WAIT, running.task)
        .await
        .expect("server stops in time")
        .expect("server task");
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    let mut framed = Vec::new();
    let body = message.to_vec().expect("encodes");
    framed.extend_from_slice(&u16::try_from(body.len()).expect("fits").to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// Reads one answer; `None` when the server closed the connection instead.
async fn read_answer(stream: &mut TcpStream) -> Option<Message> {
    let mut prefix = [0; 2];
    timeout(WAIT, stream.read_exact(&mut prefix))
        .await
        .expect("an answer or a close in time")
        .ok()?;
    let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body).await.ok()?;
    Some(Message::from_vec(&body).expect("decodes"))
}

/// Connects from the loopback address `source`.
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .expect("binds a loopback source");
    socket.connect(server).await.expect("connects")
}

/// Asks `name` on `stream` and expects its answer.
async fn ask(stream: &mut TcpStream, id: u16, name: &str) -> Message {
    stream.write_all(&query(id, name)).await.expect("write");
    let answer = read_answer(stream).await.expect("answered");
    assert_eq!(answer.metadata.id, id);
    answer
}

fn addresses(message: &Message) -> Vec<String> {
    message.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test]
async fn a_forwarded_query_does_not_hold_up_the_queries_behind_it() {
    let running = start().await;
    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    // Pipelined in one write: a forwarded name (its upstream never answers), then a zone
    // name and a cluster name.
    let mut batch = query(1, "www.example.org.");
    batch.extend(query(2, "db.internal.test."));
    batch.extend(query(3, "web.default.svc.cluster.local."));
    let sent = Instant::now();
    stream.write_all(&batch).await.expect("write");

    let first = read_answer(&mut stream).await.expect("an answer");
    let second = read_answer(&mut stream).await.expect("an answer");
    let took = sent.elapsed();
    assert_eq!(
        [first.metadata.id, second.metadata.id],
        [2, 3],
        "answered from memory first"
    );
    assert_eq!(addresses(&first), ["192.0.2.5"]);
    assert_eq!(
        second.answers[0].data,
        RData::A(Ipv4Addr::new(10, 96, 0, 10).into())
    );
    assert!(took < Duration::from_millis(500), "they waited {took:?}");

    // The forwarded one comes last, SERVFAIL once its attempt times out.
    let last = read_answer(&mut stream)
        .await
        .expect("the forwarded answer");
    assert_eq!(last.metadata.id, 1);
    assert_eq!(last.metadata.response_code, ResponseCode::ServFail);
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "the upstream was slow: {:?}",
        sent.elapsed()
    );
    // The connection still serves.
    ask(&mut stream, 4, "db.internal.test.").await;
    stop(running).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_after_the_write_deadline() {
    let running = start().await;
    let socket = TcpSocket::new_v4().expect("socket");
    // A small receive window, so the server's writes block soon.
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(running.addr).await.expect("connects");

    // Queries whose answers (40 addresses) never get read, until a write fails: the server
    // closed the connection. Bounded in count and time.
    let packet = query(7, "wide.default.svc.cluster.local.");
    let started = Instant::now();
    let flood = timeout(Duration::from_secs(20), async {
        for sent in 0..200_000_u32 {
            if let Err(error) = stream.write_all(&packet).await {
                return (sent, error);
            }
        }
        panic!("200000 queries written and the connection is still open");
    })
    .await;
    let Ok((sent, error)) = flood else {
        panic!("the server still holds a connection that has not read for 20 s");
    };
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "closed only once the 5 s write deadline passed: {took:?} ({error})"
    );
    assert!(sent > 10, "{sent} queries, {error}");

    // Meanwhile everyone else was served.
    let mut other = TcpStream::connect(running.addr).await.expect("connect");
    ask(&mut other, 8, "web.default.svc.cluster.local.").await;
    let metrics = running.state.metrics().encode();
    assert!(
        metrics.contains(r#"nameplane_tcp_connections_closed_total{reason="write_timeout"} 1"#),
        "{metrics}"
    );
    stop(running).await;
}

/// Bytes the kernel holds unsent for the server's side of the connection `server` <-
/// `client`: the `tx_queue` of `/proc/net/tcp` (a client that does not read leaves the
/// server's answers there).
fn server_send_queue(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let hex = |addr: SocketAddr| {
        let SocketAddr::V4(v4) = addr else {
            return String::new();
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        )
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tx, _) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(tx, 16).ok()
    })
}

#[tokio::test]
async fn a_client_that_never_reads_holds_little_kernel_memory() {
    let running = start().await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(running.addr).await.expect("connects");
    let client = stream.local_addr().expect("addr");
    // Large answers (40 addresses), never read, for a second: well within the write
    // deadline, so the connection is still open and the server's answers pile up in its
    // send buffer until the kernel stops taking them.
    let packet = query(7, "wide.default.svc.cluster.local.");
    let _ = timeout(Duration::from_secs(1), async {
        while stream.write_all(&packet).await.is_ok() {}
    })
    .await;
    let queued = server_send_queue(running.addr, client).expect("the server's socket");
    // Without a bound the kernel grows a send buffer up to net.ipv4.tcp_wmem's maximum
    // (4 MiB here) per connection: 1,024 slow readers could pin gigabytes.
    assert!(
        queued <= 2 * server::tcp::SEND_BUFFER as u64,
        "{queued} bytes queued for a client that does not read"
    );
    stop(running).await;
}

#[tokio::test]
async fn one_address_gets_only_its_share_and_its_idle_connections_give_way() {
    // The default of --tcp-max-connections-per-source.
    const PER_SOURCE: usize = 64;
    let running = start().await;
    let greedy = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for i in 0..PER_SOURCE {
        let mut stream = connect_from(greedy, running.addr).await;
        ask(&mut stream, i as u16, "web.default.svc.cluster.local.").await;
        held.push(stream);
    }
    // All idle: one more from the same address closes the one idle the longest (the first).
    let mut newest = connect_from(greedy, running.addr).await;
    ask(&mut newest, 1000, "web.default.svc.cluster.local.").await;
    assert!(
        read_answer(&mut held[0]).await.is_none(),
        "the longest idle connection was closed"
    );
    held[0] = newest;

    // All busy, each waiting on the silent upstream: the next one from that address is
    // closed at once, while another address is served.
    for (i, stream) in held.iter_mut().enumerate() {
        stream
            .write_all(&query(2000 + i as u16, &format!("n{i}.example.org.")))
            .await
            .expect("write");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = connect_from(greedy, running.addr).await;
    // The server may close it before or after the query arrives.
    let _ = refused
        .write_all(&query(3000, "web.default.svc.cluster.local."))
        .await;
    let answer = read_answer(&mut refused).await;
    assert!(
        answer.is_none(),
        "a connection over the address's limit is closed: {answer:?}\n{}",
        running.state.metrics().encode()
    );
    let mut polite = connect_from(Ipv4Addr::new(127, 0, 0, 3), running.addr).await;
    ask(&mut polite, 3001, "db.internal.test.").await;
    // The busy ones were not closed: each gets its SERVFAIL.
    for (i, stream) in held.iter_mut().enumerate() {
        let answer = read_answer(stream).await.expect("the forwarded answer");
        assert_eq!(answer.metadata.id, 2000 + i as u16);
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    }
    let metrics = running.state.metrics().encode();
    for reason in ["evicted", "per_source_limit"] {
        assert!(
            metrics.contains(&format!(
                "nameplane_tcp_connections_closed_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
    stop(running).await;
}

#[tokio::test]
async fn a_full_server_closes_the_longest_idle_connection_of_any_address() {
    let running = start_with(server::tcp::Limits {
        max_connections: 4,
        ..server::tcp::Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..4_u8 {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 10 + i), running.addr).await;
        ask(&mut stream, u16::from(i), "web.default.svc.cluster.local.").await;
        held.push(stream);
    }
    // Connection 1 is busy (its upstream is silent); 0 has waited on its client the longest.
    held[1]
        .write_all(&query(100, "slow.example.org."))
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newcomer = connect_from(Ipv4Addr::new(127, 0, 0, 20), running.addr).await;
    ask(&mut newcomer, 200, "db.internal.test.").await;
    assert!(read_answer(&mut held[0]).await.is_none(), "0 gave way");
    // Then 2, then 3; 1 stays busy and is never chosen.
    for expected in [2, 3] {
        let mut another = connect_from(Ipv4Addr::new(127, 0, 0, 21), running.addr).await;
        ask(&mut another, 300, "db.internal.test.").await;
        assert!(
            read_answer(&mut held[expected]).await.is_none(),
            "{expected} gave way"
        );
        held.push(another);
    }
    let answer = read_answer(&mut held[1])
        .await
        .expect("the busy one is answered");
    assert_eq!(answer.metadata.id, 100);
    stop(running).await;
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_millis(300);
    let running = start_with(server::tcp::Limits {
        idle_timeout,
        ..server::tcp::Limits::default()
    })
    .await;
    // Silent after one answer.
    let mut idle = TcpStream::connect(running.addr).await.expect("connect");
    ask(&mut idle, 1, "web.default.svc.cluster.local.").await;
    let since = Instant::now();
    assert!(read_answer(&mut idle).await.is_none(), "closed");
    let took = since.elapsed();
    assert!(
        took >= idle_timeout - Duration::from_millis(20) && took < idle_timeout * 10,
        "{took:?}"
    );

    // One byte every 100 ms: bytes keep coming, but no query completes in time.
    let mut trickle = TcpStream::connect(running.addr).await.expect("connect");
    let packet = query(2, "web.default.svc.cluster.local.");
    let since = Instant::now();
    let mut closed = false;
    for byte in &packet {
        if trickle.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !closed {
        closed = read_answer(&mut trickle).await.is_none();
    }
    assert!(closed, "a trickled query is not waited for");
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "{:?}",
        since.elapsed()
    );
    let metrics = running.state.metrics().encode();
    assert!(
        metrics.contains(r#"nameplane_tcp_connections_closed_total{reason="idle"} 2"#),
        "{metrics}"
    );
    stop(running).await;
}
