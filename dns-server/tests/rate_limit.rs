//! Response-rate limiting over real sockets (issue 15): UDP answers to clients that are not
//! one identified Pod are limited per client prefix and answer class; Pods and TCP never
//! are. Loopback only: the clients bind other 127.0.0.0/8 addresses to be other prefixes.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nameplane_config::ValidatedConfig;
use nameplane_dns::cluster::index::PodClient;
use nameplane_dns::metrics::Metrics;
use nameplane_dns::pipeline::{Pipeline, Settings};
use nameplane_dns::server::{self, Listeners};
use nameplane_dns::shutdown::{self, Trigger};
use nameplane_dns::state::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// How long a client waits for more answers after the last one.
const QUIET: Duration = Duration::from_millis(500);

/// A Pod of the Pod network, and two host-network Pods sharing their node's address.
const POD: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const HOST_NETWORK: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);

struct Running {
    addr: SocketAddr,
    state: Arc<State>,
    trigger: Trigger,
    task: JoinHandle<()>,
}

async fn start(extra: &str) -> Running {
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 2).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let state = Arc::new(State::new(Metrics::new(addr), Settings::default()));
    let config = ValidatedConfig::from_json(&format!(
        r#"{{"version":1,"server":"kube-system/dns","kubernetes":{{"clusterDomain":"cluster.local","ttlSeconds":5}}{extra}}}"#
    ))
    .expect("valid config");
    state.set_pipeline(Pipeline::build(config, "test".into()).expect("builds"));
    let mut cluster = common::cluster();
    cluster.set_pods_watched(true);
    if let Some(pods) = cluster.pods.as_mut() {
        for (name, ip, host_network) in [
            ("app", POD, false),
            ("proxy", HOST_NETWORK, true),
            ("agent", HOST_NETWORK, true),
        ] {
            let pod = Arc::new(PodClient {
                namespace: "default".into(),
                name: name.into(),
                labels: Default::default(),
                host_network,
                running: true,
            });
            pods.replace(None, Some((&[IpAddr::V4(ip)], &pod)));
        }
    }
    cluster.set_synced(true);
    state.publish_cluster(Arc::new(cluster));
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));
    Running {
        addr,
        state,
        trigger,
        task,
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
    query_type(id, name, RecordType::A)
}

fn query_type(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    message.to_vec().expect("encodes")
}

/// What `count` UDP queries for `name` from `source` got back.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Whole answers.
    answered: usize,
    /// Truncated answers without records (slipped).
    slipped: usize,
}

async fn udp_burst(server: SocketAddr, source: Ipv4Addr, name: &str, count: u16) -> Tally {
    udp_burst_type(server, source, name, RecordType::A, count).await
}

async fn udp_burst_type(
    server: SocketAddr,
    source: Ipv4Addr,
    name: &str,
    qtype: RecordType,
    count: u16,
) -> Tally {
    let socket = UdpSocket::bind((source, 0)).await.expect("client socket");
    for id in 0..count {
        socket
            .send_to(&query_type(id, name, qtype), server)
            .await
            .expect("send");
    }
    let mut tally = Tally::default();
    let mut buf = vec![0; 65535];
    while let Ok(received) = timeout(QUIET, socket.recv_from(&mut buf)).await {
        let (len, _) = received.expect("recv");
        let message = Message::from_vec(&buf[..len]).expect("decodes");
        assert_eq!(message.queries.len(), 1, "the question is echoed");
        if message.metadata.truncation {
            assert!(
                message.answers.is_empty(),
                "a slipped answer has no records"
            );
            tally.slipped += 1;
        } else {
            assert_eq!(message.metadata.response_code, ResponseCode::NoError);
            assert!(!message.answers.is_empty(), "{message:?}");
            tally.answered += 1;
        }
    }
    tally
}

const WEB: &str = "web.default.svc.cluster.local.";

/// 5 per second, every 2nd over the rate slipped, a 15 s memory: a burst of 20 gets 5
/// answers, then 15 over the rate: 7 slipped, 8 dropped (whatever second boundary it
/// crosses: the debt of 15 is more than a second's refill).
const RATE_LIMIT: &str = r#","rateLimit":{"responsesPerSecond":5,"slip":2,"windowSeconds":15}"#;

#[tokio::test]
async fn unidentified_udp_clients_are_limited_per_prefix() {
    let running = start(RATE_LIMIT).await;
    let limited = Tally {
        answered: 5,
        slipped: 7,
    };
    assert_eq!(
        udp_burst(running.addr, Ipv4Addr::LOCALHOST, WEB, 20).await,
        limited,
        "127.0.0.1 is no Pod"
    );
    let metrics = running.state.metrics().encode();
    for line in [
        r#"nameplane_rrl_responses_total{action="dropped"} 8"#,
        r#"nameplane_rrl_responses_total{action="slipped"} 7"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // Another address of the same /24 shares the spent bucket: only slips and drops.
    let same_prefix = udp_burst(running.addr, Ipv4Addr::new(127, 0, 0, 2), WEB, 4).await;
    assert_eq!(same_prefix.answered, 0, "{same_prefix:?}");
    // Another /24 has its own bucket.
    assert_eq!(
        udp_burst(running.addr, Ipv4Addr::new(127, 0, 1, 1), WEB, 20).await,
        limited,
        "127.0.1.0/24"
    );
    // Another type of the name has its own bucket too.
    assert_eq!(
        udp_burst_type(running.addr, Ipv4Addr::LOCALHOST, WEB, RecordType::AAAA, 6)
            .await
            .answered,
        5
    );
    // A host-network Pod's address is not one Pod's: limited.
    assert_eq!(
        udp_burst(running.addr, HOST_NETWORK, WEB, 20).await,
        limited,
        "host network"
    );
    // An identified Pod never is.
    assert_eq!(
        udp_burst(running.addr, POD, WEB, 60).await,
        Tally {
            answered: 60,
            slipped: 0
        },
        "a Pod"
    );
    stop(running).await;
}

#[tokio::test]
async fn tcp_is_never_limited() {
    let running = start(RATE_LIMIT).await;
    assert_eq!(
        udp_burst(running.addr, Ipv4Addr::LOCALHOST, WEB, 20)
            .await
            .answered,
        5,
        "the bucket of 127.0.0.0/24 is spent"
    );
    let mut stream = TcpStream::connect(running.addr).await.expect("connects");
    for id in 0..30u16 {
        let packet = query(id, WEB);
        let len = u16::try_from(packet.len()).expect("fits");
        stream.write_all(&len.to_be_bytes()).await.expect("write");
        stream.write_all(&packet).await.expect("write");
        let mut prefix = [0; 2];
        timeout(WAIT, stream.read_exact(&mut prefix))
            .await
            .expect("TCP answer in time")
            .expect("read");
        let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut body).await.expect("read");
        let message = Message::from_vec(&body).expect("decodes");
        assert_eq!(message.metadata.id, id);
        assert!(!message.metadata.truncation);
        assert_eq!(message.answers.len(), 1);
    }
    stop(running).await;
}

#[tokio::test]
async fn without_a_rate_limit_nothing_is_limited() {
    let running = start("").await;
    assert_eq!(
        udp_burst(running.addr, Ipv4Addr::LOCALHOST, WEB, 60).await,
        Tally {
            answered: 60,
            slipped: 0
        }
    );
    let metrics = running.state.metrics().encode();
    assert!(
        metrics.contains(r#"nameplane_rrl_responses_total{action="dropped"} 0"#),
        "{metrics}"
    );
    stop(running).await;
}

/// A forwarded answer (finished off the receive loop) counts too.
#[tokio::test]
async fn forwarded_answers_are_limited() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("upstream");
    let upstream_addr = upstream.local_addr().expect("addr");
    let answering = tokio::spawn(async move {
        let mut buf = vec![0; 65535];
        loop {
            let Ok((len, from)) = upstream.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.queries = query.queries.clone();
            if let Some(question) = query.queries.first() {
                reply.answers.push(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(Ipv4Addr::new(192, 0, 2, 1).into()),
                ));
            }
            let _ = upstream
                .send_to(&reply.to_vec().expect("encodes"), from)
                .await;
        }
    });
    let running = start(&format!(
        r#"{RATE_LIMIT},"forward":[{{"domain":"example.org","source":"test","servers":["{upstream_addr}"]}}]"#
    ))
    .await;
    assert_eq!(
        udp_burst(running.addr, Ipv4Addr::LOCALHOST, "www.example.org.", 20).await,
        Tally {
            answered: 5,
            slipped: 7
        }
    );
    stop(running).await;
    answering.abort();
}
