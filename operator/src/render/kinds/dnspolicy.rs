//! `DNSPolicy` objects into the config's policies: namespaces and Services become the
//! cluster-domain names that hold their records, as the server compares domain suffixes only.

use super::dnsserver::Scope;
use super::{label_selector, rejected};
use crate::api::dnspolicy::{DNSPolicy, DeniedResponse, PolicyAction};
use crate::render::services::ServiceIndex;
use crate::render::{ObjectKey, Verdict};
use kube::ResourceExt;
use nameplane_config::names;
use nameplane_config::policy::{self, PolicyConfig, PolicyRuleConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Policies of the selected `DNSPolicy`s, oldest first (a client gets the first policy of its
/// namespace whose pod selector matches it).
pub fn policies(
    objects: &[Arc<DNSPolicy>],
    scope: &Scope,
    services: &ServiceIndex,
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
    services: &ServiceIndex,
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
