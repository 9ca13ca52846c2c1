//! Pure parts of the forward stage: routing, reply checks, bailiwick, policies, randomness.
//! Exchanges with real servers are in `tests/forward.rs`.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME, MX, NS, SOA};
use hickory_proto::rr::{DNSClass, RData};
use nameplane_config::forward::{ForwardConfig, ForwardPolicy};
use nameplane_config::zone::ZoneConfig;
use nameplane_config::{ServerConfig, ValidatedConfig};

use super::upstream::{SOURCE_PORT_MIN, bind_random_port, check_reply, encode_query};
use super::*;
use crate::metrics::forward::RejectReason;
use crate::pipeline::tests::test_metrics;
use crate::reply::Key;
use hickory_proto::rr::{Name, Record, RecordType};

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

fn key(text: &str, qtype: RecordType) -> Key {
    Key {
        name: name(text),
        qtype,
        qclass: DNSClass::IN,
        dnssec_ok: false,
        checking_disabled: false,
        partition: 0,
    }
}

fn forward(domain: &str, servers: &[&str], policy: ForwardPolicy) -> ForwardConfig {
    ForwardConfig {
        servers_from_resolv_conf: false,
        domain: domain.into(),
        source: "ns/x".into(),
        servers: servers.iter().map(|s| (*s).to_owned()).collect(),
        policy,
        force_tcp: false,
        prefer_udp: false,
        max_concurrent: None,
    }
}

fn config(zones: &[&str], forwards: Vec<ForwardConfig>) -> ValidatedConfig {
    ServerConfig {
        zones: zones
            .iter()
            .map(|zone| ZoneConfig {
                name: (*zone).into(),
                source: "ns/z".into(),
                ttl_seconds: 60,
                records: vec![],
                allow_transfer: vec![],
            })
            .collect(),
        forward: forwards,
        ..Default::default()
    }
    .validate()
    .expect("valid")
}

fn qname(text: &str) -> crate::request::QName {
    crate::request::QName::from_ascii(text).expect("name")
}

#[test]
fn routes_prefer_local_stages_then_the_longest_domain() {
    let routes = Routes::new(&config(
        &["example.internal"],
        vec![
            forward(".", &["10.0.0.1:53"], ForwardPolicy::Random),
            forward("corp.example.com", &["10.0.0.2:53"], ForwardPolicy::Random),
            forward(
                "eu.corp.example.com",
                &["10.0.0.3:53"],
                ForwardPolicy::Random,
            ),
            // Inside a zone: the zone answers first, so this never gets a name.
            forward(
                "sub.example.internal",
                &["10.0.0.4:53"],
                ForwardPolicy::Random,
            ),
        ],
    ))
    .expect("routes");
    for (text, want) in [
        ("web.default.svc.cluster.local.", Route::Local),
        ("cluster.local.", Route::Local),
        ("x.sub.example.internal.", Route::Local),
        ("example.internal.", Route::Local),
        ("example.com.", Route::Forward(0)),
        (".", Route::Forward(0)),
        ("corp.example.com.", Route::Forward(1)),
        ("www.corp.example.com.", Route::Forward(1)),
        ("a.eu.corp.example.com.", Route::Forward(2)),
        ("notcorp.example.com.", Route::Forward(0)),
        ("WWW.Corp.Example.COM.", Route::Forward(1)),
        ("scluster.local.", Route::Forward(0)),
    ] {
        assert_eq!(routes.route(&qname(text)), want, "{text}");
    }
    let stub_only = Routes::new(&config(
        &[],
        vec![forward(
            "corp.example.com",
            &["10.0.0.2:53"],
            ForwardPolicy::Random,
        )],
    ))
    .expect("routes");
    assert_eq!(stub_only.route(&qname("example.org.")), Route::Nowhere);
}

fn reply_for(id: u16, key: &Key) -> Message {
    let mut message = Message::new(id, MessageType::Response, OpCode::Query);
    let mut query = Query::query(key.name.clone(), key.qtype);
    query.set_query_class(key.qclass);
    message.add_query(query);
    message
}

#[test]
fn replies_must_match_id_question_and_direction() {
    let key = key("www.example.org.", RecordType::A);
    let good = reply_for(7, &key).to_vec().expect("encodes");
    assert!(check_reply(&good, 7, &key).is_ok());
    let mut upper = reply_for(7, &key);
    upper.queries[0] = Query::query(name("WWW.Example.ORG."), RecordType::A);
    assert!(
        check_reply(&upper.to_vec().expect("encodes"), 7, &key).is_ok(),
        "case-insensitive question"
    );
    assert_eq!(check_reply(&good, 8, &key).err(), Some(RejectReason::Id));
    let other = reply_for(7, &super::tests::key("www.example.net.", RecordType::A));
    assert_eq!(
        check_reply(&other.to_vec().expect("encodes"), 7, &key).err(),
        Some(RejectReason::Question)
    );
    let aaaa = reply_for(7, &super::tests::key("www.example.org.", RecordType::AAAA));
    assert_eq!(
        check_reply(&aaaa.to_vec().expect("encodes"), 7, &key).err(),
        Some(RejectReason::Question)
    );
    let mut no_question = reply_for(7, &key);
    no_question.queries.clear();
    assert_eq!(
        check_reply(&no_question.to_vec().expect("encodes"), 7, &key).err(),
        Some(RejectReason::Question)
    );
    let query = encode_query(7, &key);
    assert_eq!(
        check_reply(&query, 7, &key).err(),
        Some(RejectReason::NotResponse),
        "our own query echoed back is not an answer"
    );
    let mut junk = good.clone();
    junk.truncate(20);
    assert_eq!(
        check_reply(&junk, 7, &key).err(),
        Some(RejectReason::Malformed)
    );
    assert_eq!(
        check_reply(&[0, 7], 7, &key).err(),
        Some(RejectReason::Malformed)
    );
}

#[test]
fn queries_carry_rd_edns_and_the_clients_do_and_cd() {
    let mut key = key("example.org.", RecordType::MX);
    key.dnssec_ok = true;
    key.checking_disabled = true;
    let message = Message::from_vec(&encode_query(0xbeef, &key)).expect("decodes");
    assert_eq!(message.metadata.id, 0xbeef);
    assert!(message.metadata.recursion_desired);
    assert!(message.metadata.checking_disabled);
    let edns = message.edns.expect("EDNS");
    assert!(edns.flags().dnssec_ok);
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(message.queries[0].query_type(), RecordType::MX);
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 60, data)
}

fn a(owner: &str, last: u8) -> Record {
    record(owner, RData::A(A(Ipv4Addr::new(192, 0, 2, last))))
}

fn soa(owner: &str) -> Record {
    record(
        owner,
        RData::SOA(SOA::new(
            name("ns.example."),
            name("hostmaster.example."),
            1,
            1,
            1,
            1,
            60,
        )),
    )
}

#[test]
fn only_the_chain_inside_the_bailiwick_is_kept() {
    let metrics = test_metrics();
    let key = key("www.corp.example.com.", RecordType::A);
    let mut message = reply_for(1, &key);
    message.answers = vec![
        // Out of order on purpose: the chain is followed whatever the order.
        a("app.corp.example.com.", 1),
        record(
            "www.corp.example.com.",
            RData::CNAME(CNAME(name("app.corp.example.com."))),
        ),
        // Not on the chain: an attempt to plant a record.
        a("bank.example.net.", 66),
        // On the chain's name but another type.
        record(
            "www.corp.example.com.",
            RData::MX(MX::new(10, name("mx.corp.example.com."))),
        ),
    ];
    message.authorities = vec![
        record(
            "corp.example.com.",
            RData::NS(NS(name("ns1.corp.example.com."))),
        ),
        record("example.net.", RData::NS(NS(name("ns.evil.example.")))),
    ];
    message.additionals = vec![a("ns1.corp.example.com.", 53), a("ns.evil.example.", 66)];
    let stub = Name::from_ascii("corp.example.com.").expect("name");
    let reply = bailiwick::sanitize(message.clone(), &key, &stub, metrics.forward());
    let kept: Vec<String> = reply.answers.iter().map(|r| r.to_string()).collect();
    assert_eq!(reply.answers.len(), 2, "{kept:?}");
    assert!(
        reply
            .answers
            .iter()
            .all(|r| r.name.to_ascii().ends_with("corp.example.com."))
    );
    assert_eq!(reply.authorities.len(), 1);
    assert_eq!(reply.additionals.len(), 1, "glue of the kept NS only");
    let text = metrics.encode();
    assert!(
        text.contains(r#"nameplane_forward_dropped_records_total{reason="out_of_chain"} 4"#),
        "{text}"
    );

    // The same chain leaving a stub domain stops at the CNAME that leaves it.
    let key = super::tests::key("www.corp.example.com.", RecordType::A);
    let mut leaving = reply_for(1, &key);
    leaving.answers = vec![
        record(
            "www.corp.example.com.",
            RData::CNAME(CNAME(name("www.cdn.example.net."))),
        ),
        a("www.cdn.example.net.", 7),
    ];
    let reply = bailiwick::sanitize(leaving.clone(), &key, &stub, metrics.forward());
    assert_eq!(reply.answers.len(), 1);
    assert!(
        metrics
            .encode()
            .contains(r#"nameplane_forward_dropped_records_total{reason="out_of_bailiwick"} 1"#)
    );
    // The upstreams of "." vouch for every name.
    let reply = bailiwick::sanitize(leaving, &key, &Name::root(), metrics.forward());
    assert_eq!(reply.answers.len(), 2);
}

#[test]
fn negative_replies_keep_the_soa_of_the_zone_above_the_name() {
    let metrics = test_metrics();
    let key = key("nope.example.org.", RecordType::A);
    let mut message = reply_for(1, &key);
    message.metadata.response_code = ResponseCode::NXDomain;
    message.authorities = vec![soa("example.org."), soa("example.net.")];
    let reply = bailiwick::sanitize(message, &key, &Name::root(), metrics.forward());
    assert_eq!(reply.rcode, ResponseCode::NXDomain);
    assert_eq!(reply.authorities.len(), 1);
    assert_eq!(reply.authorities[0].name.to_ascii(), "example.org.");
}

#[test]
fn policies_order_healthy_upstreams() {
    let metrics = test_metrics();
    let servers = ["10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"];
    let sequential =
        Forwarder::new(&forward(".", &servers, ForwardPolicy::Sequential)).expect("builds");
    assert_eq!(sequential.order(metrics.forward()), [0, 1, 2]);
    let round_robin =
        Forwarder::new(&forward(".", &servers, ForwardPolicy::RoundRobin)).expect("builds");
    let firsts: Vec<usize> = (0..6)
        .map(|_| round_robin.order(metrics.forward())[0])
        .collect();
    assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    let random = Forwarder::new(&forward(".", &servers, ForwardPolicy::Random)).expect("builds");
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let order = random.order(metrics.forward());
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "a permutation");
        seen.insert(order);
    }
    assert_eq!(seen.len(), 6, "every permutation shows up in 200 draws");
}

#[tokio::test]
async fn down_upstreams_go_last_and_one_is_tried_when_all_are_down() {
    let metrics = test_metrics();
    let servers = ["127.0.0.1:1", "127.0.0.1:2"];
    let forwarder =
        Forwarder::new(&forward(".", &servers, ForwardPolicy::Sequential)).expect("builds");
    let first = Arc::clone(&forwarder.upstreams()[0]);
    for _ in 0..upstream::MAX_FAILS {
        first.record_failure(metrics.forward());
    }
    assert!(!first.healthy());
    assert_eq!(forwarder.order(metrics.forward()), [1, 0]);
    let second = Arc::clone(&forwarder.upstreams()[1]);
    for _ in 0..upstream::MAX_FAILS {
        second.record_failure(metrics.forward());
    }
    assert!(forwarder.all_down());
    assert_eq!(forwarder.order(metrics.forward()), [0]);
    assert!(
        metrics
            .encode()
            .contains("coredns_forward_healthcheck_broken_total 1")
    );
    second.record_success();
    assert!(!forwarder.all_down());
}

#[test]
fn query_ids_and_source_ports_look_uniformly_random() {
    // Ports: 2000 sockets bound one after the other (each closed before the next, so a
    // kernel that hands out ports in sequence would show up as a run).
    let remote: SocketAddr = "127.0.0.1:53".parse().expect("addr");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let ports: Vec<u16> = runtime.block_on(async {
        (0..2000)
            .map(|_| {
                bind_random_port(remote)
                    .and_then(|s| s.local_addr())
                    .map(|a| a.port())
                    .expect("binds")
            })
            .collect()
    });
    assert!(ports.iter().all(|p| *p >= SOURCE_PORT_MIN));
    let distinct = ports.iter().collect::<HashSet<_>>().len();
    // 2000 draws from 64512 ports: about 31 collisions expected.
    assert!(distinct > 1900, "{distinct} distinct ports of 2000");
    let sequential = ports
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(sequential < 10, "{sequential} consecutive pairs");
    let entropy = shannon_bits(ports.iter().map(|p| p >> 10));
    // 63 buckets of 1024 ports: at most ~5.98 bits.
    assert!(
        entropy > 5.8,
        "port entropy {entropy:.2} bits over 63 buckets"
    );

    let ids: Vec<u16> = (0..2000).map(|_| rand::random::<u16>()).collect();
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    assert!(distinct > 1940, "{distinct} distinct ids of 2000");
    let entropy = shannon_bits(ids.iter().map(|id| id >> 10));
    assert!(
        entropy > 5.8,
        "id entropy {entropy:.2} bits over 64 buckets"
    );
}

/// Shannon entropy, in bits, of the values' empirical distribution.
fn shannon_bits(values: impl Iterator<Item = u16>) -> f64 {
    let mut counts = std::collections::HashMap::<u16, usize>::new();
    let mut total = 0usize;
    for value in values {
        *counts.entry(value).or_default() += 1;
        total += 1;
    }
    counts
        .values()
        .map(|&count| {
            let p = count as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

#[test]
fn a_reload_keeps_unchanged_forwarders_and_their_upstream_health() {
    let build = |forwards| {
        crate::pipeline::Pipeline::build(config(&[], forwards), "h".into()).expect("builds")
    };
    let forwarders = |pipeline: &crate::pipeline::Pipeline| -> Vec<Arc<Forwarder>> {
        pipeline
            .forward_stage()
            .map(|stage| stage.forwarders().to_vec())
            .expect("a forward stage")
    };
    let root = forward(".", &["10.0.0.1:53"], ForwardPolicy::Random);
    let corp = forward("corp.example.com", &["10.0.0.2:53"], ForwardPolicy::Random);
    let old = build(vec![root.clone(), corp.clone()]);
    let mut moved = corp.clone();
    moved.servers = vec!["10.0.0.3:53".into()];
    let mut new = build(vec![root, moved]);
    new.adopt(&old);
    let (old, new) = (forwarders(&old), forwarders(&new));
    assert!(
        Arc::ptr_eq(&old[0], &new[0]),
        "unchanged: the same upstreams carry on"
    );
    assert!(
        !Arc::ptr_eq(&old[1], &new[1]),
        "changed servers: a new forwarder"
    );
}
