//! The server side: launch a shim, watch it through its lock, ask it to stop.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lock::{self, ProcessHandle, TryLock};
use crate::prepared::{Prepared, Reserve};
use crate::shim::MAX_HANDOVER_SPEC;
use crate::spawn::{spawn_shim, ShimCommand};
use crate::standby::{Standby, STANDBY_ARGUMENT};
use crate::{
    ExitStatus, LaunchSpec, RuntimeError, INPUT_DIR, LOG_FILE, OUTPUT_DIR, SHIM_LOCK_FILE,
    SHIM_LOG_FILE, SHIM_PID_FILE, SHIM_SUBCOMMAND, SPEC_FILE, STATUS_FILE, TMP_DIR, WORK_DIR,
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

/// Launches workloads as supervised process trees on this machine. Cheap to clone (clones
/// share what is prepared for the next launch).
#[derive(Clone)]
pub struct LocalRuntime {
    config: LocalRuntimeConfig,
    prepared: Arc<Prepared>,
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalRuntime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A workload whose shim has been spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    pub shim_pid: u32,
}

/// Which process took the run.
struct ShimStarted {
    pid: libc::pid_t,
    /// Spawned for this run (else a standby, which is reaped already).
    fresh: bool,
}

impl LocalRuntime {
    pub fn new(config: LocalRuntimeConfig) -> Self {
        LocalRuntime {
            config,
            prepared: Default::default(),
        }
    }

    /// Starts a standby shim in the background, so that the first launch does not wait for
    /// one to start. Optional; call within a Tokio runtime.
    pub fn warm_up(&self) {
        self.prepared.refill(&self.config, None);
    }

    /// The pid of the standby shim waiting for the next launch, if one is ready (tests).
    #[doc(hidden)]
    pub fn standby_pid(&self) -> Option<u32> {
        self.prepared.standby_pid().map(|pid| pid as u32)
    }

    /// Creates `run_dir` (its folders and `spec.json`) and gives the run to a shim holding
    /// the liveness lock. Returns once the shim holds the lock; the workload starts moments
    /// later.
    ///
    /// `run_dir` may already exist (for example with inputs staged in `work/input`) but must
    /// not have been launched before.
    ///
    /// What is slow in that is done ahead of time, in the background after each launch: a
    /// spare run folder (`spare.rs`) is renamed to `run_dir` when `run_dir` does not exist
    /// yet, and a standby shim (`standby.rs`) takes the run over; when either is missing,
    /// the launch creates the folder or spawns a shim itself.
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
        let reserve = self.prepared.take();
        // File-system work, the hand-over and the spawn block: off the async runtime, in one
        // hop.
        let (requested_dir, owned_spec, config) =
            (run_dir.to_path_buf(), spec.clone(), self.config.clone());
        let (started, unused) = tokio::task::spawn_blocking(move || {
            let mut reserve = reserve;
            let started = launch_blocking(&config, &requested_dir, &owned_spec, &mut reserve);
            (started, reserve)
        })
        .await
        .map_err(|error| RuntimeError::Wait {
            run_dir: run_dir.to_path_buf(),
            message: format!("launching the shim failed: {error}"),
        })?;
        self.prepared.put_back(unused);
        // Prepare the next launch (also after a failure).
        self.prepared.refill(&self.config, run_dir.parent());
        let started = started?;

        if started.fresh {
            // Reap the shim when it exits; never kill it.
            let (workload_id, shim_pid) = (spec.workload_id.clone(), started.pid);
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
        }
        Ok(Launched {
            shim_pid: started.pid as u32,
        })
    }
}

/// The run folder, its locked `shim.lock` and its `shim.log`, ready for a shim.
struct ReadyRunDir {
    run_dir: PathBuf,
    lock: std::fs::File,
    shim_log: std::fs::File,
    /// Whether `spec.json` is there (else it is written before a shim that reads it runs).
    spec_written: bool,
}

/// The blocking part of [`LocalRuntime::launch`]: makes the run folder (from the spare in
/// `reserve` if it fits), then hands the run to the standby in `reserve` or spawns a shim
/// for it. What it does not use stays in `reserve`.
fn launch_blocking(
    config: &LocalRuntimeConfig,
    run_dir: &Path,
    spec: &LaunchSpec,
    reserve: &mut Reserve,
) -> Result<ShimStarted, RuntimeError> {
    check_paths_exist(spec)?;
    let spec_json = serde_json::to_vec_pretty(spec).map_err(|error| RuntimeError::CorruptFile {
        path: run_dir.join(SPEC_FILE),
        line: None,
        problem: format!("could not encode the launch spec: {error}"),
    })?;
    // A standby gets the spec with the run, so spec.json can be written while it starts.
    let defer_spec = reserve.standby.is_some() && spec_json.len() <= MAX_HANDOVER_SPEC;
    let from_spare = reserve
        .spare
        .take_if(|spare| spare.fits(run_dir))
        .and_then(|spare| match spare.claim(run_dir, (!defer_spec).then_some(&spec_json[..])) {
            Ok(claimed) => Some(ReadyRunDir {
                run_dir: claimed.run_dir,
                lock: claimed.lock,
                shim_log: claimed.shim_log,
                spec_written: !defer_spec,
            }),
            Err(error) => {
                tracing::debug!(run_dir = %run_dir.display(), %error, "Could not use the spare run folder.");
                None
            }
        });
    let mut ready = match from_spare {
        Some(ready) => ready,
        None => make_run_dir(run_dir, &spec_json)?,
    };

    if let Some(standby) = reserve.standby.take() {
        match hand_over(standby, &mut ready, &spec_json) {
            Ok(pid) => {
                return Ok(ShimStarted { pid, fresh: false });
            }
            Err(Some(error)) => return Err(error),
            Err(None) => {}
        }
    }

    let ReadyRunDir {
        run_dir,
        lock,
        shim_log,
        spec_written,
    } = ready;
    if !spec_written {
        write_spec(&run_dir, &spec_json)?;
    }
    let mut args: Vec<&OsStr> = config.shim_args.iter().map(OsStr::new).collect();
    args.push(run_dir.as_os_str());
    let command = ShimCommand {
        program: &config.shim_exe,
        args,
        current_dir: Some(&run_dir),
        stdin: None,
        stderr: Some(shim_log.as_fd()),
        lock: Some(lock.as_fd()),
    };
    let shim_pid = match spawn_shim(&command) {
        Ok(pid) => pid,
        Err(source) => {
            // Nothing runs: leave the folder launchable again (inputs stay).
            for file in [
                SPEC_FILE,
                SHIM_LOCK_FILE,
                SHIM_LOG_FILE,
                SHIM_PID_FILE,
                LOG_FILE,
            ] {
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
    drop(lock);
    // The shim writes shim.pid too if it finds none, so a server that dies right here leaves
    // a stoppable run; both write the same pid, whole (through a rename).
    if let Err(error) = write_pid_file(&run_dir, ".launch-tmp", shim_pid) {
        tracing::warn!(run_dir = %run_dir.display(), %error, "Could not write {SHIM_PID_FILE}; the shim writes it.");
    }
    Ok(ShimStarted {
        pid: shim_pid,
        fresh: true,
    })
}

/// Writes `RUN/spec.json` (which must not exist).
fn write_spec(run_dir: &Path, spec_json: &[u8]) -> Result<(), RuntimeError> {
    let spec_path = run_dir.join(SPEC_FILE);
    // No temporary file and rename: no shim reads it before this write has returned.
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&spec_path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::AlreadyLaunched {
                run_dir: run_dir.to_path_buf(),
            })
        }
        Err(source) => return Err(RuntimeError::io("create", &spec_path, source)),
    };
    file.write_all(spec_json)
        .map_err(|source| RuntimeError::io("write", &spec_path, source))
}

/// Makes the run folder without a spare: its layout, `spec.json`, the locked `shim.lock`
/// and `shim.log`.
fn make_run_dir(run_dir: &Path, spec_json: &[u8]) -> Result<ReadyRunDir, RuntimeError> {
    let run_dir = prepare_run_dir(run_dir, spec_json)?;
    let lock_path = run_dir.join(SHIM_LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| RuntimeError::io("create the lock file", &lock_path, source))?;
    acquire_fresh_lock(&lock, &lock_path)?;
    let shim_log_path = run_dir.join(SHIM_LOG_FILE);
    let shim_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&shim_log_path)
        .map_err(|source| RuntimeError::io("create the shim log", &shim_log_path, source))?;
    Ok(ReadyRunDir {
        run_dir,
        lock,
        shim_log,
        spec_written: true,
    })
}

/// Gives the run to `standby`; returns its pid once it holds the lock. `Err(None)`: it did
/// not take the run and is gone, so spawn a shim instead; `Err(Some(_))`: the run cannot be
/// started.
fn hand_over(
    standby: Standby,
    ready: &mut ReadyRunDir,
    spec_json: &[u8],
) -> Result<libc::pid_t, Option<RuntimeError>> {
    let pid = standby.pid;
    let run_dir = ready.run_dir.clone();
    let spec_to_write = !ready.spec_written;
    let mut spec_written = ready.spec_written;
    // While the standby takes over: the files it does not need (spec.json, which it got in
    // the message) and does not write itself (shim.pid: written before its answer, so it
    // exists when the launch returns and whenever the standby runs the workload; a standby
    // that cannot answer because the server is gone does not start it).
    let while_it_starts = || {
        if spec_to_write {
            match write_spec(&run_dir, spec_json) {
                Ok(()) => spec_written = true,
                Err(error) => tracing::warn!(%error, "Could not write the run's {SPEC_FILE}."),
            }
        }
        if let Err(error) = write_pid_file(&run_dir, ".launch-tmp", pid) {
            tracing::warn!(run_dir = %run_dir.display(), %error, "Could not write {SHIM_PID_FILE}.");
        }
    };
    let handed = standby.hand_over(
        &run_dir,
        spec_json,
        ready.lock.as_fd(),
        ready.shim_log.as_fd(),
        while_it_starts,
    );
    ready.spec_written = spec_written;
    match handed {
        Ok(()) => Ok(pid),
        Err(error) => {
            tracing::warn!(standby_pid = pid, run_dir = %run_dir.display(), %error, "The standby shim did not take the run over; starting a fresh shim.");
            if standby.discard() {
                // It answered after all, just too late, and may have started the workload
                // before it was stopped: starting it again could run it twice.
                return Err(Some(RuntimeError::SpawnShim {
                    exe: PathBuf::from(STANDBY_ARGUMENT),
                    run_dir: run_dir.to_path_buf(),
                    source: std::io::Error::other(
                        "the standby shim stalled while taking the run over and was stopped",
                    ),
                }));
            }
            Err(None)
        }
    }
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
fn prepare_run_dir(run_dir: &Path, spec_json: &[u8]) -> Result<PathBuf, RuntimeError> {
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
    write_spec(&run_dir, spec_json)?;
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
