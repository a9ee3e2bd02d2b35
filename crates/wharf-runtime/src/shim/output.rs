//! Capturing the workload's output into `log.jsonl`.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use crate::logs::LogLine;

/// Appends entries to the run log. Clones share one file behind a mutex, so concurrent
/// entries (stdout and stderr) are never interleaved inside a line.
#[derive(Clone)]
pub(crate) struct LogWriter {
    file: Arc<Mutex<File>>,
}

impl LogWriter {
    pub(crate) fn new(file: File) -> LogWriter {
        LogWriter {
            file: Arc::new(Mutex::new(file)),
        }
    }

    /// Appends one entry, captured now. Each entry is a single `write` of a whole line to a
    /// file opened for appending, so followers see it at once and never see half of it.
    /// The time is taken under the lock, so the file's order is the time order even when
    /// stdout and stderr are pumped by two threads.
    pub(crate) fn write(&self, stream: &str, text: &str) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = LogLine::now(stream, text).to_json_line();
        if let Err(error) = file.write_all(&bytes) {
            // Nowhere better to report it: the shim's stderr goes to RUN/shim.log.
            eprintln!("Could not append to the run log: {error}");
        }
    }

    /// A message from Wharf itself (stream "wharf").
    pub(crate) fn wharf(&self, text: &str) {
        self.write(crate::logs::WHARF, text)
    }

    /// Flushes the log to disk, before the status is written.
    pub(crate) fn sync(&self) {
        let file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.sync_all() {
            eprintln!("Could not sync the run log: {error}");
        }
    }
}

/// Splits a byte stream into lines of at most `max_bytes` bytes (without the `\n`).
/// Longer lines are cut into chunks, never inside a UTF-8 character.
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    max_bytes: usize,
}

impl LineSplitter {
    pub(crate) fn new(max_bytes: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            max_bytes: max_bytes.max(4),
        }
    }

    /// Adds `data`, calling `emit` for every complete line (or full chunk).
    pub(crate) fn push(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let newline = rest.iter().position(|&byte| byte == b'\n');
            match newline {
                Some(index) if index <= self.max_bytes => {
                    emit(&rest[..index]);
                    start += index + 1;
                }
                _ if newline.is_some() || rest.len() > self.max_bytes => {
                    let cut = utf8_cut(&rest[..self.max_bytes]);
                    emit(&rest[..cut]);
                    start += cut;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
    }

    /// At end of stream: emits what is left (a last line without `\n`).
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// Where to cut `chunk` (which continues after its end) so no UTF-8 character is split: just
/// before an incomplete multi-byte character at the end, else at the end.
fn utf8_cut(chunk: &[u8]) -> usize {
    let len = chunk.len();
    for back in 1..=3.min(len) {
        let byte = chunk[len - back];
        let is_continuation = byte & 0b1100_0000 == 0b1000_0000;
        if is_continuation {
            continue;
        }
        let char_len = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        // The character starting here needs `char_len` bytes but only `back` are in chunk.
        return if char_len > back && len - back > 0 {
            len - back
        } else {
            len
        };
    }
    len
}

/// Reads `source` to its end, writing every line to the log under `stream`.
pub(crate) fn pump(mut source: impl Read, stream: &'static str, log: &LogWriter) {
    let mut splitter = LineSplitter::new(crate::MAX_LOG_LINE_BYTES);
    let mut emit = |line: &[u8]| log.write(stream, &String::from_utf8_lossy(line));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => splitter.push(&buffer[..read], &mut emit),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                log.wharf(&format!(
                    "Could not read the workload's {stream} stream: {error}"
                ));
                break;
            }
        }
    }
    splitter.finish(&mut emit);
}

#[cfg(test)]
mod tests {
    use crate::shim::output::LineSplitter;

    /// Feeds `pieces` to a splitter with `max_bytes`, expecting these emitted lines.
    fn check(max_bytes: usize, pieces: &[&[u8]], expect: &[&[u8]]) {
        let mut splitter = LineSplitter::new(max_bytes);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut emit = |line: &[u8]| lines.push(line.to_vec());
        for piece in pieces {
            splitter.push(piece, &mut emit);
        }
        splitter.finish(&mut emit);
        let expect: Vec<Vec<u8>> = expect.iter().map(|line| line.to_vec()).collect();
        assert_eq!(lines, expect, "pieces {pieces:?}");
    }

    #[test]
    fn splits_lines() {
        check(8, &[b"a\nb\n"], &[b"a", b"b"]);
        check(8, &[b"a", b"b\n", b"c"], &[b"ab", b"c"]);
        check(8, &[b"\n\n"], &[b"", b""]);
        check(8, &[b""], &[]);
        check(8, &[b"no newline"], &[b"no newli", b"ne"]);
        // Exactly max bytes then newline: one line.
        check(8, &[b"12345678\n"], &[b"12345678"]);
        check(8, &[b"12345678", b"\n"], &[b"12345678"]);
        // Longer lines are chunked, the newline ends the last chunk.
        check(8, &[b"123456789\n"], &[b"12345678", b"9"]);
        check(4, &[b"abcdefghij\nk\n"], &[b"abcd", b"efgh", b"ij", b"k"]);
        check(4, &[b"abcd", b"efgh", b"\n"], &[b"abcd", b"efgh"]);
        // Never split inside a UTF-8 character: "é" is 2 bytes, "€" 3, "𝄞" 4.
        check(4, &["abcé".as_bytes()], &[b"abc", "é".as_bytes()]);
        check(4, &["ab€".as_bytes()], &[b"ab", "€".as_bytes()]);
        check(4, &["a𝄞b".as_bytes()], &[b"a", "𝄞".as_bytes(), b"b"]);
        check(4, &["𝄞𝄞\n".as_bytes()], &["𝄞".as_bytes(), "𝄞".as_bytes()]);
        // Invalid bytes are passed through (made lossy later).
        check(
            4,
            &[b"\xff\xfe\xfd\xfc\xfb\n"],
            &[b"\xff\xfe\xfd\xfc", b"\xfb"],
        );
        check(4, &[b"abc\xe2"], &[b"abc\xe2"]);
    }
}
