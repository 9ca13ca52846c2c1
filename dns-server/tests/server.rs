//! The server over real sockets: binds 127.0.0.1:0, fills the state with a config and a
//! cluster snapshot built here (no Kubernetes), and queries it over UDP and TCP.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use nameplane_config::ValidatedConfig;
use nameplane_dns::admin;
use nameplane_dns::metrics::Metrics;
use nameplane_dns::pipeline::{Pipeline, Settings};
use nameplane_dns::server::{self, Listeners};
use nameplane_dns::shutdown::{self, Trigger};
use nameplane_dns::state::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    state: Arc<State>,
    trigger: Trigger,
    task: JoinHandle<()>,
}

async fn start(udp_sockets: usize) -> Running {
    let listeners =
        Listeners::bind("127.0.0.1:0".parse().expect("addr"), udp_sockets).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let state = Arc::new(State::new(Metrics::new(addr), Settings::default()));

    let config = ValidatedConfig::from_json(
        r#"{"version":1,"server":"kube-system/dns","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5}}"#,
    )
    .expect("valid config");
    state.set_pipeline(Pipeline::build(config, "test".into()).expect("builds"));
    state.publish_cluster(Arc::new(common::cluster()));

    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));
    Running {
        addr,
        state,
        trigger,
        task,
    }
}

fn query(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.set_edns(opt);
    }
    message.to_vec().expect("encodes")
}

async fn udp_ask(addr: SocketAddr, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    socket.send_to(packet, addr).await.expect("send");
    let mut buf = vec![0; 65535];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .expect("recv");
    Message::from_vec(&buf[..len]).expect("decodes")
}

async fn tcp_send(stream: &mut TcpStream, packet: &[u8]) {
    let len = u16::try_from(packet.len()).expect("fits");
    stream.write_all(&len.to_be_bytes()).await.expect("write");
    stream.write_all(packet).await.expect("write");
}

async fn tcp_read(stream: &mut TcpStream) -> Message {
    let mut prefix = [0; 2];
    timeout(WAIT, stream.read_exact(&mut prefix))
        .await
        .expect("TCP answer in time")
        .expect("read");
    let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body).await.expect("read");
    Message::from_vec(&body).expect("decodes")
}

async fn stop(running: Running) {
    running.trigger.fire();
    timeout(WAIT, running.task)
        .await
        .expect("server stops in time")
        .expect("server task");
}

#[tokio::test]
async fn answers_over_udp() {
    let running = start(2).await;
    for id in 0..20 {
        let answer = udp_ask(
            running.addr,
            &query(id, "web.default.svc.cluster.local.", RecordType::A, false),
        )
        .await;
        assert_eq!(answer.metadata.id, id);
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(
            answer.answers[0].data,
            RData::A(Ipv4Addr::new(10, 96, 0, 10).into())
        );
    }

    let answer = udp_ask(
        running.addr,
        &query(1, "missing.default.svc.cluster.local.", RecordType::A, true),
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(answer.authorities.len(), 1);
    assert!(answer.edns.is_some());

    let answer = udp_ask(
        running.addr,
        &query(2, "example.com.", RecordType::A, false),
    )
    .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);

    let text = running.state.metrics().encode();
    assert!(
        text.contains(r#"proto="udp",family="1",type="A"} 22"#),
        "{text}"
    );
    stop(running).await;
}

#[tokio::test]
async fn truncated_over_udp_then_complete_over_tcp() {
    let running = start(1).await;
    let packet = query(7, "wide.default.svc.cluster.local.", RecordType::A, false);
    let answer = udp_ask(running.addr, &packet).await;
    assert!(answer.metadata.truncation);
    assert!(answer.answers.is_empty());

    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    tcp_send(&mut stream, &packet).await;
    let answer = tcp_read(&mut stream).await;
    assert!(!answer.metadata.truncation);
    assert_eq!(answer.answers.len(), 40);
    stop(running).await;
}

#[tokio::test]
async fn several_queries_per_tcp_connection() {
    let running = start(1).await;
    let mut stream = TcpStream::connect(running.addr).await.expect("connect");
    // Pipelined: three queries written before any answer is read.
    tcp_send(
        &mut stream,
        &query(1, "web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    tcp_send(
        &mut stream,
        &query(2, "WEB.default.svc.cluster.local.", RecordType::AAAA, true),
    )
    .await;
    tcp_send(
        &mut stream,
        &query(3, "default.svc.cluster.local.", RecordType::A, false),
    )
    .await;

    let first = tcp_read(&mut stream).await;
    assert_eq!(first.metadata.id, 1);
    assert_eq!(first.answers.len(), 1);
    let second = tcp_read(&mut stream).await;
    assert_eq!(second.metadata.id, 2);
    assert_eq!(second.answers[0].record_type(), RecordType::AAAA);
    assert_eq!(
        second.answers[0].name.to_ascii(),
        "WEB.default.svc.cluster.local."
    );
    let third = tcp_read(&mut stream).await;
    assert_eq!(third.metadata.id, 3);
    assert_eq!(third.metadata.response_code, ResponseCode::NoError);
    assert!(third.answers.is_empty(), "NODATA");

    // Garbage with a readable id gets FORMERR on the same connection.
    tcp_send(
        &mut stream,
        &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff],
    )
    .await;
    let formerr = tcp_read(&mut stream).await;
    assert_eq!(formerr.metadata.id, 0x1234);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);

    stop(running).await;
    // After shutdown the server closes the idle connection.
    let mut rest = Vec::new();
    let closed = timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection closed after shutdown");
}

#[tokio::test]
async fn admin_endpoint_over_http() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(State::new(
        Metrics::new("127.0.0.1:53".parse().expect("addr")),
        Settings::default(),
    ));
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(admin::serve(listener, Arc::clone(&state), shutdown));

    let get = |path: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut reply = String::new();
        timeout(WAIT, stream.read_to_string(&mut reply))
            .await
            .expect("reply in time")
            .expect("read");
        reply
    };
    assert!(get("/health").await.starts_with("HTTP/1.1 200 "));
    assert!(get("/ready").await.starts_with("HTTP/1.1 503 "));
    assert!(get("/metrics").await.starts_with("HTTP/1.1 200 "));

    trigger.fire();
    timeout(WAIT, task)
        .await
        .expect("admin stops in time")
        .expect("admin task");
}
