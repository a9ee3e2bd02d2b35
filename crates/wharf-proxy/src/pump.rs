//! Copies bytes both ways between a client and a replica after a `101 Switching Protocols`
//! (WebSockets), holding no buffer while a connection is idle.
//!
//! `tokio::io::copy_bidirectional` gives every connection two 8 KiB buffers for its whole
//! life. A Shiny app's WebSockets are idle nearly all the time, and a server holds
//! thousands of them, so here bytes are read into one scratch buffer per thread and written
//! on at once, within the same poll. Only what the other side cannot take yet is copied
//! into a buffer of the connection's own, which is freed as soon as it has been written.
//! That is also the back-pressure: a direction does not read again until its pending
//! bytes are written.
//!
//! When one side ends its sending (end of stream), the other side's sending half is shut
//! down and the opposite direction goes on until it ends too, as TCP half-close works.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read per poll of one direction.
const SCRATCH_SIZE: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Pumps bytes between `a` and `b` until both directions have ended or either fails.
/// `to_a` are bytes for `a` that were already read from `b` (sent first).
pub(crate) async fn pump<A, B>(a: A, b: B, to_a: Vec<u8>) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    Pump {
        a,
        b,
        a_to_b: Direction::default(),
        b_to_a: Direction {
            pending: to_a,
            ..Direction::default()
        },
    }
    .await
}

struct Pump<A, B> {
    a: A,
    b: B,
    a_to_b: Direction,
    b_to_a: Direction,
}

impl<A, B> Future for Pump<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let a_to_b = this.a_to_b.poll(context, &mut this.a, &mut this.b)?;
        let b_to_a = this.b_to_a.poll(context, &mut this.b, &mut this.a)?;
        if a_to_b.is_ready() && b_to_a.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// One direction: read from one side, write to the other.
#[derive(Default)]
struct Direction {
    /// Read but not yet written (no allocation while nothing is pending).
    pending: Vec<u8>,
    /// How much of `pending` has been written.
    written: usize,
    /// Bytes were written since the last flush.
    unflushed: bool,
    /// The reader ended: the writer is being shut down, or was.
    ended: bool,
    /// The writer has been shut down: this direction is over.
    done: bool,
}

/// What one read into the scratch buffer came to.
enum Read {
    /// Everything read was written on (or kept in `pending`).
    Moved,
    /// The reader's end of stream.
    End,
}

impl Direction {
    fn poll<R, W>(
        &mut self,
        context: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            while self.written < self.pending.len() {
                let written = ready_or_pending(
                    Pin::new(&mut *writer).poll_write(context, &self.pending[self.written..]),
                )?;
                match written {
                    None => return Poll::Pending,
                    Some(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Some(count) => {
                        self.written += count;
                        self.unflushed = true;
                    }
                }
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.written = 0;
            }
            if self.ended {
                if Pin::new(&mut *writer).poll_shutdown(context)?.is_pending() {
                    return Poll::Pending;
                }
                self.done = true;
                continue;
            }
            match self.read_and_write(context, reader, writer)? {
                Some(Read::Moved) => {}
                Some(Read::End) => self.ended = true,
                None => {
                    // Nothing to read now: what was written goes out before waiting.
                    if self.unflushed {
                        if Pin::new(&mut *writer).poll_flush(context)?.is_pending() {
                            return Poll::Pending;
                        }
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Reads once into the thread's scratch buffer and writes as much as the writer takes;
    /// the rest goes to `pending`. `None`: nothing to read yet.
    fn read_and_write<R, W>(
        &mut self,
        context: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> io::Result<Option<Read>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut buffer = ReadBuf::new(&mut scratch[..]);
            if ready_or_pending(Pin::new(&mut *reader).poll_read(context, &mut buffer))?.is_none() {
                return Ok(None);
            }
            let read = buffer.filled();
            if read.is_empty() {
                return Ok(Some(Read::End));
            }
            let mut written = 0;
            while written < read.len() {
                match ready_or_pending(
                    Pin::new(&mut *writer).poll_write(context, &read[written..]),
                )? {
                    None => break,
                    Some(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Some(count) => {
                        written += count;
                        self.unflushed = true;
                    }
                }
            }
            if written < read.len() {
                self.pending = read[written..].to_vec();
                self.written = 0;
            }
            Ok(Some(Read::Moved))
        })
    }
}

/// `Poll<io::Result<T>>` as `io::Result<Option<T>>` (`None`: pending), for `?`.
fn ready_or_pending<T>(poll: Poll<io::Result<T>>) -> io::Result<Option<T>> {
    match poll {
        Poll::Ready(Ok(value)) => Ok(Some(value)),
        Poll::Ready(Err(error)) => Err(error),
        Poll::Pending => Ok(None),
    }
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
