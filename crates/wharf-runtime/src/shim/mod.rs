//! The shim: the per-workload supervisor process (`wharf __shim RUN`).

mod output;
mod process_group;
mod standby;
mod start;
mod supervise;

pub use crate::shim::supervise::{workload_command_line, WorkloadCommandLine};

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{self, Sender};

use crate::fs_util::write_atomic;
use crate::launch::{write_pid_file, LOCK_FD_IN_SHIM};
use crate::lock::{self, TryLock};
use crate::shim::output::LogWriter;
use crate::shim::supervise::{supervise, Event};
use crate::standby::STANDBY_ARGUMENT;

pub(crate) use crate::shim::standby::{MAX_HANDOVER_PATH, MAX_HANDOVER_SPEC};
use crate::{
    ExitStatus, LaunchSpec, LOG_FILE, SHIM_LOCK_FILE, SHIM_PID_FILE, SPEC_FILE, STATUS_FILE,
};

/// The shim's entry point: supervises the workload described by `RUN/spec.json` and records
/// its end in `RUN/status.json`. Call it from `main` before any async runtime or other
/// thread exists, and exit the process with the returned code: 0 once the status is written,
/// 1 if the shim could not do its job (details on stderr, which `launch` sends to
/// `RUN/shim.log`).
///
/// Given `--standby` instead of a run folder, it first waits for the server to hand it a
/// run (see `standby.rs`), and returns 0 without doing anything if the server goes away.
pub fn shim_main(run_dir: &Path) -> i32 {
    // Stop requests (SIGTERM, SIGINT) are received with sigwait on a dedicated thread; they
    // must be blocked before any other thread starts. `launch` already starts us with them
    // blocked, so one arriving during our start-up waits instead of killing us.
    let stop_signals = stop_signal_set();
    // SAFETY: changes this thread's signal mask; threads started later inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &stop_signals, std::ptr::null_mut());
    }
    if run_dir.as_os_str() == STANDBY_ARGUMENT {
        return match standby::wait_for_run() {
            Ok(Some(received)) => run(&received.run_dir, stop_signals, true, received.spec_json),
            Ok(None) => 0,
            Err(message) => {
                eprintln!("wharf shim (standby): {message}");
                1
            }
        };
    }
    run(run_dir, stop_signals, false, None)
}

/// Supervises the run of `run_dir`. `handed_over`: a standby that must confirm the take-over
/// once it holds the lock. `spec_json`: the launch spec, if it came with the run (else it is
/// read from `spec.json`).
fn run(
    run_dir: &Path,
    stop_signals: libc::sigset_t,
    handed_over: bool,
    spec_json: Option<Vec<u8>>,
) -> i32 {
    let _lock = match hold_liveness_lock(run_dir) {
        Ok(lock) => lock,
        Err(message) => {
            eprintln!("wharf shim: {message}");
            return 1;
        }
    };
    if run_dir.join(STATUS_FILE).exists() {
        eprintln!(
            "wharf shim: {} already has a {STATUS_FILE}; this run is over and will not be started again.",
            run_dir.display()
        );
        return 1;
    }
    // `launch` writes shim.pid right after spawning a shim (or while handing a run to a
    // standby); write it when it did not (a server that died in between, a shim started by
    // hand). Both write the same pid, whole. A standby looks later (below), when the server
    // has had the time to write it.
    if !handed_over {
        write_pid_file_if_missing(run_dir);
    }
    if handed_over {
        // Until this answer the server keeps its copy of the lock and may replace us; without
        // it (the server is gone or gave up on us) we must not start anything.
        if let Err(message) = standby::confirm() {
            eprintln!("wharf shim: {message}");
            return 1;
        }
    }

    let log_path = run_dir.join(LOG_FILE);
    let log = match OpenOptions::new().create(true).append(true).open(&log_path) {
        Ok(file) => LogWriter::new(file),
        Err(error) => {
            let message = format!("Could not open the run log {}: {error}", log_path.display());
            eprintln!("wharf shim: {message}");
            return record(run_dir, &failed_status(message));
        }
    };

    let spec = match read_spec(run_dir, spec_json) {
        Ok(spec) => spec,
        Err(message) => {
            log.wharf(&message);
            return record(run_dir, &failed_status(message));
        }
    };

    if handed_over {
        // Normally there: only a server that died right after handing the run over (and
        // after our answer) left none.
        write_pid_file_if_missing(run_dir);
    }

    let (events, received) = mpsc::channel();
    spawn_signal_listener(stop_signals, events.clone());
    let status = supervise(&spec, run_dir, &log, events, received);
    log.sync();
    record(run_dir, &status)
}

fn write_pid_file_if_missing(run_dir: &Path) {
    if run_dir.join(SHIM_PID_FILE).exists() {
        return;
    }
    // SAFETY: getpid has no requirements.
    let own_pid = unsafe { libc::getpid() };
    if let Err(error) = write_pid_file(run_dir, ".shim-tmp", own_pid) {
        eprintln!("wharf shim: could not write {SHIM_PID_FILE}: {error}");
    }
}

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

fn spawn_signal_listener(signals: libc::sigset_t, events: Sender<Event>) {
    std::thread::spawn(move || loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: sigwait reads the set and writes the received signal number.
        let result = unsafe { libc::sigwait(&signals, &mut signal) };
        if result == 0 && events.send(Event::StopRequested).is_err() {
            return;
        }
    });
}

/// Holds `RUN/shim.lock` for the rest of the shim's life: the descriptor `launch` passed on
/// fd 3 if it is that file, else a lock taken here (a shim started by hand).
fn hold_liveness_lock(run_dir: &Path) -> Result<File, String> {
    let lock_path = run_dir.join(SHIM_LOCK_FILE);
    let lock_metadata = std::fs::metadata(&lock_path).ok();
    let mut inherited: Option<File> = None;
    if let Some(lock_metadata) = lock_metadata {
        // SAFETY: fstat on a descriptor number only reads; it fails with EBADF if closed.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        let is_open = unsafe { libc::fstat(LOCK_FD_IN_SHIM, &mut stat) } == 0;
        if is_open && stat.st_dev == lock_metadata.dev() && stat.st_ino == lock_metadata.ino() {
            // SAFETY: fd 3 is open, refers to our lock file, and nothing else in this
            // process owns it.
            inherited = Some(unsafe { File::from_raw_fd(LOCK_FD_IN_SHIM) });
        }
    }
    let file = match inherited {
        Some(file) => file,
        None => OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|error| format!("could not open {}: {error}", lock_path.display()))?,
    };
    // The workload must not inherit the lock, or it would look alive after we are gone.
    lock::set_close_on_exec(file.as_raw_fd(), true).map_err(|error| {
        format!(
            "could not set close-on-exec on {}: {error}",
            lock_path.display()
        )
    })?;
    // On the inherited descriptor this confirms the lock we already hold.
    match lock::try_lock_exclusive(&file) {
        Ok(TryLock::Acquired) => Ok(file),
        Ok(TryLock::HeldElsewhere) => Err(format!(
            "another shim holds {}; only one shim may run per run folder",
            lock_path.display()
        )),
        Err(error) => Err(format!("could not lock {}: {error}", lock_path.display())),
    }
}

fn read_spec(run_dir: &Path, spec_json: Option<Vec<u8>>) -> Result<LaunchSpec, String> {
    let path = run_dir.join(SPEC_FILE);
    let bytes = match spec_json {
        Some(bytes) => bytes,
        None => std::fs::read(&path).map_err(|error| {
            format!(
                "Failed to start: could not read {}: {error}",
                path.display()
            )
        })?,
    };
    let spec: LaunchSpec = serde_json::from_slice(&bytes).map_err(|error| {
        format!(
            "Failed to start: {}:{}: not a valid launch spec ({error}); this is a bug in the Wharf server that wrote it",
            path.display(),
            error.line()
        )
    })?;
    spec.validate()
        .map_err(|error| format!("Failed to start: {error}"))?;
    let mut spec = spec;
    if let Some(secrets) = spec.secrets.take() {
        let opened = secrets
            .open()
            .map_err(|error| format!("Failed to start: {error}"))?;
        for (name, value) in opened {
            spec.env.retain(|(existing, _)| *existing != name);
            spec.env.push((name, value));
        }
    }
    Ok(spec)
}

fn failed_status(message: String) -> ExitStatus {
    ExitStatus {
        exit_code: None,
        signal: None,
        timed_out: false,
        cancelled: false,
        started_at: None,
        finished_at: chrono::Utc::now(),
        error: Some(message),
    }
}

/// Writes `status.json` once, atomically and durably. Returns the shim's exit code.
fn record(run_dir: &Path, status: &ExitStatus) -> i32 {
    let path = run_dir.join(STATUS_FILE);
    let json = match serde_json::to_vec_pretty(status) {
        Ok(json) => json,
        Err(error) => {
            eprintln!("wharf shim: could not encode the exit status: {error}");
            return 1;
        }
    };
    match write_atomic(&path, ".tmp", &json) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("wharf shim: could not write {}: {error}", path.display());
            1
        }
    }
}
