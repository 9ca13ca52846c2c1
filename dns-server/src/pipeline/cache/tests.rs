//! The cache with a clock under the test's control, and the cache stage in a pipeline.

use std::net::Ipv4Addr;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use nameplane_config::forward::ForwardConfig;
use nameplane_config::zone::ZoneConfig;
use nameplane_config::{ServerConfig, ValidatedConfig};

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nameplane_config::forward::CacheConfig;

use crate::answer_cache::*;
use crate::pipeline::Pipeline;
use crate::pipeline::tests::{answer_from, test_metrics};
use crate::reply::{Key, Reply};
use crate::request::SizeLimit;
use crate::request::Transport;
use crate::request::tests::query_bytes;
use crate::wire;

fn settings() -> CacheConfig {
    CacheConfig {
        capacity: 100,
        max_ttl_seconds: 3600,
        min_ttl_seconds: 0,
        denial_ttl_seconds: 600,
        denial_capacity: None,
        serve_stale_seconds: 0,
        prefetch: None,
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

fn key(text: &str) -> Key {
    Key {
        name: name(text),
        qtype: RecordType::A,
        qclass: DNSClass::IN,
        dnssec_ok: false,
        checking_disabled: false,
        partition: 0,
    }
}

fn a(owner: &str, ttl: u32, last: u8) -> Record {
    Record::from_rdata(
        name(owner),
        ttl,
        RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
    )
}

fn soa(ttl: u32, minimum: u32) -> Record {
    Record::from_rdata(
        name("example.org."),
        ttl,
        RData::SOA(SOA::new(
            name("ns.example.org."),
            name("hostmaster.example.org."),
            1,
            7200,
            1800,
            86400,
            minimum,
        )),
    )
}

fn positive(answers: Vec<Record>) -> Arc<Reply> {
    Arc::new(Reply {
        rcode: ResponseCode::NoError,
        truncated: false,
        answers,
        authorities: Vec::new(),
        additionals: Vec::new(),
    })
}

fn negative(rcode: ResponseCode, authorities: Vec<Record>) -> Arc<Reply> {
    Arc::new(Reply {
        rcode,
        truncated: false,
        answers: Vec::new(),
        authorities,
        additionals: Vec::new(),
    })
}

#[test]
fn classifies_and_clamps_ttls() {
    let mut s = settings();
    s.min_ttl_seconds = 5;
    s.max_ttl_seconds = 100;
    s.denial_ttl_seconds = 30;
    let cache = Cache::new(&s);
    let secs = |n| Some(Duration::from_secs(n));
    let cname = Record::from_rdata(
        name("www.example.org."),
        3600,
        RData::CNAME(CNAME(name("example.org."))),
    );
    assert_eq!(
        cache
            .classify(&positive(vec![cname, a("example.org.", 60, 1)]))
            .map(|c| c.1),
        secs(60),
        "the smallest TTL of the answer"
    );
    assert_eq!(
        cache.classify(&positive(vec![a("x.", 1, 1)])),
        Some((Kind::Success, Duration::from_secs(5))),
        "raised to the minimum"
    );
    assert_eq!(
        cache
            .classify(&positive(vec![a("x.", 86_400, 1)]))
            .map(|c| c.1),
        secs(100),
        "capped at the maximum"
    );
    assert_eq!(
        cache.classify(&negative(ResponseCode::NXDomain, vec![soa(3600, 20)])),
        Some((Kind::Denial, Duration::from_secs(20))),
        "SOA minimum (RFC 2308)"
    );
    assert_eq!(
        cache
            .classify(&negative(ResponseCode::NoError, vec![soa(10, 900)]))
            .map(|c| c.1),
        secs(10),
        "NODATA: min(SOA TTL, minimum)"
    );
    assert_eq!(
        cache
            .classify(&negative(ResponseCode::NXDomain, vec![soa(900, 900)]))
            .map(|c| c.1),
        secs(30),
        "capped at the denial TTL"
    );
    assert_eq!(
        cache.classify(&negative(ResponseCode::NXDomain, vec![])),
        None,
        "no SOA, no negative caching"
    );
    assert_eq!(
        cache.classify(&negative(ResponseCode::ServFail, vec![soa(60, 60)])),
        None
    );
    let mut truncated = (*positive(vec![a("x.", 60, 1)])).clone();
    truncated.truncated = true;
    assert_eq!(cache.classify(&truncated), None);

    let mut zero = settings();
    zero.max_ttl_seconds = 0;
    assert_eq!(
        Cache::new(&zero).classify(&positive(vec![a("x.", 60, 1)])),
        None,
        "maxTtl 0 caches nothing"
    );
}

#[test]
fn ttls_count_down_until_the_entry_expires() {
    let cache = Cache::new(&settings());
    let metrics = test_metrics();
    let t0 = Instant::now();
    cache.insert(
        key("example.org."),
        positive(vec![a("example.org.", 60, 1)]),
        t0,
        metrics.cache(),
    );
    let ttl_at = |secs: f64| {
        cache
            .fresh(&key("EXAMPLE.org."), t0 + Duration::from_secs_f64(secs))
            .map(|hit| hit.ttl)
    };
    assert_eq!(ttl_at(0.0), Some(60));
    assert_eq!(ttl_at(10.0), Some(50));
    assert_eq!(ttl_at(10.5), Some(50), "rounded up");
    assert_eq!(ttl_at(59.5), Some(1), "never 0 while fresh");
    assert_eq!(ttl_at(60.0), None);
    assert_eq!(
        cache
            .stale(&key("example.org."), t0 + Duration::from_secs(61))
            .map(|h| h.ttl),
        None,
        "serve-stale off"
    );

    let hit = cache
        .fresh(&key("example.org."), t0 + Duration::from_secs(15))
        .expect("hit");
    let packet = query_bytes("Example.ORG.", RecordType::A, None);
    let request = crate::request::parse(&packet, Transport::Udp).expect("parses");
    let mut out = Vec::new();
    crate::wire::reply::encode(
        &request,
        &hit.reply_for(),
        crate::wire::answer::Origin::Cache,
        SizeLimit::of(&request, 1232),
        &mut out,
    );
    let answer = Message::from_vec(&out).expect("decodes");
    assert_eq!(answer.answers[0].ttl, 45);
    assert_eq!(answer.answers[0].name.to_ascii(), "Example.ORG.");
    assert!(answer.metadata.recursion_available && !answer.metadata.authoritative);
}

#[test]
fn stale_entries_serve_only_inside_their_window() {
    let mut s = settings();
    s.serve_stale_seconds = 30;
    let cache = Cache::new(&s);
    let metrics = test_metrics();
    let t0 = Instant::now();
    cache.insert(
        key("example.org."),
        positive(vec![a("example.org.", 10, 1)]),
        t0,
        metrics.cache(),
    );
    let at = |secs| t0 + Duration::from_secs(secs);
    assert!(cache.fresh(&key("example.org."), at(5)).is_some());
    assert!(
        cache.fresh(&key("example.org."), at(11)).is_none(),
        "expired: not fresh"
    );
    let stale = cache.stale(&key("example.org."), at(11)).expect("stale");
    assert_eq!(stale.ttl, STALE_TTL);
    assert!(
        cache.stale(&key("example.org."), at(39)).is_some(),
        "10 + 30 s"
    );
    assert!(
        cache.stale(&key("example.org."), at(41)).is_none(),
        "past the window"
    );
    assert_eq!(
        cache.len(Kind::Success),
        0,
        "a dead entry is removed when seen"
    );
}

#[test]
fn the_key_separates_what_changes_the_answer() {
    let cache = Cache::new(&settings());
    let metrics = test_metrics();
    let now = Instant::now();
    cache.insert(
        key("example.org."),
        positive(vec![a("example.org.", 60, 1)]),
        now,
        metrics.cache(),
    );
    for other in [
        Key {
            dnssec_ok: true,
            ..key("example.org.")
        },
        Key {
            checking_disabled: true,
            ..key("example.org.")
        },
        Key {
            qtype: RecordType::AAAA,
            ..key("example.org.")
        },
        Key {
            qclass: DNSClass::CH,
            ..key("example.org.")
        },
        Key {
            partition: 7,
            ..key("example.org.")
        },
        key("www.example.org."),
    ] {
        assert!(cache.fresh(&other, now).is_none(), "{other:?}");
    }
    assert!(
        cache.fresh(&key("Example.Org."), now).is_some(),
        "case does not matter"
    );
}

#[test]
fn denials_cannot_push_out_successes() {
    let mut s = settings();
    s.capacity = 10;
    s.denial_capacity = Some(5);
    let cache = Cache::new(&s);
    let metrics = test_metrics();
    let now = Instant::now();
    for i in 0..10u8 {
        let owner = format!("host-{i}.example.org.");
        cache.insert(
            key(&owner),
            positive(vec![a(&owner, 60, i)]),
            now,
            metrics.cache(),
        );
    }
    for i in 0..100 {
        cache.insert(
            key(&format!("random-{i}.example.org.")),
            negative(ResponseCode::NXDomain, vec![soa(60, 60)]),
            now,
            metrics.cache(),
        );
    }
    assert_eq!(cache.len(Kind::Success), 10);
    assert!(cache.len(Kind::Denial) <= cache.capacity(Kind::Denial));
    assert_eq!(cache.capacity(Kind::Denial), 5);
    for i in 0..10u8 {
        assert!(
            cache
                .fresh(&key(&format!("host-{i}.example.org.")), now)
                .is_some()
        );
    }
    let text = metrics.encode();
    assert!(
        text.contains(r#"coredns_cache_evictions_total{server="dns://127.0.0.1:53",type="denial",zones=".",view=""} 95"#),
        "{text}"
    );
    assert!(
        text.contains(r#"coredns_cache_entries{server="dns://127.0.0.1:53",type="success",zones=".",view=""} 10"#),
        "{text}"
    );
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn a_full_shard_evicts_an_expired_entry_first() {
    let mut s = settings();
    s.capacity = 1;
    let cache = Cache::new(&s);
    let metrics = test_metrics();
    let t0 = Instant::now();
    cache.insert(
        key("old.example.org."),
        positive(vec![a("old.example.org.", 1, 1)]),
        t0,
        metrics.cache(),
    );
    cache.insert(
        key("new.example.org."),
        positive(vec![a("new.example.org.", 60, 2)]),
        t0 + Duration::from_secs(5),
        metrics.cache(),
    );
    assert_eq!(cache.len(Kind::Success), 1);
    let text = metrics.encode();
    assert!(
        text.contains(r#"coredns_cache_evictions_total{server="dns://127.0.0.1:53",type="success",zones=".",view=""} 0"#),
        "dropping an expired entry is not an eviction: {text}"
    );
    assert!(
        cache
            .fresh(&key("new.example.org."), t0 + Duration::from_secs(5))
            .is_some()
    );
}

fn forwarding_config(zones: Vec<ZoneConfig>, cache: CacheConfig) -> ValidatedConfig {
    ServerConfig {
        server: "ns/dns".into(),
        zones,
        forward: vec![ForwardConfig {
            servers_from_resolv_conf: false,
            domain: ".".into(),
            source: "ns/dns".into(),
            // Never contacted here: only cache hits are tested.
            servers: vec!["127.0.0.1:9".into()],
            policy: Default::default(),
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: None,
        }],
        cache: Some(cache),
        ..Default::default()
    }
    .validate()
    .expect("valid")
}

fn cache_of(pipeline: &Pipeline) -> Arc<Cache> {
    pipeline.cache().expect("a cache stage")
}

#[test]
fn the_stage_answers_forwarded_names_only() {
    let pipeline =
        Pipeline::build(forwarding_config(vec![], settings()), "h".into()).expect("builds");
    let cache = cache_of(&pipeline);
    let metrics = test_metrics();
    cache.insert(
        key("example.org."),
        positive(vec![a("example.org.", 60, 1)]),
        Instant::now(),
        metrics.cache(),
    );
    // A cluster name never reaches the cache, even if something were stored under it.
    cache.insert(
        key("web.default.svc.cluster.local."),
        positive(vec![a("web.default.svc.cluster.local.", 60, 9)]),
        Instant::now(),
        metrics.cache(),
    );
    let (outcome, response) = answer_from(
        &query_bytes("example.org.", RecordType::A, None),
        Transport::Udp,
        &pipeline,
        "127.0.0.1:40000",
        &metrics,
    );
    assert_eq!(outcome.origin, crate::wire::answer::Origin::Cache);
    let message = Message::from_vec(&response.expect("response")).expect("decodes");
    assert_eq!(message.answers.len(), 1);
    assert!(message.metadata.recursion_available);

    let (local, _) = answer_from(
        &query_bytes("web.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
        &pipeline,
        "127.0.0.1:40000",
        &metrics,
    );
    assert_eq!(
        local.origin,
        crate::wire::answer::Origin::Kubernetes,
        "cluster names are answered from the index"
    );

    let text = metrics.encode();
    assert!(
        text.contains(
            r#"coredns_cache_requests_total{server="dns://127.0.0.1:53",zones=".",view=""} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"coredns_cache_hits_total{server="dns://127.0.0.1:53",type="success",zones=".",view=""} 1"#), "{text}");
}

#[test]
fn a_reload_keeps_the_cache_unless_routing_or_settings_change() {
    let old = Pipeline::build(forwarding_config(vec![], settings()), "a".into()).expect("builds");
    let mut same =
        Pipeline::build(forwarding_config(vec![], settings()), "b".into()).expect("builds");
    same.adopt(&old);
    assert!(Arc::ptr_eq(&cache_of(&old), &cache_of(&same)));

    let zone = ZoneConfig {
        name: "example.org".into(),
        source: "a/b".into(),
        ttl_seconds: 60,
        records: vec![],
        allow_transfer: vec![],
    };
    let mut rerouted =
        Pipeline::build(forwarding_config(vec![zone], settings()), "c".into()).expect("builds");
    rerouted.adopt(&old);
    assert!(
        !Arc::ptr_eq(&cache_of(&old), &cache_of(&rerouted)),
        "a new zone: a new cache"
    );

    let mut bigger = settings();
    bigger.capacity = 1000;
    let mut resized =
        Pipeline::build(forwarding_config(vec![], bigger), "d".into()).expect("builds");
    resized.adopt(&old);
    assert!(!Arc::ptr_eq(&cache_of(&old), &cache_of(&resized)));
}

fn many_addresses(owner: &str, count: usize) -> Arc<Reply> {
    positive(
        (0..count)
            .map(|i| {
                Record::from_rdata(
                    name(owner),
                    60,
                    RData::A(A(Ipv4Addr::new(
                        198,
                        51,
                        u8::try_from(i / 256).expect("small"),
                        u8::try_from(i % 256).expect("small"),
                    ))),
                )
            })
            .collect(),
    )
}

#[test]
fn answers_larger_than_the_entry_cap_are_not_cached() {
    // Default limits: 64 KiB per entry. 2000 addresses take over 500 KiB as records.
    let cache = Cache::new(&settings());
    let metrics = test_metrics();
    let now = Instant::now();
    cache.insert(
        key("huge.example.org."),
        many_addresses("huge.example.org.", 2000),
        now,
        metrics.cache(),
    );
    cache.insert(
        key("small.example.org."),
        many_addresses("small.example.org.", 3),
        now,
        metrics.cache(),
    );
    assert!(
        cache.fresh(&key("huge.example.org."), now).is_none(),
        "too large to cache"
    );
    assert!(cache.fresh(&key("small.example.org."), now).is_some());
    assert_eq!(cache.len(Kind::Success), 1);
    let text = metrics.encode();
    assert!(
        text.contains(r#"nameplane_cache_too_large_total{server="dns://127.0.0.1:53",type="success",zones=".",view=""} 1"#),
        "{text}"
    );
}

#[test]
fn the_byte_budget_bounds_what_is_stored_whatever_the_capacity() {
    let mut s = settings();
    s.capacity = 100_000;
    let limits = ByteLimits {
        max_bytes: 256 * 1024,
        max_entry_bytes: 8 * 1024,
    };
    let cache = Cache::with_limits(&s, limits);
    let metrics = test_metrics();
    let now = Instant::now();
    let one = stored_size(
        &key("n0.example.org."),
        &many_addresses("n0.example.org.", 20),
        &wire::cached::WireReply::build(
            &key("n0.example.org."),
            &many_addresses("n0.example.org.", 20),
        )
        .expect("encodes"),
    );
    assert!(one > 20 * 16, "at least the records' wire bytes: {one}");
    assert!(one <= limits.max_entry_bytes, "{one}");
    for i in 0..2000 {
        let owner = format!("n{i}.example.org.");
        cache.insert(
            key(&owner),
            many_addresses(&owner, 20),
            now,
            metrics.cache(),
        );
        assert!(
            cache.bytes(Kind::Success) <= cache.max_bytes(Kind::Success),
            "over budget after {i}: {} > {}",
            cache.bytes(Kind::Success),
            cache.max_bytes(Kind::Success)
        );
    }
    // Success and denial share the budget by capacity (equal here).
    assert_eq!(cache.max_bytes(Kind::Success), limits.max_bytes / 2);
    let len = cache.len(Kind::Success);
    assert!(
        len < 2000 && len >= cache.max_bytes(Kind::Success) / one / 2,
        "kept {len} entries of {one} bytes"
    );
    // The stored size is what the budget counts, entry by entry (names n0 … n1999 differ
    // in length by up to 3 bytes).
    let bytes = cache.bytes(Kind::Success);
    assert!(len * one <= bytes && bytes <= len * (one + 3), "{bytes}");
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            r#"nameplane_cache_bytes{{server="dns://127.0.0.1:53",type="success",zones=".",view=""}} {bytes}"#,
        )),
        "{text}"
    );
    assert!(metric_value(&text, "coredns_cache_evictions_total") >= (2000 - len) as f64);
    cache.clear();
    assert_eq!(cache.bytes(Kind::Success), 0);
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
