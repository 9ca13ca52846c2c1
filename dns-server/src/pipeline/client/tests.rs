//! Policy, rewrite and autopath through [`crate::pipeline::answer`]: queries from Pods of
//! the fixture cluster (identified by source address), responses decoded with hickory.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use nameplane_config::policy::{
    ClientsConfig, DeniedResponse, NodeClientsConfig, PolicyAction, PolicyConfig, PolicyRuleConfig,
};
use nameplane_config::rewrite::{MatchKind, RewriteConfig};
use nameplane_config::{KubernetesConfig, ServerConfig};

use crate::cluster::index::{Cluster, PodClient};
use crate::metrics::Metrics;
use crate::pipeline::tests::answer;
use crate::pipeline::tests::{cluster, ip, lines, test_metrics};
use crate::pipeline::{Pipeline, Settings, Sources};
use crate::request::Transport;
use crate::request::tests::query_bytes;

/// Pods: `web` in `default` (10.244.0.5, app=web), `tool` in `default` (10.244.0.6,
/// app=tool), `api` in `other` (10.244.1.50); two host-network Pods share 10.0.0.1.
fn clients() -> Cluster {
    let mut c = cluster();
    let pods = c.pods.as_mut().expect("watched");
    let mut add = |namespace: &str, name: &str, app: &str, at: &str, host_network: bool| {
        let pod = Arc::new(PodClient {
            namespace: namespace.into(),
            name: name.into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            host_network,
            running: true,
        });
        pods.replace(None, Some((&[ip(at)], &pod)));
    };
    add("default", "web", "web", "10.244.0.6", false);
    add("default", "tool", "tool", "10.244.0.7", false);
    add("other", "api", "api", "10.244.1.50", false);
    add("kube-system", "proxy", "proxy", "10.0.0.1", true);
    add("kube-system", "agent", "agent", "10.0.0.1", true);
    c
}

struct Clients {
    pipeline: Pipeline,
    cluster: Cluster,
    metrics: Metrics,
}

impl Clients {
    fn new(edit: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig {
            kubernetes: KubernetesConfig {
                ttl_seconds: 30,
                ..KubernetesConfig::default()
            },
            ..ServerConfig::default()
        };
        edit(&mut config);
        Self {
            pipeline: Pipeline::build(config.validate().expect("valid"), "h".into())
                .expect("builds"),
            cluster: clients(),
            metrics: test_metrics(),
        }
    }

    /// Who denied `name` asked by `from` (the query log's `policy`), `None` when allowed.
    fn denied_by(&self, from: &str, name: &str) -> Option<String> {
        answer(
            &query_bytes(name, RecordType::A, Some(1232)),
            Transport::Udp,
            Some(&self.pipeline),
            &Sources {
                cluster: &self.cluster,
                client: SocketAddr::new(ip(from), 40000),
                metrics: &self.metrics,
            },
            &Settings::default(),
            &mut Vec::new(),
        )
        .denied_by
        .map(|by| by.to_string())
    }

    fn ask_from(&self, from: &str, name: &str, qtype: RecordType) -> Message {
        let mut out = Vec::new();
        let outcome = answer(
            &query_bytes(name, qtype, Some(1232)),
            Transport::Udp,
            Some(&self.pipeline),
            &Sources {
                cluster: &self.cluster,
                client: SocketAddr::new(ip(from), 40000),
                metrics: &self.metrics,
            },
            &Settings::default(),
            &mut out,
        );
        assert!(outcome.replied, "{name} from {from}: answered now");
        let message = Message::from_vec(&out).expect("decodes");
        assert_eq!(message.metadata.response_code, outcome.rcode);
        assert_eq!(
            message.queries[0].name().to_ascii(),
            name,
            "the question is echoed as asked"
        );
        message
    }
}

fn policy(namespace: &str, app: Option<&str>, rules: &[(PolicyAction, &[&str])]) -> PolicyConfig {
    PolicyConfig {
        source: format!("{namespace}/only-own"),
        namespace: namespace.into(),
        pod_selector: nameplane_config::LabelSelector {
            match_labels: app
                .map(|app| [("app".to_owned(), app.to_owned())].into())
                .unwrap_or_default(),
            ..Default::default()
        },
        rules: rules
            .iter()
            .map(|(action, domains)| PolicyRuleConfig {
                action: *action,
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            })
            .collect(),
        default_action: PolicyAction::Deny,
        denied_response: DeniedResponse::Nxdomain,
        audit: true,
    }
}

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

#[test]
fn a_policy_restricts_its_pods_on_every_path() {
    let c = Clients::new(|config| {
        config.policies = vec![policy(
            "default",
            Some("web"),
            &[(PolicyAction::Allow, &["default.svc.cluster.local"])],
        )];
    });
    let web = "10.244.0.6";
    let allowed = c.ask_from(web, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        lines(&allowed.answers),
        ["web.default.svc.cluster.local. 30 A 10.96.0.10"]
    );
    assert!(allowed.metadata.authoritative);

    let denied = c.ask_from(web, "api.other.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode(&denied), ResponseCode::NXDomain);
    assert!(denied.answers.is_empty());
    let missing = c.ask_from(web, "nothing.other.svc.cluster.local.", RecordType::A);
    assert_eq!(
        (lines(&denied.authorities), denied.metadata.authoritative),
        (lines(&missing.authorities), missing.metadata.authoritative),
        "a denial looks like a name that does not exist"
    );
    for (name, qtype) in [
        ("_http._tcp.api.other.svc.cluster.local.", RecordType::SRV),
        ("1.1.96.10.in-addr.arpa.", RecordType::PTR),
        ("ext-out.default.svc.cluster.local.", RecordType::A),
        ("10-244-1-1.api.other.svc.cluster.local.", RecordType::A),
    ] {
        let m = c.ask_from(web, name, qtype);
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name} {qtype}: {m}");
        assert!(m.answers.is_empty(), "{name}");
    }
    // A CNAME inside the allowed namespace still resolves.
    let ext = c.ask_from(web, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode(&ext), ResponseCode::NoError);
    assert_eq!(ext.answers.len(), 2, "{ext}");

    // The same Pod seen through a dual-stack socket (an IPv4-mapped IPv6 address).
    let mapped = c.ask_from(
        "::ffff:10.244.0.6",
        "api.other.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(
        rcode(&mapped),
        ResponseCode::NXDomain,
        "still that Pod: {mapped}"
    );

    // Pods the policy does not select are not restricted.
    for from in ["10.244.0.7", "10.244.1.50"] {
        let m = c.ask_from(from, "api.other.svc.cluster.local.", RecordType::A);
        assert_eq!(
            lines(&m.answers),
            ["api.other.svc.cluster.local. 30 A 10.96.1.1"]
        );
    }
    let text = c.metrics.encode();
    for series in [
        r#"nameplane_dns_policy_decisions_total{policy="default/only-own",decision="allowed"} 2"#,
        r#"nameplane_dns_policy_decisions_total{policy="default/only-own",decision="denied"} 7"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

#[test]
fn unidentified_clients_get_the_platforms_choice_not_a_policys() {
    let policies = || {
        vec![policy(
            "default",
            None,
            &[(PolicyAction::Allow, &["cluster.local"])],
        )]
    };
    // A tenant's policy restricts its own Pods only: an unknown address and the address
    // two host-network Pods share resolve as before.
    let tenant = Clients::new(|config| config.policies = vec![policy("default", None, &[])]);
    for from in ["10.9.9.9", "10.0.0.1"] {
        let m = tenant.ask_from(from, "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{from}: not restricted");
    }
    let m = tenant.ask_from(
        "10.244.0.6",
        "web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(rcode(&m), ResponseCode::NXDomain, "the tenant's own Pod is");
    // The platform denies them: refused, with or without policies; identified Pods are
    // not touched by that.
    for with_policies in [false, true] {
        let closed = Clients::new(|config| {
            if with_policies {
                config.policies = policies();
            }
            config.clients.unidentified = PolicyAction::Deny;
        });
        for from in ["10.9.9.9", "10.0.0.1"] {
            let m = closed.ask_from(from, "web.default.svc.cluster.local.", RecordType::A);
            assert_eq!(
                rcode(&m),
                ResponseCode::Refused,
                "{from}: unknown or shared"
            );
        }
        let m = closed.ask_from(
            "10.244.1.50",
            "web.default.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(rcode(&m), ResponseCode::NoError, "a Pod no policy selects");
    }
    // Without any policy or denied class nobody is restricted, identified or not.
    let none = Clients::new(|config| config.kubernetes.autopath = true);
    let m = none.ask_from("10.9.9.9", "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NoError);
}

#[test]
fn a_denial_names_the_policy_or_class_that_denied_it() {
    let c = Clients::new(|config| {
        config.policies = vec![policy(
            "default",
            Some("web"),
            &[(PolicyAction::Allow, &["default.svc.cluster.local"])],
        )];
        config.clients.unidentified = PolicyAction::Deny;
    });
    let web = "10.244.0.6";
    assert_eq!(c.denied_by(web, "web.default.svc.cluster.local."), None);
    assert_eq!(
        c.denied_by(web, "dns.kube-system.svc.cluster.local.")
            .as_deref(),
        Some("default/only-own")
    );
    assert_eq!(
        c.denied_by("10.9.9.9", "web.default.svc.cluster.local.")
            .as_deref(),
        Some("(unidentified)")
    );
    // A REFUSED for a name no stage owns is no denial.
    let open = Clients::new(|config| config.kubernetes.autopath = true);
    assert_eq!(open.denied_by("10.9.9.9", "nothing.example."), None);
}

#[test]
fn node_addresses_are_a_class_the_platform_allows() {
    let mut c = Clients::new(|config| {
        config.policies = vec![policy("kube-system", None, &[])];
        config.clients = ClientsConfig {
            unidentified: PolicyAction::Deny,
            nodes: Some(NodeClientsConfig {
                action: PolicyAction::Allow,
                cidrs: vec!["10.0.0.0/24".into()],
                from_nodes: true,
            }),
        };
    });
    c.cluster.set_nodes_watched(true);
    c.cluster
        .nodes
        .as_mut()
        .expect("watched")
        .replace(&[], &[ip("10.1.0.7")]);
    c.cluster.set_synced(true);
    // 10.0.0.1 (in the CIDRs, shared by two host-network Pods of kube-system, which a
    // deny-all policy selects) and 10.1.0.7 (a Node's address) are nodes; 10.9.9.9 is not.
    for node in ["10.0.0.1", "10.1.0.7"] {
        let m = c.ask_from(node, "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{node}");
        assert_eq!(lines(&m.answers).len(), 1, "{node}: the answer");
    }
    let m = c.ask_from("10.9.9.9", "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::Refused);
    let text = c.metrics.encode();
    for line in [
        r#"nameplane_dns_policy_decisions_total{policy="(nodes)",decision="allowed"} 2"#,
        r#"nameplane_dns_policy_decisions_total{policy="(unidentified)",decision="denied"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

fn rewrite(from: &str, to: &str, kind: MatchKind, namespace: Option<&str>) -> RewriteConfig {
    RewriteConfig {
        source: "default/store".into(),
        match_kind: kind,
        from: from.into(),
        to: to.into(),
        rewrite_answers: true,
        ttl_seconds: None,
        client_namespace: namespace.map(String::from),
    }
}

#[test]
fn rewritten_questions_are_answered_with_the_asked_name() {
    let c = Clients::new(|config| {
        config.rewrites = vec![
            rewrite(
                "mystore.com",
                "web.default.svc.cluster.local",
                MatchKind::Exact,
                None,
            ),
            RewriteConfig {
                ttl_seconds: Some(7),
                ..rewrite(
                    "api.internal",
                    "api.other.svc.cluster.local",
                    MatchKind::Exact,
                    Some("other"),
                )
            },
        ];
    });
    let m = c.ask_from("10.9.9.9", "MyStore.com.", RecordType::A);
    assert_eq!(lines(&m.answers), ["mystore.com. 30 A 10.96.0.10"]);
    assert_eq!(
        m.answers[0].name.to_ascii(),
        "MyStore.com.",
        "the client's spelling"
    );
    let srv = c.ask_from("10.9.9.9", "mystore.com.", RecordType::AAAA);
    assert_eq!(lines(&srv.answers), ["mystore.com. 30 AAAA fd00::10"]);

    // A tenant's rule: only its own Pods see it, with its TTL.
    let own = c.ask_from("10.244.1.50", "api.internal.", RecordType::A);
    assert_eq!(lines(&own.answers), ["api.internal. 7 A 10.96.1.1"]);
    let foreign = c.ask_from("10.244.0.6", "api.internal.", RecordType::A);
    assert_eq!(
        rcode(&foreign),
        ResponseCode::Refused,
        "no stage owns it for them"
    );
    assert!(foreign.answers.is_empty());
}

#[test]
fn without_rewrite_answers_the_answer_keeps_the_rewritten_name() {
    let c = Clients::new(|config| {
        config.rewrites = vec![RewriteConfig {
            rewrite_answers: false,
            ttl_seconds: Some(7),
            ..rewrite(
                "raw.mystore.com",
                "web.default.svc.cluster.local",
                MatchKind::Exact,
                None,
            )
        }];
    });
    let m = c.ask_from("10.9.9.9", "Raw.MyStore.com.", RecordType::A);
    assert_eq!(
        lines(&m.answers),
        ["web.default.svc.cluster.local. 7 A 10.96.0.10"],
        "the Service's own name, with the rule's TTL"
    );
}

#[test]
fn the_platforms_rewrites_need_no_pod_list() {
    // Rules of the server's own namespace apply to every client: no Pod watch is started for
    // them, so nothing may wait for (or refuse while there is no) Pod list.
    let mut c = Clients::new(|config| {
        config.rewrites = vec![rewrite(
            "mystore.com",
            "web.default.svc.cluster.local",
            MatchKind::Exact,
            None,
        )];
    });
    assert!(!c.pipeline.config().needs_pods());
    c.cluster.set_pods_watched(false);
    let m = c.ask_from("10.9.9.9", "mystore.com.", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert_eq!(lines(&m.answers), ["mystore.com. 30 A 10.96.0.10"]);
}

#[test]
fn autopath_answers_the_first_search_domain_that_exists() {
    let c = Clients::new(|config| config.kubernetes.autopath = true);
    let web = "10.244.0.6";
    let m = c.ask_from(web, "api.other.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        lines(&m.answers),
        [
            "api.other.default.svc.cluster.local. 30 CNAME api.other.svc.cluster.local.",
            "api.other.svc.cluster.local. 30 A 10.96.1.1",
        ]
    );
    // The asked name exists: no walk, no CNAME.
    let direct = c.ask_from(web, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        lines(&direct.answers),
        ["web.default.svc.cluster.local. 30 A 10.96.0.10"]
    );
    // Nothing on the path: the first step's NXDOMAIN, with the cluster SOA.
    let none = c.ask_from(web, "nothing.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode(&none), ResponseCode::NXDomain);
    assert_eq!(none.authorities.len(), 1);
    // Another namespace's search domain is not this Pod's: answered as asked.
    let other = c.ask_from(web, "api.other.other.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode(&other), ResponseCode::NXDomain);
    let text = c.metrics.encode();
    assert!(
        text.contains(r#"nameplane_dns_autopath_total{result="hit"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"nameplane_dns_autopath_total{result="miss"} 1"#),
        "{text}"
    );
}

#[test]
fn autopath_skips_what_the_policy_denies() {
    let c = Clients::new(|config| {
        config.kubernetes.autopath = true;
        config.policies = vec![policy(
            "default",
            None,
            &[(PolicyAction::Allow, &["default.svc.cluster.local"])],
        )];
    });
    let m = c.ask_from(
        "10.244.0.6",
        "api.other.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(rcode(&m), ResponseCode::NXDomain, "{m}");
    assert!(m.answers.is_empty());
}

#[test]
fn never_panics_on_mutated_input_from_restricted_clients() {
    use crate::pipeline::tests::Rng;
    let c = Clients::new(|config| {
        config.kubernetes.autopath = true;
        config.policies = vec![policy(
            "default",
            Some("web"),
            &[(PolicyAction::Allow, &["default.svc.cluster.local"])],
        )];
        config.rewrites = vec![
            rewrite(
                "mystore.com",
                "web.default.svc.cluster.local",
                MatchKind::Exact,
                None,
            ),
            rewrite(
                r"(\w+)\.corp",
                "{1}.default.svc.cluster.local",
                MatchKind::Regex,
                None,
            ),
        ];
    });
    let seeds: Vec<Vec<u8>> = [
        ("mystore.com.", RecordType::A),
        ("web.corp.", RecordType::AAAA),
        ("api.other.default.svc.cluster.local.", RecordType::A),
        ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
        ("10.0.96.10.in-addr.arpa.", RecordType::PTR),
        ("default.svc.cluster.local.", RecordType::AXFR),
    ]
    .into_iter()
    .map(|(name, qtype)| query_bytes(name, qtype, Some(1232)))
    .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..4000 {
        let mut packet = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(3) {
            match rng.below(3) {
                0 => {
                    let at = rng.below(packet.len());
                    packet[at] = rng.byte();
                }
                1 => packet.truncate(rng.below(packet.len() + 1)),
                _ => {
                    let at = rng.below(packet.len() + 1);
                    packet.insert(at, rng.byte());
                }
            }
            if packet.is_empty() {
                break;
            }
        }
        for from in ["10.244.0.6", "10.244.0.7", "10.9.9.9"] {
            let mut out = Vec::new();
            let outcome = answer(
                &packet,
                Transport::Udp,
                Some(&c.pipeline),
                &Sources {
                    cluster: &c.cluster,
                    client: SocketAddr::new(ip(from), 40000),
                    metrics: &c.metrics,
                },
                &Settings::default(),
                &mut out,
            );
            if outcome.replied {
                assert_eq!(out[..2], packet[..2], "id echoed, round {round}");
                assert!(Message::from_vec(&out).is_ok(), "round {round} decodes");
            }
        }
    }
}

/// A zone of 80 A records (about 2 KB: more than any UDP reply may hold), which Pods of
/// 10.244.0.0/16 may transfer, and a policy that lets `default`'s Pods resolve it.
fn transferable() -> Clients {
    use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
    Clients::new(|config| {
        config.zones = vec![ZoneConfig {
            name: "big.internal".into(),
            source: "default/big".into(),
            ttl_seconds: 60,
            records: (0..80)
                .map(|i| RecordConfig {
                    name: format!("host-{i}.big.internal"),
                    record_type: RecordKind::A,
                    ttl_seconds: 60,
                    values: vec![format!("192.0.2.{i}")],
                })
                .collect(),
            allow_transfer: vec!["10.244.0.0/16".into()],
        }];
        config.policies = vec![policy(
            "default",
            None,
            &[(PolicyAction::Allow, &["big.internal"])],
        )];
    })
}

impl Clients {
    /// Asks `name`/`qtype` from `from` over `transport`: the outcome and the first message.
    fn ask_over(
        &self,
        transport: Transport,
        from: &str,
        name: &str,
        qtype: RecordType,
        edns: Option<u16>,
    ) -> (crate::pipeline::tests::Observed, Vec<u8>) {
        let mut out = Vec::new();
        let outcome = answer(
            &query_bytes(name, qtype, edns),
            transport,
            Some(&self.pipeline),
            &Sources {
                cluster: &self.cluster,
                client: SocketAddr::new(ip(from), 40000),
                metrics: &self.metrics,
            },
            &Settings::default(),
            &mut out,
        );
        (outcome, out)
    }
}

#[test]
fn a_restricted_clients_transfer_never_goes_over_udp() {
    let c = transferable();
    let web = "10.244.0.6";
    // Over TCP the allowed Pod gets the zone: SOA first, every record checked by its policy.
    let (tcp, first) = c.ask_over(Transport::Tcp, web, "big.internal.", RecordType::AXFR, None);
    assert_eq!(tcp.rcode, ResponseCode::NoError);
    let first = Message::from_vec(&first).expect("decodes");
    assert_eq!(first.answers[0].record_type(), RecordType::SOA);
    // Over UDP, whether it used EDNS or not: REFUSED, one small message, no zone.
    for edns in [None, Some(1232), Some(4096)] {
        let (udp, out) = c.ask_over(Transport::Udp, web, "big.internal.", RecordType::AXFR, edns);
        assert_eq!(udp.rcode, ResponseCode::Refused, "EDNS {edns:?}");
        assert!(udp.more.is_empty(), "EDNS {edns:?}: no further messages");
        assert!(out.len() <= 512, "EDNS {edns:?}: {} bytes", out.len());
        let message = Message::from_vec(&out).expect("decodes");
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
        assert!(message.answers.is_empty(), "EDNS {edns:?}");
        let (ixfr, _) = c.ask_over(Transport::Udp, web, "big.internal.", RecordType::IXFR, edns);
        assert_eq!(ixfr.rcode, ResponseCode::Refused, "IXFR, EDNS {edns:?}");
    }
}
