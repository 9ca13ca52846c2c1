//! `nameplane-operator`: runs the nameplane controllers against a Kubernetes API server, with
//! Lease-based leader election so several replicas can run and one reconciles.
//!
//! Shutdown: the first SIGTERM or SIGINT stops the controllers (in-flight reconciles finish)
//! and releases the Lease, so a standby takes over at once. Each of those steps talks to the
//! API server; when it is unreachable they would retry for ever, so the whole stop is bounded
//! by `--shutdown-grace-seconds` (default 10, under the Pod's 30 s termination grace
//! period): past it the process exits anyway, and the Lease expires on its own.

use clap::Parser;
use kube_lease_manager::LeaseManagerBuilder;
use nameplane_operator::namespaces::NamespaceAllowList;
use nameplane_operator::{admin, controller, metrics::Metrics, workload::Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long releasing the Lease may take at shutdown; after it the Lease expires by itself.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// nameplane operator: reconciles DNSServer, DNSZone, StubDomain, RewriteRule and DNSPolicy
/// objects into one validated server config per DNSServer, and runs the DNS servers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Kubeconfig to use; without it, in-cluster config or $KUBECONFIG.
    #[arg(long, env = "NAMEPLANE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "NAMEPLANE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Elect a leader through a Lease, so only one replica reconciles at a time.
    #[arg(long, env = "NAMEPLANE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "nameplane-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "nameplane-operator")]
    lease_name: String,
    /// Seconds a leader's Lease stays valid without renewal; a standby takes over after it.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This replica's identity in the Lease (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Container image of the DNS server Deployments the operator creates.
    #[arg(long, env = "NAMEPLANE_DNS_IMAGE", default_value = concat!("ghcr.io/nameplane/nameplane:", env!("CARGO_PKG_VERSION")))]
    dns_image: String,
    /// Namespaces whose DNSServers are served, separated by commas, or `*` for all. A
    /// DNSServer elsewhere is Stalled (reason NamespaceNotAllowed) and gets nothing. The
    /// chart and config/default set it to the namespaces their RBAC lets the operator write
    /// in; `*` suits a cluster-admin kubeconfig (make run, the e2e tests).
    #[arg(long, env = "NAMEPLANE_DNS_SERVER_NAMESPACES", default_value = "*")]
    dns_server_namespaces: NamespaceAllowList,
    /// Seconds the operator may take to stop after SIGTERM/SIGINT; past them it exits
    /// without finishing reconciles or releasing the Lease (the API server is unreachable).
    #[arg(long, env = "NAMEPLANE_SHUTDOWN_GRACE_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    shutdown_grace_seconds: u64,
    /// Log format: `json` (one JSON object a line, what the chart and config/operator
    /// deployments pass, as the DNS Pods log) or `text`.
    #[arg(long, env = "NAMEPLANE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (fields at the top level), for log pipelines.
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn,kube_lease_manager=warn".into());
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .init(),
    }
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    // One signal listener for the whole process; `stop.wait_for` is the stop signal.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stop signal received, stopping");
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop.clone();
    tokio::select! {
        result = run(args, stop) => {
            // Logged too, so that a log pipeline sees why the process stopped.
            if let Err(error) = &result {
                tracing::error!(error = format!("{error:#}"), "stopped");
            }
            result
        }
        () = async {
            let _ = stopped.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "not stopped within the grace period (is the API server reachable?), exiting");
            // Returning would drop the runtime, which waits for every task.
            std::process::exit(0);
        }
    }
}

/// Resolves once the stop signal has been received.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn run(args: Args, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let shutdown_signal = move || stopped(stop.clone());
    let client = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            kube::Client::try_from(config)?
        }
        None => kube::Client::try_default().await?,
    };
    controller::check_crds(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let listener = admin::serve(args.metrics_listen, metrics.clone());
    tokio::spawn(async move {
        if let Err(e) = listener.await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("nameplane-operator-{}", std::process::id()));
    tracing::info!(namespaces = %args.dns_server_namespaces, "serving DNSServers in");
    let settings = Settings {
        image: args.dns_image.clone(),
        dns_server_namespaces: args.dns_server_namespaces.clone(),
    };

    if !args.leader_elect {
        metrics.set_leader(true);
        controller::run(client, metrics, settings, identity, shutdown_signal()).await;
        return Ok(());
    }

    let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(args.lease_duration_seconds)
        .with_grace(args.lease_duration_seconds.div_ceil(3).max(1))
        .build()
        .await?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(%identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "waiting to lead");
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("stopping before leading");
            return Ok(());
        }
        became = leading.wait_for(|leader| *leader) => { became?; }
    }
    tracing::info!(%identity, "leading");
    metrics.set_leader(true);

    let (lost_tx, mut lost_rx) = tokio::sync::oneshot::channel::<()>();
    let mut leading_watch = leading.clone();
    tokio::spawn(async move {
        if leading_watch.wait_for(|leader| !*leader).await.is_ok() {
            let _ = lost_tx.send(());
        }
    });
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {},
            _ = &mut lost_rx => tracing::error!("lost the leader lease"),
        }
    };
    controller::run(client, metrics.clone(), settings, identity, stop).await;
    metrics.set_leader(false);
    let still_leading = *leading.borrow();
    // Closing the channel stops the lease task; releasing hands over without waiting for expiry.
    drop(leading);
    let released = tokio::time::timeout(RELEASE_TIMEOUT, async {
        match lease_task.await {
            Ok(Ok(manager)) => manager.release().await.map_err(anyhow::Error::from),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        }
    })
    .await;
    match released {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires")
        }
        Err(_) => {
            tracing::warn!(timeout = ?RELEASE_TIMEOUT, "releasing the lease timed out; a standby takes over when it expires")
        }
    }
    if !still_leading {
        anyhow::bail!("lost the leader lease; exiting so a fresh process can campaign again");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}
