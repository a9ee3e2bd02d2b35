//! wharf-runtime: where workloads execute.
//!
//! The local runtime runs one workload (a job run, later a service replica) as a supervised
//! process tree that survives a restart or `kill -9` of the Wharf server. Each workload has a
//! *run folder* (`RUN`):
//!
//! ```text
//! RUN/spec.json        the LaunchSpec (written by `launch`, read by the shim)
//! RUN/work/input/      the workload's writable folders
//! RUN/work/output/
//! RUN/work/tmp/
//! RUN/log.jsonl        one JSON object per captured line (see `logs`)
//! RUN/status.json      the ExitStatus, written once, atomically, when the workload is over
//! RUN/shim.pid         the shim's pid
//! RUN/shim.lock        held (flock) by the shim for exactly as long as it lives
//! RUN/shim.log         the shim's own stderr (only diagnostics of the shim itself)
//! ```
//!
//! The *shim* is the `wharf` binary re-executed with a hidden subcommand (`wharf __shim RUN`),
//! whose `main` calls [`shim_main`]. It is started in its own session, so it outlives the
//! server; it starts the workload in its own process group, captures its output into
//! `log.jsonl`, enforces the timeout, handles cancellation (SIGTERM to the shim) and records
//! the exit in `status.json`.
//!
//! Launching is on the path of every run's start, so what is slow in it is done ahead of
//! time, in the background after each launch (`prepared.rs`): a *standby shim* (`wharf
//! __shim --standby`, already executed and loaded) is handed the next run over a socket
//! (`standby.rs`), and a *spare run folder* (`RUNS/.spare-…`, the layout above without
//! `spec.json`, its lock already held) is renamed to the next run folder (`spare.rs`). The
//! server spawns shims with `posix_spawn` (`spawn.rs`), the shim its workload with
//! `clone(CLONE_VM | CLONE_VFORK)` (`shim/start.rs`); nothing is fsynced before the shim
//! holds the lock (see [`LocalRuntime::launch`] for why that loses nothing).
//!
//! **Architecture invariant:** the server never kills a shim; it only asks it to stop
//! ([`request_stop`]) and learns about its end through the lock ([`is_alive`],
//! [`wait_for_exit`]) and `status.json`.

mod error;
mod fs_util;
mod handover;
mod launch;
mod lock;
pub mod logs;
mod prepared;
mod sandbox;
mod shim;
mod spare;
mod spawn;
mod spec;
mod standby;

pub use crate::error::RuntimeError;
pub use crate::launch::{
    is_alive, read_exit_status, request_stop, shim_pid, wait_for_exit, Launched, LocalRuntime,
    LocalRuntimeConfig,
};
pub use crate::sandbox::bubblewrap_available;
pub use crate::shim::{shim_main, workload_command_line, WorkloadCommandLine};
pub use crate::spec::{ExitStatus, LaunchSpec, Sandbox, SealedEnv};

/// The launch spec, as JSON.
pub const SPEC_FILE: &str = "spec.json";
/// The captured output, one JSON object per line (see [`logs::LogLine`]).
pub const LOG_FILE: &str = "log.jsonl";
/// The exit status ([`ExitStatus`]), written once at the end.
pub const STATUS_FILE: &str = "status.json";
/// The shim's process id, as decimal text.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// The liveness lock: exclusively flock-ed by the shim for its whole life.
pub const SHIM_LOCK_FILE: &str = "shim.lock";
/// The shim's own stderr.
pub const SHIM_LOG_FILE: &str = "shim.log";
/// The workload's writable folder, with `input`, `output` and `tmp` inside.
pub const WORK_DIR: &str = "work";
/// Inside [`WORK_DIR`]: files staged for the workload.
pub const INPUT_DIR: &str = "input";
/// Inside [`WORK_DIR`]: files the workload produces.
pub const OUTPUT_DIR: &str = "output";
/// Inside [`WORK_DIR`]: scratch space (`TMPDIR`, `HOME`).
pub const TMP_DIR: &str = "tmp";
/// The hidden subcommand of the `wharf` binary that runs the shim.
pub const SHIM_SUBCOMMAND: &str = "__shim";
/// A captured line longer than this many bytes is split into several log lines.
pub const MAX_LOG_LINE_BYTES: usize = 64 * 1024;

/// The path a workload sees for `RUN/work/RELATIVE`: under `/work` inside the sandbox,
/// the host path without one.
pub fn workload_work_path(sandbox: Sandbox, run_dir: &std::path::Path, relative: &str) -> String {
    match sandbox {
        Sandbox::Bubblewrap => format!("{}/{relative}", crate::sandbox::SANDBOX_WORK_DIR),
        Sandbox::Off => run_dir
            .join(WORK_DIR)
            .join(relative)
            .to_string_lossy()
            .into_owned(),
    }
}
