//! The server side: launch a shim, watch it through its lock, ask it to stop.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fs_util::write_atomic;
use crate::lock::{self, ProcessHandle, TryLock};
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
    pub async fn launch(
        &self,
        run_dir: &Path,
        spec: &LaunchSpec,
    ) -> Result<Launched, RuntimeError> {
        spec.validate()?;
        check_paths_exist(spec)?;
        // Creating folders and fsyncing spec.json may block for a while: off the runtime.
        let (requested_dir, owned_spec) = (run_dir.to_path_buf(), spec.clone());
        let run_dir =
            tokio::task::spawn_blocking(move || prepare_run_dir(&requested_dir, &owned_spec))
                .await
                .map_err(|error| RuntimeError::Wait {
                    run_dir: run_dir.to_path_buf(),
                    message: format!("preparing the run folder failed: {error}"),
                })??;

        let lock_path = run_dir.join(SHIM_LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| RuntimeError::io("create the lock file", &lock_path, source))?;
        acquire_fresh_lock(&lock_file, &lock_path).await?;

        let shim_log_path = run_dir.join(SHIM_LOG_FILE);
        let shim_log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&shim_log_path)
            .map_err(|source| RuntimeError::io("create the shim log", &shim_log_path, source))?;

        let mut command = tokio::process::Command::new(&self.config.shim_exe);
        command
            .args(&self.config.shim_args)
            .arg(&run_dir)
            .current_dir(&run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log)
            .kill_on_drop(false);
        let lock_fd = lock_file.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (setsid, dup2, fcntl, sigprocmask).
        unsafe {
            command.pre_exec(move || shim_pre_exec(lock_fd));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                // Nothing runs: leave the folder launchable again (inputs stay).
                for file in [SPEC_FILE, SHIM_LOCK_FILE, SHIM_LOG_FILE] {
                    let _ = std::fs::remove_file(run_dir.join(file));
                }
                return Err(RuntimeError::SpawnShim {
                    exe: self.config.shim_exe.clone(),
                    run_dir,
                    source,
                });
            }
        };
        // The shim now holds the lock through its own copy of the descriptor.
        drop(lock_file);
        let Some(shim_pid) = child.id() else {
            return Err(RuntimeError::SpawnShim {
                exe: self.config.shim_exe.clone(),
                run_dir,
                source: std::io::Error::other("the shim exited before its pid could be read"),
            });
        };
        let pid_path = run_dir.join(SHIM_PID_FILE);
        write_atomic(&pid_path, ".launch-tmp", format!("{shim_pid}\n").as_bytes())
            .map_err(|source| RuntimeError::io("write", &pid_path, source))?;

        // Reap the shim when it exits; never kill it.
        let workload_id = spec.workload_id.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => {
                    tracing::debug!(%workload_id, shim_pid, %status, "Shim exited.")
                }
                Err(error) => {
                    tracing::warn!(%workload_id, shim_pid, %error, "Could not reap the shim.")
                }
            }
        });
        Ok(Launched { shim_pid })
    }
}

/// In the shim's child process, before exec: own session (a Ctrl-C or a kill of the server's
/// process group does not reach it), the locked descriptor on fd 3 (the very same open file
/// description, so the lock is held without a gap), and SIGTERM/SIGINT blocked so that a
/// stop request arriving before the shim installs its handling stays pending instead of
/// killing it.
fn shim_pre_exec(lock_fd: libc::c_int) -> std::io::Result<()> {
    // SAFETY: async-signal-safe system calls on plain integers and a local sigset.
    unsafe {
        if libc::setsid() == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if lock_fd == LOCK_FD_IN_SHIM {
            lock::set_close_on_exec(LOCK_FD_IN_SHIM, false)?;
        } else if libc::dup2(lock_fd, LOCK_FD_IN_SHIM) == -1 {
            // dup2 leaves FD_CLOEXEC cleared on the new descriptor.
            return Err(std::io::Error::last_os_error());
        }
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        libc::sigaddset(&mut blocked, libc::SIGTERM);
        libc::sigaddset(&mut blocked, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::other("pthread_sigmask failed"));
        }
    }
    Ok(())
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
    write_atomic(&spec_path, ".tmp", &json)
        .map_err(|source| RuntimeError::io("write", &spec_path, source))?;
    Ok(run_dir)
}

/// Takes the lock of a freshly created lock file. Only a momentary `is_alive` probe can hold
/// it, so retry briefly.
async fn acquire_fresh_lock(file: &std::fs::File, path: &Path) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match lock::try_lock_exclusive(file) {
            Ok(TryLock::Acquired) => return Ok(()),
            Ok(TryLock::HeldElsewhere) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
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
