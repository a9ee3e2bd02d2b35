//! The error collector and typed readers used by the manifest loader. Every reader
//! records a problem (with line and field path) instead of stopping, so one pass reports
//! everything that is wrong.

use std::time::Duration;

use toml_edit::{Item, Key, TableLike, Value};

use crate::duration::parse_duration;
use crate::manifest::ManifestError;
use crate::suggest::closest;

pub(crate) const TOP_KEYS: [&str; 8] = [
    "name", "kind", "command", "runtime", "env", "job", "service", "notify",
];
pub(crate) const JOB_KEYS: [&str; 7] = [
    "timeout",
    "retries",
    "retry_backoff",
    "concurrency",
    "overlap",
    "trigger",
    "io",
];
pub(crate) const TRIGGER_KEYS: [&str; 5] = [
    "schedule",
    "timezone",
    "catch_up",
    "object_created",
    "pattern",
];
pub(crate) const OBJECT_CREATED_KEYS: [&str; 3] = ["bucket", "prefix", "suffix"];
pub(crate) const IO_KEYS: [&str; 3] = ["stage_input", "output_bucket", "archive_input"];
pub(crate) const SERVICE_KEYS: [&str; 16] = [
    "health",
    "min_replicas",
    "max_replicas",
    "scale_out_above",
    "scale_in_below",
    "sticky",
    "idle_timeout",
    "max_inflight",
    "access",
    "scale_in_cooldown",
    "start_timeout",
    "cold_start_timeout",
    "queue_timeout",
    "connect_timeout",
    "read_timeout",
    "drain_timeout",
];
pub(crate) const SECRET_KEYS: [&str; 1] = ["secret"];
pub(crate) const NOTIFY_KEYS: [&str; 2] = ["channel", "on"];

/// Where each key may appear, to say "belongs in [service]" for a misplaced key.
const SECTIONS: [(&str, &[&str]); 6] = [
    ("the top level", &TOP_KEYS),
    ("[job]", &JOB_KEYS),
    ("[[job.trigger]]", &TRIGGER_KEYS),
    ("[job.io]", &IO_KEYS),
    ("[service]", &SERVICE_KEYS),
    ("[[notify]]", &NOTIFY_KEYS),
];

/// A value read from the file with the line it came from.
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) line: Option<usize>,
}

/// `path.key`, quoting keys that are not bare TOML keys.
pub(crate) fn join_path(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("\"{}\"", escape_toml(key))
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// Escapes text for a TOML basic string.
pub(crate) fn escape_toml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `["Rscript", "job.R"]`: an argv as a TOML array, for messages.
pub(crate) fn toml_array(arguments: &[String]) -> String {
    let quoted: Vec<String> = arguments
        .iter()
        .map(|argument| format!("\"{}\"", escape_toml(argument)))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// "the string \"two\"", "the number 3", "a table": what the user wrote, for messages.
pub(crate) fn describe_item(item: &Item) -> String {
    match item {
        Item::Value(value) => describe_value(value),
        Item::Table(_) => "a table".to_string(),
        Item::ArrayOfTables(_) => "a list of tables".to_string(),
        Item::None => "nothing".to_string(),
    }
}

pub(crate) fn describe_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("the string \"{}\"", escape_toml(text.value())),
        Value::Integer(number) => format!("the number {}", number.value()),
        Value::Float(number) => format!("the number {}", number.value()),
        Value::Boolean(flag) => format!("{}", flag.value()),
        Value::Datetime(datetime) => format!("the date {}", datetime.value()),
        Value::Array(_) => "a list".to_string(),
        Value::InlineTable(_) => "a table".to_string(),
    }
}

/// Collects manifest errors for one file.
pub(crate) struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    pub(crate) errors: Vec<ManifestError>,
}

impl<'a> Checker<'a> {
    /// Reads each `(index, table, line)` of a list of tables with `read` (given the
    /// element's path, `PREFIX[INDEX]`), keeping only the elements that raised no error.
    pub(crate) fn read_each<T>(
        &mut self,
        tables: Vec<(usize, &dyn TableLike, Option<usize>)>,
        prefix: &str,
        mut read: impl FnMut(&mut Checker<'a>, &dyn TableLike, &str, Option<usize>) -> Option<T>,
    ) -> Vec<T> {
        let mut read_items = Vec::new();
        for (index, table, table_line) in tables {
            let errors_before = self.errors.len();
            let item = read(self, table, &format!("{prefix}[{index}]"), table_line);
            if let Some(item) = item.filter(|_| self.errors.len() == errors_before) {
                read_items.push(item);
            }
        }
        read_items
    }

    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Checker {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// The 1-based line of a byte offset into the file.
    pub(crate) fn line_of(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        let start = span?.start.min(self.text.len());
        let newlines = self.text.as_bytes()[..start]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count();
        Some(newlines + 1)
    }

    /// The line of a key's value, or of the key when the value has no span.
    pub(crate) fn item_line(&self, key: &Key, item: &Item) -> Option<usize> {
        self.line_of(item.span())
            .or_else(|| self.line_of(key.span()))
    }

    pub(crate) fn error(
        &mut self,
        line: Option<usize>,
        field: Option<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ManifestError {
            file: self.file.to_string(),
            line,
            field,
            message: message.into(),
        });
    }

    pub(crate) fn field_error(
        &mut self,
        line: Option<usize>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.error(line, Some(field.to_string()), message);
    }

    /// Reports every key of `table` that is not in `allowed`, suggesting a close key or
    /// the section the key belongs in.
    pub(crate) fn check_keys(
        &mut self,
        table: &dyn TableLike,
        path: &str,
        section: &str,
        allowed: &[&str],
    ) {
        for (name, _) in table.iter() {
            if allowed.contains(&name) {
                continue;
            }
            let line = self.line_of(table.key(name).and_then(Key::span));
            // Only for the manifest's own sections: in env or object_created a key such
            // as "name" is just a wrong key, not a misplaced one.
            let in_a_section = SECTIONS.iter().any(|(other, _)| *other == section);
            let elsewhere = SECTIONS
                .iter()
                .find(|(other, keys)| in_a_section && *other != section && keys.contains(&name))
                .map(|(other, _)| *other);
            let place = if section == "the top level" {
                "at the top level".to_string()
            } else {
                format!("in {section}")
            };
            let message = match elsewhere {
                Some("the top level") => format!(
                    "this key belongs at the top level (above the first [section]), not {place}; move it there"
                ),
                Some(other) => {
                    format!("this key belongs in {other}, not {place}; move it there")
                }
                None => match closest(name, allowed.iter().copied(), 2) {
                    Some(near) => format!(
                        "unknown key; did you mean \"{near}\"? Keys allowed {place}: {}",
                        allowed.join(", ")
                    ),
                    None => format!("unknown key; keys allowed {place}: {}", allowed.join(", ")),
                },
            };
            self.field_error(line, &join_path(path, name), message);
        }
    }

    fn type_error(&mut self, key: &Key, item: &Item, field: &str, expected: &str, example: &str) {
        let line = self.item_line(key, item);
        self.field_error(
            line,
            field,
            format!(
                "expected {expected}, found {}; write for example {example}",
                describe_item(item)
            ),
        );
    }

    pub(crate) fn read_string(
        &mut self,
        table: &dyn TableLike,
        path: &str,
        key: &str,
        example: &str,
    ) -> Option<Located<String>> {
        let (key_ref, item) = table.get_key_value(key)?;
        let field = join_path(path, key);
        match item.as_str() {
            Some(text) => Some(Located {
                value: text.to_string(),
                line: self.item_line(key_ref, item),
            }),
            None => {
                self.type_error(
                    key_ref,
                    item,
                    &field,
                    "a string",
                    &format!("{key} = {example}"),
                );
                None
            }
        }
    }

    pub(crate) fn read_bool(
        &mut self,
        table: &dyn TableLike,
        path: &str,
        key: &str,
    ) -> Option<Located<bool>> {
        let (key_ref, item) = table.get_key_value(key)?;
        let field = join_path(path, key);
        match item.as_bool() {
            Some(flag) => Some(Located {
                value: flag,
                line: self.item_line(key_ref, item),
            }),
            None => {
                let example = format!("{key} = true");
                self.type_error(key_ref, item, &field, "true or false", &example);
                None
            }
        }
    }

    /// A whole number in `minimum..=maximum`.
    pub(crate) fn read_count(
        &mut self,
        table: &dyn TableLike,
        path: &str,
        key: &str,
        minimum: u32,
        maximum: u32,
    ) -> Option<Located<u32>> {
        let (key_ref, item) = table.get_key_value(key)?;
        let field = join_path(path, key);
        let line = self.item_line(key_ref, item);
        let Some(number) = item.as_integer() else {
            let quoted_number = item
                .as_str()
                .and_then(|text| text.trim().parse::<i64>().ok());
            let example = match quoted_number {
                Some(number) => format!("{key} = {number} (without quotes)"),
                None => format!("{key} = {}", minimum.max(2).min(maximum)),
            };
            self.type_error(key_ref, item, &field, "a whole number", &example);
            return None;
        };
        match u32::try_from(number) {
            Ok(count) if (minimum..=maximum).contains(&count) => {
                Some(Located { value: count, line })
            }
            _ => {
                self.field_error(
                    line,
                    &field,
                    format!(
                        "{number} is out of range; use a whole number from {minimum} to {maximum}"
                    ),
                );
                None
            }
        }
    }

    /// A duration string such as "10m".
    pub(crate) fn read_duration(
        &mut self,
        table: &dyn TableLike,
        path: &str,
        key: &str,
    ) -> Option<Located<Duration>> {
        let (key_ref, item) = table.get_key_value(key)?;
        let field = join_path(path, key);
        let line = self.item_line(key_ref, item);
        let Some(text) = item.as_str() else {
            let example = match item.as_integer() {
                Some(number) if number >= 0 => format!("{key} = \"{number}s\""),
                _ => format!("{key} = \"10m\""),
            };
            self.type_error(key_ref, item, &field, "a duration string", &example);
            return None;
        };
        match parse_duration(text) {
            Ok(duration) => Some(Located {
                value: duration,
                line,
            }),
            Err(message) => {
                self.field_error(line, &field, message);
                None
            }
        }
    }

    /// One of `allowed` (a string).
    pub(crate) fn read_choice(
        &mut self,
        table: &dyn TableLike,
        path: &str,
        key: &str,
        allowed: &[&str],
    ) -> Option<Located<String>> {
        let example = format!("\"{}\"", allowed.first().copied().unwrap_or_default());
        let located = self.read_string(table, path, key, &example)?;
        if allowed.contains(&located.value.as_str()) {
            return Some(located);
        }
        let quoted: Vec<String> = allowed.iter().map(|value| format!("\"{value}\"")).collect();
        let hint = closest(&located.value, allowed.iter().copied(), 2)
            .map(|near| format!("did you mean \"{near}\"? "))
            .unwrap_or_default();
        self.field_error(
            located.line,
            &join_path(path, key),
            format!(
                "\"{}\" is not allowed; {hint}use {}",
                located.value,
                join_words(&quoted, "or")
            ),
        );
        None
    }

    /// A table (`[section]` or an inline `{ ... }`).
    pub(crate) fn read_table<'t>(
        &mut self,
        table: &'t dyn TableLike,
        path: &str,
        key: &str,
        example: &str,
    ) -> Option<(&'t dyn TableLike, Option<usize>)> {
        let (key_ref, item) = table.get_key_value(key)?;
        let line = self.item_line(key_ref, item);
        match item.as_table_like() {
            Some(inner) => Some((inner, line)),
            None => {
                self.type_error(key_ref, item, &join_path(path, key), "a table", example);
                None
            }
        }
    }
}

/// "a", "a or b", "a, b or c" (with `conjunction` "or").
pub(crate) fn join_words(words: &[String], conjunction: &str) -> String {
    match words {
        [] => String::new(),
        [only] => only.clone(),
        [rest @ .., last] => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}
