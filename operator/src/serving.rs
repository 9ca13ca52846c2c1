//! Whether a `DNSServer`'s Pods serve its published config: the evidence behind its `Ready`.
//!
//! `Ready=True` needs the wanted replicas ready **and** serving the published config hash. The
//! Deployment's status says how many Pods of the current template are ready; only the Pods
//! themselves know which config they serve. Each `nameplane-dns` Pod's admin `/ready` body
//! ends with `config: <hash>` and may carry `rejected: <reason>` (the newest ConfigMap was
//! refused) and `forwarding-loop: <domain> <server>` lines (see the DNS server's `admin.rs`).
//! The operator asks every ready Pod for it at `<podIP>:<container port named admin>` — the
//! DNS server's RBAC stays list/watch only, so it writes nothing the operator could read.
//!
//! The asking is bounded: [`PROBE_TIMEOUT`] per Pod, [`PROBE_CONCURRENCY`] Pods at once, and
//! none at all while the Pods (names, resource versions) and the hash are those of the last
//! round in which every wanted Pod served the hash ([`ServingCache`]): a settled server
//! costs one Pod list per reconcile, and the reconciler requeues quickly only while a rollout
//! is under way.
//!
//! What the Pods' status says first ([`pod_blocker`]): a Pod that cannot pull its image,
//! crash-loops or cannot be scheduled stalls the rollout (`Stalled=True`) — waiting would not
//! help until someone changes the image, the config or the cluster.

use crate::status::Outcome;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Name of the DNS container's port that serves `/ready` (see [`crate::workload`]).
pub const ADMIN_PORT_NAME: &str = "admin";
/// Time allowed for one Pod's `/ready`, connect to last byte.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pods asked at once for one `DNSServer`.
pub const PROBE_CONCURRENCY: usize = 8;
/// Largest `/ready` body read.
const MAX_BODY: usize = 16 * 1024;

/// Reason while Pods of a new template are created, become ready or old ones go away.
pub const PODS_ROLLING_OUT: &str = "PodsRollingOut";
/// Reason while ready Pods have not yet loaded the published config.
pub const CONFIG_ROLLING_OUT: &str = "ConfigRollingOut";
/// Reason when a Pod refused the published config (`rejected:` on `/ready`).
pub const CONFIG_REJECTED: &str = "ConfigRejected";
/// Reason when a Pod detected a forwarding loop (`forwarding-loop:` on `/ready`).
pub const FORWARDING_LOOP: &str = "ForwardingLoop";

/// What one Pod's `/ready` body says about its config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadyBody {
    /// The hash of the config being served (`config: <hash>`); `None` for `none` or absent.
    pub config: Option<String>,
    /// Why the newest ConfigMap version was refused (`rejected: <reason>`).
    pub rejected: Option<String>,
    /// Detected forwarding loops, each `<forwarder domain> <server ip:port>`.
    pub forwarding_loops: Vec<String>,
}

impl ReadyBody {
    /// Parses a `/ready` body (200 or 503: both carry the config lines).
    pub fn parse(body: &str) -> Self {
        let mut parsed = Self::default();
        for line in body.lines() {
            if let Some(hash) = line.strip_prefix("config: ") {
                let hash = hash.trim();
                parsed.config = (hash != "none" && !hash.is_empty()).then(|| hash.to_string());
            } else if let Some(reason) = line.strip_prefix("rejected: ") {
                parsed.rejected = Some(reason.trim().to_string());
            } else if let Some(what) = line.strip_prefix("forwarding-loop: ") {
                parsed.forwarding_loops.push(what.trim().to_string());
            }
        }
        parsed
    }
}

/// The answer of one Pod to `GET /ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It answered (any status) with this body.
    Answered(ReadyBody),
    /// It did not answer in time, or not over HTTP.
    Failed(String),
}

/// Why a Pod cannot progress without a change, from its status: `(reason, message)`.
pub fn pod_blocker(pod: &Pod) -> Option<(&'static str, String)> {
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    if let Some(unschedulable) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Some((
            "Unschedulable",
            format!(
                "Pod {name} cannot be scheduled: {}",
                unschedulable
                    .message
                    .as_deref()
                    .unwrap_or("no reason given")
            ),
        ));
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = match waiting.reason.as_deref() {
            Some(
                "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull",
            ) => "ImagePullFailed",
            Some("CrashLoopBackOff") => "CrashLoopBackOff",
            Some("CreateContainerConfigError" | "CreateContainerError") => "ContainerNotCreated",
            _ => continue,
        };
        return Some((
            reason,
            format!(
                "Pod {name} container {}: {} ({})",
                container.name,
                waiting.reason.as_deref().unwrap_or_default(),
                waiting.message.as_deref().unwrap_or("no message")
            ),
        ));
    }
    None
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Where a Pod serves `/ready`: its IP and the DNS container's port named
/// [`ADMIN_PORT_NAME`].
pub fn admin_address(pod: &Pod) -> Option<(IpAddr, u16)> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))?
        .container_port;
    Some((ip, u16::try_from(port).ok()?))
}

/// What the Deployment's status says about the rollout of its current template: `None`
/// when it is complete, else what is still under way.
pub fn rollout_pending(deployment: &Deployment, wanted: i32) -> Option<String> {
    let generation = deployment.metadata.generation.unwrap_or_default();
    let Some(status) = deployment.status.as_ref() else {
        return Some("the Deployment has no status yet".into());
    };
    if status.observed_generation.unwrap_or_default() < generation {
        return Some("the Deployment controller has not seen the newest Pod template".into());
    }
    let updated = status.updated_replicas.unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or_default();
    let total = status.replicas.unwrap_or_default();
    if updated < wanted {
        return Some(format!(
            "{updated} of {wanted} Pods have the newest template"
        ));
    }
    if total > updated {
        return Some(format!(
            "{} Pods of an older template are still running",
            total - updated
        ));
    }
    if ready < wanted {
        return Some(format!("{ready} of {wanted} Pods are ready"));
    }
    None
}

/// The verdict on a server's Pods, from the Deployment, its Pods and their `/ready` answers.
/// `probes` holds an answer for (some of) the ready Pods, by Pod name.
pub fn assess(
    hash: &str,
    wanted: i32,
    deployment: &Deployment,
    pods: &[Pod],
    probes: &HashMap<String, Probe>,
) -> Verdict {
    let short = &hash[..hash.len().min(12)];
    if let Some((reason, message)) = pods.iter().find_map(pod_blocker) {
        return Verdict::Stalled { reason, message };
    }
    let mut serving = 0;
    let mut stale = Vec::new();
    let mut silent = Vec::new();
    let mut loops = Vec::new();
    for pod in pods.iter().filter(|p| pod_is_ready(p)) {
        let name = pod.name_any();
        match probes.get(&name) {
            Some(Probe::Answered(body)) => {
                if let Some(why) = &body.rejected {
                    return Verdict::Stalled {
                        reason: CONFIG_REJECTED,
                        message: format!("Pod {name} refused the published config: {why}"),
                    };
                }
                loops.extend(
                    body.forwarding_loops
                        .iter()
                        .map(|l| format!("{l} (seen by Pod {name})")),
                );
                if body.config.as_deref() == Some(hash) {
                    serving += 1;
                } else {
                    stale.push(format!(
                        "{name} serves {}",
                        body.config
                            .as_deref()
                            .map_or("no config", |h| &h[..h.len().min(12)])
                    ));
                }
            }
            Some(Probe::Failed(why)) => silent.push(format!("{name} ({why})")),
            None => silent.push(format!("{name} (not asked)")),
        }
    }
    if !loops.is_empty() {
        loops.sort();
        loops.dedup();
        return Verdict::Stalled {
            reason: FORWARDING_LOOP,
            message: format!(
                "forwarding loop: queries forwarded come back to this server: {}; point the forwarders elsewhere",
                loops.join(", ")
            ),
        };
    }
    if let Some(pending) = rollout_pending(deployment, wanted) {
        return Verdict::RollingOut {
            reason: PODS_ROLLING_OUT,
            message: format!("{pending}; {serving} of {wanted} serve config {short}"),
            serving,
        };
    }
    if serving < wanted {
        let mut message = format!("{serving} of {wanted} Pods serve config {short}");
        if !stale.is_empty() {
            message.push_str(&format!("; {}", stale.join(", ")));
        }
        if !silent.is_empty() {
            message.push_str(&format!("; no answer from {}", silent.join(", ")));
        }
        return Verdict::RollingOut {
            reason: CONFIG_ROLLING_OUT,
            message,
            serving,
        };
    }
    Verdict::Serving { serving }
}

/// What the Pods of a `DNSServer` do with its published config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every wanted Pod is ready and serves the published hash.
    Serving {
        /// Pods that serve it.
        serving: i32,
    },
    /// On its way: Pods or the config are still rolling out.
    RollingOut {
        /// [`PODS_ROLLING_OUT`] or [`CONFIG_ROLLING_OUT`].
        reason: &'static str,
        /// What is still under way.
        message: String,
        /// Pods that serve it already.
        serving: i32,
    },
    /// It cannot progress without a change (image, config, cluster).
    Stalled {
        /// CamelCase reason, e.g. `ImagePullFailed`.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Verdict {
    /// The status outcome, given the message saying what was published.
    pub fn outcome(&self, published: String) -> Outcome {
        match self {
            Verdict::Serving { .. } => Outcome::Ready {
                reason: "ConfigPublished",
                message: published,
            },
            Verdict::RollingOut {
                reason, message, ..
            } => Outcome::Reconciling {
                reason,
                message: format!("{published}; {message}"),
            },
            Verdict::Stalled { reason, message } => Outcome::Stalled {
                reason,
                message: format!("{published}; but {message}"),
            },
        }
    }

    /// How many Pods serve the published config.
    pub fn serving(&self) -> Option<i32> {
        match self {
            Verdict::Serving { serving } | Verdict::RollingOut { serving, .. } => Some(*serving),
            Verdict::Stalled { .. } => None,
        }
    }
}

/// The last round, per `DNSServer`, in which every wanted Pod served the hash: while hash and
/// Pods are unchanged, the Pods are not asked again.
#[derive(Default)]
pub struct ServingCache {
    settled: Mutex<HashMap<(String, String), Fingerprint>>,
}

/// The published hash and every Pod's name and resource version.
type Fingerprint = (String, Vec<(String, String)>);

fn fingerprint(hash: &str, pods: &[Pod]) -> Fingerprint {
    let mut pods: Vec<(String, String)> = pods
        .iter()
        .map(|p| (p.name_any(), p.resource_version().unwrap_or_default()))
        .collect();
    pods.sort();
    (hash.to_string(), pods)
}

/// Asks the Pods of `deployment` (selected by its `matchLabels`) whether they serve `hash`.
pub async fn observe(
    client: &Client,
    cache: &ServingCache,
    server: (&str, &str),
    hash: &str,
    wanted: i32,
    deployment: &Deployment,
) -> Result<Verdict, kube::Error> {
    let (namespace, name) = server;
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let key = (namespace.to_string(), name.to_string());
    let print = fingerprint(hash, &pods);
    let settled = cache
        .settled
        .lock()
        .map(|s| s.get(&key) == Some(&print))
        .unwrap_or(false);
    if settled && rollout_pending(deployment, wanted).is_none() {
        return Ok(Verdict::Serving {
            serving: pods.iter().filter(|p| pod_is_ready(p)).count() as i32,
        });
    }
    let probes = probe_all(&pods).await;
    let verdict = assess(hash, wanted, deployment, &pods, &probes);
    if let Ok(mut settled) = cache.settled.lock() {
        if matches!(verdict, Verdict::Serving { .. }) {
            settled.insert(key, print);
        } else {
            settled.remove(&key);
        }
    }
    Ok(verdict)
}

/// Forgets a deleted server.
pub fn forget(cache: &ServingCache, namespace: &str, name: &str) {
    if let Ok(mut settled) = cache.settled.lock() {
        settled.remove(&(namespace.to_string(), name.to_string()));
    }
}

/// `GET /ready` of every ready Pod, [`PROBE_CONCURRENCY`] at once.
async fn probe_all(pods: &[Pod]) -> HashMap<String, Probe> {
    use futures::StreamExt;
    let targets: Vec<(String, Option<(IpAddr, u16)>)> = pods
        .iter()
        .filter(|p| pod_is_ready(p))
        .map(|p| (p.name_any(), admin_address(p)))
        .collect();
    futures::stream::iter(targets)
        .map(|(name, address)| async move {
            let probe = match address {
                Some((ip, port)) => ready_body(ip, port).await,
                None => Probe::Failed(format!(
                    "no Pod IP or container port named {ADMIN_PORT_NAME}"
                )),
            };
            (name, probe)
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .collect()
        .await
}

/// One `GET /ready` over plain HTTP/1.0 (the server's admin responder closes after one
/// answer), within [`PROBE_TIMEOUT`].
pub async fn ready_body(ip: IpAddr, port: u16) -> Probe {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
        stream
            .write_all(b"GET /ready HTTP/1.0\r\nHost: nameplane-dns\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_BODY as u64)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ask).await {
        Err(_) => Probe::Failed(format!("no answer within {PROBE_TIMEOUT:?}")),
        Ok(Err(e)) => Probe::Failed(e.to_string()),
        Ok(Ok(response)) => {
            let text = String::from_utf8_lossy(&response);
            match text.split_once("\r\n\r\n") {
                Some((head, body)) if head.starts_with("HTTP/1.") => {
                    Probe::Answered(ReadyBody::parse(body))
                }
                _ => Probe::Failed("not an HTTP answer".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OLD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn deployment(
        generation: i64,
        observed: i64,
        updated: i32,
        total: i32,
        ready: i32,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "edge-dns", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                       "replicas": total, "readyReplicas": ready},
        }))
        .expect("deployment")
    }

    fn pod(name: &str, ready: bool, extra_status: serde_json::Value) -> Pod {
        let mut status = serde_json::json!({
            "podIP": "127.0.0.9",
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
        });
        if let (Some(s), Some(extra)) = (status.as_object_mut(), extra_status.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "dns", "ports": [{"name": "admin", "containerPort": 8080}]}]},
            "status": status,
        }))
        .expect("pod")
    }

    fn answered(body: &str) -> Probe {
        Probe::Answered(ReadyBody::parse(body))
    }

    #[test]
    fn ready_body_lines_are_read() {
        let body = ReadyBody::parse(&format!(
            "ready\nwaiting: x (served once the Pod list completes)\nrejected: hash mismatch\nforwarding-loop: example.org 127.0.0.1:53\nconfig: {HASH}\n"
        ));
        assert_eq!(body.config.as_deref(), Some(HASH));
        assert_eq!(body.rejected.as_deref(), Some("hash mismatch"));
        assert_eq!(body.forwarding_loops, ["example.org 127.0.0.1:53"]);
        assert_eq!(ReadyBody::parse("not ready\nconfig: none\n").config, None);
    }

    #[test]
    fn ready_only_when_every_wanted_pod_serves_the_hash() {
        let d = deployment(2, 2, 2, 2, 2);
        let pods = [
            pod("a", true, serde_json::json!({})),
            pod("b", true, serde_json::json!({})),
        ];
        let mut probes = HashMap::from([
            (
                "a".to_string(),
                answered(&format!("ready\nconfig: {HASH}\n")),
            ),
            (
                "b".to_string(),
                answered(&format!("ready\nconfig: {OLD}\n")),
            ),
        ]);
        let verdict = assess(HASH, 2, &d, &pods, &probes);
        let Verdict::RollingOut {
            reason,
            message,
            serving,
        } = &verdict
        else {
            panic!("{verdict:?}")
        };
        assert_eq!((*reason, *serving), (CONFIG_ROLLING_OUT, 1));
        assert!(message.contains("b serves bbbbbbbbbbbb"), "{message}");
        probes.insert("b".into(), answered(&format!("ready\nconfig: {HASH}\n")));
        assert_eq!(
            assess(HASH, 2, &d, &pods, &probes),
            Verdict::Serving { serving: 2 }
        );
        probes.insert("b".into(), Probe::Failed("connection refused".into()));
        assert!(matches!(
            assess(HASH, 2, &d, &pods, &probes),
            Verdict::RollingOut {
                reason: CONFIG_ROLLING_OUT,
                serving: 1,
                ..
            }
        ));
    }

    #[test]
    fn an_unfinished_rollout_is_pods_rolling_out_even_when_pods_serve() {
        let pods = [pod("a", true, serde_json::json!({}))];
        let probes = HashMap::from([("a".to_string(), answered(&format!("config: {HASH}\n")))]);
        for d in [
            deployment(3, 2, 1, 1, 1), // template not yet observed
            deployment(2, 2, 1, 2, 2), // an old Pod remains
            deployment(2, 2, 1, 1, 0), // not ready per the Deployment
        ] {
            assert!(
                matches!(
                    assess(HASH, 1, &d, &pods, &probes),
                    Verdict::RollingOut {
                        reason: PODS_ROLLING_OUT,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
        assert_eq!(
            assess(HASH, 1, &deployment(2, 2, 1, 1, 1), &pods, &probes),
            Verdict::Serving { serving: 1 }
        );
    }

    #[test]
    fn image_pull_crash_loop_unschedulable_and_rejection_stall() {
        let d = deployment(1, 1, 1, 1, 0);
        let waiting = |reason: &str| {
            serde_json::json!({"containerStatuses": [{"name": "dns", "image": "i", "imageID": "",
                "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": reason, "message": "boom"}}}]})
        };
        for (status, reason) in [
            (waiting("ImagePullBackOff"), "ImagePullFailed"),
            (waiting("ErrImagePull"), "ImagePullFailed"),
            (waiting("CrashLoopBackOff"), "CrashLoopBackOff"),
            (
                serde_json::json!({"conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
                "Unschedulable",
            ),
        ] {
            let pods = [pod("a", false, status)];
            let verdict = assess(HASH, 1, &d, &pods, &HashMap::new());
            assert!(
                matches!(&verdict, Verdict::Stalled { reason: r, message } if *r == reason && message.contains("Pod a")),
                "{verdict:?}"
            );
        }
        // ContainerCreating is progress, not a stall.
        let pods = [pod("a", false, waiting("ContainerCreating"))];
        assert!(matches!(
            assess(HASH, 1, &d, &pods, &HashMap::new()),
            Verdict::RollingOut { .. }
        ));
        let pods = [pod("a", true, serde_json::json!({}))];
        let probes = HashMap::from([(
            "a".to_string(),
            answered(&format!(
                "ready\nrejected: config does not parse: x\nconfig: {OLD}\n"
            )),
        )]);
        let verdict = assess(HASH, 1, &deployment(1, 1, 1, 1, 1), &pods, &probes);
        assert!(
            matches!(&verdict, Verdict::Stalled { reason: CONFIG_REJECTED, message } if message.contains("does not parse")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_forwarding_loop_is_named_and_not_ready() {
        let pods = [pod("a", true, serde_json::json!({}))];
        let probes = HashMap::from([(
            "a".to_string(),
            answered(&format!(
                "ready\nforwarding-loop: . 127.0.0.53:53\nconfig: {HASH}\n"
            )),
        )]);
        let verdict = assess(HASH, 1, &deployment(1, 1, 1, 1, 1), &pods, &probes);
        let Verdict::Stalled { reason, message } = &verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(*reason, FORWARDING_LOOP);
        assert!(
            message.contains(". 127.0.0.53:53 (seen by Pod a)"),
            "{message}"
        );
        assert!(matches!(
            verdict.outcome("published".into()),
            Outcome::Stalled {
                reason: FORWARDING_LOOP,
                ..
            }
        ));
    }

    #[test]
    fn admin_address_is_the_pod_ip_and_the_port_named_admin() {
        let p = pod("a", true, serde_json::json!({}));
        assert_eq!(
            admin_address(&p),
            Some(("127.0.0.9".parse().expect("ip"), 8080))
        );
    }

    #[tokio::test]
    async fn ready_body_asks_over_http_and_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0; 1024];
            let _ = s.read(&mut buf).await;
            let body = format!("ready\nconfig: {HASH}\n");
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
        let probe = ready_body("127.0.0.1".parse().expect("ip"), port).await;
        assert_eq!(probe, answered(&format!("config: {HASH}\n")));
        // A listener that never answers: bounded by PROBE_TIMEOUT.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let started = std::time::Instant::now();
        let probe = ready_body("127.0.0.1".parse().expect("ip"), port).await;
        assert!(matches!(probe, Probe::Failed(_)), "{probe:?}");
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(1));
        drop(silent);
    }
}
