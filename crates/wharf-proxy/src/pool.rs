//! Keep-alive connections to replicas, one pool per thread.
//!
//! The front serves each client connection on one of a few single-threaded runtimes (see
//! `wharf-api`'s `front`), so a pool per thread needs no lock, and a connection's driver
//! task runs on the thread that uses it: a proxied request never wakes another thread.
//! A connection goes back to its pool when the response body it carried has ended
//! ([`Pooled`] is dropped); one the replica closed, or that carried a WebSocket upgrade
//! or an unfinished body, is not reused.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

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
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
    static CHECKINS: Cell<u32> = const { Cell::new(0) };
}

/// Why no connection to a replica could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
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

/// Idle connections this thread holds to `addr` (for tests).
pub fn idle_count(addr: SocketAddr) -> usize {
    IDLE.with(|idle| idle.borrow().get(&addr).map_or(0, Vec::len))
}
