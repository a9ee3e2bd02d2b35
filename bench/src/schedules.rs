//! Schedules: how late the scheduler queues runs with 1,000 active schedules, and the
//! server's CPU while idle with 10,000 schedules configured.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::report::{summarize, Row, Section};
use crate::server::{ApiClient, Server, ServerOptions};
use crate::Bench;

/// 100 apps × 10 schedule triggers = 1,000 active schedules.
const PRECISION_APPS: usize = 100;
const PRECISION_TRIGGERS: usize = 10;
/// Every trigger fires once a minute, at its own second: ~17 fires per second.
const PRECISION_WINDOW: Duration = Duration::from_secs(65);
const WARM_UP: Duration = Duration::from_secs(5);
const PRECISION_GOAL_MS: f64 = 50.0;

/// 100 apps × 100 schedule triggers = 10,000 schedules, each firing once a year.
const IDLE_APPS: usize = 100;
const IDLE_TRIGGERS: usize = 100;
const IDLE_SETTLE: Duration = Duration::from_secs(5);
const IDLE_WINDOW: Duration = Duration::from_secs(30);

fn write_scheduled_app(dir: &Path, name: &str, schedules: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut manifest = format!(
        "name = \"{name}\"\nkind = \"job\"\ncommand = [\"/bin/true\"]\n\n[job]\nconcurrency = {}\n",
        schedules.len().max(1)
    );
    for schedule in schedules {
        manifest.push_str(&format!("\n[[job.trigger]]\nschedule = \"{schedule}\"\n"));
    }
    let path = dir.join("wharf.toml");
    std::fs::write(&path, manifest).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn time_millis(value: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|time| time.timestamp_millis())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; here (from field 3) at 11 and 12.
    let ticks = |index: usize| -> anyhow::Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .with_context(|| format!("{path}: field {} is not a number", index + 3))
    };
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / ticks_per_second)
}

fn start_server(
    bench: &Bench,
    name: &str,
) -> anyhow::Result<(Server, ApiClient, std::path::PathBuf)> {
    let scratch = bench.fresh_dir(name)?;
    let options = ServerOptions {
        sandbox: "off",
        max_concurrent_runs: 64,
        ..ServerOptions::default()
    };
    let mut server = Server::spawn(&bench.wharf_bin, &scratch.join("data"), &scratch, &options)?;
    server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
    let client = ApiClient::new(&server)?;
    Ok((server, client, scratch))
}

/// Lateness (queued_at − slot, ms) of every scheduled run whose slot is in the window.
fn precision(bench: &Bench) -> anyhow::Result<(Vec<f64>, usize)> {
    let (mut server, client, scratch) = start_server(bench, "schedules-precision")?;
    for app in 0..PRECISION_APPS {
        let schedules: Vec<String> = (0..PRECISION_TRIGGERS)
            .map(|trigger| format!("{} * * * * *", (app * PRECISION_TRIGGERS + trigger) % 60))
            .collect();
        let name = format!("tick-{app}");
        let dir = scratch.join(&name);
        write_scheduled_app(&dir, &name, &schedules)?;
        client.deploy(&name, &dir)?;
    }
    let window_start = chrono::Utc::now().timestamp_millis() + WARM_UP.as_millis() as i64;
    std::thread::sleep(WARM_UP + PRECISION_WINDOW);
    let window_end = window_start + PRECISION_WINDOW.as_millis() as i64;
    let mut lateness = Vec::new();
    let mut runs_seen = 0;
    for app in 0..PRECISION_APPS {
        for run in client.list_runs(&format!("tick-{app}"), 1000)? {
            runs_seen += 1;
            let (Some(slot), Some(queued)) = (
                time_millis(&run["scheduled_for"]),
                time_millis(&run["queued_at"]),
            ) else {
                continue;
            };
            if slot >= window_start && slot < window_end {
                lateness.push((queued - slot) as f64);
            }
        }
    }
    server.stop()?;
    if lateness.is_empty() {
        bail!("no scheduled run in the window; see {}", scratch.display());
    }
    Ok((lateness, runs_seen))
}

/// CPU seconds per second of the idle server, with `apps × triggers` yearly schedules.
fn idle_cpu(bench: &Bench, name: &str, apps: usize, triggers: usize) -> anyhow::Result<f64> {
    let (mut server, client, scratch) = start_server(bench, name)?;
    for app in 0..apps {
        let schedules: Vec<String> = (0..triggers)
            .map(|trigger| {
                let index = app * triggers + trigger;
                format!("{} {} 1 1 *", index % 60, (index / 60) % 24)
            })
            .collect();
        let name = format!("yearly-{app}");
        let dir = scratch.join(&name);
        write_scheduled_app(&dir, &name, &schedules)?;
        client.deploy(&name, &dir)?;
    }
    let wanted = apps * triggers;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = client.get_json("/schedules")?;
        let count = listed.as_array().map_or(0, Vec::len);
        if count == wanted {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server lists {count} of {wanted} schedules after 120 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(IDLE_SETTLE);
    let pid = server.pid();
    let before = cpu_seconds(pid)?;
    let started = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let used = cpu_seconds(pid)? - before;
    let elapsed = started.elapsed().as_secs_f64();
    server.stop()?;
    Ok(used / elapsed)
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    let (lateness, runs_seen) = precision(bench)?;
    let summary = summarize(&lateness).context("no lateness samples")?;
    let idle_with = idle_cpu(bench, "schedules-idle", IDLE_APPS, IDLE_TRIGGERS)?;
    let idle_without = idle_cpu(bench, "schedules-idle-none", 0, 0)?;
    let percent = |share: f64| share * 100.0;
    let mut rows = vec![
        Row::new(
            format!(
                "lateness queued_at − slot, p50 / p99 ({} schedules, {} slots)",
                PRECISION_APPS * PRECISION_TRIGGERS,
                summary.count
            ),
            format!(
                "{:.0} ms / {:.0} ms (max {:.0} ms)",
                summary.p50, summary.p99, summary.max
            ),
        )
        .goal(
            format!("p99 ≤ {PRECISION_GOAL_MS:.0} ms"),
            summary.p99 <= PRECISION_GOAL_MS,
        ),
        Row::new(
            format!(
                "idle server CPU, {} schedules configured ({} s)",
                IDLE_APPS * IDLE_TRIGGERS,
                IDLE_WINDOW.as_secs()
            ),
            format!(
                "{:.3} % of a core ({:.0} ms CPU)",
                percent(idle_with),
                idle_with * IDLE_WINDOW.as_secs_f64() * 1000.0
            ),
        )
        .baseline(
            format!(
                "{:.3} % ({:.0} ms CPU, no schedules)",
                percent(idle_without),
                idle_without * IDLE_WINDOW.as_secs_f64() * 1000.0
            ),
            idle_with / idle_without,
        )
        .goal("sleeps until the next fire", percent(idle_with) < 0.5),
    ];
    if idle_without <= 0.0 {
        // No measurable CPU at all without schedules: a ratio would divide by zero.
        rows[1].ratio = "—".into();
    }
    Ok(Section {
        title: "Schedule precision and idle cost".into(),
        method: format!(
            "**Precision:** a server with `sandbox = \"off\"` gets {PRECISION_APPS} job apps (`/bin/true`) with \
             {PRECISION_TRIGGERS} schedule triggers each, {} active schedules in all; trigger *j* of app *i* is \
             `S * * * * *` with S = (10·i + j) mod 60, so each fires once a minute at its own second and about 17 \
             slots come due every second. After {} s of warm-up, every scheduled run whose slot lies in the next \
             {} s counts: lateness = the run's `queued_at` (the time the scheduler took just before the \
             transaction that inserts the due runs) − its slot (`scheduled_for`). It measures the scheduler, not \
             the executor's start of the run (see the dispatch table for that). \
             **Idle CPU:** a fresh server with {IDLE_APPS} apps of {IDLE_TRIGGERS} yearly schedule triggers each \
             ({} schedules, none due in the window), {} s after `GET /api/v1/schedules` lists them all: utime + \
             stime of the server process from `/proc/PID/stat` over {} s, against the same server with no apps. \
             The kernel counts CPU time in ticks of 10 ms, so 1 tick in 30 s is 0.033 %. The goal column's \"met\" \
             means below 0.5 % of a core.",
            PRECISION_APPS * PRECISION_TRIGGERS,
            WARM_UP.as_secs(),
            PRECISION_WINDOW.as_secs(),
            IDLE_APPS * IDLE_TRIGGERS,
            IDLE_SETTLE.as_secs(),
            IDLE_WINDOW.as_secs()
        ),
        rows,
        notes: vec![
            format!(
                "Lateness: mean {:.1} ms, min {:.0} ms, max {:.0} ms over {} slots ({runs_seen} runs listed).",
                summary.mean, summary.min, summary.max, summary.count
            ),
            format!(
                "The machine has {} cores; the server also started and ran every scheduled run meanwhile.",
                bench.cores
            ),
        ],
        subcommand: "schedules",
    })
}
