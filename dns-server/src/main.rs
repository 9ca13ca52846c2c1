//! `nameplane-dns`: the command line, logging, signals, and the wiring of the tasks.
//!
//! Startup errors (bad flags, ports in use, an unreadable kubeconfig) end the process with a
//! message; everything after startup is retried or logged. Order: bind every socket, build
//! the Kubernetes client, then start the config watch, the cluster watches, the DNS
//! transports and the admin endpoint.
//!
//! Shutdown (CoreDNS's `health { lameduck }`): the first SIGTERM or SIGINT starts the
//! lameduck period (`--lameduck`, default 5 s): `/ready` fails at once so the Pod leaves the
//! Service's endpoints, while DNS keeps answering every query that still arrives. Then the
//! tasks stop; open TCP queries finish first, within a grace period. A second signal skips
//! the rest of the lameduck period.
//!
//! The tasks run under a [`Supervisor`]: one that stops before the stop signal (a panic)
//! fails `/health`. The TCP transport's limits are flags (`--tcp-*`, see
//! [`nameplane_dns::server::tcp`]), and so are the other resource bounds: forwarded queries
//! in flight (`--forward-max-in-flight`), the answer cache's bytes (`--cache-max-bytes`,
//! `--cache-max-entry-bytes`) and admin connections (`--admin-max-connections`). The TCP
//! connection cap is lowered to fit the open-file limit (a quarter of it, at most 256,
//! kept in reserve) when that is smaller, so the cap, not `accept()` failing, is what stops
//! connections.
//!
//! Process settings are flags (they do not change while the process runs): what to answer
//! comes from the ConfigMap.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use nameplane_dns::admin;
use nameplane_dns::answer_cache as cache;
use nameplane_dns::cluster::watch;
use nameplane_dns::metrics::Metrics;
use nameplane_dns::pipeline::Settings;
use nameplane_dns::reload::{self, ConfigMapRef};
use nameplane_dns::request::{DEFAULT_MAX_UDP_PAYLOAD, MIN_UDP_PAYLOAD};
use nameplane_dns::server::{self, Listeners, tcp};
use nameplane_dns::shutdown::{self, Supervisor};
use nameplane_dns::state::State;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// How long the tasks get to stop after SIGTERM/SIGINT.
const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// nameplane's DNS server: answers Kubernetes cluster names from its own Service watch,
/// configured by a ConfigMap the nameplane operator writes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Kubeconfig file to use; without it, the in-cluster config or $KUBECONFIG.
    #[arg(long, env = "NAMEPLANE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// The ConfigMap holding the server config, as NAMESPACE/NAME.
    #[arg(long, env = "NAMEPLANE_CONFIG_MAP")]
    config_map: ConfigMapRef,

    /// The resolv.conf whose nameservers are the upstreams of a config that asks for them
    /// (`serversFromResolvConf`, CoreDNS `forward . /etc/resolv.conf`); read each time a
    /// config is loaded.
    #[arg(long, env = "NAMEPLANE_RESOLV_CONF", default_value = nameplane_dns::resolv_conf::DEFAULT_PATH)]
    resolv_conf: PathBuf,

    /// Address to serve DNS on, UDP and TCP.
    #[arg(long, env = "NAMEPLANE_LISTEN", default_value = "0.0.0.0:53")]
    listen: SocketAddr,

    /// Address of the admin HTTP endpoint (/health, /ready, /metrics).
    #[arg(long, env = "NAMEPLANE_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    health_listen: SocketAddr,

    /// Number of UDP sockets (SO_REUSEPORT) on the listen address; default: number of cores.
    #[arg(long, env = "NAMEPLANE_UDP_SOCKETS", value_parser = clap::value_parser!(u16).range(1..))]
    udp_sockets: Option<u16>,

    /// Largest UDP response in bytes, and the payload size advertised in EDNS; a client's
    /// smaller EDNS buffer is honoured, larger answers are truncated (TC) and retried over TCP.
    #[arg(long, env = "NAMEPLANE_MAX_UDP_PAYLOAD", default_value_t = DEFAULT_MAX_UDP_PAYLOAD,
          value_parser = clap::value_parser!(u16).range(i64::from(MIN_UDP_PAYLOAD)..))]
    max_udp_payload: u16,

    /// After SIGTERM, keep answering for this many seconds while /ready fails (lameduck).
    #[arg(long, env = "NAMEPLANE_LAMEDUCK_SECONDS", default_value_t = 5)]
    lameduck_seconds: u64,

    /// This server's own addresses (its Pod IPs, comma-separated; the downward API's
    /// status.podIPs): ns.dns.<zone> answers the cluster IPs of the Service in front of them.
    /// Default: the listen address, when it is not a wildcard.
    #[arg(long, env = "NAMEPLANE_POD_IPS", value_delimiter = ',')]
    pod_ips: Vec<IpAddr>,

    /// Most TCP connections served at once; at the limit a new one takes the slot of the
    /// connection idle the longest, or is closed when none is idle.
    #[arg(long, env = "NAMEPLANE_TCP_MAX_CONNECTIONS", default_value_t = tcp::MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    tcp_max_connections: u32,

    /// Most TCP connections served at once from one client address (one Pod, or one node
    /// behind SNAT); as above, the address's longest idle connection gives way.
    #[arg(long, env = "NAMEPLANE_TCP_MAX_CONNECTIONS_PER_SOURCE", default_value_t = tcp::MAX_PER_SOURCE as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    tcp_max_connections_per_source: u32,

    /// Seconds a TCP connection with no query in flight may wait for its next query.
    #[arg(long, env = "NAMEPLANE_TCP_IDLE_TIMEOUT_SECONDS", default_value_t = tcp::IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    tcp_idle_timeout_seconds: u64,

    /// Seconds writing one batch of TCP responses may take; a client that does not read is
    /// closed.
    #[arg(long, env = "NAMEPLANE_TCP_WRITE_TIMEOUT_SECONDS", default_value_t = tcp::WRITE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    tcp_write_timeout_seconds: u64,

    /// Most queries in flight to upstreams at once, over every forwarder; above it a
    /// forwarded query is REFUSED at once (each holds an upstream socket and memory).
    #[arg(long, env = "NAMEPLANE_FORWARD_MAX_IN_FLIGHT", default_value_t = nameplane_dns::settings::DEFAULT_MAX_IN_FLIGHT as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    forward_max_in_flight: u32,

    /// Bytes the answer cache may take in all (success and denial caches together).
    #[arg(long, env = "NAMEPLANE_CACHE_MAX_BYTES", default_value_t = cache::DEFAULT_MAX_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    cache_max_bytes: u64,

    /// Largest stored size of one cached answer in bytes; larger answers are not cached.
    #[arg(long, env = "NAMEPLANE_CACHE_MAX_ENTRY_BYTES", default_value_t = cache::DEFAULT_MAX_ENTRY_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    cache_max_entry_bytes: u64,

    /// Most admin (/health, /ready, /metrics) connections open at once; at the limit a new
    /// one closes the oldest, so a flood of idle connections cannot lock the kubelet out.
    #[arg(long, env = "NAMEPLANE_ADMIN_MAX_CONNECTIONS", default_value_t = admin::MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    admin_max_connections: u32,

    /// Log every query (client, protocol, name, type, rcode, size, duration) at info level,
    /// overriding the config's `logging` (which otherwise decides; see the query_log module).
    #[arg(long, env = "NAMEPLANE_QUERY_LOG")]
    query_log: bool,

    /// Log format.
    #[arg(long, env = "NAMEPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let Some(path) = kubeconfig else {
        return Client::try_default()
            .await
            .context("no Kubernetes config found (in-cluster or $KUBECONFIG)");
    };
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    Client::try_from(config).context("building the Kubernetes client")
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, stopping"),
        _ = int.recv() => info!("SIGINT received, stopping"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let fds = FileLimits::raise(&cli);
    let udp_sockets = cli.udp_sockets.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let listeners = Listeners::bind(cli.listen, udp_sockets)
        .with_context(|| format!("binding DNS on {}", cli.listen))?;
    let admin_listener = TcpListener::bind(cli.health_listen)
        .await
        .with_context(|| format!("binding the admin endpoint on {}", cli.health_listen))?;
    let client = kube_client(cli.kubeconfig.as_ref()).await?;
    let state = Arc::new(State::new(Metrics::new(cli.listen), settings(&cli)));
    let (trigger, shutdown) = shutdown::channel();
    let tcp_limits = tcp::Limits {
        max_connections: usize::try_from(fds.tcp_max_connections).unwrap_or(usize::MAX),
        max_per_source: cli.tcp_max_connections_per_source as usize,
        idle_timeout: Duration::from_secs(cli.tcp_idle_timeout_seconds),
        write_timeout: Duration::from_secs(cli.tcp_write_timeout_seconds),
        ..tcp::Limits::default()
    };
    // Each task runs until shutdown; one that stops earlier fails /health (see shutdown.rs).
    let mut tasks = Supervisor::default();
    tasks.spawn(
        "config",
        reload::run(
            client.clone(),
            cli.config_map.clone(),
            Arc::clone(&state),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "watch",
        watch::run(
            client,
            Arc::clone(&state),
            state.watch_specs(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "dns",
        server::serve_with(listeners, Arc::clone(&state), tcp_limits, shutdown.clone()),
    );
    tasks.spawn(
        "admin",
        admin::serve_with(
            admin_listener,
            Arc::clone(&state),
            cli.admin_max_connections as usize,
            shutdown.clone(),
        ),
    );
    let supervised = tokio::spawn({
        let state = Arc::clone(&state);
        async move {
            tasks
                .wait(&shutdown, |task, why| state.fail_health(task, why))
                .await;
        }
    });
    info!(
        listen = %cli.listen,
        health = %cli.health_listen,
        config_map = %cli.config_map,
        max_udp_payload = cli.max_udp_payload,
        lameduck_seconds = cli.lameduck_seconds,
        query_log = cli.query_log,
        ?tcp_limits,
        forward_max_in_flight = cli.forward_max_in_flight,
        cache_max_bytes = cli.cache_max_bytes,
        cache_max_entry_bytes = cli.cache_max_entry_bytes,
        admin_max_connections = cli.admin_max_connections,
        open_files = fds.open_files,
        "nameplane-dns started"
    );
    stop(&cli, &state).await?;
    trigger.fire();
    let drained = tokio::time::timeout(GRACE_PERIOD, supervised).await;
    if drained.is_err() {
        warn!("tasks did not stop within {GRACE_PERIOD:?}, exiting anyway");
    }
    info!("stopped");
    Ok(())
}

/// Logs to stdout as text (colours only on a terminal, never in log files or a container's
/// log stream) or as JSON lines.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .init(),
    }
}

/// The open-file limit, raised, and the TCP connection cap that fits under it.
struct FileLimits {
    open_files: u64,
    tcp_max_connections: u64,
}

impl FileLimits {
    /// Every TCP connection, upstream socket, watch and admin request is a file descriptor,
    /// and container runtimes often start a process with a soft limit of 1024: below what the
    /// TCP connection cap alone may hold. Raises the soft limit to the hard one.
    fn raise(cli: &Cli) -> Self {
        let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => limit,
            Err(error) => {
                warn!(%error, "could not raise the open file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
            }
        };
        // The TCP cap must bind before the descriptors run out: at the open-file limit
        // accept() fails, so the cap's eviction of idle connections never runs and new
        // clients wait in the listen backlog behind idle ones. Keep a quarter of the
        // descriptors (at most 256) for upstream sockets, watches and the admin endpoint.
        let reserved_fds = (open_files / 4).min(256);
        let tcp_max_connections = u64::from(cli.tcp_max_connections)
            .min(open_files.saturating_sub(reserved_fds))
            .max(1);
        if tcp_max_connections < u64::from(cli.tcp_max_connections) {
            warn!(
                open_files,
                tcp_max_connections_flag = cli.tcp_max_connections,
                tcp_max_connections,
                "the open file limit is below the TCP connection cap plus a reserve; the cap is lowered (raise the hard limit to keep it)"
            );
        }
        // Each capped thing holds at most one descriptor: TCP clients, forwarded queries
        // (one upstream socket each), admin connections; 256 for the rest.
        let needed = tcp_max_connections
            + u64::from(cli.forward_max_in_flight)
            + u64::from(cli.admin_max_connections)
            + 256;
        if open_files < needed {
            warn!(
                open_files,
                needed,
                tcp_max_connections,
                forward_max_in_flight = cli.forward_max_in_flight,
                "the open file limit is below what the connection caps may hold; raise the hard limit or lower --tcp-max-connections / --forward-max-in-flight"
            );
        }
        Self {
            open_files,
            tcp_max_connections,
        }
    }
}

/// The process's settings from its flags.
fn settings(cli: &Cli) -> Settings {
    let dns_ips = if cli.pod_ips.is_empty() && !cli.listen.ip().is_unspecified() {
        vec![cli.listen.ip()]
    } else {
        cli.pod_ips.clone()
    };
    Settings {
        max_udp_payload: cli.max_udp_payload,
        dns_ips,
        query_log: cli.query_log,
        forward_limit: nameplane_dns::settings::GlobalLimit::new(
            cli.forward_max_in_flight as usize,
        ),
        cache_limits: cache::ByteLimits {
            max_bytes: usize::try_from(cli.cache_max_bytes).unwrap_or(usize::MAX),
            max_entry_bytes: usize::try_from(cli.cache_max_entry_bytes).unwrap_or(usize::MAX),
        },
        resolv_conf: cli.resolv_conf.clone(),
        probe_loops: true,
    }
}

/// Waits for SIGTERM or SIGINT, then for the lameduck period (`/ready` failing while the
/// server still answers), which a second signal ends early.
async fn stop(cli: &Cli, state: &State) -> anyhow::Result<()> {
    stop_signal().await?;
    if cli.lameduck_seconds > 0 {
        let lameduck = Duration::from_secs(cli.lameduck_seconds);
        state.enter_lameduck();
        info!(
            ?lameduck,
            "lameduck: /ready now fails; still answering until the period ends"
        );
        tokio::select! {
            () = tokio::time::sleep(lameduck) => {}
            second = stop_signal() => {
                second?;
                info!("second signal: ending lameduck early");
            }
        }
    }
    Ok(())
}
