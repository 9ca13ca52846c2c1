//! The `dnsServer` part of the Helm chart's `values.schema.json`, derived from the DNSServer
//! CRD so the chart accepts exactly what the CRD does (a hand-kept copy drifted: it refused
//! `autopath`, `upstreamPolicy`, `cache.prefetch`, ...).
//!
//! `crdgen` writes it into `charts/nameplane/values.schema.json` next to the CRDs, and
//! `tests/crds_up_to_date.rs` fails when the committed file differs. The CRD's structural
//! schema becomes JSON Schema for Helm: Kubernetes extensions are dropped (CEL rules still
//! run when the API server admits the rendered DNSServer) except that a rule that is only
//! `self.matches('<regex>')` becomes a `pattern` (CEL and Helm's validator both use RE2), so
//! `helm install` already refuses a malformed domain; `nullable` becomes a `null` type,
//! int-or-string becomes `anyOf`, and every object without free-form content gets
//! `additionalProperties: false`, so a misspelt value fails `helm install` instead of
//! vanishing. The chart's own keys ([`CHART_KEYS`]) are added.

use serde_json::{Map, Value, json};

/// Keys of `dnsServer` that are the chart's, not the DNSServer spec's.
pub const CHART_KEYS: [&str; 4] = [
    "enabled",
    "name",
    "preventArgoCDPrune",
    "criticalPriorityQuota",
];

/// The JSON Schema of the chart's `dnsServer` values.
pub fn dns_server_values() -> Value {
    let crd = crate::crds::all()
        .into_iter()
        .find(|c| c.spec.names.kind == "DNSServer")
        .unwrap_or_else(|| panic!("the DNSServer CRD exists"));
    let schema = serde_json::to_value(&crd.spec.versions[0].schema)
        .unwrap_or_else(|e| panic!("CRD schema serialises: {e}"));
    let mut spec = to_json_schema(&schema["openAPIV3Schema"]["properties"]["spec"]);
    let properties = spec["properties"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("the DNSServer spec has properties"));
    properties.insert(
        "enabled".into(),
        json!({"type": "boolean", "description": "Create a DNSServer with the release."}),
    );
    properties.insert(
        "name".into(),
        json!({
            "type": "string",
            "pattern": "^([a-z0-9]([-a-z0-9]{0,57}[a-z0-9])?)?$",
            "description": "Name of the DNSServer; empty means the release's full name."
        }),
    );
    properties.insert(
        "preventArgoCDPrune".into(),
        json!({
            "type": "boolean",
            "description": "Annotate the DNSServer argocd.argoproj.io/sync-options: Prune=false, so Argo CD never prunes the cluster's DNS."
        }),
    );
    properties.insert(
        "criticalPriorityQuota".into(),
        json!({
            "type": "boolean",
            "description": "A ResourceQuota in the release namespace admitting system-cluster-critical Pods (for clusters that admit that class only under a quota)."
        }),
    );
    let object = spec
        .as_object_mut()
        .unwrap_or_else(|| panic!("the spec schema is an object"));
    object.remove("required");
    object.insert(
        "description".into(),
        "The default DNSServer: `enabled`, `name`, `preventArgoCDPrune` and `criticalPriorityQuota` are the chart's; every other key is a field of the DNSServer spec (see the CRD)."
            .into(),
    );
    spec
}

/// `values` (the parsed `values.schema.json`) with its `dnsServer` part regenerated.
pub fn with_dns_server_values(mut values: Value) -> Value {
    if let Some(properties) = values.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("dnsServer".into(), dns_server_values());
    }
    values
}

/// One structural-schema node as Helm's JSON Schema.
fn to_json_schema(node: &Value) -> Value {
    let Some(map) = node.as_object() else {
        return node.clone();
    };
    let mut out = Map::new();
    let free_form = map
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (key, value) in map {
        match key.as_str() {
            k if k.starts_with("x-kubernetes-") => {}
            "nullable" => {}
            "properties" => {
                let properties = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(name, schema)| (name.clone(), to_json_schema(schema)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(properties));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), to_json_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let parts = value
                    .as_array()
                    .map(|a| a.iter().map(to_json_schema).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(parts));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if !out.contains_key("pattern")
        && let Some(pattern) = matches_rule_pattern(map.get("x-kubernetes-validations"))
    {
        out.insert("pattern".into(), pattern.into());
    }
    if map
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.remove("type");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if out.get("type").and_then(Value::as_str) == Some("object")
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !free_form
    {
        out.insert("additionalProperties".into(), false.into());
    }
    if map.get("nullable").and_then(Value::as_bool) == Some(true)
        && let Some(Value::String(kind)) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([kind, "null"]));
    }
    Value::Object(out)
}

/// The regex of a CEL rule list that is exactly one `self.matches('<regex>')` without
/// escapes (so the CEL string literal is the regex itself).
fn matches_rule_pattern(rules: Option<&Value>) -> Option<String> {
    let [rule] = rules?.as_array()?.as_slice() else {
        return None;
    };
    let regex = rule
        .get("rule")?
        .as_str()?
        .trim()
        .strip_prefix("self.matches('")?
        .strip_suffix("')")?;
    (!regex.contains(['\\', '\''])).then(|| regex.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_schema_accepts_every_spec_field_and_refuses_unknown_ones() {
        let schema = dns_server_values();
        let properties = schema["properties"].as_object().expect("properties");
        for field in [
            "replicas",
            "clusterDomain",
            "upstreams",
            "upstreamPolicy",
            "autopath",
            "cache",
            "clients",
            "limits",
        ] {
            assert!(properties.contains_key(field), "{field} missing");
        }
        assert_eq!(schema["additionalProperties"], false);
        assert!(
            schema["properties"]["cache"]["properties"]
                .get("prefetch")
                .is_some(),
            "nested fields come along"
        );
        assert_eq!(
            schema["properties"]["cache"]["additionalProperties"], false,
            "nested objects are closed too"
        );
        assert_eq!(
            schema["properties"]["clusterDomain"]["pattern"],
            crate::api::DNS_NAME_REGEX,
            "a CEL regex rule becomes a pattern"
        );
        let text = schema.to_string();
        assert!(!text.contains("x-kubernetes"), "{text}");
        assert!(!text.contains("nullable"), "{text}");
    }

    #[test]
    fn extensions_become_json_schema() {
        let node = json!({
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": true},
                "maybe": {"type": "string", "nullable": true},
                "free": {"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": true}
            },
            "x-kubernetes-validations": [{"rule": "true"}]
        });
        assert_eq!(
            to_json_schema(&json!({"type": "string", "x-kubernetes-validations": [
                {"rule": "self.matches('^[a-z]+$')", "message": "letters"}
            ]})),
            json!({"type": "string", "pattern": "^[a-z]+$"})
        );
        assert_eq!(
            to_json_schema(&json!({"type": "string", "x-kubernetes-validations": [
                {"rule": "self.matches('^a$') || isIP(self)"}
            ]})),
            json!({"type": "string"}),
            "only a rule that is a single match becomes a pattern"
        );
        assert_eq!(
            to_json_schema(&node),
            json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "port": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "maybe": {"type": ["string", "null"]},
                    "free": {"type": "object", "properties": {}}
                }
            })
        );
    }
}
