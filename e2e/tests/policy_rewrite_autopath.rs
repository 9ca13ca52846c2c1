//! The client-aware stages end to end: `DNSPolicy`, `RewriteRule` and autopath, configured
//! the way users configure them (`kubectl apply` of a `DNSServer` and config objects in
//! tenant namespaces, rendered by the real operator into the ConfigMap a real `nameplane-dns`
//! follows) and queried with `dig` from the addresses of Pods.
//!
//! There is no kubelet: the tests create Pods on the fake Node and set their status
//! (`podIP`, Ready) themselves. A client Pod's address is one in 127.0.30.0/24 — all of
//! 127/8 is loopback on Linux — so `dig -b <pod IP>` asks the server from that Pod's
//! address and the server ties the query to the Pod through its Pod watch, as it does in a
//! cluster. Endpoint Pods, which only need to be in EndpointSlices (and the API refuses
//! loopback endpoint addresses), have 10.244.130.x and fd00:10:244:130::x. Every name,
//! namespace (`e2e-pra-*`) and address here is this file's own, so other tests' Pods cannot
//! make a client ambiguous.
//!
//! Needs `make cluster-up` and `cargo build --bins` first; `make e2e` does both.

use nameplane_config::ServerConfig;
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_e2e::{
    DigResult, DnsServer, FakePod, Kube, Operator, Transport, apply, dig_raw, dig_with,
    ensure_namespace, install_crds, jsonpath, kubectl, kubectl_ok, metric_sum, parse_dig,
    poll_until, remove_namespace, wait_for,
};
use std::time::Duration;

const READY: Duration = Duration::from_secs(60);
const ZONE: &str = "cluster.local";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The `Ready` condition of `what`: (status, reason, message).
fn condition(namespace: &str, what: &str) -> (String, String, String) {
    let at = |field: &str| {
        jsonpath(
            namespace,
            what,
            &format!("{{.status.conditions[?(@.type==\"Ready\")].{field}}}"),
        )
    };
    (at("status"), at("reason"), at("message"))
}

/// Waits until `what` has `Ready=<status>` with `reason` (an object can be judged
/// `NotSelected` before the operator has seen its namespace's label; that settles).
fn wait_condition(namespace: &str, what: &str, status: &str, reason: &str) -> String {
    let mut last = Default::default();
    let settled = poll_until(READY, || {
        last = condition(namespace, what);
        last.0 == status && last.1 == reason
    });
    assert!(
        settled,
        "{namespace}/{what}: want Ready={status} ({reason}), have {last:?}"
    );
    last.2
}

/// Waits until DNSServer `namespace/name` has published a config that holds every string of
/// `contains` (e.g. the `namespace/name` sources of its objects) and returns that config.
fn wait_published(namespace: &str, name: &str, contains: &[&str]) -> String {
    let mut last = String::new();
    let published = poll_until(READY, || {
        let hash = jsonpath(
            namespace,
            &format!("dnsserver/{name}"),
            "{.status.configHash}",
        );
        let annotation = jsonpath(
            namespace,
            &format!("configmap/{name}-config"),
            "{.metadata.annotations.nameplane\\.io/config-hash}",
        );
        last = jsonpath(
            namespace,
            &format!("configmap/{name}-config"),
            "{.data.config\\.json}",
        );
        !hash.is_empty() && hash == annotation && contains.iter().all(|c| last.contains(c))
    });
    assert!(
        published,
        "DNSServer {namespace}/{name} never published a config with {contains:?}; last:\n{last}\nstatus: {:?}",
        condition(namespace, &format!("dnsserver/{name}"))
    );
    last
}

/// This test's namespaces, created fresh, and removed again when dropped (also when the
/// test fails). Declare it after the operator: it is then dropped first, and the operator,
/// still running, takes the DNSServers' finalizers off.
struct Namespaces {
    names: Vec<String>,
    kube: Kube,
}

impl Namespaces {
    fn fresh(namespaces: &[(&str, &[(&str, &str)])]) -> Self {
        let kube = Kube::connect();
        for (name, _) in namespaces {
            remove_namespace(&kube, name, true);
        }
        for (name, labels) in namespaces {
            ensure_namespace(name, labels);
        }
        Self {
            names: namespaces.iter().map(|(n, _)| (*n).to_owned()).collect(),
            kube,
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = kubectl(&[
                "delete",
                "dnsservers",
                "--all",
                "-n",
                name,
                "--wait=true",
                "--timeout=30s",
            ]);
        }
        for name in &self.names {
            remove_namespace(&self.kube, name, false);
        }
    }
}

/// CRDs, the operator's lease namespace, and an operator with its own lease.
fn start_operator(name: &str) -> Operator {
    install_crds();
    ensure_namespace("nameplane-system", &[]);
    Operator::start(name, &["--lease-name", name])
}

/// The cluster IPs of a Service, read from the API: (IPv4, IPv6).
fn cluster_ips(namespace: &str, service: &str) -> (String, Option<String>) {
    let ips = kubectl_ok(&[
        "get",
        "service",
        service,
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.clusterIPs[*]}",
    ]);
    let v4 = ips
        .split_whitespace()
        .find(|ip| ip.contains('.'))
        .unwrap_or_else(|| panic!("{namespace}/{service} has no IPv4 cluster IP: {ips:?}"))
        .to_owned();
    let v6 = ips
        .split_whitespace()
        .find(|ip| ip.contains(':'))
        .map(str::to_owned);
    (v4, v6)
}

/// `<name>.<namespace>.svc.cluster.local.`
fn svc(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{ZONE}.")
}

/// One UDP query with dig from `source` (a Pod's address, or 127.0.0.1 for nobody).
fn dig_from(port: u16, source: &str, name: &str, rtype: &str) -> DigResult {
    dig_with(port, name, rtype, Transport::Udp, &["-b", source])
}

/// The answer section as sorted (type, data) pairs.
fn answer_set(r: &DigResult) -> Vec<(String, String)> {
    let mut set: Vec<(String, String)> = r
        .answers
        .iter()
        .map(|(_, _, rtype, data)| (rtype.clone(), data.clone()))
        .collect();
    set.sort();
    set
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut set: Vec<(String, String)> = items
        .iter()
        .map(|(t, d)| ((*t).to_owned(), (*d).to_owned()))
        .collect();
    set.sort();
    set
}

/// The value of the sample of `name` whose labels contain every `label="value"` of
/// `labels` (0 when there is none).
fn metric_with(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty sum is -0
}

// ---------------------------------------------------------------------------------------
// 1. Tenant policies
// ---------------------------------------------------------------------------------------

/// A `DNSPolicy` as this test understands it, written down independently of the server:
/// rules of (allow?, domain suffixes), the default, and whether denials are REFUSED.
#[derive(Clone, Debug)]
struct Policy {
    rules: Vec<(bool, Vec<String>)>,
    default_allow: bool,
    refused: bool,
}

impl Policy {
    fn response(&self) -> &'static str {
        if self.refused { "REFUSED" } else { "NXDOMAIN" }
    }
}

/// Whether `domain` covers `name` (the domain itself or a name below it).
fn covers(domain: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == domain || name.ends_with(&format!(".{domain}"))
}

/// The documented combination for one name: each policy's first covering rule or its
/// default; an explicit deny wins, then an explicit allow, else every default must allow.
/// `Err` holds the response of the denying policy.
fn decide(policies: &[Policy], name: &str) -> Result<(), &'static str> {
    let mut explicit_allow = false;
    let mut default_deny = None;
    for policy in policies {
        match policy
            .rules
            .iter()
            .find(|(_, domains)| domains.iter().any(|d| covers(d, name)))
        {
            Some((false, _)) => return Err(policy.response()),
            Some((true, _)) => explicit_allow = true,
            None if !policy.default_allow => {
                default_deny.get_or_insert(policy.response());
            }
            None => {}
        }
    }
    match default_deny {
        Some(response) if !explicit_allow => Err(response),
        _ => Ok(()),
    }
}

/// The verdict on a whole query: the question first, then every name of its answer.
fn verdict(policies: &[Policy], names: &[String]) -> Result<(), &'static str> {
    names.iter().try_for_each(|n| decide(policies, n))
}

/// One query of the matrix and what an unrestricted client gets for it.
#[derive(Clone, Debug)]
struct Case {
    /// What kind of name it is, for the report.
    kind: &'static str,
    /// The namespace whose names it asks (or the zone).
    of: String,
    name: String,
    rtype: &'static str,
    /// The whole answer section, (type, data) sorted; empty for NODATA.
    answers: Vec<(String, String)>,
    /// Every name a policy checks: the question, then owners and targets of the answer.
    names: Vec<String>,
}

const TENANTS: [&str; 3] = ["e2e-pra-a", "e2e-pra-b", "e2e-pra-c"];
const MATRIX_NS: &str = "e2e-pra-m";
const MATRIX_LABEL: (&str, &str) = ("nameplane.io/e2e-pra", "matrix");

/// The tenant whose `web` the ExternalName `ext` of `tenant` points at.
fn ext_target(tenant: &str) -> &'static str {
    match tenant {
        "e2e-pra-a" => "e2e-pra-b",
        _ => "e2e-pra-a",
    }
}

/// Client and endpoint addresses of tenant `i` (0, 1, 2).
fn client_ip(i: usize) -> String {
    format!("127.0.30.{}", i + 1)
}
fn endpoint_ips(i: usize) -> [String; 2] {
    [
        format!("10.244.130.{}", 10 * (i + 1) + 1),
        format!("10.244.130.{}", 10 * (i + 1) + 2),
    ]
}
/// The IPv6 address of tenant `i`'s first endpoint (the second has IPv4 only).
fn endpoint_v6(i: usize) -> String {
    format!("fd00:10:244:130::{}", 10 * (i + 1) + 1)
}
const CONTROL_IP: &str = "127.0.30.9";

fn tenant_objects(tenant: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  ipFamilyPolicy: RequireDualStack\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  clusterIP: None\n  ipFamilyPolicy: RequireDualStack\n  selector: {{app: db}}\n  ports:\n  - {{name: pg, port: 5432, protocol: TCP}}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {{name: ext}}\nspec:\n  type: ExternalName\n  externalName: web.{}.svc.{ZONE}\n",
        ext_target(tenant)
    )
}

/// The tenants' policies, as YAML for the cluster and as [`Policy`] for the verdicts.
fn tenant_policies(tenant: &str) -> (String, Vec<Policy>) {
    let reverse_zones = vec!["in-addr.arpa".to_owned(), "ip6.arpa".to_owned()];
    let own = |ns: &str| vec![format!("{ns}.svc.{ZONE}"), format!("{ns}.pod.{ZONE}")];
    match tenant {
        // Only its own namespace (and reverse lookups, whose answers are checked).
        "e2e-pra-a" => (
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: only-own}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  rules:\n  - {action: Allow, namespaces: [e2e-pra-a]}\n  - {action: Allow, domains: [in-addr.arpa, ip6.arpa]}\n  defaultAction: Deny\n  deniedResponse: NXDomain\n  audit: true\n".to_owned(),
            vec![Policy {
                rules: vec![(true, own(tenant)), (true, reverse_zones)],
                default_allow: false,
                refused: false,
            }],
        ),
        // Its own namespace and a's `web`; defaultAction left out (Deny); REFUSED.
        "e2e-pra-b" => (
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: own-and-a-web}\nspec:\n  rules:\n  - {action: Allow, namespaces: [e2e-pra-b]}\n  - {action: Allow, services: [{namespace: e2e-pra-a, name: web}]}\n  - {action: Allow, domains: [in-addr.arpa, ip6.arpa]}\n  deniedResponse: Refused\n".to_owned(),
            vec![Policy {
                rules: vec![
                    (true, own(tenant)),
                    (true, vec![format!("web.e2e-pra-a.svc.{ZONE}")]),
                    (true, reverse_zones),
                ],
                default_allow: false,
                refused: true,
            }],
        ),
        // A block list, and a second policy that explicitly allows what the first denies:
        // the denial must win.
        _ => (
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: block-a}\nspec:\n  rules:\n  - {action: Deny, namespaces: [e2e-pra-a]}\n  defaultAction: Allow\n\
---\napiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: allow-a}\nspec:\n  rules:\n  - {action: Allow, namespaces: [e2e-pra-a]}\n  defaultAction: Allow\n  deniedResponse: Refused\n".to_owned(),
            vec![
                Policy {
                    rules: vec![(false, own("e2e-pra-a"))],
                    default_allow: true,
                    refused: false,
                },
                Policy {
                    rules: vec![(true, own("e2e-pra-a"))],
                    default_allow: true,
                    refused: true,
                },
            ],
        ),
    }
}

/// What the IPs of one tenant are, read from the cluster.
struct TenantFacts {
    ns: &'static str,
    web_v4: String,
    web_v6: String,
    endpoints: [String; 2],
    endpoint_v6: String,
}

/// The matrix's queries for the names of one namespace.
fn namespace_cases(t: &TenantFacts, facts: &[TenantFacts]) -> Vec<Case> {
    let ns = t.ns;
    let web = svc("web", ns);
    let db = svc("db", ns);
    let host0 = format!("db-0.{db}");
    let host1 = format!("{}.{db}", t.endpoints[1].replace('.', "-"));
    let target_ns = ext_target(ns);
    let target = facts.iter().find(|f| f.ns == target_ns).expect("target");
    let target_web = svc("web", target_ns);
    let case = |kind, name: String, rtype, answers: &[(&str, &str)], more: &[&str]| Case {
        kind,
        of: ns.to_owned(),
        names: std::iter::once(name.clone())
            .chain(more.iter().map(|s| (*s).to_owned()))
            .collect(),
        name,
        rtype,
        answers: pairs(answers),
    };
    let srv_web = format!("0 100 80 {web}");
    let srv0 = format!("0 50 5432 {host0}");
    let srv1 = format!("0 50 5432 {host1}");
    vec![
        case("ClusterIP A", web.clone(), "A", &[("A", &t.web_v4)], &[]),
        case(
            "ClusterIP AAAA",
            web.clone(),
            "AAAA",
            &[("AAAA", &t.web_v6)],
            &[],
        ),
        case(
            "ClusterIP SRV",
            format!("_http._tcp.{web}"),
            "SRV",
            &[("SRV", &srv_web)],
            &[&web],
        ),
        case(
            "headless A",
            db.clone(),
            "A",
            &[("A", &t.endpoints[0]), ("A", &t.endpoints[1])],
            &[],
        ),
        case(
            "headless AAAA",
            db.clone(),
            "AAAA",
            &[("AAAA", &t.endpoint_v6)],
            &[],
        ),
        case("ClusterIP TXT (NODATA)", web.clone(), "TXT", &[], &[]),
        case(
            "endpoint hostname A",
            host0.clone(),
            "A",
            &[("A", &t.endpoints[0])],
            &[],
        ),
        case(
            "endpoint hostname AAAA",
            host0.clone(),
            "AAAA",
            &[("AAAA", &t.endpoint_v6)],
            &[],
        ),
        case(
            "endpoint dashed A",
            host1.clone(),
            "A",
            &[("A", &t.endpoints[1])],
            &[],
        ),
        case(
            "headless SRV",
            format!("_pg._tcp.{db}"),
            "SRV",
            &[("SRV", &srv0), ("SRV", &srv1)],
            &[&host0, &host1],
        ),
        case(
            "ExternalName A",
            svc("ext", ns),
            "A",
            &[("CNAME", &target_web), ("A", &target.web_v4)],
            &[&target_web],
        ),
        case(
            "PTR ClusterIP v4",
            nameplane_e2e::reverse_name(&t.web_v4),
            "PTR",
            &[("PTR", &web)],
            &[&web],
        ),
        case(
            "PTR ClusterIP v6",
            nameplane_e2e::reverse_name(&t.web_v6),
            "PTR",
            &[("PTR", &web)],
            &[&web],
        ),
        case(
            "PTR endpoint hostname",
            nameplane_e2e::reverse_name(&t.endpoints[0]),
            "PTR",
            &[("PTR", &host0)],
            &[&host0],
        ),
        case(
            "PTR endpoint hostname v6",
            nameplane_e2e::reverse_name(&t.endpoint_v6),
            "PTR",
            &[("PTR", &host0)],
            &[&host0],
        ),
        case(
            "PTR endpoint dashed",
            nameplane_e2e::reverse_name(&t.endpoints[1]),
            "PTR",
            &[("PTR", &host1)],
            &[&host1],
        ),
    ]
}

const PRA_ZONE: &str = "apiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata:\n  name: pra\nspec:\n  zone: pra.test\n  allowTransfer: [\"127.0.30.0/24\"]\n  records:\n  - {name: www, type: A, values: [\"192.0.2.80\"]}\n  - {name: to-a, type: CNAME, values: [\"web.e2e-pra-a.svc.cluster.local.\"]}\n";

#[test]
fn tenant_policies_hold_for_every_name_type_and_namespace() {
    let _operator = start_operator("e2e-pra-matrix");
    let labels: &[(&str, &str)] = &[MATRIX_LABEL];
    let _namespaces = Namespaces::fresh(&[
        (MATRIX_NS, &[]),
        (TENANTS[0], labels),
        (TENANTS[1], labels),
        (TENANTS[2], labels),
    ]);
    let kube = Kube::connect();

    // The cluster: per tenant a dual-stack ClusterIP Service, a headless Service with two
    // ready endpoints (one with a hostname, one without), an ExternalName to another
    // tenant's `web`, one client Pod, and the tenant's policies.
    let mut expected_policies: Vec<(&str, Vec<Policy>)> = Vec::new();
    for (i, tenant) in TENANTS.iter().enumerate() {
        apply(tenant, &tenant_objects(tenant));
        let [e0, e1] = endpoint_ips(i);
        let ip = client_ip(i);
        kube.create_pods(
            tenant,
            &[
                FakePod::new("db-0", "db", &[&e0, &endpoint_v6(i)], true)
                    .with_hostname("db-0", "db"),
                FakePod::new("db-1", "db", &[&e1], true),
                FakePod::new("client", "client", &[&ip], true),
            ],
        );
        let (yaml, policies) = tenant_policies(tenant);
        apply(tenant, &yaml);
        expected_policies.push((tenant, policies));
    }
    kube.create_pods(
        MATRIX_NS,
        &[FakePod::new("control", "control", &[CONTROL_IP], true)],
    );
    apply(
        MATRIX_NS,
        &format!(
            // Clients that are not one Pod are refused: the platform's choice, which the
            // tenants' policies do not make (tenancy_clients.rs).
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  replicas: 1\n  clients: {{unidentified: Deny}}\n  configSelector:\n    namespaceSelector:\n      matchLabels: {{{}: {}}}\n",
            MATRIX_LABEL.0, MATRIX_LABEL.1
        ),
    );
    apply(MATRIX_NS, PRA_ZONE);
    for (ns, what) in [
        (TENANTS[0], "dnspolicy/only-own"),
        (TENANTS[1], "dnspolicy/own-and-a-web"),
        (TENANTS[2], "dnspolicy/block-a"),
        (TENANTS[2], "dnspolicy/allow-a"),
        (MATRIX_NS, "dnszone/pra"),
    ] {
        wait_condition(ns, what, "True", "Accepted");
    }
    // Published; its Deployment's Pods never run here (the test runs its own DNS server).
    wait_condition(MATRIX_NS, "dnsserver/dns", "False", "PodsRollingOut");
    wait_published(
        MATRIX_NS,
        "dns",
        &[
            "e2e-pra-a/only-own",
            "e2e-pra-b/own-and-a-web",
            "e2e-pra-c/block-a",
            "e2e-pra-c/allow-a",
            "pra.test",
        ],
    );
    let mut dns = DnsServer::start(
        "dns-e2e-pra-matrix",
        &format!("{MATRIX_NS}/dns-config"),
        &[],
    );
    dns.wait_ready(READY);
    let port = dns.port;

    // What the cluster assigned, read back from the API.
    let facts: Vec<TenantFacts> = TENANTS
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let (web_v4, web_v6) = cluster_ips(ns, "web");
            TenantFacts {
                ns,
                web_v4,
                web_v6: web_v6.expect("dual-stack web has an IPv6 cluster IP"),
                endpoints: endpoint_ips(i),
                endpoint_v6: endpoint_v6(i),
            }
        })
        .collect();
    // Ready once the EndpointSlices are in DNS and every client is tied to its Pod (an
    // unidentified client is refused).
    let mut last = Vec::new();
    let settled = poll_until(READY, || {
        last.clear();
        let mut ok = true;
        for (i, ns) in TENANTS.iter().enumerate() {
            let db = dig_from(port, CONTROL_IP, &svc("db", ns), "A");
            let web = dig_from(port, &client_ip(i), &svc("web", ns), "A");
            ok &= db.data("A").len() == 2 && web.status == "NOERROR";
            last.push(format!(
                "{ns}: db from control {} {:?}; web from its client {} {:?}",
                db.status,
                db.data("A"),
                web.status,
                web.data("A")
            ));
        }
        ok
    });
    assert!(
        settled,
        "endpoints in DNS and every client identified: {last:#?}"
    );

    let mut cases: Vec<Case> = facts
        .iter()
        .flat_map(|t| namespace_cases(t, &facts))
        .collect();
    let to_a = svc("web", "e2e-pra-a");
    cases.push(Case {
        kind: "zone A",
        of: "pra.test".into(),
        name: "www.pra.test.".into(),
        rtype: "A",
        answers: pairs(&[("A", "192.0.2.80")]),
        names: vec!["www.pra.test.".into()],
    });
    cases.push(Case {
        kind: "zone CNAME into a",
        of: "pra.test".into(),
        name: "to-a.pra.test.".into(),
        rtype: "A",
        // The zone stage does not chase a CNAME out of its zone; the client's resolver
        // asks for the target itself.
        answers: pairs(&[("CNAME", &to_a)]),
        names: vec!["to-a.pra.test.".into(), to_a.clone()],
    });

    // The clients: the control Pod (no policy selects it) and one per tenant.
    let mut clients: Vec<(String, String, Vec<Policy>)> =
        vec![("control".into(), CONTROL_IP.into(), Vec::new())];
    for (i, (tenant, policies)) in expected_policies.iter().enumerate() {
        clients.push(((*tenant).to_owned(), client_ip(i), policies.clone()));
    }

    let (mut leaked, mut failed, mut wrong_code) = (Vec::new(), Vec::new(), Vec::new());
    let (mut allowed, mut denied) = (0, 0);
    for (client, ip, policies) in &clients {
        let (mut client_allowed, mut client_denied) = (0, 0);
        for case in &cases {
            let r = dig_from(port, ip, &case.name, case.rtype);
            let what = format!(
                "{client} -> {} {} ({}, {})",
                case.name, case.rtype, case.kind, case.of
            );
            match verdict(policies, &case.names) {
                Ok(()) => {
                    client_allowed += 1;
                    if r.status != "NOERROR" || answer_set(&r) != case.answers {
                        failed.push(format!(
                            "{what}: want NOERROR {:?}, got {} {:?}",
                            case.answers,
                            r.status,
                            answer_set(&r)
                        ));
                    }
                }
                Err(response) => {
                    client_denied += 1;
                    if !r.answers.is_empty() {
                        leaked.push(format!("{what}: forbidden, got {:?}", answer_set(&r)));
                    }
                    if r.status != response {
                        wrong_code.push(format!("{what}: want {response}, got {}", r.status));
                    }
                }
            }
        }
        // AXFR of the zone: the names of the whole zone (read from the control Pod's
        // transfer, which no policy restricts) decide.
        let axfr = dig_raw(
            port,
            &["-b", ip, "pra.test", "AXFR", "+nocomments", "+nostats"],
        );
        let records = parse_dig(&axfr).answers;
        let control_axfr = parse_dig(&dig_raw(
            port,
            &[
                "-b",
                CONTROL_IP,
                "pra.test",
                "AXFR",
                "+nocomments",
                "+nostats",
            ],
        ))
        .answers;
        assert!(
            control_axfr.iter().filter(|r| r.2 == "SOA").count() == 2
                && control_axfr.iter().any(|r| r.0 == "to-a.pra.test."),
            "the unrestricted Pod transfers the zone: {control_axfr:?}"
        );
        let mut zone_names = vec!["pra.test.".to_owned()];
        for (owner, _, rtype, data) in &control_axfr {
            zone_names.push(owner.clone());
            match rtype.as_str() {
                "CNAME" | "NS" | "PTR" => zone_names.push(data.clone()),
                "MX" | "SRV" => {
                    zone_names.extend(data.split_whitespace().last().map(str::to_owned))
                }
                _ => {}
            }
        }
        let what = format!("{client} -> pra.test AXFR");
        match verdict(policies, &zone_names) {
            Ok(()) => {
                client_allowed += 1;
                if records.len() != control_axfr.len() {
                    failed.push(format!("{what}: want the zone, got\n{axfr}"));
                }
            }
            Err(_) => {
                client_denied += 1;
                if !records.is_empty() {
                    leaked.push(format!("{what}: forbidden, got\n{axfr}"));
                }
                if !axfr.contains("Transfer failed") {
                    wrong_code.push(format!("{what}: want a failed transfer, got\n{axfr}"));
                }
            }
        }
        eprintln!(
            "client {client} ({ip}): {client_allowed} queries allowed, {client_denied} denied by the policy table"
        );
        allowed += client_allowed;
        denied += client_denied;
    }
    let mut types: Vec<&str> = cases.iter().map(|c| c.rtype).collect();
    types.push("AXFR");
    types.sort_unstable();
    types.dedup();
    let per_namespace = cases.iter().filter(|c| c.of == TENANTS[0]).count();
    eprintln!(
        "policy matrix: {} clients x ({} namespaces x {per_namespace} name/type queries + {} zone queries + 1 AXFR) = {} queries, record types {types:?}; expected {allowed} allowed, {denied} denied",
        clients.len(),
        TENANTS.len(),
        cases.len() - TENANTS.len() * per_namespace,
        clients.len() * (cases.len() + 1),
    );
    eprintln!(
        "forbidden answers with data: {}; allowed queries that failed: {}; denials with the wrong rcode: {}",
        leaked.len(),
        failed.len(),
        wrong_code.len()
    );
    for line in leaked.iter().chain(&failed).chain(&wrong_code) {
        eprintln!("  {line}");
    }
    assert!(denied > 0 && allowed > 0, "the matrix has both verdicts");
    assert!(leaked.is_empty(), "forbidden answers: {leaked:#?}");
    assert!(failed.is_empty(), "allowed queries failed: {failed:#?}");
    assert!(wrong_code.is_empty(), "wrong denial codes: {wrong_code:#?}");

    // Nobody: a source address no Pod has, or 127.0.0.1 (fake-node's, no node class here),
    // is refused: the DNSServer denies unidentified clients.
    for source in ["127.0.0.1", "127.0.30.250"] {
        let r = dig_from(port, source, &svc("web", TENANTS[2]), "A");
        assert_eq!(r.status, "REFUSED", "unidentified {source}: {}", r.raw);
        assert!(r.answers.is_empty(), "{}", r.raw);
    }
    // One address, one Pod: identified (c's policies allow `web.c`, deny `web.a`). A second
    // Pod with the same address makes it ambiguous: refused. Alone again: identified again.
    let shared = "127.0.30.99";
    let web_c = svc("web", TENANTS[2]);
    let web_a = svc("web", TENANTS[0]);
    let c_web = [facts[2].web_v4.clone()];
    kube.create_pods(
        TENANTS[2],
        &[FakePod::new("twin-c", "twin", &[shared], true)],
    );
    wait_for("twin-c identified", READY, || {
        (dig_from(port, shared, &web_c, "A").data("A") == c_web).then_some(())
    });
    let r = dig_from(port, shared, &web_a, "A");
    assert_eq!(r.status, "NXDOMAIN", "twin-c is a Pod of c: {}", r.raw);
    assert!(r.answers.is_empty(), "{}", r.raw);
    kube.create_pods(
        TENANTS[1],
        &[FakePod::new("twin-b", "twin", &[shared], true)],
    );
    wait_for("the shared address refused", READY, || {
        let r = dig_from(port, shared, &web_c, "A");
        (r.status == "REFUSED" && r.answers.is_empty()).then_some(())
    });
    kube.force_delete_pods(TENANTS[1], &["twin-b"]);
    wait_for("twin-c identified once alone again", READY, || {
        (dig_from(port, shared, &web_c, "A").data("A") == c_web).then_some(())
    });
    eprintln!(
        "an address of one Pod got its namespace's policy; shared by two Pods it was refused; alone again it was identified again"
    );

    // Every selecting policy counted its decisions; the unidentified clients too.
    let metrics = dns.metrics();
    let decisions = |policy: &str, decision: &str| {
        metric_with(
            &metrics,
            "nameplane_dns_policy_decisions_total",
            &[("policy", policy), ("decision", decision)],
        )
    };
    for policy in [
        "e2e-pra-a/only-own",
        "e2e-pra-b/own-and-a-web",
        "e2e-pra-c/block-a",
        "e2e-pra-c/allow-a",
    ] {
        let (a, d) = (decisions(policy, "allowed"), decisions(policy, "denied"));
        eprintln!("policy {policy}: allowed {a}, denied {d}");
        assert!(
            a > 0.0 && d > 0.0,
            "{policy}: {a} allowed, {d} denied\n{metrics}"
        );
    }
    let unidentified = decisions("(unidentified)", "denied");
    eprintln!("unidentified clients denied: {unidentified}");
    assert!(unidentified >= 2.0, "{metrics}");
    // Tenant a audits its denials.
    assert!(
        dns.process.log().contains("nameplane_dns::audit"),
        "a's policy audits its denials"
    );
    dns.process.assert_running();
}

// ---------------------------------------------------------------------------------------
// 2. Rewrites
// ---------------------------------------------------------------------------------------

const RW_NS: &str = "e2e-pra-r";
const RW_A: &str = "e2e-pra-ra";
const RW_B: &str = "e2e-pra-rb";
const RW_LABEL: (&str, &str) = ("nameplane.io/e2e-pra", "rewrite");
const RW_CLIENT_A: &str = "127.0.30.21";
const RW_CLIENT_B: &str = "127.0.30.22";

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {name: http, port: 80, protocol: TCP}\n";

#[test]
fn rewrites_answer_under_the_asked_name_and_tenant_rules_stay_in_their_namespace() {
    let _operator = start_operator("e2e-pra-rewrite");
    let labels: &[(&str, &str)] = &[RW_LABEL];
    let _namespaces = Namespaces::fresh(&[(RW_NS, &[]), (RW_A, labels), (RW_B, labels)]);
    let kube = Kube::connect();
    for ns in [RW_NS, RW_A, RW_B] {
        apply(ns, WEB);
    }
    kube.create_pods(
        RW_A,
        &[FakePod::new("client", "client", &[RW_CLIENT_A], true)],
    );
    kube.create_pods(
        RW_B,
        &[FakePod::new("client", "client", &[RW_CLIENT_B], true)],
    );
    apply(
        RW_NS,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: dns\nspec:\n  replicas: 1\n  ttlSeconds: 7\n  configSelector:\n    namespaceSelector:\n      matchLabels: {{{}: {}}}\n",
            RW_LABEL.0, RW_LABEL.1
        ),
    );
    // The server's own rules apply to every client.
    apply(
        RW_NS,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata: {{name: store}}\nspec:\n  rules:\n  - {{match: Exact, from: mystore.com, to: web.{RW_NS}.svc.{ZONE}, ttlSeconds: 42}}\n  - {{match: Exact, from: raw.mystore.com, to: web.{RW_NS}.svc.{ZONE}, rewriteAnswers: false}}\n  - {{match: Suffix, from: corp.test, to: {RW_NS}.svc.{ZONE}}}\n"
        ),
    );
    // Tenant a: a rule to its own Service, and one to b's, which must be refused.
    apply(
        RW_A,
        &format!(
            "apiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata: {{name: own}}\nspec:\n  rules:\n  - {{match: Exact, from: shop.tenant.test, to: web.{RW_A}.svc.{ZONE}}}\n\
---\napiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata: {{name: steal}}\nspec:\n  rules:\n  - {{match: Exact, from: steal.tenant.test, to: web.{RW_B}.svc.{ZONE}}}\n"
        ),
    );
    wait_condition(RW_NS, "rewriterule/store", "True", "Accepted");
    wait_condition(RW_A, "rewriterule/own", "True", "Accepted");
    let message = wait_condition(RW_A, "rewriterule/steal", "False", "OutsideNamespace");
    assert!(message.contains(&format!("{RW_A}.svc.{ZONE}")), "{message}");
    let table = kubectl_ok(&["get", "rewriterule", "steal", "-n", RW_A]);
    let row = table.lines().nth(1).unwrap_or_default();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns.get(..3),
        Some(&["steal", "False", "OutsideNamespace"][..]),
        "kubectl get shows the refusal:\n{table}"
    );
    eprintln!("kubectl get rewriterule steal -n {RW_A}:\n{table}");
    wait_condition(RW_NS, "dnsserver/dns", "False", "PodsRollingOut");
    let config = wait_published(RW_NS, "dns", &["e2e-pra-r/store", "e2e-pra-ra/own"]);
    assert!(
        !config.contains("steal.tenant.test"),
        "the refused rule is not served:\n{config}"
    );
    let mut dns = DnsServer::start("dns-e2e-pra-rewrite", &format!("{RW_NS}/dns-config"), &[]);
    dns.wait_ready(READY);
    let port = dns.port;
    let (web_r, _) = cluster_ips(RW_NS, "web");
    let (web_a, _) = cluster_ips(RW_A, "web");
    let (web_b, _) = cluster_ips(RW_B, "web");
    // a's client is identified once its tenant rule applies to it.
    wait_for("a's client identified", READY, || {
        (dig_from(port, RW_CLIENT_A, "shop.tenant.test", "A").data("A") == [web_a.clone()])
            .then_some(())
    });

    // Exact, with ttlSeconds: the Service's address under the name asked, in its spelling.
    for source in ["127.0.0.1", RW_CLIENT_A, RW_CLIENT_B] {
        let r = dig_from(port, source, "MyStore.com", "A");
        assert_eq!(r.status, "NOERROR", "{source}: {}", r.raw);
        assert_eq!(r.answers.len(), 1, "{source}: {}", r.raw);
        let (owner, ttl, rtype, data) = &r.answers[0];
        assert_eq!(
            (owner.as_str(), rtype.as_str(), data.as_str()),
            ("MyStore.com.", "A", web_r.as_str()),
            "{source}: the owner is the question, as asked\n{}",
            r.raw
        );
        assert_eq!(*ttl, 42, "ttlSeconds sets the TTL\n{}", r.raw);
    }
    eprintln!("MyStore.com A -> {web_r} (owner MyStore.com., TTL 42) for every client");
    // rewriteAnswers: false: the answer keeps the Service's name, and the server's TTL.
    let r = dig_from(port, "127.0.0.1", "raw.mystore.com", "A");
    assert_eq!(r.data("A"), [web_r.as_str()], "{}", r.raw);
    assert_eq!(r.answers[0].0, svc("web", RW_NS), "{}", r.raw);
    assert_eq!(r.answers[0].1, 7, "{}", r.raw);
    // Suffix: SRV owner and target both come back under the asked suffix.
    let r = dig_from(port, "127.0.0.1", "_http._tcp.web.corp.test", "SRV");
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert_eq!(
        r.answers
            .iter()
            .map(|(o, t, ty, d)| (o.as_str(), *t, ty.as_str(), d.as_str()))
            .collect::<Vec<_>>(),
        [(
            "_http._tcp.web.corp.test.",
            7,
            "SRV",
            "0 100 80 web.corp.test."
        )],
        "{}",
        r.raw
    );
    let r = dig_from(port, "127.0.0.1", "web.corp.test", "A");
    assert_eq!(r.data("A"), [web_r.as_str()], "{}", r.raw);
    assert_eq!(r.answers[0].0, "web.corp.test.", "{}", r.raw);
    eprintln!(
        "raw.mystore.com keeps owner {}; _http._tcp.web.corp.test SRV -> web.corp.test.",
        svc("web", RW_NS)
    );

    // The tenant rule: a's Pod gets a's Service; b's Pod and unidentified clients do not.
    let r = dig_from(port, RW_CLIENT_A, "shop.tenant.test", "A");
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert_eq!(
        r.answers
            .iter()
            .map(|(o, t, ty, d)| (o.as_str(), *t, ty.as_str(), d.as_str()))
            .collect::<Vec<_>>(),
        [("shop.tenant.test.", 7, "A", web_a.as_str())],
        "{}",
        r.raw
    );
    for source in [RW_CLIENT_B, "127.0.0.1"] {
        let r = dig_from(port, source, "shop.tenant.test", "A");
        assert!(
            r.answers.is_empty() && r.status != "NOERROR",
            "a's rule must not apply to {source}: {}",
            r.raw
        );
        eprintln!(
            "shop.tenant.test from {source}: {} (not rewritten)",
            r.status
        );
    }
    // The refused rule does nothing, not even for a's Pod.
    let r = dig_from(port, RW_CLIENT_A, "steal.tenant.test", "A");
    assert!(
        r.answers.is_empty() && !r.raw.contains(&web_b),
        "the OutsideNamespace rule is not served: {}",
        r.raw
    );

    let metrics = dns.metrics();
    let rewrites =
        |rule: &str| metric_with(&metrics, "nameplane_dns_rewrites_total", &[("rule", rule)]);
    let (store, own, steal) = (
        rewrites("e2e-pra-r/store"),
        rewrites("e2e-pra-ra/own"),
        rewrites("e2e-pra-ra/steal"),
    );
    eprintln!("nameplane_dns_rewrites_total: store {store}, own {own}, steal {steal}");
    assert!(store >= 6.0, "{metrics}");
    assert!(own >= 2.0, "{metrics}");
    assert_eq!(steal, 0.0, "{metrics}");
    dns.process.assert_running();
}

// ---------------------------------------------------------------------------------------
// 3. Autopath
// ---------------------------------------------------------------------------------------

const AP_NS: &str = "e2e-pra-p";
const AP_CLIENT_NS: &str = "e2e-pra-pa";
const AP_OTHER_NS: &str = "e2e-pra-pb";
const AP_CLIENT: &str = "127.0.30.41";

/// A nameplane server serving `example.test` from its own ConfigMap: the upstream.
fn upstream() -> DnsServer {
    let name = "pra-upstream";
    let record = |name: &str, ip: &str| RecordConfig {
        name: name.into(),
        record_type: RecordKind::A,
        ttl_seconds: 60,
        values: vec![ip.into()],
    };
    let config = ServerConfig {
        server: format!("e2e/{name}"),
        zones: vec![ZoneConfig {
            name: "example.test".into(),
            source: "e2e/upstream".into(),
            ttl_seconds: 10,
            records: vec![record("www.example.test", "192.0.2.81")],
            allow_transfer: vec![],
        }],
        ..Default::default()
    };
    nameplane_e2e::publish_config(AP_NS, name, &config);
    let mut server = DnsServer::start(name, &format!("{AP_NS}/{name}"), &[]);
    server.wait_ready(READY);
    server
}

/// What a Pod's stub resolver does with `name` (glibc, `options ndots:5`): with fewer
/// than `ndots` dots, each search domain first, then the name as is; it stops at the first
/// answer with an A record or an error other than NXDOMAIN/NODATA. Returns the names it
/// asked (one query each, `+tries=1`) and the last answer.
fn stub_lookup(port: u16, source: &str, name: &str, search: &[String]) -> (Vec<String>, DigResult) {
    let ndots = 5;
    let absolute = format!("{name}.");
    let searched = search.iter().map(|domain| format!("{name}.{domain}."));
    let candidates: Vec<String> = if name.matches('.').count() >= ndots {
        std::iter::once(absolute).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(absolute)).collect()
    };
    let mut asked = Vec::new();
    let mut last = None;
    for candidate in candidates {
        let r = dig_from(port, source, &candidate, "A");
        asked.push(candidate);
        let done = !r.data("A").is_empty() || !matches!(r.status.as_str(), "NXDOMAIN" | "NOERROR");
        last = Some(r);
        if done {
            break;
        }
    }
    (asked, last.expect("at least one query"))
}

#[test]
fn autopath_answers_a_pods_search_path_in_one_query() {
    let _operator = start_operator("e2e-pra-autopath");
    let _namespaces = Namespaces::fresh(&[(AP_NS, &[]), (AP_CLIENT_NS, &[]), (AP_OTHER_NS, &[])]);
    let kube = Kube::connect();
    apply(AP_OTHER_NS, WEB);
    kube.create_pods(
        AP_CLIENT_NS,
        &[FakePod::new("client", "client", &[AP_CLIENT], true)],
    );
    let upstream = upstream();
    for (name, autopath) in [("dns-off", false), ("dns-on", true)] {
        apply(
            AP_NS,
            &format!(
                "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  autopath: {autopath}\n  upstreams: [\"127.0.0.1:{}\"]\n",
                upstream.port
            ),
        );
    }
    let mut servers = Vec::new();
    for name in ["dns-off", "dns-on"] {
        wait_condition(
            AP_NS,
            &format!("dnsserver/{name}"),
            "False",
            "PodsRollingOut",
        );
        let config = wait_published(AP_NS, name, &[&format!("127.0.0.1:{}", upstream.port)]);
        assert_eq!(
            config.contains("\"autopath\": true"),
            name == "dns-on",
            "{name}:\n{config}"
        );
        let mut dns = DnsServer::start(
            &format!("{name}-e2e-pra"),
            &format!("{AP_NS}/{name}-config"),
            &[],
        );
        dns.wait_ready(READY);
        servers.push(dns);
    }
    let (off, on) = (&servers[0], &servers[1]);
    let (web_pb, _) = cluster_ips(AP_OTHER_NS, "web");
    let first_search = format!("{AP_CLIENT_NS}.svc.{ZONE}");
    let search = vec![first_search.clone(), format!("svc.{ZONE}"), ZONE.to_owned()];
    // The client is identified once the server walks its search path.
    wait_for(
        "the client Pod identified by the autopath server",
        READY,
        || {
            let r = dig_from(
                on.port,
                AP_CLIENT,
                &format!("web.{AP_OTHER_NS}.{first_search}."),
                "A",
            );
            (r.data("A") == [web_pb.clone()]).then_some(())
        },
    );

    let requests = |dns: &DnsServer| metric_sum(&dns.metrics(), "coredns_dns_requests_total");
    let upstream_requests = || metric_sum(&upstream.metrics(), "coredns_dns_requests_total");
    let mut report = Vec::new();
    for (name, want_ip, want_off) in [
        ("www.example.test", "192.0.2.81", 4),
        (&*format!("web.{AP_OTHER_NS}"), web_pb.as_str(), 2),
    ] {
        let resolved = if want_off == 4 {
            format!("{name}.")
        } else {
            svc("web", AP_OTHER_NS)
        };
        for (label, dns, want_queries) in [("off", off, want_off), ("on", on, 1)] {
            let (server_before, upstream_before) = (requests(dns), upstream_requests());
            let (asked, r) = stub_lookup(dns.port, AP_CLIENT, name, &search);
            let received = requests(dns) - server_before;
            let upstream_queries = upstream_requests() - upstream_before;
            eprintln!(
                "autopath {label}: {name} took {} client queries ({received} received by the server, {upstream_queries} sent on to the upstream): {asked:?}",
                asked.len()
            );
            report.push(format!(
                "{name} autopath {label}: {} queries, {upstream_queries} upstream",
                asked.len()
            ));
            assert_eq!(r.status, "NOERROR", "{name} ({label}): {}", r.raw);
            assert_eq!(
                r.data("A"),
                [want_ip.to_owned()],
                "{name} ({label}): {}",
                r.raw
            );
            assert_eq!(asked.len(), want_queries, "{name} ({label}): {asked:?}");
            assert_eq!(
                received,
                asked.len() as f64,
                "{name} ({label}): the server's own count"
            );
            assert_eq!(
                upstream_queries,
                if want_off == 4 { 1.0 } else { 0.0 },
                "{name} ({label}): queries that reached the upstream"
            );
            if label == "on" {
                // The CNAME from the asked name (the first search domain) to the found one.
                let asked_name = format!("{name}.{first_search}.");
                assert_eq!(
                    r.answers
                        .first()
                        .map(|a| (a.0.as_str(), a.2.as_str(), a.3.as_str())),
                    Some((asked_name.as_str(), "CNAME", resolved.as_str())),
                    "{}",
                    r.raw
                );
                assert_eq!(r.answers.len(), 2, "CNAME + A: {}", r.raw);
                assert_eq!(r.answers[1].0, resolved, "{}", r.raw);
            } else {
                assert!(r.data("CNAME").is_empty(), "{}", r.raw);
                assert_eq!(r.answers[0].0, resolved, "{}", r.raw);
            }
        }
    }
    // A name found nowhere: the first step's NXDOMAIN, with the cluster SOA.
    let missing = format!("nothere-e2e-pra.{first_search}.");
    let r = dig_from(on.port, AP_CLIENT, &missing, "A");
    assert_eq!(r.status, "NXDOMAIN", "{}", r.raw);
    assert!(r.answers.is_empty(), "{}", r.raw);
    assert!(r.authority.iter().any(|a| a.2 == "SOA"), "{}", r.raw);
    // No autopath for a client the server cannot tie to a Pod: its search path is unknown.
    let r = dig_from(
        on.port,
        "127.0.0.1",
        &format!("www.example.test.{first_search}."),
        "A",
    );
    assert_eq!(r.status, "NXDOMAIN", "unidentified: {}", r.raw);
    // Nor for a question outside the Pod's first search domain.
    let r = dig_from(
        on.port,
        AP_CLIENT,
        &format!("www.example.test.svc.{ZONE}."),
        "A",
    );
    assert_eq!(
        r.status, "NXDOMAIN",
        "not the first search domain: {}",
        r.raw
    );

    let metrics = on.metrics();
    let (hit, miss) = (
        metric_with(
            &metrics,
            "nameplane_dns_autopath_total",
            &[("result", "hit")],
        ),
        metric_with(
            &metrics,
            "nameplane_dns_autopath_total",
            &[("result", "miss")],
        ),
    );
    eprintln!("nameplane_dns_autopath_total: hit {hit}, miss {miss}");
    eprintln!("autopath summary: {}", report.join("; "));
    assert!(hit >= 2.0, "{metrics}");
    assert!(miss >= 1.0, "{metrics}");
    assert_eq!(
        metric_sum(&off.metrics(), "nameplane_dns_autopath_total"),
        0.0,
        "the server without autopath never walks"
    );
    for dns in &mut servers {
        dns.process.assert_running();
    }
}
