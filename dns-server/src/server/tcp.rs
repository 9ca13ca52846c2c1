//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): length-prefixed messages, several per connection.
//!
//! **Pipelining** (RFC 7766 §6.2.1.1). A connection may carry any number of queries, and the
//! client may send them without waiting for answers. A query answered from memory (cluster
//! names, zones, the cache) is answered inline, in the order it arrived. A query that waits
//! on an upstream ([`Reply::Deferred`]) gets a task of its own and its answer is written when
//! it is ready, so later queries are not stuck behind it: answers come back out of order,
//! matched by their message ID. At most [`Limits::in_flight_per_connection`] such queries
//! wait per connection; above that the connection stops reading until one finishes.
//!
//! **Batches.** The system calls, not the answers, are most of the cost of a TCP query, so
//! they are shared: one read takes in every query the client has sent so far, all of them
//! that are answered from memory are answered into one buffer, and that buffer goes out with
//! one write (every [`FLUSH_AT`] bytes for a long burst or a zone transfer). Upstream answers
//! that are ready by then are batched the same way. A connection only holds its two
//! buffers; no task, allocation or timer is set up per query (only per forwarded one).
//!
//! **Deadlines.** Every batch of responses is written within [`Limits::write_timeout`], or
//! the connection is closed: a client that sends queries and never reads its answers holds its
//! slot only until the kernel buffers fill plus that time; each connection's kernel send
//! buffer is bounded ([`SEND_BUFFER`]), so those buffers fill after about one large message
//! and a slow reader pins little kernel memory. A connection with nothing in
//! flight is closed when no complete query arrives for [`Limits::idle_timeout`] (a query
//! trickled in byte by byte does not reset it).
//!
//! **Connection limits** (RFC 7766 §6.2.3). At most [`Limits::max_connections`] in all and
//! [`Limits::max_per_source`] per client address. A connection that would exceed a limit
//! takes the slot of the connection idle the longest within that limit (the same address
//! for the per-source limit, any for the global one), which is closed; "idle" means waiting
//! on the client: no query being answered and no response being written. When every
//! connection within the limit is busy, the new one is closed at once. So one Pod can fill
//! only its own share, and a full server still takes new clients while others sit idle.
//! Closures are counted in `nameplane_tcp_connections_closed_total{reason}`.
//!
//! A connection is also closed when the client closes it (after the answers still owed
//! are written), when a message is not worth an answer, or on shutdown (after the queries in
//! flight are answered).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{self, JoinSet};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::debug;

use crate::request::Transport;
use crate::shutdown::Shutdown;
use crate::state::{Reply, State};

/// Default of [`Limits::idle_timeout`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`Limits::write_timeout`].
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default of [`Limits::max_connections`].
pub const MAX_CONNECTIONS: usize = 1024;

/// Default of [`Limits::max_per_source`].
pub const MAX_PER_SOURCE: usize = 64;

/// Default of [`Limits::in_flight_per_connection`].
pub const IN_FLIGHT_PER_CONNECTION: usize = 32;

/// Kernel send buffer of each connection (`SO_SNDBUF`; Linux doubles it for bookkeeping):
/// room for one largest message and its prefix. Without it the kernel grows a connection's
/// buffer up to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) while the client does not
/// read, so slow readers under the connection cap could pin gigabytes of kernel memory
/// before their write deadlines close them.
pub const SEND_BUFFER: usize = 64 * 1024 + 2;

/// Size at which a batch of responses is written before more are added, so a long burst
/// of pipelined queries or a zone transfer does not gather without bound.
const FLUSH_AT: usize = 8 * 1024;

/// Room a read has at least: enough for a burst of pipelined queries (some 40 of the usual
/// size) to come in with one read.
const READ_ROOM: usize = 2048;

/// Capacity kept by a connection's read buffer between messages (and by its write buffer,
/// once it grew past four times this); a larger one (after a large message) is given back.
const KEPT_BUFFER: usize = 4096;

/// How the TCP transport bounds its connections (flags `--tcp-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections served at once from one client address.
    pub max_per_source: usize,
    /// How long a connection with nothing in flight may wait for its next complete query.
    pub idle_timeout: Duration,
    /// How long writing one batch of responses may take.
    pub write_timeout: Duration,
    /// Most queries of one connection waiting on upstreams at once.
    pub in_flight_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_per_source: MAX_PER_SOURCE,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            in_flight_per_connection: IN_FLIGHT_PER_CONNECTION,
        }
    }
}

/// What the accept loop and one connection share: whether the connection waits on its
/// client (and since when), and the request to close it.
#[derive(Debug)]
struct Activity {
    /// Microseconds since the accept loop started at which the connection began waiting
    /// on its client; [`BUSY`] while it answers or writes.
    idle_since: AtomicU64,
    /// Notified when the connection's slot is given to a newer one.
    close: Notify,
}

/// [`Activity::idle_since`] of a connection that is answering or writing.
const BUSY: u64 = u64::MAX;

/// The clock of [`Activity::idle_since`].
#[derive(Clone, Copy, Debug)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(BUSY - 1)
    }
}

/// One open connection, as the accept loop tracks it.
#[derive(Debug)]
struct Tracked {
    /// Accept order: between connections idle since the same instant, the older gives way.
    seq: u64,
    source: IpAddr,
    activity: Arc<Activity>,
}

/// The open connections, by key (their task's id), and how many each address has. A
/// connection told to close leaves at once, its task may take a moment to end.
#[derive(Debug)]
struct Connections<K> {
    open: HashMap<K, Tracked>,
    per_source: HashMap<IpAddr, usize>,
}

impl<K> Default for Connections<K> {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            per_source: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> Connections<K> {
    fn insert(&mut self, id: K, tracked: Tracked) {
        *self.per_source.entry(tracked.source).or_default() += 1;
        self.open.insert(id, tracked);
    }

    fn remove(&mut self, id: K) {
        let Some(tracked) = self.open.remove(&id) else {
            return;
        };
        if let Some(count) = self.per_source.get_mut(&tracked.source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&tracked.source);
            }
        }
    }

    fn count(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// The connection idle the longest (of `source`, or of any address), if one is idle.
    fn longest_idle(&self, source: Option<IpAddr>) -> Option<K> {
        self.open
            .iter()
            .filter(|(_, t)| source.is_none_or(|s| s == t.source))
            .map(|(id, t)| (*id, t.activity.idle_since.load(Ordering::Relaxed), t.seq))
            .filter(|(_, since, _)| *since != BUSY)
            .min_by_key(|(_, since, seq)| (*since, *seq))
            .map(|(id, _, _)| id)
    }

    /// Makes room for a connection from `source`: `Ok` when there is room (after closing
    /// the longest idle connection within a full limit), `Err(reason)` when the limit is
    /// full of busy connections.
    fn make_room(&mut self, source: IpAddr, limits: &Limits) -> Result<(), &'static str> {
        for (full, within, reason) in [
            (
                self.count(source) >= limits.max_per_source,
                Some(source),
                "per_source_limit",
            ),
            (self.open.len() >= limits.max_connections, None, "limit"),
        ] {
            if !full {
                continue;
            }
            let victim = self.longest_idle(within).ok_or(reason)?;
            if let Some(tracked) = self.open.get(&victim) {
                tracked.activity.close.notify_one();
            }
            // The slot is free from now on; the closed connection's task ends by itself.
            self.remove(victim);
        }
        Ok(())
    }
}

/// Accepts and serves connections on `listener` until `shutdown` fires, then waits for the
/// open connections to answer the queries they have in flight.
pub async fn serve(listener: TcpListener, state: Arc<State>, limits: Limits, shutdown: Shutdown) {
    let mut stop = shutdown.clone();
    let clock = Clock(Instant::now());
    let mut tasks = JoinSet::new();
    let mut connections = Connections::<task::Id>::default();
    let mut accepted_count = 0_u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let source = peer.ip();
                    if let Err(reason) = connections.make_room(source, &limits) {
                        debug!(%peer, reason, "TCP connection limit reached, closing");
                        state.metrics().tcp_closed(reason);
                        continue;
                    }
                    let activity = Arc::new(Activity {
                        idle_since: AtomicU64::new(clock.now()),
                        close: Notify::new(),
                    });
                    accepted_count += 1;
                    let tracked = Tracked {
                        seq: accepted_count,
                        source,
                        activity: Arc::clone(&activity),
                    };
                    let state = Arc::clone(&state);
                    let shutdown = shutdown.clone();
                    let handle = tasks.spawn(async move {
                        let conn = Connection { peer, state, limits, activity, clock };
                        let result = conn.run(stream, shutdown).await;
                        match result {
                            Ok(reason) => conn.state.metrics().tcp_closed(reason),
                            Err(error) => {
                                debug!(%error, %peer, "TCP connection failed");
                                conn.state.metrics().tcp_closed("error");
                            }
                        }
                    });
                    connections.insert(handle.id(), tracked);
                }
                Err(error) => {
                    debug!(%error, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                Ok((id, ())) => connections.remove(id),
                Err(error) => {
                    if error.is_panic() {
                        tracing::error!(%error, "a TCP connection task panicked");
                    }
                    connections.remove(error.id());
                }
            },
            () = stop.wait() => break,
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// One connection being served.
struct Connection {
    peer: SocketAddr,
    state: Arc<State>,
    limits: Limits,
    activity: Arc<Activity>,
    clock: Clock,
}

impl Connection {
    fn busy(&self) {
        self.activity.idle_since.store(BUSY, Ordering::Relaxed);
    }

    fn waiting_on_client(&self) {
        self.activity
            .idle_since
            .store(self.clock.now(), Ordering::Relaxed);
    }

    /// Serves the connection until it closes; returns why it closed (a metric label).
    async fn run(&self, stream: TcpStream, shutdown: Shutdown) -> io::Result<&'static str> {
        stream.set_nodelay(true)?;
        socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER)?;
        self.serve(stream, shutdown).await
    }

    /// Serves `stream` until it closes; returns why it closed (a metric label).
    async fn serve<S>(&self, mut stream: S, shutdown: Shutdown) -> io::Result<&'static str>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Bytes read and not yet answered: complete messages first, then at most one partial.
        let mut input: Vec<u8> = Vec::with_capacity(READ_ROOM);
        // The framed responses of the current batch, written with one write.
        let mut out: Vec<u8> = Vec::with_capacity(512);
        // Queries waiting on upstreams; each yields its response.
        let mut waiting: JoinSet<Vec<u8>> = JoinSet::new();
        let mut stopping = false;
        let mut client_done = false;
        // When the connection is idle for too long. The timer is set once and moved on
        // only when it fires early, so a busy connection does not re-arm it per batch.
        let mut deadline = Instant::now() + self.limits.idle_timeout;
        let idle = sleep_until(deadline);
        let close = self.activity.close.notified();
        let mut shutdown = shutdown;
        let stop = shutdown.wait();
        tokio::pin!(idle, close, stop);
        loop {
            // Answer every complete query read so far (unless too many wait already), into
            // one batch.
            let mut consumed = 0;
            while waiting.len() < self.limits.in_flight_per_connection {
                let Some(len) = complete_message(&input[consumed..]) else {
                    break;
                };
                let query = consumed + 2..consumed + 2 + len;
                consumed = query.end;
                self.busy();
                let framed_at = out.len();
                out.extend_from_slice(&[0, 0]);
                match self
                    .state
                    .handle(&input[query], Transport::Tcp, self.peer, &mut out)
                {
                    Reply::Now(true) => {
                        if !frame(&mut out, framed_at) {
                            return self
                                .last_flush(&mut stream, &mut out, "write_timeout")
                                .await;
                        }
                    }
                    Reply::Now(false) => {
                        out.truncate(framed_at);
                        return self.last_flush(&mut stream, &mut out, "unanswerable").await;
                    }
                    Reply::Stream(more) => {
                        if !frame(&mut out, framed_at) {
                            return self
                                .last_flush(&mut stream, &mut out, "write_timeout")
                                .await;
                        }
                        for message in more {
                            if out.len() >= FLUSH_AT && !self.flush(&mut stream, &mut out).await? {
                                return Ok("write_timeout");
                            }
                            if !push_framed(&mut out, &message) {
                                return self
                                    .last_flush(&mut stream, &mut out, "write_timeout")
                                    .await;
                            }
                        }
                    }
                    Reply::Deferred(later) => {
                        out.truncate(framed_at);
                        let state = Arc::clone(&self.state);
                        waiting.spawn(async move { state.finish(later).await });
                    }
                }
                if out.len() >= FLUSH_AT && !self.flush(&mut stream, &mut out).await? {
                    return Ok("write_timeout");
                }
            }
            if consumed > 0 {
                input.drain(..consumed);
                deadline = Instant::now() + self.limits.idle_timeout;
            }
            if !out.is_empty() && !self.flush(&mut stream, &mut out).await? {
                return Ok("write_timeout");
            }
            // A buffer grown by a large message (up to 64 KiB) is given back.
            if input.is_empty() && input.capacity() > KEPT_BUFFER {
                input.shrink_to(KEPT_BUFFER);
            }
            if (client_done || stopping) && waiting.is_empty() {
                return Ok(if stopping { "shutdown" } else { "client" });
            }
            if waiting.is_empty() {
                self.waiting_on_client();
            }
            let can_read =
                !client_done && !stopping && waiting.len() < self.limits.in_flight_per_connection;
            if can_read {
                // Room for the rest of the partial message (or a new one's prefix).
                let wanted = complete_len(&input).map_or(0, |len| len.saturating_sub(input.len()));
                input.reserve(wanted.max(READ_ROOM));
            }
            tokio::select! {
                biased;
                () = &mut close => return Ok("evicted"),
                () = &mut stop, if !stopping => stopping = true,
                Some(done) = waiting.join_next(), if !waiting.is_empty() => {
                    self.busy();
                    // Every answer ready by now goes into one batch, written at the top of
                    // the loop. A task that failed (panicked) has no answer; the client
                    // times out.
                    let ready = std::iter::from_fn(|| waiting.try_join_next());
                    for response in std::iter::once(done).chain(ready).flatten() {
                        if !push_framed(&mut out, &response) {
                            return self.last_flush(&mut stream, &mut out, "write_timeout").await;
                        }
                    }
                    deadline = Instant::now() + self.limits.idle_timeout;
                }
                read = stream.read_buf(&mut input), if can_read => match read {
                    Ok(0) => client_done = true,
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::ConnectionReset => return Ok("client"),
                    Err(error) => return Err(error),
                },
                () = &mut idle, if waiting.is_empty() => {
                    if Instant::now() >= deadline {
                        return Ok("idle");
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Writes the batch in `out` within the write timeout and empties it: `Ok(false)` when
    /// the time ran out.
    async fn flush<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let written = timeout(self.limits.write_timeout, stream.write_all(out)).await;
        out.clear();
        // A buffer grown by a large batch or message is given back.
        if out.capacity() > 4 * KEPT_BUFFER {
            out.shrink_to(KEPT_BUFFER);
        }
        match written {
            Ok(written) => written.map(|()| true),
            Err(_elapsed) => {
                debug!(peer = %self.peer, "TCP client does not read its answers, closing");
                Ok(false)
            }
        }
    }

    /// Writes the answers batched before a message that closes the connection for `reason`
    /// (one not worth an answer, or one too long to frame), then returns `reason`.
    async fn last_flush<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        out: &mut Vec<u8>,
        reason: &'static str,
    ) -> io::Result<&'static str> {
        if out.is_empty() || self.flush(stream, out).await? {
            Ok(reason)
        } else {
            Ok("write_timeout")
        }
    }
}

/// Fills in the two-byte length prefix at `at` of the message after it, which runs to the end
/// of `out`; a message too long to frame is taken out again (`false`).
fn frame(out: &mut Vec<u8>, at: usize) -> bool {
    let Ok(len) = u16::try_from(out.len() - at - 2) else {
        out.truncate(at);
        return false;
    };
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    true
}

/// Appends `message` to `out` with its length prefix; `false` (and nothing appended) when it
/// is too long to frame.
fn push_framed(out: &mut Vec<u8>, message: &[u8]) -> bool {
    let Ok(len) = u16::try_from(message.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    true
}

/// The length of the message at the start of `input`, once its prefix is there.
fn complete_len(input: &[u8]) -> Option<usize> {
    let prefix = input.get(..2)?;
    Some(2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]])))
}

/// The length of the message at the start of `input`, if it is all there.
fn complete_message(input: &[u8]) -> Option<usize> {
    let framed = complete_len(input)?;
    (input.len() >= framed).then_some(framed - 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages() {
        assert_eq!(complete_message(&[]), None);
        assert_eq!(complete_message(&[0]), None);
        assert_eq!(complete_message(&[0, 0]), Some(0));
        assert_eq!(complete_message(&[0, 2, 1]), None);
        assert_eq!(complete_message(&[0, 2, 1, 2, 0]), Some(2));
        assert_eq!(complete_len(&[1, 0]), Some(258));
    }

    /// A stream that counts the writes that put bytes into it.
    struct CountingWrites {
        inner: tokio::io::DuplexStream,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for CountingWrites {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountingWrites {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let written = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
            if matches!(written, std::task::Poll::Ready(Ok(n)) if n > 0) {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            written
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A state answering the zone `internal.test` and forwarding everything else to
    /// `upstream`.
    fn zone_and_forward(upstream: SocketAddr) -> Arc<State> {
        use nameplane_config::ServerConfig;
        use nameplane_config::forward::{ForwardConfig, ForwardPolicy};
        use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};

        let listen: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let state = Arc::new(State::new(
            crate::metrics::Metrics::new(listen),
            crate::pipeline::Settings::default(),
        ));
        let config = ServerConfig {
            server: "kube-system/dns".into(),
            zones: vec![ZoneConfig {
                name: "internal.test".into(),
                source: "team/internal".into(),
                ttl_seconds: 30,
                records: vec![RecordConfig {
                    name: "db.internal.test".into(),
                    record_type: RecordKind::A,
                    ttl_seconds: 45,
                    values: vec!["192.0.2.5".into()],
                }],
                allow_transfer: vec![],
            }],
            forward: vec![ForwardConfig {
                servers_from_resolv_conf: false,
                domain: ".".into(),
                source: "test/forward".into(),
                servers: vec![upstream.to_string()],
                policy: ForwardPolicy::Random,
                force_tcp: false,
                prefer_udp: true,
                max_concurrent: None,
            }],
            ..Default::default()
        }
        .validate()
        .expect("valid config");
        state
            .set_pipeline(crate::pipeline::Pipeline::build(config, "test".into()).expect("builds"));
        state
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        query_of(id, name, hickory_proto::rr::RecordType::A)
    }

    fn query_of(id: u16, name: &str, kind: hickory_proto::rr::RecordType) -> Vec<u8> {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::Name;
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        let body = message.to_vec().expect("encodes");
        let mut framed = u16::try_from(body.len())
            .expect("fits")
            .to_be_bytes()
            .to_vec();
        framed.extend_from_slice(&body);
        framed
    }

    /// Reads one framed message.
    async fn message(client: &mut tokio::io::DuplexStream) -> hickory_proto::op::Message {
        let mut prefix = [0; 2];
        timeout(Duration::from_secs(5), client.read_exact(&mut prefix))
            .await
            .expect("a message in time")
            .expect("a message");
        let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
        client.read_exact(&mut body).await.expect("its body");
        hickory_proto::op::Message::from_vec(&body).expect("decodes")
    }

    /// Serves `server` as a connection from 127.0.0.1 with the default limits until it
    /// closes; yields why it closed.
    fn serve(
        state: Arc<State>,
        server: CountingWrites,
    ) -> tokio::task::JoinHandle<io::Result<&'static str>> {
        let connection = Connection {
            peer: "127.0.0.1:5300".parse().expect("addr"),
            state,
            limits: Limits::default(),
            activity: Arc::new(Activity {
                idle_since: AtomicU64::new(0),
                close: Notify::new(),
            }),
            clock: Clock(Instant::now()),
        };
        tokio::spawn(async move {
            let (_trigger, shutdown) = crate::shutdown::channel();
            connection.serve(server, shutdown).await
        })
    }

    /// Reads one framed answer: its ID and response code.
    async fn answer(
        client: &mut tokio::io::DuplexStream,
    ) -> (u16, hickory_proto::op::ResponseCode) {
        let mut prefix = [0; 2];
        timeout(Duration::from_secs(5), client.read_exact(&mut prefix))
            .await
            .expect("an answer in time")
            .expect("an answer");
        let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
        client.read_exact(&mut body).await.expect("its body");
        let message = hickory_proto::op::Message::from_vec(&body).expect("decodes");
        (message.metadata.id, message.metadata.response_code)
    }

    #[tokio::test]
    async fn pipelined_queries_are_answered_in_one_write_and_a_forwarded_one_after() {
        use hickory_proto::op::ResponseCode;

        // An upstream that never answers: the forwarded query waits for its timeout.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let state = zone_and_forward(silent.local_addr().expect("addr"));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = CountingWrites {
            inner: server,
            writes: Arc::clone(&writes),
        };
        // Sent before the server reads, so it reads them all at once: a forwarded name
        // first, then twenty zone names.
        let mut batch = query(1, "www.example.org.");
        for id in 2..22 {
            batch.extend(query(id, "db.internal.test."));
        }
        client.write_all(&batch).await.expect("write");
        let serving = serve(state, server);

        for id in 2..22 {
            assert_eq!(answer(&mut client).await, (id, ResponseCode::NoError));
        }
        assert_eq!(
            writes.load(Ordering::Relaxed),
            1,
            "the zone answers in one write"
        );
        assert_eq!(answer(&mut client).await, (1, ResponseCode::ServFail));
        assert_eq!(
            writes.load(Ordering::Relaxed),
            2,
            "the forwarded answer in its own"
        );

        drop(client);
        let closed = serving.await.expect("served").expect("no error");
        assert_eq!(closed, "client");
    }

    #[tokio::test]
    async fn a_long_transfer_goes_out_in_a_few_writes_and_the_next_answer_after_it() {
        use hickory_proto::rr::{RData, RecordType};
        use nameplane_config::ServerConfig;
        use nameplane_config::zone::{RecordConfig, RecordKind, ZoneConfig};

        const HOSTS: usize = 1000;
        let state = zone_and_forward("127.0.0.1:9".parse().expect("addr"));
        let config = ServerConfig {
            server: "kube-system/dns".into(),
            zones: vec![ZoneConfig {
                name: "big.test".into(),
                source: "team/big".into(),
                ttl_seconds: 30,
                records: (0..HOSTS)
                    .map(|i| RecordConfig {
                        name: format!("h{i}.big.test"),
                        record_type: RecordKind::A,
                        ttl_seconds: 30,
                        values: vec![format!("192.0.2.{}", i % 256)],
                    })
                    .collect(),
                allow_transfer: vec!["127.0.0.1".into()],
            }],
            ..Default::default()
        }
        .validate()
        .expect("valid config");
        state
            .set_pipeline(crate::pipeline::Pipeline::build(config, "test".into()).expect("builds"));
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = CountingWrites {
            inner: server,
            writes: Arc::clone(&writes),
        };
        let mut batch = query_of(1, "big.test.", RecordType::AXFR);
        batch.extend(query(2, "h7.big.test."));
        client.write_all(&batch).await.expect("write");
        let serving = serve(state, server);

        // The transfer, message by message, until its closing SOA.
        let mut messages = 0;
        let mut hosts = 0;
        let mut soas = 0;
        while soas < 2 {
            let message = message(&mut client).await;
            assert_eq!(message.metadata.id, 1);
            messages += 1;
            for record in &message.answers {
                match record.data {
                    RData::SOA(_) => soas += 1,
                    RData::A(_) => hosts += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(hosts, HOSTS);
        let next = message(&mut client).await;
        assert_eq!(next.metadata.id, 2);
        assert_eq!(next.answers[0].data.to_string(), "192.0.2.7");
        let writes = writes.load(Ordering::Relaxed);
        // Batched, so fewer writes than messages; flushed every FLUSH_AT bytes, so more than one.
        assert!(messages > 3, "{messages} messages");
        assert!(
            (2..messages).contains(&writes),
            "{writes} writes for {messages} messages"
        );

        drop(client);
        assert_eq!(serving.await.expect("served").expect("no error"), "client");
    }

    fn tracked(source: &str, idle_since: u64) -> Tracked {
        Tracked {
            seq: 0,
            source: source.parse().expect("ip"),
            activity: Arc::new(Activity {
                idle_since: AtomicU64::new(idle_since),
                close: Notify::new(),
            }),
        }
    }

    fn limits(max_connections: usize, max_per_source: usize) -> Limits {
        Limits {
            max_connections,
            max_per_source,
            ..Limits::default()
        }
    }

    #[test]
    fn a_full_source_gives_its_longest_idle_slot_or_is_refused() {
        let mut open = Connections::<u32>::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        open.insert(1, tracked("192.0.2.1", 30));
        open.insert(2, tracked("192.0.2.1", 10));
        open.insert(3, tracked("192.0.2.1", BUSY));
        open.insert(4, tracked("192.0.2.2", 0));
        let limits = limits(100, 3);
        assert_eq!(open.make_room(a, &limits), Ok(()));
        // Connection 2 waited the longest on its client; 4 (idle longer) is another address.
        assert!(!open.open.contains_key(&2));
        assert!(open.open.contains_key(&4));
        assert_eq!(open.count(a), 2);
        open.insert(5, tracked("192.0.2.1", BUSY));
        open.make_room(a, &limits).expect("connection 1 is idle");
        assert!(!open.open.contains_key(&1));
        open.insert(6, tracked("192.0.2.1", BUSY));
        assert_eq!(open.make_room(a, &limits), Err("per_source_limit"));
        assert_eq!(open.count(a), 3);
        // Another address still gets in.
        assert_eq!(
            open.make_room("192.0.2.2".parse().expect("ip"), &limits),
            Ok(())
        );
    }

    #[test]
    fn a_full_server_gives_the_longest_idle_slot_of_any_address() {
        let mut open = Connections::<u32>::default();
        open.insert(1, tracked("192.0.2.1", BUSY));
        open.insert(2, tracked("192.0.2.2", 50));
        open.insert(3, tracked("192.0.2.3", 20));
        let limits = limits(3, 3);
        let new: IpAddr = "192.0.2.9".parse().expect("ip");
        assert_eq!(open.make_room(new, &limits), Ok(()));
        assert_eq!(open.open.len(), 2);
        assert!(!open.open.contains_key(&3));
        assert_eq!(open.count("192.0.2.3".parse().expect("ip")), 0);
        open.insert(4, tracked("192.0.2.9", BUSY));
        open.make_room(new, &limits).expect("connection 2 is idle");
        open.insert(5, tracked("192.0.2.9", BUSY));
        assert_eq!(open.make_room(new, &limits), Err("limit"));
        // Removing twice (closed, then its task ends) counts once.
        open.remove(4);
        open.remove(4);
        assert_eq!(open.count(new), 1);
    }
}
