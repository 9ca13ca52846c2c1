//! The part of a `DNSServer`'s spec that shapes its Pods, its Service and its replica count,
//! flattened into [`DNSServerSpec`](super::dnsserver::DNSServerSpec) (the fields sit directly
//! under `spec`). Left out, each field takes the value kubeadm's CoreDNS Deployment uses; the
//! defaults live in [`crate::pods`], not in the CRD, so a stored object keeps following them.
//!
//! Precedence, lowest first: the operator's generated Pod < the dedicated fields here
//! (`priorityClassName`, `tolerations`, …) < `podTemplate`.

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the DNS Pods are placed, sized and labelled, how the DNS Service is addressed, and who
/// decides the replica count.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DNSPodsSpec {
    /// PriorityClass of the DNS Pods. Left out: `system-cluster-critical`, as kubeadm's
    /// CoreDNS. Some clusters (GKE, for one) admit that class outside `kube-system` only in a
    /// namespace with a ResourceQuota for it; the chart can ship one
    /// (`dnsServer.criticalPriorityQuota`). `""` sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,

    /// Tolerations of the DNS Pods. Left out: `CriticalAddonsOnly` (any effect) and the
    /// control-plane taint `node-role.kubernetes.io/control-plane:NoSchedule`, as kubeadm's
    /// CoreDNS. `[]` sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node labels a DNS Pod's node must have. Left out: `kubernetes.io/os: linux`. `{}` sets
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Scheduling affinity of the DNS Pods. Left out: prefer one DNS Pod per node (pod
    /// anti-affinity on `kubernetes.io/hostname`, weight 100), as kubeadm's CoreDNS. `{}` sets
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the DNS Pods spread. Left out: skew at most 1 over zones
    /// (`topology.kubernetes.io/zone`) and over nodes (`kubernetes.io/hostname`), both
    /// `ScheduleAnyway` so that two replicas still start on a one-node or one-zone cluster,
    /// counted per rollout (`matchLabelKeys: [pod-template-hash]`). A constraint without a
    /// `labelSelector` gets one that selects this server's Pods. `[]` sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// CPU and memory of the DNS container. Left out: requests `cpu: 100m`, `memory: 64Mi`,
    /// limit `memory: 256Mi` (kubeadm's CoreDNS has a 170Mi limit; the answer cache and, with
    /// policies or autopath, the Pod index need more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra labels of the DNS Pods. The operator's own labels (`app.kubernetes.io/name`,
    /// `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`, `nameplane.io/dnsserver`)
    /// cannot be changed here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations of the DNS Pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Adds the label `k8s-app: kube-dns` to the DNS Pods and the DNS Service, as kubeadm's
    /// CoreDNS has, so that NetworkPolicies and scrape jobs written for cluster DNS (e.g.
    /// kube-prometheus's) match this server too. The operator's selectors do not use it. In
    /// `kube-system` next to CoreDNS, its `kube-dns` Service then selects these Pods as well.
    #[serde(default, rename = "kubeDNSLabel")]
    pub kube_dns_label: bool,

    /// A partial Pod template merged over the Pod the operator generates (after the dedicated
    /// fields above): `metadata.labels` and `metadata.annotations` are added (the
    /// operator's own labels win); `spec` is merged like a strategic merge patch: objects field
    /// by field, `containers`, `initContainers`, `volumes`, `imagePullSecrets` and a
    /// container's `env` and `volumeMounts` by name (an item with a new name is added, e.g. a
    /// sidecar; the DNS container is named `dns`), `ports` by `containerPort`, `tolerations`
    /// appended, every other list and every scalar replaced. A field can be set or replaced
    /// but not removed. A `spec` that is not a valid Pod spec (an unknown field, a wrong type)
    /// makes the DNSServer `Stalled` with reason `InvalidPodTemplate` and the running Pods
    /// stay as they are; a merged Pod the API server refuses (e.g. a sidecar without an
    /// image) makes it `Stalled` with reason `WorkloadRefused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverride>,

    /// Cluster IPs of the DNS Service, at most one per IP family, the first being the
    /// primary (it equals `clusterIP` when both are set), e.g. `[10.96.0.10, fd00:10:96::a]`.
    /// Left out, Kubernetes picks them. The primary cannot be changed once set; a secondary
    /// can be added with `ipFamilyPolicy: PreferDualStack` or `RequireDualStack`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "clusterIPs"
    )]
    #[schemars(length(min = 1, max = 2))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(a, isIP(a))", "message": "clusterIPs must be IP addresses like 192.0.2.10 or 2001:db8::a"},
        {"rule": "size(self) < 2 || ip(self[0]).family() != ip(self[1]).family()", "message": "clusterIPs takes at most one address per IP family"},
        {"rule": "self[0] == oldSelf[0]", "message": "the primary cluster IP (clusterIPs[0]) cannot be changed; create a new DNSServer instead"}
    ]))]
    pub cluster_ips: Option<Vec<ServiceIP>>,

    /// IP families of the DNS Service (`IPv4`, `IPv6`), the primary first. Left out,
    /// Kubernetes decides from `ipFamilyPolicy` and the cluster. The primary family cannot be
    /// changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "size(self) < 2 || self[0] != self[1]", "message": "ipFamilies lists each family once"},
        {"rule": "self[0] == oldSelf[0]", "message": "the primary IP family (ipFamilies[0]) cannot be changed; create a new DNSServer instead"}
    ]))]
    pub ip_families: Option<Vec<IPFamily>>,

    /// Whether the DNS Service is single-stack or dual-stack: `SingleStack`,
    /// `PreferDualStack` or `RequireDualStack`. Left out, Kubernetes uses `SingleStack`
    /// unless `clusterIPs` or `ipFamilies` name two families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<IPFamilyPolicy>,

    /// Replica count computed by the operator. Left out, the count is `replicas`, which
    /// belongs to whoever sets it: a person, `kubectl scale dnsserver`, a
    /// HorizontalPodAutoscaler or KEDA through the `/scale` subresource; the operator only
    /// copies it to the Deployment. With `mode: Proportional` the operator owns the count and
    /// `replicas` is ignored (do not point an autoscaler at this DNSServer then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

/// A cluster IP of the DNS Service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct ServiceIP(
    // The coarse shape (hex digits, dots, colons), which Helm's values schema checks too;
    // the CEL rule on `clusterIPs` is the exact one.
    #[schemars(length(min = 2, max = 45), regex(pattern = r"^[0-9A-Fa-f:.]+$"))] pub String,
);

/// An IP family of a Service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IPFamily {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// Single- or dual-stack, as a Service's `ipFamilyPolicy`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IPFamilyPolicy {
    /// One family.
    SingleStack,
    /// Both families where the cluster has both, else one.
    PreferDualStack,
    /// Both families; the Service is refused on a single-stack cluster.
    RequireDualStack,
}

impl IPFamily {
    /// The value Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            IPFamily::IPv4 => "IPv4",
            IPFamily::IPv6 => "IPv6",
        }
    }
}

impl IPFamilyPolicy {
    /// The value Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            IPFamilyPolicy::SingleStack => "SingleStack",
            IPFamilyPolicy::PreferDualStack => "PreferDualStack",
            IPFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

/// What `podTemplate` may carry: Pod labels and annotations, and a partial Pod spec.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverride {
    /// Labels and annotations added to the DNS Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,
    /// A partial Pod spec (the fields of a Deployment's `spec.template.spec`, all optional),
    /// merged over the generated one as `podTemplate` describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub spec: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Labels and annotations of `podTemplate`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    /// Labels added to the DNS Pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the DNS Pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An object the API server stores as given; the operator checks it is a Pod spec.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A partial Pod spec (the fields of a Deployment's spec.template.spec, all optional), merged over the generated one as podTemplate describes.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The replica count computed by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.max) || self.min <= self.max",
    "message": "autoscaling.min must not be larger than autoscaling.max"
}]))]
pub struct AutoscalingSpec {
    /// `Proportional`: like the cluster-proportional-autoscaler's `linear` mode (which
    /// scales kube-dns in many clusters), replicas = max(ceil(cores / coresPerReplica),
    /// ceil(nodes / nodesPerReplica)), then at least 2 when `preventSinglePointFailure` and
    /// there is more than one node, then within `min` and `max`. Nodes and their allocatable
    /// CPU cores are counted from the Node objects (schedulable ones only, unless
    /// `includeUnschedulableNodes`), followed as Nodes come and go.
    pub mode: AutoscalingMode,
    /// Allocatable CPU cores per DNS replica.
    #[serde(default = "default_cores_per_replica")]
    #[schemars(range(min = 1, max = 100_000))]
    pub cores_per_replica: i32,
    /// Nodes per DNS replica.
    #[serde(default = "default_nodes_per_replica")]
    #[schemars(range(min = 1, max = 100_000))]
    pub nodes_per_replica: i32,
    /// Fewest replicas.
    #[serde(default = "default_min")]
    #[schemars(range(min = 1, max = 1000))]
    pub min: i32,
    /// Most replicas. Left out: no upper bound but the count the formula gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max: Option<i32>,
    /// At least 2 replicas when the cluster has more than one node.
    #[serde(default = "yes")]
    pub prevent_single_point_failure: bool,
    /// Count cordoned nodes (`spec.unschedulable`) and their cores too.
    #[serde(default)]
    pub include_unschedulable_nodes: bool,
}

/// Who computes the replica count.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoscalingMode {
    /// From the cluster's node and core counts.
    Proportional,
}

fn default_cores_per_replica() -> i32 {
    256
}
fn default_nodes_per_replica() -> i32 {
    16
}
fn default_min() -> i32 {
    1
}
fn yes() -> bool {
    true
}
