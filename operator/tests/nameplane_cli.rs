//! The `nameplane import` command as a user runs it: files in, YAML on stdout, findings on
//! stderr, and the documented exit statuses (0 complete, 2 not carried over, 1 unreadable).

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn nameplane(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nameplane"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nameplane runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("nameplane exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn kubeadm_corefile_imports_completely_with_exit_0() {
    let out = nameplane(
        &[
            "import",
            "--corefile",
            "kubeadm-1.35/Corefile",
            "--namespace",
            "kube-system",
            "--name",
            "coredns",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("kind: DNSServer"), "{stdout}");
    assert!(
        stdout.contains("name: coredns\n  namespace: kube-system"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("kubeadm-1.35/Corefile:20: loop: note: built in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn k3s_configmap_without_its_custom_configmap_exits_2_and_names_the_imports() {
    let out = nameplane(
        &["import", "--coredns-configmap", "k3s-default/coredns.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "k3s-default/coredns.yaml:29: import /etc/coredns/custom/*.override: not carried over"
        ),
        "{stderr}"
    );
    let with_custom = nameplane(
        &[
            "import",
            "--coredns-configmap",
            "k3s-custom/coredns.yaml",
            "--custom-configmap",
            "k3s-custom/coredns-custom.yaml",
        ],
        None,
    );
    assert!(text(&with_custom.stdout).contains("domain: lab.example"));
}

#[test]
fn stdin_environment_and_errors() {
    let out = nameplane(
        &["import", "--corefile", "-"],
        Some(".:53 {\n  forward . {$NAMEPLANE_TEST_UPSTREAM}\n}\n"),
    );
    // Unset variable: replaced with nothing (as CoreDNS does), which is no upstream address.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("-:2: forward: \"\" is not an IP address"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let mut child = Command::new(env!("CARGO_BIN_EXE_nameplane"));
    child
        .args(["import", "--corefile", "-"])
        .env("NAMEPLANE_TEST_UPSTREAM", "192.0.2.53");
    let out = {
        use std::io::Write;
        let mut child = child
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b".:53 {\n  forward . {$NAMEPLANE_TEST_UPSTREAM}\n}\n")
            .expect("write");
        child.wait_with_output().expect("exits")
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("- \"192.0.2.53\""),
        "{}",
        text(&out.stdout)
    );

    let missing = nameplane(&["import", "--corefile", "no-such-file"], None);
    assert_eq!(missing.status.code(), Some(1));
    let usage = nameplane(&["import"], None);
    assert_eq!(
        usage.status.code(),
        Some(1),
        "a usage error is 1, not clap's 2"
    );
    let unknown = nameplane(&["import", "--corefile", "unknown-plugin/Corefile"], None);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).starts_with("unknown-plugin/Corefile:4: unknown plugin \"forwrd\"")
    );
}
