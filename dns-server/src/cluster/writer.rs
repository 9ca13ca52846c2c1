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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::watcher;

use super::index::{Cluster, Endpoints, Namespaces, PodClient, Pods, Services, Synced};
use super::nodes::{self, NodeAddresses};
use super::objects::{self, CompactSlice};

/// The current unix time in seconds, truncated to 32 bits: the SOA serial of a change.
pub fn unix_serial() -> u32 {
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
pub enum Event {
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

/// Namespace and name of an object.
type Key = (Box<str>, Box<str>);

fn key_of<K: ResourceExt>(object: &K) -> Option<Key> {
    Some((object.namespace()?.into(), object.name_any().into()))
}

/// A table with the writer-side bookkeeping it needs.
trait Table: Default + Synced {
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
struct EndpointsTable {
    table: Endpoints,
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
    fn upsert(&mut self, key: Key, slice: Option<CompactSlice>) -> bool {
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

    fn delete(&mut self, key: &Key) -> bool {
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
struct PodsTable {
    table: Pods,
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
    fn upsert(&mut self, key: Key, ips: Box<[IpAddr]>, client: PodClient) -> bool {
        let old = self.pods.get(&key).cloned();
        let new = (!ips.is_empty()).then(|| (ips, Arc::new(client)));
        let changed = self.table.replace(as_ref(&old), as_ref(&new));
        match new {
            Some(entry) => self.pods.insert(key, entry),
            None => self.pods.remove(&key),
        };
        changed
    }

    fn delete(&mut self, key: &Key) -> bool {
        match self.pods.remove(key) {
            Some((ips, pod)) => self.table.replace(Some((&ips, &pod)), None),
            None => false,
        }
    }
}

#[derive(Debug, Default)]
struct NodesTable {
    table: NodeAddresses,
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
    fn upsert(&mut self, name: Box<str>, ips: Box<[IpAddr]>) -> bool {
        let old = self.nodes.remove(&name).unwrap_or_default();
        let changed = self.table.replace(&old, &ips);
        self.nodes.insert(name, ips);
        changed
    }

    fn delete(&mut self, name: &str) -> bool {
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
struct Relisted<T> {
    live: T,
    relist: Option<T>,
}

impl<T: Table> Relisted<T> {
    /// Applies one event; `upsert` and `delete` change a table and say whether it changed.
    /// Returns whether the live table changed.
    fn apply<K>(
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

/// One DNS programming latency sample: the Service kind and the trigger time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySample {
    /// `service_kind` label.
    pub service_kind: &'static str,
    /// When the change that caused the update happened, unix nanoseconds.
    pub trigger_time: u128,
}

/// The single writer of the cluster tables.
#[derive(Debug)]
pub struct ClusterWriter {
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
    pub fn new(clock: fn() -> u32) -> Self {
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
    pub fn set_pods_watched(&mut self, watched: bool) -> bool {
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
    pub fn set_nodes_watched(&mut self, watched: bool) -> bool {
        if watched == self.nodes.is_some() {
            return false;
        }
        self.nodes = watched.then(Relisted::default);
        true
    }

    /// The tables as they stand, to publish.
    pub fn snapshot(&self) -> Arc<Cluster> {
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
    pub fn take_latencies(&mut self) -> Vec<LatencySample> {
        std::mem::take(&mut self.latencies)
    }

    /// Applies one event; returns whether the published snapshot must change.
    pub fn apply(&mut self, event: Event) -> bool {
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
            Event::Slice(event) => {
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
                            && let Some(service) =
                                services.get(&compact.namespace, &compact.service)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodStatus, ServiceSpec};
    use k8s_openapi::api::discovery::v1::Endpoint;
    use kube::api::ObjectMeta;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    thread_local! {
        // Per test thread, so tests running in parallel do not share a clock.
        static NOW: Cell<u32> = const { Cell::new(100) };
    }

    fn clock() -> u32 {
        NOW.with(Cell::get)
    }

    fn set_now(now: u32) {
        NOW.with(|cell| cell.set(now));
    }

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    fn service(namespace: &str, name: &str, ips: &[&str]) -> Service {
        Service {
            metadata: meta(namespace, name),
            spec: Some(ServiceSpec {
                cluster_ips: Some(ips.iter().map(|ip| (*ip).to_owned()).collect()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn slice(namespace: &str, name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
        let mut metadata = meta(namespace, name);
        metadata.labels = Some(BTreeMap::from([(
            objects::SERVICE_NAME_LABEL.into(),
            service.into(),
        )]));
        EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: ips
                .iter()
                .map(|ip| Endpoint {
                    addresses: vec![(*ip).into()],
                    ..Endpoint::default()
                })
                .collect(),
            ports: None,
        }
    }

    fn namespace(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    fn pod(namespace: &str, name: &str, ip: &str) -> Pod {
        Pod {
            metadata: meta(namespace, name),
            status: Some(PodStatus {
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn list<K>(
        writer: &mut ClusterWriter,
        wrap: fn(watcher::Event<K>) -> Event,
        objects: Vec<K>,
    ) -> bool {
        writer.apply(wrap(watcher::Event::Init));
        for object in objects {
            assert!(
                !writer.apply(wrap(watcher::Event::InitApply(object))),
                "lists publish at the end"
            );
        }
        writer.apply(wrap(watcher::Event::InitDone))
    }

    fn synced_writer() -> ClusterWriter {
        let mut writer = ClusterWriter::new(clock);
        list(
            &mut writer,
            Event::Service,
            vec![service("a", "web", &["10.96.0.1"])],
        );
        list(
            &mut writer,
            Event::Slice,
            vec![slice("a", "web-1", "web", &["10.244.0.1"])],
        );
        list(&mut writer, Event::Namespace, vec![namespace("a")]);
        writer
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn node(name: &str, internal_ips: &[&str]) -> Node {
        let addresses: Vec<(&str, &str)> =
            internal_ips.iter().map(|ip| ("InternalIP", *ip)).collect();
        crate::cluster::nodes::tests::node(name, &addresses)
    }

    #[test]
    fn node_addresses_follow_the_nodes_without_moving_the_serial() {
        set_now(100);
        let mut writer = synced_writer();
        assert!(
            !writer.apply(Event::Node(watcher::Event::Apply(node(
                "n1",
                &["192.0.2.1"]
            )))),
            "Nodes are not watched: ignored"
        );
        assert!(writer.snapshot().nodes.is_none());
        assert!(writer.set_nodes_watched(true));
        assert!(!writer.set_nodes_watched(true));
        assert!(!writer.snapshot().synced(), "the Nodes must list too");
        set_now(200);
        assert!(list(
            &mut writer,
            Event::Node,
            vec![node("n1", &["192.0.2.1"]), node("n2", &["192.0.2.2"])]
        ));
        let snapshot = writer.snapshot();
        assert!(snapshot.synced());
        assert_eq!(snapshot.serial(), 100, "no record changed");
        let nodes = snapshot.nodes.as_ref().expect("watched");
        assert!(nodes.contains(&ip("192.0.2.1")) && nodes.contains(&ip("192.0.2.2")));
        // A status update with the same addresses (a heartbeat) publishes nothing.
        assert!(!writer.apply(Event::Node(watcher::Event::Apply(node(
            "n1",
            &["192.0.2.1"]
        )))));
        // An address moves; a Node goes away.
        assert!(writer.apply(Event::Node(watcher::Event::Apply(node(
            "n1",
            &["192.0.2.9"]
        )))));
        assert!(writer.apply(Event::Node(watcher::Event::Delete(node("n2", &[])))));
        let nodes = writer.snapshot().nodes.clone().expect("watched");
        assert!(nodes.contains(&ip("192.0.2.9")));
        assert!(!nodes.contains(&ip("192.0.2.1")) && !nodes.contains(&ip("192.0.2.2")));
        // A re-list that finds the same addresses changes nothing.
        assert!(!list(
            &mut writer,
            Event::Node,
            vec![node("n1", &["192.0.2.9"])]
        ));
        assert!(writer.set_nodes_watched(false));
        assert!(writer.snapshot().nodes.is_none());
        assert_eq!(writer.snapshot().serial(), 100);
    }

    #[test]
    fn synced_only_after_every_initial_list() {
        set_now(100);
        let mut writer = ClusterWriter::new(clock);
        assert!(list(
            &mut writer,
            Event::Service,
            vec![service("a", "web", &["10.96.0.1"])]
        ));
        assert!(!writer.snapshot().synced());
        assert!(
            list(&mut writer, Event::Slice, vec![]),
            "an empty first list still syncs"
        );
        assert!(!writer.snapshot().synced());
        set_now(200);
        assert!(list(&mut writer, Event::Namespace, vec![namespace("a")]));
        let snapshot = writer.snapshot();
        assert!(snapshot.synced());
        assert_eq!(snapshot.serial(), 200);
        assert!(snapshot.services.get("a", "web").is_some());
        assert!(snapshot.namespaces.contains("a"));

        // Pods, once tracked, must list too.
        assert!(writer.set_pods_watched(true));
        assert!(!writer.snapshot().synced());
        assert!(list(
            &mut writer,
            Event::Pod,
            vec![pod("a", "p", "10.244.0.9")]
        ));
        let snapshot = writer.snapshot();
        assert!(snapshot.synced());
        assert!(
            snapshot
                .pods
                .as_ref()
                .is_some_and(|p| p.contains("a", &ip("10.244.0.9")))
        );
        assert!(writer.set_pods_watched(false));
        assert!(writer.snapshot().pods.is_none());
        assert!(!writer.apply(Event::Pod(watcher::Event::Apply(pod("a", "q", "10.0.0.1")))));
    }

    #[test]
    fn changes_move_the_serial_and_old_snapshots_stay() {
        set_now(100);
        let mut writer = synced_writer();
        let before = writer.snapshot();
        set_now(300);
        assert!(writer.apply(Event::Service(watcher::Event::Apply(service(
            "a",
            "db",
            &["10.96.0.2"]
        )))));
        assert!(
            !writer.apply(Event::Service(watcher::Event::Apply(service(
                "a",
                "db",
                &["10.96.0.2"]
            )))),
            "unchanged"
        );
        assert!(writer.apply(Event::Service(watcher::Event::Delete(service(
            "a",
            "web",
            &[]
        )))));
        let after = writer.snapshot();
        assert_eq!(after.serial(), 300);
        assert!(after.services.get("a", "web").is_none());
        assert!(
            before.services.get("a", "web").is_some(),
            "old snapshots do not change"
        );
        assert!(before.services.get("a", "db").is_none());
    }

    #[test]
    fn relist_replaces_atomically_and_drops_missed_deletes() {
        set_now(100);
        let mut writer = synced_writer();
        writer.apply(Event::Slice(watcher::Event::Apply(slice(
            "a",
            "web-2",
            "web",
            &["10.244.0.2"],
        ))));

        // The watch restarts (410 Gone); web-2 and Service web were deleted meanwhile.
        set_now(500);
        writer.apply(Event::Slice(watcher::Event::Init));
        writer.apply(Event::Slice(watcher::Event::InitApply(slice(
            "a",
            "web-1",
            "web",
            &["10.244.0.1"],
        ))));
        assert_eq!(
            writer
                .snapshot()
                .endpoints
                .get("a", "web")
                .map(|e| e.endpoints().count()),
            Some(2),
            "the old table serves during the re-list"
        );
        assert!(writer.apply(Event::Slice(watcher::Event::InitDone)));
        writer.apply(Event::Service(watcher::Event::Init));
        assert!(writer.apply(Event::Service(watcher::Event::InitDone)));
        let snapshot = writer.snapshot();
        assert!(snapshot.synced(), "a re-list keeps the tables listed");
        assert_eq!(
            snapshot
                .endpoints
                .get("a", "web")
                .map(|e| e.endpoints().count()),
            Some(1)
        );
        assert!(snapshot.endpoints.by_ip(&ip("10.244.0.2")).is_empty());
        assert!(snapshot.services.get("a", "web").is_none());
        assert!(snapshot.services.by_ip(&ip("10.96.0.1")).is_empty());
        assert_eq!(snapshot.serial(), 500);

        // An identical re-list changes nothing, not even the serial.
        set_now(900);
        assert!(!list(
            &mut writer,
            Event::Slice,
            vec![slice("a", "web-1", "web", &["10.244.0.1"])]
        ));
        assert!(!list(&mut writer, Event::Namespace, vec![namespace("a")]));
        assert_eq!(writer.snapshot().serial(), 500);
    }

    #[test]
    fn slices_follow_their_service_label() {
        set_now(100);
        let mut writer = synced_writer();
        // The slice is relabelled to another Service, then loses its label.
        assert!(writer.apply(Event::Slice(watcher::Event::Apply(slice(
            "a",
            "web-1",
            "db",
            &["10.244.0.1"]
        )))));
        let snapshot = writer.snapshot();
        assert!(snapshot.endpoints.get("a", "web").is_none());
        assert!(snapshot.endpoints.get("a", "db").is_some());
        let mut unlabelled = slice("a", "web-1", "db", &["10.244.0.1"]);
        unlabelled.metadata.labels = None;
        assert!(writer.apply(Event::Slice(watcher::Event::Apply(unlabelled))));
        assert!(writer.snapshot().endpoints.get("a", "db").is_none());
        assert!(
            writer
                .snapshot()
                .endpoints
                .by_ip(&ip("10.244.0.1"))
                .is_empty()
        );
    }

    #[test]
    fn pods_follow_their_ips() {
        set_now(100);
        let mut writer = synced_writer();
        writer.set_pods_watched(true);
        list(&mut writer, Event::Pod, vec![pod("a", "p", "10.244.0.9")]);
        assert!(writer.apply(Event::Pod(watcher::Event::Apply(pod(
            "a",
            "p",
            "10.244.0.10"
        )))));
        let pods = writer.snapshot().pods.clone().expect("tracked");
        assert!(!pods.contains("a", &ip("10.244.0.9")));
        assert!(pods.contains("a", &ip("10.244.0.10")));
        assert!(writer.apply(Event::Pod(watcher::Event::Delete(pod("a", "p", "")))));
        assert!(
            !writer
                .snapshot()
                .pods
                .clone()
                .expect("tracked")
                .contains("a", &ip("10.244.0.10"))
        );
    }

    #[test]
    fn programming_latency_samples_for_live_slice_changes() {
        set_now(100);
        let mut writer = synced_writer();
        let mut changed = slice("a", "web-1", "web", &["10.244.0.7"]);
        changed.metadata.annotations = Some(BTreeMap::from([(
            objects::TRIGGER_TIME_ANNOTATION.into(),
            "2024-01-01T00:00:00Z".into(),
        )]));
        assert!(writer.apply(Event::Slice(watcher::Event::Apply(changed.clone()))));
        assert_eq!(
            writer.take_latencies(),
            [LatencySample {
                service_kind: "cluster_ip",
                trigger_time: 1_704_067_200_000_000_000
            }]
        );
        assert!(writer.take_latencies().is_empty());
        // Unchanged content and re-lists are not programming.
        assert!(!writer.apply(Event::Slice(watcher::Event::Apply(changed.clone()))));
        list(&mut writer, Event::Slice, vec![changed]);
        assert!(writer.take_latencies().is_empty());
    }
}
