//! The import corpus (golden files) and rule tests for `nameplane import`.

use super::*;
use crate::api::stubdomain::ForwardTransport;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn corefile(text: &str) -> RunOutput {
    run(
        &Inputs {
            corefile: Some(("Corefile".into(), text.into())),
            ..Default::default()
        },
        &Options::default(),
        &no_env,
    )
}

/// The objects of a YAML stream, each parsed as its CRD type, and rendered together.
fn parse_and_render(yaml: &str) -> Result<(), String> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| format!("yaml: {e}"))?;
    let mut server = None;
    let (mut zones, mut stubs, mut rewrites) = (vec![], vec![], vec![]);
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let e = |e: serde_json::Error| format!("{kind}: {e}");
        match kind.as_str() {
            "DNSServer" => server = Some(serde_json::from_value::<DNSServer>(doc).map_err(e)?),
            "DNSZone" => zones.push(Arc::new(serde_json::from_value::<DNSZone>(doc).map_err(e)?)),
            "StubDomain" => stubs.push(Arc::new(
                serde_json::from_value::<StubDomain>(doc).map_err(e)?,
            )),
            "RewriteRule" => rewrites.push(Arc::new(
                serde_json::from_value::<RewriteRule>(doc).map_err(e)?,
            )),
            other => return Err(format!("unexpected kind {other:?}")),
        }
    }
    let server = server.ok_or("no DNSServer")?;
    let rendered = crate::render::render(
        &server,
        &crate::render::Inputs {
            zones: &zones,
            stubs: &stubs,
            rewrites: &rewrites,
            ..Default::default()
        },
    );
    rendered.config.as_ref().map_err(|e| e.to_string())?;
    match rendered.rejected() {
        0 => Ok(()),
        n => Err(format!("{n} object(s) rejected: {:?}", rendered.verdicts)),
    }
}

/// Every case under `tests/import/<case>/` (a `Corefile`, a `coredns.yaml` ConfigMap with
/// optional `coredns-custom.yaml`, or a `kube-dns.yaml` ConfigMap) imports to exactly
/// `expected.yaml` and `expected.stderr` (whose last line has the exit status), and every
/// object written parses as its CRD type and renders without a rejection.
/// UPDATE_GOLDEN=1 (`make golden`) rewrites the expected files.
#[test]
fn golden_import_corpus() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases = 0;
    let mut entries: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("tests/import exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for dir in entries {
        let case = dir
            .file_name()
            .expect("as the test set it up")
            .to_string_lossy()
            .to_string();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|text| (name.to_string(), text))
        };
        let inputs = Inputs {
            corefile: read("Corefile"),
            coredns_configmap: read("coredns.yaml"),
            custom_configmaps: read("coredns-custom.yaml").into_iter().collect(),
            kube_dns_configmap: read("kube-dns.yaml"),
        };
        cases += 1;
        let output = run(&inputs, &Options::default(), &no_env);
        for (file, actual) in [
            ("expected.yaml", &output.stdout),
            ("expected.stderr", &output.stderr),
        ] {
            let path = dir.join(file);
            if update {
                std::fs::write(&path, actual).expect("write golden");
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                actual, &expected,
                "{case}/{file} differs; run `make golden` if the change is intended"
            );
        }
        if output.exit_status != 1
            && let Err(e) = parse_and_render(&output.stdout)
        {
            panic!("{case}: the objects written do not parse or render: {e}");
        }
        // Every address in the corpus is a documentation or loopback address.
        for (name, text) in [
            &inputs.corefile,
            &inputs.coredns_configmap,
            &inputs.kube_dns_configmap,
        ]
        .into_iter()
        .flatten()
        .chain(&inputs.custom_configmaps)
        {
            for word in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
                let word = word.trim_matches(['.', ':']);
                let ip = word
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .or_else(|| word.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()));
                if let Some(ip) = ip {
                    assert!(
                        documentation_or_loopback(ip),
                        "{case}/{name}: {ip} is not a documentation or loopback address"
                    );
                }
            }
        }
    }
    assert!(
        cases >= 10,
        "expected at least 10 import cases, found {cases}"
    );
}

fn documentation_or_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || (o[0], o[1], o[2]) == (192, 0, 2)
                || (o[0], o[1], o[2]) == (198, 51, 100)
                || (o[0], o[1], o[2]) == (203, 0, 113)
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.segments()[0] == 0x2001 && v6.segments()[1] == 0xdb8
        }
    }
}

#[test]
fn kubeadm_style_corefile_maps_every_field() {
    let out = corefile(
        ".:53 {\n    errors\n    kubernetes example.internal in-addr.arpa ip6.arpa {\n       pods verified\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n       endpoint_pod_names\n       ignore empty_service\n       labels app=web,tier!=db\n    }\n    forward . 192.0.2.53:5353 /etc/resolv.conf {\n       policy sequential\n    }\n    cache 20 {\n       success 5000 600 2\n       denial 100\n       prefetch 3 2m 20%\n       serve_stale 1h\n    }\n    autopath @kubernetes\n    loadbalance\n}\n",
    );
    assert_eq!(out.exit_status, 0, "{}", out.stderr);
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&out.stdout).expect("as the test set it up");
    let server: DNSServer = serde_json::from_value(docs[0].clone()).expect("as the test set it up");
    let spec = &server.spec;
    assert_eq!(spec.cluster_domain.as_str(), "example.internal");
    assert_eq!(spec.ttl_seconds, 30);
    assert_eq!(
        spec.kubernetes.pods,
        crate::api::dnsserver::PodsMode::Verified
    );
    assert!(spec.kubernetes.reverse_fallthrough);
    assert!(spec.kubernetes.endpoint_pod_names);
    assert!(spec.kubernetes.ignore_empty_service);
    let selector = spec
        .kubernetes
        .service_selector
        .as_ref()
        .expect("as the test set it up");
    assert_eq!(
        selector
            .match_labels
            .as_ref()
            .expect("as the test set it up")["app"],
        "web"
    );
    assert_eq!(
        selector
            .match_expressions
            .as_ref()
            .expect("as the test set it up")[0]
            .operator,
        "NotIn"
    );
    assert_eq!(spec.upstreams[0].0, "192.0.2.53:5353");
    assert!(spec.upstreams_from_resolv_conf);
    assert_eq!(
        spec.upstream_policy,
        crate::api::stubdomain::ForwardPolicy::Sequential
    );
    let cache = spec.cache.as_ref().expect("as the test set it up");
    assert_eq!(
        (cache.capacity, cache.max_ttl_seconds, cache.min_ttl_seconds),
        (5000, 600, 2)
    );
    assert_eq!(
        (cache.denial_capacity, cache.denial_ttl_seconds),
        (Some(100), 20)
    );
    let prefetch = cache.prefetch.as_ref().expect("as the test set it up");
    assert_eq!(
        (
            prefetch.amount,
            prefetch.duration_seconds,
            prefetch.percentage
        ),
        (3, 120, 20)
    );
    assert_eq!(cache.serve_stale_seconds, 3600);
    assert!(spec.autopath);
    assert_eq!(
        spec.load_balance,
        crate::api::dnsserver::LoadBalance::RoundRobin
    );
    assert!(
        out.stderr.contains("Corefile:2: errors: note: built in"),
        "{}",
        out.stderr
    );
}

#[test]
fn what_is_not_carried_over_is_listed_with_its_line_and_exit_status_2() {
    let out = corefile(
        ".:53 {\n  forward . 192.0.2.1\n  log\n  rewrite name substring a b\n  rewrite type A AAAA\n}\nexample.org:5353 {\n  whoami\n}\n",
    );
    assert_eq!(out.exit_status, 2);
    for line in [
        "Corefile:3: log: not carried over: ",
        "Corefile:4: rewrite name substring a b: not carried over: substring",
        "Corefile:5: rewrite type A AAAA: not carried over: ",
        "Corefile:7: server block example.org:5353: not carried over: port 5353",
        "Corefile:8: whoami: not carried over: its server block",
    ] {
        assert!(
            out.stderr.contains(line),
            "missing {line:?} in\n{}",
            out.stderr
        );
    }
    assert!(out.stderr.ends_with("exit status 2\n"), "{}", out.stderr);
}

#[test]
fn bad_input_is_an_error_naming_the_line_never_a_panic() {
    for (text, want) in [
        (
            ".:53 {\n  forwrd . 192.0.2.1\n}\n",
            "Corefile:2: unknown plugin \"forwrd\"",
        ),
        (
            ".:53 {\n  forward . not-an-address\n}\n",
            "Corefile:2: forward: \"not-an-address\"",
        ),
        (
            ".:53 {\n  kubernetes cluster.local {\n    pods sometimes\n  }\n}\n",
            "Corefile:3: pods sometimes",
        ),
        (".:53 {\n  errors\n", "Corefile:2: a block is not closed"),
        (
            "# nothing\n",
            "Corefile:1: the Corefile has no server block",
        ),
    ] {
        let out = corefile(text);
        assert_eq!(out.exit_status, 1, "{text}");
        assert!(out.stderr.starts_with(want), "{text:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn stub_blocks_hosts_and_rewrites_become_objects() {
    let out = corefile(
        ".:53 {\n  kubernetes cluster.local\n  forward . 192.0.2.1\n  forward corp.example 192.0.2.10 192.0.2.11 {\n    force_tcp\n    max_concurrent 50\n  }\n  hosts {\n    192.0.2.20 db.example.com DB2.example.com\n    2001:db8::20 db.example.com\n    fallthrough\n  }\n  rewrite name suffix .old.example .new.example answer auto\n  rewrite name exact a.example b.example\n}\nlab.example:53 {\n  forward . 198.51.100.1\n}\n",
    );
    assert_eq!(out.exit_status, 0, "{}", out.stderr);
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&out.stdout).expect("as the test set it up");
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().expect("as the test set it up"),
                d["metadata"]["name"]
                    .as_str()
                    .expect("as the test set it up")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "DNSServer cluster-dns",
            "StubDomain corp.example",
            "StubDomain lab.example",
            "DNSZone 0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            "DNSZone 20.2.0.192.in-addr.arpa",
            "DNSZone db.example.com",
            "DNSZone db2.example.com",
            "RewriteRule cluster-dns-rewrites",
        ]
    );
    let stub: StubDomain = serde_json::from_value(docs[1].clone()).expect("as the test set it up");
    assert_eq!(stub.spec.transport, ForwardTransport::Tcp);
    assert_eq!(stub.spec.max_concurrent, Some(50));
    assert_eq!(stub.spec.servers.len(), 2);
    let zone: DNSZone = serde_json::from_value(docs[5].clone()).expect("as the test set it up");
    assert_eq!(zone.spec.records.len(), 2, "A and AAAA at the apex");
    let ptr: DNSZone = serde_json::from_value(docs[4].clone()).expect("as the test set it up");
    assert_eq!(ptr.spec.records[0].values.len(), 2, "both names");
    let rules: RewriteRule =
        serde_json::from_value(docs[7].clone()).expect("as the test set it up");
    assert_eq!(rules.spec.rules[0].from, "^(.+)\\.old\\.example$");
    assert_eq!(rules.spec.rules[0].to, "{1}.new.example");
    assert!(rules.spec.rules[0].rewrite_answers);
    assert!(!rules.spec.rules[1].rewrite_answers);
    parse_and_render(&out.stdout).expect("as the test set it up");
}

#[test]
fn kube_dns_configmap() {
    let out = run(
        &Inputs {
            kube_dns_configmap: Some((
                "kube-dns.yaml".into(),
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-dns\ndata:\n  stubDomains: |\n    {\"corp.example\": [\"192.0.2.10\", \"192.0.2.11:5353\"]}\n  federations: |\n    {\"f\": \"example.com\"}\n".into(),
            )),
            ..Default::default()
        },
        &Options::default(),
        &no_env,
    );
    assert_eq!(out.exit_status, 2);
    assert!(
        out.stderr
            .contains("kube-dns.yaml:8: federations: not carried over"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("upstreamsFromResolvConf: true"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("192.0.2.11:5353"));
}

#[test]
fn durations_and_selectors() {
    use duration::duration_seconds;
    use map::label_selector;
    assert_eq!(duration_seconds("1h30m"), Some(5400));
    assert_eq!(duration_seconds("500ms"), Some(0));
    assert_eq!(duration_seconds("15s"), Some(15));
    assert_eq!(duration_seconds("x"), None);
    assert_eq!(duration_seconds("5"), Some(5));
    let s = label_selector("env in (a, b),!legacy").expect("as the test set it up");
    let e = s.match_expressions.expect("as the test set it up");
    assert_eq!(
        (
            e[0].operator.as_str(),
            e[0].values.as_ref().expect("as the test set it up").len()
        ),
        ("In", 2)
    );
    assert_eq!(e[1].operator, "DoesNotExist");
    assert!(label_selector("a=(").is_err());
}

/// The fuzz target's seeds (`fuzz/corpus/import/`) and regressions hold the property.
#[test]
fn fuzz_seeds_and_regressions_pass() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut seen = 0;
    for dir in ["corpus/import", "regressions/import"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("read seed");
            fuzz_check(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 10, "expected the import seeds, found {seen}");
}

#[test]
fn hostile_inputs_hold_the_fuzz_property() {
    for input in [
        &b"\xff\xfe{{{{"[..],
        b".:53 {\n rewrite name regex ((( x\n}\n",
        b".:53 {\n hosts {\n 192.0.2.1 a..b -x- \n }\n}\n",
        b"apiVersion: v1\nkind: ConfigMap\ndata:\n  stubDomains: '{\"a\": [1]}'\n",
        b".:53 {\n cache 4294967295 {\n prefetch 0 0s 0%\n }\n}\n",
        b"(a) {\n import a a a a a a a a\n}\n.:53 {\n import a\n}\n",
        b".:53 {\n forward . 192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4 192.0.2.5 192.0.2.6 192.0.2.7 192.0.2.8 192.0.2.9\n}\n",
    ] {
        fuzz_check(input).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)));
    }
}
