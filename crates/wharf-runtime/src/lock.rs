//! The liveness lock (`RUN/shim.lock`) and signalling the shim without pid-reuse races.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Outcome of a non-blocking lock attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryLock {
    Acquired,
    HeldElsewhere,
}

fn retry_eintr(mut call: impl FnMut() -> libc::c_int) -> std::io::Result<libc::c_int> {
    loop {
        let result = call();
        if result != -1 {
            return Ok(result);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// `flock(LOCK_EX | LOCK_NB)`.
pub(crate) fn try_lock_exclusive(file: &File) -> std::io::Result<TryLock> {
    // SAFETY: flock on a valid open descriptor has no memory-safety requirements.
    match retry_eintr(|| unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(TryLock::Acquired),
        Err(error) if error.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(TryLock::HeldElsewhere),
        Err(error) => Err(error),
    }
}

/// `flock(LOCK_EX)`, blocking until the current holder is gone.
pub(crate) fn lock_exclusive_blocking(file: &File) -> std::io::Result<()> {
    // SAFETY: as above.
    retry_eintr(|| unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }).map(|_| ())
}

/// Opens the lock file for locking (never creating it). `None` if it does not exist.
pub(crate) fn open_existing_lock(path: &Path) -> std::io::Result<Option<File>> {
    match OpenOptions::new().read(true).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Sets or clears `FD_CLOEXEC` on a descriptor.
pub(crate) fn set_close_on_exec(fd: RawFd, close_on_exec: bool) -> std::io::Result<()> {
    // SAFETY: fcntl F_GETFD/F_SETFD only reads/writes descriptor flags.
    let flags = retry_eintr(|| unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new_flags = if close_on_exec {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    retry_eintr(|| unsafe { libc::fcntl(fd, libc::F_SETFD, new_flags) }).map(|_| ())
}

/// A handle on a process that stays valid even after the pid is reused (a pidfd).
pub(crate) struct ProcessHandle {
    pidfd: Option<OwnedFd>,
    pid: libc::pid_t,
}

impl ProcessHandle {
    /// Opens a pidfd for `pid`. `Ok(None)` if no such process exists. On kernels without
    /// pidfd (before 5.3) falls back to the plain pid.
    pub(crate) fn open(pid: libc::pid_t) -> std::io::Result<Option<ProcessHandle>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let result = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if result >= 0 {
            // SAFETY: the kernel just returned this descriptor to us; we own it.
            let pidfd = unsafe { OwnedFd::from_raw_fd(result as RawFd) };
            return Ok(Some(ProcessHandle {
                pidfd: Some(pidfd),
                pid,
            }));
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            Some(libc::ENOSYS) => Ok(Some(ProcessHandle { pidfd: None, pid })),
            _ => Err(error),
        }
    }

    /// Sends `signal`. `Ok(false)` if the process is already gone.
    pub(crate) fn send_signal(&self, signal: libc::c_int) -> std::io::Result<bool> {
        let result = match &self.pidfd {
            // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
            Some(pidfd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            // SAFETY: kill has no memory-safety requirements.
            None => libc::c_long::from(unsafe { libc::kill(self.pid, signal) }),
        };
        if result == 0 {
            return Ok(true);
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(error),
        }
    }
}
