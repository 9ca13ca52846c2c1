//! `DNSZone`: an authoritative zone and its records, served by every `DNSServer` that selects
//! it (CoreDNS's `file`/`hosts` plugins, as objects).

use super::{DomainName, KubernetesName, ObjectStatus};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An authoritative DNS zone, e.g. `example.internal`, with its records.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "nameplane.io",
    version = "v1alpha1",
    kind = "DNSZone",
    plural = "dnszones",
    singular = "dnszone",
    namespaced,
    status = "ObjectStatus",
    shortname = "dnsz",
    category = "nameplane",
    doc = "An authoritative DNS zone and its records.",
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
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
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DNSZoneSpec {
    /// The zone's apex, e.g. `example.internal`.
    pub zone: DomainName,

    /// TTL, in seconds, of records that do not set their own.
    #[serde(default = "default_ttl_seconds")]
    #[schemars(range(max = 604_800))]
    pub ttl_seconds: u32,

    /// The zone's records. The SOA is generated, and so are the apex NS records when the
    /// zone lists none (they then name the DNS server's own Service).
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub records: Vec<ZoneRecord>,

    /// Clients allowed to transfer the zone (AXFR, and IXFR answered with the whole zone),
    /// as IP addresses or CIDR prefixes, e.g. `10.0.0.0/8` or `fd00::53`. Left out, every
    /// transfer is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allow_transfer: Vec<TransferClient>,
}

/// An IP address or CIDR prefix allowed to transfer a zone.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "isIP(self) || isCIDR(self)",
    "message": "must be an IP address or a CIDR prefix, like 10.0.0.0/8, 192.0.2.7 or fd00::/8"
}]))]
pub struct TransferClient(#[schemars(length(min = 1, max = 49))] pub String);

/// One record set: all values of one type at one name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.values) != has(self.service)",
     "message": "a record has either values or a service, exactly one of them"},
    {"rule": "!has(self.service) || self.type == 'A' || self.type == 'AAAA'",
     "message": "only A and AAAA records can take their addresses from a service"},
    {"rule": "self.type != 'A' || !has(self.values) || self.values.all(v, isIP(v) && ip(v).family() == 4)",
     "message": "an A record's values must be IPv4 addresses, like 192.0.2.10"},
    {"rule": "self.type != 'AAAA' || !has(self.values) || self.values.all(v, isIP(v) && ip(v).family() == 6)",
     "message": "an AAAA record's values must be IPv6 addresses, like 2001:db8::10"},
    {"rule": "self.type != 'CNAME' || (has(self.values) && self.values.size() == 1)",
     "message": "a CNAME record has exactly one value"},
    {"rule": "self.type != 'CNAME' || self.name != '@'",
     "message": "the zone apex ('@') cannot be a CNAME"}
]))]
pub struct ZoneRecord {
    /// Owner name relative to the zone: `@` for the apex, `www`, or a wildcard like `*.apps`.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == '@' || self.matches('^([*][.])?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?[.])*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$') || self == '*'",
        "message": "name must be '@', a relative name like www or _sip._tcp, or a wildcard like *.apps"
    }]))]
    pub name: String,

    /// Record type.
    #[serde(rename = "type")]
    pub record_type: RecordType,

    /// TTL of this record set, in seconds; the zone's `ttlSeconds` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 604_800))]
    pub ttl_seconds: Option<u32>,

    /// Values in zone-file presentation form: `192.0.2.10` (A), `2001:db8::10` (AAAA),
    /// `target.example.org.` (CNAME, NS, PTR), `10 mail.example.org.` (MX),
    /// `10 5 443 svc.example.org.` (SRV), `some text` (TXT), `0 issue "letsencrypt.org"` (CAA).
    /// Either this or `service`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32))]
    pub values: Vec<RecordValue>,

    /// Take the values from a Service's addresses instead (A and AAAA only): an A record
    /// gets its IPv4 addresses, an AAAA record its IPv6 ones, kept up to date as the Service
    /// changes. Either this or `values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<RecordServiceRef>,
}

/// The Service whose addresses a record serves.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordServiceRef {
    /// The Service's name.
    pub name: KubernetesName,
    /// The Service's namespace; left out, the DNSZone's. A DNSZone in another namespace than
    /// its DNSServer's may only name Services of its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<KubernetesName>,
    /// Which of the Service's addresses to serve.
    #[serde(default)]
    pub addresses: ServiceAddressKind,
}

/// Which addresses of a Service a record serves.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceAddressKind {
    /// Its ClusterIPs (`spec.clusterIPs`), reachable inside the cluster.
    #[default]
    ClusterIP,
    /// The IP addresses of its load balancer (`status.loadBalancer.ingress[].ip`; a Service
    /// of type LoadBalancer).
    LoadBalancer,
}

/// A record value in presentation form.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct RecordValue(#[schemars(length(min = 1, max = 255))] pub String);

/// Record types a zone can hold.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    AAAA,
    /// Alias to another name.
    CNAME,
    /// Mail exchanger.
    MX,
    /// Name server (for delegations below the apex).
    NS,
    /// Reverse pointer.
    PTR,
    /// Service location.
    SRV,
    /// Free text.
    TXT,
    /// Which certificate authorities may issue for the name.
    CAA,
}

fn default_ttl_seconds() -> u32 {
    300
}
