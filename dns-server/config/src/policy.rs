//! Per-namespace resolution policy: which names the Pods of one namespace may resolve. A
//! policy only ever matches clients in its own namespace.

use crate::{ConfigError, names};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One namespace's policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfig {
    /// `namespace/name` of the object this came from (logs and metrics).
    pub source: String,
    /// The namespace whose Pods this policy applies to (always the object's own namespace).
    pub namespace: String,
    /// Labels a client Pod must carry for the policy to apply; empty means every Pod.
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
    /// Rules in order; the first whose domains cover the name decides.
    pub rules: Vec<PolicyRuleConfig>,
    /// Decision when no rule covers the name.
    pub default_action: PolicyAction,
    /// How a denied query is answered.
    pub denied_response: DeniedResponse,
}

/// One rule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyRuleConfig {
    /// Allow or deny.
    pub action: PolicyAction,
    /// Domains (each with its subdomains), lower case without a trailing dot.
    pub domains: Vec<String>,
}

/// A decision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PolicyAction {
    /// Resolve.
    Allow,
    /// Refuse.
    Deny,
}

/// How a denied query is answered.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DeniedResponse {
    /// NXDOMAIN.
    Nxdomain,
    /// REFUSED.
    Refused,
}

impl PolicyConfig {
    /// Checks the namespace and every domain; `at` is the JSON path of this entry.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.namespace.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.namespace"),
                "must not be empty".into(),
            ));
        }
        if self.rules.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.rules"),
                "at least one rule is needed".into(),
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, domain) in rule.domains.iter().enumerate() {
                let normal = names::normalize_domain(domain).map_err(|r| {
                    ConfigError::invalid(format!("{at}.rules[{i}].domains[{j}]"), r)
                })?;
                if &normal != domain {
                    return Err(ConfigError::invalid(
                        format!("{at}.rules[{i}].domains[{j}]"),
                        format!("{domain:?} is not in normal form"),
                    ));
                }
            }
        }
        Ok(())
    }
}
