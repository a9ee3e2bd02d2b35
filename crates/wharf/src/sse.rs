//! Reading Server-Sent Events (the log and event streams the CLI follows).

/// One complete SSE message: its `event:` name ("" when none) and its `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub event: String,
    pub data: String,
}

/// Cuts a byte stream into SSE messages; feed it chunks as they arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: String,
    data: String,
}

impl SseParser {
    /// Adds a chunk and returns the messages it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=newline).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(value) = line.strip_prefix("event:") {
                self.event = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            } else if line.is_empty() && !self.data.is_empty() {
                messages.push(SseMessage {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use crate::sse::{SseMessage, SseParser};

    fn check(chunks: &[&str], expect: &[(&str, &str)]) {
        let mut parser = SseParser::default();
        let got: Vec<SseMessage> = chunks
            .iter()
            .flat_map(|chunk| parser.push(chunk.as_bytes()))
            .collect();
        let expect: Vec<SseMessage> = expect
            .iter()
            .map(|(event, data)| SseMessage {
                event: event.to_string(),
                data: data.to_string(),
            })
            .collect();
        assert_eq!(got, expect, "{chunks:?}");
    }

    #[test]
    fn messages() {
        check(
            &["event: log\ndata: {\"l\":1}\n\n"],
            &[("log", "{\"l\":1}")],
        );
        check(&["event: lo", "g\r\ndata: a\r", "\n\r\n"], &[("log", "a")]);
        check(&["data: one\ndata: two\n\n"], &[("", "one\ntwo")]);
        check(
            &[": keep-alive\n\n", "event: end\ndata:x\n\n"],
            &[("end", "x")],
        );
        check(&["event: log\ndata: unfinished\n"], &[]);
        check(
            &["event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"],
            &[("a", "1"), ("b", "2")],
        );
    }
}
