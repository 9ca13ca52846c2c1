//! Tests of the cut-down objects: Services by kind, ready endpoints, endpoint names, Pods,
//! dashed addresses and RFC 3339 times.

use super::*;
use k8s_openapi::api::core::v1::{ObjectReference, PodIP, PodStatus, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("ns".into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn service(spec: ServiceSpec) -> Service {
    Service {
        metadata: meta("web"),
        spec: Some(spec),
        ..Service::default()
    }
}

fn port(name: &str, protocol: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port: number,
        ..ServicePort::default()
    }
}

#[test]
fn services_by_kind() {
    let (ns, name, entry) = compact_service(&service(ServiceSpec {
        cluster_ips: Some(vec!["10.96.0.10".into(), "fd00::10".into()]),
        ports: Some(vec![port("HTTP", "TCP", 80), port("dns", "UDP", 53)]),
        selector: Some(BTreeMap::from([("app".into(), "web".into())])),
        ..ServiceSpec::default()
    }))
    .expect("namespaced");
    assert_eq!((ns.as_str(), name.as_str()), ("ns", "web"));
    assert_eq!(entry.cluster_ips().count(), 2);
    assert_eq!(entry.ports.len(), 2);
    assert!(
        entry.ports[0].matches(b"http", Protocol::Tcp),
        "names lower-cased"
    );
    assert!(!entry.ports[1].matches(b"dns", Protocol::Tcp));
    assert_eq!(entry.kind_label(), "cluster_ip");

    let (_, _, old) = compact_service(&service(ServiceSpec {
        cluster_ip: Some("10.96.0.9".into()),
        ..ServiceSpec::default()
    }))
    .expect("namespaced");
    assert_eq!(
        old.cluster_ips().collect::<Vec<_>>(),
        [IpAddr::from([10, 96, 0, 9])]
    );

    let (_, _, headless) = compact_service(&service(ServiceSpec {
        cluster_ip: Some("None".into()),
        cluster_ips: Some(vec!["None".into()]),
        ..ServiceSpec::default()
    }))
    .expect("namespaced");
    assert_eq!(headless.kind, ServiceKind::Headless);
    assert_eq!(headless.kind_label(), "headless_without_selector");

    let (_, _, external) = compact_service(&service(ServiceSpec {
        type_: Some("ExternalName".into()),
        external_name: Some("Example.COM.".into()),
        ..ServiceSpec::default()
    }))
    .expect("namespaced");
    assert_eq!(
        external.kind,
        ServiceKind::ExternalName(b"\x07example\x03com\x00"[..].into())
    );
    let (_, _, by_ip) = compact_service(&service(ServiceSpec {
        type_: Some("ExternalName".into()),
        external_name: Some("10.0.0.1".into()),
        ..ServiceSpec::default()
    }))
    .expect("namespaced");
    assert_eq!(by_ip.kind, ServiceKind::InvalidExternalName);

    let mut cluster_scoped = service(ServiceSpec::default());
    cluster_scoped.metadata.namespace = None;
    assert!(compact_service(&cluster_scoped).is_none());
}

fn endpoint(ip: &str, ready: Option<bool>, hostname: Option<&str>, pod: Option<&str>) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        conditions: Some(EndpointConditions {
            ready,
            ..EndpointConditions::default()
        }),
        hostname: hostname.map(Into::into),
        target_ref: pod.map(|pod| ObjectReference {
            kind: Some("Pod".into()),
            name: Some(pod.into()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

#[test]
fn slices_keep_ready_endpoints_only() {
    let mut metadata = meta("web-abcde");
    metadata.labels = Some(BTreeMap::from([(SERVICE_NAME_LABEL.into(), "web".into())]));
    metadata.annotations = Some(BTreeMap::from([(
        TRIGGER_TIME_ANNOTATION.into(),
        "1970-01-01T00:00:10Z".into(),
    )]));
    let slice = EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: vec![
            endpoint("10.244.0.1", Some(true), Some("Web-0"), Some("web-0")),
            endpoint("10.244.0.2", None, None, Some("web-1")),
            endpoint("10.244.0.3", Some(false), None, Some("web-2")),
            endpoint("bogus", Some(true), None, None),
        ],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: None,
            ..EndpointPort::default()
        }]),
    };
    let compact = compact_slice(&slice).expect("has a service");
    assert_eq!(compact.service, "web");
    assert_eq!(compact.name, "web-abcde");
    assert_eq!(compact.trigger_time, Some(10_000_000_000));
    assert_eq!(compact.entry.ports[0].port, 8080);
    assert!(compact.entry.ports[0].matches(b"http", Protocol::Tcp));
    let ips: Vec<_> = compact
        .entry
        .endpoints
        .iter()
        .map(|e| e.ip.to_string())
        .collect();
    assert_eq!(
        ips,
        ["10.244.0.1", "10.244.0.2"],
        "not ready and bad addresses dropped"
    );
    assert_eq!(
        compact.entry.endpoints[0].hostname.as_deref(),
        Some("web-0")
    );

    let mut orphan = slice.clone();
    orphan.metadata.labels = None;
    assert!(compact_slice(&orphan).is_none());
    let mut fqdn = slice;
    fqdn.address_type = "FQDN".into();
    assert!(
        compact_slice(&fqdn)
            .expect("kept")
            .entry
            .endpoints
            .is_empty()
    );
}

#[test]
fn endpoint_names_follow_coredns() {
    let e = |ip: &str, hostname: Option<&str>, pod: Option<&str>| EndpointEntry {
        ip: ip.parse().expect("ip"),
        hostname: hostname.map(Arc::from),
        pod: pod.map(Arc::from),
    };
    let name = |entry: &EndpointEntry, pods: bool| {
        String::from_utf8(entry.name(pods).as_bytes().to_vec()).expect("utf-8")
    };
    assert_eq!(
        name(&e("10.244.0.1", Some("db-0"), Some("pod")), true),
        "db-0"
    );
    assert_eq!(name(&e("10.244.0.1", None, Some("pod-x")), true), "pod-x");
    assert_eq!(
        name(&e("10.244.0.1", None, Some("pod-x")), false),
        "10-244-0-1"
    );
    assert_eq!(
        name(&e("10.244.0.1", None, Some("a.b")), true),
        "10-244-0-1"
    );
    assert_eq!(
        name(&e("10.244.0.1", None, Some(&"p".repeat(64))), true),
        "10-244-0-1"
    );
    assert_eq!(name(&e("fd00::1", None, None), false), "fd00--1");
    assert_eq!(name(&e("fd00:1::", None, None), false), "fd00-1--0");
    assert_eq!(
        name(
            &e("2001:db8:85a3:1234:5678:8a2e:370:7334", None, None),
            false
        ),
        "2001-db8-85a3-1234-5678-8a2e-370-7334"
    );
}

#[test]
fn dashed_labels_parse_back() {
    for ip in [
        "10.244.0.1",
        "fd00::1",
        "fd00:1::",
        "::1",
        "2001:db8::8a2e:370:7334",
    ] {
        let ip: IpAddr = ip.parse().expect("ip");
        assert_eq!(parse_dashed(DashedIp::new(ip).as_bytes()), Some(ip), "{ip}");
    }
    assert_eq!(parse_dashed(b"1-2-3"), None);
    assert_eq!(parse_dashed(b"a-b-c-d"), None);
    assert_eq!(parse_dashed(b"300-1-1-1"), None);
    assert_eq!(parse_dashed(&[0xff]), None);
}

#[test]
fn pods_by_ips() {
    let pod = Pod {
        metadata: meta("p"),
        status: Some(PodStatus {
            pod_ip: Some("10.244.0.7".into()),
            pod_ips: Some(vec![
                PodIP {
                    ip: "10.244.0.7".into(),
                },
                PodIP {
                    ip: "fd00::7".into(),
                },
            ]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let (ips, client) = compact_pod(&pod).expect("namespaced");
    assert_eq!(ips.len(), 2);
    assert_eq!(&*client.name, "p");
    assert!(!client.host_network);
    let mut old = pod.clone();
    if let Some(status) = old.status.as_mut() {
        status.pod_ips = None;
    }
    assert_eq!(compact_pod(&old).expect("namespaced").0.len(), 1);
}

#[test]
fn terminal_pods_keep_no_ip() {
    let with_phase = |phase: Option<&str>| Pod {
        metadata: meta("job-x"),
        status: Some(PodStatus {
            phase: phase.map(Into::into),
            pod_ip: Some("10.244.0.8".into()),
            pod_ips: Some(vec![PodIP {
                ip: "10.244.0.8".into(),
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    for phase in ["Succeeded", "Failed"] {
        let (ips, _) = compact_pod(&with_phase(Some(phase))).expect("namespaced");
        assert!(ips.is_empty(), "{phase}: its IP is free for the next Pod");
    }
    let (ips, running) = compact_pod(&with_phase(Some("Running"))).expect("namespaced");
    assert_eq!(ips.len(), 1);
    assert!(running.running);
    for phase in [Some("Pending"), Some("Unknown"), None] {
        let (ips, client) = compact_pod(&with_phase(phase)).expect("namespaced");
        assert_eq!(ips.len(), 1, "{phase:?} still holds its IP");
        assert!(!client.running, "{phase:?}");
    }
}

#[test]
fn rfc3339_times() {
    assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_nanos("2024-02-29T12:34:56.5Z"),
        Some(1_709_210_096_500_000_000)
    );
    assert_eq!(
        parse_rfc3339_nanos("2000-03-01T00:00:00.123456789Z"),
        Some(951_868_800_123_456_789)
    );
    for bad in [
        "",
        "2024-02-29",
        "2024-02-29T12:34:56+01:00",
        "2024-13-01T00:00:00Z",
        "x024-01-01T00:00:00Z",
    ] {
        assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
    }
}
