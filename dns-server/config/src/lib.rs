//! `ServerConfig`: the one contract between the nameplane operator and the nameplane DNS
//! server.
//!
//! The operator renders every custom resource that applies to a `DNSServer` into one
//! [`ServerConfig`], serialises it with [`ServerConfig::to_json`] and publishes it (today in a
//! ConfigMap under [`CONFIG_KEY`], with its [`ServerConfig::content_hash`] in the
//! [`HASH_ANNOTATION`] annotation). The DNS server parses it with [`ValidatedConfig::from_json`]
//! and only ever serves a config that passed [`ServerConfig::validate`].
//!
//! Rules of the contract:
//! - every struct is `deny_unknown_fields`: a server never silently ignores a setting it does
//!   not understand, so an operator/server version skew is an error, not a wrong answer;
//! - [`ServerConfig::version`] is the format version; a server refuses any other value;
//! - raw (`ServerConfig`) and validated ([`ValidatedConfig`]) configs are distinct types, so
//!   nothing can use a config that skipped validation.

pub mod forward;
pub mod logging;
pub mod names;
pub mod policy;
pub mod rate_limit;
pub mod rewrite;
pub mod selector;
pub mod zone;

pub use selector::{LabelOperator, LabelRequirement, LabelSelector};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The ConfigMap data key that holds the rendered config (JSON).
pub const CONFIG_KEY: &str = "config.json";

/// The annotation (on the ConfigMap) that carries [`ServerConfig::content_hash`].
pub const HASH_ANNOTATION: &str = "nameplane.io/config-hash";

/// Largest TTL a config may ask for, in seconds (the same bound as CoreDNS's `ttl`).
pub const MAX_TTL_SECONDS: u32 = 3600;

/// The whole configuration of one DNS server deployment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    /// Format version of this document; must equal [`FORMAT_VERSION`].
    pub version: u32,
    /// `namespace/name` of the `DNSServer` this config was rendered from (for logs and metrics).
    pub server: String,
    /// How cluster names (`<service>.<namespace>.svc.<cluster domain>`) are served.
    pub kubernetes: KubernetesConfig,
    /// Authoritative zones, at most one per apex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<zone::ZoneConfig>,
    /// Forwarders: stub domains, and `.` for the upstreams; at most one per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward: Vec<forward::ForwardConfig>,
    /// The cache for forwarded answers; none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<forward::CacheConfig>,
    /// Name rewrites, in the order they are tried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<rewrite::RewriteConfig>,
    /// Per-namespace resolution policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<policy::PolicyConfig>,
    /// What the clients the server cannot tie to exactly one Pod get (node addresses,
    /// host-network Pods, SNAT): the platform's choice, never a policy's. Always written, so
    /// that a server built before this field (which read `unidentifiedClients`, armed by any
    /// policy) refuses the document instead of misreading it.
    #[serde(default)]
    pub clients: policy::ClientsConfig,
    /// Response-rate limiting of the UDP answers to those clients (never to identified
    /// Pods); off when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<rate_limit::RateLimitConfig>,
    /// Order of the address records in every answer (CoreDNS `loadbalance`).
    #[serde(default, skip_serializing_if = "LoadBalance::is_none")]
    pub load_balance: LoadBalance,
    /// Which queries the server logs ([`logging::LoggingConfig`]); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<logging::LoggingConfig>,
}

/// Order of the address records in answers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalance {
    /// As the answer was built or received (the default).
    #[default]
    None,
    /// The A, AAAA and MX records of each answer section shuffled (CoreDNS `loadbalance
    /// round_robin`).
    RoundRobin,
}

impl LoadBalance {
    fn is_none(&self) -> bool {
        *self == LoadBalance::None
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            server: String::new(),
            kubernetes: KubernetesConfig::default(),
            zones: Vec::new(),
            forward: Vec::new(),
            cache: None,
            rewrites: Vec::new(),
            policies: Vec::new(),
            clients: policy::ClientsConfig::default(),
            rate_limit: None,
            logging: None,
            load_balance: LoadBalance::None,
        }
    }
}

/// Settings of the Kubernetes DNS (cluster names) stage. Every setting after `ttlSeconds`
/// mirrors an option of CoreDNS's *kubernetes* plugin and defaults to CoreDNS's default, so
/// a document that leaves them out means what a default Corefile means.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesConfig {
    /// The cluster domain, e.g. `cluster.local` (no trailing dot needed).
    pub cluster_domain: String,
    /// TTL of answers for cluster names, in seconds (0 to [`MAX_TTL_SECONDS`]).
    pub ttl_seconds: u32,
    /// Pod records `a-b-c-d.<namespace>.pod.<zone>` (CoreDNS `pods`).
    #[serde(default)]
    pub pods: PodsMode,
    /// Name endpoints without a hostname after their Pod rather than their dashed IP
    /// (CoreDNS `endpoint_pod_names`).
    #[serde(default)]
    pub endpoint_pod_names: bool,
    /// Only these namespaces are served; others answer NXDOMAIN. Empty: every namespace
    /// (CoreDNS `namespaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Only namespaces whose labels match are served; others answer NXDOMAIN (CoreDNS
    /// `namespace_labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only Services and EndpointSlices whose labels match are served (CoreDNS `labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// A ClusterIP Service without ready endpoints answers NXDOMAIN, so that clients move on
    /// in their search list (CoreDNS `ignore empty_service`).
    #[serde(default)]
    pub ignore_empty_service: bool,
    /// Server-side search path (CoreDNS `autopath @kubernetes`): a query for
    /// `<name>.<ns>.svc.<zone>` from a Pod of namespace `<ns>` is answered with the first of
    /// `<name>.<ns>.svc.<zone>`, `<name>.svc.<zone>`, `<name>.<zone>`, `<name>` that exists,
    /// behind a CNAME from the asked name, so the client needs one query instead of up to
    /// five. Needs the Pod watch (to know the client's namespace).
    #[serde(default)]
    pub autopath: bool,
    /// PTR queries (`in-addr.arpa`, `ip6.arpa`) for addresses that are not cluster
    /// addresses go to the `.` forwarder instead of answering NXDOMAIN (CoreDNS
    /// `fallthrough in-addr.arpa ip6.arpa`). Without a `.` forwarder they answer as without
    /// this setting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse_fallthrough: bool,
    /// An ExternalName Service whose target is outside the cluster domain is answered with
    /// the CNAME followed by the target's records, resolved through the forward and cache
    /// stages; without it, with the CNAME alone (CoreDNS 1.14).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolve_external_names: bool,
}

impl Default for KubernetesConfig {
    /// CoreDNS's defaults: `cluster.local`, TTL 5, no pod records, no filters.
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            ttl_seconds: 5,
            pods: PodsMode::default(),
            endpoint_pod_names: false,
            namespaces: Vec::new(),
            namespace_selector: None,
            label_selector: None,
            ignore_empty_service: false,
            autopath: false,
            reverse_fallthrough: false,
            resolve_external_names: false,
        }
    }
}

/// How pod records (`a-b-c-d.<namespace>.pod.<zone>`) are answered.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum PodsMode {
    /// No pod records: NXDOMAIN (the default, and what the Kubernetes DNS spec asks since
    /// pod records were removed from it).
    #[default]
    Disabled,
    /// The address is read from the name, without asking the API (kube-dns compatible).
    Insecure,
    /// Answered only when a Pod with that IP exists in that namespace; watches every Pod.
    Verified,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The document is not valid JSON or does not match the schema (unknown field, wrong type).
    #[error("config does not parse: {0}")]
    Parse(String),
    /// The document has a format version this build does not understand.
    #[error(
        "config format version {found} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found in the document.
        found: u32,
    },
    /// A field has a value outside its allowed range or form.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the field, e.g. `kubernetes.clusterDomain` or `zones[0].records[2]`.
        field: String,
        /// What is wrong with it, for a person.
        reason: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `field`.
    pub fn invalid(field: String, reason: String) -> Self {
        Self::Invalid { field, reason }
    }
}

impl ServerConfig {
    /// Checks every rule the schema cannot express and returns the normalised config.
    pub fn validate(self) -> Result<ValidatedConfig, ConfigError> {
        if self.version != FORMAT_VERSION {
            return Err(ConfigError::UnsupportedVersion {
                found: self.version,
            });
        }
        let cluster_domain = names::normalize_domain(&self.kubernetes.cluster_domain)
            .map_err(|reason| ConfigError::invalid("kubernetes.clusterDomain".into(), reason))?;
        for namespace in &self.kubernetes.namespaces {
            names::check_label(namespace)
                .and_then(|()| {
                    if namespace.bytes().any(|b| b.is_ascii_uppercase()) {
                        Err("namespace names are lower case".into())
                    } else {
                        Ok(())
                    }
                })
                .map_err(|why| {
                    ConfigError::invalid(
                        "kubernetes.namespaces".into(),
                        format!("{namespace:?} is not a namespace name: {why}"),
                    )
                })?;
        }
        for (field, selector) in [
            (
                "kubernetes.namespaceSelector",
                &self.kubernetes.namespace_selector,
            ),
            ("kubernetes.labelSelector", &self.kubernetes.label_selector),
        ] {
            if let Some(selector) = selector {
                selector
                    .validate()
                    .map_err(|reason| ConfigError::invalid(field.into(), reason))?;
            }
        }
        if self.kubernetes.ttl_seconds > MAX_TTL_SECONDS {
            return Err(ConfigError::invalid(
                "kubernetes.ttlSeconds".into(),
                format!(
                    "{} is above the maximum of {MAX_TTL_SECONDS}",
                    self.kubernetes.ttl_seconds
                ),
            ));
        }
        let mut apexes = std::collections::BTreeSet::new();
        for (i, zone) in self.zones.iter().enumerate() {
            zone.validate(&format!("zones[{i}]"))?;
            if !apexes.insert(zone.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("zones[{i}].name"),
                    format!("zone {} appears twice", zone.name),
                ));
            }
        }
        let mut domains = std::collections::BTreeSet::new();
        for (i, forward) in self.forward.iter().enumerate() {
            forward.validate(&format!("forward[{i}]"))?;
            if !domains.insert(forward.domain.as_str()) {
                return Err(ConfigError::invalid(
                    format!("forward[{i}].domain"),
                    format!("{} is forwarded twice", forward.domain),
                ));
            }
        }
        if let Some(cache) = &self.cache {
            cache.validate()?;
        }
        for (i, rewrite) in self.rewrites.iter().enumerate() {
            rewrite.validate(&format!("rewrites[{i}]"))?;
        }
        for (i, policy) in self.policies.iter().enumerate() {
            policy.validate(&format!("policies[{i}]"))?;
        }
        self.clients.validate("clients")?;
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.validate("rateLimit")?;
        }
        if let Some(logging) = &self.logging {
            logging.validate("logging")?;
        }
        Ok(ValidatedConfig {
            cluster_domain,
            raw: self,
        })
    }

    /// The canonical serialisation: what the operator publishes and hashes.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Hex SHA-256 of [`ServerConfig::to_json`]; identifies a config across operator and server.
    pub fn content_hash(&self) -> String {
        let digest = Sha256::digest(self.to_json().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A config that passed validation, with names normalised (lower case, no trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedConfig {
    raw: ServerConfig,
    cluster_domain: String,
}

impl ValidatedConfig {
    /// Parses and validates a JSON document in one step.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let raw: ServerConfig =
            serde_json::from_str(json).map_err(|e| ConfigError::Parse(e.to_string()))?;
        raw.validate()
    }

    /// The config as written.
    pub fn raw(&self) -> &ServerConfig {
        &self.raw
    }

    /// The cluster domain, lower case, without a trailing dot (e.g. `cluster.local`).
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// TTL of answers for cluster names, in seconds.
    pub fn ttl_seconds(&self) -> u32 {
        self.raw.kubernetes.ttl_seconds
    }

    /// The Kubernetes settings.
    pub fn kubernetes(&self) -> &KubernetesConfig {
        &self.raw.kubernetes
    }

    /// Whether a forwarder takes servers from the server's resolv.conf
    /// (`serversFromResolvConf`).
    pub fn needs_resolv_conf(&self) -> bool {
        self.raw.forward.iter().any(|f| f.servers_from_resolv_conf)
    }

    /// The config with `nameservers` (from the server's resolv.conf) appended to the
    /// servers of every forwarder with `serversFromResolvConf`, skipping addresses it
    /// already lists, up to [`forward::MAX_SERVERS`]. What the server builds and serves;
    /// the content hash stays the document's.
    pub fn with_resolv_conf(mut self, nameservers: &[std::net::SocketAddr]) -> Self {
        for forward in self
            .raw
            .forward
            .iter_mut()
            .filter(|f| f.servers_from_resolv_conf)
        {
            for server in nameservers {
                let text = server.to_string();
                if forward.servers.len() < forward::MAX_SERVERS && !forward.servers.contains(&text)
                {
                    forward.servers.push(text);
                }
            }
        }
        self
    }

    /// Whether serving this config needs to know which Pod a client is (the Pod watch):
    /// `pods: verified`, any policy, autopath, a rewrite limited to one namespace's Pods,
    /// unidentified clients denied, a node client class, or a rate limit (which spares
    /// identified Pods). The operator grants the DNS
    /// server `list`/`watch` on Pods (and Nodes, see [`ValidatedConfig::needs_nodes`])
    /// exactly when this holds.
    pub fn needs_pods(&self) -> bool {
        self.raw.needs_pods()
    }

    /// Whether serving this config needs the addresses of the Nodes (the Node watch): the
    /// node client class takes them from the Node objects (`clients.nodes.fromNodes`).
    /// Implies [`ValidatedConfig::needs_pods`], so one grant covers both watches.
    pub fn needs_nodes(&self) -> bool {
        self.raw.needs_nodes()
    }
}

impl ServerConfig {
    /// See [`ValidatedConfig::needs_pods`].
    pub fn needs_pods(&self) -> bool {
        self.kubernetes.pods == PodsMode::Verified
            || self.kubernetes.autopath
            || !self.policies.is_empty()
            || self.rewrites.iter().any(|r| r.client_namespace.is_some())
            // Telling a node or an unidentified client from a Pod takes the Pod watch.
            || self.clients.unidentified == policy::PolicyAction::Deny
            || self.clients.nodes.is_some()
            // The rate limit applies to every client but identified Pods.
            || self.rate_limit.is_some()
    }

    /// See [`ValidatedConfig::needs_nodes`].
    pub fn needs_nodes(&self) -> bool {
        self.clients.nodes.as_ref().is_some_and(|n| n.from_nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ServerConfig {
        ServerConfig {
            version: FORMAT_VERSION,
            server: "kube-system/cluster-dns".into(),
            kubernetes: KubernetesConfig {
                cluster_domain: "Cluster.Local.".into(),
                ..KubernetesConfig::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn duplicate_zones_and_forward_domains_are_refused() {
        let zone = zone::ZoneConfig {
            name: "example.internal".into(),
            source: "a/b".into(),
            ttl_seconds: 60,
            records: vec![],
            allow_transfer: vec![],
        };
        let mut cfg = sample();
        cfg.zones = vec![zone.clone(), zone];
        let err = cfg.validate().expect_err("duplicate zone");
        assert!(err.to_string().contains("appears twice"), "{err}");

        let fwd = forward::ForwardConfig {
            servers_from_resolv_conf: false,
            domain: ".".into(),
            source: "a/b".into(),
            servers: vec!["10.0.0.10:53".into()],
            policy: Default::default(),
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: None,
        };
        let mut cfg = sample();
        cfg.forward = vec![fwd.clone(), fwd];
        let err = cfg.validate().expect_err("duplicate forward");
        assert!(err.to_string().contains("forwarded twice"), "{err}");
    }

    #[test]
    fn round_trips_and_normalises() {
        let json = sample().to_json();
        let valid = ValidatedConfig::from_json(&json).expect("valid");
        assert_eq!(valid.cluster_domain(), "cluster.local");
        assert_eq!(valid.ttl_seconds(), 5);
        assert_eq!(valid.raw(), &sample());
    }

    #[test]
    fn rejects_unknown_fields_at_every_level() {
        let mut doc: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        doc["surprise"] = 1.into();
        let err = ValidatedConfig::from_json(&doc.to_string()).expect_err("unknown top field");
        assert!(
            err.to_string().contains("unknown field `surprise`"),
            "{err}"
        );

        let mut doc: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        doc["kubernetes"]["surprise"] = 1.into();
        let err = ValidatedConfig::from_json(&doc.to_string()).expect_err("unknown nested field");
        assert!(
            err.to_string().contains("unknown field `surprise`"),
            "{err}"
        );
    }

    #[test]
    fn rejects_other_versions() {
        let mut cfg = sample();
        cfg.version = 2;
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn rejects_bad_domain_and_ttl() {
        let mut cfg = sample();
        cfg.kubernetes.cluster_domain = "bad_domain..local".into();
        let err = cfg.validate().expect_err("bad domain");
        assert!(
            err.to_string().starts_with("kubernetes.clusterDomain:"),
            "{err}"
        );

        let mut cfg = sample();
        cfg.kubernetes.ttl_seconds = MAX_TTL_SECONDS + 1;
        let err = cfg.validate().expect_err("ttl too large");
        assert!(
            err.to_string().starts_with("kubernetes.ttlSeconds:"),
            "{err}"
        );
    }

    #[test]
    fn resolv_conf_servers_are_appended_where_asked() {
        let json = r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5},
            "forward":[{"domain":".","source":"a/b","servers":["192.0.2.1:53"],"serversFromResolvConf":true},
                       {"domain":"corp.example","source":"a/c","servers":["192.0.2.9:53"]}]}"#;
        let valid = ValidatedConfig::from_json(json).expect("valid");
        assert!(valid.needs_resolv_conf());
        let hash = valid.raw().content_hash();
        let ns: Vec<std::net::SocketAddr> = ["192.0.2.1:53", "127.0.0.53:53", "[::1]:53"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        let expanded = valid.with_resolv_conf(&ns);
        assert_eq!(
            expanded.raw().forward[0].servers,
            ["192.0.2.1:53", "127.0.0.53:53", "[::1]:53"]
        );
        assert_eq!(expanded.raw().forward[1].servers, ["192.0.2.9:53"]);
        assert_ne!(
            expanded.raw().content_hash(),
            hash,
            "the served config differs"
        );
        let many: Vec<std::net::SocketAddr> = (1..=40)
            .map(|i| format!("192.0.2.{i}:53").parse().expect("addr"))
            .collect();
        let capped = ValidatedConfig::from_json(json)
            .expect("valid")
            .with_resolv_conf(&many);
        assert_eq!(capped.raw().forward[0].servers.len(), forward::MAX_SERVERS);
    }

    #[test]
    fn old_documents_get_coredns_defaults() {
        let valid = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5}}"#,
        )
        .expect("valid");
        assert_eq!(valid.kubernetes(), &KubernetesConfig::default());
    }

    #[test]
    fn parses_every_kubernetes_setting() {
        let valid = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":30,
                "pods":"verified","endpointPodNames":true,"namespaces":["default","team-a"],
                "namespaceSelector":{"matchLabels":{"dns":"on"}},
                "labelSelector":{"matchExpressions":[{"key":"internal","operator":"DoesNotExist"}]},
                "ignoreEmptyService":true,"reverseFallthrough":true,"resolveExternalNames":true},
                "forward":[{"domain":".","source":"a/b","serversFromResolvConf":true}],
                "loadBalance":"roundRobin"}"#,
        )
        .expect("valid");
        let k = valid.kubernetes();
        assert_eq!(k.pods, PodsMode::Verified);
        assert!(k.endpoint_pod_names && k.ignore_empty_service);
        assert!(k.reverse_fallthrough && k.resolve_external_names);
        assert_eq!(valid.raw().load_balance, LoadBalance::RoundRobin);
        assert!(valid.raw().forward[0].servers.is_empty());
        assert!(valid.raw().forward[0].servers_from_resolv_conf);
        assert_eq!(k.namespaces, ["default", "team-a"]);
        assert_eq!(
            k.namespace_selector.as_ref().map(LabelSelector::to_query),
            Some("dns=on".into())
        );
        assert_eq!(
            k.label_selector.as_ref().map(LabelSelector::to_query),
            Some("!internal".into())
        );
        let err = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"c","ttlSeconds":5,"pods":"sometimes"}}"#,
        )
        .expect_err("unknown pods mode");
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
    }

    #[test]
    fn rejects_bad_namespaces_and_selectors() {
        let mut cfg = sample();
        cfg.kubernetes.namespaces = vec!["Not_A_Namespace".into()];
        let err = cfg.validate().expect_err("bad namespace");
        assert!(
            err.to_string().starts_with("kubernetes.namespaces:"),
            "{err}"
        );

        let mut cfg = sample();
        cfg.kubernetes.label_selector = Some(LabelSelector {
            match_expressions: vec![LabelRequirement {
                key: "a".into(),
                operator: LabelOperator::In,
                values: vec![],
            }],
            ..LabelSelector::default()
        });
        let err = cfg.validate().expect_err("bad selector");
        assert!(
            err.to_string().starts_with("kubernetes.labelSelector:"),
            "{err}"
        );
    }

    #[test]
    fn client_classes_are_always_written_and_the_old_field_is_refused() {
        // A server that read `unidentifiedClients` (armed by any policy) must refuse a new
        // document rather than misread it, and a new server must refuse an old one.
        let json = sample().to_json();
        assert!(json.contains(r#""clients": {"#), "{json}");
        assert!(json.contains(r#""unidentified": "allow""#), "{json}");
        let old = r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"c","ttlSeconds":5},"unidentifiedClients":"deny"}"#;
        let err = ValidatedConfig::from_json(old).expect_err("the old field");
        assert!(
            err.to_string()
                .contains("unknown field `unidentifiedClients`"),
            "{err}"
        );
        let valid = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"c","ttlSeconds":5}}"#,
        )
        .expect("valid");
        assert_eq!(valid.raw().clients, policy::ClientsConfig::default());
        assert_eq!(
            valid.raw().clients.unidentified,
            policy::PolicyAction::Allow,
            "unidentified clients are allowed unless the platform denies them"
        );
    }

    #[test]
    fn query_logging_is_checked_and_does_not_need_the_pods() {
        use logging::{LoggingConfig, QueryLogMode};
        let with = |logging| ServerConfig {
            logging,
            ..sample()
        };
        assert!(
            !with(None).to_json().contains("logging"),
            "left out when off"
        );
        let on = with(Some(LoggingConfig {
            queries: QueryLogMode::Denied,
            sample_one_in: Some(10),
        }))
        .validate()
        .expect("valid");
        assert!(
            !on.needs_pods(),
            "logging alone never turns the Pod watch on"
        );
        let json = on.raw().to_json();
        assert!(json.contains(r#""queries": "Denied""#), "{json}");
        assert!(json.contains(r#""sampleOneIn": 10"#), "{json}");
        let back = ValidatedConfig::from_json(&on.raw().to_json()).expect("round trip");
        assert_eq!(back.raw().logging, on.raw().logging);
        for n in [0, logging::MAX_SAMPLE_ONE_IN + 1] {
            let err = with(Some(LoggingConfig {
                queries: QueryLogMode::All,
                sample_one_in: Some(n),
            }))
            .validate()
            .expect_err("out of range");
            assert!(err.to_string().starts_with("logging.sampleOneIn"), "{err}");
        }
        let err = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"c","ttlSeconds":5},"logging":{"queries":"Some"}}"#,
        )
        .expect_err("unknown mode");
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
    }

    #[test]
    fn rate_limits_are_checked_and_need_the_pods() {
        let with = |rate_limit| ServerConfig {
            rate_limit,
            ..sample()
        };
        let off = with(None).validate().expect("valid");
        assert!(!off.needs_pods());
        assert!(
            !off.raw().to_json().contains("rateLimit"),
            "left out when off"
        );
        let on = with(Some(rate_limit::RateLimitConfig::default()))
            .validate()
            .expect("valid");
        assert!(
            on.needs_pods(),
            "telling Pods from the rest needs the Pod watch"
        );
        let back = ValidatedConfig::from_json(&on.raw().to_json()).expect("round trip");
        assert_eq!(
            back.raw().rate_limit,
            Some(rate_limit::RateLimitConfig::default())
        );
        let defaults = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5},"rateLimit":{}}"#,
        )
        .expect("defaults");
        assert_eq!(
            defaults.raw().rate_limit,
            Some(rate_limit::RateLimitConfig {
                responses_per_second: 20,
                slip: 2,
                window_seconds: 15,
                ipv4_prefix_length: 24,
                ipv6_prefix_length: 56,
            })
        );
        for (change, field) in [
            (
                (|r: &mut rate_limit::RateLimitConfig| r.responses_per_second = 0)
                    as fn(&mut rate_limit::RateLimitConfig),
                "rateLimit.responsesPerSecond",
            ),
            (|r| r.slip = 11, "rateLimit.slip"),
            (|r| r.window_seconds = 0, "rateLimit.windowSeconds"),
            (|r| r.ipv4_prefix_length = 33, "rateLimit.ipv4PrefixLength"),
            (|r| r.ipv6_prefix_length = 129, "rateLimit.ipv6PrefixLength"),
        ] {
            let mut settings = rate_limit::RateLimitConfig::default();
            change(&mut settings);
            let err = with(Some(settings)).validate().expect_err(field);
            assert!(err.to_string().starts_with(field), "{err}");
        }
        assert!(
            ValidatedConfig::from_json(
                r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5},"rateLimit":{"burst":3}}"#,
            )
            .is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn node_classes_are_checked_and_decide_the_watches() {
        let nodes = |cidrs: &[&str], from_nodes| policy::NodeClientsConfig {
            action: policy::PolicyAction::Allow,
            cidrs: cidrs.iter().map(|c| (*c).into()).collect(),
            from_nodes,
        };
        let with = |unidentified, nodes| {
            let mut cfg = sample();
            cfg.clients = policy::ClientsConfig {
                unidentified,
                nodes,
            };
            cfg
        };
        use policy::PolicyAction::{Allow, Deny};
        let open = with(Allow, None).validate().expect("valid");
        assert!(!open.needs_pods() && !open.needs_nodes());
        let closed = with(Deny, None).validate().expect("valid");
        assert!(
            closed.needs_pods() && !closed.needs_nodes(),
            "denying unidentified clients needs to know the Pods"
        );
        let cidrs = with(Deny, Some(nodes(&["192.0.2.0/24", "2001:db8::7"], false)))
            .validate()
            .expect("valid");
        assert!(cidrs.needs_pods() && !cidrs.needs_nodes());
        let watched = with(Deny, Some(nodes(&[], true)))
            .validate()
            .expect("valid");
        assert!(watched.needs_pods() && watched.needs_nodes());
        let err = with(Deny, Some(nodes(&[], false)))
            .validate()
            .expect_err("an empty class");
        assert!(err.to_string().starts_with("clients.nodes:"), "{err}");
        let err = with(Deny, Some(nodes(&["192.0.2.0/33"], false)))
            .validate()
            .expect_err("a bad prefix");
        assert!(
            err.to_string().starts_with("clients.nodes.cidrs[0]:"),
            "{err}"
        );
        let json = with(Deny, Some(nodes(&["192.0.2.0/24"], true))).to_json();
        let back = ValidatedConfig::from_json(&json).expect("round trip");
        assert_eq!(
            back.raw().clients.nodes,
            Some(nodes(&["192.0.2.0/24"], true))
        );
        assert!(json.contains(r#""fromNodes": true"#), "{json}");
    }

    #[test]
    fn hash_follows_content() {
        let a = sample();
        let mut b = sample();
        assert_eq!(a.content_hash(), b.content_hash());
        b.kubernetes.ttl_seconds = 6;
        assert_ne!(a.content_hash(), b.content_hash());
        assert_eq!(a.content_hash().len(), 64);
    }
}
