//! The process's settings (its flags), fixed for its lifetime and shared by every
//! pipeline it builds, and the one in-flight limit over all forwarding.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::answer_cache::ByteLimits;
use crate::request::DEFAULT_MAX_UDP_PAYLOAD;

/// Settings of the process (flags), fixed for its lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Largest UDP response, and the payload size advertised in EDNS.
    pub max_udp_payload: u16,
    /// This server's own addresses (its Pod IPs): `ns.dns.<zone>` answers the Service in
    /// front of them.
    pub dns_ips: Vec<IpAddr>,
    /// Whether each query is logged (`--query-log`), whatever the config's `logging` says.
    pub query_log: bool,
    /// Queries in flight to upstreams across every forwarder (`--forward-max-in-flight`).
    pub forward_limit: GlobalLimit,
    /// The answer cache's byte budget and per-answer cap (`--cache-max-bytes`,
    /// `--cache-max-entry-bytes`).
    pub cache_limits: ByteLimits,
    /// The resolv.conf whose nameservers the forwarders with `serversFromResolvConf` use,
    /// read at each config load ([`crate::resolv_conf`]).
    pub resolv_conf: std::path::PathBuf,
    /// Whether each new pipeline's upstreams are probed for forwarding loops
    /// ([`crate::pipeline::forward::loops`]). Always on in the binary; off in [`Settings::default`], so
    /// that tests counting an upstream's queries see only their own.
    pub probe_loops: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            dns_ips: Vec::new(),
            query_log: false,
            forward_limit: GlobalLimit::default(),
            cache_limits: ByteLimits::default(),
            resolv_conf: crate::resolv_conf::DEFAULT_PATH.into(),
            probe_loops: false,
        }
    }
}

/// Default of [`GlobalLimit`]: queries in flight to upstreams across every forwarder.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// One in-flight limit over every forwarder of the process, whatever the config: each
/// forwarded query holds a slot (and at most one upstream socket) until it is answered, so
/// this bounds the sockets and the memory that forwarding can take even when a config has
/// many forwarders each with its own `maxConcurrent`. Above it a query is REFUSED at once,
/// as above a forwarder's own limit (CoreDNS's `max_concurrent` answers REFUSED too).
/// Made once per process (`--forward-max-in-flight`) and shared by every pipeline, so a
/// reload neither resets nor doubles it.
#[derive(Clone, Debug)]
pub struct GlobalLimit {
    slots: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl GlobalLimit {
    /// A limit of `max` queries in flight.
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(
                max.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            max,
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Queries currently holding a slot.
    pub fn in_flight(&self) -> usize {
        self.max
            .min(tokio::sync::Semaphore::MAX_PERMITS)
            .saturating_sub(self.slots.available_permits())
    }

    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

impl Default for GlobalLimit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

/// Two handles on one limit are equal; two limits of the same size are not the same limit.
impl PartialEq for GlobalLimit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slots, &other.slots)
    }
}

impl Eq for GlobalLimit {}
