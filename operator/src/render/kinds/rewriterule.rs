//! `RewriteRule` objects into the config's rewrites, with what a tenant's rule may do
//! ([`Scope::allows_rewrite`]), conflicts between objects (the oldest wins) and rewrite loops.

use super::dnsserver::Scope;
use super::{is_at_or_below, rejected};
use crate::api::rewriterule::{MatchKind, RewriteRule};
use crate::render::{ObjectKey, Verdict};
use kube::ResourceExt;
use nameplane_config::rewrite::{self, RewriteConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

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
