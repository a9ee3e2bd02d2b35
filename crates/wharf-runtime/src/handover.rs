//! Passing a run to a standby shim: one message with the run folder and two descriptors
//! (`SCM_RIGHTS`) over a `SOCK_SEQPACKET` socket pair, answered by one byte.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The most descriptors a message carries.
pub(crate) const MAX_FDS: usize = 2;

/// The byte a standby shim answers with once it has taken the run over.
pub(crate) const TAKEN_OVER: u8 = b'1';

fn retry_eintr(mut call: impl FnMut() -> isize) -> std::io::Result<usize> {
    loop {
        let result = call();
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// A control-message buffer, aligned for `cmsghdr`.
fn control_buffer() -> Vec<u64> {
    // SAFETY: CMSG_SPACE only computes a size.
    let bytes = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    vec![0u64; (bytes as usize).div_ceil(8)]
}

/// Sends `data` with the descriptors `fds` (at most [`MAX_FDS`]) as one message.
pub(crate) fn send_with_fds(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    assert!(fds.len() <= MAX_FDS && !fds.is_empty());
    let mut control = control_buffer();
    let fds_bytes = std::mem::size_of_val(fds);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below points into buffers that outlive
    // the sendmsg call, and the control buffer has room for one SCM_RIGHTS header with
    // `fds.len()` descriptors (CMSG_SPACE above).
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        message.msg_controllen = libc::CMSG_SPACE(fds_bytes as u32) as usize;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fds_bytes as u32) as usize;
        let data_pointer = libc::CMSG_DATA(header) as *mut RawFd;
        for (index, fd) in fds.iter().enumerate() {
            data_pointer.add(index).write_unaligned(fd.as_raw_fd());
        }
        retry_eintr(|| libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL))?
    };
    if sent != data.len() {
        return Err(std::io::Error::other("the message was sent only in part"));
    }
    Ok(())
}

/// Receives one message into `buffer`; returns its length (0: the peer is gone) and the
/// descriptors it carried, close-on-exec.
pub(crate) fn receive_with_fds(
    socket: BorrowedFd<'_>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = control_buffer();
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr() as *mut libc::c_void,
        iov_len: buffer.len(),
    };
    let mut fds = Vec::new();
    // SAFETY: as in `send_with_fds`; the kernel writes at most the lengths given, and the
    // descriptors it reports are new ones that we take ownership of at once.
    let (received, flags) = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        message.msg_controllen = control.len() * 8;
        let received = retry_eintr(|| {
            libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC)
        })?;
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data_bytes = (*header).cmsg_len - libc::CMSG_LEN(0) as usize;
                let data_pointer = libc::CMSG_DATA(header) as *const RawFd;
                for index in 0..data_bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(
                        data_pointer.add(index).read_unaligned(),
                    ));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
        (received, message.msg_flags)
    };
    if flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(std::io::Error::other(
            "the message was longer than expected",
        ));
    }
    Ok((received, fds))
}

/// Sends the one-byte answer.
pub(crate) fn send_byte(socket: BorrowedFd<'_>, byte: u8) -> std::io::Result<()> {
    // SAFETY: send reads one byte from a local.
    retry_eintr(|| unsafe {
        libc::send(
            socket.as_raw_fd(),
            &byte as *const u8 as *const libc::c_void,
            1,
            libc::MSG_NOSIGNAL,
        )
    })
    .map(|_| ())
}

/// Waits up to `limit` for the one-byte answer. `Ok(None)`: the peer is gone without one.
pub(crate) fn receive_byte(socket: BorrowedFd<'_>, limit: Duration) -> std::io::Result<Option<u8>> {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll reads and writes the one pollfd we own.
    let ready = retry_eintr(|| unsafe { libc::poll(&mut poll, 1, millis) } as isize)?;
    if ready == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", limit.as_millis()),
        ));
    }
    let mut byte = 0u8;
    // SAFETY: recv writes at most one byte into the local.
    let received = retry_eintr(|| unsafe {
        libc::recv(
            socket.as_raw_fd(),
            &mut byte as *mut u8 as *mut libc::c_void,
            1,
            0,
        )
    })?;
    Ok((received == 1).then_some(byte))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use crate::handover::{receive_byte, receive_with_fds, send_byte, send_with_fds};

    fn socket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two new descriptors that we then own.
        let result = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(result, 0);
        // SAFETY: just created, owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn passes_data_and_descriptors() {
        let (server, shim) = socket_pair();
        let mut first = tempfile::tempfile().unwrap();
        let second = tempfile::tempfile().unwrap();
        first.write_all(b"shared").unwrap();
        send_with_fds(
            server.as_fd(),
            b"/runs/r1",
            &[first.as_fd(), second.as_fd()],
        )
        .unwrap();
        let mut buffer = [0u8; 64];
        let (length, fds) = receive_with_fds(shim.as_fd(), &mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"/runs/r1");
        assert_eq!(fds.len(), 2);
        // The received descriptor is the same open file (shared offset).
        let mut received = std::fs::File::from(fds.into_iter().next().unwrap());
        received.rewind().unwrap();
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "shared");

        send_byte(shim.as_fd(), b'1').unwrap();
        assert_eq!(
            receive_byte(server.as_fd(), Duration::from_secs(5)).unwrap(),
            Some(b'1')
        );
        drop(shim);
        assert_eq!(
            receive_byte(server.as_fd(), Duration::from_secs(5)).unwrap(),
            None
        );
        let (length, fds) = receive_with_fds(server.as_fd(), &mut buffer).unwrap();
        assert_eq!((length, fds.len()), (0, 0));
    }

    #[test]
    fn a_missing_answer_times_out() {
        let (server, _shim) = socket_pair();
        let error = receive_byte(server.as_fd(), Duration::from_millis(1)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }
}
