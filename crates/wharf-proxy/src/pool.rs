//! Keep-alive connections to replicas, one pool per thread, and [`send`]: a request on
//! one of them, retried once on a new connection if the replica had closed it.
//!
//! The front serves each client connection on one of a few single-threaded runtimes (see
//! `wharf-api`'s `front`), so a pool per thread needs no lock, and a connection's driver
//! task runs on the thread that uses it: a proxied request never wakes another thread.
//! A connection goes back to its pool when the response body it carried has ended
//! ([`Pooled`] is dropped); one the replica closed, or that carried a WebSocket upgrade
//! or an unfinished body, is not reused.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;

/// A connection idle for longer is closed rather than reused (replicas usually close
/// idle keep-alive connections themselves, some sooner).
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Idle connections kept per replica address and thread.
const MAX_IDLE_PER_ADDR: usize = 1024;
/// Every so many check-ins, closed connections of every address are dropped.
const SWEEP_EVERY: u32 = 4096;

struct Idle {
    sender: SendRequest<Body>,
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
    #[error("the HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

/// A connection to `addr` taken from the pool; it goes back when dropped, if still usable.
pub(crate) struct Pooled {
    addr: SocketAddr,
    sender: Option<SendRequest<Body>>,
    /// Came from the pool (it may have been closed by the replica meanwhile).
    pub(crate) reused: bool,
}

impl Pooled {
    pub(crate) fn sender(&mut self) -> &mut SendRequest<Body> {
        self.sender
            .as_mut()
            .expect("a Pooled holds its sender until dropped")
    }

    /// Never return this connection to the pool (it was upgraded, or failed).
    pub(crate) fn discard(&mut self) {
        self.sender = None;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            if !sender.is_closed() {
                checkin(self.addr, sender);
            }
        }
    }
}

/// An idle connection to `addr` that is ready for a request, else a new one.
pub(crate) async fn checkout(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Pooled, ConnectError> {
    while let Some(mut sender) = take_idle(addr) {
        // Usually ready at once; a connection whose previous response just ended may need
        // its driver to run first. An error means the replica closed it.
        if sender.ready().await.is_ok() {
            return Ok(Pooled {
                addr,
                sender: Some(sender),
                reused: true,
            });
        }
    }
    connect(addr, connect_timeout).await
}

/// A new connection to `addr`, its driver spawned on this thread's runtime.
pub(crate) async fn connect(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Pooled, ConnectError> {
    let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(connect_timeout))??;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "A connection to a replica ended with an error.");
        }
    });
    Ok(Pooled {
        addr,
        sender: Some(sender),
        reused: false,
    })
}

/// How many of the most recently used idle connections are looked at for one that is
/// ready now (whose previous exchange its driver has finished).
const READY_SCAN: usize = 8;

fn take_idle(addr: SocketAddr) -> Option<SendRequest<Body>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        // The newest connection may still be finishing its last exchange; an older one
        // that is ready now saves waiting for its driver.
        let scan_from = list.len().saturating_sub(READY_SCAN);
        if let Some(position) = list[scan_from..]
            .iter()
            .rposition(|entry| entry.sender.is_ready())
        {
            let entry = list.remove(scan_from + position);
            if entry.since.elapsed() < IDLE_LIMIT {
                return Some(entry.sender);
            }
        }
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_LIMIT {
                return Some(entry.sender);
            }
        }
        None
    })
}

fn checkin(addr: SocketAddr, sender: SendRequest<Body>) {
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
        list.push(Idle { sender, since: now });
        let checkins = CHECKINS.with(|count| {
            let next = count.get().wrapping_add(1);
            count.set(next);
            next
        });
        if checkins.is_multiple_of(SWEEP_EVERY) {
            idle.retain(|_, list| {
                list.retain(|entry| {
                    !entry.sender.is_closed() && now.duration_since(entry.since) < IDLE_LIMIT
                });
                !list.is_empty()
            });
        }
    });
}

/// Idle connections this thread holds to `addr`.
#[cfg(test)]
fn idle_count(addr: SocketAddr) -> usize {
    IDLE.with(|idle| idle.borrow().get(&addr).map_or(0, Vec::len))
}

/// Why a request could not be sent to a replica, or got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{}", describe_hyper_error(.0))]
    Http(#[from] hyper::Error),
}

fn describe_hyper_error(error: &hyper::Error) -> String {
    use std::error::Error;
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// Sends `request` on a pooled connection to `addr`. A pooled connection the replica
/// closed before the request went out (its keep-alive ran out just then) hands the
/// request back, and it is sent once more on a new connection.
pub(crate) async fn send(
    addr: SocketAddr,
    connect_timeout: Duration,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Pooled), SendError> {
    let mut connection = checkout(addr, connect_timeout).await?;
    let request = match connection.sender().try_send_request(request).await {
        Ok(response) => return Ok((response, connection)),
        Err(mut error) => {
            connection.discard();
            match error.take_message() {
                Some(request) if connection.reused => request,
                _ => return Err(error.into_error().into()),
            }
        }
    };
    let mut connection = connect(addr, connect_timeout).await?;
    match connection.sender().try_send_request(request).await {
        Ok(response) => Ok((response, connection)),
        Err(error) => {
            connection.discard();
            Err(error.into_error().into())
        }
    }
}

#[cfg(test)]
mod send_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http::header;

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
        let (response, connection) = send(addr, Duration::from_secs(5), request)
            .await
            .expect("the request reaches the replica");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        // Back to the pool once the body ended, as GuardedBody does.
        drop(connection);
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
        let error = send(addr, Duration::from_secs(5), request)
            .await
            .err()
            .expect("nothing listens there");
        assert!(error.to_string().starts_with("cannot connect"), "{error}");
    }
}
