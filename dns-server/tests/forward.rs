//! The forward and cache stages against real DNS servers on loopback.
//!
//! The upstreams are nameplane DNS servers (the same code as the binary, over real UDP and
//! TCP sockets) serving authoritative zones; nothing answers with canned bytes. Where a
//! test forges replies, it does so from its own sockets in front of a real upstream.
//!
//! Tests whose waits are timers (attempt deadlines, health and loop probes, cache TTLs,
//! serve-stale, prefetch) run on paused tokio time (`start_paused`): when every task waits,
//! the clock jumps to the next timer, so a 1 s deadline costs no real second, and elapsed
//! times are read from `tokio::time::Instant` (as the forward and cache stages read theirs),
//! so a wait that should not happen still shows. Every socket is on loopback and served by
//! a task of the same runtime, so a reply is read before the clock jumps. The endless TCP
//! upstream keeps real time: it keeps the runtime busy, so a paused clock would never reach
//! the deadline a broken byte cap falls back to (the test would hang instead of fail).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nameplane_config::forward::{CacheConfig, ForwardConfig, ForwardPolicy};
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_config::{ServerConfig, ValidatedConfig};
use nameplane_dns::cluster::index::Cluster;
use nameplane_dns::metrics::Metrics;
use nameplane_dns::pipeline::{Pipeline, Settings};
use nameplane_dns::request::Transport;
use nameplane_dns::server::{self, Listeners};
use nameplane_dns::shutdown::{self, Trigger};
use nameplane_dns::state::{Reply, State};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(5);

fn record(name: &str, kind: RecordKind, ttl: u32, values: &[&str]) -> RecordConfig {
    RecordConfig {
        name: name.into(),
        record_type: kind,
        ttl_seconds: ttl,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

/// `example.org` as an upstream serves it; `ttl` is the TTL of `www`.
fn example_org(www_ip: &str, ttl: u32) -> ZoneConfig {
    let big: Vec<String> = (0..40)
        .map(|i| format!("a fairly long text record number {i:02} to overflow 1232 bytes"))
        .collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    ZoneConfig {
        name: "example.org".into(),
        source: "upstream/example-org".into(),
        ttl_seconds: 30,
        records: vec![
            record("www.example.org", RecordKind::A, ttl, &[www_ip]),
            record(
                "alias.example.org",
                RecordKind::CNAME,
                300,
                &["www.example.org."],
            ),
            record("big.example.org", RecordKind::TXT, 300, &big),
        ],
        allow_transfer: vec![],
    }
}

fn config(
    zones: Vec<ZoneConfig>,
    forward: Vec<ForwardConfig>,
    cache: Option<CacheConfig>,
) -> ValidatedConfig {
    ServerConfig {
        server: "test/dns".into(),
        zones,
        forward,
        cache,
        ..Default::default()
    }
    .validate()
    .expect("valid config")
}

fn forward(domain: &str, servers: &[SocketAddr], policy: ForwardPolicy) -> ForwardConfig {
    ForwardConfig {
        servers_from_resolv_conf: false,
        domain: domain.into(),
        source: "test/forward".into(),
        servers: servers.iter().map(ToString::to_string).collect(),
        policy,
        force_tcp: false,
        prefer_udp: false,
        max_concurrent: None,
    }
}

fn cache(serve_stale_seconds: u32) -> CacheConfig {
    CacheConfig {
        capacity: 1000,
        max_ttl_seconds: 3600,
        min_ttl_seconds: 0,
        denial_ttl_seconds: 60,
        denial_capacity: None,
        serve_stale_seconds,
        prefetch: None,
    }
}

fn state_with(config: ValidatedConfig, listen: SocketAddr) -> Arc<State> {
    let state = Arc::new(State::new(Metrics::new(listen), Settings::default()));
    state.set_pipeline(Pipeline::build(config, "test".into()).expect("builds"));
    let mut cluster = Cluster::new(1);
    cluster.set_synced(true);
    state.publish_cluster(Arc::new(cluster));
    state
}

/// A DNS server on 127.0.0.1 (UDP and TCP) serving `zones`.
struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    trigger: Trigger,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(zones: Vec<ZoneConfig>) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), zones).await
    }

    async fn start_on(addr: SocketAddr, zones: Vec<ZoneConfig>) -> Self {
        let listeners = Listeners::bind(addr, 1).expect("binds");
        let addr = listeners.local_addr().expect("addr");
        let state = state_with(config(zones, vec![], None), addr);
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));
        Self {
            addr,
            state,
            trigger,
            task,
        }
    }

    /// Queries this server received, by transport.
    fn requests(&self, proto: &str) -> f64 {
        metric(
            &self.state.metrics().encode(),
            "coredns_dns_requests_total",
            &format!("proto=\"{proto}\""),
        )
    }

    async fn stop(self) {
        self.trigger.fire();
        timeout(WAIT, self.task)
            .await
            .expect("stops in time")
            .expect("server task");
    }
}

/// Sum of the samples of `name` whose labels contain `filter`.
fn metric(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A port on 127.0.0.1 where nothing listens (UDP gets "connection refused").
async fn closed_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let addr = socket.local_addr().expect("addr");
    drop(socket);
    addr
}

fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message.to_vec().expect("encodes")
}

/// Asks `state` through the whole path (waiting on upstreams if needed).
async fn ask(state: &State, name: &str, qtype: RecordType, transport: Transport) -> Message {
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let messages = timeout(
        WAIT,
        state.answer(&query(name, qtype, 0x4242), transport, client),
    )
    .await
    .expect("answered in time");
    Message::from_vec(messages.first().expect("a response")).expect("decodes")
}

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.data.to_string())
        .collect()
}

#[tokio::test]
async fn forwards_stub_domains_and_refuses_what_nobody_owns() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(
                "example.org",
                &[upstream.addr],
                ForwardPolicy::Random,
            )],
            None,
        ),
        upstream.addr,
    );
    let answer = ask(&state, "WWW.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(
        answer.metadata.recursion_available,
        "RA on forwarded answers"
    );
    assert!(!answer.metadata.authoritative, "AA is not passed through");
    assert_eq!(answer.metadata.id, 0x4242);
    assert_eq!(addresses(&answer), ["192.0.2.1"]);
    assert_eq!(
        answer.answers[0].name.to_ascii(),
        "WWW.example.org.",
        "the client's spelling"
    );

    let alias = ask(&state, "alias.example.org.", RecordType::A, Transport::Tcp).await;
    assert_eq!(alias.answers.len(), 2, "CNAME and its target: {alias}");

    let missing = ask(&state, "nope.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities.len(), 1, "the upstream's SOA is kept");

    let other = ask(&state, "example.net.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        other.metadata.response_code,
        ResponseCode::Refused,
        "no `.` forwarder"
    );

    let axfr = ask(&state, "example.org.", RecordType::AXFR, Transport::Tcp).await;
    assert_eq!(
        axfr.metadata.response_code,
        ResponseCode::Refused,
        "never forwarded"
    );
    upstream.stop().await;
}

#[tokio::test(start_paused = true)]
async fn answers_are_cached_with_ttls_counting_down() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            Some(cache(0)),
        ),
        upstream.addr,
    );
    let first = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(first.answers[0].ttl, 60);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(addresses(&second), ["192.0.2.1"]);
    assert!(
        second.answers[0].ttl < 60,
        "TTL counts down: {}",
        second.answers[0].ttl
    );
    let denial = ask(&state, "nope.example.org.", RecordType::A, Transport::Udp).await;
    let denial_again = ask(&state, "nope.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(denial.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(denial_again.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(upstream.requests("udp"), 2.0, "one upstream query per name");
    let text = state.metrics().encode();
    assert_eq!(
        metric(&text, "coredns_cache_hits_total", "type=\"success\""),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "coredns_cache_hits_total", "type=\"denial\""),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "coredns_dns_responses_total", "plugin=\"cache\""),
        2.0
    );
    assert_eq!(
        metric(&text, "coredns_dns_responses_total", "plugin=\"forward\""),
        2.0
    );
    upstream.stop().await;
}

#[tokio::test]
async fn identical_queries_in_flight_go_upstream_once() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            None,
        ),
        upstream.addr,
    );
    let asks = (0..50).map(|_| ask(&state, "www.example.org.", RecordType::A, Transport::Udp));
    let answers = futures::future::join_all(asks).await;
    assert!(answers.iter().all(|a| addresses(a) == ["192.0.2.1"]));
    assert_eq!(upstream.requests("udp"), 1.0);
    let text = state.metrics().encode();
    assert_eq!(
        metric(&text, "nameplane_forward_coalesced_total", ""),
        49.0,
        "{text}"
    );
    upstream.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_upstream_fails_over_and_recovers() {
    let dead = closed_port().await;
    let good = Server::start(vec![example_org("192.0.2.2", 60)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[dead, good.addr], ForwardPolicy::Sequential)],
            None,
        ),
        good.addr,
    );
    // Connection refused on loopback: the failover costs no timeout.
    let started = Instant::now();
    for _ in 0..3 {
        let answer = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
        assert_eq!(addresses(&answer), ["192.0.2.2"]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = state.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "nameplane_forward_failures_total",
            &format!("to=\"{dead}\"")
        ),
        2.0,
        "marked down after two failures, then skipped: {text}"
    );

    // The first upstream comes back: the probes see it, sequential goes back to it.
    let revived = Server::start_on(dead, vec![example_org("192.0.2.1", 60)]).await;
    let recovered = async {
        loop {
            let answer = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
            if addresses(&answer) == ["192.0.2.1"] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    timeout(WAIT, recovered)
        .await
        .expect("the upstream is used again after it recovers");
    assert!(revived.requests("udp") >= 2.0, "probe and query");
    revived.stop().await;
    good.stop().await;
}

#[tokio::test(start_paused = true)]
async fn silent_upstreams_give_servfail_after_one_attempt() {
    // Bound but never answering: every attempt times out.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let silent_addr = silent.local_addr().expect("addr");
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[silent_addr], ForwardPolicy::Random)],
            None,
        ),
        silent_addr,
    );
    let started = Instant::now();
    let answer = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    let took = started.elapsed();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "one attempt, then SERVFAIL: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_outlives_its_upstream_for_the_stale_window() {
    // Serve-stale: an answer cached from a live upstream outlives the upstream.
    let upstream = Server::start(vec![example_org("192.0.2.1", 1)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            Some(cache(3)),
        ),
        upstream.addr,
    );
    let fresh = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(fresh.answers[0].ttl, 1);
    upstream.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&stale), ["192.0.2.1"]);
    assert_eq!(
        stale.answers[0].ttl, 30,
        "stale answers carry TTL 30 (RFC 8767)"
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let gone = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        gone.metadata.response_code,
        ResponseCode::ServFail,
        "past the stale window"
    );
    let text = state.metrics().encode();
    assert!(
        metric(&text, "coredns_cache_served_stale_total", "") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn truncated_udp_replies_are_retried_over_tcp_and_force_tcp_uses_tcp_only() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            Some(cache(0)),
        ),
        upstream.addr,
    );
    let tcp = ask(&state, "big.example.org.", RecordType::TXT, Transport::Tcp).await;
    assert_eq!(tcp.answers.len(), 40, "the whole set over TCP");
    let udp = ask(&state, "big.example.org.", RecordType::TXT, Transport::Udp).await;
    assert!(
        udp.metadata.truncation,
        "too big for the client's UDP payload"
    );
    // The client's TCP retry comes from the cache.
    let again = ask(&state, "big.example.org.", RecordType::TXT, Transport::Tcp).await;
    assert_eq!(again.answers.len(), 40);
    assert_eq!(upstream.requests("tcp"), 1.0);

    let mut tcp_only = forward(".", &[upstream.addr], ForwardPolicy::Random);
    tcp_only.force_tcp = true;
    let state = state_with(config(vec![], vec![tcp_only], None), upstream.addr);
    let udp_before = upstream.requests("udp");
    ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(upstream.requests("udp"), udp_before);
    assert_eq!(upstream.requests("tcp"), 2.0);

    let mut udp_first = forward(".", &[upstream.addr], ForwardPolicy::Random);
    udp_first.prefer_udp = true;
    let state = state_with(config(vec![], vec![udp_first], None), upstream.addr);
    ask(&state, "www.example.org.", RecordType::A, Transport::Tcp).await;
    assert_eq!(
        upstream.requests("udp"),
        udp_before + 1.0,
        "preferUdp for a TCP client"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_and_the_in_flight_limit_refuses_above_it() {
    let one = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let two = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(
                ".",
                &[one.addr, two.addr],
                ForwardPolicy::RoundRobin,
            )],
            None,
        ),
        one.addr,
    );
    for i in 0..10 {
        ask(
            &state,
            &format!("n{i}.example.org."),
            RecordType::A,
            Transport::Udp,
        )
        .await;
    }
    assert_eq!((one.requests("udp"), two.requests("udp")), (5.0, 5.0));
    one.stop().await;
    two.stop().await;

    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let mut limited = forward(
        ".",
        &[silent.local_addr().expect("addr")],
        ForwardPolicy::Random,
    );
    limited.max_concurrent = Some(2);
    let state = state_with(
        config(vec![], vec![limited], None),
        "127.0.0.1:53".parse().expect("addr"),
    );
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..5 {
        let mut out = Vec::new();
        match state.handle(
            &query(&format!("n{i}.example.org."), RecordType::A, 1),
            Transport::Udp,
            client,
            &mut out,
        ) {
            Reply::Deferred(later) => held.push(later),
            Reply::Now(true) => {
                let message = Message::from_vec(&out).expect("decodes");
                assert_eq!(message.metadata.response_code, ResponseCode::Refused);
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((held.len(), refused), (2, 3));
    let text = state.metrics().encode();
    assert_eq!(
        metric(&text, "coredns_forward_max_concurrent_rejects_total", ""),
        3.0
    );
    drop(held);
    assert!(
        matches!(
            state.handle(
                &query("n9.example.org.", RecordType::A, 1),
                Transport::Udp,
                client,
                &mut Vec::new()
            ),
            Reply::Deferred(_)
        ),
        "slots come back when queries finish"
    );
}

/// Sits where the forwarder thinks its upstream is: for each query, first sends forged
/// replies (wrong id, wrong question, garbage, and a right-looking reply from another
/// port), all claiming 203.0.113.66, then relays the query to the real upstream and its
/// real reply back.
async fn forging_relay(front: UdpSocket, upstream: SocketAddr) {
    let mut buf = vec![0; 65535];
    let side = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let relay = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    loop {
        let Ok((len, from)) = front.recv_from(&mut buf).await else {
            return;
        };
        let query_bytes = buf[..len].to_vec();
        let query = Message::from_vec(&query_bytes).expect("the forwarder's query decodes");
        let poisoned = |id: u16, question: &Query| {
            let mut reply = Message::new(id, MessageType::Response, OpCode::Query);
            reply.add_query(question.clone());
            reply.add_answer(Record::from_rdata(
                question.name().clone(),
                86_400,
                RData::A(A([203, 0, 113, 66].into())),
            ));
            reply.to_vec().expect("encodes")
        };
        let question = query.queries[0].clone();
        let id = query.metadata.id;
        let wrong_question = Query::query(
            Name::from_ascii("bank.example.").expect("name"),
            RecordType::A,
        );
        let _ = front
            .send_to(&poisoned(id.wrapping_add(1), &question), from)
            .await;
        let _ = front.send_to(&poisoned(id, &wrong_question), from).await;
        let _ = front.send_to(&[0xde, 0xad], from).await;
        let _ = side.send_to(&poisoned(id, &question), from).await;
        relay.send_to(&query_bytes, upstream).await.expect("relay");
        let (len, _) = relay.recv_from(&mut buf).await.expect("real reply");
        let _ = front.send_to(&buf[..len], from).await;
    }
}

#[tokio::test]
async fn forged_replies_are_ignored_and_the_real_one_is_awaited() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let front = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let front_addr = front.local_addr().expect("addr");
    let relay = tokio::spawn(forging_relay(front, upstream.addr));
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[front_addr], ForwardPolicy::Random)],
            None,
        ),
        front_addr,
    );
    for i in 0..5 {
        let answer = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
        assert_eq!(addresses(&answer), ["192.0.2.1"], "attempt {i}: {answer}");
        let missing = ask(
            &state,
            &format!("n{i}.example.org."),
            RecordType::A,
            Transport::Udp,
        )
        .await;
        assert_eq!(
            missing.metadata.response_code,
            ResponseCode::NXDomain,
            "{missing}"
        );
        assert!(missing.answers.is_empty(), "{missing}");
    }
    let text = state.metrics().encode();
    let rejected = |reason: &str| {
        metric(
            &text,
            "nameplane_forward_rejected_replies_total",
            &format!("reason=\"{reason}\""),
        )
    };
    assert_eq!(rejected("id"), 10.0, "{text}");
    assert_eq!(rejected("question"), 10.0, "{text}");
    assert_eq!(rejected("malformed"), 10.0, "{text}");
    // The reply from the other port never reached the forwarder: its socket is connected.
    relay.abort();
    upstream.stop().await;
}

#[tokio::test]
async fn chains_leaving_a_stub_domain_are_followed_through_the_pipeline() {
    let corp = Server::start(vec![ZoneConfig {
        name: "corp.example".into(),
        source: "upstream/corp".into(),
        ttl_seconds: 30,
        records: vec![
            record(
                "app.corp.example",
                RecordKind::CNAME,
                120,
                &["www.example.org."],
            ),
            record(
                "legacy.corp.example",
                RecordKind::CNAME,
                120,
                &["db.internal.test."],
            ),
            record(
                "gone.corp.example",
                RecordKind::CNAME,
                120,
                &["nope.example.org."],
            ),
        ],
        allow_transfer: vec![],
    }])
    .await;
    let public = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let internal = ZoneConfig {
        name: "internal.test".into(),
        source: "team/internal".into(),
        ttl_seconds: 30,
        records: vec![record("db.internal.test", RecordKind::A, 45, &["10.0.0.5"])],
        allow_transfer: vec![],
    };
    let state = state_with(
        config(
            vec![internal],
            vec![
                forward("corp.example", &[corp.addr], ForwardPolicy::Random),
                forward(".", &[public.addr], ForwardPolicy::Random),
            ],
            Some(cache(0)),
        ),
        public.addr,
    );
    let app = ask(&state, "app.corp.example.", RecordType::A, Transport::Udp).await;
    assert_eq!(app.metadata.response_code, ResponseCode::NoError);
    assert_eq!(app.answers.len(), 2, "{app}");
    assert_eq!(
        addresses(&app),
        ["192.0.2.1"],
        "the target, from the `.` upstreams"
    );

    let legacy = ask(
        &state,
        "legacy.corp.example.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(
        addresses(&legacy),
        ["10.0.0.5"],
        "the target, from a local zone"
    );

    let gone = ask(&state, "gone.corp.example.", RecordType::A, Transport::Udp).await;
    assert_eq!(
        gone.metadata.response_code,
        ResponseCode::NXDomain,
        "RFC 6604: the chain's end"
    );
    assert_eq!(gone.answers.len(), 1);

    // The whole chain is cached under the question: the next answer needs no upstream.
    let before = (corp.requests("udp"), public.requests("udp"));
    let again = ask(&state, "app.corp.example.", RecordType::A, Transport::Udp).await;
    assert_eq!(addresses(&again), ["192.0.2.1"]);
    assert_eq!((corp.requests("udp"), public.requests("udp")), before);
    corp.stop().await;
    public.stop().await;
}

#[tokio::test(start_paused = true)]
async fn local_answers_do_not_wait_behind_a_slow_upstream() {
    // The server under test listens on a real UDP socket; its `.` upstream never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 1).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let local = ZoneConfig {
        name: "internal.test".into(),
        source: "team/internal".into(),
        ttl_seconds: 30,
        records: vec![record("db.internal.test", RecordKind::A, 45, &["10.0.0.5"])],
        allow_transfer: vec![],
    };
    let state = state_with(
        config(
            vec![local],
            vec![forward(
                ".",
                &[silent.local_addr().expect("addr")],
                ForwardPolicy::Random,
            )],
            None,
        ),
        addr,
    );
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));

    // One socket (one receive loop): 20 forwarded queries, then a local one.
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    for i in 0..20 {
        client
            .send_to(
                &query(&format!("n{i}.example.org."), RecordType::A, i),
                addr,
            )
            .await
            .expect("send");
    }
    let sent = Instant::now();
    client
        .send_to(&query("db.internal.test.", RecordType::A, 999), addr)
        .await
        .expect("send");
    let mut buf = vec![0; 4096];
    let local_answer = loop {
        let (len, _) = timeout(WAIT, client.recv_from(&mut buf))
            .await
            .expect("an answer")
            .expect("recv");
        let message = Message::from_vec(&buf[..len]).expect("decodes");
        if message.metadata.id == 999 {
            break message;
        }
    };
    let took = sent.elapsed();
    assert_eq!(addresses(&local_answer), ["10.0.0.5"]);
    assert!(
        took < Duration::from_millis(200),
        "the zone answer waited {took:?}"
    );
    // The forwarded ones come back as SERVFAIL once their attempt times out.
    let mut servfails = 0;
    while servfails < 20 {
        let (len, _) = timeout(WAIT, client.recv_from(&mut buf))
            .await
            .expect("the forwarded answers")
            .expect("recv");
        let message = Message::from_vec(&buf[..len]).expect("decodes");
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        servfails += 1;
    }
    trigger.fire();
    timeout(WAIT, task).await.expect("stops").expect("task");
}

#[tokio::test(start_paused = true)]
async fn popular_answers_are_refreshed_before_they_expire() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 2)]).await;
    let state = state_with(
        config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            Some(CacheConfig {
                prefetch: Some(nameplane_config::forward::PrefetchConfig {
                    amount: 2,
                    duration_seconds: 60,
                    percentage: 60,
                }),
                ..cache(0)
            }),
        ),
        upstream.addr,
    );
    let ttl = |m: &Message| m.answers.first().map(|r| r.ttl);
    // A miss, then a hit: asked once upstream.
    ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(upstream.requests("udp"), 1.0);
    // Half the TTL later (under 60 % left) and asked twice: popular. The client gets the
    // cached answer at once; the refresh goes upstream behind it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answered = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(ttl(&answered), Some(1), "from the cache, counting down");
    timeout(WAIT, async {
        while upstream.requests("udp") < 2.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the prefetch reaches the upstream");
    // The entry was replaced by the fresh answer (full TTL again) before it expired.
    timeout(WAIT, async {
        loop {
            let m = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
            if ttl(&m) == Some(2) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the refreshed entry is served");
    assert_eq!(upstream.requests("udp"), 2.0, "one prefetch, no miss");
    let text = state.metrics().encode();
    assert_eq!(
        metric(&text, "coredns_cache_prefetch_total", ""),
        1.0,
        "{text}"
    );
    upstream.stop().await;
}

#[tokio::test]
async fn the_process_wide_in_flight_limit_refuses_above_it_across_forwarders() {
    let silent_one = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let silent_two = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    let mut org = forward(
        "example.org",
        &[silent_one.local_addr().expect("addr")],
        ForwardPolicy::Random,
    );
    org.max_concurrent = Some(2);
    let mut net = forward(
        "example.net",
        &[silent_two.local_addr().expect("addr")],
        ForwardPolicy::Random,
    );
    net.max_concurrent = Some(2);
    let settings = Settings {
        forward_limit: nameplane_dns::settings::GlobalLimit::new(3),
        ..Settings::default()
    };
    let state = Arc::new(State::new(
        Metrics::new("127.0.0.1:53".parse().expect("addr")),
        settings,
    ));
    state.set_pipeline(
        Pipeline::build(config(vec![], vec![org, net], None), "test".into()).expect("builds"),
    );
    let mut cluster = Cluster::new(1);
    cluster.set_synced(true);
    state.publish_cluster(Arc::new(cluster));
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let mut held = Vec::new();
    let mut refused = 0;
    // Each forwarder alone would take 2: together 4, but the process takes 3.
    for name in [
        "a.example.org.",
        "a.example.net.",
        "b.example.org.",
        "b.example.net.",
    ] {
        let mut out = Vec::new();
        match state.handle(
            &query(name, RecordType::A, 1),
            Transport::Udp,
            client,
            &mut out,
        ) {
            Reply::Deferred(later) => held.push(later),
            Reply::Now(true) => {
                let message = Message::from_vec(&out).expect("decodes");
                assert_eq!(message.metadata.response_code, ResponseCode::Refused);
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((held.len(), refused), (3, 1));
    assert_eq!(state.settings().forward_limit.in_flight(), 3);
    let text = state.metrics().encode();
    assert_eq!(
        metric(&text, "nameplane_forward_global_limit_rejects_total", ""),
        1.0
    );
    assert_eq!(
        metric(&text, "coredns_forward_max_concurrent_rejects_total", ""),
        0.0
    );
    drop(held);
    assert_eq!(state.settings().forward_limit.in_flight(), 0);
    assert!(
        matches!(
            state.handle(
                &query("c.example.net.", RecordType::A, 1),
                Transport::Udp,
                client,
                &mut Vec::new()
            ),
            Reply::Deferred(_)
        ),
        "slots come back when queries finish"
    );
}

/// Reads one length-prefixed DNS message from `stream`.
async fn read_framed(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut prefix = [0; 2];
    stream.read_exact(&mut prefix).await.ok()?;
    let mut message = vec![0; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

/// A TCP upstream that answers every query with `answers` A records and `additionals`
/// A records in the additional section, all for the asked name: well-formed, just big.
async fn bloated_tcp_upstream(answers: usize, additionals: usize) -> SocketAddr {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while let Some(query) = read_framed(&mut stream).await {
                    let query = Message::from_vec(&query).expect("a query");
                    let mut reply =
                        Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                    reply.add_query(query.queries[0].clone());
                    let owner = query.queries[0].name().clone();
                    let record = |i: usize| {
                        Record::from_rdata(
                            owner.clone(),
                            60,
                            RData::A(A::new(198, 51, (i / 256) as u8, (i % 256) as u8)),
                        )
                    };
                    reply.answers = (0..answers).map(record).collect();
                    reply.additionals = (0..additionals).map(record).collect();
                    let bytes = reply.to_vec().expect("encodes");
                    let mut framed = u16::try_from(bytes.len())
                        .expect("fits")
                        .to_be_bytes()
                        .to_vec();
                    framed.extend_from_slice(&bytes);
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn tcp_only_state(upstream: SocketAddr) -> Arc<State> {
    let mut tcp_only = forward(".", &[upstream], ForwardPolicy::Random);
    tcp_only.force_tcp = true;
    state_with(config(vec![], vec![tcp_only], None), upstream)
}

#[tokio::test(start_paused = true)]
async fn upstream_replies_with_too_many_records_are_dropped() {
    let sane = bloated_tcp_upstream(512, 10).await;
    let state = tcp_only_state(sane);
    let reply = ask(&state, "many.example.org.", RecordType::A, Transport::Tcp).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 512, "at the cap is accepted");

    for (answers, additionals) in [(600, 0), (1, 100)] {
        let bloated = bloated_tcp_upstream(answers, additionals).await;
        let state = tcp_only_state(bloated);
        let reply = ask(&state, "many.example.org.", RecordType::A, Transport::Tcp).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::ServFail,
            "{answers} answers, {additionals} additionals"
        );
        let text = state.metrics().encode();
        assert_eq!(
            metric(
                &text,
                "nameplane_forward_rejected_replies_total",
                "reason=\"too_many_records\""
            ),
            1.0,
            "{text}"
        );
    }
}

/// Real time: the endless upstream keeps the runtime busy, so a paused clock would never
/// reach the attempt deadline (a broken byte cap would hang the test, not fail it).
#[tokio::test]
async fn an_endless_tcp_upstream_is_cut_off_at_the_byte_cap() {
    use tokio::io::AsyncWriteExt as _;
    // Endless: answers every query with full-size messages that are never the answer
    // (wrong id), as fast as the socket takes them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let endless = listener.local_addr().expect("addr");
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sent = Arc::clone(&sent);
                tokio::spawn(async move {
                    let Some(query) = read_framed(&mut stream).await else {
                        return;
                    };
                    let mut junk = vec![0u8; 2 + usize::from(u16::MAX)];
                    junk[..2].copy_from_slice(&u16::MAX.to_be_bytes());
                    // Never the query's id; QR set.
                    junk[2] = !query[0];
                    junk[4] = 0x80;
                    while stream.write_all(&junk).await.is_ok() {
                        sent.fetch_add(junk.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        }
    });
    let state = tcp_only_state(endless);
    let started = Instant::now();
    let reply = ask(
        &state,
        "endless.example.org.",
        RecordType::A,
        Transport::Tcp,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let text = state.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "nameplane_forward_failures_total",
            "reason=\"too_much_data\""
        ),
        1.0,
        "{text}"
    );
    assert!(
        took < Duration::from_millis(500),
        "cut off at the byte cap, not at the 1 s attempt deadline: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trickling_tcp_upstream_is_cut_off_at_the_attempt_deadline() {
    use tokio::io::AsyncWriteExt as _;
    // Trickling: one byte of a length prefix every 300 ms.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let trickle = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_framed(&mut stream).await.is_none() {
                    return;
                }
                for byte in [0u8, 40].into_iter().chain(std::iter::repeat(0)) {
                    if stream.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
        }
    });
    let state = tcp_only_state(trickle);
    let started = Instant::now();
    let reply = ask(
        &state,
        "trickle.example.org.",
        RecordType::A,
        Transport::Tcp,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took < Duration::from_millis(1500),
        "cut off at the attempt deadline: {took:?}"
    );
    let text = state.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "nameplane_forward_failures_total",
            "reason=\"timeout\""
        ),
        1.0,
        "{text}"
    );
}

/// Relays TCP connections to `upstream`, counting the connections it accepted.
async fn counting_tcp_relay(
    upstream: SocketAddr,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn({
        let accepted = Arc::clone(&accepted);
        async move {
            while let Ok((mut front, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Ok(mut back) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
                    }
                });
            }
        }
    });
    (addr, accepted)
}

#[tokio::test(start_paused = true)]
async fn tcp_connections_to_an_upstream_are_reused() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let (relay, accepted) = counting_tcp_relay(upstream.addr).await;
    let state = tcp_only_state(relay);
    for i in 0..20 {
        let reply = ask(
            &state,
            &format!("n{i}.example.org."),
            RecordType::A,
            Transport::Tcp,
        )
        .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "20 queries one after the other over one connection"
    );
    let text = state.metrics().encode();
    assert_eq!(
        metric(
            &text,
            "nameplane_forward_tcp_connections_total",
            "connection=\"reused\""
        ),
        19.0,
        "{text}"
    );
    // The upstream closes its side (its idle timeout, a restart): the next query notices
    // on the kept connection and asks again on a new one.
    let addr = upstream.addr;
    upstream.stop().await;
    let upstream = Server::start_on(addr, vec![example_org("192.0.2.1", 60)]).await;
    // Give the relay a moment to pass the close on.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = ask(&state, "www.example.org.", RecordType::A, Transport::Tcp).await;
    assert_eq!(addresses(&reply), ["192.0.2.1"]);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 2);
    let text = state.metrics().encode();
    assert_eq!(
        metric(&text, "nameplane_forward_failures_total", ""),
        0.0,
        "a closed kept connection is no failure: {text}"
    );
    upstream.stop().await;
}

/// Descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Sockets in TIME_WAIT to or from `port` on 127.0.0.1 (from /proc/net/tcp).
fn time_wait(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(3) == Some(&"06")
                && (fields.get(1).is_some_and(|f| f.ends_with(&hex))
                    || fields.get(2).is_some_and(|f| f.ends_with(&hex)))
        })
        .count()
}

/// Not a check: prints descriptors and connections under a forwarded TCP load
/// (`cargo test -p nameplane-dns --test forward -- --ignored --nocapture measure`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_fds_under_a_forwarded_tcp_load() {
    const QUERIES: usize = 4000;
    for concurrency in [16, 50] {
        let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
        let state = tcp_only_state(upstream.addr);
        let before = open_fds();
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sampler = tokio::spawn({
            let peak = Arc::clone(&peak);
            async move {
                loop {
                    peak.fetch_max(open_fds(), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..concurrency {
            let state = Arc::clone(&state);
            workers.push(tokio::spawn(async move {
                for i in (w..QUERIES).step_by(concurrency) {
                    ask(
                        &state,
                        &format!("n{i}.example.org."),
                        RecordType::A,
                        Transport::Tcp,
                    )
                    .await;
                }
            }));
        }
        for worker in workers {
            worker.await.expect("worker");
        }
        let took = started.elapsed();
        sampler.abort();
        let text = state.metrics().encode();
        println!(
            "concurrency {concurrency}: {QUERIES} TCP-forwarded queries in {took:?}; fds before {before}, peak {}; upstream connections new {} reused {}; TIME_WAIT on the upstream port {}",
            peak.load(std::sync::atomic::Ordering::Relaxed),
            metric(
                &text,
                "nameplane_forward_tcp_connections_total",
                "connection=\"new\""
            ),
            metric(
                &text,
                "nameplane_forward_tcp_connections_total",
                "connection=\"reused\""
            ),
            time_wait(upstream.addr.port()),
        );
        upstream.stop().await;
    }
}

/// A listed cluster with ExternalName Services `ext` (to `www.example.org`), `gone` (to a
/// name the upstream does not have) and `shop` (to `alias.example.org`, itself a CNAME)
/// in namespace `default`.
fn cluster_with_external_names() -> Cluster {
    use nameplane_dns::cluster::objects::{ServiceEntry, ServiceKind, external_name_wire};
    let mut cluster = Cluster::new(1);
    for (name, target) in [
        ("ext", "www.example.org"),
        ("gone", "nope.example.org"),
        ("shop", "alias.example.org"),
    ] {
        cluster.services.upsert(
            "default",
            name,
            ServiceEntry {
                kind: ServiceKind::ExternalName(external_name_wire(target).expect("name")),
                ports: Box::new([]),
                has_selector: false,
            },
        );
    }
    cluster.namespaces.add("default");
    cluster.set_synced(true);
    cluster
}

/// `spec.kubernetes.resolveExternalNames`: an ExternalName Service whose target is outside
/// the cluster gets the CNAME and the target's addresses (through the `.` forwarder and the
/// cache); without it, the CNAME alone (CoreDNS 1.14).
#[tokio::test(start_paused = true)]
async fn external_names_are_resolved_through_the_forwarders_when_asked() {
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let build = |resolve: bool| {
        let mut raw = config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            Some(cache(0)),
        )
        .raw()
        .clone();
        raw.kubernetes.resolve_external_names = resolve;
        let state = Arc::new(State::new(Metrics::new(upstream.addr), Settings::default()));
        state.set_pipeline(
            Pipeline::build(raw.validate().expect("valid"), "test".into()).expect("builds"),
        );
        state.publish_cluster(Arc::new(cluster_with_external_names()));
        state
    };
    let lines = |m: &Message| -> Vec<String> {
        m.answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    };

    let plain = build(false);
    let cname_only = ask(
        &plain,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(cname_only.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lines(&cname_only),
        ["ext.default.svc.cluster.local. CNAME www.example.org."]
    );

    let resolving = build(true);
    // (A chased name goes upstream over TCP, as every chase does.)
    let asked = || upstream.requests("udp") + upstream.requests("tcp");
    let before = asked();
    let full = ask(
        &resolving,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(full.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lines(&full),
        [
            "ext.default.svc.cluster.local. CNAME www.example.org.",
            "www.example.org. A 192.0.2.1"
        ]
    );
    // The upstream counts a query after its reply went out: give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(asked(), before + 1.0, "asked upstream once");
    // The target's answer went through the cache: the next client costs no upstream query.
    let again = ask(
        &resolving,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        Transport::Tcp,
    )
    .await;
    assert_eq!(lines(&again), lines(&full));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(asked(), before + 1.0);

    // A chain outside the cluster is followed; a target that does not exist is NXDOMAIN
    // with the CNAME (RFC 6604); the CNAME query itself stays the CNAME alone.
    let shop = ask(
        &resolving,
        "shop.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(
        lines(&shop),
        [
            "shop.default.svc.cluster.local. CNAME alias.example.org.",
            "alias.example.org. CNAME www.example.org.",
            "www.example.org. A 192.0.2.1"
        ]
    );
    let gone = ask(
        &resolving,
        "gone.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(gone.answers.len(), 1);
    let cname = ask(
        &resolving,
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
        Transport::Udp,
    )
    .await;
    assert_eq!(
        lines(&cname),
        ["ext.default.svc.cluster.local. CNAME www.example.org."]
    );
    upstream.stop().await;
}

/// `spec.kubernetes.reverseFallthrough`: PTR of an address outside the cluster goes to the
/// `.` forwarder; without it, NXDOMAIN from the cluster stage, and the upstream is not asked.
#[tokio::test]
async fn reverse_lookups_of_other_addresses_fall_through_to_the_upstreams_when_asked() {
    let reverse = ZoneConfig {
        name: "2.0.192.in-addr.arpa".into(),
        source: "upstream/reverse".into(),
        ttl_seconds: 30,
        records: vec![record(
            "7.2.0.192.in-addr.arpa",
            RecordKind::PTR,
            60,
            &["host.example.org."],
        )],
        allow_transfer: vec![],
    };
    let upstream = Server::start(vec![reverse]).await;
    let pipeline = |fallthrough: bool| {
        let mut raw = config(
            vec![],
            vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
            Some(cache(0)),
        )
        .raw()
        .clone();
        raw.kubernetes.reverse_fallthrough = fallthrough;
        Pipeline::build(raw.validate().expect("valid"), "test".into()).expect("builds")
    };
    let build = |fallthrough: bool| {
        let state = Arc::new(State::new(Metrics::new(upstream.addr), Settings::default()));
        state.set_pipeline(pipeline(fallthrough));
        state.publish_cluster(Arc::new(cluster_with_external_names()));
        state
    };
    let through = build(true);
    let ptr = ask(
        &through,
        "7.2.0.192.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(ptr.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ptr.answers[0].data.to_string(), "host.example.org.");

    let before = upstream.requests("udp");
    let authoritative = build(false);
    let nx = ask(
        &authoritative,
        "7.2.0.192.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].name.to_ascii(), "in-addr.arpa.");
    assert_eq!(upstream.requests("udp"), before, "not asked");

    // Turned off on a running server: the forwarded (cached) PTR is not served any more.
    through.set_pipeline(pipeline(false));
    let after = ask(
        &through,
        "7.2.0.192.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(after.metadata.response_code, ResponseCode::NXDomain);
    upstream.stop().await;
}

/// A resolved ExternalName target is an answer name like any other: a Pod whose policy
/// denies the target's domain gets what the policy gives for denied names (NXDOMAIN here),
/// not the target's addresses; a Pod allowed it gets them.
#[tokio::test]
async fn policies_check_the_resolved_external_name_target() {
    use nameplane_config::policy::{DeniedResponse, PolicyAction, PolicyConfig, PolicyRuleConfig};
    use nameplane_dns::cluster::index::PodClient;
    let upstream = Server::start(vec![example_org("192.0.2.1", 60)]).await;
    let mut raw = config(
        vec![],
        vec![forward(".", &[upstream.addr], ForwardPolicy::Random)],
        Some(cache(0)),
    )
    .raw()
    .clone();
    raw.kubernetes.resolve_external_names = true;
    let rule = |action, domains: &[&str]| PolicyRuleConfig {
        action,
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
    };
    raw.policies = vec![PolicyConfig {
        source: "default/no-example-org".into(),
        namespace: "default".into(),
        pod_selector: nameplane_config::LabelSelector {
            match_labels: [("app".to_owned(), "locked".to_owned())].into(),
            ..Default::default()
        },
        rules: vec![
            rule(PolicyAction::Deny, &["example.org"]),
            rule(PolicyAction::Allow, &["cluster.local"]),
        ],
        default_action: PolicyAction::Deny,
        denied_response: DeniedResponse::Nxdomain,
        audit: false,
    }];
    let state = Arc::new(State::new(Metrics::new(upstream.addr), Settings::default()));
    state.set_pipeline(
        Pipeline::build(raw.validate().expect("valid"), "test".into()).expect("builds"),
    );
    let mut cluster = cluster_with_external_names();
    cluster.set_pods_watched(true);
    cluster.set_synced(true);
    for (name, app, ip) in [
        ("locked", "locked", "127.0.0.21"),
        ("free", "free", "127.0.0.22"),
    ] {
        let pod = Arc::new(PodClient {
            namespace: "default".into(),
            name: name.into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            host_network: false,
            running: true,
        });
        if let Some(table) = cluster.pods.as_mut() {
            table.replace(None, Some((&[ip.parse().expect("ip")], &pod)));
        }
    }
    state.publish_cluster(Arc::new(cluster));
    let ask_from = |from: &'static str| {
        let state = Arc::clone(&state);
        async move {
            let client: SocketAddr = format!("{from}:40000").parse().expect("addr");
            let bytes = query("ext.default.svc.cluster.local.", RecordType::A, 7);
            let messages = timeout(WAIT, state.answer(&bytes, Transport::Udp, client))
                .await
                .expect("answered in time");
            Message::from_vec(messages.first().expect("a response")).expect("decodes")
        }
    };
    let free = ask_from("127.0.0.22").await;
    assert_eq!(free.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&free), ["192.0.2.1"]);
    let locked = ask_from("127.0.0.21").await;
    assert_eq!(
        locked.metadata.response_code,
        ResponseCode::NXDomain,
        "{locked}"
    );
    assert!(addresses(&locked).is_empty(), "{locked}");
    upstream.stop().await;
}

/// Forwarding-loop detection: a server whose `.` upstream is itself finds the loop at
/// config load (its probe comes back as a client query), names it on `/ready` (still 200),
/// counts it, answers forwarded names SERVFAIL at once instead of sending them round the
/// loop, and keeps answering cluster names.
#[tokio::test(start_paused = true)]
async fn a_server_forwarding_to_itself_reports_the_loop_and_keeps_serving() {
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 1).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let settings = Settings {
        probe_loops: true,
        ..Settings::default()
    };
    let state = Arc::new(State::new(Metrics::new(addr), settings));
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));
    let mut cluster = cluster_with_external_names();
    cluster.set_synced(true);
    state.publish_cluster(Arc::new(cluster));
    state.set_pipeline(
        Pipeline::build(
            config(
                vec![],
                vec![forward(".", &[addr], ForwardPolicy::Random)],
                None,
            ),
            "looping".into(),
        )
        .expect("builds"),
    );
    let ready = || {
        let response = nameplane_dns::admin::route(b"GET /ready HTTP/1.1\r\n\r\n", &state);
        String::from_utf8_lossy(&response).into_owned()
    };
    let line = format!("forwarding-loop: . {addr}\nconfig: looping\n");
    let started = Instant::now();
    while !ready().contains(&line) {
        assert!(started.elapsed() < WAIT, "no loop reported: {}", ready());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ready().starts_with("HTTP/1.1 200"),
        "still ready: {}",
        ready()
    );
    let metrics = state.metrics().encode();
    assert_eq!(
        metric(
            &metrics,
            "nameplane_forward_loops_detected_total",
            &format!("to=\"{addr}\"")
        ),
        1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "nameplane_forward_loop_probe_echoes_total", "") >= 2.0);

    let asked = Instant::now();
    let forwarded = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(forwarded.metadata.response_code, ResponseCode::ServFail);
    assert!(
        asked.elapsed() < Duration::from_millis(200),
        "{:?}",
        asked.elapsed()
    );
    let cluster_name = ask(
        &state,
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
        Transport::Udp,
    )
    .await;
    assert_eq!(cluster_name.metadata.response_code, ResponseCode::NoError);
    assert_eq!(cluster_name.answers.len(), 1);
    trigger.fire();
    timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("server task");
}

/// The loop is found even when the server refuses the client that sends its probe back
/// (unidentified clients denied: here the server itself, as in a Pod behind SNAT).
#[tokio::test(start_paused = true)]
async fn a_loop_is_found_when_unidentified_clients_are_refused() {
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 1).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let settings = Settings {
        probe_loops: true,
        ..Settings::default()
    };
    let state = Arc::new(State::new(Metrics::new(addr), settings));
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));
    let mut cluster = cluster_with_external_names();
    cluster.set_pods_watched(true);
    cluster.set_synced(true);
    state.publish_cluster(Arc::new(cluster));
    let mut raw = config(
        vec![],
        vec![forward(".", &[addr], ForwardPolicy::Random)],
        None,
    )
    .raw()
    .clone();
    raw.clients.unidentified = nameplane_config::policy::PolicyAction::Deny;
    state.set_pipeline(
        Pipeline::build(raw.validate().expect("valid"), "denying".into()).expect("builds"),
    );
    let ready = || {
        let response = nameplane_dns::admin::route(b"GET /ready HTTP/1.1\r\n\r\n", &state);
        String::from_utf8_lossy(&response).into_owned()
    };
    let started = Instant::now();
    while !ready().contains(&format!("forwarding-loop: . {addr}\n")) {
        assert!(started.elapsed() < WAIT, "no loop reported: {}", ready());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = ask(&state, "www.example.org.", RecordType::A, Transport::Udp).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    trigger.fire();
    timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("server task");
}
