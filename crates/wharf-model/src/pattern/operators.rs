//! Match expressions inside value lists: `{"prefix": "x"}`, `{"numeric": [">", 0]}`, …
//! Each is checked as strictly as EventBridge checks it, with a message that says how to
//! write it instead.

use serde_json::{Map, Number, Value};

use crate::pattern::condition::{
    in_numeric_range, AnythingBut, Bound, CidrBlock, Condition, NumericRange, NUMERIC_LIMIT,
};
use crate::pattern::error::{describe, index_path, key_path, quote, PatternError};
use crate::pattern::wildcard::Wildcard;
use crate::suggest::closest;

/// The operators a value list may hold.
pub(crate) const OPERATORS: [&str; 8] = [
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
];

/// What may appear inside `{"anything-but": {…}}`.
const ANYTHING_BUT_OPERATORS: [&str; 4] = ["prefix", "suffix", "equals-ignore-case", "wildcard"];

const EQUALS_IGNORE_CASE: &str = "equals-ignore-case";

const NUMERIC_HELP: &str = r#"numeric expects pairs of an operator (<, <=, =, >=, >) and a number, such as [">", 0, "<=", 5]"#;

/// The most digits after the decimal point numeric matching supports, as in EventBridge.
const MAX_DECIMAL_PLACES: usize = 6;

/// Compiles one `{operator: operand}` object found at `path` in a value list.
pub(crate) fn compile_expression(
    expression: &Map<String, Value>,
    path: &str,
) -> Result<Condition, PatternError> {
    let mut entries = expression.iter();
    let (operator, operand) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        (None, _) => {
            return Err(PatternError::new(
                path,
                r#"an empty object is not a match expression; write a value such as "x" or an operator such as {"prefix": "x"}"#,
            ))
        }
        (Some(_), Some(_)) => return Err(several_operators(expression, path)),
    };
    let operand_path = key_path(path, operator);
    match operator.as_str() {
        "prefix" => compile_prefix_or_suffix(operand, &operand_path, "prefix", "data/"),
        "suffix" => compile_prefix_or_suffix(operand, &operand_path, "suffix", ".csv"),
        EQUALS_IGNORE_CASE => {
            let text = expect_string(operand, &operand_path, r#"{"equals-ignore-case": "alice"}"#)?;
            Ok(Condition::EqualsIgnoreCase(text.to_lowercase()))
        }
        "wildcard" => compile_wildcard(operand, &operand_path).map(Condition::Wildcard),
        "anything-but" => compile_anything_but(operand, &operand_path).map(Condition::AnythingBut),
        "numeric" => compile_numeric(operand, &operand_path).map(Condition::Numeric),
        "exists" => match operand {
            Value::Bool(flag) => Ok(Condition::Exists(*flag)),
            other => Err(PatternError::new(
                &operand_path,
                format!(
                    "exists expects true or false, found {}{}",
                    describe(other),
                    unquote_hint(other)
                ),
            )),
        },
        "cidr" => {
            let example = r#"{"cidr": "10.0.0.0/24"} or {"cidr": "2001:db8::/32"}"#;
            let text = expect_string(operand, &operand_path, example)?;
            CidrBlock::parse(text).map(Condition::Cidr).ok_or_else(|| {
                PatternError::new(
                    &operand_path,
                    format!(
                        "{} is not an address range; write an address, a slash and the number of leading bits that must agree, such as {example}",
                        quote(text)
                    ),
                )
            })
        }
        "$or" => Err(PatternError::new(
            path,
            r#"$or combines fields, not values: list alternative values directly, as in ["a", "b"], or move $or up into the object that holds the fields"#,
        )),
        unknown => Err(unknown_operator(unknown, operand, path)),
    }
}

fn several_operators(expression: &Map<String, Value>, path: &str) -> PatternError {
    let names: Vec<String> = expression.keys().map(|key| quote(key)).collect();
    let mut message = format!(
        "a match expression holds exactly one operator, found {}: {}; put each in its own {{…}} in the list (the list matches when any entry does)",
        names.len(),
        names.join(", ")
    );
    if expression.contains_key("prefix") && expression.contains_key("suffix") {
        message.push_str(
            r#"; to require a prefix and a suffix together, use {"wildcard": "prefix*suffix"}"#,
        );
    }
    PatternError::new(path, message)
}

fn unknown_operator(unknown: &str, operand: &Value, path: &str) -> PatternError {
    let message = match closest(unknown, OPERATORS, 3) {
        Some(suggestion) => format!(
            "unknown operator {}; did you mean {}?",
            quote(unknown),
            quote(suggestion)
        ),
        None if matches!(operand, Value::Array(_) | Value::Object(_)) => format!(
            "unknown operator {}; to match a nested field, write an object of fields instead of a list, such as {}",
            quote(unknown),
            r#""detail": {"state": ["running"]}"#
        ),
        None => format!(
            "unknown operator {}; the operators are {}",
            quote(unknown),
            OPERATORS.join(", ")
        ),
    };
    PatternError::new(path, message)
}

fn expect_string<'v>(
    operand: &'v Value,
    path: &str,
    example: &str,
) -> Result<&'v str, PatternError> {
    operand.as_str().ok_or_else(|| {
        let operator = path.rsplit('.').next().unwrap_or(path);
        PatternError::new(
            path,
            format!(
                "{operator} expects a string, such as {example}; found {}",
                describe(operand)
            ),
        )
    })
}

/// ` write true without quotes` for `"true"`, `5` for `"5"`: the common mistake of quoting.
fn unquote_hint(value: &Value) -> String {
    match value.as_str() {
        Some(text @ ("true" | "false")) => format!("; write {text} without quotes"),
        Some(text) if serde_json::from_str::<Number>(text.trim()).is_ok() => {
            format!("; write {} without quotes", text.trim())
        }
        _ => String::new(),
    }
}

/// `{"prefix": "x"}` or `{"prefix": {"equals-ignore-case": "x"}}`, and the same for suffix.
fn compile_prefix_or_suffix(
    operand: &Value,
    path: &str,
    operator: &str,
    example: &str,
) -> Result<Condition, PatternError> {
    let is_prefix = operator == "prefix";
    let help = format!(
        r#"{operator} expects a string, such as {{"{operator}": "{example}"}}, or {{"{operator}": {{"equals-ignore-case": "{example}"}}}} to ignore case"#
    );
    match operand {
        Value::String(text) if is_prefix => Ok(Condition::Prefix(text.clone())),
        Value::String(text) => Ok(Condition::Suffix(text.clone())),
        Value::Object(inner) => {
            let mut entries = inner.iter();
            let (inner_operator, inner_operand) = match (entries.next(), entries.next()) {
                (Some(entry), None) => entry,
                _ => {
                    return Err(PatternError::new(
                        path,
                        format!("{help}; found {}", describe(operand)),
                    ))
                }
            };
            if inner_operator != EQUALS_IGNORE_CASE {
                let hint = match closest(inner_operator, [EQUALS_IGNORE_CASE], 3) {
                    Some(suggestion) => format!("did you mean {}?", quote(suggestion)),
                    None => format!("only {} is allowed there", quote(EQUALS_IGNORE_CASE)),
                };
                return Err(PatternError::new(
                    path,
                    format!(
                        "unknown operator {} inside {operator}; {hint}",
                        quote(inner_operator)
                    ),
                ));
            }
            let inner_path = key_path(path, inner_operator);
            let inner_example =
                format!(r#"{{"{operator}": {{"equals-ignore-case": "{example}"}}}}"#);
            let text = expect_string(inner_operand, &inner_path, &inner_example)?;
            let lowercase = text.to_lowercase();
            Ok(if is_prefix {
                Condition::PrefixIgnoreCase(lowercase)
            } else {
                Condition::SuffixIgnoreCase(lowercase)
            })
        }
        other => Err(PatternError::new(
            path,
            format!("{help}; found {}", describe(other)),
        )),
    }
}

fn compile_wildcard(operand: &Value, path: &str) -> Result<Wildcard, PatternError> {
    let text = expect_string(operand, path, r#"{"wildcard": "dir/*.png"}"#)?;
    Wildcard::parse(text).map_err(|error| PatternError::new(path, error.describe(text)))
}

fn compile_anything_but(operand: &Value, path: &str) -> Result<AnythingBut, PatternError> {
    let help = r#"anything-but expects a string, a number, a list of strings or of numbers, or one of {"prefix": …}, {"suffix": …}, {"equals-ignore-case": …}, {"wildcard": …}"#;
    match operand {
        Value::String(text) => Ok(AnythingBut::Strings(vec![text.clone()])),
        Value::Number(number) => {
            check_numeric_operand(number, path)?;
            Ok(AnythingBut::Numbers(vec![number.clone()]))
        }
        Value::Array(items) => compile_anything_but_list(items, path),
        Value::Object(inner) => compile_anything_but_object(inner, path),
        other => Err(PatternError::new(
            path,
            format!("{help}; found {}", describe(other)),
        )),
    }
}

fn compile_anything_but_list(items: &[Value], path: &str) -> Result<AnythingBut, PatternError> {
    if items.is_empty() {
        return Err(PatternError::new(
            path,
            "anything-but needs at least one value to exclude, such as [\"stopped\"]",
        ));
    }
    let mut strings = Vec::new();
    let mut numbers = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => strings.push(text.clone()),
            Value::Number(number) => {
                check_numeric_operand(number, &index_path(path, index))?;
                numbers.push(number.clone());
            }
            other => {
                return Err(PatternError::new(
                    &index_path(path, index),
                    format!(
                        "an anything-but list holds only strings or only numbers, found {}",
                        describe(other)
                    ),
                ))
            }
        }
    }
    match (strings.is_empty(), numbers.is_empty()) {
        (false, true) => Ok(AnythingBut::Strings(strings)),
        (true, false) => Ok(AnythingBut::Numbers(numbers)),
        _ => Err(PatternError::new(
            path,
            "an anything-but list holds only strings or only numbers, not both; \"1\" and 1 are different values, so list them as the events have them",
        )),
    }
}

fn compile_anything_but_object(
    inner: &Map<String, Value>,
    path: &str,
) -> Result<AnythingBut, PatternError> {
    let mut entries = inner.iter();
    let (operator, operand) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(PatternError::new(
                path,
                format!(
                    r#"inside anything-but write exactly one of {}, such as {{"prefix": "tmp/"}}; found {}"#,
                    ANYTHING_BUT_OPERATORS.join(", "),
                    describe(&Value::Object(inner.clone()))
                ),
            ))
        }
    };
    if !ANYTHING_BUT_OPERATORS.contains(&operator.as_str()) {
        let hint = match closest(operator, ANYTHING_BUT_OPERATORS, 3) {
            Some(suggestion) => format!("did you mean {}?", quote(suggestion)),
            None => format!("use one of {}", ANYTHING_BUT_OPERATORS.join(", ")),
        };
        return Err(PatternError::new(
            path,
            format!(
                "{} cannot be used inside anything-but; {hint}",
                quote(operator)
            ),
        ));
    }
    let operand_path = key_path(path, operator);
    let texts = anything_but_strings(operand, &operand_path, operator)?;
    match operator.as_str() {
        "prefix" | "suffix" => {
            if let Some(index) = texts.iter().position(|text| text.is_empty()) {
                let empty_path = if operand.is_array() {
                    index_path(&operand_path, index)
                } else {
                    operand_path.clone()
                };
                return Err(PatternError::new(
                    &empty_path,
                    format!("an empty {operator} would exclude every string; give the {operator} to exclude, such as \"tmp/\""),
                ));
            }
            Ok(if operator == "prefix" {
                AnythingBut::Prefixes(texts)
            } else {
                AnythingBut::Suffixes(texts)
            })
        }
        EQUALS_IGNORE_CASE => Ok(AnythingBut::IgnoreCase(
            texts.iter().map(|text| text.to_lowercase()).collect(),
        )),
        _ => {
            let mut wildcards = Vec::with_capacity(texts.len());
            for (index, text) in texts.iter().enumerate() {
                let wildcard = Wildcard::parse(text).map_err(|error| {
                    let wildcard_path = if operand.is_array() {
                        index_path(&operand_path, index)
                    } else {
                        operand_path.clone()
                    };
                    PatternError::new(&wildcard_path, error.describe(text))
                })?;
                wildcards.push(wildcard);
            }
            Ok(AnythingBut::Wildcards(wildcards))
        }
    }
}

/// A string or a non-empty list of strings.
fn anything_but_strings(
    operand: &Value,
    path: &str,
    operator: &str,
) -> Result<Vec<String>, PatternError> {
    let help = format!(
        r#"{operator} inside anything-but expects a string or a list of strings, such as ["a", "b"]"#
    );
    match operand {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) if items.is_empty() => Err(PatternError::new(
            path,
            format!("{help}; found an empty list"),
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(PatternError::new(
                    &index_path(path, index),
                    format!("{help}; found {}", describe(other)),
                )),
            })
            .collect(),
        other => Err(PatternError::new(
            path,
            format!("{help}; found {}", describe(other)),
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

impl Comparison {
    fn parse(text: &str) -> Option<Comparison> {
        match text {
            "<" => Some(Comparison::Less),
            "<=" => Some(Comparison::LessOrEqual),
            "=" => Some(Comparison::Equal),
            ">=" => Some(Comparison::GreaterOrEqual),
            ">" => Some(Comparison::Greater),
            _ => None,
        }
    }

    fn is_lower(self) -> bool {
        matches!(self, Comparison::Greater | Comparison::GreaterOrEqual)
    }

    fn is_upper(self) -> bool {
        matches!(self, Comparison::Less | Comparison::LessOrEqual)
    }
}

fn compile_numeric(operand: &Value, path: &str) -> Result<NumericRange, PatternError> {
    let Value::Array(items) = operand else {
        return Err(PatternError::new(
            path,
            format!("{NUMERIC_HELP}; found {}", describe(operand)),
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        let detail = match items.len() {
            0 => "found an empty list".to_string(),
            n if n > 4 => format!("found {n} entries; give at most a lower bound (> or >=) and an upper bound (< or <=)"),
            1 => "found 1 entry; every operator needs a number after it".to_string(),
            n => format!("found {n} entries; every operator needs a number after it"),
        };
        return Err(PatternError::new(path, format!("{NUMERIC_HELP}; {detail}")));
    }
    let mut pairs = Vec::with_capacity(2);
    for (pair_index, pair) in items.chunks_exact(2).enumerate() {
        let operator_path = index_path(path, pair_index * 2);
        let number_path = index_path(path, pair_index * 2 + 1);
        let comparison = parse_comparison(&pair[0], &operator_path)?;
        let Value::Number(number) = &pair[1] else {
            return Err(PatternError::new(
                &number_path,
                format!(
                    "expected a number after {}, found {}{}",
                    pair[0],
                    describe(&pair[1]),
                    unquote_hint(&pair[1])
                ),
            ));
        };
        let value = check_numeric_operand(number, &number_path)?;
        pairs.push((comparison, value));
    }
    let bound = |value: f64, comparison: Comparison| Bound {
        value,
        inclusive: matches!(
            comparison,
            Comparison::LessOrEqual | Comparison::GreaterOrEqual | Comparison::Equal
        ),
    };
    match pairs.as_slice() {
        [(Comparison::Equal, value)] => Ok(NumericRange {
            lower: Some(bound(*value, Comparison::Equal)),
            upper: Some(bound(*value, Comparison::Equal)),
        }),
        [(comparison, value)] if comparison.is_lower() => Ok(NumericRange {
            lower: Some(bound(*value, *comparison)),
            upper: None,
        }),
        [(comparison, value)] => Ok(NumericRange {
            lower: None,
            upper: Some(bound(*value, *comparison)),
        }),
        [(first, low), (second, high)] if first.is_lower() && second.is_upper() => {
            if low >= high {
                return Err(PatternError::new(
                    path,
                    format!(
                        r#"the lower bound {} must be smaller than the upper bound {}; for a single number write ["=", {}]"#,
                        items[1], items[3], items[1]
                    ),
                ));
            }
            Ok(NumericRange {
                lower: Some(bound(*low, *first)),
                upper: Some(bound(*high, *second)),
            })
        }
        [(first, _), (second, _)] => {
            let message = if *first == Comparison::Equal || *second == Comparison::Equal {
                r#""=" stands alone, as in ["=", 5]; to give a range use > or >= and then < or <="#
            } else if first.is_upper() && second.is_lower() {
                r#"a numeric range gives the lower bound first, as in [">", 0, "<=", 5]"#
            } else {
                r#"a numeric range has one lower bound (> or >=) and then one upper bound (< or <=), as in [">", 0, "<=", 5]"#
            };
            Err(PatternError::new(path, message))
        }
        _ => Err(PatternError::new(path, NUMERIC_HELP)),
    }
}

fn parse_comparison(value: &Value, path: &str) -> Result<Comparison, PatternError> {
    let Value::String(text) = value else {
        return Err(PatternError::new(
            path,
            format!(
                r#"expected an operator (<, <=, =, >=, >) here, found {}; numeric lists an operator, then a number, such as [">", 0, "<=", 5]"#,
                describe(value)
            ),
        ));
    };
    Comparison::parse(text).ok_or_else(|| {
        let suggestion = match text.as_str() {
            "=>" => Some(">="),
            "=<" => Some("<="),
            "==" => Some("="),
            "≤" => Some("<="),
            "≥" => Some(">="),
            _ => None,
        };
        let message = match suggestion {
            Some(suggestion) => format!(
                "unknown numeric operator {}; did you mean {}?",
                quote(text),
                quote(suggestion)
            ),
            None => format!(
                "unknown numeric operator {}; use <, <=, =, >= or >",
                quote(text)
            ),
        };
        PatternError::new(path, message)
    })
}

/// A number numeric matching can work with: within ±5e9 and with at most six decimals.
fn check_numeric_operand(number: &Number, path: &str) -> Result<f64, PatternError> {
    let value = number.as_f64().filter(|value| in_numeric_range(*value));
    let Some(value) = value else {
        return Err(PatternError::new(
            path,
            format!(
                "{number} is outside the range numeric matching supports, {} to {}",
                -NUMERIC_LIMIT, NUMERIC_LIMIT
            ),
        ));
    };
    let decimals = value
        .to_string()
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    if decimals > MAX_DECIMAL_PLACES {
        return Err(PatternError::new(
            path,
            format!("{number} has more than {MAX_DECIMAL_PLACES} digits after the decimal point, which numeric matching does not support"),
        ));
    }
    Ok(value)
}
