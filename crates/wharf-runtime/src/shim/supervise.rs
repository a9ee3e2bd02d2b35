//! Running the workload: spawn, capture, timeout, cancel, reap.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::fs_util::plain_io_message;
use crate::logs::{STDERR, STDOUT};
use crate::sandbox::{self, SANDBOX_WORK_DIR};
use crate::shim::output::{pump, LogWriter};
use crate::shim::process_group::{live_group_members, signal_group, signal_group_sparing};
use crate::shim::start::{start, Started};
use crate::{ExitStatus, LaunchSpec, Sandbox, INPUT_DIR, OUTPUT_DIR, TMP_DIR, WORK_DIR};

/// The `PATH` of a workload whose app does not set one.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long to keep reading output after the workload and its group are gone. Only a
/// process that left the group (and still holds the pipes) can make reading last longer.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// What the supervising loop reacts to.
#[derive(Debug)]
pub(crate) enum Event {
    /// The main process exited (not yet reaped, so its pid and group id stay reserved).
    ChildExited,
    /// SIGTERM or SIGINT reached the shim: the server asks the workload to stop.
    StopRequested,
    /// One output stream reached its end.
    OutputDone,
}

/// The workload's environment: exactly the app's variables, a default `PATH` unless the app
/// sets one, and the runtime's folders (these override the app's).
pub(crate) fn workload_env(spec: &LaunchSpec, work_dir: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: String| {
        env.retain(|(existing, _)| existing != name);
        env.push((name.to_string(), value));
    };
    if !spec.env.iter().any(|(name, _)| name == "PATH") {
        set("PATH", DEFAULT_PATH.to_string());
    }
    for (name, value) in &spec.env {
        set(name, value.clone());
    }
    let folder = |sub: &str| work_dir.join(sub).to_string_lossy().into_owned();
    set("WHARF_INPUT_DIR", folder(INPUT_DIR));
    set("WHARF_OUTPUT_DIR", folder(OUTPUT_DIR));
    set("TMPDIR", folder(TMP_DIR));
    set("HOME", folder(TMP_DIR));
    env
}

/// What runs the workload of `spec` in `run_dir`: the program (the command itself, or
/// `bwrap`), its arguments, its complete environment and its working folder. The shim adds
/// stdio, its own process group and the parent-death signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadCommandLine {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub current_dir: PathBuf,
}

/// The command line the shim runs `spec` with (see [`WorkloadCommandLine`]).
pub fn workload_command_line(spec: &LaunchSpec, run_dir: &Path) -> WorkloadCommandLine {
    let (program, args, env) = match spec.sandbox {
        Sandbox::Off => (
            PathBuf::from(&spec.command[0]),
            spec.command[1..].iter().map(OsString::from).collect(),
            workload_env(spec, &run_dir.join(WORK_DIR)),
        ),
        Sandbox::Bubblewrap => (
            sandbox::bubblewrap_program(),
            sandbox::bubblewrap_args(spec, run_dir, &sandbox::host_root_entries()),
            // bwrap hands its own environment to the workload.
            workload_env(spec, Path::new(SANDBOX_WORK_DIR)),
        ),
    };
    WorkloadCommandLine {
        program,
        args,
        env,
        current_dir: spec.app_dir.clone(),
    }
}

/// The state of a termination in progress (timeout or cancel).
struct Termination {
    sigkill_at: Instant,
    sigkill_sent: bool,
}

/// Runs the workload to its end and says how it ended. Never panics on workload behaviour.
pub(crate) fn supervise(
    spec: &LaunchSpec,
    run_dir: &Path,
    log: &LogWriter,
    events: Sender<Event>,
    received: Receiver<Event>,
) -> ExitStatus {
    let ended_before_start = |cancelled: bool, error: Option<String>| ExitStatus {
        exit_code: None,
        signal: None,
        timed_out: false,
        cancelled,
        started_at: None,
        finished_at: Utc::now(),
        error,
    };
    if matches!(received.try_recv(), Ok(Event::StopRequested)) {
        log.wharf("Cancelled before the workload started.");
        return ended_before_start(true, None);
    }

    let line = workload_command_line(spec, run_dir);
    let started_at = Utc::now();
    let Started {
        workload: child,
        stdout,
        stderr,
    } = match start(&line) {
        Ok(started) => started,
        Err(error) => {
            let message = start_failure_message(spec, &error);
            log.wharf(&message);
            return ended_before_start(false, Some(message));
        }
    };
    let start = Instant::now();
    let pid = child.pid;
    let pgid = pid;

    let streams = 2;
    spawn_pump(stdout, STDOUT, log, &events);
    spawn_pump(stderr, STDERR, log, &events);
    spawn_exit_watcher(pid, &events);
    drop(events);

    let deadline = spec.timeout.map(|timeout| start + timeout);
    let mut termination: Option<Termination> = None;
    let mut timed_out = false;
    let mut cancelled = false;
    let mut streams_done = 0;
    let terminate = |reason: String| -> Termination {
        log.wharf(&format!("{reason}; sending SIGTERM to the process group."));
        match spec.sandbox {
            Sandbox::Off => signal_group(pgid, libc::SIGTERM),
            Sandbox::Bubblewrap => signal_group_sparing(pgid, pid, libc::SIGTERM),
        }
        Termination {
            sigkill_at: Instant::now() + spec.kill_grace,
            sigkill_sent: false,
        }
    };
    loop {
        let wake_at = match &termination {
            None => deadline,
            Some(termination) if !termination.sigkill_sent => Some(termination.sigkill_at),
            Some(_) => None,
        };
        let event = match wake_at {
            Some(at) => received.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => received.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Event::ChildExited) => break,
            Ok(Event::OutputDone) => streams_done += 1,
            Ok(Event::StopRequested) => {
                if termination.is_none() {
                    cancelled = true;
                    termination = Some(terminate("Cancelled".to_string()));
                }
            }
            Err(RecvTimeoutError::Timeout) => match &mut termination {
                None => {
                    timed_out = true;
                    let timeout = spec.timeout.unwrap_or_default();
                    termination = Some(terminate(format!(
                        "Timed out after {}",
                        human_duration(timeout)
                    )));
                }
                Some(termination) => {
                    log.wharf(&format!(
                        "Still running {} after SIGTERM; sending SIGKILL to the process group.",
                        human_duration(spec.kill_grace)
                    ));
                    signal_group(pgid, libc::SIGKILL);
                    termination.sigkill_sent = true;
                }
            },
            // The exit watcher is gone without telling: fall through to a blocking reap.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }

    // The main process has exited but is not reaped yet, so `pgid` still names our group.
    // Nothing of a run may outlive it. (In the sandbox everything dies with bwrap's PID 1
    // anyway, and that init is usually still winding down when the outer bwrap has
    // exited, so counting leftovers there would only report noise.)
    let stragglers = match spec.sandbox {
        Sandbox::Off => live_group_members(pgid).ok(),
        Sandbox::Bubblewrap => None,
    };
    if let Some(left) = stragglers {
        let left = left.iter().filter(|&&member| member != pid).count();
        if left > 0 {
            log.wharf(&format!(
                "Stopping {left} process(es) the workload left running (SIGKILL to the process group)."
            ));
        }
    }
    signal_group(pgid, libc::SIGKILL);
    let exit = match child.wait() {
        Ok(exit) => exit,
        Err(error) => {
            let message = format!("Could not collect the workload's exit status: {error}");
            log.wharf(&message);
            return ExitStatus {
                exit_code: None,
                signal: None,
                timed_out,
                cancelled,
                started_at: Some(started_at),
                finished_at: Utc::now(),
                error: Some(message),
            };
        }
    };

    let drain_until = Instant::now() + OUTPUT_DRAIN_LIMIT;
    while streams_done < streams {
        match received.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
            Ok(Event::OutputDone) => streams_done += 1,
            Ok(_) => {}
            Err(_) => {
                log.wharf("Stopped reading output: a process outside the run's process group still holds its stdout or stderr open.");
                break;
            }
        }
    }

    let status = ExitStatus {
        exit_code: exit.code(),
        signal: exit.signal(),
        timed_out,
        cancelled,
        started_at: Some(started_at),
        finished_at: Utc::now(),
        error: None,
    };
    if let Some(code) = status.exit_code.filter(|&code| code != 0) {
        log.wharf(&format!("Exited with code {code}."));
    }
    if let Some(signal) = status.signal {
        log.wharf(&format!(
            "Killed by signal {signal} ({}).",
            signal_name(signal)
        ));
    }
    status
}

fn spawn_pump(
    source: impl std::io::Read + Send + 'static,
    stream: &'static str,
    log: &LogWriter,
    events: &Sender<Event>,
) {
    let log = log.clone();
    let events = events.clone();
    std::thread::spawn(move || {
        pump(source, stream, &log);
        let _ = events.send(Event::OutputDone);
    });
}

/// Waits for the main process to exit without reaping it (WNOWAIT), so that its pid, and
/// so its process group id, cannot be reused before the stragglers are killed.
fn spawn_exit_watcher(pid: libc::pid_t, events: &Sender<Event>) {
    let events = events.clone();
    std::thread::spawn(move || {
        loop {
            // SAFETY: waitid writes into the zeroed siginfo we own.
            let result = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if result == 0
                || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
        }
        let _ = events.send(Event::ChildExited);
    });
}

fn start_failure_message(spec: &LaunchSpec, error: &std::io::Error) -> String {
    let program = match spec.sandbox {
        Sandbox::Off => spec.command[0].clone(),
        Sandbox::Bubblewrap => "bwrap (bubblewrap)".to_string(),
    };
    let hint = match (error.kind(), spec.sandbox) {
        (std::io::ErrorKind::NotFound, Sandbox::Off) => {
            let path = spec
                .env
                .iter()
                .rev()
                .find(|(name, _)| name == "PATH")
                .map_or(DEFAULT_PATH, |(_, value)| value.as_str());
            format!(". Install it or give its full path in the command (PATH is {path}).")
        }
        (std::io::ErrorKind::NotFound, Sandbox::Bubblewrap) => {
            ". Install bubblewrap (apt-get install bubblewrap) or turn the sandbox off.".to_string()
        }
        (std::io::ErrorKind::PermissionDenied, _) => ". Check that it is executable.".to_string(),
        _ => ".".to_string(),
    };
    format!(
        "Failed to start: {program}: {}{hint}",
        plain_io_message(error)
    )
}

/// "500ms", "10s", "1.5s", "1m30s", "2h".
pub(crate) fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    if duration.subsec_millis() != 0 {
        let text = format!("{:.3}", duration.as_secs_f64());
        return format!("{}s", text.trim_end_matches('0'));
    }
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    text
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::shim::supervise::{human_duration, workload_env};
    use crate::{LaunchSpec, Sandbox};

    #[test]
    fn formats_durations() {
        let check = |millis: u64, expect: &str| {
            assert_eq!(human_duration(Duration::from_millis(millis)), expect)
        };
        check(0, "0ms");
        check(500, "500ms");
        check(1000, "1s");
        check(1500, "1.5s");
        check(10_250, "10.25s");
        check(10_000, "10s");
        check(90_000, "1m30s");
        check(3_600_000, "1h");
        check(3_661_000, "1h1m1s");
    }

    fn check_env(app_env: &[(&str, &str)], expect: &[(&str, &str)]) {
        let spec = LaunchSpec {
            workload_id: "run-1".into(),
            command: vec!["true".into()],
            env: app_env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            app_dir: PathBuf::from("/app"),
            sandbox: Sandbox::Off,
            timeout: None,
            kill_grace: Duration::from_secs(1),
            extra_ro_binds: vec![],
            secrets: None,
        };
        let env = workload_env(&spec, Path::new("/work"));
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(env, expect);
    }

    #[test]
    fn builds_the_environment() {
        let runtime = [
            ("WHARF_INPUT_DIR", "/work/input"),
            ("WHARF_OUTPUT_DIR", "/work/output"),
            ("TMPDIR", "/work/tmp"),
            ("HOME", "/work/tmp"),
        ];
        let with = |head: &[(&'static str, &'static str)]| [head, &runtime[..]].concat();
        check_env(&[], &with(&[("PATH", "/usr/local/bin:/usr/bin:/bin")]));
        check_env(
            &[("WHARF_APP", "sales")],
            &with(&[
                ("PATH", "/usr/local/bin:/usr/bin:/bin"),
                ("WHARF_APP", "sales"),
            ]),
        );
        check_env(
            &[("PATH", "/opt/R/bin"), ("A", "1")],
            &with(&[("PATH", "/opt/R/bin"), ("A", "1")]),
        );
        // Later duplicates win; the runtime's folders override the app's.
        check_env(
            &[("A", "1"), ("A", "2")],
            &with(&[("PATH", "/usr/local/bin:/usr/bin:/bin"), ("A", "2")]),
        );
        check_env(
            &[("HOME", "/root"), ("B", "x")],
            &with(&[("PATH", "/usr/local/bin:/usr/bin:/bin"), ("B", "x")]),
        );
    }
}
