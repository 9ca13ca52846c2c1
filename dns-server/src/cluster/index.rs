//! The cluster snapshot the query path reads, and the tables it is made of.
//!
//! A [`Cluster`] is immutable once published. It holds up to five tables, each filled from one
//! watch and each knowing whether its initial list has completed:
//!
//! | table          | forward lookup                         | reverse lookup (PTR)        |
//! |----------------|----------------------------------------|-----------------------------|
//! | [`Services`]   | namespace/name → [`ServiceEntry`]      | cluster IP → Service        |
//! | [`Endpoints`]  | namespace/Service → its slices' ready endpoints | endpoint IP → endpoints |
//! | [`Namespaces`] | the names of the (selected) namespaces | —                           |
//! | [`Pods`]       | Pod IP → live Pods (when the config needs Pods) | —                   |
//! | [`NodeAddresses`] | the Nodes' addresses (when the node client class needs them) | — |
//!
//! Tables are built from [`crate::cluster::maps`] so a snapshot clone costs a few
//! hundred pointer copies, not one copy per object. Lookups allocate nothing.
//!
//! The SOA serial is the unix time of the last change to any table.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::maps::{NamespacedMap, ShardedMultiMap};
pub use super::nodes::NodeAddresses;
pub use super::objects::PodClient;
use super::objects::{EndpointEntry, ServiceEntry, SliceEntry};
pub use super::pods::{Pods, SharedIps};

/// A Service, as the reverse index names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Service name.
    pub name: Arc<str>,
}

/// An endpoint, as the reverse index names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRef {
    /// Namespace.
    pub namespace: Arc<str>,
    /// The Service whose slice lists the endpoint.
    pub service: Arc<str>,
    /// The endpoint.
    pub endpoint: EndpointEntry,
}

/// Every Service, by name and by cluster IP.
#[derive(Clone, Debug, Default)]
pub struct Services {
    by_name: NamespacedMap<Arc<ServiceEntry>>,
    by_ip: ShardedMultiMap<ServiceRef>,
    synced: bool,
}

impl Services {
    fn reference(&self, namespace: &str, name: &str) -> ServiceRef {
        ServiceRef {
            namespace: self
                .by_name
                .namespace_key(namespace)
                .unwrap_or_else(|| Arc::from(namespace)),
            name: Arc::from(name),
        }
    }

    /// Adds or replaces a Service; returns whether anything changed.
    pub fn upsert(&mut self, namespace: &str, name: &str, entry: ServiceEntry) -> bool {
        if self
            .by_name
            .get(namespace, name)
            .is_some_and(|old| **old == entry)
        {
            return false;
        }
        self.delete(namespace, name);
        let ips: Vec<IpAddr> = entry.cluster_ips().collect();
        self.by_name.insert(namespace, name, Arc::new(entry));
        let reference = self.reference(namespace, name);
        for ip in ips {
            self.by_ip.add(ip, reference.clone());
        }
        true
    }

    /// Removes a Service; returns whether it was there.
    pub fn delete(&mut self, namespace: &str, name: &str) -> bool {
        let reference = self.reference(namespace, name);
        let Some(old) = self.by_name.remove(namespace, name) else {
            return false;
        };
        for ip in old.cluster_ips() {
            self.by_ip.remove_one(&ip, &reference);
        }
        true
    }

    /// The Service `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.by_name.get(namespace, name).map(|entry| &**entry)
    }

    /// The Service `name` in `namespace`, with the namespace and name as stored (to build
    /// answer names that live as long as the snapshot).
    pub fn entry(&self, namespace: &str, name: &str) -> Option<(&str, &str, &ServiceEntry)> {
        self.by_name
            .get_entry(namespace, name)
            .map(|(ns, name, entry)| (ns, name, &**entry))
    }

    /// Every Service, as (namespace, name, entry).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &ServiceEntry)> {
        self.by_name
            .iter()
            .map(|(ns, name, entry)| (ns, name, &**entry))
    }

    /// The Services with this cluster IP.
    pub fn by_ip(&self, ip: &IpAddr) -> &[ServiceRef] {
        self.by_ip.get(ip)
    }

    /// Number of Services.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The EndpointSlices of one Service (their ready endpoints and ports).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    slices: Box<[(Box<str>, Arc<SliceEntry>)]>,
    /// Some address is in two slices (a slice lists each address once, but an endpoint
    /// moving between slices is briefly in both): answers must drop the repeats.
    repeats: bool,
}

impl ServiceEndpoints {
    fn new(slices: Vec<(Box<str>, Arc<SliceEntry>)>) -> Self {
        // Worked out once per slice change, so the query path skips de-duplicating.
        let repeats = slices.len() > 1 && {
            let mut seen = std::collections::HashSet::new();
            slices
                .iter()
                .flat_map(|(_, slice)| slice.endpoints.iter())
                .any(|endpoint| !seen.insert(endpoint.ip))
        };
        Self {
            slices: slices.into(),
            repeats,
        }
    }

    /// Whether an address is in more than one slice.
    pub fn repeats(&self) -> bool {
        self.repeats
    }

    /// The slices.
    pub fn slices(&self) -> impl Iterator<Item = &SliceEntry> {
        self.slices.iter().map(|(_, slice)| &**slice)
    }

    /// Every ready endpoint address, with the slice it is in.
    pub fn endpoints(&self) -> impl Iterator<Item = (&SliceEntry, &EndpointEntry)> {
        self.slices()
            .flat_map(|slice| slice.endpoints.iter().map(move |e| (slice, e)))
    }

    /// Whether no slice has a ready endpoint.
    pub fn no_ready_endpoints(&self) -> bool {
        self.slices().all(|slice| slice.endpoints.is_empty())
    }
}

/// Every EndpointSlice, grouped by Service, and every ready endpoint by IP.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    by_service: NamespacedMap<Arc<ServiceEndpoints>>,
    by_ip: ShardedMultiMap<EndpointRef>,
    synced: bool,
}

impl Endpoints {
    fn references<'s>(
        &self,
        namespace: &str,
        service: &str,
        slice: &'s SliceEntry,
    ) -> impl Iterator<Item = (IpAddr, EndpointRef)> + 's {
        let namespace = self
            .by_service
            .namespace_key(namespace)
            .unwrap_or_else(|| Arc::from(namespace));
        let service: Arc<str> = Arc::from(service);
        slice.endpoints.iter().map(move |endpoint| {
            (
                endpoint.ip,
                EndpointRef {
                    namespace: Arc::clone(&namespace),
                    service: Arc::clone(&service),
                    endpoint: endpoint.clone(),
                },
            )
        })
    }

    /// Adds or replaces the slice `slice` of `service`; returns whether anything changed.
    pub fn put_slice(
        &mut self,
        namespace: &str,
        service: &str,
        slice: &str,
        entry: SliceEntry,
    ) -> bool {
        let current = self.by_service.get(namespace, service).cloned();
        let old = current
            .as_ref()
            .and_then(|c| c.slices.iter().find(|(name, _)| &**name == slice))
            .map(|(_, old)| Arc::clone(old));
        if old.as_deref() == Some(&entry) {
            return false;
        }
        if let Some(old) = &old {
            let stale: Vec<_> = self.references(namespace, service, old).collect();
            for (ip, reference) in stale {
                self.by_ip.remove_one(&ip, &reference);
            }
        }
        let entry = Arc::new(entry);
        let mut slices: Vec<_> = current
            .map(|c| c.slices.to_vec())
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _)| &**name != slice)
            .collect();
        slices.push((Box::from(slice), Arc::clone(&entry)));
        self.by_service
            .insert(namespace, service, Arc::new(ServiceEndpoints::new(slices)));
        let fresh: Vec<_> = self.references(namespace, service, &entry).collect();
        for (ip, reference) in fresh {
            self.by_ip.add(ip, reference);
        }
        true
    }

    /// Removes the slice `slice` of `service`; returns whether it was there.
    pub fn remove_slice(&mut self, namespace: &str, service: &str, slice: &str) -> bool {
        let Some(current) = self.by_service.get(namespace, service).cloned() else {
            return false;
        };
        let Some((_, old)) = current.slices.iter().find(|(name, _)| &**name == slice) else {
            return false;
        };
        let stale: Vec<_> = self.references(namespace, service, old).collect();
        for (ip, reference) in stale {
            self.by_ip.remove_one(&ip, &reference);
        }
        let slices: Vec<_> = current
            .slices
            .iter()
            .filter(|(name, _)| &**name != slice)
            .cloned()
            .collect();
        if slices.is_empty() {
            self.by_service.remove(namespace, service);
        } else {
            self.by_service
                .insert(namespace, service, Arc::new(ServiceEndpoints::new(slices)));
        }
        true
    }

    /// The slices of `service` in `namespace`.
    pub fn get(&self, namespace: &str, service: &str) -> Option<&ServiceEndpoints> {
        self.by_service.get(namespace, service).map(|e| &**e)
    }

    /// The ready endpoints with this IP.
    pub fn by_ip(&self, ip: &IpAddr) -> &[EndpointRef] {
        self.by_ip.get(ip)
    }

    /// Number of Services with slices.
    pub fn services(&self) -> usize {
        self.by_service.len()
    }
}

/// The names of the namespaces (those the namespace selector selects).
#[derive(Clone, Debug, Default)]
pub struct Namespaces {
    names: Arc<HashSet<Box<str>>>,
    synced: bool,
}

impl Namespaces {
    /// Adds a namespace; returns whether it was new.
    pub fn add(&mut self, name: &str) -> bool {
        if self.names.contains(name) {
            return false;
        }
        Arc::make_mut(&mut self.names).insert(Box::from(name))
    }

    /// Removes a namespace; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        if !self.names.contains(name) {
            return false;
        }
        Arc::make_mut(&mut self.names).remove(name)
    }

    /// Whether the namespace exists (and is selected).
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Number of namespaces.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Every namespace name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A table that knows whether its initial list completed.
pub trait Synced {
    /// Whether the initial list completed.
    fn synced(&self) -> bool;
    /// Marks the initial list as completed (or not).
    fn set_synced(&mut self, synced: bool);
}

macro_rules! synced {
    ($($table:ty),*) => {$(
        impl Synced for $table {
            fn synced(&self) -> bool {
                self.synced
            }
            fn set_synced(&mut self, synced: bool) {
                self.synced = synced;
            }
        }
    )*};
}
synced!(Services, Endpoints, Namespaces, Pods, NodeAddresses);

/// Which tables have completed their initial list (for `/ready` and the query path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncState {
    /// Services listed.
    pub services: bool,
    /// EndpointSlices listed.
    pub endpoints: bool,
    /// Namespaces listed.
    pub namespaces: bool,
    /// Pods listed; `None` when Pods are not watched.
    pub pods: Option<bool>,
    /// Nodes listed; `None` when Nodes are not watched.
    pub nodes: Option<bool>,
}

impl SyncState {
    /// Every watched table has completed its initial list.
    pub fn all(self) -> bool {
        self.services
            && self.endpoints
            && self.namespaces
            && self.pods.unwrap_or(true)
            && self.nodes.unwrap_or(true)
    }

    /// Every table a config reads has completed its initial list: Services, EndpointSlices,
    /// Namespaces, and Pods and Nodes if it needs them (a watch started for a config that
    /// waits to be swapped in does not count).
    pub fn ready(self, needs_pods: bool, needs_nodes: bool) -> bool {
        self.services
            && self.endpoints
            && self.namespaces
            && (!needs_pods || self.pods == Some(true))
            && (!needs_nodes || self.nodes == Some(true))
    }
}

/// One immutable view of the cluster, as DNS sees it.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Services.
    pub services: Services,
    /// EndpointSlices.
    pub endpoints: Endpoints,
    /// Namespaces.
    pub namespaces: Namespaces,
    /// Pods, when watched (`pods: verified`).
    pub pods: Option<Pods>,
    /// The Nodes' addresses, when watched (the node client class takes them from the Nodes).
    pub nodes: Option<NodeAddresses>,
    serial: u32,
}

impl Cluster {
    /// An empty cluster that has not been listed yet, with this SOA serial.
    pub fn new(serial: u32) -> Self {
        Self {
            services: Services::default(),
            endpoints: Endpoints::default(),
            namespaces: Namespaces::default(),
            pods: None,
            nodes: None,
            serial,
        }
    }

    /// Assembles a snapshot from tables.
    pub fn from_tables(
        services: Services,
        endpoints: Endpoints,
        namespaces: Namespaces,
        pods: Option<Pods>,
        serial: u32,
    ) -> Self {
        Self {
            services,
            endpoints,
            namespaces,
            pods,
            nodes: None,
            serial,
        }
    }

    /// This snapshot with the Nodes' addresses (`None`: Nodes are not watched).
    pub fn with_nodes(mut self, nodes: Option<NodeAddresses>) -> Self {
        self.nodes = nodes;
        self
    }

    /// The SOA serial: the unix time (seconds, truncated to 32 bits) of the last change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Sets the SOA serial.
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// Which tables have completed their initial list.
    pub fn sync_state(&self) -> SyncState {
        SyncState {
            services: self.services.synced,
            endpoints: self.endpoints.synced,
            namespaces: self.namespaces.synced,
            pods: self.pods.as_ref().map(|pods| pods.synced),
            nodes: self.nodes.as_ref().map(Synced::synced),
        }
    }

    /// Whether every watched table has completed its initial list.
    pub fn synced(&self) -> bool {
        self.sync_state().all()
    }

    /// Marks every table as listed (or not); for tests and the server's own tests.
    pub fn set_synced(&mut self, synced: bool) {
        self.services.synced = synced;
        self.endpoints.synced = synced;
        self.namespaces.synced = synced;
        if let Some(pods) = &mut self.pods {
            pods.synced = synced;
        }
        if let Some(nodes) = &mut self.nodes {
            nodes.set_synced(synced);
        }
    }

    /// Starts (or stops) tracking the Nodes' addresses, with an empty, unsynced table.
    pub fn set_nodes_watched(&mut self, watched: bool) {
        self.nodes = watched.then(NodeAddresses::default);
    }

    /// Starts (or stops) tracking Pods, with an empty, unsynced table.
    pub fn set_pods_watched(&mut self, watched: bool) {
        self.pods = watched.then(Pods::default);
    }
}

#[cfg(test)]
mod tests;
