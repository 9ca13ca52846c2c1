//! The Service watch: Kubernetes events in, [`ServiceIndex`] snapshots out.
//!
//! [`IndexWriter`] holds the handling of watcher events and no I/O, so it is tested with
//! synthetic events; [`run`] connects it to the API server:
//!
//! - `Apply`/`Delete` change the live index in place (copy-on-write per namespace);
//! - `Init` starts a re-list into a separate buffer while the old index keeps serving;
//!   `InitDone` replaces the index with the buffer in one step and marks it synced. That is
//!   also how Services deleted while the watch was down (410 Gone, API server restart)
//!   disappear;
//! - errors are logged and the watcher's default backoff retries, forever: an unreachable API
//!   server never stops the server answering from what it last knew.
//!
//! Events that arrive together are applied as one batch and published as one snapshot.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::index::{ServiceEntry, ServiceIndex};
use crate::shutdown::Shutdown;
use crate::state::State;

/// Most events applied before a snapshot is published, when events arrive faster than they
/// are handled (a large initial list, a burst of changes).
const MAX_BATCH: usize = 512;

/// The current unix time in seconds, truncated to 32 bits: the SOA serial of a change.
pub fn unix_serial() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Truncation is intended: SOA serials are 32-bit sequence numbers (RFC 1982).
    secs as u32
}

/// The cut-down form of a Service: namespace, name and the cluster IPs.
///
/// Uses `spec.clusterIPs` and falls back to `spec.clusterIP` for API servers that do not
/// fill the former.
pub fn compact(service: &Service) -> Option<(String, String, ServiceEntry)> {
    let namespace = service.namespace()?;
    let name = service.name_any();
    let spec = service.spec.as_ref();
    let ips = spec.and_then(|spec| {
        spec.cluster_ips
            .as_deref()
            .filter(|ips| !ips.is_empty())
            .or(spec.cluster_ip.as_ref().map(std::slice::from_ref))
    });
    let entry = ServiceEntry::from_cluster_ips(ips.unwrap_or_default().iter().map(String::as_str));
    Some((namespace, name, entry))
}

/// Applies watcher events to a [`ServiceIndex`].
#[derive(Debug)]
pub struct IndexWriter {
    index: ServiceIndex,
    relist: Option<ServiceIndex>,
    clock: fn() -> u32,
}

impl IndexWriter {
    /// A writer starting from an empty, unsynced index; `clock` gives the serial of a change
    /// (normally [`unix_serial`]).
    pub fn new(clock: fn() -> u32) -> Self {
        Self {
            index: ServiceIndex::new(clock()),
            relist: None,
            clock,
        }
    }

    /// The index as it stands, to publish.
    pub fn snapshot(&self) -> Arc<ServiceIndex> {
        Arc::new(self.index.clone())
    }

    /// Applies one event; returns whether the published index must change.
    pub fn apply(&mut self, event: watcher::Event<Service>) -> bool {
        match event {
            watcher::Event::Apply(service) => {
                let Some((namespace, name, entry)) = compact(&service) else {
                    return false;
                };
                self.changed(|index| index.insert(&namespace, &name, entry))
            }
            watcher::Event::Delete(service) => {
                let Some(namespace) = service.namespace() else {
                    return false;
                };
                let name = service.name_any();
                self.changed(|index| index.remove(&namespace, &name))
            }
            watcher::Event::Init => {
                self.relist = Some(ServiceIndex::new(self.index.serial()));
                false
            }
            watcher::Event::InitApply(service) => {
                if let Some((namespace, name, entry)) = compact(&service) {
                    let serial = self.index.serial();
                    self.relist
                        .get_or_insert_with(|| ServiceIndex::new(serial))
                        .insert(&namespace, &name, entry);
                }
                false
            }
            watcher::Event::InitDone => {
                let mut fresh = self
                    .relist
                    .take()
                    .unwrap_or_else(|| ServiceIndex::new(self.index.serial()));
                let was_synced = self.index.synced();
                let same = fresh.same_services(&self.index);
                fresh.set_synced(true);
                fresh.set_serial(if same {
                    self.index.serial()
                } else {
                    (self.clock)()
                });
                self.index = fresh;
                info!(services = self.index.len(), "Service list complete");
                !same || !was_synced
            }
        }
    }

    fn changed(&mut self, change: impl FnOnce(&mut ServiceIndex) -> bool) -> bool {
        let changed = change(&mut self.index);
        if changed {
            self.index.set_serial((self.clock)());
        }
        changed
    }
}

/// Watches every Service in the cluster and publishes each new index to `state`, until
/// `shutdown` fires.
pub async fn run(client: Client, state: Arc<State>, mut shutdown: Shutdown) {
    let api: Api<Service> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .ready_chunks(MAX_BATCH)
        .boxed();
    let mut writer = IndexWriter::new(unix_serial);
    loop {
        let batch = tokio::select! {
            batch = events.next() => batch,
            () = shutdown.wait() => return,
        };
        let Some(batch) = batch else {
            warn!("Service watch ended");
            return;
        };
        let mut changed = false;
        for event in batch {
            match event {
                Ok(event) => changed |= writer.apply(event),
                Err(error) => warn!(%error, "Service watch failed, retrying with backoff"),
            }
        }
        if changed {
            state.publish_services(writer.snapshot());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;
    use std::cell::Cell;
    use std::net::Ipv4Addr;

    thread_local! {
        // Per test thread, so tests running in parallel do not share a clock.
        static NOW: Cell<u32> = const { Cell::new(100) };
    }

    fn clock() -> u32 {
        NOW.with(Cell::get)
    }

    fn set_now(now: u32) {
        NOW.with(|cell| cell.set(now));
    }

    fn service(namespace: &str, name: &str, ips: &[&str]) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ips: Some(ips.iter().map(|ip| (*ip).to_owned()).collect()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn compact_prefers_cluster_ips_and_falls_back_to_cluster_ip() {
        let (ns, name, entry) =
            compact(&service("default", "web", &["10.0.0.1", "fd00::1"])).expect("namespaced");
        assert_eq!((ns.as_str(), name.as_str()), ("default", "web"));
        assert_eq!(entry.ipv4().len() + entry.ipv6().len(), 2);

        let mut old = service("default", "old", &[]);
        if let Some(spec) = old.spec.as_mut() {
            spec.cluster_ip = Some("10.0.0.9".into());
        }
        let (_, _, entry) = compact(&old).expect("namespaced");
        assert_eq!(entry.ipv4(), &[Ipv4Addr::new(10, 0, 0, 9)]);

        let mut cluster_scoped = service("x", "y", &[]);
        cluster_scoped.metadata.namespace = None;
        assert!(compact(&cluster_scoped).is_none());
    }

    #[test]
    fn initial_list_then_changes() {
        set_now(100);
        let mut writer = IndexWriter::new(clock);
        assert!(!writer.apply(watcher::Event::Init));
        assert!(!writer.apply(watcher::Event::InitApply(service(
            "a",
            "web",
            &["10.0.0.1"]
        ))));
        assert!(!writer.snapshot().synced(), "not synced before InitDone");
        set_now(200);
        assert!(writer.apply(watcher::Event::InitDone));
        let snapshot = writer.snapshot();
        assert!(snapshot.synced());
        assert_eq!(snapshot.serial(), 200);
        assert!(snapshot.get("a", "web").is_some());

        set_now(300);
        assert!(writer.apply(watcher::Event::Apply(service("a", "db", &["10.0.0.2"]))));
        assert!(
            !writer.apply(watcher::Event::Apply(service("a", "db", &["10.0.0.2"]))),
            "unchanged Service"
        );
        assert_eq!(writer.snapshot().serial(), 300);
        assert!(writer.apply(watcher::Event::Delete(service("a", "web", &[]))));
        assert!(!writer.apply(watcher::Event::Delete(service("a", "web", &[]))));
        assert!(
            snapshot.get("a", "web").is_some(),
            "old snapshots do not change"
        );
        assert!(writer.snapshot().get("a", "web").is_none());
    }

    #[test]
    fn relist_replaces_atomically_and_drops_missed_deletes() {
        set_now(100);
        let mut writer = IndexWriter::new(clock);
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(service("a", "x", &["10.0.0.1"])));
        writer.apply(watcher::Event::InitApply(service("a", "y", &["10.0.0.2"])));
        writer.apply(watcher::Event::InitDone);

        // The watch restarts; "y" was deleted while it was down.
        set_now(500);
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(service("a", "x", &["10.0.0.1"])));
        assert!(
            writer.snapshot().get("a", "y").is_some(),
            "old index serves during the re-list"
        );
        assert!(writer.apply(watcher::Event::InitDone));
        let snapshot = writer.snapshot();
        assert!(snapshot.get("a", "y").is_none());
        assert!(snapshot.synced());
        assert_eq!(snapshot.serial(), 500);

        // An identical re-list changes nothing, not even the serial.
        set_now(900);
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(service("a", "x", &["10.0.0.1"])));
        assert!(!writer.apply(watcher::Event::InitDone));
        assert_eq!(writer.snapshot().serial(), 500);
    }
}
