//! `make bench`: nameplane's DNS server against CoreDNS, side by side in one run, on a real
//! local control plane, with Knot DNS serving the same names from a static zone as a ceiling.
//!
//! `bench/scripts/bench.sh` installs the tools, builds CoreDNS and the nameplane binaries and
//! starts the control plane; the `nameplane-bench` binary then creates the objects, runs the
//! servers pinned to one CPU and dnsperf pinned to the other, measures, and writes
//! `target/bench/results.{md,json}`, with the adversarial suite's last figures
//! ([`adversarial`]). See `bench/README.md`.

pub mod adversarial;
pub mod cluster;
pub mod dnsperf;
pub mod measure;
pub mod objects;
pub mod paths;
pub mod probe;
pub mod queries;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod settings;
pub mod sys;
