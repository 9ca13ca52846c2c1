//! One upstream server: its health, and one query/reply exchange with it over UDP or TCP.
//!
//! An exchange never trusts the network: the query id and the UDP source port come from
//! the thread's CSPRNG (`rand::rng()`: ChaCha12 seeded from the OS), the UDP socket is
//! connected to the upstream (the kernel then drops datagrams from any other address or
//! port) and every datagram is checked again ([`check_reply`]). A reply that fails a check
//! is counted and ignored; the exchange keeps waiting for the real one until its deadline.
//!
//! **Bounded replies.** A reply with more than [`MAX_ANSWER_RECORDS`] answer,
//! [`MAX_AUTHORITY_RECORDS`] authority or [`MAX_ADDITIONAL_RECORDS`] additional records
//! (by its header counts, before it is decoded) is dropped like a malformed one (reason
//! `too_many_records`): no real answer a forwarder relays needs more, and each decoded
//! record costs memory for as long as the query is in flight and the answer cached. Over
//! TCP every read waits at most until the attempt's deadline (a server that trickles its
//! reply byte by byte is cut off there, reason `timeout`) and one exchange reads at most
//! [`MAX_TCP_READ_BYTES`] (a server that streams message after message that is not the
//! answer is cut off at once, reason `too_much_data`).
//!
//! **TCP connections are reused** (CoreDNS forward's connection cache): a connection that
//! delivered its answer goes back to its upstream's idle list and the next TCP exchange
//! takes it instead of connecting, one exchange at a time per connection; idle
//! connections older than [`IDLE_CONNECTION_EXPIRY`] are closed, at most
//! [`MAX_IDLE_CONNECTIONS`] are kept per upstream, and an exchange on a kept connection
//! that the upstream has closed meanwhile is asked again on a new one. A connection cut
//! off by a deadline or a bad read is never kept. UDP never reuses a socket: every query
//! gets a new source port from the CSPRNG, the defence against cache poisoning.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use rand::RngExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::metrics::forward::{ForwardMetrics, RejectReason};
use crate::reply::Key;
use crate::request::{DEFAULT_MAX_UDP_PAYLOAD as MAX_UDP_PAYLOAD, HEADER_LEN};

/// Consecutive failures after which an upstream counts as down (CoreDNS's `max_fails`).
pub(crate) const MAX_FAILS: u32 = 2;

/// Time between health probes of an upstream that failed (CoreDNS's `health_check`).
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Time a health probe waits for its reply.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Lowest source port drawn for a UDP query (the unprivileged range).
pub(crate) const SOURCE_PORT_MIN: u16 = 1024;

/// Random ports tried before letting the kernel pick one.
const PORT_ATTEMPTS: usize = 16;

/// Largest reply read over UDP. Queries advertise 1232 bytes, so a server sends no more
/// (it truncates); a bigger datagram is cut, fails to decode and is ignored like any bad
/// reply. Small on purpose: this buffer exists once per query in flight.
const MAX_UDP_REPLY: usize = 4096;

/// Most answer records accepted in one upstream reply.
pub(crate) const MAX_ANSWER_RECORDS: u16 = 512;

/// Most authority records accepted in one upstream reply.
pub(crate) const MAX_AUTHORITY_RECORDS: u16 = 64;

/// Most additional records (the OPT record included) accepted in one upstream reply.
pub(crate) const MAX_ADDITIONAL_RECORDS: u16 = 64;

/// Most bytes one TCP exchange reads: two messages of the largest size, so a server
/// that sends something else before the answer still gets its answer through.
pub(crate) const MAX_TCP_READ_BYTES: usize = 2 * (2 + u16::MAX as usize);

/// How long an idle TCP connection to an upstream is kept for the next exchange
/// (CoreDNS forward's `expire` default).
pub(crate) const IDLE_CONNECTION_EXPIRY: Duration = Duration::from_secs(10);

/// Most idle TCP connections kept per upstream.
pub(crate) const MAX_IDLE_CONNECTIONS: usize = 16;

/// The transport of one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// UDP, retried over TCP when the reply is truncated.
    Udp,
    /// TCP only.
    Tcp,
}

/// Why an exchange produced no reply.
#[derive(Debug)]
pub enum ExchangeError {
    /// No acceptable reply before the deadline.
    Timeout,
    /// The network said no (connection refused, unreachable, reset).
    Network(io::Error),
    /// A TCP upstream sent more than [`MAX_TCP_READ_BYTES`] without the answer.
    TooMuchData,
}

impl ExchangeError {
    /// The `reason` label of `nameplane_forward_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Network(_) => "network",
            Self::TooMuchData => "too_much_data",
        }
    }
}

impl From<io::Error> for ExchangeError {
    fn from(error: io::Error) -> Self {
        Self::Network(error)
    }
}

/// An upstream server and what is known about its health.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    label: String,
    force_tcp: bool,
    fails: AtomicU32,
    probing: AtomicBool,
    loops: super::loop_state::LoopState,
    /// Idle TCP connections for the next exchange, with when each became idle; newest
    /// last. Only the forward path (which waits on the network anyway) takes this lock.
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A list of idle sockets is valid whatever a panic interrupted.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Upstream {
    /// An upstream at `addr`, healthy until proven otherwise; probes go over TCP when
    /// `force_tcp`.
    pub fn new(addr: SocketAddr, force_tcp: bool) -> Self {
        Self {
            addr,
            label: addr.to_string(),
            force_tcp,
            fails: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            loops: super::loop_state::LoopState::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a metric label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What loop detection found ([`super::loops`]).
    pub fn loops(&self) -> &super::loop_state::LoopState {
        &self.loops
    }

    /// Fewer than [`MAX_FAILS`] consecutive failures.
    pub fn healthy(&self) -> bool {
        self.fails.load(Ordering::Relaxed) < MAX_FAILS
    }

    /// An exchange got a reply: the upstream is alive.
    pub fn record_success(&self) {
        self.fails.store(0, Ordering::Relaxed);
    }

    /// An exchange failed: count it, and start probing the upstream if nothing does yet.
    /// Must run inside a Tokio runtime.
    pub fn record_failure(self: &Arc<Self>, metrics: &ForwardMetrics) {
        let _ = self
            .fails
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(f.saturating_add(1))
            });
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let probe = Key {
                name: Name::root(),
                qtype: RecordType::NS,
                qclass: DNSClass::IN,
                dnssec_ok: false,
                checking_disabled: false,
                partition: 0,
            };
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                // The upstream left the config: stop probing it.
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                let mode = if upstream.force_tcp {
                    Mode::Tcp
                } else {
                    Mode::Udp
                };
                match upstream
                    .exchange(&probe, mode, Instant::now() + PROBE_TIMEOUT, &metrics)
                    .await
                {
                    // Any reply, whatever its rcode, means the server is up (as CoreDNS).
                    Ok(_) => {
                        upstream.fails.store(0, Ordering::Relaxed);
                        upstream.probing.store(false, Ordering::Release);
                        return;
                    }
                    Err(_) => {
                        let _ = upstream.fails.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |f| Some(f.saturating_add(1)),
                        );
                        metrics.healthcheck_failure(&upstream.label);
                    }
                }
            }
        });
    }

    /// Sends the question of `key` and waits until `deadline` for the matching reply.
    /// Over UDP, a truncated reply is retried over TCP with the time left.
    pub async fn exchange(
        &self,
        key: &Key,
        mode: Mode,
        deadline: Instant,
        metrics: &ForwardMetrics,
    ) -> Result<Message, ExchangeError> {
        if mode == Mode::Udp {
            let reply = self.udp_exchange(key, deadline, metrics).await?;
            if !reply.metadata.truncation {
                return Ok(reply);
            }
        }
        self.tcp_exchange(key, deadline, metrics).await
    }

    async fn udp_exchange(
        &self,
        key: &Key,
        deadline: Instant,
        metrics: &ForwardMetrics,
    ) -> Result<Message, ExchangeError> {
        let socket = bind_random_port(self.addr)?;
        socket.connect(self.addr).await?;
        let id = rand::random::<u16>();
        socket.send(&encode_query(id, key)).await?;
        let mut buf = vec![0; MAX_UDP_REPLY];
        loop {
            let (len, from) = timeout_at(deadline, socket.recv_from(&mut buf))
                .await
                .map_err(|_| ExchangeError::Timeout)??;
            if from != self.addr {
                metrics.rejected_reply(&self.label, RejectReason::Source);
                continue;
            }
            match check_reply(buf.get(..len).unwrap_or_default(), id, key) {
                Ok(message) => return Ok(message),
                Err(reason) => metrics.rejected_reply(&self.label, reason),
            }
        }
    }

    /// The newest idle connection that has not expired (older ones are closed).
    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = lock(&self.idle);
        let (stream, since) = idle.pop()?;
        if since.elapsed() < IDLE_CONNECTION_EXPIRY {
            return Some(stream);
        }
        // Newest last: when the newest has expired, so has every other.
        idle.clear();
        None
    }

    /// Keeps `stream` for the next exchange, if there is room.
    fn put_idle(&self, stream: TcpStream) {
        let mut idle = lock(&self.idle);
        idle.retain(|(_, since)| since.elapsed() < IDLE_CONNECTION_EXPIRY);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push((stream, Instant::now()));
        }
    }

    /// Idle TCP connections kept for the next exchange.
    pub fn idle_connections(&self) -> usize {
        lock(&self.idle).len()
    }

    async fn tcp_exchange(
        &self,
        key: &Key,
        deadline: Instant,
        metrics: &ForwardMetrics,
    ) -> Result<Message, ExchangeError> {
        if let Some(mut stream) = self.take_idle() {
            metrics.tcp_connection(&self.label, true);
            match self.tcp_query(&mut stream, key, deadline, metrics).await {
                Ok(message) => {
                    self.put_idle(stream);
                    return Ok(message);
                }
                // The upstream closed the kept connection meanwhile: ask on a new one.
                Err(ExchangeError::Network(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let mut stream = timeout_at(deadline, TcpStream::connect(self.addr))
            .await
            .map_err(|_| ExchangeError::Timeout)??;
        stream.set_nodelay(true)?;
        metrics.tcp_connection(&self.label, false);
        let message = self.tcp_query(&mut stream, key, deadline, metrics).await?;
        self.put_idle(stream);
        Ok(message)
    }

    /// One query and its answer on `stream`, which is left at a message boundary when this
    /// succeeds (and must be dropped otherwise).
    async fn tcp_query(
        &self,
        stream: &mut TcpStream,
        key: &Key,
        deadline: Instant,
        metrics: &ForwardMetrics,
    ) -> Result<Message, ExchangeError> {
        let id = rand::random::<u16>();
        let query = encode_query(id, key);
        let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&query);
        timeout_at(deadline, stream.write_all(&framed))
            .await
            .map_err(|_| ExchangeError::Timeout)??;
        let mut buf = Vec::new();
        let mut read = 0;
        loop {
            let mut prefix = [0; 2];
            timeout_at(deadline, stream.read_exact(&mut prefix))
                .await
                .map_err(|_| ExchangeError::Timeout)??;
            let len = usize::from(u16::from_be_bytes(prefix));
            read += 2 + len;
            if read > MAX_TCP_READ_BYTES {
                return Err(ExchangeError::TooMuchData);
            }
            buf.resize(len, 0);
            timeout_at(deadline, stream.read_exact(&mut buf))
                .await
                .map_err(|_| ExchangeError::Timeout)??;
            match check_reply(&buf, id, key) {
                Ok(message) => return Ok(message),
                Err(reason) => metrics.rejected_reply(&self.label, reason),
            }
        }
    }
}

/// The query for `key` with `id`: RD set, CD as the client's, EDNS with our payload size
/// and the client's DO bit.
pub(crate) fn encode_query(id: u16, key: &Key) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.checking_disabled = key.checking_disabled;
    let mut query = Query::query(key.name.clone(), key.qtype);
    query.set_query_class(key.qclass);
    message.add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD)
        .set_version(0)
        .set_dnssec_ok(key.dnssec_ok);
    message.set_edns(edns);
    // A name and a type always encode.
    message.to_vec().unwrap_or_default()
}

/// Accepts `bytes` as the reply to the query `id` for `key`, or says why not: the id, the
/// QR bit and opcode, and the question (name case-insensitively, type and class) must all
/// match, no section may hold more records than its cap (checked on the header, before
/// decoding), and the whole message must decode.
pub(crate) fn check_reply(bytes: &[u8], id: u16, key: &Key) -> Result<Message, RejectReason> {
    let Some(
        &[
            id_hi,
            id_lo,
            flags,
            _,
            _,
            _,
            an_hi,
            an_lo,
            ns_hi,
            ns_lo,
            ar_hi,
            ar_lo,
        ],
    ) = bytes.get(..HEADER_LEN)
    else {
        return Err(RejectReason::Malformed);
    };
    if u16::from_be_bytes([id_hi, id_lo]) != id {
        return Err(RejectReason::Id);
    }
    if flags & 0x80 == 0 || (flags >> 3) & 0x0f != 0 {
        return Err(RejectReason::NotResponse);
    }
    if u16::from_be_bytes([an_hi, an_lo]) > MAX_ANSWER_RECORDS
        || u16::from_be_bytes([ns_hi, ns_lo]) > MAX_AUTHORITY_RECORDS
        || u16::from_be_bytes([ar_hi, ar_lo]) > MAX_ADDITIONAL_RECORDS
    {
        return Err(RejectReason::TooManyRecords);
    }
    let message = Message::from_vec(bytes).map_err(|_| RejectReason::Malformed)?;
    match message.queries.as_slice() {
        [query]
            if query.name() == &key.name
                && query.query_type() == key.qtype
                && query.query_class() == key.qclass =>
        {
            Ok(message)
        }
        _ => Err(RejectReason::Question),
    }
}

/// A UDP socket for one query to `remote`, bound to a source port drawn from the CSPRNG
/// (falling back to the kernel's pick if [`PORT_ATTEMPTS`] ports are all taken).
pub(crate) fn bind_random_port(remote: SocketAddr) -> io::Result<UdpSocket> {
    let local: IpAddr = if remote.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = {
        let mut rng = rand::rng();
        let mut bound = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = rng.random_range(SOURCE_PORT_MIN..=u16::MAX);
            match std::net::UdpSocket::bind((local, port)) {
                Ok(socket) => {
                    bound = Some(socket);
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => {}
                Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {}
                Err(error) => return Err(error),
            }
        }
        match bound {
            Some(socket) => socket,
            None => std::net::UdpSocket::bind((local, 0))?,
        }
    };
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
