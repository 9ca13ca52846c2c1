//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): length-prefixed messages, several per connection.
//!
//! A connection may carry any number of queries, answered in order. It is closed when the
//! client closes it, when it stays idle (or stalls mid-message) for [`IDLE_TIMEOUT`], when a
//! message is not worth an answer, or on shutdown (after the query being answered). At most
//! [`MAX_CONNECTIONS`] connections are served at once; extra ones are closed at accept.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::debug;

use crate::request::Transport;
use crate::shutdown::Shutdown;
use crate::state::{Reply, State};

/// How long a connection may wait for (the rest of) a query.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TCP connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Accepts and serves connections on `listener` until `shutdown` fires, then waits for the
/// open connections to finish their current query.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                        debug!(%peer, "too many TCP connections, closing");
                        continue;
                    };
                    let state = Arc::clone(&state);
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        if let Err(error) = connection(stream, peer, &state, shutdown).await {
                            debug!(%error, %peer, "TCP connection failed");
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    debug!(%error, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = shutdown.wait() => break,
        }
    }
    while connections.join_next().await.is_some() {}
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: &State,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut message = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    loop {
        let mut prefix = [0; 2];
        let read = tokio::select! {
            read = timeout(IDLE_TIMEOUT, reader.read_exact(&mut prefix)) => read,
            () = shutdown.wait() => return Ok(()),
        };
        match read {
            Err(_idle) => return Ok(()),
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Ok(Ok(_)) => {}
        }
        message.resize(usize::from(u16::from_be_bytes(prefix)), 0);
        timeout(IDLE_TIMEOUT, reader.read_exact(&mut message))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;

        // The response goes after a two-byte length prefix, filled in once it is known.
        out.clear();
        out.extend_from_slice(&[0, 0]);
        let more = match state.handle(&message, Transport::Tcp, peer, &mut out) {
            Reply::Now(false) => return Ok(()),
            Reply::Now(true) => Vec::new(),
            Reply::Stream(more) => more,
            // A forwarded query is awaited before the next one is read.
            Reply::Later(later) => {
                let response = state.finish(later).await;
                out.truncate(2);
                out.extend_from_slice(&response);
                Vec::new()
            }
        };
        let Ok(len) = u16::try_from(out.len() - 2) else {
            return Ok(());
        };
        out[..2].copy_from_slice(&len.to_be_bytes());
        writer.write_all(&out).await?;
        for message in more {
            let Ok(len) = u16::try_from(message.len()) else {
                return Ok(());
            };
            writer.write_all(&len.to_be_bytes()).await?;
            writer.write_all(&message).await?;
        }
    }
}
