//! The Kubernetes objects that run one `DNSServer`, built as pure functions of the object and
//! the operator's settings: ServiceAccount, RBAC (read-only), the DNS Deployment, Service and
//! PodDisruptionBudget.
//!
//! Choices that matter:
//! - the container listens on 5353 and the Service maps port 53 to it, so the Pod needs no
//!   capability and passes PodSecurity `restricted`;
//! - the server reads its config through an API watch of its ConfigMap (not a volume), so
//!   the Deployment never rolls for a config change; there is no config checksum annotation;
//! - the server's RBAC is read-only, and the operator never writes a ClusterRole: the
//!   cluster-wide read access is two fixed ClusterRoles shipped with the operator
//!   ([`DNS_CLUSTER_ROLE`]: Services, EndpointSlices, Namespaces; [`DNS_CLIENTS_CLUSTER_ROLE`]:
//!   Pods and Nodes, bound only when the config needs to know which Pod a client is,
//!   [`ServerConfig::needs_pods`]), which the operator may only *bind* (RBAC `bind` limited by
//!   `resourceNames`); in its own namespace the server reads only its own ConfigMap (a Role
//!   limited by `resourceNames`, which is why its watch selects `metadata.name`);
//! - the DNS Pods run with `dnsPolicy: Default`, as CoreDNS's do: their `/etc/resolv.conf` is
//!   the node's, whose nameservers `upstreamsFromResolvConf` forwards to, and the server
//!   never resolves through itself;
//! - cluster-scoped bindings cannot be owned by a namespaced `DNSServer`, so they carry the
//!   [`SERVER_LABEL`] and are removed by the `DNSServer`'s finalizer.

use crate::api::dnsserver::DNSServer;
use crate::namespaces::NamespaceAllowList;
use crate::{Error, FIELD_MANAGER, MANAGED_BY_LABEL, Result};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use nameplane_config::ServerConfig;
use std::collections::BTreeMap;

/// Label on every object the operator makes for a `DNSServer`: `<namespace>.<name>`.
pub const SERVER_LABEL: &str = "nameplane.io/dnsserver";

/// The shipped ClusterRole every DNS server is bound to: list/watch Services, EndpointSlices
/// and Namespaces (`config/rbac/dns_server_cluster_roles.yaml`, the chart's
/// `dns-server-clusterroles.yaml`).
pub const DNS_CLUSTER_ROLE: &str = "nameplane-dns";
/// The shipped ClusterRole a DNS server is bound to only while its config needs to know
/// which Pod a client is: list/watch Pods and Nodes.
pub const DNS_CLIENTS_CLUSTER_ROLE: &str = "nameplane-dns-clients";

/// Port the DNS container listens on (UDP and TCP); the Service exposes it as 53.
pub const DNS_CONTAINER_PORT: i32 = 5353;
/// Port of `/health`, `/ready` and `/metrics` in the DNS container.
pub const ADMIN_PORT: i32 = 8080;
/// Seconds a stopping DNS Pod keeps answering while `/ready` fails (lameduck), so clients and
/// kube-proxy move away before it exits.
pub const LAMEDUCK_SECONDS: i64 = 5;

/// Operator settings that shape every DNS deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Container image holding `nameplane-dns`.
    pub image: String,
    /// The namespaces whose `DNSServer`s are served (`--dns-server-namespaces`).
    pub dns_server_namespaces: NamespaceAllowList,
}

/// Every object that runs one `DNSServer`, in apply order.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Identity of the DNS Pods.
    pub service_account: ServiceAccount,
    /// Binds [`DNS_CLUSTER_ROLE`] (Kubernetes DNS, list/watch only) to the ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Binds [`DNS_CLIENTS_CLUSTER_ROLE`] (Pods and Nodes) to the ServiceAccount, when the
    /// config needs it; `None` means a binding of that name must not exist.
    pub clients_binding: Option<ClusterRoleBinding>,
    /// Read access to the server's own ConfigMap (its config), and to nothing else.
    pub role: Role,
    /// Binds [`Workload::role`] to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// The DNS Pods.
    pub deployment: Deployment,
    /// The DNS Service (53/UDP, 53/TCP, 9153 metrics).
    pub service: Service,
    /// Keeps at least all but one DNS Pod up during voluntary disruptions.
    pub pdb: PodDisruptionBudget,
}

/// The name of the namespaced objects (ServiceAccount, Deployment, Service, PDB…).
pub fn dns_name(server: &str) -> String {
    format!("{server}-dns")
}

/// The name of the binding to [`DNS_CLUSTER_ROLE`], unique per namespace and server.
pub fn cluster_rbac_name(namespace: &str, server: &str) -> String {
    format!("{DNS_CLUSTER_ROLE}:{namespace}:{server}")
}

/// The name of the binding to [`DNS_CLIENTS_CLUSTER_ROLE`], unique per namespace and server.
pub fn clients_binding_name(namespace: &str, server: &str) -> String {
    format!("{DNS_CLIENTS_CLUSTER_ROLE}:{namespace}:{server}")
}

/// The value of [`SERVER_LABEL`] for a server.
pub fn server_label_value(namespace: &str, server: &str) -> String {
    format!("{namespace}.{server}")
}

/// Builds the workload of `server` serving `config`, published in ConfigMap `config_map`.
pub fn build(
    server: &DNSServer,
    config: &ServerConfig,
    config_map: &str,
    settings: &Settings,
) -> Result<Workload> {
    let namespace = server
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = server.name_any();
    let owner = server
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let dns = dns_name(&name);
    let rbac = cluster_rbac_name(&namespace, &name);
    let selector = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "nameplane-dns".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name.clone()),
    ]);
    let mut labels = selector.clone();
    labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
    labels.insert(SERVER_LABEL.into(), server_label_value(&namespace, &name));

    let namespaced = |object_name: &str| ObjectMeta {
        name: Some(object_name.into()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let cluster_scoped = |object_name: &str| ObjectMeta {
        name: Some(object_name.into()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: dns.clone(),
        namespace: Some(namespace.clone()),
        ..Default::default()
    };
    let cluster_binding = |object_name: &str, role: &str| ClusterRoleBinding {
        metadata: cluster_scoped(object_name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![subject.clone()]),
    };
    // Every Pod of the cluster is a lot to read and to hold; grant it only to a server whose
    // config uses it (policies, autopath, verified pod records, per-namespace rewrites,
    // client classes). Nodes come with Pods in that role: the node client class needs both,
    // and a config that needs Nodes always needs Pods.
    let clients_binding = config.needs_pods().then(|| {
        cluster_binding(
            &clients_binding_name(&namespace, &name),
            DNS_CLIENTS_CLUSTER_ROLE,
        )
    });

    Ok(Workload {
        service_account: ServiceAccount {
            metadata: namespaced(&dns),
            automount_service_account_token: Some(true),
            ..Default::default()
        },
        cluster_role_binding: cluster_binding(&rbac, DNS_CLUSTER_ROLE),
        clients_binding,
        // Only its own ConfigMap: a list or watch is then allowed only with the field
        // selector `metadata.name=<config_map>`, which the server's watch uses.
        role: Role {
            metadata: namespaced(&dns),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![config_map.into()]),
                verbs: ["get", "list", "watch"].map(String::from).to_vec(),
                ..Default::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: namespaced(&dns),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: dns.clone(),
            },
            subjects: Some(vec![subject]),
        },
        deployment: Deployment {
            metadata: namespaced(&dns),
            spec: Some(DeploymentSpec {
                replicas: Some(server.spec.replicas),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..Default::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString::Int(0)),
                        max_surge: Some(IntOrString::Int(1)),
                    }),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels.clone()),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec(&namespace, config_map, &dns, &selector, settings)),
                },
                ..Default::default()
            }),
            ..Default::default()
        },
        service: Service {
            metadata: namespaced(&dns),
            spec: Some(ServiceSpec {
                selector: Some(selector.clone()),
                cluster_ip: server.spec.cluster_ip.clone(),
                ports: Some(vec![
                    service_port("dns", "UDP", 53, DNS_CONTAINER_PORT),
                    service_port("dns-tcp", "TCP", 53, DNS_CONTAINER_PORT),
                    service_port("metrics", "TCP", 9153, ADMIN_PORT),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
        pdb: PodDisruptionBudget {
            metadata: namespaced(&dns),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    })
}

fn service_port(name: &str, protocol: &str, port: i32, target: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        ..Default::default()
    }
}

fn pod_spec(
    namespace: &str,
    config_map: &str,
    service_account: &str,
    selector: &BTreeMap<String, String>,
    settings: &Settings,
) -> PodSpec {
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let port = |name: &str, protocol: &str, number: i32| ContainerPort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        container_port: number,
        ..Default::default()
    };
    PodSpec {
        service_account_name: Some(service_account.into()),
        // The node's resolv.conf, not the cluster DNS (which may be this server): the
        // upstreams of `upstreamsFromResolvConf`, as for CoreDNS's Pods.
        dns_policy: Some("Default".into()),
        priority_class_name: None,
        termination_grace_period_seconds: Some(LAMEDUCK_SECONDS + 10),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            topology_key: "kubernetes.io/hostname".into(),
                            label_selector: Some(LabelSelector {
                                match_labels: Some(selector.clone()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![Container {
            name: "dns".into(),
            image: Some(settings.image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["/nameplane-dns".into()]),
            args: Some(vec![
                "--config-map".into(),
                format!("{namespace}/{config_map}"),
                "--listen".into(),
                format!("0.0.0.0:{DNS_CONTAINER_PORT}"),
                "--health-listen".into(),
                format!("0.0.0.0:{ADMIN_PORT}"),
                "--lameduck-seconds".into(),
                LAMEDUCK_SECONDS.to_string(),
                "--log-format".into(),
                "json".into(),
            ]),
            env: Some(vec![EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(vec![
                port("dns", "UDP", DNS_CONTAINER_PORT),
                port("dns-tcp", "TCP", DNS_CONTAINER_PORT),
                port("http-metrics", "TCP", ADMIN_PORT),
            ]),
            liveness_probe: Some(http_probe("/health", 10, 5)),
            readiness_probe: Some(http_probe("/ready", 2, 1)),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("100m".into())),
                    ("memory".to_string(), Quantity("64Mi".into())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("256Mi".into()),
                )])),
                ..Default::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(yaml: &str) -> DNSServer {
        let mut s: DNSServer = serde_saphyr::from_str(yaml).expect("DNSServer yaml");
        s.metadata.uid = Some("uid-1".into());
        s
    }

    fn sample() -> Workload {
        build_with(&ServerConfig::default())
    }

    fn build_with(config: &ServerConfig) -> Workload {
        let s = server(
            "apiVersion: nameplane.io/v1alpha1\nkind: DNSServer\nmetadata: {name: edge, namespace: dns}\nspec: {replicas: 3, clusterIP: 10.96.0.10}\n",
        );
        build(
            &s,
            config,
            "edge-config",
            &Settings {
                image: "example/nameplane:1".into(),
                dns_server_namespaces: Default::default(),
            },
        )
        .expect("builds")
    }

    #[test]
    fn dns_server_reads_only_its_own_config_map_in_its_namespace() {
        let w = sample();
        let rules = w.role.rules.clone().unwrap_or_default();
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["configmaps".to_string()][..])
        );
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["edge-config".to_string()][..]),
            "not every ConfigMap of the namespace"
        );
        assert!(
            rules[0]
                .verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "{rules:?}"
        );
        assert_eq!(w.role.metadata.namespace.as_deref(), Some("dns"));
    }

    #[test]
    fn cluster_access_is_a_binding_to_the_shipped_cluster_role() {
        let w = sample();
        let b = &w.cluster_role_binding;
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, DNS_CLUSTER_ROLE);
        assert_eq!(b.metadata.name.as_deref(), Some("nameplane-dns:dns:edge"));
        let subjects = b.subjects.clone().unwrap_or_default();
        assert_eq!(subjects.len(), 1);
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].name.as_str(),
                subjects[0].namespace.as_deref()
            ),
            ("ServiceAccount", "edge-dns", Some("dns"))
        );
        // The admission policy shipped with the operator admits only labelled bindings.
        let labels = b.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[MANAGED_BY_LABEL], FIELD_MANAGER);
    }

    /// The YAML documents of `config/rbac/<file>`.
    fn shipped(file: &str) -> Vec<serde_json::Value> {
        let path = format!("{}/../config/rbac/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("config/rbac file");
        text.split("\n---\n")
            .map(|doc| serde_saphyr::from_str(doc).expect("YAML"))
            .collect()
    }

    #[test]
    fn the_shipped_rbac_lets_the_operator_bind_exactly_the_roles_it_binds() {
        let roles: Vec<String> = shipped("dns_server_cluster_roles.yaml")
            .iter()
            .map(|r| r["metadata"]["name"].as_str().expect("name").to_string())
            .collect();
        assert_eq!(roles, [DNS_CLUSTER_ROLE, DNS_CLIENTS_CLUSTER_ROLE]);
        let operator = &shipped("cluster_role.yaml")[0];
        let bind: Vec<&serde_json::Value> = operator["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| {
                r["verbs"]
                    .as_array()
                    .is_some_and(|v| v.contains(&"bind".into()))
            })
            .collect();
        assert_eq!(bind.len(), 1, "{bind:?}");
        assert_eq!(bind[0]["resourceNames"], serde_json::json!(roles));
        let policy = serde_json::to_string(&shipped("admission_policy.yaml")[0]).expect("json");
        assert!(
            policy.contains(&format!(
                "['{DNS_CLUSTER_ROLE}', '{DNS_CLIENTS_CLUSTER_ROLE}']"
            )),
            "the admission policy admits bindings of other roles: {policy}"
        );
        assert!(policy.contains(&format!("'{MANAGED_BY_LABEL}'")));
    }

    #[test]
    fn the_shipped_namespace_role_covers_every_namespaced_object_of_the_workload() {
        let role = &shipped("namespace_role.yaml")[0];
        let writable: Vec<String> = role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| {
                r["verbs"]
                    .as_array()
                    .is_some_and(|v| v.contains(&"patch".into()))
            })
            .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let kinds = [
            ServiceAccount::plural(&()).to_string(),
            Role::plural(&()).to_string(),
            RoleBinding::plural(&()).to_string(),
            Deployment::plural(&()).to_string(),
            Service::plural(&()).to_string(),
            PodDisruptionBudget::plural(&()).to_string(),
            "configmaps".to_string(),
        ];
        for kind in kinds {
            assert!(
                writable.contains(&kind),
                "{kind} not writable: {writable:?}"
            );
        }
    }

    #[test]
    fn pods_are_readable_only_when_the_config_needs_them() {
        assert!(
            sample().clients_binding.is_none(),
            "a config without policies, autopath or verified pods reads no Pods"
        );
        let mut config = ServerConfig::default();
        config.kubernetes.autopath = true;
        assert!(config.needs_pods());
        let clients = build_with(&config).clients_binding.expect("bound");
        assert_eq!(clients.role_ref.name, DNS_CLIENTS_CLUSTER_ROLE);
        assert_eq!(
            clients.metadata.name.as_deref(),
            Some("nameplane-dns-clients:dns:edge")
        );
        // The node class reads the Nodes; the grant that carries Pods carries Nodes too.
        let mut config = ServerConfig::default();
        config.clients.nodes = Some(nameplane_config::policy::NodeClientsConfig {
            action: nameplane_config::policy::PolicyAction::Allow,
            cidrs: Vec::new(),
            from_nodes: true,
        });
        assert!(config.needs_nodes() && config.needs_pods());
        // (the shipped nameplane-dns-clients ClusterRole reads Pods and Nodes).
        let clients = build_with(&config).clients_binding.expect("bound");
        assert_eq!(clients.role_ref.name, DNS_CLIENTS_CLUSTER_ROLE);
    }

    #[test]
    fn dns_pods_use_the_nodes_resolvers() {
        let pod = sample()
            .deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
    }

    #[test]
    fn pod_passes_podsecurity_restricted() {
        let w = sample();
        let pod = w
            .deployment
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod spec");
        let psc = pod.security_context.expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.expect("seccomp").type_,
            "RuntimeDefault"
        );
        for c in &pod.containers {
            let sc = c
                .security_context
                .clone()
                .expect("container security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_string()])
            );
            assert!(
                c.ports.iter().flatten().all(|p| p.container_port >= 1024),
                "no privileged port"
            );
        }
    }

    #[test]
    fn service_maps_53_and_keeps_a_fixed_cluster_ip() {
        let w = sample();
        let spec = w.service.spec.expect("service spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let ports: Vec<_> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap_or_default(), p.port))
            .collect();
        assert!(
            ports.contains(&("UDP".into(), 53)) && ports.contains(&("TCP".into(), 53)),
            "{ports:?}"
        );
        assert_eq!(w.deployment.spec.expect("spec").replicas, Some(3));
    }

    #[test]
    fn namespaced_objects_are_owned_and_cluster_objects_are_labelled() {
        let w = sample();
        assert!(w.deployment.metadata.owner_references.is_some());
        assert!(
            w.cluster_role_binding.metadata.owner_references.is_none(),
            "a namespaced owner is invalid here"
        );
        let label = w.cluster_role_binding.metadata.labels.expect("labels")[SERVER_LABEL].clone();
        assert_eq!(label, "dns.edge");
    }
}
