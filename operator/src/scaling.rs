//! The replica count of a `DNSServer`'s Deployment, and who owns it.
//!
//! - Without `autoscaling`, the count is `spec.replicas`. It belongs to whoever sets it: a
//!   person, `kubectl scale dnsserver` or an autoscaler through the CRD's `/scale`
//!   subresource (`status.replicas`, `status.selector`). The operator copies it to the
//!   Deployment and never writes `spec.replicas` itself.
//! - With `autoscaling.mode: Proportional`, the operator owns the count and computes it like
//!   the cluster-proportional-autoscaler's `linear` mode from the Node objects it already
//!   watches ([`crate::controller::stores`] keeps only their addresses, allocatable CPU and
//!   schedulability, and signals when any of these or the set of Nodes changes).

use crate::api::dnspods::AutoscalingSpec;
use crate::api::dnsserver::DNSServer;
use k8s_openapi::api::core::v1::Node;

/// What the proportional formula reads from the Nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCapacity {
    /// Nodes not cordoned (`spec.unschedulable` not set).
    pub schedulable_nodes: u32,
    /// Allocatable CPU of those nodes, in millicores.
    pub schedulable_millicores: u64,
    /// Every Node.
    pub nodes: u32,
    /// Allocatable CPU of every Node, in millicores.
    pub millicores: u64,
}

impl NodeCapacity {
    /// Counts `nodes`.
    pub fn of<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let mut capacity = Self::default();
        for node in nodes {
            let millicores = allocatable_millicores(node);
            capacity.nodes += 1;
            capacity.millicores += millicores;
            if !node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
            {
                capacity.schedulable_nodes += 1;
                capacity.schedulable_millicores += millicores;
            }
        }
        capacity
    }
}

/// A Node's allocatable CPU in millicores (0 when not reported or not understood).
pub fn allocatable_millicores(node: &Node) -> u64 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("cpu"))
        .and_then(|q| parse_millicores(&q.0))
        .unwrap_or(0)
}

/// `4` → 4000, `3500m` → 3500, `1.5` → 1500.
fn parse_millicores(quantity: &str) -> Option<u64> {
    if let Some(millis) = quantity.strip_suffix('m') {
        return millis.parse().ok();
    }
    let cores: f64 = quantity.parse().ok()?;
    (cores.is_finite() && cores >= 0.0).then(|| (cores * 1000.0).round() as u64)
}

/// The cluster-proportional-autoscaler's `linear` formula.
pub fn proportional(autoscaling: &AutoscalingSpec, capacity: &NodeCapacity) -> i32 {
    let (nodes, millicores) = if autoscaling.include_unschedulable_nodes {
        (capacity.nodes, capacity.millicores)
    } else {
        (capacity.schedulable_nodes, capacity.schedulable_millicores)
    };
    // The CRD keeps both at 1 or more; the clamp keeps a hand-made object from dividing by 0.
    let per_replica = |n: i32| u64::try_from(n.max(1)).unwrap_or(1);
    let from_cores = millicores.div_ceil(per_replica(autoscaling.cores_per_replica) * 1000);
    let from_nodes = u64::from(nodes).div_ceil(per_replica(autoscaling.nodes_per_replica));
    let mut replicas = from_cores.max(from_nodes);
    if autoscaling.prevent_single_point_failure && nodes > 1 {
        replicas = replicas.max(2);
    }
    let mut replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
    replicas = replicas.max(autoscaling.min);
    if let Some(max) = autoscaling.max {
        replicas = replicas.min(max);
    }
    replicas
}

/// The count the Deployment gets: `spec.replicas`, or the proportional count.
pub fn replicas(server: &DNSServer, capacity: &NodeCapacity) -> i32 {
    match &server.spec.pods.autoscaling {
        Some(autoscaling) => proportional(autoscaling, capacity),
        None => server.spec.replicas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dnspods::AutoscalingMode;

    fn linear(cores: i32, nodes: i32, min: i32, max: Option<i32>) -> AutoscalingSpec {
        AutoscalingSpec {
            mode: AutoscalingMode::Proportional,
            cores_per_replica: cores,
            nodes_per_replica: nodes,
            min,
            max,
            prevent_single_point_failure: true,
            include_unschedulable_nodes: false,
        }
    }

    fn node(cpu: &str, cordoned: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": cordoned},
            "status": {"allocatable": {"cpu": cpu}},
        }))
        .expect("node")
    }

    #[test]
    fn capacity_counts_schedulable_nodes_and_their_cores() {
        let nodes = [node("4", false), node("3500m", false), node("8", true)];
        let capacity = NodeCapacity::of(&nodes);
        assert_eq!(
            capacity,
            NodeCapacity {
                schedulable_nodes: 2,
                schedulable_millicores: 7500,
                nodes: 3,
                millicores: 15_500,
            }
        );
    }

    #[test]
    fn linear_formula_like_cluster_proportional_autoscaler() {
        let cap = |nodes: u32, cores: u64| NodeCapacity {
            schedulable_nodes: nodes,
            schedulable_millicores: cores * 1000,
            nodes,
            millicores: cores * 1000,
        };
        // kube-dns's usual parameters: 256 cores or 16 nodes per replica.
        let kube_dns = linear(256, 16, 1, None);
        assert_eq!(proportional(&kube_dns, &cap(1, 4)), 1, "one node: min");
        assert_eq!(
            proportional(&kube_dns, &cap(3, 12)),
            2,
            "no single point of failure"
        );
        assert_eq!(proportional(&kube_dns, &cap(40, 160)), 3, "ceil(40/16)");
        assert_eq!(proportional(&kube_dns, &cap(40, 1000)), 4, "ceil(1000/256)");
        assert_eq!(proportional(&linear(256, 1, 1, Some(5)), &cap(40, 10)), 5);
        assert_eq!(proportional(&linear(256, 16, 3, None), &cap(1, 1)), 3);
        let mut single = linear(256, 16, 1, None);
        single.prevent_single_point_failure = false;
        assert_eq!(proportional(&single, &cap(3, 12)), 1);
    }

    #[test]
    fn cordoned_nodes_count_only_when_asked() {
        let nodes = [node("2", false), node("2", true), node("2", true)];
        let capacity = NodeCapacity::of(&nodes);
        let mut spec = linear(256, 1, 1, None);
        assert_eq!(proportional(&spec, &capacity), 1);
        spec.include_unschedulable_nodes = true;
        assert_eq!(proportional(&spec, &capacity), 3);
    }
}
