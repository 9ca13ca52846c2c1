//! Golden files and rule tests for the renderer.

use super::*;
use crate::api::dnszone::DNSZone;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Parsed objects of one YAML stream: the first document is the `DNSServer`; `Service`s
/// among the rest are the snapshot of Services the renderer is given.
struct Objects {
    server: DNSServer,
    namespaces: Vec<Arc<Namespace>>,
    zones: Vec<Arc<DNSZone>>,
    stubs: Vec<Arc<StubDomain>>,
    rewrites: Vec<Arc<RewriteRule>>,
    policies: Vec<Arc<DNSPolicy>>,
    services: services::ServiceIndex,
    cluster_addresses: forwarders::ClusterAddresses,
}

impl Objects {
    fn parse(yaml: &str) -> Self {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).expect("yaml stream");
        let mut docs = docs.into_iter().filter(|d| !d.is_null());
        let server =
            serde_json::from_value(docs.next().expect("a DNSServer first")).expect("DNSServer");
        let mut objects = Self {
            server,
            namespaces: vec![],
            zones: vec![],
            stubs: vec![],
            rewrites: vec![],
            policies: vec![],
            services: Default::default(),
            cluster_addresses: Default::default(),
        };
        let mut service_objects: Vec<k8s_openapi::api::core::v1::Service> = Vec::new();
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "Namespace" => objects
                    .namespaces
                    .push(Arc::new(serde_json::from_value(doc).expect("Namespace"))),
                "DNSZone" => objects
                    .zones
                    .push(Arc::new(serde_json::from_value(doc).expect("DNSZone"))),
                "StubDomain" => objects
                    .stubs
                    .push(Arc::new(serde_json::from_value(doc).expect("StubDomain"))),
                "RewriteRule" => objects
                    .rewrites
                    .push(Arc::new(serde_json::from_value(doc).expect("RewriteRule"))),
                "DNSPolicy" => objects
                    .policies
                    .push(Arc::new(serde_json::from_value(doc).expect("DNSPolicy"))),
                "Service" => service_objects.push(serde_json::from_value(doc).expect("Service")),
                // What the controller reads of Nodes: their addresses.
                "Node" => {
                    let node: k8s_openapi::api::core::v1::Node =
                        serde_json::from_value(doc).expect("Node");
                    let name = node.metadata.name.clone().unwrap_or_default();
                    for address in node
                        .status
                        .iter()
                        .flat_map(|s| s.addresses.iter().flatten())
                    {
                        if let Ok(ip) = address.address.parse() {
                            objects.cluster_addresses.nodes.insert(ip, name.clone());
                        }
                    }
                }
                other => panic!("unexpected kind {other:?}"),
            }
        }
        for service in &service_objects {
            if service.metadata.namespace.as_deref() == Some("default")
                && service.metadata.name.as_deref() == Some("kubernetes")
            {
                objects
                    .cluster_addresses
                    .api_server
                    .extend(services::ServiceAddresses::of(service).cluster_ips);
            }
        }
        objects.services = services::ServiceIndex::from_services(&service_objects);
        objects
    }

    fn render(&self) -> Rendered {
        render(
            &self.server,
            &Inputs {
                namespaces: &self.namespaces,
                zones: &self.zones,
                stubs: &self.stubs,
                rewrites: &self.rewrites,
                policies: &self.policies,
                services: &self.services,
                cluster_addresses: &self.cluster_addresses,
            },
        )
    }
}

fn verdict_lines(rendered: &Rendered) -> String {
    rendered
        .verdicts
        .iter()
        .map(|(key, verdict)| match verdict {
            Verdict::Accepted => format!("{key}: Accepted\n"),
            Verdict::Rejected { reason, message } => format!("{key}: {reason}: {message}\n"),
            Verdict::Partial { reason, message } => {
                format!("{key}: Partial: {reason}: {message}\n")
            }
        })
        .collect()
}

/// Every `<case>.input.yaml` under `tests/golden/` (a DNSServer, then the objects around it)
/// renders to exactly `<case>.output.json` (or the error in `<case>.error.txt`), with the
/// verdicts in `<case>.verdicts.txt` when there are config objects, and reads back (as the
/// DNS server reads it) to a config with the same content hash.
/// `make golden` (UPDATE_GOLDEN=1) rewrites the expected files.
#[test]
fn golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases = 0;
    let check = |path: PathBuf, actual: Option<String>| {
        if update {
            match &actual {
                Some(text) => std::fs::write(&path, text).expect("write golden"),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let expected = std::fs::read_to_string(&path).ok();
        assert_eq!(
            actual,
            expected,
            "{} differs; run `make golden` if the change is intended",
            path.display()
        );
    };
    for entry in std::fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let path = entry.expect("dir entry").path();
        let Some(case) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".input.yaml"))
        else {
            continue;
        };
        cases += 1;
        let rendered =
            Objects::parse(&std::fs::read_to_string(&path).expect("read input")).render();
        if let Ok(cfg) = &rendered.config {
            // The DNS server refuses a ConfigMap whose content does not hash to the
            // annotation: what it reads back must hash to what was written.
            let read_back: nameplane_config::ServerConfig =
                serde_json::from_str(&cfg.to_json()).expect("the server parses the config");
            assert_eq!(
                read_back.content_hash(),
                cfg.content_hash(),
                "{case}: the config does not survive a round trip through its JSON"
            );
        }
        let (output, error) = match &rendered.config {
            Ok(cfg) => (Some(cfg.to_json() + "\n"), None),
            Err(e) => (None, Some(e.to_string() + "\n")),
        };
        check(golden_dir().join(format!("{case}.output.json")), output);
        check(golden_dir().join(format!("{case}.error.txt")), error);
        let verdicts = verdict_lines(&rendered);
        check(
            golden_dir().join(format!("{case}.verdicts.txt")),
            (!verdicts.is_empty()).then_some(verdicts),
        );
    }
    assert!(cases >= 4, "expected golden cases, found {cases}");
}

const SERVER: &str = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {}\n";

fn zone(namespace: &str, name: &str, apex: &str, created: &str) -> String {
    format!(
        "---\napiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: {name}, namespace: {namespace}, creationTimestamp: \"{created}\"}}\nspec:\n  zone: {apex}\n  records: [{{name: www, type: A, values: [192.0.2.1]}}]\n"
    )
}

#[test]
fn oldest_of_two_zones_with_one_apex_wins_whatever_the_input_order() {
    let old = zone(
        "platform",
        "old",
        "example.internal",
        "2026-01-01T00:00:00Z",
    );
    let new = zone(
        "platform",
        "new",
        "Example.Internal.",
        "2026-02-01T00:00:00Z",
    );
    for yaml in [format!("{SERVER}{old}{new}"), format!("{SERVER}{new}{old}")] {
        let rendered = Objects::parse(&yaml).render();
        let config = rendered.config.as_ref().expect("renders");
        assert_eq!(config.zones.len(), 1);
        assert_eq!(config.zones[0].source, "platform/old");
        let lines = verdict_lines(&rendered);
        assert!(lines.contains("DNSZone platform/old: Accepted"), "{lines}");
        assert!(lines.contains("DNSZone platform/new: Conflict: zone example.internal is already served from DNSZone platform/old"), "{lines}");
    }
}

#[test]
fn tenants_only_get_names_below_their_namespace() {
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {tenantDomainSuffix: tenants.example, configSelector: {namespaceSelector: {}}}\n";
    let yaml = format!(
        "{server}{}{}{}",
        zone(
            "team-a",
            "own",
            "app.team-a.tenants.example",
            "2026-01-01T00:00:00Z"
        ),
        zone("team-a", "hijack", "google.com", "2026-01-01T00:00:00Z"),
        zone(
            "team-a",
            "other-tenant",
            "team-b.tenants.example",
            "2026-01-01T00:00:00Z"
        ),
    );
    let rendered = Objects::parse(&yaml).render();
    let lines = verdict_lines(&rendered);
    assert!(lines.contains("DNSZone team-a/own: Accepted"), "{lines}");
    assert!(
        lines.contains("DNSZone team-a/hijack: NotAllowed"),
        "{lines}"
    );
    assert!(
        lines.contains("DNSZone team-a/other-tenant: NotAllowed"),
        "{lines}"
    );

    // Without a suffix, only the server's namespace may define zones.
    let all_namespaces = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {configSelector: {namespaceSelector: {}}}\n";
    let tenant_zone = zone(
        "team-a",
        "own",
        "app.team-a.tenants.example",
        "2026-01-01T00:00:00Z",
    );
    let rendered = Objects::parse(&format!("{all_namespaces}{tenant_zone}")).render();
    assert!(verdict_lines(&rendered).contains("NotAllowed"));
    // And without a namespace selector, other namespaces are not even looked at.
    let rendered = Objects::parse(&format!("{SERVER}{tenant_zone}")).render();
    assert!(rendered.verdicts.is_empty());
}

#[test]
fn nothing_may_claim_the_cluster_domain() {
    let rendered = Objects::parse(&format!(
        "{SERVER}{}",
        zone("platform", "z", "svc.cluster.local", "2026-01-01T00:00:00Z")
    ))
    .render();
    assert!(verdict_lines(&rendered).contains("ConflictsWithClusterDomain"));
    assert!(rendered.config.expect("still renders").zones.is_empty());
}

#[test]
fn a_rewrite_loop_rejects_the_object_that_closes_it() {
    let rule = |name: &str, created: &str, from: &str, to: &str| {
        format!(
            "---\napiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata: {{name: {name}, namespace: platform, creationTimestamp: \"{created}\"}}\nspec:\n  rules: [{{match: Exact, from: {from}, to: {to}}}]\n"
        )
    };
    let yaml = format!(
        "{SERVER}{}{}{}",
        rule("a", "2026-01-01T00:00:00Z", "a.example", "b.example"),
        rule("b", "2026-01-02T00:00:00Z", "b.example", "c.example"),
        rule("c", "2026-01-03T00:00:00Z", "c.example", "a.example"),
    );
    let rendered = Objects::parse(&yaml).render();
    let lines = verdict_lines(&rendered);
    assert!(
        lines.contains("RewriteRule platform/a: Accepted"),
        "{lines}"
    );
    assert!(
        lines.contains("RewriteRule platform/b: Accepted"),
        "{lines}"
    );
    assert!(lines.contains("RewriteRule platform/c: RewriteLoop: spec.rules[0] rewrites c.example to a.example, which leads back through RewriteRule platform/a, RewriteRule platform/b: a loop"), "{lines}");
    assert_eq!(rendered.config.expect("renders").rewrites.len(), 2);
}

#[test]
fn selection_follows_namespace_labels_and_always_includes_the_own_namespace() {
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec:\n  tenantDomainSuffix: t.example\n  configSelector: {namespaceSelector: {matchLabels: {dns: 'on'}}}\n";
    let namespaces = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: on-ns, labels: {dns: 'on'}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: off-ns}\n";
    let yaml = format!(
        "{server}{namespaces}{}{}{}",
        zone("platform", "own", "p.example", "2026-01-01T00:00:00Z"),
        zone("on-ns", "picked", "on-ns.t.example", "2026-01-01T00:00:00Z"),
        zone(
            "off-ns",
            "ignored",
            "off-ns.t.example",
            "2026-01-01T00:00:00Z"
        ),
    );
    let rendered = Objects::parse(&yaml).render();
    let apexes: Vec<_> = rendered
        .config
        .as_ref()
        .expect("renders")
        .zones
        .iter()
        .map(|z| z.name.clone())
        .collect();
    assert_eq!(apexes, ["on-ns.t.example", "p.example"]);
    assert!(
        !verdict_lines(&rendered).contains("off-ns"),
        "unselected objects get no verdict from this server"
    );
}

#[test]
fn rendering_is_deterministic() {
    let server: DNSServer = serde_saphyr::from_str(SERVER).expect("parses");
    let first = server_config(&server).expect("renders");
    assert_eq!(
        first.content_hash(),
        server_config(&server).expect("renders").content_hash()
    );
    assert_eq!(first.kubernetes.cluster_domain, "cluster.local");
    assert_eq!(first.kubernetes.ttl_seconds, 5);
}

/// A server that takes config objects from every namespace.
const OPEN_SERVER: &str = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {configSelector: {namespaceSelector: {}}}\n";

fn rewrite(namespace: &str, name: &str, created: &str, rule: &str) -> String {
    format!(
        "---\napiVersion: nameplane.io/v1alpha1\nkind: RewriteRule\nmetadata: {{name: {name}, namespace: {namespace}, creationTimestamp: \"{created}\"}}\nspec:\n  rules: [{rule}]\n"
    )
}

/// The verdict line of the one RewriteRule `team-a/r` with `rule`, from a server taking every
/// namespace.
fn tenant_rewrite_verdict(rule: &str) -> String {
    let yaml = format!(
        "{OPEN_SERVER}{}",
        rewrite("team-a", "r", "2026-01-01T00:00:00Z", rule)
    );
    verdict_lines(&Objects::parse(&yaml).render())
}

#[test]
fn tenant_rewrites_may_only_point_at_services_of_their_namespace() {
    for allowed in [
        "{match: Exact, from: api.example, to: api.team-a.svc.cluster.local}",
        "{match: Exact, from: api.example, to: Team-A.svc.cluster.local.}",
        "{match: Suffix, from: .old.example, to: .team-a.svc.cluster.local}",
        "{match: Suffix, from: .old.example, to: x.team-a.svc.cluster.local}",
        "{match: Regex, from: '^(.+)\\.old\\.example$', to: '{1}.team-a.svc.cluster.local'}",
    ] {
        let line = tenant_rewrite_verdict(allowed);
        assert_eq!(line, "RewriteRule team-a/r: Accepted\n", "{allowed}");
    }
    for (refused, why) in [
        (
            "{match: Exact, from: api.example, to: api.team-b.svc.cluster.local}",
            "api.team-b.svc.cluster.local is not",
        ),
        (
            "{match: Exact, from: api.example, to: www.google.com}",
            "www.google.com is not",
        ),
        // `db.old.example` would become `dbteam-a.svc.cluster.local`: namespace `dbteam-a`.
        (
            "{match: Suffix, from: old.example, to: team-a.svc.cluster.local}",
            "a suffix team-a.svc.cluster.local can produce names outside it",
        ),
        (
            "{match: Regex, from: '^(.+)\\.old\\.example$', to: '{1}.svc.cluster.local'}",
            "a regex replacement must end with .team-a.svc.cluster.local",
        ),
        (
            "{match: Prefix, from: legacy, to: api}",
            "a Prefix rewrite keeps the rest of the name",
        ),
    ] {
        let line = tenant_rewrite_verdict(refused);
        assert!(
            line.starts_with("RewriteRule team-a/r: OutsideNamespace: spec.rules[0]: rewrites from namespace team-a may only point at Services of that namespace, at or below team-a.svc.cluster.local;"),
            "{refused}: {line}"
        );
        assert!(line.contains(why), "{refused}: {line}");
    }
}

#[test]
fn tenant_rewrites_may_not_match_cluster_names() {
    for shadowing in [
        "{match: Exact, from: kubernetes.default.svc.cluster.local, to: api.team-a.svc.cluster.local}",
        "{match: Exact, from: Cluster.Local., to: api.team-a.svc.cluster.local}",
        // String suffixes that cluster names end with.
        "{match: Suffix, from: local, to: .team-a.svc.cluster.local}",
        "{match: Suffix, from: .svc.cluster.local, to: .team-a.svc.cluster.local}",
        "{match: Suffix, from: .team-b.svc.cluster.local, to: .team-a.svc.cluster.local}",
        // Ends with nothing fixed once anchored as served.
        "{match: Regex, from: '(.+)\\.old|.*', to: '{1}.team-a.svc.cluster.local'}",
        // Anchored, but on a cluster name, or on nothing fixed.
        "{match: Regex, from: '^(.+)\\.default\\.svc\\.cluster\\.local$', to: '{1}.team-a.svc.cluster.local'}",
        "{match: Regex, from: '^(.+)$', to: '{1}.team-a.svc.cluster.local'}",
        "{match: Regex, from: '^(.+)\\.(old|local)$', to: '{1}.team-a.svc.cluster.local'}",
    ] {
        let line = tenant_rewrite_verdict(shadowing);
        assert!(
            line.starts_with("RewriteRule team-a/r: ShadowsClusterName: spec.rules[0]: ")
                && line.contains("can match names in the cluster domain cluster.local"),
            "{shadowing}: {line}"
        );
    }
    // The server matches the whole name (`^(?:from)$`), so a pattern without `$` still only
    // matches names ending in `.old`, never a cluster name.
    let line = tenant_rewrite_verdict(
        "{match: Regex, from: '^(.+)\\.old', to: '{1}.team-a.svc.cluster.local'}",
    );
    assert_eq!(line, "RewriteRule team-a/r: Accepted\n");
    // Judged as served: in `(?x)` mode the comment would swallow the anchor the server adds,
    // so the served form does not compile; such a rule is never reported Ready (the server
    // would have had to drop it).
    let line = tenant_rewrite_verdict(
        "{match: Regex, from: '(?x)(.+)\\.old\\.example$ #', to: '{1}.team-a.svc.cluster.local'}",
    );
    assert!(
        line.starts_with("RewriteRule team-a/r: InvalidRule: ")
            && line.contains("not a regular expression"),
        "{line}"
    );
    // A suffix that only looks like the cluster domain as a string is not one.
    let line = tenant_rewrite_verdict(
        "{match: Suffix, from: .xcluster.local, to: .team-a.svc.cluster.local}",
    );
    assert_eq!(line, "RewriteRule team-a/r: Accepted\n");
    // The server's own namespace is trusted with every name.
    let yaml = format!(
        "{OPEN_SERVER}{}",
        rewrite(
            "platform",
            "r",
            "2026-01-01T00:00:00Z",
            "{match: Prefix, from: kubernetes.default., to: api.team-b.}"
        )
    );
    assert_eq!(
        verdict_lines(&Objects::parse(&yaml).render()),
        "RewriteRule platform/r: Accepted\n"
    );
}

#[test]
fn the_younger_of_two_rewrites_of_one_name_loses_when_their_clients_overlap() {
    let platform = rewrite(
        "platform",
        "platform",
        "2026-01-01T00:00:00Z",
        "{match: Exact, from: db.example, to: db.shared.svc.cluster.local}",
    );
    let team_a = rewrite(
        "team-a",
        "mine",
        "2026-01-02T00:00:00Z",
        "{match: Exact, from: db.example, to: db.team-a.svc.cluster.local}",
    );
    let team_b = rewrite(
        "team-b",
        "mine",
        "2026-01-03T00:00:00Z",
        "{match: Exact, from: db.example, to: db.team-b.svc.cluster.local}",
    );
    // Every client overlaps every namespace: the platform's older rule wins.
    for yaml in [
        format!("{OPEN_SERVER}{platform}{team_a}"),
        format!("{OPEN_SERVER}{team_a}{platform}"),
    ] {
        let lines = verdict_lines(&Objects::parse(&yaml).render());
        assert!(
            lines.contains("RewriteRule platform/platform: Accepted"),
            "{lines}"
        );
        assert!(lines.contains("RewriteRule team-a/mine: Conflict: spec.rules[0] (Exact db.example) is already rewritten by RewriteRule platform/platform, which is older"), "{lines}");
    }
    // Two tenants' rules apply to different Pods: both are served.
    let rendered = Objects::parse(&format!("{OPEN_SERVER}{team_a}{team_b}")).render();
    assert_eq!(rendered.rejected(), 0, "{}", verdict_lines(&rendered));
    assert_eq!(rendered.config.expect("renders").rewrites.len(), 2);
    // Same from with another match kind is another rule.
    let suffix = rewrite(
        "team-a",
        "suffix",
        "2026-01-04T00:00:00Z",
        "{match: Suffix, from: db.example, to: .team-a.svc.cluster.local}",
    );
    let rendered = Objects::parse(&format!("{OPEN_SERVER}{team_a}{suffix}")).render();
    assert_eq!(rendered.rejected(), 0, "{}", verdict_lines(&rendered));
    // Within one object, a repeated rule is a mistake, not a conflict between owners.
    let twice = rewrite(
        "platform",
        "twice",
        "2026-01-01T00:00:00Z",
        "{match: Exact, from: a.example, to: b.example}, {match: Exact, from: A.example., to: c.example}",
    );
    let lines = verdict_lines(&Objects::parse(&format!("{OPEN_SERVER}{twice}")).render());
    assert!(
        lines.contains("RewriteRule platform/twice: InvalidRule: spec.rules[1] has the same match and from as spec.rules[0]"),
        "{lines}"
    );
}

#[test]
fn policy_targets_become_cluster_domain_suffixes() {
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: team-a}\nspec: {clusterDomain: corp.internal}\n";
    let policy = "---\napiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: p, namespace: team-a}\nspec:\n  rules:\n  - {action: Allow, domains: [example.com], namespaces: [shared, shared], services: [{name: web}, {name: db, namespace: data}]}\n";
    let config = Objects::parse(&format!("{server}{policy}"))
        .render()
        .config
        .expect("renders");
    let policy = &config.policies[0];
    assert_eq!(
        policy.rules[0].domains,
        [
            "example.com",
            "shared.svc.corp.internal",
            "shared.pod.corp.internal",
            "web.team-a.svc.corp.internal",
            "db.data.svc.corp.internal",
        ]
    );
    assert_eq!(
        policy.default_action,
        nameplane_config::policy::PolicyAction::Deny,
        "a policy that leaves out defaultAction fails closed"
    );
    assert!(!policy.audit);
}

#[test]
fn policy_service_selectors_follow_the_services_labels() {
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: team-a}\nspec: {}\n";
    let policy = "---\napiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: p, namespace: team-a}\nspec:\n  rules:\n  - {action: Allow, services: [{namespace: shared, selector: {matchLabels: {tier: db}}}]}\n  - {action: Allow, services: [{selector: {matchLabels: {tier: none}}}]}\n";
    let service = |namespace: &str, name: &str, tier: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{tier: {tier}}}}}\nspec: {{clusterIP: 10.96.0.9}}\n"
        )
    };
    let services = [
        service("shared", "pg", "db"),
        service("shared", "mysql", "db"),
        service("shared", "redis", "cache"),
        service("other", "pg", "db"),
    ]
    .concat();
    let rendered = Objects::parse(&format!("{server}{policy}{services}")).render();
    let config = rendered.config.expect("renders");
    let rules = &config.policies[0].rules;
    assert_eq!(
        rules[0].domains,
        [
            "mysql.shared.svc.cluster.local",
            "pg.shared.svc.cluster.local"
        ],
        "only the labelled Services of that namespace"
    );
    assert!(
        rules[1].domains.is_empty(),
        "a selector that matches nothing yet covers nothing, and is not an error"
    );
}

#[test]
fn policy_pod_selectors_keep_their_expressions() {
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: team-a}\nspec: {}\n";
    let policy = "---\napiVersion: nameplane.io/v1alpha1\nkind: DNSPolicy\nmetadata: {name: p, namespace: team-a}\nspec:\n  podSelector:\n    matchLabels: {app: web}\n    matchExpressions:\n    - {key: tier, operator: In, values: [front, edge]}\n    - {key: legacy, operator: DoesNotExist}\n  rules: []\n";
    let config = Objects::parse(&format!("{server}{policy}"))
        .render()
        .config
        .expect("renders");
    let selector = &config.policies[0].pod_selector;
    assert_eq!(selector.to_query(), "app=web,tier in (front,edge),!legacy");
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert!(selector.matches(&labels(&[("app", "web"), ("tier", "edge")])));
    assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "back")])));
    assert!(!selector.matches(&labels(&[
        ("app", "web"),
        ("tier", "edge"),
        ("legacy", "1")
    ])));
}

#[test]
fn autopath_and_client_classes_reach_the_config() {
    use nameplane_config::policy::{ClientsConfig, NodeClientsConfig, PolicyAction};
    let server: DNSServer = serde_saphyr::from_str(SERVER).expect("parses");
    let config = server_config(&server).expect("renders");
    assert!(!config.kubernetes.autopath);
    assert_eq!(
        config.clients,
        ClientsConfig {
            unidentified: PolicyAction::Allow,
            nodes: None
        },
        "unidentified clients are allowed unless the DNSServer denies them"
    );
    assert!(!config.needs_pods());
    let server: DNSServer = serde_saphyr::from_str(
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {autopath: true, clients: {unidentified: Deny, nodes: {cidrs: [192.0.2.0/24], fromNodes: true}}}\n",
    )
    .expect("parses");
    let config = server_config(&server).expect("renders");
    assert!(config.kubernetes.autopath && config.needs_pods() && config.needs_nodes());
    assert_eq!(
        config.clients,
        ClientsConfig {
            unidentified: PolicyAction::Deny,
            nodes: Some(NodeClientsConfig {
                action: PolicyAction::Allow,
                cidrs: vec!["192.0.2.0/24".into()],
                from_nodes: true,
            }),
        },
        "the node class is allowed unless it says otherwise"
    );
}

/// A ClusterIP Service `namespace/name` with `ips` and ports given as YAML flow.
fn service(namespace: &str, name: &str, ips: &str, ports: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{clusterIPs: [{ips}], ports: [{ports}]}}\n"
    )
}

/// A DNSZone `namespace/z` at `apex` with one record given as YAML flow.
fn service_zone(namespace: &str, apex: &str, record: &str) -> String {
    format!(
        "---\napiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: z, namespace: {namespace}, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{zone: {apex}, records: [{record}]}}\n"
    )
}

/// A StubDomain `namespace/s` for `domain` with `serviceRefs` given as YAML flow.
fn service_stub(namespace: &str, domain: &str, refs: &str) -> String {
    format!(
        "---\napiVersion: nameplane.io/v1alpha1\nkind: StubDomain\nmetadata: {{name: s, namespace: {namespace}, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{domain: {domain}, serviceRefs: [{refs}]}}\n"
    )
}

const TENANT_SERVER: &str = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {tenantDomainSuffix: t.example, configSelector: {namespaceSelector: {}}}\n";

#[test]
fn a_record_follows_its_service() {
    let record = "{name: www, type: A, service: {name: web}}";
    let zone = service_zone("platform", "p.example", record);
    let values = |ip: &str| {
        let web = service("platform", "web", ip, "{port: 80}");
        let rendered = Objects::parse(&format!("{SERVER}{web}{zone}")).render();
        assert_eq!(verdict_lines(&rendered), "DNSZone platform/z: Accepted\n");
        rendered.config.expect("renders").zones[0].records[0]
            .values
            .clone()
    };
    assert_eq!(values("10.96.0.20"), ["10.96.0.20"]);
    assert_eq!(
        values("10.96.0.21"),
        ["10.96.0.21"],
        "a new ClusterIP renders anew"
    );
}

#[test]
fn a_missing_service_leaves_out_the_record_set_and_keeps_the_rest() {
    let zone = service_zone(
        "platform",
        "p.example",
        "{name: www, type: A, service: {name: web}}, {name: db, type: A, values: [192.0.2.1]}",
    );
    let rendered = Objects::parse(&format!("{SERVER}{zone}")).render();
    assert_eq!(
        verdict_lines(&rendered),
        "DNSZone platform/z: Partial: ServiceNotFound: spec.records[0] (www): Service platform/web does not exist; the records or servers it would give are left out until it does\n"
    );
    assert_eq!(rendered.rejected(), 0);
    let config = rendered.config.expect("the rest still renders");
    let names: Vec<_> = config.zones[0].records.iter().map(|r| &r.name).collect();
    assert_eq!(names, ["db.p.example"]);
}

#[test]
fn a_record_without_an_address_of_its_family_is_left_out() {
    let web = service("platform", "web", "10.96.0.20", "{port: 80}");
    for (record, why) in [
        (
            "{name: www, type: AAAA, service: {name: web}}",
            "Service platform/web has no IPv6 ClusterIP address;",
        ),
        (
            "{name: www, type: A, service: {name: web, addresses: LoadBalancer}}",
            "Service platform/web has no IPv4 load-balancer address (it is of type ClusterIP, not LoadBalancer);",
        ),
    ] {
        let zone = service_zone("platform", "p.example", record);
        let rendered = Objects::parse(&format!("{SERVER}{web}{zone}")).render();
        let lines = verdict_lines(&rendered);
        assert!(
            lines.starts_with("DNSZone platform/z: Partial: NoAddresses: spec.records[0] (www): ")
                && lines.contains(why),
            "{record}: {lines}"
        );
        assert!(
            rendered.config.expect("renders").zones[0]
                .records
                .is_empty()
        );
    }
    let headless = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: platform}\nspec: {clusterIP: None}\n";
    let zone = service_zone(
        "platform",
        "p.example",
        "{name: www, type: A, service: {name: web}}",
    );
    let lines = verdict_lines(&Objects::parse(&format!("{SERVER}{headless}{zone}")).render());
    assert!(
        lines.contains("NoAddresses") && lines.contains("(it is headless)"),
        "{lines}"
    );
}

#[test]
fn tenants_may_only_refer_to_services_of_their_namespace() {
    let theirs = service("team-b", "db", "10.96.0.9", "{name: dns, port: 53}");
    let own = service("team-a", "db", "10.96.0.8", "{name: dns, port: 53}");
    let zone = service_zone(
        "team-a",
        "team-a.t.example",
        "{name: db, type: A, service: {name: db, namespace: team-b}}",
    );
    let stub = service_stub(
        "team-a",
        "lab.team-a.t.example",
        "{name: db, namespace: team-b}, {name: db}",
    );
    let rendered = Objects::parse(&format!("{TENANT_SERVER}{theirs}{own}{zone}{stub}")).render();
    let lines = verdict_lines(&rendered);
    assert!(
        lines.contains("DNSZone team-a/z: Partial: OutsideNamespace: spec.records[0] (db): Service team-b/db: objects in namespace team-a may only refer to Services of that namespace"),
        "{lines}"
    );
    assert!(
        lines.contains(
            "StubDomain team-a/s: Partial: OutsideNamespace: spec.serviceRefs[0]: Service team-b/db"
        ),
        "{lines}"
    );
    let config = rendered.config.expect("renders");
    assert_eq!(
        config.forward[0].servers,
        ["10.96.0.8:53"],
        "its own Service is used"
    );
    // The server's own namespace may name any Service.
    let zone = service_zone(
        "platform",
        "p.example",
        "{name: db, type: A, service: {name: db, namespace: team-b}}",
    );
    let lines = verdict_lines(&Objects::parse(&format!("{TENANT_SERVER}{theirs}{zone}")).render());
    assert_eq!(lines, "DNSZone platform/z: Accepted\n");
}

#[test]
fn a_stub_domain_forwards_to_the_dns_port_of_its_service() {
    let stub = |refs: &str| service_stub("platform", "corp.example", refs);
    let servers = |services: &str, refs: &str| {
        let rendered = Objects::parse(&format!("{SERVER}{services}{}", stub(refs))).render();
        let lines = verdict_lines(&rendered);
        let config = rendered.config.expect("renders");
        (lines, config.forward.first().map(|f| f.servers.clone()))
    };
    let named = service(
        "platform",
        "r",
        "10.96.0.53, 'fd00:10:96::53'",
        "{name: metrics, port: 9153}, {name: dns-udp, port: 5353}",
    );
    assert_eq!(
        servers(&named, "{name: r}").1.expect("forwards"),
        ["10.96.0.53:5353", "[fd00:10:96::53]:5353"],
        "the port named dns-udp, on every ClusterIP"
    );
    let plain = service("platform", "r", "10.96.0.53", "{port: 53}, {port: 9153}");
    assert_eq!(
        servers(&plain, "{name: r}").1.expect("forwards"),
        ["10.96.0.53:53"]
    );
    assert_eq!(
        servers(&plain, "{name: r, port: 9153}")
            .1
            .expect("forwards"),
        ["10.96.0.53:9153"]
    );
    let (lines, forward) = servers(&plain, "{name: r, port: 5353}");
    assert_eq!(forward, None, "no server left: the stub domain is left out");
    assert!(
        lines.starts_with("StubDomain platform/s: PortNotFound: spec.serviceRefs[0]: Service platform/r has no port 5353;"),
        "{lines}"
    );
    let (lines, forward) = servers("", "{name: r}");
    assert_eq!(forward, None);
    assert!(
        lines.starts_with("StubDomain platform/s: ServiceNotFound: spec.serviceRefs[0]: Service platform/r does not exist;")
            && lines.ends_with("no server is left to forward to\n"),
        "{lines}"
    );
}

#[test]
fn a_servers_missing_upstream_service_is_its_own_verdict() {
    let server = "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: dns, namespace: platform}\nspec: {upstreams: [10.0.0.10], upstreamServiceRefs: [{name: resolver, namespace: kube-system}]}\n";
    let rendered = Objects::parse(server).render();
    assert_eq!(
        verdict_lines(&rendered),
        "DNSServer platform/dns: Partial: ServiceNotFound: spec.upstreamServiceRefs[0]: Service kube-system/resolver does not exist; the records or servers it would give are left out until it does\n"
    );
    assert_eq!(
        rendered.partial(),
        0,
        "the server is not one of its selected objects"
    );
    let config = rendered.config.expect("publishes with the other upstreams");
    assert_eq!(config.forward[0].servers, ["10.0.0.10:53"]);
    let resolver = service(
        "kube-system",
        "resolver",
        "10.96.0.11",
        "{name: dns, port: 53}",
    );
    let rendered = Objects::parse(&format!("{server}{resolver}")).render();
    assert!(rendered.verdicts.is_empty());
    assert_eq!(
        rendered.config.expect("renders").forward[0].servers,
        ["10.0.0.10:53", "10.96.0.11:53"]
    );
}

#[test]
fn a_server_over_its_own_byte_budget_publishes_nothing_new() {
    // The platform's own objects are never left out for size: the DNSServer says why.
    let records: String = (0..40)
        .map(|i| format!("{{name: r{i}, type: A, values: [192.0.2.{i}]}}, "))
        .collect();
    let yaml = format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {{name: dns, namespace: platform}}\nspec: {{limits: {{configBytes: 2000}}}}\n---\napiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: corp, namespace: platform, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{zone: corp.example, records: [{records}]}}\n"
    );
    let rendered = Objects::parse(&yaml).render();
    let error = rendered.config.expect_err("over budget");
    assert_eq!(error.reason(), "OverBudget");
    assert!(
        error.to_string().contains("over the budget of 2000 (spec.limits.configBytes), even without the objects of other namespaces"),
        "{error}"
    );
}

#[test]
fn the_newest_tenant_object_over_the_byte_budget_is_the_only_one_left_out() {
    let records: String = (0..400)
        .map(|i| format!("{{name: r{i}, type: A, values: [192.0.2.{}]}}, ", i % 250))
        .collect();
    let yaml = format!(
        "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {{name: dns, namespace: platform}}\nspec: {{tenantDomainSuffix: t.example, configSelector: {{namespaceSelector: {{}}}}, limits: {{configBytes: 20000}}}}\n---\napiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: small, namespace: a, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{zone: a.t.example, records: [{{name: www, type: A, values: [192.0.2.1]}}]}}\n---\napiVersion: nameplane.io/v1alpha1\nkind: DNSZone\nmetadata: {{name: big, namespace: b, creationTimestamp: \"2026-01-02T00:00:00Z\"}}\nspec: {{zone: b.t.example, records: [{records}]}}\n"
    );
    let rendered = Objects::parse(&yaml).render();
    let lines = verdict_lines(&rendered);
    assert!(lines.contains("DNSZone a/small: Accepted"), "{lines}");
    assert!(lines.contains("DNSZone b/big: OverBudget"), "{lines}");
    let config = rendered.config.expect("renders");
    assert_eq!(config.zones.len(), 1);
    assert!(config.to_json().len() <= 20000);
}
