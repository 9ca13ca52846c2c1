//! Kubernetes as a data source: the watches and the compact snapshot the query path reads.
//!
//! The server watches the API itself (it does not depend on the operator to answer), keeps
//! only what DNS needs from each object ([`objects`]), and publishes immutable [`Cluster`]
//! snapshots. The query path reads the latest snapshot without a lock; the watch task is
//! the only writer.
//!
//! - [`objects`]: the cut-down forms of Services, EndpointSlices and Pods;
//! - [`maps`]: the copy-on-write maps snapshots are built from;
//! - [`index`]: the snapshot ([`Cluster`]) and its tables, with forward and reverse lookups;
//! - [`writer`]: watch events into tables (re-lists swapped in atomically);
//! - [`pods`]: the Pods table (Pod IP → live Pods, when the config needs Pods);
//! - [`nodes`]: the Nodes' addresses, for the node client class (only when the config asks);
//! - [`names`]: how a name under the cluster domain, or a reverse name, maps to objects;
//! - [`watch`]: the watch task (selectors from the config, retries with [`backoff`]).

pub(crate) mod backoff;
pub mod index;
pub(crate) mod maps;
pub(crate) mod names;
pub(crate) mod nodes;
pub mod objects;
pub(crate) mod pods;
pub mod watch;
pub(crate) mod writer;

pub use index::Cluster;
pub use objects::{EndpointEntry, PortEntry, Protocol, ServiceEntry, SliceEntry};
