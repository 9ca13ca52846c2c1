//! Per-kind translation of config objects into their parts of the [`ServerConfig`], with the
//! per-object checks, tenancy rules and conflict rules of [`super`].
//!
//! [`ServerConfig`]: nameplane_config::ServerConfig

use super::forwarders::{ClusterAddresses, ForwarderFence};
use super::services::{self, ServiceIndex};
use super::{ObjectKey, Verdict};
use crate::api::dnspolicy::{DNSPolicy, DeniedResponse, PolicyAction};
use crate::api::dnsserver::DNSServer;
use crate::api::dnszone::{DNSZone, RecordType};
use crate::api::rewriterule::{MatchKind, RewriteRule};
use crate::api::stubdomain::{ForwardPolicy, ForwardTransport, StubDomain};
use kube::ResourceExt;
use nameplane_config::forward::{self, ForwardConfig};
use nameplane_config::names;
use nameplane_config::policy::{self, PolicyConfig, PolicyRuleConfig};
use nameplane_config::rewrite::{self, RewriteConfig};
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where config objects may claim names.
pub struct Scope {
    server_namespace: String,
    server_name: String,
    cluster_domain: String,
    tenant_suffix: Option<String>,
    fence: ForwarderFence,
    cluster_addresses: ClusterAddresses,
}

impl Scope {
    /// The scope of `server`, whose normalised cluster domain is `cluster_domain`.
    pub fn new(server: &DNSServer, cluster_domain: &str) -> Self {
        Self {
            server_namespace: server.namespace().unwrap_or_default(),
            server_name: server.name_any(),
            cluster_domain: cluster_domain.into(),
            tenant_suffix: server
                .spec
                .tenant_domain_suffix
                .as_ref()
                .and_then(|s| names::normalize_domain(s.as_str()).ok()),
            fence: ForwarderFence::new(server),
            cluster_addresses: ClusterAddresses::default(),
        }
    }

    /// The same scope, knowing the cluster's own addresses (which tenant forwarders may not
    /// use).
    pub fn with_cluster_addresses(mut self, cluster: &ClusterAddresses) -> Self {
        self.cluster_addresses = cluster.clone();
        self
    }

    /// Whether an object in `namespace` may forward to `addr` (`at`: the field path).
    fn allows_forwarder(
        &self,
        namespace: &str,
        addr: &std::net::SocketAddr,
        at: &str,
    ) -> Result<(), Verdict> {
        if namespace == self.server_namespace {
            return Ok(());
        }
        self.fence.check(addr, &self.cluster_addresses, at)
    }

    /// Whether an object in `namespace` may claim `domain` (a zone apex or stub domain).
    fn allows(&self, namespace: &str, domain: &str) -> Result<(), Verdict> {
        if is_at_or_below(domain, &self.cluster_domain)
            || is_at_or_below(&self.cluster_domain, domain)
        {
            return Err(Verdict::Rejected {
                reason: "ConflictsWithClusterDomain",
                message: format!(
                    "{domain} overlaps the cluster domain {} that DNSServer {}/{} serves from the Kubernetes API",
                    self.cluster_domain, self.server_namespace, self.server_name
                ),
            });
        }
        if namespace == self.server_namespace {
            return Ok(());
        }
        match &self.tenant_suffix {
            Some(suffix) if is_at_or_below(domain, &format!("{namespace}.{suffix}")) => Ok(()),
            Some(suffix) => Err(Verdict::Rejected {
                reason: "NotAllowed",
                message: format!(
                    "objects in namespace {namespace} may only use names at or below {namespace}.{suffix} (spec.tenantDomainSuffix of DNSServer {}/{})",
                    self.server_namespace, self.server_name
                ),
            }),
            None => Err(Verdict::Rejected {
                reason: "NotAllowed",
                message: format!(
                    "DNSServer {}/{} takes zones and stub domains only from its own namespace; set its spec.tenantDomainSuffix to let other namespaces use names below <namespace>.<suffix>",
                    self.server_namespace, self.server_name
                ),
            }),
        }
    }
}

/// Whether `name` is `domain` or a name below it.
pub fn is_at_or_below(name: &str, domain: &str) -> bool {
    name == domain || name.ends_with(&format!(".{domain}"))
}

fn rejected(reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::Rejected {
        reason,
        message: message.into(),
    }
}

/// Zones of the selected `DNSZone`s (oldest first), sorted by apex.
///
/// A record whose `service` gives no address is left out; the zone is served without it and
/// its verdict is [`Verdict::Partial`].
pub fn zones(
    objects: &[Arc<DNSZone>],
    scope: &Scope,
    services: &ServiceIndex,
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<ZoneConfig> {
    let mut by_apex: BTreeMap<String, (ObjectKey, ZoneConfig)> = BTreeMap::new();
    for object in objects {
        let key = ObjectKey::of(object.as_ref());
        let verdict = zone(object, scope, services).and_then(|(zone, partial)| match by_apex.get(&zone.name) {
            Some((winner, _)) => Err(rejected(
                "Conflict",
                format!(
                    "zone {} is already served from {winner}, which is older; remove one of them",
                    zone.name
                ),
            )),
            None => Ok((zone, partial)),
        });
        match verdict {
            Ok((zone, partial)) => {
                verdicts.insert(key.clone(), partial);
                by_apex.insert(zone.name.clone(), (key, zone));
            }
            Err(v) => {
                verdicts.insert(key, v);
            }
        }
    }
    by_apex.into_values().map(|(_, zone)| zone).collect()
}

/// Translates one zone; the verdict is `Accepted`, or `Partial` when Service references
/// left record sets out.
fn zone(
    object: &DNSZone,
    scope: &Scope,
    services: &ServiceIndex,
) -> Result<(ZoneConfig, Verdict), Verdict> {
    let namespace = object.namespace().unwrap_or_default();
    let apex = names::normalize_domain(object.spec.zone.as_str())
        .map_err(|r| rejected("InvalidSpec", format!("spec.zone: {r}")))?;
    scope.allows(&namespace, &apex)?;
    let trusted = namespace == scope.server_namespace;
    let mut problems = Vec::new();
    let mut sets: BTreeMap<(String, RecordKind), RecordConfig> = BTreeMap::new();
    for (i, record) in object.spec.records.iter().enumerate() {
        let values: Vec<String> = match &record.service {
            None => record.values.iter().map(|v| v.0.clone()).collect(),
            Some(reference) => {
                let ipv4 = record.record_type == RecordType::A;
                match services::record_addresses(reference, &namespace, trusted, ipv4, services) {
                    Ok(addresses) => addresses.iter().map(|ip| ip.to_string()).collect(),
                    Err(p) => {
                        problems.push((format!("spec.records[{i}] ({})", record.name), p));
                        continue;
                    }
                }
            }
        };
        let owner = if record.name == "@" {
            apex.clone()
        } else {
            format!(
                "{}.{apex}",
                record.name.trim_end_matches('.').to_ascii_lowercase()
            )
        };
        let kind = record_kind(record.record_type);
        let ttl = record.ttl_seconds.unwrap_or(object.spec.ttl_seconds);
        let set = sets
            .entry((owner.clone(), kind))
            .or_insert_with(|| RecordConfig {
                name: owner,
                record_type: kind,
                ttl_seconds: ttl,
                values: Vec::new(),
            });
        for value in values.iter().map(|v| absolute_value(kind, v, &apex)) {
            // A Service's address may also be written out by hand; serve it once.
            if !set.values.contains(&value) {
                set.values.push(value);
            }
        }
    }
    let zone = ZoneConfig {
        name: apex,
        source: format!("{namespace}/{}", object.name_any()),
        ttl_seconds: object.spec.ttl_seconds,
        records: sets.into_values().collect(),
        allow_transfer: object
            .spec
            .allow_transfer
            .iter()
            .map(|client| client.0.trim().to_ascii_lowercase())
            .collect(),
    };
    zone.validate("spec")
        .map_err(|e| rejected("InvalidRecord", e.to_string()))?;
    Ok((zone, Verdict::partial(&problems)))
}

fn record_kind(t: RecordType) -> RecordKind {
    match t {
        RecordType::A => RecordKind::A,
        RecordType::AAAA => RecordKind::AAAA,
        RecordType::CNAME => RecordKind::CNAME,
        RecordType::MX => RecordKind::MX,
        RecordType::NS => RecordKind::NS,
        RecordType::PTR => RecordKind::PTR,
        RecordType::SRV => RecordKind::SRV,
        RecordType::TXT => RecordKind::TXT,
        RecordType::CAA => RecordKind::CAA,
    }
}

/// Makes the name inside a value absolute, as a zone file does with its origin: `www` in zone
/// `example.internal` is `www.example.internal.`, `@` is the apex.
fn absolute_value(kind: RecordKind, value: &str, apex: &str) -> String {
    let absolute = |name: &str| {
        if name == "@" {
            format!("{apex}.")
        } else if name.ends_with('.') {
            name.to_ascii_lowercase()
        } else {
            format!("{}.{apex}.", name.to_ascii_lowercase())
        }
    };
    match kind {
        RecordKind::CNAME | RecordKind::NS | RecordKind::PTR => absolute(value.trim()),
        RecordKind::MX | RecordKind::SRV => {
            let mut fields: Vec<String> = value.split_whitespace().map(str::to_string).collect();
            if let Some(last) = fields.last_mut() {
                *last = absolute(last);
            }
            fields.join(" ")
        }
        RecordKind::A | RecordKind::AAAA | RecordKind::TXT | RecordKind::CAA => value.to_string(),
    }
}

/// Forwarders of the selected `StubDomain`s (oldest first), sorted by domain.
///
/// A `serviceRefs` entry that gives no address is left out; the stub domain is served with
/// its other servers (verdict [`Verdict::Partial`]), or rejected when none is left.
pub fn stubs(
    objects: &[Arc<StubDomain>],
    scope: &Scope,
    services: &ServiceIndex,
    zone_apexes: &[String],
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<ForwardConfig> {
    let mut by_domain: BTreeMap<String, (ObjectKey, ForwardConfig)> = BTreeMap::new();
    for object in objects {
        let key = ObjectKey::of(object.as_ref());
        let verdict = stub(object, scope, services).and_then(|(fwd, partial)| {
            if zone_apexes.contains(&fwd.domain) {
                Err(rejected("ConflictsWithZone", format!("{} is a zone this server serves itself (a DNSZone); a StubDomain cannot forward it", fwd.domain)))
            } else if let Some((winner, _)) = by_domain.get(&fwd.domain) {
                Err(rejected("Conflict", format!("{} is already forwarded by {winner}, which is older; remove one of them", fwd.domain)))
            } else {
                Ok((fwd, partial))
            }
        });
        match verdict {
            Ok((fwd, partial)) => {
                verdicts.insert(key.clone(), partial);
                by_domain.insert(fwd.domain.clone(), (key, fwd));
            }
            Err(v) => {
                verdicts.insert(key, v);
            }
        }
    }
    by_domain.into_values().map(|(_, fwd)| fwd).collect()
}

/// Translates one stub domain; the verdict is `Accepted`, or `Partial` when some
/// `serviceRefs` gave no server.
fn stub(
    object: &StubDomain,
    scope: &Scope,
    services: &ServiceIndex,
) -> Result<(ForwardConfig, Verdict), Verdict> {
    let namespace = object.namespace().unwrap_or_default();
    let domain = names::normalize_domain(object.spec.domain.as_str())
        .map_err(|r| rejected("InvalidSpec", format!("spec.domain: {r}")))?;
    scope.allows(&namespace, &domain)?;
    let mut servers = Vec::new();
    for (i, server) in object.spec.servers.iter().enumerate() {
        let addr = server
            .socket_addr()
            .map_err(|r| rejected("InvalidSpec", format!("spec.servers[{i}]: {r}")))?;
        scope.allows_forwarder(&namespace, &addr, &format!("spec.servers[{i}]"))?;
        servers.push(addr.to_string());
    }
    let trusted = namespace == scope.server_namespace;
    let mut problems = Vec::new();
    for (i, reference) in object.spec.service_refs.iter().enumerate() {
        match services::upstream_addresses(reference, &namespace, trusted, services) {
            Ok(addresses) => {
                for addr in &addresses {
                    scope.allows_forwarder(&namespace, addr, &format!("spec.serviceRefs[{i}]"))?;
                }
                for addr in addresses.iter().map(|a| a.to_string()) {
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
            }
            Err(p) => problems.push((format!("spec.serviceRefs[{i}]"), p)),
        }
    }
    if servers.is_empty() {
        // Nothing to forward to: reject rather than publish a forwarder with no servers.
        // `problems` is not empty here, as the CRD asks for at least one server or reference.
        return Err(match Verdict::partial(&problems) {
            Verdict::Partial { reason, message } => Verdict::Rejected {
                reason,
                message: format!("{message}; no server is left to forward to"),
            },
            _ => rejected(
                "InvalidSpec",
                "spec: give at least one server or serviceRef",
            ),
        });
    }
    let fwd = ForwardConfig {
        servers_from_resolv_conf: false,
        domain,
        source: format!("{namespace}/{}", object.name_any()),
        servers,
        policy: forward_policy(object.spec.policy),
        force_tcp: object.spec.transport == ForwardTransport::Tcp,
        prefer_udp: object.spec.transport == ForwardTransport::PreferUdp,
        max_concurrent: object.spec.max_concurrent,
    };
    fwd.validate("spec")
        .map_err(|e| rejected("InvalidSpec", e.to_string()))?;
    Ok((fwd, Verdict::partial(&problems)))
}

/// Rewrites of the selected `RewriteRule`s: objects oldest first, rules in their order.
///
/// A rule from another namespace than the server's (a tenant's, `client_namespace` set) must
/// pass [`Scope::allows_rewrite`]. A rule with the same match kind and `from` as an accepted
/// rule of an older object, for clients both can apply to, is a conflict: the older object
/// wins. An object is served whole or not at all.
pub fn rewrites(
    objects: &[Arc<RewriteRule>],
    scope: &Scope,
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<RewriteConfig> {
    let mut accepted: Vec<(ObjectKey, RewriteConfig)> = Vec::new();
    for object in objects {
        let key = ObjectKey::of(object.as_ref());
        let namespace = object.namespace().unwrap_or_default();
        let client_namespace = (namespace != scope.server_namespace).then(|| namespace.clone());
        let mut rules: Vec<RewriteConfig> = Vec::new();
        let mut verdict = Verdict::Accepted;
        for (i, rule) in object.spec.rules.iter().enumerate() {
            let name = |s: &str| {
                if rule.match_kind == MatchKind::Regex {
                    s.to_string()
                } else {
                    s.trim_end_matches('.').to_ascii_lowercase()
                }
            };
            let config = RewriteConfig {
                source: format!("{namespace}/{}", object.name_any()),
                match_kind: match rule.match_kind {
                    MatchKind::Exact => rewrite::MatchKind::Exact,
                    MatchKind::Prefix => rewrite::MatchKind::Prefix,
                    MatchKind::Suffix => rewrite::MatchKind::Suffix,
                    MatchKind::Regex => rewrite::MatchKind::Regex,
                },
                from: name(&rule.from),
                to: name(&rule.to),
                rewrite_answers: rule.rewrite_answers,
                ttl_seconds: rule.ttl_seconds,
                client_namespace: client_namespace.clone(),
            };
            let at = format!("spec.rules[{i}]");
            if let Err(e) = config.validate(&at) {
                verdict = rejected("InvalidRule", e.to_string());
                break;
            }
            if let Err(v) = scope.allows_rewrite(&config, &at) {
                verdict = v;
                break;
            }
            if let Some(j) = rules.iter().position(|r| same_match(r, &config)) {
                verdict = rejected(
                    "InvalidRule",
                    format!(
                        "{at} has the same match and from as spec.rules[{j}], which comes first, so it never applies; remove one of them"
                    ),
                );
                break;
            }
            if let Some((winner, _)) = accepted.iter().find(|(_, r)| same_match(r, &config)) {
                verdict = rejected(
                    "Conflict",
                    format!(
                        "{at} ({:?} {}) is already rewritten by {winner}, which is older; remove one of them",
                        config.match_kind, config.from
                    ),
                );
                break;
            }
            if let Some(cycle) = loop_through(
                &config,
                accepted
                    .iter()
                    .map(|(k, r)| (k, r))
                    .chain(rules.iter().map(|r| (&key, r))),
            ) {
                verdict = rejected(
                    "RewriteLoop",
                    format!(
                        "{at} rewrites {} to {}, which leads back through {cycle}: a loop",
                        config.from, config.to
                    ),
                );
                break;
            }
            rules.push(config);
        }
        if verdict == Verdict::Accepted {
            accepted.extend(rules.into_iter().map(|r| (key.clone(), r)));
        }
        verdicts.insert(key, verdict);
    }
    accepted.into_iter().map(|(_, r)| r).collect()
}

/// Whether two rewrites match the same names for some client: the same match kind and
/// `from`, and client scopes that overlap (every client overlaps every namespace).
fn same_match(a: &RewriteConfig, b: &RewriteConfig) -> bool {
    a.match_kind == b.match_kind && a.from == b.from && scopes_overlap(a, b)
}

/// Whether some client gets both rewrites.
fn scopes_overlap(a: &RewriteConfig, b: &RewriteConfig) -> bool {
    match (&a.client_namespace, &b.client_namespace) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

impl Scope {
    /// Whether a rewrite may be served: rules of the server's namespace always; a tenant's
    /// rule (`client_namespace` set) only if it points names at Services of its own namespace
    /// and does not match names in the cluster domain. Without this a tenant could send its
    /// own Pods to another namespace's Service under a trusted name, or hide cluster names
    /// from them behind names of its choosing. `at` is the rule's path, for messages.
    pub fn allows_rewrite(&self, rule: &RewriteConfig, at: &str) -> Result<(), Verdict> {
        let Some(namespace) = &rule.client_namespace else {
            return Ok(());
        };
        let services = format!("{namespace}.svc.{}", self.cluster_domain);
        let outside = |what: &str| {
            rejected(
                "OutsideNamespace",
                format!(
                    "{at}: rewrites from namespace {namespace} may only point at Services of that namespace, at or below {services}; {what}"
                ),
            )
        };
        match rule.match_kind {
            rewrite::MatchKind::Exact if !is_at_or_below(&rule.to, &services) => {
                return Err(outside(&format!("{} is not", rule.to)));
            }
            // A suffix rewrite replaces the end of the name as a string, so `to` without a
            // leading dot is glued to whatever came before `from` (`db` + `team-a.svc...`
            // gives another namespace `dbteam-a`); only names strictly below the namespace's
            // Services, or a leading dot, keep the result inside it.
            rewrite::MatchKind::Suffix => {
                let inside = match rule.to.strip_prefix('.') {
                    Some(rest) => is_at_or_below(rest, &services),
                    None => rule.to.ends_with(&format!(".{services}")),
                };
                if !inside {
                    return Err(outside(&format!(
                        "a suffix {} can produce names outside it (write .{services} or a name below it)",
                        rule.to
                    )));
                }
            }
            rewrite::MatchKind::Regex
                if !rule
                    .to
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{services}")) =>
            {
                return Err(outside(&format!(
                    "a regex replacement must end with .{services}, {} does not",
                    rule.to
                )));
            }
            rewrite::MatchKind::Prefix => {
                return Err(outside(
                    "a Prefix rewrite keeps the rest of the name, so its result cannot be limited to one namespace; use Exact, Suffix or Regex",
                ));
            }
            _ => {}
        }
        let shadows = match rule.match_kind {
            rewrite::MatchKind::Exact => is_at_or_below(&rule.from, &self.cluster_domain),
            rewrite::MatchKind::Suffix => self.suffix_matches_cluster_names(&rule.from),
            rewrite::MatchKind::Regex => self.regex_may_match_cluster_names(&rule.from),
            rewrite::MatchKind::Prefix => false,
        };
        if shadows {
            return Err(rejected(
                "ShadowsClusterName",
                format!(
                    "{at}: {} can match names in the cluster domain {}, which rewrites from namespace {namespace} may not change{}",
                    rule.from,
                    self.cluster_domain,
                    if rule.match_kind == rewrite::MatchKind::Regex {
                        " (a regex must end with a fixed name outside the cluster domain, e.g. (.+)\\.old\\.example)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Whether a name at or below the cluster domain ends with `suffix` (compared as
    /// strings, as a suffix rewrite does): `suffix` is the end of `.<cluster domain>` (e.g.
    /// `local`), or ends with `.<cluster domain>`.
    fn suffix_matches_cluster_names(&self, suffix: &str) -> bool {
        let dotted = format!(".{}", self.cluster_domain);
        dotted.ends_with(suffix) || suffix.ends_with(&dotted)
    }

    /// Whether the regular expression `from` may match a name at or below the cluster
    /// domain. Judged on the form the server matches ([`rewrite::anchored_regex`]), never on
    /// `from` alone: proven not to only when every match ends with one of finitely many
    /// fixed strings, none of which a cluster name can end with; anything less certain
    /// counts as a match.
    fn regex_may_match_cluster_names(&self, from: &str) -> bool {
        use regex_syntax::hir::Look;
        use regex_syntax::hir::literal::{ExtractKind, Extractor};
        let Ok(hir) = regex_syntax::parse(&rewrite::anchored_regex(from)) else {
            return true;
        };
        if !hir.properties().look_set_suffix().contains(Look::End) {
            return true;
        }
        let suffixes = Extractor::new().kind(ExtractKind::Suffix).extract(&hir);
        let Some(literals) = suffixes.literals() else {
            return true;
        };
        literals.iter().any(|literal| {
            std::str::from_utf8(literal.as_bytes())
                .map(|s| self.suffix_matches_cluster_names(&s.to_ascii_lowercase()))
                .unwrap_or(true)
        })
    }
}

/// Whether adding the exact rewrite `new` closes a loop among the exact rewrites in `earlier`
/// that can apply to the same clients; returns the objects whose rules lead back.
fn loop_through<'a>(
    new: &RewriteConfig,
    earlier: impl Iterator<Item = (&'a ObjectKey, &'a RewriteConfig)>,
) -> Option<String> {
    if new.match_kind != rewrite::MatchKind::Exact {
        return None;
    }
    let edges: Vec<(&ObjectKey, &RewriteConfig)> = earlier
        .filter(|(_, r)| r.match_kind == rewrite::MatchKind::Exact)
        .filter(|(_, r)| {
            r.client_namespace.is_none()
                || new.client_namespace.is_none()
                || r.client_namespace == new.client_namespace
        })
        .collect();
    let mut name = new.to.as_str();
    let mut path: Vec<String> = Vec::new();
    for _ in 0..=edges.len() {
        let (owner, next) = edges.iter().find(|(_, r)| r.from == name)?;
        let owner = owner.to_string();
        if !path.contains(&owner) {
            path.push(owner);
        }
        if next.to == new.from {
            return Some(path.join(", "));
        }
        name = next.to.as_str();
    }
    None
}

/// Policies of the selected `DNSPolicy`s, oldest first (a client gets the first policy of its
/// namespace whose pod selector matches it).
pub fn policies(
    objects: &[Arc<DNSPolicy>],
    scope: &Scope,
    services: &super::services::ServiceIndex,
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<PolicyConfig> {
    let mut out = Vec::new();
    for object in objects {
        let key = ObjectKey::of(object.as_ref());
        match policy(object, scope, services) {
            Ok(p) => {
                verdicts.insert(key, Verdict::Accepted);
                out.push(p);
            }
            Err(v) => {
                verdicts.insert(key, v);
            }
        }
    }
    out
}

/// Translates one policy. The server compares domain suffixes only, so namespaces and
/// Services become the cluster-domain names that hold their records.
fn policy(
    object: &DNSPolicy,
    scope: &Scope,
    services: &super::services::ServiceIndex,
) -> Result<PolicyConfig, Verdict> {
    let namespace = object.namespace().unwrap_or_default();
    let selector = label_selector(object.spec.pod_selector.clone().unwrap_or_default())
        .map_err(|why| rejected("InvalidSpec", format!("spec.podSelector: {why}")))?;
    let action = |a: PolicyAction| match a {
        PolicyAction::Allow => policy::PolicyAction::Allow,
        PolicyAction::Deny => policy::PolicyAction::Deny,
    };
    let mut rules = Vec::new();
    for (i, rule) in object.spec.rules.iter().enumerate() {
        let mut domains = Vec::new();
        for (j, d) in rule.domains.iter().enumerate() {
            domains.push(names::normalize_domain(d.as_str()).map_err(|r| {
                rejected("InvalidSpec", format!("spec.rules[{i}].domains[{j}]: {r}"))
            })?);
        }
        let cluster_domain = &scope.cluster_domain;
        for target in &rule.namespaces {
            let target = target.as_str().to_ascii_lowercase();
            domains.push(format!("{target}.svc.{cluster_domain}"));
            domains.push(format!("{target}.pod.{cluster_domain}"));
        }
        for (j, service) in rule.services.iter().enumerate() {
            let service_namespace = service
                .namespace
                .as_ref()
                .map_or(namespace.as_str(), |n| n.as_str())
                .to_ascii_lowercase();
            if let Some(name) = &service.name {
                domains.push(format!(
                    "{}.{service_namespace}.svc.{cluster_domain}",
                    name.as_str().to_ascii_lowercase()
                ));
            }
            if let Some(selector) = &service.selector {
                let selector = label_selector(selector.clone()).map_err(|why| {
                    rejected(
                        "InvalidSpec",
                        format!("spec.rules[{i}].services[{j}].selector: {why}"),
                    )
                })?;
                // Matching Services as of this snapshot; the controller re-renders when
                // one in this namespace changes.
                for (name, found) in services.in_namespace(&service_namespace) {
                    if selector.matches(&found.labels) {
                        domains.push(format!("{name}.{service_namespace}.svc.{cluster_domain}"));
                    }
                }
            }
        }
        // The same domain twice in one rule changes nothing; keep the first, in order.
        let mut seen = std::collections::BTreeSet::new();
        domains.retain(|d| seen.insert(d.clone()));
        // A selector that matches no Service today leaves its rule empty, not wrong.
        let selects = rule.services.iter().any(|s| s.selector.is_some());
        if domains.is_empty() && !selects {
            return Err(rejected(
                "InvalidSpec",
                format!("spec.rules[{i}] names no domains, namespaces or services"),
            ));
        }
        rules.push(PolicyRuleConfig {
            action: action(rule.action),
            domains,
        });
    }
    let config = PolicyConfig {
        source: format!("{namespace}/{}", object.name_any()),
        namespace,
        pod_selector: selector,
        rules,
        default_action: action(object.spec.default_action),
        audit: object.spec.audit,
        denied_response: match object.spec.denied_response {
            DeniedResponse::NxDomain => policy::DeniedResponse::Nxdomain,
            DeniedResponse::Refused => policy::DeniedResponse::Refused,
        },
    };
    config
        .validate("spec")
        .map_err(|e| rejected("InvalidSpec", e.to_string()))?;
    Ok(config)
}

/// A Kubernetes label selector in the config's form; the operator names what it cannot
/// carry over.
pub fn label_selector(
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<nameplane_config::LabelSelector, String> {
    use nameplane_config::{LabelOperator, LabelRequirement};
    let match_expressions = selector
        .match_expressions
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let operator = match e.operator.as_str() {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                other => return Err(format!("unknown operator {other:?} for key {:?}", e.key)),
            };
            Ok(LabelRequirement {
                key: e.key,
                operator,
                values: e.values.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let converted = nameplane_config::LabelSelector {
        match_labels: selector.match_labels.unwrap_or_default(),
        match_expressions,
    };
    converted.validate()?;
    Ok(converted)
}

/// A forward policy in the config's form.
pub fn forward_policy(policy: ForwardPolicy) -> forward::ForwardPolicy {
    match policy {
        ForwardPolicy::Random => forward::ForwardPolicy::Random,
        ForwardPolicy::RoundRobin => forward::ForwardPolicy::RoundRobin,
        ForwardPolicy::Sequential => forward::ForwardPolicy::Sequential,
    }
}
