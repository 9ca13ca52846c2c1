//! In-memory caches (reflector stores) of every object the renderer reads, and one change
//! signal that fires whenever any of them changes. Every reconcile renders from these stores,
//! so a change to any DNSZone, StubDomain, RewriteRule, DNSPolicy, Namespace or DNSServer
//! re-renders promptly (a watch, not polling).
//!
//! Nodes (trimmed to their addresses, allocatable CPU and schedulability, signalling only
//! when those change or a Node comes or goes) and the EndpointSlices of `default/kubernetes`
//! are watched for the cluster's own addresses, which tenant forwarders may not use
//! ([`crate::render::forwarders`]), and the Nodes for the proportional replica count
//! ([`crate::scaling`]).
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
use crate::render::forwarders::ClusterAddresses;
use crate::render::services::{self, ServiceIndex, ServiceKey};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
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
    /// Every `Node`, with nothing but its addresses (no tenant forwarder may use them),
    /// allocatable CPU and `spec.unschedulable` (for the proportional replica count).
    pub nodes: Store<Node>,
    /// The EndpointSlices of `default/kubernetes`: the API server's own addresses.
    pub api_server_slices: Store<EndpointSlice>,
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
    cluster_addresses: ClusterAddresses,
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
            cluster_addresses: &self.cluster_addresses,
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
            move |service: &Service, _deleted: bool| {
                let namespace = service.metadata.namespace.clone().unwrap_or_default();
                if is_api_server_service(service) || selected_by(&policies).contains(&namespace) {
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
            services: spawn_reflector(Api::all(client.clone()), tx.clone(), referenced),
            nodes: spawn_reflector_with(
                Api::all(client.clone()),
                watcher::Config::default().any_semantic(),
                tx.clone(),
                node_facts_changed(),
                keep_only_node_facts,
            ),
            api_server_slices: spawn_reflector_with(
                Api::namespaced(client.clone(), "default"),
                watcher::Config::default()
                    .any_semantic()
                    .labels("kubernetes.io/service-name=kubernetes"),
                tx,
                every,
                |_| {},
            ),
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
            stores.nodes.wait_until_ready().await,
            stores.api_server_slices.wait_until_ready().await,
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
            cluster_addresses: self.cluster_addresses(),
            namespaces: self.namespaces.state(),
            zones: self.zones.state(),
            stubs: self.stubs.state(),
            rewrites: self.rewrites.state(),
            policies: self.policies.state(),
        }
    }

    /// The API server's and the Nodes' addresses, as of now.
    fn cluster_addresses(&self) -> ClusterAddresses {
        let mut addresses = ClusterAddresses::default();
        if let Some(service) = self
            .services
            .get(&ObjectRef::new("kubernetes").within("default"))
        {
            addresses
                .api_server
                .extend(services::ServiceAddresses::of(&service).cluster_ips);
        }
        for slice in self.api_server_slices.state() {
            for endpoint in &slice.endpoints {
                addresses.api_server.extend(
                    endpoint
                        .addresses
                        .iter()
                        .filter_map(|a| a.parse::<std::net::IpAddr>().ok()),
                );
            }
        }
        for node in self.nodes.state() {
            let name = node.metadata.name.clone().unwrap_or_default();
            for address in node_ips(&node) {
                addresses.nodes.insert(address, name.clone());
            }
        }
        addresses
    }

    /// The Nodes' count and allocatable CPU, as of now.
    pub fn node_capacity(&self) -> crate::scaling::NodeCapacity {
        crate::scaling::NodeCapacity::of(self.nodes.state().iter().map(|n| n.as_ref()))
    }

    /// A stream that yields once after every change to any store (bursts are coalesced).
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.changed.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }
}

/// Whether `service` is `default/kubernetes`, the API server's own Service.
fn is_api_server_service(service: &Service) -> bool {
    service.metadata.namespace.as_deref() == Some("default")
        && service.metadata.name.as_deref() == Some("kubernetes")
}

/// The IP addresses in a Node's `status.addresses` (hostnames are skipped).
fn node_ips(node: &Node) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.address.parse().ok())
}

/// Drops all of a Node but its name, addresses, allocatable CPU and schedulability: Node
/// objects are large (images, conditions, capacity) and change every few seconds
/// (heartbeats); only these matter.
fn keep_only_node_facts(node: &mut Node) {
    node.metadata.labels = None;
    node.spec = node
        .spec
        .take()
        .map(|spec| k8s_openapi::api::core::v1::NodeSpec {
            unschedulable: spec.unschedulable,
            ..Default::default()
        });
    if let Some(status) = node.status.take() {
        node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            addresses: status.addresses,
            allocatable: status
                .allocatable
                .and_then(|a| a.get("cpu").cloned())
                .map(|cpu| std::collections::BTreeMap::from([("cpu".to_string(), cpu)])),
            ..Default::default()
        });
    }
}

/// What the operator reads from a Node.
type NodeFacts = (Vec<std::net::IpAddr>, u64, bool);

fn node_facts(node: &Node) -> NodeFacts {
    (
        node_ips(node).collect(),
        crate::scaling::allocatable_millicores(node),
        node.spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    )
}

/// A signal filter for Nodes that fires only when a Node comes, goes, or changes its
/// addresses, allocatable CPU or schedulability, not on every heartbeat (a status update
/// every 10 s per Node would re-render every DNSServer).
fn node_facts_changed() -> impl Fn(&Node, bool) -> bool + Send + 'static {
    let seen = std::sync::Mutex::new(std::collections::HashMap::<String, NodeFacts>::new());
    move |node: &Node, deleted: bool| {
        let name = node.metadata.name.clone().unwrap_or_default();
        let Ok(mut seen) = seen.lock() else {
            return true;
        };
        if deleted {
            seen.remove(&name);
            return true;
        }
        let now = node_facts(node);
        seen.insert(name, now.clone()).as_ref() != Some(&now)
    }
}

/// Signals a change of every object of a kind.
fn every<K>(_: &K, _deleted: bool) -> bool {
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
/// fires the change signal (`signals` is told whether the object was deleted). Managed fields and annotations are dropped: nothing reads them,
/// and they are most of an object's size (`last-applied-configuration`).
fn spawn_reflector<K>(
    api: Api<K>,
    changed: watch::Sender<u64>,
    signals: impl Fn(&K, bool) -> bool + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    spawn_reflector_with(
        api,
        watcher::Config::default().any_semantic(),
        changed,
        signals,
        |_| {},
    )
}

/// [`spawn_reflector`] with a watch config of its own and a `trim` of what is kept.
fn spawn_reflector_with<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: watch::Sender<u64>,
    signals: impl Fn(&K, bool) -> bool + Send + 'static,
    mut trim: impl FnMut(&mut K) + Send + 'static,
) -> Store<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, config).modify(move |object: &mut K| {
            object.meta_mut().managed_fields = None;
            object.meta_mut().annotations = None;
            trim(object);
        }),
    )
    .default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let fire = match &event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    signals(object, false)
                }
                Ok(watcher::Event::Delete(object)) => signals(object, true),
                // A re-list may have dropped objects deleted while the watch was down.
                Ok(watcher::Event::InitDone) => true,
                Ok(watcher::Event::Init) => false,
                Err(_) => false,
            };
            if fire {
                changed.send_modify(|n| *n = n.wrapping_add(1));
            }
            match event {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&K::DynamicType::default()), error = %e, "watch error; retrying")
                }
            }
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(address: &str, cpu: &str, cordoned: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"a": "b"}},
            "spec": {"unschedulable": cordoned, "podCIDR": "10.244.0.0/24"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": address}],
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .expect("node")
    }

    #[test]
    fn node_signal_fires_on_what_the_operator_reads_and_on_coming_and_going() {
        let changed = node_facts_changed();
        assert!(changed(&node("192.0.2.1", "4", false), false), "new Node");
        assert!(
            !changed(&node("192.0.2.1", "4", false), false),
            "a heartbeat changes nothing read"
        );
        assert!(changed(&node("192.0.2.2", "4", false), false), "address");
        assert!(changed(&node("192.0.2.2", "8", false), false), "CPU");
        assert!(changed(&node("192.0.2.2", "8", true), false), "cordoned");
        assert!(changed(&node("192.0.2.2", "8", true), true), "deleted");
        assert!(
            changed(&node("192.0.2.2", "8", true), false),
            "the same Node made again counts again"
        );
    }

    #[test]
    fn a_trimmed_node_keeps_what_the_operator_reads() {
        let full = node("192.0.2.1", "3500m", true);
        let mut trimmed = full.clone();
        keep_only_node_facts(&mut trimmed);
        assert_eq!(node_facts(&trimmed), node_facts(&full));
        assert_eq!(node_facts(&trimmed).1, 3500);
        let status = trimmed.status.expect("status");
        assert_eq!(status.allocatable.map(|a| a.len()), Some(1), "cpu only");
        assert!(status.conditions.is_none());
        assert!(trimmed.metadata.labels.is_none());
        assert_eq!(trimmed.spec.and_then(|s| s.pod_cidr), None);
    }
}
