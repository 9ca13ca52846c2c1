//! nameplane's DNS server: Kubernetes cluster names answered from the server's own API
//! watches, with its configuration swapped in atomically from a ConfigMap.
//!
//! # The pipeline
//!
//! ```text
//!  control plane (off the query path)          query path (no locks, no allocation
//!                                              beyond the answer's record list)
//!  ConfigMap watch (reload)                     UDP / TCP bytes (server: one UDP socket
//!    -> ValidatedConfig -> hash check                   |      per core, SO_REUSEPORT)
//!    -> Pipeline::build                                 |
//!    -> (waits for the Pod list if it needs it)         |
//!    -> ArcSwap<Pipeline> ---------------------+        v
//!         | WatchSpec (selectors, pods? nodes?)|   request::parse    once: header checks,
//!         v                                    |        |             lower-cased qname
//!  Service/EndpointSlice/Namespace/(Pod/Node)  +-> pipeline::answer  stages in order,
//!  watches (cluster::watch)                    |        |             first Flow::Answer wins
//!    -> ClusterWriter (copy-on-write tables)   |        v
//!    -> ArcSwap<Cluster> ----------------------+   pipeline::send    wire::* encoders:
//!                                                                    compression, EDNS,
//!                                                                    TC on UDP, into a
//!                                                                    reused buffer
//! ```
//!
//! - [`request`] turns the bytes of a query into a [`request::Request`] exactly once, without
//!   allocating, or says how to reject it (drop, FORMERR, NOTIMP).
//! - [`pipeline`] holds the built configuration ([`pipeline::Pipeline`]): its stages in a
//!   fixed order. Each stage answers, or lets the next one try: [`pipeline::cache`]
//!   (forwarded answers), [`pipeline::kubernetes`] (the Kubernetes DNS specification with
//!   CoreDNS's semantics), [`pipeline::zones`] (authoritative zones, AXFR) and
//!   [`pipeline::forward`] (stub domains and upstreams), with policy, rewrite and autopath
//!   around them for the clients they concern ([`pipeline::client`]). A name no stage owns
//!   is REFUSED. Local answers never wait on the network; a forwarded query is a
//!   [`pipeline::Deferred`], finished off the UDP receive loop, and off the TCP
//!   connection's order: later queries pipelined behind it are answered first
//!   ([`state::Reply::Deferred`]).
//! - The floor the stages share and never import past: [`request`] (the query, parsed
//!   once, and [`request::SizeLimit`]), [`reply`] (owned replies and their [`reply::Key`]),
//!   [`answer_cache`] (filled by the forward stage, read by the cache stage), [`settings`]
//!   (the process's flags) and [`wire`], the one home of every encoder: name compression,
//!   EDNS, truncation, cached templates, zone transfers.
//! - [`cluster`] watches Services, EndpointSlices, Namespaces (and Pods, and Nodes, when
//!   the config needs to know who a client is: verified pod records, policies, autopath,
//!   tenant rewrites, client classes) and keeps the compact [`cluster::Cluster`] snapshot
//!   the stages read; [`reload`] watches the ConfigMap and builds pipelines. Both publish
//!   immutable snapshots through [`state::State`], which the query path reads with
//!   `ArcSwap::load` (no lock, no copy). A pipeline that needs the Pod list is swapped in
//!   only once the snapshot has it.
//! - [`server`] runs the UDP sockets and the TCP listener (deadlines and per-address
//!   connection caps: [`server::tcp`]); [`admin`] serves `/health`, `/ready` and
//!   `/metrics`; [`metrics`] holds the CoreDNS-compatible metrics.
//! - [`rate_limit`]: with `rateLimit` in the config, UDP answers to clients that are not
//!   one identified Pod are rate-limited per client prefix and answer class (dropped, or
//!   slipped: sent truncated so a real client retries over TCP).
//! - [`test_support`] is not part of the server: the fixture and the properties the fuzz
//!   targets (`fuzz/`) and the corpus replay tests check.
//!
//! Failure rules (after Knot Resolver's and NSD's): a startup error is fatal; a bad config
//! at run time (or one whose content does not match its hash annotation) is logged and
//! counted and the last good one keeps serving; a lost API server does not stop answering
//! from the last known cluster; before the first complete list, cluster names are SERVFAIL
//! (never a false NXDOMAIN) and `/ready` fails; a watch a newer config starts (the Pod
//! watch) does not make a serving replica unready; a task that must run until shutdown
//! and stops (a panic) fails `/health` ([`shutdown::Supervisor`]), so the kubelet restarts
//! the process rather than leave a dead socket or a frozen config behind a live one.

// Items are `pub(crate)` unless another crate (the binary, the integration tests, the fuzz
// targets) uses them: the lint keeps it that way.
#![warn(unreachable_pub)]

pub mod admin;
pub mod answer_cache;
pub mod cluster;
pub(crate) mod loadbalance;
pub mod metrics;
pub mod pipeline;
pub(crate) mod query_log;
pub(crate) mod rate_limit;
pub mod reload;
pub(crate) mod reply;
pub mod request;
pub mod resolv_conf;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod state;
pub mod test_support;
pub(crate) mod wire;
