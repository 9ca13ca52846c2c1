//! In-memory caches (reflector stores) of every object the renderer reads, and one change
//! signal that fires whenever any of them changes. Every reconcile renders from these stores,
//! so a change to any DNSZone, StubDomain, RewriteRule, DNSPolicy, Namespace or DNSServer
//! re-renders promptly (a watch, not polling).

use crate::api::dnspolicy::DNSPolicy;
use crate::api::dnsserver::DNSServer;
use crate::api::dnszone::DNSZone;
use crate::api::rewriterule::RewriteRule;
use crate::api::stubdomain::StubDomain;
use crate::render::Inputs;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::watch;

/// The stores, plus the change signal.
#[derive(Clone)]
pub struct Stores {
    /// Every `DNSServer`.
    pub servers: Store<DNSServer>,
    /// Every `DNSZone`.
    pub zones: Store<DNSZone>,
    /// Every `StubDomain`.
    pub stubs: Store<StubDomain>,
    /// Every `RewriteRule`.
    pub rewrites: Store<RewriteRule>,
    /// Every `DNSPolicy`.
    pub policies: Store<DNSPolicy>,
    /// Every `Namespace` (for namespace selectors).
    pub namespaces: Store<Namespace>,
    changed: watch::Receiver<u64>,
}

/// A snapshot of the stores' contents, to render from.
pub struct Snapshot {
    namespaces: Vec<Arc<Namespace>>,
    zones: Vec<Arc<DNSZone>>,
    stubs: Vec<Arc<StubDomain>>,
    rewrites: Vec<Arc<RewriteRule>>,
    policies: Vec<Arc<DNSPolicy>>,
}

impl Snapshot {
    /// The renderer's view of this snapshot.
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            namespaces: &self.namespaces,
            zones: &self.zones,
            stubs: &self.stubs,
            rewrites: &self.rewrites,
            policies: &self.policies,
        }
    }
}

impl Stores {
    /// Starts one watch per kind (in background tasks) and returns once every store holds a
    /// complete list, so nothing renders from a half-filled cache.
    pub async fn start(client: &Client) -> Self {
        let (tx, changed) = watch::channel(0u64);
        let stores = Self {
            servers: spawn_reflector(Api::all(client.clone()), tx.clone()),
            zones: spawn_reflector(Api::all(client.clone()), tx.clone()),
            stubs: spawn_reflector(Api::all(client.clone()), tx.clone()),
            rewrites: spawn_reflector(Api::all(client.clone()), tx.clone()),
            policies: spawn_reflector(Api::all(client.clone()), tx.clone()),
            namespaces: spawn_reflector(Api::all(client.clone()), tx),
            changed,
        };
        for ready in [
            stores.servers.wait_until_ready().await,
            stores.zones.wait_until_ready().await,
            stores.stubs.wait_until_ready().await,
            stores.rewrites.wait_until_ready().await,
            stores.policies.wait_until_ready().await,
            stores.namespaces.wait_until_ready().await,
        ] {
            if ready.is_err() {
                tracing::error!("a watch stopped before its first list");
            }
        }
        tracing::info!("caches filled");
        stores
    }

    /// What the renderer reads, as of now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            namespaces: self.namespaces.state(),
            zones: self.zones.state(),
            stubs: self.stubs.state(),
            rewrites: self.rewrites.state(),
            policies: self.policies.state(),
        }
    }

    /// A stream that yields once after every change to any store (bursts are coalesced).
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.changed.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }
}

fn spawn_reflector<K>(api: Api<K>, changed: watch::Sender<u64>) -> Store<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    changed.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&K::DynamicType::default()), error = %e, "watch error; retrying")
                }
            }
        }
    });
    reader
}
