//! The tenant matrix across every answering path (issue 14): two tenants, each with a
//! DNSPolicy that allows only its own names, ask about their own and each other's names by
//! every path that can answer — cluster names (A, AAAA, SRV, headless, hostnames), tenant
//! zones (A, AAAA, TXT, MX, SRV, CNAME), a zone transfer, PTR, a forwarded name (through a
//! real Knot upstream on loopback) asked twice so the second answer comes from the cache,
//! a forwarded CNAME into the other tenant's name, autopath, and a tenant rewrite — and no
//! client ever gets an answer that carries the other tenant's names or addresses, while every
//! allowed question is answered. Then a Pod address is reused: tenant a's client Pod
//! finishes (phase `Succeeded`) and a Running Pod of tenant b gets its IP; the whole matrix
//! runs again with that address as tenant b's, and it must hold again.
//!
//! Clients ask from their Pod's address with `dig -b` (all of 127/8 is loopback on Linux);
//! the server identifies them through its Pod watch. Everything here (namespaces
//! `e2e-tm-*`, addresses 127.0.31.x, 10.244.131.x) is this file's own.
//!
//! Needs `make cluster-up`, `cargo build --bins` and `knotd`; `make e2e` does all three.

use nameplane_e2e::{
    DigResult, DnsServer, FakePod, Kube, NamespaceGuard, Operator, Process, Transport, apply,
    dig_raw, dig_with, e2e_dir, free_port, install_crds, jsonpath, kubectl_ok, poll_until,
    reverse_name, start_knotd, wait_ready_condition,
};
use std::time::Duration;

const SERVER_NS: &str = "e2e-tm-dns";
const TENANTS: [&str; 2] = ["e2e-tm-a", "e2e-tm-b"];
const LABEL: (&str, &str) = ("nameplane.io/e2e-tm", "tenant");
const ZONE: &str = "cluster.local";

fn client_ip(i: usize) -> String {
    format!("127.0.31.{}", i + 1)
}
fn endpoint_ip(i: usize) -> String {
    format!("10.244.131.{}", 10 * (i + 1) + 1)
}
fn zone_of(tenant: &str) -> String {
    format!("{tenant}.tenants.tm.example")
}
fn forwarded_of(tenant: &str) -> String {
    format!("{tenant}.fwd.example")
}
/// What tenant `i`'s own zone and upstream names hold.
fn zone_a(i: usize) -> String {
    format!("192.0.2.{}", 100 + i)
}
fn zone_aaaa(i: usize) -> String {
    format!("2001:db8::{}", 100 + i)
}
fn forwarded_a(i: usize) -> String {
    format!("192.0.2.{}", 200 + i)
}

/// A Knot server on loopback, authoritative for `fwd.example`: the upstream.
struct KnotUpstream {
    _process: Process,
    port: u16,
}

impl KnotUpstream {
    fn start() -> Self {
        let port = free_port();
        let dir = e2e_dir().join(format!("knot-tm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("knot dir");
        let mut zone = String::from(
            "$ORIGIN fwd.example.\n$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.250\n",
        );
        for (i, tenant) in TENANTS.iter().enumerate() {
            let other = TENANTS[1 - i];
            zone.push_str(&format!(
                "{tenant} A {}\nto-other.{tenant} CNAME {other}.fwd.example.\n",
                forwarded_a(i)
            ));
        }
        std::fs::write(dir.join("fwd.example.zone"), zone).expect("zone file");
        let d = dir.display();
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n  storage: \"{d}/db\"\n\
             template:\n  - id: default\n    storage: \"{d}\"\n\
             zone:\n  - domain: fwd.example\n    file: fwd.example.zone\n"
        );
        let process = start_knotd("knotd-tm", &dir, &conf);
        let knot = Self {
            _process: process,
            port,
        };
        assert!(
            poll_until(Duration::from_secs(20), || {
                dig_with(port, "e2e-tm-a.fwd.example", "A", Transport::Udp, &[]).status == "NOERROR"
            }),
            "knot answers on 127.0.0.1:{port}"
        );
        knot
    }
}

fn tenant_objects(i: usize) -> String {
    let tenant = TENANTS[i];
    let zone = zone_of(tenant);
    let denied = if i == 0 { "NXDomain" } else { "Refused" };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ipFamilyPolicy: RequireDualStack\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  clusterIP: None\n  selector: {{app: db}}\n  ports:\n  - {{name: pg, port: 5432, protocol: TCP}}\n\
---\napiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: own}}\nspec:\n  zone: {zone}\n  allowTransfer: [127.0.0.0/8]\n  records:\n\
\x20 - {{name: www, type: A, values: [\"{a}\"]}}\n\
\x20 - {{name: www, type: AAAA, values: [\"{aaaa}\"]}}\n\
\x20 - {{name: txt, type: TXT, values: [\"tenant {tenant}\"]}}\n\
\x20 - {{name: \"@\", type: MX, values: [\"10 mail.{zone}.\"]}}\n\
\x20 - {{name: mail, type: A, values: [\"{a}\"]}}\n\
\x20 - {{name: _sip._tcp, type: SRV, values: [\"10 5 5060 www.{zone}.\"]}}\n\
\x20 - {{name: alias, type: CNAME, values: [\"www.{zone}.\"]}}\n\
\x20 - {{name: \"@\", type: NS, values: [\"ns.{zone}.\"]}}\n\
\x20 - {{name: ns, type: A, values: [\"{a}\"]}}\n\
---\napiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata: {{name: api}}\nspec:\n  rules:\n  - {{match: Exact, from: api.{tenant}.rw.example, to: web.{tenant}.svc.{ZONE}}}\n\
---\napiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {{name: own}}\nspec:\n  podSelector: {{matchLabels: {{app: client}}}}\n  rules:\n  - {{action: Allow, namespaces: [{tenant}]}}\n  - {{action: Allow, domains: [{zone}, {fwd}, {tenant}.rw.example, in-addr.arpa, ip6.arpa]}}\n  deniedResponse: {denied}\n",
        a = zone_a(i),
        aaaa = zone_aaaa(i),
        fwd = forwarded_of(tenant),
    )
}

/// What the cluster gave tenant `i`'s objects.
struct Facts {
    web_v4: String,
    web_v6: String,
}

fn facts(i: usize) -> Facts {
    let ips = jsonpath(TENANTS[i], "service/web", "{.spec.clusterIPs[*]}");
    let mut ips = ips.split_whitespace().map(str::to_owned);
    Facts {
        web_v4: ips.next().expect("IPv4 ClusterIP"),
        web_v6: ips.next().expect("IPv6 ClusterIP"),
    }
}

/// Strings that identify tenant `i` in an answer: its names and addresses.
fn marks(i: usize, facts: &Facts) -> Vec<String> {
    vec![
        TENANTS[i].to_owned(),
        facts.web_v4.clone(),
        facts.web_v6.clone(),
        endpoint_ip(i),
        zone_a(i),
        zone_aaaa(i),
        forwarded_a(i),
    ]
}

/// One question of the matrix, about tenant `about`'s names.
struct Probe {
    path: &'static str,
    about: usize,
    name: String,
    rtype: &'static str,
    /// Whether its answer leads into the other tenant's names whoever asks (so no client
    /// may get it).
    crosses: bool,
}

fn probes(about: usize, asker_namespace: &str, facts: &Facts) -> Vec<Probe> {
    let t = TENANTS[about];
    let zone = zone_of(t);
    let web = format!("web.{t}.svc.{ZONE}");
    let probe = |path, name: String, rtype| Probe {
        path,
        about,
        name,
        rtype,
        crosses: false,
    };
    let mut all = vec![
        probe("cluster", web.clone(), "A"),
        probe("cluster", web.clone(), "AAAA"),
        probe("cluster", format!("_http._tcp.{web}"), "SRV"),
        probe("cluster", format!("db.{t}.svc.{ZONE}"), "A"),
        probe("cluster", format!("db-0.db.{t}.svc.{ZONE}"), "A"),
        probe("zone", format!("www.{zone}"), "A"),
        probe("zone", format!("www.{zone}"), "AAAA"),
        probe("zone", format!("txt.{zone}"), "TXT"),
        probe("zone", zone.clone(), "MX"),
        probe("zone", format!("_sip._tcp.{zone}"), "SRV"),
        probe("zone", format!("alias.{zone}"), "A"),
        probe("ptr", reverse_name(&facts.web_v4), "PTR"),
        probe("ptr", reverse_name(&facts.web_v6), "PTR"),
        probe("ptr", reverse_name(&endpoint_ip(about)), "PTR"),
        // Asked twice: the first answer is forwarded, the second comes from the cache.
        probe("forward", forwarded_of(t), "A"),
        probe("cache", forwarded_of(t), "A"),
        Probe {
            crosses: true,
            ..probe("forward", format!("to-other.{}", forwarded_of(t)), "A")
        },
        probe(
            "autopath",
            format!("{web}.{asker_namespace}.svc.{ZONE}"),
            "A",
        ),
        probe(
            "autopath",
            format!("{}.{asker_namespace}.svc.{ZONE}", forwarded_of(t)),
            "A",
        ),
        probe("rewrite", format!("api.{t}.rw.example"), "A"),
    ];
    all.push(probe("transfer", zone, "AXFR"));
    all
}

/// Counts of one run of the matrix.
#[derive(Default, Debug)]
struct Tally {
    queries: usize,
    allowed: usize,
    denied: usize,
    forbidden: Vec<String>,
    wrong: Vec<String>,
}

/// Every record line of a response, for the forbidden-data check: the answer section (and,
/// for a transfer, every record of it).
fn record_text(r: &DigResult) -> String {
    r.answers
        .iter()
        .map(|(name, _, rtype, data)| format!("{name} {rtype} {data}\n"))
        .collect()
}

/// Runs every probe from every client; `owner_of[c]` is the tenant client address `c`
/// belongs to.
fn run_matrix(port: u16, clients: &[(String, usize)], facts: &[Facts], tally: &mut Tally) {
    for (ip, owner) in clients {
        let owner = *owner;
        let asker_namespace = TENANTS[owner];
        let other = 1 - owner;
        let other_marks = marks(other, &facts[other]);
        for (about, about_facts) in facts.iter().enumerate() {
            for p in probes(about, asker_namespace, about_facts) {
                tally.queries += 1;
                let allowed = p.about == owner && !p.crosses;
                let what = format!(
                    "{} from {ip} ({}) asks {} {} [{}]",
                    p.path, TENANTS[owner], p.name, p.rtype, TENANTS[p.about]
                );
                let (text, status, answered) = if p.rtype == "AXFR" {
                    let raw = dig_raw(
                        port,
                        &["-b", ip, "+tcp", "+tries=1", "+timeout=3", &p.name, "AXFR"],
                    );
                    let records: String = raw
                        .lines()
                        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let answered = records.contains(&format!("www.{}", zone_of(TENANTS[p.about])));
                    (records, String::new(), answered)
                } else {
                    let r = dig_with(port, &p.name, p.rtype, Transport::Udp, &["-b", ip]);
                    let answered = r.status == "NOERROR" && !r.answers.is_empty();
                    (record_text(&r), r.status, answered)
                };
                if let Some(mark) = other_marks.iter().find(|m| text.contains(m.as_str())) {
                    tally
                        .forbidden
                        .push(format!("{what}: the answer carries {mark:?}:\n{text}"));
                }
                if allowed {
                    tally.allowed += 1;
                    if !answered {
                        tally.wrong.push(format!(
                            "{what}: allowed but not answered ({status}):\n{text}"
                        ));
                    }
                } else {
                    tally.denied += 1;
                    let denial_status = if owner == 0 { "NXDOMAIN" } else { "REFUSED" };
                    let ok = if p.rtype == "AXFR" {
                        !answered && text.is_empty()
                    } else if p.path == "autopath" {
                        // The asked name does not exist; a search step that leads to a
                        // denied name is treated as one that does not exist either, so the
                        // asked name's own NXDOMAIN is right too.
                        (status == denial_status || status == "NXDOMAIN") && text.is_empty()
                    } else {
                        status == denial_status && text.is_empty()
                    };
                    if !ok {
                        tally.wrong.push(format!(
                            "{what}: denied, expected {denial_status} and no records, got {status}:\n{text}"
                        ));
                    }
                }
            }
        }
    }
}

fn check(phase: &str, tally: &Tally) {
    eprintln!(
        "tenant matrix ({phase}): {} queries, {} allowed, {} denied, {} forbidden answers, {} wrong",
        tally.queries,
        tally.allowed,
        tally.denied,
        tally.forbidden.len(),
        tally.wrong.len()
    );
    assert!(
        tally.forbidden.is_empty(),
        "{phase}: forbidden answers:\n{}",
        tally.forbidden.join("\n")
    );
    assert!(
        tally.wrong.is_empty(),
        "{phase}: wrong answers:\n{}",
        tally.wrong.join("\n")
    );
    assert!(tally.allowed > 0 && tally.denied > 0);
}

#[test]
fn no_tenant_gets_another_tenants_answers_on_any_path_even_after_ip_reuse() {
    install_crds();
    let _operator = Operator::start("operator-tm", &["--lease-name", "e2e-tm"]);
    let tenant_label: &[(&str, &str)] = &[LABEL];
    let _namespaces = NamespaceGuard::fresh(&[
        (SERVER_NS, &[]),
        (TENANTS[0], tenant_label),
        (TENANTS[1], tenant_label),
    ]);
    let knot = KnotUpstream::start();
    let kube = Kube::connect();
    for (i, tenant) in TENANTS.iter().enumerate() {
        apply(tenant, &tenant_objects(i));
        kube.create_pods(
            tenant,
            &[
                FakePod::new("db-0", "db", &[&endpoint_ip(i)], true).with_hostname("db-0", "db"),
                FakePod::new("client", "client", &[&client_ip(i)], true),
            ],
        );
    }
    apply(
        SERVER_NS,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  replicas: 1\n  upstreams: [\"127.0.0.1:{}\"]\n  cache: {{capacity: 1000}}\n  autopath: true\n  clients: {{unidentified: Deny}}\n  tenantDomainSuffix: tenants.tm.example\n  configSelector:\n    namespaceSelector:\n      matchLabels: {{{}: {}}}\n",
            knot.port, LABEL.0, LABEL.1
        ),
    );
    for tenant in TENANTS {
        for what in ["dnszone/own", "rewriterule/api", "dnspolicy/own"] {
            wait_ready_condition(tenant, what, "True", "Accepted");
        }
    }
    // Published: its Deployment's Pods never run in this test (the test runs its own DNS
    // server), so Ready stays False with PodsRollingOut (e2e/tests/status.rs runs them).
    wait_ready_condition(SERVER_NS, "dnsserver/dns", "False", "PodsRollingOut");
    let mut dns = DnsServer::start("dns-tm", &format!("{SERVER_NS}/dns-config"), &[]);
    dns.wait_ready(Duration::from_secs(60));
    let facts: Vec<Facts> = (0..TENANTS.len()).map(facts).collect();
    // Every client is identified before the matrix starts (its own Service resolves).
    for (i, tenant) in TENANTS.iter().enumerate() {
        let ip = client_ip(i);
        let web = format!("web.{tenant}.svc.{ZONE}");
        assert!(
            poll_until(Duration::from_secs(30), || {
                dig_with(dns.port, &web, "A", Transport::Udp, &["-b", &ip]).status == "NOERROR"
            }),
            "{ip} is identified as a Pod of {tenant}"
        );
    }

    let clients: Vec<(String, usize)> = (0..TENANTS.len()).map(|i| (client_ip(i), i)).collect();
    let mut tally = Tally::default();
    run_matrix(dns.port, &clients, &facts, &mut tally);
    check("two tenants", &tally);

    // IP reuse: a's client finishes and b gets its address for a new, Running Pod.
    kubectl_ok(&[
        "patch",
        "pod",
        "client",
        "-n",
        TENANTS[0],
        "--subresource=status",
        "--type=merge",
        "-p",
        "{\"status\": {\"phase\": \"Succeeded\", \"conditions\": [{\"type\": \"Ready\", \"status\": \"False\"}]}}",
    ]);
    let reused = client_ip(0);
    kube.create_pods(
        TENANTS[1],
        &[FakePod::new("client-reused", "client", &[&reused], true)],
    );
    let b_web = format!("web.{}.svc.{ZONE}", TENANTS[1]);
    let mut last = None;
    let identified = poll_until(Duration::from_secs(30), || {
        let r = dig_with(dns.port, &b_web, "A", Transport::Udp, &["-b", &reused]);
        let ok = r.status == "NOERROR" && !r.answers.is_empty();
        last = Some(r);
        ok
    });
    assert!(
        identified,
        "the reused address {reused} is tenant b's Running Pod, not a's finished one: {:?}",
        last.map(|r| r.raw)
    );
    let clients = vec![(reused, 1), (client_ip(1), 1)];
    let mut tally = Tally::default();
    run_matrix(dns.port, &clients, &facts, &mut tally);
    check("after IP reuse", &tally);
    dns.process.assert_running();
}
