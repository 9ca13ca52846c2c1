//! The fixture is rich enough for its properties to mean something, the seed corpora and
//! every crash the fuzzers found pass the checks, and the seeds are written from here
//! (`cargo test -p nameplane-dns --lib write_seed_corpora -- --ignored`).

use std::path::{Path, PathBuf};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::wire::answer::Origin;

/// The `fuzz/` directory of the repository.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `fuzz/<dir>/<target>/`.
fn inputs(dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    files.sort();
    files
}

fn n(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

/// The queries of the answer seed corpus: every path of the fixture.
fn answer_seeds() -> Vec<(String, AnswerCase)> {
    use RecordType::*;
    let asks: &[(&str, RecordType)] = &[
        ("web.default.svc.cluster.local.", A),
        ("Web.Default.SVC.cluster.local.", AAAA),
        ("web.default.svc.cluster.local.", ANY),
        ("_http._tcp.web.default.svc.cluster.local.", SRV),
        ("db.default.svc.cluster.local.", A),
        ("db-0.db.default.svc.cluster.local.", A),
        ("10.0.96.10.in-addr.arpa.", PTR),
        ("ext.default.svc.cluster.local.", A),
        ("ext-secret.default.svc.cluster.local.", A),
        ("api.other.svc.cluster.local.", A),
        ("api.other.default.svc.cluster.local.", A),
        ("nothing.default.svc.cluster.local.", A),
        ("10-244-0-6.default.pod.cluster.local.", A),
        ("example.internal.", ANY),
        ("example.internal.", MX),
        ("www.example.internal.", A),
        ("leak.example.internal.", A),
        ("out.example.internal.", A),
        ("x.apps.example.internal.", A),
        ("host.sub.example.internal.", A),
        ("_https._tcp.example.internal.", SRV),
        ("10.2.0.192.in-addr.arpa.", PTR),
        ("mystore.com.", A),
        ("web.corp.", A),
        ("api.internal.", A),
        ("example.com.", A),
        ("www.example.com.", A),
        ("evil.example.com.", A),
        ("big.example.com.", TXT),
        ("nx.example.com.", A),
        ("corp.example.", MX),
        ("nothing.example.org.", A),
    ];
    let mut seeds = Vec::new();
    for (i, (name, qtype)) in asks.iter().enumerate() {
        let edns = [None, Some(1232), Some(4096), Some(512)][i % 4];
        seeds.push((
            format!("{:02}-{}-{qtype}", i, name.trim_end_matches('.')),
            AnswerCase {
                transport: if i % 3 == 2 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                client: [1, 0, 3, 2, 1, 4, 0, 5][i % 8],
                max_udp: MAX_UDP_CHOICES[i % MAX_UDP_CHOICES.len()],
                packet: query(i as u16, &n(name), *qtype, edns, i % 5 == 0),
            },
        ));
    }
    // Transfers: from the restricted Pod and the free one, over both transports.
    for (client, transport) in [
        (0, Transport::Udp),
        (0, Transport::Tcp),
        (1, Transport::Udp),
        (1, Transport::Tcp),
        (3, Transport::Udp),
    ] {
        for qtype in [AXFR, IXFR] {
            seeds.push((
                format!("axfr-{client}-{}-{qtype}", transport.label()),
                AnswerCase {
                    transport,
                    client,
                    max_udp: 1232,
                    packet: query(0xaf, &n("example.internal."), qtype, Some(4096), false),
                },
            ));
        }
    }
    // Malformed: a header, a cut question, an opcode other than QUERY.
    let base = query(1, &n("web.default.svc.cluster.local."), A, None, false);
    let mut notify = base.clone();
    notify[2] |= 4 << 3;
    for (name, packet) in [
        ("header-only", base[..12].to_vec()),
        ("cut-question", base[..20].to_vec()),
        ("notify", notify),
    ] {
        seeds.push((
            format!("malformed-{name}"),
            AnswerCase {
                transport: Transport::Udp,
                client: 1,
                max_udp: 1232,
                packet,
            },
        ));
    }
    seeds
}

/// Replies of the upstream seed corpus: for each question, one with in-chain,
/// out-of-chain and out-of-bailiwick records.
fn upstream_seeds() -> Vec<(String, UpstreamCase)> {
    let mut seeds = Vec::new();
    for (i, (qname, qtype, domain)) in UPSTREAM_QUESTIONS.iter().enumerate() {
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.add_query(Query::query(n(qname), *qtype));
        let target = if *domain == "." {
            "target.example.com."
        } else {
            "target.corp.example."
        };
        let a =
            |owner: &str, last| Record::from_rdata(n(owner), 60, RData::A(A::new(192, 0, 2, last)));
        let answers = match *qtype {
            RecordType::A | RecordType::AAAA | RecordType::ANY => vec![
                Record::from_rdata(n(qname), 60, RData::CNAME(CNAME(n(target)))),
                a(target, 1),
                a("bank.example.", 66),
            ],
            RecordType::MX => vec![Record::from_rdata(
                n(qname),
                60,
                RData::MX(hickory_proto::rr::rdata::MX::new(10, n(target))),
            )],
            RecordType::SRV => vec![Record::from_rdata(
                n(qname),
                60,
                RData::SRV(SRV::new(0, 5, 389, n(target))),
            )],
            _ => vec![Record::from_rdata(
                n(qname),
                60,
                RData::CNAME(CNAME(n("out.example.org."))),
            )],
        };
        m.answers = answers;
        let apex = if *domain == "." {
            "example.com."
        } else {
            "corp.example."
        };
        m.authorities = vec![
            Record::from_rdata(n(apex), 60, RData::NS(NS(n(&format!("ns.{apex}"))))),
            Record::from_rdata(n("example."), 60, RData::NS(NS(n("ns.evil.example.")))),
        ];
        m.additionals = vec![
            a(target, 2),
            a(&format!("ns.{apex}"), 53),
            a("ns.evil.example.", 6),
        ];
        let bytes = m.to_vec().expect("encodes");
        let flags = (i as u8) | (((i % 4) as u8) << 4) | (((i % 4) as u8) << 6);
        let mut data = vec![flags];
        data.extend_from_slice(&bytes);
        seeds.push((
            format!("{i}-{}-{qtype}", qname.trim_end_matches('.')),
            UpstreamCase::from_bytes(&data),
        ));
        // The same question, NXDOMAIN with a SOA.
        let mut nx = Message::new(0x4321, MessageType::Response, OpCode::Query);
        nx.metadata.response_code = ResponseCode::NXDomain;
        nx.add_query(Query::query(n(qname), *qtype));
        nx.authorities = vec![Record::from_rdata(
            n(apex),
            60,
            RData::SOA(SOA::new(
                n(&format!("ns.{apex}")),
                n(&format!("hostmaster.{apex}")),
                1,
                2,
                3,
                4,
                30,
            )),
        )];
        let mut data = vec![flags];
        data.extend_from_slice(&nx.to_vec().expect("encodes"));
        seeds.push((
            format!("{i}-{}-nxdomain", qname.trim_end_matches('.')),
            UpstreamCase::from_bytes(&data),
        ));
    }
    seeds
}

fn upstream_bytes(case: &UpstreamCase) -> Vec<u8> {
    let edns = [None, Some(512), Some(1232), Some(4096)]
        .iter()
        .position(|e| *e == case.edns)
        .unwrap_or(0) as u8;
    let flags = (case.question as u8 & 0x07)
        | (u8::from(case.dnssec_ok) << 3)
        | (edns << 4)
        | ((case.client as u8 & 0x03) << 6);
    let mut out = vec![flags];
    out.extend_from_slice(&case.reply);
    out
}

/// Writes the seed corpora of the three targets into `fuzz/corpus/` (run by hand after a
/// fixture change; the files are committed).
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpora() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write");
    };
    for (name, case) in answer_seeds() {
        write("answer", &name, &case.to_bytes());
    }
    for (name, case) in upstream_seeds() {
        write("upstream_reply", &name, &upstream_bytes(&case));
    }
    write("config", "fixture.json", fixture_config().as_bytes());
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/golden");
    for entry in std::fs::read_dir(golden).expect("golden files").flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".output.json") {
            write("config", &file, &std::fs::read(entry.path()).expect("read"));
        }
    }
}

#[test]
fn the_seeds_walk_every_path_of_the_fixture() {
    let fixture = AnswerFixture::new().expect("fixture builds");
    let mut origins = std::collections::BTreeSet::new();
    let (mut truncated, mut transfers, mut pending, mut denied, mut cname_walks) = (0, 0, 0, 0, 0);
    for (name, case) in answer_seeds() {
        fixture
            .check(&case)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut out = Vec::new();
        let (address, _) = CLIENTS[case.client];
        let outcome = crate::pipeline::tests::answer(
            &case.packet,
            case.transport,
            Some(&fixture.pipeline),
            &Sources {
                cluster: &fixture.cluster,
                client: SocketAddr::new(ip(address), 40000),
                metrics: &fixture.metrics,
            },
            &Settings {
                max_udp_payload: case.max_udp,
                ..Settings::default()
            },
            &mut out,
        );
        origins.insert(format!("{:?}", outcome.origin));
        truncated += usize::from(outcome.truncated);
        transfers += usize::from(!outcome.more.is_empty());
        pending += usize::from(outcome.pending.is_some());
        denied += usize::from(matches!(
            outcome.rcode,
            ResponseCode::NXDomain | ResponseCode::Refused
        ));
        if let Ok(m) = Message::from_vec(&out) {
            cname_walks += usize::from(
                m.answers
                    .iter()
                    .any(|r| r.record_type() == RecordType::CNAME),
            );
        }
    }
    for origin in [
        Origin::Kubernetes,
        Origin::Cache,
        Origin::Zones,
        Origin::Forward,
        Origin::Server,
    ] {
        assert!(
            origins.contains(&format!("{origin:?}")),
            "{origin:?} never answered: {origins:?}"
        );
    }
    assert!(truncated > 0, "no answer was truncated");
    assert!(transfers > 0, "no transfer over TCP");
    assert!(pending > 0, "nothing was forwarded");
    assert!(denied > 0, "nothing was denied");
    assert!(cname_walks > 0, "no CNAME in any answer");
}

#[test]
fn the_properties_catch_what_they_are_about() {
    let web = CLIENTS[0].1;
    assert!(web.may_see(&n("web.default.svc.cluster.local.")));
    assert!(web.may_see(&n("mail.example.internal.")));
    assert!(
        !web.may_see(&n("secret.example.internal.")),
        "the deny rule comes first"
    );
    assert!(
        !web.may_see(&n("api.other.svc.cluster.local.")),
        "default deny"
    );
    assert!(web.may_see(&n("mystore.com.")));
    assert!(!Allowed::Nothing.may_see(&n("example.com.")));
    let srv = Record::from_rdata(n("a.b."), 1, RData::SRV(SRV::new(0, 0, 1, n("t.b."))));
    assert_eq!(names_of(&srv), [&n("a.b."), &n("t.b.")]);
    // A response that is not one: the check says so rather than passing.
    let fixture = AnswerFixture::new().expect("fixture builds");
    let reply_as_query = AnswerCase {
        transport: Transport::Udp,
        client: 1,
        max_udp: 1232,
        packet: {
            let mut p = query(1, &n("example.com."), RecordType::A, None, false);
            p[2] |= 0x80;
            p
        },
    };
    assert_eq!(
        fixture.check(&reply_as_query),
        Ok(()),
        "dropped, nothing to check"
    );
}

#[test]
fn the_committed_corpora_and_regressions_pass() {
    let fixture = AnswerFixture::new().expect("fixture builds");
    let config = ValidatedConfig::from_json(&fixture_config()).expect("fixture config");
    let cluster = fixture_cluster();
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        for (name, bytes) in inputs(dir, "answer") {
            fixture
                .check(&AnswerCase::from_bytes(&bytes))
                .unwrap_or_else(|e| panic!("{dir}/answer/{name}: {e}"));
            count += 1;
        }
        for (name, bytes) in inputs(dir, "upstream_reply") {
            check_upstream(&config, &cluster, &UpstreamCase::from_bytes(&bytes))
                .unwrap_or_else(|e| panic!("{dir}/upstream_reply/{name}: {e}"));
            count += 1;
        }
        for (name, bytes) in inputs(dir, "config") {
            check_config(&bytes).unwrap_or_else(|e| panic!("{dir}/config/{name}: {e}"));
            count += 1;
        }
    }
    assert!(
        count >= 40,
        "only {count} committed inputs found under fuzz/"
    );
}

#[test]
fn the_seed_layouts_round_trip() {
    for (_, case) in answer_seeds() {
        assert_eq!(AnswerCase::from_bytes(&case.to_bytes()), case);
    }
    for (_, case) in upstream_seeds() {
        assert_eq!(UpstreamCase::from_bytes(&upstream_bytes(&case)), case);
    }
    assert!(check_config(fixture_config().as_bytes()).is_ok());
}
