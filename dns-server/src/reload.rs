//! Config reload: the watched ConfigMap in, a new [`Pipeline`] swapped in atomically out.
//!
//! Every applied version of the ConfigMap goes parse → validate
//! ([`ValidatedConfig::from_json`]) → hash check → build ([`Pipeline::build`]). Only a
//! config that passes all four replaces the running one, in one atomic store; queries in
//! flight finish on the pipeline they started with. A config that fails is logged at error
//! with the reason, counted (`nameplane_config_reloads_total{result="failure"}`,
//! `nameplane_config_reload_failures_total{reason}`) and named on `/ready` (`rejected:`),
//! and the previous good config keeps serving: the operator being wrong or gone never
//! takes DNS down. A deleted ConfigMap is treated the same way (the last good config stays).
//! The load runs on the blocking pool, so a large config (many zones, regex rewrites, each
//! bounded by the contract's limits) never holds up the runtime's workers.
//!
//! The hash check: the operator writes the config's content hash in the
//! [`HASH_ANNOTATION`]; a ConfigMap whose content does not hash to it was changed by
//! something else (a hand edit, a half-applied write) and is refused, both hashes in the
//! log. A ConfigMap without the annotation (written by hand on purpose) is loaded, and
//! identified by the hash computed here.
//!
//! Before the first good config there is no pipeline, and every query gets SERVFAIL. A new
//! pipeline takes over what must survive the swap from the old one when it is swapped in
//! ([`Pipeline::adopt`]: zone serials, upstream health, the cache); one that needs the Pod
//! list may wait for it first ([`State::set_pipeline`]).
//!
//! The watch runs until shutdown: a watch stream that ends is started again ([`run`]), and
//! `main` runs this task under a [`crate::shutdown::Supervisor`], so a panic here fails
//! `/health` instead of leaving the config frozen behind a ready Pod.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use nameplane_config::{CONFIG_KEY, ConfigError, HASH_ANNOTATION, ValidatedConfig};
use tracing::{debug, error, info, warn};

use crate::cluster::backoff::WatchBackoff;
use crate::pipeline::{BuildError, Pipeline};
use crate::shutdown::Shutdown;
use crate::state::{State, Swap};

/// The ConfigMap to watch, as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
}

impl FromStr for ConfigMapRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!("{s:?} is not of the form NAMESPACE/NAME")),
        }
    }
}

impl fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a version of the ConfigMap was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The ConfigMap has no config under [`CONFIG_KEY`].
    #[error("the ConfigMap has no data key {CONFIG_KEY:?}")]
    MissingKey,
    /// The config did not parse or validate.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The config's content does not hash to the [`HASH_ANNOTATION`].
    #[error(
        "the config's content hash {computed} does not match the {HASH_ANNOTATION} annotation {annotated}"
    )]
    HashMismatch {
        /// The annotation's value.
        annotated: String,
        /// The hash of the config as read.
        computed: String,
    },
    /// The config validated but could not be built into a pipeline.
    #[error(transparent)]
    Build(#[from] BuildError),
}

impl ReloadError {
    /// The `reason` label of `nameplane_config_reload_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_key",
            Self::Invalid(_) => "invalid",
            Self::HashMismatch { .. } => "hash_mismatch",
            Self::Build(_) => "build",
        }
    }
}

/// Parses, validates, checks and builds the config in `config_map`.
///
/// The pipeline's hash is the config's content hash, which must equal the
/// [`HASH_ANNOTATION`] when the ConfigMap has one.
pub fn load(config_map: &ConfigMap, resolv_conf: &Path) -> Result<Pipeline, ReloadError> {
    load_with(
        config_map,
        resolv_conf,
        crate::answer_cache::ByteLimits::default(),
    )
}

/// [`load`] with the process's cache byte limits.
pub fn load_with(
    config_map: &ConfigMap,
    resolv_conf: &Path,
    cache_limits: crate::answer_cache::ByteLimits,
) -> Result<Pipeline, ReloadError> {
    let json = config_map
        .data
        .as_ref()
        .and_then(|data| data.get(CONFIG_KEY))
        .ok_or(ReloadError::MissingKey)?;
    let config = ValidatedConfig::from_json(json)?;
    let computed = config.raw().content_hash();
    if let Some(annotated) = config_map.annotations().get(HASH_ANNOTATION)
        && *annotated != computed
    {
        return Err(ReloadError::HashMismatch {
            annotated: annotated.clone(),
            computed,
        });
    }
    let config = if config.needs_resolv_conf() {
        let nameservers = crate::resolv_conf::read(resolv_conf).unwrap_or_else(|why| {
            warn!(%why, "no upstreams from the resolv.conf");
            Vec::new()
        });
        config.with_resolv_conf(&nameservers)
    } else {
        config
    };
    Ok(Pipeline::build_with(config, computed, cache_limits)?)
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new config is serving.
    Swapped,
    /// A new config is loaded and waits for the Pod list; the previous one keeps serving.
    Waiting,
    /// The config equals the one serving; nothing changed.
    Unchanged,
    /// The config was refused; the previous one (if any) keeps serving.
    Failed,
}

/// Loads `config_map` and, if it is valid and different, swaps it into `state`. Logs and
/// counts the result.
pub fn apply(state: &State, config_map: &ConfigMap) -> Applied {
    let source = format!(
        "{}/{}",
        config_map.namespace().unwrap_or_default(),
        config_map.name_any()
    );
    match load_with(
        config_map,
        &state.settings().resolv_conf,
        state.settings().cache_limits,
    ) {
        Ok(pipeline) => {
            let serving = state
                .pipeline()
                .is_some_and(|current| current.config() == pipeline.config());
            if (serving && !state.has_waiting()) || state.is_waiting(pipeline.config()) {
                state.clear_rejected();
                debug!(
                    configmap = source,
                    hash = pipeline.hash(),
                    "config unchanged"
                );
                return Applied::Unchanged;
            }
            info!(
                configmap = source,
                hash = pipeline.hash(),
                server = pipeline.config().raw().server,
                cluster_domain = pipeline.config().cluster_domain(),
                "config loaded"
            );
            state.metrics().reload(true);
            match state.set_pipeline(pipeline) {
                Swap::Now => Applied::Swapped,
                Swap::WhenPodsListed => Applied::Waiting,
            }
        }
        Err(reason) => {
            state.metrics().reload_failure(reason.metric_label());
            state.set_rejected(reason.to_string());
            match state.pipeline() {
                Some(current) => error!(
                    configmap = source,
                    %reason,
                    serving = current.hash(),
                    "config rejected, keeping the previous config"
                ),
                None => error!(
                    configmap = source,
                    %reason,
                    "config rejected; no valid config yet, answering SERVFAIL"
                ),
            }
            Applied::Failed
        }
    }
}

/// Pause before a config watch that ended is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Watches the ConfigMap `target` and applies every version, until `shutdown` fires. A watch
/// stream that ends (it should not: the watcher retries errors itself) is started again
/// after `RESTART_DELAY` (1 s), with a fresh list, so the config never freezes while the Pod
/// stays ready.
pub async fn run(client: Client, target: ConfigMapRef, state: Arc<State>, shutdown: Shutdown) {
    let api: Api<ConfigMap> = Api::namespaced(client, &target.namespace);
    // Selected by name: the server's Role lets it read only its own ConfigMap (RBAC
    // `resourceNames`), and the API server authorizes a list or watch against resourceNames
    // only when it carries this field selector.
    let config = watcher::Config::default().fields(&format!("metadata.name={}", target.name));
    let events = || {
        watcher(api.clone(), config.clone())
            .backoff(WatchBackoff::for_watch())
            .boxed()
    };
    follow(events, &target, &state, shutdown).await;
}

/// Applies every event of the streams `events` makes, one after the other, until
/// `shutdown` fires.
pub(crate) async fn follow<S>(
    mut events: impl FnMut() -> S,
    target: &ConfigMapRef,
    state: &Arc<State>,
    mut shutdown: Shutdown,
) where
    S: Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    loop {
        let mut stream = events();
        let mut seen_in_list = false;
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = shutdown.wait() => return,
            };
            match event {
                None => break,
                Some(Err(error)) => {
                    warn!(configmap = %target, %error, "config watch failed, retrying with backoff");
                }
                Some(Ok(
                    watcher::Event::Apply(config_map) | watcher::Event::InitApply(config_map),
                )) => {
                    seen_in_list = true;
                    // Parsing, validating and building (regex compilation, zone indexes) is
                    // CPU work that grows with the config: run it on the blocking pool, off
                    // the runtime's workers that serve TCP, health and the watches.
                    let state = Arc::clone(state);
                    if let Err(error) =
                        tokio::task::spawn_blocking(move || apply(&state, &config_map)).await
                    {
                        error!(configmap = %target, %error, "config load did not finish");
                    }
                }
                Some(Ok(watcher::Event::Delete(_))) => {
                    warn!(configmap = %target, "ConfigMap deleted, keeping the last good config");
                }
                Some(Ok(watcher::Event::Init)) => seen_in_list = false,
                Some(Ok(watcher::Event::InitDone)) => {
                    if !seen_in_list {
                        warn!(configmap = %target, "ConfigMap not found, waiting for it");
                    }
                }
            }
        }
        warn!(configmap = %target, delay = ?RESTART_DELAY, "config watch ended, starting it again");
        tokio::select! {
            () = tokio::time::sleep(RESTART_DELAY) => {}
            () = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use kube::api::ObjectMeta;
    use nameplane_config::{FORMAT_VERSION, KubernetesConfig, ServerConfig};
    use std::collections::BTreeMap;

    /// No config in these tests takes servers from a resolv.conf.
    const NO_RESOLV_CONF: &str = "/nonexistent/resolv.conf";

    fn server_config(ttl: u32) -> ServerConfig {
        ServerConfig {
            version: FORMAT_VERSION,
            server: "kube-system/cluster-dns".into(),
            kubernetes: KubernetesConfig {
                cluster_domain: "cluster.local".into(),
                ttl_seconds: ttl,
                ..KubernetesConfig::default()
            },
            ..Default::default()
        }
    }

    fn config_map(json: Option<String>, hash: Option<String>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("kube-system".into()),
                name: Some("cluster-dns".into()),
                annotations: hash.map(|h| BTreeMap::from([(HASH_ANNOTATION.to_owned(), h)])),
                ..ObjectMeta::default()
            },
            data: json.map(|j| BTreeMap::from([(CONFIG_KEY.to_owned(), j)])),
            ..ConfigMap::default()
        }
    }

    fn state() -> State {
        State::new(
            Metrics::new("127.0.0.1:53".parse().expect("addr")),
            crate::pipeline::Settings::default(),
        )
    }

    /// `serversFromResolvConf`: the nameservers of the resolv.conf at load time are the
    /// forwarder's upstreams (re-read at the next load); none readable leaves only the
    /// listed servers, and the config still loads.
    #[test]
    fn resolv_conf_nameservers_are_read_at_each_load() {
        let mut cfg = server_config(5);
        cfg.forward.push(nameplane_config::forward::ForwardConfig {
            domain: ".".into(),
            source: "kube-system/cluster-dns".into(),
            servers: vec![],
            servers_from_resolv_conf: true,
            policy: Default::default(),
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: None,
        });
        let path = std::env::temp_dir().join(format!("np-reload-resolv-{}", std::process::id()));
        let servers = |pipeline: &Pipeline| pipeline.config().raw().forward[0].servers.clone();
        std::fs::write(&path, "nameserver 127.0.0.9\nnameserver ::1\n").expect("write");
        let pipeline = load(&config_map(Some(cfg.to_json()), None), &path).expect("loads");
        assert_eq!(servers(&pipeline), ["127.0.0.9:53", "[::1]:53"]);
        assert_eq!(pipeline.hash(), cfg.content_hash(), "the operator's hash");
        std::fs::write(&path, "nameserver 127.0.0.10\n").expect("write");
        let pipeline = load(&config_map(Some(cfg.to_json()), None), &path).expect("loads");
        assert_eq!(servers(&pipeline), ["127.0.0.10:53"]);
        let _ = std::fs::remove_file(&path);
        let pipeline = load(&config_map(Some(cfg.to_json()), None), &path).expect("loads");
        assert!(servers(&pipeline).is_empty());
    }

    #[test]
    fn parses_configmap_refs() {
        assert_eq!(
            "kube-system/cluster-dns".parse::<ConfigMapRef>(),
            Ok(ConfigMapRef {
                namespace: "kube-system".into(),
                name: "cluster-dns".into()
            })
        );
        for bad in ["", "a", "/b", "a/", "a/b/c"] {
            assert!(bad.parse::<ConfigMapRef>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn load_checks_the_annotated_hash_or_computes_it() {
        let cfg = server_config(5);
        let pipeline = load(
            &config_map(Some(cfg.to_json()), Some(cfg.content_hash())),
            Path::new(NO_RESOLV_CONF),
        )
        .expect("loads");
        assert_eq!(pipeline.hash(), cfg.content_hash());
        let pipeline = load(
            &config_map(Some(cfg.to_json()), None),
            Path::new(NO_RESOLV_CONF),
        )
        .expect("loads");
        assert_eq!(pipeline.hash(), cfg.content_hash());
        let err = load(
            &config_map(Some(cfg.to_json()), Some("abc".into())),
            Path::new(NO_RESOLV_CONF),
        )
        .expect_err("the content does not hash to the annotation");
        assert!(
            matches!(&err, ReloadError::HashMismatch { annotated, computed }
                if annotated == "abc" && *computed == cfg.content_hash()),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("abc") && text.contains(&cfg.content_hash()),
            "both hashes: {text}"
        );
        assert_eq!(err.metric_label(), "hash_mismatch");
    }

    #[test]
    fn a_config_that_does_not_match_its_hash_is_refused() {
        let state = state();
        let good = server_config(5);
        let annotated =
            |cfg: &ServerConfig, hash: String| config_map(Some(cfg.to_json()), Some(hash));
        assert_eq!(
            apply(&state, &annotated(&good, good.content_hash())),
            Applied::Swapped
        );
        // Edited by hand after the operator wrote it: content and annotation disagree.
        let edited = server_config(30);
        assert_eq!(
            apply(&state, &annotated(&edited, good.content_hash())),
            Applied::Failed
        );
        let serving = state.pipeline().expect("still loaded");
        assert_eq!(
            serving.config().ttl_seconds(),
            5,
            "the previous config serves"
        );
        let readiness = state.readiness();
        assert!(
            readiness
                .rejected
                .as_deref()
                .is_some_and(|r| r.contains(&edited.content_hash())),
            "{readiness:?}"
        );
        let text = state.metrics().encode();
        assert!(
            text.contains(r#"nameplane_config_reload_failures_total{reason="hash_mismatch"} 1"#),
            "{text}"
        );
        // Without the annotation it is loaded, under its computed hash.
        assert_eq!(
            apply(&state, &config_map(Some(edited.to_json()), None)),
            Applied::Swapped
        );
        assert_eq!(
            state.pipeline().expect("loaded").hash(),
            edited.content_hash()
        );
        assert_eq!(state.readiness().rejected, None);
    }

    #[test]
    fn a_config_that_needs_pods_waits_and_is_not_loaded_twice() {
        let state = state();
        let plain = server_config(5);
        assert_eq!(
            apply(&state, &config_map(Some(plain.to_json()), None)),
            Applied::Swapped
        );
        let mut autopath = server_config(5);
        autopath.kubernetes.autopath = true;
        let waiting = config_map(Some(autopath.to_json()), None);
        assert_eq!(apply(&state, &waiting), Applied::Waiting);
        assert_eq!(apply(&state, &waiting), Applied::Unchanged, "still waiting");
        // Back to the config being served: the waiting one is dropped.
        assert_eq!(
            apply(&state, &config_map(Some(plain.to_json()), None)),
            Applied::Swapped
        );
        assert!(!state.has_waiting());
        assert_eq!(
            apply(&state, &config_map(Some(plain.to_json()), None)),
            Applied::Unchanged
        );
    }

    #[test]
    fn load_explains_failures() {
        assert!(matches!(
            load(&config_map(None, None), Path::new(NO_RESOLV_CONF)),
            Err(ReloadError::MissingKey)
        ));
        let err = load(
            &config_map(Some("{".into()), None),
            Path::new(NO_RESOLV_CONF),
        )
        .expect_err("not json");
        assert!(
            matches!(err, ReloadError::Invalid(ConfigError::Parse(_))),
            "{err}"
        );
    }

    #[test]
    fn keeps_the_last_good_config() {
        let state = state();
        let good = server_config(5);
        assert_eq!(
            apply(
                &state,
                &config_map(Some(good.to_json()), Some(good.content_hash()))
            ),
            Applied::Swapped
        );
        assert_eq!(
            apply(
                &state,
                &config_map(Some(good.to_json()), Some(good.content_hash()))
            ),
            Applied::Unchanged
        );

        let mut bad = server_config(5);
        bad.kubernetes.ttl_seconds = 1_000_000;
        assert_eq!(
            apply(&state, &config_map(Some(bad.to_json()), None)),
            Applied::Failed
        );
        let serving = state.pipeline().expect("still loaded");
        assert_eq!(serving.config().ttl_seconds(), 5);

        let newer = server_config(10);
        assert_eq!(
            apply(&state, &config_map(Some(newer.to_json()), None)),
            Applied::Swapped
        );
        assert_eq!(state.pipeline().expect("loaded").config().ttl_seconds(), 10);

        let text = state.metrics().encode();
        assert!(
            text.contains(r#"nameplane_config_reloads_total{result="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"nameplane_config_reloads_total{result="failure"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_watch_that_ends_is_started_again() {
        let state = Arc::new(state());
        let target: ConfigMapRef = "kube-system/cluster-dns".parse().expect("ref");
        let versions = [server_config(5), server_config(10)];
        let mut started = 0;
        let events = move || {
            // Each stream lists one version and ends; the third never ends.
            let version = versions
                .get(started)
                .map(|cfg| config_map(Some(cfg.to_json()), None));
            started += 1;
            match version {
                Some(config_map) => futures::stream::iter(vec![
                    Ok(watcher::Event::Init),
                    Ok(watcher::Event::InitApply(config_map)),
                    Ok(watcher::Event::InitDone),
                ])
                .boxed(),
                None => futures::stream::pending().boxed(),
            }
        };
        let (trigger, shutdown) = crate::shutdown::channel();
        let following = tokio::spawn({
            let state = Arc::clone(&state);
            async move { follow(events, &target, &state, shutdown).await }
        });
        let ttl = || state.pipeline().map(|p| p.config().ttl_seconds());
        let deadline = tokio::time::Instant::now() + 3 * RESTART_DELAY;
        while ttl() != Some(10) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ttl(), Some(10), "the second watch's version serves");
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), following)
            .await
            .expect("stops on the signal")
            .expect("task");
    }

    #[test]
    fn failure_before_any_config_leaves_none() {
        let state = state();
        assert_eq!(
            apply(&state, &config_map(Some("{}".into()), None)),
            Applied::Failed
        );
        assert!(state.pipeline().is_none());
    }
}
