//! Measurement 2: trivial runs per second, sustained.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::floor::{self, FloorMode, FloorSetup};
use crate::report::{Row, Section};
use crate::server::{is_terminal, write_job_app, ApiClient, Server, ServerOptions};
use crate::Bench;

pub const RUNS: usize = 500;
pub const CONCURRENCY: u32 = 64;
const WARM_UP_RUNS: usize = 8;
/// Threads that send the POSTs.
const CLIENT_THREADS: usize = 4;
/// How often the client lists the runs to see whether all have ended. The end time itself
/// comes from the runs' `finished_at`, so this only needs to be short against the total.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const LIMIT: Duration = Duration::from_secs(120);

/// POSTs `count` runs from `CLIENT_THREADS` threads; returns their ids.
fn start_runs(client: &ApiClient, app: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let per_thread = count.div_ceil(CLIENT_THREADS);
    let results: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENT_THREADS)
            .map(|index| {
                let mine = per_thread.min(count.saturating_sub(index * per_thread));
                scope.spawn(move || {
                    (0..mine)
                        .map(|_| client.create_run(app))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let mut ids = Vec::with_capacity(count);
    for result in results {
        ids.extend(result?);
    }
    Ok(ids)
}

/// How a batch of runs ended.
struct BatchEnd {
    not_succeeded: usize,
    /// The latest `finished_at`, in Unix milliseconds.
    last_finished_millis: i64,
}

fn finished_unix_millis(run: &serde_json::Value) -> Option<i64> {
    let text = run["finished_at"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp_millis())
}

/// Polls the run list until every run in `ids` has ended.
fn wait_all_ended(
    client: &ApiClient,
    app: &str,
    ids: &[String],
    started: Instant,
) -> anyhow::Result<BatchEnd> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    loop {
        let runs = client.list_runs(app, 1000)?;
        let mine: Vec<_> = runs
            .iter()
            .filter(|run| run["id"].as_str().is_some_and(|id| wanted.contains(id)))
            .collect();
        let ended = mine
            .iter()
            .filter(|run| is_terminal(run["state"].as_str().unwrap_or("")))
            .count();
        if mine.len() == wanted.len() && ended == wanted.len() {
            let finished: Vec<i64> = mine
                .iter()
                .filter_map(|run| finished_unix_millis(run))
                .collect();
            if finished.len() != mine.len() {
                bail!("an ended run has no valid finished_at");
            }
            return Ok(BatchEnd {
                not_succeeded: mine
                    .iter()
                    .filter(|run| run["state"] != "succeeded")
                    .count(),
                last_finished_millis: finished.into_iter().max().unwrap_or_default(),
            });
        }
        if started.elapsed() > LIMIT {
            bail!(
                "only {ended} of {} runs ended within {LIMIT:?}",
                wanted.len()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    let scratch = bench.fresh_dir("throughput")?;
    let options = ServerOptions {
        sandbox: "required",
        max_concurrent_runs: CONCURRENCY,
        ..ServerOptions::default()
    };
    let mut server = Server::spawn(&bench.wharf_bin, &scratch.join("data"), &scratch, &options)?;
    server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
    let client = ApiClient::new(&server)?;
    let app_dir = scratch.join("app");
    write_job_app(&app_dir, "true", &["/bin/true"], CONCURRENCY)?;
    client.deploy("true", &app_dir)?;

    let warm_up = start_runs(&client, "true", WARM_UP_RUNS)?;
    wait_all_ended(&client, "true", &warm_up, Instant::now())?;

    let first_post_nanos = floor::now_unix_nanos();
    let started = Instant::now();
    let ids = start_runs(&client, "true", RUNS)?;
    let submitted = started.elapsed();
    let end = wait_all_ended(&client, "true", &ids, started)?;
    let seen_ended = started.elapsed();
    server.stop()?;
    if end.not_succeeded > 0 {
        bail!(
            "{} of {RUNS} runs did not succeed; see {}",
            end.not_succeeded,
            scratch.display()
        );
    }
    let elapsed_millis = i128::from(end.last_finished_millis) - first_post_nanos / 1_000_000;
    if elapsed_millis <= 0 {
        bail!("the last run finished before the first POST ({elapsed_millis} ms); is the clock stepping?");
    }
    let elapsed = Duration::from_millis(elapsed_millis as u64);

    let floor_scratch = bench.fresh_dir("throughput-floor")?;
    let setup = FloorSetup::create(&floor_scratch, &["/bin/true"])?;
    floor::throughput(
        &setup,
        FloorMode::Bubblewrap,
        WARM_UP_RUNS,
        CONCURRENCY as usize,
    )?;
    let floor_elapsed =
        floor::throughput(&setup, FloorMode::Bubblewrap, RUNS, CONCURRENCY as usize)
            .context("the throughput floor failed")?;

    let rate = RUNS as f64 / elapsed.as_secs_f64();
    let floor_rate = RUNS as f64 / floor_elapsed.as_secs_f64();
    let row = Row::new(
        format!("trivial runs/s sustained ({RUNS} × /bin/true, {CONCURRENCY} at once, bubblewrap)"),
        format!("{rate:.0} runs/s ({:.2} s)", elapsed.as_secs_f64()),
    )
    .baseline(
        format!(
            "{floor_rate:.0} runs/s ({:.2} s, bwrap spawns)",
            floor_elapsed.as_secs_f64()
        ),
        rate / floor_rate,
    );
    Ok(Section {
        title: "Trivial runs per second".into(),
        method: format!(
            "A job app runs `/bin/true` with `[job] concurrency = {CONCURRENCY}` on a server with \
             `max_concurrent_runs = {CONCURRENCY}` and `sandbox = \"required\"`. After {WARM_UP_RUNS} warm-up \
             runs, {CLIENT_THREADS} client threads POST {RUNS} runs as fast as the server answers; the time runs \
             from just before the first POST to the latest `finished_at` of the {RUNS} runs (the client lists \
             the runs every {} ms until all have ended). \
             The floor starts `/bin/true` {RUNS} times under the same bubblewrap arguments directly from Rust, \
             {CONCURRENCY} at once. Ratio = Wharf ÷ floor (higher is better). The issue sets no goal here.",
            POLL_INTERVAL.as_millis()
        ),
        rows: vec![row],
        notes: vec![
            format!(
                "The machine has {} cores, shared by the bench client, the server, {RUNS} supervisors and the workloads.",
                bench.cores
            ),
            format!(
                "All {RUNS} POSTs were answered after {:.2} s; the client saw all runs ended after {:.2} s.",
                submitted.as_secs_f64(),
                seen_ended.as_secs_f64()
            ),
        ],
        subcommand: "throughput",
    })
}
