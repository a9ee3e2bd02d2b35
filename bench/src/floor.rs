//! The floors: the workload started directly from Rust with `std::process::Command`, under
//! the same bubblewrap argument list the Wharf shim uses, or as a plain process.
//!
//! The argument list mirrors `bubblewrap_args` and the environment mirrors `workload_env` in
//! `crates/wharf-runtime/src/{sandbox.rs,shim/supervise.rs}` (both are private to that
//! crate); keep them in step when those change.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

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

/// `/bin`, `/lib`, ... as the shim mirrors them: a symlink is recreated, a folder bound.
fn root_entry_args() -> Vec<String> {
    let mut args = Vec::new();
    for name in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
        let path = Path::new("/").join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&path) {
                    args.extend([
                        "--symlink".into(),
                        target.display().to_string(),
                        path.display().to_string(),
                    ]);
                }
            }
            Ok(metadata) if metadata.is_dir() => {
                args.extend([
                    "--ro-bind".into(),
                    path.display().to_string(),
                    path.display().to_string(),
                ]);
            }
            _ => {}
        }
    }
    args
}

/// The bubblewrap arguments (without the program) the shim would use for this run folder.
pub fn bubblewrap_args(setup: &FloorSetup, command: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--die-with-parent",
        "--unshare-all",
        "--share-net",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
    ]
    .map(String::from)
    .to_vec();
    args.extend(root_entry_args());
    let work = setup.run_dir.join("work").display().to_string();
    let app = setup.app_dir.display().to_string();
    args.extend(
        [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--ro-bind",
            &app,
            "/app",
            "--bind",
            &work,
            "/work",
            "--chdir",
            "/app",
        ]
        .map(String::from),
    );
    args.push("--".into());
    args.extend(command.iter().map(|part| part.to_string()));
    args
}

fn bubblewrap_program() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join("bwrap"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/bin/bwrap"))
}

/// The workload's environment as the shim builds it (work folder as seen by the workload).
fn workload_env(work_dir: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("WHARF_APP".into(), "floor".into()),
        ("WHARF_APP_VERSION".into(), "1".into()),
        ("WHARF_RUN_ID".into(), "01floorfloorfloorfloorfloor".into()),
        ("WHARF_RUN_ATTEMPT".into(), "1".into()),
        ("WHARF_TRIGGER".into(), "manual".into()),
        ("WHARF_PARAMS".into(), "{}".into()),
        ("WHARF_INPUT_DIR".into(), format!("{work_dir}/input")),
        ("WHARF_OUTPUT_DIR".into(), format!("{work_dir}/output")),
        ("TMPDIR".into(), format!("{work_dir}/tmp")),
        ("HOME".into(), format!("{work_dir}/tmp")),
    ]
}

/// The command the floor spawns, configured like the shim's (environment, folder, pipes,
/// own process group).
pub fn floor_command(setup: &FloorSetup, mode: FloorMode, command: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut spawned = match mode {
        FloorMode::Bubblewrap => {
            let mut spawned = Command::new(bubblewrap_program());
            spawned.args(bubblewrap_args(setup, command));
            spawned.env_clear().envs(workload_env("/work"));
            spawned
        }
        FloorMode::Plain => {
            let mut spawned = Command::new(command[0]);
            spawned.args(&command[1..]);
            let work = setup.run_dir.join("work").display().to_string();
            spawned.env_clear().envs(workload_env(&work));
            spawned
        }
    };
    spawned
        .current_dir(&setup.app_dir)
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
