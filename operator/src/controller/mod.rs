//! The reconcilers and how they are started.
//!
//! - [`dnsserver`] renders each `DNSServer` (with the config objects it selects) into its
//!   ConfigMap, applies the objects that run it and writes its status. It owns every
//!   namespaced object it writes, so one edited or deleted by hand is put back; it watches
//!   them only in the namespaces that may hold `DNSServer`s (`--dns-server-namespaces`).
//! - [`config_status`] writes the status of every `DNSZone`, `StubDomain`, `RewriteRule` and
//!   `DNSPolicy` from the same renderer's verdicts.
//! - [`stores`] caches everything the renderer reads; any change re-renders every server.

pub mod config_status;
pub mod dnsserver;
pub mod stores;

use crate::api::{
    dnspolicy::DNSPolicy, dnsserver::DNSServer, dnszone::DNSZone, rewriterule::RewriteRule,
    stubdomain::StubDomain,
};
use crate::metrics::Metrics;
use crate::namespaces::NamespaceAllowList;
use crate::workload::Settings;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, controller::Action, watcher};
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;

pub use crate::MANAGED_BY_LABEL;

/// Shared state of the reconcilers.
pub struct Context {
    /// Client for the Kubernetes API.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Settings for the DNS workloads.
    pub settings: Settings,
    /// Publishes Kubernetes Events about the objects.
    pub recorder: Recorder,
    /// Caches of everything the renderer reads.
    pub stores: stores::Stores,
    /// Which servers' Pods were last seen all serving their config ([`crate::serving`]).
    pub serving: crate::serving::ServingCache,
}

/// Checks the CRDs are installed (so a missing install fails fast with a hint).
pub async fn check_crds(client: &Client) -> anyhow::Result<()> {
    let servers: Api<DNSServer> = Api::all(client.clone());
    if let Err(e) = servers
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        anyhow::bail!(
            "cannot list DNSServers ({e}); are the CRDs installed? `kubectl apply --server-side -f crds/`"
        );
    }
    Ok(())
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    identity: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.shared();
    let owned = || {
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={}", crate::FIELD_MANAGER))
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: Some(identity),
        },
    );
    let stores = stores::Stores::start(&client).await;
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics,
        settings,
        recorder,
        stores,
        serving: Default::default(),
    });
    tracing::info!("reconciling DNSServers and config objects");
    // The owned objects are watched only where the operator writes them: with an allow-list
    // its RBAC lets it read them only in those namespaces.
    let namespaces = ctx.settings.dns_server_namespaces.clone();
    let mut servers = Controller::new(
        Api::<DNSServer>::all(client.clone()),
        watcher::Config::default(),
    )
    .reconcile_all_on(ctx.stores.changes());
    for scope in scopes(&namespaces) {
        servers = servers
            .owns(api::<ConfigMap>(&client, scope), owned())
            .owns(api::<Deployment>(&client, scope), owned())
            .owns(api::<Service>(&client, scope), owned())
            .owns(api::<ServiceAccount>(&client, scope), owned())
            .owns(api::<Role>(&client, scope), owned())
            .owns(api::<RoleBinding>(&client, scope), owned())
            .owns(api::<PodDisruptionBudget>(&client, scope), owned());
    }
    let servers = servers
        .graceful_shutdown_on(shutdown.clone())
        .run(dnsserver::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        });
    futures::join!(
        servers,
        config_status::run::<DNSZone>(ctx.clone(), shutdown.clone()),
        config_status::run::<StubDomain>(ctx.clone(), shutdown.clone()),
        config_status::run::<RewriteRule>(ctx.clone(), shutdown.clone()),
        config_status::run::<DNSPolicy>(ctx, shutdown),
    );
    tracing::info!("controllers stopped");
}

/// The namespaces to watch owned objects in: `None` is all of them.
fn scopes(namespaces: &NamespaceAllowList) -> Vec<Option<&str>> {
    match namespaces {
        NamespaceAllowList::All => vec![None],
        NamespaceAllowList::Only(names) => names.iter().map(|n| Some(n.as_str())).collect(),
    }
}

/// An API of `K` in one namespace, or in all (`None`).
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Retries a failed reconcile after a short pause.
///
/// A reconcile that worked from a cached object older than the stored one (the API answers
/// 409 Conflict, or 422 when the finalizer patch's `test` no longer holds) is retried almost
/// at once: the cache has the newer object by then. Other errors wait a few seconds.
pub fn error_policy(_server: Arc<DNSServer>, error: &crate::Error, _ctx: Arc<Context>) -> Action {
    if error.is_stale_object() {
        tracing::debug!(error = %error, "object changed under the reconcile; retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %error, label = error.metric_label(), "will retry");
    Action::requeue(Duration::from_secs(5))
}
