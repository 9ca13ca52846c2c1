//! `nameplane-dns`: the command line, logging, signals, and the wiring of the tasks.
//!
//! Startup errors (bad flags, ports in use, an unreadable kubeconfig) end the process with a
//! message; everything after startup is retried or logged. Order: bind every socket, build
//! the Kubernetes client, then start the config watch, the Service watch, the DNS
//! transports and the admin endpoint. SIGTERM or SIGINT stops them all; open TCP queries
//! finish first, within a grace period.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use nameplane_dns::admin;
use nameplane_dns::kubernetes::watch;
use nameplane_dns::metrics::Metrics;
use nameplane_dns::reload::{self, ConfigMapRef};
use nameplane_dns::server::{self, Listeners};
use nameplane_dns::shutdown;
use nameplane_dns::state::State;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
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

    /// Address to serve DNS on, UDP and TCP.
    #[arg(long, env = "NAMEPLANE_LISTEN", default_value = "0.0.0.0:53")]
    listen: SocketAddr,

    /// Address of the admin HTTP endpoint (/health, /ready, /metrics).
    #[arg(long, env = "NAMEPLANE_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    health_listen: SocketAddr,

    /// Number of UDP sockets (SO_REUSEPORT) on the listen address; default: number of cores.
    #[arg(long, env = "NAMEPLANE_UDP_SOCKETS", value_parser = clap::value_parser!(u16).range(1..))]
    udp_sockets: Option<u16>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();

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

    let state = Arc::new(State::new(Metrics::new(cli.listen)));
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = JoinSet::new();
    tasks.spawn(reload::run(
        client.clone(),
        cli.config_map.clone(),
        Arc::clone(&state),
        shutdown.clone(),
    ));
    tasks.spawn(watch::run(client, Arc::clone(&state), shutdown.clone()));
    tasks.spawn(server::serve(
        listeners,
        Arc::clone(&state),
        shutdown.clone(),
    ));
    tasks.spawn(admin::serve(admin_listener, Arc::clone(&state), shutdown));
    info!(
        listen = %cli.listen,
        health = %cli.health_listen,
        config_map = %cli.config_map,
        "nameplane-dns started"
    );

    stop_signal().await?;
    trigger.fire();
    let drained = tokio::time::timeout(GRACE_PERIOD, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("tasks did not stop within {GRACE_PERIOD:?}, exiting anyway");
    }
    info!("stopped");
    Ok(())
}
