//! Measurements 3 and 4: the server's resident memory, and its time from start to `/readyz`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::report::{summarize, Row, Section};
use crate::server::{ApiClient, Server, ServerOptions};
use crate::Bench;

const SETTLE: Duration = Duration::from_secs(2);
const RSS_RUNS: usize = 200;
const RSS_GOAL_BYTES: f64 = 20e6;
const STARTS: usize = 10;
const READY_POLL: Duration = Duration::from_millis(1);
const READY_GOAL_MS: f64 = 100.0;

fn megabytes(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn rss_row(metric: String, kib: u64) -> Row {
    let bytes = kib as f64 * 1024.0;
    Row::new(metric, format!("{:.1} MB ({kib} KiB)", megabytes(kib)))
        .goal("≤ 20 MB (idle)", bytes <= RSS_GOAL_BYTES)
}

pub fn measure_rss(bench: &Bench) -> anyhow::Result<Section> {
    let scratch = bench.fresh_dir("rss")?;
    let mut server = Server::spawn(
        &bench.wharf_bin,
        &scratch.join("data"),
        &scratch,
        &ServerOptions::default(),
    )?;
    server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
    std::thread::sleep(SETTLE);
    let idle = server.rss_kib()?;
    let idle_split = rss_split(&server, "idle")?;
    let client = ApiClient::new(&server)?;
    crate::dispatch::run_sequentially(&client, &scratch.join("app"), RSS_RUNS)?;
    std::thread::sleep(SETTLE);
    let after_runs = server.rss_kib()?;
    let after_split = rss_split(&server, &format!("after {RSS_RUNS} runs"))?;
    server.stop()?;
    Ok(Section {
        title: "Server memory (RSS)".into(),
        method: format!(
            "`VmRSS` of the `wharf server` process from `/proc/PID/status` (supervisors and workloads are \
             separate processes and not counted). Measured {} s after `/readyz` first answers on a fresh data \
             folder (`sandbox = \"auto\"`, default settings), then again {} s after {RSS_RUNS} sequential \
             `/bin/date` runs (started through the API, each waited for) have ended. MB = 10⁶ bytes.",
            SETTLE.as_secs(),
            SETTLE.as_secs()
        ),
        rows: vec![
            rss_row(format!("idle RSS, fresh data dir, {} s after /readyz", SETTLE.as_secs()), idle),
            rss_row(format!("idle RSS after {RSS_RUNS} runs ended (+{} s)", SETTLE.as_secs()), after_runs),
        ],
        notes: vec![idle_split, after_split],
        subcommand: "rss",
    })
}

/// Where the resident memory is: anonymous (heap, stacks) and file-backed (the binary's
/// code and read-only data paged in; those pages are shared with the page cache).
fn rss_split(server: &Server, when: &str) -> anyhow::Result<String> {
    let (anonymous, file) = (server.status_kib("RssAnon")?, server.status_kib("RssFile")?);
    Ok(format!(
        "{when}: {:.1} MB anonymous (heap, thread stacks), {:.1} MB file-backed (the binary's \
         code and data paged in, shared with the page cache).",
        megabytes(anonymous),
        megabytes(file)
    ))
}

/// Starts a server on `data_dir`, polls `/readyz` every millisecond; returns the time.
fn time_to_ready(
    bench: &Bench,
    data_dir: &std::path::Path,
    scratch: &std::path::Path,
) -> anyhow::Result<f64> {
    let mut server = Server::spawn(
        &bench.wharf_bin,
        data_dir,
        scratch,
        &ServerOptions::default(),
    )?;
    let ready = server.wait_ready(READY_POLL, Duration::from_secs(30))?;
    server.stop()?;
    Ok(ready.as_secs_f64() * 1e3)
}

/// Milliseconds for `wharf --version` to start and exit: the cost of executing the binary.
fn version_exit_ms(bench: &Bench) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new(&bench.wharf_bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {} --version", bench.wharf_bin.display()))?;
    if !status.success() {
        bail!(
            "{} --version failed with {status}",
            bench.wharf_bin.display()
        );
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

pub fn measure_startup(bench: &Bench) -> anyhow::Result<Section> {
    let root = bench.fresh_dir("startup")?;
    let mut fresh = Vec::with_capacity(STARTS);
    for index in 0..STARTS {
        let scratch = root.join(format!("fresh-{index}"));
        std::fs::create_dir_all(&scratch)?;
        fresh.push(time_to_ready(bench, &scratch.join("data"), &scratch)?);
    }
    let existing_scratch = root.join("existing");
    std::fs::create_dir_all(&existing_scratch)?;
    let existing_data = existing_scratch.join("data");
    time_to_ready(bench, &existing_data, &existing_scratch)?;
    let mut existing = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        existing.push(time_to_ready(bench, &existing_data, &existing_scratch)?);
    }
    let mut floor = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        floor.push(version_exit_ms(bench)?);
    }
    let fresh_summary = summarize(&fresh).context("no samples")?;
    let existing_summary = summarize(&existing).context("no samples")?;
    let floor_summary = summarize(&floor).context("no samples")?;
    let row = |label: &str, median: f64| {
        Row::new(
            format!("start → /readyz, {label} (median of {STARTS})"),
            format!("{median:.1} ms"),
        )
        .baseline(
            format!("{:.1} ms (`wharf --version`)", floor_summary.p50),
            median / floor_summary.p50,
        )
        .goal(format!("≤ {READY_GOAL_MS:.0} ms"), median <= READY_GOAL_MS)
    };
    let spread = |label: &str, samples: &[f64]| {
        let rounded: Vec<String> = samples.iter().map(|ms| format!("{ms:.1}")).collect();
        format!("{label}, every start (ms): {}.", rounded.join(", "))
    };
    Ok(Section {
        title: "Time from start to /readyz".into(),
        method: format!(
            "The bench spawns `wharf server --config FILE` (`sandbox = \"auto\"`) and polls `GET /readyz` over a \
             fresh loopback connection every {} ms until it answers 200; the time runs from just before the \
             spawn. Fresh: {STARTS} starts, each on a new empty data folder (creates the database and the admin \
             user). Existing: {STARTS} further starts on a data folder that one earlier start created. Each server \
             is stopped with SIGTERM and reaped before the next. The baseline is `wharf --version` started and \
             reaped (median of {STARTS}): what executing the binary costs.",
            READY_POLL.as_millis()
        ),
        rows: vec![
            row("fresh data dir", fresh_summary.p50),
            row("existing data dir", existing_summary.p50),
        ],
        notes: vec![spread("Fresh", &fresh), spread("Existing", &existing)],
        subcommand: "startup",
    })
}
