//! The entry points of the adversarial suite: the fuzz targets in `fuzz/` and the unit tests
//! that replay their corpora call these, so a property is written once and holds on stable
//! `cargo test` as under libFuzzer. Not used by the server itself.
//!
//! Three checks, one per fuzz target, each asserting properties rather than "no panic":
//!
//! - [`AnswerFixture::check`]: the whole answer function ([`crate::pipeline::answer`])
//!   over UDP and TCP, against a rich fixture: the cluster of Services, EndpointSlices and
//!   Pods; a zone with delegations, wildcards, CNAMEs, a CNAME into the cluster and more
//!   records than one transfer message holds, transferable by the Pod network; policies, an exact, a
//!   regex and a tenant rewrite; autopath; client classes; a stub domain and upstreams; a
//!   filled cache (a chain, an NXDOMAIN, an answer larger than UDP allows). The response
//!   decodes, carries the query's id and echoes its question byte for byte; over UDP it fits
//!   the client's EDNS size capped at the server's limit and carries no transfer; every
//!   answer name a restricted client sees is one its policy allows.
//! - [`check_upstream`]: an upstream's reply to a forwarded question through what the
//!   forwarder does with it: the acceptance checks ([`upstream::check_reply`]), the
//!   bailiwick ([`bailiwick::sanitize`]), the cache insert, and the encoding of the cached
//!   answer to clients (the wire template and the slow path) with the same properties.
//!   Only the network exchange and the chase of a chain leaving the stub domain are left
//!   out.
//! - [`check_config`]: the config parser and validator: a config that validates
//!   re-validates from its canonical JSON to the same config, builds into a pipeline, and
//!   that pipeline answers.
//!
//! Inputs are raw bytes with one leading selector byte (`flags`), so seeds are real DNS
//! messages and configs: see [`AnswerCase::from_bytes`] and [`UpstreamCase::from_bytes`].
//! Nothing here opens a socket: forwarded queries stop at [`crate::pipeline::Sent::Deferred`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use nameplane_config::ValidatedConfig;

use crate::cluster::index::{Cluster, PodClient};
use crate::cluster::objects::{
    EndpointEntry, PortEntry, Protocol, ServiceEntry, SliceEntry, external_name_wire,
};
use crate::metrics::Metrics;
use crate::pipeline::forward::{bailiwick, upstream};
use crate::pipeline::{self, Pipeline, Settings, Sources};
use crate::reply::{Key, Reply};
use crate::request::{self, Transport};

/// The server UDP limits a case may run under (`--max-udp-payload`).
pub const MAX_UDP_CHOICES: [u16; 4] = [512, 1232, 1400, 4096];

/// What a client of the fixture may see in an answer section.
#[derive(Clone, Copy, Debug)]
pub enum Allowed {
    /// Everything (a Pod no policy selects, the node class).
    All,
    /// Nothing: the client class is denied, every response is empty.
    Nothing,
    /// Names the first covering `(allow, domain)` rule allows (none covering: denied), plus
    /// the names a rewrite turns allowed names back into (absolute names, ending in a dot).
    Rules(&'static [(bool, &'static str)], &'static [&'static str]),
}

/// The clients of the fixture: source address and what it may see.
pub const CLIENTS: [(&str, Allowed); 6] = [
    // Pod default/web (app=web): the policy `default/web-only`.
    (
        "10.244.0.6",
        Allowed::Rules(
            &[
                (false, "secret.example.internal."),
                (true, "default.svc.cluster.local."),
                (true, "example.internal."),
                (true, "example.com."),
            ],
            // The exact rewrite turns its target back into its name.
            &["mystore.com."],
        ),
    ),
    // Pod default/tool: no policy selects it.
    ("10.244.0.7", Allowed::All),
    // Pod other/api: the policy `other/cluster-only`, and the tenant rewrite of `other`.
    (
        "10.244.1.50",
        Allowed::Rules(
            &[(true, "cluster.local.")],
            &["mystore.com.", "api.internal."],
        ),
    ),
    // A node address: the node class allows it.
    ("127.0.0.1", Allowed::All),
    // Unidentified: denied.
    ("10.9.9.9", Allowed::Nothing),
    // Two host-network Pods share it: not one Pod, so unidentified.
    ("10.0.0.1", Allowed::Nothing),
];

impl Allowed {
    fn may_see(&self, name: &Name) -> bool {
        match self {
            Self::All => true,
            Self::Nothing => false,
            Self::Rules(rules, extra) => {
                let covering = rules
                    .iter()
                    .find(|(_, domain)| Name::from_ascii(domain).is_ok_and(|d| d.zone_of(name)));
                covering.is_some_and(|(allow, _)| *allow)
                    || extra
                        .iter()
                        .any(|e| Name::from_ascii(e).is_ok_and(|e| e == *name))
            }
        }
    }
}

/// The fixture's config: every client-aware stage, a zone, forwarding and a cache.
pub fn fixture_config() -> String {
    let hosts: Vec<String> = (0..120)
        .map(|i| {
            format!(
                r#"{{"name":"host-{i}.example.internal","type":"A","ttlSeconds":60,"values":["192.0.2.{i}"]}}"#
            )
        })
        .collect();
    format!(
        r#"{{
  "version": 1,
  "server": "kube-system/cluster-dns",
  "kubernetes": {{"clusterDomain": "cluster.local", "ttlSeconds": 30, "pods": "verified", "autopath": true}},
  "zones": [
    {{"name": "example.internal", "source": "default/example", "ttlSeconds": 300,
      "records": [
        {{"name": "example.internal", "type": "A", "ttlSeconds": 300, "values": ["192.0.2.10"]}},
        {{"name": "example.internal", "type": "MX", "ttlSeconds": 300, "values": ["10 mail.example.internal."]}},
        {{"name": "example.internal", "type": "TXT", "ttlSeconds": 300, "values": ["owner=platform"]}},
        {{"name": "mail.example.internal", "type": "A", "ttlSeconds": 300, "values": ["192.0.2.25"]}},
        {{"name": "secret.example.internal", "type": "A", "ttlSeconds": 300, "values": ["192.0.2.26"]}},
        {{"name": "www.example.internal", "type": "CNAME", "ttlSeconds": 300, "values": ["example.internal."]}},
        {{"name": "leak.example.internal", "type": "CNAME", "ttlSeconds": 300, "values": ["secret.example.internal."]}},
        {{"name": "out.example.internal", "type": "CNAME", "ttlSeconds": 300, "values": ["api.other.svc.cluster.local."]}},
        {{"name": "*.apps.example.internal", "type": "A", "ttlSeconds": 300, "values": ["192.0.2.50"]}},
        {{"name": "_https._tcp.example.internal", "type": "SRV", "ttlSeconds": 60, "values": ["10 5 443 mail.example.internal."]}},
        {{"name": "sub.example.internal", "type": "NS", "ttlSeconds": 300, "values": ["ns1.sub.example.internal."]}},
        {{"name": "ns1.sub.example.internal", "type": "A", "ttlSeconds": 300, "values": ["192.0.2.53"]}},
        {hosts}
      ],
      "allowTransfer": ["10.244.0.0/16", "127.0.0.0/8"]}},
    {{"name": "2.0.192.in-addr.arpa", "source": "default/reverse", "ttlSeconds": 120,
      "records": [{{"name": "10.2.0.192.in-addr.arpa", "type": "PTR", "ttlSeconds": 120, "values": ["example.internal."]}}]}}
  ],
  "forward": [
    {{"domain": ".", "source": "kube-system/cluster-dns", "servers": ["127.0.0.1:9"], "policy": "random", "forceTcp": false}},
    {{"domain": "corp.example", "source": "default/corp", "servers": ["127.0.0.1:9"], "policy": "sequential", "forceTcp": false}}
  ],
  "cache": {{"capacity": 1000, "maxTtlSeconds": 600, "minTtlSeconds": 0, "denialTtlSeconds": 60}},
  "rewrites": [
    {{"source": "kube-system/store", "match": "exact", "from": "mystore.com", "to": "web.default.svc.cluster.local", "rewriteAnswers": true}},
    {{"source": "kube-system/corp", "match": "regex", "from": "^(\\w+)\\.corp$", "to": "{{1}}.default.svc.cluster.local", "rewriteAnswers": true}},
    {{"source": "other/alias", "match": "exact", "from": "api.internal", "to": "api.other.svc.cluster.local", "rewriteAnswers": true, "ttlSeconds": 7, "clientNamespace": "other"}}
  ],
  "policies": [
    {{"source": "default/web-only", "namespace": "default", "podSelector": {{"matchLabels": {{"app": "web"}}}},
      "rules": [
        {{"action": "deny", "domains": ["secret.example.internal"]}},
        {{"action": "allow", "domains": ["default.svc.cluster.local", "example.internal", "example.com"]}}
      ],
      "defaultAction": "deny", "deniedResponse": "nxdomain"}},
    {{"source": "other/cluster-only", "namespace": "other",
      "rules": [{{"action": "allow", "domains": ["cluster.local"]}}],
      "defaultAction": "deny", "deniedResponse": "refused"}}
  ],
  "clients": {{"unidentified": "deny", "nodes": {{"action": "allow", "cidrs": ["127.0.0.0/8"]}}}}
}}"#,
        hosts = hosts.join(",\n        ")
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn port(name: &str, number: u16) -> PortEntry {
    PortEntry {
        name: name.into(),
        protocol: Protocol::Tcp,
        port: number,
    }
}

fn endpoint(address: &str, hostname: Option<&str>) -> EndpointEntry {
    EndpointEntry {
        ip: ip(address),
        hostname: hostname.map(Arc::from),
        pod: None,
    }
}

/// The fixture cluster: Services of every kind in `default` and `other`, their slices, and
/// the Pods of [`CLIENTS`]; listed.
pub fn fixture_cluster() -> Cluster {
    let mut c = Cluster::new(1_700_000_000);
    for ns in ["default", "other"] {
        c.namespaces.add(ns);
    }
    let s = &mut c.services;
    s.upsert(
        "default",
        "web",
        ServiceEntry::cluster_ip([ip("10.96.0.10"), ip("fd00::10")], vec![port("http", 80)]),
    );
    s.upsert("default", "db", ServiceEntry::headless(vec![]));
    s.upsert(
        "other",
        "api",
        ServiceEntry::cluster_ip([ip("10.96.1.1")], vec![port("http", 80)]),
    );
    for (name, target) in [
        ("ext", "web.default.svc.cluster.local"),
        ("ext-out", "example.com"),
        ("ext-secret", "secret.example.internal"),
    ] {
        if let Some(wire) = external_name_wire(target) {
            s.upsert(
                "default",
                name,
                ServiceEntry {
                    kind: crate::cluster::objects::ServiceKind::ExternalName(wire),
                    ports: Box::new([]),
                    has_selector: false,
                },
            );
        }
    }
    c.endpoints.put_slice(
        "default",
        "db",
        "db-1",
        SliceEntry {
            ports: vec![port("pg", 5432)].into(),
            endpoints: (0..60)
                .map(|i| endpoint(&format!("10.244.3.{i}"), (i == 0).then_some("db-0")))
                .collect::<Vec<_>>()
                .into(),
        },
    );
    c.set_pods_watched(true);
    if let Some(pods) = c.pods.as_mut() {
        for (namespace, name, app, at, host_network) in [
            ("default", "web", "web", "10.244.0.6", false),
            ("default", "tool", "tool", "10.244.0.7", false),
            ("other", "api", "api", "10.244.1.50", false),
            ("kube-system", "proxy", "proxy", "10.0.0.1", true),
            ("kube-system", "agent", "agent", "10.0.0.1", true),
        ] {
            let pod = Arc::new(PodClient {
                namespace: namespace.into(),
                name: name.into(),
                labels: [("app".to_owned(), app.to_owned())].into(),
                host_network,
                running: true,
            });
            pods.replace(None, Some((&[ip(at)], &pod)));
        }
    }
    c.set_synced(true);
    c
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

fn record(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn key(qname: &str, qtype: RecordType) -> Key {
    Key {
        name: name(qname).to_lowercase(),
        qtype,
        qclass: DNSClass::IN,
        dnssec_ok: false,
        checking_disabled: false,
        partition: 0,
    }
}

/// The forwarded answers the fixture's cache holds (all fresh for ten minutes).
pub fn cached_replies() -> Vec<(Key, Reply)> {
    let reply = |rcode, answers, authorities, additionals| Reply {
        rcode,
        truncated: false,
        answers,
        authorities,
        additionals,
    };
    let a = |owner: &str, last: u8| record(owner, 300, RData::A(A::new(192, 0, 2, last)));
    let soa = record(
        "example.com.",
        300,
        RData::SOA(SOA::new(
            name("ns.example.com."),
            name("hostmaster.example.com."),
            1,
            7200,
            1800,
            86400,
            60,
        )),
    );
    let cname = |from: &str, to: &str| record(from, 300, RData::CNAME(CNAME(name(to))));
    vec![
        (
            key("example.com.", RecordType::A),
            reply(
                ResponseCode::NoError,
                vec![a("example.com.", 1)],
                vec![],
                vec![],
            ),
        ),
        (
            key("www.example.com.", RecordType::A),
            reply(
                ResponseCode::NoError,
                vec![
                    cname("www.example.com.", "example.com."),
                    a("example.com.", 1),
                ],
                vec![],
                vec![],
            ),
        ),
        (
            // A chain from an allowed name to a denied one.
            key("evil.example.com.", RecordType::A),
            reply(
                ResponseCode::NoError,
                vec![
                    cname("evil.example.com.", "bank.example.org."),
                    a("bank.example.org.", 66),
                ],
                vec![],
                vec![],
            ),
        ),
        (
            key("big.example.com.", RecordType::TXT),
            reply(
                ResponseCode::NoError,
                (0..40)
                    .map(|i| {
                        record(
                            "big.example.com.",
                            300,
                            RData::TXT(TXT::new(vec![format!("{i:02}-{}", "x".repeat(60))])),
                        )
                    })
                    .collect(),
                vec![],
                vec![],
            ),
        ),
        (
            key("nx.example.com.", RecordType::A),
            reply(ResponseCode::NXDomain, vec![], vec![soa], vec![]),
        ),
        (
            key("corp.example.", RecordType::MX),
            reply(
                ResponseCode::NoError,
                vec![record(
                    "corp.example.",
                    300,
                    RData::MX(MX::new(10, name("mx.corp.example."))),
                )],
                vec![],
                vec![a("mx.corp.example.", 25)],
            ),
        ),
    ]
}

/// One query to the answer function: how it arrives and from whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerCase {
    /// The transport it arrived on.
    pub transport: Transport,
    /// Index into [`CLIENTS`].
    pub client: usize,
    /// The server's `--max-udp-payload`.
    pub max_udp: u16,
    /// The query bytes.
    pub packet: Vec<u8>,
}

impl AnswerCase {
    /// The fuzz input layout: `flags` (bit 0: TCP; bits 1-3: the client; bits 4-5: the
    /// server's UDP limit from [`MAX_UDP_CHOICES`]) and the packet.
    pub fn from_bytes(data: &[u8]) -> Self {
        let flags = data.first().copied().unwrap_or(0);
        Self {
            transport: if flags & 1 == 1 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            client: usize::from((flags >> 1) & 0x07) % CLIENTS.len(),
            max_udp: MAX_UDP_CHOICES[usize::from((flags >> 4) & 0x03)],
            packet: data.get(1..).unwrap_or_default().to_vec(),
        }
    }

    /// The inverse of [`AnswerCase::from_bytes`] (for writing seeds).
    pub fn to_bytes(&self) -> Vec<u8> {
        let limit = MAX_UDP_CHOICES
            .iter()
            .position(|l| *l == self.max_udp)
            .unwrap_or(1) as u8;
        let flags = u8::from(self.transport == Transport::Tcp)
            | ((self.client as u8 & 0x07) << 1)
            | (limit << 4);
        let mut out = vec![flags];
        out.extend_from_slice(&self.packet);
        out
    }
}

/// The built fixture: pipeline, cluster and metrics.
#[derive(Debug)]
pub struct AnswerFixture {
    pipeline: Pipeline,
    cluster: Cluster,
    metrics: Metrics,
}

impl AnswerFixture {
    /// Builds the fixture and fills its cache with [`cached_replies`].
    pub fn new() -> Result<Self, String> {
        let config = ValidatedConfig::from_json(&fixture_config()).map_err(|e| e.to_string())?;
        let pipeline = Pipeline::build(config, "fixture".into()).map_err(|e| e.to_string())?;
        let metrics = Metrics::new(SocketAddr::from(([127, 0, 0, 1], 53)));
        let cache = pipeline.cache().ok_or("the fixture has a cache")?;
        let now = Instant::now();
        for (key, reply) in cached_replies() {
            cache.insert(key, Arc::new(reply), now, metrics.cache());
        }
        Ok(Self {
            pipeline,
            cluster: fixture_cluster(),
            metrics,
        })
    }

    /// Answers `case` and checks every property of the module docs.
    pub fn check(&self, case: &AnswerCase) -> Result<(), String> {
        let allowed = CLIENTS[case.client % CLIENTS.len()].1;
        check_answer(&self.pipeline, &self.cluster, &self.metrics, case, allowed)
    }
}

/// Answers `case` with `pipeline` and checks the response's properties; `allowed` is what
/// the client may see in an answer section.
fn check_answer(
    pipeline: &Pipeline,
    cluster: &Cluster,
    metrics: &Metrics,
    case: &AnswerCase,
    allowed: Allowed,
) -> Result<(), String> {
    let address = CLIENTS[case.client % CLIENTS.len()].0;
    let settings = Settings {
        max_udp_payload: case.max_udp,
        ..Settings::default()
    };
    let mut out = Vec::new();
    let outcome = pipeline::answer(
        &case.packet,
        case.transport,
        Some(pipeline),
        &Sources {
            cluster,
            client: SocketAddr::new(ip(address), 40000),
            metrics,
        },
        &settings,
        &mut out,
    );
    if !matches!(outcome, pipeline::Sent::Replied { .. }) {
        if !out.is_empty() {
            return Err(format!(
                "{} bytes written for a query left unanswered",
                out.len()
            ));
        }
        return Ok(());
    }
    let request = request::parse(&case.packet, case.transport);
    let message =
        Message::from_vec(&out).map_err(|e| format!("the response does not decode: {e}"))?;
    if out.get(..2) != case.packet.get(..2) {
        return Err("the response does not carry the query's id".into());
    }
    if message.metadata.message_type != MessageType::Response {
        return Err("QR is clear".into());
    }
    let Ok(request) = request else {
        // FORMERR or NOTIMP: the header alone.
        return match out.len() {
            12 => Ok(()),
            n => Err(format!("an error reply of {n} bytes")),
        };
    };
    if message.queries.len() != 1
        || out.get(12..12 + request.question.len()) != Some(request.question)
    {
        return Err("the question is not echoed as received".into());
    }
    let transfer = matches!(request.qtype, RecordType::AXFR | RecordType::IXFR);
    if case.transport == Transport::Udp {
        let limit = request.max_response_len(case.max_udp);
        if out.len() > limit {
            return Err(format!(
                "a UDP response of {} bytes, above the limit of {limit}",
                out.len()
            ));
        }
        if !outcome.more().is_empty() || (transfer && !message.answers.is_empty()) {
            return Err("a zone transfer over UDP".into());
        }
    }
    let asked = Query::read(&mut BinDecoder::new(request.question))
        .map(|q| q.name().to_lowercase())
        .map_err(|e| format!("the question does not decode: {e}"))?;
    let mut messages = vec![message];
    for more in outcome.more() {
        messages.push(
            Message::from_vec(more)
                .map_err(|e| format!("a transfer message does not decode: {e}"))?,
        );
    }
    for message in &messages {
        for record in &message.answers {
            for seen in names_of(record) {
                let seen = seen.to_lowercase();
                if seen != asked && !allowed.may_see(&seen) {
                    return Err(format!(
                        "{address} may not see {seen} (answer record {record})"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The owner and the names an answer record leads to (what a policy checks).
fn names_of(record: &Record) -> Vec<&Name> {
    let mut names = vec![&record.name];
    match &record.data {
        RData::CNAME(target) => names.push(&target.0),
        RData::NS(target) => names.push(&target.0),
        RData::PTR(target) => names.push(&target.0),
        RData::MX(mx) => names.push(&mx.exchange),
        RData::SRV(srv) => names.push(&srv.target),
        _ => {}
    }
    names
}

/// Questions an upstream reply can answer: (name, type, the forwarder's domain).
pub const UPSTREAM_QUESTIONS: [(&str, RecordType, &str); 8] = [
    ("example.com.", RecordType::A, "."),
    ("www.example.com.", RecordType::AAAA, "."),
    ("example.com.", RecordType::MX, "."),
    ("example.net.", RecordType::ANY, "."),
    ("www.corp.example.", RecordType::A, "corp.example."),
    ("corp.example.", RecordType::MX, "corp.example."),
    ("_ldap._tcp.corp.example.", RecordType::SRV, "corp.example."),
    ("alias.corp.example.", RecordType::CNAME, "corp.example."),
];

/// One upstream reply to one forwarded question, and the client that then asks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamCase {
    /// Index into [`UPSTREAM_QUESTIONS`].
    pub question: usize,
    /// The DO bit of the forwarded question.
    pub dnssec_ok: bool,
    /// Index into [`CLIENTS`] of the client asking for the cached answer.
    pub client: usize,
    /// The EDNS size of the client's query (`None`: no EDNS).
    pub edns: Option<u16>,
    /// The upstream's reply bytes.
    pub reply: Vec<u8>,
}

impl UpstreamCase {
    /// The fuzz input layout: `flags` (bits 0-2: the question; bit 3: DO; bits 4-5: the
    /// client's EDNS, none/512/1232/4096; bits 6-7: the client, from the first four) and
    /// the reply.
    pub fn from_bytes(data: &[u8]) -> Self {
        let flags = data.first().copied().unwrap_or(0);
        Self {
            question: usize::from(flags & 0x07),
            dnssec_ok: flags & 0x08 != 0,
            edns: [None, Some(512), Some(1232), Some(4096)][usize::from((flags >> 4) & 0x03)],
            client: usize::from(flags >> 6),
            reply: data.get(1..).unwrap_or_default().to_vec(),
        }
    }

    /// The key of the forwarded question.
    pub fn key(&self) -> Key {
        let (qname, qtype, _) = UPSTREAM_QUESTIONS[self.question % UPSTREAM_QUESTIONS.len()];
        Key {
            dnssec_ok: self.dnssec_ok,
            ..key(qname, qtype)
        }
    }
}

/// A query for `name`/`qtype`, with EDNS (and DO) when `edns` is given.
pub fn query(
    id: u16,
    name: &Name,
    qtype: RecordType,
    edns: Option<u16>,
    dnssec_ok: bool,
) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), qtype));
    if let Some(payload) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(payload).set_dnssec_ok(dnssec_ok);
        message.set_edns(opt);
    }
    message.to_vec().unwrap_or_default()
}

/// Runs `case` through the forwarder's handling of an upstream reply and checks what is
/// kept, cached and sent. `config` is the fixture config, parsed once by the caller; a
/// fresh pipeline (and so an empty cache) is built for each case.
pub fn check_upstream(
    config: &ValidatedConfig,
    cluster: &Cluster,
    case: &UpstreamCase,
) -> Result<(), String> {
    let key = case.key();
    let domain = name(UPSTREAM_QUESTIONS[case.question % UPSTREAM_QUESTIONS.len()].2);
    let id = match case.reply.get(..2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    let metrics = Metrics::new(SocketAddr::from(([127, 0, 0, 1], 53)));
    let Ok(message) = upstream::check_reply(&case.reply, id, &key) else {
        return Ok(());
    };
    let reply = bailiwick::sanitize(message, &key, &domain, metrics.forward());
    let mut chain = vec![key.name.clone()];
    for record in &reply.answers {
        if let RData::CNAME(target) = &record.data {
            chain.push(target.0.clone());
        }
    }
    for record in &reply.answers {
        if !domain.zone_of(&record.name) || !chain.contains(&record.name) {
            return Err(format!(
                "kept answer {record} is outside {domain} or the chain"
            ));
        }
    }
    for record in reply.authorities.iter().chain(&reply.additionals) {
        if !domain.zone_of(&record.name) {
            return Err(format!("kept record {record} is outside {domain}"));
        }
    }
    if reply
        .additionals
        .iter()
        .any(|r| !matches!(r.record_type(), RecordType::A | RecordType::AAAA))
    {
        return Err("a kept additional record is not an address".into());
    }
    let pipeline = Pipeline::build(config.clone(), "fixture".into()).map_err(|e| e.to_string())?;
    let cache = pipeline.cache().ok_or("the fixture has a cache")?;
    cache.insert(
        key.clone(),
        Arc::new(reply),
        Instant::now(),
        metrics.cache(),
    );
    // The cached answer (or, if it could not be cached, the forwarding decision) for the
    // same question, as asked by a client over each transport.
    for transport in [Transport::Udp, Transport::Tcp] {
        for max_udp in [512, 1232] {
            let case = AnswerCase {
                transport,
                client: case.client,
                max_udp,
                packet: query(0x5a5a, &key.name, key.qtype, case.edns, case.dnssec_ok),
            };
            let allowed = CLIENTS[case.client % CLIENTS.len()].1;
            check_answer(&pipeline, cluster, &metrics, &case, allowed)?;
        }
    }
    Ok(())
}

/// Parses and validates `data` as a server config; a valid one must re-validate from its
/// canonical JSON, build, and answer.
pub fn check_config(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(config) = ValidatedConfig::from_json(text) else {
        return Ok(());
    };
    let canonical = config.raw().to_json();
    let again = ValidatedConfig::from_json(&canonical)
        .map_err(|e| format!("the canonical JSON of a valid config is refused: {e}"))?;
    if again != config {
        return Err("the canonical JSON of a valid config validates to another config".into());
    }
    let pipeline = Pipeline::build(config, "fuzz".into())
        .map_err(|e| format!("a valid config does not build: {e}"))?;
    let cluster = fixture_cluster();
    let metrics = Metrics::new(SocketAddr::from(([127, 0, 0, 1], 53)));
    let domain = pipeline.config().cluster_domain().to_owned();
    for (qname, qtype) in [
        (format!("web.default.svc.{domain}."), RecordType::A),
        ("example.internal.".to_owned(), RecordType::ANY),
        ("mystore.com.".to_owned(), RecordType::A),
    ] {
        let Ok(qname) = Name::from_ascii(&qname) else {
            continue;
        };
        for client in 0..CLIENTS.len() {
            let case = AnswerCase {
                transport: Transport::Udp,
                client,
                max_udp: 1232,
                packet: query(7, &qname, qtype, Some(1232), false),
            };
            // The fixture's policies are not this config's: only the wire properties are
            // checked.
            check_answer(&pipeline, &cluster, &metrics, &case, Allowed::All)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
