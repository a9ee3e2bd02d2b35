//! The standby shim: a shim started ahead of time, so that launching a run does not wait for
//! a process to be executed and the `wharf` binary to be loaded.
//!
//! A standby is spawned exactly like a shim (own session, stop signals blocked) but with
//! `STANDBY_ARGUMENT` instead of a run folder and with one end of a socket pair as its
//! stdin. It waits there. To launch a run, the server sends it the run folder and the launch
//! spec (so `spec.json` can be written meanwhile) with the locked `shim.lock` and `shim.log`
//! descriptors (`SCM_RIGHTS`: the very same open file
//! descriptions, so the lock is shared, not re-taken) and keeps its own copy of the lock
//! until the standby answers that it took the run over (it then holds the lock on fd 3;
//! the server writes `shim.pid` meanwhile). From there on it is an ordinary shim. If the standby does not
//! answer (it died, or hangs), it is killed, the server waits until it is gone (so no copy
//! of the lock survives in it), and the run gets a freshly spawned shim instead.
//!
//! A standby that loses the server (a restart, even `kill -9`) sees its socket close and
//! exits; it never held a run.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::handover::{receive_byte, send_with_fds, TAKEN_OVER};
use crate::launch::LocalRuntimeConfig;
use crate::spawn::{open_pidfd, spawn_shim, ShimCommand};

/// The argument that starts a shim as a standby instead of for a run folder.
pub const STANDBY_ARGUMENT: &str = "--standby";

/// How long a standby may take to answer a hand-over before it is replaced.
const HANDOVER_LIMIT: Duration = Duration::from_secs(10);

/// How long to wait for a killed standby to be gone.
const KILL_LIMIT: Duration = Duration::from_secs(10);

/// A spawned standby shim waiting for a run.
pub(crate) struct Standby {
    pub(crate) pid: libc::pid_t,
    /// The server's end of the socket pair.
    socket: OwnedFd,
    /// For signalling and watching it without pid-reuse races.
    pidfd: OwnedFd,
}

/// Why a hand-over did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    #[error("the run folder path is too long to hand over")]
    PathTooLong,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the standby shim exited without taking the run over")]
    Gone,
    #[error("the standby shim answered {0:?} instead of taking the run over")]
    Refused(u8),
}

impl Standby {
    /// Spawns a standby shim.
    pub(crate) fn spawn(config: &LocalRuntimeConfig) -> std::io::Result<Standby> {
        let (server_end, shim_end) = socket_pair()?;
        let mut args: Vec<&OsStr> = config.shim_args.iter().map(OsStr::new).collect();
        args.push(OsStr::new(STANDBY_ARGUMENT));
        let command = ShimCommand {
            program: &config.shim_exe,
            args,
            current_dir: None,
            stdin: Some(shim_end.as_fd()),
            // Until it has a run folder, its complaints go where the server's go.
            stderr: None,
            lock: None,
        };
        let pid = spawn_shim(&command)?;
        drop(shim_end);
        let pidfd = match open_pidfd(pid) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                // Without a pidfd a standby could not be replaced safely: let it go.
                // SAFETY: kill has no memory-safety requirements; this is our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = crate::spawn::wait_pid(pid, 0);
                return Err(error);
            }
        };
        Ok(Standby {
            pid,
            socket: server_end,
            pidfd,
        })
    }

    /// Hands the run in `run_dir` over: returns once the standby holds the lock.
    /// `while_it_starts` runs between sending and waiting for the answer. On an error the
    /// standby must be [`discard`](Standby::discard)ed.
    pub(crate) fn hand_over(
        &self,
        run_dir: &Path,
        spec_json: &[u8],
        lock: BorrowedFd<'_>,
        shim_log: BorrowedFd<'_>,
        while_it_starts: impl FnOnce(),
    ) -> Result<(), HandoverError> {
        let path = run_dir.as_os_str().as_bytes();
        if path.len() > crate::shim::MAX_HANDOVER_PATH {
            return Err(HandoverError::PathTooLong);
        }
        // The run folder, a NUL, and the spec if it is small enough (else it reads spec.json).
        let mut message = path.to_vec();
        message.push(0);
        if spec_json.len() <= crate::shim::MAX_HANDOVER_SPEC {
            message.extend_from_slice(spec_json);
        }
        send_with_fds(self.socket.as_fd(), &message, &[lock, shim_log])?;
        while_it_starts();
        match receive_byte(self.socket.as_fd(), HANDOVER_LIMIT)? {
            Some(TAKEN_OVER) => Ok(()),
            Some(other) => Err(HandoverError::Refused(other)),
            None => Err(HandoverError::Gone),
        }
    }

    /// Kills a standby that did not take its run over and waits until it is gone, so that
    /// it holds no copy of the lock when the run gets another shim. Returns whether it had
    /// answered after all (too late): it may then have started the workload before it died.
    pub(crate) fn discard(self) -> bool {
        // SAFETY: pidfd_send_signal with our pidfd, no siginfo, no flags; a process that is
        // already gone gives ESRCH, which is fine.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
        let mut poll = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd we own. The pidfd becomes readable
        // when the process has exited (its descriptors are closed by then).
        unsafe {
            libc::poll(&mut poll, 1, KILL_LIMIT.as_millis() as libc::c_int);
        }
        matches!(
            receive_byte(self.socket.as_fd(), Duration::ZERO),
            Ok(Some(TAKEN_OVER))
        )
    }
}

fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors, which we then own.
    let result = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if result == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
