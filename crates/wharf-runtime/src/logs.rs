//! The run log, `RUN/log.jsonl`: one JSON object per captured line,
//! `{"t":"2026-11-23T09:00:00.123456Z","s":"out","l":"the line"}`.
//!
//! `t` is the capture time (RFC 3339, UTC, microseconds); `s` is the stream ([`STDOUT`],
//! [`STDERR`], or [`WHARF`] for the shim's own messages); `l` is the line without its
//! newline, with invalid UTF-8 replaced by U+FFFD. A line longer than
//! [`crate::MAX_LOG_LINE_BYTES`] is split into several entries.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The stream name of the workload's standard output.
pub const STDOUT: &str = "out";
/// The stream name of the workload's standard error.
pub const STDERR: &str = "err";
/// The stream name of messages from Wharf itself (timeouts, start failures).
pub const WHARF: &str = "wharf";

/// One entry of the run log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Capture time, RFC 3339 UTC with microseconds.
    pub t: String,
    /// Stream: "out", "err" or "wharf".
    pub s: String,
    /// The line, without the trailing newline.
    pub l: String,
}

impl LogLine {
    /// A line captured now.
    pub fn now(stream: &str, line: impl Into<String>) -> LogLine {
        LogLine {
            t: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            s: stream.to_string(),
            l: line.into(),
        }
    }

    /// The JSON text of the entry followed by a newline, ready to append to the log.
    pub fn to_json_line(&self) -> Vec<u8> {
        // Serializing three strings cannot fail; fall back to an empty object just in case.
        let mut bytes = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        bytes.push(b'\n');
        bytes
    }
}

/// Reads up to `max_lines` complete entries starting at byte `offset`. Returns them and the
/// offset just after the last one returned; a partial last line (no `\n` yet, still being
/// written) is not consumed. A log that does not exist yet reads as empty.
pub fn read_lines(
    path: &Path,
    offset: u64,
    max_lines: usize,
) -> Result<(Vec<LogLine>, u64), RuntimeError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), offset))
        }
        Err(source) => return Err(RuntimeError::io("open the run log", path, source)),
    };
    file.seek(SeekFrom::Start(offset))
        .map_err(|source| RuntimeError::io("seek in the run log", path, source))?;
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    let mut position = offset;
    let mut buffer = Vec::new();
    while lines.len() < max_lines {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .map_err(|source| RuntimeError::io("read the run log", path, source))?;
        if read == 0 || buffer.last() != Some(&b'\n') {
            break;
        }
        let text = &buffer[..buffer.len() - 1];
        if !text.iter().all(u8::is_ascii_whitespace) {
            let line = serde_json::from_slice(text).map_err(|error| RuntimeError::CorruptFile {
                path: path.to_path_buf(),
                line: None,
                problem: format!("the entry at byte {position} is not a log line ({error})"),
            })?;
            lines.push(line);
        }
        position += read as u64;
    }
    Ok((lines, position))
}

/// The last `count` complete entries of the log (oldest first), reading backwards from
/// the end in blocks, so a long log costs no more than its tail. Entries that are not
/// valid log lines are skipped; a missing log reads as empty.
pub fn read_last_lines(path: &Path, count: usize) -> Result<Vec<LogLine>, RuntimeError> {
    use std::io::Read;
    const BLOCK: u64 = 64 * 1024;
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RuntimeError::io("open the run log", path, source)),
    };
    let length = file
        .metadata()
        .map_err(|source| RuntimeError::io("read the run log", path, source))?
        .len();
    // `tail` holds the bytes from `start` to the end; grow it until it has `count`
    // complete lines before its last newline, or reaches the start of the file.
    let mut start = length;
    let mut tail: Vec<u8> = Vec::new();
    while start > 0 && tail.iter().filter(|byte| **byte == b'\n').count() <= count {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_exact(&mut block))
            .map_err(|source| RuntimeError::io("read the run log", path, source))?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
    }
    // Only complete lines: drop a partial last line; drop a partial first one unless
    // the tail starts at the beginning of the file.
    let end = tail
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |at| at + 1);
    let mut complete = &tail[..end];
    if start > 0 {
        let first_end = complete
            .iter()
            .position(|byte| *byte == b'\n')
            .map_or(0, |at| at + 1);
        complete = &complete[first_end..];
    }
    let mut lines: Vec<LogLine> = complete
        .split(|byte| *byte == b'\n')
        .filter(|text| !text.iter().all(u8::is_ascii_whitespace))
        .filter_map(|text| serde_json::from_slice(text).ok())
        .collect();
    let skip = lines.len().saturating_sub(count);
    lines.drain(..skip);
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use crate::logs::{read_last_lines, read_lines, LogLine};

    fn line(stream: &str, text: &str) -> String {
        format!("{{\"t\":\"2026-11-23T09:00:00.123456Z\",\"s\":\"{stream}\",\"l\":\"{text}\"}}\n")
    }

    /// Reads `contents` from `offset` with `max_lines`, expecting the texts and new offset.
    fn check(
        contents: &str,
        offset: u64,
        max_lines: usize,
        expect_texts: &[&str],
        expect_offset: u64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, contents).unwrap();
        let (lines, new_offset) = read_lines(&path, offset, max_lines).unwrap();
        let texts: Vec<&str> = lines.iter().map(|line| line.l.as_str()).collect();
        assert_eq!(texts, expect_texts, "contents {contents:?} from {offset}");
        assert_eq!(
            new_offset, expect_offset,
            "contents {contents:?} from {offset}"
        );
    }

    #[test]
    fn reads_complete_lines() {
        let a = line("out", "a");
        let b = line("err", "b");
        let both = format!("{a}{b}");
        let a_len = a.len() as u64;
        let both_len = both.len() as u64;
        check("", 0, 10, &[], 0);
        check(&a, 0, 10, &["a"], a_len);
        check(&both, 0, 10, &["a", "b"], both_len);
        check(&both, 0, 1, &["a"], a_len);
        check(&both, a_len, 10, &["b"], both_len);
        check(&both, both_len, 10, &[], both_len);
        check(&both, 0, 0, &[], 0);
        // A partial last line is left for the next call.
        check(&format!("{a}{{\"t\":\"x\""), 0, 10, &["a"], a_len);
        // Offsets past the end read nothing.
        check(&a, 1000, 10, &[], 1000);
    }

    #[test]
    fn missing_log_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (lines, offset) = read_lines(&dir.path().join("log.jsonl"), 7, 10).unwrap();
        assert!(lines.is_empty());
        assert_eq!(offset, 7);
    }

    #[test]
    fn corrupt_line_names_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, format!("{}not json\n", line("out", "a"))).unwrap();
        let error = read_lines(&path, 0, 10).unwrap_err().to_string();
        assert!(
            error.contains("log.jsonl") && error.contains("at byte 54"),
            "{error}"
        );
    }

    #[test]
    fn json_line_round_trips() {
        let entry = LogLine::now("out", "quote \" and \u{fffd}");
        let bytes = entry.to_json_line();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let parsed: LogLine = serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(parsed, entry);
        assert_eq!(
            entry.t.len(),
            "2026-11-23T09:00:00.123456Z".len(),
            "{}",
            entry.t
        );
    }

    #[test]
    fn last_lines_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        assert!(read_last_lines(&path, 30).unwrap().is_empty());
        let mut contents = String::new();
        for index in 0..5000 {
            contents.push_str(&line("out", &format!("line {index}")));
        }
        // A partial line being written is not read.
        contents.push_str("{\"t\":\"x\"");
        std::fs::write(&path, &contents).unwrap();
        let texts = |count| -> Vec<String> {
            read_last_lines(&path, count)
                .unwrap()
                .into_iter()
                .map(|line| line.l)
                .collect()
        };
        let expected: Vec<String> = (4970..5000).map(|i| format!("line {i}")).collect();
        assert_eq!(texts(30), expected);
        assert_eq!(texts(0), Vec::<String>::new());
        assert_eq!(texts(10_000).len(), 5000);
        std::fs::write(&path, format!("{}{}", line("out", "a"), line("err", "b"))).unwrap();
        assert_eq!(texts(1), vec!["b".to_string()]);
        assert_eq!(texts(5), vec!["a".to_string(), "b".to_string()]);
    }
}
