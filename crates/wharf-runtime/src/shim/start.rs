//! Starting the workload process with `clone(CLONE_VM | CLONE_VFORK)`.
//!
//! The workload's main process must have its parent-death signal set before it executes
//! anything, so that a shim killed at any moment takes it along (`PR_SET_PDEATHSIG` survives
//! the exec; bubblewrap's own `--die-with-parent` comes only after its start-up). That needs
//! code between the fork and the exec, which `std::process::Command` only offers through
//! `pre_exec`, and then it copies the whole shim with `fork`. This does what `posix_spawn`
//! does instead: the child borrows the shim's memory (the calling thread waits until the
//! child has executed the program or failed) and runs only system calls, on a stack of its
//! own, before the exec:
//!
//! - signal handlers back to their defaults (SIGPIPE too, which Rust ignores), nothing
//!   blocked (the shim blocks SIGTERM/SIGINT to receive them with `sigwait`);
//! - stdin `/dev/null`, stdout and stderr pipes to the shim;
//! - the working folder; its own process group (`setpgid(0, 0)`);
//! - `PR_SET_PDEATHSIG` = SIGKILL, then a check that the shim is still its parent.
//!
//! An error before the exec (or of the exec) is handed back through the shared memory.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use crate::sandbox::find_on_path;
use crate::shim::supervise::WorkloadCommandLine;

/// Bytes of stack for the child until its exec.
const CHILD_STACK_BYTES: usize = 128 * 1024;

/// A started workload process (its main process).
pub(crate) struct Workload {
    pub(crate) pid: libc::pid_t,
}

/// A started workload and the reading ends of its stdout and stderr pipes.
pub(crate) struct Started {
    pub(crate) workload: Workload,
    pub(crate) stdout: File,
    pub(crate) stderr: File,
}

impl Workload {
    /// Reaps the process (blocking until it has exited).
    pub(crate) fn wait(&self) -> std::io::Result<std::process::ExitStatus> {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid writes the status into the integer we own.
            if unsafe { libc::waitpid(self.pid, &mut status, 0) } == self.pid {
                return Ok(std::process::ExitStatus::from_raw(status));
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// What the child reads (and, on failure, writes `error` to) in the shim's memory.
struct ChildPlan {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    current_dir: *const libc::c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    shim_pid: libc::pid_t,
    /// errno of the step that failed; 0 while all goes well.
    error: libc::c_int,
}

/// The child, between clone and exec. Only system calls: it shares the shim's memory.
extern "C" fn child_main(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` points at the ChildPlan of `start`, whose thread waits (CLONE_VFORK)
    // until we exec or exit; everything it points to lives at least as long. Every call is
    // async-signal-safe and touches only our stack and the plan.
    unsafe {
        let plan = plan as *mut ChildPlan;
        let fail = |errno: libc::c_int| -> ! {
            std::ptr::write_volatile(&mut (*plan).error, errno.max(1));
            libc::_exit(127)
        };
        let last_errno = || *libc::__errno_location();
        // Handlers are the shim's code: back to the defaults before anything can arrive.
        for signal in 1..65 {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
                continue;
            }
            let handled = current.sa_sigaction != libc::SIG_DFL
                && (current.sa_sigaction != libc::SIG_IGN || signal == libc::SIGPIPE);
            if handled {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        let mut nothing: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut nothing);
        libc::sigprocmask(libc::SIG_SETMASK, &nothing, std::ptr::null_mut());
        let plan_ref = &*plan;
        for (from, to) in [
            (plan_ref.stdin, 0),
            (plan_ref.stdout, 1),
            (plan_ref.stderr, 2),
        ] {
            if libc::dup2(from, to) == -1 {
                fail(last_errno());
            }
        }
        if libc::chdir(plan_ref.current_dir) == -1 {
            fail(last_errno());
        }
        if libc::setpgid(0, 0) == -1 {
            fail(last_errno());
        }
        // If the shim dies (kill -9), the workload dies with it rather than running on
        // unsupervised.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
            fail(last_errno());
        }
        if libc::getppid() != plan_ref.shim_pid {
            fail(libc::ESRCH);
        }
        libc::execve(plan_ref.program, plan_ref.argv, plan_ref.envp);
        fail(last_errno())
    }
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an argument, path or environment variable contains a NUL byte",
        )
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The file to execute for `program`: itself if it names a path, else the first match on
/// the `PATH` of the workload's environment (as `execvp` would search it).
fn resolve_program(program: &Path, env: &[(String, String)]) -> std::io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    let path_value = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| OsStr::new(value.as_str()));
    let name = program.to_string_lossy();
    if let Some(found) = find_on_path(&name, path_value) {
        return Ok(found);
    }
    // Not executable anywhere: an existing file gives the exec's own error (permission).
    let existing = path_value.and_then(|value| {
        std::env::split_paths(value)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    existing.ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// Starts the workload of `line` (see the module documentation).
pub(crate) fn start(line: &WorkloadCommandLine) -> std::io::Result<Started> {
    let program = c_string(
        resolve_program(&line.program, &line.env)?
            .as_os_str()
            .as_bytes(),
    )?;
    let mut arguments = vec![c_string(line.program.as_os_str().as_bytes())?];
    for arg in &line.args {
        arguments.push(c_string(arg.as_bytes())?);
    }
    let mut argv: Vec<*const libc::c_char> = arguments.iter().map(|arg| arg.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut variables = Vec::with_capacity(line.env.len());
    for (name, value) in &line.env {
        variables.push(c_string(format!("{name}={value}").as_bytes())?);
    }
    let mut envp: Vec<*const libc::c_char> = variables.iter().map(|var| var.as_ptr()).collect();
    envp.push(std::ptr::null());
    let current_dir = c_string(line.current_dir.as_os_str().as_bytes())?;
    let stdin: OwnedFd = File::open("/dev/null")?.into();
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;

    let mut plan = ChildPlan {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        current_dir: current_dir.as_ptr(),
        stdin: stdin.as_raw_fd(),
        stdout: stdout_write.as_raw_fd(),
        stderr: stderr_write.as_raw_fd(),
        // SAFETY: getpid has no requirements.
        shim_pid: unsafe { libc::getpid() },
        error: 0,
    };
    let mut stack = vec![0u8; CHILD_STACK_BYTES];
    // The stack grows down from its (16-byte aligned) end.
    let stack_top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: all signals are blocked around the clone, so no handler of the shim runs in
    // the child before it has reset them; the child gets a stack of its own and the plan,
    // both alive until clone returns (CLONE_VFORK: after the child's exec or exit).
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let pid = libc::clone(
            child_main,
            stack_top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut plan as *mut ChildPlan as *mut libc::c_void,
        );
        let clone_error = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        if pid == -1 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    // SAFETY: the child has exec'd or exited; read what it may have written.
    let error = unsafe { std::ptr::read_volatile(&plan.error) };
    if error != 0 {
        // It exited (127) before or at the exec: reap it.
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(std::io::Error::from_raw_os_error(error));
    }
    Ok(Started {
        workload: Workload { pid },
        stdout: File::from(stdout_read),
        stderr: File::from(stderr_read),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use crate::shim::start::{resolve_program, start};
    use crate::shim::supervise::WorkloadCommandLine;

    fn line(program: &str, args: &[&str], dir: &str) -> WorkloadCommandLine {
        WorkloadCommandLine {
            program: PathBuf::from(program),
            args: args.iter().map(Into::into).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("X".into(), "1".into()),
            ],
            current_dir: PathBuf::from(dir),
        }
    }

    #[test]
    fn starts_a_process_with_pipes_group_and_environment() {
        let started = start(&line(
            "sh",
            &["-c", "echo $X $(pwd); echo oops >&2; ps -o pgid= -p $$"],
            "/tmp",
        ))
        .unwrap();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        (&started.stdout).read_to_string(&mut stdout).unwrap();
        (&started.stderr).read_to_string(&mut stderr).unwrap();
        let workload = started.workload;
        let status = workload.wait().unwrap();
        assert!(status.success(), "{status:?} {stderr}");
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some("1 /tmp"));
        assert_eq!(
            lines.next().map(str::trim),
            Some(workload.pid.to_string().as_str())
        );
        assert_eq!(stderr, "oops\n");
    }

    #[test]
    fn failures_before_the_exec_are_errors() {
        let check = |line: WorkloadCommandLine, kind: std::io::ErrorKind| {
            let error = start(&line).err().expect("an error");
            assert_eq!(error.kind(), kind, "{error}");
        };
        check(
            line("no-such-program-wharf", &[], "/"),
            std::io::ErrorKind::NotFound,
        );
        check(
            line("/no/such/program", &[], "/"),
            std::io::ErrorKind::NotFound,
        );
        check(
            line("true", &[], "/no/such/folder"),
            std::io::ErrorKind::NotFound,
        );
        let data = tempfile::NamedTempFile::new().unwrap();
        let data = data.path().to_str().unwrap();
        check(line(data, &[], "/"), std::io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn programs_are_found_on_the_workloads_path() {
        let env = |path: &str| vec![("PATH".to_string(), path.to_string())];
        assert_eq!(
            resolve_program(Path::new("sh"), &env("/nonexistent:/bin")).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(
            resolve_program(Path::new("./x"), &env("/bin")).unwrap(),
            Path::new("./x")
        );
        assert!(resolve_program(Path::new("sh"), &env("relative")).is_err());
        assert!(resolve_program(Path::new("sh"), &[]).is_err());
    }
}
