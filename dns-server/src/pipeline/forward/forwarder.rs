//! One forwarder: a domain, its upstreams, how it picks among them, its in-flight limit and
//! the table of queries in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;
use nameplane_config::forward::{ForwardConfig, ForwardPolicy};
use rand::RngExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::bailiwick;
use super::upstream::{Mode, Upstream};
use crate::metrics::forward::ForwardMetrics;
use crate::reply::Key;
use crate::reply::Reply;
use crate::request::Transport;

/// Most upstreams asked for one query.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// Longest wait for one upstream's reply before trying the next.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Longest time a query spends on the upstreams in all; then SERVFAIL (or a stale answer).
/// Below the 5 s a stub resolver waits by default, so the client sees our answer, not its
/// own timeout.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_millis(2000);

/// Every attempt failed without a usable reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

type Exchange = Shared<BoxFuture<'static, Result<Arc<Reply>, Failed>>>;

/// A forwarder built from one [`ForwardConfig`].
#[derive(Debug)]
pub struct Forwarder {
    settings: ForwardConfig,
    domain: Name,
    upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
    limit: Arc<Semaphore>,
    in_flight: Mutex<HashMap<Key, Exchange>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Forwarder {
    /// Builds the forwarder; the config is validated, so errors mean a bug upstream of here.
    pub fn new(settings: &ForwardConfig) -> Result<Self, String> {
        let domain = if settings.domain == "." {
            Name::root()
        } else {
            Name::from_ascii(format!("{}.", settings.domain))
                .map_err(|e| format!("{:?}: {e}", settings.domain))?
                .to_lowercase()
        };
        let upstreams: Vec<Arc<Upstream>> = settings
            .addresses()
            .into_iter()
            .map(|addr| Arc::new(Upstream::new(addr, settings.force_tcp)))
            .collect();
        // `serversFromResolvConf` with a resolv.conf that listed nothing: SERVFAIL.
        if upstreams.is_empty() && !settings.servers_from_resolv_conf {
            return Err(format!("{}: no usable server address", settings.domain));
        }
        let limit = usize::try_from(settings.max_concurrent()).unwrap_or(usize::MAX);
        Ok(Self {
            settings: settings.clone(),
            domain,
            upstreams,
            next: AtomicUsize::new(0),
            limit: Arc::new(Semaphore::new(limit)),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &ForwardConfig {
        &self.settings
    }

    /// The domain it forwards (the root for `.`).
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The upstreams, in config order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// A slot in the in-flight limit, or `None` when the forwarder is at its limit.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.limit).try_acquire_owned().ok()
    }

    /// Queries currently holding a slot.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.settings.max_concurrent())
            .unwrap_or(usize::MAX)
            .saturating_sub(self.limit.available_permits())
    }

    /// Every upstream is down.
    pub fn all_down(&self) -> bool {
        self.upstreams.iter().all(|upstream| !upstream.healthy())
    }

    /// The transport towards the upstreams for a client that came over `transport`.
    fn mode(&self, transport: Transport) -> Mode {
        if self.settings.force_tcp {
            Mode::Tcp
        } else if self.settings.prefer_udp {
            Mode::Udp
        } else {
            match transport {
                Transport::Udp => Mode::Udp,
                Transport::Tcp => Mode::Tcp,
            }
        }
    }

    /// The upstreams to try, in order: the policy's order, healthy ones first; only one
    /// (the policy's first) when none is healthy.
    pub fn order(&self, metrics: &ForwardMetrics) -> Vec<usize> {
        let n = self.upstreams.len();
        if n == 0 {
            return Vec::new();
        }
        // Upstreams that loop back here are never asked (none left: SERVFAIL at once).
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| !self.upstreams[i].loops().looping())
            .collect();
        let n = order.len();
        if n == 0 {
            return order;
        }
        match self.settings.policy {
            ForwardPolicy::Random => {
                let mut rng = rand::rng();
                for i in (1..n).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
            }
            ForwardPolicy::RoundRobin => {
                order.rotate_left(self.next.fetch_add(1, Ordering::Relaxed) % n);
            }
            ForwardPolicy::Sequential => {}
        }
        let (healthy, down): (Vec<usize>, Vec<usize>) =
            order.iter().partition(|&&i| self.upstreams[i].healthy());
        if healthy.is_empty() {
            metrics.healthcheck_broken();
            return order.into_iter().take(1).collect();
        }
        healthy.into_iter().chain(down).collect()
    }

    /// The reply to `key`: joins the identical query in flight if there is one, else asks
    /// the upstreams. `transport` is the client's.
    pub async fn query(
        self: &Arc<Self>,
        key: &Key,
        transport: Transport,
        metrics: &ForwardMetrics,
    ) -> Result<Arc<Reply>, Failed> {
        let exchange = {
            let mut in_flight = lock(&self.in_flight);
            if let Some(exchange) = in_flight.get(key) {
                metrics.coalesced();
                exchange.clone()
            } else {
                let this = Arc::clone(self);
                let owned = key.clone();
                let metrics = metrics.clone();
                let mode = self.mode(transport);
                let exchange = async move {
                    let result = this.ask(&owned, mode, &metrics).await;
                    lock(&this.in_flight).remove(&owned);
                    result
                }
                .boxed()
                .shared();
                in_flight.insert(key.clone(), exchange.clone());
                exchange
            }
        };
        exchange.await
    }

    /// Tries the upstreams in [`Forwarder::order`] until one gives a usable reply.
    async fn ask(
        self: &Arc<Self>,
        key: &Key,
        mode: Mode,
        metrics: &ForwardMetrics,
    ) -> Result<Arc<Reply>, Failed> {
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let mut last = None;
        for index in self.order(metrics).into_iter().take(MAX_ATTEMPTS) {
            let started = Instant::now();
            if started >= deadline {
                break;
            }
            let Some(upstream) = self.upstreams.get(index) else {
                continue;
            };
            let attempt_deadline = deadline.min(started + ATTEMPT_TIMEOUT);
            match upstream
                .exchange(key, mode, attempt_deadline, metrics)
                .await
            {
                Ok(message) => {
                    upstream.record_success();
                    let rcode = message.metadata.response_code;
                    metrics.request_duration(upstream.label(), rcode, started.elapsed());
                    let reply = Arc::new(bailiwick::sanitize(message, key, &self.domain, metrics));
                    if matches!(
                        rcode,
                        ResponseCode::ServFail
                            | ResponseCode::Refused
                            | ResponseCode::NotImp
                            | ResponseCode::FormErr
                    ) {
                        last = Some(reply);
                        continue;
                    }
                    return Ok(reply);
                }
                Err(error) => {
                    metrics.failure(upstream.label(), error.label());
                    upstream.record_failure(metrics);
                }
            }
        }
        last.ok_or(Failed)
    }
}
