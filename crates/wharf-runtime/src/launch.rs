//! The server side: launch a shim, watch it through its lock, ask it to stop.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lock::{self, ProcessHandle, TryLock};
use crate::spawn::{spawn_shim, ShimCommand};
use crate::{
    ExitStatus, LaunchSpec, RuntimeError, INPUT_DIR, OUTPUT_DIR, SHIM_LOCK_FILE, SHIM_LOG_FILE,
    SHIM_PID_FILE, SHIM_SUBCOMMAND, SPEC_FILE, STATUS_FILE, TMP_DIR, WORK_DIR,
};

/// The descriptor number on which the shim finds its (already locked) `shim.lock`.
pub(crate) const LOCK_FD_IN_SHIM: libc::c_int = 3;

/// How the shim is started: `shim_exe shim_args... RUN`.
#[derive(Debug, Clone)]
pub struct LocalRuntimeConfig {
    /// The executable to run; the server passes `std::env::current_exe()`.
    pub shim_exe: PathBuf,
    /// Arguments before the run folder; `["__shim"]` for the `wharf` binary.
    pub shim_args: Vec<String>,
}

impl LocalRuntimeConfig {
    /// The shim as the `wharf` binary's hidden subcommand: `shim_exe __shim RUN`.
    pub fn for_wharf_binary(shim_exe: PathBuf) -> LocalRuntimeConfig {
        LocalRuntimeConfig {
            shim_exe,
            shim_args: vec![SHIM_SUBCOMMAND.to_string()],
        }
    }
}

/// Launches workloads as supervised process trees on this machine.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    config: LocalRuntimeConfig,
}

/// A workload whose shim has been spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    pub shim_pid: u32,
}

impl LocalRuntime {
    pub fn new(config: LocalRuntimeConfig) -> Self {
        LocalRuntime { config }
    }

    /// Creates `run_dir` (its folders and `spec.json`) and spawns the shim holding the
    /// liveness lock. Returns once the shim is spawned; the workload starts moments later.
    ///
    /// `run_dir` may already exist (for example with inputs staged in `work/input`) but must
    /// not have been launched before.
    ///
    /// Nothing written here is fsynced: until the shim holds the lock, a crash of the server
    /// (or of the machine) leaves a run that is not alive and has no `status.json`, which the
    /// reconciler records as lost (and retries when the policy allows), whatever state these
    /// files are in. The shim reads `spec.json` only after it was completely written, and what
    /// must survive a crash of the machine, the exit, the shim writes durably.
    pub async fn launch(
        &self,
        run_dir: &Path,
        spec: &LaunchSpec,
    ) -> Result<Launched, RuntimeError> {
        spec.validate()?;
        // File-system work and the spawn block: off the async runtime, in one hop.
        let (requested_dir, owned_spec, config) =
            (run_dir.to_path_buf(), spec.clone(), self.config.clone());
        let shim_pid = tokio::task::spawn_blocking(move || {
            launch_blocking(&config, &requested_dir, &owned_spec)
        })
        .await
        .map_err(|error| RuntimeError::Wait {
            run_dir: run_dir.to_path_buf(),
            message: format!("launching the shim failed: {error}"),
        })??;

        // Reap the shim when it exits; never kill it.
        let workload_id = spec.workload_id.clone();
        tokio::spawn(async move {
            match crate::spawn::reap(shim_pid).await {
                Ok(status) => {
                    tracing::debug!(%workload_id, shim_pid, %status, "Shim exited.")
                }
                Err(error) => {
                    tracing::warn!(%workload_id, shim_pid, %error, "Could not reap the shim.")
                }
            }
        });
        Ok(Launched {
            shim_pid: shim_pid as u32,
        })
    }
}

/// The blocking part of [`LocalRuntime::launch`]: prepares the folder, takes the lock and
/// spawns the shim. Returns the shim's pid.
fn launch_blocking(
    config: &LocalRuntimeConfig,
    run_dir: &Path,
    spec: &LaunchSpec,
) -> Result<libc::pid_t, RuntimeError> {
    check_paths_exist(spec)?;
    let run_dir = prepare_run_dir(run_dir, spec)?;

    let lock_path = run_dir.join(SHIM_LOCK_FILE);
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| RuntimeError::io("create the lock file", &lock_path, source))?;
    acquire_fresh_lock(&lock_file, &lock_path)?;

    let shim_log_path = run_dir.join(SHIM_LOG_FILE);
    let mut args: Vec<&OsStr> = config.shim_args.iter().map(OsStr::new).collect();
    args.push(run_dir.as_os_str());
    let command = ShimCommand {
        program: &config.shim_exe,
        args,
        current_dir: &run_dir,
        stderr_path: &shim_log_path,
        lock: lock_file.as_fd(),
    };
    let shim_pid = match spawn_shim(&command) {
        Ok(pid) => pid,
        Err(source) => {
            // Nothing runs: leave the folder launchable again (inputs stay).
            for file in [SPEC_FILE, SHIM_LOCK_FILE, SHIM_LOG_FILE] {
                let _ = std::fs::remove_file(run_dir.join(file));
            }
            return Err(RuntimeError::SpawnShim {
                exe: config.shim_exe.clone(),
                run_dir,
                source,
            });
        }
    };
    // The shim now holds the lock through its own copy of the descriptor.
    drop(lock_file);
    // The shim writes shim.pid too if it finds none, so a server that dies right here leaves
    // a stoppable run; both write the same pid, whole (through a rename).
    if let Err(error) = write_pid_file(&run_dir, ".launch-tmp", shim_pid) {
        tracing::warn!(run_dir = %run_dir.display(), %error, "Could not write {SHIM_PID_FILE}; the shim writes it.");
    }
    Ok(shim_pid)
}

/// Writes `RUN/shim.pid` whole (write a temporary file, rename it over), without fsync:
/// the pid only matters while the shim lives, and no shim outlives a crash of the machine.
pub(crate) fn write_pid_file(
    run_dir: &Path,
    tmp_suffix: &str,
    pid: libc::pid_t,
) -> std::io::Result<()> {
    let path = run_dir.join(SHIM_PID_FILE);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(tmp_suffix);
    std::fs::write(&tmp_name, format!("{pid}\n"))?;
    std::fs::rename(&tmp_name, &path)
}

fn check_paths_exist(spec: &LaunchSpec) -> Result<(), RuntimeError> {
    let missing = |field, path: &Path| RuntimeError::InvalidSpec {
        workload_id: spec.workload_id.clone(),
        field,
        problem: format!(
            "{} is not an existing folder; create it or fix the path",
            path.display()
        ),
    };
    if !spec.app_dir.is_dir() {
        return Err(missing("app_dir", &spec.app_dir));
    }
    if spec.sandbox == crate::Sandbox::Bubblewrap {
        if let Some(bind) = spec.extra_ro_binds.iter().find(|bind| !bind.exists()) {
            return Err(missing("extra_ro_binds", bind));
        }
    }
    Ok(())
}

/// Creates the run folder layout and writes `spec.json`. Returns the absolute run folder.
fn prepare_run_dir(run_dir: &Path, spec: &LaunchSpec) -> Result<PathBuf, RuntimeError> {
    std::fs::create_dir_all(run_dir)
        .map_err(|source| RuntimeError::io("create the run folder", run_dir, source))?;
    let run_dir = run_dir
        .canonicalize()
        .map_err(|source| RuntimeError::io("resolve the run folder", run_dir, source))?;
    for used in [SPEC_FILE, SHIM_LOCK_FILE, STATUS_FILE] {
        if run_dir.join(used).exists() {
            return Err(RuntimeError::AlreadyLaunched { run_dir });
        }
    }
    for sub in [INPUT_DIR, OUTPUT_DIR, TMP_DIR] {
        let dir = run_dir.join(WORK_DIR).join(sub);
        std::fs::create_dir_all(&dir)
            .map_err(|source| RuntimeError::io("create the work folder", &dir, source))?;
    }
    let spec_path = run_dir.join(SPEC_FILE);
    let json = serde_json::to_vec_pretty(spec).map_err(|error| RuntimeError::CorruptFile {
        path: spec_path.clone(),
        line: None,
        problem: format!("could not encode the launch spec: {error}"),
    })?;
    // No temporary file and rename: no shim reads it before this write has returned.
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&spec_path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::AlreadyLaunched { run_dir })
        }
        Err(source) => return Err(RuntimeError::io("create", &spec_path, source)),
    };
    file.write_all(&json)
        .map_err(|source| RuntimeError::io("write", &spec_path, source))?;
    Ok(run_dir)
}

/// Takes the lock of a freshly created lock file. Only a momentary `is_alive` probe can hold
/// it, so retry briefly.
fn acquire_fresh_lock(file: &std::fs::File, path: &Path) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match lock::try_lock_exclusive(file) {
            Ok(TryLock::Acquired) => return Ok(()),
            Ok(TryLock::HeldElsewhere) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Ok(TryLock::HeldElsewhere) => return Err(RuntimeError::io(
                "lock",
                path,
                std::io::Error::other(
                    "another process holds the lock; is a shim already running in this run folder?",
                ),
            )),
            Err(source) => return Err(RuntimeError::io("lock", path, source)),
        }
    }
}

/// Whether the shim of `run_dir` is still running. `false` if it never started.
pub fn is_alive(run_dir: &Path) -> Result<bool, RuntimeError> {
    let lock_path = run_dir.join(SHIM_LOCK_FILE);
    let Some(file) = lock::open_existing_lock(&lock_path)
        .map_err(|source| RuntimeError::io("open", &lock_path, source))?
    else {
        return Ok(false);
    };
    match lock::try_lock_exclusive(&file) {
        // We got the lock, so nobody holds it: the shim is gone. Closing releases it.
        Ok(TryLock::Acquired) => Ok(false),
        Ok(TryLock::HeldElsewhere) => Ok(true),
        Err(source) => Err(RuntimeError::io("test the lock", &lock_path, source)),
    }
}

/// Waits until the shim of `run_dir` has exited, then returns its recorded status. `None`
/// means the shim is gone without writing `status.json` (the run is lost). Safe to call from
/// a freshly restarted server, and from several tasks at once.
pub async fn wait_for_exit(run_dir: &Path) -> Result<Option<ExitStatus>, RuntimeError> {
    let run_dir = run_dir.to_path_buf();
    let lock_path = run_dir.join(SHIM_LOCK_FILE);
    let blocking_run_dir = run_dir.clone();
    tokio::task::spawn_blocking(move || {
        if let Some(file) = lock::open_existing_lock(&lock_path)
            .map_err(|source| RuntimeError::io("open", &lock_path, source))?
        {
            lock::lock_exclusive_blocking(&file)
                .map_err(|source| RuntimeError::io("wait for the lock", &lock_path, source))?;
        }
        read_exit_status(&blocking_run_dir)
    })
    .await
    .map_err(|error| RuntimeError::Wait {
        run_dir,
        message: error.to_string(),
    })?
}

/// The recorded exit of `run_dir`, if the shim has written one.
pub fn read_exit_status(run_dir: &Path) -> Result<Option<ExitStatus>, RuntimeError> {
    let path = run_dir.join(STATUS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RuntimeError::io("read", &path, source)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| RuntimeError::CorruptFile {
            path,
            line: Some(error.line() as u64),
            problem: format!("not a valid exit status ({error}); the run's outcome is unknown"),
        })
}

/// The shim's pid, as recorded in `shim.pid`.
pub fn shim_pid(run_dir: &Path) -> Result<u32, RuntimeError> {
    let path = run_dir.join(SHIM_PID_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|source| RuntimeError::io("read", &path, source))?;
    text.trim().parse().map_err(|_| RuntimeError::CorruptFile {
        path,
        line: Some(1),
        problem: format!("{:?} is not a process id", text.trim()),
    })
}

/// Asks the workload to stop: SIGTERM to its shim, which terminates the process group
/// (SIGTERM, then SIGKILL after the grace period) and records `cancelled`. Returns `false`
/// if the shim was already gone.
pub fn request_stop(run_dir: &Path) -> Result<bool, RuntimeError> {
    if !is_alive(run_dir)? {
        return Ok(false);
    }
    let pid = shim_pid(run_dir)?;
    let pid = libc::pid_t::try_from(pid).map_err(|_| RuntimeError::CorruptFile {
        path: run_dir.join(SHIM_PID_FILE),
        line: Some(1),
        problem: format!("{pid} is not a valid process id"),
    })?;
    let pid_path = run_dir.join(SHIM_PID_FILE);
    let Some(handle) = ProcessHandle::open(pid)
        .map_err(|source| RuntimeError::io("signal the shim of", &pid_path, source))?
    else {
        return Ok(false);
    };
    // The handle was opened while the pid could still have been reused by another process
    // only if the shim had already died; the lock is still held now, so the shim was alive
    // all along and the handle is the shim's.
    if !is_alive(run_dir)? {
        return Ok(false);
    }
    handle
        .send_signal(libc::SIGTERM)
        .map_err(|source| RuntimeError::io("signal the shim of", &pid_path, source))
}
