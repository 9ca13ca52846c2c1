//! Tests of the writer: watch events and re-lists into tables, serials, latency samples.

use super::*;
use k8s_openapi::api::core::v1::{PodIP, PodStatus, ServiceSpec};
use k8s_openapi::api::discovery::v1::Endpoint;
use kube::api::ObjectMeta;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::IpAddr;

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
    let addresses: Vec<(&str, &str)> = internal_ips.iter().map(|ip| ("InternalIP", *ip)).collect();
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
