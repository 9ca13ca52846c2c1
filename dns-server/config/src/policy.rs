//! Per-namespace resolution policy: which names the Pods of one namespace may resolve. A
//! policy only ever matches clients in its own namespace.
//!
//! How the policies that select one client combine (like NetworkPolicy, with explicit
//! denials on top): each selecting policy gives its first rule covering the name, or its
//! default. Any rule that denies wins; otherwise any rule that allows allows; otherwise the
//! name is allowed only if every selecting policy's default allows it. A client no policy
//! selects is not restricted. The name checked is the question after rewriting, and every
//! owner and target name in the answer section (CNAME, SRV, PTR, MX, NS targets), so an
//! allowed name cannot lead to a denied one.

use crate::LabelSelector;
use crate::{ConfigError, names};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One namespace's policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyConfig {
    /// `namespace/name` of the object this came from (logs and metrics).
    pub source: String,
    /// The namespace whose Pods this policy applies to (always the object's own namespace).
    pub namespace: String,
    /// Which Pods of the namespace the policy applies to; empty means every Pod.
    #[serde(default, skip_serializing_if = "LabelSelector::is_empty")]
    pub pod_selector: LabelSelector,
    /// Rules in order; the first whose domains cover the name decides.
    pub rules: Vec<PolicyRuleConfig>,
    /// Decision when no rule covers the name.
    pub default_action: PolicyAction,
    /// How a denied query is answered.
    pub denied_response: DeniedResponse,
    /// Log every query this policy denies (target `nameplane_dns::audit`).
    #[serde(default)]
    pub audit: bool,
}

/// The default of [`crate::ServerConfig::unidentified_clients`]: fail closed.
pub fn unidentified_default() -> PolicyAction {
    PolicyAction::Deny
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
        self.pod_selector
            .validate()
            .map_err(|r| ConfigError::invalid(format!("{at}.podSelector"), r))?;
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
