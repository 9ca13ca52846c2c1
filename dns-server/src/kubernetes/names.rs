//! How a name under the cluster domain maps to Kubernetes objects.
//!
//! The Kubernetes DNS specification names a Service `<service>.<namespace>.svc.<zone>`.
//! This module only splits the labels left of the zone; it knows nothing of the index. It is
//! the place where the rest of the specification (ports and protocols for SRV,
//! `<hostname>.<service>...` for headless endpoints, `pod.<zone>`, reverse names) will be
//! added, each as a new [`ClusterName`] variant.

use hickory_proto::rr::Name;

/// What a name under the cluster domain refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterName<'a> {
    /// The zone apex itself (`<zone>`).
    Apex,
    /// `svc.<zone>`: exists because Services live below it (an empty non-terminal).
    ServiceRoot,
    /// `<namespace>.svc.<zone>`: exists when the namespace has Services.
    Namespace {
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
    /// Any other name under the zone: does not exist in this slice.
    Unknown,
}

/// Classifies `relative`: the labels of a lower-cased name left of the zone, leftmost first.
pub fn parse<'a>(relative: &[&'a [u8]]) -> ClusterName<'a> {
    let text = |label: &'a [u8]| std::str::from_utf8(label).ok();
    match *relative {
        [] => ClusterName::Apex,
        [b"svc"] => ClusterName::ServiceRoot,
        [namespace, b"svc"] => text(namespace).map_or(ClusterName::Unknown, |namespace| {
            ClusterName::Namespace { namespace }
        }),
        [service, namespace, b"svc"] => match (text(service), text(namespace)) {
            (Some(service), Some(namespace)) => ClusterName::Service { namespace, service },
            _ => ClusterName::Unknown,
        },
        _ => ClusterName::Unknown,
    }
}

/// Classifies a lower-cased `name` that is under a zone of `zone_labels` labels.
///
/// Only names with at most three labels left of the zone can be anything but
/// [`ClusterName::Unknown`], so no buffer is allocated.
pub fn classify(name: &Name, zone_labels: usize) -> ClusterName<'_> {
    let labels = name.iter();
    let Some(relative_len) = labels.len().checked_sub(zone_labels) else {
        return ClusterName::Unknown;
    };
    let mut relative: [&[u8]; 3] = [&[]; 3];
    if relative_len > relative.len() {
        return ClusterName::Unknown;
    }
    for (slot, label) in relative.iter_mut().zip(labels.take(relative_len)) {
        *slot = label;
    }
    parse(&relative[..relative_len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn classify_str(name: &str) -> ClusterName<'static> {
        let name = Name::from_str(name).expect("name");
        // Leak in tests only, to return borrowed labels.
        let name: &'static Name = Box::leak(Box::new(name));
        classify(name, 2)
    }

    #[test]
    fn splits_service_names() {
        assert_eq!(
            classify_str("web.default.svc.cluster.local."),
            ClusterName::Service {
                namespace: "default",
                service: "web"
            }
        );
        assert_eq!(
            classify_str("default.svc.cluster.local."),
            ClusterName::Namespace {
                namespace: "default"
            }
        );
        assert_eq!(classify_str("svc.cluster.local."), ClusterName::ServiceRoot);
        assert_eq!(classify_str("cluster.local."), ClusterName::Apex);
    }

    #[test]
    fn everything_else_is_unknown() {
        for name in [
            "a.web.default.svc.cluster.local.",
            "_http._tcp.web.default.svc.cluster.local.",
            "web.default.pod.cluster.local.",
            "pod.cluster.local.",
            "x.cluster.local.",
            "web.default.cluster.local.",
            "local.",
        ] {
            assert_eq!(classify_str(name), ClusterName::Unknown, "{name}");
        }
    }

    #[test]
    fn parse_works_on_raw_labels() {
        assert_eq!(
            parse(&[b"a", b"b", b"svc"]),
            ClusterName::Service {
                namespace: "b",
                service: "a"
            }
        );
        assert_eq!(parse(&[&[0xff], b"svc"]), ClusterName::Unknown, "not UTF-8");
        assert_eq!(
            parse(&[b"SVC"]),
            ClusterName::Unknown,
            "input is lower-cased"
        );
    }
}
