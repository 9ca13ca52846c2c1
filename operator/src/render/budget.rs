//! Budgets: what one tenant can make a server config cost everyone.
//!
//! One config carries every namespace's objects, so without limits one namespace could make
//! it too large to publish (a ConfigMap holds at most 1 MiB; past that every update fails
//! and *no* change reaches the servers, for anyone), or fill it with zones, rewrites and
//! forwarder slots that every replica pays for. Two budgets, both from the DNSServer's
//! `spec.limits`, both applied oldest-first so that the newest object is the one that
//! loses (it is the one whose author just changed something):
//!
//! - [`admit`]: per-namespace counts (zones, records, stub domains, forwarders'
//!   `maxConcurrent`, rewrite rules, policies), checked before any other rule, so an object
//!   over its namespace's budget neither serves nor wins a conflict;
//! - [`fit_bytes`]: the size of the whole rendered config; the newest objects from other
//!   namespaces are left out until it fits.
//!
//! The DNSServer's own namespace is the platform's: it is never limited per namespace, and
//! its objects are never left out for size (if they alone do not fit, nothing new is
//! published and the DNSServer says why).

use super::{ObjectKey, RenderError, Verdict};
use crate::api::dnspolicy::DNSPolicy;
use crate::api::dnsserver::NamespaceLimits;
use crate::api::dnszone::DNSZone;
use crate::api::rewriterule::RewriteRule;
use crate::api::stubdomain::StubDomain;
use kube::ResourceExt;
use nameplane_config::ServerConfig;
use nameplane_config::forward::DEFAULT_MAX_CONCURRENT;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What an object adds to its namespace's use of one budget.
pub trait Cost {
    /// `(field of NamespaceLimits, what this object adds)` for each budget it uses.
    fn costs(&self) -> Vec<(Field, u64)>;
}

/// One per-namespace limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// `zones`.
    Zones,
    /// `records`.
    Records,
    /// `stubDomains`.
    StubDomains,
    /// `maxConcurrent`.
    MaxConcurrent,
    /// `rewriteRules`.
    RewriteRules,
    /// `policies`.
    Policies,
}

impl Field {
    fn limit(self, limits: &NamespaceLimits) -> u64 {
        u64::from(match self {
            Field::Zones => limits.zones,
            Field::Records => limits.records,
            Field::StubDomains => limits.stub_domains,
            Field::MaxConcurrent => limits.max_concurrent,
            Field::RewriteRules => limits.rewrite_rules,
            Field::Policies => limits.policies,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Zones => "zones",
            Field::Records => "records",
            Field::StubDomains => "stubDomains",
            Field::MaxConcurrent => "maxConcurrent",
            Field::RewriteRules => "rewriteRules",
            Field::Policies => "policies",
        }
    }
}

impl Cost for DNSZone {
    fn costs(&self) -> Vec<(Field, u64)> {
        vec![
            (Field::Zones, 1),
            (Field::Records, self.spec.records.len() as u64),
        ]
    }
}

impl Cost for StubDomain {
    fn costs(&self) -> Vec<(Field, u64)> {
        vec![
            (Field::StubDomains, 1),
            (
                Field::MaxConcurrent,
                u64::from(self.spec.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT)),
            ),
        ]
    }
}

impl Cost for RewriteRule {
    fn costs(&self) -> Vec<(Field, u64)> {
        vec![(Field::RewriteRules, self.spec.rules.len() as u64)]
    }
}

impl Cost for DNSPolicy {
    fn costs(&self) -> Vec<(Field, u64)> {
        vec![(Field::Policies, 1)]
    }
}

/// Who sets the budgets, for messages.
pub struct Budgets<'a> {
    /// The DNSServer's namespace (never limited).
    pub server_namespace: &'a str,
    /// `namespace/name` of the DNSServer.
    pub server: &'a str,
    /// `spec.limits.perNamespace`.
    pub limits: &'a NamespaceLimits,
}

/// The objects of `objects` (oldest first) that fit their namespace's budgets; the others
/// get an `OverBudget` verdict. An object that does not fit uses nothing, so a later, smaller
/// one may still fit. An object that fits counts even if a later rule rejects it (invalid, a
/// conflict, a denied forwarder): a namespace's budget is what it writes, as a ResourceQuota
/// counts objects, which keeps the rule simple to predict.
pub fn admit<K: Cost + ResourceExt + kube::Resource<DynamicType = ()>>(
    budgets: &Budgets<'_>,
    objects: Vec<Arc<K>>,
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Vec<Arc<K>> {
    let mut used: BTreeMap<(String, Field), u64> = BTreeMap::new();
    let mut admitted = Vec::with_capacity(objects.len());
    for object in objects {
        let namespace = object.namespace().unwrap_or_default();
        if namespace == budgets.server_namespace {
            admitted.push(object);
            continue;
        }
        let costs = object.costs();
        let over = costs.iter().find_map(|&(field, cost)| {
            let total = used.get(&(namespace.clone(), field)).copied().unwrap_or(0) + cost;
            let limit = field.limit(budgets.limits);
            (total > limit).then_some((field, total, limit))
        });
        match over {
            Some((field, total, limit)) => {
                verdicts.insert(
                    ObjectKey::of(object.as_ref()),
                    Verdict::Rejected {
                        reason: "OverBudget",
                        message: format!(
                            "with this object namespace {namespace} would use {total} {what}, over the {limit} that DNSServer {} allows each namespace (spec.limits.perNamespace.{what}); it is the newest, so it is left out",
                            budgets.server,
                            what = field.name()
                        ),
                    },
                );
            }
            None => {
                for (field, cost) in costs {
                    *used.entry((namespace.clone(), field)).or_default() += cost;
                }
                admitted.push(object);
            }
        }
    }
    admitted
}

/// Makes `config` fit in `budget` bytes as published ([`ServerConfig::to_json`]) by leaving
/// out objects from other namespaces (`newest_first`: those objects, newest first), each with
/// an `OverBudget` verdict. Like [`admit`], objects are added oldest first and the one whose
/// size would cross the budget is left out (a later, smaller one may still fit), so the
/// object that loses is the one that broke the budget, not merely the newest. Fails when the
/// config does not fit even without any of them.
pub fn fit_bytes(
    config: &mut ServerConfig,
    budget: usize,
    server: &str,
    newest_first: &[ObjectKey],
    verdicts: &mut BTreeMap<ObjectKey, Verdict>,
) -> Result<(), RenderError> {
    let over = config.to_json().len();
    if over <= budget {
        return Ok(());
    }
    let left_out = |key: &ObjectKey, verdicts: &mut BTreeMap<ObjectKey, Verdict>| {
        verdicts.insert(
            key.clone(),
            Verdict::Rejected {
                reason: "OverBudget",
                message: format!(
                    "the server config of DNSServer {server} would be {over} bytes, over its budget of {budget} (spec.limits.configBytes); objects from other namespaces are added oldest first and this one did not fit"
                ),
            },
        );
    };
    // What each object takes, and what the config takes without them all.
    let sizes: Vec<(&ObjectKey, usize)> = newest_first
        .iter()
        .rev()
        .map(|key| (key, parts_size(config, key)))
        .collect();
    let mut used = over.saturating_sub(sizes.iter().map(|(_, size)| size).sum());
    let mut kept = Vec::new();
    for (key, size) in sizes {
        if size == 0 {
            // Rejected for another reason already: nothing of it is in the config.
            continue;
        }
        if used + size > budget {
            remove_parts(config, key);
            left_out(key, verdicts);
        } else {
            used += size;
            kept.push(key);
        }
    }
    // The sizes are estimates (indentation, separators); the exact size decides. Should it
    // still be over, the newest objects kept go too.
    while config.to_json().len() > budget {
        let Some(key) = kept.pop() else {
            return Err(RenderError::OverBudget {
                bytes: config.to_json().len(),
                budget,
            });
        };
        remove_parts(config, key);
        left_out(key, verdicts);
    }
    Ok(())
}

/// About how many bytes of the published JSON the parts from `key` take: each part as pretty
/// JSON, indented 4 more in the document, plus ",\n" between array elements.
fn parts_size(config: &ServerConfig, key: &ObjectKey) -> usize {
    fn size<T: serde::Serialize>(
        parts: &[T],
        source_of: impl Fn(&T) -> &str,
        source: &str,
    ) -> usize {
        parts
            .iter()
            .filter(|part| source_of(part) == source)
            .map(|part| {
                let text = serde_json::to_string_pretty(part).unwrap_or_default();
                text.len() + 4 * text.lines().count() + 2
            })
            .sum()
    }
    let source = format!("{}/{}", key.namespace, key.name);
    match key.kind {
        "DNSZone" => size(&config.zones, |z| &z.source, &source),
        "StubDomain" => size(&config.forward, |f| &f.source, &source),
        "RewriteRule" => size(&config.rewrites, |r| &r.source, &source),
        "DNSPolicy" => size(&config.policies, |p| &p.source, &source),
        _ => 0,
    }
}

/// Removes the parts that came from `key`.
fn remove_parts(config: &mut ServerConfig, key: &ObjectKey) {
    let source = format!("{}/{}", key.namespace, key.name);
    match key.kind {
        "DNSZone" => config.zones.retain(|z| z.source != source),
        "StubDomain" => config.forward.retain(|f| f.source != source),
        "RewriteRule" => config.rewrites.retain(|r| r.source != source),
        "DNSPolicy" => config.policies.retain(|p| p.source != source),
        _ => {}
    }
}
