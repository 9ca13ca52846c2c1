//! The watch task: Services, EndpointSlices, Namespaces (and Pods, and Nodes, when the
//! config needs them) from the API server into [`Cluster`] snapshots.
//!
//! - It waits for the first config: the config says what to select ([`WatchSpec`]: label
//!   selectors for Services/EndpointSlices and Namespaces, whether Pods and Nodes are
//!   needed). The
//!   selectors go to the API server, so unselected objects never reach this process.
//! - Each resource is one `kube` watcher: an initial list (paged), then a watch from its
//!   resource version. A watch that fails (connection lost, API server restarted) is resumed
//!   from the last version; a `410 Gone` (the version was compacted away) makes the watcher
//!   re-list, which [`ClusterWriter`] swaps in atomically when complete.
//! - Errors never stop the task: each is logged and counted, and the watcher retries with
//!   [`WatchBackoff`] (0.5 s doubling to 5 s, with jitter, reset after 2 minutes of health),
//!   forever. Meanwhile the last snapshot keeps answering: an unreachable API server never
//!   stops DNS, and once it is back the server is current again within seconds.
//! - The streams are merged; events that arrive together are applied as one batch and
//!   published as one snapshot.
//! - When a new config changes the [`WatchSpec`], the watches are restarted with the new
//!   selectors; each re-lists while the previous tables keep serving. A config that turns
//!   the Pod watch on waits ([`State::set_pipeline`]) until a snapshot with the Pod list
//!   complete is published; every spec change publishes the current snapshot, so a config
//!   never waits for a list that already completed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch as channel;
use tracing::{debug, info, warn};

use super::backoff::WatchBackoff;
use super::index::Cluster;
use super::writer::{ClusterWriter, Event, unix_serial};
use crate::pipeline::WatchSpec;
use crate::shutdown::Shutdown;
use crate::state::State;

/// Most events applied before a snapshot is published, when events arrive faster than they
/// are handled (a large initial list, a burst of changes).
const MAX_BATCH: usize = 512;

/// A watched resource, as named in logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Services.
    Services,
    /// EndpointSlices.
    EndpointSlices,
    /// Namespaces.
    Namespaces,
    /// Pods.
    Pods,
    /// Nodes.
    Nodes,
}

impl Resource {
    /// The name used in logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::EndpointSlices => "endpointslices",
            Self::Namespaces => "namespaces",
            Self::Pods => "pods",
            Self::Nodes => "nodes",
        }
    }
}

impl Event {
    /// Which resource the event is about.
    #[cfg(test)]
    pub(crate) fn resource(&self) -> Resource {
        match self {
            Self::Service(_) => Resource::Services,
            Self::Slice(_) => Resource::EndpointSlices,
            Self::Namespace(_) => Resource::Namespaces,
            Self::Pod(_) => Resource::Pods,
            Self::Node(_) => Resource::Nodes,
        }
    }

    fn is_init_done(&self) -> bool {
        matches!(
            self,
            Self::Service(watcher::Event::InitDone)
                | Self::Slice(watcher::Event::InitDone)
                | Self::Namespace(watcher::Event::InitDone)
                | Self::Pod(watcher::Event::InitDone)
                | Self::Node(watcher::Event::InitDone)
        )
    }
}

type Item = (Resource, Result<Event, watcher::Error>);

fn one<K>(
    api: Api<K>,
    selector: Option<&str>,
    resource: Resource,
    wrap: fn(watcher::Event<K>) -> Event,
) -> BoxStream<'static, Item>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut config = watcher::Config::default();
    if let Some(selector) = selector {
        config = config.labels(selector);
    }
    watcher(api, config)
        .backoff(WatchBackoff::for_watch())
        .map(move |result| (resource, result.map(wrap)))
        .boxed()
}

/// The merged event stream for `spec`.
fn streams(client: &Client, spec: &WatchSpec) -> BoxStream<'static, Item> {
    let labels = spec.label_selector.as_deref();
    let mut all = vec![
        one(
            Api::<Service>::all(client.clone()),
            labels,
            Resource::Services,
            Event::Service,
        ),
        one(
            Api::<EndpointSlice>::all(client.clone()),
            labels,
            Resource::EndpointSlices,
            Event::Slice,
        ),
        one(
            Api::<Namespace>::all(client.clone()),
            spec.namespace_selector.as_deref(),
            Resource::Namespaces,
            Event::Namespace,
        ),
    ];
    if spec.pods {
        all.push(one(
            Api::<Pod>::all(client.clone()),
            None,
            Resource::Pods,
            Event::Pod,
        ));
    }
    if spec.nodes {
        all.push(one(
            Api::<Node>::all(client.clone()),
            None,
            Resource::Nodes,
            Event::Node,
        ));
    }
    stream::select_all(all).boxed()
}

/// Publishes `cluster` and updates the watch metrics.
fn publish(state: &State, cluster: Arc<Cluster>) {
    let metrics = state.metrics();
    let sync = cluster.sync_state();
    metrics.watched(
        Resource::Services.label(),
        cluster.services.len(),
        Some(sync.services),
    );
    metrics.watched(
        Resource::EndpointSlices.label(),
        cluster.endpoints.services(),
        Some(sync.endpoints),
    );
    metrics.watched(
        Resource::Namespaces.label(),
        cluster.namespaces.len(),
        Some(sync.namespaces),
    );
    metrics.watched(
        Resource::Pods.label(),
        cluster.pods.as_ref().map_or(0, |pods| pods.ips()),
        sync.pods,
    );
    metrics.shared_pod_ips(cluster.pods.as_ref().map(|pods| pods.shared()));
    metrics.watched(
        Resource::Nodes.label(),
        cluster.nodes.as_ref().map_or(0, |nodes| nodes.len()),
        sync.nodes,
    );
    state.publish_cluster(cluster);
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// Waits for the next spec; `None` when the sender is gone or on shutdown.
async fn next_spec(
    specs: &mut channel::Receiver<Option<WatchSpec>>,
    shutdown: &mut Shutdown,
) -> Option<WatchSpec> {
    loop {
        if let Some(spec) = specs.borrow_and_update().clone() {
            return Some(spec);
        }
        tokio::select! {
            changed = specs.changed() => changed.ok()?,
            () = shutdown.wait() => return None,
        }
    }
}

/// Watches the cluster for the current config and publishes each new snapshot to `state`,
/// until `shutdown` fires.
pub async fn run(
    client: Client,
    state: Arc<State>,
    mut specs: channel::Receiver<Option<WatchSpec>>,
    mut shutdown: Shutdown,
) {
    let mut writer = ClusterWriter::new(unix_serial);
    let Some(mut spec) = next_spec(&mut specs, &mut shutdown).await else {
        return;
    };
    loop {
        // Published even when nothing changed: a config waiting for the Pod (or Node) list
        // is swapped in when a snapshot shows it complete (State::publish_cluster), and the
        // table it waits for may be the one already here.
        writer.set_pods_watched(spec.pods);
        writer.set_nodes_watched(spec.nodes);
        publish(&state, writer.snapshot());
        info!(
            label_selector = spec.label_selector.as_deref().unwrap_or(""),
            namespace_selector = spec.namespace_selector.as_deref().unwrap_or(""),
            pods = spec.pods,
            nodes = spec.nodes,
            "watching Services, EndpointSlices, Namespaces{}{}",
            if spec.pods { ", Pods" } else { "" },
            if spec.nodes { ", Nodes" } else { "" }
        );
        let mut events = streams(&client, &spec).ready_chunks(MAX_BATCH);
        loop {
            let batch = tokio::select! {
                batch = events.next() => batch,
                changed = specs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = specs.borrow_and_update().clone();
                    match next {
                        Some(next) if next != spec => {
                            info!("the config changed what to watch; restarting the watches");
                            spec = next;
                            break;
                        }
                        _ => {
                            // Same watches; a config may still wait for this snapshot.
                            publish(&state, writer.snapshot());
                            continue;
                        }
                    }
                }
                () = shutdown.wait() => return,
            };
            let Some(batch) = batch else {
                // Watchers retry forever; an ended stream is unexpected. Start again.
                warn!("the watch streams ended; restarting them");
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            };
            apply_batch(&state, &mut writer, batch);
        }
    }
}

/// Applies one batch of watch events and, if the tables changed, publishes the snapshot
/// and records the programming latency of the changes that carried a trigger time.
fn apply_batch(state: &State, writer: &mut ClusterWriter, batch: Vec<Item>) {
    let mut changed = false;
    for (resource, event) in batch {
        match event {
            Ok(event) => {
                let done = event.is_init_done();
                changed |= writer.apply(event);
                if done {
                    info!(resource = resource.label(), "list complete");
                }
            }
            Err(error) => {
                state.metrics().watch_error(resource.label());
                warn!(resource = resource.label(), %error, "watch failed; retrying with backoff, answering from what is known");
            }
        }
    }
    if changed {
        let snapshot = writer.snapshot();
        let synced = snapshot.synced();
        publish(state, snapshot);
        let now = now_nanos();
        for sample in writer.take_latencies() {
            let latency = now.saturating_sub(sample.trigger_time);
            state.metrics().programming(
                sample.service_kind,
                Duration::from_nanos(u64::try_from(latency).unwrap_or(u64::MAX)),
            );
        }
        debug!(synced, "published a cluster snapshot");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::Settings;
    use crate::shutdown;

    #[tokio::test]
    async fn waits_for_the_first_spec_and_stops_on_shutdown() {
        let (sender, mut specs) = channel::channel(None);
        let (trigger, mut stop) = shutdown::channel();
        let spec = WatchSpec {
            pods: true,
            ..WatchSpec::default()
        };
        let expected = spec.clone();
        let waiter = tokio::spawn(async move { next_spec(&mut specs, &mut stop).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no config yet: nothing to watch");
        sender.send_replace(Some(spec));
        assert_eq!(waiter.await.expect("task"), Some(expected));

        let (_sender, mut specs) = channel::channel(None::<WatchSpec>);
        let (trigger2, mut stop) = shutdown::channel();
        trigger2.fire();
        assert_eq!(next_spec(&mut specs, &mut stop).await, None);
        drop(trigger);
    }

    #[test]
    fn publishing_updates_the_state_and_the_watch_metrics() {
        let state = State::new(
            Metrics::new("127.0.0.1:53".parse().expect("addr")),
            Settings::default(),
        );
        let mut cluster = Cluster::new(1);
        cluster.namespaces.add("a");
        cluster.set_synced(true);
        cluster.set_pods_watched(true);
        cluster.set_nodes_watched(true);
        publish(&state, Arc::new(cluster));
        assert!(state.cluster().namespaces.contains("a"));
        let text = state.metrics().encode();
        for line in [
            r#"nameplane_kubernetes_objects{resource="namespaces"} 1"#,
            r#"nameplane_kubernetes_synced{resource="services"} 1"#,
            r#"nameplane_kubernetes_synced{resource="pods"} 0"#,
            r#"nameplane_kubernetes_shared_pod_ips{outcome="ambiguous"} 0"#,
            r#"nameplane_kubernetes_synced{resource="nodes"} 0"#,
            r#"nameplane_kubernetes_objects{resource="nodes"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        // Pods no longer watched: their series go away.
        let mut cluster = Cluster::new(2);
        cluster.set_synced(true);
        publish(&state, Arc::new(cluster));
        let text = state.metrics().encode();
        assert!(!text.contains(r#"resource="pods""#));
        assert!(
            !text.contains("nameplane_kubernetes_shared_pod_ips{"),
            "{text}"
        );
        assert!(!text.contains(r#"resource="nodes""#));
    }

    #[test]
    fn events_name_their_resource() {
        assert_eq!(Event::Pod(watcher::Event::Init).resource().label(), "pods");
        assert!(Event::Namespace(watcher::Event::InitDone).is_init_done());
        assert!(!Event::Service(watcher::Event::Init).is_init_done());
    }
}
