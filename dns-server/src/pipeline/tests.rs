//! Table of queries against [`answer`]: bytes in, decoded response checked. No sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use nameplane_config::{FORMAT_VERSION, KubernetesConfig, ServerConfig, ValidatedConfig};

use super::*;
use crate::kubernetes::{ServiceEntry, ServiceIndex};
use crate::request::tests::query_bytes;

const SERIAL: u32 = 1_700_000_000;

fn config(ttl: u32) -> ValidatedConfig {
    ServerConfig {
        version: FORMAT_VERSION,
        server: "kube-system/cluster-dns".into(),
        kubernetes: KubernetesConfig {
            cluster_domain: "cluster.local".into(),
            ttl_seconds: ttl,
            ..KubernetesConfig::default()
        },
    }
    .validate()
    .expect("valid config")
}

fn pipeline() -> Pipeline {
    Pipeline::build(config(30), "hash".into()).expect("builds")
}

fn services() -> ServiceIndex {
    let mut index = ServiceIndex::new(SERIAL);
    let ip = |s: &str| IpAddr::from_str(s).expect("ip");
    index.insert(
        "default",
        "web",
        ServiceEntry::from_ips([ip("10.96.0.10"), ip("fd00::10")]),
    );
    index.insert(
        "default",
        "v4only",
        ServiceEntry::from_ips([ip("10.96.0.11")]),
    );
    index.insert("default", "headless", ServiceEntry::default());
    index.insert(
        "default",
        "wide",
        ServiceEntry::from_ips((0..40).map(|i| IpAddr::V4(Ipv4Addr::new(10, 97, 0, i)))),
    );
    index.set_synced(true);
    index
}

fn ask_with(
    bytes: &[u8],
    transport: Transport,
    pipeline: Option<&Pipeline>,
    index: &ServiceIndex,
) -> (Outcome, Message) {
    let outcome = answer(bytes, transport, pipeline, &Sources { services: index });
    let response = outcome.response.as_deref().expect("a response");
    let message = Message::from_vec(response).expect("response decodes");
    (outcome, message)
}

fn ask(name: &str, qtype: RecordType) -> Message {
    ask_with(
        &query_bytes(name, qtype, None),
        Transport::Udp,
        Some(&pipeline()),
        &services(),
    )
    .1
}

fn assert_soa_authority(message: &Message) {
    assert_eq!(message.authorities.len(), 1, "{message}");
    let soa = &message.authorities[0];
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(soa.ttl, 30);
    let RData::SOA(data) = &soa.data else {
        panic!("not a SOA: {soa}");
    };
    assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(data.rname.to_ascii(), "hostmaster.cluster.local.");
    assert_eq!(data.serial, SERIAL);
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (7200, 1800, 86400, 30)
    );
}

#[test]
fn a_record_per_ipv4_cluster_ip() {
    let message = ask("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert!(message.metadata.authoritative);
    assert_eq!(message.metadata.id, 0x1234);
    assert!(message.metadata.recursion_desired);
    assert_eq!(message.answers.len(), 1);
    let record = &message.answers[0];
    assert_eq!(record.ttl, 30);
    assert_eq!(record.name.to_ascii(), "web.default.svc.cluster.local.");
    assert_eq!(record.data, RData::A(Ipv4Addr::new(10, 96, 0, 10).into()));
    assert!(message.authorities.is_empty());
}

#[test]
fn aaaa_record_per_ipv6_cluster_ip() {
    let message = ask("web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(message.answers.len(), 1);
    assert_eq!(
        message.answers[0].data,
        RData::AAAA("fd00::10".parse::<Ipv6Addr>().expect("ip").into())
    );
}

#[test]
fn nodata_for_existing_names_without_that_type() {
    for (name, qtype) in [
        ("web.default.svc.cluster.local.", RecordType::TXT),
        ("web.default.svc.cluster.local.", RecordType::MX),
        ("v4only.default.svc.cluster.local.", RecordType::AAAA),
        ("headless.default.svc.cluster.local.", RecordType::A),
        ("default.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
    ] {
        let message = ask(name, qtype);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(message.metadata.authoritative, "{name} {qtype}");
        assert!(message.answers.is_empty(), "{name} {qtype}");
        assert_soa_authority(&message);
    }
}

#[test]
fn soa_ttl_is_capped_but_negative_caching_follows_the_ttl() {
    let pipeline = Pipeline::build(config(600), "hash".into()).expect("builds");
    let bytes = query_bytes("nope.default.svc.cluster.local.", RecordType::A, None);
    let (_, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline), &services());
    let soa = &message.authorities[0];
    assert_eq!(soa.ttl, 300);
    let RData::SOA(data) = &soa.data else {
        panic!("not a SOA: {soa}");
    };
    assert_eq!(data.minimum, 600);
}

#[test]
fn zone_transfers_are_refused() {
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let message = ask("cluster.local.", qtype);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::Refused,
            "{qtype}"
        );
    }
}

#[test]
fn soa_at_the_apex() {
    let message = ask("cluster.local.", RecordType::SOA);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(message.answers.len(), 1);
    assert_eq!(message.answers[0].record_type(), RecordType::SOA);
}

#[test]
fn nxdomain_for_unknown_names_under_the_zone() {
    for name in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "x.web.default.svc.cluster.local.",
        "web.default.pod.cluster.local.",
        "other.cluster.local.",
    ] {
        let message = ask(name, RecordType::A);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert!(message.metadata.authoritative, "{name}");
        assert_soa_authority(&message);
    }
}

#[test]
fn refused_outside_the_cluster_domain() {
    for name in ["example.com.", "local.", "cluster.local.example.", "."] {
        let message = ask(name, RecordType::A);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(!message.metadata.authoritative);
        assert!(message.authorities.is_empty());
    }
}

#[test]
fn refused_for_other_classes() {
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    let mut question = Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").expect("name"),
        RecordType::A,
    );
    question.set_query_class(DNSClass::CH);
    query.add_query(question);
    let bytes = query.to_vec().expect("encodes");
    let (_, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &services());
    assert_eq!(message.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn names_match_case_insensitively_and_keep_the_query_case() {
    let message = ask("WeB.DeFault.SVC.Cluster.LOCAL.", RecordType::A);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(message.answers.len(), 1);
    assert_eq!(
        message.answers[0].name.to_ascii(),
        "WeB.DeFault.SVC.Cluster.LOCAL."
    );
    assert_eq!(
        message.queries[0].name().to_ascii(),
        "WeB.DeFault.SVC.Cluster.LOCAL."
    );
}

#[test]
fn servfail_for_cluster_names_before_the_initial_list() {
    let mut unsynced = services();
    unsynced.set_synced(false);
    let bytes = query_bytes("web.default.svc.cluster.local.", RecordType::A, None);
    let (outcome, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &unsynced);
    assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(outcome.origin, Origin::Kubernetes);
    // Names outside the zone do not depend on the index.
    let bytes = query_bytes("example.com.", RecordType::A, None);
    let (_, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &unsynced);
    assert_eq!(message.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn servfail_for_everything_before_the_first_config() {
    for name in ["web.default.svc.cluster.local.", "example.com."] {
        let bytes = query_bytes(name, RecordType::A, None);
        let (outcome, message) = ask_with(&bytes, Transport::Udp, None, &services());
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(outcome.origin, Origin::Server);
        assert_eq!(message.queries.len(), 1, "question echoed");
    }
}

#[test]
fn formerr_on_garbage_and_on_zero_questions() {
    let index = services();
    let pipeline = pipeline();
    let sources = Sources { services: &index };

    let garbage = [
        0xab, 0xcd, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
    ];
    let outcome = answer(&garbage, Transport::Udp, Some(&pipeline), &sources);
    assert_eq!(outcome.rcode, ResponseCode::FormErr);
    let message = Message::from_vec(&outcome.response.expect("reply")).expect("decodes");
    assert_eq!(message.metadata.id, 0xabcd);
    assert_eq!(message.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(message.metadata.message_type, MessageType::Response);

    let mut zero = query_bytes("web.default.svc.cluster.local.", RecordType::A, None);
    zero[5] = 0;
    let outcome = answer(&zero, Transport::Udp, Some(&pipeline), &sources);
    assert_eq!(outcome.rcode, ResponseCode::FormErr);
    assert!(outcome.qtype.is_none());

    let outcome = answer(&[1, 2, 3], Transport::Udp, Some(&pipeline), &sources);
    assert_eq!(outcome.response, None, "no header id: dropped");
}

#[test]
fn notimp_for_other_opcodes() {
    let mut bytes = query_bytes("web.default.svc.cluster.local.", RecordType::A, None);
    bytes[2] = (bytes[2] & !0x78) | (u8::from(OpCode::Update) << 3);
    let (outcome, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &services());
    assert_eq!(outcome.rcode, ResponseCode::NotImp);
    assert_eq!(message.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(message.metadata.op_code, OpCode::Update);
}

#[test]
fn truncates_oversized_udp_answers() {
    let bytes = query_bytes("wide.default.svc.cluster.local.", RecordType::A, None);
    let (outcome, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &services());
    assert!(outcome.response.as_ref().expect("reply").len() <= 512);
    assert!(message.metadata.truncation);
    assert!(message.answers.is_empty());
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);

    // The same question over TCP gets every record.
    let (_, message) = ask_with(&bytes, Transport::Tcp, Some(&pipeline()), &services());
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 40);

    // And so does a UDP client that announced a larger buffer.
    let bytes = query_bytes("wide.default.svc.cluster.local.", RecordType::A, Some(1232));
    let (_, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &services());
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 40);
    assert_eq!(message.edns.expect("OPT echoed").max_payload(), 1232);
}

#[test]
fn badvers_for_unknown_edns_versions() {
    let mut query = Message::new(9, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").expect("name"),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_version(1);
    query.set_edns(edns);
    let bytes = query.to_vec().expect("encodes");
    let (outcome, message) = ask_with(&bytes, Transport::Udp, Some(&pipeline()), &services());
    assert_eq!(outcome.rcode, ResponseCode::BADVERS);
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    assert_eq!(u16::from(message.metadata.response_code), 16);
    assert_eq!(message.edns.expect("OPT").version(), 0);
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

#[test]
fn never_panics_on_random_or_mutated_input() {
    let index = services();
    let pipeline = pipeline();
    let sources = Sources { services: &index };
    let seeds: Vec<Vec<u8>> = [
        ("web.default.svc.cluster.local.", RecordType::A, None),
        ("wide.default.svc.cluster.local.", RecordType::A, Some(4096)),
        ("default.svc.cluster.local.", RecordType::AAAA, Some(512)),
        ("example.com.", RecordType::MX, None),
    ]
    .into_iter()
    .map(|(name, qtype, edns)| query_bytes(name, qtype, edns))
    .collect();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..6000 {
        let packet: Vec<u8> = if round % 3 == 0 {
            let len = rng.below(300);
            (0..len).map(|_| rng.byte()).collect()
        } else {
            let mut packet = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(4) {
                    0 => {
                        let at = rng.below(packet.len());
                        packet[at] = rng.byte();
                    }
                    1 => packet.truncate(rng.below(packet.len() + 1)),
                    2 => {
                        let at = rng.below(packet.len() + 1);
                        packet.insert(at, rng.byte());
                    }
                    _ => {
                        // Header counts are the classic crash surface.
                        let at = 4 + rng.below(8);
                        if let Some(byte) = packet.get_mut(at) {
                            *byte = rng.byte();
                        }
                    }
                }
                if packet.is_empty() {
                    break;
                }
            }
            packet
        };
        for transport in [Transport::Udp, Transport::Tcp] {
            let outcome = answer(&packet, transport, Some(&pipeline), &sources);
            if let Some(response) = outcome.response {
                assert!(response.len() >= 12, "round {round}");
                assert_eq!(response[..2], packet[..2], "id echoed, round {round}");
                if transport == Transport::Udp {
                    assert!(response.len() <= 1232, "round {round}");
                }
            }
        }
    }
}
