//! The Argo CD health check `config/argocd/health.lua`, run by a real Lua interpreter
//! (`lua5.4`, Debian package `lua5.4`; `make deps` installs it) against every case of
//! `config/argocd/health_test.yaml` (Argo CD's own test layout: `healthStatus` expected for
//! the object at `inputPath`). Argo CD runs the script with the object bound to the global
//! `obj` and reads the table it returns; so does this test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/argocd")
}

/// A Lua table constructor for a JSON value (strings in long-bracket-free quoted form).
fn lua_literal(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "nil".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        serde_json::Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health check on `object`; returns `(status, message)`.
fn health(object: &serde_json::Value) -> (String, String) {
    let script = argocd_dir().join("health.lua");
    let runner = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(object),
        script.display().to_string()
    );
    let out = Command::new("lua5.4")
        .args(["-e", &runner])
        .output()
        .expect("lua5.4 runs (apt-get install lua5.4, or `make deps`)");
    assert!(
        out.status.success(),
        "lua5.4 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

#[test]
fn every_case_of_health_test_yaml_has_its_health() {
    let cases: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(argocd_dir().join("health_test.yaml")).expect("health_test.yaml"),
    )
    .expect("health_test.yaml parses");
    let cases = cases["tests"].as_array().expect("tests");
    let mut kinds = std::collections::BTreeSet::new();
    let mut statuses = std::collections::BTreeSet::new();
    for case in cases {
        let input = case["inputPath"].as_str().expect("inputPath");
        let object: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(argocd_dir().join(input)).expect("input"),
        )
        .expect("input is JSON");
        let (status, message) = health(&object);
        assert_eq!(
            (status.as_str(), message.as_str()),
            (
                case["healthStatus"]["status"].as_str().expect("status"),
                case["healthStatus"]["message"].as_str().expect("message"),
            ),
            "{input}"
        );
        kinds.insert(object["kind"].as_str().expect("kind").to_string());
        statuses.insert(status);
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "DNSPolicy",
            "DNSServer",
            "DNSZone",
            "RewriteRule",
            "StubDomain"
        ],
        "every kind has cases"
    );
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["Degraded", "Healthy", "Progressing"]
    );
}

#[test]
fn a_quote_or_backslash_in_a_message_reaches_lua_intact() {
    let object = serde_json::json!({
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "conditions": [
            {"type": "Stalled", "status": "True", "reason": "InvalidSpec",
             "message": "spec.clusterDomain: \"a\\b\" is not a DNS name"}
        ]}
    });
    assert_eq!(
        health(&object),
        (
            "Degraded".into(),
            "InvalidSpec: spec.clusterDomain: \"a\\b\" is not a DNS name".into()
        )
    );
}
