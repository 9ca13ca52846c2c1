//! `RewriteRule`: rewrite the names clients ask for, and the names in answers back, like
//! CoreDNS's `rewrite name ... answer auto`.
//!
//! Rules from the `DNSServer`'s own namespace apply to every client. Rules from other
//! namespaces (tenants) apply only to that namespace's Pods, may only point names at Services
//! of that namespace, and may not rewrite names in the cluster domain (the renderer enforces
//! both and reports violations in the object's `Ready` condition).

use super::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rewrites query names before they are answered, e.g. `db.prod.example.com` to
/// `postgres.db.svc.cluster.local`, and rewrites answers back so clients see the name they
/// asked for. Two objects with a rule of the same `match` and `from` for the same clients
/// conflict: the older object wins and the other is not served.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "nameplane.io",
    version = "v1alpha1",
    kind = "RewriteRule",
    plural = "rewriterules",
    singular = "rewriterule",
    namespaced,
    status = "ObjectStatus",
    shortname = "rwr",
    category = "nameplane",
    doc = "Rewrites query names, and the names in answers back to what the client asked for. Rules from the DNSServer's namespace apply to every client; rules from other namespaces apply only to their own Pods, may only point names at Services of their namespace (at or below <namespace>.svc.<cluster domain>; Prefix is not allowed there), and may not rewrite names in the cluster domain.",
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
pub struct RewriteRuleSpec {
    /// Rewrites tried in order; the first that matches a query applies.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<NameRewrite>,
}

/// One name rewrite.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.from != self.to",
     "message": "a rewrite whose 'from' equals its 'to' does nothing"},
    {"rule": format!("self.match == 'Regex' || (self.from.matches('{re}') && self.to.matches('{re}'))", re = super::DNS_NAME_REGEX),
     "message": "for Exact, Prefix and Suffix matches, 'from' and 'to' must be DNS names (letters, digits, '-' and '.')"}
]))]
pub struct NameRewrite {
    /// How `from` is compared with the query name: the whole name (`Exact`), its start
    /// (`Prefix`), its end (`Suffix`), or a regular expression (`Regex`, where `to` may use
    /// `{1}`, `{2}`… for capture groups).
    #[serde(rename = "match")]
    pub match_kind: MatchKind,

    /// What to look for in the query name.
    #[schemars(length(min = 1, max = 253))]
    pub from: String,

    /// What to put in its place.
    #[schemars(length(min = 1, max = 253))]
    pub to: String,

    /// Rewrite the names in the answer back to the name the client asked for, so the answer
    /// matches its question (CoreDNS's `answer auto`).
    #[serde(default = "default_true")]
    pub rewrite_answers: bool,

    /// TTL, in seconds, of every record in a rewritten answer (0 to 3600). Left out, the
    /// answer keeps its own TTLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3600))]
    pub ttl_seconds: Option<u32>,
}

/// How a rewrite's `from` matches.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// The query name equals `from`.
    Exact,
    /// The query name starts with `from`.
    Prefix,
    /// The query name ends with `from`.
    Suffix,
    /// The query name matches the regular expression `from`.
    Regex,
}

fn default_true() -> bool {
    true
}
