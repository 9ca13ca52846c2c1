//! The zones stage through [`answer`]: query bytes in, decoded response checked.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};
use nameplane_config::{ServerConfig, ValidatedConfig};

use super::*;
use crate::pipeline::Pipeline;
use crate::pipeline::tests::Observed;
use crate::pipeline::tests::{answer_from, test_metrics};
use crate::request::tests::query_bytes;

fn record(name: &str, kind: RecordKind, values: &[&str]) -> RecordConfig {
    RecordConfig {
        name: name.into(),
        record_type: kind,
        ttl_seconds: 60,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

fn example_zone() -> ZoneConfig {
    use RecordKind::*;
    ZoneConfig {
        name: "example.internal".into(),
        source: "team/example".into(),
        ttl_seconds: 300,
        records: vec![
            record("example.internal", A, &["192.0.2.10"]),
            record("example.internal", MX, &["10 mail.example.internal."]),
            record("example.internal", TXT, &["owner=platform"]),
            record("example.internal", CAA, &["0 issue \"letsencrypt.org\""]),
            record("mail.example.internal", A, &["192.0.2.25"]),
            record("db.example.internal", AAAA, &["2001:db8::10"]),
            record("www.example.internal", CNAME, &["example.internal."]),
            record("alias.example.internal", CNAME, &["www.example.internal."]),
            record("ext.example.internal", CNAME, &["target.example.org."]),
            record(
                "loop1.example.internal",
                CNAME,
                &["loop2.example.internal."],
            ),
            record(
                "loop2.example.internal",
                CNAME,
                &["loop1.example.internal."],
            ),
            record("*.apps.example.internal", A, &["192.0.2.50"]),
            record(
                "star.example.internal",
                CNAME,
                &["x.apps.example.internal."],
            ),
            record("a.b.c.deep.example.internal", A, &["192.0.2.60"]),
            record(
                "_https._tcp.example.internal",
                SRV,
                &["10 5 443 mail.example.internal."],
            ),
            record("sub.example.internal", NS, &["ns1.sub.example.internal."]),
            record("ns1.sub.example.internal", A, &["192.0.2.53"]),
            record("inner.example.internal", A, &["192.0.2.70"]),
        ],
        allow_transfer: vec!["127.0.0.1/32".into(), "fd00::/8".into()],
    }
}

fn reverse_zone() -> ZoneConfig {
    ZoneConfig {
        name: "2.0.192.in-addr.arpa".into(),
        source: "team/reverse".into(),
        ttl_seconds: 120,
        records: vec![record(
            "10.2.0.192.in-addr.arpa",
            RecordKind::PTR,
            &["example.internal."],
        )],
        allow_transfer: vec![],
    }
}

fn nested_zone() -> ZoneConfig {
    ZoneConfig {
        name: "inner.example.internal".into(),
        source: "team/inner".into(),
        ttl_seconds: 30,
        records: vec![record(
            "inner.example.internal",
            RecordKind::A,
            &["192.0.2.99"],
        )],
        allow_transfer: vec![],
    }
}

fn config(zones: Vec<ZoneConfig>) -> ValidatedConfig {
    ServerConfig {
        server: "nameplane-system/cluster-dns".into(),
        zones,
        ..Default::default()
    }
    .validate()
    .expect("valid config")
}

fn pipeline() -> Pipeline {
    Pipeline::build(
        config(vec![example_zone(), reverse_zone(), nested_zone()]),
        "h".into(),
    )
    .expect("builds")
}

fn run(
    pipeline: &Pipeline,
    name: &str,
    qtype: RecordType,
    transport: Transport,
    client: &str,
) -> (Observed, Option<Vec<u8>>) {
    answer_from(
        &query_bytes(name, qtype, Some(1232)),
        transport,
        pipeline,
        client,
        &test_metrics(),
    )
}

fn ask(name: &str, qtype: RecordType) -> Message {
    let (outcome, response) = run(&pipeline(), name, qtype, Transport::Udp, "127.0.0.1:5000");
    assert_eq!(outcome.origin, Origin::Zones, "{name} {qtype}");
    Message::from_vec(&response.expect("a response")).expect("decodes")
}

fn data(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

fn owners(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.name.to_ascii()).collect()
}

fn assert_soa(message: &Message, apex: &str, minimum: u32) {
    assert_eq!(message.authorities.len(), 1, "{message}");
    let soa = &message.authorities[0];
    assert_eq!(soa.name.to_ascii(), apex);
    let RData::SOA(data) = &soa.data else {
        panic!("not a SOA: {soa}");
    };
    assert_eq!(data.minimum, minimum);
    assert_eq!(soa.ttl, minimum);
    assert_eq!(data.rname.to_ascii(), format!("hostmaster.{apex}"));
}

#[test]
fn answers_records_with_aa_and_the_queried_spelling() {
    let message = ask("ExAmple.Internal.", RecordType::A);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert!(message.metadata.authoritative);
    assert!(!message.metadata.recursion_available);
    assert_eq!(data(&message.answers), ["192.0.2.10"]);
    assert_eq!(owners(&message.answers), ["ExAmple.Internal."]);
    assert_eq!(message.answers[0].ttl, 60);

    let aaaa = ask("db.example.internal.", RecordType::AAAA);
    assert_eq!(data(&aaaa.answers), ["2001:db8::10"]);
    let txt = ask("example.internal.", RecordType::TXT);
    assert_eq!(data(&txt.answers), ["owner=platform"]);
    let ptr = ask("10.2.0.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&ptr.answers), ["example.internal."]);
    let caa = ask("example.internal.", RecordType::CAA);
    assert_eq!(caa.answers.len(), 1);
    let RData::CAA(value) = &caa.answers[0].data else {
        panic!("not CAA: {caa}");
    };
    assert_eq!(value.tag, "issue");
    assert_eq!(value.value, b"letsencrypt.org");
}

#[test]
fn mx_and_srv_bring_in_zone_target_addresses() {
    let mx = ask("example.internal.", RecordType::MX);
    assert_eq!(data(&mx.answers), ["10 mail.example.internal."]);
    assert_eq!(owners(&mx.additionals), ["mail.example.internal."]);
    let srv = ask("_https._tcp.example.internal.", RecordType::SRV);
    assert_eq!(data(&srv.answers), ["10 5 443 mail.example.internal."]);
    assert_eq!(data(&srv.additionals), ["192.0.2.25"]);
}

#[test]
fn cnames_are_chased_inside_the_zone_only() {
    let alias = ask("Alias.example.internal.", RecordType::A);
    assert_eq!(alias.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        owners(&alias.answers),
        [
            "Alias.example.internal.",
            "www.example.internal.",
            "example.internal."
        ]
    );
    assert_eq!(
        data(&alias.answers),
        ["www.example.internal.", "example.internal.", "192.0.2.10"]
    );

    // Asking for the CNAME itself does not chase.
    let cname = ask("www.example.internal.", RecordType::CNAME);
    assert_eq!(data(&cname.answers), ["example.internal."]);

    // Out of the zone: the CNAME alone, the client's resolver goes on.
    let ext = ask("ext.example.internal.", RecordType::A);
    assert_eq!(ext.metadata.response_code, ResponseCode::NoError);
    assert_eq!(data(&ext.answers), ["target.example.org."]);

    // A loop ends instead of spinning.
    let looped = ask("loop1.example.internal.", RecordType::A);
    assert_eq!(looped.answers.len(), 2, "{looped}");

    // Into a wildcard.
    let star = ask("star.example.internal.", RecordType::A);
    assert_eq!(
        data(&star.answers),
        ["x.apps.example.internal.", "192.0.2.50"]
    );
    assert_eq!(owners(&star.answers)[1], "x.apps.example.internal.");

    // A chain ending at a name with no such type: NODATA after the CNAME, with the SOA.
    let nodata = ask("www.example.internal.", RecordType::AAAA);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert_eq!(data(&nodata.answers), ["example.internal."]);
    assert_soa(&nodata, "example.internal.", 300);
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let missing = ask("nope.example.internal.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.metadata.authoritative);
    assert!(missing.answers.is_empty());
    assert_soa(&missing, "example.internal.", 300);

    for (name, qtype) in [
        ("mail.example.internal.", RecordType::AAAA),
        ("example.internal.", RecordType::SRV),
        // Empty non-terminals exist: NODATA, never NXDOMAIN (RFC 8020).
        ("c.deep.example.internal.", RecordType::A),
        ("deep.example.internal.", RecordType::TXT),
        ("_tcp.example.internal.", RecordType::SRV),
        ("apps.example.internal.", RecordType::A),
    ] {
        let message = ask(name, qtype);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(message.answers.is_empty(), "{name} {qtype}");
        assert_soa(&message, "example.internal.", 300);
    }
    let reverse = ask("11.2.0.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(reverse.metadata.response_code, ResponseCode::NXDomain);
    assert_soa(&reverse, "2.0.192.in-addr.arpa.", 120);
}

#[test]
fn wildcards_synthesise_for_missing_names_only() {
    for name in ["x.apps.example.internal.", "Y.Z.apps.example.internal."] {
        let message = ask(name, RecordType::A);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(message.metadata.authoritative);
        assert_eq!(data(&message.answers), ["192.0.2.50"], "{name}");
        assert_eq!(owners(&message.answers), [name], "owner is the query name");
    }
    let other_type = ask("x.apps.example.internal.", RecordType::TXT);
    assert_eq!(other_type.metadata.response_code, ResponseCode::NoError);
    assert!(other_type.answers.is_empty());
    // Below an existing name that is not the wildcard's parent: no match.
    let below = ask("x.mail.example.internal.", RecordType::A);
    assert_eq!(below.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn delegations_refer_with_glue() {
    for (name, qtype) in [
        ("host.sub.example.internal.", RecordType::A),
        ("sub.example.internal.", RecordType::NS),
        ("sub.example.internal.", RecordType::A),
        ("ns1.sub.example.internal.", RecordType::A),
    ] {
        let message = ask(name, qtype);
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(
            !message.metadata.authoritative,
            "{name}: a referral is not AA"
        );
        assert!(message.answers.is_empty(), "{name}");
        assert_eq!(data(&message.authorities), ["ns1.sub.example.internal."]);
        assert_eq!(owners(&message.authorities), ["sub.example.internal."]);
        assert_eq!(data(&message.additionals), ["192.0.2.53"], "glue");
    }
    let ds = ask("sub.example.internal.", RecordType::DS);
    assert!(ds.metadata.authoritative);
    assert_soa(&ds, "example.internal.", 300);
}

#[test]
fn apex_has_generated_soa_and_ns() {
    let soa = ask("example.internal.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    let RData::SOA(data) = &soa.answers[0].data else {
        panic!("not a SOA");
    };
    assert_eq!(
        data.mname.to_ascii(),
        "cluster-dns.nameplane-system.svc.cluster.local."
    );
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (7200, 1800, 86400, 300)
    );
    let ns = ask("example.internal.", RecordType::NS);
    assert_eq!(
        self::data(&ns.answers),
        ["cluster-dns.nameplane-system.svc.cluster.local."]
    );
    assert!(
        ns.additionals.is_empty(),
        "the NS is answered by the kubernetes stage"
    );
}

#[test]
fn any_gets_one_record_set_rfc_8482() {
    let types = |name| {
        ask(name, RecordType::ANY)
            .answers
            .iter()
            .map(|r| r.record_type().to_string())
            .collect::<Vec<_>>()
    };
    // The apex has six sets (A, CAA, MX, NS, SOA, TXT): only the SOA comes back.
    assert_eq!(types("example.internal."), ["SOA"]);
    assert_eq!(types("mail.example.internal."), ["A"]);
    assert_eq!(types("www.example.internal."), ["CNAME"]);
    let any = ask("example.internal.", RecordType::ANY);
    assert!(any.metadata.authoritative);
    assert_eq!(any.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn the_longest_zone_wins_and_other_names_are_not_ours() {
    let inner = ask("inner.example.internal.", RecordType::A);
    assert_eq!(data(&inner.answers), ["192.0.2.99"]);
    assert_soa_owner(
        &ask("x.inner.example.internal.", RecordType::A),
        "inner.example.internal.",
    );

    let (outside, _) = run(
        &pipeline(),
        "example.org.",
        RecordType::A,
        Transport::Udp,
        "127.0.0.1:5000",
    );
    assert_eq!(outside.origin, Origin::Server);
    assert_eq!(outside.rcode, ResponseCode::Refused);
}

fn assert_soa_owner(message: &Message, apex: &str) {
    assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(owners(&message.authorities), [apex]);
}

fn transfer(
    name: &str,
    qtype: RecordType,
    transport: Transport,
    client: &str,
) -> (Observed, Option<Vec<u8>>) {
    run(&pipeline(), name, qtype, transport, client)
}

#[test]
fn axfr_goes_to_allowed_clients_over_tcp_only() {
    let (outcome, response) = transfer(
        "example.internal.",
        RecordType::AXFR,
        Transport::Tcp,
        "127.0.0.1:5000",
    );
    assert_eq!(outcome.rcode, ResponseCode::NoError);
    let first = Message::from_vec(&response.expect("first")).expect("decodes");
    assert!(first.metadata.authoritative);
    assert_eq!(first.queries.len(), 1);
    let mut records = first.answers.clone();
    for more in &outcome.more {
        records.extend(Message::from_vec(more).expect("decodes").answers);
    }
    assert_eq!(
        records.first().map(Record::record_type),
        Some(RecordType::SOA)
    );
    assert_eq!(
        records.last().map(Record::record_type),
        Some(RecordType::SOA)
    );
    // 18 record sets with one value each, the generated NS, and the SOA twice.
    assert_eq!(records.len(), 18 + 1 + 2, "{records:#?}");
    assert!(
        records
            .iter()
            .any(|r| r.name.to_ascii() == "ns1.sub.example.internal."),
        "glue is part of the zone"
    );

    let (ixfr, _) = transfer(
        "example.internal.",
        RecordType::IXFR,
        Transport::Tcp,
        "[fd00::5]:5000",
    );
    assert_eq!(ixfr.rcode, ResponseCode::NoError, "IXFR answered as AXFR");

    for (name, transport, client, why) in [
        (
            "example.internal.",
            Transport::Tcp,
            "127.0.0.2:5000",
            "client not allowed",
        ),
        (
            "example.internal.",
            Transport::Udp,
            "127.0.0.1:5000",
            "over UDP",
        ),
        (
            "www.example.internal.",
            Transport::Tcp,
            "127.0.0.1:5000",
            "not the apex",
        ),
        (
            "2.0.192.in-addr.arpa.",
            Transport::Tcp,
            "127.0.0.1:5000",
            "no allow-list",
        ),
    ] {
        let (outcome, _) = transfer(name, RecordType::AXFR, transport, client);
        assert_eq!(outcome.rcode, ResponseCode::Refused, "{why}");
        assert!(outcome.more.is_empty(), "{why}");
    }
}

#[test]
fn large_transfers_span_several_messages() {
    let mut zone = ZoneConfig {
        name: "big.internal".into(),
        source: "a/b".into(),
        ttl_seconds: 60,
        records: Vec::new(),
        allow_transfer: vec!["0.0.0.0/0".into()],
    };
    for i in 0..250u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + i).to_string();
        zone.records.push(record(
            &format!("host-{i}.big.internal"),
            RecordKind::A,
            &[ip.as_str()],
        ));
    }
    let pipeline = Pipeline::build(config(vec![zone]), "h".into()).expect("builds");
    let (outcome, response) = run(
        &pipeline,
        "big.internal.",
        RecordType::AXFR,
        Transport::Tcp,
        "192.0.2.1:5000",
    );
    let mut messages = vec![response.expect("first")];
    messages.extend(outcome.more);
    assert_eq!(messages.len(), 3, "250 + NS + 2 SOA in messages of 100");
    let total: usize = messages
        .iter()
        .map(|m| Message::from_vec(m).expect("decodes").answers.len())
        .sum();
    assert_eq!(total, 250 + 1 + 2);
    let later = Message::from_vec(&messages[1]).expect("decodes");
    assert!(
        later.queries.is_empty(),
        "only the first message echoes the question"
    );
    assert_eq!(later.metadata.id, 0x1234);
}

#[test]
fn serials_survive_unchanged_reloads_and_grow_on_change() {
    let apex = Name::from_ascii("example.internal.").expect("name");
    let build = |zone: ZoneConfig, now| ZonesStage::new(&config(vec![zone]), now).expect("builds");
    let first = build(example_zone(), 1_000);
    assert_eq!(first.zone(&apex).expect("zone").serial(), 1_000);

    let mut same = build(example_zone(), 2_000);
    same.adopt(&first);
    assert_eq!(same.zone(&apex).expect("zone").serial(), 1_000, "unchanged");

    let mut changed_zone = example_zone();
    changed_zone.records[0].values = vec!["192.0.2.11".into()];
    // A change within the same second still bumps the serial.
    let mut changed = build(changed_zone.clone(), 1_000);
    changed.adopt(&same);
    assert_eq!(changed.zone(&apex).expect("zone").serial(), 1_001);
    // Later, the clock wins.
    let mut later_zone = changed_zone;
    later_zone.ttl_seconds = 301;
    let mut later = build(later_zone, 5_000);
    later.adopt(&changed);
    let zone = later.zone(&apex).expect("zone");
    assert_eq!(zone.serial(), 5_000);
    let RData::SOA(soa) = &zone.soa.data else {
        panic!("not a SOA");
    };
    assert_eq!(soa.serial, 5_000, "the SOA record follows the serial");
}
