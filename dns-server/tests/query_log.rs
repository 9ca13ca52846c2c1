//! The query log over real sockets (issue 13): the config's `logging` decides which answers
//! get a line, each one JSON object (as with `--log-format json`) with the client, its Pod
//! when the Pod watch knows it, the question, the rcode and, for a denial, the policy.
//! Loopback only: the clients bind other 127.0.0.0/8 addresses.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use nameplane_config::ValidatedConfig;
use nameplane_dns::cluster::index::PodClient;
use nameplane_dns::metrics::Metrics;
use nameplane_dns::pipeline::{Pipeline, Settings};
use nameplane_dns::server::{self, Listeners};
use nameplane_dns::shutdown;
use nameplane_dns::state::State;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
/// A Pod of the Pod network (`default/app`), and a client no Pod has.
const POD: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 4, 1);

/// The log lines written so far.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The query lines (JSON objects) logged since the last call.
    fn take_queries(&self) -> Vec<serde_json::Value> {
        let bytes = std::mem::take(&mut *self.0.lock().expect("lock"));
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("one JSON object a line")
            })
            .filter(|line| line["target"] == "nameplane_dns::query")
            .collect()
    }
}

fn pipeline(logging: &str) -> Pipeline {
    let config = ValidatedConfig::from_json(&format!(
        r#"{{"version":1,"server":"kube-system/dns","kubernetes":{{"clusterDomain":"cluster.local","ttlSeconds":5}},
        "policies":[{{"source":"default/only-web","namespace":"default","rules":[{{"action":"allow","domains":["web.default.svc.cluster.local"]}}],
        "defaultAction":"deny","deniedResponse":"nxdomain"}}]{logging}}}"#
    ))
    .expect("valid config");
    Pipeline::build(config, "test".into()).expect("builds")
}

async fn ask(server: SocketAddr, source: Ipv4Addr, name: &str) -> ResponseCode {
    let socket = UdpSocket::bind((source, 0)).await.expect("client socket");
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    socket
        .send_to(&message.to_vec().expect("encodes"), server)
        .await
        .expect("send");
    let mut buf = vec![0; 65535];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("an answer")
        .expect("recv");
    Message::from_vec(&buf[..len])
        .expect("decodes")
        .metadata
        .response_code
}

#[tokio::test]
async fn the_config_decides_which_answers_are_logged_as_json() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber");

    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"), 1).expect("binds");
    let addr = listeners.local_addr().expect("addr");
    let state = Arc::new(State::new(Metrics::new(addr), Settings::default()));
    state.set_pipeline(pipeline(r#","logging":{"queries":"Denied"}"#));
    let mut cluster = common::cluster();
    cluster.set_pods_watched(true);
    let pod = Arc::new(PodClient {
        namespace: "default".into(),
        name: "app".into(),
        labels: Default::default(),
        host_network: false,
        running: true,
    });
    cluster
        .pods
        .as_mut()
        .expect("watched")
        .replace(None, Some((&[IpAddr::V4(POD)], &pod)));
    cluster.set_synced(true);
    state.publish_cluster(Arc::new(cluster));
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(server::serve(listeners, Arc::clone(&state), shutdown));

    // Denied: only what a policy turned back.
    let allowed = "web.default.svc.cluster.local.";
    let denied = "wide.default.svc.cluster.local.";
    assert_eq!(ask(addr, POD, allowed).await, ResponseCode::NoError);
    assert_eq!(ask(addr, POD, denied).await, ResponseCode::NXDomain);
    assert_eq!(
        ask(addr, STRANGER, "nothing.example.").await,
        ResponseCode::Refused
    );
    let lines = captured.take_queries();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let fields = &lines[0];
    assert_eq!(fields["name"], denied);
    assert_eq!(fields["type"], "A");
    assert_eq!(fields["rcode"], "NXDOMAIN");
    assert_eq!(fields["proto"], "udp");
    assert_eq!(fields["policy"], "default/only-web");
    assert_eq!(
        fields["namespace"], "default",
        "the Pod, known from the Pod watch"
    );
    assert_eq!(fields["pod"], "app");
    assert!(
        fields["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.2.1:")),
        "{fields}"
    );
    assert!(fields["duration_us"].is_u64(), "{fields}");

    // Errors: the REFUSED of a name no stage owns too, without a Pod for a stranger.
    state.set_pipeline(pipeline(r#","logging":{"queries":"Errors"}"#));
    assert_eq!(ask(addr, POD, allowed).await, ResponseCode::NoError);
    assert_eq!(
        ask(addr, STRANGER, "nothing.example.").await,
        ResponseCode::Refused
    );
    let lines = captured.take_queries();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let fields = &lines[0];
    assert_eq!(fields["rcode"], "REFUSED");
    assert_eq!(fields["name"], "nothing.example.");
    assert!(
        fields.get("pod").is_none() && fields.get("policy").is_none(),
        "{fields}"
    );

    // All, one in two: every second answer.
    state.set_pipeline(pipeline(r#","logging":{"queries":"All","sampleOneIn":2}"#));
    for _ in 0..6 {
        assert_eq!(ask(addr, POD, allowed).await, ResponseCode::NoError);
    }
    assert_eq!(captured.take_queries().len(), 3);

    // No logging: nothing.
    state.set_pipeline(pipeline(""));
    assert_eq!(ask(addr, POD, denied).await, ResponseCode::NXDomain);
    assert!(captured.take_queries().is_empty());

    trigger.fire();
    timeout(WAIT, task).await.expect("stops").expect("task");
}
