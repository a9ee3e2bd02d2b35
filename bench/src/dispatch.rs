//! Measurement 1: run dispatch overhead, from just before `POST /runs` to the workload's exec.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::floor::{self, FloorMode, FloorSetup};
use crate::report::{summarize, Row, Section, Summary};
use crate::server::{write_job_app, ApiClient, Server, ServerOptions};
use crate::Bench;

pub const WARM_UP_RUNS: usize = 10;
pub const MEASURED_RUNS: usize = 200;
/// How often the client asks whether a run has ended.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
const RUN_LIMIT: Duration = Duration::from_secs(60);
const DATE_COMMAND: [&str; 2] = ["/bin/date", "+%s%N"];

/// What one measured run tells.
#[derive(Debug, Clone, Copy)]
struct RunTiming {
    /// Just before the POST to the workload's exec (the printed timestamp).
    overhead_ms: f64,
    /// Just before the POST to the run's `queued_at` (server clock, whole milliseconds).
    to_queued_ms: f64,
    /// `queued_at` to `started_at` (the shim was spawned), whole milliseconds.
    queued_to_shim_ms: f64,
    /// `started_at` to the workload's exec.
    shim_to_exec_ms: f64,
    /// Just before the POST to the moment the client saw the run ended.
    to_seen_ended_ms: f64,
}

fn rfc3339_millis(run: &Value, field: &str) -> anyhow::Result<i128> {
    let text = run[field]
        .as_str()
        .with_context(|| format!("the run has no {field}: {run}"))?;
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{field} {text:?} is not RFC 3339"))?;
    Ok(i128::from(time.timestamp_millis()))
}

/// Starts one `/bin/date +%s%N` run, waits for its end, and reads its exec time.
fn timed_run(client: &ApiClient, app: &str) -> anyhow::Result<RunTiming> {
    let before = floor::now_unix_nanos();
    let id = client.create_run(app)?;
    let run = client.wait_for_end(&id, POLL_INTERVAL, RUN_LIMIT)?;
    let seen_ended = floor::now_unix_nanos();
    if run["state"] != "succeeded" {
        let lines = client.log_lines(&id).unwrap_or_default();
        bail!("run {id} did not succeed: {run}; its log: {lines:?}");
    }
    let lines = client.log_lines(&id)?;
    let Some((_, printed)) = lines.iter().find(|(stream, _)| stream == "out") else {
        bail!("run {id} printed nothing on stdout; its log: {lines:?}");
    };
    let exec = floor::parse_nanos(printed)?;
    let queued = rfc3339_millis(&run, "queued_at")? * 1_000_000;
    let shim = rfc3339_millis(&run, "started_at")? * 1_000_000;
    let millis = |nanos: i128| nanos as f64 / 1e6;
    Ok(RunTiming {
        overhead_ms: millis(exec - before),
        to_queued_ms: millis(queued - before),
        queued_to_shim_ms: millis(shim - queued),
        shim_to_exec_ms: millis(exec - shim),
        to_seen_ended_ms: millis(seen_ended - before),
    })
}

/// Runs the warm-up and measured runs against a fresh server with this sandbox setting,
/// each run followed by one floor spawn, so both see the same load on a shared machine.
fn measure_mode(
    bench: &Bench,
    sandbox: &'static str,
    mode: FloorMode,
) -> anyhow::Result<(Vec<RunTiming>, Vec<f64>)> {
    let scratch = bench.fresh_dir(&format!("dispatch-{sandbox}"))?;
    let setup = FloorSetup::create(&scratch.join("floor"), &DATE_COMMAND)?;
    let options = ServerOptions {
        sandbox,
        ..ServerOptions::default()
    };
    let mut server = Server::spawn(&bench.wharf_bin, &scratch.join("data"), &scratch, &options)?;
    server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
    let client = ApiClient::new(&server)?;
    let app_dir = scratch.join("app");
    write_job_app(&app_dir, "trivial", &DATE_COMMAND, 64)?;
    client.deploy("trivial", &app_dir)?;
    for _ in 0..WARM_UP_RUNS {
        timed_run(&client, "trivial")?;
        floor::exec_latency(&setup, mode)?;
    }
    let mut timings = Vec::with_capacity(MEASURED_RUNS);
    let mut floor_samples = Vec::with_capacity(MEASURED_RUNS);
    for _ in 0..MEASURED_RUNS {
        timings.push(timed_run(&client, "trivial")?);
        floor_samples.push(floor::exec_latency(&setup, mode)?);
    }
    server.stop()?;
    Ok((timings, floor_samples))
}

fn summary_of(samples: &[f64]) -> anyhow::Result<Summary> {
    summarize(samples).context("no samples")
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The table rows of one mode; `with_goal`: the goal (sandboxed runs) applies.
fn rows_for(
    label: &str,
    floor_label: &str,
    wharf: &Summary,
    floor: &Summary,
    with_goal: bool,
) -> Vec<Row> {
    let row = |stat: &str, wharf: f64, floor: f64| {
        let ratio = wharf / floor;
        let row = Row::new(
            format!("dispatch overhead {stat}, {label}"),
            format!("{wharf:.2} ms"),
        )
        .baseline(format!("{floor:.2} ms ({floor_label})"), ratio);
        if with_goal {
            row.goal("< 2× floor", ratio < 2.0)
        } else {
            row
        }
    };
    vec![
        row("p50", wharf.p50, floor.p50),
        row("p99", wharf.p99, floor.p99),
        row("mean", wharf.mean, floor.mean),
    ]
}

fn breakdown_note(label: &str, timings: &[RunTiming]) -> String {
    format!(
        "{label}, where the time goes (means over {} runs; the server's timestamps are whole \
         milliseconds): POST → `queued_at` {:.1} ms; `queued_at` → `started_at` (the executor \
         picked the run, made the run folder and handed the run to a shim) {:.1} ms; \
         `started_at` → workload exec (the rest of the shim's start-up, then bubblewrap or the \
         plain spawn) {:.1} ms. POST → the client saw the run ended: {:.1} ms.",
        timings.len(),
        mean(timings.iter().map(|t| t.to_queued_ms)),
        mean(timings.iter().map(|t| t.queued_to_shim_ms)),
        mean(timings.iter().map(|t| t.shim_to_exec_ms)),
        mean(timings.iter().map(|t| t.to_seen_ended_ms)),
    )
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    let (sandboxed, sandboxed_floor) = measure_mode(bench, "required", FloorMode::Bubblewrap)?;
    let (unsandboxed, plain_floor) = measure_mode(bench, "off", FloorMode::Plain)?;

    let overheads =
        |timings: &[RunTiming]| timings.iter().map(|t| t.overhead_ms).collect::<Vec<_>>();
    let sandboxed_summary = summary_of(&overheads(&sandboxed))?;
    let sandboxed_floor_summary = summary_of(&sandboxed_floor)?;
    let unsandboxed_summary = summary_of(&overheads(&unsandboxed))?;
    let plain_floor_summary = summary_of(&plain_floor)?;

    let mut rows = rows_for(
        "sandbox = required (bubblewrap)",
        "bwrap spawn",
        &sandboxed_summary,
        &sandboxed_floor_summary,
        true,
    );
    rows.extend(rows_for(
        "sandbox = off",
        "plain spawn",
        &unsandboxed_summary,
        &plain_floor_summary,
        false,
    ));

    let met = sandboxed_summary.p50 / sandboxed_floor_summary.p50 < 2.0;
    let mut notes = vec![
        format!(
            "The issue's goal, \"overhead under 2× the floor\" (sandboxed, p50): {} ({:.2}×).",
            if met { "met" } else { "NOT met" },
            sandboxed_summary.p50 / sandboxed_floor_summary.p50
        ),
        breakdown_note("sandbox = required", &sandboxed),
        breakdown_note("sandbox = off", &unsandboxed),
    ];
    for (label, summary) in [
        ("Wharf, bubblewrap", &sandboxed_summary),
        ("floor, bwrap spawn", &sandboxed_floor_summary),
        ("Wharf, sandbox off", &unsandboxed_summary),
        ("floor, plain spawn", &plain_floor_summary),
    ] {
        notes.push(format!(
            "{label}: min {:.2} ms, max {:.2} ms.",
            summary.min, summary.max
        ));
    }
    Ok(Section {
        title: "Run dispatch overhead".into(),
        method: format!(
            "A job app runs `/bin/date +%s%N`. The bench takes the time just before `POST /api/v1/apps/trivial/runs`, \
             waits for the run to end (polling `GET /api/v1/runs/ID` every {} ms), and reads the timestamp the \
             workload printed at its exec from `GET /api/v1/runs/ID/logs`. {MEASURED_RUNS} sequential runs \
             after {WARM_UP_RUNS} warm-up runs, on a fresh server (`max_concurrent_runs = 16`). \
             The floor spawns the same command from Rust (`std::process::Command`, same environment, folder, \
             pipes and process group as the shim) with the program, arguments and environment the shim \
             uses (`wharf_runtime::workload_command_line`: the bubblewrap argument list), measured from just before the spawn to the printed \
             timestamp, once after each Wharf run (so Wharf and its floor share the same background load); the second group of rows uses \
             `sandbox = \"off\"` against a plain spawn of `/bin/date`. Ratio = Wharf ÷ floor.",
            POLL_INTERVAL.as_millis()
        ),
        rows,
        notes,
        subcommand: "dispatch",
    })
}

/// Runs `count` sequential `/bin/date` runs on an already started server (for the RSS
/// measurement); the app is deployed first.
pub fn run_sequentially(client: &ApiClient, app_dir: &Path, count: usize) -> anyhow::Result<()> {
    write_job_app(app_dir, "trivial", &DATE_COMMAND, 64)?;
    client.deploy("trivial", app_dir)?;
    for _ in 0..count {
        timed_run(client, "trivial")?;
    }
    Ok(())
}
