//! What kubeadm's CoreDNS Corefile says, said with a `DNSServer` and served, on the real
//! control plane: `spec.kubernetes` (pods insecure, reverse fallthrough, ExternalName
//! targets resolved), `upstreamsFromResolvConf` (the upstream is the nameserver of a
//! resolv.conf given with `--resolv-conf`) and `loadBalance`, rendered by the real operator
//! into the ConfigMap a real `nameplane-dns` follows, queried with `dig`; admission refuses
//! what CoreDNS refuses (`namespaces` with `namespaceSelector`).
//!
//! The upstream is Knot, authoritative for `example.org` and `2.0.192.in-addr.arpa`, on a
//! loopback address at port 53 (a resolv.conf names no port), so this test needs root.
//! Needs `make cluster-up`, `cargo build --bins` and `knotd` (`make deps`).

use std::path::PathBuf;
use std::time::Duration;

use nameplane_e2e::{
    DnsServer, Operator, Process, Transport, apply, dig, e2e_dir, ensure_namespace, kubectl,
    start_knotd, wait_for,
};

const NS: &str = "e2e-coredns-options";

/// Knot on `ip`:53 with `example.org` (`www` → 192.0.2.80, 192.0.2.81, 192.0.2.82) and the
/// reverse zone of 192.0.2.0/24 (`80` → `www.example.org.`).
struct Knot {
    _process: Process,
    dir: PathBuf,
}

impl Knot {
    fn start(ip: &str) -> Self {
        let dir = e2e_dir().join(format!("knot-options-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("zones")).expect("knot dir");
        let soa = "@ SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 300\n";
        std::fs::write(
            dir.join("zones/example.org.zone"),
            format!(
                "$ORIGIN example.org.\n$TTL 300\n{soa}@ NS ns\nns A 127.0.0.1\n\
                 www A 192.0.2.80\nwww A 192.0.2.81\nwww A 192.0.2.82\n"
            ),
        )
        .expect("zone");
        std::fs::write(
            dir.join("zones/2.0.192.in-addr.arpa.zone"),
            format!(
                "$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 300\n{soa}@ NS ns.example.org.\n\
                 80 PTR www.example.org.\n"
            ),
        )
        .expect("zone");
        let d = dir.display();
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: {ip}@53\n\
             control:\n  listen: \"{d}/knot.sock\"\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n  storage: \"{d}/db\"\n\
             template:\n  - id: default\n    storage: \"{d}/zones\"\n\
             zone:\n  - domain: example.org\n  - domain: 2.0.192.in-addr.arpa\n"
        );
        let process = start_knotd("knotd-options", &dir, &conf);
        Self {
            _process: process,
            dir,
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn kubeadm_corefile_options_are_rendered_and_served() {
    nameplane_e2e::install_crds();
    ensure_namespace("nameplane-system", &[]);
    ensure_namespace(NS, &[]);
    // A loopback address of its own (the last two bytes from the process id) so that port 53
    // is free there.
    let pid = std::process::id();
    let upstream_ip = format!("127.53.{}.{}", (pid >> 8) % 250 + 1, pid % 250 + 1);
    let knot = Knot::start(&upstream_ip);
    let resolv_conf = knot.dir.join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!("# the node's resolvers\nsearch example.org\nnameserver {upstream_ip}\n"),
    )
    .expect("resolv.conf");

    // What CoreDNS refuses, admission refuses.
    let both = nameplane_e2e::kubectl_with_stdin(
        &["apply", "-n", NS, "-f", "-"],
        Some(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: both\nspec:\n  kubernetes:\n    namespaces: [default]\n    namespaceSelector: {matchLabels: {a: b}}\n",
        ),
    );
    assert!(!both.status.success(), "namespaces with namespaceSelector");
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot both be set"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );

    let _operator = Operator::start("operator-coredns-options", &["--lease-name", NS]);
    apply(
        NS,
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: coredns\nspec:\n  ttlSeconds: 30\n  upstreamsFromResolvConf: true\n  loadBalance: RoundRobin\n  cache: {maxTtlSeconds: 30}\n  kubernetes:\n    pods: Insecure\n    reverseFallthrough: true\n    resolveExternalNames: true\n",
    );
    apply(
        NS,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\nspec:\n  type: ExternalName\n  externalName: www.example.org\n",
    );
    let mut dns = DnsServer::start(
        "dns-coredns-options",
        &format!("{NS}/coredns-config"),
        &["--resolv-conf", &resolv_conf.display().to_string()],
    );
    dns.wait_ready(Duration::from_secs(30));

    // pods insecure: the address read from the name.
    let pod = wait_for("a pod record", Duration::from_secs(20), || {
        let r = dns.dig(
            &format!("10-244-0-5.{NS}.pod.cluster.local."),
            "A",
            Transport::Udp,
        );
        (r.status == "NOERROR").then_some(r)
    });
    assert_eq!(pod.data("A"), ["10.244.0.5"], "{}", pod.raw);

    // forward . /etc/resolv.conf: an external name from the resolv.conf's nameserver.
    let www = dns.dig("www.example.org.", "A", Transport::Udp);
    assert_eq!(www.status, "NOERROR", "{}", www.raw);
    assert_eq!(
        www.data("A"),
        ["192.0.2.80", "192.0.2.81", "192.0.2.82"],
        "{}",
        www.raw
    );

    // fallthrough in-addr.arpa: a non-cluster address's PTR from the upstream.
    let ptr = dns.dig("80.2.0.192.in-addr.arpa.", "PTR", Transport::Udp);
    assert_eq!(ptr.status, "NOERROR", "{}", ptr.raw);
    assert_eq!(ptr.data("PTR"), ["www.example.org."], "{}", ptr.raw);

    // resolveExternalNames: the CNAME and the target's addresses.
    let ext = wait_for("the ExternalName answer", Duration::from_secs(20), || {
        let r = dns.dig(
            &format!("ext.{NS}.svc.cluster.local."),
            "A",
            Transport::Udp,
        );
        (!r.data("CNAME").is_empty()).then_some(r)
    });
    assert_eq!(ext.data("CNAME"), ["www.example.org."], "{}", ext.raw);
    assert_eq!(
        ext.data("A"),
        ["192.0.2.80", "192.0.2.81", "192.0.2.82"],
        "{}",
        ext.raw
    );

    // loadbalance: the three addresses come in more than one order.
    let orders: std::collections::BTreeSet<Vec<String>> = (0..30)
        .map(|_| {
            dns.dig("www.example.org.", "A", Transport::Udp)
                .answers
                .iter()
                .map(|a| a.3.clone())
                .collect()
        })
        .collect();
    assert!(orders.len() > 1, "one order only: {orders:?}");

    // No loop through the upstream: nothing on /ready.
    let (code, body) = dns.admin("/ready").expect("/ready");
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("forwarding-loop"), "{body}");

    // reverseFallthrough off: NXDOMAIN from the cluster stage, with the reverse zone's SOA.
    kubectl(&[
        "patch",
        "dnsserver",
        "coredns",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"kubernetes":{"reverseFallthrough":false}}}"#,
    ]);
    let nx = wait_for("PTR NXDOMAIN", Duration::from_secs(20), || {
        let r = dns.dig("80.2.0.192.in-addr.arpa.", "PTR", Transport::Udp);
        (r.status == "NXDOMAIN").then_some(r)
    });
    assert_eq!(nx.authority[0].0, "in-addr.arpa.", "{}", nx.raw);
    dns.process.assert_running();
}
