//! The reconcilers and how they are started.
//!
//! Today one controller runs: [`dnsserver`], which renders each `DNSServer` into its
//! ConfigMap and writes its status. It owns the ConfigMaps it writes, so a ConfigMap edited or
//! deleted by hand is put back within a reconcile.

pub mod dnsserver;

use crate::api::dnsserver::DNSServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{Controller, controller::Action, watcher};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;

/// Label put on every object the operator writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Shared state of the reconcilers.
pub struct Context {
    /// Client for the Kubernetes API.
    pub client: Client,
}

/// Runs the controllers until a shutdown signal arrives.
pub async fn run(client: Client) -> anyhow::Result<()> {
    let servers: Api<DNSServer> = Api::all(client.clone());
    if let Err(e) = servers
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        anyhow::bail!(
            "cannot list DNSServers ({e}); are the CRDs installed? `kubectl apply -f crds/`"
        );
    }
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let owned =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={}", crate::FIELD_MANAGER));
    let ctx = Arc::new(Context { client });
    tracing::info!("operator started; watching DNSServers");
    Controller::new(servers, watcher::Config::default())
        .owns(config_maps, owned)
        .shutdown_on_signal()
        .run(dnsserver::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    tracing::info!("operator stopped");
    Ok(())
}

/// Retries a failed reconcile after a short pause; the error is logged by [`run`].
pub fn error_policy(_server: Arc<DNSServer>, error: &crate::Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %error, label = error.metric_label(), "will retry");
    Action::requeue(Duration::from_secs(5))
}
