//! The HTTP front: accepts connections on the API listener and serves each one on one of
//! a few single-threaded runtimes (one per core, plus one), nginx-style.
//!
//! Why: a proxied request crosses two connections (client and replica). On tokio's
//! work-stealing runtime the tasks of those connections wake one another across threads;
//! measured on two cores that cost more than the proxying itself (docs/benchmarks.md,
//! "Reverse proxy throughput"). Here a connection, its proxied requests, and the
//! connections to replicas they use ([`wharf_proxy`]'s per-thread pool) all stay on one
//! thread.
//!
//! Why one more than the cores: a front thread's work comes in bursts between waits on
//! clients and replicas, and with exactly one per core a core whose thread waits sits idle
//! while requests queue on the other's. Measured on two cores shared with the load
//! generator and the replica: 2 threads left ~10% of the CPU idle at 256 connections and
//! reached 0.68–0.80× nginx's req/s at 64 and 256 connections; 3 threads left ~1% idle and
//! matched nginx (0.98–1.03×); 4 threads lost 7% at 8 connections. nginx itself gains
//! nothing from a third worker (0.97× of two at 256 connections). Rotating 3 s wrk runs
//! per setting, geometric mean of the per-round ratios; `wharf-bench proxy` with
//! `WHARF_HTTP_THREADS=2` shows the old count against nginx.
//!
//! Requests under `/apps/` are proxied right there. Everything else (the API, login,
//! health, metrics) is handed to the axum router on the main runtime, where the control
//! plane and the store live, so nothing of theirs is ever registered with a front thread
//! that stops first at shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::ApiState;

/// How long open requests may finish after a shutdown began.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// What every front thread shares.
struct Shared {
    state: ApiState,
    router: Router,
    /// The main runtime (control plane, store, API handlers).
    main: Handle,
}

struct Worker {
    connections: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    /// Connections open on this thread, to send each new one to the least busy.
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Serves `listener` until `shutdown` resolves, on `threads` front threads (0: one per
/// core, plus one). Returns after open requests finished or [`DRAIN_LIMIT`] passed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    threads: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()) + 1,
        count => count,
    };
    let shared = Arc::new(Shared {
        router: crate::router(state.clone()),
        state,
        main: Handle::current(),
    });
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        workers.push(start_worker(index, shared.clone(), stopped.clone())?);
    }

    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, usually: wait for some to be freed.
                tracing::warn!(%error, "Could not accept a connection.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, %peer, "Could not hand a connection to a front thread.");
                continue;
            }
        };
        let Some(worker) = workers
            .iter()
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
        else {
            break;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        if worker.connections.send((stream, peer)).is_err() {
            tracing::error!("A front thread ended; Wharf stops serving HTTP.");
            break;
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        for worker in workers {
            drop(worker.connections);
            let _ = worker.thread.join();
        }
    });
    let _ = joined.await;
    Ok(())
}

fn start_worker(
    index: usize,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let (connections, receiver) = mpsc::unbounded_channel();
    let open = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread_open = open.clone();
    let thread = std::thread::Builder::new()
        .name(format!("wharf-http-{index}"))
        .spawn(move || {
            runtime.block_on(run_worker(shared, receiver, thread_open, stopped));
            // Whatever still runs here (WebSocket pumps, connections to replicas) ends now.
            runtime.shutdown_timeout(Duration::from_millis(100));
        })?;
    Ok(Worker {
        connections,
        open,
        thread,
    })
}

async fn run_worker(
    shared: Arc<Shared>,
    mut connections: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().writev(false);
    loop {
        let (stream, peer) = tokio::select! {
            received = connections.recv() => match received {
                Some(received) => received,
                None => break,
            },
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, %peer, "Could not serve a connection.");
                open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
        };
        let connection_shared = shared.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(connection_shared.clone(), peer, request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let open = open.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "An HTTP connection ended with an error.");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            "Requests still open after {} s of shutdown were cut.",
            DRAIN_LIMIT.as_secs()
        );
    }
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut request = request.map(Body::new);
    if request.uri().path().starts_with("/apps/") {
        return Ok(crate::proxy::serve(&shared.state, &shared.main, peer, request).await);
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    let router = shared.router.clone();
    let answered = shared
        .main
        .spawn(async move { router.oneshot(request).await })
        .await;
    Ok(match answered {
        Ok(Ok(response)) => response,
        Ok(Err(infallible)) => match infallible {},
        Err(error) => {
            tracing::error!(%error, "A request handler panicked or was cancelled.");
            let mut response = Response::new(Body::from("internal error\n"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    })
}
