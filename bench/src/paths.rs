//! The rows beyond the plain UDP path (issue 17, "Performance of the client-aware path"),
//! measured side by side with CoreDNS in the same run, on the same objects and pinned CPUs:
//!
//! - **Client-aware path** ([`client_aware`]): a second pair of servers with one policy
//!   selecting the client Pod, ten rewrites and autopath, against CoreDNS with `acl` by
//!   source address, ten `rewrite name exact … answer auto` and `autopath @kubernetes`
//!   ([`ClientAware`]). dnsperf sends from [`CLIENT_IP`], the `status.podIP` of a Pod the
//!   bench creates, so both servers know the client as that Pod. Two query files: the plain
//!   ClusterIP A names (measured interleaved with the plain pair, which gives nameplane's
//!   share of its own plain path in the same minutes), and a mix of one third each plain
//!   names, search-path names that autopath completes, and rewritten names.
//! - **Forwarded cache misses** ([`forwarded_misses`]): unique names under the stub domain
//!   [`MISS_ZONE`], forwarded by both plain servers to the local Knot upstream (a wildcard
//!   zone). Every dnsperf run gets a fresh file of names never asked before, so no answer
//!   comes from a cache.
//! - **TCP** ([`tcp`]): the ClusterIP A names over [`TCP_CONNECTIONS`] connections, up to 100
//!   queries outstanding over them (`dnsperf -m tcp`), as a node-local cache sends them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hickory_proto::rr::RecordType;
use kube::Client;
use serde_json::{Value, json};

use crate::dnsperf::{self, Sender};
use crate::measure::{
    QpsRun, Servers, SetRun, Who, latency_of, max_qps_run_with, per_cpu_cell, qps_cell,
};
use crate::objects::{self, Layout};
use crate::queries::{self, Kind, Probe, reverse_name};
use crate::report::{Better, Cell, Row, Target};
use crate::scenarios::{
    ALLOWED, CLIENT_APP, CLIENT_IP, CLIENT_NAMESPACE, ClientAware, MISS_IP, MISS_ZONE,
    REWRITE_ZONE, REWRITES, rewrite_target,
};
use crate::servers::{self, Common, CoreDns, Nameplane, Zone, zone_head};
use crate::settings::ObjectSet;

/// Seeds of the forwarded-miss files written so far by this process: each file's names
/// carry its own.
static MISS_FILES: AtomicU64 = AtomicU64::new(1);

/// Connections of the TCP rows.
pub const TCP_CONNECTIONS: u32 = 4;

/// Unique names per second of dnsperf run in a forwarded-miss file: above what dnsperf can
/// send on its CPU (~150k QPS), so that no name repeats within one run.
const MISS_NAMES_PER_SECOND: u64 = 150_000;

/// The upstream's zone for the forwarded misses: one wildcard.
pub fn miss_zone() -> Zone {
    let mut text = zone_head(MISS_ZONE);
    let _ = writeln!(text, "* 300 A {MISS_IP}");
    Zone {
        apex: MISS_ZONE.into(),
        text,
    }
}

/// Writes `count` names under [`MISS_ZONE`] that no file of another `seed` holds, one
/// `name A` per line, to `path`.
pub fn write_miss_file(path: &Path, seed: u64, count: u64) -> Result<()> {
    let mut text = String::with_capacity(count as usize * 36);
    for i in 0..count {
        // The file's seed and the line number, then a scrambled label so that names do not
        // share long prefixes (as random labels would not).
        let mix = (seed << 32 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let _ = writeln!(text, "m{seed:x}-{i:x}-{mix:016x}.{MISS_ZONE} A");
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// The client-aware query mix of `set`: by turns a plain ClusterIP name, the same kind of
/// name as a Pod's resolver first sends it (with the client's namespace as search domain,
/// completed by autopath), and a rewritten name; with probes of each (asked from
/// [`CLIENT_IP`]).
pub fn client_mix(set: &ObjectSet, cluster_ips: &[Ipv4Addr], path: &Path) -> Result<Vec<Probe>> {
    let layout = Layout::for_set(set);
    let services = set.cluster_ip_services().min(cluster_ips.len());
    let search = format!("{CLIENT_NAMESPACE}.svc.cluster.local.");
    let name = |i: usize| match i % 3 {
        0 => layout.service_fqdn(i),
        1 => format!("{}{search}", layout.service_fqdn(i)),
        _ => format!("r{}.{REWRITE_ZONE}.", i % REWRITES),
    };
    let answer = |i: usize| match i % 3 {
        0 | 1 => cluster_ips[i],
        _ => cluster_ips[rewrite_target(i % REWRITES, services)],
    };
    let mut lines = String::new();
    for i in 0..services {
        let _ = writeln!(lines, "{} A", name(i));
    }
    std::fs::write(path, lines)?;
    Ok((0..services.min(30))
        .map(|i| Probe {
            name: name(i),
            rtype: RecordType::A,
            rcode: "NOERROR",
            data: vec![answer(i).to_string()],
        })
        .collect())
}

/// One server in a side-by-side step.
#[derive(Clone, Copy, Debug)]
struct Subject {
    /// Key in logs and `results.json`.
    key: &'static str,
    port: u16,
    pid: u32,
    sender: Sender,
}

/// Max-QPS runs of `subjects` on `file()`'s queries, interleaved (one run of each in turn,
/// `runs` times) after a warm-up of each; `file` gives the query file of each dnsperf run.
async fn side_by_side(
    m: &mut SetRun<'_>,
    step: &str,
    subjects: &[Subject],
    rcode: &str,
    file: &mut dyn FnMut() -> Result<PathBuf>,
) -> HashMap<&'static str, Vec<QpsRun>> {
    let (warmup, seconds, runs) = (m.settings.warmup_s, m.settings.duration_s, m.settings.runs);
    for s in subjects {
        let warm = match file() {
            Ok(f) => f,
            Err(e) => {
                m.error(&format!("{step}: query file"), &e);
                return HashMap::new();
            }
        };
        let _ = dnsperf::Run {
            port: s.port,
            queries: &warm,
            seconds: warmup,
            rate: None,
            verbose: false,
            sender: s.sender,
        }
        .run()
        .await;
    }
    let mut out: HashMap<&'static str, Vec<QpsRun>> = HashMap::new();
    for r in 0..runs {
        for s in subjects {
            match max_qps_run_with(s.port, s.pid, seconds, rcode, s.sender, &mut *file).await {
                Ok(run) => {
                    eprintln!(
                        "[bench]   run {}: {:<16} {:>9.0} QPS, {:>9.0} per CPU-second{}",
                        r + 1,
                        s.key,
                        run.qps,
                        run.per_cpu_second.unwrap_or(f64::NAN),
                        run.wrong_rcode
                            .as_ref()
                            .map(|w| format!(" ({w})"))
                            .unwrap_or_default()
                    );
                    out.entry(s.key).or_default().push(run);
                }
                Err(e) => m.error(&format!("{step}: dnsperf {}", s.key), &e),
            }
        }
    }
    let raw: serde_json::Map<String, Value> = out
        .iter()
        .map(|(k, runs)| {
            (
                k.to_string(),
                json!(runs.iter().map(|r| json!({
                    "qps": r.qps,
                    "perCpuSecond": r.per_cpu_second,
                    "wrongRcode": r.wrong_rcode,
                    "dnsperf": r.summaries.iter().map(|(rate, s)| json!({"rate": rate, "summary": s})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()),
            )
        })
        .collect();
    m.raw.insert(step.into(), Value::Object(raw));
    out
}

/// The max-QPS and per-CPU-second rows of one step; `coredns` and `nameplane` are the keys
/// of the two servers' runs. Returns CoreDNS's median max QPS.
#[allow(clippy::too_many_arguments)]
fn qps_rows(
    m: &mut SetRun<'_>,
    runs: &HashMap<&'static str, Vec<QpsRun>>,
    section: &str,
    label: &str,
    keys: (&str, &str),
    per_cpu_target: Target,
    method: &str,
) -> Option<f64> {
    let of = |key: &str| runs.get(key).map(Vec::as_slice).unwrap_or_default();
    let (coredns, nameplane) = (of(keys.0), of(keys.1));
    let coredns_max = qps_cell(coredns);
    let max = coredns_max.value;
    let per_cpu_method = format!(
        "{method}; per CPU-second: queries answered in the counted dnsperf run divided by the user + system CPU time of the server process meanwhile (/proc/<pid>/stat)"
    );
    m.rows.push(Row {
        section: section.into(),
        metric: format!("max QPS, {label}"),
        unit: "QPS".into(),
        better: Better::Higher,
        coredns: coredns_max,
        nameplane: qps_cell(nameplane),
        knot: None,
        target: Target::None,
        knot_share_target: None,
        method: per_cpu_method.clone(),
    });
    m.rows.push(Row {
        section: section.into(),
        metric: format!("queries per server CPU-second, {label}"),
        unit: "QPS/CPU-s".into(),
        better: Better::Higher,
        coredns: per_cpu_cell(coredns),
        nameplane: per_cpu_cell(nameplane),
        knot: None,
        target: per_cpu_target,
        knot_share_target: None,
        method: per_cpu_method,
    });
    max
}

/// Run by run, `runs[aware]` per CPU-second over `runs[plain]` per CPU-second (the two were
/// measured in turn, so each pair saw the same background load), in percent.
fn share_cell(runs: &HashMap<&'static str, Vec<QpsRun>>, aware: &str, plain: &str) -> Cell {
    let (Some(a), Some(p)) = (runs.get(aware), runs.get(plain)) else {
        return Cell::missing("no run");
    };
    let shares: Vec<f64> = a
        .iter()
        .zip(p)
        .filter_map(|(a, p)| Some(a.per_cpu_second? / p.per_cpu_second? * 100.0))
        .filter(|s| s.is_finite())
        .collect();
    if shares.is_empty() {
        return Cell::missing("no CPU time read");
    }
    Cell::of_runs(shares)
}

/// p50/p99 rows at `rate` QPS (half CoreDNS's max on the same queries) for both servers.
async fn latency_rows(
    m: &mut SetRun<'_>,
    section: &str,
    label: &str,
    subjects: [Subject; 2],
    rate: u64,
    file: &Path,
) {
    eprintln!("[bench] latency at {rate} QPS (half of CoreDNS's max), {label}");
    let mut per: HashMap<&str, Vec<crate::measure::LatencyRun>> = HashMap::new();
    for _ in 0..m.settings.runs {
        for s in &subjects {
            match (dnsperf::Run {
                port: s.port,
                queries: file,
                seconds: m.settings.duration_s,
                rate: Some(rate),
                verbose: true,
                sender: s.sender,
            })
            .run()
            .await
            {
                Ok(summary) => {
                    let run = latency_of(&summary);
                    eprintln!(
                        "[bench]   {:<16} p50 {:.3} ms, p99 {:.3} ms",
                        s.key,
                        run.p50.unwrap_or(f64::NAN) * 1e3,
                        run.p99.unwrap_or(f64::NAN) * 1e3,
                    );
                    per.entry(s.key).or_default().push(run);
                }
                Err(e) => m.error(&format!("{section}: latency {}", s.key), &e),
            }
        }
    }
    let cell = |key: &str, pick: fn(&crate::measure::LatencyRun) -> Option<f64>| {
        let runs = per.get(key).cloned().unwrap_or_default();
        if runs.is_empty() {
            return Cell::missing("no run");
        }
        let values: Vec<Option<f64>> = runs.iter().map(pick).collect();
        if values.iter().filter(|v| v.is_none()).count() * 2 > values.len() {
            return Cell::missing("lost (more loss than the quantile)");
        }
        Cell::of_runs(values.into_iter().flatten().map(|v| v * 1000.0).collect())
    };
    for (name, pick, target) in [
        (
            "p50",
            (|r: &crate::measure::LatencyRun| r.p50) as fn(&_) -> _,
            Target::None,
        ),
        (
            "p99",
            |r: &crate::measure::LatencyRun| r.p99,
            Target::Ratio { ratio: 0.5 },
        ),
    ] {
        m.rows.push(Row {
            section: section.into(),
            metric: format!("{name} latency at {rate} QPS, {label}"),
            unit: "ms".into(),
            better: Better::Lower,
            coredns: cell(subjects[0].key, pick),
            nameplane: cell(subjects[1].key, pick),
            knot: None,
            target,
            knot_share_target: None,
            method: format!(
                "dnsperf -Q <half of CoreDNS's max QPS on these queries> -v, from the same source and transport as the QPS rows, {} s per run, lost queries count as infinitely late; median over runs of each run's quantile",
                m.settings.duration_s
            ),
        });
    }
}

fn subject(key: &'static str, port: u16, pid: u32, sender: Sender) -> Subject {
    Subject {
        key,
        port,
        pid,
        sender,
    }
}

/// Forwarded cache misses: fresh unique names under [`MISS_ZONE`] on the plain pair.
pub async fn forwarded_misses(m: &mut SetRun<'_>, servers: &Servers) {
    let label = "forwarded cache miss (unique names, stub domain → Knot on loopback)";
    eprintln!("[bench] max QPS, {label}");
    let dir = m.dir.join("queries");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        m.error("forwarded misses: query directory", &e.into());
        return;
    }
    // Correct answers first: a few fresh names on each server.
    for (who, port) in [
        (Who::CoreDns, servers.coredns.port),
        (Who::Nameplane, servers.nameplane.port),
    ] {
        let probes: Vec<Probe> = (0..3)
            .map(|k| Probe {
                name: format!("probe-{k}-{}.{MISS_ZONE}", who.key()),
                rtype: RecordType::A,
                rcode: "NOERROR",
                data: vec![MISS_IP.to_string()],
            })
            .collect();
        if let Err(why) = queries::check(port, &probes).await {
            m.error(
                &format!("forwarded misses: {} answers wrongly", who.key()),
                &anyhow::anyhow!("{why}"),
            );
            return;
        }
    }
    let names = MISS_NAMES_PER_SECOND * m.settings.duration_s.max(m.settings.warmup_s);
    let files = dir.clone();
    let mut file = move || -> Result<PathBuf> {
        let path = files.join("misses.txt");
        write_miss_file(&path, MISS_FILES.fetch_add(1, Ordering::Relaxed), names)?;
        Ok(path)
    };
    let subjects = [
        subject(
            "coredns",
            servers.coredns.port,
            servers.coredns.proc.pid(),
            Sender::PLAIN,
        ),
        subject(
            "nameplane",
            servers.nameplane.port,
            servers.nameplane.proc.pid(),
            Sender::PLAIN,
        ),
    ];
    let runs = side_by_side(m, "forward_miss", &subjects, "NOERROR", &mut file).await;
    let _ = std::fs::remove_file(dir.join("misses.txt"));
    qps_rows(
        m,
        &runs,
        "forward",
        label,
        ("coredns", "nameplane"),
        Target::None,
        &format!(
            "dnsperf -e -c 1 -q 100 -t 2, {} s per run after {} s warm-up, each run (and each retry at a fixed rate) on a new file of {names} names never asked before (work/<set>/queries/misses.txt while it runs), so every query misses the cache and is forwarded; both servers forward {MISS_ZONE} to Knot DNS on CPU {} (a wildcard zone), CoreDNS in its own server block (errors, forward with max_concurrent 1000, cache 30); self-paced, then lower fixed rates if >0.1% was lost; runs interleaved",
            m.settings.duration_s,
            m.settings.warmup_s,
            dnsperf::LOADGEN_CPU
        ),
    );
}

/// TCP: the ClusterIP A names pipelined over [`TCP_CONNECTIONS`] connections, plain pair.
pub async fn tcp(m: &mut SetRun<'_>, servers: &Servers) {
    let label =
        format!("ClusterIP A over TCP ({TCP_CONNECTIONS} connections, ≤100 queries outstanding)");
    eprintln!("[bench] max QPS, {label}");
    let sender = Sender {
        source: None,
        tcp_connections: Some(TCP_CONNECTIONS),
    };
    let file = m.queries.file(Kind::ClusterIpA).to_path_buf();
    let subjects = [
        subject(
            "coredns",
            servers.coredns.port,
            servers.coredns.proc.pid(),
            sender,
        ),
        subject(
            "nameplane",
            servers.nameplane.port,
            servers.nameplane.proc.pid(),
            sender,
        ),
    ];
    let mut files = || Ok(file.clone());
    let runs = side_by_side(m, "tcp_clusterip_a", &subjects, "NOERROR", &mut files).await;
    qps_rows(
        m,
        &runs,
        "tcp",
        &label,
        ("coredns", "nameplane"),
        Target::Ratio { ratio: 4.0 },
        &format!(
            "dnsperf -m tcp -c {TCP_CONNECTIONS} -q 100 -e -t 2 (queries pipelined on {TCP_CONNECTIONS} connections, as a node-local cache or a resolver sends them), the ClusterIP A query file, {} s per run after {} s warm-up; self-paced, then lower fixed rates if >0.1% was lost; runs interleaved",
            m.settings.duration_s, m.settings.warmup_s
        ),
    );
}

/// Waits until every probe answers correctly from `source` at `port` (`limit`), or says what
/// the last attempt saw.
async fn answers_from(
    source: Ipv4Addr,
    port: u16,
    probes: &[Probe],
    limit: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        match queries::check_from(source, port, probes).await {
            Ok(()) => return Ok(()),
            Err(why) if started.elapsed() > limit => bail!("{why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The client-aware rows: creates the client Pod, starts the client-aware pair next to the
/// plain one (same CPU; each idles while another is measured), checks that both answer the
/// mix correctly from the client's address and refuse a name the policy denies, measures,
/// and stops the pair.
#[allow(clippy::too_many_arguments)]
pub async fn client_aware(
    m: &mut SetRun<'_>,
    client: &Client,
    servers: &Servers,
    coredns_bin: &Path,
    nameplane_bin: &Path,
    common: &Common,
    plain_config: &Value,
) -> Result<()> {
    eprintln!(
        "[bench] client-aware path: policy + {REWRITES} rewrites + autopath, from Pod {CLIENT_NAMESPACE}/client ({CLIENT_IP})"
    );
    objects::create_namespace(client, CLIENT_NAMESPACE).await?;
    objects::create_pod(client, CLIENT_NAMESPACE, "client", CLIENT_APP, CLIENT_IP).await?;
    let aware = ClientAware::for_set(m.set);
    let mut config = plain_config.clone();
    aware.add_to_nameplane_config(&mut config);
    let (config, dropped) = servers::accepted_config(&config)?;
    if ["autopath", "rewrites", "policies"]
        .iter()
        .any(|f| dropped.iter().any(|d| d == f))
    {
        bail!("this nameplane build does not know {dropped:?}");
    }
    servers::write_config_map(client, "bench", "nameplane-client-aware", &config).await?;
    let dir = m.dir.join("client-aware");
    let common = Common {
        client_aware: Some(aware),
        stub_domain: false,
        ..common.clone()
    };
    let mut coredns = CoreDns::start(coredns_bin, &dir, &common, &m.settings.coredns_reload)?;
    let mut nameplane = Nameplane::start(
        "nameplane-dns-client-aware",
        nameplane_bin,
        &dir,
        "bench/nameplane-client-aware",
        Some(servers::SERVER_CPU),
    )?;
    let result = client_aware_rows(m, servers, &mut coredns, &mut nameplane, &dir).await;
    m.raw.insert("client_aware_nameplane_config".into(), config);
    coredns.proc.stop();
    nameplane.proc.stop();
    result
}

async fn client_aware_rows(
    m: &mut SetRun<'_>,
    plain: &Servers,
    coredns: &mut CoreDns,
    nameplane: &mut Nameplane,
    dir: &Path,
) -> Result<()> {
    let limit = Duration::from_secs(300);
    coredns.wait_ready(limit).await?;
    nameplane.wait_ready(limit).await?;
    let mix_file = dir.join("client-mix.txt");
    let mut probes = client_mix(m.set, m.cluster_ips, &mix_file)?;
    // The policy refuses what it does not allow (CoreDNS: `acl` blocks it).
    probes.push(Probe {
        name: reverse_name(Ipv4Addr::new(192, 0, 2, 1)),
        rtype: RecordType::PTR,
        rcode: "REFUSED",
        data: vec![],
    });
    probes.push(Probe {
        name: format!("e0.{}", queries::EXTERNAL_ZONE),
        rtype: RecordType::A,
        rcode: "NOERROR",
        data: vec![queries::external_ip(0).to_string()],
    });
    for (key, port) in [("CoreDNS", coredns.port), ("nameplane", nameplane.port)] {
        // Until the server has the client Pod (its watch) and every object.
        answers_from(CLIENT_IP, port, &probes, Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("{key} (client-aware) from {CLIENT_IP}: {e:#}"))?;
    }
    eprintln!("[bench]   both answer the client-aware probes from {CLIENT_IP}");
    let from_pod = Sender {
        source: Some(CLIENT_IP),
        tcp_connections: None,
    };
    let aware = [
        subject("coredns", coredns.port, coredns.proc.pid(), from_pod),
        subject("nameplane", nameplane.port, nameplane.proc.pid(), from_pod),
    ];
    let plain_file = m.queries.file(Kind::ClusterIpA).to_path_buf();
    let method = |what: &str| {
        format!(
            "second pair of servers (same CPU {}, same objects): nameplane with one DNSPolicy selecting the client Pod (allow {}, deny the rest, REFUSED), {REWRITES} exact RewriteRules with rewriteAnswers, autopath; CoreDNS with acl (allow those zones to {CLIENT_IP}/32, block it otherwise), {REWRITES} `rewrite name exact … answer auto`, `autopath @kubernetes` (pods verified); dnsperf -e -c 1 -q 100 -t 2 -a {CLIENT_IP} (the Pod's status.podIP) pinned to CPU {}, {what}, {} s per run after {} s warm-up; self-paced, then lower fixed rates if >0.1% was lost; runs interleaved",
            servers::SERVER_CPU,
            ALLOWED.join(", "),
            dnsperf::LOADGEN_CPU,
            m.settings.duration_s,
            m.settings.warmup_s
        )
    };

    // 1. The plain ClusterIP names, interleaved with the plain pair (from 127.0.0.1).
    let label = "client-aware path, ClusterIP A from a policy-selected Pod";
    eprintln!("[bench] max QPS, {label} (and the plain pair in turn)");
    let subjects = [
        subject(
            "coredns-plain",
            plain.coredns.port,
            plain.coredns.proc.pid(),
            Sender::PLAIN,
        ),
        aware[0],
        subject(
            "nameplane-plain",
            plain.nameplane.port,
            plain.nameplane.proc.pid(),
            Sender::PLAIN,
        ),
        aware[1],
    ];
    let mut files = || Ok(plain_file.clone());
    let runs = side_by_side(m, "client_clusterip_a", &subjects, "NOERROR", &mut files).await;
    let coredns_max = qps_rows(
        m,
        &runs,
        "client",
        label,
        ("coredns", "nameplane"),
        Target::Ratio { ratio: 3.0 },
        &method("the ClusterIP A query file"),
    );
    m.rows.push(Row {
        section: "client".into(),
        metric: format!("{label}: share of the same server's plain path per CPU-second"),
        unit: "%".into(),
        better: Better::Higher,
        coredns: share_cell(&runs, "coredns", "coredns-plain"),
        nameplane: share_cell(&runs, "nameplane", "nameplane-plain"),
        knot: None,
        target: Target::AtLeast { value: 80.0 },
        knot_share_target: None,
        method: "run by run: the client-aware server's queries per CPU-second over the plain server's (same server program, plain config, queries from 127.0.0.1, no Pod) in the run just before it; each server against its own plain path, the target applies to nameplane".into(),
    });
    if let Some(max) = coredns_max {
        let rate = (max / 2.0).max(1.0) as u64;
        latency_rows(m, "client", label, aware, rate, &plain_file).await;
        // The plain pair at the same rate right after: tells a tail of the client-aware
        // path from one of the moment (a loaded machine).
        latency_rows(
            m,
            "client",
            "plain path at the same rate (reference for the row above), ClusterIP A from 127.0.0.1",
            [subjects[0], subjects[2]],
            rate,
            &plain_file,
        )
        .await;
    }

    // 2. The mix: plain names, autopath-completed search names, rewritten names.
    let label =
        "client-aware path, mix: ⅓ ClusterIP A, ⅓ search-path names (autopath), ⅓ rewritten names";
    eprintln!("[bench] max QPS, {label}");
    let mut files = || Ok(mix_file.clone());
    let runs = side_by_side(m, "client_mix", &aware, "NOERROR", &mut files).await;
    let coredns_max = qps_rows(
        m,
        &runs,
        "client",
        label,
        ("coredns", "nameplane"),
        Target::Ratio { ratio: 3.0 },
        &method(
            "work/<set>/client-aware/client-mix.txt (by turns s<i>.<ns>.svc.cluster.local, s<i>.<ns>.svc.cluster.local.bench-client.svc.cluster.local that autopath answers with a CNAME to the Service, r<k>.rewrite.example rewritten to a Service)",
        ),
    );
    if let Some(max) = coredns_max {
        latency_rows(
            m,
            "client",
            label,
            aware,
            (max / 2.0).max(1.0) as u64,
            &mix_file,
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_servers_get_the_same_behaviour() {
        let set = ObjectSet::smoke();
        let aware = ClientAware::for_set(&set);
        assert_eq!(aware.rewrites.len(), REWRITES);
        assert_eq!(
            aware.rewrites[0],
            (
                "r0.rewrite.example".into(),
                "s0.bench-00.svc.cluster.local".into()
            )
        );
        let lines = aware.corefile_lines();
        assert!(lines.contains(&format!(
            "acl cluster.local rewrite.example bench.example {{\n        allow net {CLIENT_IP}/32"
        )));
        assert!(lines.contains(&format!("block net {CLIENT_IP}/32")));
        assert_eq!(lines.matches("rewrite name exact ").count(), REWRITES);
        assert!(lines.contains("autopath @kubernetes"));

        let common = Common {
            kubeconfig: PathBuf::from("/k"),
            upstream_port: 5300,
            ttl: 5,
            stub_domain: true,
            client_aware: Some(aware),
        };
        let (config, dropped) =
            servers::accepted_config(&servers::nameplane_config(&common)).expect("accepted");
        for kept in ["autopath", "rewrites", "policies"] {
            assert!(!dropped.iter().any(|d| d == kept), "dropped {kept}");
        }
        assert_eq!(config["kubernetes"]["autopath"], true);
        assert_eq!(config["rewrites"].as_array().map(Vec::len), Some(REWRITES));
        assert_eq!(config["policies"][0]["namespace"], CLIENT_NAMESPACE);
        assert_eq!(config["forward"][1]["domain"], "misses.example");
        let ports = servers::CoreDnsPorts {
            health: 1,
            ready: 2,
            metrics: 3,
        };
        let corefile = servers::corefile(&common, 1053, &ports, "");
        assert!(corefile.contains("autopath @kubernetes"));
        assert!(corefile.contains("misses.example:1053 {"));
        assert!(corefile.contains("forward . 127.0.0.1:5300"));
    }

    #[test]
    fn miss_files_never_repeat_a_name() {
        let dir = std::env::temp_dir().join(format!("nameplane-bench-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut all = std::collections::HashSet::new();
        for seed in 1..4 {
            let path = dir.join(format!("{seed}.txt"));
            write_miss_file(&path, seed, 1000).expect("written");
            let text = std::fs::read_to_string(&path).expect("read");
            for line in text.lines() {
                assert!(line.ends_with(".misses.example. A"), "{line}");
                assert!(all.insert(line.to_string()), "{line} twice");
            }
        }
        assert_eq!(all.len(), 3000);
        assert!(miss_zone().text.contains("* 300 A 198.19.0.1"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_mix_asks_each_feature_in_turn() {
        let set = ObjectSet::smoke();
        let ips: Vec<Ipv4Addr> = (0..set.cluster_ip_services())
            .map(|i| Ipv4Addr::new(10, 96, 1, i as u8))
            .collect();
        let path = std::env::temp_dir().join(format!("nameplane-bench-mix-{}", std::process::id()));
        let probes = client_mix(&set, &ips, &path).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), set.cluster_ip_services());
        assert_eq!(probes[0].name, "s0.bench-00.svc.cluster.local.");
        assert_eq!(
            probes[1].name,
            "s1.bench-01.svc.cluster.local.bench-client.svc.cluster.local."
        );
        assert_eq!(probes[1].data, vec!["10.96.1.1".to_string()]);
        assert_eq!(probes[2].name, "r2.rewrite.example.");
        let target = rewrite_target(2, set.cluster_ip_services());
        assert_eq!(probes[2].data, vec![ips[target].to_string()]);
    }
}
