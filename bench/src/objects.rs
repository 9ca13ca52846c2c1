//! The Kubernetes objects both servers serve: names, addresses, and their creation.
//!
//! Layout (the same for every run, so results compare across runs):
//! - ClusterIP Service `s<i>` lives in namespace `bench-<i mod namespaces>` (two digits), with
//!   one named port `http` 80/TCP and selector `app: s<i>`;
//! - Pod `p<j>` (IP 10.244.0.0 + 1 + j) backs one ClusterIP Service, so the real EndpointSlice
//!   controller makes slices for every Service, as in a real cluster;
//! - headless Service `h<n>` in `bench-headless` has exactly `n` Pods `h<n>-<k>`
//!   (IPs from 10.250.0.0), so its A answer has `n` records;
//! - every Pod is bound to `fake-node` and its status patched Running + Ready with its IP.
//!
//! The large set extends the small one: Pods of the small set keep their Service, and the
//! Pods added for the large set back the Services added for it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::settings::ObjectSet;

/// Namespace of the headless Services.
pub const HEADLESS_NAMESPACE: &str = "bench-headless";

/// Requests in flight while creating objects.
const CONCURRENCY: usize = 48;

/// Where every object of the bench lives and what it is called.
#[derive(Clone, Debug)]
pub struct Layout {
    /// (ClusterIP Services, their Pods) of each tier, cumulative.
    tiers: Vec<(usize, usize)>,
    namespaces: usize,
}

impl Layout {
    /// The layout `set` is part of: small and large share one (large extends small).
    pub fn for_set(set: &ObjectSet) -> Self {
        let tiers_of = |sets: &[ObjectSet]| {
            sets.iter()
                .map(|s| (s.cluster_ip_services(), s.cluster_ip_pods()))
                .collect()
        };
        let tiers = if set.name == "small" || set.name == "large" {
            tiers_of(&[ObjectSet::small(), ObjectSet::large()])
        } else {
            tiers_of(std::slice::from_ref(set))
        };
        Self {
            tiers,
            namespaces: set.namespaces,
        }
    }

    /// The ClusterIP Service index that Pod `j` backs.
    pub fn service_of_pod(&self, j: usize) -> usize {
        let (mut s0, mut p0) = (0, 0);
        for &(s, p) in &self.tiers {
            if j < p || (s, p) == *self.tiers.last().expect("one tier") {
                return s0 + (j - p0) % (s - s0).max(1);
            }
            (s0, p0) = (s, p);
        }
        unreachable!("the last tier takes every pod")
    }

    /// Namespace of ClusterIP Service `i`.
    pub fn namespace_of(&self, i: usize) -> String {
        format!("bench-{:02}", i % self.namespaces)
    }

    /// Every namespace of ClusterIP Services.
    pub fn namespaces(&self) -> Vec<String> {
        (0..self.namespaces)
            .map(|i| format!("bench-{i:02}"))
            .collect()
    }

    /// `s<i>.<ns>.svc.cluster.local.`
    pub fn service_fqdn(&self, i: usize) -> String {
        format!("s{i}.{}.svc.cluster.local.", self.namespace_of(i))
    }

    /// How many of the first `pods` Pods back each of the first `services` Services.
    pub fn pods_per_service(&self, services: usize, pods: usize) -> Vec<usize> {
        let mut counts = vec![0; services];
        for j in 0..pods {
            let s = self.service_of_pod(j);
            if s < services {
                counts[s] += 1;
            }
        }
        counts
    }
}

/// IP of ClusterIP-backing Pod `j`.
pub fn pod_ip(j: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 1)) + j as u32)
}

/// IP of endpoint `k` of the headless Service at position `h` of the set's list.
pub fn headless_pod_ip(h: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 0, 1)) + (h as u32) * 4096 + k as u32)
}

/// The dashed form of an IPv4 address used in pod names (`10-244-0-5`).
pub fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// What exists in the cluster so far.
#[derive(Debug, Default)]
pub struct Created {
    /// ClusterIP Services `s0..`, with their ClusterIPs.
    pub cluster_ips: Vec<Ipv4Addr>,
    /// Pods `p0..` created and made Ready.
    pub pods: usize,
    /// Headless Services (and their Pods) created.
    pub headless: bool,
}

fn service_json(namespace: &str, name: &str, headless: bool) -> Service {
    let mut spec = json!({
        "selector": {"app": name},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
    });
    if headless {
        spec["clusterIP"] = json!("None");
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "nameplane"}},
        "spec": spec,
    }))
    .expect("a valid Service")
}

fn pod_json(namespace: &str, name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app": app, "bench": "nameplane"}},
        "spec": {
            "nodeName": "fake-node",
            "containers": [{"name": "app", "image": "registry.invalid/bench:none",
                            "ports": [{"name": "http", "containerPort": 8080}]}],
        },
    }))
    .expect("a valid Pod")
}

/// Retries `op` on errors that a busy API server gives (up to 6 tries, growing back-off).
async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < 6 => {
                eprintln!("[bench] {what}: {error}; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => return Err(error).with_context(|| what.to_string()),
        }
    }
    unreachable!()
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Creates namespace `name` (fine when it exists).
pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// Creates a Service and returns its ClusterIP (`None` for headless ones).
pub async fn create_service(
    client: &Client,
    namespace: &str,
    name: &str,
    headless: bool,
) -> Result<Option<Ipv4Addr>> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = service_json(namespace, name, headless);
    let created = retry(&format!("creating Service {namespace}/{name}"), || async {
        match api.create(&PostParams::default(), &service).await {
            Err(e) if is_conflict(&e) => api.get(name).await,
            other => other,
        }
    })
    .await?;
    Ok(created
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse().ok()))
}

/// Creates a Pod on `fake-node` labelled `app: <app>` and patches its status Running + Ready
/// with `ip` (fine when it exists).
pub async fn create_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    app: &str,
    ip: Ipv4Addr,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pod_json(namespace, name, app);
    retry(&format!("creating Pod {namespace}/{name}"), || async {
        match api.create(&PostParams::default(), &pod).await {
            Err(e) if is_conflict(&e) => api.get(name).await,
            other => other,
        }
    })
    .await?;
    let now = "2026-01-01T00:00:00Z";
    let status = json!({"status": {
        "phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
        "hostIP": "127.0.0.1", "startTime": now,
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
    }});
    retry(
        &format!("patching the status of Pod {namespace}/{name}"),
        || async {
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
        },
    )
    .await?;
    Ok(())
}

/// Runs `jobs` with [`CONCURRENCY`] in flight, printing progress every 2 s.
async fn run_all<F>(what: &str, jobs: Vec<F>) -> Result<Vec<F::Output>>
where
    F: std::future::Future,
{
    let total = jobs.len();
    if total == 0 {
        return Ok(Vec::new());
    }
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let ticker = {
        let done = done.clone();
        let what = what.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let n = done.load(Ordering::Relaxed);
                eprintln!(
                    "[bench]   {what}: {n}/{total} ({:.0}/s)",
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let results: Vec<F::Output> = futures::stream::iter(jobs.into_iter().map(|job| {
        let done = done.clone();
        async move {
            let out = job.await;
            done.fetch_add(1, Ordering::Relaxed);
            out
        }
    }))
    .buffered(CONCURRENCY)
    .collect()
    .await;
    ticker.abort();
    eprintln!(
        "[bench]   {what}: {total} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(results)
}

/// Creates what `set` has and `created` lacks.
pub async fn create_set(client: &Client, set: &ObjectSet, created: &mut Created) -> Result<()> {
    let layout = Layout::for_set(set);
    let started = Instant::now();
    eprintln!(
        "[bench] creating object set {}: {} Services ({} headless with {:?} endpoints), {} Pods",
        set.name,
        set.services,
        set.headless.len(),
        set.headless,
        set.pods
    );
    for ns in layout.namespaces() {
        create_namespace(client, &ns).await?;
    }
    create_namespace(client, HEADLESS_NAMESPACE).await?;

    if !created.headless {
        for &n in &set.headless {
            create_service(client, HEADLESS_NAMESPACE, &format!("h{n}"), true).await?;
        }
        let jobs: Vec<_> = set
            .headless
            .iter()
            .enumerate()
            .flat_map(|(h, &n)| (0..n).map(move |k| (h, n, k)))
            .map(|(h, n, k)| {
                let client = client.clone();
                async move {
                    create_pod(
                        &client,
                        HEADLESS_NAMESPACE,
                        &format!("h{n}-{k}"),
                        &format!("h{n}"),
                        headless_pod_ip(h, k),
                    )
                    .await
                }
            })
            .collect();
        for r in run_all("headless pods", jobs).await? {
            r?;
        }
        created.headless = true;
    }

    let first = created.cluster_ips.len();
    let jobs: Vec<_> = (first..set.cluster_ip_services())
        .map(|i| {
            let client = client.clone();
            let ns = layout.namespace_of(i);
            async move {
                (
                    i,
                    create_service(&client, &ns, &format!("s{i}"), false).await,
                )
            }
        })
        .collect();
    let mut ips = run_all("services", jobs).await?;
    ips.sort_by_key(|(i, _)| *i);
    for (i, ip) in ips {
        let ip = ip?.with_context(|| format!("Service s{i} has no ClusterIP"))?;
        created.cluster_ips.push(ip);
    }

    let jobs: Vec<_> =
        (created.pods..set.cluster_ip_pods())
            .map(|j| {
                let client = client.clone();
                let s = layout.service_of_pod(j);
                let ns = layout.namespace_of(s);
                async move {
                    create_pod(&client, &ns, &format!("p{j}"), &format!("s{s}"), pod_ip(j)).await
                }
            })
            .collect();
    for r in run_all("pods", jobs).await? {
        r?;
    }
    created.pods = set.cluster_ip_pods();
    eprintln!(
        "[bench] object set {} created in {:.0} s",
        set.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Ready endpoints per Service (`namespace/name`) over every EndpointSlice.
pub async fn ready_endpoints(client: &Client) -> Result<HashMap<String, usize>> {
    let api: Api<EndpointSlice> = Api::all(client.clone());
    let mut counts = HashMap::new();
    let mut params = ListParams::default().limit(2000);
    loop {
        let page = api.list(&params).await.context("listing EndpointSlices")?;
        for slice in &page.items {
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            else {
                continue;
            };
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            let ready = slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                .count();
            *counts.entry(format!("{ns}/{service}")).or_insert(0) += ready;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(counts)
}

/// Waits until the EndpointSlice controller has published every Pod of `set` as a ready
/// endpoint of its Service.
pub async fn wait_for_slices(client: &Client, set: &ObjectSet, timeout: Duration) -> Result<()> {
    let layout = Layout::for_set(set);
    let expected = layout.pods_per_service(set.cluster_ip_services(), set.cluster_ip_pods());
    let started = Instant::now();
    loop {
        let counts = ready_endpoints(client).await?;
        let headless_ok = set
            .headless
            .iter()
            .filter(|&&n| counts.get(&format!("{HEADLESS_NAMESPACE}/h{n}")) == Some(&n))
            .count();
        let cluster_ok = expected
            .iter()
            .enumerate()
            .filter(|&(i, &n)| {
                counts
                    .get(&format!("{}/s{i}", layout.namespace_of(i)))
                    .copied()
                    .unwrap_or(0)
                    == n
            })
            .count();
        let total = expected.len() + set.headless.len();
        let ok = cluster_ok + headless_ok;
        if ok == total {
            eprintln!(
                "[bench] EndpointSlices complete for all {total} Services ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "EndpointSlices incomplete after {timeout:?}: {ok}/{total} Services have all their endpoints"
            );
        }
        eprintln!("[bench]   EndpointSlices: {ok}/{total} Services complete");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Pods of every namespace (a consistency check for the report).
pub async fn count_pods(client: &Client) -> Result<usize> {
    let api: Api<Pod> = Api::all(client.clone());
    let mut n = 0;
    let mut params = ListParams::default().limit(5000);
    loop {
        let page = api.list_metadata(&params).await?;
        n += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_extends_small() {
        let small = Layout::for_set(&ObjectSet::small());
        let large = Layout::for_set(&ObjectSet::large());
        let s = ObjectSet::small();
        for j in [0, 1, 996, 997, 5000, s.cluster_ip_pods() - 1] {
            assert_eq!(small.service_of_pod(j), large.service_of_pod(j));
            assert!(small.service_of_pod(j) < s.cluster_ip_services());
        }
        let l = ObjectSet::large();
        let first_new = large.service_of_pod(s.cluster_ip_pods());
        assert_eq!(
            first_new,
            s.cluster_ip_services(),
            "new pods back new services"
        );
        let counts = large.pods_per_service(l.cluster_ip_services(), l.cluster_ip_pods());
        assert_eq!(counts.iter().sum::<usize>(), l.cluster_ip_pods());
        assert!(
            counts.iter().all(|&c| c >= 1),
            "every Service has endpoints"
        );
    }

    #[test]
    fn smoke_layout_covers_every_service() {
        let set = ObjectSet::smoke();
        let layout = Layout::for_set(&set);
        let counts = layout.pods_per_service(set.cluster_ip_services(), set.cluster_ip_pods());
        assert!(counts.iter().all(|&c| c >= 1));
        assert_eq!(layout.service_fqdn(5), "s5.bench-01.svc.cluster.local.");
    }

    #[test]
    fn addresses_do_not_overlap() {
        assert_eq!(pod_ip(0), Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(pod_ip(49_999), Ipv4Addr::new(10, 244, 195, 80));
        assert_eq!(headless_pod_ip(0, 0), Ipv4Addr::new(10, 250, 0, 1));
        assert_eq!(headless_pod_ip(2, 999), Ipv4Addr::new(10, 250, 35, 232));
        assert_eq!(dashed(pod_ip(4)), "10-244-0-5");
    }
}
