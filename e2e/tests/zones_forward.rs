//! Zones, forwarding and the cache, end to end. The server under test is configured the way
//! users configure it: `kubectl apply` of a `DNSServer` (upstreams, cache), `DNSZone`s and
//! `StubDomain`s, rendered by the real operator into the ConfigMap a real `nameplane-dns`
//! follows; it is queried with `dig`. Its upstreams are other real DNS servers on loopback:
//! nameplane servers serving a zone from their own ConfigMaps, and Knot as a secondary that
//! transfers a zone from nameplane. Forged replies come from sockets this test owns, in
//! front of a real upstream.
//!
//! Needs `make cluster-up`, `cargo build --bins` and `knotd` (`make deps`); `make e2e` does
//! all three.

use nameplane_config::ServerConfig;
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_e2e::{
    DigResult, DnsServer, Operator, Process, Transport, apply, dig, dig_raw, e2e_dir,
    ensure_namespace, free_port, kubectl, kubectl_ok, metric_sum, start_knotd, wait_for,
};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);

fn record(name: &str, kind: RecordKind, ttl: u32, values: &[&str]) -> RecordConfig {
    RecordConfig {
        name: name.into(),
        record_type: kind,
        ttl_seconds: ttl,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn server_config(name: &str) -> ServerConfig {
    ServerConfig {
        server: format!("e2e/{name}"),
        ..Default::default()
    }
}

/// A nameplane DNS server serving `zones` from its own ConfigMap `namespace/name`.
fn zone_server(
    namespace: &str,
    name: &str,
    zones: Vec<ZoneConfig>,
    port: Option<u16>,
) -> DnsServer {
    let mut config = server_config(name);
    config.zones = zones;
    nameplane_e2e::publish_config(namespace, name, &config);
    let target = format!("{namespace}/{name}");
    let mut server = match port {
        Some(port) => DnsServer::start_on(name, &target, port, &[]),
        None => DnsServer::start(name, &target, &[]),
    };
    server.wait_ready(READY);
    server
}

/// `example.test`, as an upstream serves it: `www` answers `www_ip` with TTL `ttl`.
fn example_test(www_ip: &str, ttl: u32) -> ZoneConfig {
    ZoneConfig {
        name: "example.test".into(),
        source: "e2e/upstream".into(),
        ttl_seconds: 10,
        records: vec![
            record("www.example.test", RecordKind::A, ttl, &[www_ip]),
            record("mail.example.test", RecordKind::A, 300, &["192.0.2.25"]),
        ],
        allow_transfer: vec![],
    }
}

fn a_records(result: &DigResult) -> Vec<String> {
    result.data("A")
}

fn timed_dig(port: u16, name: &str, rtype: &str) -> (DigResult, Duration) {
    let started = Instant::now();
    let result = dig(port, name, rtype, Transport::Udp);
    (result, started.elapsed())
}

/// The server under test: an operator, a `DNSServer` named `dns` in `namespace` taking the
/// config objects of that namespace only, and the `nameplane-dns` following its ConfigMap.
struct Stack {
    namespace: String,
    _operator: Operator,
    dns: DnsServer,
}

fn condition(namespace: &str, what: &str) -> (String, String, String) {
    let at = |field: &str| {
        let out = kubectl(&[
            "get",
            "-n",
            namespace,
            what,
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"Ready\")].{field}}}"),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (at("status"), at("reason"), at("message"))
}

impl Stack {
    /// Applies the `DNSServer` (with `spec`, YAML lines indented by two spaces) and
    /// `objects`, waits until each object is `Ready` and the server's config is published,
    /// and starts the DNS server.
    fn start(namespace: &str, spec: &str, objects: &[&str]) -> Self {
        kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=nameplane-e2e",
            "-f",
            "crds/",
        ]);
        for plural in ["dnsservers", "dnszones", "stubdomains"] {
            kubectl_ok(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{plural}.nameplane.io"),
            ]);
        }
        ensure_namespace("nameplane-system", &[]);
        let labelled = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels: {{nameplane.io/e2e: {namespace}}}\n"
        );
        apply("default", &labelled);
        let operator = Operator::start(
            &format!("operator-{namespace}"),
            &["--lease-name", &format!("lease-{namespace}")],
        );
        apply(
            namespace,
            &format!(
                "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  configSelector:\n    namespaceSelector:\n      matchLabels: {{nameplane.io/e2e: {namespace}}}\n{spec}"
            ),
        );
        for object in objects {
            apply(namespace, object);
        }
        let stack_ns = namespace.to_owned();
        // An object may be judged before the namespace label or the DNSServer is seen
        // (`NotSelected`); wait for the verdict to settle on `True`.
        let accepted = |what: String| {
            let mut last = Default::default();
            let settled = nameplane_e2e::poll_until(READY, || {
                last = condition(&stack_ns, &what);
                last.0 == "True"
            });
            assert!(settled, "{what} not Ready: {last:?}");
        };
        for object in objects {
            let kind = object
                .lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .expect("kind")
                .to_ascii_lowercase();
            let name = object
                .lines()
                .find_map(|l| l.trim().strip_prefix("name: "))
                .expect("name");
            accepted(format!("{kind}/{name}"));
        }
        // The DNSServer itself stays Ready=False (PodsRollingOut): no kubelet runs its
        // Deployment's Pods here; this test runs the server itself, so it waits for the
        // published config instead.
        nameplane_e2e::coredns::wait_published(namespace, "dns");
        let mut dns = DnsServer::start(
            &format!("dns-{namespace}"),
            &format!("{namespace}/dns-config"),
            &[],
        );
        dns.wait_ready(READY);
        Self {
            namespace: namespace.to_owned(),
            _operator: operator,
            dns,
        }
    }

    fn apply(&self, yaml: &str) {
        apply(&self.namespace, yaml);
    }
}

// ---------------------------------------------------------------------------------------
// Zones
// ---------------------------------------------------------------------------------------

/// The `DNSZone` `shop` for `shop.test`, with `extra` record lines.
fn shop_zone(extra: &str) -> String {
    format!(
        r#"apiVersion: nameplane.io/v1alpha1
kind: DNSZone
metadata:
  name: shop
spec:
  zone: shop.test
  ttlSeconds: 120
  allowTransfer: ["127.0.0.1"]
  records:
  - {{name: "@", type: A, ttlSeconds: 300, values: ["192.0.2.10"]}}
  - {{name: "@", type: MX, values: ["10 mail"]}}
  - {{name: "@", type: TXT, values: ["v=spf1 -all"]}}
  - {{name: "@", type: CAA, values: ['0 issue "letsencrypt.org"']}}
  - {{name: mail, type: A, values: ["192.0.2.25"]}}
  - {{name: db, type: AAAA, values: ["2001:db8::10"]}}
  - {{name: www, type: CNAME, values: ["front"]}}
  - {{name: front, type: CNAME, values: ["@"]}}
  - {{name: "*.apps", type: A, ttlSeconds: 60, values: ["192.0.2.50"]}}
  - {{name: _https._tcp, type: SRV, values: ["10 5 443 mail"]}}
  - {{name: eu, type: NS, values: ["ns1.eu"]}}
  - {{name: ns1.eu, type: A, values: ["192.0.2.53"]}}
{extra}"#
    )
}

const REVERSE_ZONE: &str = r#"apiVersion: nameplane.io/v1alpha1
kind: DNSZone
metadata:
  name: reverse
spec:
  zone: 2.0.192.in-addr.arpa
  records:
  - {name: "10", type: PTR, values: ["shop.test."]}
"#;

fn soa_serial(port: u16) -> u32 {
    let soa = dig(port, "shop.test", "SOA", Transport::Udp);
    let data = soa.data("SOA");
    let serial = data.first().and_then(|d| d.split_whitespace().nth(2));
    serial
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SOA serial in {}", soa.raw))
}

#[test]
fn a_zone_answers_every_record_type_and_transfers_only_to_allowed_clients() {
    let stack = Stack::start("e2e-zones", "", &[&shop_zone(""), REVERSE_ZONE]);
    let port = stack.dns.port;

    for transport in [Transport::Udp, Transport::Tcp] {
        let apex = dig(port, "Shop.TEST", "A", transport);
        assert_eq!(apex.status, "NOERROR", "{}", apex.raw);
        assert!(apex.raw.contains(" aa"), "authoritative: {}", apex.raw);
        assert_eq!(a_records(&apex), ["192.0.2.10"]);
    }
    let cases: [(&str, &str, &str, &[&str]); 9] = [
        ("db.shop.test", "AAAA", "NOERROR", &["2001:db8::10"]),
        ("shop.test", "MX", "NOERROR", &["10 mail.shop.test."]),
        ("shop.test", "TXT", "NOERROR", &["\"v=spf1 -all\""]),
        (
            "shop.test",
            "CAA",
            "NOERROR",
            &["0 issue \"letsencrypt.org\""],
        ),
        (
            "_https._tcp.shop.test",
            "SRV",
            "NOERROR",
            &["10 5 443 mail.shop.test."],
        ),
        ("x.apps.shop.test", "A", "NOERROR", &["192.0.2.50"]),
        ("10.2.0.192.in-addr.arpa", "PTR", "NOERROR", &["shop.test."]),
        ("nope.shop.test", "A", "NXDOMAIN", &[]),
        ("mail.shop.test", "AAAA", "NOERROR", &[]),
    ];
    for (name, rtype, status, want) in cases {
        let got = dig(port, name, rtype, Transport::Udp);
        assert_eq!(got.status, status, "{name} {rtype}: {}", got.raw);
        assert_eq!(got.data(rtype), want, "{name} {rtype}: {}", got.raw);
    }
    // CNAME chain inside the zone.
    let www = dig(port, "www.shop.test", "A", Transport::Udp);
    assert_eq!(
        www.data("CNAME"),
        ["front.shop.test.", "shop.test."],
        "{}",
        www.raw
    );
    assert_eq!(a_records(&www), ["192.0.2.10"]);
    // A delegation: a referral, not an answer.
    let eu = dig_raw(port, &["host.eu.shop.test", "A", "+norecurse"]);
    assert!(eu.contains("status: NOERROR"), "{eu}");
    assert!(!eu.contains(" aa"), "a referral is not authoritative: {eu}");
    assert!(
        eu.contains("ns1.eu.shop.test.") && eu.contains("192.0.2.53"),
        "NS and glue: {eu}"
    );

    // AXFR from 127.0.0.1 (allowed), and from 127.0.0.2 (not allowed).
    let axfr = dig_raw(port, &["shop.test", "AXFR", "+nocomments", "+nostats"]);
    let records: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    assert!(records.first().is_some_and(|l| l.contains("SOA")), "{axfr}");
    assert!(records.last().is_some_and(|l| l.contains("SOA")), "{axfr}");
    assert_eq!(
        records.len(),
        12 + 1 + 2,
        "12 records, the generated NS, SOA twice: {axfr}"
    );
    let refused = dig_raw(port, &["-b", "127.0.0.2", "shop.test", "AXFR"]);
    assert!(refused.contains("Transfer failed"), "{refused}");
    assert!(!refused.contains("192.0.2.10"), "{refused}");
    // dig always transfers over TCP; ask over UDP directly.
    let over_udp = nameplane_e2e::query_udp(
        port,
        "shop.test.",
        hickory_proto::rr::RecordType::AXFR,
        Duration::from_secs(2),
    )
    .expect("an answer over UDP");
    assert_eq!(over_udp.rcode, "REFUSED", "{over_udp:?}");
    assert!(over_udp.answers.is_empty());

    // A change to the zone bumps the serial and is served without a restart.
    let serial = soa_serial(port);
    let changed = Instant::now();
    stack.apply(&shop_zone(
        "  - {name: new, type: A, values: [\"192.0.2.77\"]}\n",
    ));
    wait_for("the new record", Duration::from_secs(20), || {
        (a_records(&dig(port, "new.shop.test", "A", Transport::Udp)) == ["192.0.2.77"])
            .then_some(())
    });
    eprintln!(
        "zone change served {:?} after kubectl apply",
        changed.elapsed()
    );
    assert!(
        soa_serial(port) > serial,
        "the SOA serial grows with the zone"
    );
    let mut stack = stack;
    stack.dns.process.assert_running();
}

/// A Knot secondary for `zone`, transferring from 127.0.0.1:`primary`.
struct Knot {
    process: Process,
    port: u16,
    dir: PathBuf,
}

impl Knot {
    fn start(zone: &str, primary: u16) -> Self {
        let port = free_port();
        let dir = e2e_dir().join(format!("knot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("zones")).expect("knot dir");
        let d = dir.display();
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
             control:\n  listen: \"{d}/knot.sock\"\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n  storage: \"{d}/db\"\n\
             remote:\n  - id: primary\n    address: 127.0.0.1@{primary}\n\
             template:\n  - id: default\n    storage: \"{d}/zones\"\n\
             zone:\n  - domain: {zone}\n    master: primary\n"
        );
        let process = start_knotd("knotd", &dir, &conf);
        Self { process, port, dir }
    }

    fn control(&self, args: &[&str]) -> String {
        let knotc = ["/usr/sbin/knotc", "/usr/bin/knotc"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("knotc is installed");
        let out = std::process::Command::new(knotc)
            .arg("-c")
            .arg(self.dir.join("knot.conf"))
            .args(args)
            .output()
            .expect("knotc runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

#[test]
fn knot_transfers_the_zone_as_a_secondary_and_follows_serial_changes() {
    let stack = Stack::start("e2e-knot", "", &[&shop_zone("")]);
    let primary = stack.dns.port;
    let mut knot = Knot::start("shop.test", primary);
    // Knot answers what it transferred (AXFR at start-up, from 127.0.0.1).
    let answer = wait_for(
        "Knot to serve the transferred zone",
        Duration::from_secs(20),
        || {
            let r = dig(knot.port, "www.shop.test", "A", Transport::Udp);
            (r.status == "NOERROR" && !r.answers.is_empty()).then_some(r)
        },
    );
    assert_eq!(a_records(&answer), ["192.0.2.10"], "{}", answer.raw);
    assert_eq!(
        dig(knot.port, "x.apps.shop.test", "A", Transport::Udp).data("A"),
        ["192.0.2.50"],
        "the wildcard travelled as a record"
    );
    let serial = soa_serial(primary);
    assert_eq!(soa_serial(knot.port), serial);

    // Change the zone; Knot's refresh sees the higher serial and transfers again (it asks
    // for IXFR; nameplane answers with the whole zone, which RFC 1995 allows).
    stack.apply(&shop_zone(
        "  - {name: added, type: A, values: [\"192.0.2.88\"]}\n",
    ));
    wait_for(
        "the primary to serve the change",
        Duration::from_secs(20),
        || (soa_serial(primary) > serial).then_some(()),
    );
    wait_for(
        "Knot to transfer the change",
        Duration::from_secs(20),
        || {
            knot.control(&["zone-refresh", "shop.test"]);
            std::thread::sleep(Duration::from_millis(300));
            (dig(knot.port, "added.shop.test", "A", Transport::Udp).data("A") == ["192.0.2.88"])
                .then_some(())
        },
    );
    assert_eq!(soa_serial(knot.port), soa_serial(primary));
    let log = knot.process.log();
    assert!(
        log.contains("receiving AXFR-style IXFR"),
        "Knot asked for IXFR and took the whole zone: {log}"
    );
    knot.process.assert_running();
}

// ---------------------------------------------------------------------------------------
// Forwarding and the cache
// ---------------------------------------------------------------------------------------

#[test]
fn an_upstream_killed_mid_test_fails_over_then_serves_stale_then_servfail() {
    let ns = "e2e-forward";
    ensure_namespace(ns, &[]);
    let first = zone_server(ns, "upstream-1", vec![example_test("192.0.2.1", 2)], None);
    let second = zone_server(ns, "upstream-2", vec![example_test("192.0.2.2", 2)], None);
    let first_port = first.port;
    let stub = format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata:\n  name: example-test\nspec:\n  domain: example.test\n  servers: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n  policy: Sequential\n",
        first.port, second.port
    );
    let stack = Stack::start(
        ns,
        "  cache: {capacity: 10000, maxTtlSeconds: 3600, denialTtlSeconds: 30, serveStaleSeconds: 8}\n",
        &[&stub],
    );
    let forwarder = &stack.dns;
    let port = forwarder.port;

    let answer = dig(port, "www.example.test", "A", Transport::Udp);
    assert_eq!(
        a_records(&answer),
        ["192.0.2.1"],
        "sequential: the first upstream"
    );
    assert!(
        answer.raw.contains(" ra"),
        "RA on forwarded answers: {}",
        answer.raw
    );
    assert!(!answer.raw.contains(" aa"), "{}", answer.raw);
    let tcp = dig(port, "mail.example.test", "A", Transport::Tcp);
    assert_eq!(tcp.data("A"), ["192.0.2.25"]);

    // Kill the first upstream. After the TTL, the answer comes from the second one.
    drop(first);
    std::thread::sleep(Duration::from_millis(2100));
    let (failover, took) = timed_dig(port, "www.example.test", "A");
    assert_eq!(a_records(&failover), ["192.0.2.2"], "{}", failover.raw);
    eprintln!("failover answer after the first upstream died: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "failover costs no timeout: {took:?}"
    );
    let stored = Instant::now();

    // Kill the second one too. The expired answer is served stale, with TTL 30.
    drop(second);
    std::thread::sleep(Duration::from_millis(2100));
    let (stale, took) = timed_dig(port, "www.example.test", "A");
    assert_eq!(stale.status, "NOERROR", "{}", stale.raw);
    assert_eq!(a_records(&stale), ["192.0.2.2"], "{}", stale.raw);
    assert_eq!(
        stale.answers[0].1, 30,
        "stale TTL (RFC 8767): {}",
        stale.raw
    );
    eprintln!("stale answer with every upstream dead: {took:?}");

    // A name never cached fails at once.
    let (never, took) = timed_dig(port, "mail2.example.test", "A");
    assert_eq!(never.status, "SERVFAIL", "{}", never.raw);
    assert!(
        took < Duration::from_millis(2500),
        "SERVFAIL promptly: {took:?}"
    );

    // Past TTL (2 s) + stale window (8 s) the entry is gone: SERVFAIL.
    let window_end = stored + Duration::from_secs(2 + 8);
    std::thread::sleep(
        window_end.saturating_duration_since(Instant::now()) + Duration::from_millis(500),
    );
    let (gone, took) = timed_dig(port, "www.example.test", "A");
    assert_eq!(gone.status, "SERVFAIL", "{}", gone.raw);
    eprintln!("SERVFAIL after the stale window: {took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");

    let metrics = forwarder.metrics();
    assert!(
        metric_sum(&metrics, "coredns_cache_served_stale_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "coredns_forward_healthcheck_broken_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "coredns_proxy_healthcheck_failures_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "coredns_cache_entries") >= 1.0,
        "{metrics}"
    );

    // The first upstream comes back on its port: the health probes notice, answers resume.
    let revived = zone_server(
        ns,
        "upstream-1",
        vec![example_test("192.0.2.1", 2)],
        Some(first_port),
    );
    let recovered = Instant::now();
    wait_for(
        "answers after the upstream recovers",
        Duration::from_secs(10),
        || {
            (a_records(&dig(port, "www.example.test", "A", Transport::Udp)) == ["192.0.2.1"])
                .then_some(())
        },
    );
    eprintln!(
        "recovered {:?} after the upstream came back",
        recovered.elapsed()
    );
    drop(revived);
}

/// Stands where the forwarder's upstream should be: answers every query first with forged
/// replies (wrong id from the right port; right id from a wrong port; another question),
/// all claiming 203.0.113.66, then relays the query to the real upstream and its answer.
fn forging_relay(front: UdpSocket, upstream: u16) {
    let side = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let relay = UdpSocket::bind("127.0.0.1:0").expect("bind");
    relay
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, from)) = front.recv_from(&mut buf) else {
            return;
        };
        let query = buf[..len].to_vec();
        if query.len() < 12 {
            continue;
        }
        let forge = |id: [u8; 2], question: &[u8]| {
            // Header: id, QR+RD, RA, 1 question, 1 answer; the question; an A record.
            let mut reply = vec![id[0], id[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            reply.extend_from_slice(question);
            reply.extend_from_slice(&[
                0xc0, 0x0c, 0, 1, 0, 1, 0, 1, 0x51, 0x80, 0, 4, 203, 0, 113, 66,
            ]);
            reply
        };
        let question = &query[12..];
        let id = [query[0], query[1]];
        let wrong_id = [query[0] ^ 0x5a, query[1]];
        // "bank.test." A IN
        let other_question = [
            4, b'b', b'a', b'n', b'k', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ];
        let _ = front.send_to(&forge(wrong_id, question), from);
        let _ = side.send_to(&forge(id, question), from);
        let _ = front.send_to(&forge(id, &other_question), from);
        let _ = relay.send_to(&query, ("127.0.0.1", upstream));
        if let Ok((len, _)) = relay.recv_from(&mut buf) {
            let _ = front.send_to(&buf[..len], from);
        }
    }
}

#[test]
fn forged_replies_are_ignored_and_the_real_answer_is_served() {
    let ns = "e2e-forged";
    ensure_namespace(ns, &[]);
    let upstream = zone_server(
        ns,
        "real-upstream",
        vec![example_test("192.0.2.1", 60)],
        None,
    );
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let front_port = front.local_addr().expect("addr").port();
    let upstream_port = upstream.port;
    std::thread::spawn(move || forging_relay(front, upstream_port));

    let stack = Stack::start(
        ns,
        &format!("  upstreams: [\"127.0.0.1:{front_port}\"]\n"),
        &[],
    );
    let forwarder = &stack.dns;

    for i in 0..10 {
        let name = if i % 2 == 0 {
            "www.example.test".to_owned()
        } else {
            format!("n{i}.example.test")
        };
        let answer = dig(forwarder.port, &name, "A", Transport::Udp);
        assert!(
            !answer.raw.contains("203.0.113.66"),
            "a forged answer got through: {}",
            answer.raw
        );
        if i % 2 == 0 {
            assert_eq!(a_records(&answer), ["192.0.2.1"], "{}", answer.raw);
        } else {
            assert_eq!(answer.status, "NXDOMAIN", "{}", answer.raw);
        }
    }
    let metrics = forwarder.metrics();
    let rejected = |reason: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("nameplane_forward_rejected_replies_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(rejected("id"), 10.0, "{metrics}");
    assert_eq!(rejected("question"), 10.0, "{metrics}");
}

#[test]
fn the_cache_answers_repeats_and_coalesces_bursts() {
    let ns = "e2e-cache";
    ensure_namespace(ns, &[]);
    let upstream = zone_server(
        ns,
        "cache-upstream",
        vec![example_test("192.0.2.1", 300)],
        None,
    );
    let stack = Stack::start(
        ns,
        &format!(
            "  upstreams: [\"127.0.0.1:{}\"]\n  cache: {{capacity: 10000}}\n",
            upstream.port
        ),
        &[],
    );
    let forwarder = &stack.dns;

    let upstream_queries = || metric_sum(&upstream.metrics(), "coredns_dns_requests_total");
    let before = upstream_queries();
    // A burst of 50 clients asking one name at once.
    let port = forwarder.port;
    let threads: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                nameplane_e2e::query_udp(
                    port,
                    "burst.example.test.",
                    hickory_proto::rr::RecordType::A,
                    Duration::from_secs(3),
                )
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().is_some_and(|a| a.rcode == "NXDOMAIN"))
    );
    let burst = upstream_queries() - before;
    eprintln!("50 simultaneous identical queries reached the upstream {burst} time(s)");
    assert!(burst <= 5.0, "{burst} upstream queries for one name");

    let first = dig(port, "www.example.test", "A", Transport::Udp);
    std::thread::sleep(Duration::from_millis(1100));
    let second = dig(port, "www.example.test", "A", Transport::Udp);
    assert_eq!(first.answers[0].1, 300);
    assert!(second.answers[0].1 < 300, "TTL counts down: {}", second.raw);
    let metrics = forwarder.metrics();
    assert!(
        metric_sum(&metrics, "coredns_cache_hits_total") >= 1.0,
        "{metrics}"
    );
    eprintln!(
        "burst: {} coalesced in flight, the rest from the denial cache",
        metric_sum(&metrics, "nameplane_forward_coalesced_total")
    );

    // Latency of cache hits against the upstream answering the same name itself.
    let measure = |port: u16, name: &str| {
        let samples: Vec<Duration> = (0..1000)
            .map(|_| {
                let started = Instant::now();
                let answer = nameplane_e2e::query_udp(
                    port,
                    name,
                    hickory_proto::rr::RecordType::A,
                    Duration::from_secs(2),
                )
                .expect("an answer");
                assert_eq!(answer.rcode, "NOERROR");
                started.elapsed()
            })
            .collect();
        (
            nameplane_e2e::quantile(&samples, 0.5),
            nameplane_e2e::quantile(&samples, 0.99),
        )
    };
    let (hit_p50, hit_p99) = measure(port, "www.example.test.");
    let (zone_p50, zone_p99) = measure(upstream.port, "www.example.test.");
    eprintln!(
        "1000 sequential UDP queries: cache hits p50 {hit_p50:?} p99 {hit_p99:?}; \
         the upstream's own zone answer p50 {zone_p50:?} p99 {zone_p99:?}"
    );
    assert!(hit_p99 < Duration::from_millis(50), "{hit_p99:?}");
}

#[test]
fn the_in_flight_limit_bounds_what_a_dead_upstream_costs() {
    let ns = "e2e-inflight";
    ensure_namespace(ns, &[]);
    // Bound but never read: every query to it waits for its whole attempt.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let stub = format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata:\n  name: slow\nspec:\n  domain: slow.test\n  servers: [\"127.0.0.1:{silent_port}\"]\n  maxConcurrent: 200\n"
    );
    let stack = Stack::start(ns, "", &[&stub]);
    let port = stack.dns.port;
    let rss_before = stack.dns.process.rss_kib().expect("rss");

    // 2000 queries for distinct names within half a second (in small batches, so the
    // server's socket buffer does not overflow), all while the first 200 wait upstream.
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sent = Instant::now();
    let mut rss_peak = rss_before;
    for i in 0..2000u16 {
        let name = format!("n{i}.slow.test.");
        let mut query = vec![(i >> 8) as u8, i as u8, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.trim_end_matches('.').split('.') {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        client.send_to(&query, ("127.0.0.1", port)).expect("send");
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(5));
            rss_peak = rss_peak.max(stack.dns.process.rss_kib().expect("rss"));
        }
    }
    let sending = sent.elapsed();
    assert!(
        sending < Duration::from_millis(900),
        "sending took {sending:?}"
    );
    // Every accepted query ends in SERVFAIL after its one-second attempt; wait for them.
    std::thread::sleep(Duration::from_millis(2500));
    let metrics = stack.dns.metrics();
    let rejects = metric_sum(&metrics, "coredns_forward_max_concurrent_rejects_total");
    let servfails: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("coredns_dns_responses_total")
                && l.contains("rcode=\"SERVFAIL\"")
                && l.contains("plugin=\"forward\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!(
        "2000 queries at a silent upstream in {sending:?}: {servfails} waited upstream (limit 200), \
         {rejects} REFUSED at once; RSS {rss_before} KiB before, at most {rss_peak} KiB with \
         the limit full"
    );
    assert_eq!(servfails, 200.0, "exactly the limit waited upstream");
    assert!(rejects >= 1000.0, "{rejects} rejected");
    assert!(
        rss_peak.saturating_sub(rss_before) < 32 * 1024,
        "memory grew by {} KiB",
        rss_peak.saturating_sub(rss_before)
    );
    // The slots came back when the attempts timed out: a new query is taken again.
    let (later, took) = timed_dig(port, "again.slow.test", "A");
    assert_eq!(later.status, "SERVFAIL", "{}", later.raw);
    assert!(
        took >= Duration::from_millis(900),
        "it waited for the upstream: {took:?}"
    );
    drop(silent);
}
