//! The compact, immutable index of Services that the query path reads.
//!
//! Only what DNS needs is kept (after CoreDNS's cut-down `object.Service`: every extra field
//! costs memory times the number of Services in the cluster): per namespace, per Service
//! name, the cluster IPs split into IPv4 and IPv6. Lookups take `&str` and allocate nothing.
//!
//! Snapshots are published whole. To keep a change cheap in a large cluster, each namespace
//! is shared behind an `Arc` and copied only when it changes (`Arc::make_mut`): cloning an
//! index costs one pointer copy per namespace, not one per Service.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// What DNS needs to know about one Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    v4: Box<[Ipv4Addr]>,
    v6: Box<[Ipv6Addr]>,
}

impl ServiceEntry {
    /// An entry with these cluster IPs (order kept within each family).
    pub fn from_ips(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(ip) => v4.push(ip),
                IpAddr::V6(ip) => v6.push(ip),
            }
        }
        Self {
            v4: v4.into_boxed_slice(),
            v6: v6.into_boxed_slice(),
        }
    }

    /// An entry from the strings of `spec.clusterIPs`: `"None"` (headless), empty strings
    /// and anything that is not an IP address are skipped.
    pub fn from_cluster_ips<'a>(ips: impl IntoIterator<Item = &'a str>) -> Self {
        Self::from_ips(ips.into_iter().filter_map(|ip| ip.parse().ok()))
    }

    /// The IPv4 cluster IPs (A records).
    pub fn ipv4(&self) -> &[Ipv4Addr] {
        &self.v4
    }

    /// The IPv6 cluster IPs (AAAA records).
    pub fn ipv6(&self) -> &[Ipv6Addr] {
        &self.v6
    }
}

/// The Services of one namespace, by name.
type Namespace = HashMap<Box<str>, ServiceEntry>;

/// An immutable view of every Service in the cluster, as DNS sees it.
///
/// Built and changed only by the watch task (or by tests); the query path gets it through
/// [`crate::state::State::services`].
#[derive(Clone, Debug)]
pub struct ServiceIndex {
    namespaces: HashMap<Arc<str>, Arc<Namespace>>,
    services: usize,
    synced: bool,
    serial: u32,
}

impl ServiceIndex {
    /// An empty index that has not completed its initial list, with this SOA serial.
    pub fn new(serial: u32) -> Self {
        Self {
            namespaces: HashMap::new(),
            services: 0,
            synced: false,
            serial,
        }
    }

    /// The Service `service` in `namespace`, if it exists.
    pub fn get(&self, namespace: &str, service: &str) -> Option<&ServiceEntry> {
        self.namespaces.get(namespace)?.get(service)
    }

    /// Whether at least one Service exists in `namespace`.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// Whether the initial list of Services has completed. Until it has, the index may be
    /// missing Services, so cluster names are answered SERVFAIL rather than NXDOMAIN.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The SOA serial: the unix time (seconds, truncated to 32 bits) of the last change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of Services.
    pub fn len(&self) -> usize {
        self.services
    }

    /// Whether there are no Services.
    pub fn is_empty(&self) -> bool {
        self.services == 0
    }

    /// Marks the initial list as complete (or not).
    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }

    /// Sets the SOA serial.
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// Adds or replaces a Service. Returns whether the index changed.
    pub fn insert(&mut self, namespace: &str, service: &str, entry: ServiceEntry) -> bool {
        if self.get(namespace, service) == Some(&entry) {
            return false;
        }
        let services = match self.namespaces.get_mut(namespace) {
            Some(services) => Arc::make_mut(services),
            None => Arc::make_mut(self.namespaces.entry(Arc::from(namespace)).or_default()),
        };
        if services.insert(Box::from(service), entry).is_none() {
            self.services += 1;
        }
        true
    }

    /// Removes a Service. Returns whether the index changed.
    pub fn remove(&mut self, namespace: &str, service: &str) -> bool {
        let Some(services) = self.namespaces.get_mut(namespace) else {
            return false;
        };
        if !services.contains_key(service) {
            return false;
        }
        let services = Arc::make_mut(services);
        services.remove(service);
        self.services -= 1;
        if services.is_empty() {
            self.namespaces.remove(namespace);
        }
        true
    }

    /// Whether both indexes hold the same Services (ignoring serial and sync state).
    pub fn same_services(&self, other: &Self) -> bool {
        self.services == other.services && self.namespaces == other.namespaces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ips: &[&str]) -> ServiceEntry {
        ServiceEntry::from_cluster_ips(ips.iter().copied())
    }

    #[test]
    fn entry_splits_families_and_skips_headless() {
        let e = entry(&["10.0.0.1", "fd00::1", "None", "", "bogus"]);
        assert_eq!(e.ipv4(), &[Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(e.ipv6(), &["fd00::1".parse::<Ipv6Addr>().expect("ip")]);
        assert_eq!(entry(&["None"]), ServiceEntry::default());
    }

    #[test]
    fn insert_get_remove() {
        let mut index = ServiceIndex::new(7);
        assert!(!index.synced());
        assert_eq!(index.serial(), 7);
        assert!(index.insert("default", "web", entry(&["10.0.0.1"])));
        assert!(
            !index.insert("default", "web", entry(&["10.0.0.1"])),
            "no-op"
        );
        assert!(
            index.insert("default", "web", entry(&["10.0.0.2"])),
            "update"
        );
        assert!(index.insert("default", "db", entry(&[])));
        assert_eq!(index.len(), 2);
        assert_eq!(
            index.get("default", "web").map(ServiceEntry::ipv4),
            Some(&[Ipv4Addr::new(10, 0, 0, 2)][..])
        );
        assert!(index.get("other", "web").is_none());
        assert!(index.has_namespace("default"));

        assert!(index.remove("default", "web"));
        assert!(!index.remove("default", "web"));
        assert!(index.remove("default", "db"));
        assert!(!index.has_namespace("default"), "empty namespaces go away");
        assert!(index.is_empty());
    }

    #[test]
    fn clones_share_untouched_namespaces() {
        let mut index = ServiceIndex::new(0);
        index.insert("a", "x", entry(&["10.0.0.1"]));
        index.insert("b", "y", entry(&["10.0.0.2"]));
        let snapshot = index.clone();
        index.insert("a", "z", entry(&["10.0.0.3"]));
        assert!(Arc::ptr_eq(
            &index.namespaces["b"],
            &snapshot.namespaces["b"]
        ));
        assert!(!Arc::ptr_eq(
            &index.namespaces["a"],
            &snapshot.namespaces["a"]
        ));
        assert!(snapshot.get("a", "z").is_none(), "snapshot is immutable");
        assert!(!index.same_services(&snapshot));
        index.remove("a", "z");
        assert!(index.same_services(&snapshot));
    }
}
