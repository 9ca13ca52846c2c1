//! The results: one row per measured point, with absolute figures for CoreDNS, nameplane (and
//! Knot where it applies), the ratio nameplane/CoreDNS and the target; written as
//! `results.json` (everything, every run) and `results.md` (the tables).

use std::fmt::Write as _;

use serde::Serialize;

use crate::settings::{ObjectSet, Settings};
use crate::sys::Machine;

/// Median of `values` (mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Nearest-rank `q`-quantile (0..=1) of sorted `values`; `None` when empty.
pub fn quantile_sorted(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// One server's figure for one point.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Cell {
    /// The figure (median of the runs), when there is one.
    pub value: Option<f64>,
    /// Every run's figure.
    pub runs: Vec<f64>,
    /// Why there is no figure ("unsupported: REFUSED"), or a remark on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Cell {
    /// The median of `runs`.
    pub fn of_runs(runs: Vec<f64>) -> Self {
        Self {
            value: median(&runs),
            runs,
            note: None,
        }
    }

    /// A single figure.
    pub fn one(value: f64) -> Self {
        Self::of_runs(vec![value])
    }

    /// No figure, and why.
    pub fn missing(note: impl Into<String>) -> Self {
        Self {
            value: None,
            runs: Vec::new(),
            note: Some(note.into()),
        }
    }

    /// The same cell with a remark.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Which way is better for a row.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// More is better (QPS).
    Higher,
    /// Less is better (latency, memory).
    Lower,
}

/// The target for a row.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Target {
    /// No target.
    None,
    /// nameplane/CoreDNS must be at least (Higher) or at most (Lower) this.
    Ratio {
        /// The bound on nameplane/CoreDNS.
        ratio: f64,
    },
    /// nameplane's own figure must be at most this (in the row's unit).
    AtMost {
        /// The bound.
        value: f64,
    },
    /// nameplane's own figure must be at least this (in the row's unit).
    AtLeast {
        /// The bound.
        value: f64,
    },
    /// nameplane must reach this share of Knot's figure.
    OfKnot {
        /// The share.
        share: f64,
    },
}

/// One point of the comparison.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Section: `qps`, `latency`, `memory`, `programming`, `config`.
    pub section: String,
    /// What was measured, for people.
    pub metric: String,
    /// Unit of the figures.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// CoreDNS.
    pub coredns: Cell,
    /// nameplane.
    pub nameplane: Cell,
    /// Knot DNS serving the same names from a static zone, where measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knot: Option<Cell>,
    /// The target.
    pub target: Target,
    /// Share of Knot's figure nameplane must reach, where Knot was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knot_share_target: Option<f64>,
    /// How it was measured.
    pub method: String,
}

impl Row {
    /// nameplane/CoreDNS, when both have a figure.
    pub fn ratio(&self) -> Option<f64> {
        match (self.nameplane.value, self.coredns.value) {
            (Some(n), Some(c)) if c > 0.0 => Some(n / c),
            _ => None,
        }
    }

    /// Whether nameplane meets the target: `None` when there is no target or no figure.
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::None => None,
            Target::Ratio { ratio } => self.ratio().map(|r| match self.better {
                Better::Higher => r >= ratio,
                Better::Lower => r <= ratio,
            }),
            Target::AtMost { value } => self.nameplane.value.map(|n| n <= value),
            Target::AtLeast { value } => self.nameplane.value.map(|n| n >= value),
            Target::OfKnot { share } => {
                match (
                    self.nameplane.value,
                    self.knot.as_ref().and_then(|k| k.value),
                ) {
                    (Some(n), Some(k)) if k > 0.0 => Some(n / k >= share),
                    _ => None,
                }
            }
        }
    }

    /// nameplane/Knot, when both have a figure.
    pub fn knot_share(&self) -> Option<f64> {
        match (
            self.nameplane.value,
            self.knot.as_ref().and_then(|k| k.value),
        ) {
            (Some(n), Some(k)) if k > 0.0 => Some(n / k),
            _ => None,
        }
    }

    fn knot_text(&self) -> String {
        match (self.knot_share(), self.knot_share_target) {
            (Some(share), Some(target)) => format!(
                "{:.0}% (≥ {:.0}%: {})",
                share * 100.0,
                target * 100.0,
                if share >= target { "yes" } else { "**no**" }
            ),
            (Some(share), None) => format!("{:.0}%", share * 100.0),
            _ => "—".into(),
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::None => String::new(),
            Target::Ratio { ratio } => format!(
                "{} {}×",
                if self.better == Better::Higher {
                    "≥"
                } else {
                    "≤"
                },
                trim(ratio)
            ),
            Target::AtMost { value } => format!("≤ {} {}", trim(value), self.unit),
            Target::AtLeast { value } => format!("≥ {} {}", trim(value), self.unit),
            Target::OfKnot { share } => format!("≥ {:.0}% of Knot", share * 100.0),
        }
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A figure for a table: thousands grouped for big numbers, 3 significant digits otherwise.
pub fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A note as short as a table cell allows: an unsupported type's reason without the name
/// it was seen for (the probe table has the whole of it).
fn short_note(note: &str) -> &str {
    note.split(" for ").next().unwrap_or(note)
}

fn fmt_cell(cell: &Cell) -> String {
    let spread = if cell.runs.len() > 1 {
        let lo = cell.runs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = cell.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(" ({}–{})", fmt_value(lo), fmt_value(hi))
    } else {
        String::new()
    };
    match (cell.value, &cell.note) {
        (Some(v), Some(note)) => format!("{}{spread} [{}]", fmt_value(v), short_note(note)),
        (Some(v), None) => format!("{}{spread}", fmt_value(v)),
        (None, Some(note)) => short_note(note).to_string(),
        (None, None) => "—".into(),
    }
}

/// Everything measured for one object set.
#[derive(Clone, Debug, Serialize)]
pub struct SetReport {
    /// The set.
    pub set: ObjectSet,
    /// The config nameplane ran with (what its contract accepted of the equivalent config).
    pub nameplane_config: serde_json::Value,
    /// Fields of the equivalent config this nameplane build does not know (dropped).
    pub nameplane_dropped_fields: Vec<String>,
    /// Which query types each server answers correctly (probe results).
    pub support: Vec<Support>,
    /// The comparison.
    pub rows: Vec<Row>,
    /// Steps that failed, with why (the rest of the set still ran).
    pub errors: Vec<String>,
    /// Raw measurements (dnsperf summaries of every run, samples) for whoever checks.
    pub raw: serde_json::Value,
}

/// What the probes found for one query type.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Support {
    /// Query type key.
    pub query: String,
    /// Example query.
    pub example: String,
    /// `ok` or why not, for CoreDNS.
    pub coredns: String,
    /// `ok` or why not, for nameplane.
    pub nameplane: String,
    /// `ok` or why not, for Knot (static zone), when probed.
    pub knot: Option<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Knobs.
    pub settings: Settings,
    /// Versions of everything measured.
    pub versions: Vec<(String, String)>,
    /// Caveats that apply to every figure.
    pub notes: Vec<String>,
    /// One entry per object set.
    pub sets: Vec<SetReport>,
    /// Wall-clock seconds of the whole run.
    pub runtime_s: f64,
    /// The last torture and fuzz runs' figures (not run by the bench).
    pub adversarial: crate::adversarial::Adversarial,
}

impl Report {
    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# nameplane vs CoreDNS: bench results\n");
        let _ = writeln!(
            md,
            "Machine: {} CPUs, {}, kernel {}, {} MiB{}. Load average at start {}, at end {}. Started {}, took {:.0} min.\n",
            m.nproc,
            m.cpu_model,
            m.kernel,
            m.memory_mib,
            m.governor
                .as_ref()
                .map(|g| format!(", governor {g}"))
                .unwrap_or_default(),
            m.loadavg_start,
            m.loadavg_end,
            m.started,
            self.runtime_s / 60.0
        );
        let s = &self.settings;
        let _ = writeln!(
            md,
            "Runs per point: {} (median shown, min–max in brackets); {} s per dnsperf run after {} s warm-up{}{}.\n",
            s.runs,
            s.duration_s,
            s.warmup_s,
            if s.quick { "; BENCH_QUICK" } else { "" },
            if s.smoke {
                "; SMOKE (pipeline check, figures meaningless)"
            } else {
                ""
            }
        );
        let _ = writeln!(md, "Versions:");
        for (what, version) in &self.versions {
            let _ = writeln!(md, "- {what}: {version}");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\nNotes:");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        for set in &self.sets {
            let o = &set.set;
            let _ = writeln!(
                md,
                "\n## Object set `{}`: {} Services ({} headless, {:?} endpoints), {} Pods\n",
                o.name,
                o.services,
                o.headless.len(),
                o.headless,
                o.pods
            );
            if !set.nameplane_dropped_fields.is_empty() {
                let _ = writeln!(
                    md,
                    "nameplane's contract in this build does not know {:?} of the equivalent config; it ran without them.\n",
                    set.nameplane_dropped_fields
                );
            }
            let _ = writeln!(md, "| query type | example | CoreDNS | nameplane | Knot |");
            let _ = writeln!(md, "|---|---|---|---|---|");
            for sup in &set.support {
                let _ = writeln!(
                    md,
                    "| {} | `{}` | {} | {} | {} |",
                    sup.query,
                    sup.example,
                    sup.coredns,
                    sup.nameplane,
                    sup.knot.as_deref().unwrap_or("—")
                );
            }
            let _ = writeln!(
                md,
                "\n| metric | unit | CoreDNS | nameplane | nameplane/CoreDNS | target | met | Knot | nameplane/Knot |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
            for row in &set.rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.metric,
                    row.unit,
                    fmt_cell(&row.coredns),
                    fmt_cell(&row.nameplane),
                    row.ratio()
                        .map(|r| format!("{r:.2}"))
                        .unwrap_or_else(|| "—".into()),
                    row.target_text(),
                    match row.met() {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "—",
                    },
                    row.knot
                        .as_ref()
                        .map(fmt_cell)
                        .unwrap_or_else(|| "—".into()),
                    row.knot_text(),
                );
            }
            let _ = writeln!(md, "\nHow each row was measured:\n");
            let mut methods: Vec<(&str, Vec<&str>)> = Vec::new();
            for row in &set.rows {
                match methods.iter_mut().find(|(m, _)| *m == row.method) {
                    Some((_, metrics)) => metrics.push(&row.metric),
                    None => methods.push((&row.method, vec![&row.metric])),
                }
            }
            for (method, metrics) in methods {
                let _ = writeln!(md, "- **{}**: {method}", metrics.join("; "));
            }
            if !set.errors.is_empty() {
                let _ = writeln!(md, "\nSteps that failed:\n");
                for e in &set.errors {
                    let _ = writeln!(md, "- {}", e.replace('\n', " "));
                }
            }
        }
        md.push_str(&self.adversarial.markdown());
        md
    }

    /// The table part only, for the terminal.
    pub fn terminal_table(&self) -> String {
        let mut out = String::new();
        for set in &self.sets {
            let _ = writeln!(out, "\n== object set {} ==", set.set.name);
            let _ = writeln!(
                out,
                "{:<44} {:>18} {:>18} {:>8} {:>14}  target",
                "metric", "CoreDNS", "nameplane", "n/C", "Knot"
            );
            for row in &set.rows {
                let short = |c: &Cell| {
                    c.value.map(fmt_value).unwrap_or_else(|| {
                        c.note
                            .as_deref()
                            .map(|n| short_note(n).replace("unsupported: ", "unsup. "))
                            .unwrap_or_else(|| "—".into())
                    })
                };
                let mut metric = format!("{} [{}]", row.metric, row.unit);
                metric.truncate(44);
                let _ = writeln!(
                    out,
                    "{metric:<44} {:>18.18} {:>18.18} {:>8} {:>14.14}  {} {}",
                    short(&row.coredns),
                    short(&row.nameplane),
                    row.ratio()
                        .map(|r| format!("{r:.2}"))
                        .unwrap_or_else(|| "—".into()),
                    row.knot.as_ref().map(short).unwrap_or_else(|| "—".into()),
                    row.target_text(),
                    match row.met() {
                        Some(true) => "(met)",
                        Some(false) => "(MISSED)",
                        None => "",
                    }
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: Option<f64>, n: Option<f64>, better: Better, target: Target) -> Row {
        let cell = |v: Option<f64>| match v {
            Some(v) => Cell::one(v),
            None => Cell::missing("unsupported: REFUSED"),
        };
        Row {
            section: "qps".into(),
            metric: "ClusterIP A".into(),
            unit: "QPS".into(),
            better,
            coredns: cell(c),
            nameplane: cell(n),
            knot: Some(Cell::one(300_000.0)),
            target,
            knot_share_target: Some(0.5),
            method: "dnsperf".into(),
        }
    }

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_sorted(&sorted, 0.5), Some(50.0));
        assert_eq!(quantile_sorted(&sorted, 0.99), Some(99.0));
        assert_eq!(quantile_sorted(&sorted, 1.0), Some(100.0));
    }

    #[test]
    fn ratios_and_targets() {
        let r = row(
            Some(40_000.0),
            Some(150_000.0),
            Better::Higher,
            Target::Ratio { ratio: 3.0 },
        );
        assert_eq!(r.ratio(), Some(3.75));
        assert_eq!(r.met(), Some(true));
        let r = row(
            Some(2.0),
            Some(1.5),
            Better::Lower,
            Target::Ratio { ratio: 0.5 },
        );
        assert_eq!(r.met(), Some(false));
        let r = row(
            Some(40_000.0),
            None,
            Better::Higher,
            Target::Ratio { ratio: 3.0 },
        );
        assert_eq!(
            (r.ratio(), r.met()),
            (None, None),
            "unsupported has no ratio"
        );
        let r = row(
            Some(30.0),
            Some(0.2),
            Better::Lower,
            Target::AtMost { value: 1.0 },
        );
        assert_eq!(r.met(), Some(true));
        let r = row(
            Some(70.0),
            Some(85.0),
            Better::Higher,
            Target::AtLeast { value: 80.0 },
        );
        assert_eq!(r.met(), Some(true));
        assert_eq!(r.target_text(), "≥ 80 QPS");
        let r = row(
            Some(90.0),
            Some(75.0),
            Better::Higher,
            Target::AtLeast { value: 80.0 },
        );
        assert_eq!(
            r.met(),
            Some(false),
            "nameplane's own figure, not the ratio"
        );
        let r = row(
            None,
            Some(160_000.0),
            Better::Higher,
            Target::OfKnot { share: 0.5 },
        );
        assert_eq!(r.met(), Some(true));
        assert!(r.knot_text().starts_with("53% (≥ 50%: yes)"));
    }

    #[test]
    fn formats_figures_and_tables() {
        assert_eq!(fmt_value(1_234_567.4), "1,234,567");
        assert_eq!(fmt_value(33_669.0), "33,669");
        assert_eq!(fmt_value(0.0123), "0.012");
        assert_eq!(fmt_value(12.34), "12.3");
        let mut cell = Cell::of_runs(vec![3.0, 1.0, 2.0]);
        assert_eq!(fmt_cell(&cell), "2.00 (1.00–3.00)");
        cell.note = Some("noisy".into());
        assert!(fmt_cell(&cell).ends_with("[noisy]"));
        assert_eq!(
            fmt_cell(&Cell::missing("unsupported: REFUSED")),
            "unsupported: REFUSED"
        );
    }
}
