//! The Kubernetes DNS specification, end to end: real Services, Pods bound to the fake Node
//! with their status set by the test, EndpointSlices made by the real
//! kube-controller-manager, the real `nameplane-dns` binary, and `dig` over UDP and TCP.
//!
//! Every check runs over both transports. Each test has its own namespaces and its own Pod
//! addresses (10.244.<test>.x, fd00:10:244:<test>::x) and cleans up after itself.
//!
//! Needs `make cluster-up` (with the dual-stack Service range) and `cargo build --bins`;
//! `make e2e` does both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use nameplane_e2e::{
    DigResult, DnsServer, FakePod, Kube, NamespaceGuard, Process, Transport, apply,
    apply_config_map, component, dig_with, etcd_advance_and_compact, install_crds, kubeconfig,
    kubectl, kubectl_ok, raw_query, service_account_kubeconfig, wait_for, workspace_binary,
};

const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];
const ZONE: &str = "cluster.local";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A server config document (what the operator renders), with extra `kubernetes` settings.
fn config(server: &str, ttl: u32, extra: &str) -> String {
    format!(
        r#"{{"version":1,"server":"{server}","kubernetes":{{"clusterDomain":"{ZONE}","ttlSeconds":{ttl}{extra}}}}}"#
    )
}

/// The cluster IPs of a Service: (IPv4, IPv6).
fn cluster_ips(ns: &str, service: &str) -> (Option<String>, Option<String>) {
    let ips = kubectl_ok(&[
        "get",
        "service",
        service,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.clusterIPs[*]}",
    ]);
    let v4 = ips
        .split_whitespace()
        .find(|ip| ip.contains('.'))
        .map(str::to_owned);
    let v6 = ips
        .split_whitespace()
        .find(|ip| ip.contains(':'))
        .map(str::to_owned);
    (v4, v6)
}

fn fqdn(name: &str) -> String {
    format!("{name}.{ZONE}.")
}

/// NOERROR, authoritative, these answers of `rtype` (sorted) with `ttl`.
#[track_caller]
fn assert_answers(r: &DigResult, rtype: &str, want: &[&str], ttl: u32, what: &str) {
    assert_eq!(r.status, "NOERROR", "{what}\n{}", r.raw);
    assert!(r.has_flag("aa"), "{what}: AA\n{}", r.raw);
    let mut want: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
    want.sort();
    assert_eq!(r.data(rtype), want, "{what}\n{}", r.raw);
    for answer in &r.answers {
        assert_eq!(answer.1, ttl, "{what}: TTL\n{}", r.raw);
    }
}

/// A negative answer (`NOERROR` = NODATA, or `NXDOMAIN`) with the zone's SOA, whose TTL and
/// minimum are the configured TTL.
#[track_caller]
fn assert_negative(r: &DigResult, status: &str, ttl: u32, what: &str) {
    assert_eq!(r.status, status, "{what}\n{}", r.raw);
    assert!(r.has_flag("aa"), "{what}: AA\n{}", r.raw);
    assert!(r.answers.is_empty(), "{what}: no answers\n{}", r.raw);
    assert_eq!(r.authority.len(), 1, "{what}: SOA\n{}", r.raw);
    let (owner, soa_ttl, rtype, data) = &r.authority[0];
    assert_eq!(
        (owner.as_str(), rtype.as_str()),
        ("cluster.local.", "SOA"),
        "{what}"
    );
    assert_eq!(*soa_ttl, ttl.min(300), "{what}: SOA TTL");
    let fields: Vec<&str> = data.split_whitespace().collect();
    assert_eq!(
        (fields[0], fields[1], &fields[3..]),
        (
            "ns.dns.cluster.local.",
            "hostmaster.cluster.local.",
            &["7200", "1800", "86400", ttl.to_string().as_str()][..]
        ),
        "{what}: SOA fields\n{}",
        r.raw
    );
}

fn query_packet(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    message.to_vec().expect("encodes")
}

/// Waits until `check` holds for an answer over UDP (and returns how long it took).
fn time_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_record_of_the_spec_over_udp_and_tcp() {
    install_crds();
    let kube = Kube::connect();
    let ns = unique("e2e-spec");
    let _cleanup = NamespaceGuard::create(&[(&ns, &[])]);
    let ttl = 10;

    // The operator renders this DNSServer into the ConfigMap the DNS server reads.
    apply(
        &ns,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  ttlSeconds: {ttl}\n"
        ),
    );
    // Its leader-election Lease lives in nameplane-system.
    nameplane_e2e::ensure_namespace("nameplane-system", &[]);
    let mut operator = Process::start(
        "spec-operator",
        &workspace_binary("nameplane-operator"),
        &["--kubeconfig".into(), kubeconfig().display().to_string()],
    );
    // Published; the Deployment's Pods never run here (this test runs its own DNS server),
    // so Ready stays False with PodsRollingOut.
    wait_for("DNSServer published", Duration::from_secs(30), || {
        let out = kubectl(&[
            "get",
            "dnsserver",
            "dns",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "PodsRollingOut").then_some(())
    });
    let published = kubectl_ok(&[
        "get",
        "dnsserver",
        "dns",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.configHash}",
    ]);
    let mut dns = DnsServer::start("spec-dns", &format!("{ns}/dns-config"), &[]);
    let ready = dns.wait_ready(Duration::from_secs(30));
    assert!(
        ready.contains(&format!("config: {published}")),
        "/ready names the config the operator published ({published}): {ready}"
    );

    apply(
        &ns,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ipFamilyPolicy: RequireDualStack\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n  - {{name: dns, port: 53, protocol: UDP}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  clusterIP: None\n  ipFamilyPolicy: RequireDualStack\n  selector: {{app: db}}\n  ports:\n  - {{name: pg, port: 5432, protocol: TCP}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: early}}\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector: {{app: early}}\n  ports:\n  - {{name: http, port: 80}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: empty}}\nspec:\n  clusterIP: None\n  selector: {{app: nothing}}\n  ports:\n  - {{name: http, port: 80}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec:\n  type: ExternalName\n  externalName: web.{ns}.svc.cluster.local\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: ext-out}}\nspec:\n  type: ExternalName\n  externalName: example.com\n"
        ),
    );
    kube.create_pods(
        &ns,
        &[
            FakePod::new("web-1", "web", &["10.244.1.10", "fd00:10:244:1::10"], true),
            FakePod::new("db-0", "db", &["10.244.1.20", "fd00:10:244:1::20"], true)
                .with_hostname("db-0", "db"),
            FakePod::new("db-1", "db", &["10.244.1.21", "fd00:10:244:1::21"], false)
                .with_hostname("db-1", "db"),
            FakePod::new("db-2", "db", &["10.244.1.22"], true),
            FakePod::new("early-0", "early", &["10.244.1.30"], false),
        ],
    );
    let (web_v4, web_v6) = cluster_ips(&ns, "web");
    let (web_v4, web_v6) = (
        web_v4.expect("IPv4 cluster IP"),
        web_v6.expect("IPv6 cluster IP"),
    );
    let name = |n: &str| fqdn(&format!("{n}.{ns}.svc"));
    // The controller manager has built every slice once these answer.
    wait_for("the EndpointSlices in DNS", Duration::from_secs(30), || {
        let db = dns.dig(&name("db"), "A", Transport::Udp);
        let db6 = dns.dig(&name("db"), "AAAA", Transport::Udp);
        let early = dns.dig(&name("early"), "A", Transport::Udp);
        (db.answers.len() == 2 && db6.answers.len() == 1 && early.answers.len() == 1).then_some(())
    });

    for t in BOTH {
        let what = |w: &str| format!("{w} over {t:?}");
        // S1: schema version.
        let r = dns.dig(&fqdn("dns-version"), "TXT", t);
        assert_answers(&r, "TXT", &["\"1.1.0\""], 28800, &what("dns-version TXT"));

        // S2: ClusterIP, dual stack.
        assert_answers(
            &dns.dig(&name("web"), "A", t),
            "A",
            &[&web_v4],
            ttl,
            &what("web A"),
        );
        assert_answers(
            &dns.dig(&name("web"), "AAAA", t),
            "AAAA",
            &[&web_v6],
            ttl,
            &what("web AAAA"),
        );

        // S3: SRV for named ports, with the addresses as additional records.
        let web_target = name("web");
        let r = dns.dig(&fqdn(&format!("_http._tcp.web.{ns}.svc")), "SRV", t);
        assert_answers(
            &r,
            "SRV",
            &[&format!("0 100 80 {web_target}")],
            ttl,
            &what("_http._tcp SRV"),
        );
        let mut glue = vec![
            format!("{web_target} A {web_v4}"),
            format!("{web_target} AAAA {web_v6}"),
        ];
        glue.sort();
        assert_eq!(
            r.additional_lines(),
            glue,
            "{}\n{}",
            what("SRV additional"),
            r.raw
        );
        let r = dns.dig(&fqdn(&format!("_dns._udp.web.{ns}.svc")), "SRV", t);
        assert_answers(
            &r,
            "SRV",
            &[&format!("0 100 53 {web_target}")],
            ttl,
            &what("_dns._udp SRV"),
        );
        let r = dns.dig(&fqdn(&format!("_dns._tcp.web.{ns}.svc")), "SRV", t);
        assert_negative(&r, "NXDOMAIN", ttl, &what("_dns._tcp (wrong protocol)"));

        // S5: headless, one record per ready endpoint (db-1 is not ready).
        let r = dns.dig(&name("db"), "A", t);
        assert_answers(
            &r,
            "A",
            &["10.244.1.20", "10.244.1.22"],
            ttl,
            &what("headless A"),
        );
        let r = dns.dig(&name("db"), "AAAA", t);
        assert_answers(
            &r,
            "AAAA",
            &["fd00:10:244:1::20"],
            ttl,
            &what("headless AAAA"),
        );
        // Ready rule: publishNotReadyAddresses publishes the unready early-0.
        let r = dns.dig(&name("early"), "A", t);
        assert_answers(
            &r,
            "A",
            &["10.244.1.30"],
            ttl,
            &what("publishNotReadyAddresses"),
        );
        // S5: no ready endpoints → NXDOMAIN.
        assert_negative(
            &dns.dig(&name("empty"), "A", t),
            "NXDOMAIN",
            ttl,
            &what("empty headless"),
        );

        // S6: hostname.subdomain names, and the dashed IP of an endpoint without hostname.
        let db0 = fqdn(&format!("db-0.db.{ns}.svc"));
        assert_answers(
            &dns.dig(&db0, "A", t),
            "A",
            &["10.244.1.20"],
            ttl,
            &what("db-0 A"),
        );
        assert_answers(
            &dns.dig(&db0, "AAAA", t),
            "AAAA",
            &["fd00:10:244:1::20"],
            ttl,
            &what("db-0 AAAA"),
        );
        let db2 = fqdn(&format!("10-244-1-22.db.{ns}.svc"));
        assert_answers(
            &dns.dig(&db2, "A", t),
            "A",
            &["10.244.1.22"],
            ttl,
            &what("dashed endpoint A"),
        );
        let db1 = fqdn(&format!("db-1.db.{ns}.svc"));
        assert_negative(
            &dns.dig(&db1, "A", t),
            "NXDOMAIN",
            ttl,
            &what("not-ready endpoint"),
        );

        // S7: headless SRV, endpoints × named ports, addresses as additional records.
        let r = dns.dig(&fqdn(&format!("_pg._tcp.db.{ns}.svc")), "SRV", t);
        assert_answers(
            &r,
            "SRV",
            &[&format!("0 50 5432 {db0}"), &format!("0 50 5432 {db2}")],
            ttl,
            &what("headless SRV"),
        );
        let mut glue = vec![
            format!("{db0} A 10.244.1.20"),
            format!("{db0} AAAA fd00:10:244:1::20"),
            format!("{db2} A 10.244.1.22"),
        ];
        glue.sort();
        assert_eq!(
            r.additional_lines(),
            glue,
            "{}\n{}",
            what("headless SRV additional"),
            r.raw
        );

        // S9: ExternalName, chased when the target is a cluster name.
        let r = dns.dig(&name("ext"), "A", t);
        assert_eq!(r.status, "NOERROR", "{}", r.raw);
        assert_eq!(r.data("CNAME"), vec![web_target.clone()], "{}", r.raw);
        assert_eq!(r.data("A"), vec![web_v4.clone()], "{}", r.raw);
        let r = dns.dig(&name("ext-out"), "A", t);
        assert_eq!(r.status, "NOERROR", "{}", r.raw);
        assert_eq!(
            r.data("CNAME"),
            vec!["example.com.".to_owned()],
            "{}",
            r.raw
        );
        assert!(
            r.data("A").is_empty(),
            "the CNAME alone without resolveExternalNames (CoreDNS 1.14)\n{}",
            r.raw
        );

        // S4, S8: PTR for cluster IPs and ready endpoints, IPv4 and IPv6.
        for (ip, target) in [
            (web_v4.as_str(), web_target.as_str()),
            (web_v6.as_str(), web_target.as_str()),
            ("10.244.1.20", db0.as_str()),
            ("fd00:10:244:1::20", db0.as_str()),
            ("10.244.1.22", db2.as_str()),
        ] {
            let r = dns.dig(&nameplane_e2e::reverse_name(ip), "PTR", t);
            assert_answers(&r, "PTR", &[target], ttl, &what(&format!("PTR {ip}")));
        }
        let r = dns.dig(&nameplane_e2e::reverse_name("10.244.1.21"), "PTR", t);
        assert_eq!(
            r.status,
            "NXDOMAIN",
            "{}: not-ready endpoint: no cluster address, and without reverseFallthrough the cluster stage owns the reverse zones\n{}",
            what("PTR"),
            r.raw
        );
        assert_eq!(r.authority[0].0, "in-addr.arpa.", "{}", r.raw);

        // S10: case-insensitive.
        let r = dns.dig(&name("web").to_uppercase(), "A", t);
        assert_answers(&r, "A", &[&web_v4], ttl, &what("upper case"));
        assert_eq!(
            r.answers[0].0,
            name("web").to_uppercase(),
            "owner keeps the query's case"
        );

        // NODATA: existing names, other types; the namespace; the empty non-terminals.
        for (n, rtype) in [
            (name("web"), "TXT"),
            (name("web"), "MX"),
            (db0.clone(), "TXT"),
            (fqdn(&format!("{ns}.svc")), "A"),
            (fqdn("svc"), "A"),
            (fqdn("dns-version"), "A"),
        ] {
            assert_negative(
                &dns.dig(&n, rtype, t),
                "NOERROR",
                ttl,
                &what(&format!("NODATA {n} {rtype}")),
            );
        }
        // NXDOMAIN: unknown Services, namespaces, names; pods disabled by default.
        for n in [
            name("nope"),
            fqdn(&format!("web.no-such-namespace-{}.svc", std::process::id())),
            fqdn("nope"),
            fqdn(&format!("a.b.web.{ns}.svc")),
            fqdn(&format!("10-244-1-10.{ns}.pod")),
        ] {
            assert_negative(
                &dns.dig(&n, "A", t),
                "NXDOMAIN",
                ttl,
                &what(&format!("NXDOMAIN {n}")),
            );
        }

        // Apex: SOA and NS (ns.dns.<zone> is the server's own address here).
        let r = dns.dig("cluster.local.", "SOA", t);
        assert_eq!(r.status, "NOERROR", "{}", r.raw);
        assert_eq!(r.answers.len(), 1, "{}", r.raw);
        assert!(r.data("SOA")[0].starts_with("ns.dns.cluster.local. hostmaster.cluster.local. "));
        let r = dns.dig("cluster.local.", "NS", t);
        assert_answers(&r, "NS", &["ns.dns.cluster.local."], ttl, &what("apex NS"));
        assert_eq!(
            r.additional_lines(),
            ["ns.dns.cluster.local. A 127.0.0.1"],
            "{}",
            r.raw
        );

        // Not our zone: REFUSED (forwarding comes later).
        let r = dns.dig("example.com.", "A", t);
        assert_eq!(r.status, "REFUSED", "{}", r.raw);
        assert!(!r.has_flag("aa"));

        // EDNS: the server's maximum (1232) whatever the client offers; BADVERS for v1; no OPT
        // without EDNS.
        let r = dig_with(dns.port, &name("web"), "A", t, &["+bufsize=4096"]);
        assert_eq!(r.edns_udp, Some(1232), "{}", r.raw);
        let r = dig_with(dns.port, &name("web"), "A", t, &["+noedns"]);
        assert_eq!(
            (r.status.as_str(), r.edns_udp),
            ("NOERROR", None),
            "{}",
            r.raw
        );
        let r = dig_with(dns.port, &name("web"), "A", t, &["+edns=1", "+noednsneg"]);
        assert_eq!(r.status, "BADVERS", "{}", r.raw);

        // Protocol errors: FORMERR for a broken question, NOTIMP for other opcodes.
        let mut broken = query_packet(0x4242, &name("web"), RecordType::A);
        broken.truncate(20);
        let reply = raw_query(dns.port, &broken, t).expect("an answer to a malformed query");
        assert_eq!(
            (reply[0], reply[1], reply[3] & 0x0f),
            (0x42, 0x42, 1),
            "FORMERR over {t:?}"
        );
        let mut update = query_packet(0x4343, &name("web"), RecordType::A);
        update[2] = (update[2] & !0x78) | (5 << 3);
        let reply = raw_query(dns.port, &update, t).expect("an answer to UPDATE");
        assert_eq!(
            (reply[0], reply[1], reply[3] & 0x0f),
            (0x43, 0x43, 4),
            "NOTIMP over {t:?}"
        );
    }
    // Several queries on one TCP connection, pipelined.
    let packets: Vec<Vec<u8>> = (0..3u16)
        .map(|i| query_packet(100 + i, &name("web"), RecordType::A))
        .collect();
    let replies = pipelined_tcp(dns.port, &packets);
    assert_eq!(replies.len(), 3);
    for (i, reply) in replies.iter().enumerate() {
        let message = Message::from_vec(reply).expect("decodes");
        assert_eq!(message.metadata.id, 100 + i as u16);
        assert_eq!(message.answers.len(), 1);
    }

    operator.assert_running();
    dns.process.assert_running();
}

/// Writes every packet on one TCP connection, then reads every answer.
fn pipelined_tcp(port: u16, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    for packet in packets {
        stream
            .write_all(&u16::try_from(packet.len()).expect("fits").to_be_bytes())
            .expect("write");
        stream.write_all(packet).expect("write");
    }
    packets
        .iter()
        .map(|_| {
            let mut prefix = [0; 2];
            stream.read_exact(&mut prefix).expect("length");
            let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut body).expect("body");
            body
        })
        .collect()
}

#[test]
fn a_large_headless_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let kube = Kube::connect();
    let ns = unique("e2e-tc");
    let _cleanup = NamespaceGuard::create(&[(&ns, &[])]);
    apply_config_map(&ns, "dns", &config(&format!("{ns}/dns"), 5, ""), None);
    let mut dns = DnsServer::start("tc-dns", &format!("{ns}/dns"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: many}\nspec:\n  clusterIP: None\n  selector: {app: many}\n  ports:\n  - {name: http, port: 80}\n",
    );
    let pods: Vec<FakePod> = (1..=100)
        .map(|i| {
            FakePod::new(
                &format!("many-{i}"),
                "many",
                &[&format!("10.244.2.{i}")],
                true,
            )
        })
        .collect();
    let started = Instant::now();
    kube.create_pods(&ns, &pods);
    let created = started.elapsed();
    let name = fqdn(&format!("many.{ns}.svc"));
    let complete = time_until("100 records over TCP", Duration::from_secs(60), || {
        dns.dig(&name, "A", Transport::Tcp).answers.len() == 100
    });
    eprintln!(
        "100 Pods created and made ready in {created:?}; all 100 in DNS {:?} after that",
        complete
    );

    // UDP, EDNS 1232 (dig's default) and 512 (no EDNS): TC, no records.
    for extra in [&["+ignore"][..], &["+ignore", "+noedns"][..]] {
        let r = dig_with(dns.port, &name, "A", Transport::Udp, extra);
        assert_eq!(r.status, "NOERROR", "{}", r.raw);
        assert!(r.has_flag("tc"), "{extra:?}: TC\n{}", r.raw);
        assert!(r.answers.is_empty(), "{}", r.raw);
    }
    // dig itself retries over TCP on TC and gets everything.
    let r = dig_with(dns.port, &name, "A", Transport::Udp, &[]);
    assert!(
        r.raw.contains("Truncated, retrying in TCP mode"),
        "{}",
        r.raw
    );
    assert_eq!(r.answers.len(), 100, "{}", r.raw);
    // Over TCP: all 100, no TC.
    let r = dns.dig(&name, "A", Transport::Tcp);
    assert!(!r.has_flag("tc"));
    let want: Vec<String> = (1..=100).map(|i| format!("10.244.2.{i}")).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(r.data("A"), want_sorted);
    // The SRV answer with its 100 additional addresses, too.
    let srv = fqdn(&format!("_http._tcp.many.{ns}.svc"));
    let r = dig_with(dns.port, &srv, "SRV", Transport::Udp, &["+ignore"]);
    assert!(r.has_flag("tc"), "{}", r.raw);
    let r = dns.dig(&srv, "SRV", Transport::Tcp);
    assert_eq!(r.answers.len(), 100, "{}", r.raw);
    assert_eq!(r.additional.len(), 100, "{}", r.raw);
    assert!(
        r.answers
            .iter()
            .all(|a| a.3.starts_with("0 1 80 10-244-2-")),
        "{}",
        r.raw
    );

    dns.process.assert_running();
}

#[test]
fn changes_reach_the_answers_promptly() {
    let kube = Kube::connect();
    let ns = unique("e2e-changes");
    let _cleanup = NamespaceGuard::create(&[(&ns, &[])]);
    apply_config_map(&ns, "dns", &config(&format!("{ns}/dns"), 5, ""), None);
    let mut dns = DnsServer::start("changes-dns", &format!("{ns}/dns"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let limit = Duration::from_secs(10);
    let mut figures = Vec::new();

    // A new Service. Each figure runs from the moment the API call returned.
    let fresh = fqdn(&format!("fresh.{ns}.svc"));
    for t in BOTH {
        assert_eq!(dns.dig(&fresh, "A", t).status, "NXDOMAIN");
    }
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: fresh}\nspec:\n  selector: {app: fresh}\n  ports:\n  - {name: http, port: 80}\n",
    );
    let seen = time_until("the new Service", limit, || {
        dns.dig(&fresh, "A", Transport::Udp).answers.len() == 1
    });
    figures.push(("Service created → A answered", seen));
    let (ip, _) = cluster_ips(&ns, "fresh");
    let ip = ip.expect("cluster IP");
    for t in BOTH {
        assert_eq!(dns.dig(&fresh, "A", t).data("A"), vec![ip.clone()]);
    }

    // An endpoint becoming ready, then not ready.
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: hl}\nspec:\n  clusterIP: None\n  selector: {app: hl}\n  ports:\n  - {name: http, port: 80}\n",
    );
    kube.create_pods(&ns, &[FakePod::new("hl-0", "hl", &["10.244.3.5"], false)]);
    let hl = fqdn(&format!("hl.{ns}.svc"));
    wait_for(
        "the Service to exist, without ready endpoints",
        limit,
        || (dns.dig(&hl, "A", Transport::Udp).status == "NXDOMAIN").then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    for t in BOTH {
        assert_eq!(
            dns.dig(&hl, "A", t).status,
            "NXDOMAIN",
            "not ready yet over {t:?}"
        );
    }
    kube.set_pod_status(&ns, "hl-0", &["10.244.3.5"], true);
    let seen = time_until("the ready endpoint", limit, || {
        dns.dig(&hl, "A", Transport::Udp).data("A") == ["10.244.3.5"]
    });
    figures.push(("Pod status Ready=True patched → headless A answered", seen));
    for t in BOTH {
        assert_eq!(dns.dig(&hl, "A", t).data("A"), ["10.244.3.5"]);
    }
    kube.set_pod_status(&ns, "hl-0", &["10.244.3.5"], false);
    let gone = time_until("the endpoint to go", limit, || {
        dns.dig(&hl, "A", Transport::Udp).status == "NXDOMAIN"
    });
    figures.push(("Pod status Ready=False patched → NXDOMAIN", gone));

    // An ExternalName moved to another target.
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: alias}\nspec:\n  type: ExternalName\n  externalName: one.example.com\n",
    );
    let alias = fqdn(&format!("alias.{ns}.svc"));
    wait_for("the alias", limit, || {
        (dns.dig(&alias, "CNAME", Transport::Udp).data("CNAME") == ["one.example.com."])
            .then_some(())
    });
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: alias}\nspec:\n  type: ExternalName\n  externalName: two.example.com\n",
    );
    let moved = time_until("the new alias target", limit, || {
        dns.dig(&alias, "CNAME", Transport::Udp).data("CNAME") == ["two.example.com."]
    });
    figures.push(("ExternalName target changed → new CNAME", moved));

    // Deletion.
    kubectl_ok(&["delete", "service", "fresh", "-n", &ns, "--wait=false"]);
    let deleted = time_until("NXDOMAIN after deletion", limit, || {
        dns.dig(&fresh, "A", Transport::Udp).status == "NXDOMAIN"
    });
    figures.push(("Service deleted → NXDOMAIN", deleted));
    for t in BOTH {
        assert_eq!(dns.dig(&fresh, "A", t).status, "NXDOMAIN");
    }

    // The server measured its own DNS programming latency (CoreDNS's SLI metric).
    let (_, metrics) = dns.admin("/metrics").expect("metrics");
    assert!(
        metrics.contains(r#"coredns_kubernetes_dns_programming_duration_seconds_count{service_kind="headless_with_selector"}"#),
        "{metrics}"
    );
    eprintln!(
        "measured from the API call's return (polling with dig every ~10 ms plus dig's own run time):"
    );
    for (what, took) in &figures {
        eprintln!("  {what}: {took:?}");
    }
    dns.process.assert_running();
}

#[test]
fn pod_records_endpoint_names_and_filters_follow_the_config() {
    let kube = Kube::connect();
    let a = unique("e2e-cfg-a");
    let b = unique("e2e-cfg-b");
    let _cleanup = NamespaceGuard::create(&[(&a, &[("dns", "on")]), (&b, &[])]);
    let ttl = 5;
    let server = format!("{a}/dns");
    apply_config_map(&a, "dns", &config(&server, ttl, ""), None);
    let mut dns = DnsServer::start("cfg-dns", &format!("{a}/dns"), &[]);
    dns.wait_ready(Duration::from_secs(30));

    let svc = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80}}\n"
        )
    };
    apply(&a, &svc("api"));
    apply(&a, &svc("idle"));
    apply(
        &a,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: hidden\n  labels: {dns: \"off\"}\nspec:\n  selector: {app: hidden}\n  ports:\n  - {name: http, port: 80}\n",
    );
    apply(&b, &svc("other"));
    kube.create_pods(
        &a,
        &[
            FakePod::new("api-0", "api", &["10.244.4.10"], true),
            FakePod::new("loner", "loner", &["10.244.4.20"], true),
        ],
    );
    let in_a = |n: &str| fqdn(&format!("{n}.{a}.svc"));
    let other = fqdn(&format!("other.{b}.svc"));
    let loner = fqdn(&format!("10-244-4-20.{a}.pod"));
    let made_up = fqdn(&format!("1-2-3-4.{a}.pod"));
    let api_by_pod = fqdn(&format!("api-0.api.{a}.svc"));
    let api_by_ip = fqdn(&format!("10-244-4-10.api.{a}.svc"));
    let resolves = |name: &str| {
        BOTH.iter().all(|t| {
            let r = dns.dig(name, "A", *t);
            r.status == "NOERROR" && !r.answers.is_empty()
        })
    };
    let nxdomain = |name: &str| {
        BOTH.iter()
            .all(|t| dns.dig(name, "A", *t).status == "NXDOMAIN")
    };
    let set_config = |extra: &str| apply_config_map(&a, "dns", &config(&server, ttl, extra), None);
    let settle = |what: &str, check: &dyn Fn() -> bool| {
        wait_for(what, Duration::from_secs(20), || check().then_some(()));
    };

    // Defaults: no pod records, endpoints named by dashed IP, everything visible.
    settle("the defaults", &|| {
        resolves(&api_by_ip) && resolves(&in_a("idle")) && resolves(&other)
    });
    for n in [&loner, &made_up, &api_by_pod] {
        assert!(nxdomain(n), "{n} with defaults");
    }
    assert!(resolves(&in_a("hidden")));

    // pods insecure + endpointPodNames + ignoreEmptyService.
    set_config(r#","pods":"insecure","endpointPodNames":true,"ignoreEmptyService":true"#);
    settle("pods insecure", &|| resolves(&made_up));
    for t in BOTH {
        assert_eq!(
            dns.dig(&made_up, "A", t).data("A"),
            ["1.2.3.4"],
            "insecure over {t:?}"
        );
        assert_eq!(
            dns.dig(&api_by_pod, "A", t).data("A"),
            ["10.244.4.10"],
            "endpointPodNames over {t:?}"
        );
    }
    assert!(nxdomain(&api_by_ip), "the pod name replaces the dashed IP");
    assert!(
        nxdomain(&in_a("idle")),
        "ignoreEmptyService: no ready endpoints"
    );
    assert!(resolves(&in_a("api")), "ignoreEmptyService: api has one");

    // pods verified: only addresses of Pods that exist in that namespace (starts a Pod watch).
    set_config(r#","pods":"verified""#);
    settle("pods verified", &|| nxdomain(&made_up));
    for t in BOTH {
        assert_eq!(
            dns.dig(&loner, "A", t).data("A"),
            ["10.244.4.20"],
            "verified over {t:?}"
        );
    }
    assert!(
        nxdomain(&fqdn(&format!("10-244-4-20.{b}.pod"))),
        "the Pod is not in {b}"
    );
    let ready = dns.admin("/ready").expect("ready");
    assert!(ready.1.starts_with("ready"), "{ready:?}");

    // namespaces: only the listed ones.
    set_config(&format!(r#","namespaces":["{a}"]"#));
    settle("the namespaces list", &|| nxdomain(&other));
    assert!(
        nxdomain(&fqdn(&format!("{b}.svc"))),
        "a hidden namespace is NXDOMAIN, not NODATA"
    );
    assert!(resolves(&in_a("api")));

    // namespaceSelector: namespaces labelled dns=on; labelling b brings it in.
    set_config(r#","namespaceSelector":{"matchLabels":{"dns":"on"}}"#);
    settle("the namespace selector", &|| {
        nxdomain(&other) && resolves(&in_a("api"))
    });
    let started = Instant::now();
    kubectl_ok(&["label", "namespace", &b, "dns=on"]);
    let took = time_until("the labelled namespace", Duration::from_secs(20), || {
        resolves(&other)
    });
    eprintln!(
        "namespace labelled → its Services answered after {took:?} (from kubectl start {:?})",
        started.elapsed()
    );

    // labelSelector: Services (and their slices) labelled dns=off are left out.
    set_config(
        r#","labelSelector":{"matchExpressions":[{"key":"dns","operator":"NotIn","values":["off"]}]}"#,
    );
    settle("the label selector", &|| nxdomain(&in_a("hidden")));
    assert!(resolves(&in_a("api")));
    assert!(resolves(&api_by_ip), "slices of selected Services are kept");

    dns.process.assert_running();
}

#[test]
fn answers_keep_coming_while_the_api_server_is_down() {
    let kube = Kube::connect();
    let ns = unique("e2e-outage");
    let _cleanup = NamespaceGuard::create(&[(&ns, &[])]);
    apply_config_map(&ns, "dns", &config(&format!("{ns}/dns"), 5, ""), None);
    let svc = |name: &str, cluster_ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: {cluster_ip}\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80}}\n"
        )
    };
    apply(&ns, &svc("steady", "\"\""));
    apply(&ns, &svc("doomed", "\"\""));
    apply(&ns, &svc("hs", "None"));
    kube.create_pods(&ns, &[FakePod::new("hs-0", "hs", &["10.244.5.5"], true)]);
    let mut dns = DnsServer::start("outage-dns", &format!("{ns}/dns"), &[]);
    dns.wait_ready(Duration::from_secs(30));
    let steady = fqdn(&format!("steady.{ns}.svc"));
    let hs = fqdn(&format!("hs.{ns}.svc"));
    let doomed = fqdn(&format!("doomed.{ns}.svc"));
    let born = fqdn(&format!("born.{ns}.svc"));
    let (steady_ip, _) = cluster_ips(&ns, "steady");
    let steady_ip = steady_ip.expect("cluster IP");
    wait_for("the headless endpoint", Duration::from_secs(30), || {
        (dns.dig(&hs, "A", Transport::Udp).data("A") == ["10.244.5.5"]).then_some(())
    });
    assert_eq!(dns.dig(&doomed, "A", Transport::Udp).status, "NOERROR");

    // Queries for known names run all along, alternating UDP and TCP.
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = dns.port;
    let prober = {
        let (stop, asked, failures) =
            (Arc::clone(&stop), Arc::clone(&asked), Arc::clone(&failures));
        let (steady, hs, steady_ip) = (steady.clone(), hs.clone(), steady_ip.clone());
        let hs_ip = "10.244.5.5".to_owned();
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t = BOTH[i % 2];
                let (name, want) = if i % 4 < 2 {
                    (&steady, &steady_ip)
                } else {
                    (&hs, &hs_ip)
                };
                let r = nameplane_e2e::dig(port, name, "A", t);
                if (r.status != "NOERROR" || r.data("A") != [want.clone()])
                    && let Ok(mut f) = failures.lock()
                {
                    f.push(format!("{name} over {t:?}: {}", r.raw));
                }
                asked.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    let down_at = Instant::now();
    component("kube-apiserver", "kill");
    let asked_before = asked.load(Ordering::Relaxed);
    let lists_before = dns.process.log().matches("list complete").count();
    // History moves on and is compacted while the API is away: the server's watches cannot
    // resume where they stopped (410 Gone) and must re-list.
    let compacted = etcd_advance_and_compact(3);
    // A server started now cannot read its config or list anything: not ready, SERVFAIL.
    let mut late = DnsServer::start("outage-late-dns", &format!("{ns}/dns"), &[]);
    std::thread::sleep(Duration::from_secs(4));
    late.process.assert_running();
    let (status, body) = late.admin("/ready").expect("admin answers");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("config loaded false"), "{body}");
    for t in BOTH {
        assert_eq!(
            late.dig(&steady, "A", t).status,
            "SERVFAIL",
            "late server over {t:?}"
        );
    }
    // The running one stays ready and keeps answering.
    let (status, body) = dns.admin("/ready").expect("admin answers");
    assert_eq!(status, 200, "ready during the outage: {body}");
    assert_eq!(dns.admin("/health").map(|r| r.0), Some(200));
    std::thread::sleep(Duration::from_secs(4));
    let during = asked.load(Ordering::Relaxed) - asked_before;
    component("kube-apiserver", "start");
    let outage = down_at.elapsed();
    // kube-controller-manager went through the same outage; its ~40 informers re-list under
    // a 20 qps client limit and can take a minute to write EndpointSlices again. This test is
    // about the DNS server, so give the controller manager fresh caches.
    component("kube-controller-manager", "stop");
    component("kube-controller-manager", "start");

    // Changes made as soon as the API is back, while the server is still reconnecting.
    apply(&ns, &svc("born", "\"\""));
    kubectl_ok(&["delete", "service", "doomed", "-n", &ns, "--wait=false"]);
    let (born_ip, _) = cluster_ips(&ns, "born");
    let born_ip = born_ip.expect("cluster IP");
    // The watches retry at most 5 s apart (plus jitter), then catch up.
    let seen = time_until(
        "the changes made after the restart",
        Duration::from_secs(20),
        || {
            dns.dig(&born, "A", Transport::Udp).data("A") == [born_ip.clone()]
                && dns.dig(&doomed, "A", Transport::Udp).status == "NXDOMAIN"
        },
    );
    for t in BOTH {
        assert_eq!(
            dns.dig(&born, "A", t).data("A"),
            vec![born_ip.clone()],
            "{t:?}"
        );
        assert_eq!(dns.dig(&doomed, "A", t).status, "NXDOMAIN", "{t:?}");
    }
    // The known names were probed until here, through the outage and the re-lists.
    stop.store(true, Ordering::Relaxed);
    prober.join().expect("prober");

    // An endpoint change after the restart reaches DNS too.
    kube.create_pods(&ns, &[FakePod::new("hs-1", "hs", &["10.244.5.6"], true)]);
    let endpoint_seen = time_until(
        "the new endpoint after the restart",
        Duration::from_secs(120),
        || dns.dig(&hs, "A", Transport::Udp).data("A") == ["10.244.5.5", "10.244.5.6"],
    );
    eprintln!(
        "a Pod made ready after the restart was served after {endpoint_seen:?} (from the Pod's creation)"
    );
    let late_ready = time_until(
        "the late server to become ready",
        Duration::from_secs(60),
        || {
            late.admin("/ready")
                .is_some_and(|(status, _)| status == 200)
        },
    );
    assert_eq!(
        late.dig(&steady, "A", Transport::Tcp).data("A"),
        vec![steady_ip.clone()]
    );

    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let total = asked.load(Ordering::Relaxed);
    eprintln!(
        "API server down for {outage:?}: {during} queries answered while it was down, {total} in all, {} failed; \
         changes made after the restart served {seen:?} after it; a server started during the outage became ready {late_ready:?} after the restart",
        failures.len()
    );
    assert!(during > 20, "queries ran during the outage ({during})");
    assert!(
        failures.is_empty(),
        "failed queries:\n{}",
        failures.join("\n")
    );
    let (_, metrics) = dns.admin("/metrics").expect("metrics");
    assert!(
        metrics.contains("nameplane_kubernetes_watch_errors_total"),
        "the outage was seen\n{metrics}"
    );
    let relisted = time_until("every watch to re-list", Duration::from_secs(20), || {
        dns.process.log().matches("list complete").count() >= lists_before + 3
    });
    eprintln!(
        "etcd compacted at revision {compacted} during the outage: every watch got 410 Gone and re-listed ({relisted:?} after the changes were served)"
    );
    assert!(
        dns.process.log().contains("too old resource version"),
        "the watches resumed into 410 Gone"
    );

    dns.process.assert_running();
    late.process.assert_running();
}

#[test]
fn lameduck_metrics_and_the_served_config_hash() {
    let ns = unique("e2e-ops");
    let _cleanup = NamespaceGuard::create(&[(&ns, &[])]);
    let server = format!("{ns}/dns");
    // Annotated as the operator annotates it: with the content hash (a ConfigMap whose
    // annotation does not match its content is refused).
    let json = config(&server, 5, "");
    let hash = serde_json::from_str::<nameplane_config::ServerConfig>(&json)
        .expect("the test's config parses")
        .content_hash();
    apply_config_map(&ns, "dns", &json, Some(&hash));
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n",
    );
    let mut dns = DnsServer::start(
        "ops-dns",
        &format!("{ns}/dns"),
        &[
            "--lameduck-seconds",
            "3",
            "--query-log",
            "--log-format",
            "json",
        ],
    );
    let ready = dns.wait_ready(Duration::from_secs(30));
    assert!(ready.contains(&format!("config: {hash}")), "{ready}");
    let web = fqdn(&format!("web.{ns}.svc"));
    wait_for("the Service", Duration::from_secs(10), || {
        (dns.dig(&web, "A", Transport::Udp).status == "NOERROR").then_some(())
    });
    for t in BOTH {
        assert_eq!(
            dns.dig(&fqdn(&format!("nope.{ns}.svc")), "A", t).status,
            "NXDOMAIN"
        );
        assert_eq!(dns.dig(&web, "A", t).status, "NOERROR");
    }

    let (status, metrics) = dns.admin("/metrics").expect("metrics");
    assert_eq!(status, 200);
    let server_labels = format!(r#"server="dns://127.0.0.1:{}",zone=".",view="""#, dns.port);
    for needle in [
        format!(r#"coredns_dns_requests_total{{{server_labels},proto="tcp",family="1",type="A"}}"#),
        format!(
            r#"coredns_dns_responses_total{{{server_labels},rcode="NXDOMAIN",plugin="kubernetes"}}"#
        ),
        format!(
            r#"coredns_dns_request_duration_seconds_bucket{{le="0.00025",{server_labels},type="A"}}"#
        ),
        format!(r#"coredns_dns_request_duration_seconds_count{{{server_labels},type="A"}}"#),
        format!(r#"coredns_dns_response_size_bytes_count{{{server_labels},proto="udp"}}"#),
        format!(r#"nameplane_config_info{{server="{server}",hash="{hash}"}} 1"#),
        format!(r#"coredns_reload_version_info{{hash="sha256",value="{hash}"}} 1"#),
        r#"nameplane_kubernetes_synced{resource="endpointslices"} 1"#.to_owned(),
    ] {
        assert!(metrics.contains(&needle), "missing {needle}\n{metrics}");
    }
    // Structured logs: every line is a JSON object; the query log names each query.
    let log = dns.process.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let logged = lines
        .iter()
        .find(|l| l["message"] == "query" && l["name"] == web.as_str() && l["proto"] == "tcp")
        .unwrap_or_else(|| panic!("no query log line for {web} over TCP in\n{log}"));
    assert_eq!(logged["rcode"], "NOERROR", "{logged}");
    assert_eq!(logged["type"], "A", "{logged}");

    // SIGTERM: /ready fails at once, answers keep coming for the lameduck period, then exit.
    let term = Instant::now();
    dns.process.terminate();
    let unready = time_until("/ready to fail", Duration::from_secs(2), || {
        dns.admin("/ready")
            .is_some_and(|(status, body)| status == 503 && body.contains("lameduck true"))
    });
    assert_eq!(
        dns.admin("/health").map(|r| r.0),
        Some(200),
        "alive during lameduck"
    );
    let mut answered = 0;
    let mut last_answer = Duration::ZERO;
    while term.elapsed() < Duration::from_secs(6) {
        let r = dns.dig(&web, "A", BOTH[answered % 2]);
        if r.status != "NOERROR" {
            break;
        }
        answered += 1;
        last_answer = term.elapsed();
    }
    let exit = dns
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("exits after lameduck");
    let exited = term.elapsed();
    eprintln!(
        "SIGTERM: /ready failed after {unready:?}; {answered} queries answered during lameduck, the last {last_answer:?} after SIGTERM; exited after {exited:?} ({exit})"
    );
    assert!(exit.success(), "{exit}");
    assert!(answered >= 10, "answers during lameduck ({answered})");
    assert!(
        last_answer >= Duration::from_millis(2500),
        "answered until near the end of the 3 s lameduck ({last_answer:?})"
    );
    assert!(
        exited >= Duration::from_secs(3),
        "lameduck lasted ({exited:?})"
    );
}

#[test]
fn servfail_and_not_ready_until_every_watch_has_listed() {
    // The server runs as a ServiceAccount allowed to list and watch what it needs, except
    // Pods, while its config asks for verified pod records (which need the Pod watch).
    let ns = unique("e2e-sync");
    let _cleanup = NamespaceGuard::create(&[(&ns, &[])]);
    let role = unique("e2e-nameplane-dns");
    apply_config_map(
        &ns,
        "dns",
        &config(&format!("{ns}/dns"), 5, r#","pods":"verified""#),
        None,
    );
    apply(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n",
    );
    let rbac = |resources: &str| {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: dns, namespace: {ns}}}\n\
---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}}}\nrules:\n\
- {{apiGroups: [\"\"], resources: [{resources}], verbs: [list, watch]}}\n\
- {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}}\n\
---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {role}}}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
subjects: [{{kind: ServiceAccount, name: dns, namespace: {ns}}}]\n"
        )
    };
    apply(&ns, &rbac("services, namespaces, configmaps"));
    let kubeconfig = service_account_kubeconfig(&ns, "dns");
    let mut dns = DnsServer::start_as("sync-dns", &kubeconfig, &format!("{ns}/dns"), &[]);
    let web = fqdn(&format!("web.{ns}.svc"));

    // Config loaded, three of the four watches listed, the Pod watch forbidden.
    let body = wait_for(
        "every watch but the Pod watch",
        Duration::from_secs(30),
        || {
            dns.admin("/ready").filter(|(status, body)| {
                *status == 503
                    && body.contains("config loaded true")
                    && body
                        .contains("services true, endpointslices true, namespaces true, pods false")
            })
        },
    );
    eprintln!("/ready without the Pod watch: {}", body.1.trim());
    for t in BOTH {
        let r = dns.dig(&web, "A", t);
        assert_eq!(
            r.status, "SERVFAIL",
            "not NXDOMAIN, not an answer, over {t:?}\n{}",
            r.raw
        );
        let r = dns.dig(&fqdn(&format!("nope.{ns}.svc")), "A", t);
        assert_eq!(
            r.status, "SERVFAIL",
            "never a false NXDOMAIN, over {t:?}\n{}",
            r.raw
        );
    }
    assert!(
        dns.process.log().contains("forbidden"),
        "the denial is logged"
    );

    // Allowed to watch Pods: the watch retries, lists, and the server becomes ready.
    let granted = Instant::now();
    apply(&ns, &rbac("services, namespaces, configmaps, pods"));
    let ready = dns.wait_ready(Duration::from_secs(30));
    eprintln!(
        "ready {:?} after the Pod permission was granted",
        granted.elapsed()
    );
    assert!(ready.starts_with("ready"), "{ready}");
    for t in BOTH {
        assert_eq!(dns.dig(&web, "A", t).status, "NOERROR", "{t:?}");
    }
    dns.process.assert_running();
    let _ = kubectl(&[
        "delete",
        "clusterrolebinding,clusterrole",
        &role,
        "--wait=false",
    ]);
}
