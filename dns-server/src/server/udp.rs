//! DNS over UDP: one receive loop per socket, moving datagrams in batches.
//!
//! Each loop owns its buffers (one receive slot of [`MAX_QUERY`] bytes and one reusable
//! response buffer per batch position: no allocation per datagram once warm), answers in
//! place (answering is CPU only: no I/O, no lock) and sends the responses back. Parallelism
//! comes from the number of sockets (`--udp-sockets`, `SO_REUSEPORT`), not from spawning a
//! task per datagram.
//!
//! Under load the kernel's work per datagram, not the answering, is most of a query's cost.
//! Datagrams move up to [`MAX_BATCH`] at a time, as Knot DNS and NSD do: one `recvmmsg(2)`
//! takes what is queued, and one `sendmmsg(2)` sends every response that is ready, so the
//! per-call part (entry, socket lookup) is paid once per batch. On loopback the saving is
//! small next to the per-packet work. A response the socket cannot take at once is sent on its
//! own when it can.
//!
//! A query that must wait on an upstream ([`Reply::Later`]) gets a task of its own, which
//! sends its response on the same socket when it is done; the loop goes straight back to
//! receiving. Those tasks are bounded: each holds a slot of its forwarder's in-flight limit
//! (taken before the task exists; above the limit the query is REFUSED at once), so memory
//! does not grow with a slow or dead upstream.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::Arc;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrLike as _, SockaddrStorage, recvmmsg, sendmmsg,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

use crate::request::Transport;
use crate::shutdown::Shutdown;
use crate::state::{Reply, State};

/// Largest query read. A longer datagram is no DNS query this server answers (a question
/// and an OPT record fit in a few hundred bytes); the kernel flags it truncated and it is
/// dropped.
const MAX_QUERY: usize = 4096;

/// Initial capacity of each response buffer (the largest UDP answer by default).
const MAX_RESPONSE: usize = 1232;

/// Most datagrams moved per `recvmmsg` / `sendmmsg` (`--udp-batch`).
pub const MAX_BATCH: u16 = 32;

/// Batches answered in a row before the loop yields to the other tasks on its thread.
const BATCHES_PER_TURN: usize = 4;

/// One received datagram.
#[derive(Clone, Copy, Debug)]
struct Received {
    len: usize,
    peer: Option<SocketAddr>,
    truncated: bool,
}

/// Answers queries on `socket` until `shutdown` fires.
///
/// The loop waits for the socket to be readable (or for shutdown), then answers what is
/// queued without going back to the scheduler per datagram: a batch at a time until the
/// socket is empty or [`BATCHES_PER_TURN`] batches are done.
pub async fn serve(socket: UdpSocket, batch: usize, state: Arc<State>, mut shutdown: Shutdown) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let batch = batch.clamp(1, usize::from(MAX_BATCH));
    let mut queries = vec![0; batch * MAX_QUERY];
    let mut responses: Vec<Vec<u8>> = (0..batch)
        .map(|_| Vec::with_capacity(MAX_RESPONSE))
        .collect();
    let mut received = Vec::with_capacity(batch);
    // Indexes into `responses` of the answers to send, and where to.
    let mut ready: Vec<(usize, SocketAddr)> = Vec::with_capacity(batch);
    loop {
        tokio::select! {
            readable = socket.readable() => {
                if let Err(error) = readable {
                    debug!(%error, "UDP socket failed");
                    continue;
                }
            }
            () = shutdown.wait() => return,
        }
        for _ in 0..BATCHES_PER_TURN {
            received.clear();
            match socket.try_io(Interest::READABLE, || {
                receive(fd, &mut queries, &mut received)
            }) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    debug!(%error, "UDP receive failed");
                    break;
                }
            }
            ready.clear();
            for (i, datagram) in received.iter().enumerate() {
                let (Some(peer), false) = (datagram.peer, datagram.truncated) else {
                    continue;
                };
                let packet = &queries[i * MAX_QUERY..i * MAX_QUERY + datagram.len];
                let out = &mut responses[i];
                out.clear();
                match state.handle(packet, Transport::Udp, peer, out) {
                    // Zone transfers are refused over UDP; nothing streams here.
                    Reply::Now(true) | Reply::Stream(_) => ready.push((i, peer)),
                    Reply::Now(false) => {}
                    Reply::Later(later) => {
                        let socket = Arc::clone(&socket);
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            let response = state.finish(later).await;
                            send(&socket, &response, peer).await;
                        });
                    }
                }
            }
            send_ready(&socket, fd, &responses, &ready).await;
            if received.len() < batch {
                // The queue is empty: wait for readiness again instead of a failing call.
                break;
            }
        }
        // Let the thread's other tasks (forwarded answers, watches) run between turns.
        tokio::task::yield_now().await;
    }
}

/// Receives queued datagrams, each into its [`MAX_QUERY`] slot of `queries` (as many as it
/// has slots), with one `recvmmsg`. `WouldBlock` when none is queued.
fn receive(fd: RawFd, queries: &mut [u8], received: &mut Vec<Received>) -> io::Result<()> {
    // Fresh headers per call: they point into this call's slices and addresses, and cannot
    // be kept across the loop's awaits.
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(queries.len() / MAX_QUERY, None);
    let mut slots: Vec<[IoSliceMut<'_>; 1]> = queries
        .chunks_mut(MAX_QUERY)
        .map(|slot| [IoSliceMut::new(slot)])
        .collect();
    let messages = recvmmsg(
        fd,
        &mut headers,
        slots.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    for message in messages {
        received.push(Received {
            len: message.bytes.min(MAX_QUERY),
            peer: message.address.as_ref().and_then(socket_addr),
            truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
        });
    }
    Ok(())
}

/// Sends `responses[i]` to `peer` for every `(i, peer)` of `ready`: in batches while the
/// socket takes them, one at a time (waiting if need be) where it does not.
async fn send_ready(
    socket: &UdpSocket,
    fd: RawFd,
    responses: &[Vec<u8>],
    ready: &[(usize, SocketAddr)],
) {
    let mut next = 0;
    while next < ready.len() {
        let rest = &ready[next..];
        match socket.try_io(Interest::WRITABLE, || send_batch(fd, responses, rest)) {
            Ok(sent) if sent > 0 => next += sent,
            // Full send buffer, or the first one failed (an unreachable peer): that one on
            // its own, then batches again.
            _ => {
                let (i, peer) = rest[0];
                send(socket, &responses[i], peer).await;
                next += 1;
            }
        }
    }
}

/// One `sendmmsg` of the responses `ready` points at; how many the kernel took.
fn send_batch(
    fd: RawFd,
    responses: &[Vec<u8>],
    ready: &[(usize, SocketAddr)],
) -> io::Result<usize> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(ready.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = ready
        .iter()
        .map(|&(i, _)| [IoSlice::new(&responses[i])])
        .collect();
    let peers: Vec<Option<SockaddrStorage>> = ready
        .iter()
        .map(|&(_, peer)| Some(SockaddrStorage::from(peer)))
        .collect();
    let no_control: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(
        fd,
        &mut headers,
        &slices,
        &peers,
        no_control,
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(sent.count())
}

/// The sender of a datagram as a socket address (UDP sockets only see IP senders).
fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    if let Some(v6) = address.as_sockaddr_in6() {
        return Some(SocketAddr::V6(SocketAddrV6::from(*v6)));
    }
    debug!(family = ?address.family(), "UDP datagram from a non-IP address");
    None
}

/// Sends one response: at once if the socket can take it, else when it can.
async fn send(socket: &UdpSocket, response: &[u8], peer: SocketAddr) {
    let result = match socket.try_send_to(response, peer) {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            socket.send_to(response, peer).await
        }
        other => other,
    };
    if let Err(error) = result {
        debug!(%error, %peer, "UDP send failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_of_both_families_convert() {
        for text in ["192.0.2.1:5353", "[2001:db8::1]:53"] {
            let addr: SocketAddr = text.parse().expect("addr");
            assert_eq!(socket_addr(&SockaddrStorage::from(addr)), Some(addr));
        }
    }

    /// Both calls over a real socket pair: a burst larger than one batch is received in
    /// order and every response arrives, each at its own sender.
    #[tokio::test]
    async fn a_burst_moves_in_batches() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let fd = server.as_raw_fd();
        let clients: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let to = server.local_addr().expect("addr");
        let total = usize::from(MAX_BATCH) + 5;
        for n in 0..total {
            clients[n % 3]
                .send_to(format!("query {n}").as_bytes(), to)
                .expect("send");
        }
        let mut queries = vec![0; usize::from(MAX_BATCH) * MAX_QUERY];
        let mut seen = Vec::new();
        let mut responses = Vec::new();
        let mut ready = Vec::new();
        while seen.len() < total {
            server.readable().await.expect("readable");
            let mut received = Vec::new();
            match server.try_io(Interest::READABLE, || {
                receive(fd, &mut queries, &mut received)
            }) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("receive: {e}"),
            }
            assert!(received.len() <= usize::from(MAX_BATCH));
            for (i, r) in received.iter().enumerate() {
                let text = std::str::from_utf8(&queries[i * MAX_QUERY..i * MAX_QUERY + r.len])
                    .expect("utf-8")
                    .to_string();
                assert!(!r.truncated);
                responses.push(format!("answer to {text}").into_bytes());
                ready.push((responses.len() - 1, r.peer.expect("peer")));
                seen.push(text);
            }
        }
        let expected: Vec<String> = (0..total).map(|n| format!("query {n}")).collect();
        assert_eq!(seen, expected, "every datagram, in order, none twice");
        send_ready(&server, fd, &responses, &ready).await;
        for (n, client) in clients.iter().enumerate() {
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let mut got = Vec::new();
            let mut buf = [0; 64];
            for _ in (0..total).filter(|i| i % 3 == n) {
                let len = client.recv(&mut buf).expect("response");
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            let want: Vec<String> = (0..total)
                .filter(|i| i % 3 == n)
                .map(|i| format!("answer to query {i}"))
                .collect();
            assert_eq!(got, want, "client {n} gets its own answers");
        }
    }

    #[tokio::test]
    async fn a_datagram_longer_than_a_slot_is_flagged_truncated() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .send_to(&vec![7; MAX_QUERY + 1], server.local_addr().expect("addr"))
            .expect("send");
        let fd = server.as_raw_fd();
        let mut queries = vec![0; usize::from(MAX_BATCH) * MAX_QUERY];
        let mut received = Vec::new();
        loop {
            server.readable().await.expect("readable");
            if server
                .try_io(Interest::READABLE, || {
                    receive(fd, &mut queries, &mut received)
                })
                .is_ok()
            {
                break;
            }
        }
        assert_eq!(received.len(), 1);
        assert!(received[0].truncated);
        assert_eq!(received[0].len, MAX_QUERY);
    }
}
