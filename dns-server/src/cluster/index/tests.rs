//! Tests of the snapshot tables: lookups by name and by address, merged slices, Pods.

use super::*;
use crate::cluster::objects::{PortEntry, Protocol};
use std::collections::BTreeMap;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn slice(ips: &[&str]) -> SliceEntry {
    SliceEntry {
        ports: vec![PortEntry {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
        }]
        .into(),
        endpoints: ips
            .iter()
            .map(|text| EndpointEntry {
                ip: ip(text),
                hostname: None,
                pod: None,
            })
            .collect(),
    }
}

#[test]
fn services_by_name_and_ip() {
    let mut services = Services::default();
    let entry = ServiceEntry::cluster_ip([ip("10.96.0.1"), ip("fd00::1")], Vec::new());
    assert!(services.upsert("a", "web", entry.clone()));
    assert!(!services.upsert("a", "web", entry), "unchanged");
    assert_eq!(services.by_ip(&ip("fd00::1"))[0].name.as_ref(), "web");
    assert!(services.upsert(
        "a",
        "web",
        ServiceEntry::cluster_ip([ip("10.96.0.2")], Vec::new())
    ));
    assert!(
        services.by_ip(&ip("10.96.0.1")).is_empty(),
        "old IP unindexed"
    );
    assert!(services.by_ip(&ip("fd00::1")).is_empty());
    assert_eq!(services.by_ip(&ip("10.96.0.2")).len(), 1);
    assert_eq!(services.len(), 1);
    assert!(services.delete("a", "web"));
    assert!(!services.delete("a", "web"));
    assert!(services.by_ip(&ip("10.96.0.2")).is_empty());
    assert!(services.is_empty());
}

#[test]
fn endpoints_merge_slices_and_index_ips() {
    let mut endpoints = Endpoints::default();
    assert!(endpoints.put_slice("a", "web", "web-1", slice(&["10.244.0.1"])));
    assert!(endpoints.put_slice("a", "web", "web-2", slice(&["fd00::1", "fd00::2"])));
    assert!(!endpoints.put_slice("a", "web", "web-2", slice(&["fd00::1", "fd00::2"])));
    let web = endpoints.get("a", "web").expect("web");
    assert_eq!(web.endpoints().count(), 3);
    assert_eq!(web.slices().count(), 2);
    assert_eq!(endpoints.by_ip(&ip("fd00::2"))[0].service.as_ref(), "web");

    assert!(endpoints.put_slice("a", "web", "web-2", slice(&["fd00::3"])));
    assert!(endpoints.by_ip(&ip("fd00::2")).is_empty());
    assert_eq!(endpoints.by_ip(&ip("fd00::3")).len(), 1);

    // The same Pod behind two Services.
    assert!(endpoints.put_slice("a", "db", "db-1", slice(&["10.244.0.1"])));
    assert_eq!(endpoints.by_ip(&ip("10.244.0.1")).len(), 2);

    assert!(endpoints.remove_slice("a", "web", "web-1"));
    assert!(!endpoints.remove_slice("a", "web", "web-1"));
    assert_eq!(endpoints.by_ip(&ip("10.244.0.1")).len(), 1);
    assert!(endpoints.remove_slice("a", "web", "web-2"));
    assert!(endpoints.get("a", "web").is_none(), "no slices, no entry");
    assert_eq!(endpoints.services(), 1);

    let mut empty = Endpoints::default();
    empty.put_slice("a", "web", "web-1", slice(&[]));
    assert!(
        empty
            .get("a", "web")
            .expect("kept for its ports")
            .no_ready_endpoints()
    );
}

#[test]
fn namespaces_and_pods() {
    let mut namespaces = Namespaces::default();
    assert!(namespaces.add("a"));
    assert!(!namespaces.add("a"));
    let snapshot = namespaces.clone();
    assert!(namespaces.remove("a"));
    assert!(snapshot.contains("a") && !namespaces.contains("a"));

    let pod = |namespace: &str, host_network: bool| {
        Arc::new(PodClient {
            namespace: namespace.into(),
            name: "p".into(),
            labels: BTreeMap::new(),
            host_network,
            running: true,
        })
    };
    let (a, b, c) = (pod("a", true), pod("b", true), pod("c", false));
    let shared = [ip("10.244.0.9")];
    let mut pods = Pods::default();
    assert!(pods.replace(None, Some((&shared, &a))));
    assert!(pods.replace(None, Some((&shared, &b))), "host network");
    assert!(pods.contains("a", &ip("10.244.0.9")));
    assert!(!pods.contains("c", &ip("10.244.0.9")));
    assert_eq!(pods.client(&ip("10.244.0.9")), None, "shared: nobody");
    assert!(!pods.replace(Some((&shared, &a)), Some((&shared, &a))));
    assert!(pods.replace(Some((&shared, &a)), None));
    assert!(!pods.contains("a", &ip("10.244.0.9")));
    assert_eq!(pods.ips(), 1);
    assert_eq!(pods.client(&ip("10.244.0.9")), None, "host network: nobody");
    let own = [ip("10.244.0.10")];
    assert!(pods.replace(None, Some((&own, &c))));
    assert_eq!(pods.client(&ip("10.244.0.10")), Some(&c));
    let relabelled = Arc::new(PodClient {
        labels: BTreeMap::from([("app".into(), "x".into())]),
        ..(*c).clone()
    });
    assert!(pods.replace(Some((&own, &c)), Some((&own, &relabelled))));
    assert_eq!(pods.client(&ip("10.244.0.10")), Some(&relabelled));
}

fn live_pod(namespace: &str, name: &str, running: bool) -> Arc<PodClient> {
    Arc::new(PodClient {
        namespace: namespace.into(),
        name: name.into(),
        running,
        ..PodClient::default()
    })
}

#[test]
fn the_running_pod_wins_a_shared_ip() {
    let at = [ip("10.244.0.20")];
    let (old, new) = (
        live_pod("tenant-a", "job", false),
        live_pod("tenant-b", "web", true),
    );
    let mut pods = Pods::default();
    assert!(pods.replace(None, Some((&at, &old))));
    assert_eq!(pods.client(&at[0]), Some(&old), "alone, even not Running");
    assert_eq!(pods.shared(), SharedIps::default());

    assert!(pods.replace(None, Some((&at, &new))));
    assert_eq!(pods.client(&at[0]), Some(&new), "the Running one wins");
    assert_eq!(
        pods.shared(),
        SharedIps {
            running_wins: 1,
            ambiguous: 0
        }
    );

    // Two Running claimants: nobody.
    let also_running = live_pod("tenant-a", "job", true);
    assert!(pods.replace(Some((&at, &old)), Some((&at, &also_running))));
    assert_eq!(pods.client(&at[0]), None);
    assert_eq!(
        pods.shared(),
        SharedIps {
            running_wins: 0,
            ambiguous: 1
        }
    );

    // One leaves: the IP is no longer shared.
    assert!(pods.replace(Some((&at, &also_running)), None));
    assert_eq!(pods.client(&at[0]), Some(&new));
    assert_eq!(pods.shared(), SharedIps::default());

    // Two Pending claimants: nobody, counted as ambiguous, and the count follows a
    // Pod that moves to another IP.
    let (p1, p2) = (
        live_pod("tenant-a", "p1", false),
        live_pod("tenant-b", "p2", false),
    );
    let other = [ip("10.244.0.21")];
    pods.replace(None, Some((&other, &p1)));
    pods.replace(None, Some((&other, &p2)));
    assert_eq!(pods.client(&other[0]), None);
    assert_eq!(pods.shared().ambiguous, 1);
    assert!(pods.replace(Some((&other, &p2)), Some((&at, &p2))));
    assert_eq!(pods.client(&other[0]), Some(&p1));
    assert_eq!(pods.client(&at[0]), Some(&new), "Running beats Pending");
    assert_eq!(
        pods.shared(),
        SharedIps {
            running_wins: 1,
            ambiguous: 0
        }
    );
}

#[test]
fn sync_state_counts_only_watched_tables() {
    let mut cluster = Cluster::new(1);
    assert!(!cluster.synced());
    cluster.set_synced(true);
    assert!(cluster.synced());
    cluster.set_pods_watched(true);
    assert_eq!(cluster.sync_state().pods, Some(false));
    assert!(!cluster.synced());
    cluster.set_synced(true);
    assert!(cluster.synced());
    cluster.set_pods_watched(false);
    assert_eq!(cluster.sync_state().pods, None);

    // A Pod watch being listed only matters to a config that needs Pods.
    cluster.set_pods_watched(true);
    let sync = cluster.sync_state();
    assert!(sync.ready(false, false));
    assert!(!sync.ready(true, false));
    cluster.set_synced(true);
    assert!(cluster.sync_state().ready(true, false));
    cluster.set_pods_watched(false);
    assert!(
        !cluster.sync_state().ready(true, false),
        "needed and not watched"
    );
    cluster.set_nodes_watched(true);
    assert_eq!(cluster.sync_state().nodes, Some(false));
    assert!(!cluster.synced(), "the Nodes are not listed yet");
    cluster.set_synced(true);
    assert!(cluster.synced());
    cluster.set_nodes_watched(false);
    assert_eq!(cluster.sync_state().nodes, None);
}
