//! Starting the shim with `posix_spawn` and reaping it.
//!
//! `posix_spawn` lets glibc start the shim with `clone(CLONE_VM | CLONE_VFORK)`: the server's
//! page tables are not copied, which a `fork` (what `std::process::Command` falls back to as
//! soon as a `pre_exec` hook is set) of a multi-threaded server does on every launch. What the
//! hook used to do is expressed as spawn attributes and file actions instead, all applied in
//! the child before the exec:
//!
//! - `POSIX_SPAWN_SETSID`: the shim gets its own session (and process group), so a Ctrl-C or a
//!   kill of the server's process group does not reach it;
//! - the signal mask blocks SIGTERM and SIGINT, so a stop request that arrives before the shim
//!   has set up its handling stays pending instead of killing it (the shim collects it with
//!   `sigwait`); SIGPIPE is reset to its default, as `std::process::Command` does;
//! - stdin and stdout are `/dev/null` (a standby's stdin is its socket), stderr is
//!   `RUN/shim.log`, opened for appending;
//! - the locked `shim.lock` descriptor is duplicated onto fd 3, the very same open file
//!   description, so the lock is held without a gap (a `dup2` onto another number clears
//!   `FD_CLOEXEC`; the server's own copy keeps it, so no other child inherits the lock);
//! - the working folder is the run folder.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::launch::LOCK_FD_IN_SHIM;

/// What the shim is started with.
pub(crate) struct ShimCommand<'a> {
    /// The executable; a name without `/` is looked up in `PATH`.
    pub(crate) program: &'a Path,
    /// `argv[1..]`.
    pub(crate) args: Vec<&'a OsStr>,
    /// The shim's working folder (the run folder); `None` keeps the server's.
    pub(crate) current_dir: Option<&'a Path>,
    /// The shim's stdin; `None` is `/dev/null`.
    pub(crate) stdin: Option<BorrowedFd<'a>>,
    /// The shim's stderr (`shim.log`); `None` keeps the server's.
    pub(crate) stderr: Option<BorrowedFd<'a>>,
    /// The locked `shim.lock`; it becomes the shim's fd 3.
    pub(crate) lock: Option<BorrowedFd<'a>>,
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "an argument, path or environment variable contains a NUL byte",
        )
    })
}

/// Turns a non-zero `posix_spawn*` result (an errno value) into an error.
fn check(result: libc::c_int) -> std::io::Result<()> {
    match result {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> std::io::Result<FileActions> {
        // SAFETY: init fills in the zeroed structure we own.
        unsafe {
            let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            check(libc::posix_spawn_file_actions_init(&mut actions))?;
            Ok(FileActions(actions))
        }
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed exactly once.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.0);
        }
    }
}

/// `posix_spawnattr_t`, destroyed on drop.
struct Attributes(libc::posix_spawnattr_t);

impl Attributes {
    fn new() -> std::io::Result<Attributes> {
        // SAFETY: init fills in the zeroed structure we own.
        unsafe {
            let mut attributes: libc::posix_spawnattr_t = std::mem::zeroed();
            check(libc::posix_spawnattr_init(&mut attributes))?;
            Ok(Attributes(attributes))
        }
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed exactly once.
        unsafe {
            libc::posix_spawnattr_destroy(&mut self.0);
        }
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// A descriptor number above the ones the child's file actions write to (0 to 3), so that no
/// action overwrites the source of a later one.
fn above_the_shim_fds(fd: BorrowedFd<'_>) -> std::io::Result<Option<OwnedFd>> {
    if fd.as_raw_fd() > LOCK_FD_IN_SHIM {
        return Ok(None);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that we then own.
    let duplicate = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if duplicate == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(duplicate) }))
}

/// The descriptor to duplicate: the moved copy if there is one.
fn source_fd(fd: Option<BorrowedFd<'_>>, moved: &Option<OwnedFd>) -> Option<RawFd> {
    match moved {
        Some(moved) => Some(moved.as_raw_fd()),
        None => fd.map(|fd| fd.as_raw_fd()),
    }
}

/// Starts the shim; returns its pid. The caller must reap it ([`reap`]).
pub(crate) fn spawn_shim(command: &ShimCommand<'_>) -> std::io::Result<libc::pid_t> {
    let program = c_string(command.program.as_os_str().as_bytes())?;
    let mut argv_owned = vec![program.clone()];
    for arg in &command.args {
        argv_owned.push(c_string(arg.as_bytes())?);
    }
    let mut argv: Vec<*mut libc::c_char> = argv_owned
        .iter()
        .map(|arg| arg.as_ptr() as *mut libc::c_char)
        .collect();
    argv.push(std::ptr::null_mut());
    let mut env_owned = Vec::new();
    for (name, value) in std::env::vars_os() {
        let mut entry = name.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        env_owned.push(c_string(&entry)?);
    }
    let mut envp: Vec<*mut libc::c_char> = env_owned
        .iter()
        .map(|entry| entry.as_ptr() as *mut libc::c_char)
        .collect();
    envp.push(std::ptr::null_mut());
    let dev_null = c_string(b"/dev/null")?;
    let current_dir = command
        .current_dir
        .map(|path| c_string(path.as_os_str().as_bytes()))
        .transpose()?;

    // Descriptors to duplicate onto the shim's 0, 2 and 3, kept above 3 so that no file
    // action overwrites the source of a later one.
    let moved_stdin = command.stdin.map(above_the_shim_fds).transpose()?.flatten();
    let stdin_fd = source_fd(command.stdin, &moved_stdin);
    let moved_stderr = command
        .stderr
        .map(above_the_shim_fds)
        .transpose()?
        .flatten();
    let stderr_fd = source_fd(command.stderr, &moved_stderr);
    let moved_lock = command.lock.map(above_the_shim_fds).transpose()?.flatten();
    let lock_fd = source_fd(command.lock, &moved_lock);

    let mut actions = FileActions::new()?;
    let mut attributes = Attributes::new()?;
    let blocked = signal_set(&[libc::SIGTERM, libc::SIGINT]);
    let defaulted = signal_set(&[libc::SIGPIPE]);
    let flags = libc::POSIX_SPAWN_SETSID
        | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short
        | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer passed is valid for the duration of the calls (the CStrings and
    // vectors above outlive them; argv and envp are NULL-terminated), and the file actions and
    // attributes were initialised.
    unsafe {
        let actions = &mut actions.0;
        match stdin_fd {
            Some(fd) => check(libc::posix_spawn_file_actions_adddup2(actions, fd, 0))?,
            None => check(libc::posix_spawn_file_actions_addopen(
                actions,
                0,
                dev_null.as_ptr(),
                libc::O_RDONLY,
                0,
            ))?,
        }
        check(libc::posix_spawn_file_actions_addopen(
            actions,
            1,
            dev_null.as_ptr(),
            libc::O_WRONLY,
            0,
        ))?;
        if let Some(stderr_fd) = stderr_fd {
            check(libc::posix_spawn_file_actions_adddup2(
                actions, stderr_fd, 2,
            ))?;
        }
        if let Some(lock_fd) = lock_fd {
            check(libc::posix_spawn_file_actions_adddup2(
                actions,
                lock_fd,
                LOCK_FD_IN_SHIM,
            ))?;
        }
        if let Some(current_dir) = &current_dir {
            check(libc::posix_spawn_file_actions_addchdir_np(
                actions,
                current_dir.as_ptr(),
            ))?;
        }
        let attributes = &mut attributes.0;
        check(libc::posix_spawnattr_setflags(attributes, flags))?;
        check(libc::posix_spawnattr_setsigmask(attributes, &blocked))?;
        check(libc::posix_spawnattr_setsigdefault(attributes, &defaulted))?;
        check(libc::posix_spawnp(
            &mut pid,
            program.as_ptr(),
            actions,
            attributes,
            argv.as_ptr(),
            envp.as_ptr(),
        ))?;
    }
    Ok(pid)
}

/// Collects the exit of the spawned shim `pid` once it exits, without blocking a thread of
/// the runtime (through a pidfd where the kernel has them). Never kills it.
pub(crate) async fn reap(pid: libc::pid_t) -> std::io::Result<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    if let Ok(pidfd) = open_pidfd(pid) {
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same
        // until the AsyncFd is dropped.
        let pidfd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        }?;
        // Readable once the process has exited; it then waits for us as a zombie.
        let _ready = pidfd.readable().await?;
        if let Some(status) = wait_pid(pid, libc::WNOHANG)? {
            return Ok(std::process::ExitStatus::from_raw(status));
        }
    }
    let status = tokio::task::spawn_blocking(move || wait_pid(pid, 0))
        .await
        .map_err(std::io::Error::other)??;
    Ok(std::process::ExitStatus::from_raw(status.unwrap_or(0)))
}

/// A pidfd for `pid`; `ErrorKind::Unsupported` on kernels without them (before 5.3).
pub(crate) fn open_pidfd(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let result = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if result < 0 {
        let error = std::io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::ENOSYS) => std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this kernel has no pidfd_open",
            ),
            _ => error,
        });
    }
    // SAFETY: the kernel just returned this descriptor to us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(result as RawFd) })
}

/// `waitpid(pid, options)`, retried on EINTR. `None`: still running (with `WNOHANG`).
pub(crate) fn wait_pid(
    pid: libc::pid_t,
    options: libc::c_int,
) -> std::io::Result<Option<libc::c_int>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into the integer we own.
        let result = unsafe { libc::waitpid(pid, &mut status, options) };
        if result == pid {
            return Ok(Some(status));
        }
        if result == 0 {
            return Ok(None);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}
