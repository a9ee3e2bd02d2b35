//! Keep-alive connections to replicas, one pool per thread, and [`send`]: a request on
//! one of them, sent once more on a new connection if the replica had closed it.
//!
//! The front serves each client connection on one of a few single-threaded runtimes (see
//! `wharf-api`'s `front`), so a pool per thread needs no lock, and the request task that
//! takes a connection does its I/O itself ([`crate::h1`]): a proxied request never wakes
//! another task or thread. A connection goes back to its pool when the response body it
//! carried has ended; one that carried a WebSocket upgrade, an unfinished or malformed
//! body, or `Connection: close` is not reused.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::h1::{exchange, Connection, ExchangeError, Incoming, Outgoing};

/// A connection idle for longer is closed rather than reused (replicas usually close
/// idle keep-alive connections themselves, some sooner).
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Idle connections kept per replica address and thread.
const MAX_IDLE_PER_ADDR: usize = 1024;
/// Every so many check-ins, expired connections of every address are dropped.
const SWEEP_EVERY: u32 = 4096;

struct Idle {
    connection: Connection,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<FxHashMap<SocketAddr, Vec<Idle>>> = RefCell::new(FxHashMap::default());
    static CHECKINS: Cell<u32> = const { Cell::new(0) };
}

/// Why no connection to a replica could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("no connection within {0:?} (connect_timeout)")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Io(#[from] std::io::Error),
}

/// The newest usable idle connection to `addr`, if any.
fn take_idle(addr: SocketAddr) -> Option<Connection> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_LIMIT && entry.connection.is_usable() {
                return Some(entry.connection);
            }
        }
        None
    })
}

/// A new connection to `addr`.
async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<Connection, ConnectError> {
    let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(connect_timeout))??;
    stream.set_nodelay(true)?;
    Ok(Connection::new(stream))
}

/// Puts a connection whose exchange is complete back into this thread's pool.
pub(crate) fn checkin(addr: SocketAddr, connection: Connection) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        let list = idle.entry(addr).or_default();
        // The oldest are at the front: drop those too old to reuse, and any beyond the cap.
        let stale = list
            .iter()
            .take_while(|entry| now.duration_since(entry.since) >= IDLE_LIMIT)
            .count();
        let excess = (list.len() + 1).saturating_sub(MAX_IDLE_PER_ADDR);
        list.drain(..stale.max(excess).min(list.len()));
        list.push(Idle {
            connection,
            since: now,
        });
        let checkins = CHECKINS.with(|count| {
            let next = count.get().wrapping_add(1);
            count.set(next);
            next
        });
        if checkins.is_multiple_of(SWEEP_EVERY) {
            idle.retain(|_, list| {
                list.retain(|entry| now.duration_since(entry.since) < IDLE_LIMIT);
                !list.is_empty()
            });
        }
    });
}

/// Idle connections this thread holds to `addr`.
#[cfg(test)]
pub(crate) fn idle_count(addr: SocketAddr) -> usize {
    IDLE.with(|idle| idle.borrow().get(&addr).map_or(0, Vec::len))
}

/// Why a request could not be sent to a replica, or got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Exchange(#[from] ExchangeError),
}

/// Sends `outgoing` on a pooled connection to `addr` and reads the response head. A
/// request without a body that meets a kept connection the replica had just closed (no
/// answer at all) is sent once more on a new connection.
pub(crate) async fn send(
    addr: SocketAddr,
    connect_timeout: Duration,
    mut outgoing: Outgoing,
) -> Result<(Incoming, Connection), SendError> {
    if let Some(mut connection) = take_idle(addr) {
        match exchange(&mut connection, &mut outgoing).await {
            Ok(incoming) => return Ok((incoming, connection)),
            Err(ExchangeError::ClosedBeforeAnswer) if outgoing.can_resend() => {}
            Err(error) => return Err(error.into()),
        }
    }
    let mut connection = connect(addr, connect_timeout).await?;
    let incoming = exchange(&mut connection, &mut outgoing).await?;
    Ok((incoming, connection))
}

#[cfg(test)]
mod send_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use http::{header, Request};
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A replica on a free port that answers `ok` to each request and, when `close_after`
    /// is set, closes every connection after its first answer (a keep-alive of zero).
    async fn replica(close_after: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let read = stream.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() || close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn get(addr: SocketAddr) -> String {
        let request = Request::builder()
            .uri("/")
            .header(header::HOST, "test")
            .body(Body::empty())
            .unwrap();
        let (incoming, connection) = send(
            addr,
            Duration::from_secs(5),
            Outgoing::from_request(request),
        )
        .await
        .expect("the request reaches the replica");
        // Back to the pool once the body ended.
        let body = crate::h1::ReplicaBody::new(connection, addr, &incoming);
        let body = body.collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn keep_alive_connections_are_reused() {
        let (addr, accepted) = replica(false).await;
        for _ in 0..5 {
            assert_eq!(get(addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(idle_count(addr), 1);
    }

    #[tokio::test]
    async fn a_connection_the_replica_closed_is_replaced_without_failing_the_request() {
        let (addr, accepted) = replica(true).await;
        for _ in 0..5 {
            assert_eq!(get(addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_replica_that_is_not_listening_is_a_connect_error() {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let request = Request::new(Body::empty());
        let error = send(
            addr,
            Duration::from_secs(5),
            Outgoing::from_request(request),
        )
        .await
        .err()
        .expect("nothing listens there");
        assert!(error.to_string().starts_with("cannot connect"), "{error}");
    }
}
