//! Pattern errors: where inside the pattern (`detail.object.key[0].prefix`) and what to do.

use std::fmt;

use serde_json::Value;

/// A pattern that EventBridge would reject, with the place inside the pattern.
///
/// Displayed as `at detail.object.key[0]: unknown operator "prefx"; did you mean "prefix"?`,
/// or just the message when the problem is the pattern as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PatternError {
    path: String,
    message: String,
}

impl PatternError {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> Self {
        PatternError {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// Where inside the pattern, e.g. `detail.object.key[0].prefix`; empty for the whole
    /// pattern. Keys that are not plain words are written `["odd.key"]`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong and how to fix it, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            formatter.write_str(&self.message)
        } else {
            write!(formatter, "at {}: {}", self.path, self.message)
        }
    }
}

/// `path.key`, or `path["odd key"]` for keys that would make the path ambiguous.
pub(crate) fn key_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '[' | ']' | '"'));
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", quote(key)),
    }
}

/// `path[index]`.
pub(crate) fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// A string as a JSON string literal, for messages.
pub(crate) fn quote(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// "the string \"x\"", "the number 5", "true", "null", "a list", "an object": what the
/// user wrote, for messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("the string {}", shorten(&quote(text))),
        Value::Number(number) => format!("the number {number}"),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_string(),
        Value::Array(items) if items.is_empty() => "an empty list".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(map) if map.is_empty() => "an empty object".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Long values are cut in messages so one bad value does not flood a terminal.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 60;
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        let cut: String = text.chars().take(LIMIT).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::pattern::error::{describe, index_path, key_path, PatternError};

    #[test]
    fn paths() {
        for (path, key, expected) in [
            ("", "detail", "detail"),
            ("detail", "object", "detail.object"),
            ("detail", "$or", "detail.$or"),
            ("detail", "detail-type", "detail.detail-type"),
            ("detail", "a.b", "detail[\"a.b\"]"),
            ("", "a b", "[\"a b\"]"),
            ("x", "", "x[\"\"]"),
        ] {
            assert_eq!(key_path(path, key), expected);
        }
        assert_eq!(index_path("detail.key", 0), "detail.key[0]");
    }

    #[test]
    fn display() {
        assert_eq!(
            PatternError::new("a[0]", "bad").to_string(),
            "at a[0]: bad".to_string()
        );
        assert_eq!(PatternError::new("", "bad").to_string(), "bad");
        assert_eq!(PatternError::new("a", "bad").path(), "a");
        assert_eq!(PatternError::new("a", "bad").message(), "bad");
    }

    #[test]
    fn descriptions() {
        for (value, expected) in [
            (json!("x"), "the string \"x\""),
            (json!(5), "the number 5"),
            (json!(1.5), "the number 1.5"),
            (json!(true), "true"),
            (json!(null), "null"),
            (json!([]), "an empty list"),
            (json!([1]), "a list"),
            (json!({}), "an empty object"),
            (json!({"a": 1}), "an object"),
        ] {
            assert_eq!(describe(&value), expected);
        }
        let long = describe(&json!("x".repeat(100)));
        assert!(long.ends_with('…'), "{long}");
    }
}
