//! Tests of the server metrics: per-query series, histograms and their buckets, reload,
//! watch and rate-limit metrics, rendered as Prometheus text.

use super::families::REVISION;
use super::*;

fn record(transport: Transport, client: &str, qtype: Option<RecordType>) -> QueryRecord {
    QueryRecord {
        transport,
        client: client.parse().expect("addr"),
        qtype,
        rcode: ResponseCode::NoError,
        origin: Origin::Kubernetes,
        dnssec_ok: false,
        request_size: 40,
        response_size: 150,
        duration: Duration::from_micros(300),
    }
}

#[test]
fn renders_coredns_names_and_labels() {
    let metrics = Metrics::new("127.0.0.1:5353".parse().expect("addr"));
    metrics.query(&record(
        Transport::Udp,
        "10.0.0.1:4000",
        Some(RecordType::A),
    ));
    metrics.query(&record(
        Transport::Udp,
        "10.0.0.1:4000",
        Some(RecordType::A),
    ));
    let mut other = record(Transport::Tcp, "[fd00::1]:4000", Some(RecordType::CAA));
    other.rcode = ResponseCode::NXDomain;
    other.dnssec_ok = true;
    other.duration = Duration::from_millis(3);
    metrics.query(&other);
    let mut refused = record(Transport::Udp, "10.0.0.1:4000", None);
    refused.rcode = ResponseCode::Refused;
    refused.origin = Origin::Server;
    metrics.query(&refused);
    metrics.reload(true);
    metrics.reload(false);
    metrics.reload_failure("hash_mismatch");
    metrics.shared_pod_ips(Some(crate::cluster::index::SharedIps {
        running_wins: 2,
        ambiguous: 1,
    }));
    metrics.config_served("ns/dns", "abc");
    metrics.config_served("ns/dns", "def");
    metrics.watched("services", 3, Some(true));
    metrics.watch_error("pods");
    metrics.programming("cluster_ip", Duration::from_millis(1500));

    let text = metrics.encode();
    let s = r#"server="dns://127.0.0.1:5353",zone=".",view="""#;
    for line in [
        format!(r#"coredns_dns_requests_total{{{s},proto="udp",family="1",type="A"}} 2"#),
        format!(r#"coredns_dns_requests_total{{{s},proto="tcp",family="2",type="other"}} 1"#),
        format!(r#"coredns_dns_responses_total{{{s},rcode="NXDOMAIN",plugin="kubernetes"}} 1"#),
        format!(r#"coredns_dns_responses_total{{{s},rcode="REFUSED",plugin=""}} 1"#),
        format!(r#"coredns_dns_request_duration_seconds_bucket{{le="0.0005",{s},type="A"}} 2"#),
        format!(r#"coredns_dns_request_duration_seconds_bucket{{le="0.00025",{s},type="A"}} 0"#),
        format!(r#"coredns_dns_request_duration_seconds_bucket{{le="0.004",{s},type="other"}} 2"#),
        format!(r#"coredns_dns_request_duration_seconds_bucket{{le="+Inf",{s},type="other"}} 2"#),
        format!(r#"coredns_dns_request_duration_seconds_count{{{s},type="A"}} 2"#),
        format!(r#"coredns_dns_request_duration_seconds_sum{{{s},type="A"}} 0.0006"#),
        format!(r#"coredns_dns_response_size_bytes_bucket{{le="200.0",{s},proto="udp"}} 3"#),
        format!(r#"coredns_dns_request_size_bytes_count{{{s},proto="tcp"}} 1"#),
        format!(r#"coredns_dns_do_requests_total{{{s}}} 1"#),
        r#"nameplane_config_reloads_total{result="success"} 1"#.into(),
        r#"nameplane_config_reloads_total{result="failure"} 2"#.into(),
        "coredns_reload_failed_total 2".into(),
        r#"nameplane_config_reload_failures_total{reason="hash_mismatch"} 1"#.into(),
        r#"nameplane_kubernetes_shared_pod_ips{outcome="running_wins"} 2"#.into(),
        r#"nameplane_kubernetes_shared_pod_ips{outcome="ambiguous"} 1"#.into(),
        r#"nameplane_config_info{server="ns/dns",hash="def"} 1"#.into(),
        r#"coredns_reload_version_info{hash="sha256",value="def"} 1"#.into(),
        r#"nameplane_kubernetes_objects{resource="services"} 3"#.into(),
        r#"nameplane_kubernetes_synced{resource="services"} 1"#.into(),
        r#"nameplane_kubernetes_watch_errors_total{resource="pods"} 1"#.into(),
        r#"coredns_kubernetes_dns_programming_duration_seconds_bucket{le="2.048",service_kind="cluster_ip"} 1"#.into(),
        r#"coredns_kubernetes_dns_programming_duration_seconds_bucket{le="1.024",service_kind="cluster_ip"} 0"#.into(),
        format!(
            r#"nameplane_build_info{{version="{}",revision="{REVISION}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
        format!(
            r#"coredns_build_info{{version="{}",revision="{REVISION}",goversion="rust"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(&line), "missing {line}\n{text}");
    }
    assert!(
        !text.contains(r#"hash="abc""#),
        "the old config's series is gone"
    );
    assert!(
        !text.contains("type=\"AAAA\""),
        "unused series are not rendered"
    );
}

#[test]
fn every_type_and_rcode_has_a_slot() {
    for (i, qtype) in MONITORED.iter().enumerate() {
        assert_eq!(TYPES[i], qtype.to_string(), "TYPES and MONITORED line up");
    }
    assert_eq!(type_index(Some(RecordType::ANY)), 17);
    assert_eq!(type_index(Some(RecordType::NULL)), TYPES.len() - 1);
    assert_eq!(rcode_index(ResponseCode::BADVERS), 6);
    assert_eq!(rcode_index(ResponseCode::YXDomain), RCODES.len() - 1);
}

#[test]
fn histograms_count_from_many_threads() {
    let histogram = AtomicHistogram::new(&TIME_BUCKETS, 1e-9);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..1000 {
                    histogram.observe_units(i * 1000);
                }
            });
        }
    });
    assert_eq!(histogram.count(), 4000);
}
