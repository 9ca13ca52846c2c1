//! DNS over UDP: one receive loop per socket.
//!
//! Each loop owns a receive buffer sized for the largest datagram and a response buffer it
//! reuses for every answer (no allocation per datagram once warm), answers in place
//! (answering is CPU only: no I/O, no lock) and sends the response back. Parallelism comes
//! from the number of sockets (`--udp-sockets`, `SO_REUSEPORT`), not from spawning a task per
//! datagram.
//!
//! A query that must wait on an upstream ([`Reply::Deferred`]) gets a task of its own, which
//! sends its response on the same socket when it is done; the loop goes straight back to
//! receiving. Those tasks are bounded: each holds a slot of its forwarder's in-flight limit
//! (taken before the task exists; above the limit the query is REFUSED at once), so memory
//! does not grow with a slow or dead upstream.
//!
//! With `rateLimit` in the config, [`State::handle`] and [`State::finish`] may withhold an
//! answer to an unidentified client ([`crate::rate_limit`]): nothing is sent then.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::debug;

use crate::request::Transport;
use crate::shutdown::Shutdown;
use crate::state::{Reply, State};

/// Largest datagram read (anything longer is truncated by the kernel and fails to parse).
const MAX_DATAGRAM: usize = 65535;

/// Initial capacity of the response buffer (the largest UDP answer by default).
const MAX_RESPONSE: usize = 1232;

/// Most datagrams answered in one go before the loop yields to other tasks on its thread.
const BATCH: usize = 64;

/// Answers queries on `socket` until `shutdown` fires.
///
/// The loop waits for the socket to be readable (or for shutdown), then answers what is
/// queued without going back to the scheduler per datagram: `try_recv_from` until the
/// socket is empty or [`BATCH`] datagrams are done, each response sent with `try_send_to`
/// (awaited only if the send buffer is full). Under load that is two system calls per
/// query and no wake-ups.
pub(crate) async fn serve(socket: UdpSocket, state: Arc<State>, mut shutdown: Shutdown) {
    let socket = Arc::new(socket);
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(MAX_RESPONSE);
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
        for _ in 0..BATCH {
            let (len, peer) = match socket.try_recv_from(&mut buf) {
                Ok(received) => received,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    debug!(%error, "UDP receive failed");
                    continue;
                }
            };
            let Some(packet) = buf.get(..len) else {
                continue;
            };
            out.clear();
            match state.handle(packet, Transport::Udp, peer, &mut out) {
                // Zone transfers are refused over UDP; nothing streams here.
                Reply::Now(true) | Reply::Stream(_) => send(&socket, &out, peer).await,
                Reply::Now(false) => {}
                Reply::Deferred(later) => {
                    let socket = Arc::clone(&socket);
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let response = state.finish(later).await;
                        // Empty: the rate limit dropped it.
                        if !response.is_empty() {
                            send(&socket, &response, peer).await;
                        }
                    });
                }
            }
        }
        // Let the thread's other tasks (forwarded answers, watches) run between batches.
        tokio::task::yield_now().await;
    }
}

/// Sends one response: at once if the socket can take it, else when it can.
async fn send(socket: &UdpSocket, response: &[u8], peer: std::net::SocketAddr) {
    let result = match socket.try_send_to(response, peer) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            socket.send_to(response, peer).await
        }
        other => other,
    };
    if let Err(error) = result {
        debug!(%error, %peer, "UDP send failed");
    }
}
