//! Kubernetes as a data source: the Service watch and the compact index the query path reads.
//!
//! The server watches Services itself (it does not depend on the operator to answer), keeps
//! only what DNS needs from each ([`index::ServiceEntry`]: the cluster IPs, split by family),
//! and publishes immutable [`ServiceIndex`] snapshots. The query path reads the latest
//! snapshot without a lock; the watch task is the only writer.
//!
//! - [`index`]: the snapshot type, copy-on-write per namespace so one change does not copy
//!   the whole cluster;
//! - [`names`]: how a name under the cluster domain splits into namespace and service;
//! - [`watch`]: the watcher loop and the event handling (re-lists replace the index
//!   atomically, on `InitDone`).

pub mod index;
pub mod names;
pub mod watch;

pub use index::{ServiceEntry, ServiceIndex};
