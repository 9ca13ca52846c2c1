//! nameplane's DNS server: Kubernetes cluster names answered from the server's own API
//! watches, with its configuration swapped in atomically from a ConfigMap.
//!
//! # The pipeline
//!
//! ```text
//!  control plane (off the query path)          query path (no locks)
//!
//!  ConfigMap watch (reload)                     UDP / TCP bytes (server)
//!    -> ValidatedConfig -> Pipeline::build              |
//!    -> ArcSwap<Pipeline> ---------------------+        v
//!                                              |   request::parse    once: header checks,
//!  Service watch (kubernetes::watch)           |        |             lower-cased qname
//!    -> ServiceIndex (copy-on-write)           +-> pipeline::answer  stages in order,
//!    -> ArcSwap<ServiceIndex> -----------------+        |             first Flow::Answer wins
//!                                                       v
//!                                                  response::encode  EDNS echo, TC on UDP
//!
//!  a forwarded query (Flow::Forward) leaves the receive loop:
//!    forward::Deferred::resolve on its own task (bounded by the forwarder's in-flight limit)
//!    -> upstream exchange (coalesced, CSPRNG id and port, strict reply matching)
//!    -> bailiwick filter -> cache insert -> response::encode -> sent on the same socket
//! ```
//!
//! - [`request`] turns the bytes of a query into a [`request::Request`] exactly once, or says
//!   how to reject it (drop, FORMERR, NOTIMP).
//! - [`pipeline`] holds the built configuration ([`pipeline::Pipeline`]): an ordered list of
//!   stages. Each stage answers, or lets the next one try: [`pipeline::cache`] (forwarded
//!   answers), [`pipeline::kubernetes`] (the cluster domain), [`pipeline::zones`]
//!   (authoritative zones, AXFR) and [`pipeline::forward`] (stub domains and upstreams), in
//!   that fixed order, with policy and rewrite to come in front. A name no stage owns is
//!   REFUSED. Local answers never wait on the network; a forwarded query is finished off the
//!   UDP receive loop.
//! - [`response`] encodes the answer a stage produced, echoes EDNS and truncates for UDP.
//! - [`kubernetes`] watches Services and keeps the compact [`kubernetes::ServiceIndex`] the
//!   stage reads; [`reload`] watches the ConfigMap and builds pipelines. Both publish
//!   immutable snapshots through [`state::State`], which the query path reads with
//!   `ArcSwap::load` (no lock, no copy).
//! - [`server`] runs the UDP sockets and the TCP listener; [`admin`] serves `/health`,
//!   `/ready` and `/metrics`; [`metrics`] holds the CoreDNS-compatible counters.
//!
//! Failure rules (after Knot Resolver's and NSD's): a startup error is fatal; a bad config
//! at run time is logged and counted and the last good one keeps serving; a lost API
//! server does not stop answering from the last known Services.

pub mod admin;
pub mod kubernetes;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod request;
pub mod response;
pub mod server;
pub mod shutdown;
pub mod state;
