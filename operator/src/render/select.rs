//! Which config objects a `DNSServer` selects: everything in its own namespace, plus objects
//! in namespaces matching `configSelector.namespaceSelector` that match
//! `configSelector.objectSelector`. Without a namespace selector no other namespace is
//! selected (secure by default, like the Gateway API's `allowedRoutes`); an empty selector
//! (`{}`) selects every namespace. Picked objects come oldest first, which is the order
//! conflicts are decided in.

use crate::api::dnsserver::DNSServer;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A `DNSServer`'s selection, ready to test objects against.
pub struct ServerSelector<'a> {
    own_namespace: String,
    namespace_selector: Option<Selector>,
    object_selector: Option<Selector>,
    namespace_labels: HashMap<String, &'a BTreeMap<String, String>>,
}

impl<'a> ServerSelector<'a> {
    /// Prepares the selection of `server`, reading namespace labels from `namespaces`.
    pub fn new(server: &DNSServer, namespaces: &'a [Arc<Namespace>]) -> Self {
        let selectors = server.spec.config_selector.clone().unwrap_or_default();
        // A selector the API server accepted converts; if one ever does not, select nothing
        // from other namespaces rather than everything.
        let convert = |s: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.map(|s| {
                Selector::try_from(s).unwrap_or_else(|_| {
                    Selector::from_iter([("nameplane.io/invalid-selector", "true")])
                })
            })
        };
        Self {
            own_namespace: server.namespace().unwrap_or_default(),
            namespace_selector: convert(selectors.namespace_selector),
            object_selector: convert(selectors.object_selector),
            namespace_labels: namespaces
                .iter()
                .map(|ns| (ns.name_any(), ns.metadata.labels.as_ref().unwrap_or(&EMPTY)))
                .collect(),
        }
    }

    /// Whether the server takes `object`.
    pub fn selects<K: ResourceExt>(&self, object: &K) -> bool {
        let namespace = object.namespace().unwrap_or_default();
        if namespace == self.own_namespace {
            return true;
        }
        let namespace_ok = self.namespace_selector.as_ref().is_some_and(|s| {
            s.matches(
                self.namespace_labels
                    .get(namespace.as_str())
                    .copied()
                    .unwrap_or(&EMPTY),
            )
        });
        namespace_ok
            && self
                .object_selector
                .as_ref()
                .is_none_or(|s| s.matches(object.labels()))
    }

    /// The selected objects among `objects`, oldest first (then by namespace and name).
    pub fn pick<K: ResourceExt>(&self, objects: &[Arc<K>]) -> Vec<Arc<K>> {
        let mut picked: Vec<Arc<K>> = objects
            .iter()
            .filter(|o| self.selects(o.as_ref()))
            .cloned()
            .collect();
        picked.sort_by_key(|o| age_order(o.as_ref()));
        picked
    }
}

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// Sort key that puts older objects first; objects without a timestamp (never the case for
/// stored objects) go last.
pub fn age_order<K: ResourceExt>(object: &K) -> (i64, String, String) {
    let created = object
        .creation_timestamp()
        .map(|t| t.0.as_second())
        .unwrap_or(i64::MAX);
    (
        created,
        object.namespace().unwrap_or_default(),
        object.name_any(),
    )
}
