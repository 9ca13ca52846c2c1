//! In-memory caches (reflector stores) of every object the renderer reads, and one change
//! signal that fires whenever any of them changes. Every reconcile renders from these stores,
//! so a change to any DNSZone, StubDomain, RewriteRule, DNSPolicy, Namespace or DNSServer
//! re-renders promptly (a watch, not polling).
//!
//! Services are watched too, for the Service references of records, stub domains and
//! upstreams, but a cluster has many Services and most concern no DNS config: a Service
//! change fires the signal only when some DNSServer, DNSZone or StubDomain refers to that
//! Service, and a snapshot indexes only the referenced Services.

use crate::api::dnspolicy::DNSPolicy;
use crate::api::dnsserver::DNSServer;
use crate::api::dnszone::DNSZone;
use crate::api::rewriterule::RewriteRule;
use crate::api::stubdomain::StubDomain;
use crate::render::Inputs;
use crate::render::services::{self, ServiceIndex, ServiceKey};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::runtime::reflector::{self, ObjectRef, Store};
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
    /// Every `Service` (for Service references), without what rendering does not read.
    pub services: Store<Service>,
    changed: watch::Receiver<u64>,
}

/// A snapshot of the stores' contents, to render from.
pub struct Snapshot {
    namespaces: Vec<Arc<Namespace>>,
    zones: Vec<Arc<DNSZone>>,
    stubs: Vec<Arc<StubDomain>>,
    rewrites: Vec<Arc<RewriteRule>>,
    policies: Vec<Arc<DNSPolicy>>,
    services: ServiceIndex,
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
            services: &self.services,
        }
    }
}

impl Stores {
    /// Starts one watch per kind (in background tasks) and returns once every store holds a
    /// complete list, so nothing renders from a half-filled cache.
    pub async fn start(client: &Client) -> Self {
        let (tx, changed) = watch::channel(0u64);
        let servers = spawn_reflector(Api::all(client.clone()), tx.clone(), every);
        let zones = spawn_reflector(Api::all(client.clone()), tx.clone(), every);
        let stubs = spawn_reflector(Api::all(client.clone()), tx.clone(), every);
        let policies = spawn_reflector(Api::all(client.clone()), tx.clone(), every);
        let referenced = {
            let (servers, zones, stubs) = (servers.clone(), zones.clone(), stubs.clone());
            let policies = policies.clone();
            move |service: &Service| {
                let namespace = service.metadata.namespace.clone().unwrap_or_default();
                if selected_by(&policies).contains(&namespace) {
                    return true;
                }
                let key = ServiceKey {
                    namespace,
                    name: service.metadata.name.clone().unwrap_or_default(),
                };
                referenced_by(&servers, &zones, &stubs).contains(&key)
            }
        };
        let stores = Self {
            servers,
            zones,
            stubs,
            rewrites: spawn_reflector(Api::all(client.clone()), tx.clone(), every),
            policies,
            namespaces: spawn_reflector(Api::all(client.clone()), tx.clone(), every),
            services: spawn_reflector(Api::all(client.clone()), tx, referenced),
            changed,
        };
        for ready in [
            stores.servers.wait_until_ready().await,
            stores.zones.wait_until_ready().await,
            stores.stubs.wait_until_ready().await,
            stores.rewrites.wait_until_ready().await,
            stores.policies.wait_until_ready().await,
            stores.namespaces.wait_until_ready().await,
            stores.services.wait_until_ready().await,
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
        let selected = selected_by(&self.policies);
        let mut wanted: Vec<Arc<Service>> = referenced_by(&self.servers, &self.zones, &self.stubs)
            .into_iter()
            .filter_map(|key| {
                self.services
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
            })
            .collect();
        if !selected.is_empty() {
            wanted.extend(self.services.state().into_iter().filter(|service| {
                service
                    .metadata
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| selected.contains(ns))
            }));
        }
        let services = ServiceIndex::from_services(wanted.iter().map(|s| s.as_ref()));
        Snapshot {
            services,
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

/// Signals a change of every object of a kind.
fn every<K>(_: &K) -> bool {
    true
}

/// The namespaces whose Services the stored DNSPolicies select by label.
fn selected_by(policies: &Store<DNSPolicy>) -> std::collections::BTreeSet<String> {
    services::selected_namespaces(policies.state().iter().map(|p| p.as_ref()))
}

/// Every Service the stored DNSServers, DNSZones and StubDomains refer to.
fn referenced_by(
    servers: &Store<DNSServer>,
    zones: &Store<DNSZone>,
    stubs: &Store<StubDomain>,
) -> std::collections::BTreeSet<ServiceKey> {
    let (servers, zones, stubs) = (servers.state(), zones.state(), stubs.state());
    services::referenced(
        servers.iter().map(|s| s.as_ref()),
        zones.iter().map(|z| z.as_ref()),
        stubs.iter().map(|s| s.as_ref()),
    )
}

/// Caches every `K` in a background task; a change to an object for which `signals` holds
/// fires the change signal. Managed fields and annotations are dropped: nothing reads them,
/// and they are most of an object's size (`last-applied-configuration`).
fn spawn_reflector<K>(
    api: Api<K>,
    changed: watch::Sender<u64>,
    signals: impl Fn(&K) -> bool + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic()).modify(|object: &mut K| {
            object.meta_mut().managed_fields = None;
            object.meta_mut().annotations = None;
        }),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(object) if signals(&object) => {
                    changed.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&K::DynamicType::default()), error = %e, "watch error; retrying")
                }
            }
        }
    });
    reader
}
