//! Checking a pattern and compiling it: objects of fields, `$or` and value lists. The
//! match expressions inside value lists (`{"prefix": "x"}` …) are in
//! [`crate::pattern::operators`].

use serde_json::{Map, Value};

use crate::pattern::condition::{Condition, Literal};
use crate::pattern::error::{describe, index_path, key_path, quote, PatternError};
use crate::pattern::operators::{compile_expression, OPERATORS};

/// Deeper patterns are rejected, so compiling and matching (which recurse along the
/// pattern) have a fixed stack bound.
pub(crate) const MAX_PATTERN_DEPTH: usize = 32;

const OR_KEY: &str = "$or";

/// Field names that cannot appear inside `$or`, as in EventBridge: an operator there
/// almost always means a misplaced match expression.
const RESERVED_IN_OR: [&str; 6] = ["exactly", "=", "<", "<=", ">", ">="];

/// An object of a pattern: every field must match, and one alternative of `$or` if any.
#[derive(Debug, Clone)]
pub(crate) struct ObjectMatcher {
    pub(crate) fields: Vec<FieldMatcher>,
    /// The alternatives of this object's `$or` (at least two), or empty.
    pub(crate) any_of: Vec<ObjectMatcher>,
}

#[derive(Debug, Clone)]
pub(crate) struct FieldMatcher {
    pub(crate) key: String,
    pub(crate) node: FieldNode,
}

#[derive(Debug, Clone)]
pub(crate) enum FieldNode {
    /// A value list: the field matches when any entry does.
    Values(Vec<Condition>),
    /// A nested object of fields.
    Object(ObjectMatcher),
}

pub(crate) const PATTERN_EXAMPLE: &str = r#"{"source": ["wharf.s3"]}"#;

/// Checks a whole pattern and compiles it.
pub(crate) fn compile_pattern(pattern: &Value) -> Result<ObjectMatcher, PatternError> {
    match pattern {
        Value::Object(map) if map.is_empty() => Err(PatternError::new(
            "",
            format!(
                "the pattern is empty; name at least one field to match, such as {PATTERN_EXAMPLE}"
            ),
        )),
        Value::Object(map) => compile_object(map, "", 0, false),
        other => Err(PatternError::new(
            "",
            format!(
                "an event pattern must be a JSON object such as {PATTERN_EXAMPLE}, found {}",
                describe(other)
            ),
        )),
    }
}

fn compile_object(
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
    inside_or: bool,
) -> Result<ObjectMatcher, PatternError> {
    if depth >= MAX_PATTERN_DEPTH {
        return Err(PatternError::new(
            path,
            format!("the pattern is nested more than {MAX_PATTERN_DEPTH} levels deep; match on fewer levels"),
        ));
    }
    if map.is_empty() {
        return Err(PatternError::new(
            path,
            "is an empty object, which EventBridge rejects; give it at least one field, or remove it",
        ));
    }
    let mut matcher = ObjectMatcher {
        fields: Vec::with_capacity(map.len()),
        any_of: Vec::new(),
    };
    for (key, value) in map {
        let field_path = key_path(path, key);
        if key == OR_KEY {
            matcher.any_of = compile_or(value, &field_path, depth)?;
            continue;
        }
        if inside_or
            && (OPERATORS.contains(&key.as_str()) || RESERVED_IN_OR.contains(&key.as_str()))
        {
            return Err(PatternError::new(
                &field_path,
                format!(
                    "{} is an operator, not a field name; each alternative of $or is an object of fields, such as {}",
                    quote(key),
                    r#"{"$or": [{"key": [{"prefix": "a/"}]}, {"size": [{"numeric": [">", 0]}]}]}"#
                ),
            ));
        }
        let node = match value {
            Value::Object(inner) => {
                FieldNode::Object(compile_object(inner, &field_path, depth + 1, inside_or)?)
            }
            Value::Array(items) => FieldNode::Values(compile_values(items, &field_path)?),
            scalar => {
                return Err(PatternError::new(
                    &field_path,
                    format!(
                        "expected a list of values to match, found {}; write [{scalar}] (a pattern always lists the values it accepts)",
                        describe(scalar)
                    ),
                ))
            }
        };
        matcher.fields.push(FieldMatcher {
            key: key.clone(),
            node,
        });
    }
    Ok(matcher)
}

fn compile_or(value: &Value, path: &str, depth: usize) -> Result<Vec<ObjectMatcher>, PatternError> {
    const OR_EXAMPLE: &str = r#"[{"a": ["x"]}, {"b": ["y"]}]"#;
    let Value::Array(alternatives) = value else {
        return Err(PatternError::new(
            path,
            format!(
                "$or expects a list of at least two objects of fields, such as {OR_EXAMPLE}; found {}",
                describe(value)
            ),
        ));
    };
    if alternatives.len() < 2 {
        return Err(PatternError::new(
            path,
            format!(
                "$or needs at least two alternatives, found {}; with a single one, write its fields directly without $or",
                alternatives.len()
            ),
        ));
    }
    let mut compiled = Vec::with_capacity(alternatives.len());
    for (index, alternative) in alternatives.iter().enumerate() {
        let alternative_path = index_path(path, index);
        match alternative {
            Value::Object(map) => {
                compiled.push(compile_object(map, &alternative_path, depth + 1, true)?);
            }
            other => {
                return Err(PatternError::new(
                    &alternative_path,
                    format!(
                        "each alternative of $or is an object of fields, such as {}, found {}",
                        r#"{"a": ["x"]}"#,
                        describe(other)
                    ),
                ))
            }
        }
    }
    Ok(compiled)
}

fn compile_values(items: &[Value], path: &str) -> Result<Vec<Condition>, PatternError> {
    if items.is_empty() {
        return Err(PatternError::new(
            path,
            "is an empty list, which EventBridge rejects; list at least one value to match, such as [\"x\"], or remove the field",
        ));
    }
    let mut conditions = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let item_path = index_path(path, index);
        let condition = match item {
            Value::Object(expression) => compile_expression(expression, &item_path)?,
            Value::Array(_) => {
                return Err(PatternError::new(
                    &item_path,
                    "a list inside a list is not allowed; put all the values in one list (any of them matches)",
                ))
            }
            scalar => match Literal::from_json(scalar) {
                Some(literal) => Condition::Exact(literal),
                None => {
                    return Err(PatternError::new(
                        &item_path,
                        format!("cannot match {}", describe(scalar)),
                    ))
                }
            },
        };
        conditions.push(condition);
    }
    Ok(conditions)
}
