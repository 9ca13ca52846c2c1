//! dnsperf (DNS-OARC, Debian package `dnsperf`): running it pinned to the load generator's CPU
//! and reading what it prints.
//!
//! Every run sends EDNS (`-e`, 4096-byte buffer) so the 100-endpoint headless answer fits in one
//! datagram for every server; one client socket (`-c 1`, `-T 1`); at most 100 queries
//! outstanding (`-q 100`, the default); a query not answered in 2 s counts as lost (`-t 2`).
//! A [`Sender`] can change two things: the source address (`-a`, so that the query comes
//! from a Pod's address) and the transport (`-m tcp -c <connections>`: queries pipelined on
//! a few connections, up to 100 outstanding over all of them).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

/// The CPU dnsperf runs on (the servers run on CPU 0).
pub const LOADGEN_CPU: u32 = 1;

/// What a dnsperf run reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Queries sent.
    pub sent: u64,
    /// Queries answered.
    pub completed: u64,
    /// Queries not answered within the timeout.
    pub lost: u64,
    /// Completed queries per second.
    pub qps: f64,
    /// Mean latency in seconds.
    pub avg_latency_s: f64,
    /// Answers per response code.
    pub rcodes: BTreeMap<String, u64>,
    /// Per-query latencies in seconds (only with `-v`), in arrival order.
    #[serde(skip)]
    pub latencies_s: Vec<f64>,
}

impl Summary {
    /// Lost queries as a fraction of those sent.
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            1.0
        } else {
            self.lost as f64 / self.sent as f64
        }
    }

    /// Fraction of the answers that carry `rcode`.
    pub fn share(&self, rcode: &str) -> f64 {
        let total: u64 = self.rcodes.values().sum();
        if total == 0 {
            0.0
        } else {
            self.rcodes.get(rcode).copied().unwrap_or(0) as f64 / total as f64
        }
    }

    /// The most frequent response code.
    pub fn main_rcode(&self) -> Option<&str> {
        self.rcodes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(r, _)| r.as_str())
    }
}

/// Parses dnsperf's closing statistics (and, with `-v`, its per-query lines).
pub fn parse(output: &str) -> Result<Summary> {
    let mut s = Summary::default();
    let number = |rest: &str| -> u64 {
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut seen_stats = false;
    for line in output.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("> ") {
            // "> NOERROR name A 0.000123"
            if let Some(latency) = rest.rsplit(' ').next().and_then(|l| l.parse::<f64>().ok()) {
                s.latencies_s.push(latency);
            }
        } else if let Some(rest) = t.strip_prefix("Queries sent:") {
            s.sent = number(rest);
            seen_stats = true;
        } else if let Some(rest) = t.strip_prefix("Queries completed:") {
            s.completed = number(rest);
        } else if let Some(rest) = t.strip_prefix("Queries lost:") {
            s.lost = number(rest);
        } else if let Some(rest) = t.strip_prefix("Queries per second:") {
            s.qps = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("Average Latency (s):") {
            s.avg_latency_s = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("Response codes:") {
            // "NOERROR 26332 (50.00%), NXDOMAIN 26331 (50.00%)"
            for part in rest.split(',') {
                let mut f = part.split_whitespace();
                if let (Some(code), Some(n)) = (f.next(), f.next().and_then(|n| n.parse().ok())) {
                    s.rcodes.insert(code.to_string(), n);
                }
            }
        }
    }
    if !seen_stats {
        bail!("no statistics in dnsperf output:\n{output}");
    }
    Ok(s)
}

/// Where dnsperf's queries come from, and over what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sender {
    /// Source address (`-a`); 127.0.0.1 (dnsperf's default for a loopback server) when
    /// `None`.
    pub source: Option<Ipv4Addr>,
    /// TCP over this many connections (`-m tcp -c <n>`); UDP from one socket when `None`.
    pub tcp_connections: Option<u32>,
}

impl Sender {
    /// UDP from 127.0.0.1: what every plain row sends.
    pub const PLAIN: Sender = Sender {
        source: None,
        tcp_connections: None,
    };
}

/// One dnsperf invocation.
#[derive(Clone, Debug)]
pub struct Run<'a> {
    /// Server port on 127.0.0.1.
    pub port: u16,
    /// Query file (`name TYPE` per line).
    pub queries: &'a Path,
    /// Seconds to run.
    pub seconds: u64,
    /// Fixed rate (`-Q`); `None` lets dnsperf send as fast as answers come back.
    pub rate: Option<u64>,
    /// Record every query's latency (`-v`).
    pub verbose: bool,
    /// Source address and transport.
    pub sender: Sender,
}

impl Run<'_> {
    /// The command line (after `taskset -c 1`).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-s",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-d",
            &self.queries.display().to_string(),
            "-l",
            &self.seconds.to_string(),
            "-e",
            "-t",
            "2",
            "-q",
            "100",
            "-c",
            &self.sender.tcp_connections.unwrap_or(1).to_string(),
            "-T",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.sender.tcp_connections.is_some() {
            args.extend(["-m".into(), "tcp".into()]);
        }
        if let Some(source) = self.sender.source {
            args.extend(["-a".into(), source.to_string()]);
        }
        if let Some(rate) = self.rate {
            args.extend(["-Q".into(), rate.max(1).to_string()]);
        }
        if self.verbose {
            args.push("-v".into());
        }
        args
    }

    /// Runs dnsperf pinned to [`LOADGEN_CPU`] and parses its report.
    ///
    /// Its output goes to a file, read when it is done: with `-v` that is a line per query,
    /// and a harness reading a pipe meanwhile would be woken thousands of times a second on
    /// dnsperf's CPU, in the way of the latencies being measured.
    pub async fn run(&self) -> Result<Summary> {
        let output = tempfile()?;
        let out = tokio::process::Command::new("taskset")
            .arg("-c")
            .arg(LOADGEN_CPU.to_string())
            .arg("dnsperf")
            .args(self.args())
            .stdout(output.try_clone()?)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            // Not `output()`: it would pipe stdout again.
            .spawn()
            .context("running dnsperf (apt-get install dnsperf)")?
            .wait_with_output()
            .await
            .context("waiting for dnsperf")?;
        let stdout = read_all(output)?;
        if !out.status.success() {
            bail!(
                "dnsperf failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse(&stdout)
    }
}

/// An anonymous file (unlinked at once) for dnsperf's output.
fn tempfile() -> Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!(
        "nameplane-bench-dnsperf-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::fs::remove_file(&path).ok();
    Ok(file)
}

/// Everything written to `file`, from its start.
fn read_all(mut file: std::fs::File) -> Result<String> {
    use std::io::{Read as _, Seek as _};
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 15353 -d q.txt -l 3
> NOERROR www.example A 0.000235
> NXDOMAIN nope.example A 0.000172
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         52663
  Queries completed:    52650 (99.98%)
  Queries lost:         13 (0.02%)

  Response codes:       NOERROR 26332 (50.00%), NXDOMAIN 26318 (50.00%)
  Average packet size:  request 29, response 62
  Run time (s):         3.008353
  Queries per second:   17505.591930

  Average Latency (s):  0.004897 (min 0.000031, max 0.056387)
  Latency StdDev (s):   0.007412
";

    #[test]
    fn parses_the_statistics() {
        let s = parse(REPORT).expect("parses");
        assert_eq!((s.sent, s.completed, s.lost), (52663, 52650, 13));
        assert!((s.qps - 17505.59193).abs() < 1e-6);
        assert!((s.avg_latency_s - 0.004897).abs() < 1e-9);
        assert_eq!(s.rcodes.get("NXDOMAIN"), Some(&26318));
        assert_eq!(s.main_rcode(), Some("NOERROR"));
        assert!((s.loss() - 13.0 / 52663.0).abs() < 1e-12);
        assert_eq!(s.latencies_s, vec![0.000235, 0.000172]);
        assert!(s.share("NOERROR") > 0.49 && s.share("REFUSED") == 0.0);
    }

    #[test]
    fn refuses_output_without_statistics() {
        assert!(parse("Error: could not open file").is_err());
    }

    #[test]
    fn command_line_has_the_documented_flags() {
        let run = Run {
            port: 53,
            queries: Path::new("q.txt"),
            seconds: 10,
            rate: Some(5000),
            verbose: true,
            sender: Sender::PLAIN,
        };
        let args = run.args().join(" ");
        assert_eq!(
            args,
            "-s 127.0.0.1 -p 53 -d q.txt -l 10 -e -t 2 -q 100 -c 1 -T 1 -Q 5000 -v"
        );
        let run = Run {
            rate: None,
            verbose: false,
            sender: Sender {
                source: Some(Ipv4Addr::new(127, 77, 0, 1)),
                tcp_connections: Some(4),
            },
            ..run
        };
        assert_eq!(
            run.args().join(" "),
            "-s 127.0.0.1 -p 53 -d q.txt -l 10 -e -t 2 -q 100 -c 4 -T 1 -m tcp -a 127.77.0.1"
        );
    }
}
