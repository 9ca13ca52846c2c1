//! From Corefile directives to nameplane objects.
//!
//! Server blocks: the block for the root zone `.` (port 53, or none) is the `DNSServer`;
//! a block for another zone becomes what its plugins say for that zone (`forward` a
//! `StubDomain`, `hosts` `DNSZone`s). A block on another port or transport than plain DNS
//! on 53 is not carried over (nameplane serves one port).
//!
//! | CoreDNS | nameplane |
//! |---|---|
//! | `kubernetes ZONE [REVERSE...]` | `clusterDomain`; `pods`, `endpoint_pod_names`, `namespaces`, `labels`, `namespace_labels`, `ignore empty_service`, `ttl` and `fallthrough in-addr.arpa ip6.arpa` -> `spec.kubernetes` / `ttlSeconds`; always `resolveExternalNames: true` (the plugin resolves outside ExternalName targets through the server) |
//! | `forward . ADDR...` | `upstreams`, `upstreamPolicy`; `/etc/resolv.conf` -> `upstreamsFromResolvConf` |
//! | `forward ZONE ADDR...`, or a `ZONE { forward . ADDR }` block | `StubDomain` (`policy`, `maxConcurrent`, `transport`: `force_tcp` is `TCP`, `prefer_udp` is `PreferUDP`) |
//! | `cache` | `spec.cache` (TTL caps, capacities, `prefetch`, `serve_stale`) |
//! | `autopath @kubernetes` | `autopath: true` |
//! | `loadbalance [round_robin]` | `loadBalance: RoundRobin` |
//! | `rewrite name exact/prefix/suffix/regex` | `RewriteRule` (one object, rules in order) |
//! | `file DBFILE [ZONE]` (the file given) | a `DNSZone` with the file's records (the SOA is generated) |
//! | `hosts` | one `DNSZone` per host name (apex = the name, record `@`), and one per address for its PTR unless `no_reverse` |
//!
//! Why one zone per host name: a `DNSZone` is authoritative for everything below its apex,
//! while `hosts ... { fallthrough }` passes every name it does not list on. A zone for
//! `example.com` built from the entry `db.example.com` would answer NXDOMAIN for
//! `www.example.com`, which CoreDNS forwards; a zone whose apex is `db.example.com` itself
//! changes nothing but the names below `db.example.com`.
//!
//! Built in (notes): `errors`, `health`, `ready`, `prometheus`, `reload`, `loop`, `bind`,
//! `debug`, `pprof`, and `cache`'s `disable ... cluster.local` (nameplane never caches cluster
//! names). Everything else CoreDNS knows is reported as not carried over; a directive CoreDNS
//! does not know is an error.

use super::corefile::{Corefile, Directive, Location, ServerBlock, Token};
use super::duration::duration_seconds;
use super::{Finding, ImportError, Imported, Options, Severity};
use crate::api::dnsserver::{
    CacheSpec, DNSServer, DNSServerSpec, KubernetesSpec, LoadBalance, PodsMode, PrefetchSpec,
};
use crate::api::dnszone::{DNSZone, DNSZoneSpec, RecordType, RecordValue, ZoneRecord};
use crate::api::rewriterule::{MatchKind, NameRewrite, RewriteRule, RewriteRuleSpec};
use crate::api::stubdomain::{ForwardPolicy, ForwardTransport, StubDomain, StubDomainSpec};
use crate::api::{DomainName, KubernetesName, UpstreamAddress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Plugins that are built into nameplane or have no effect on answers, and what to say.
const BUILT_IN: &[(&str, &str)] = &[
    ("errors", "built in: nameplane-dns logs its errors itself"),
    (
        "health",
        "built in: nameplane-dns serves /health on its admin port (the Deployment's liveness probe) and drains on shutdown",
    ),
    (
        "ready",
        "built in: nameplane-dns serves /ready on its admin port (the Deployment's readiness probe)",
    ),
    (
        "prometheus",
        "built in: nameplane-dns serves Prometheus metrics on its admin port /metrics (CoreDNS's metric names, coredns_dns_requests_total and the rest, next to nameplane_* ones)",
    ),
    (
        "reload",
        "built in: the operator publishes a new config whenever an object changes and the servers load it without a restart",
    ),
    (
        "loop",
        "built in: forwarding loops are always detected; the DNSServer reports Ready=False, reason ForwardingLoop, and keeps serving cluster names",
    ),
    (
        "bind",
        "built in: the DNS Pods listen on their own addresses; the Service decides where clients reach them",
    ),
    ("debug", "no effect on answers: not carried over"),
    ("pprof", "no effect on answers: not carried over"),
];

/// Plugins CoreDNS has that nameplane does not carry over (besides those mapped and
/// [`BUILT_IN`]); any other directive is unknown, an error.
const OTHER_PLUGINS: &[&str] = &[
    "acl",
    "any",
    "auto",
    "azure",
    "bufsize",
    "cancel",
    "chaos",
    "clouddns",
    "dns64",
    "dnssec",
    "dnstap",
    "erratic",
    "etcd",
    "geoip",
    "grpc",
    "header",
    "k8s_external",
    "local",
    "log",
    "metadata",
    "minimal",
    "multisocket",
    "nomad",
    "nsid",
    "on",
    "route53",
    "secondary",
    "sign",
    "template",
    "timeouts",
    "tls",
    "trace",
    "transfer",
    "tsig",
    "view",
    "whoami",
];

/// Why some plugins are not carried over, beyond "no equivalent".
fn not_carried_reason(plugin: &str) -> &'static str {
    match plugin {
        "log" => {
            "query logging is the DNSServer's spec.logging (queries: All logs every answer), not set by the importer"
        }
        "transfer" => "zone transfers are set per DNSZone (spec.allowTransfer)",
        "tls" | "grpc" => "nameplane serves plain DNS only",
        "k8s_external" => "no equivalent: write the names as DNSZone records with a service",
        _ => "no equivalent in nameplane",
    }
}

/// The default upstream concurrency of a forwarder in nameplane (and CoreDNS's kubeadm
/// default).
const DEFAULT_MAX_CONCURRENT: u32 = 1000;

struct Mapper<'a> {
    options: &'a Options,
    base_dir: &'a str,
    findings: Vec<Finding>,
    spec: DNSServerSpec,
    kubernetes_at: Option<Location>,
    root_forward_at: Option<Location>,
    cache_at: Option<Location>,
    stubs: Vec<(Location, StubDomainSpec)>,
    /// Zones by apex: where first defined, TTL, record sets by (name, type).
    zones: BTreeMap<String, ZoneBuild>,
    rewrites: Vec<(Location, NameRewrite)>,
    /// `cache` directives of other zones' blocks, decided once the root block's is known.
    stub_caches: Vec<(Location, String)>,
}

struct ZoneBuild {
    at: Location,
    ttl: u32,
    records: BTreeMap<(String, String), RecordSet>,
}

/// One record set being built: its type, values, and its TTL when not the zone's (the TTL
/// of its first record; RFC 2181 wants one TTL per set).
type RecordSet = (RecordType, Vec<String>, Option<u32>);

/// Maps a parsed Corefile.
pub fn map(
    corefile: &Corefile,
    options: &Options,
    base_dir: &str,
) -> Result<Imported, ImportError> {
    let mut spec: DNSServerSpec =
        serde_json::from_value(serde_json::json!({})).expect("an empty DNSServer spec parses");
    // Without a kubernetes plugin nothing says the cluster domain; keep nameplane's default.
    spec.kubernetes = KubernetesSpec::default();
    let mut mapper = Mapper {
        options,
        base_dir,
        findings: Vec::new(),
        spec,
        kubernetes_at: None,
        root_forward_at: None,
        cache_at: None,
        stubs: Vec::new(),
        zones: BTreeMap::new(),
        rewrites: Vec::new(),
        stub_caches: Vec::new(),
    };
    for note in &corefile.notes {
        mapper.note(&note.at, "(reader)", &note.message);
    }
    if corefile.blocks.is_empty() {
        return Err(ImportError {
            at: Location {
                file: "/etc/coredns/Corefile".into(),
                line: 1,
            },
            message: "the Corefile has no server block".into(),
        });
    }
    let mut seen_root = false;
    for block in &corefile.blocks {
        mapper.block(block, &mut seen_root)?;
    }
    for directive in &corefile.top_level {
        mapper.directive(directive, &[".".to_string()])?;
    }
    for (at, text) in std::mem::take(&mut mapper.stub_caches) {
        if mapper.cache_at.is_some() {
            mapper.note(
                &at,
                &text,
                "nameplane has one cache, for every forwarded name (stub domains included): the root block's cache (spec.cache) applies here, not these settings",
            );
        } else {
            mapper.lost(
                &at,
                &text,
                "nameplane has one cache, for every forwarded name; the root block has none, so nothing is cached",
            );
        }
    }
    if mapper.kubernetes_at.is_none() {
        let at = corefile
            .blocks
            .first()
            .and_then(|b| b.keys.first())
            .map(|k| k.at.clone())
            .unwrap_or(Location {
                file: "Corefile".into(),
                line: 1,
            });
        mapper.note(
            &at,
            "kubernetes",
            "no kubernetes plugin: nameplane serves the cluster domain cluster.local from the Kubernetes API anyway",
        );
    }
    Ok(mapper.finish())
}

impl Mapper<'_> {
    fn find(&mut self, at: &Location, directive: &str, reason: &str, severity: Severity) {
        self.findings.push(Finding {
            at: at.clone(),
            directive: directive.to_string(),
            reason: reason.to_string(),
            severity,
        });
    }
    fn note(&mut self, at: &Location, directive: &str, reason: &str) {
        self.find(at, directive, reason, Severity::Note);
    }
    fn lost(&mut self, at: &Location, directive: &str, reason: &str) {
        self.find(at, directive, reason, Severity::NotCarried);
    }

    fn block(&mut self, block: &ServerBlock, seen_root: &mut bool) -> Result<(), ImportError> {
        let mut zones = Vec::new();
        for key in &block.keys {
            match parse_key(&key.text) {
                Ok(zone) => zones.push((key, zone)),
                Err(reason) => self.lost(&key.at, &format!("server block {}", key.text), &reason),
            }
        }
        if zones.is_empty() {
            // Nothing of the block is served; say so for each directive too.
            for directive in &block.directives {
                self.lost(
                    directive.at(),
                    &directive.name.text,
                    "its server block is not carried over",
                );
            }
            return Ok(());
        }
        let mut names: Vec<String> = Vec::new();
        for (key, zone) in zones {
            if zone == "." {
                if *seen_root {
                    self.lost(
                        &key.at,
                        &format!("server block {}", key.text),
                        "a second server block for the root zone: only the first is carried over",
                    );
                    continue;
                }
                *seen_root = true;
            }
            names.push(zone);
        }
        if names.is_empty() {
            return Ok(());
        }
        for directive in &block.directives {
            self.directive(directive, &names)?;
        }
        Ok(())
    }

    fn directive(&mut self, d: &Directive, block_zones: &[String]) -> Result<(), ImportError> {
        let name = d.name.text.as_str();
        match name {
            "kubernetes" => self.kubernetes(d, block_zones),
            "forward" => self.forward(d, block_zones),
            "cache" => self.cache(d, block_zones),
            "autopath" => {
                if d.arg_texts() == ["@kubernetes"] && d.block.is_none() {
                    self.spec.autopath = true;
                } else {
                    self.lost(
                        d.at(),
                        &d.line_text(),
                        "only `autopath @kubernetes` has an equivalent (spec.autopath)",
                    );
                }
                Ok(())
            }
            "loadbalance" => {
                let args = d.arg_texts();
                if (args.is_empty() || args == ["round_robin"]) && d.sub().is_empty() {
                    self.spec.load_balance = LoadBalance::RoundRobin;
                } else {
                    self.lost(
                        d.at(),
                        &d.line_text(),
                        "only the round_robin policy has an equivalent (spec.loadBalance: RoundRobin)",
                    );
                }
                Ok(())
            }
            "rewrite" => self.rewrite(d),
            "hosts" => self.hosts(d, block_zones),
            "file" => self.file(d, block_zones),
            "import" => {
                let pattern = d.args.first().map(|t| t.text.as_str()).unwrap_or_default();
                let absolute = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("{}/{pattern}", self.base_dir)
                };
                let dir = absolute.rsplit_once('/').map_or("", |(dir, _)| dir);
                if self.options.provided_dirs.iter().any(|p| p == dir) {
                    self.note(
                        d.at(),
                        &d.line_text(),
                        "matches no file of the ConfigMap given for this directory: imports nothing, as in CoreDNS",
                    );
                } else {
                    self.lost(
                        d.at(),
                        &d.line_text(),
                        "the imported files were not given (pass the ConfigMap mounted there, e.g. --custom-configmap coredns-custom.yaml); whatever they add is not carried over",
                    );
                }
                Ok(())
            }
            _ => {
                if let Some((_, reason)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
                    let text = d.line_text();
                    self.note(d.at(), &text, reason);
                } else if OTHER_PLUGINS.contains(&name) {
                    let text = d.line_text();
                    self.lost(d.at(), &text, not_carried_reason(name));
                } else {
                    return Err(ImportError {
                        at: d.at().clone(),
                        message: format!(
                            "unknown plugin {name:?}: not a directive of CoreDNS (a typo, or a plugin of a custom build?)"
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    fn kubernetes(&mut self, d: &Directive, block_zones: &[String]) -> Result<(), ImportError> {
        if self.kubernetes_at.is_some() {
            self.lost(
                d.at(),
                &d.line_text(),
                "a second kubernetes plugin: nameplane serves one cluster domain",
            );
            return Ok(());
        }
        self.kubernetes_at = Some(d.at().clone());
        let zones: Vec<String> = if d.args.is_empty() {
            block_zones.to_vec()
        } else {
            d.args.iter().map(|t| normalize_zone(&t.text)).collect()
        };
        let mut cluster_domain: Option<String> = None;
        for zone in &zones {
            if is_reverse(zone) {
                if zone != "in-addr.arpa" && zone != "ip6.arpa" {
                    let reason = format!(
                        "reverse zone {zone}: nameplane answers PTR queries for every cluster address (the whole in-addr.arpa and ip6.arpa)"
                    );
                    self.note(d.at(), "kubernetes", &reason);
                }
            } else if cluster_domain.is_none() && zone != "." {
                cluster_domain = Some(zone.clone());
            } else {
                let reason = format!(
                    "zone {zone}: nameplane serves one cluster domain ({})",
                    cluster_domain.as_deref().unwrap_or("none")
                );
                self.lost(d.at(), "kubernetes", &reason);
            }
        }
        match cluster_domain {
            Some(domain) if is_domain_name(&domain) => {
                self.spec.cluster_domain = DomainName(domain);
            }
            Some(domain) => {
                let reason = format!("{domain:?} is not a domain name nameplane accepts");
                self.lost(d.at(), "kubernetes", &reason);
            }
            None => self.note(
                d.at(),
                "kubernetes",
                "no cluster zone given: nameplane serves cluster.local",
            ),
        }
        // CoreDNS's kubernetes plugin always resolves an ExternalName's target outside the
        // cluster through the server itself (`upstream.New()` in its setup, not an option since
        // 1.7): the answer is the CNAME and the target's records. coredns_differential.rs saw
        // this on v1.14.7, so the import keeps it.
        let mut k = KubernetesSpec {
            resolve_external_names: true,
            ..KubernetesSpec::default()
        };
        for sub in d.sub() {
            let args = sub.arg_texts();
            let text = format!("kubernetes {}", sub.line_text());
            match (sub.name.text.as_str(), args.as_slice()) {
                ("pods", [mode]) => match *mode {
                    "disabled" => k.pods = PodsMode::Disabled,
                    "insecure" => k.pods = PodsMode::Insecure,
                    "verified" => k.pods = PodsMode::Verified,
                    _ => return Err(bad(sub, "pods takes disabled, insecure or verified")),
                },
                ("endpoint_pod_names", []) => k.endpoint_pod_names = true,
                ("ttl", [ttl]) => match ttl.parse::<u32>() {
                    Ok(ttl) if ttl <= 3600 => self.spec.ttl_seconds = ttl,
                    _ => return Err(bad(sub, "ttl takes seconds from 0 to 3600")),
                },
                ("namespaces", names) if !names.is_empty() => {
                    for name in names {
                        if is_kubernetes_name(name) {
                            k.namespaces.push(KubernetesName(name.to_string()));
                        } else {
                            let reason = format!("{name:?} is not a namespace name");
                            self.lost(&sub.name.at, &text, &reason);
                        }
                    }
                }
                ("labels", expr) if !expr.is_empty() => match label_selector(&expr.join(" ")) {
                    Ok(selector) => k.service_selector = Some(selector),
                    Err(reason) => self.lost(&sub.name.at, &text, &reason),
                },
                ("namespace_labels", expr) if !expr.is_empty() => {
                    match label_selector(&expr.join(" ")) {
                        Ok(selector) => k.namespace_selector = Some(selector),
                        Err(reason) => self.lost(&sub.name.at, &text, &reason),
                    }
                }
                ("ignore", ["empty_service"]) => k.ignore_empty_service = true,
                ("fallthrough", zones) => {
                    let zones: Vec<String> = if zones.is_empty() {
                        vec![".".into()]
                    } else {
                        zones.iter().map(|z| normalize_zone(z)).collect()
                    };
                    for zone in zones {
                        if zone == "." || is_reverse(&zone) {
                            k.reverse_fallthrough = true;
                        }
                        if !is_reverse(&zone) {
                            let reason = format!("fallthrough for {zone}: nameplane answers every cluster name itself (NXDOMAIN for unknown ones); only the reverse zones fall through (spec.kubernetes.reverseFallthrough)");
                            self.lost(&sub.name.at, &text, &reason);
                        } else if zone != "in-addr.arpa" && zone != "ip6.arpa" {
                            let reason = format!("fallthrough for {zone}: carried over as reverseFallthrough, which covers all of in-addr.arpa and ip6.arpa");
                            self.note(&sub.name.at, &text, &reason);
                        }
                    }
                }
                ("endpoint" | "tls" | "kubeconfig" | "apiserver", _) => self.note(
                    &sub.name.at,
                    &text,
                    "the operator and the DNS servers reach the API server with their own in-cluster credentials",
                ),
                ("startup_timeout", _) => self.note(
                    &sub.name.at,
                    &text,
                    "built in: a DNS Pod is not ready until its watches have synced",
                ),
                ("noendpoints", []) => self.lost(
                    &sub.name.at,
                    &text,
                    "nameplane always serves headless Services' endpoints",
                ),
                ("multicluster", _) => self.lost(
                    &sub.name.at,
                    &text,
                    "multicluster Services are not served",
                ),
                ("pods" | "endpoint_pod_names" | "ttl" | "ignore" | "namespaces" | "labels" | "namespace_labels", _) => {
                    return Err(bad(sub, "wrong arguments (see the CoreDNS kubernetes plugin)"));
                }
                _ => {
                    return Err(bad(sub, "not an option of the kubernetes plugin"));
                }
            }
        }
        if !k.namespaces.is_empty() && k.namespace_selector.is_some() {
            self.lost(
                d.at(),
                "kubernetes namespace_labels",
                "namespaces and namespace_labels together: nameplane takes one of them (namespaces kept)",
            );
            k.namespace_selector = None;
        }
        self.spec.kubernetes = k;
        Ok(())
    }

    fn forward(&mut self, d: &Directive, block_zones: &[String]) -> Result<(), ImportError> {
        let args = &d.args;
        if args.len() < 2 {
            return Err(bad(d, "forward needs FROM and at least one TO"));
        }
        let from = normalize_zone(&args[0].text);
        let zones: Vec<String> = if from == "." {
            block_zones.to_vec()
        } else {
            vec![from]
        };
        let text = d.line_text();
        let mut upstreams = Vec::new();
        let mut resolv_conf = false;
        for to in &args[1..] {
            let addr = to.text.strip_prefix("dns://").unwrap_or(&to.text);
            if to.text.starts_with('/') || to.text.contains("resolv.conf") {
                if to.text == "/etc/resolv.conf" {
                    resolv_conf = true;
                } else {
                    let reason = format!(
                        "{}: only /etc/resolv.conf (the DNS Pod's, which is the node's) can be named as a file",
                        to.text
                    );
                    self.lost(&to.at, &text, &reason);
                }
            } else if let Some(scheme) = ["tls://", "https://", "grpc://", "quic://"]
                .iter()
                .find(|s| to.text.starts_with(**s))
            {
                let reason = format!(
                    "{}: nameplane forwards over plain DNS only ({scheme} is not supported)",
                    to.text
                );
                self.lost(&to.at, &text, &reason);
            } else {
                let upstream = UpstreamAddress(addr.to_string());
                match upstream.socket_addr() {
                    Ok(_) => upstreams.push(upstream),
                    Err(_) => {
                        return Err(ImportError {
                            at: to.at.clone(),
                            message: format!(
                                "forward: {:?} is not an IP address with an optional port",
                                to.text
                            ),
                        });
                    }
                }
            }
        }
        if upstreams.len() > 8 {
            let extra: Vec<_> = upstreams.split_off(8).into_iter().map(|u| u.0).collect();
            let reason = format!("at most 8 upstreams: {} left out", extra.join(" "));
            self.lost(d.at(), &text, &reason);
        }
        // Options.
        let mut policy = ForwardPolicy::Random;
        let mut force_tcp = false;
        let mut prefer_udp = false;
        let mut max_concurrent: Option<u32> = None;
        for sub in d.sub() {
            let sub_text = format!("forward {}", sub.line_text());
            let sub_args = sub.arg_texts();
            match (sub.name.text.as_str(), sub_args.as_slice()) {
                ("policy", [p]) => {
                    policy = match *p {
                        "random" => ForwardPolicy::Random,
                        "round_robin" => ForwardPolicy::RoundRobin,
                        "sequential" => ForwardPolicy::Sequential,
                        _ => {
                            return Err(bad(sub, "policy takes random, round_robin or sequential"));
                        }
                    }
                }
                ("force_tcp", []) => force_tcp = true,
                ("prefer_udp", []) => prefer_udp = true,
                ("max_concurrent", [n]) => match n.parse::<u32>() {
                    Ok(n) if (1..=100_000).contains(&n) => max_concurrent = Some(n),
                    _ => return Err(bad(sub, "max_concurrent takes a number from 1 to 100000")),
                },
                (
                    "max_fails" | "health_check" | "expire" | "failfast_all_unhealthy_upstreams",
                    _,
                ) => self.note(
                    &sub.name.at,
                    &sub_text,
                    "nameplane health-checks its upstreams itself; this tuning has no field",
                ),
                ("except", names) => {
                    let reason = format!(
                        "names excluded from forwarding ({}) are forwarded by nameplane; write a StubDomain or DNSZone for them",
                        names.join(" ")
                    );
                    self.lost(&sub.name.at, &sub_text, &reason);
                }
                ("tls" | "tls_servername", _) => self.lost(
                    &sub.name.at,
                    &sub_text,
                    "nameplane forwards over plain DNS only",
                ),
                ("next" | "failover", _) => self.lost(
                    &sub.name.at,
                    &sub_text,
                    "no equivalent: an upstream's error answers are passed to the client",
                ),
                _ => return Err(bad(sub, "not an option of the forward plugin")),
            }
        }
        if force_tcp && prefer_udp {
            self.lost(
                d.at(),
                &text,
                "force_tcp and prefer_udp together: force_tcp kept",
            );
            prefer_udp = false;
        }
        for zone in zones {
            if zone == "." {
                if self.root_forward_at.is_some() {
                    self.lost(d.at(), &text, "a second forward for the root zone");
                    continue;
                }
                self.root_forward_at = Some(d.at().clone());
                self.spec.upstreams = upstreams.clone();
                self.spec.upstreams_from_resolv_conf = resolv_conf;
                self.spec.upstream_policy = policy;
                if force_tcp || prefer_udp {
                    self.lost(
                        d.at(),
                        "forward force_tcp/prefer_udp",
                        "the DNSServer's upstreams have no transport setting (queries go upstream over the client's transport)",
                    );
                }
                match max_concurrent {
                    Some(n) if n != DEFAULT_MAX_CONCURRENT => {
                        let reason = format!(
                            "max_concurrent {n}: the DNSServer's upstreams take at most {DEFAULT_MAX_CONCURRENT} queries in flight (no field)"
                        );
                        self.lost(d.at(), "forward max_concurrent", &reason);
                    }
                    Some(_) => self.note(
                        d.at(),
                        "forward max_concurrent",
                        "1000 is nameplane's built-in limit of in-flight upstream queries",
                    ),
                    None => {}
                }
                if upstreams.is_empty() && !resolv_conf {
                    self.lost(d.at(), &text, "no upstream left to forward to");
                }
            } else {
                if !is_domain_name(&zone) {
                    let reason = format!("{zone:?} is not a domain name a StubDomain accepts");
                    self.lost(d.at(), &text, &reason);
                    continue;
                }
                if resolv_conf {
                    self.lost(
                        d.at(),
                        &text,
                        "a StubDomain cannot forward to /etc/resolv.conf: name its servers",
                    );
                }
                if upstreams.is_empty() {
                    let reason = format!("no server left to forward {zone} to");
                    self.lost(d.at(), &text, &reason);
                    continue;
                }
                if self.stubs.iter().any(|(_, s)| s.domain.0 == zone) {
                    let reason = format!("{zone} is forwarded already");
                    self.lost(d.at(), &text, &reason);
                    continue;
                }
                self.stubs.push((
                    d.at().clone(),
                    StubDomainSpec {
                        domain: DomainName(zone.clone()),
                        servers: upstreams.clone(),
                        service_refs: vec![],
                        policy,
                        transport: if force_tcp {
                            ForwardTransport::Tcp
                        } else if prefer_udp {
                            ForwardTransport::PreferUdp
                        } else {
                            ForwardTransport::Auto
                        },
                        max_concurrent,
                    },
                ));
            }
        }
        Ok(())
    }

    fn cache(&mut self, d: &Directive, block_zones: &[String]) -> Result<(), ImportError> {
        let text = d.line_text();
        let args = d.arg_texts();
        let (ttl, zones) = match args.first().map(|a| a.parse::<u32>()) {
            Some(Ok(ttl)) => (Some(ttl), &args[1..]),
            _ => (None, &args[..]),
        };
        if !block_zones.iter().any(|z| z == ".") {
            self.stub_caches.push((d.at().clone(), text));
            return Ok(());
        }
        if zones.iter().any(|z| normalize_zone(z) != ".") {
            self.note(
                d.at(),
                &text,
                "nameplane has one cache, for every forwarded name (stub domains included): carried over as spec.cache for all of them",
            );
        }
        if self.cache_at.is_some() {
            self.lost(d.at(), &text, "a second cache: nameplane has one cache");
            return Ok(());
        }
        self.cache_at = Some(d.at().clone());
        // CoreDNS's defaults: success TTL cap 3600, denial 1800, both floors 5 s.
        let mut cache = CacheSpec {
            max_ttl_seconds: ttl.unwrap_or(3600).min(86_400),
            denial_ttl_seconds: ttl.unwrap_or(1800).min(86_400),
            min_ttl_seconds: 5,
            ..CacheSpec::default()
        };
        let mut denial_min: Option<u32> = None;
        for sub in d.sub() {
            let sub_text = format!("cache {}", sub.line_text());
            let a = sub.arg_texts();
            let number = |s: &str| s.parse::<u32>().ok();
            match (sub.name.text.as_str(), a.as_slice()) {
                ("success", [cap, rest @ ..]) if rest.len() <= 2 => {
                    let cap =
                        number(cap).ok_or_else(|| bad(sub, "success CAPACITY [TTL [MINTTL]]"))?;
                    cache.capacity = cap.clamp(1, 10_000_000);
                    if let Some(t) = rest.first() {
                        cache.max_ttl_seconds = number(t)
                            .ok_or_else(|| bad(sub, "TTL in seconds"))?
                            .min(86_400);
                    }
                    if let Some(t) = rest.get(1) {
                        cache.min_ttl_seconds = number(t)
                            .ok_or_else(|| bad(sub, "MINTTL in seconds"))?
                            .min(86_400);
                    }
                }
                ("denial", [cap, rest @ ..]) if rest.len() <= 2 => {
                    let cap =
                        number(cap).ok_or_else(|| bad(sub, "denial CAPACITY [TTL [MINTTL]]"))?;
                    cache.denial_capacity = Some(cap.clamp(1, 10_000_000));
                    if let Some(t) = rest.first() {
                        cache.denial_ttl_seconds = number(t)
                            .ok_or_else(|| bad(sub, "TTL in seconds"))?
                            .min(86_400);
                    }
                    if let Some(t) = rest.get(1) {
                        denial_min = Some(number(t).ok_or_else(|| bad(sub, "MINTTL in seconds"))?);
                    }
                }
                ("prefetch", [amount, rest @ ..]) if rest.len() <= 2 => {
                    let mut prefetch = PrefetchSpec {
                        amount: number(amount)
                            .ok_or_else(|| bad(sub, "prefetch AMOUNT [DURATION] [PERCENTAGE%]"))?
                            .clamp(1, 1_000_000),
                        duration_seconds: 60,
                        percentage: 10,
                    };
                    for r in rest {
                        if let Some(p) = r.strip_suffix('%') {
                            prefetch.percentage = number(p)
                                .ok_or_else(|| bad(sub, "PERCENTAGE like 10%"))?
                                .clamp(1, 100);
                        } else {
                            prefetch.duration_seconds = duration_seconds(r)
                                .ok_or_else(|| bad(sub, "DURATION like 1m"))?
                                .clamp(1, 86_400);
                        }
                    }
                    cache.prefetch = Some(prefetch);
                }
                ("serve_stale", rest) if rest.len() <= 2 => {
                    let seconds = match rest.first() {
                        Some(d) => duration_seconds(d)
                            .ok_or_else(|| bad(sub, "serve_stale [DURATION] [REFRESH_MODE]"))?,
                        None => 3600,
                    };
                    cache.serve_stale_seconds = seconds.min(604_800);
                    if let Some(mode) = rest.get(1) {
                        let reason = format!(
                            "refresh mode {mode}: nameplane answers stale only when the upstreams fail (RFC 8767)"
                        );
                        self.note(&sub.name.at, &sub_text, &reason);
                    }
                }
                ("disable", [_kind, zones @ ..]) => {
                    let cluster = self.spec.cluster_domain.0.clone();
                    if !zones.is_empty()
                        && zones.iter().all(|z| {
                            let z = normalize_zone(z);
                            super::super::render::kinds::is_at_or_below(&z, &cluster)
                        })
                    {
                        self.note(
                            &sub.name.at,
                            &sub_text,
                            "built in: nameplane never caches cluster names (they are answered from its own view of the API)",
                        );
                    } else {
                        self.lost(
                            &sub.name.at,
                            &sub_text,
                            "nameplane caches every forwarded name; no per-zone exception",
                        );
                    }
                }
                ("keepttl" | "servfail", _) => self.lost(
                    &sub.name.at,
                    &sub_text,
                    "no equivalent setting of spec.cache",
                ),
                _ => return Err(bad(sub, "not an option of the cache plugin")),
            }
        }
        cache.min_ttl_seconds = cache.min_ttl_seconds.min(cache.max_ttl_seconds);
        if let Some(min) = denial_min
            && min != cache.min_ttl_seconds
        {
            let reason = format!(
                "denial MINTTL {min}: nameplane has one TTL floor (minTtlSeconds {}) for both",
                cache.min_ttl_seconds
            );
            self.lost(d.at(), "cache denial", &reason);
        }
        self.spec.cache = Some(cache);
        Ok(())
    }

    fn rewrite(&mut self, d: &Directive) -> Result<(), ImportError> {
        let text = d.line_text();
        let mut args: Vec<&Token> = d.args.iter().collect();
        let mut continues = false;
        if let Some(first) = args.first()
            && (first.text == "continue" || first.text == "stop")
        {
            continues = first.text == "continue";
            args.remove(0);
        }
        // Block form: `rewrite [stop] { name ...; answer name ... }`.
        let mut answer_args: Vec<String> = Vec::new();
        let name_args: Vec<String> = if args.is_empty() && d.block.is_some() {
            let mut name = None;
            for sub in d.sub() {
                match sub.name.text.as_str() {
                    "name" => name = Some(sub.arg_texts().iter().map(|s| s.to_string()).collect()),
                    "answer" => {
                        answer_args.push("answer".into());
                        answer_args.extend(sub.arg_texts().iter().map(|s| s.to_string()));
                    }
                    _ => {
                        let reason = format!(
                            "rewrite {}: only name rewrites have an equivalent",
                            sub.name.text
                        );
                        self.lost(&sub.name.at, &text, &reason);
                    }
                }
            }
            match name {
                Some(n) => n,
                None => return Ok(()),
            }
        } else {
            match args.first().map(|t| t.text.as_str()) {
                Some("name") => args[1..].iter().map(|t| t.text.clone()).collect(),
                Some(field) => {
                    let reason = format!(
                        "rewrite {field}: only name rewrites have an equivalent (RewriteRule)"
                    );
                    self.lost(d.at(), &text, &reason);
                    return Ok(());
                }
                None => return Err(bad(d, "rewrite needs a field")),
            }
        };
        if continues {
            self.note(
                d.at(),
                &text,
                "`continue`: nameplane applies the first matching rule only",
            );
        }
        // [TYPE] FROM TO [answer ...]
        let mut rest: Vec<String> = name_args;
        rest.extend(answer_args);
        let kinds = ["exact", "prefix", "suffix", "substring", "regex"];
        let kind = if rest.first().is_some_and(|k| kinds.contains(&k.as_str())) {
            rest.remove(0)
        } else {
            "exact".to_string()
        };
        if rest.len() < 2 {
            return Err(bad(d, "rewrite name [TYPE] FROM TO [answer auto]"));
        }
        let mut from = rest[0].clone();
        let mut to = rest[1].clone();
        let options = &rest[2..];
        let rewrite_answers = match options {
            [] => false,
            [a, auto] if a == "answer" && auto == "auto" => true,
            [a, ..] if a == "answer" => {
                self.note(
                    d.at(),
                    &text,
                    "answer name/value rules: carried over as rewriteAnswers (owner names and targets in the answer are rewritten back to the name asked for)",
                );
                true
            }
            _ => return Err(bad(d, "after FROM TO only `answer ...` may follow")),
        };
        let match_kind = match kind.as_str() {
            "exact" => MatchKind::Exact,
            "prefix" => MatchKind::Prefix,
            "suffix" => {
                if let (Some(f), Some(t)) = (from.strip_prefix('.'), to.strip_prefix('.')) {
                    // `.example.com` is a label boundary: an anchored regex says exactly that.
                    from = format!("^(.+)\\.{}$", regex_escape(f.trim_end_matches('.')));
                    to = format!("{{1}}.{}", t.trim_end_matches('.'));
                    MatchKind::Regex
                } else {
                    MatchKind::Suffix
                }
            }
            "regex" => MatchKind::Regex,
            _ => {
                self.lost(
                    d.at(),
                    &text,
                    "substring rewrites have no equivalent (replacing FROM anywhere in the name); when FROM only ever ends the name, write it as a suffix rewrite",
                );
                return Ok(());
            }
        };
        if match_kind == MatchKind::Regex {
            // CoreDNS matches the name with its trailing dot; nameplane without it.
            if let Some(stripped) = from.strip_suffix("\\.$") {
                from = format!("{stripped}$");
            }
            to = to.trim_end_matches('.').to_string();
            if regex_syntax::Parser::new().parse(&from).is_err() {
                let reason = format!("{from:?} is not a regular expression nameplane accepts");
                self.lost(d.at(), &text, &reason);
                return Ok(());
            }
        } else {
            from = from.trim_end_matches('.').to_ascii_lowercase();
            to = to.trim_end_matches('.').to_ascii_lowercase();
            if !is_domain_name(&from) || !is_domain_name(&to) {
                self.lost(
                    d.at(),
                    &text,
                    "from and to must be DNS names (letters, digits, '-' and '.') for exact, prefix and suffix rewrites",
                );
                return Ok(());
            }
        }
        if from == to {
            self.note(d.at(), &text, "from equals to: the rule does nothing");
            return Ok(());
        }
        self.rewrites.push((
            d.at().clone(),
            NameRewrite {
                match_kind,
                from,
                to,
                rewrite_answers,
                ttl_seconds: None,
            },
        ));
        Ok(())
    }

    fn hosts(&mut self, d: &Directive, block_zones: &[String]) -> Result<(), ImportError> {
        let text = d.line_text();
        let args = d.arg_texts();
        let file = args.first().copied().unwrap_or("/etc/hosts");
        let zones: Vec<String> = if args.len() > 1 {
            args[1..].iter().map(|z| normalize_zone(z)).collect()
        } else {
            block_zones.to_vec()
        };
        let mut ttl = 3600;
        let mut reverse = true;
        let mut fallthrough = false;
        let mut entries: Vec<(Location, String)> = Vec::new();
        for sub in d.sub() {
            let sub_args = sub.arg_texts();
            match (sub.name.text.as_str(), sub_args.as_slice()) {
                ("ttl", [t]) => {
                    ttl = t
                        .parse::<u32>()
                        .ok()
                        .filter(|t| (1..=604_800).contains(t))
                        .ok_or_else(|| bad(sub, "ttl takes seconds"))?
                }
                ("no_reverse", []) => reverse = false,
                ("reload", _) => self.note(
                    &sub.name.at,
                    &format!("hosts {}", sub.line_text()),
                    "built in: a changed DNSZone is served as soon as it is applied (re-run the import when the file changes)",
                ),
                ("fallthrough", _) => fallthrough = true,
                (name, _) if name.parse::<IpAddr>().is_ok() => {
                    entries.push((sub.name.at.clone(), sub.line_text()));
                }
                _ => return Err(bad(sub, "not an option of the hosts plugin, nor an address line")),
            }
        }
        // The hosts file itself.
        let path = if file.starts_with('/') {
            file.to_string()
        } else {
            format!("{}/{file}", self.base_dir)
        };
        match self.options.files.get(&path) {
            Some(content) => {
                for (i, line) in content.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if !line.is_empty() {
                        entries.push((
                            Location {
                                file: path.clone(),
                                line: i + 1,
                            },
                            line.to_string(),
                        ));
                    }
                }
            }
            None if file == "/etc/hosts" && args.is_empty() => self.note(
                d.at(),
                &text,
                "the DNS Pod's own /etc/hosts (localhost entries) is not carried over",
            ),
            None => {
                let reason = format!(
                    "{path} was not given (pass the ConfigMap holding it, e.g. --coredns-configmap); its entries are not carried over"
                );
                self.lost(d.at(), &text, &reason);
            }
        }
        if !fallthrough {
            self.note(
                d.at(),
                &text,
                "without fallthrough CoreDNS does not pass the names it does not list on to the next plugins; nameplane serves only the listed names (each its own DNSZone) and resolves every other name as usual",
            );
        }
        for (at, line) in entries {
            let mut fields = line.split_whitespace();
            let Some(address) = fields.next() else {
                continue;
            };
            let Ok(ip) = address.parse::<IpAddr>() else {
                let reason = format!("{address:?} is not an IP address");
                self.lost(&at, "hosts entry", &reason);
                continue;
            };
            let names: Vec<String> = fields.map(normalize_zone).collect();
            let mut ptr_names = Vec::new();
            for name in names {
                if !is_domain_name(&name) {
                    let reason = format!("{name:?} is not a domain name a DNSZone accepts");
                    self.lost(&at, "hosts entry", &reason);
                    continue;
                }
                if !zones
                    .iter()
                    .any(|z| z == "." || super::super::render::kinds::is_at_or_below(&name, z))
                {
                    let reason = format!(
                        "{name} is outside the plugin's zones ({}): CoreDNS does not serve it either",
                        zones.join(" ")
                    );
                    self.note(&at, "hosts entry", &reason);
                    continue;
                }
                let record_type = if ip.is_ipv4() {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                self.add_record(&name, "@", record_type, ip.to_string(), ttl, &at);
                ptr_names.push(name);
            }
            if reverse && !ptr_names.is_empty() {
                let reverse_name = reverse_name(ip);
                for name in ptr_names {
                    self.add_record(
                        &reverse_name,
                        "@",
                        RecordType::PTR,
                        format!("{name}."),
                        ttl,
                        &at,
                    );
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, d: &Directive, block_zones: &[String]) -> Result<(), ImportError> {
        let text = d.line_text();
        let args = d.arg_texts();
        let Some(file) = args.first() else {
            return Err(bad(d, "file needs a zone file"));
        };
        let zones: Vec<String> = if args.len() > 1 {
            args[1..].iter().map(|z| normalize_zone(z)).collect()
        } else {
            block_zones.to_vec()
        };
        for sub in d.sub() {
            let sub_text = format!("file {}", sub.line_text());
            match sub.name.text.as_str() {
                "reload" => self.note(
                    &sub.name.at,
                    &sub_text,
                    "built in: a changed DNSZone is served as soon as it is applied (re-run the import when the file changes)",
                ),
                _ => self.lost(&sub.name.at, &sub_text, "no equivalent setting of a DNSZone"),
            }
        }
        let path = if file.starts_with('/') {
            file.to_string()
        } else {
            format!("{}/{file}", self.base_dir)
        };
        let Some(content) = self.options.files.get(&path).cloned() else {
            let reason = format!(
                "{path} was not given (pass the ConfigMap holding it, e.g. --coredns-configmap); the zone is not carried over"
            );
            self.lost(d.at(), &text, &reason);
            return Ok(());
        };
        for zone in zones {
            if zone == "." || !is_domain_name(&zone) {
                let reason = format!("zone {zone}: a DNSZone needs a domain name as its apex");
                self.lost(d.at(), &text, &reason);
                continue;
            }
            let (records, skipped) = super::zonefile::parse(&zone, &content);
            let at_line = |line: usize| Location {
                file: path.clone(),
                line,
            };
            for skip in skipped {
                if skip.reason.starts_with("SOA") {
                    self.note(&at_line(skip.line), "file record", &skip.reason);
                } else {
                    self.lost(&at_line(skip.line), "file record", &skip.reason);
                }
            }
            // The zone's TTL: the first record's; others keep their own when they differ.
            let zone_ttl = records.first().and_then(|r| r.ttl).unwrap_or(3600);
            for record in records {
                let record_type = match record.record_type.as_str() {
                    "A" => RecordType::A,
                    "AAAA" => RecordType::AAAA,
                    "CNAME" => RecordType::CNAME,
                    "MX" => RecordType::MX,
                    "NS" => RecordType::NS,
                    "PTR" => RecordType::PTR,
                    "SRV" => RecordType::SRV,
                    "TXT" => RecordType::TXT,
                    "CAA" => RecordType::CAA,
                    other => {
                        let reason = format!("{other} records are not a type a DNSZone holds");
                        self.lost(&at_line(record.line), "file record", &reason);
                        continue;
                    }
                };
                self.zones.entry(zone.clone()).or_insert_with(|| ZoneBuild {
                    at: d.at().clone(),
                    ttl: zone_ttl,
                    records: BTreeMap::new(),
                });
                let ttl = record.ttl.unwrap_or(zone_ttl);
                self.add_record(
                    &zone,
                    &record.name,
                    record_type,
                    record.value,
                    ttl,
                    &at_line(record.line),
                );
            }
        }
        Ok(())
    }

    fn add_record(
        &mut self,
        apex: &str,
        name: &str,
        record_type: RecordType,
        value: String,
        ttl: u32,
        at: &Location,
    ) {
        let zone = self
            .zones
            .entry(apex.to_string())
            .or_insert_with(|| ZoneBuild {
                at: at.clone(),
                ttl,
                records: BTreeMap::new(),
            });
        let key = (name.to_string(), format!("{record_type:?}"));
        let zone_ttl = zone.ttl;
        let (_, values, _) = zone
            .records
            .entry(key)
            .or_insert_with(|| (record_type, Vec::new(), (ttl != zone_ttl).then_some(ttl)));
        if !values.contains(&value) {
            if values.len() >= 32 {
                let reason = format!("{apex}: at most 32 values per record set; {value} left out");
                self.lost(at, "hosts entry", &reason);
                return;
            }
            values.push(value);
        }
    }

    fn finish(self) -> Imported {
        let namespace = self.options.namespace.clone();
        let meta = |name: String| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.clone()),
            ..Default::default()
        };
        let mut server = DNSServer::new(&self.options.name, self.spec);
        server.metadata = meta(self.options.name.clone());
        let mut origins = BTreeMap::new();
        let stubs = self
            .stubs
            .into_iter()
            .map(|(at, spec)| {
                let name = object_name(&spec.domain.0);
                origins.insert(("StubDomain", name.clone()), at);
                let mut stub = StubDomain::new(&name, spec);
                stub.metadata = meta(name);
                stub
            })
            .collect();
        let zones = self
            .zones
            .into_iter()
            .map(|(apex, build)| {
                let name = object_name(&apex);
                origins.insert(("DNSZone", name.clone()), build.at);
                let records = build
                    .records
                    .into_iter()
                    .map(|((name, _), (record_type, values, ttl))| ZoneRecord {
                        name,
                        record_type,
                        ttl_seconds: ttl,
                        values: values.into_iter().map(RecordValue).collect(),
                        service: None,
                    })
                    .collect();
                let mut zone = DNSZone::new(
                    &name,
                    DNSZoneSpec {
                        zone: DomainName(apex),
                        ttl_seconds: build.ttl,
                        records,
                        allow_transfer: vec![],
                    },
                );
                zone.metadata = meta(name);
                zone
            })
            .collect();
        let mut rewrites = Vec::new();
        for (i, chunk) in self.rewrites.chunks(64).enumerate() {
            let name = if i == 0 {
                format!("{}-rewrites", self.options.name)
            } else {
                format!("{}-rewrites-{}", self.options.name, i + 1)
            };
            origins.insert(("RewriteRule", name.clone()), chunk[0].0.clone());
            let mut rule = RewriteRule::new(
                &name,
                RewriteRuleSpec {
                    rules: chunk.iter().map(|(_, r)| r.clone()).collect(),
                },
            );
            rule.metadata = meta(name);
            rewrites.push(rule);
        }
        Imported {
            server,
            stubs,
            zones,
            rewrites,
            findings: self.findings,
            origins,
        }
    }
}

/// The `DNSServer` as JSON without its status, and with the spec fields that equal their
/// defaults left out (so the output says only what the Corefile said), except
/// `clusterDomain`, which is always written.
pub fn server_value(server: &DNSServer) -> serde_json::Value {
    let mut defaults = serde_json::to_value(
        serde_json::from_value::<DNSServerSpec>(serde_json::json!({}))
            .expect("an empty DNSServer spec parses"),
    )
    .unwrap_or_default();
    if let Some(map) = defaults.as_object_mut() {
        // Optional parts: compare what is written with the defaults of their fields.
        map.insert(
            "kubernetes".into(),
            serde_json::to_value(KubernetesSpec::default()).unwrap_or_default(),
        );
        map.insert(
            "cache".into(),
            serde_json::to_value(CacheSpec::default()).unwrap_or_default(),
        );
    }
    without_defaults(
        serde_json::to_value(server).unwrap_or_default(),
        &defaults,
        &["clusterDomain"],
    )
}

/// A `StubDomain` as JSON without its status and without fields at their defaults.
pub fn stub_value(stub: &StubDomain) -> serde_json::Value {
    let defaults = serde_json::to_value(
        serde_json::from_value::<StubDomainSpec>(serde_json::json!({"domain": "example"}))
            .expect("a minimal StubDomain spec parses"),
    )
    .unwrap_or_default();
    without_defaults(
        serde_json::to_value(stub).unwrap_or_default(),
        &defaults,
        &["domain"],
    )
}

/// An object's JSON without `status`, and with the spec fields equal to `defaults` (except
/// those in `keep`) left out.
fn without_defaults(
    mut value: serde_json::Value,
    defaults: &serde_json::Value,
    keep: &[&str],
) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
        if let Some(spec) = map.get_mut("spec") {
            prune_defaults(spec, defaults, keep);
        }
    }
    value
}

fn prune_defaults(value: &mut serde_json::Value, defaults: &serde_json::Value, keep: &[&str]) {
    let (Some(map), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) else {
        return;
    };
    map.retain(|key, v| keep.contains(&key.as_str()) || defaults.get(key) != Some(v));
    for (key, v) in map.iter_mut() {
        if let Some(d) = defaults.get(key) {
            prune_defaults(v, d, &[]);
        }
    }
}

/// An error for a directive whose arguments CoreDNS itself would refuse.
fn bad(d: &Directive, what: &str) -> ImportError {
    ImportError {
        at: d.at().clone(),
        message: format!("{}: {what}", d.line_text()),
    }
}

/// The zone of a server block key (`.:53`, `dns://example.com`, `example.com:53`), or why it
/// is not carried over.
fn parse_key(key: &str) -> Result<String, String> {
    let (scheme, rest) = match key.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("dns", key),
    };
    if scheme != "dns" {
        return Err(format!(
            "{scheme}:// servers: nameplane serves plain DNS only"
        ));
    }
    let (zone, port) = match rest.rsplit_once(':') {
        Some((zone, port)) => (zone, Some(port)),
        None => (rest, None),
    };
    if let Some(port) = port
        && port != "53"
    {
        return Err(format!("port {port}: nameplane serves port 53 only"));
    }
    let zone = if zone.is_empty() { "." } else { zone };
    if zone.contains('/') {
        return Err(format!(
            "{zone}: CIDR server blocks are not carried over; write the reverse zone as a DNSZone"
        ));
    }
    Ok(normalize_zone(zone))
}

/// Lower case, without the trailing dot (`.` stays `.`).
fn normalize_zone(zone: &str) -> String {
    if zone == "." {
        return ".".into();
    }
    zone.trim_end_matches('.').to_ascii_lowercase()
}

fn is_reverse(zone: &str) -> bool {
    zone == "in-addr.arpa"
        || zone == "ip6.arpa"
        || zone.ends_with(".in-addr.arpa")
        || zone.ends_with(".ip6.arpa")
}

/// Whether `name` passes the CRDs' domain-name rule (labels of letters, digits and inner
/// hyphens, 1 to 63 characters, at most 253 in all).
pub(crate) fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_kubernetes_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An object name from a domain: lower case; dots are allowed in names.
fn object_name(domain: &str) -> String {
    domain.to_ascii_lowercase()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The reverse (PTR) name of an address, without the trailing dot.
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::new();
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0xf));
                labels.push(format!("{:x}", byte >> 4));
            }
            format!("{}.ip6.arpa", labels.join("."))
        }
    }
}

/// A Kubernetes label selector expression (`a=b,c!=d,e in (x,y),!f,g`) as a LabelSelector.
pub(crate) fn label_selector(expr: &str) -> Result<LabelSelector, String> {
    let mut match_labels = BTreeMap::new();
    let mut expressions = Vec::new();
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in expr.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    let bad = || format!("{expr:?} is not a label selector nameplane can read");
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad());
        }
        let requirement =
            |key: &str, operator: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
                key: key.trim().to_string(),
                operator: operator.to_string(),
                values,
            };
        if let Some((key, value)) = part.split_once("!=") {
            expressions.push(requirement(
                key,
                "NotIn",
                Some(vec![value.trim().to_string()]),
            ));
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            match_labels.insert(key.trim().to_string(), value.trim().to_string());
        } else if let Some((key, rest)) = part
            .split_once(" notin ")
            .or_else(|| part.split_once(" in "))
        {
            let operator = if part.contains(" notin ") {
                "NotIn"
            } else {
                "In"
            };
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(bad)?;
            let values = values.split(',').map(|v| v.trim().to_string()).collect();
            expressions.push(requirement(key, operator, Some(values)));
        } else if let Some(key) = part.strip_prefix('!') {
            expressions.push(requirement(key, "DoesNotExist", None));
        } else {
            expressions.push(requirement(part, "Exists", None));
        }
    }
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    if match_labels
        .iter()
        .any(|(k, v)| !valid(k) || !(v.is_empty() || valid(v)))
        || expressions
            .iter()
            .any(|e| !valid(&e.key) || e.values.iter().flatten().any(|v| !valid(v)))
    {
        return Err(bad());
    }
    Ok(LabelSelector {
        match_labels: (!match_labels.is_empty()).then_some(match_labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    })
}
