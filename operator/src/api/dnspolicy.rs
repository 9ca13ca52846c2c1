//! `DNSPolicy`: which names the Pods of one namespace may resolve. A policy only ever applies
//! to clients in its own namespace, so one tenant's policy cannot change another's answers.
//!
//! Rules name what they cover as domains, namespaces (their Services and Pods) or single
//! Services; the renderer turns namespaces and Services into the cluster-domain suffixes the
//! server checks, because the server only compares domain suffixes.

use super::{DomainName, KubernetesName, ObjectStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Allows or denies name resolution for the Pods of this namespace, by domain, namespace or
/// Service.
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
    doc = "Allows or denies name resolution, by domain, namespace or Service, for the Pods of its namespace. All policies that select a Pod combine: a rule that denies wins, else a rule that allows allows, else the name resolves only if every selecting policy's defaultAction is Allow. A Pod no policy selects is not restricted.",
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

    /// Rules tried in order; the first that covers the query name decides for this policy.
    /// Empty (`[]`) with `defaultAction: Deny` blocks every name for the selected Pods.
    ///
    /// When several policies select one Pod (like NetworkPolicy, with explicit denials on
    /// top): a rule that denies the name in any of them wins; otherwise a rule that allows it
    /// in any of them allows it; otherwise the name resolves only if every selecting policy's
    /// `defaultAction` is `Allow`. Names in the answer (CNAME, SRV, MX, PTR, NS targets) are
    /// checked too, so an allowed name cannot lead to a denied one.
    #[schemars(length(max = 64))]
    pub rules: Vec<PolicyRule>,

    /// What happens to a query no rule covers. `Deny` by default: once a policy selects a
    /// Pod, only what some rule allows resolves (like NetworkPolicy).
    #[serde(default)]
    pub default_action: PolicyAction,

    /// How a denied query is answered.
    #[serde(default)]
    pub denied_response: DeniedResponse,

    /// Log every query this policy denies (the DNS server's audit log), e.g. to try a policy
    /// before relying on it.
    #[serde(default)]
    pub audit: bool,
}

/// One policy rule: the names it covers are the union of `domains`, `namespaces` and
/// `services`; at least one must be given.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.domains) && size(self.domains) > 0) || (has(self.namespaces) && size(self.namespaces) > 0) || (has(self.services) && size(self.services) > 0)",
    "message": "a rule must name at least one of domains, namespaces or services"
}]))]
pub struct PolicyRule {
    /// Whether matching queries are answered (`Allow`) or refused (`Deny`).
    pub action: PolicyAction,

    /// Domains this rule covers, each with all its subdomains, e.g. `example.com` or
    /// `svc.cluster.local`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub domains: Vec<DomainName>,

    /// Namespaces whose cluster names this rule covers: every Service
    /// (`*.<namespace>.svc.<cluster domain>`) and Pod record
    /// (`*.<namespace>.pod.<cluster domain>`) of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub namespaces: Vec<KubernetesName>,

    /// Services this rule covers, by name or by label: `<name>.<namespace>.svc.<cluster
    /// domain>` of each, with its subdomains (SRV names, headless Pod names). Services a
    /// selector matches are followed as they come, go and change labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub services: Vec<ServiceReference>,
}

/// Services of one namespace: one by name, or those whose labels match a selector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.name) != has(self.selector)",
    "message": "a services entry has either a name or a selector"
}]))]
pub struct ServiceReference {
    /// The Service's namespace. Left out: the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<KubernetesName>,

    /// The Service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<KubernetesName>,

    /// Every Service of the namespace whose labels match, e.g.
    /// `{matchLabels: {tier: shared}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A policy decision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyAction {
    /// Resolve the name.
    Allow,
    /// Do not resolve the name. The default wherever a decision may be left out: a policy or
    /// server that says nothing fails closed.
    #[default]
    Deny,
}

/// How a denied query is answered.
///
/// The upper-case spellings of before the rename (`NXDOMAIN`, `REFUSED`) are still read, so
/// a policy stored by an older CRD does not stop the operator's watch of every policy; the
/// CRD's enum admits only the new ones, so no new object is written with them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeniedResponse {
    /// As if the name did not exist (response code NXDOMAIN).
    #[default]
    #[serde(rename = "NXDomain", alias = "NXDOMAIN")]
    NxDomain,
    /// With the REFUSED response code.
    #[serde(alias = "REFUSED")]
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CamelCase values (docs/api-versioning.md); the old upper-case spellings are errors.
    #[test]
    fn denied_response_spellings() {
        for (text, response) in [
            ("NXDomain", DeniedResponse::NxDomain),
            ("Refused", DeniedResponse::Refused),
        ] {
            let json = serde_json::json!(text);
            assert_eq!(
                serde_json::to_value(response).expect("a spelling the enum has"),
                json
            );
            assert_eq!(
                serde_json::from_value::<DeniedResponse>(json).expect("a spelling the enum has"),
                response
            );
        }
        // Stored before the rename: still read (as the new values), never written.
        for (old, response) in [
            ("NXDOMAIN", DeniedResponse::NxDomain),
            ("REFUSED", DeniedResponse::Refused),
        ] {
            assert_eq!(
                serde_json::from_value::<DeniedResponse>(serde_json::json!(old)).expect("read"),
                response
            );
        }
        let crd = serde_json::to_string(&crate::crds::all()).expect("json");
        assert!(
            !crd.contains("\"NXDOMAIN\"") && !crd.contains("\"REFUSED\""),
            "the CRD admits only the new spellings"
        );
    }
}
