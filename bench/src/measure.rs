//! The measurements of one object set, each producing report rows. A step that fails records
//! its error and the others still run; a query type a server does not answer correctly is
//! reported as unsupported with what it answered, never measured.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::dnsperf::{self, Summary};
use crate::objects;
use crate::probe;
use crate::queries::{self, Kind, Queries};
use crate::report::{Better, Cell, Row, Support, Target, median, quantile_sorted};
use crate::servers::{self, CoreDns, Nameplane};
use crate::settings::{ObjectSet, Settings};
use crate::sys;

/// Largest loss that counts as "no loss" for the max QPS (0.1%).
pub const MAX_LOSS: f64 = 0.001;

/// Share of answers that must carry the expected rcode under load.
pub const MIN_RCODE_SHARE: f64 = 0.999;

/// The servers of one set.
pub struct Servers {
    /// CoreDNS.
    pub coredns: CoreDns,
    /// nameplane-dns.
    pub nameplane: Nameplane,
}

impl Servers {
    /// `127.0.0.1:<port>` of `who`'s Prometheus metrics (Knot is not one of them).
    pub fn metrics_addr(&self, who: Who) -> Option<String> {
        match who {
            Who::CoreDns => Some(format!("127.0.0.1:{}", self.coredns.ports.metrics)),
            Who::Nameplane => Some(self.nameplane.admin.clone()),
            Who::Knot => None,
        }
    }
}

/// Which server a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// CoreDNS.
    CoreDns,
    /// nameplane.
    Nameplane,
    /// Knot (static zone).
    Knot,
}

impl Who {
    /// Short key (JSON, logs).
    pub fn key(self) -> &'static str {
        match self {
            Who::CoreDns => "coredns",
            Who::Nameplane => "nameplane",
            Who::Knot => "knot",
        }
    }
}

/// One max-QPS run.
#[derive(Clone, Debug)]
pub struct QpsRun {
    /// Answered queries per second at ≤ 0.1% loss (0 when no rate tried passed).
    pub qps: f64,
    /// The dnsperf runs it took (self-paced first, then fixed rates when that lost too much).
    pub summaries: Vec<(Option<u64>, Summary)>,
    /// Set when the answers under load carried the wrong rcode.
    pub wrong_rcode: Option<String>,
    /// Answered queries per CPU-second the server spent during the counted dnsperf run: what
    /// one fully busy core would answer, even when the load generator saturates first.
    pub per_cpu_second: Option<f64>,
}

/// One max-QPS run against the server at `port` (process `pid`): dnsperf self-paced (100
/// outstanding); if it lost more than 0.1%, fixed rates from 90% of what it reached down by
/// 20% steps until one loses ≤ 0.1%. At least [`MIN_RCODE_SHARE`] of the answers must carry
/// `rcode`.
pub async fn max_qps_run(
    port: u16,
    pid: u32,
    file: &Path,
    seconds: u64,
    rcode: &str,
    sender: dnsperf::Sender,
) -> Result<QpsRun> {
    max_qps_run_with(port, pid, seconds, rcode, sender, &mut || {
        Ok(file.to_path_buf())
    })
    .await
}

/// Like [`max_qps_run`], with the query file of each dnsperf run from `file` (the
/// forwarded-miss rows give every run names never asked before).
pub async fn max_qps_run_with(
    port: u16,
    pid: u32,
    seconds: u64,
    rcode: &str,
    sender: dnsperf::Sender,
    file: &mut dyn FnMut() -> Result<std::path::PathBuf>,
) -> Result<QpsRun> {
    let mut summaries = Vec::new();
    let mut rate = None;
    for _ in 0..5 {
        let queries = file()?;
        let cpu_before = sys::cpu_seconds(pid);
        let s = dnsperf::Run {
            port,
            queries: &queries,
            seconds,
            rate,
            verbose: false,
            sender,
        }
        .run()
        .await?;
        let cpu = sys::cpu_seconds(pid)
            .zip(cpu_before)
            .map(|(after, before)| after - before)
            .filter(|cpu| *cpu > 0.0);
        if rate.is_none() {
            let share = s.share(rcode);
            if share < MIN_RCODE_SHARE {
                let seen = s.main_rcode().unwrap_or("no answers").to_string();
                summaries.push((None, s));
                return Ok(QpsRun {
                    qps: 0.0,
                    summaries,
                    wrong_rcode: Some(format!(
                        "{seen} under load ({:.1}% {})",
                        share * 100.0,
                        rcode
                    )),
                    per_cpu_second: None,
                });
            }
        }
        let ok = s.loss() <= MAX_LOSS;
        let (qps, completed) = (s.qps, s.completed);
        let next = (rate.map_or(qps * 0.9, |r| r as f64 * 0.8)).max(1.0) as u64;
        summaries.push((rate, s));
        if ok {
            return Ok(QpsRun {
                qps,
                summaries,
                wrong_rcode: None,
                per_cpu_second: cpu.map(|cpu| completed as f64 / cpu),
            });
        }
        rate = Some(next);
    }
    Ok(QpsRun {
        qps: 0.0,
        summaries,
        wrong_rcode: None,
        per_cpu_second: None,
    })
}

/// Latency quantiles of one fixed-rate run, lost queries counting as infinitely late.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyRun {
    /// Median, seconds (`None`: lost).
    pub p50: Option<f64>,
    /// 99th percentile, seconds (`None`: lost).
    pub p99: Option<f64>,
    /// 99.9th percentile, seconds (`None`: lost).
    pub p999: Option<f64>,
    /// Queries per second answered.
    pub qps: f64,
    /// Lost fraction.
    pub loss: f64,
    /// The server's cache misses during the run, when its metrics could be read.
    pub cache_misses: Option<f64>,
}

/// The quantiles of `summary` (needs `-v` latencies).
pub fn latency_of(summary: &Summary) -> LatencyRun {
    let mut all = summary.latencies_s.clone();
    all.sort_by(|a, b| a.total_cmp(b));
    all.extend(std::iter::repeat_n(f64::INFINITY, summary.lost as usize));
    let q = |q| quantile_sorted(&all, q).filter(|v: &f64| v.is_finite());
    LatencyRun {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        qps: summary.qps,
        loss: summary.loss(),
        cache_misses: None,
    }
}

/// Probe verdicts of one query type: (CoreDNS, nameplane).
type Verdicts = (Result<(), String>, Result<(), String>);

/// State and results of one object set.
pub struct SetRun<'a> {
    /// Knobs.
    pub settings: &'a Settings,
    /// The set.
    pub set: &'a ObjectSet,
    /// Query files and probes.
    pub queries: &'a Queries,
    /// ClusterIPs of `s0..`.
    pub cluster_ips: &'a [Ipv4Addr],
    /// Work directory of the set.
    pub dir: std::path::PathBuf,
    /// Rows so far.
    pub rows: Vec<Row>,
    /// Failed steps.
    pub errors: Vec<String>,
    /// Raw data.
    pub raw: serde_json::Map<String, Value>,
    /// Probe results.
    pub support: Vec<Support>,
    /// Per kind: (CoreDNS ok, nameplane ok).
    supported: HashMap<&'static str, Verdicts>,
}

impl<'a> SetRun<'a> {
    /// A fresh set run.
    pub fn new(
        settings: &'a Settings,
        set: &'a ObjectSet,
        queries: &'a Queries,
        cluster_ips: &'a [Ipv4Addr],
        dir: std::path::PathBuf,
    ) -> Self {
        Self {
            settings,
            set,
            queries,
            cluster_ips,
            dir,
            rows: Vec::new(),
            errors: Vec::new(),
            raw: serde_json::Map::new(),
            support: Vec::new(),
            supported: HashMap::new(),
        }
    }

    /// The query types this run times (`BENCH_TYPES`), in report order.
    fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.settings.times_type(k.key()))
            .collect()
    }

    /// Records a failed step.
    pub fn error(&mut self, step: &str, error: &anyhow::Error) {
        let text = format!("{step}: {error:#}");
        eprintln!("[bench] ERROR {text}");
        self.errors.push(text);
    }

    fn ok_for(&self, kind: Kind, who: Who) -> Result<(), String> {
        match (self.supported.get(kind.key()), who) {
            (Some((c, _)), Who::CoreDns) => c.clone(),
            (Some((_, n)), Who::Nameplane) => n.clone(),
            _ => Ok(()),
        }
    }

    /// Probes every query type on both servers (and pod records, as a feature).
    pub async fn probe_support(&mut self, servers: &Servers) {
        eprintln!("[bench] probing which query types each server answers correctly");
        for kind in self.kinds() {
            let probes = self.queries.probes(kind);
            // External names: the first query fills the cache; probe twice.
            if kind == Kind::External {
                let _ = queries::check(servers.coredns.port, probes).await;
                let _ = queries::check(servers.nameplane.port, probes).await;
            }
            let c = queries::check(servers.coredns.port, probes).await;
            let n = queries::check(servers.nameplane.port, probes).await;
            let text = |r: &Result<(), String>| match r {
                Ok(()) => "ok".to_string(),
                Err(why) => format!("unsupported: {why}"),
            };
            eprintln!(
                "[bench]   {:<12} CoreDNS {:<40} nameplane {}",
                kind.key(),
                text(&c),
                text(&n)
            );
            self.support.push(Support {
                query: kind.label(self.set),
                example: format!("{} {:?}", probes[0].name, probes[0].rtype),
                coredns: text(&c),
                nameplane: text(&n),
                knot: None,
            });
            self.supported.insert(kind.key(), (c, n));
        }
        let c = queries::check(servers.coredns.port, &self.queries.pod_probes).await;
        let n = queries::check(servers.nameplane.port, &self.queries.pod_probes).await;
        let text = |r: &Result<(), String>| match r {
            Ok(()) => "ok".to_string(),
            Err(why) => format!("unsupported: {why}"),
        };
        self.support.push(Support {
            query: "pod A (pods verified; feature only, not timed)".into(),
            example: format!("{} A", self.queries.pod_probes[0].name),
            coredns: text(&c),
            nameplane: text(&n),
            knot: None,
        });
    }

    /// Max QPS for every type, both servers, runs interleaved (CoreDNS, nameplane, CoreDNS,
    /// ...) so background load drifts hit both alike. Returns CoreDNS's median per type.
    pub async fn qps(&mut self, servers: &Servers) -> HashMap<&'static str, f64> {
        let mut coredns_max = HashMap::new();
        for kind in self.kinds() {
            let file = self.queries.file(kind).to_path_buf();
            eprintln!("[bench] max QPS, {}", kind.label(self.set));
            let mut cells = Vec::new();
            let mut raw = serde_json::Map::new();
            let who = [
                (
                    Who::CoreDns,
                    servers.coredns.port,
                    servers.coredns.proc.pid(),
                ),
                (
                    Who::Nameplane,
                    servers.nameplane.port,
                    servers.nameplane.proc.pid(),
                ),
            ];
            let active: Vec<(Who, u16, u32)> = who
                .iter()
                .copied()
                .filter(|(w, _, _)| self.ok_for(kind, *w).is_ok())
                .collect();
            for &(_, port, _) in &active {
                let _ = dnsperf::Run {
                    port,
                    queries: &file,
                    seconds: self.settings.warmup_s,
                    rate: None,
                    verbose: false,
                    sender: dnsperf::Sender::PLAIN,
                }
                .run()
                .await;
            }
            let mut runs: HashMap<&str, Vec<QpsRun>> = HashMap::new();
            for r in 0..self.settings.runs {
                for &(w, port, pid) in &active {
                    match max_qps_run(
                        port,
                        pid,
                        &file,
                        self.settings.duration_s,
                        kind.rcode(),
                        dnsperf::Sender::PLAIN,
                    )
                    .await
                    {
                        Ok(run) => {
                            eprintln!(
                                "[bench]   run {}: {:<9} {:>9.0} QPS, {:>9.0} per CPU-second{}",
                                r + 1,
                                w.key(),
                                run.qps,
                                run.per_cpu_second.unwrap_or(f64::NAN),
                                run.wrong_rcode
                                    .as_ref()
                                    .map(|w| format!(" ({w})"))
                                    .unwrap_or_default()
                            );
                            runs.entry(w.key()).or_default().push(run);
                        }
                        Err(e) => self.error(&format!("dnsperf {} {}", w.key(), kind.key()), &e),
                    }
                }
            }
            if self.settings.perf {
                for (w, pid, port) in [
                    (
                        Who::CoreDns,
                        servers.coredns.proc.pid(),
                        servers.coredns.port,
                    ),
                    (
                        Who::Nameplane,
                        servers.nameplane.proc.pid(),
                        servers.nameplane.port,
                    ),
                ] {
                    if active.iter().any(|(a, _, _)| *a == w) {
                        let out = self.dir.join(format!("perf-{}-{}", w.key(), kind.key()));
                        match profile(pid, port, &file, self.settings.duration_s, &out).await {
                            Ok(()) => {
                                eprintln!("[bench]   perf profile: {}.txt", sys::relative(&out))
                            }
                            Err(e) => self.error(&format!("perf {} {}", w.key(), kind.key()), &e),
                        }
                    }
                }
            }
            let mut per_cpu_cells = Vec::new();
            for w in [Who::CoreDns, Who::Nameplane] {
                let its_runs = runs.get(w.key()).map(Vec::as_slice).unwrap_or_default();
                let (cell, per_cpu) = match self.ok_for(kind, w) {
                    Err(why) => (
                        Cell::missing(format!("unsupported: {why}")),
                        Cell::missing(format!("unsupported: {why}")),
                    ),
                    Ok(()) => (qps_cell(its_runs), per_cpu_cell(its_runs)),
                };
                per_cpu_cells.push(per_cpu);
                raw.insert(
                    w.key().into(),
                    json!(runs.get(w.key()).map(|rs| rs.iter().map(|r| json!({
                        "qps": r.qps,
                        "perCpuSecond": r.per_cpu_second,
                        "wrongRcode": r.wrong_rcode,
                        "dnsperf": r.summaries.iter().map(|(rate, s)| json!({"rate": rate, "summary": s})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>())),
                );
                cells.push(cell);
            }
            if let Some(v) = cells[0].value {
                coredns_max.insert(kind.key(), v);
            }
            self.raw
                .insert(format!("qps_{}", kind.key()), Value::Object(raw));
            let qps_method = format!(
                "dnsperf -e -c 1 -q 100 -t 2 pinned to CPU {}, server pinned to CPU {}, {} s per run after {} s warm-up, the type's query file (work/<set>/queries/<type>.txt) sent in a loop; self-paced, and if that lost >0.1% the highest of 90%, 72%, ... of its rate that lost ≤0.1%; a run counts only if ≥99.9% of answers carry the type's rcode; runs of the two servers interleaved",
                dnsperf::LOADGEN_CPU,
                servers::SERVER_CPU,
                self.settings.duration_s,
                self.settings.warmup_s,
            );
            let per_cpu_method = "the max-QPS runs above: queries answered in the counted dnsperf run divided by the user + system CPU time of the server process meanwhile (/proc/<pid>/stat, 10 ms ticks). What one fully busy core answers: where dnsperf saturates its own CPU first (the server's CPU is not fully busy), max QPS shows the load generator's limit and this row the server's".to_string();
            let label = kind.label(self.set);
            for (metric, unit, mut pair, method) in [
                (format!("max QPS, {label}"), "QPS", cells, qps_method),
                (
                    format!("queries per server CPU-second, {label}"),
                    "QPS/CPU-s",
                    per_cpu_cells,
                    per_cpu_method,
                ),
            ] {
                let nameplane = pair.pop().expect("two cells");
                let coredns = pair.pop().expect("two cells");
                self.rows.push(Row {
                    section: "qps".into(),
                    metric,
                    unit: unit.into(),
                    better: Better::Higher,
                    coredns,
                    nameplane,
                    knot: None,
                    target: Target::Ratio { ratio: 3.0 },
                    knot_share_target: Some(0.5),
                    method,
                });
            }
        }
        coredns_max
    }

    /// p50/p99 at half of CoreDNS's max QPS, for every type CoreDNS has a max for.
    pub async fn latency(&mut self, servers: &Servers, coredns_max: &HashMap<&'static str, f64>) {
        for kind in self.kinds() {
            let Some(max) = coredns_max.get(kind.key()) else {
                continue;
            };
            let rate = (max / 2.0).max(1.0) as u64;
            eprintln!(
                "[bench] latency at {rate} QPS (half of CoreDNS's max), {}",
                kind.label(self.set)
            );
            let file = self.queries.file(kind).to_path_buf();
            let mut per: HashMap<&str, Vec<LatencyRun>> = HashMap::new();
            for _ in 0..self.settings.runs {
                for (w, port) in [
                    (Who::CoreDns, servers.coredns.port),
                    (Who::Nameplane, servers.nameplane.port),
                ] {
                    if self.ok_for(kind, w).is_err() {
                        continue;
                    }
                    // Cache misses during the run tell a slow tail of refetches from one
                    // of the server itself (both servers export CoreDNS's cache metrics).
                    let metrics = servers.metrics_addr(w);
                    let misses = || {
                        metrics
                            .as_deref()
                            .and_then(|m| servers::metric_sum(m, "coredns_cache_misses_total"))
                    };
                    let misses_before = misses();
                    let run = dnsperf::Run {
                        port,
                        queries: &file,
                        seconds: self.settings.duration_s,
                        rate: Some(rate),
                        verbose: true,
                        sender: dnsperf::Sender::PLAIN,
                    }
                    .run()
                    .await;
                    let cache_misses = misses().zip(misses_before).map(|(a, b)| a - b);
                    match run {
                        Ok(s) => {
                            let mut run = latency_of(&s);
                            run.cache_misses = cache_misses;
                            eprintln!(
                                "[bench]   {:<9} p50 {:.3} ms, p99 {:.3} ms, cache misses {}",
                                w.key(),
                                run.p50.unwrap_or(f64::NAN) * 1e3,
                                run.p99.unwrap_or(f64::NAN) * 1e3,
                                cache_misses.map_or("?".into(), |m| m.to_string())
                            );
                            per.entry(w.key()).or_default().push(run)
                        }
                        Err(e) => self.error(&format!("latency {} {}", w.key(), kind.key()), &e),
                    }
                }
            }
            let support = (
                self.ok_for(kind, Who::CoreDns),
                self.ok_for(kind, Who::Nameplane),
            );
            let cell = |w: Who, pick: fn(&LatencyRun) -> Option<f64>| -> Cell {
                let ok = if w == Who::CoreDns {
                    &support.0
                } else {
                    &support.1
                };
                if let Err(why) = ok {
                    return Cell::missing(format!("unsupported: {why}"));
                }
                let runs = per.get(w.key()).cloned().unwrap_or_default();
                if runs.is_empty() {
                    return Cell::missing("no run");
                }
                let values: Vec<Option<f64>> = runs.iter().map(pick).collect();
                if values.iter().filter(|v| v.is_none()).count() * 2 > values.len() {
                    return Cell::missing("lost (more loss than the quantile)");
                }
                Cell::of_runs(values.into_iter().flatten().map(|v| v * 1000.0).collect())
            };
            let label = kind.label(self.set);
            for (name, pick) in [
                (
                    "p50",
                    (|r: &LatencyRun| r.p50) as fn(&LatencyRun) -> Option<f64>,
                ),
                ("p99", |r: &LatencyRun| r.p99),
            ] {
                let row = Row {
                    section: "latency".into(),
                    metric: format!("{name} latency at {rate} QPS, {label}"),
                    unit: "ms".into(),
                    better: Better::Lower,
                    coredns: cell(Who::CoreDns, pick),
                    nameplane: cell(Who::Nameplane, pick),
                    knot: None,
                    target: if name == "p99" {
                        Target::Ratio { ratio: 0.5 }
                    } else {
                        Target::None
                    },
                    knot_share_target: None,
                    method: format!(
                        "dnsperf -Q <half of CoreDNS's max QPS for the type> -v (per-query latency), {} s per run, lost queries count as infinitely late; median over runs of each run's quantile",
                        self.settings.duration_s
                    ),
                };
                self.rows.push(row);
            }
            self.raw.insert(
                format!("latency_{}", kind.key()),
                Value::Object(per.iter().map(|(k, v)| (k.to_string(), json!(v.iter().map(|r| json!({"p50": r.p50, "p99": r.p99, "p999": r.p999, "qps": r.qps, "loss": r.loss, "cache_misses": r.cache_misses})).collect::<Vec<_>>()))).collect()),
            );
        }
    }

    /// Knot DNS serving the same names from static zones on the server CPU: its max QPS per
    /// type goes into the QPS rows.
    pub async fn knot_ceiling(&mut self) {
        eprintln!("[bench] Knot DNS static-zone ceiling (same names, same CPU)");
        let zones = queries::knot_zones(self.set, self.cluster_ips);
        let dir = self.dir.join("knot-ceiling");
        let (mut knot, port) =
            match servers::start_knot("knot-ceiling", &dir, servers::SERVER_CPU, &zones).await {
                Ok(k) => k,
                Err(e) => {
                    self.error("starting Knot", &e);
                    return;
                }
            };
        let mut raw = serde_json::Map::new();
        for kind in self.kinds() {
            let file = self.queries.file(kind).to_path_buf();
            let probe_result = queries::check(port, self.queries.probes(kind)).await;
            if let Some(s) = self
                .support
                .iter_mut()
                .find(|s| s.query == kind.label(self.set))
            {
                s.knot = Some(match &probe_result {
                    Ok(()) => "ok".into(),
                    Err(why) => format!("unsupported: {why}"),
                });
            }
            let (cell, per_cpu) = match probe_result {
                Err(why) => (
                    Cell::missing(format!("unsupported: {why}")),
                    Cell::missing(format!("unsupported: {why}")),
                ),
                Ok(()) => {
                    let _ = dnsperf::Run {
                        port,
                        queries: &file,
                        seconds: self.settings.warmup_s,
                        rate: None,
                        verbose: false,
                        sender: dnsperf::Sender::PLAIN,
                    }
                    .run()
                    .await;
                    let mut runs = Vec::new();
                    for _ in 0..self.settings.runs {
                        match max_qps_run(
                            port,
                            knot.pid(),
                            &file,
                            self.settings.duration_s,
                            kind.rcode(),
                            dnsperf::Sender::PLAIN,
                        )
                        .await
                        {
                            Ok(r) => runs.push(r),
                            Err(e) => self.error(&format!("dnsperf knot {}", kind.key()), &e),
                        }
                    }
                    eprintln!(
                        "[bench]   knot {:<12} {:?} QPS, {:?} per CPU-second",
                        kind.key(),
                        runs.iter().map(|r| r.qps.round()).collect::<Vec<_>>(),
                        runs.iter()
                            .map(|r| r.per_cpu_second.map(f64::round))
                            .collect::<Vec<_>>()
                    );
                    raw.insert(
                        kind.key().into(),
                        json!(
                            runs.iter()
                                .map(|r| json!({"qps": r.qps, "perCpuSecond": r.per_cpu_second}))
                                .collect::<Vec<_>>()
                        ),
                    );
                    (qps_cell(&runs), per_cpu_cell(&runs))
                }
            };
            let label = kind.label(self.set);
            for (metric, cell) in [
                (format!("max QPS, {label}"), cell),
                (format!("queries per server CPU-second, {label}"), per_cpu),
            ] {
                if let Some(row) = self.rows.iter_mut().find(|r| r.metric == metric) {
                    row.knot = Some(cell);
                }
            }
        }
        let _ = knot.check_running();
        knot.stop();
        self.raw.insert("knot_ceiling".into(), Value::Object(raw));
    }

    /// RSS of both servers now (after sync) and their peak so far.
    pub fn rss_after_sync(&mut self, servers: &Servers) {
        let c = servers.coredns.proc.pid();
        let n = servers.nameplane.proc.pid();
        let mib = |kb: Option<u64>| kb.map(|k| k as f64 / 1024.0);
        let cell = |v: Option<f64>| {
            v.map(Cell::one)
                .unwrap_or_else(|| Cell::missing("process gone"))
        };
        let large = self.set.name == "large";
        self.rows.push(Row {
            section: "memory".into(),
            metric: "RSS after sync".into(),
            unit: "MiB".into(),
            better: Better::Lower,
            coredns: cell(mib(sys::rss_kb(c))),
            nameplane: cell(mib(sys::rss_kb(n))),
            knot: None,
            target: if large { Target::Ratio { ratio: 1.0 / 3.0 } } else { Target::None },
            knot_share_target: None,
            method: "VmRSS from /proc/<pid>/status once both servers are ready, answer every probe and have idled a few seconds (before any query load)".into(),
        });
        self.rows.push(Row {
            section: "memory".into(),
            metric: "peak RSS during start-up and initial list".into(),
            unit: "MiB".into(),
            better: Better::Lower,
            coredns: cell(mib(sys::peak_rss_kb(c))),
            nameplane: cell(mib(sys::peak_rss_kb(n))),
            knot: None,
            target: Target::None,
            knot_share_target: None,
            method: "VmHWM from /proc/<pid>/status at the same moment".into(),
        });
    }

    /// Restarts kube-apiserver and records each server's peak RSS and CPU time until both have
    /// re-synced (CPU idle again and probes answer).
    pub async fn relist(&mut self, servers: &mut Servers) -> Result<()> {
        eprintln!("[bench] peak RSS during a re-list: restarting kube-apiserver");
        let pids = [servers.coredns.proc.pid(), servers.nameplane.proc.pid()];
        let cpu0: Vec<f64> = pids
            .iter()
            .map(|&p| sys::cpu_seconds(p).unwrap_or(0.0))
            .collect();
        for &p in &pids {
            sys::reset_peak_rss(p)?;
        }
        let down = tokio::task::spawn_blocking(|| {
            crate::cluster::restart_apiserver(Duration::from_secs(120))
        })
        .await??;
        eprintln!(
            "[bench]   kube-apiserver back after {:.1} s; waiting for both servers to settle",
            down.as_secs_f64()
        );
        let started = Instant::now();
        let mut last: Vec<f64> = cpu0.clone();
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            servers.coredns.proc.check_running()?;
            servers.nameplane.proc.check_running()?;
            let now: Vec<f64> = pids
                .iter()
                .map(|&p| sys::cpu_seconds(p).unwrap_or(0.0))
                .collect();
            let busy = now.iter().zip(&last).any(|(n, l)| n - l > 0.05);
            last = now;
            if busy {
                quiet_since = Instant::now();
            }
            // Watches reconnect with back-off (client-go and kube-rs: up to ~30 s); wait long
            // enough for a re-list to start before calling it settled.
            if started.elapsed() > Duration::from_secs(if self.settings.smoke { 8 } else { 40 })
                && quiet_since.elapsed() > Duration::from_secs(5)
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(180) {
                self.errors
                    .push("re-list: servers still busy 180 s after the API server restart".into());
                break;
            }
        }
        let c_ok =
            queries::check(servers.coredns.port, self.queries.probes(Kind::ClusterIpA)).await;
        let n_ok = queries::check(
            servers.nameplane.port,
            self.queries.probes(Kind::ClusterIpA),
        )
        .await;
        let cpu1: Vec<f64> = pids
            .iter()
            .map(|&p| sys::cpu_seconds(p).unwrap_or(0.0))
            .collect();
        let peak: Vec<Option<f64>> = pids
            .iter()
            .map(|&p| sys::peak_rss_kb(p).map(|k| k as f64 / 1024.0))
            .collect();
        let cell = |i: usize, ok: &Result<(), String>| {
            let c = peak[i]
                .map(Cell::one)
                .unwrap_or_else(|| Cell::missing("process gone"));
            match ok {
                Ok(()) => c.with_note(format!("{:.2} CPU-s", cpu1[i] - cpu0[i])),
                Err(why) => c.with_note(format!("after restart: {why}")),
            }
        };
        self.rows.push(Row {
            section: "memory".into(),
            metric: "peak RSS during re-list after API server restart".into(),
            unit: "MiB".into(),
            better: Better::Lower,
            coredns: cell(0, &c_ok),
            nameplane: cell(1, &n_ok),
            knot: None,
            target: Target::None,
            knot_share_target: None,
            method: format!(
                "peak RSS reset (echo 5 > /proc/<pid>/clear_refs), kube-apiserver restarted in place (down {:.1} s), VmHWM read once both servers' CPU time stayed flat for 5 s (≥ {} s after the restart); the note gives CPU seconds each spent meanwhile, which shows whether it re-listed",
                down.as_secs_f64(),
                if self.settings.smoke { 8 } else { 40 }
            ),
        });
        Ok(())
    }

    /// Service created → first correct A answer, both servers polled every 10 ms from the
    /// moment the create request is sent.
    pub async fn programming(&mut self, client: &Client, servers: &Servers) -> Result<()> {
        let ns = format!("bench-prog-{}", self.set.name);
        let n = self.settings.programming_services;
        eprintln!("[bench] programming latency over {n} new Services in {ns}");
        objects::create_service(client, "bench-00", "s0", false).await?;
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let _ = api
            .create(
                &Default::default(),
                &serde_json::from_value(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )?,
            )
            .await;
        // Our own watch: when the API server delivers the new Service to a watcher (a lower
        // bound for any DNS server).
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let watch = {
            let seen = seen.clone();
            let api: Api<Service> = Api::namespaced(client.clone(), &ns);
            tokio::spawn(async move {
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = event
                        && let Some(name) = s.metadata.name
                    {
                        seen.lock()
                            .expect("lock")
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut c_s, mut n_s, mut w_s) = (Vec::new(), Vec::new(), Vec::new());
        let mut c_timeouts = 0;
        let mut n_timeouts = 0;
        for i in 0..n {
            let name = format!("prog-{i}");
            let started = Instant::now();
            let ip = objects::create_service(client, &ns, &name, false)
                .await?
                .context("no ClusterIP")?;
            let fqdn = format!("{name}.{ns}.svc.cluster.local.");
            let (c, nm) = tokio::join!(
                first_answer(servers.coredns.port, &fqdn, ip, started),
                first_answer(servers.nameplane.port, &fqdn, ip, started)
            );
            match c {
                Some(d) => c_s.push(d.as_secs_f64() * 1000.0),
                None => c_timeouts += 1,
            }
            match nm {
                Some(d) => n_s.push(d.as_secs_f64() * 1000.0),
                None => n_timeouts += 1,
            }
            if let Some(t) = seen.lock().expect("lock").get(&name) {
                w_s.push(t.duration_since(started).as_secs_f64() * 1000.0);
            }
        }
        watch.abort();
        let quant = |v: &[f64], q: f64| {
            let mut s = v.to_vec();
            s.sort_by(|a, b| a.total_cmp(b));
            quantile_sorted(&s, q)
        };
        let cell = |v: &[f64], timeouts: usize, q: f64| {
            let c = quant(v, q)
                .map(Cell::one)
                .unwrap_or_else(|| Cell::missing("never answered"));
            if timeouts > 0 {
                c.with_note(format!("{timeouts} of {n} never answered within 30 s"))
            } else {
                c
            }
        };
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            self.rows.push(Row {
                section: "programming".into(),
                metric: format!("programming latency {name} (Service created → first correct answer)"),
                unit: "ms".into(),
                better: Better::Lower,
                coredns: cell(&c_s, c_timeouts, q),
                nameplane: cell(&n_s, n_timeouts, q),
                knot: None,
                target: Target::Ratio { ratio: 1.0 },
                knot_share_target: None,
                method: format!(
                    "{n} ClusterIP Services created one after another; from sending the create request, each server is asked every 10 ms until it answers with the new ClusterIP (30 s limit). Client-visible: a NXDOMAIN cached by a server (CoreDNS `cache 30` keeps negative answers for the SOA minimum, 5 s) delays it. For reference, the bench's own watch saw the Service after p50 {:.1} ms / p99 {:.1} ms",
                    quant(&w_s, 0.5).unwrap_or(f64::NAN),
                    quant(&w_s, 0.99).unwrap_or(f64::NAN)
                ),
            });
        }
        self.raw.insert(
            "programming_ms".into(),
            json!({"coredns": c_s, "nameplane": n_s, "watch": w_s}),
        );
        Ok(())
    }

    /// nameplane: ConfigMap update → new TTL in answers (the main instance).
    pub async fn config_change_configmap(
        &mut self,
        client: &Client,
        servers: &Servers,
        config: &Value,
    ) -> Result<Vec<f64>> {
        let n = self.settings.nameplane_config_changes;
        eprintln!("[bench] config change → answer: nameplane ConfigMap updates ({n})");
        let name = self.queries.probes(Kind::ClusterIpA)[0].name.clone();
        let mut samples = Vec::new();
        for k in 0..n {
            let ttl = 6 + k as u32;
            let mut cfg = config.clone();
            cfg["kubernetes"]["ttlSeconds"] = json!(ttl);
            let started = Instant::now();
            servers::write_config_map(client, "bench", "nameplane-config", &cfg).await?;
            let d = wait_ttl(
                servers.nameplane.port,
                &name,
                ttl,
                Duration::from_secs(30),
                Duration::from_millis(10),
            )
            .await;
            samples.push(d.map_or(f64::INFINITY, |_| started.elapsed().as_secs_f64()));
        }
        Ok(samples)
    }

    /// nameplane: DNSServer apply → operator → ConfigMap → new TTL in answers, with the
    /// operator and a second nameplane-dns following its ConfigMap.
    pub async fn config_change_cr(&mut self, bin_dir: &Path) -> Result<Vec<f64>> {
        let n = self.settings.nameplane_config_changes;
        eprintln!(
            "[bench] config change → answer: nameplane DNSServer applies through the operator ({n})"
        );
        let root = sys::repo_root();
        let k = |args: &[&str], stdin: Option<&str>| crate::cluster::kubectl_run(args, stdin);
        k(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=nameplane-bench",
                "-f",
                &root.join("crds").display().to_string(),
            ],
            None,
        )?;
        for plural in [
            "dnsservers",
            "dnszones",
            "stubdomains",
            "rewriterules",
            "dnspolicies",
        ] {
            k(
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    &format!("crd/{plural}.nameplane.io"),
                ],
                None,
            )?;
        }
        let ns = format!("bench-live-{}", self.set.name);
        k(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: nameplane-system\n"
            )),
        )?;
        let metrics = format!("127.0.0.1:{}", sys::free_port());
        let kubeconfig = crate::cluster::kubeconfig()?;
        let mut operator = sys::Proc::start(
            "nameplane-operator",
            None,
            &bin_dir.join("nameplane-operator"),
            &[
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                "--metrics-listen".into(),
                metrics,
                "--leader-elect".into(),
                "false".into(),
                "--identity".into(),
                "bench".into(),
            ],
            &[("RUST_LOG", "info".into())],
            &self.dir.join("nameplane-operator.log"),
        )?;
        k(
            &["apply", "-n", &ns, "-f", "-"],
            Some(
                "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata:\n  name: live\nspec:\n  ttlSeconds: 5\n",
            ),
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while k(&["get", "configmap", "-n", &ns, "live-config"], None).is_err() {
            operator.check_running()?;
            if Instant::now() > deadline {
                bail!("the operator did not write {ns}/live-config within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut dns = Nameplane::start(
            "nameplane-dns-live",
            &bin_dir.join("nameplane-dns"),
            &self.dir,
            &format!("{ns}/live-config"),
            Some(servers::SERVER_CPU),
        )?;
        dns.wait_ready(Duration::from_secs(180)).await?;
        let name = self.queries.probes(Kind::ClusterIpA)[0].name.clone();
        let mut samples = Vec::new();
        for i in 0..n {
            let ttl = 6 + i as u32;
            let started = Instant::now();
            k(
                &[
                    "patch",
                    "dnsserver",
                    "live",
                    "-n",
                    &ns,
                    "--type=merge",
                    "-p",
                    &format!("{{\"spec\":{{\"ttlSeconds\":{ttl}}}}}"),
                ],
                None,
            )?;
            let d = wait_ttl(
                dns.port,
                &name,
                ttl,
                Duration::from_secs(30),
                Duration::from_millis(10),
            )
            .await;
            samples.push(d.map_or(f64::INFINITY, |_| started.elapsed().as_secs_f64()));
        }
        dns.proc.stop();
        operator.stop();
        Ok(samples)
    }

    /// CoreDNS: Corefile edit → `reload` plugin → new TTL in answers.
    pub async fn config_change_coredns(&mut self, servers: &mut Servers) -> Result<Vec<f64>> {
        let n = self.settings.coredns_config_changes;
        let reload = if self.settings.coredns_reload.is_empty() {
            "default 30 s ± 15 s"
        } else {
            self.settings.coredns_reload.as_str()
        };
        eprintln!(
            "[bench] config change → answer: CoreDNS Corefile edits ({n}, reload {reload}; each takes up to ~45 s)"
        );
        let name = self.queries.probes(Kind::ClusterIpA)[0].name.clone();
        let mut samples = Vec::new();
        for k in 0..n {
            let ttl = 6 + k as u32;
            let started = Instant::now();
            servers.coredns.write_ttl(ttl)?;
            let d = wait_ttl(
                servers.coredns.port,
                &name,
                ttl,
                Duration::from_secs(120),
                Duration::from_millis(10),
            )
            .await;
            samples.push(d.map_or(f64::INFINITY, |_| started.elapsed().as_secs_f64()));
            eprintln!(
                "[bench]   CoreDNS change {}: {:.2} s",
                k + 1,
                samples.last().copied().unwrap_or_default()
            );
            servers.coredns.wait_ready(Duration::from_secs(120)).await?;
        }
        Ok(samples)
    }

    /// Rows for the config-change samples.
    pub fn config_rows(
        &mut self,
        coredns: Result<Vec<f64>>,
        cr: Result<Vec<f64>>,
        cm: Result<Vec<f64>>,
    ) {
        let reload = if self.settings.coredns_reload.is_empty() {
            "reload plugin at its default 30 s ± 15 s".to_string()
        } else {
            format!(
                "reload {} (smoke; the default is 30 s ± 15 s)",
                self.settings.coredns_reload
            )
        };
        let mut to_cell = |what: &str, r: Result<Vec<f64>>, q: f64| -> Cell {
            match r {
                Ok(v) if v.is_empty() => Cell::missing("no sample"),
                Ok(v) => {
                    let mut s = v.clone();
                    s.sort_by(|a, b| a.total_cmp(b));
                    let value = quantile_sorted(&s, q).unwrap_or(f64::INFINITY);
                    if value.is_finite() {
                        Cell {
                            value: Some(value),
                            runs: v,
                            note: None,
                        }
                    } else {
                        Cell::missing("not seen within the time limit")
                    }
                }
                Err(e) => {
                    self.errors.push(format!("config change ({what}): {e:#}"));
                    Cell::missing(format!(
                        "error: {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ))
                }
            }
        };
        let copy = |r: &Result<Vec<f64>>| match r {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        let c50 = to_cell("CoreDNS", copy(&coredns), 0.5);
        let c99 = to_cell("CoreDNS", coredns, 0.99);
        let r50 = to_cell("nameplane CR", copy(&cr), 0.5);
        let r99 = to_cell("nameplane CR", cr, 0.99);
        let m50 = to_cell("nameplane ConfigMap", copy(&cm), 0.5);
        let m99 = to_cell("nameplane ConfigMap", cm, 0.99);
        let method_cr = format!(
            "nameplane: `kubectl patch dnsserver` (new ttlSeconds) → operator renders → ConfigMap → nameplane-dns watch → first answer with the new TTL, polled every 10 ms; CoreDNS: Corefile rewritten with a new `ttl` → {reload} → first answer with the new TTL. In a cluster CoreDNS also waits for the kubelet to refresh the ConfigMap volume (up to ~1 min more); not included here"
        );
        for (name, c, r, target) in [
            ("p50", c50, r50, Target::None),
            ("p99", c99, r99, Target::AtMost { value: 1.0 }),
        ] {
            self.rows.push(Row {
                section: "config".into(),
                metric: format!("config change → new behaviour {name} (nameplane CR apply vs CoreDNS Corefile reload)"),
                unit: "s".into(),
                better: Better::Lower,
                coredns: c,
                nameplane: r,
                knot: None,
                target,
                knot_share_target: None,
                method: method_cr.clone(),
            });
        }
        for (name, m) in [("p50", m50), ("p99", m99)] {
            self.rows.push(Row {
                section: "config".into(),
                metric: format!("config change → new behaviour {name} (nameplane ConfigMap update)"),
                unit: "s".into(),
                better: Better::Lower,
                coredns: Cell::missing("n/a (see the CR row)"),
                nameplane: m,
                knot: None,
                target: Target::None,
                knot_share_target: None,
                method: "server only: the bench rewrites the server's ConfigMap (server-side apply) with a new ttlSeconds, then polls every 10 ms for the new TTL".into(),
            });
        }
    }
}

/// Records a flat `perf` profile (user and kernel symbols, 999 Hz) of `pid` during one
/// self-paced dnsperf run; writes `<out>.data` and the report `<out>.txt`.
pub async fn profile(pid: u32, port: u16, file: &Path, seconds: u64, out: &Path) -> Result<()> {
    let data = out.with_extension("data");
    let mut perf = tokio::process::Command::new("perf")
        .args(["record", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("running perf (apt-get install linux-perf)")?;
    let load = dnsperf::Run {
        port,
        queries: file,
        seconds,
        rate: None,
        verbose: false,
        sender: dnsperf::Sender::PLAIN,
    }
    .run()
    .await;
    let status = perf.wait().await?;
    load?;
    if !status.success() {
        bail!("perf record failed ({status})");
    }
    let report = tokio::process::Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--percent-limit",
            "0.5",
            "--sort",
            "dso,symbol",
            "-i",
        ])
        .arg(&data)
        .output()
        .await?;
    std::fs::write(out.with_extension("txt"), &report.stdout)?;
    Ok(())
}

/// Median queries per server CPU-second over `runs`.
pub fn per_cpu_cell(runs: &[QpsRun]) -> Cell {
    if let Some(wrong) = runs.iter().find_map(|r| r.wrong_rcode.clone()) {
        return Cell::missing(format!("unsupported: {wrong}"));
    }
    let values: Vec<f64> = runs.iter().filter_map(|r| r.per_cpu_second).collect();
    if values.is_empty() {
        return Cell::missing("no CPU time read");
    }
    Cell::of_runs(values)
}

/// Median max QPS over `runs`, or why there is none.
pub fn qps_cell(runs: &[QpsRun]) -> Cell {
    if runs.is_empty() {
        return Cell::missing("no run");
    }
    if let Some(wrong) = runs.iter().find_map(|r| r.wrong_rcode.clone()) {
        return Cell::missing(format!("unsupported: {wrong}"));
    }
    let values: Vec<f64> = runs.iter().map(|r| r.qps).collect();
    let cell = Cell::of_runs(values);
    if runs.iter().any(|r| r.summaries.len() > 1) {
        cell.with_note("rate-limited search")
    } else {
        cell
    }
}

/// Polls `name` A at `port` every 10 ms from `started` until the answer holds `ip` (30 s limit).
async fn first_answer(port: u16, name: &str, ip: Ipv4Addr, started: Instant) -> Option<Duration> {
    let want = ip.to_string();
    while started.elapsed() < Duration::from_secs(30) {
        let asked = Instant::now();
        if let Some(r) = probe::query(port, name, RecordType::A, Duration::from_millis(500)).await
            && r.data(RecordType::A).contains(&want)
        {
            return Some(started.elapsed());
        }
        let spent = asked.elapsed();
        if spent < Duration::from_millis(10) {
            tokio::time::sleep(Duration::from_millis(10) - spent).await;
        }
    }
    None
}

/// Polls `name` A until its TTL is at least `ttl` (answers cached under an older, lower TTL
/// only count down, so this is the new config).
async fn wait_ttl(
    port: u16,
    name: &str,
    ttl: u32,
    limit: Duration,
    every: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(r) = probe::query(port, name, RecordType::A, Duration::from_millis(500)).await
            && r.ttl(RecordType::A).is_some_and(|t| t >= ttl)
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// Median of a list, for messages.
pub fn median_of(v: &[f64]) -> f64 {
    median(v).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_queries_push_quantiles_to_lost() {
        let mut s = Summary {
            sent: 1000,
            completed: 995,
            lost: 5,
            latencies_s: (1..=995).map(|i| i as f64 / 1e6).collect(),
            ..Summary::default()
        };
        let l = latency_of(&s);
        assert_eq!(l.p50, Some(500.0 / 1e6));
        assert_eq!(l.p99, Some(990.0 / 1e6));
        assert_eq!(l.p999, None, "the 99.9th percentile is a lost query");
        s.lost = 0;
        s.latencies_s.truncate(10);
        assert!(latency_of(&s).p99.is_some());
    }

    #[test]
    fn qps_cells_report_wrong_rcodes_as_unsupported() {
        let ok = QpsRun {
            qps: 100.0,
            summaries: vec![(None, Summary::default())],
            wrong_rcode: None,
            per_cpu_second: Some(200.0),
        };
        let bad = QpsRun {
            qps: 0.0,
            summaries: vec![],
            wrong_rcode: Some("REFUSED under load (0.0% NOERROR)".into()),
            per_cpu_second: None,
        };
        assert_eq!(qps_cell(&[ok.clone(), ok.clone()]).value, Some(100.0));
        let c = qps_cell(&[ok, bad]);
        assert_eq!(c.value, None);
        assert!(
            c.note
                .is_some_and(|n| n.starts_with("unsupported: REFUSED"))
        );
    }
}
