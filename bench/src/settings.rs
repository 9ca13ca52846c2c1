//! The knobs of a bench run, read from the environment, and the object sets.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_SETS` | `small,large` | object sets to measure, in order (`smoke` for the smoke test) |
//! | `BENCH_QUICK` | off | shorter points (3 s instead of 10 s), fewer config-change samples |
//! | `BENCH_SMOKE` | off | the `make test` smoke: tiny set, one run, 1 s points, pipeline checks only |
//! | `BENCH_RUNS` | 3 (smoke: 1) | runs per point; the report gives the median |
//! | `BENCH_DURATION` | 10 (quick: 3, smoke: 1) | seconds per dnsperf run |
//! | `BENCH_PERF` | off | also record a `perf` profile of each server under each type's load |
//! | `BENCH_TYPES` | all | query types to time, by key (`clusterip_a,headless_a,nxdomain,srv,ptr,external_a`) |
//! | `BENCH_PIN_CONTROL_PLANE` | on | move the control plane to dnsperf's CPU while queries are timed |
//! | `BENCH_PHASES` | all | steps to run (`qps,latency,knot,forward,tcp,client,programming,relist,config`): for iterating on one figure; `forward,tcp,client` runs only the rows of issue 17 |
//! | `BENCH_OUT` | `target/bench` (smoke: `target/bench/smoke`) | where results go |

use serde::Serialize;

/// One object set: Services, Pods and headless Services of given sizes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ObjectSet {
    /// `small`, `large` or `smoke`.
    pub name: String,
    /// Every Service, headless ones included.
    pub services: usize,
    /// Every Pod, the headless Services' endpoints included.
    pub pods: usize,
    /// Endpoint counts of the headless Services (one Service each).
    pub headless: Vec<usize>,
    /// Namespaces the ClusterIP Services are spread over.
    pub namespaces: usize,
}

impl ObjectSet {
    /// ~1k Services / 10k Pods.
    pub fn small() -> Self {
        Self {
            name: "small".into(),
            services: 1_000,
            pods: 10_000,
            headless: vec![1, 100, 1000],
            namespaces: 20,
        }
    }

    /// 10k Services / 50k Pods.
    pub fn large() -> Self {
        Self {
            name: "large".into(),
            services: 10_000,
            pods: 50_000,
            headless: vec![1, 100, 1000],
            namespaces: 20,
        }
    }

    /// The smoke test's set: small enough to create in a few seconds.
    pub fn smoke() -> Self {
        Self {
            name: "smoke".into(),
            services: 40,
            pods: 150,
            headless: vec![1, 10, 50],
            namespaces: 4,
        }
    }

    /// The set called `name`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "small" => Some(Self::small()),
            "large" => Some(Self::large()),
            "smoke" => Some(Self::smoke()),
            _ => None,
        }
    }

    /// ClusterIP (non-headless) Services.
    pub fn cluster_ip_services(&self) -> usize {
        self.services - self.headless.len()
    }

    /// Pods behind ClusterIP Services.
    pub fn cluster_ip_pods(&self) -> usize {
        self.pods - self.headless.iter().sum::<usize>()
    }

    /// The headless Service whose answers are measured: the one with 100 endpoints (or the
    /// middle one of the smoke set).
    pub fn measured_headless(&self) -> usize {
        self.headless[self.headless.len() / 2]
    }
}

/// Every knob of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// The sets, in the order they are measured (each one extends the previous).
    pub sets: Vec<ObjectSet>,
    /// `BENCH_QUICK`.
    pub quick: bool,
    /// `BENCH_SMOKE`.
    pub smoke: bool,
    /// Runs per point.
    pub runs: usize,
    /// Seconds per dnsperf run.
    pub duration_s: u64,
    /// Seconds of untimed warm-up before the runs of a point.
    pub warmup_s: u64,
    /// Services created one by one for the programming latency.
    pub programming_services: usize,
    /// Config changes timed on nameplane (each path).
    pub nameplane_config_changes: usize,
    /// Config changes timed on CoreDNS (each waits for the `reload` plugin).
    pub coredns_config_changes: usize,
    /// The `reload` plugin's arguments (empty: its default, 30 s ± 15 s).
    pub coredns_reload: String,
    /// Directory of results and work files.
    #[serde(skip)]
    pub out_dir: std::path::PathBuf,
    /// Build profile of the nameplane binaries (`release`, or `debug` for the smoke).
    pub profile: String,
    /// `BENCH_PERF`: record a `perf` profile of each server under each type's load.
    pub perf: bool,
    /// `BENCH_TYPES`: query type keys to time (empty: all).
    pub types: Vec<String>,
    /// `BENCH_PHASES`: steps to run (empty: all).
    pub phases: Vec<String>,
    /// `BENCH_PIN_CONTROL_PLANE`: move the control plane to the load generator's CPU while
    /// queries are timed.
    pub pin_control_plane: bool,
}

/// The steps `BENCH_PHASES` can pick.
pub const PHASES: [&str; 9] = [
    "qps",
    "latency",
    "knot",
    "forward",
    "tcp",
    "client",
    "programming",
    "relist",
    "config",
];

impl Settings {
    /// Whether query type `key` is timed.
    pub fn times_type(&self, key: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == key)
    }

    /// Whether step `phase` (one of [`PHASES`]) runs.
    pub fn runs_phase(&self, phase: &str) -> bool {
        self.phases.is_empty() || self.phases.iter().any(|p| p == phase)
    }
}

impl Settings {
    /// Reads the knobs from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let flag = |name: &str| {
            std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
                _ => Ok(default),
            }
        };
        let smoke = flag("BENCH_SMOKE");
        let quick = flag("BENCH_QUICK");
        let default_sets = if smoke { "smoke" } else { "small,large" };
        let sets_var = std::env::var("BENCH_SETS").unwrap_or_default();
        let sets_text = if sets_var.trim().is_empty() {
            default_sets.to_string()
        } else {
            sets_var
        };
        let mut sets = Vec::new();
        for name in sets_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            sets.push(ObjectSet::named(name).ok_or_else(|| {
                anyhow::anyhow!("BENCH_SETS: unknown set {name:?} (small, large, smoke)")
            })?);
        }
        if sets.iter().any(|s| s.name == "smoke") && sets.len() > 1 {
            anyhow::bail!("BENCH_SETS: the smoke set runs alone");
        }
        let runs = number("BENCH_RUNS", if smoke { 1 } else { 3 })?.max(1) as usize;
        let duration_s = number(
            "BENCH_DURATION",
            if smoke {
                1
            } else if quick {
                3
            } else {
                10
            },
        )?
        .max(1);
        let out_dir = match std::env::var_os("BENCH_OUT") {
            Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
            _ if smoke => crate::sys::target_dir().join("bench/smoke"),
            _ => crate::sys::target_dir().join("bench"),
        };
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let phases = list("BENCH_PHASES");
        if let Some(unknown) = phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
            anyhow::bail!(
                "BENCH_PHASES: unknown step {unknown:?} ({})",
                PHASES.join(", ")
            );
        }
        if smoke
            && (!phases.is_empty() || std::env::var("BENCH_TYPES").is_ok_and(|t| !t.is_empty()))
        {
            anyhow::bail!("the smoke checks every step: unset BENCH_PHASES and BENCH_TYPES");
        }
        Ok(Self {
            sets,
            quick,
            smoke,
            runs,
            duration_s,
            warmup_s: if smoke || quick { 1 } else { 2 },
            programming_services: if smoke { 3 } else { 50 },
            nameplane_config_changes: if smoke {
                3
            } else if quick {
                10
            } else {
                20
            },
            coredns_config_changes: if smoke || quick { 1 } else { 3 },
            // The smoke cannot wait 30 s ± 15 s per change; it says so in its report.
            coredns_reload: if smoke { "2s 1s".into() } else { String::new() },
            out_dir,
            profile: std::env::var("NAMEPLANE_PROFILE").unwrap_or_else(|_| "release".into()),
            perf: flag("BENCH_PERF"),
            types: list("BENCH_TYPES"),
            phases,
            pin_control_plane: std::env::var("BENCH_PIN_CONTROL_PLANE")
                .map_or(true, |v| !matches!(v.as_str(), "0" | "false" | "off")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_have_the_issue_sizes() {
        let small = ObjectSet::small();
        assert_eq!((small.services, small.pods), (1_000, 10_000));
        assert_eq!(small.cluster_ip_services(), 997);
        assert_eq!(small.cluster_ip_pods(), 10_000 - 1_101);
        assert_eq!(small.measured_headless(), 100);
        let large = ObjectSet::large();
        assert_eq!((large.services, large.pods), (10_000, 50_000));
        assert_eq!(large.headless, small.headless);
        assert_eq!(large.namespaces, small.namespaces, "large extends small");
        assert!(ObjectSet::named("huge").is_none());
    }
}
