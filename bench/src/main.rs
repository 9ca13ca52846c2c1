//! `nameplane-bench`: runs the whole comparison against the control plane that
//! `make cluster-up` started, and writes `results.md` / `results.json`.
//!
//! Started by `bench/scripts/bench.sh` (`make bench`, `make bench-smoke`), which passes the
//! CoreDNS binary in `COREDNS_BIN`. Knobs: see [`nameplane_bench::settings`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::Client;
use nameplane_bench::adversarial::Adversarial;
use nameplane_bench::measure::{Servers, SetRun};
use nameplane_bench::objects::{self, Created};
use nameplane_bench::report::{Better, Cell, Report, Row, SetReport, Target};
use nameplane_bench::servers::{self, Common, CoreDns, Nameplane};
use nameplane_bench::settings::{ObjectSet, Settings};
use nameplane_bench::{cluster, dnsperf, paths, queries, sys};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("[bench] FAILED: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    let mut machine = sys::Machine::describe();
    std::fs::create_dir_all(&settings.out_dir)?;
    let bin_dir = sys::target_dir().join(&settings.profile);
    let coredns_bin = PathBuf::from(
        std::env::var("COREDNS_BIN")
            .context("COREDNS_BIN is not set (bench/scripts/build-coredns.sh prints it)")?,
    );
    for bin in [
        bin_dir.join("nameplane-dns"),
        bin_dir.join("nameplane-operator"),
        coredns_bin.clone(),
    ] {
        if !bin.exists() {
            bail!("{} is missing (make bench builds it)", bin.display());
        }
    }
    eprintln!(
        "[bench] machine: {} CPUs, {}, kernel {}; load average {}",
        machine.nproc, machine.cpu_model, machine.kernel, machine.loadavg_start
    );
    if machine.nproc < 2 {
        eprintln!(
            "[bench] WARNING: one CPU only: servers and dnsperf share it, figures are not comparable to 2-CPU runs"
        );
    }
    let versions = vec![
        (
            "CoreDNS".to_string(),
            sys::first_line(&coredns_bin.display().to_string(), &["-version"]),
        ),
        ("nameplane".to_string(), git_version()),
        ("nameplane profile".to_string(), settings.profile.clone()),
        ("Knot DNS".to_string(), sys::first_line("knotd", &["-V"])),
        ("dnsperf".to_string(), dnsperf_version()),
        (
            "kube-apiserver".to_string(),
            sys::first_line(
                &sys::e2e_dir()
                    .join("bin/kube-apiserver")
                    .display()
                    .to_string(),
                &["--version"],
            ),
        ),
    ];
    let mut notes = vec![
        format!(
            "Servers pinned to CPU {} (taskset), dnsperf to CPU {}, on loopback; CoreDNS with GOMAXPROCS=1, nameplane-dns with --udp-sockets 1 --max-udp-payload 4096 (CoreDNS answers up to the client's EDNS buffer; nameplane's default cap is 1232). The bench harness runs on CPU {}. {}",
            servers::SERVER_CPU,
            dnsperf::LOADGEN_CPU,
            dnsperf::LOADGEN_CPU,
            if settings.pin_control_plane {
                format!("While queries are timed, the control plane (etcd, kube-apiserver, kube-controller-manager) is moved to CPU {} too, so CPU 0 runs only the server under test; it uses every CPU otherwise.", dnsperf::LOADGEN_CPU)
            } else {
                "The control plane (etcd, kube-apiserver, kube-controller-manager) uses every CPU (BENCH_PIN_CONTROL_PLANE=0).".to_string()
            }
        ),
        "Both servers run at once and watch the same API server; each is idle while the other is measured.".into(),
        "kube-controller-manager is restarted with --kube-api-qps=2000 (default 20) so the EndpointSlice controller keeps up with the object creation, and without the legacy Endpoints controllers (neither server reads Endpoints).".into(),
    ];
    if !settings.types.is_empty() || !settings.phases.is_empty() {
        notes.push(format!(
            "A partial run: query types {}, steps {} (BENCH_TYPES, BENCH_PHASES).",
            if settings.types.is_empty() {
                "all".to_string()
            } else {
                settings.types.join(", ")
            },
            if settings.phases.is_empty() {
                "all".to_string()
            } else {
                settings.phases.join(", ")
            },
        ));
    }
    if machine
        .loadavg_start
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l > 0.5)
    {
        notes.push(format!(
            "The machine was not quiet (load average {} at start): other work shares the CPUs, so figures are noisy; compare ratios from the same run, not absolutes across runs.",
            machine.loadavg_start
        ));
    }

    let client = cluster::client().await?;
    eprintln!("[bench] restarting kube-controller-manager with a higher API rate limit");
    cluster::speed_up_controller_manager()?;

    let upstream_dir = settings.out_dir.join("work/upstream");
    let (_upstream, upstream_port) = servers::start_knot(
        "knot-upstream",
        &upstream_dir,
        dnsperf::LOADGEN_CPU,
        &[queries::external_zone(), paths::miss_zone()],
    )
    .await?;
    eprintln!(
        "[bench] upstream for external names: Knot DNS on 127.0.0.1:{upstream_port} (zones {} and {}, CPU {})",
        queries::EXTERNAL_ZONE,
        nameplane_bench::scenarios::MISS_ZONE,
        dnsperf::LOADGEN_CPU
    );

    let mut report = Report {
        machine: machine.clone(),
        settings: settings.clone(),
        versions,
        notes,
        sets: Vec::new(),
        runtime_s: 0.0,
        adversarial: Adversarial::read(&sys::target_dir()),
    };
    let mut created = Created::default();
    for set in &settings.sets {
        let set_report = run_set(
            &settings,
            set,
            &client,
            &mut created,
            &coredns_bin,
            &bin_dir,
            upstream_port,
        )
        .await;
        report.sets.push(set_report);
        machine.loadavg_end = sys::loadavg();
        report.machine = machine.clone();
        report.runtime_s = started.elapsed().as_secs_f64();
        write(&report, &settings.out_dir)?;
    }
    eprintln!("{}", report.terminal_table());
    eprintln!(
        "[bench] done in {:.1} min; results in {} and results.json",
        started.elapsed().as_secs_f64() / 60.0,
        sys::relative(&settings.out_dir.join("results.md"))
    );
    if settings.smoke {
        smoke_check(&report)?;
    }
    Ok(())
}

fn write(report: &Report, dir: &Path) -> Result<()> {
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(dir.join("results.md"), report.markdown())?;
    Ok(())
}

/// The smoke's only checks: the pipeline produced a figure for both servers on the type both
/// support today, and the report files exist. No performance threshold.
fn smoke_check(report: &Report) -> Result<()> {
    let set = report.sets.first().context("no set in the report")?;
    let row = set
        .rows
        .iter()
        .find(|r| r.metric.starts_with("max QPS, ClusterIP A"))
        .context("no ClusterIP A row")?;
    for (who, cell) in [("CoreDNS", &row.coredns), ("nameplane", &row.nameplane)] {
        if cell.value.is_none_or(|v| v <= 0.0) {
            bail!(
                "smoke: no ClusterIP A figure for {who}: {:?}; errors: {:?}",
                cell.note,
                set.errors
            );
        }
    }
    for section in [
        "memory",
        "programming",
        "config",
        "latency",
        "client",
        "forward",
        "tcp",
    ] {
        if !set.rows.iter().any(|r| r.section == section) {
            bail!("smoke: no {section} rows; errors: {:?}", set.errors);
        }
    }
    // The new paths' figures exist for both servers (each answered its probes correctly).
    for row in set.rows.iter().filter(|r| {
        ["client", "forward", "tcp"].contains(&r.section.as_str())
            && r.metric.starts_with("queries per server CPU-second")
    }) {
        for (who, cell) in [("CoreDNS", &row.coredns), ("nameplane", &row.nameplane)] {
            if cell.value.is_none_or(|v| v <= 0.0) {
                bail!(
                    "smoke: no figure for {who} in {:?}: {:?}; errors: {:?}",
                    row.metric,
                    cell.note,
                    set.errors
                );
            }
        }
    }
    let dir = &report.settings.out_dir;
    for f in ["results.md", "results.json"] {
        if !dir.join(f).exists() {
            bail!("smoke: {} missing", dir.join(f).display());
        }
    }
    eprintln!("[bench] smoke: pipeline OK (both servers measured, report written)");
    Ok(())
}

fn git_version() -> String {
    let root = sys::repo_root();
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let commit = out(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = !out(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!(
        "{commit}{}",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    )
}

fn dnsperf_version() -> String {
    let text = std::process::Command::new("dnsperf")
        .arg("-h")
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Version "))
        .unwrap_or("unknown")
        .to_string()
}

/// Waits for `ready`, then until `probes` all pass at `port` (180 s limit): the time since
/// `t0`, or why not.
async fn synced_after(
    ready: impl std::future::Future<Output = Result<Duration>>,
    port: u16,
    probes: &[queries::Probe],
    t0: Instant,
) -> Cell {
    if let Err(e) = ready.await {
        return Cell::missing(format!("not ready: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if queries::check(port, probes).await.is_ok() {
            return Cell::one(t0.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Cell::missing("ready, but not answering correctly after 180 s")
}

async fn run_set(
    settings: &Settings,
    set: &ObjectSet,
    client: &Client,
    created: &mut Created,
    coredns_bin: &Path,
    bin_dir: &Path,
    upstream_port: u16,
) -> SetReport {
    let mut report = SetReport {
        set: set.clone(),
        nameplane_config: serde_json::Value::Null,
        nameplane_dropped_fields: Vec::new(),
        support: Vec::new(),
        rows: Vec::new(),
        errors: Vec::new(),
        raw: serde_json::Value::Null,
    };
    if let Err(e) = run_set_inner(
        settings,
        set,
        client,
        created,
        coredns_bin,
        bin_dir,
        upstream_port,
        &mut report,
    )
    .await
    {
        eprintln!("[bench] ERROR object set {}: {e:#}", set.name);
        report
            .errors
            .push(format!("object set {} stopped: {e:#}", set.name));
    }
    report
}

#[allow(clippy::too_many_arguments)]
async fn run_set_inner(
    settings: &Settings,
    set: &ObjectSet,
    client: &Client,
    created: &mut Created,
    coredns_bin: &Path,
    bin_dir: &Path,
    upstream_port: u16,
    report: &mut SetReport,
) -> Result<()> {
    let dir = settings.out_dir.join("work").join(&set.name);
    objects::create_set(client, set, created).await?;
    let timeout = Duration::from_secs(if set.name == "large" { 1200 } else { 600 });
    objects::wait_for_slices(client, set, timeout).await?;
    let pods = objects::count_pods(client).await.unwrap_or(0);
    eprintln!("[bench] the cluster holds {pods} Pods");

    let queries = queries::build(set, &created.cluster_ips, &dir.join("queries"))?;
    let common = Common {
        kubeconfig: cluster::kubeconfig()?,
        upstream_port,
        ttl: 5,
        stub_domain: true,
        client_aware: None,
    };
    let wanted = servers::nameplane_config(&common);
    let (config, dropped) = servers::accepted_config(&wanted)?;
    if !dropped.is_empty() {
        eprintln!(
            "[bench] this nameplane build does not know {dropped:?}; running it without them"
        );
    }
    report.nameplane_config = config.clone();
    report.nameplane_dropped_fields = dropped;
    cluster::kubectl_run(&["create", "namespace", "bench"], None).ok();
    servers::write_config_map(client, "bench", "nameplane-config", &config).await?;

    eprintln!(
        "[bench] starting CoreDNS and nameplane-dns (both on CPU {})",
        servers::SERVER_CPU
    );
    let t0 = Instant::now();
    let coredns = CoreDns::start(coredns_bin, &dir, &common, &settings.coredns_reload)?;
    let nameplane = Nameplane::start(
        "nameplane-dns",
        &bin_dir.join("nameplane-dns"),
        &dir,
        "bench/nameplane-config",
        Some(servers::SERVER_CPU),
    )?;
    let mut servers = Servers { coredns, nameplane };
    // Ready is not enough: each must also answer the sampled ClusterIP names correctly. Both
    // are timed at once, each from the common start.
    let probes = queries.probes(queries::Kind::ClusterIpA);
    let (coredns_sync, nameplane_sync) = {
        let Servers { coredns, nameplane } = &mut servers;
        let (c_port, n_port) = (coredns.port, nameplane.port);
        tokio::join!(
            synced_after(
                coredns.wait_ready(Duration::from_secs(300)),
                c_port,
                probes,
                t0
            ),
            synced_after(
                nameplane.wait_ready(Duration::from_secs(300)),
                n_port,
                probes,
                t0
            ),
        )
    };
    let both_ok = coredns_sync.value.is_some() && nameplane_sync.value.is_some();
    report.rows.push(Row {
        section: "memory".into(),
        metric: "start → ready and answering (initial list)".into(),
        unit: "s".into(),
        better: Better::Lower,
        coredns: coredns_sync,
        nameplane: nameplane_sync,
        knot: None,
        target: Target::None,
        knot_share_target: None,
        method: "both started together on the same CPU; time until /ready is 200 and ten sampled ClusterIP names answer correctly (an upper bound: the two share one CPU while listing)".into(),
    });
    if !both_ok {
        bail!(
            "a server never answered the ClusterIP probes; CoreDNS log:\n{}\nnameplane log:\n{}",
            sys::tail(&dir.join("coredns.log"), 20),
            sys::tail(&dir.join("nameplane-dns.log"), 20)
        );
    }
    tokio::time::sleep(Duration::from_secs(if settings.smoke { 1 } else { 5 })).await;

    let mut m = SetRun::new(settings, set, &queries, &created.cluster_ips, dir.clone());
    m.rows = std::mem::take(&mut report.rows);
    m.rss_after_sync(&servers);
    m.probe_support(&servers).await;
    let phase = |p: &str| settings.runs_phase(p);
    // While queries are timed, CPU 0 runs only the server under test: the control plane
    // joins dnsperf (and this harness) on the load generator's CPU.
    let all_cpus = format!("0-{}", sys::Machine::describe().nproc.max(1) - 1);
    if settings.pin_control_plane
        && let Err(e) = cluster::pin_control_plane(&dnsperf::LOADGEN_CPU.to_string())
    {
        m.error("pinning the control plane", &e);
    }
    if phase("qps") || phase("latency") {
        let coredns_max = m.qps(&servers).await;
        if phase("latency") {
            m.latency(&servers, &coredns_max).await;
        }
    }
    if phase("knot") {
        m.knot_ceiling().await;
    }
    if phase("forward") {
        paths::forwarded_misses(&mut m, &servers).await;
    }
    if phase("tcp") {
        paths::tcp(&mut m, &servers).await;
    }
    if phase("client")
        && let Err(e) = paths::client_aware(
            &mut m,
            client,
            &servers,
            coredns_bin,
            &bin_dir.join("nameplane-dns"),
            &common,
            &config,
        )
        .await
    {
        m.error("client-aware path", &e);
    }
    if settings.pin_control_plane
        && let Err(e) = cluster::pin_control_plane(&all_cpus)
    {
        m.error("unpinning the control plane", &e);
    }
    if phase("programming")
        && let Err(e) = m.programming(client, &servers).await
    {
        m.error("programming latency", &e);
    }
    if phase("relist")
        && let Err(e) = m.relist(&mut servers).await
    {
        m.error("re-list", &e);
    }
    if phase("config") {
        let cm = m.config_change_configmap(client, &servers, &config).await;
        let cr = m.config_change_cr(bin_dir).await;
        let coredns = m.config_change_coredns(&mut servers).await;
        m.config_rows(coredns, cr, cm);
    }
    // Order the rows by section for the report.
    let order = [
        "qps",
        "latency",
        "client",
        "forward",
        "tcp",
        "memory",
        "programming",
        "config",
    ];
    m.rows.sort_by_key(|r| {
        order
            .iter()
            .position(|s| *s == r.section)
            .unwrap_or(order.len())
    });
    report.rows = std::mem::take(&mut m.rows);
    report.support = std::mem::take(&mut m.support);
    report.errors.append(&mut m.errors);
    report.raw = serde_json::Value::Object(std::mem::take(&mut m.raw));
    servers.coredns.proc.stop();
    servers.nameplane.proc.stop();
    Ok(())
}
