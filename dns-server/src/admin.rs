//! The admin HTTP endpoint: `/health`, `/ready` and `/metrics`.
//!
//! - `GET /health`: 200 while the process runs (liveness), also during lameduck (as
//!   CoreDNS's *health* plugin); 503 `failed: <task> <why>` once a task that must run
//!   until shutdown has stopped (a panicked UDP or TCP loop, the config or cluster watch:
//!   see [`crate::shutdown::Supervisor`]), so the kubelet restarts a process that would
//!   otherwise look alive and answer nothing or serve a frozen config;
//! - `GET /ready`: 200 once a valid config is loaded and every watch it needs has completed
//!   its initial list, and not during lameduck; 503 with the missing conditions otherwise
//!   (readiness: a pod that would answer SERVFAIL, or is about to stop, gets no traffic).
//!   A watch started for a newer config that waits for it (the Pod watch) does not make a
//!   serving replica unready. The body then names, one line each, a config waiting for
//!   the Pod list (`waiting: <hash>`) and why the latest version of the ConfigMap was
//!   refused (`rejected: <reason>`), each upstream found to send queries back to this
//!   server (`forwarding-loop: <forwarder domain> <ip:port>`, see
//!   [`crate::pipeline::forward::loops`]; a loop does not make the replica unready), and
//!   ends with `config: <hash>`, the config being served (or `none`), so the operator can
//!   see which config each replica runs and report a loop;
//! - `GET /metrics`: every metric in the Prometheus text format.
//!
//! Three fixed routes do not need an HTTP framework: this is a small HTTP/1.1 responder
//! (one request per connection, `Connection: close`, request head capped at 8 KiB and due
//! within [`REQUEST_TIMEOUT`], 5 s per connection in all). [`route`] is pure and tested
//! without sockets.
//!
//! **Connection cap.** At most `--admin-max-connections` ([`MAX_CONNECTIONS`]) are open at
//! once; a new connection at the cap closes the oldest one instead of being refused, so a
//! flood of idle connections (each of which would otherwise hold a descriptor and a task
//! for 5 s) can neither exhaust the process's file descriptors nor keep the kubelet's
//! probes out: a probe is always the newest connection, and the flood's connections are
//! the ones closed. Connections closed this way count in
//! `nameplane_admin_connections_evicted_total`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tracing::debug;

use crate::shutdown::Shutdown;
use crate::state::State;

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// Time allowed for one connection, request and response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for the request head to arrive (a kubelet probe sends it at once).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Default of `--admin-max-connections`: a kubelet, a Prometheus scraper and an operator
/// need a handful; the rest is headroom.
pub const MAX_CONNECTIONS: usize = 64;

/// Content type of `/metrics` (what prometheus-client renders).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const TEXT: &str = "text/plain; charset=utf-8";

/// Serves admin requests on `listener` until `shutdown` fires, at most [`MAX_CONNECTIONS`]
/// at once.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: Shutdown) {
    serve_with(listener, state, MAX_CONNECTIONS, shutdown).await;
}

/// Serves admin requests on `listener` until `shutdown` fires, at most `max_connections`
/// at once (the oldest closed for a new one).
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
    mut shutdown: Shutdown,
) {
    let max_connections = max_connections.max(1);
    // Oldest first. Owned by this loop alone: no lock.
    let mut open: VecDeque<AbortHandle> = VecDeque::with_capacity(max_connections);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => {
                for connection in open {
                    connection.abort();
                }
                return;
            }
        };
        match accepted {
            Ok((stream, _)) => {
                if open.len() >= max_connections {
                    open.retain(|connection| !connection.is_finished());
                }
                while open.len() >= max_connections {
                    if let Some(oldest) = open.pop_front() {
                        // Aborting drops the task's stream: the connection closes.
                        oldest.abort();
                        state.metrics().admin_connection_evicted();
                    }
                }
                let state = Arc::clone(&state);
                let task = tokio::spawn(async move {
                    if let Ok(Err(error)) =
                        tokio::time::timeout(CONNECTION_TIMEOUT, handle(stream, &state)).await
                    {
                        debug!(%error, "admin connection failed");
                    }
                });
                open.push_back(task.abort_handle());
            }
            Err(error) => {
                debug!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut buf = vec![0; MAX_REQUEST];
    let mut len = 0;
    let head = async {
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, head)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.write_all(&route(&buf[..len], state)).await?;
    stream.shutdown().await
}

/// Answers one HTTP request head with a complete HTTP response.
pub fn route(request: &[u8], state: &State) -> Vec<u8> {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(
            405,
            "Method Not Allowed",
            TEXT,
            "only GET and HEAD\n",
            head_only,
        );
    }
    match path {
        "/health" => match state.health_failure() {
            None => response(200, "OK", TEXT, "ok\n", head_only),
            Some(failed) => response(
                503,
                "Service Unavailable",
                TEXT,
                &format!("failed: {failed}\n"),
                head_only,
            ),
        },
        "/ready" => {
            let readiness = state.readiness();
            let mut config = String::new();
            if let Some(waiting) = &readiness.waiting {
                config.push_str(&format!(
                    "waiting: {waiting} (served once the Pod list completes)\n"
                ));
            }
            if let Some(rejected) = &readiness.rejected {
                config.push_str(&format!("rejected: {rejected}\n"));
            }
            for (forwarder, upstream) in &readiness.loops {
                config.push_str(&format!("forwarding-loop: {forwarder} {upstream}\n"));
            }
            config.push_str(&format!(
                "config: {}\n",
                readiness.config_hash.as_deref().unwrap_or("none")
            ));
            if readiness.is_ready() {
                response(200, "OK", TEXT, &format!("ready\n{config}"), head_only)
            } else {
                let sync = readiness.sync;
                let pods = sync
                    .pods
                    .map_or(String::new(), |pods| format!(", pods {pods}"));
                let nodes = sync
                    .nodes
                    .map_or(String::new(), |nodes| format!(", nodes {nodes}"));
                let body = format!(
                    "not ready: config loaded {}, synced: services {}, endpointslices {}, namespaces {}{pods}{nodes}; lameduck {}\n{config}",
                    readiness.config_hash.is_some(),
                    sync.services,
                    sync.endpoints,
                    sync.namespaces,
                    readiness.lameduck,
                );
                response(503, "Service Unavailable", TEXT, &body, head_only)
            }
        }
        "/metrics" => response(
            200,
            "OK",
            METRICS_CONTENT_TYPE,
            &state.metrics().encode(),
            head_only,
        ),
        _ => response(404, "Not Found", TEXT, "not found\n", head_only),
    }
}

fn response(status: u16, reason: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::metrics::Metrics;
    use crate::pipeline::{Pipeline, Settings};
    use nameplane_config::ValidatedConfig;

    fn state() -> State {
        State::new(
            Metrics::new("127.0.0.1:53".parse().expect("addr")),
            Settings::default(),
        )
    }

    fn get(path: &str, state: &State) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        String::from_utf8(route(request.as_bytes(), state)).expect("utf-8")
    }

    #[test]
    fn health_is_always_ok() {
        let state = state();
        let reply = get("/health", &state);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nok\n"), "{reply}");
    }

    #[test]
    fn health_fails_once_a_task_stopped() {
        let state = state();
        state.fail_health("udp", "panicked: boom".into());
        let reply = get("/health", &state);
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(reply.ends_with("failed: udp panicked: boom\n"), "{reply}");
        let metrics = get("/metrics", &state);
        assert!(
            metrics.contains(r#"nameplane_task_failures_total{task="udp"} 1"#),
            "{metrics}"
        );
    }

    #[test]
    fn ready_follows_config_sync_and_lameduck() {
        let state = state();
        let reply = get("/ready", &state);
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(
            reply.contains("config loaded false, synced: services false, endpointslices false, namespaces false; lameduck false\nconfig: none\n"),
            "{reply}"
        );

        let config = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5}}"#,
        )
        .expect("valid");
        state.set_pipeline(Pipeline::build(config, "c0ffee".into()).expect("builds"));
        assert!(get("/ready", &state).starts_with("HTTP/1.1 503 "));
        let mut cluster = Cluster::new(1);
        cluster.set_synced(true);
        state.publish_cluster(Arc::new(cluster));
        let reply = get("/ready?verbose", &state);
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        assert!(reply.ends_with("ready\nconfig: c0ffee\n"), "{reply}");

        // A newer config that needs the Pod list waits for it; this replica stays ready and
        // says so. A refused version is named until a good one loads.
        let policy = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5},
                "policies":[{"source":"t/p","namespace":"t","rules":[],"defaultAction":"deny","deniedResponse":"refused"}]}"#,
        )
        .expect("valid");
        state.set_pipeline(Pipeline::build(policy, "beef".into()).expect("builds"));
        state.set_rejected("the config's content hash x does not match".into());
        let reply = get("/ready", &state);
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        assert!(
            reply.ends_with("ready\nwaiting: beef (served once the Pod list completes)\nrejected: the config's content hash x does not match\nconfig: c0ffee\n"),
            "{reply}"
        );

        state.enter_lameduck();
        let reply = get("/ready", &state);
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(reply.contains("lameduck true\nwaiting: beef"), "{reply}");
        assert!(reply.ends_with("config: c0ffee\n"), "{reply}");
        assert!(
            get("/health", &state).starts_with("HTTP/1.1 200 "),
            "health stays up"
        );
    }

    #[test]
    fn ready_waits_for_the_node_list_a_config_needs() {
        let state = state();
        // The node client class from the Node objects needs the Pod and the Node lists.
        let config = ValidatedConfig::from_json(
            r#"{"version":1,"server":"a/b","kubernetes":{"clusterDomain":"cluster.local","ttlSeconds":5},
                "clients":{"unidentified":"deny","nodes":{"action":"allow","fromNodes":true}}}"#,
        )
        .expect("valid");
        state.set_pipeline(Pipeline::build(config, "n0de".into()).expect("builds"));
        let mut cluster = Cluster::new(1);
        cluster.set_pods_watched(true);
        cluster.set_synced(true);
        cluster.set_nodes_watched(true);
        state.publish_cluster(Arc::new(cluster.clone()));
        let reply = get("/ready", &state);
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(reply.contains("nodes false;"), "{reply}");
        cluster.set_synced(true);
        state.publish_cluster(Arc::new(cluster));
        let reply = get("/ready", &state);
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    }

    #[test]
    fn metrics_render() {
        let state = state();
        state.metrics().reload(true);
        let reply = get("/metrics", &state);
        assert!(reply.contains(METRICS_CONTENT_TYPE), "{reply}");
        assert!(reply.contains("nameplane_config_reloads_total"), "{reply}");
    }

    #[test]
    fn other_requests() {
        let state = state();
        assert!(get("/nope", &state).starts_with("HTTP/1.1 404 "));
        let post = route(b"POST /ready HTTP/1.1\r\n\r\n", &state);
        assert!(post.starts_with(b"HTTP/1.1 405 "));
        let head =
            String::from_utf8(route(b"HEAD /health HTTP/1.1\r\n\r\n", &state)).expect("utf-8");
        assert!(
            head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        assert!(route(b"", &state).starts_with(b"HTTP/1.1 405 "));
        assert!(route(&[0xff, 0xfe, b'\n'], &state).starts_with(b"HTTP/1.1 405 "));
    }

    /// Whether the server closed `stream` (EOF or reset) within `wait`.
    async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_flood_of_idle_connections_closes_the_oldest_and_probes_get_through() {
        const CAP: usize = 8;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(state());
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = tokio::spawn(serve_with(listener, Arc::clone(&state), CAP, shutdown));
        // Idle connections that never send a byte, twice the cap; each accepted before the
        // next opens, so the order of age is the order here.
        let mut idle = Vec::new();
        for _ in 0..2 * CAP {
            idle.push(TcpStream::connect(addr).await.expect("connects"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = tokio::time::Instant::now();
        let mut probe = TcpStream::connect(addr).await.expect("connects");
        probe
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("writes");
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(1), probe.read_to_string(&mut reply))
            .await
            .expect("answered within a probe's timeout")
            .expect("reads");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // The oldest CAP + 1 made room (for the last CAP - 1 idle ones and the probe).
        let (oldest, newest) = idle.split_at_mut(CAP + 1);
        for stream in oldest {
            assert!(
                closed_within(stream, Duration::from_secs(1)).await,
                "an old one closed"
            );
        }
        for stream in newest {
            assert!(
                !closed_within(stream, Duration::from_millis(100)).await,
                "a newer one still open"
            );
        }
        let text = state.metrics().encode();
        assert!(
            text.contains(&format!(
                "nameplane_admin_connections_evicted_total {}",
                CAP + 1
            )),
            "{text}"
        );
        // Idle connections are closed after the request deadline.
        for stream in idle.iter_mut().skip(CAP + 1) {
            assert!(closed_within(stream, REQUEST_TIMEOUT + Duration::from_secs(1)).await);
        }
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), server)
            .await
            .expect("stops")
            .expect("admin task");
    }
}
