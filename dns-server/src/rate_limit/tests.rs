//! The limiter on its own: rate, window, slip cadence, prefixes, answer classes, and the
//! bounded table.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

/// A response to `qname`/`qtype` with `rcode`, `answers` A records, and the zone's SOA in
/// the authority section when `zone` is given.
fn response(
    qname: &str,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: usize,
    zone: Option<&str>,
) -> Vec<u8> {
    let mut message = Message::new(7, MessageType::Response, OpCode::Query);
    message.metadata.response_code = rcode;
    message.queries.push(Query::query(name(qname), qtype));
    for i in 0..answers {
        message.answers.push(Record::from_rdata(
            name(qname),
            30,
            RData::A(Ipv4Addr::new(192, 0, 2, i as u8).into()),
        ));
    }
    if let Some(zone) = zone {
        message.authorities.push(Record::from_rdata(
            name(zone),
            30,
            RData::SOA(SOA::new(
                name(&format!("ns.{zone}")),
                name(&format!("hostmaster.{zone}")),
                1,
                7200,
                1800,
                86400,
                30,
            )),
        ));
    }
    message.to_vec().expect("encodes")
}

fn positive(qname: &str) -> Vec<u8> {
    response(qname, RecordType::A, ResponseCode::NoError, 1, None)
}

/// A limiter whose hash is not keyed at random: the same keys share slots in every run.
type Fixed = RateLimiter<std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;

fn fixed(settings: &RateLimitConfig, slots: usize) -> Fixed {
    RateLimiter::with(settings, slots, Default::default())
}

fn limiter(rate: u32, slip: u32, window: u32) -> Fixed {
    fixed(
        &RateLimitConfig {
            responses_per_second: rate,
            slip,
            window_seconds: window,
            ..RateLimitConfig::default()
        },
        TABLE_SLOTS,
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// The verdicts of `count` answers of `response` to `client` at second `now`.
fn verdicts<S: std::hash::BuildHasher>(
    l: &RateLimiter<S>,
    client: &str,
    response: &[u8],
    now: u64,
    count: usize,
) -> Vec<Verdict> {
    (0..count)
        .map(|_| l.check_at(ip(client), response, now))
        .collect()
}

fn sent(verdicts: &[Verdict]) -> usize {
    verdicts.iter().filter(|v| **v == Verdict::Send).count()
}

#[test]
fn a_bucket_gets_its_rate_each_second() {
    let l = limiter(20, 0, 1);
    let answer = positive("www.example.org.");
    let first = verdicts(&l, "192.0.2.1", &answer, 0, 50);
    assert_eq!(sent(&first), 20, "{first:?}");
    assert!(first[..20].iter().all(|v| *v == Verdict::Send));
    assert!(
        first[20..].iter().all(|v| *v == Verdict::Drop),
        "slip 0: never slipped"
    );
    // With a one-second window the next second refills the whole rate, no more.
    assert_eq!(sent(&verdicts(&l, "192.0.2.1", &answer, 1, 50)), 20);
    // Two idle seconds do not add up beyond one second's worth.
    assert_eq!(sent(&verdicts(&l, "192.0.2.1", &answer, 3, 50)), 20);
}

#[test]
fn a_flooding_prefix_stays_limited_for_the_window() {
    let l = limiter(20, 0, 15);
    let answer = positive("www.example.org.");
    assert_eq!(sent(&verdicts(&l, "192.0.2.1", &answer, 100, 1000)), 20);
    // While it keeps flooding, nothing goes out.
    for second in 101..105 {
        assert_eq!(
            sent(&verdicts(&l, "192.0.2.1", &answer, second, 100)),
            0,
            "second {second}"
        );
    }
    // It stops at second 104: still limited until the window has passed.
    assert_eq!(
        sent(&verdicts(&l, "192.0.2.1", &answer, 118, 1)),
        0,
        "14 s after the flood"
    );
    // 15 s after: answered again (the rate, less the answer of second 118, which counted).
    let after = verdicts(&l, "192.0.2.1", &answer, 119, 30);
    assert_eq!(after[0], Verdict::Send);
    assert_eq!(sent(&after), 19, "15 s after the flood");
}

#[test]
fn every_nth_limited_answer_slips() {
    let answer = positive("www.example.org.");
    let over = |slip| {
        let l = limiter(2, slip, 1);
        let v = verdicts(&l, "192.0.2.1", &answer, 0, 8);
        assert_eq!(&v[..2], &[Verdict::Send; 2]);
        v[2..].to_vec()
    };
    use Verdict::{Drop, Slip};
    assert_eq!(over(2), [Drop, Slip, Drop, Slip, Drop, Slip]);
    assert_eq!(over(3), [Drop, Drop, Slip, Drop, Drop, Slip]);
    assert_eq!(over(1), [Slip; 6]);
    assert_eq!(over(0), [Drop; 6]);
}

#[test]
fn clients_are_grouped_by_prefix() {
    let answer = positive("www.example.org.");
    let l = limiter(5, 0, 1);
    assert_eq!(sent(&verdicts(&l, "192.0.2.1", &answer, 0, 5)), 5);
    // Same /24: the bucket is spent; an IPv4-mapped IPv6 address is the IPv4 client.
    assert_eq!(sent(&verdicts(&l, "192.0.2.200", &answer, 0, 3)), 0);
    assert_eq!(sent(&verdicts(&l, "::ffff:192.0.2.9", &answer, 0, 3)), 0);
    // Another /24 has its own.
    assert_eq!(sent(&verdicts(&l, "192.0.3.1", &answer, 0, 10)), 5);
    // IPv6 by /56.
    assert_eq!(sent(&verdicts(&l, "2001:db8:0:1::1", &answer, 0, 5)), 5);
    assert_eq!(
        sent(&verdicts(&l, "2001:db8:0:ff::2", &answer, 0, 3)),
        0,
        "same /56"
    );
    assert_eq!(
        sent(&verdicts(&l, "2001:db8:0:100::1", &answer, 0, 10)),
        5,
        "next /56"
    );

    // Custom lengths: /32 and /128 limit single addresses.
    let exact = fixed(
        &RateLimitConfig {
            responses_per_second: 5,
            slip: 0,
            window_seconds: 1,
            ipv4_prefix_length: 32,
            ipv6_prefix_length: 128,
        },
        TABLE_SLOTS,
    );
    assert_eq!(sent(&verdicts(&exact, "192.0.2.1", &answer, 0, 10)), 5);
    assert_eq!(sent(&verdicts(&exact, "192.0.2.2", &answer, 0, 10)), 5);
    assert_eq!(sent(&verdicts(&exact, "2001:db8::1", &answer, 0, 10)), 5);
    assert_eq!(sent(&verdicts(&exact, "2001:db8::2", &answer, 0, 10)), 5);
}

#[test]
fn answers_are_grouped_by_class() {
    let l = limiter(3, 0, 1);
    let client = "192.0.2.1";
    // Positive answers: by name (case-insensitively) and type.
    assert_eq!(
        sent(&verdicts(&l, client, &positive("a.example.org."), 0, 5)),
        3
    );
    assert_eq!(
        sent(&verdicts(&l, client, &positive("A.Example.ORG."), 0, 5)),
        0
    );
    assert_eq!(
        sent(&verdicts(&l, client, &positive("b.example.org."), 0, 5)),
        3
    );
    let aaaa = response(
        "a.example.org.",
        RecordType::AAAA,
        ResponseCode::NoError,
        1,
        None,
    );
    assert_eq!(sent(&verdicts(&l, client, &aaaa, 0, 5)), 3);
    // NXDOMAIN: random names under one zone share the zone's bucket.
    let nx = |label: &str| {
        response(
            &format!("{label}.example.org."),
            RecordType::A,
            ResponseCode::NXDomain,
            0,
            Some("example.org."),
        )
    };
    let random: Vec<Verdict> = (0..10)
        .map(|i| l.check_at(ip(client), &nx(&format!("r{i}")), 0))
        .collect();
    assert_eq!(sent(&random), 3, "{random:?}");
    let other_zone = response(
        "x.example.net.",
        RecordType::A,
        ResponseCode::NXDomain,
        0,
        Some("example.net."),
    );
    assert_eq!(sent(&verdicts(&l, client, &other_zone, 0, 5)), 3);
    // NODATA by zone too, apart from NXDOMAIN.
    let nodata = |label: &str| {
        response(
            &format!("{label}.example.org."),
            RecordType::TXT,
            ResponseCode::NoError,
            0,
            Some("example.org."),
        )
    };
    let empty: Vec<Verdict> = (0..10)
        .map(|i| l.check_at(ip(client), &nodata(&format!("e{i}")), 0))
        .collect();
    assert_eq!(sent(&empty), 3);
    // A referral: by the delegated zone's NS owner.
    let referral = |label: &str| {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.queries.push(Query::query(
            name(&format!("{label}.sub.example.org.")),
            RecordType::A,
        ));
        message.authorities.push(Record::from_rdata(
            name("sub.example.org."),
            30,
            RData::NS(NS(name("ns.sub.example.org."))),
        ));
        message.to_vec().expect("encodes")
    };
    let referrals: Vec<Verdict> = (0..6)
        .map(|i| l.check_at(ip(client), &referral(&format!("d{i}")), 0))
        .collect();
    assert_eq!(sent(&referrals), 3);
    // Errors: every name in one bucket.
    let errors: Vec<Verdict> = [
        ResponseCode::ServFail,
        ResponseCode::Refused,
        ResponseCode::FormErr,
    ]
    .into_iter()
    .flat_map(|rcode| {
        (0..2).map(move |i| response(&format!("q{i}.example.com."), RecordType::A, rcode, 0, None))
    })
    .map(|r| l.check_at(ip(client), &r, 0))
    .collect();
    assert_eq!(sent(&errors), 3, "{errors:?}");
    // Garbage counts as an error, and never panics.
    assert_eq!(l.check_at(ip(client), &[1, 2, 3], 0), Verdict::Drop);
}

#[test]
fn the_table_is_fixed_and_old_buckets_are_recycled() {
    let l = RateLimiter::new(&RateLimitConfig::default());
    assert_eq!(l.slots.len(), TABLE_SLOTS);
    let answer = positive("www.example.org.");
    for i in 0..200_000u32 {
        let client = IpAddr::V4(Ipv4Addr::from(i << 8));
        l.check_at(client, &answer, 0);
    }
    assert_eq!(l.slots.len(), TABLE_SLOTS, "no bucket beyond the table");

    // One slot for everyone: a second key takes the first one's bucket over, and the
    // first starts full again when it comes back.
    let tiny = fixed(
        &RateLimitConfig {
            responses_per_second: 2,
            slip: 0,
            window_seconds: 15,
            ..RateLimitConfig::default()
        },
        1,
    );
    assert_eq!(sent(&verdicts(&tiny, "192.0.2.1", &answer, 0, 5)), 2);
    assert_eq!(
        sent(&verdicts(&tiny, "198.51.100.1", &answer, 0, 1)),
        1,
        "recycled"
    );
    assert_eq!(
        sent(&verdicts(&tiny, "192.0.2.1", &answer, 0, 5)),
        2,
        "starts full again"
    );
}

#[test]
fn a_bucket_word_round_trips() {
    for bucket in [
        Bucket {
            tag: 0,
            second: 0,
            balance: -3_000_000,
            over: 0,
        },
        Bucket {
            tag: u16::MAX,
            second: u16::MAX,
            balance: 10_000,
            over: 9,
        },
        Bucket {
            tag: 7,
            second: 1,
            balance: 0,
            over: 1,
        },
    ] {
        assert_ne!(bucket.pack(), 0);
        assert_eq!(Bucket::unpack(bucket.pack()), bucket);
    }
}

#[test]
fn a_slipped_answer_is_the_question_with_tc() {
    let full = response(
        "www.example.org.",
        RecordType::A,
        ResponseCode::NoError,
        3,
        Some("example.org."),
    );
    let mut out = b"prefix".to_vec();
    out.extend_from_slice(&full);
    slip(&mut out, 6);
    assert_eq!(&out[..6], b"prefix");
    let message = Message::from_vec(&out[6..]).expect("decodes");
    assert!(message.metadata.truncation);
    assert_eq!(message.metadata.id, 7);
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(message.queries.len(), 1);
    assert_eq!(message.queries[0].name(), &name("www.example.org."));
    assert!(
        message.answers.is_empty()
            && message.authorities.is_empty()
            && message.additionals.is_empty()
    );
    // Garbage is left alone.
    let mut junk = vec![1, 2, 3];
    slip(&mut junk, 0);
    assert_eq!(junk, [1, 2, 3]);
}
