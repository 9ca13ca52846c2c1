//! Watch events in, [`Cluster`] snapshots out: the single writer of the cluster tables.
//!
//! [`ClusterWriter`] does no I/O, so it is tested with synthetic events; the watch task
//! ([`crate::cluster::watch`]) feeds it and publishes its snapshots.
//!
//! - `Apply`/`Delete` change the live table in place (copy-on-write);
//! - `Init` starts a re-list of that resource into a separate, empty table while the live one
//!   keeps serving; `InitDone` replaces the live table with it in one step and marks it
//!   listed. That is also how objects deleted while the watch was down (410 Gone, API server
//!   restart) disappear: they are simply not in the new list;
//! - every change moves the SOA serial to the current unix time; a re-list that finds
//!   exactly what was there changes nothing, not even the serial.
//!
//! The writer also keeps what the snapshot does not need: which Service each EndpointSlice
//! belongs to and which IPs each Pod has, to undo an object's old contribution when it
//! changes or goes away.

mod tables;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::watcher;

use self::tables::{EndpointsTable, Key, NodesTable, PodsTable, Relisted, key_of};
use super::index::{Cluster, Namespaces, Services};
use super::nodes;
use super::objects;

/// The current unix time in seconds, truncated to 32 bits: the SOA serial of a change.
pub(crate) fn unix_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Truncation is intended: SOA serials are 32-bit sequence numbers (RFC 1982).
    secs as u32
}

/// A watch event of one of the watched resources.
///
/// The variants differ in size (a Pod is the largest object); events live only from the
/// watch stream to [`ClusterWriter::apply`], so boxing them would cost an allocation each for
/// nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Event {
    /// Services.
    Service(watcher::Event<Service>),
    /// EndpointSlices.
    Slice(watcher::Event<EndpointSlice>),
    /// Namespaces.
    Namespace(watcher::Event<Namespace>),
    /// Pods.
    Pod(watcher::Event<Pod>),
    /// Nodes (their addresses, for the node client class).
    Node(watcher::Event<Node>),
}

/// One DNS programming latency sample: the Service kind and the trigger time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LatencySample {
    /// `service_kind` label.
    pub service_kind: &'static str,
    /// When the change that caused the update happened, unix nanoseconds.
    pub trigger_time: u128,
}

/// The single writer of the cluster tables.
#[derive(Debug)]
pub(crate) struct ClusterWriter {
    services: Relisted<Services>,
    endpoints: Relisted<EndpointsTable>,
    namespaces: Relisted<Namespaces>,
    pods: Option<Relisted<PodsTable>>,
    nodes: Option<Relisted<NodesTable>>,
    serial: u32,
    clock: fn() -> u32,
    latencies: Vec<LatencySample>,
}

impl ClusterWriter {
    /// A writer starting from empty, unlisted tables; `clock` gives the serial of a change
    /// (normally [`unix_serial`]).
    pub(crate) fn new(clock: fn() -> u32) -> Self {
        Self {
            services: Relisted::default(),
            endpoints: Relisted::default(),
            namespaces: Relisted::default(),
            pods: None,
            nodes: None,
            serial: clock(),
            clock,
            latencies: Vec::new(),
        }
    }

    /// Starts or stops tracking Pods. Returns whether that changed anything; a newly
    /// tracked table is empty and unlisted until its watch completes a list.
    pub(crate) fn set_pods_watched(&mut self, watched: bool) -> bool {
        if watched == self.pods.is_some() {
            return false;
        }
        self.pods = watched.then(Relisted::default);
        self.serial = (self.clock)();
        true
    }

    /// Starts or stops tracking the Nodes' addresses. Returns whether that changed
    /// anything; a newly tracked table is empty and unlisted until its watch completes a
    /// list. The SOA serial stays: no record changes.
    pub(crate) fn set_nodes_watched(&mut self, watched: bool) -> bool {
        if watched == self.nodes.is_some() {
            return false;
        }
        self.nodes = watched.then(Relisted::default);
        true
    }

    /// The tables as they stand, to publish.
    pub(crate) fn snapshot(&self) -> Arc<Cluster> {
        Arc::new(
            Cluster::from_tables(
                self.services.live.clone(),
                self.endpoints.live.table.clone(),
                self.namespaces.live.clone(),
                self.pods.as_ref().map(|pods| pods.live.table.clone()),
                self.serial,
            )
            .with_nodes(self.nodes.as_ref().map(|nodes| nodes.live.table.clone())),
        )
    }

    /// Takes the latency samples gathered since the last call.
    pub(crate) fn take_latencies(&mut self) -> Vec<LatencySample> {
        std::mem::take(&mut self.latencies)
    }

    /// Applies one event; returns whether the published snapshot must change.
    pub(crate) fn apply(&mut self, event: Event) -> bool {
        let changed = match event {
            Event::Service(event) => self.services.apply(
                event,
                |table, service| {
                    objects::compact_service(&service)
                        .is_some_and(|(ns, name, entry)| table.upsert(&ns, &name, entry))
                },
                |table, service| {
                    key_of(&service).is_some_and(|(ns, name)| table.delete(&ns, &name))
                },
            ),
            Event::Slice(event) => self.apply_slice(event),
            Event::Namespace(event) => self.namespaces.apply(
                event,
                |table, namespace| table.add(&namespace.name_any()),
                |table, namespace| table.remove(&namespace.name_any()),
            ),
            Event::Pod(event) => match &mut self.pods {
                Some(pods) => pods.apply(
                    event,
                    |table, pod| {
                        objects::compact_pod(&pod).is_some_and(|(ips, client)| {
                            let key: Key = (
                                client.namespace.as_ref().into(),
                                client.name.as_ref().into(),
                            );
                            table.upsert(key, ips, client)
                        })
                    },
                    |table, pod| key_of(&pod).is_some_and(|key| table.delete(&key)),
                ),
                None => false,
            },
            // Node addresses are no records: a change publishes, but keeps the serial.
            Event::Node(event) => {
                return self.nodes.as_mut().is_some_and(|nodes| {
                    nodes.apply(
                        event,
                        |table, node| {
                            let (name, ips) = nodes::compact_node(&node);
                            table.upsert(name, ips)
                        },
                        |table, node| table.delete(&node.name_any()),
                    )
                });
            }
        };
        if changed {
            self.serial = (self.clock)();
        }
        changed
    }

    /// Applies one EndpointSlice event, and keeps a latency sample of a live change.
    fn apply_slice(&mut self, event: watcher::Event<EndpointSlice>) -> bool {
        let live_change = matches!(event, watcher::Event::Apply(_));
        let mut sample = None;
        let services = &self.services.live;
        let changed = self.endpoints.apply(
            event,
            |table, slice| {
                let Some(key) = key_of(&slice) else {
                    return false;
                };
                let compact = objects::compact_slice(&slice);
                if live_change
                    && let Some(compact) = &compact
                    && let Some(trigger_time) = compact.trigger_time
                    && let Some(service) = services.get(&compact.namespace, &compact.service)
                {
                    sample = Some(LatencySample {
                        service_kind: service.kind_label(),
                        trigger_time,
                    });
                }
                table.upsert(key, compact)
            },
            |table, slice| key_of(&slice).is_some_and(|key| table.delete(&key)),
        );
        if changed && let Some(sample) = sample {
            self.latencies.push(sample);
        }
        changed
    }
}

#[cfg(test)]
mod tests;
