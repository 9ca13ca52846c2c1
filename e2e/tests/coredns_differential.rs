//! nameplane beside CoreDNS on the real control plane: the same questions get the same
//! answers.
//!
//! CoreDNS (v1.14.7, built from its Go module as the bench builds it) runs the kubeadm default
//! Corefile (`operator/tests/import/kubeadm-1.35/Corefile`, moved onto loopback by
//! [`loopback_corefile`](nameplane_e2e::coredns::loopback_corefile), `forward .` reading a
//! resolv.conf that names a Knot upstream on 127.0.213.1:53 instead of the host's). nameplane
//! runs what `nameplane import` makes of the same Corefile (run by the test), applied
//! unchanged with `kubectl` to this cluster, published by the real operator and served by
//! `nameplane-dns`, which reads the same resolv.conf (`--resolv-conf`, standing in for the
//! Pod's /etc/resolv.conf, since the import says `upstreamsFromResolvConf`). Both read the
//! same Services, EndpointSlices and Pods. Every question of [`questions`] goes to both over
//! UDP and TCP; the rcode and the answer set (owner, type, data; TTLs, order and the SOA serial
//! aside) must be equal, except for the named, documented entries of [`EXCEPTIONS`], which must
//! still differ (an exception that stopped being one fails the test too, so the list stays
//! true). The guide (`docs/migrate-from-coredns.md`) lists the same exceptions.
//!
//! Needs `make cluster-up`, `cargo build --bins` and `knotd`; CoreDNS is built on first use
//! into the harness cache (`bench/scripts/build-coredns.sh`). `make e2e` does all of it.

use std::time::Duration;

use nameplane_e2e::coredns::{
    CoreDns, KnotUpstream, LoopbackSite, imported_dnsserver, wait_published,
};
use nameplane_e2e::{
    DnsServer, FakePod, Kube, NamespaceGuard, Operator, Transport, apply, dig_with, free_port,
    kubectl_ok, kubectl_with_stdin, reverse_name, wait_for,
};

/// Namespace of the Services, Pods and the `DNSServer`.
const NS: &str = "e2e-coredns-diff";
/// A second namespace, with a Service of another name (wrong-namespace questions).
const OTHER_NS: &str = "e2e-coredns-diff-other";

/// The Knot upstream's address in both servers' resolv.conf (port 53).
const RESOLVER: &str = "127.0.213.1";

/// How long the servers get to start and sync.
const READY: Duration = Duration::from_secs(60);

/// Deliberate differences: (name, type, why); `{NS}` in a name stands for [`NS`]. Each must
/// really differ from CoreDNS (checked), and is listed in docs/migrate-from-coredns.md.
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "ext-missing.{NS}.svc.cluster.local",
        "A",
        "an ExternalName whose outside target does not exist: both answer the CNAME; nameplane \
         gives the rcode of the chain's last name (NXDOMAIN, RFC 6604 2.1, what a recursive \
         resolver and the client's own resolver following the CNAME conclude), CoreDNS 1.14.7 \
         answers NOERROR (its kubernetes plugin drops the upstream's rcode)",
    ),
    (
        "cluster.local",
        "NS",
        "the zone's NS target: nameplane always names ns.dns.<zone> (with the addresses of the \
         Service in front of it); CoreDNS names the Service whose endpoints are its own \
         addresses (kube-dns.kube-system.svc.<zone> in a cluster), ns.dns.<zone> if it finds \
         none, and no record at all when bound to loopback as here (its boundIPs skips loopback \
         and cannot parse a `bind` address), so CoreDNS answers NODATA in this test",
    ),
];

/// Knot's zones: names outside the cluster (through `forward .`), and reverse zones for
/// addresses that are not cluster addresses (through `fallthrough in-addr.arpa`).
fn upstream_zones() -> Vec<(&'static str, String)> {
    vec![
        (
            "example.test",
            "$ORIGIN example.test.\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\n\
             ns A 192.0.2.53\nwww A 192.0.2.10\nwww AAAA 2001:db8::10\n@ MX 10 mail\n\
             mail A 192.0.2.25\ntxt TXT \"hello from knot\"\nalias CNAME www\n"
                .into(),
        ),
        (
            "2.0.192.in-addr.arpa",
            "$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 60\n@ SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n\
             @ NS ns.example.test.\n10 PTR www.example.test.\n"
                .into(),
        ),
        (
            // Pod addresses no Pod has: a cluster range, but not a cluster address.
            "71.244.10.in-addr.arpa",
            "$ORIGIN 71.244.10.in-addr.arpa.\n$TTL 60\n@ SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n\
             @ NS ns.example.test.\n250 PTR outside.example.test.\n"
                .into(),
        ),
    ]
}

/// The cluster objects both servers read.
fn cluster_objects(kube: &Kube) -> String {
    let pods = [
        FakePod::new("web-0", "web", &["10.244.70.1"], true),
        FakePod::new("web-1", "web", &["10.244.70.2"], true),
        FakePod::new("web-2", "web", &["10.244.70.3"], false),
        FakePod::new("db-0", "db", &["10.244.70.11"], true).with_hostname("db-0", "db"),
        FakePod::new("db-1", "db", &["10.244.70.12"], true),
    ];
    kube.create_pods(NS, &pods);
    let services = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\n\
         spec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n  - {{name: dns, port: 53, protocol: UDP}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {NS}}}\n\
         spec:\n  clusterIP: None\n  selector: {{app: db}}\n  ports:\n  - {{name: pg, port: 5432, protocol: TCP}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: empty, namespace: {NS}}}\n\
         spec:\n  selector: {{app: nothing}}\n  ports:\n  - {{name: http, port: 80}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: empty-headless, namespace: {NS}}}\n\
         spec:\n  clusterIP: None\n  selector: {{app: nothing}}\n  ports:\n  - {{name: http, port: 80}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: ext, namespace: {NS}}}\n\
         spec:\n  type: ExternalName\n  externalName: www.example.test\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: ext-missing, namespace: {NS}}}\n\
         spec:\n  type: ExternalName\n  externalName: missing.example.test\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: inner, namespace: {NS}}}\n\
         spec:\n  type: ExternalName\n  externalName: web.{NS}.svc.cluster.local\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: other, namespace: {OTHER_NS}}}\n\
         spec:\n  ports:\n  - {{name: http, port: 80}}\n"
    );
    let out = kubectl_with_stdin(&["apply", "-f", "-"], Some(&services));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The EndpointSlices the controller manager writes for the ready Pods.
    wait_for("web's and db's EndpointSlices", READY, || {
        let ready = |svc: &str| {
            kubectl_ok(&[
                "get",
                "endpointslices",
                "-n",
                NS,
                "-l",
                &format!("kubernetes.io/service-name={svc}"),
                "-o",
                "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}",
            ])
            .split_whitespace()
            .count()
        };
        (ready("web") == 2 && ready("db") == 2).then_some(())
    });
    kubectl_ok(&[
        "get",
        "service",
        "web",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
}

/// The questions: every kind of name the kubeadm Corefile answers, and the ways to miss.
fn questions(web_ip: &str) -> Vec<(String, &'static str)> {
    let z = "cluster.local";
    let svc = |name: &str| format!("{name}.{NS}.svc.{z}");
    let mut q: Vec<(String, &'static str)> = vec![
        // ClusterIP Service: addresses, SRV by port, types it has not.
        (svc("web"), "A"),
        (svc("web"), "AAAA"),
        (svc("web"), "SRV"),
        (svc("web"), "TXT"),
        (format!("_http._tcp.{}", svc("web")), "SRV"),
        (format!("_dns._udp.{}", svc("web")), "SRV"),
        (format!("_http._udp.{}", svc("web")), "SRV"),
        (format!("_nope._tcp.{}", svc("web")), "SRV"),
        // Its endpoints by their dashed address (CoreDNS names them so).
        (format!("10-244-70-1.{}", svc("web")), "A"),
        (format!("10-244-70-3.{}", svc("web")), "A"),
        // Headless: ready endpoints, the hostname, SRV per endpoint.
        (svc("db"), "A"),
        (svc("db"), "SRV"),
        (format!("db-0.{}", svc("db")), "A"),
        (format!("10-244-70-12.{}", svc("db")), "A"),
        (format!("_pg._tcp.{}", svc("db")), "SRV"),
        // Services without endpoints.
        (svc("empty"), "A"),
        (svc("empty-headless"), "A"),
        // ExternalName inside and outside the cluster.
        (svc("inner"), "A"),
        (svc("inner"), "CNAME"),
        (svc("ext"), "A"),
        (svc("ext"), "AAAA"),
        (svc("ext"), "CNAME"),
        (svc("ext-missing"), "A"),
        // Pods (`pods insecure`): any dashed address in a namespace that exists.
        (format!("10-244-70-1.{NS}.pod.{z}"), "A"),
        (format!("10-244-70-99.{NS}.pod.{z}"), "A"),
        (format!("10-244-70-1.{NS}.pod.{z}"), "AAAA"),
        (format!("10-244-70-1.no-such-namespace.pod.{z}"), "A"),
        (format!("not-an-address.{NS}.pod.{z}"), "A"),
        // Missing names, wrong namespace, the zone's structure.
        (format!("nosuch.{NS}.svc.{z}"), "A"),
        (format!("web.{OTHER_NS}.svc.{z}"), "A"),
        (format!("other.{OTHER_NS}.svc.{z}"), "A"),
        (format!("other.{NS}.svc.{z}"), "A"),
        (format!("web.no-such-namespace.svc.{z}"), "A"),
        (format!("{NS}.svc.{z}"), "A"),
        (format!("svc.{z}"), "A"),
        (format!("pod.{z}"), "A"),
        (z.to_owned(), "SOA"),
        (z.to_owned(), "NS"),
        (format!("dns-version.{z}"), "TXT"),
        (format!("a.b.web.{NS}.svc.{z}"), "A"),
        // `.svc` short forms as a stub resolver without search list sends them: not under
        // the cluster domain, so both forward them.
        (format!("web.{NS}.svc"), "A"),
        (format!("web.{NS}"), "A"),
        // Reverse: a ClusterIP, endpoints, and addresses that are not cluster addresses
        // (to Knot through the fallthrough).
        (reverse_name(web_ip), "PTR"),
        (reverse_name("10.244.70.1"), "PTR"),
        (reverse_name("10.244.70.11"), "PTR"),
        (reverse_name("10.244.70.12"), "PTR"),
        (reverse_name("10.244.71.250"), "PTR"),
        (reverse_name("192.0.2.10"), "PTR"),
        (reverse_name("192.0.2.99"), "PTR"),
        // External names through the upstream.
        ("www.example.test".into(), "A"),
        ("www.example.test".into(), "AAAA"),
        ("www.example.test".into(), "SRV"),
        ("alias.example.test".into(), "A"),
        ("example.test".into(), "MX"),
        ("txt.example.test".into(), "TXT"),
        ("nosuch.example.test".into(), "A"),
        ("elsewhere.test".into(), "A"),
    ];
    q.dedup();
    q
}

/// What the comparison looks at: the rcode and the answer set (owner, type, data; lower case,
/// sorted, no TTL, the SOA serial masked since each server numbers its own zone).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    rcode: String,
    answers: Vec<String>,
}

fn ask(port: u16, name: &str, rtype: &str, transport: Transport) -> Seen {
    let r = dig_with(port, name, rtype, transport, &["+timeout=3"]);
    let mut answers: Vec<String> = r
        .answers
        .iter()
        .map(|(owner, _ttl, rtype, data)| {
            let data = if rtype == "SOA" {
                let mut f: Vec<&str> = data.split_whitespace().collect();
                if f.len() == 7 {
                    f[2] = "SERIAL";
                }
                f.join(" ")
            } else {
                data.clone()
            };
            format!("{owner} {rtype} {data}").to_ascii_lowercase()
        })
        .collect();
    answers.sort();
    Seen {
        rcode: r.status,
        answers,
    }
}

#[test]
fn nameplane_answers_the_kubeadm_corefile_questions_as_coredns_does() {
    nameplane_e2e::install_crds();
    let _operator = Operator::start(
        "operator-coredns-diff",
        &["--lease-name", "lease-coredns-diff"],
    );
    let _namespaces = NamespaceGuard::fresh(&[(NS, &[]), (OTHER_NS, &[])]);
    let kube = Kube::connect();
    let zones = upstream_zones();
    let zone_refs: Vec<(&str, &str)> = zones.iter().map(|(o, t)| (*o, t.as_str())).collect();
    let knot = KnotUpstream::start("knotd-coredns-diff", RESOLVER, &zone_refs);
    let web_ip = cluster_objects(&kube);

    // CoreDNS on the kubeadm Corefile.
    let mut coredns = CoreDns::start(
        "coredns-diff",
        LoopbackSite::new("127.0.0.1", free_port(), &knot.resolv_conf),
    );
    coredns.wait_ready(READY);

    // nameplane on what `nameplane import` made of it, applied unchanged; the DNS server
    // reads the same resolv.conf as CoreDNS (`--resolv-conf`, a Pod's /etc/resolv.conf).
    let server = imported_dnsserver(NS);
    let name = server["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_owned();
    assert_eq!(
        server["spec"]["upstreamsFromResolvConf"], true,
        "the import forwards to the resolv.conf nameservers, as the Corefile does"
    );
    apply(NS, &server.to_string());
    wait_published(NS, &name);
    let resolv_conf = knot.resolv_conf.display().to_string();
    let mut nameplane = DnsServer::start(
        "dns-coredns-diff",
        &format!("{NS}/{name}-config"),
        &["--resolv-conf", &resolv_conf],
    );
    nameplane.wait_ready(READY);

    let questions = questions(&web_ip);
    let mut same = 0;
    let mut differences = Vec::new();
    let mut exceptions_seen = Vec::new();
    for (name, rtype) in &questions {
        for transport in [Transport::Udp, Transport::Tcp] {
            let theirs = ask(coredns.site.port, name, rtype, transport);
            let ours = ask(nameplane.port, name, rtype, transport);
            assert_ne!(
                theirs.rcode, "NO-RESPONSE",
                "CoreDNS did not answer {name} {rtype}"
            );
            let exception = EXCEPTIONS
                .iter()
                .find(|(n, t, _)| n.replace("{NS}", NS) == *name && t == rtype);
            match (theirs == ours, exception) {
                (true, None) => same += 1,
                (false, Some((_, _, why))) => exceptions_seen.push(format!(
                    "{name} {rtype} {transport:?}: {why}\n  CoreDNS:   {theirs:?}\n  nameplane: {ours:?}"
                )),
                (false, None) => differences.push(format!(
                    "{name} {rtype} {transport:?}\n  CoreDNS:   {theirs:?}\n  nameplane: {ours:?}"
                )),
                (true, Some(_)) => differences.push(format!(
                    "{name} {rtype} {transport:?} is listed as an exception but both now answer {ours:?}: remove it from EXCEPTIONS and the guide"
                )),
            }
        }
    }
    eprintln!(
        "{} questions x UDP/TCP: {same} same, {} documented exceptions, {} differences",
        questions.len(),
        exceptions_seen.len(),
        differences.len()
    );
    for e in &exceptions_seen {
        eprintln!("exception: {e}");
    }
    coredns.process.assert_running();
    nameplane.process.assert_running();
    assert!(
        differences.is_empty(),
        "nameplane and CoreDNS differ:\n{}",
        differences.join("\n")
    );
    assert!(same > 0);
}
