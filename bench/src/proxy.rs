//! Proxy throughput and latency: wrk against the tiny backend directly and through Wharf,
//! nginx, configurable-http-proxy and express + http-proxy-middleware, at 8, 64 and 256
//! connections, as ratios to direct; the goals compare Wharf with nginx and
//! configurable-http-proxy and bound the latency Wharf adds.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::report::{Row, Section};
use crate::targets::{self, Target, TargetKind, PREFIX};
use crate::{grid, Bench};

const CONNECTIONS: [u32; 3] = [8, 64, 256];
const WRK_THREADS: u32 = 2;
const DURATION: Duration = Duration::from_secs(3);
/// Every target is measured this many times at each connection count, the targets taking
/// turns, and the run with the median req/s is reported: the machine's speed drifts by
/// ±15% within minutes here, and turns spread the drift over all targets alike.
const ROUNDS: usize = 5;
const WARM_UP: Duration = Duration::from_secs(1);
const GOAL_VS_NGINX: f64 = 0.9;
const GOAL_VS_CHP: f64 = 3.0;
const GOAL_ADDED_P50_MS: f64 = 0.2;

/// Prints wrk's own numbers in exact units (latency percentiles in microseconds).
const WRK_SCRIPT: &str = r#"done = function(summary, latency, requests)
  io.write(string.format(
    "WHARF_BENCH requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
"#;

/// One wrk run.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub connections: u32,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Non-2xx/3xx answers.
    pub bad_status: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

/// Parses the `WHARF_BENCH key=value ...` line of [`WRK_SCRIPT`].
fn parse_wrk(output: &str, connections: u32) -> anyhow::Result<WrkResult> {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix("WHARF_BENCH "))
        .with_context(|| format!("wrk printed no WHARF_BENCH line:\n{output}"))?;
    let value = |key: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .and_then(|text| text.parse::<f64>().ok())
            .with_context(|| format!("no number for {key} in wrk's line {line:?}"))
    };
    let requests = value("requests")?;
    let seconds = value("duration_us")? / 1e6;
    if requests <= 0.0 || seconds <= 0.0 {
        bail!("wrk completed no request:\n{output}");
    }
    let socket_errors = value("connect")? + value("read")? + value("write")? + value("timeout")?;
    Ok(WrkResult {
        connections,
        requests_per_second: requests / seconds,
        p50_ms: value("p50_us")? / 1e3,
        p99_ms: value("p99_us")? / 1e3,
        requests: requests as u64,
        bad_status: value("status")? as u64,
        socket_errors: socket_errors as u64,
    })
}

fn run_wrk(
    url: &str,
    connections: u32,
    duration: Duration,
    script: &Path,
) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .args(["--timeout", "5s", "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .context("cannot run wrk; install it with scripts/install-deps.sh (Debian's wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk {url} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&stdout, connections)
}

type Outcome = Result<Vec<WrkResult>, String>;

/// Starts one proxy target (not the direct one) in front of the backend on `backend_port`;
/// `Err` holds why it is not measured.
fn start_target(bench: &Bench, kind: TargetKind, backend_port: u16) -> Result<Target, String> {
    match kind {
        TargetKind::Wharf => crate::wharf_proxy::wharf_proxy_target(bench, "proxy-wharf"),
        _ => {
            let scratch = bench
                .fresh_dir(&format!("proxy-{kind:?}").to_lowercase())
                .map_err(|error| format!("{error:#}"))?;
            targets::start_baseline(bench, kind, &scratch, backend_port)
                .map_err(|error| targets::one_line(&format!("{error:#}")))
        }
    }
}

/// [`ROUNDS`] rounds over every started target (a warm-up run first), then per target
/// and connection count the run with the median req/s.
fn measure_in_turns(
    targets: &[(TargetKind, Result<Target, String>)],
    script: &Path,
) -> Vec<(TargetKind, Outcome)> {
    let mut runs: Vec<Result<Vec<WrkResult>, String>> = targets
        .iter()
        .map(|(_, target)| match target {
            Ok(target) => run_wrk(&target.url(), 64, WARM_UP, script)
                .map(|_| Vec::new())
                .map_err(|error| targets::one_line(&format!("{error:#}"))),
            Err(reason) => Err(reason.clone()),
        })
        .collect();
    for round in 1..=ROUNDS {
        println!("  round {round} of {ROUNDS} ...");
        for ((kind, target), results) in targets.iter().zip(runs.iter_mut()) {
            let (Ok(target), Ok(list)) = (target, results.as_mut()) else {
                continue;
            };
            for connections in CONNECTIONS {
                match run_wrk(&target.url(), connections, DURATION, script) {
                    Ok(result) => list.push(result),
                    Err(error) => {
                        let reason = targets::one_line(&format!("{error:#}"));
                        println!("  {} failed: {reason}", kind.label());
                        *results = Err(reason);
                        break;
                    }
                }
            }
        }
    }
    targets
        .iter()
        .zip(runs)
        .map(|((kind, _), results)| (*kind, results.map(|list| medians(&list))))
        .collect()
}

/// Per connection count, the run with the median req/s.
fn medians(runs: &[WrkResult]) -> Vec<WrkResult> {
    CONNECTIONS
        .iter()
        .filter_map(|connections| {
            let mut at: Vec<WrkResult> = runs
                .iter()
                .filter(|run| run.connections == *connections)
                .copied()
                .collect();
            at.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
            at.get(at.len() / 2).copied()
        })
        .collect()
}

/// A count rounded and grouped by thousands: 1234567 → "1,234,567".
pub(crate) fn grouped(count: f64) -> String {
    let rounded = count.round() as u64;
    let digits = rounded.to_string();
    let (head, rest) = digits.split_at(digits.len() % 3);
    let mut groups: Vec<&str> = Vec::new();
    if !head.is_empty() {
        groups.push(head);
    }
    groups.extend(
        rest.as_bytes()
            .chunks(3)
            .filter_map(|chunk| std::str::from_utf8(chunk).ok()),
    );
    groups.join(",")
}

fn at(outcome: &Outcome, connections: u32) -> Option<&WrkResult> {
    outcome
        .as_ref()
        .ok()?
        .iter()
        .find(|result| result.connections == connections)
}

fn grid_rows(outcomes: &[(TargetKind, Outcome)]) -> Vec<Vec<String>> {
    let direct = outcomes
        .iter()
        .find(|(kind, _)| *kind == TargetKind::Direct)
        .map(|(_, outcome)| outcome);
    let mut rows = Vec::new();
    for (kind, outcome) in outcomes {
        if let Err(reason) = outcome {
            let mut row = vec![kind.label().to_owned(), "—".into()];
            row.push(format!("not measured: {reason}"));
            row.extend(["—", "—", "—", "—"].map(String::from));
            rows.push(row);
            continue;
        }
        for connections in CONNECTIONS {
            let Some(result) = at(outcome, connections) else {
                continue;
            };
            let base = direct.and_then(|direct| at(direct, connections));
            let ratio = base.map_or("—".into(), |base| {
                format!(
                    "{:.2}×",
                    result.requests_per_second / base.requests_per_second
                )
            });
            let added = match (kind, base) {
                (TargetKind::Direct, _) | (_, None) => "—".into(),
                (_, Some(base)) => format!("{:+.3} ms", result.p50_ms - base.p50_ms),
            };
            rows.push(vec![
                kind.label().to_owned(),
                connections.to_string(),
                grouped(result.requests_per_second),
                ratio,
                format!("{:.3} ms", result.p50_ms),
                format!("{:.3} ms", result.p99_ms),
                added,
            ]);
        }
    }
    rows
}

const GRID_HEADERS: [&str; 7] = [
    "target",
    "connections",
    "req/s",
    "× direct",
    "p50",
    "p99",
    "added p50",
];

fn outcome_of(outcomes: &[(TargetKind, Outcome)], wanted: TargetKind) -> Option<&Outcome> {
    outcomes
        .iter()
        .find(|(kind, _)| *kind == wanted)
        .map(|(_, outcome)| outcome)
}

/// Wharf against one baseline's throughput at each connection count.
fn throughput_goal_rows(
    outcomes: &[(TargetKind, Outcome)],
    baseline: TargetKind,
    goal: f64,
) -> Vec<Row> {
    let (Some(wharf), Some(other)) = (
        outcome_of(outcomes, TargetKind::Wharf),
        outcome_of(outcomes, baseline),
    ) else {
        return Vec::new();
    };
    CONNECTIONS
        .iter()
        .map(|connections| {
            let metric = format!("req/s vs {}, {connections} connections", baseline.label());
            let wharf_text = match (wharf, at(wharf, *connections)) {
                (Err(_), _) | (_, None) => "not measured".to_owned(),
                (_, Some(result)) => grouped(result.requests_per_second),
            };
            let mut row = Row::new(metric, wharf_text);
            let goal_text = format!("≥ {goal}× {}", baseline.label());
            match (at(wharf, *connections), at(other, *connections)) {
                (Some(wharf), Some(other)) => {
                    let ratio = wharf.requests_per_second / other.requests_per_second;
                    row = row
                        .baseline(grouped(other.requests_per_second), ratio)
                        .goal(goal_text, ratio >= goal);
                }
                (None, Some(other)) => {
                    row.baseline = grouped(other.requests_per_second);
                    row.goal = goal_text;
                }
                (_, None) => {
                    row.baseline = "not measured".into();
                    row.goal = goal_text;
                }
            }
            row
        })
        .collect()
}

fn added_latency_rows(outcomes: &[(TargetKind, Outcome)]) -> Vec<Row> {
    let (Some(wharf), Some(direct)) = (
        outcome_of(outcomes, TargetKind::Wharf),
        outcome_of(outcomes, TargetKind::Direct),
    ) else {
        return Vec::new();
    };
    CONNECTIONS
        .iter()
        .map(|connections| {
            let metric = format!("added p50 over direct, {connections} connections");
            let goal_text = format!("≤ {GOAL_ADDED_P50_MS} ms");
            match (at(wharf, *connections), at(direct, *connections)) {
                (Some(wharf), Some(direct)) => {
                    let added = wharf.p50_ms - direct.p50_ms;
                    let mut row = Row::new(
                        metric,
                        format!("{added:+.3} ms (p50 {:.3} ms)", wharf.p50_ms),
                    )
                    .goal(goal_text, added <= GOAL_ADDED_P50_MS);
                    row.baseline = format!("direct p50 {:.3} ms", direct.p50_ms);
                    row
                }
                (None, direct) => {
                    let mut row = Row::new(metric, "not measured");
                    row.baseline = direct.map_or("not measured".into(), |direct| {
                        format!("direct p50 {:.3} ms", direct.p50_ms)
                    });
                    row.goal = goal_text;
                    row
                }
                (Some(_), None) => {
                    let mut row = Row::new(metric, "—");
                    row.baseline = "not measured".into();
                    row.goal = goal_text;
                    row
                }
            }
        })
        .collect()
}

/// Where Wharf's added p50 is over the goal: what nginx adds at the same load, and the
/// wait that Little's law predicts from throughput alone (N requests always outstanding).
fn saturation_notes(outcomes: &[(TargetKind, Outcome)]) -> Vec<String> {
    let (Some(wharf), Some(direct), Some(nginx)) = (
        outcome_of(outcomes, TargetKind::Wharf),
        outcome_of(outcomes, TargetKind::Direct),
        outcome_of(outcomes, TargetKind::Nginx),
    ) else {
        return Vec::new();
    };
    CONNECTIONS
        .iter()
        .filter_map(|connections| {
            let (wharf, direct, nginx) = (
                at(wharf, *connections)?,
                at(direct, *connections)?,
                at(nginx, *connections)?,
            );
            if wharf.p50_ms - direct.p50_ms <= GOAL_ADDED_P50_MS {
                return None;
            }
            let queue_ms = |rate: f64| *connections as f64 / rate * 1000.0;
            Some(format!(
                "At {connections} connections wrk keeps {connections} requests outstanding, so \
                 a request's time is mostly its wait in line: connections ÷ req/s (Little's \
                 law) is {:.2} ms through Wharf, {:.2} ms through nginx and {:.2} ms direct. \
                 nginx adds {:+.3} ms to the p50 here, Wharf {:+.3} ms.",
                queue_ms(wharf.requests_per_second),
                queue_ms(nginx.requests_per_second),
                queue_ms(direct.requests_per_second),
                nginx.p50_ms - direct.p50_ms,
                wharf.p50_ms - direct.p50_ms,
            ))
        })
        .collect()
}

fn error_notes(outcomes: &[(TargetKind, Outcome)]) -> Vec<String> {
    let mut notes = Vec::new();
    for (kind, outcome) in outcomes {
        match outcome {
            Err(reason) => notes.push(format!("{} not measured: {reason}", kind.label())),
            Ok(results) => {
                for result in results {
                    if result.bad_status > 0 || result.socket_errors > 0 {
                        notes.push(format!(
                            "{} at {} connections: {} non-2xx answers and {} socket errors \
                             in {} requests.",
                            kind.label(),
                            result.connections,
                            result.bad_status,
                            result.socket_errors,
                            result.requests
                        ));
                    }
                }
            }
        }
    }
    notes
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    targets::raise_open_file_limit();
    let scratch = bench.fresh_dir("proxy")?;
    let script = scratch.join("report.lua");
    std::fs::write(&script, WRK_SCRIPT)
        .with_context(|| format!("cannot write {}", script.display()))?;
    let (direct, backend_port) = targets::direct_target(bench, &scratch)?;
    let mut started: Vec<(TargetKind, Result<Target, String>)> =
        vec![(TargetKind::Direct, Ok(direct))];
    for kind in [
        TargetKind::Wharf,
        TargetKind::Nginx,
        TargetKind::ConfigurableHttpProxy,
        TargetKind::Express,
    ] {
        println!("  starting {} ...", kind.label());
        started.push((kind, start_target(bench, kind, backend_port)));
    }
    let load_before = crate::report::load_average();
    let outcomes = measure_in_turns(&started, &script);
    drop(started);
    let rows = grid_rows(&outcomes);
    println!("\n{}", grid::text(&GRID_HEADERS, &rows));
    let mut goal_rows = throughput_goal_rows(&outcomes, TargetKind::Nginx, GOAL_VS_NGINX);
    goal_rows.extend(throughput_goal_rows(
        &outcomes,
        TargetKind::ConfigurableHttpProxy,
        GOAL_VS_CHP,
    ));
    goal_rows.extend(added_latency_rows(&outcomes));
    let mut notes = error_notes(&outcomes);
    notes.extend(saturation_notes(&outcomes));
    notes.push(format!(
        "Load average (1, 5, 15 min) before the first round: {load_before}; after the last: {}. \
         wrk, the proxy and the backend share the machine's {} cores.",
        crate::report::load_average(),
        bench.cores
    ));
    Ok(Section {
        title: "Reverse proxy throughput and latency".into(),
        method: format!(
            "A fixed backend, `tiny-backend` (Rust, hyper, one tokio worker thread; `bench/src/bin/`), \
             answers every request with the same 100-byte body. `wrk -t{WRK_THREADS} -cN -d{}s --latency` \
             requests `GET {PREFIX}` through each target at N = 8, 64 and 256 connections; a Lua \
             `done` hook prints wrk's own request count and latency percentiles in µs. All targets \
             are started first (each gets a {} s warm-up at 64 connections); then {ROUNDS} rounds \
             measure them in turn, and the table shows, per target and N, the round with the median \
             req/s (the machine's speed drifts by ±15% within minutes; turns spread that over all \
             targets alike). Targets: the backend directly; **Wharf** (a real `wharf server`, \
             default settings, with the backend deployed as the public service app `tiny`, its binary \
             inside the bundle, one replica, reached at `/apps/tiny/` on the API listener); **nginx** \
             (Debian's nginx-light, `worker_processes {}`, upstream `keepalive 256`, `access_log off`, \
             HTTP/1.1 to the backend); **configurable-http-proxy** (npm, `--default-target` the backend); \
             **express + http-proxy-middleware** (npm, `pathFilter` on the prefix, default agent). \
             Only one proxy is under load at a time; the baselines forward to one backend process, \
             Wharf to its own replica of the same binary. Wharf serves connections on \
             single-threaded runtimes, one per core plus one (the `http_threads` default: with one \
             per core, a core whose thread waited sat idle while requests queued on the other), and \
             nginx runs one worker per core, as `worker_processes auto` does (a third worker, tried \
             by hand with the same wrk runs, was 0.97× of two at 256 connections). \"× direct\" is req/s over direct's at the same \
             connections; \"added p50\" is the target's p50 minus direct's.\n\n{}",
            DURATION.as_secs(),
            WARM_UP.as_secs(),
            bench.cores,
            grid::markdown(&GRID_HEADERS, &rows)
        ),
        rows: goal_rows,
        notes,
        subcommand: "proxy",
    })
}

#[cfg(test)]
mod tests {
    use crate::proxy::{grouped, parse_wrk};

    #[test]
    fn wrk_line() {
        let output = "Running 5s test\nWHARF_BENCH requests=100000 duration_us=5000000 p50_us=250 \
                      p99_us=1500 connect=0 read=1 write=0 status=2 timeout=3\nRequests/sec: 20000\n";
        let result = parse_wrk(output, 64).unwrap();
        assert_eq!(result.requests_per_second, 20000.0);
        assert_eq!(result.p50_ms, 0.25);
        assert_eq!(result.p99_ms, 1.5);
        assert_eq!(result.bad_status, 2);
        assert_eq!(result.socket_errors, 4);
        assert!(parse_wrk("no line", 8).is_err());
        assert!(parse_wrk("WHARF_BENCH requests=0 duration_us=1", 8).is_err());
    }

    #[test]
    fn one_line_reasons() {
        assert_eq!(crate::targets::one_line("a\n\n  b \nc"), "a / b / c");
        let long = "x".repeat(500);
        assert_eq!(crate::targets::one_line(&long).chars().count(), 402);
    }

    #[test]
    fn grouping() {
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1234567.0), "1,234,567");
        assert_eq!(grouped(100000.0), "100,000");
    }
}
