//! Per-namespace resolution policy: which names the Pods of one namespace may resolve. A
//! policy only ever matches clients in its own namespace.
//!
//! How the policies that select one client combine (like NetworkPolicy, with explicit
//! denials on top): each selecting policy gives its first rule covering the name, or its
//! default. Any rule that denies wins; otherwise any rule that allows allows; otherwise the
//! name is allowed only if every selecting policy's default allows it. A Pod no policy
//! selects is not restricted; a client that is not one identified Pod gets what
//! [`ClientsConfig`] (the platform's choice) says, whatever the policies say. The name checked is the question after rewriting, and every
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

/// What the clients get that no policy can speak for: those the server cannot tie to
/// exactly one Pod. Decided by the platform (the `DNSServer`) alone: a policy only ever
/// restricts identified Pods of its own namespace, so no tenant can change what a node, a
/// host-network Pod or a client behind SNAT gets.
///
/// Who is who, in this order: a source address that is exactly one Pod's (and not a
/// host-network Pod's) is that Pod, restricted by its namespace's policies or not at all;
/// else an address of the node class ([`ClientsConfig::nodes`]) gets the node action; else
/// the client is unidentified and gets [`ClientsConfig::unidentified`].
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientsConfig {
    /// What an unidentified client gets, whether or not any policy exists: `allow` (the
    /// default) lets it resolve everything; `deny` refuses it (REFUSED).
    #[serde(default = "unidentified_default")]
    pub unidentified: PolicyAction,
    /// The node client class; none when left out (node addresses are unidentified clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeClientsConfig>,
}

/// The default of [`ClientsConfig::unidentified`]: allow. Unidentified clients include the
/// nodes and host-network Pods, which cluster DNS must keep serving unless the platform
/// decides otherwise.
pub fn unidentified_default() -> PolicyAction {
    PolicyAction::Allow
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self {
            unidentified: unidentified_default(),
            nodes: None,
        }
    }
}

/// The node client class: addresses of the cluster's Nodes, decided by one action.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeClientsConfig {
    /// What a node address gets.
    pub action: PolicyAction,
    /// Node addresses as IP addresses or CIDR prefixes (`192.0.2.0/24`, `2001:db8::/64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
    /// Every IP address in the Node objects' `status.addresses` (InternalIP and
    /// ExternalIP) too, followed through a watch of the Nodes.
    #[serde(default)]
    pub from_nodes: bool,
}

impl ClientsConfig {
    /// Checks the node class; `at` is the JSON path of this entry.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let Some(nodes) = &self.nodes else {
            return Ok(());
        };
        if nodes.cidrs.is_empty() && !nodes.from_nodes {
            return Err(ConfigError::invalid(
                format!("{at}.nodes"),
                "neither cidrs nor fromNodes: the class would have no address".into(),
            ));
        }
        for (i, cidr) in nodes.cidrs.iter().enumerate() {
            crate::zone::parse_prefix(cidr)
                .map_err(|r| ConfigError::invalid(format!("{at}.nodes.cidrs[{i}]"), r))?;
        }
        Ok(())
    }
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
