//! `nameplane import`: a CoreDNS Corefile (or a kube-dns ConfigMap) turned into the nameplane
//! objects that say the same: one `DNSServer`, `StubDomain`s, `DNSZone`s and `RewriteRule`s.
//!
//! Pure functions, no I/O: the caller hands in the texts (the Corefile, the files its
//! `import` and `hosts` directives name) and gets objects and [`Finding`]s back.
//!
//! - [`corefile`]: the Corefile reader (server blocks, nested blocks, quotes, comments,
//!   `{$ENV}`, snippets and imports), every token with its file and line.
//! - [`map`]: from directives to objects; what each CoreDNS plugin becomes, or why it does
//!   not (the table is in the README, "Coming from CoreDNS").
//! - [`kubedns`]: kube-dns's `stubDomains` / `upstreamNameservers` ConfigMap.
//! - [`zonefile`]: the zone files of the `file` plugin, when given.
//! - [`duration`]: Go durations (`30s`, `1h30m`) as both readers meet them.
//!
//! Nothing is dropped silently: every directive either becomes part of an object, or is a
//! [`Finding`] — a [`Severity::Note`] when nameplane does it built in or it has no effect on
//! answers (`errors`, `health`, `ready`, `prometheus`, `reload`, `loop`, ...), a
//! [`Severity::NotCarried`] when behaviour is lost. Input that is not a Corefile (unbalanced
//! braces, an unknown plugin, a bad argument count) is an [`ImportError`] naming the line.
//! Finally the objects are rendered as the operator would ([`crate::render::render`]); an
//! object the renderer would reject is reported as not carried over.

pub mod corefile;
pub mod duration;
pub mod kubedns;
pub mod map;
pub mod zonefile;

use crate::api::dnsserver::DNSServer;
use crate::api::dnszone::DNSZone;
use crate::api::rewriterule::RewriteRule;
use crate::api::stubdomain::StubDomain;
use corefile::Location;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Built into nameplane, or without effect on answers: nothing is lost.
    Note,
    /// Behaviour the objects do not carry over.
    NotCarried,
}

/// One directive (or part of one) that did not become an object field as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Where the directive is.
    pub at: Location,
    /// The directive (its name, or `name subdirective`).
    pub directive: String,
    /// Why, and what nameplane does instead.
    pub reason: String,
    /// Whether behaviour is lost.
    pub severity: Severity,
}

impl fmt::Display for Finding {
    /// `<file>:<line>: <directive>: note: <reason>` or `...: not carried over: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Note => "note",
            Severity::NotCarried => "not carried over",
        };
        write!(
            f,
            "{}: {}: {kind}: {}",
            self.at, self.directive, self.reason
        )
    }
}

/// Input that cannot be imported at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    /// Where.
    pub at: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl std::error::Error for ImportError {}

impl From<corefile::ParseError> for ImportError {
    fn from(e: corefile::ParseError) -> Self {
        Self {
            at: e.at,
            message: e.message,
        }
    }
}

/// Names of the objects written, and where the files an import may read are.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace of every object written.
    pub namespace: String,
    /// Name of the `DNSServer` (other objects' names derive from their domain).
    pub name: String,
    /// Files the Corefile may name (`import`, `hosts`), by absolute path, e.g. the keys of
    /// the `coredns` ConfigMap under `/etc/coredns/`.
    pub files: BTreeMap<String, String>,
    /// Directories whose whole content is in `files` (an `import` glob there that matches
    /// nothing imports nothing, as in CoreDNS, rather than being unknown).
    pub provided_dirs: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "nameplane-system".into(),
            name: "cluster-dns".into(),
            files: BTreeMap::new(),
            provided_dirs: Vec::new(),
        }
    }
}

/// What an import produced.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The server.
    pub server: DNSServer,
    /// Stub domains, in the order their directives appear.
    pub stubs: Vec<StubDomain>,
    /// Zones (from `hosts`), by name.
    pub zones: Vec<DNSZone>,
    /// Rewrite rules, in order.
    pub rewrites: Vec<RewriteRule>,
    /// Everything that is not carried over as written, in file order.
    pub findings: Vec<Finding>,
    /// Where each object (by kind and name) came from, for reporting what the renderer
    /// rejects.
    pub(crate) origins: BTreeMap<(&'static str, String), Location>,
}

impl Imported {
    /// Whether every directive was carried over (notes aside).
    pub fn complete(&self) -> bool {
        self.findings.iter().all(|f| f.severity == Severity::Note)
    }

    /// The process exit status of `nameplane import`: 0 complete, 2 something not carried
    /// over (an [`ImportError`] is 1).
    pub fn exit_status(&self) -> i32 {
        if self.complete() { 0 } else { 2 }
    }

    /// Every object as one multi-document YAML stream for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        let mut push = |value: serde_json::Value| {
            let body = serde_saphyr::to_string(&value).unwrap_or_else(|e| format!("# {e}\n"));
            out.push_str("---\n");
            out.push_str(&body);
            if !body.ends_with('\n') {
                out.push('\n');
            }
        };
        push(map::server_value(&self.server));
        for stub in &self.stubs {
            push(map::stub_value(stub));
        }
        for zone in &self.zones {
            push(object_value(zone));
        }
        for rewrite in &self.rewrites {
            push(object_value(rewrite));
        }
        out
    }

    /// What goes to stderr: one line per finding, then a summary line.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            out.push_str(&finding.to_string());
            out.push('\n');
        }
        let notes = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Note)
            .count();
        let lost = self.findings.len() - notes;
        out.push_str(&format!(
            "nameplane import: {} object(s), {notes} note(s), {lost} not carried over; exit status {}\n",
            1 + self.stubs.len() + self.zones.len() + self.rewrites.len(),
            self.exit_status()
        ));
        out
    }

    /// Renders the objects as the operator would and reports every object the renderer
    /// rejects (or a config it refuses) as not carried over, at `at`.
    fn check_render(&mut self, at: &Location) {
        let zones: Vec<Arc<DNSZone>> = self.zones.iter().cloned().map(Arc::new).collect();
        let stubs: Vec<Arc<StubDomain>> = self.stubs.iter().cloned().map(Arc::new).collect();
        let rewrites: Vec<Arc<RewriteRule>> = self.rewrites.iter().cloned().map(Arc::new).collect();
        let rendered = crate::render::render(
            &self.server,
            &crate::render::Inputs {
                zones: &zones,
                stubs: &stubs,
                rewrites: &rewrites,
                ..Default::default()
            },
        );
        for (key, verdict) in &rendered.verdicts {
            if let crate::render::Verdict::Rejected { reason, message }
            | crate::render::Verdict::Partial { reason, message } = verdict
            {
                let at = self
                    .origins
                    .get(&(key.kind, key.name.clone()))
                    .unwrap_or(at);
                self.findings.push(Finding {
                    at: at.clone(),
                    directive: format!("{key}"),
                    reason: format!("the operator would not serve it: {reason}: {message}"),
                    severity: Severity::NotCarried,
                });
            }
        }
        if let Err(e) = &rendered.config {
            self.findings.push(Finding {
                at: at.clone(),
                directive: "(whole config)".into(),
                reason: format!("the operator would publish nothing: {e}"),
                severity: Severity::NotCarried,
            });
        }
    }
}

/// A kube object as JSON, without the empty `status` and with defaults left out.
fn object_value<T: serde::Serialize + ResourceExt>(object: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    value
}

/// Imports a Corefile named `file` (for messages) with text `text`; `env` answers `{$NAME}`.
pub fn import_corefile(
    file: &str,
    text: &str,
    options: &Options,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Imported, ImportError> {
    let base_dir = file
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .filter(|d| d.starts_with('/'))
        .unwrap_or("/etc/coredns");
    let parsed = corefile::parse(
        file,
        text,
        &corefile::Sources {
            files: &options.files,
            base_dir,
            env,
        },
    )?;
    let mut imported = map::map(&parsed, options, base_dir)?;
    let end = Location {
        file: file.to_string(),
        line: text.lines().count().max(1),
    };
    imported.check_render(&end);
    Ok(imported)
}

/// Imports a kube-dns ConfigMap (YAML) named `file`.
pub fn import_kube_dns(file: &str, text: &str, options: &Options) -> Result<Imported, ImportError> {
    let mut imported = kubedns::map(file, text, options)?;
    let end = Location {
        file: file.to_string(),
        line: text.lines().count().max(1),
    };
    imported.check_render(&end);
    Ok(imported)
}

/// The `data` of a ConfigMap given as YAML (or JSON), or an error naming the file.
pub fn configmap_data(file: &str, text: &str) -> Result<BTreeMap<String, String>, ImportError> {
    let error = |message: String| ImportError {
        at: Location {
            file: file.to_string(),
            line: 1,
        },
        message,
    };
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| error(format!("not a YAML ConfigMap: {e}")))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("ConfigMap") {
        return Err(error("not a ConfigMap (kind: ConfigMap expected)".into()));
    }
    let mut data = BTreeMap::new();
    if let Some(map) = value.get("data").and_then(|d| d.as_object()) {
        for (key, value) in map {
            match value.as_str() {
                Some(text) => {
                    data.insert(key.clone(), text.to_string());
                }
                None => return Err(error(format!("data.{key} is not a string"))),
            }
        }
    }
    Ok(data)
}

/// The line (1-based) of the first line of `text` that starts, after indentation, with
/// `key:`; 1 when there is none.
pub(crate) fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .or_else(|| {
                    line.strip_prefix('"')
                        .and_then(|l| l.strip_prefix(key))
                        .and_then(|l| l.strip_prefix('"'))
                })
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map_or(1, |i| i + 1)
}

/// The fuzz target's property (`fuzz/fuzz_targets/import.rs`; the unit tests run it over
/// the committed seeds): the input, read as a Corefile (or as a kube-dns ConfigMap when it
/// starts with `apiVersion`; and as a zone file), imports without a panic, and whatever is written parses back
/// as the CRD types.
pub fn fuzz_check(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data).into_owned();
    // The zone-file reader too (reached only through a given file otherwise): no panic.
    let _ = zonefile::parse("example.org", &text);
    let inputs = if text.starts_with("apiVersion") {
        Inputs {
            kube_dns_configmap: Some(("kube-dns.yaml".into(), text)),
            ..Default::default()
        }
    } else {
        Inputs {
            corefile: Some(("Corefile".into(), text)),
            ..Default::default()
        }
    };
    let output = run(&inputs, &Options::default(), &|_| None);
    if output.exit_status == 1 {
        return if output.stdout.is_empty() {
            Ok(())
        } else {
            Err("an error with output".into())
        };
    }
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&output.stdout)
        .map_err(|e| format!("the output is not YAML: {e}\n{}", output.stdout))?;
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let parsed = match kind.as_str() {
            "DNSServer" => serde_json::from_value::<DNSServer>(doc).map(drop),
            "StubDomain" => serde_json::from_value::<StubDomain>(doc).map(drop),
            "DNSZone" => serde_json::from_value::<DNSZone>(doc).map(drop),
            "RewriteRule" => serde_json::from_value::<RewriteRule>(doc).map(drop),
            other => return Err(format!("unexpected kind {other:?}")),
        };
        parsed.map_err(|e| format!("{kind} does not parse back: {e}\n{}", output.stdout))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// The inputs of one `nameplane import` run: file names (for messages) and texts.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// A Corefile.
    pub corefile: Option<(String, String)>,
    /// A `coredns` ConfigMap (YAML): its `Corefile` key is the Corefile, its other keys are
    /// the files beside it in `/etc/coredns/` (k3s's `NodeHosts`).
    pub coredns_configmap: Option<(String, String)>,
    /// `coredns-custom` ConfigMaps (YAML): their keys are the files in
    /// `/etc/coredns/custom/` (k3s, AKS).
    pub custom_configmaps: Vec<(String, String)>,
    /// A kube-dns ConfigMap (YAML).
    pub kube_dns_configmap: Option<(String, String)>,
}

/// What `nameplane import` prints and exits with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The objects (YAML), empty on an error.
    pub stdout: String,
    /// Findings and the summary, or the error.
    pub stderr: String,
    /// 0 complete, 2 something not carried over, 1 the input could not be imported.
    pub exit_status: i32,
}

/// Where a file CoreDNS would see (`/etc/coredns/NodeHosts`) is in the user's files: which
/// file, and the line before its first line.
type Origins = BTreeMap<String, (String, usize)>;

/// One `nameplane import` run, as the CLI does it (the CLI only reads the files).
pub fn run(inputs: &Inputs, options: &Options, env: &dyn Fn(&str) -> Option<String>) -> RunOutput {
    let mut origins = Origins::new();
    let result = run_inner(inputs, options, env, &mut origins);
    let relocate = |at: &mut Location| {
        if let Some((file, offset)) = origins.get(&at.file) {
            at.file = file.clone();
            at.line += offset;
        }
    };
    match result {
        Ok(mut imported) => {
            for finding in &mut imported.findings {
                relocate(&mut finding.at);
            }
            RunOutput {
                stdout: imported.to_yaml(),
                stderr: imported.report(),
                exit_status: imported.exit_status(),
            }
        }
        Err(mut e) => {
            relocate(&mut e.at);
            RunOutput {
                stdout: String::new(),
                stderr: format!("{e}\nnameplane import: nothing written; exit status 1\n"),
                exit_status: 1,
            }
        }
    }
}

fn run_inner(
    inputs: &Inputs,
    options: &Options,
    env: &dyn Fn(&str) -> Option<String>,
    origins: &mut Origins,
) -> Result<Imported, ImportError> {
    let mut options = options.clone();
    let mut add_configmap = |(file, text): &(String, String),
                             dir: &str,
                             options: &mut Options|
     -> Result<BTreeMap<String, String>, ImportError> {
        let data = configmap_data(file, text)?;
        for (key, value) in &data {
            let path = format!("{dir}/{key}");
            origins.insert(path.clone(), (file.clone(), block_offset(text, key)));
            options.files.insert(path, value.clone());
        }
        options.provided_dirs.push(dir.to_string());
        Ok(data)
    };
    for custom in &inputs.custom_configmaps {
        add_configmap(custom, "/etc/coredns/custom", &mut options)?;
    }
    if let Some(configmap) = &inputs.coredns_configmap {
        let data = add_configmap(configmap, "/etc/coredns", &mut options)?;
        let corefile = data.get("Corefile").ok_or_else(|| ImportError {
            at: Location {
                file: configmap.0.clone(),
                line: 1,
            },
            message: "the ConfigMap has no Corefile key".into(),
        })?;
        return import_corefile("/etc/coredns/Corefile", corefile, &options, env);
    }
    if let Some((file, text)) = &inputs.corefile {
        origins.insert("/etc/coredns/Corefile".into(), (file.clone(), 0));
        return import_corefile("/etc/coredns/Corefile", text, &options, env);
    }
    if let Some((file, text)) = &inputs.kube_dns_configmap {
        return import_kube_dns(file, text, &options);
    }
    Err(ImportError {
        at: Location {
            file: "(arguments)".into(),
            line: 0,
        },
        message: "give --corefile, --coredns-configmap or --kube-dns-configmap".into(),
    })
}

/// The line of a ConfigMap key holding a `|` block scalar, so that line n of the value is
/// line n + offset of the YAML file (0 when the value is not a block scalar).
fn block_offset(text: &str, key: &str) -> usize {
    let line = line_of_key(text, key);
    match text.lines().nth(line - 1) {
        Some(l)
            if l.trim_end().ends_with('|')
                || l.trim_end().ends_with("|-")
                || l.trim_end().ends_with("|+") =>
        {
            line
        }
        _ => 0,
    }
}
