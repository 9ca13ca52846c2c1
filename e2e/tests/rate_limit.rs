//! Response-rate limiting against a real control plane (issue 15): the DNS server learns
//! from its Pod watch which source addresses are Pods; UDP answers to everyone else are
//! limited per prefix (dropped, or slipped: truncated), a Pod never is, TCP never is.
//!
//! Needs `make cluster-up` and `cargo build --bins` first. Loopback only: the Pod's
//! address is 127.0.60.10, the unidentified client 127.0.0.1.

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use nameplane_config::ServerConfig;
use nameplane_e2e::{
    DnsServer, FakePod, Kube, NamespaceGuard, Transport, apply, metric_sum, publish_config,
};

const POD_IP: &str = "127.0.60.10";

/// What a burst of UDP queries got back: whole answers, and truncated ones (slipped).
fn burst(port: u16, source: &str, name: &str, count: u16) -> (usize, usize) {
    let socket = UdpSocket::bind((source, 0)).expect("client socket");
    for id in 0..count {
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        socket
            .send_to(&message.to_vec().expect("encodes"), ("127.0.0.1", port))
            .expect("send");
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let (mut answered, mut slipped) = (0, 0);
    let mut buf = [0u8; 4096];
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        let response = Message::from_vec(&buf[..len]).expect("decodes");
        if response.metadata.truncation && response.answers.is_empty() {
            slipped += 1;
        } else if !response.answers.is_empty() {
            answered += 1;
        }
    }
    (answered, slipped)
}

#[test]
fn unidentified_clients_are_limited_and_pods_are_not() {
    let ns = format!("e2e-rrl-{}", std::process::id());
    let _guard = NamespaceGuard::create(&[(&ns, &[])]);
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n",
    );
    // The Pod exists before the server starts: its first Pod list (which /ready waits for)
    // already knows the address.
    Kube::connect().create_pods(&ns, &[FakePod::new("client", "client", &[POD_IP], true)]);
    let json = format!(
        r#"{{"version":1,"server":"{ns}/dns","kubernetes":{{"clusterDomain":"cluster.local","ttlSeconds":5}},"rateLimit":{{"responsesPerSecond":5,"slip":2,"windowSeconds":15}}}}"#
    );
    let config: ServerConfig = serde_json::from_str(&json).expect("config");
    publish_config(&ns, "dns", &config);
    let mut dns = DnsServer::start("rrl-dns", &format!("{ns}/dns"), &[]);
    let ready = dns.wait_ready(Duration::from_secs(60));
    assert!(
        ready.contains(&format!("config: {}", config.content_hash())),
        "{ready}"
    );
    let web = format!("web.{ns}.svc.cluster.local.");

    // 127.0.0.1 is no Pod: 5 answers, then of 15 over the rate every 2nd slipped.
    assert_eq!(
        burst(dns.port, "127.0.0.1", &web, 20),
        (5, 7),
        "unidentified"
    );
    let metrics = dns.metrics();
    assert_eq!(
        metric_sum(
            &metrics,
            r#"nameplane_rrl_responses_total{action="dropped"}"#
        ),
        8.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            r#"nameplane_rrl_responses_total{action="slipped"}"#
        ),
        7.0
    );
    // The Pod is never limited.
    assert_eq!(burst(dns.port, POD_IP, &web, 40), (40, 0), "the Pod");
    // Nor is TCP, for the spent prefix.
    for _ in 0..10 {
        let answer = dns.dig(&web, "A", Transport::Tcp);
        assert_eq!(answer.status, "NOERROR");
        assert_eq!(answer.answers.len(), 1);
        assert!(!answer.has_flag("tc"));
    }
    dns.process.assert_running();
}
