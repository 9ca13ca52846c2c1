//! How a `DNSServer`'s Pods are shaped like cluster DNS: the defaults kubeadm's CoreDNS
//! Deployment uses (priority class, tolerations, node selector, anti-affinity) plus a spread
//! over zones and nodes, the dedicated fields of [`DNSPodsSpec`] that replace them, and the
//! `podTemplate` override merged last.
//!
//! Precedence, lowest first: the Pod [`crate::workload`] generates < the dedicated fields <
//! `podTemplate`. The operator's own labels (the Deployment's selector among them, which
//! Kubernetes does not let change) always win, so no override can orphan the Pods.
//!
//! Merge rules of `podTemplate.spec` are k8s-openapi's [`DeepMerge`], which follows the
//! Kubernetes API's own patch strategies (`containers`, `volumes`, `env`… merged by name,
//! `ports` by `containerPort`, other lists replaced, objects field by field, scalars
//! replaced), except `tolerations`, which are appended (an override that adds a toleration
//! should not drop the critical-addon ones).

use crate::api::dnspods::{DNSPodsSpec, PodTemplateOverride};
use crate::apply::is_subset;
use k8s_openapi::DeepMerge;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, ResourceRequirements, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// The label kubeadm's CoreDNS Pods and `kube-dns` Service carry, added on request
/// (`kubeDNSLabel`) so that policies and scrape jobs written for cluster DNS match.
pub const KUBE_DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The priority class of DNS Pods when `priorityClassName` is left out.
pub const DEFAULT_PRIORITY_CLASS: &str = "system-cluster-critical";

/// Name of the DNS container (what `podTemplate.spec.containers` merges into).
pub const DNS_CONTAINER: &str = "dns";

/// Reason of `Stalled=True` when `podTemplate.spec` is not a Pod spec.
pub const INVALID_POD_TEMPLATE: &str = "InvalidPodTemplate";

/// What the workload takes from a `DNSServer` besides its spec: the replica count and the
/// parsed `podTemplate.spec`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    /// Replicas of the Deployment ([`crate::scaling::replicas`]).
    pub replicas: i32,
    /// `podTemplate.spec`, parsed.
    pub overlay: Option<PodSpec>,
}

impl Shape {
    /// The shape of `server` on a cluster of `capacity`, or why its `podTemplate` is invalid.
    pub fn of(
        server: &crate::api::dnsserver::DNSServer,
        capacity: &crate::scaling::NodeCapacity,
    ) -> Result<Self, String> {
        Ok(Self {
            replicas: crate::scaling::replicas(server, capacity),
            overlay: parse_overlay(server.spec.pods.pod_template.as_ref())?,
        })
    }
}

/// kubeadm's CoreDNS tolerations: `CriticalAddonsOnly` and the control-plane taint.
pub fn default_tolerations() -> Vec<Toleration> {
    vec![
        Toleration {
            key: Some("CriticalAddonsOnly".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        },
        Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        },
    ]
}

/// kubeadm's CoreDNS node selector: Linux nodes.
pub fn default_node_selector() -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())])
}

/// Prefer one DNS Pod per node (kubeadm's CoreDNS anti-affinity).
pub fn default_affinity(selector: &BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(match_labels(selector)),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Spread over zones, then nodes; `ScheduleAnyway`, so two replicas start on one node too.
pub fn default_topology_spread() -> Vec<TopologySpreadConstraint> {
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            match_label_keys: Some(vec!["pod-template-hash".into()]),
            ..Default::default()
        })
        .to_vec()
}

/// Requests and limits of the DNS container when `resources` is left out.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("256Mi".into()),
        )])),
        ..Default::default()
    }
}

fn match_labels(selector: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector.clone()),
        ..Default::default()
    }
}

/// Sets the placement and size of `pod` from the dedicated fields of `spec`, or their
/// defaults where left out. `selector` selects this server's Pods.
pub fn apply_dedicated(pod: &mut PodSpec, spec: &DNSPodsSpec, selector: &BTreeMap<String, String>) {
    let priority = spec
        .priority_class_name
        .clone()
        .unwrap_or_else(|| DEFAULT_PRIORITY_CLASS.into());
    pod.priority_class_name = (!priority.is_empty()).then_some(priority);
    let tolerations = spec.tolerations.clone().unwrap_or_else(default_tolerations);
    pod.tolerations = (!tolerations.is_empty()).then_some(tolerations);
    let node_selector = spec
        .node_selector
        .clone()
        .unwrap_or_else(default_node_selector);
    pod.node_selector = (!node_selector.is_empty()).then_some(node_selector);
    let affinity = spec
        .affinity
        .clone()
        .unwrap_or_else(|| default_affinity(selector));
    pod.affinity = (affinity != Affinity::default()).then_some(affinity);
    let mut spread = spec
        .topology_spread_constraints
        .clone()
        .unwrap_or_else(default_topology_spread);
    for constraint in &mut spread {
        constraint
            .label_selector
            .get_or_insert_with(|| match_labels(selector));
    }
    pod.topology_spread_constraints = (!spread.is_empty()).then_some(spread);
    let resources = spec.resources.clone().unwrap_or_else(default_resources);
    for container in pod
        .containers
        .iter_mut()
        .filter(|c| c.name == DNS_CONTAINER)
    {
        container.resources = Some(resources.clone());
    }
}

/// The Pod labels: `own` (the operator's, which win), the `k8s-app: kube-dns` label when
/// asked for, `podLabels` and `podTemplate.metadata.labels`.
pub fn pod_labels(spec: &DNSPodsSpec, own: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = spec.pod_labels.clone();
    if let Some(metadata) = spec.pod_template.as_ref().and_then(|t| t.metadata.as_ref()) {
        labels.extend(metadata.labels.clone());
    }
    if spec.kube_dns_label {
        labels.insert(KUBE_DNS_LABEL.0.into(), KUBE_DNS_LABEL.1.into());
    }
    labels.extend(own.clone());
    labels
}

/// The Pod annotations: `podAnnotations`, then `podTemplate.metadata.annotations`; `None`
/// when there are none.
pub fn pod_annotations(spec: &DNSPodsSpec) -> Option<BTreeMap<String, String>> {
    let mut annotations = spec.pod_annotations.clone();
    if let Some(metadata) = spec.pod_template.as_ref().and_then(|t| t.metadata.as_ref()) {
        annotations.extend(metadata.annotations.clone());
    }
    (!annotations.is_empty()).then_some(annotations)
}

/// `podTemplate.spec` as a Pod spec, or why it is not one. A field the Pod spec does not have
/// (a typo) or a value of the wrong type is an error, not silently dropped.
pub fn parse_overlay(template: Option<&PodTemplateOverride>) -> Result<Option<PodSpec>, String> {
    let Some(spec) = template.and_then(|t| t.spec.as_ref()) else {
        return Ok(None);
    };
    let given = serde_json::Value::Object(spec.clone());
    let parsed: PodSpec = serde_json::from_value(given.clone())
        .map_err(|e| format!("podTemplate.spec is not a Pod spec: {e}"))?;
    let read_back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    if !is_subset(&given, &read_back) {
        return Err(format!(
            "podTemplate.spec has fields a Pod spec does not have (read as {read_back}); check their names and nesting"
        ));
    }
    Ok(Some(parsed))
}

/// Merges `overlay` (a parsed `podTemplate.spec`) over `pod`.
pub fn merge_overlay(pod: &mut PodSpec, mut overlay: PodSpec) {
    let added = overlay.tolerations.take();
    pod.merge_from(overlay);
    if let Some(added) = added {
        let tolerations = pod.tolerations.get_or_insert_with(Vec::new);
        for toleration in added {
            if !tolerations.contains(&toleration) {
                tolerations.push(toleration);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn selector() -> BTreeMap<String, String> {
        BTreeMap::from([("app.kubernetes.io/instance".to_string(), "edge".to_string())])
    }

    fn generated() -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: DNS_CONTAINER.into(),
                image: Some("example/nameplane:1".into()),
                args: Some(vec!["--listen".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn spec(yaml: &str) -> DNSPodsSpec {
        serde_saphyr::from_str(yaml).expect("pods spec")
    }

    #[test]
    fn left_out_fields_take_kubeadm_coredns_defaults() {
        let mut pod = generated();
        apply_dedicated(&mut pod, &DNSPodsSpec::default(), &selector());
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        let keys: Vec<_> = pod
            .tolerations
            .iter()
            .flatten()
            .map(|t| t.key.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "CriticalAddonsOnly",
                "node-role.kubernetes.io/control-plane"
            ]
        );
        assert_eq!(pod.node_selector, Some(default_node_selector()));
        let spread = pod.topology_spread_constraints.expect("spread");
        assert_eq!(
            spread
                .iter()
                .map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str()))
                .collect::<Vec<_>>(),
            [
                ("topology.kubernetes.io/zone", "ScheduleAnyway"),
                ("kubernetes.io/hostname", "ScheduleAnyway")
            ]
        );
        assert!(
            spread
                .iter()
                .all(|c| c.label_selector == Some(match_labels(&selector())))
        );
        assert!(pod.affinity.is_some());
        assert_eq!(pod.containers[0].resources, Some(default_resources()));
    }

    #[test]
    fn empty_values_turn_a_default_off_and_given_values_replace_it() {
        let mut pod = generated();
        let given = spec(
            "priorityClassName: ''\ntolerations: []\nnodeSelector: {}\naffinity: {}\ntopologySpreadConstraints: []\n",
        );
        apply_dedicated(&mut pod, &given, &selector());
        assert_eq!(pod.priority_class_name, None);
        assert_eq!(pod.tolerations, None);
        assert_eq!(pod.node_selector, None);
        assert_eq!(pod.affinity, None);
        assert_eq!(pod.topology_spread_constraints, None);

        let mut pod = generated();
        let given = spec(
            "priorityClassName: dns-high\nnodeSelector: {pool: infra}\nresources: {requests: {cpu: 250m}}\ntopologySpreadConstraints: [{maxSkew: 2, topologyKey: rack, whenUnsatisfiable: DoNotSchedule}]\n",
        );
        apply_dedicated(&mut pod, &given, &selector());
        assert_eq!(pod.priority_class_name.as_deref(), Some("dns-high"));
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([("pool".into(), "infra".into())]))
        );
        let requests = pod.containers[0]
            .resources
            .clone()
            .and_then(|r| r.requests)
            .expect("requests");
        assert_eq!(requests["cpu"], Quantity("250m".into()));
        let spread = pod.topology_spread_constraints.expect("spread");
        assert_eq!(spread.len(), 1);
        assert_eq!(
            spread[0].label_selector,
            Some(match_labels(&selector())),
            "a constraint without a selector counts this server's Pods"
        );
    }

    #[test]
    fn operator_labels_win_over_extra_and_template_labels() {
        let own = BTreeMap::from([
            ("app.kubernetes.io/instance".to_string(), "edge".to_string()),
            (
                "app.kubernetes.io/name".to_string(),
                "nameplane-dns".to_string(),
            ),
        ]);
        let given = spec(
            "podLabels: {team: net, app.kubernetes.io/instance: other}\nkubeDNSLabel: true\npodTemplate: {metadata: {labels: {tier: dns, app.kubernetes.io/name: x}, annotations: {a: '1'}}}\npodAnnotations: {b: '2'}\n",
        );
        let labels = pod_labels(&given, &own);
        assert_eq!(labels["app.kubernetes.io/instance"], "edge");
        assert_eq!(labels["app.kubernetes.io/name"], "nameplane-dns");
        assert_eq!(labels["team"], "net");
        assert_eq!(labels["tier"], "dns");
        assert_eq!(labels["k8s-app"], "kube-dns");
        let annotations = pod_annotations(&given).expect("annotations");
        assert_eq!(
            (annotations["a"].as_str(), annotations["b"].as_str()),
            ("1", "2")
        );
        assert!(!pod_labels(&DNSPodsSpec::default(), &own).contains_key("k8s-app"));
    }

    #[test]
    fn pod_template_merges_containers_by_name_and_appends_tolerations() {
        let mut pod = generated();
        apply_dedicated(&mut pod, &DNSPodsSpec::default(), &selector());
        let given = spec(
            "podTemplate:\n  spec:\n    containers:\n    - {name: dns, imagePullPolicy: Always, env: [{name: GOMAXPROCS, value: '2'}]}\n    - {name: sidecar, image: example/sidecar:1}\n    tolerations: [{key: dedicated, value: dns, effect: NoSchedule}]\n    nodeSelector: {pool: dns}\n    priorityClassName: tenant-critical\n",
        );
        let overlay = parse_overlay(given.pod_template.as_ref())
            .expect("valid")
            .expect("given");
        merge_overlay(&mut pod, overlay);
        assert_eq!(pod.containers.len(), 2);
        let dns = &pod.containers[0];
        assert_eq!(dns.name, "dns");
        assert_eq!(dns.image.as_deref(), Some("example/nameplane:1"), "kept");
        assert_eq!(dns.args, Some(vec!["--listen".to_string()]), "kept");
        assert_eq!(dns.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(dns.env.as_ref().map(Vec::len), Some(1));
        assert_eq!(dns.resources, Some(default_resources()), "kept");
        assert_eq!(pod.containers[1].name, "sidecar");
        let keys: Vec<_> = pod
            .tolerations
            .iter()
            .flatten()
            .map(|t| t.key.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "CriticalAddonsOnly",
                "node-role.kubernetes.io/control-plane",
                "dedicated"
            ]
        );
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([("pool".into(), "dns".into())])),
            "podTemplate wins over the default (and over nodeSelector)"
        );
        assert_eq!(pod.priority_class_name.as_deref(), Some("tenant-critical"));
    }

    #[test]
    fn a_pod_template_that_is_no_pod_spec_is_an_error() {
        for bad in [
            "podTemplate: {spec: {nodeSelectr: {pool: dns}}}",
            "podTemplate: {spec: {containers: [{name: dns, imagePullPolcy: Always}]}}",
            "podTemplate: {spec: {terminationGracePeriodSeconds: soon}}",
        ] {
            let given = spec(bad);
            assert!(parse_overlay(given.pod_template.as_ref()).is_err(), "{bad}");
        }
        assert_eq!(parse_overlay(None), Ok(None));
    }
}
