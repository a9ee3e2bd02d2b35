//! The shim's side of a standby (see `crate::standby`): wait for a run, take it over.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::handover::{receive_with_fds, send_byte, TAKEN_OVER};
use crate::launch::LOCK_FD_IN_SHIM;

/// The longest run folder path a standby accepts.
pub(crate) const MAX_HANDOVER_PATH: usize = 4096;
/// The longest launch spec handed over with the run; a longer one is read from `spec.json`.
pub(crate) const MAX_HANDOVER_SPEC: usize = 64 * 1024;

/// A run received by a standby: its folder is the working folder, its `shim.log` is stderr
/// and its locked `shim.lock` is fd 3, as for a shim spawned for it.
pub(crate) struct Received {
    pub(crate) run_dir: PathBuf,
    /// The launch spec as JSON, if it came with the run.
    pub(crate) spec_json: Option<Vec<u8>>,
}

/// Waits on stdin, a socket from the server, for a run. `Ok(None)`: the server is gone (or
/// a stop request is pending), so there is nothing to do.
pub(crate) fn wait_for_run() -> Result<Option<Received>, String> {
    // SAFETY: fd 0 is the socket the server spawned us with and stays open while borrowed.
    let socket = unsafe { BorrowedFd::borrow_raw(0) };
    let mut buffer = vec![0u8; MAX_HANDOVER_PATH + 1 + MAX_HANDOVER_SPEC];
    let (length, fds) = receive_with_fds(socket, &mut buffer)
        .map_err(|error| format!("could not receive a run from the server: {error}"))?;
    if length == 0 {
        return Ok(None);
    }
    let [lock, shim_log]: [OwnedFd; 2] = fds.try_into().map_err(|fds: Vec<OwnedFd>| {
        format!(
            "the server handed over {} descriptors instead of 2",
            fds.len()
        )
    })?;
    if stop_requested() {
        // Leave the run to a fresh shim: the server sees us go without answering.
        return Ok(None);
    }
    let message = &buffer[..length];
    let (path, spec_json) = match message.iter().position(|&byte| byte == 0) {
        Some(end) => (&message[..end], Some(&message[end + 1..])),
        None => (message, None),
    };
    let run_dir = PathBuf::from(OsStr::from_bytes(path));
    let spec_json = spec_json
        .filter(|json| !json.is_empty())
        .map(<[u8]>::to_vec);
    move_to(shim_log, 2).map_err(|error| format!("could not redirect stderr: {error}"))?;
    move_to(lock, LOCK_FD_IN_SHIM)
        .map_err(|error| format!("could not place the lock on fd 3: {error}"))?;
    std::env::set_current_dir(&run_dir)
        .map_err(|error| format!("could not enter {}: {error}", run_dir.display()))?;
    Ok(Some(Received { run_dir, spec_json }))
}

/// Tells the server that this shim holds the run now, and lets go of the socket.
pub(crate) fn confirm() -> Result<(), String> {
    // SAFETY: fd 0 is still the server's socket.
    let socket = unsafe { BorrowedFd::borrow_raw(0) };
    send_byte(socket, TAKEN_OVER)
        .map_err(|error| format!("could not answer the server: {error}"))?;
    // Replace the socket with /dev/null (dup2 closes it).
    let null = std::fs::File::open("/dev/null")
        .map_err(|error| format!("could not open /dev/null: {error}"))?;
    // SAFETY: dup2 onto fd 0, which we own; `null` stays open for the call.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } == -1 {
        return Err(format!(
            "could not replace stdin: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Puts `fd` on descriptor number `target` (closing what was there) without close-on-exec.
fn move_to(fd: OwnedFd, target: libc::c_int) -> std::io::Result<()> {
    if fd.as_raw_fd() == target {
        let raw = fd.into_raw_fd();
        return crate::lock::set_close_on_exec(raw, false);
    }
    // SAFETY: dup2 between descriptors we own; `fd` is closed when dropped afterwards.
    if unsafe { libc::dup2(fd.as_raw_fd(), target) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether SIGTERM or SIGINT is pending (they are blocked until the shim waits for them).
fn stop_requested() -> bool {
    // SAFETY: sigpending fills the set we own; sigismember reads it.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending) == 0
            && (libc::sigismember(&pending, libc::SIGTERM) == 1
                || libc::sigismember(&pending, libc::SIGINT) == 1)
    }
}
