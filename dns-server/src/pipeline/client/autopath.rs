//! Autopath: the search path of a Kubernetes Pod, walked by the server (CoreDNS
//! `autopath @kubernetes`).
//!
//! A Pod's resolv.conf has `search <ns>.svc.<zone> svc.<zone> <zone>` and `ndots:5`, so a
//! lookup of `example.com` costs the client four queries (three NXDOMAINs first), and five
//! or more with the node's own search domains. When a Pod of namespace `<ns>` asks
//! `<base>.<ns>.svc.<zone>`, this stage tries `<base>.<ns>.svc.<zone>`, `<base>.svc.<zone>`,
//! `<base>.<zone>` and `<base>` in turn and answers with the first that is not NXDOMAIN,
//! behind a CNAME from the asked name; the client stops at its first query.
//!
//! Which Pod asks comes from its source address (the Pod watch), as for policies; a client
//! the server cannot identify gets no autopath (its search path is unknown). Every step is
//! checked against the client's DNS policies: a denied candidate is skipped as if it did
//! not exist. Lookups are counted (`nameplane_dns_autopath_total{result}`).

use hickory_proto::rr::RecordType;
use nameplane_config::ValidatedConfig;

use crate::request::QName;

/// The search path rule of one config.
#[derive(Debug)]
pub(crate) struct Autopath {
    /// The cluster domain, presentation form without a trailing dot.
    zone: String,
}

impl Autopath {
    /// `None` unless the config turns autopath on.
    pub(crate) fn new(config: &ValidatedConfig) -> Option<Self> {
        config.kubernetes().autopath.then(|| Self {
            zone: config.cluster_domain().to_owned(),
        })
    }

    /// The names to try for `name` asked by a Pod of `namespace`, the asked name first;
    /// `None` when the question is not under the Pod's first search domain.
    pub(crate) fn candidates(
        &self,
        name: &QName,
        qtype: RecordType,
        namespace: &str,
    ) -> Option<Vec<QName>> {
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return None;
        }
        let mut asked = name.to_string();
        asked.pop();
        let first = format!(".{namespace}.svc.{}", self.zone);
        let base = asked.strip_suffix(&first)?;
        if base.is_empty() {
            return None;
        }
        let zone = &self.zone;
        let names = [
            asked.clone(),
            format!("{base}.svc.{zone}"),
            format!("{base}.{zone}"),
            base.to_owned(),
        ];
        names.iter().map(|n| QName::from_ascii(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nameplane_config::ServerConfig;

    fn autopath(on: bool) -> Option<Autopath> {
        let mut config = ServerConfig::default();
        config.kubernetes.autopath = on;
        Autopath::new(&config.validate().expect("valid"))
    }

    #[test]
    fn walks_the_pods_search_path() {
        assert!(autopath(false).is_none());
        let a = autopath(true).expect("on");
        let name = QName::from_ascii("google.com.team-a.svc.cluster.local").expect("name");
        let got: Vec<String> = a
            .candidates(&name, RecordType::A, "team-a")
            .expect("under the first search domain")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "google.com.team-a.svc.cluster.local.",
                "google.com.svc.cluster.local.",
                "google.com.cluster.local.",
                "google.com.",
            ]
        );
        assert!(
            a.candidates(&name, RecordType::A, "team-b").is_none(),
            "not its namespace"
        );
        assert!(a.candidates(&name, RecordType::AXFR, "team-a").is_none());
        let apex = QName::from_ascii("team-a.svc.cluster.local").expect("name");
        assert!(a.candidates(&apex, RecordType::A, "team-a").is_none());
    }
}
