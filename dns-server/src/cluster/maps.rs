//! The two copy-on-write map shapes the snapshots are made of.
//!
//! A snapshot is cloned once per published change, so cloning must not cost one copy per
//! object in the cluster:
//!
//! - [`NamespacedMap`]: namespace → name → value, each namespace behind its own `Arc`.
//!   Cloning copies one pointer per namespace; a change copies only its namespace's map.
//! - [`ShardedMultiMap`]: IP address → list of values (reverse lookups), split in
//!   [`SHARDS`] shards by the address's last octets. Cloning copies [`SHARDS`] pointers; a
//!   change copies one shard (about 1/[`SHARDS`] of the entries).
//!
//! Lookups take borrowed keys and allocate nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// namespace → name → `V`, copy-on-write per namespace. Empty namespaces are removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespacedMap<V> {
    namespaces: HashMap<Arc<str>, Arc<HashMap<Box<str>, V>>>,
    len: usize,
}

impl<V> Default for NamespacedMap<V> {
    fn default() -> Self {
        Self {
            namespaces: HashMap::new(),
            len: 0,
        }
    }
}

impl<V: Clone> NamespacedMap<V> {
    /// The value of `name` in `namespace`.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<&V> {
        self.namespaces.get(namespace)?.get(name)
    }

    /// The value of `name` in `namespace`, with the namespace and name as stored.
    pub(crate) fn get_entry(&self, namespace: &str, name: &str) -> Option<(&str, &str, &V)> {
        let (ns, names) = self.namespaces.get_key_value(namespace)?;
        let (name, value) = names.get_key_value(name)?;
        Some((ns, name, value))
    }

    /// Whether `namespace` holds at least one entry.
    #[cfg(test)]
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The shared name of `namespace`, if it holds entries (to reuse in other indexes).
    pub(crate) fn namespace_key(&self, namespace: &str) -> Option<Arc<str>> {
        self.namespaces
            .get_key_value(namespace)
            .map(|(key, _)| Arc::clone(key))
    }

    /// Inserts or replaces; returns the previous value.
    pub(crate) fn insert(&mut self, namespace: &str, name: &str, value: V) -> Option<V> {
        let names = match self.namespaces.get_mut(namespace) {
            Some(names) => Arc::make_mut(names),
            None => Arc::make_mut(self.namespaces.entry(Arc::from(namespace)).or_default()),
        };
        let previous = names.insert(Box::from(name), value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes; returns the removed value.
    pub(crate) fn remove(&mut self, namespace: &str, name: &str) -> Option<V> {
        let names = self.namespaces.get_mut(namespace)?;
        if !names.contains_key(name) {
            return None;
        }
        let names_mut = Arc::make_mut(names);
        let removed = names_mut.remove(name);
        if names_mut.is_empty() {
            self.namespaces.remove(namespace);
        }
        self.len -= 1;
        removed
    }

    /// Number of entries in all namespaces.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, as (namespace, name, value), in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str, &V)> {
        self.namespaces.iter().flat_map(|(namespace, names)| {
            names
                .iter()
                .map(move |(name, value)| (&**namespace, &**name, value))
        })
    }
}

/// Number of shards of a [`ShardedMultiMap`].
pub(crate) const SHARDS: usize = 64;

fn shard_of(ip: &IpAddr) -> usize {
    // Pod and Service addresses differ mostly in their last octets.
    let low = match ip {
        IpAddr::V4(ip) => {
            let [.., a, b] = ip.octets();
            u16::from_be_bytes([a, b])
        }
        IpAddr::V6(ip) => {
            let [.., a, b] = ip.octets();
            u16::from_be_bytes([a, b])
        }
    };
    usize::from(low ^ (low >> 6)) % SHARDS
}

/// One shard of a [`ShardedMultiMap`].
type Shard<V> = Arc<HashMap<IpAddr, Box<[V]>>>;

/// IP address → values, copy-on-write per shard. A key maps to a list because several
/// objects may share an address (the same Pod behind two Services, host-network Pods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardedMultiMap<V> {
    shards: Box<[Shard<V>]>,
}

impl<V> Default for ShardedMultiMap<V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
        }
    }
}

impl<V: Clone + PartialEq> ShardedMultiMap<V> {
    /// The values of `ip` (empty if none).
    pub(crate) fn get(&self, ip: &IpAddr) -> &[V] {
        self.shards[shard_of(ip)]
            .get(ip)
            .map_or(&[][..], |values| &values[..])
    }

    /// Adds `value` to the list of `ip`.
    pub(crate) fn add(&mut self, ip: IpAddr, value: V) {
        let shard = Arc::make_mut(&mut self.shards[shard_of(&ip)]);
        let values = shard.entry(ip).or_default();
        let mut list = std::mem::take(values).into_vec();
        list.push(value);
        *values = list.into_boxed_slice();
    }

    /// Removes one value equal to `value` from the list of `ip`; returns whether one was.
    pub(crate) fn remove_one(&mut self, ip: &IpAddr, value: &V) -> bool {
        let index = shard_of(ip);
        let Some(position) = self.shards[index]
            .get(ip)
            .and_then(|values| values.iter().position(|v| v == value))
        else {
            return false;
        };
        let shard = Arc::make_mut(&mut self.shards[index]);
        if let Some(values) = shard.get_mut(ip) {
            let mut list = std::mem::take(values).into_vec();
            list.remove(position);
            if list.is_empty() {
                shard.remove(ip);
            } else {
                *values = list.into_boxed_slice();
            }
        }
        true
    }

    /// Number of addresses with at least one value.
    pub(crate) fn keys(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_insert_get_remove() {
        let mut map = NamespacedMap::default();
        assert_eq!(map.insert("a", "x", 1), None);
        assert_eq!(map.insert("a", "x", 2), Some(1));
        assert_eq!(map.insert("b", "y", 3), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("a", "x"), Some(&2));
        assert_eq!(map.get("a", "y"), None);
        assert_eq!(map.get_entry("a", "x"), Some(("a", "x", &2)));
        assert!(map.has_namespace("b"));
        assert_eq!(map.namespace_key("b").as_deref(), Some("b"));
        assert_eq!(map.remove("b", "y"), Some(3));
        assert_eq!(map.remove("b", "y"), None);
        assert!(!map.has_namespace("b"), "empty namespaces go away");
        assert_eq!(map.len(), 1);
        let mut all: Vec<_> = map.iter().collect();
        all.sort();
        assert_eq!(all, [("a", "x", &2)]);
    }

    #[test]
    fn namespaced_clones_share_untouched_namespaces() {
        let mut map = NamespacedMap::default();
        map.insert("a", "x", 1);
        map.insert("b", "y", 2);
        let snapshot = map.clone();
        map.insert("a", "z", 3);
        assert!(Arc::ptr_eq(&map.namespaces["b"], &snapshot.namespaces["b"]));
        assert!(!Arc::ptr_eq(
            &map.namespaces["a"],
            &snapshot.namespaces["a"]
        ));
        assert_eq!(snapshot.get("a", "z"), None, "snapshots do not change");
        assert_ne!(map, snapshot);
        map.remove("a", "z");
        assert_eq!(map, snapshot);
    }

    #[test]
    fn sharded_multimap_counts_duplicates() {
        let ip: IpAddr = "10.244.0.5".parse().expect("ip");
        let other: IpAddr = "fd00::5".parse().expect("ip");
        let mut map = ShardedMultiMap::default();
        map.add(ip, "a");
        map.add(ip, "a");
        map.add(ip, "b");
        map.add(other, "c");
        assert_eq!(map.get(&ip), ["a", "a", "b"]);
        assert_eq!(map.keys(), 2);
        let snapshot = map.clone();
        assert!(map.remove_one(&ip, &"a"));
        assert_eq!(map.get(&ip), ["a", "b"]);
        assert_eq!(
            snapshot.get(&ip),
            ["a", "a", "b"],
            "snapshots do not change"
        );
        assert!(!map.remove_one(&ip, &"z"));
        assert!(map.remove_one(&ip, &"a"));
        assert!(map.remove_one(&ip, &"b"));
        assert!(map.get(&ip).is_empty());
        assert_eq!(map.keys(), 1);
    }

    #[test]
    fn shards_spread_addresses() {
        let used: std::collections::HashSet<usize> = (0..=255u8)
            .map(|i| shard_of(&IpAddr::from([10, 244, 0, i])))
            .collect();
        assert_eq!(used.len(), SHARDS);
    }
}
