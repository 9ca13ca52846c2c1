//! `DNSPolicy`: which names the Pods of one namespace may resolve. A policy only ever applies
//! to clients in its own namespace, so one tenant's policy cannot change another's answers.

use super::{DomainName, ObjectStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Allows or denies name resolution for the Pods of this namespace, by domain.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "nameplane.io",
    version = "v1alpha1",
    kind = "DNSPolicy",
    plural = "dnspolicies",
    singular = "dnspolicy",
    namespaced,
    status = "ObjectStatus",
    shortname = "dnsp",
    category = "nameplane",
    doc = "Allows or denies name resolution, by domain, for the Pods of its namespace.",
    printcolumn(name = "Default", type_ = "string", json_path = ".spec.defaultAction"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DNSPolicySpec {
    /// The Pods of this namespace the policy applies to. Leave out for every Pod of the
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// Rules tried in order; the first whose domains cover the query name decides.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<PolicyRule>,

    /// What happens to a query no rule covers.
    #[serde(default)]
    pub default_action: PolicyAction,

    /// How a denied query is answered.
    #[serde(default)]
    pub denied_response: DeniedResponse,
}

/// One policy rule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Whether matching queries are answered (`Allow`) or refused (`Deny`).
    pub action: PolicyAction,

    /// Domains this rule covers, each with all its subdomains, e.g. `example.com` or
    /// `svc.cluster.local`.
    #[schemars(length(min = 1, max = 32))]
    pub domains: Vec<DomainName>,
}

/// A policy decision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyAction {
    /// Resolve the name.
    #[default]
    Allow,
    /// Do not resolve the name.
    Deny,
}

/// How a denied query is answered.
#[allow(clippy::upper_case_acronyms)]
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeniedResponse {
    /// As if the name did not exist.
    #[default]
    NXDOMAIN,
    /// With the REFUSED response code.
    REFUSED,
}
