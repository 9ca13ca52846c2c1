//! How a name maps to Kubernetes objects: the grammar of cluster names and reverse names.
//!
//! Cluster names, relative to the cluster zone (labels are lower case already):
//!
//! | labels left of the zone                    | meaning                         |
//! |--------------------------------------------|---------------------------------|
//! | (none)                                     | [`ClusterName::Apex`]           |
//! | `dns-version`                              | [`ClusterName::DnsVersion`] (spec 1.1.0 TXT) |
//! | `dns`, `ns.dns`                            | the name server's own name      |
//! | `svc`, `pod`                               | empty non-terminals             |
//! | `<ns>.svc`, `<ns>.pod`                     | a namespace                     |
//! | `<svc>.<ns>.svc`                           | a Service                       |
//! | `<endpoint>.<svc>.<ns>.svc`                | one endpoint of a Service       |
//! | `_<port>._<proto>.<svc>.<ns>.svc`          | a named port (SRV)              |
//! | `<dashed-ip>.<ns>.pod`                     | a Pod address                   |
//! | anything else                              | [`ClusterName::Unknown`]        |
//!
//! Reverse names: `d.c.b.a.in-addr.arpa.` (four decimal octets without leading zeros) and the
//! 32-nibble `ip6.arpa.` form; partial reverse names are not addresses.
//!
//! Nothing here looks at the index; the Kubernetes stage does the lookups.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::objects::Protocol;
use crate::request::QName;

/// What a name under the cluster domain refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClusterName<'a> {
    /// The zone apex itself (`<zone>`).
    Apex,
    /// `dns-version.<zone>`: the schema version TXT record.
    DnsVersion,
    /// `ns.dns.<zone>`: the name server named in the apex NS and SOA records.
    NsName,
    /// `dns.<zone>`, `svc.<zone>`, `pod.<zone>`: exist because names live below them.
    EmptyNonTerminal,
    /// `<namespace>.svc.<zone>`.
    Namespace {
        /// Namespace name.
        namespace: &'a str,
    },
    /// `<namespace>.pod.<zone>`.
    PodNamespace {
        /// Namespace name.
        namespace: &'a str,
    },
    /// `<service>.<namespace>.svc.<zone>`.
    Service {
        /// Namespace name.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
    },
    /// `<endpoint>.<service>.<namespace>.svc.<zone>`.
    Endpoint {
        /// Namespace name.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
        /// The endpoint's label (hostname, Pod name or dashed IP).
        endpoint: &'a [u8],
    },
    /// `_<port>._<proto>.<service>.<namespace>.svc.<zone>`.
    Srv {
        /// Namespace name.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
        /// Port name, without the underscore.
        port: &'a [u8],
        /// Protocol.
        protocol: Protocol,
    },
    /// `<dashed-ip>.<namespace>.pod.<zone>`.
    Pod {
        /// Namespace name.
        namespace: &'a str,
        /// The dashed address label.
        address: &'a [u8],
    },
    /// Any other name under the zone: does not exist.
    Unknown,
}

/// Classifies `relative`: the labels of a lower-cased name left of the zone, leftmost first.
pub(crate) fn parse<'a>(relative: &[&'a [u8]]) -> ClusterName<'a> {
    let text = |label: &'a [u8]| std::str::from_utf8(label).ok();
    let underscored = |label: &'a [u8]| label.strip_prefix(b"_").filter(|rest| !rest.is_empty());
    let parsed = match *relative {
        [] => Some(ClusterName::Apex),
        [b"dns-version"] => Some(ClusterName::DnsVersion),
        [b"ns", b"dns"] => Some(ClusterName::NsName),
        [b"dns"] | [b"svc"] | [b"pod"] => Some(ClusterName::EmptyNonTerminal),
        [namespace, b"svc"] => {
            text(namespace).map(|namespace| ClusterName::Namespace { namespace })
        }
        [namespace, b"pod"] => {
            text(namespace).map(|namespace| ClusterName::PodNamespace { namespace })
        }
        [service, namespace, b"svc"] => match (text(service), text(namespace)) {
            (Some(service), Some(namespace)) => Some(ClusterName::Service { namespace, service }),
            _ => None,
        },
        [address, namespace, b"pod"] => {
            text(namespace).map(|namespace| ClusterName::Pod { namespace, address })
        }
        [endpoint, service, namespace, b"svc"] => match (text(service), text(namespace)) {
            (Some(service), Some(namespace)) => Some(ClusterName::Endpoint {
                namespace,
                service,
                endpoint,
            }),
            _ => None,
        },
        [port, protocol, service, namespace, b"svc"] => {
            match (
                underscored(port),
                underscored(protocol).and_then(Protocol::from_label),
                text(service),
                text(namespace),
            ) {
                (Some(port), Some(protocol), Some(service), Some(namespace)) => {
                    Some(ClusterName::Srv {
                        namespace,
                        service,
                        port,
                        protocol,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };
    parsed.unwrap_or(ClusterName::Unknown)
}

/// Most labels a cluster name can have left of the zone and still mean something.
const MAX_RELATIVE: usize = 5;

/// Classifies the labels of a lower-cased name under a zone of `zone_labels` labels.
/// Allocates nothing.
pub(crate) fn classify<'a>(
    labels: impl ExactSizeIterator<Item = &'a [u8]>,
    zone_labels: usize,
) -> ClusterName<'a> {
    let Some(relative_len) = labels.len().checked_sub(zone_labels) else {
        return ClusterName::Unknown;
    };
    if relative_len > MAX_RELATIVE {
        return ClusterName::Unknown;
    }
    let mut relative: [&[u8]; MAX_RELATIVE] = [&[]; MAX_RELATIVE];
    for (slot, label) in relative.iter_mut().zip(labels.take(relative_len)) {
        *slot = label;
    }
    parse(&relative[..relative_len])
}

/// The reverse zone `in-addr.arpa.` in wire form.
pub(crate) const IN_ADDR_ARPA: &[u8] = b"\x07in-addr\x04arpa\x00";

/// The reverse zone `ip6.arpa.` in wire form.
pub(crate) const IP6_ARPA: &[u8] = b"\x03ip6\x04arpa\x00";

/// Whether `name` is in one of the reverse zones.
pub(crate) fn is_reverse(name: &QName) -> bool {
    name.is_in(IN_ADDR_ARPA) || name.is_in(IP6_ARPA)
}

/// The address a complete reverse name stands for; `None` for partial or malformed ones.
pub(crate) fn reverse_address(name: &QName) -> Option<IpAddr> {
    let count = name.label_count();
    if count == 6 && name.is_in(IN_ADDR_ARPA) {
        let mut octets = [0u8; 4];
        for (i, octet) in octets.iter_mut().rev().enumerate() {
            let label = name.label(i)?;
            if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
                return None;
            }
            *octet = std::str::from_utf8(label).ok()?.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if count == 34 && name.is_in(IP6_ARPA) {
        let mut bits: u128 = 0;
        for i in (0..32).rev() {
            let label = name.label(i)?;
            let [nibble] = label else {
                return None;
            };
            let value = char::from(*nibble).to_digit(16)?;
            bits = (bits << 4) | u128::from(value);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bits)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_str(name: &str) -> ClusterName<'static> {
        let name = QName::from_ascii(name).expect("name");
        // Leak in tests only, to return borrowed labels.
        let name: &'static QName = Box::leak(Box::new(name));
        classify(name.labels(), 2)
    }

    #[test]
    fn splits_cluster_names() {
        let cases: &[(&str, ClusterName<'_>)] = &[
            ("cluster.local.", ClusterName::Apex),
            ("dns-version.cluster.local.", ClusterName::DnsVersion),
            ("ns.dns.cluster.local.", ClusterName::NsName),
            ("dns.cluster.local.", ClusterName::EmptyNonTerminal),
            ("svc.cluster.local.", ClusterName::EmptyNonTerminal),
            ("pod.cluster.local.", ClusterName::EmptyNonTerminal),
            (
                "default.svc.cluster.local.",
                ClusterName::Namespace {
                    namespace: "default",
                },
            ),
            (
                "default.pod.cluster.local.",
                ClusterName::PodNamespace {
                    namespace: "default",
                },
            ),
            (
                "web.default.svc.cluster.local.",
                ClusterName::Service {
                    namespace: "default",
                    service: "web",
                },
            ),
            (
                "web-0.db.default.svc.cluster.local.",
                ClusterName::Endpoint {
                    namespace: "default",
                    service: "db",
                    endpoint: b"web-0",
                },
            ),
            (
                "_http._tcp.web.default.svc.cluster.local.",
                ClusterName::Srv {
                    namespace: "default",
                    service: "web",
                    port: b"http",
                    protocol: Protocol::Tcp,
                },
            ),
            (
                "_DNS._UDP.web.default.svc.cluster.local.",
                ClusterName::Srv {
                    namespace: "default",
                    service: "web",
                    port: b"dns",
                    protocol: Protocol::Udp,
                },
            ),
            (
                "10-244-0-5.default.pod.cluster.local.",
                ClusterName::Pod {
                    namespace: "default",
                    address: b"10-244-0-5",
                },
            ),
        ];
        for (name, want) in cases {
            assert_eq!(classify_str(name), *want, "{name}");
        }
    }

    #[test]
    fn everything_else_is_unknown() {
        for name in [
            "x.cluster.local.",
            "a.ns.dns.cluster.local.",
            "web.default.cluster.local.",
            "a.b.web.default.svc.cluster.local.",
            "http.tcp.web.default.svc.cluster.local.",
            "_http._quic.web.default.svc.cluster.local.",
            "_._tcp.web.default.svc.cluster.local.",
            "_http._tcp.x.web.default.svc.cluster.local.",
            "a.b.default.pod.cluster.local.",
            "local.",
        ] {
            assert_eq!(classify_str(name), ClusterName::Unknown, "{name}");
        }
        assert_eq!(parse(&[&[0xff], b"svc"]), ClusterName::Unknown, "not UTF-8");
        assert_eq!(
            parse(&[b"SVC"]),
            ClusterName::Unknown,
            "input is lower-cased"
        );
    }

    fn reverse(name: &str) -> Option<IpAddr> {
        reverse_address(&QName::from_ascii(name).expect("name"))
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse("10.0.96.10.in-addr.arpa."),
            Some(IpAddr::from([10, 96, 0, 10]))
        );
        assert_eq!(
            reverse("10.0.96.10.IN-ADDR.ARPA."),
            Some(IpAddr::from([10, 96, 0, 10]))
        );
        let v6 = "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(reverse(v6), Some("fd00:0:10:96::a".parse().expect("ip")));
        for bad in [
            "0.96.10.in-addr.arpa.",
            "1.10.0.96.10.in-addr.arpa.",
            "010.0.96.10.in-addr.arpa.",
            "256.0.96.10.in-addr.arpa.",
            "x.0.96.10.in-addr.arpa.",
            "in-addr.arpa.",
            "0.0.d.f.ip6.arpa.",
            "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            "10.0.96.10.in-addr.arpa.example.",
        ] {
            assert_eq!(reverse(bad), None, "{bad}");
        }
        assert!(is_reverse(
            &QName::from_ascii("0.96.10.in-addr.arpa.").expect("name")
        ));
        assert!(is_reverse(&QName::from_ascii("ip6.arpa.").expect("name")));
        assert!(!is_reverse(&QName::from_ascii("arpa.").expect("name")));
    }
}
