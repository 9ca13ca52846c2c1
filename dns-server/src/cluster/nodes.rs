//! Node addresses: the addresses of the cluster's Nodes, for the node client class
//! (`clients.nodes.fromNodes` in the config).
//!
//! A query from a node address (the node itself, or one of its host-network Pods) cannot be
//! tied to a Pod; the platform may name these addresses a class of their own and allow
//! them while other unidentified clients are refused ([`crate::pipeline::client::policy`]). The
//! Node watch runs only when the config asks for it, and keeps of each Node only the IP
//! addresses in its `status.addresses` (`InternalIP` and `ExternalIP`; host names are not
//! addresses a query comes from).
//!
//! [`NodeAddresses`] is the snapshot table: address → number of Nodes that list it (two
//! Nodes can list one address for a moment, while it moves from one to the other), behind
//! one `Arc`, so a snapshot clone copies a pointer and only a change to the addresses copies
//! the map. Node status is rewritten often (heartbeats, conditions); an update that leaves
//! the addresses as they were changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

/// The address types of `status.addresses` a query can come from.
const ADDRESS_TYPES: [&str; 2] = ["InternalIP", "ExternalIP"];

/// The addresses of the watched Nodes.
#[derive(Clone, Debug, Default)]
pub struct NodeAddresses {
    by_ip: Arc<HashMap<IpAddr, u32>>,
    /// Whether the initial list has completed (`index::Synced`, implemented there with the
    /// other tables').
    pub(super) synced: bool,
}

impl NodeAddresses {
    /// Whether `ip` is an address of a Node. `ip` must be canonical (an IPv4 client on a
    /// dual-stack socket as IPv4), as the client path makes it.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.by_ip.contains_key(ip)
    }

    /// Number of distinct addresses.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Records that a Node had `old` addresses and now has `new`; returns whether the set of
    /// addresses changed.
    pub fn replace(&mut self, old: &[IpAddr], new: &[IpAddr]) -> bool {
        if old == new {
            return false;
        }
        let mut changed = false;
        let map = Arc::make_mut(&mut self.by_ip);
        for ip in new {
            let count = map.entry(*ip).or_default();
            changed |= *count == 0;
            *count += 1;
        }
        for ip in old {
            if let Some(count) = map.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    map.remove(ip);
                    changed = true;
                }
            }
        }
        changed
    }
}

/// The cut-down form of a Node: its name and the IP addresses a query can come from
/// (sorted, without repeats).
pub(crate) fn compact_node(node: &Node) -> (Box<str>, Box<[IpAddr]>) {
    let mut ips: Vec<IpAddr> = node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|address| ADDRESS_TYPES.contains(&address.type_.as_str()))
        .filter_map(|address| address.address.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    (node.name_any().into(), ips.into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    use kube::api::ObjectMeta;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    /// A Node with these `status.addresses` (type, address); also the writer's fixture.
    pub(crate) fn node(name: &str, addresses: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(type_, address)| NodeAddress {
                            type_: (*type_).into(),
                            address: (*address).into(),
                        })
                        .collect(),
                ),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn only_ip_addresses_a_query_can_come_from_are_kept() {
        let (name, ips) = compact_node(&node(
            "n1",
            &[
                ("Hostname", "n1"),
                ("InternalIP", "192.0.2.11"),
                ("ExternalIP", "2001:db8::11"),
                ("InternalDNS", "n1.example.internal"),
                ("InternalIP", "192.0.2.11"),
                ("InternalIP", "::ffff:192.0.2.12"),
                ("InternalIP", "not an address"),
            ],
        ));
        assert_eq!(&*name, "n1");
        assert_eq!(
            &*ips,
            [ip("192.0.2.11"), ip("192.0.2.12"), ip("2001:db8::11")]
        );
        let (_, none) = compact_node(&Node::default());
        assert!(none.is_empty());
    }

    #[test]
    fn an_address_two_nodes_list_stays_until_both_let_it_go() {
        let mut nodes = NodeAddresses::default();
        let (a, b) = ([ip("192.0.2.1")], [ip("192.0.2.1"), ip("192.0.2.2")]);
        assert!(nodes.replace(&[], &a));
        assert!(!nodes.replace(&a, &a), "unchanged");
        let snapshot = nodes.clone();
        assert!(nodes.replace(&[], &b), "a new address");
        assert!(
            !snapshot.contains(&ip("192.0.2.2")),
            "snapshots stay as they were"
        );
        assert!(
            !nodes.replace(&a, &[]),
            "192.0.2.1 is still the other node's"
        );
        assert!(nodes.contains(&ip("192.0.2.1")));
        assert!(nodes.replace(&b, &[]));
        assert!(nodes.is_empty());
        assert!(!nodes.contains(&ip("192.0.2.1")));
    }
}
