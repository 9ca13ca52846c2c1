//! The cutover of docs/migrate-from-coredns.md, performed on the real control plane under a
//! continuous query load: the `kube-dns` Service's traffic moves from CoreDNS to nameplane
//! (and back, and over again), then CoreDNS is scaled down, and not one query fails.
//!
//! There is no kube-proxy here, so the load client does what kube-proxy does: it watches the
//! `kube-dns` Service's EndpointSlices (written by the real kube-controller-manager from the
//! Pods' labels, named container ports and status) and spreads its queries round-robin over
//! the ready endpoints (serving-but-terminating ones only when none is ready, as kube-proxy
//! falls back). The Pods are the cluster's: CoreDNS's is a Pod labelled `k8s-app: kube-dns`
//! with kubeadm's named ports; nameplane's is the one the ReplicaSet of the operator's
//! Deployment creates, which the test binds to the fake Node and marks Running and Ready, as
//! the scheduler and kubelet would. The Pods have cluster addresses (EndpointSlices refuse
//! loopback ones); [`POD_NETWORK`] says where each is reachable, as a CNI would route it:
//! CoreDNS (the kubeadm Corefile) listens on 127.0.212.1, `nameplane-dns` (the imported
//! `DNSServer`, published by the operator) on 127.0.212.2:5353, both forwarding to one Knot
//! named by one resolv.conf (127.0.213.2:53).
//!
//! Every query is counted: a timeout, a wrong rcode, a wrong answer or a moment without any
//! endpoint is a failure. The load is bounded (at most [`MAX_QUERIES`] and [`MAX_LOAD`]).
//! Printed: total and failed queries, queries per backend, and the switch and rollback times
//! (from the `kubectl patch` to the moment the client's endpoint set is the new one).
//!
//! Needs `make cluster-up`, `cargo build --bins`, `knotd` and 127.0.212.1-2:5353 free; CoreDNS
//! is built on first use (`bench/scripts/build-coredns.sh`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use nameplane_e2e::coredns::{
    CoreDns, KnotUpstream, LoopbackSite, imported_dnsserver, wait_published,
};
use nameplane_e2e::{
    FakePod, Kube, NamespaceGuard, Operator, Process, apply, free_port, http_get, kubeconfig,
    kubectl_ok, kubectl_with_stdin, poll_until, wait_for, workspace_binary,
};

/// The namespace standing in for `kube-system`.
const NS: &str = "e2e-coredns-cutover";
/// CoreDNS's Pod address.
const COREDNS_IP: &str = "10.244.212.1";
/// nameplane's Pod address (the operator's Pods listen on 5353).
const NAMEPLANE_IP: &str = "10.244.212.2";
/// The Pod network: where each Pod address is reachable on this machine. EndpointSlices
/// refuse loopback addresses, so the Pods have cluster addresses and the processes listen on
/// loopback ones; the load client translates as a CNI would route (an address not in this
/// table is a failed query).
const POD_NETWORK: &[(&str, &str)] = &[(COREDNS_IP, "127.0.212.1"), (NAMEPLANE_IP, "127.0.212.2")];

/// Where a Pod address is reachable.
fn pod_network(pod_ip: &str) -> Result<&'static str, String> {
    POD_NETWORK
        .iter()
        .find(|(pod, _)| *pod == pod_ip)
        .map(|(_, local)| *local)
        .ok_or_else(|| format!("{pod_ip} is no Pod's address"))
}
/// nameplane's container port (`operator::workload::DNS_CONTAINER_PORT`).
const NAMEPLANE_PORT: u16 = 5353;
/// The Knot upstream's address in both servers' resolv.conf (port 53).
const RESOLVER: &str = "127.0.213.2";
/// The address an external name resolves to at the upstream.
const EXTERNAL_A: &str = "192.0.2.10";

/// Upper bounds of the load.
const MAX_QUERIES: u64 = 200_000;
const MAX_LOAD: Duration = Duration::from_secs(180);
/// Pause between two queries of the load client (with the round trip: a few hundred a second).
const PACE: Duration = Duration::from_millis(2);
/// A query without an answer after this long failed (a stub resolver would retry).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an endpoint change may take to reach the client.
const SWITCH_DEADLINE: Duration = Duration::from_secs(30);

/// One backend as kube-proxy would program it: address and the Service's target ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Backend {
    ip: String,
    udp: u16,
    tcp: u16,
}

/// What the load client routes to, and every change of it (for the switch times).
#[derive(Default)]
struct Endpoints {
    current: Vec<Backend>,
    changes: Vec<(Instant, BTreeSet<String>)>,
}

/// kube-proxy's choice from the slices: the ready endpoints, else the serving terminating
/// ones; the `dns` (UDP) and `dns-tcp` (TCP) ports of each endpoint's slice.
fn backends(slices: &BTreeMap<String, EndpointSlice>) -> Vec<Backend> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices.values() {
        let port = |name: &str| {
            slice.ports.iter().flatten().find_map(|p| {
                (p.name.as_deref() == Some(name))
                    .then_some(p.port)
                    .flatten()
                    .and_then(|n| u16::try_from(n).ok())
            })
        };
        let (Some(udp), Some(tcp)) = (port("dns"), port("dns-tcp")) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            for ip in &endpoint.addresses {
                let backend = Backend {
                    ip: ip.clone(),
                    udp,
                    tcp,
                };
                if conditions.ready.unwrap_or(true) {
                    ready.push(backend);
                } else if conditions.serving == Some(true) && conditions.terminating == Some(true) {
                    terminating.push(backend);
                }
            }
        }
    }
    let mut chosen = if ready.is_empty() { terminating } else { ready };
    chosen.sort();
    chosen.dedup();
    chosen
}

/// Watches `kube-dns`'s EndpointSlices (as kube-proxy does) until `stop`.
fn watch_endpoints(
    endpoints: Arc<Mutex<Endpoints>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let kubeconfig = kubeconfig();
    std::thread::spawn(move || {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        use kube::runtime::watcher::{self, Event};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .expect("kubeconfig loads");
            let client = kube::Client::try_from(config).expect("client");
            let api = kube::Api::<EndpointSlice>::namespaced(client, NS);
            let config = watcher::Config::default().labels("kubernetes.io/service-name=kube-dns");
            let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
            let mut slices = BTreeMap::new();
            let mut listing = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(next) =
                    tokio::time::timeout(Duration::from_millis(100), stream.next()).await
                else {
                    continue;
                };
                let Some(Ok(event)) = next else {
                    continue;
                };
                let key = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
                match event {
                    Event::Apply(s) => {
                        slices.insert(key(&s), s);
                    }
                    Event::Delete(s) => {
                        slices.remove(&key(&s));
                    }
                    Event::Init => listing.clear(),
                    Event::InitApply(s) => {
                        listing.insert(key(&s), s);
                    }
                    Event::InitDone => slices = std::mem::take(&mut listing),
                }
                let now = backends(&slices);
                let mut shared = endpoints.lock().expect("endpoints");
                if now != shared.current {
                    let ips = now.iter().map(|b| b.ip.clone()).collect();
                    shared.changes.push((Instant::now(), ips));
                    shared.current = now;
                }
            }
        });
    })
}

/// One question of the load and what it must get.
struct Question {
    name: String,
    tcp: bool,
    rcode: ResponseCode,
    addresses: Vec<String>,
}

/// Asks `backend` one question; `Err` says why it failed.
fn ask(backend: &Backend, q: &Question) -> Result<(), String> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(&q.name).map_err(|e| e.to_string())?,
        RecordType::A,
    ));
    let bytes = message.to_vec().map_err(|e| e.to_string())?;
    let local = pod_network(&backend.ip)?;
    let reply = if q.tcp {
        let mut stream = TcpStream::connect_timeout(
            &format!("{local}:{}", backend.tcp)
                .parse()
                .map_err(|e: std::net::AddrParseError| e.to_string())?,
            QUERY_TIMEOUT,
        )
        .map_err(|e| format!("tcp connect: {e}"))?;
        stream.set_read_timeout(Some(QUERY_TIMEOUT)).ok();
        let len = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream
            .write_all(&framed)
            .map_err(|e| format!("tcp write: {e}"))?;
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .map_err(|e| format!("tcp read: {e}"))?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream
            .read_exact(&mut reply)
            .map_err(|e| format!("tcp read: {e}"))?;
        reply
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(QUERY_TIMEOUT)).ok();
        socket
            .send_to(&bytes, (local, backend.udp))
            .map_err(|e| format!("udp send: {e}"))?;
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            let (len, _) = socket
                .recv_from(&mut buf)
                .map_err(|e| format!("udp: no answer ({e})"))?;
            let reply = buf[..len].to_vec();
            match Message::from_vec(&reply) {
                Ok(m) if m.metadata.id == message.metadata.id => break reply,
                _ if Instant::now() < deadline => continue,
                _ => return Err("udp: no matching answer".into()),
            }
        }
    };
    let reply = Message::from_vec(&reply).map_err(|e| format!("unparsable reply: {e}"))?;
    let rcode = reply.metadata.response_code;
    let mut addresses: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    addresses.sort();
    if rcode != q.rcode || addresses != q.addresses {
        return Err(format!(
            "{} got {rcode:?} {addresses:?}, expected {:?} {:?}",
            q.name, q.rcode, q.addresses
        ));
    }
    Ok(())
}

/// What the load client counted.
#[derive(Default)]
struct Tally {
    total: u64,
    failed: u64,
    failures: Vec<String>,
    by_backend: HashMap<String, u64>,
}

/// Sends `questions` round-robin over the current endpoints, paced, until `stop` or a bound.
fn load(
    endpoints: Arc<Mutex<Endpoints>>,
    questions: Vec<Question>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut i: usize = 0;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LOAD {
            let chosen = {
                let shared = endpoints.lock().expect("endpoints");
                (!shared.current.is_empty())
                    .then(|| shared.current[i % shared.current.len()].clone())
            };
            let question = &questions[i % questions.len()];
            let result = match &chosen {
                Some(backend) => ask(backend, question),
                None => Err("no ready endpoint".into()),
            };
            let mut t = tally.lock().expect("tally");
            t.total += 1;
            if let Some(backend) = &chosen {
                *t.by_backend.entry(backend.ip.clone()).or_default() += 1;
            }
            if let Err(why) = result {
                t.failed += 1;
                if t.failures.len() < 20 {
                    t.failures.push(format!(
                        "{:?} via {:?}: {why}",
                        started.elapsed(),
                        chosen.map(|b| b.ip)
                    ));
                }
            }
            if t.total >= MAX_QUERIES {
                break;
            }
            drop(t);
            i = i.wrapping_add(1);
            std::thread::sleep(PACE);
        }
    })
}

/// Waits until the client routes to exactly `ips`; returns how long after `since` the
/// change reached it.
fn wait_routed(endpoints: &Mutex<Endpoints>, ips: &[&str], since: Instant) -> Duration {
    let want: BTreeSet<String> = ips.iter().map(|s| (*s).to_owned()).collect();
    wait_for(
        &format!("the load client to route to {want:?}"),
        SWITCH_DEADLINE,
        || {
            let shared = endpoints.lock().expect("endpoints");
            shared
                .changes
                .iter()
                .rev()
                .find(|(at, set)| *at >= since && *set == want)
                .filter(|_| {
                    let now: BTreeSet<String> =
                        shared.current.iter().map(|b| b.ip.clone()).collect();
                    now == want
                })
                .map(|(at, _)| at.duration_since(since))
        },
    )
}

/// The sets the client routed to since `since`, for the log.
fn route_history(endpoints: &Mutex<Endpoints>, since: Instant) -> Vec<String> {
    let shared = endpoints.lock().expect("endpoints");
    shared
        .changes
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(at, set)| format!("+{:?} {set:?}", at.duration_since(since)))
        .collect()
}

fn patch_kube_dns(patch: &str) {
    kubectl_ok(&[
        "patch",
        "service",
        "kube-dns",
        "-n",
        NS,
        "--type=json",
        "-p",
        patch,
    ]);
}

/// The selector change of the guide: kube-dns selects the imported DNSServer's Pods.
const TO_NAMEPLANE: &str = r#"[{"op":"replace","path":"/spec/selector","value":{"app.kubernetes.io/name":"nameplane-dns","app.kubernetes.io/instance":"cluster-dns"}}]"#;
/// The rollback: kube-dns selects CoreDNS's Pods again.
const TO_COREDNS: &str =
    r#"[{"op":"replace","path":"/spec/selector","value":{"k8s-app":"kube-dns"}}]"#;
/// The guide's first step: named target ports, which resolve per Pod (53 on CoreDNS's in a
/// real cluster, 5353 on nameplane's).
const NAMED_TARGET_PORTS: &str = r#"[{"op":"replace","path":"/spec/ports/0/targetPort","value":"dns"},{"op":"replace","path":"/spec/ports/1/targetPort","value":"dns-tcp"}]"#;

#[test]
fn kube_dns_moves_from_coredns_to_nameplane_without_a_failed_query() {
    nameplane_e2e::install_crds();
    let operator = Operator::start(
        "operator-coredns-cutover",
        &["--lease-name", "lease-coredns-cutover"],
    );
    let _namespace = NamespaceGuard::fresh(&[(NS, &[])]);
    let kube = Kube::connect();
    let knot = KnotUpstream::start(
        "knotd-coredns-cutover",
        RESOLVER,
        &[(
            "example.test",
            "$ORIGIN example.test.\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n\
             ns A 192.0.2.53\nwww A 192.0.2.10\n",
        )],
    );

    // A Service for the load to ask about.
    kube.create_pods(NS, &[FakePod::new("web-0", "web", &["10.244.90.1"], true)]);
    apply(
        NS,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n",
    );
    let web_ip = kubectl_ok(&[
        "get",
        "service",
        "web",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);

    // Before: CoreDNS behind kube-dns, as kubeadm installs it (the Service's targetPort is the
    // number CoreDNS listens on; 53 in a real cluster).
    let coredns_port = free_port();
    let mut coredns = CoreDns::start(
        "coredns-cutover",
        LoopbackSite::new(
            pod_network(COREDNS_IP).expect("mapped"),
            coredns_port,
            &knot.resolv_conf,
        ),
    );
    coredns.wait_ready(Duration::from_secs(60));
    let mut coredns_pod = FakePod::new("coredns-0", "coredns", &[COREDNS_IP], true)
        .with_port("dns", "UDP", coredns_port)
        .with_port("dns-tcp", "TCP", coredns_port);
    coredns_pod.labels = vec![("k8s-app".into(), "kube-dns".into())];
    kube.create_pods(NS, &[coredns_pod]);
    apply(
        NS,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns\n  labels: {{k8s-app: kube-dns}}\n\
             spec:\n  selector: {{k8s-app: kube-dns}}\n  ports:\n\
             \x20 - {{name: dns, port: 53, protocol: UDP, targetPort: {coredns_port}}}\n\
             \x20 - {{name: dns-tcp, port: 53, protocol: TCP, targetPort: {coredns_port}}}\n"
        ),
    );

    // Beside it: nameplane from the imported DNSServer (one replica), reading the same
    // resolv.conf as CoreDNS.
    let mut server = imported_dnsserver(NS);
    let name = server["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_owned();
    assert_eq!(name, "cluster-dns", "TO_NAMEPLANE selects this instance");
    let spec = server["spec"].as_object_mut().expect("spec");
    spec.insert("replicas".into(), serde_json::json!(1));
    apply(NS, &server.to_string());
    wait_published(NS, &name);
    // Play scheduler and kubelet for the Pod the operator's Deployment made.
    let pod = wait_for("the DNSServer's Pod", Duration::from_secs(60), || {
        let names = kubectl_ok(&[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            &format!("app.kubernetes.io/name=nameplane-dns,app.kubernetes.io/instance={name}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        names.split_whitespace().next().map(str::to_owned)
    });
    // The operator's part is done: config published, Deployment, Service and Pod made. It
    // stops before the Pod turns Ready, because an operator that checks what each ready Pod
    // serves asks <Pod IP>:<admin port>, and the Pod's address is not on this machine (only
    // the load client routes it, see POD_NETWORK).
    drop(operator);
    let binding = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Binding\",\"metadata\":{{\"name\":\"{pod}\"}},\"target\":{{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"name\":\"fake-node\"}}}}"
    );
    let out = kubectl_with_stdin(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{NS}/pods/{pod}/binding"),
            "-f",
            "-",
        ],
        Some(&binding),
    );
    assert!(
        out.status.success(),
        "binding {pod}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_port = free_port();
    let mut nameplane = Process::start(
        "dns-coredns-cutover",
        &workspace_binary("nameplane-dns"),
        &[
            "--kubeconfig".into(),
            kubeconfig().display().to_string(),
            "--config-map".into(),
            format!("{NS}/{name}-config"),
            "--listen".into(),
            format!(
                "{}:{NAMEPLANE_PORT}",
                pod_network(NAMEPLANE_IP).expect("mapped")
            ),
            "--health-listen".into(),
            format!("127.0.0.1:{admin_port}"),
            "--resolv-conf".into(),
            knot.resolv_conf.display().to_string(),
        ],
    );
    assert!(
        poll_until(Duration::from_secs(60), || {
            http_get(admin_port, "/ready").is_some_and(|(status, _)| status == 200)
        }),
        "nameplane-dns not ready: {}",
        nameplane.log()
    );
    kube.set_pod_status(NS, &pod, &[NAMEPLANE_IP], true);
    // The guide's check before the switch: nameplane's own Service has the Pod ready.
    wait_for(
        "nameplane's own Service to have its Pod as a ready endpoint",
        Duration::from_secs(60),
        || {
            kubectl_ok(&[
                "get",
                "endpointslices",
                "-n",
                NS,
                "-l",
                &format!("kubernetes.io/service-name={name}-dns"),
                "-o",
                "jsonpath={range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready}{\"\\n\"}{end}",
            ])
            .lines()
            .any(|l| l == format!("{NAMEPLANE_IP} true"))
            .then_some(())
        },
    );

    // The load, through kube-dns's endpoints.
    let questions = vec![
        Question {
            name: format!("web.{NS}.svc.cluster.local."),
            tcp: false,
            rcode: ResponseCode::NoError,
            addresses: vec![web_ip.clone()],
        },
        Question {
            name: "www.example.test.".into(),
            tcp: false,
            rcode: ResponseCode::NoError,
            addresses: vec![EXTERNAL_A.into()],
        },
        Question {
            name: format!("nosuch.{NS}.svc.cluster.local."),
            tcp: false,
            rcode: ResponseCode::NXDomain,
            addresses: vec![],
        },
        Question {
            name: format!("web.{NS}.svc.cluster.local."),
            tcp: true,
            rcode: ResponseCode::NoError,
            addresses: vec![web_ip.clone()],
        },
    ];
    let endpoints = Arc::new(Mutex::new(Endpoints::default()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = watch_endpoints(endpoints.clone(), stop.clone());
    let started = Instant::now();
    wait_routed(&endpoints, &[COREDNS_IP], started);
    let load = load(endpoints.clone(), questions, tally.clone(), stop.clone());
    let settle = || std::thread::sleep(Duration::from_secs(2));
    settle();

    // Step 1: named target ports; CoreDNS's Pod resolves them to the port it listens on, so
    // the endpoints stay the same.
    patch_kube_dns(NAMED_TARGET_PORTS);
    settle();
    assert_eq!(
        endpoints
            .lock()
            .expect("endpoints")
            .current
            .iter()
            .map(|b| (b.ip.as_str(), b.udp))
            .collect::<Vec<_>>(),
        [(COREDNS_IP, coredns_port)],
        "named target ports keep CoreDNS's endpoint"
    );

    // Step 2: the selector change.
    let at = Instant::now();
    patch_kube_dns(TO_NAMEPLANE);
    let switch = wait_routed(&endpoints, &[NAMEPLANE_IP], at);
    eprintln!(
        "switch: {switch:?}, routes: {:?}",
        route_history(&endpoints, at)
    );
    settle();

    // Rollback, and forward again.
    let at = Instant::now();
    patch_kube_dns(TO_COREDNS);
    let rollback = wait_routed(&endpoints, &[COREDNS_IP], at);
    eprintln!(
        "rollback: {rollback:?}, routes: {:?}",
        route_history(&endpoints, at)
    );
    settle();
    let at = Instant::now();
    patch_kube_dns(TO_NAMEPLANE);
    let switch_again = wait_routed(&endpoints, &[NAMEPLANE_IP], at);
    eprintln!("switch again: {switch_again:?}");
    settle();

    // Step 3: CoreDNS scaled down (its Pod deleted, the process stops after its lameduck).
    let to_coredns_before = tally.lock().expect("tally").by_backend[COREDNS_IP];
    kubectl_ok(&["delete", "pod", "coredns-0", "-n", NS, "--wait=false"]);
    coredns.process.terminate();
    assert!(
        coredns.process.wait_exit(Duration::from_secs(15)).is_some(),
        "CoreDNS exits after its 5 s lameduck"
    );
    settle();

    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    watch.join().expect("watch thread");
    let gaps = route_history(&endpoints, started)
        .into_iter()
        .filter(|change| change.ends_with("{}"))
        .collect::<Vec<_>>();
    assert!(gaps.is_empty(), "kube-dns had no endpoint at {gaps:?}");
    let t = tally.lock().expect("tally");
    eprintln!(
        "cutover under load: {} queries, {} failed, by backend {:?}; switch {switch:?}, rollback {rollback:?}, switch again {switch_again:?}, load ran {:?}",
        t.total,
        t.failed,
        t.by_backend,
        started.elapsed()
    );
    assert_eq!(
        t.failed,
        0,
        "failed queries during the cutover:\n{}",
        t.failures.join("\n")
    );
    assert_eq!(
        t.by_backend[COREDNS_IP], to_coredns_before,
        "no query reached CoreDNS after the final switch"
    );
    assert!(t.by_backend[COREDNS_IP] > 100, "CoreDNS served before");
    assert!(t.by_backend[NAMEPLANE_IP] > 100, "nameplane served after");
    drop(t);
    nameplane.assert_running();
    // Without the operator, nothing would take the DNSServer's finalizer off.
    nameplane_e2e::remove_namespace(&kube, NS, false);
}
