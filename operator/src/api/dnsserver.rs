//! `DNSServer`: one DNS deployment run by the operator: how many replicas, which cluster domain
//! it serves, where other names go, how it caches, and which config objects apply to it.

use super::dnspods::DNSPodsSpec;
use super::dnspolicy::PolicyAction;
use super::{
    ConfigSelector, DomainName, KubernetesName, ObjectStatus, UpstreamAddress, UpstreamServiceRef,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS server deployment managed by nameplane. The operator renders this object and every
/// config object it selects into one validated server config, and reports in `status` whether
/// that config is in effect.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "nameplane.io",
    version = "v1alpha1",
    kind = "DNSServer",
    plural = "dnsservers",
    singular = "dnsserver",
    namespaced,
    status = "DNSServerStatus",
    shortname = "dnss",
    category = "nameplane",
    doc = "A DNS server deployment managed by nameplane: replicas, cluster domain, upstreams, cache, and which DNSZone, StubDomain, RewriteRule and DNSPolicy objects apply.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.clusterDomain"),
    printcolumn(
        name = "Serving",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.replicas",
        priority = 1
    ),
    printcolumn(
        name = "Config",
        type_ = "string",
        json_path = ".status.configHash",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.clusterIP) || !has(self.clusterIPs) || self.clusterIPs[0] == self.clusterIP",
    "message": "clusterIPs[0] must equal clusterIP when both are set"
}]))]
pub struct DNSServerSpec {
    /// Number of DNS server Pods to run. Also the `/scale` subresource's count, so
    /// `kubectl scale dnsserver`, a HorizontalPodAutoscaler or KEDA may set it; the operator
    /// copies it to the Deployment and never changes it. Ignored with `autoscaling.mode:
    /// Proportional`, where the operator computes the count.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,

    /// The cluster domain served from the Kubernetes API, e.g. `cluster.local`.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: DomainName,

    /// TTL, in seconds, of answers for cluster names (0 to 3600; 0 disables caching by clients).
    #[serde(default = "default_ttl_seconds")]
    #[schemars(range(max = 3600))]
    pub ttl_seconds: u32,

    /// Resolvers for every name that is neither a cluster name nor in a served zone or stub
    /// domain, as IP addresses with optional ports, e.g. `10.0.0.10` or `[fd00::10]:53`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub upstreams: Vec<UpstreamAddress>,

    /// Services whose ClusterIPs are resolvers for those names too, besides `upstreams`
    /// (e.g. a caching resolver running in the cluster), kept up to date as the Services
    /// change. A Service's namespace defaults to this DNSServer's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub upstream_service_refs: Vec<UpstreamServiceRef>,

    /// How an upstream is picked for each query (CoreDNS `forward` `policy`): `Random` (the
    /// default), `RoundRobin` or `Sequential` (the first healthy one, in the order given).
    #[serde(default)]
    pub upstream_policy: super::stubdomain::ForwardPolicy,

    /// Fixed ClusterIP of the DNS Service, e.g. the cluster's DNS address `10.96.0.10` that
    /// kubelets hand to Pods. Left out, Kubernetes picks one. Cannot be changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "clusterIP")]
    #[schemars(length(max = 45))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "isIP(self)", "message": "clusterIP must be an IP address like 10.96.0.10"},
        {"rule": "self == oldSelf", "message": "clusterIP cannot be changed; create a new DNSServer instead"}
    ]))]
    pub cluster_ip: Option<String>,

    /// Where other namespaces (tenants) may define zones and stub domains: a tenant in
    /// namespace `team-a` may use names at or below `team-a.<tenantDomainSuffix>`, and nothing
    /// else. Left out, only objects in this DNSServer's own namespace may define zones and stub
    /// domains. Rewrites from other namespaces only ever apply to their own Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_domain_suffix: Option<DomainName>,

    /// Answer cache for forwarded names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,

    /// Server-side search path (CoreDNS `autopath @kubernetes`): when a Pod asks for
    /// `<name>.<its namespace>.svc.<cluster domain>`, the server tries the rest of the Pod's
    /// search list itself and answers with a CNAME to the first name that exists, so the Pod
    /// needs one query instead of up to five. Makes the server watch every Pod (to know each
    /// client's namespace).
    #[serde(default)]
    pub autopath: bool,

    /// How cluster names are served: the options of CoreDNS's *kubernetes* plugin. Every
    /// field defaults to CoreDNS's default, so leaving this out means what a default
    /// Corefile means.
    #[serde(default, skip_serializing_if = "KubernetesSpec::is_default")]
    pub kubernetes: KubernetesSpec,

    /// Also forward to the nameservers listed in the DNS Pod's `/etc/resolv.conf` (CoreDNS
    /// `forward . /etc/resolv.conf`). The DNS Pods run with `dnsPolicy: Default`, so these
    /// are the resolvers of the node each Pod runs on. May be combined with `upstreams` and
    /// `upstreamServiceRefs`; the server reads the file each time it loads a config.
    #[serde(default)]
    pub upstreams_from_resolv_conf: bool,

    /// Order of the address records in answers (CoreDNS `loadbalance`): `None` (the default)
    /// keeps the order the answer was built or received in; `RoundRobin` shuffles the A,
    /// AAAA and MX records of every answer, so that clients taking the first address spread
    /// over all of them.
    #[serde(default)]
    pub load_balance: LoadBalance,

    /// What the clients get whose source address the server cannot tie to exactly one Pod
    /// (node addresses, host-network Pods, clients behind SNAT or a node-local cache). The
    /// platform decides this here, for the whole server: DNSPolicies only ever restrict
    /// identified Pods of their own namespace, never these clients.
    #[serde(default)]
    pub clients: ClientsSpec,

    /// Response-rate limiting (RRL, as in BIND and Knot) of the UDP answers to the clients
    /// the server cannot tie to exactly one Pod (see `clients`), so the cluster DNS cannot
    /// be used to reflect and amplify traffic at a forged source address. Identified Pods
    /// and TCP are never limited. Off when left out; turning it on makes the server watch
    /// every Pod, to tell Pods from the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,

    /// Query logging: which answers the DNS Pods log, one JSON line each (client address,
    /// the client Pod's namespace and name when the server already watches Pods for a
    /// policy, client class, autopath or rate limit, the name, type, rcode, duration,
    /// transport, and for a denial the policy). Left out, no query is logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,

    /// Which DNSZone, StubDomain, RewriteRule and DNSPolicy objects from other namespaces
    /// apply to this server. Objects in this DNSServer's own namespace always apply; left out,
    /// no other namespace's objects do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_selector: Option<ConfigSelector>,

    /// What config objects from other namespaces (tenants) may add to this server's config,
    /// and how large the whole config may grow. An object over a limit is left out, the
    /// newest first, with `Ready=False` reason `OverBudget`; everything else keeps being
    /// served and published.
    #[serde(default)]
    pub limits: ConfigLimits,

    /// Addresses that forwarders of other namespaces' StubDomains may not point at. The API
    /// server's addresses (the `default/kubernetes` Service and its endpoints) and every
    /// Node's addresses are always denied to them as well; this DNSServer's own namespace is
    /// trusted with every address.
    #[serde(default)]
    pub tenant_forwarders: TenantForwarders,

    /// Placement, size and labels of the DNS Pods, the DNS Service's IP families, and
    /// proportional scaling ([`DNSPodsSpec`]); its fields sit directly under `spec`.
    #[serde(flatten)]
    pub pods: DNSPodsSpec,
}

/// Options of the cluster-names stage, named after CoreDNS's *kubernetes* plugin.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.namespaces) && size(self.namespaces) > 0 && has(self.namespaceSelector))",
    "message": "kubernetes.namespaces and kubernetes.namespaceSelector cannot both be set (as in CoreDNS)"
}]))]
pub struct KubernetesSpec {
    /// Pod records `a-b-c-d.<namespace>.pod.<cluster domain>` (CoreDNS `pods`): `Disabled`
    /// (the default) answers NXDOMAIN; `Insecure` answers the address read from the name
    /// without asking the API (kube-dns compatible, what kubeadm's Corefile says);
    /// `Verified` answers only when a Pod with that address exists in that namespace, and
    /// makes the server watch every Pod.
    #[serde(default)]
    pub pods: PodsMode,

    /// Name the endpoints of headless Services that have no hostname after their Pod
    /// (`<pod name>.<service>.<namespace>.svc.<cluster domain>`) instead of after their
    /// dashed address (CoreDNS `endpoint_pod_names`).
    #[serde(default)]
    pub endpoint_pod_names: bool,

    /// Serve only these namespaces; names in any other answer NXDOMAIN (CoreDNS
    /// `namespaces`). Left out: every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<KubernetesName>,

    /// Serve only the namespaces whose labels match; names in any other answer NXDOMAIN
    /// (CoreDNS `namespace_labels`). Cannot be combined with `namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Serve only the Services (and their EndpointSlices) whose labels match (CoreDNS
    /// `labels`); other Services answer NXDOMAIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,

    /// A ClusterIP Service without a ready endpoint answers NXDOMAIN instead of its
    /// ClusterIP, so that clients move on along their search list (CoreDNS
    /// `ignore empty_service`).
    #[serde(default)]
    pub ignore_empty_service: bool,

    /// Reverse lookups (PTR in `in-addr.arpa` and `ip6.arpa`) of addresses that are not
    /// cluster addresses go to the upstreams instead of answering NXDOMAIN (CoreDNS
    /// `fallthrough in-addr.arpa ip6.arpa`, as in kubeadm's Corefile).
    #[serde(default)]
    pub reverse_fallthrough: bool,

    /// For an ExternalName Service whose target is outside the cluster, also answer the
    /// target's addresses, resolved through the upstreams and the cache, after the CNAME,
    /// saving every client a round trip. Left off (the default), the answer is the CNAME
    /// alone and the client's resolver follows it, as with CoreDNS 1.14. Policies check the
    /// target name as they check every answer name.
    #[serde(default)]
    pub resolve_external_names: bool,
}

impl KubernetesSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How pod records are answered.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodsMode {
    /// No pod records: NXDOMAIN.
    #[default]
    Disabled,
    /// The address read from the name, without asking the API.
    Insecure,
    /// Only addresses of existing Pods of that namespace.
    Verified,
}

/// Which queries the DNS Pods log.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// Which answers get a line: `None` (the default), `Denied` (what a DNSPolicy or a
    /// client class denied), `Errors` (SERVFAIL, REFUSED, FORMERR, NOTIMP, and the denied
    /// ones) or `All`.
    #[serde(default)]
    pub queries: QueryLogMode,
    /// Log one in this many of the selected answers (each DNS Pod counts its own); left
    /// out, every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub sample_one_in: Option<u32>,
}

/// The answers that get a query log line.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueryLogMode {
    /// None.
    #[default]
    None,
    /// Denied by a DNSPolicy or a client class.
    Denied,
    /// SERVFAIL, REFUSED, FORMERR, NOTIMP, and the denied answers.
    Errors,
    /// Every answer.
    All,
}

/// Order of the address records in answers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadBalance {
    /// As built or received.
    #[default]
    None,
    /// A, AAAA and MX records shuffled in every answer.
    RoundRobin,
}

/// What the clients that are not one identified Pod get.
///
/// The server ties a query to a Pod by its source address (a watch of the Pods). A client it
/// cannot tie to exactly one Pod that is not a host-network Pod is *unidentified*; an
/// unidentified address that is a node address (`nodes`) gets the node action instead.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientsSpec {
    /// What unidentified clients get, whether or not any DNSPolicy exists: `Allow` (the
    /// default) lets them resolve everything; `Deny` refuses them (REFUSED), e.g. so that
    /// a Pod cannot escape its namespace's policies behind SNAT. `Deny` makes the server
    /// watch every Pod, to tell Pods from the rest.
    #[serde(default = "allow")]
    pub unidentified: PolicyAction,

    /// Node addresses as a class of their own (the nodes themselves and their host-network
    /// Pods), e.g. allowed while other unidentified clients are denied. Left out, node
    /// addresses are unidentified clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeClientsSpec>,
}

impl Default for ClientsSpec {
    fn default() -> Self {
        Self {
            unidentified: allow(),
            nodes: None,
        }
    }
}

fn allow() -> PolicyAction {
    PolicyAction::Allow
}

/// Response-rate limiting of answers to unidentified clients. Answers are counted per
/// bucket: the client's network prefix and the kind of answer (a positive answer by its
/// name and type, NXDOMAIN and NODATA by their zone, errors together). Over the rate an
/// answer is dropped, except every `slip`-th one, which is sent truncated so that a real
/// client retries over TCP.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Answers per second that one bucket (client prefix and kind of answer) may get.
    #[serde(default = "default_rrl_responses_per_second")]
    #[schemars(range(min = 1, max = 10_000))]
    pub responses_per_second: u32,
    /// Every `slip`-th answer over the rate is sent truncated (TC=1, no records) instead
    /// of dropped: 0 never, 1 always, 2 (the default) every second one.
    #[serde(default = "default_rrl_slip")]
    #[schemars(range(max = 10))]
    pub slip: u32,
    /// How long, in seconds, a bucket remembers answers over the rate: a client prefix
    /// that floods answers again at most this long after it stops. 1 is a plain
    /// per-second limit.
    #[serde(default = "default_rrl_window_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub window_seconds: u32,
    /// IPv4 clients in one prefix of this length share their buckets.
    #[serde(default = "default_rrl_ipv4_prefix_length")]
    #[schemars(range(min = 8, max = 32))]
    pub ipv4_prefix_length: u8,
    /// IPv6 clients in one prefix of this length share their buckets.
    #[serde(default = "default_rrl_ipv6_prefix_length")]
    #[schemars(range(min = 16, max = 128))]
    pub ipv6_prefix_length: u8,
}

fn default_rrl_responses_per_second() -> u32 {
    20
}
fn default_rrl_slip() -> u32 {
    2
}
fn default_rrl_window_seconds() -> u32 {
    15
}
fn default_rrl_ipv4_prefix_length() -> u8 {
    24
}
fn default_rrl_ipv6_prefix_length() -> u8 {
    56
}

/// The node client class: which addresses are node addresses, and what they get.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.fromNodes) && self.fromNodes) || (has(self.cidrs) && size(self.cidrs) > 0)",
    "message": "clients.nodes needs fromNodes: true or at least one CIDR"
}]))]
pub struct NodeClientsSpec {
    /// What node addresses get: `Allow` (the default) or `Deny`.
    #[serde(default = "allow")]
    pub action: PolicyAction,

    /// Node addresses as IP addresses or CIDR prefixes, e.g. `192.0.2.0/24` or
    /// `2001:db8::/64`. A Pod with an address in them is still its namespace's Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub cidrs: Vec<ClientPrefix>,

    /// Take the IP addresses (`InternalIP`, `ExternalIP`) of every Node object's
    /// `status.addresses` too, followed as Nodes come and go: the DNS server then watches
    /// the Nodes.
    #[serde(default)]
    pub from_nodes: bool,
}

/// An IP address or CIDR prefix of clients.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "isIP(self) || isCIDR(self)",
    "message": "must be an IP address or a CIDR prefix, like 192.0.2.0/24, 192.0.2.7 or 2001:db8::/64"
}]))]
pub struct ClientPrefix(#[schemars(length(min = 1, max = 49))] pub String);

/// Answer cache settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minTtlSeconds <= self.maxTtlSeconds",
    "message": "cache.minTtlSeconds must not be larger than cache.maxTtlSeconds"
}]))]
pub struct CacheSpec {
    /// Largest number of answers kept.
    #[serde(default = "default_cache_capacity")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub capacity: u32,
    /// Answers are kept at most this many seconds, whatever their TTL says.
    #[serde(default = "default_cache_max_ttl")]
    #[schemars(range(max = 86_400))]
    pub max_ttl_seconds: u32,
    /// Answers are kept at least this many seconds, whatever their TTL says.
    #[serde(default)]
    #[schemars(range(max = 86_400))]
    pub min_ttl_seconds: u32,
    /// Negative answers (NXDOMAIN, NODATA) are kept at most this many seconds.
    #[serde(default = "default_cache_denial_ttl")]
    #[schemars(range(max = 86_400))]
    pub denial_ttl_seconds: u32,
    /// Largest number of negative answers kept, apart from the positive ones so that a
    /// flood of random names cannot push those out. Left out: `capacity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub denial_capacity: Option<u32>,
    /// How long, in seconds, an expired answer may still be given (with a TTL of 30 s) when
    /// the upstreams fail (RFC 8767 serve-stale). 0 turns it off.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(max = 604_800))]
    pub serve_stale_seconds: u32,
    /// Refresh popular answers in the background before they expire (CoreDNS
    /// `prefetch`), so their clients never wait on an upstream. Off when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<PrefetchSpec>,
}

/// When a cached answer is refreshed ahead of its expiry.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrefetchSpec {
    /// Queries within `durationSeconds` that make an answer popular.
    #[serde(default = "default_prefetch_amount")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub amount: u32,
    /// The window the queries are counted in, in seconds.
    #[serde(default = "default_prefetch_duration")]
    #[schemars(range(min = 1, max = 86_400))]
    pub duration_seconds: u32,
    /// Refresh once less than this share of the answer's TTL is left, in percent.
    #[serde(default = "default_prefetch_percentage")]
    #[schemars(range(min = 1, max = 100))]
    pub percentage: u32,
}

fn default_prefetch_amount() -> u32 {
    2
}
fn default_prefetch_duration() -> u32 {
    60
}
fn default_prefetch_percentage() -> u32 {
    10
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// What the operator observed about a `DNSServer`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DNSServerStatus {
    /// Conditions and observed generation.
    #[serde(flatten)]
    pub object: ObjectStatus,
    /// SHA-256 of the server config currently published for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Name of the ConfigMap (in this namespace) that holds the published server config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// DNS Pods the Deployment wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// DNS Pods that are ready (they pass `/ready`, which needs the config and a synced cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the DNS Pods, as a string (`/scale`'s `labelSelectorPath`, which a
    /// HorizontalPodAutoscaler uses to find the Pods' metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

fn default_replicas() -> i32 {
    2
}
fn default_cluster_domain() -> DomainName {
    DomainName("cluster.local".into())
}
fn default_ttl_seconds() -> u32 {
    5
}
fn default_cache_capacity() -> u32 {
    10_000
}
fn default_cache_max_ttl() -> u32 {
    3600
}
fn default_cache_denial_ttl() -> u32 {
    30
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            capacity: default_cache_capacity(),
            max_ttl_seconds: default_cache_max_ttl(),
            min_ttl_seconds: 0,
            denial_ttl_seconds: default_cache_denial_ttl(),
            denial_capacity: None,
            serve_stale_seconds: 0,
            prefetch: None,
        }
    }
}

/// Budgets of one server config: its size, and what each other namespace may add.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLimits {
    /// Largest rendered server config, in bytes. A ConfigMap holds at most 1 MiB, so a config
    /// past that could not be published at all; past this budget the newest objects from
    /// other namespaces are left out until it fits. If this server's own settings and
    /// objects alone exceed it, nothing new is published (the last config keeps serving) and
    /// this DNSServer's `Ready` says why.
    #[serde(default = "default_config_bytes")]
    #[schemars(range(min = 10_000, max = 1_000_000))]
    pub config_bytes: u32,
    /// What the objects of each namespace other than this DNSServer's own may add.
    #[serde(default)]
    pub per_namespace: NamespaceLimits,
}

/// What one namespace's config objects may add to a server config, in all.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceLimits {
    /// DNSZone objects.
    #[serde(default = "default_limit_zones")]
    #[schemars(range(max = 10_000))]
    pub zones: u32,
    /// Records, summed over the namespace's DNSZones.
    #[serde(default = "default_limit_records")]
    #[schemars(range(max = 1_000_000))]
    pub records: u32,
    /// StubDomain objects.
    #[serde(default = "default_limit_stub_domains")]
    #[schemars(range(max = 10_000))]
    pub stub_domains: u32,
    /// In-flight forwarded queries, summed over the namespace's StubDomains (a StubDomain
    /// without `maxConcurrent` counts as 1000, the server's default).
    #[serde(default = "default_limit_max_concurrent")]
    #[schemars(range(max = 1_000_000))]
    pub max_concurrent: u32,
    /// Rewrite rules, summed over the namespace's RewriteRules.
    #[serde(default = "default_limit_rewrite_rules")]
    #[schemars(range(max = 10_000))]
    pub rewrite_rules: u32,
    /// DNSPolicy objects.
    #[serde(default = "default_limit_policies")]
    #[schemars(range(max = 10_000))]
    pub policies: u32,
}

/// Where forwarders from other namespaces may not point.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantForwarders {
    /// Networks, as CIDRs. The default denies loopback, link-local (which holds the cloud
    /// metadata address 169.254.169.254), the unspecified addresses and AWS's IPv6
    /// metadata address: a StubDomain pointing there would make every DNS replica send that
    /// namespace's queries to a service on its own node.
    #[serde(default = "default_denied_cidrs", rename = "deniedCIDRs")]
    #[schemars(length(max = 64))]
    pub denied_cidrs: Vec<Cidr>,
}

/// A network in CIDR notation, e.g. `127.0.0.0/8` or `fe80::/10`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "isCIDR(self)",
    "message": "must be a CIDR like 127.0.0.0/8 or fe80::/10"
}]))]
pub struct Cidr(#[schemars(length(min = 3, max = 49))] pub String);

fn default_config_bytes() -> u32 {
    900_000
}
fn default_limit_zones() -> u32 {
    20
}
fn default_limit_records() -> u32 {
    5_000
}
fn default_limit_stub_domains() -> u32 {
    20
}
fn default_limit_max_concurrent() -> u32 {
    2_000
}
fn default_limit_rewrite_rules() -> u32 {
    100
}
fn default_limit_policies() -> u32 {
    20
}
fn default_denied_cidrs() -> Vec<Cidr> {
    [
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/10",
        "0.0.0.0/8",
        "::/128",
        "fd00:ec2::254/128",
    ]
    .map(|c| Cidr(c.into()))
    .to_vec()
}

impl Default for ConfigLimits {
    fn default() -> Self {
        Self {
            config_bytes: default_config_bytes(),
            per_namespace: NamespaceLimits::default(),
        }
    }
}

impl Default for NamespaceLimits {
    fn default() -> Self {
        Self {
            zones: default_limit_zones(),
            records: default_limit_records(),
            stub_domains: default_limit_stub_domains(),
            max_concurrent: default_limit_max_concurrent(),
            rewrite_rules: default_limit_rewrite_rules(),
            policies: default_limit_policies(),
        }
    }
}

impl Default for TenantForwarders {
    fn default() -> Self {
        Self {
            denied_cidrs: default_denied_cidrs(),
        }
    }
}
