//! The local control plane of `e2e/scripts/cluster-up.sh`: a client for it, and restarting
//! one of its components in place (same command line, same log, same pid file, so
//! `cluster-down.sh` still stops it).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::sys::e2e_dir;

/// The kubeconfig `cluster-up.sh` wrote.
pub fn kubeconfig() -> Result<PathBuf> {
    let path = e2e_dir().join("kubeconfig");
    if !path.exists() {
        bail!(
            "{} does not exist: start the control plane with `make cluster-up`",
            path.display()
        );
    }
    Ok(path)
}

/// The context name in that kubeconfig.
pub const CONTEXT: &str = "nameplane-e2e";

/// A client for the local control plane (no client-side rate limit).
pub async fn client() -> Result<Client> {
    let path = kubeconfig()?;
    let kubeconfig = Kubeconfig::read_from(&path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// `kubectl` of the control plane build.
pub fn kubectl() -> PathBuf {
    e2e_dir().join("bin/kubectl")
}

/// Runs kubectl against the local cluster; returns stdout or the error with stderr.
pub fn kubectl_run(args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig()?)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the API server answers `/readyz`.
pub fn api_ready() -> bool {
    kubectl_run(&["--request-timeout=3s", "get", "--raw", "/readyz"], None).is_ok()
}

/// The pid of a component started by `cluster-up.sh`.
pub fn component_pid(name: &str) -> Result<u32> {
    let file = e2e_dir().join(format!("cluster/{name}.pid"));
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a pid", file.display()))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(") ")
                .map(|i| s[i + 2..].split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

/// Stops component `name` and starts it again with `edit` applied to its arguments (the
/// first element is the binary). Returns when the new process runs (not when it is ready).
pub fn restart_component(name: &str, edit: impl FnOnce(Vec<String>) -> Vec<String>) -> Result<()> {
    let pid = component_pid(name)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("{name} (pid {pid}) is not running"))?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if !args
        .first()
        .is_some_and(|a| a.ends_with(&format!("/{name}")))
    {
        bail!("pid {pid} does not run {name}: {args:?}");
    }
    let args = edit(args);
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = e2e_dir().join(format!("cluster/logs/{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    use std::os::unix::process::CommandExt as _;
    let child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        // Its own process group, pid = pgid, as cluster-down.sh expects.
        .process_group(0)
        .spawn()
        .with_context(|| format!("restarting {name}"))?;
    std::fs::write(
        e2e_dir().join(format!("cluster/{name}.pid")),
        format!("{}\n", child.id()),
    )?;
    // The child outlives this handle; cluster-down.sh stops it.
    drop(child);
    Ok(())
}

/// Restarts kube-controller-manager with a client rate limit that lets the EndpointSlice
/// controller keep up with tens of thousands of Pods (its default is 20 QPS), and without the
/// legacy Endpoints controllers (neither DNS server reads Endpoints).
pub fn speed_up_controller_manager() -> Result<()> {
    restart_component("kube-controller-manager", |args| {
        let mut args: Vec<String> = args
            .into_iter()
            .map(|a| match a.strip_prefix("--controllers=") {
                Some(list) => format!(
                    "--controllers={}",
                    list.split(',')
                        .filter(|c| *c != "endpoints-controller"
                            && *c != "endpointslice-mirroring-controller")
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                None => a,
            })
            .filter(|a| !a.starts_with("--kube-api-qps") && !a.starts_with("--kube-api-burst"))
            .collect();
        args.extend([
            "--kube-api-qps=2000".to_string(),
            "--kube-api-burst=4000".to_string(),
            "--concurrent-service-endpoint-syncs=20".to_string(),
        ]);
        args
    })
}

/// The components `cluster-up.sh` starts.
pub const COMPONENTS: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// Moves every thread of every control-plane component onto `cpus` (a `taskset` list such
/// as `1` or `0-1`). Threads started later inherit it.
pub fn pin_control_plane(cpus: &str) -> Result<()> {
    for name in COMPONENTS {
        let pid = component_pid(name)?;
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running taskset")?;
        if !status.success() {
            bail!("taskset -a -p -c {cpus} {pid} ({name}) failed: {status}");
        }
    }
    Ok(())
}

/// Restarts kube-apiserver unchanged and waits (up to `timeout`) for `/readyz`; returns how
/// long it was unavailable.
pub fn restart_apiserver(timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    restart_component("kube-apiserver", |args| args)?;
    while !api_ready() {
        if started.elapsed() > timeout {
            bail!("kube-apiserver not ready {timeout:?} after its restart");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(started.elapsed())
}
