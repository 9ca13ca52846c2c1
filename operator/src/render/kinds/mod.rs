//! Per-kind translation of config objects into their parts of the [`ServerConfig`], with the
//! per-object checks, tenancy rules and conflict rules of [`super`]. One module per kind, as in
//! [`crate::api`]: `dnsserver` holds the `Scope` every object is checked against (the server's
//! namespace, cluster domain, tenant suffix and forwarder fence); `dnszone`, `stubdomain`,
//! `rewriterule` and `dnspolicy` translate their kind (`zones`, `stubs`, `rewrites`,
//! `policies`, called in that order by [`super::render`]). The helpers more than one kind uses
//! (name containment, label selectors, forward policies, the rejection verdict) live here and
//! import none of the kinds.
//!
//! [`ServerConfig`]: nameplane_config::ServerConfig

pub(crate) mod dnspolicy;
pub(crate) mod dnsserver;
pub(crate) mod dnszone;
pub(crate) mod rewriterule;
pub(crate) mod stubdomain;

use crate::api::stubdomain::ForwardPolicy;
use crate::render::Verdict;
use nameplane_config::forward;

/// Whether `name` is `domain` or a name below it.
pub fn is_at_or_below(name: &str, domain: &str) -> bool {
    name == domain || name.ends_with(&format!(".{domain}"))
}

/// The verdict for an object that is not served, with the condition's reason and message.
fn rejected(reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::Rejected {
        reason,
        message: message.into(),
    }
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
