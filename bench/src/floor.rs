//! The floors: the workload started directly from Rust with `std::process::Command`, with
//! the program, arguments (the bubblewrap argument list, or the plain command) and
//! environment the Wharf shim uses, taken from `wharf_runtime::workload_command_line`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use wharf_runtime::{workload_command_line, LaunchSpec, Sandbox};

/// How the floor starts the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorMode {
    /// `bwrap ARGS -- COMMAND`, the shim's argument list.
    Bubblewrap,
    /// `COMMAND` directly.
    Plain,
}

/// Folders shaped like a Wharf app version and run folder.
pub struct FloorSetup {
    pub app_dir: PathBuf,
    pub run_dir: PathBuf,
}

impl FloorSetup {
    /// Creates `SCRATCH/app` (with a manifest) and `SCRATCH/run/work/{input,output,tmp}`.
    pub fn create(scratch: &Path, command: &[&str]) -> anyhow::Result<FloorSetup> {
        let app_dir = scratch.join("app");
        crate::server::write_job_app(&app_dir, "floor", command, 1)?;
        let run_dir = scratch.join("run");
        for sub in ["input", "output", "tmp"] {
            let dir = run_dir.join("work").join(sub);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(FloorSetup { app_dir, run_dir })
    }
}

/// The launch spec the executor would give the shim for `command` in the floor's app.
fn launch_spec(setup: &FloorSetup, mode: FloorMode, command: &[&str]) -> LaunchSpec {
    // As `crates/wharf-control/src/executor.rs` sets them for a run of app "floor".
    let env = [
        ("WHARF_APP", "floor"),
        ("WHARF_APP_VERSION", "1"),
        ("WHARF_RUN_ID", "01floorfloorfloorfloorfloor"),
        ("WHARF_RUN_ATTEMPT", "1"),
        ("WHARF_TRIGGER", "manual"),
        ("WHARF_PARAMS", "{}"),
    ];
    LaunchSpec {
        workload_id: "floor".into(),
        command: command.iter().map(|part| part.to_string()).collect(),
        env: env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        app_dir: setup.app_dir.clone(),
        sandbox: match mode {
            FloorMode::Bubblewrap => Sandbox::Bubblewrap,
            FloorMode::Plain => Sandbox::Off,
        },
        timeout: None,
        kill_grace: Duration::from_secs(5),
        extra_ro_binds: vec![],
        secrets: None,
    }
}

/// The command the floor spawns: the program, arguments, environment and folder the shim
/// would use (`wharf_runtime::workload_command_line`), with the shim's pipes and own process
/// group, but spawned directly.
pub fn floor_command(setup: &FloorSetup, mode: FloorMode, command: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let line = workload_command_line(&launch_spec(setup, mode, command), &setup.run_dir);
    let mut spawned = Command::new(&line.program);
    spawned
        .args(&line.args)
        .env_clear()
        .envs(line.env)
        .current_dir(&line.current_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    spawned
}

/// Unix time in nanoseconds.
pub fn now_unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i128)
        .unwrap_or(0)
}

/// Parses the output of `date +%s%N`.
pub fn parse_nanos(text: &str) -> anyhow::Result<i128> {
    let trimmed = text.trim();
    match trimmed.parse::<i128>() {
        Ok(nanos) if nanos > 1_000_000_000_000_000_000 => Ok(nanos),
        _ => bail!("{trimmed:?} is not a `date +%s%N` timestamp"),
    }
}

/// Spawns `/bin/date +%s%N` once; returns the milliseconds from just before the spawn to
/// the printed timestamp.
pub fn exec_latency(setup: &FloorSetup, mode: FloorMode) -> anyhow::Result<f64> {
    let mut spawned = floor_command(setup, mode, &["/bin/date", "+%s%N"]);
    let before = now_unix_nanos();
    let mut child = spawned.spawn().context("cannot spawn the floor command")?;
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout)?;
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the floor command ({mode:?}) failed with {status}: {stderr}");
    }
    let exec = parse_nanos(&stdout)?;
    Ok((exec - before) as f64 / 1e6)
}

/// Starts `/bin/true` `count` times with at most `parallel` at once; returns the wall time.
pub fn throughput(
    setup: &FloorSetup,
    mode: FloorMode,
    count: usize,
    parallel: usize,
) -> anyhow::Result<Duration> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    while next.fetch_add(1, Ordering::Relaxed) < count {
                        let mut spawned = floor_command(setup, mode, &["/bin/true"]);
                        spawned.stdout(Stdio::null()).stderr(Stdio::null());
                        let status = spawned.status().context("cannot spawn the floor command")?;
                        if !status.success() {
                            bail!("the floor command ({mode:?}) failed with {status}");
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a floor worker panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use crate::floor::parse_nanos;

    fn check(text: &str, expect: Option<i128>) {
        assert_eq!(parse_nanos(text).ok(), expect, "{text:?}");
    }

    #[test]
    fn timestamps() {
        check("1700000000123456789\n", Some(1_700_000_000_123_456_789));
        check("  1700000000123456789 ", Some(1_700_000_000_123_456_789));
        check("1700000000", None);
        check("", None);
        check("abc", None);
    }
}
