//! What the integration tests that run a real server share: the cluster they answer from.

use std::net::{IpAddr, Ipv4Addr};

use nameplane_dns::cluster::{Cluster, ServiceEntry};

/// A listed cluster: Service `default/web` (10.96.0.10, fd00::10) and `default/wide`, whose
/// 40 ClusterIPs make an answer larger than a plain UDP reply.
pub fn cluster() -> Cluster {
    let mut cluster = Cluster::new(1);
    cluster.namespaces.add("default");
    cluster.services.upsert(
        "default",
        "web",
        ServiceEntry::cluster_ip(
            ["10.96.0.10", "fd00::10"].map(|ip| ip.parse().expect("ip")),
            Vec::new(),
        ),
    );
    cluster.services.upsert(
        "default",
        "wide",
        ServiceEntry::cluster_ip(
            (0..40).map(|i| IpAddr::V4(Ipv4Addr::new(10, 97, 0, i))),
            Vec::new(),
        ),
    );
    cluster.set_synced(true);
    cluster
}
