//! The adversarial suite's figures in the bench report: the last `make torture` run
//! (`target/torture/figures.json`, written by `e2e/tests/torture.rs`) and the last `make fuzz`
//! run (`target/fuzz/summary.json`, written by `fuzz/run.sh`). `make bench` runs neither: it
//! reads what they left, and says when and with what settings they ran.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// What the last torture and fuzz runs left behind; `None` when a run has not happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Adversarial {
    /// `target/torture/figures.json` as written.
    pub torture: Option<serde_json::Value>,
    /// `target/fuzz/summary.json` as written.
    pub fuzz: Option<serde_json::Value>,
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

impl Adversarial {
    /// Reads both files under `target` (the workspace's target directory).
    pub fn read(target: &Path) -> Self {
        Self {
            torture: read_json(&target.join("torture/figures.json")),
            fuzz: read_json(&target.join("fuzz/summary.json")),
        }
    }

    /// The report section (Markdown).
    pub fn markdown(&self) -> String {
        let mut md =
            String::from("\n## Adversarial suite (last `make torture` and `make fuzz`)\n\n");
        let text = |v: &serde_json::Value, key: &str| match &v[key] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "—".into(),
            other => other.to_string(),
        };
        match &self.torture {
            None => md.push_str("Torture harness: no run found (`make torture` writes `target/torture/figures.json`).\n"),
            Some(t) => {
                let _ = writeln!(
                    md,
                    "Torture harness ({}; nameplane-dns {} build, open files {}, {}; {} s per attack, {} slow clients, random-subdomain flood asked at {} QPS; p99 bound {} ms; extra flags `{}`; resource flags in the binary: `{}`). The well-behaved client asks a cluster name and a zone name over UDP every 10 ms and over a new TCP connection every 100 ms; \"held\" is the attacker's connections the server had not closed when the attack ended.\n",
                    text(t, "when"),
                    text(t, "profile"),
                    text(t, "open_file_limit"),
                    text(t, "memory_limit"),
                    text(t, "seconds_per_attack"),
                    text(t, "slow_clients"),
                    text(t, "flood_qps"),
                    text(t, "p99_threshold_ms"),
                    text(t, "dns_flags"),
                    text(t, "limits_in_binary"),
                );
                md.push_str("| attack | volume | held | well-behaved UDP p50 / p99 ms | TCP p50 / p99 ms | failed queries | peak RSS MiB | peak fds |\n");
                md.push_str("|---|---|---|---|---|---|---|---|\n");
                for a in t["attacks"].as_array().into_iter().flatten() {
                    let rss = a["peak_rss_kib"].as_f64().map_or("—".into(), |k| format!("{:.1}", k / 1024.0));
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} / {} ({} answers) | {} / {} ({} answers) | {} | {rss} | {} |",
                        text(a, "attack"),
                        text(a, "volume").replace('|', "/"),
                        text(a, "held"),
                        text(a, "udp_p50_ms"),
                        text(a, "udp_p99_ms"),
                        text(a, "udp_queries"),
                        text(a, "tcp_p50_ms"),
                        text(a, "tcp_p99_ms"),
                        text(a, "tcp_queries"),
                        text(a, "failures"),
                        text(a, "peak_fds"),
                    );
                }
            }
        }
        match &self.fuzz {
            None => md.push_str(
                "\nFuzzing: no run found (`make fuzz` writes `target/fuzz/summary.json`).\n",
            ),
            Some(f) => {
                let _ = writeln!(
                    md,
                    "\nFuzzing ({}; {} s per target, sanitizer {}):\n",
                    text(f, "when"),
                    text(f, "seconds"),
                    text(f, "sanitizer")
                );
                md.push_str("| target | executions | crashes | exit |\n|---|---|---|---|\n");
                for t in f["targets"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} |",
                        text(t, "target"),
                        text(t, "executions"),
                        text(t, "crashes"),
                        text(t, "exit")
                    );
                }
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_shows_each_attack_and_each_fuzz_target() {
        let dir = std::env::temp_dir().join(format!("bench-adversarial-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("torture")).expect("dir");
        std::fs::create_dir_all(dir.join("fuzz")).expect("dir");
        assert!(Adversarial::read(&dir).markdown().contains("no run found"));
        std::fs::write(
            dir.join("torture/figures.json"),
            r#"{"when":"2026-12-05T01:00:00Z","profile":"release","attacks":[{"attack":"slowloris","volume":"800 connections","held":800,"udp_p50_ms":0.4,"udp_p99_ms":3.1,"udp_queries":2000,"tcp_p50_ms":0.6,"tcp_p99_ms":4.2,"tcp_queries":200,"failures":0,"peak_rss_kib":30720,"peak_fds":830}]}"#,
        )
        .expect("write");
        std::fs::write(
            dir.join("fuzz/summary.json"),
            r#"{"when":"2026-12-05T00:00:00Z","seconds":60,"sanitizer":"none","targets":[{"target":"answer","executions":123456,"crashes":0,"exit":0}]}"#,
        )
        .expect("write");
        let md = Adversarial::read(&dir).markdown();
        assert!(md.contains("| slowloris | 800 connections | 800 | 0.4 / 3.1 (2000 answers) | 0.6 / 4.2 (200 answers) | 0 | 30.0 | 830 |"), "{md}");
        assert!(md.contains("| answer | 123456 | 0 | 0 |"), "{md}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The section made from what the last `make torture` and `make fuzz` really wrote (not
    /// a hand-written sample): every figure the report reads is there, so no figure cell is
    /// empty ("held" is empty by design where no connection is held: baseline, flood).
    /// Ignored because it needs both runs: `cargo test -p nameplane-bench --lib
    /// the_last_runs_fill_every_cell -- --ignored --nocapture` after them.
    #[test]
    #[ignore = "needs target/torture/figures.json and target/fuzz/summary.json"]
    fn the_last_runs_fill_every_cell() {
        let md = Adversarial::read(&crate::sys::target_dir()).markdown();
        println!("{md}");
        assert!(!md.contains("no run found"), "{md}");
        let cells = |line: &str| -> Vec<String> {
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        };
        let attacks: Vec<Vec<String>> = md
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("answers)"))
            .map(cells)
            .collect();
        assert!(attacks.len() >= 6, "baseline and five attacks: {md}");
        for row in &attacks {
            // UDP, TCP, failed, peak RSS, peak fds.
            for cell in &row[3..8] {
                assert!(!cell.contains('—'), "a figure missing: {row:?}");
            }
        }
        let fuzz: Vec<Vec<String>> = md
            .lines()
            .skip_while(|l| !l.starts_with("| target | executions"))
            .skip(2)
            .filter(|l| l.starts_with("| "))
            .map(cells)
            .collect();
        assert_eq!(
            fuzz.len(),
            4,
            "answer, upstream_reply, config, import: {md}"
        );
        for row in &fuzz {
            assert!(
                row.iter().all(|c| !c.contains('—')),
                "a figure missing: {row:?}"
            );
        }
        let header = md
            .lines()
            .find(|l| l.starts_with("Torture harness ("))
            .unwrap_or_default();
        assert!(header.contains("release build"), "{header}");
    }
}
