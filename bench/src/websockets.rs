//! Idle WebSockets: 10,000 WebSocket connections opened through a proxy to the tiny backend
//! and held open; the proxy's resident memory before and after, per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::report::{Row, Section};
use crate::targets::{self, Target, TargetKind, PREFIX};
use crate::{grid, Bench};

/// The number of idle WebSockets.
const WANTED_CONNECTIONS: usize = 10_000;
/// Descriptors the proxy needs besides two per connection.
const SPARE_DESCRIPTORS: usize = 1_000;

/// How many WebSockets are held: 10,000, or fewer when the open-file limit (which the
/// targets inherit) cannot hold two descriptors per connection for a single-process proxy.
fn connections() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        let open_files = usize::try_from(targets::raise_open_file_limit()).unwrap_or(usize::MAX);
        WANTED_CONNECTIONS.min(open_files.saturating_sub(SPARE_DESCRIPTORS) / 2)
    })
}
/// Handshakes in flight at once while opening.
const OPENING_AT_ONCE: usize = 100;
const OPEN_LIMIT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(2);
/// Connections (spread over the whole set) that must echo a message after the hold.
const ECHO_CHECKS: usize = 100;

type Socket = WebSocketStream<TcpStream>;

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
}

async fn open_one(address: SocketAddr, url: Arc<String>) -> anyhow::Result<Socket> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    let _ = stream.set_nodelay(true);
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(client_config()))
            .await
            .with_context(|| format!("WebSocket handshake with {url} failed"))?;
    Ok(socket)
}

async fn open_all(address: SocketAddr, url: String) -> anyhow::Result<Vec<Socket>> {
    let url = Arc::new(url);
    let count = connections();
    let mut opened = Vec::with_capacity(count);
    let mut attempts = futures::stream::iter(0..count)
        .map(|_| open_one(address, url.clone()))
        .buffer_unordered(OPENING_AT_ONCE);
    while let Some(result) = attempts.next().await {
        match result {
            Ok(socket) => opened.push(socket),
            Err(error) => bail!(
                "opening WebSocket {} of {count}: {error:#}",
                opened.len() + 1
            ),
        }
    }
    Ok(opened)
}

/// Sends a message on `ECHO_CHECKS` connections spread over all, and waits for each echo.
async fn check_echoes(sockets: &mut [Socket]) -> anyhow::Result<usize> {
    let step = (sockets.len() / ECHO_CHECKS).max(1);
    let mut echoed = 0;
    for (index, socket) in sockets.iter_mut().enumerate().step_by(step) {
        let text = format!("still there? {index}");
        socket
            .send(Message::text(text.clone()))
            .await
            .with_context(|| format!("connection {index} is closed after the hold"))?;
        let answer = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .with_context(|| format!("connection {index} did not echo within 5 s"))?;
        match answer {
            Some(Ok(Message::Text(echo))) if echo.as_str() == text => echoed += 1,
            other => bail!("connection {index} answered {other:?} instead of the echo"),
        }
    }
    Ok(echoed)
}

/// What one target held.
struct Held {
    rss_before_kib: u64,
    rss_after_kib: u64,
    open_seconds: f64,
    echoed: usize,
}

impl Held {
    fn per_connection_kib(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / connections() as f64
    }
}

fn hold(target: &Target) -> anyhow::Result<Held> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    std::thread::sleep(SETTLE);
    let rss_before_kib = target.proxy_rss_kib()?;
    let url = format!("ws://{}{PREFIX}ws", target.address);
    let started = Instant::now();
    let mut sockets = runtime.block_on(async {
        tokio::time::timeout(OPEN_LIMIT, open_all(target.address, url))
            .await
            .with_context(|| {
                format!(
                    "opening {} WebSockets took over {OPEN_LIMIT:?}",
                    connections()
                )
            })?
    })?;
    let open_seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    let rss_after_kib = target.proxy_rss_kib()?;
    let echoed = runtime.block_on(check_echoes(&mut sockets))?;
    runtime.block_on(async {
        for socket in &mut sockets {
            let _ = socket.close(None).await;
        }
    });
    drop(sockets);
    Ok(Held {
        rss_before_kib,
        rss_after_kib,
        open_seconds,
        echoed,
    })
}

fn mebibytes(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

type Outcome = Result<Held, String>;

fn measure_kind(bench: &Bench, kind: TargetKind) -> Outcome {
    measure_kind_inner(bench, kind).map_err(|reason| targets::one_line(&reason))
}

fn measure_kind_inner(bench: &Bench, kind: TargetKind) -> Outcome {
    if kind == TargetKind::Wharf {
        let target = crate::wharf_proxy::wharf_proxy_target(bench, "websockets-wharf")?;
        return hold(&target).map_err(|error| format!("{error:#}"));
    }
    let scratch = bench
        .fresh_dir(&format!("websockets-{kind:?}").to_lowercase())
        .map_err(|error| format!("{error:#}"))?;
    let target = match kind {
        TargetKind::Direct => {
            targets::direct_target(bench, &scratch)
                .map_err(|error| format!("{error:#}"))?
                .0
        }
        _ => {
            let (backend, backend_port) =
                targets::start_backend(bench, &scratch).map_err(|error| format!("{error:#}"))?;
            let mut target = targets::start_baseline(bench, kind, &scratch, backend_port)
                .map_err(|error| format!("{error:#}"))?;
            target.keep.push(Box::new(backend));
            target
        }
    };
    hold(&target).map_err(|error| format!("{error:#}"))
}

const GRID_HEADERS: [&str; 6] = [
    "target (memory of)",
    "RSS before",
    "RSS with all open",
    "per connection",
    "time to open all",
    "echo check",
];

fn grid_row(kind: TargetKind, outcome: &Outcome) -> Vec<String> {
    let label = match kind {
        TargetKind::Direct => "direct (the backend itself)".to_owned(),
        TargetKind::Wharf => "Wharf (the server process)".to_owned(),
        TargetKind::Nginx => "nginx (master + workers)".to_owned(),
        other => other.label().to_owned(),
    };
    match outcome {
        Err(reason) => vec![
            label,
            format!("not measured: {reason}"),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
        ],
        Ok(held) => vec![
            label,
            mebibytes(held.rss_before_kib),
            mebibytes(held.rss_after_kib),
            format!("{:.1} KiB", held.per_connection_kib()),
            format!("{:.1} s", held.open_seconds),
            format!("{} of {} echoed", held.echoed, ECHO_CHECKS),
        ],
    }
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    let open_files = targets::raise_open_file_limit();
    let mut outcomes = Vec::new();
    for kind in [TargetKind::Direct, TargetKind::Wharf, TargetKind::Nginx] {
        println!(
            "  holding {} WebSockets through {} ...",
            connections(),
            kind.label()
        );
        outcomes.push((kind, measure_kind(bench, kind)));
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|(kind, outcome)| grid_row(*kind, outcome))
        .collect();
    println!("\n{}", grid::text(&GRID_HEADERS, &rows));
    let find = |wanted: TargetKind| {
        outcomes
            .iter()
            .find(|(kind, _)| *kind == wanted)
            .and_then(|(_, outcome)| outcome.as_ref().ok())
    };
    let metric = format!(
        "proxy RSS growth with {} idle WebSockets, per connection",
        crate::proxy::grouped(connections() as f64)
    );
    let mut row = Row::new(
        metric,
        find(TargetKind::Wharf).map_or("not measured".into(), |held| {
            format!(
                "{:.1} KiB ({} in all)",
                held.per_connection_kib(),
                mebibytes(held.rss_after_kib)
            )
        }),
    );
    match (find(TargetKind::Wharf), find(TargetKind::Nginx)) {
        (Some(wharf), Some(nginx)) => {
            row = row.baseline(
                format!("nginx {:.1} KiB", nginx.per_connection_kib()),
                wharf.per_connection_kib() / nginx.per_connection_kib(),
            );
        }
        (None, Some(nginx)) => {
            row.baseline = format!("nginx {:.1} KiB", nginx.per_connection_kib())
        }
        (_, None) => row.baseline = "nginx not measured".into(),
    }
    let mut notes: Vec<String> = outcomes
        .iter()
        .filter_map(|(kind, outcome)| {
            let reason = outcome.as_ref().err()?;
            Some(format!("{} not measured: {reason}", kind.label()))
        })
        .collect();
    notes.push(format!(
        "Open-file limit (RLIMIT_NOFILE) raised to {open_files} in the bench (as far as the hard \
         limit allows), inherited by every target it starts; a single-process proxy holds two \
         descriptors per connection, {} here.{}",
        2 * connections(),
        if connections() < WANTED_CONNECTIONS {
            " That is below what 10,000 connections need in a single-process proxy, so every target \
             was measured with fewer; raise the hard limit (`ulimit -Hn`) for the full number."
        } else {
            ""
        }
    ));
    Ok(Section {
        title: "Idle WebSockets through the proxy".into(),
        method: format!(
            "The bench opens {connections} WebSocket connections (tokio-tungstenite, {OPENING_AT_ONCE} \
             handshakes at a time) to `ws://ADDRESS{PREFIX}ws` through each target to the tiny backend \
             (which accepts the upgrade on any path and echoes messages), holds them idle for {} s, then \
             sends a message on {ECHO_CHECKS} of them spread over the set and waits for each echo. \
             Memory is `VmRSS` from `/proc/PID/status` of the proxy process {} s after it answered its \
             first request (before) and {} s after the last connection opened (with all open); per \
             connection = (with − before) ÷ {connections}. Wharf: the `wharf server` process (the \
             replica and its supervisor are separate processes and not counted); nginx: master and \
             workers added up (`worker_processes {}`); direct: the backend's own memory, for scale. \
             MiB = 2²⁰ bytes.\n\n{}",
            SETTLE.as_secs(),
            SETTLE.as_secs(),
            SETTLE.as_secs(),
            bench.cores,
            grid::markdown(&GRID_HEADERS, &rows),
            connections = connections(),
        ),
        rows: vec![row],
        notes,
        subcommand: "websockets",
    })
}
