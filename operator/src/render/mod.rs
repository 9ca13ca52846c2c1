//! The one pure renderer: a `DNSServer` and every config object it selects in, one
//! [`ServerConfig`] and a verdict per config object out. No I/O, no clock: the same objects
//! always give the same bytes (and the same hash); golden files pin the output.
//!
//! Rules, in the order they are applied:
//! 1. **Selection** ([`select`]): an object applies when it is in the server's own namespace,
//!    or its namespace matches `configSelector.namespaceSelector` and it matches
//!    `configSelector.objectSelector`.
//! 2. **Per-object checks** ([`kinds`]): each object is translated into its part of the config
//!    and checked with the server's own validation; a bad object is rejected on its own.
//! 3. **Tenancy**: objects outside the server's namespace may only define zones and stub
//!    domains at or below `<their namespace>.<tenantDomainSuffix>`; their rewrites only apply
//!    to their own Pods, may only point at Services of their namespace
//!    (`<namespace>.svc.<cluster domain>`) and may not match cluster names; a policy only
//!    ever applies to its own namespace.
//! 4. **Conflicts**: two zones with one apex, two stub domains with one domain, a stub domain on
//!    a zone's apex, anything at or below the cluster domain, two rewrites with one match kind
//!    and `from` for overlapping clients, and rewrite loops: the oldest object wins (then
//!    namespace/name), the others are rejected with the winner named.
//! 5. **Service references** ([`services`]): a record's `service`, a stub domain's
//!    `serviceRefs` and the server's `upstreamServiceRefs` become the referenced Services'
//!    addresses, read from the snapshot in [`Inputs::services`]. Objects outside the server's
//!    namespace may only name Services of their own namespace. A reference that gives no
//!    address (missing Service, no address of the family, a foreign namespace) leaves out
//!    only what it would have given (the record set, the server); the object is served
//!    without it and says why ([`Verdict::Partial`]). A stub domain left with no server at
//!    all is rejected.
//! 6. **Whole-config validation** with the server's validator: if the result would be refused,
//!    nothing is published and the `DNSServer` says why.

pub mod budget;
pub(crate) mod field_paths;
pub mod forwarders;
pub mod kinds;
pub mod select;
pub mod services;
#[cfg(test)]
mod tests;

use crate::api::dnspolicy::{DNSPolicy, PolicyAction};
use crate::api::dnsserver::{DNSServer, LoadBalance, PodsMode};
use crate::api::dnszone::DNSZone;
use crate::api::rewriterule::RewriteRule;
use crate::api::stubdomain::StubDomain;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use nameplane_config::forward::{CacheConfig, ForwardConfig};
use nameplane_config::logging::{LoggingConfig, QueryLogMode};
use nameplane_config::policy;
use nameplane_config::rate_limit::RateLimitConfig;
use nameplane_config::{FORMAT_VERSION, KubernetesConfig, ServerConfig, names};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Everything the renderer reads besides the `DNSServer` itself.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Namespaces, for `namespaceSelector`.
    pub namespaces: &'a [Arc<Namespace>],
    /// Every `DNSZone`.
    pub zones: &'a [Arc<DNSZone>],
    /// Every `StubDomain`.
    pub stubs: &'a [Arc<StubDomain>],
    /// Every `RewriteRule`.
    pub rewrites: &'a [Arc<RewriteRule>],
    /// Every `DNSPolicy`.
    pub policies: &'a [Arc<DNSPolicy>],
    /// The Services the objects refer to (at least those; others are ignored).
    pub services: &'a services::ServiceIndex,
    /// The API server's and the Nodes' addresses (no tenant forwarder may use them).
    pub cluster_addresses: &'a forwarders::ClusterAddresses,
}

impl Default for Inputs<'_> {
    fn default() -> Self {
        Self {
            namespaces: &[],
            zones: &[],
            stubs: &[],
            rewrites: &[],
            policies: &[],
            services: &services::NO_SERVICES,
            cluster_addresses: &forwarders::NO_CLUSTER_ADDRESSES,
        }
    }
}

/// Identifies one config object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The kind, e.g. `DNSZone`.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a config object.
    pub fn of<K: kube::Resource<DynamicType = ()>>(object: &K) -> Self {
        Self {
            kind: match K::kind(&()).as_ref() {
                "DNSZone" => "DNSZone",
                "StubDomain" => "StubDomain",
                "RewriteRule" => "RewriteRule",
                "DNSPolicy" => "DNSPolicy",
                _ => "DNSServer",
            },
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What the renderer made of one selected config object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Part of the config.
    Accepted,
    /// Left out of the config, and why.
    Rejected {
        /// CamelCase reason for the `Ready` condition, e.g. `Conflict`.
        reason: &'static str,
        /// What is wrong and what to do, for a person.
        message: String,
    },
    /// Part of the config, without what its Service references could not give (a record
    /// set, a server), and why.
    Partial {
        /// CamelCase reason for the `Ready` condition, e.g. `ServiceNotFound`.
        reason: &'static str,
        /// What was left out and why, for a person.
        message: String,
    },
}

impl Verdict {
    /// The verdict for an object served except for the parts `problems` describe: the first
    /// problem's reason, every problem's message.
    pub fn partial(problems: &[(String, services::RefProblem)]) -> Self {
        match problems.first() {
            None => Verdict::Accepted,
            Some((_, first)) => Verdict::Partial {
                reason: first.reason,
                message: problems
                    .iter()
                    .map(|(at, p)| format!("{at}: {}", p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        }
    }
}

/// Why a `DNSServer` could not be rendered; shown in its `Ready` condition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// The rendered config fails the server's validation; the error's field path is the
    /// custom resource field (`spec.clusterDomain`, not `kubernetes.clusterDomain`).
    #[error("invalid: {0}")]
    Invalid(#[from] nameplane_config::ConfigError),
    /// The config is over `spec.limits.configBytes` even without any other namespace's
    /// objects.
    #[error(
        "the server config is {bytes} bytes, over the budget of {budget} (spec.limits.configBytes), even without the objects of other namespaces; raise the budget or trim this DNSServer's own objects"
    )]
    OverBudget {
        /// Its size as published.
        bytes: usize,
        /// `spec.limits.configBytes`.
        budget: usize,
    },
}

impl RenderError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::Invalid(_) => "InvalidSpec",
            RenderError::OverBudget { .. } => "OverBudget",
        }
    }
}

/// The renderer's output for one `DNSServer`.
#[derive(Debug)]
pub struct Rendered {
    /// The config to publish, or why there is none.
    pub config: Result<ServerConfig, RenderError>,
    /// A verdict for every config object the server selects, and for the `DNSServer`
    /// itself when its `upstreamServiceRefs` could not all be resolved.
    pub verdicts: BTreeMap<ObjectKey, Verdict>,
}

impl Rendered {
    /// How many selected objects were rejected.
    pub fn rejected(&self) -> usize {
        self.verdicts
            .values()
            .filter(|v| matches!(v, Verdict::Rejected { .. }))
            .count()
    }

    /// How many selected objects are served without some of their parts.
    pub fn partial(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|(k, v)| k.kind != "DNSServer" && matches!(v, Verdict::Partial { .. }))
            .count()
    }
}

/// The client classes, as the DNSServer alone decides them.
fn clients(spec: &crate::api::dnsserver::ClientsSpec) -> policy::ClientsConfig {
    let action = |a: PolicyAction| match a {
        PolicyAction::Allow => policy::PolicyAction::Allow,
        PolicyAction::Deny => policy::PolicyAction::Deny,
    };
    policy::ClientsConfig {
        unidentified: action(spec.unidentified),
        nodes: spec.nodes.as_ref().map(|nodes| policy::NodeClientsConfig {
            action: action(nodes.action),
            cidrs: nodes.cidrs.iter().map(|c| c.0.clone()).collect(),
            from_nodes: nodes.from_nodes,
        }),
    }
}

/// The rate limit, as the DNSServer alone decides it.
fn rate_limit(spec: &crate::api::dnsserver::RateLimitSpec) -> RateLimitConfig {
    RateLimitConfig {
        responses_per_second: spec.responses_per_second,
        slip: spec.slip,
        window_seconds: spec.window_seconds,
        ipv4_prefix_length: spec.ipv4_prefix_length,
        ipv6_prefix_length: spec.ipv6_prefix_length,
    }
}

/// The query log, as the DNSServer alone decides it.
fn logging(spec: &crate::api::dnsserver::LoggingSpec) -> LoggingConfig {
    use crate::api::dnsserver::QueryLogMode as Mode;
    LoggingConfig {
        queries: match spec.queries {
            Mode::None => QueryLogMode::None,
            Mode::Denied => QueryLogMode::Denied,
            Mode::Errors => QueryLogMode::Errors,
            Mode::All => QueryLogMode::All,
        },
        sample_one_in: spec.sample_one_in,
    }
}

/// The cluster-names settings of `server` (`spec.clusterDomain`, `spec.ttlSeconds`,
/// `spec.autopath` and `spec.kubernetes`) in the config's form.
fn kubernetes(server: &DNSServer) -> Result<KubernetesConfig, nameplane_config::ConfigError> {
    let spec = &server.spec.kubernetes;
    let selector = |field: &str, selector: &Option<LabelSelector>| {
        selector
            .clone()
            .map(kinds::label_selector)
            .transpose()
            .map_err(|reason| nameplane_config::ConfigError::invalid(field.into(), reason))
    };
    Ok(KubernetesConfig {
        cluster_domain: server.spec.cluster_domain.as_str().to_string(),
        ttl_seconds: server.spec.ttl_seconds,
        pods: match spec.pods {
            PodsMode::Disabled => nameplane_config::PodsMode::Disabled,
            PodsMode::Insecure => nameplane_config::PodsMode::Insecure,
            PodsMode::Verified => nameplane_config::PodsMode::Verified,
        },
        endpoint_pod_names: spec.endpoint_pod_names,
        namespaces: spec.namespaces.iter().map(|n| n.0.clone()).collect(),
        namespace_selector: selector(
            "spec.kubernetes.namespaceSelector",
            &spec.namespace_selector,
        )?,
        label_selector: selector("spec.kubernetes.serviceSelector", &spec.service_selector)?,
        ignore_empty_service: spec.ignore_empty_service,
        autopath: server.spec.autopath,
        reverse_fallthrough: spec.reverse_fallthrough,
        resolve_external_names: spec.resolve_external_names,
    })
}

/// Renders the server config for `server` from `inputs`.
pub fn render(server: &DNSServer, inputs: &Inputs<'_>) -> Rendered {
    let namespace = server.namespace().unwrap_or_default();
    let mut verdicts = BTreeMap::new();
    let kubernetes = match kubernetes(server) {
        Ok(kubernetes) => kubernetes,
        Err(error) => {
            return Rendered {
                config: Err(error.into()),
                verdicts,
            };
        }
    };
    let mut config = ServerConfig {
        version: FORMAT_VERSION,
        server: format!("{namespace}/{}", server.name_any()),
        kubernetes,
        clients: clients(&server.spec.clients),
        rate_limit: server.spec.rate_limit.as_ref().map(rate_limit),
        logging: server.spec.logging.as_ref().map(logging),
        load_balance: match server.spec.load_balance {
            LoadBalance::None => nameplane_config::LoadBalance::None,
            LoadBalance::RoundRobin => nameplane_config::LoadBalance::RoundRobin,
        },
        ..Default::default()
    };
    // The cluster domain decides what the config objects may claim; check it first.
    let cluster_domain = match names::normalize_domain(server.spec.cluster_domain.as_str()) {
        Ok(domain) => domain,
        Err(reason) => {
            let error = nameplane_config::ConfigError::invalid("spec.clusterDomain".into(), reason);
            return Rendered {
                config: Err(error.into()),
                verdicts,
            };
        }
    };
    config.kubernetes.cluster_domain = cluster_domain.clone();
    let scope = kinds::dnsserver::Scope::new(server, &cluster_domain)
        .with_cluster_addresses(inputs.cluster_addresses);
    let server_id = config.server.clone();
    let budgets = budget::Budgets {
        server_namespace: &namespace,
        server: &server_id,
        limits: &server.spec.limits.per_namespace,
    };
    let selector = select::ServerSelector::new(server, inputs.namespaces);

    let mut upstreams: Vec<String> = server
        .spec
        .upstreams
        .iter()
        .filter_map(|u| u.socket_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let mut problems = Vec::new();
    for (i, reference) in server.spec.upstream_service_refs.iter().enumerate() {
        // The server's own namespace is trusted with every Service.
        match services::upstream_addresses(reference, &namespace, true, inputs.services) {
            Ok(addresses) => upstreams.extend(addresses.iter().map(|a| a.to_string())),
            Err(p) => problems.push((format!("spec.upstreamServiceRefs[{i}]"), p)),
        }
    }
    if !problems.is_empty() {
        verdicts.insert(ObjectKey::of(server), Verdict::partial(&problems));
    }
    if !upstreams.is_empty() || server.spec.upstreams_from_resolv_conf {
        config.forward.push(ForwardConfig {
            domain: ".".into(),
            source: config.server.clone(),
            servers: upstreams,
            servers_from_resolv_conf: server.spec.upstreams_from_resolv_conf,
            policy: kinds::forward_policy(server.spec.upstream_policy),
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: None,
        });
    }
    config.cache = server.spec.cache.as_ref().map(|c| CacheConfig {
        capacity: c.capacity,
        max_ttl_seconds: c.max_ttl_seconds,
        min_ttl_seconds: c.min_ttl_seconds,
        denial_ttl_seconds: c.denial_ttl_seconds,
        denial_capacity: c.denial_capacity,
        serve_stale_seconds: c.serve_stale_seconds,
        prefetch: c
            .prefetch
            .as_ref()
            .map(|p| nameplane_config::forward::PrefetchConfig {
                amount: p.amount,
                duration_seconds: p.duration_seconds,
                percentage: p.percentage,
            }),
    });

    // Budgets first: an object over its namespace's budget neither serves nor wins a conflict.
    let picked_zones = budget::admit(&budgets, selector.pick(inputs.zones), &mut verdicts);
    let picked_stubs = budget::admit(&budgets, selector.pick(inputs.stubs), &mut verdicts);
    let picked_rewrites = budget::admit(&budgets, selector.pick(inputs.rewrites), &mut verdicts);
    let picked_policies = budget::admit(&budgets, selector.pick(inputs.policies), &mut verdicts);
    let mut tenant_objects = Vec::new();
    tenant_ages(&picked_zones, &namespace, &mut tenant_objects);
    tenant_ages(&picked_stubs, &namespace, &mut tenant_objects);
    tenant_ages(&picked_rewrites, &namespace, &mut tenant_objects);
    tenant_ages(&picked_policies, &namespace, &mut tenant_objects);
    tenant_objects.sort_by(|a, b| b.cmp(a));
    let newest_first: Vec<ObjectKey> = tenant_objects.into_iter().map(|(_, k)| k).collect();

    let zones = kinds::dnszone::zones(&picked_zones, &scope, inputs.services, &mut verdicts);
    let zone_apexes: Vec<String> = zones.iter().map(|z| z.name.clone()).collect();
    config.zones = zones;
    config.forward.extend(kinds::stubdomain::stubs(
        &picked_stubs,
        &scope,
        inputs.services,
        &zone_apexes,
        &mut verdicts,
    ));
    config.rewrites = kinds::rewriterule::rewrites(&picked_rewrites, &scope, &mut verdicts);
    config.policies =
        kinds::dnspolicy::policies(&picked_policies, &scope, inputs.services, &mut verdicts);

    if let Err(e) = budget::fit_bytes(
        &mut config,
        server.spec.limits.config_bytes as usize,
        &server_id,
        &newest_first,
        &mut verdicts,
    ) {
        return Rendered {
            config: Err(e),
            verdicts,
        };
    }

    let config = match config.clone().validate() {
        Ok(_) => Ok(config),
        Err(e) => Err(field_paths::to_crd(e, &config).into()),
    };
    Rendered { config, verdicts }
}

/// Adds the age and key of each of `objects` from another namespace than `server_namespace`
/// (what the byte budget may leave out) to `out`.
fn tenant_ages<K: kube::Resource<DynamicType = ()> + ResourceExt>(
    objects: &[Arc<K>],
    server_namespace: &str,
    out: &mut Vec<((i64, String, String), ObjectKey)>,
) {
    out.extend(
        objects
            .iter()
            .filter(|o| o.namespace().as_deref() != Some(server_namespace))
            .map(|o| (select::age_order(o.as_ref()), ObjectKey::of(o.as_ref()))),
    );
}

/// Renders a `DNSServer` with no config objects (its own settings only).
pub fn server_config(server: &DNSServer) -> Result<ServerConfig, RenderError> {
    render(server, &Inputs::default()).config
}
