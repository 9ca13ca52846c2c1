//! DNS over UDP: one receive loop per socket.
//!
//! Each loop owns a receive buffer sized for the largest datagram and a response buffer it
//! reuses for every answer (no allocation per datagram once warm), answers in place
//! (answering is CPU only: no I/O, no lock) and sends the response back. Parallelism comes
//! from the number of sockets (`--udp-sockets`, `SO_REUSEPORT`), not from spawning a task per
//! datagram.
//!
//! A query that must wait on an upstream ([`Reply::Later`]) gets a task of its own, which
//! sends its response on the same socket when it is done; the loop goes straight back to
//! receiving. Those tasks are bounded: each holds a slot of its forwarder's in-flight limit
//! (taken before the task exists; above the limit the query is REFUSED at once), so memory
//! does not grow with a slow or dead upstream.

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

/// Answers queries on `socket` until `shutdown` fires.
pub async fn serve(socket: UdpSocket, state: Arc<State>, mut shutdown: Shutdown) {
    let socket = Arc::new(socket);
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(MAX_RESPONSE);
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = shutdown.wait() => return,
        };
        let (len, peer) = match received {
            Ok(received) => received,
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
            Reply::Now(true) | Reply::Stream(_) => {
                if let Err(error) = socket.send_to(&out, peer).await {
                    debug!(%error, %peer, "UDP send failed");
                }
            }
            Reply::Now(false) => {}
            Reply::Later(later) => {
                let socket = Arc::clone(&socket);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let response = state.finish(later).await;
                    if let Err(error) = socket.send_to(&response, peer).await {
                        debug!(%error, %peer, "UDP send failed");
                    }
                });
            }
        }
    }
}
