//! The chunked transfer coding of a replica's response body (RFC 9112, section 7.1),
//! decoded in place as bytes arrive: sizes and extensions, data, and trailers (read and
//! dropped), each bounded. A state machine rather than a parser over a whole buffer, so a
//! body split across reads at any byte decodes the same.

use bytes::{Buf, Bytes, BytesMut};

use crate::h1::{protocol, ExchangeError};

/// The longest chunk-size line, extensions included.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// The most bytes of trailers after a chunked body (read and dropped).
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

/// Where a chunked body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// Reading the chunk size (hex digits so far).
    Size {
        value: u64,
        digits: u32,
    },
    /// After the size: extensions up to CR, then LF.
    Extension {
        value: u64,
        length: usize,
    },
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines up to an empty one. `line` is the current
    /// line's length; `total` all trailer bytes so far.
    Trailer {
        line: usize,
        total: usize,
        cr: bool,
    },
    Done,
}

/// One step of chunked decoding over `buffer`.
pub(crate) enum Decoded {
    Data(Bytes),
    NeedMore,
    End,
}

pub(crate) fn decode_chunked(
    state: &mut Chunked,
    buffer: &mut BytesMut,
) -> Result<Decoded, ExchangeError> {
    loop {
        if let Chunked::Data { remaining } = *state {
            if buffer.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            let take = remaining.min(buffer.len() as u64) as usize;
            let data = buffer.split_to(take).freeze();
            *state = if remaining == take as u64 {
                Chunked::DataCr
            } else {
                Chunked::Data {
                    remaining: remaining - take as u64,
                }
            };
            return Ok(Decoded::Data(data));
        }
        if *state == Chunked::Done {
            return Ok(Decoded::End);
        }
        if buffer.is_empty() {
            return Ok(Decoded::NeedMore);
        }
        let byte = buffer[0];
        buffer.advance(1);
        *state = match *state {
            Chunked::Size { value, digits } => match (byte as char).to_digit(16) {
                Some(digit) if digits < 16 => Chunked::Size {
                    value: value << 4 | u64::from(digit),
                    digits: digits + 1,
                },
                Some(_) => return Err(protocol("a chunk size is too large")),
                None if digits == 0 && byte == b'\r' => {
                    return Err(protocol("a chunk size is missing"))
                }
                None if digits == 0 => return Err(protocol("a chunk size is not hexadecimal")),
                None if byte == b'\r' => Chunked::SizeLf { value },
                None if byte == b'\n' => {
                    return Err(protocol("a chunk-size line does not end in CRLF"))
                }
                None if byte == b';' || byte == b' ' || byte == b'\t' => {
                    Chunked::Extension { value, length: 1 }
                }
                None => return Err(protocol("a chunk size is not hexadecimal")),
            },
            Chunked::Extension { value, length } => {
                if byte == b'\r' {
                    Chunked::SizeLf { value }
                } else if length >= MAX_CHUNK_LINE {
                    return Err(protocol("a chunk-size line is too long"));
                } else if byte == b'\n' {
                    return Err(protocol("a chunk-size line does not end in CRLF"));
                } else {
                    Chunked::Extension {
                        value,
                        length: length + 1,
                    }
                }
            }
            Chunked::SizeLf { value } => match (byte, value) {
                (b'\n', 0) => Chunked::Trailer {
                    line: 0,
                    total: 0,
                    cr: false,
                },
                (b'\n', remaining) => Chunked::Data { remaining },
                _ => return Err(protocol("a chunk-size line does not end in CRLF")),
            },
            Chunked::DataCr if byte == b'\r' => Chunked::DataLf,
            Chunked::DataLf if byte == b'\n' => Chunked::Size {
                value: 0,
                digits: 0,
            },
            Chunked::DataCr | Chunked::DataLf => {
                return Err(protocol("a chunk's data does not end in CRLF"))
            }
            Chunked::Trailer { line, total, cr } => {
                if total >= MAX_TRAILERS {
                    return Err(protocol("the trailers are too long"));
                }
                match (byte, cr) {
                    (b'\r', false) => Chunked::Trailer {
                        line,
                        total: total + 1,
                        cr: true,
                    },
                    (b'\n', true) if line == 0 => Chunked::Done,
                    (b'\n', true) => Chunked::Trailer {
                        line: 0,
                        total: total + 1,
                        cr: false,
                    },
                    (_, true) => return Err(protocol("a trailer line does not end in CRLF")),
                    (b'\n', false) => return Err(protocol("a trailer line does not end in CRLF")),
                    (_, false) => Chunked::Trailer {
                        line: line + 1,
                        total: total + 1,
                        cr: false,
                    },
                }
            }
            Chunked::Data { .. } | Chunked::Done => unreachable!("handled above"),
        };
    }
}
