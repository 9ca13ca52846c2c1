//! Golden files and rule tests for the renderer.

use super::*;
use crate::api::dnszone::DNSZone;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Parsed objects of one YAML stream: the first document is the `DNSServer`.
struct Objects {
    server: DNSServer,
    namespaces: Vec<Arc<Namespace>>,
    zones: Vec<Arc<DNSZone>>,
    stubs: Vec<Arc<StubDomain>>,
    rewrites: Vec<Arc<RewriteRule>>,
    policies: Vec<Arc<DNSPolicy>>,
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
        };
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
                other => panic!("unexpected kind {other:?}"),
            }
        }
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
        })
        .collect()
}

/// Every `<case>.input.yaml` under `tests/golden/` (a DNSServer, then the objects around it)
/// renders to exactly `<case>.output.json` (or the error in `<case>.error.txt`), with the
/// verdicts in `<case>.verdicts.txt` when there are config objects.
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
