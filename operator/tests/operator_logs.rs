//! The operator's log format (issue 13): with `--log-format json` (what the chart and
//! config/operator deployments pass) every line is one JSON object, fields at the top level,
//! including the error the process stops on. Pointed at an API server that does not exist
//! (127.0.0.1:1), the operator stops at once, which is all this needs.

use std::process::Command;

fn operator_output(format: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "nameplane-operator-logs-{format}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: none\n  user: {token: none}\ncontexts:\n- name: none\n  context: {cluster: none, user: none}\ncurrent-context: none\n",
    )
    .expect("kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_nameplane-operator"))
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .args(["--metrics-listen", "127.0.0.1:0", "--log-format", format])
        .env_remove("RUST_LOG")
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "no API server: it stops");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn json_logs_are_one_object_a_line() {
    let out = operator_output("json");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let stopped = lines
        .iter()
        .find(|line| line["message"] == "stopped")
        .unwrap_or_else(|| panic!("the stop is logged: {out}"));
    assert_eq!(stopped["level"], "ERROR");
    assert!(
        stopped["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot list DNSServers")),
        "{stopped}"
    );
    let text = operator_output("text");
    assert!(
        text.lines().any(|l| l.contains("stopped")) && !text.trim_start().starts_with('{'),
        "{text}"
    );
}
