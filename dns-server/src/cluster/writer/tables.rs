//! The tables as the writer keeps them: each snapshot table with the bookkeeping needed to
//! undo an object's old contribution (which Service a slice belongs to, which IPs a Pod or
//! Node has), and [`Relisted`], a live table plus the one a re-list fills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::watcher;

use crate::cluster::index::{Endpoints, Namespaces, PodClient, Pods, Services, Synced};
use crate::cluster::nodes::NodeAddresses;
use crate::cluster::objects::CompactSlice;

/// Namespace and name of an object.
pub(super) type Key = (Box<str>, Box<str>);

pub(super) fn key_of<K: ResourceExt>(object: &K) -> Option<Key> {
    Some((object.namespace()?.into(), object.name_any().into()))
}

/// A table with the writer-side bookkeeping it needs.
pub(super) trait Table: Default + Synced {
    /// Whether both hold the same objects (ignoring sync state).
    fn same(&self, other: &Self) -> bool;
}

impl Table for Services {
    fn same(&self, other: &Self) -> bool {
        self.len() == other.len()
            && other
                .iter()
                .all(|(ns, name, entry)| self.get(ns, name) == Some(entry))
    }
}

#[derive(Debug, Default)]
pub(super) struct EndpointsTable {
    pub(super) table: Endpoints,
    owners: HashMap<Key, Box<str>>,
}

impl Synced for EndpointsTable {
    fn synced(&self) -> bool {
        self.table.synced()
    }
    fn set_synced(&mut self, synced: bool) {
        self.table.set_synced(synced);
    }
}

impl Table for EndpointsTable {
    fn same(&self, other: &Self) -> bool {
        self.owners == other.owners
            && self.owners.iter().all(|((ns, _), service)| {
                self.table.get(ns, service) == other.table.get(ns, service)
            })
    }
}

impl EndpointsTable {
    pub(super) fn upsert(&mut self, key: Key, slice: Option<CompactSlice>) -> bool {
        let Some(slice) = slice else {
            // No longer labelled with a Service: as if deleted.
            return self.delete(&key);
        };
        let mut changed = false;
        if let Some(previous) = self.owners.get(&key)
            && **previous != *slice.service
        {
            changed |= self.table.remove_slice(&key.0, previous, &key.1);
        }
        changed |= self
            .table
            .put_slice(&key.0, &slice.service, &key.1, slice.entry);
        self.owners.insert(key, slice.service.into());
        changed
    }

    pub(super) fn delete(&mut self, key: &Key) -> bool {
        match self.owners.remove(key) {
            Some(service) => self.table.remove_slice(&key.0, &service, &key.1),
            None => false,
        }
    }
}

impl Table for Namespaces {
    fn same(&self, other: &Self) -> bool {
        self.len() == other.len() && other.names().all(|name| self.contains(name))
    }
}

#[derive(Debug, Default)]
pub(super) struct PodsTable {
    pub(super) table: Pods,
    pods: HashMap<Key, (Box<[IpAddr]>, Arc<PodClient>)>,
}

impl Synced for PodsTable {
    fn synced(&self) -> bool {
        self.table.synced()
    }
    fn set_synced(&mut self, synced: bool) {
        self.table.set_synced(synced);
    }
}

impl Table for PodsTable {
    fn same(&self, other: &Self) -> bool {
        self.pods == other.pods
    }
}

impl PodsTable {
    pub(super) fn upsert(&mut self, key: Key, ips: Box<[IpAddr]>, client: PodClient) -> bool {
        let old = self.pods.get(&key).cloned();
        let new = (!ips.is_empty()).then(|| (ips, Arc::new(client)));
        let changed = self.table.replace(as_ref(&old), as_ref(&new));
        match new {
            Some(entry) => self.pods.insert(key, entry),
            None => self.pods.remove(&key),
        };
        changed
    }

    pub(super) fn delete(&mut self, key: &Key) -> bool {
        match self.pods.remove(key) {
            Some((ips, pod)) => self.table.replace(Some((&ips, &pod)), None),
            None => false,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct NodesTable {
    pub(super) table: NodeAddresses,
    nodes: HashMap<Box<str>, Box<[IpAddr]>>,
}

impl Synced for NodesTable {
    fn synced(&self) -> bool {
        self.table.synced()
    }
    fn set_synced(&mut self, synced: bool) {
        self.table.set_synced(synced);
    }
}

impl Table for NodesTable {
    fn same(&self, other: &Self) -> bool {
        // The same addresses, whichever Node lists them.
        self.table.len() == other.table.len()
            && other
                .nodes
                .values()
                .flatten()
                .all(|ip| self.table.contains(ip))
    }
}

impl NodesTable {
    pub(super) fn upsert(&mut self, name: Box<str>, ips: Box<[IpAddr]>) -> bool {
        let old = self.nodes.remove(&name).unwrap_or_default();
        let changed = self.table.replace(&old, &ips);
        self.nodes.insert(name, ips);
        changed
    }

    pub(super) fn delete(&mut self, name: &str) -> bool {
        match self.nodes.remove(name) {
            Some(ips) => self.table.replace(&ips, &[]),
            None => false,
        }
    }
}

/// A table entry as [`Pods::replace`] takes it.
fn as_ref(entry: &Option<(Box<[IpAddr]>, Arc<PodClient>)>) -> Option<(&[IpAddr], &Arc<PodClient>)> {
    entry.as_ref().map(|(ips, pod)| (&ips[..], pod))
}

/// A live table and, during a re-list, the one being filled.
#[derive(Debug, Default)]
pub(super) struct Relisted<T> {
    pub(super) live: T,
    relist: Option<T>,
}

impl<T: Table> Relisted<T> {
    /// Applies one event; `upsert` and `delete` change a table and say whether it changed.
    /// Returns whether the live table changed.
    pub(super) fn apply<K>(
        &mut self,
        event: watcher::Event<K>,
        mut upsert: impl FnMut(&mut T, K) -> bool,
        mut delete: impl FnMut(&mut T, K) -> bool,
    ) -> bool {
        match event {
            watcher::Event::Apply(object) => upsert(&mut self.live, object),
            watcher::Event::Delete(object) => delete(&mut self.live, object),
            watcher::Event::Init => {
                self.relist = Some(T::default());
                false
            }
            watcher::Event::InitApply(object) => {
                upsert(self.relist.get_or_insert_with(T::default), object);
                false
            }
            watcher::Event::InitDone => {
                let mut fresh = self.relist.take().unwrap_or_default();
                let changed = !self.live.synced() || !fresh.same(&self.live);
                fresh.set_synced(true);
                self.live = fresh;
                changed
            }
        }
    }
}
