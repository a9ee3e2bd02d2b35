//! One compiled entry of a value list, and how it tests one leaf value of an event.
//!
//! Strings for the case-insensitive operators are lowercased once when the pattern is
//! compiled; event values are lowercased lazily, character by character, while comparing.

use std::net::IpAddr;

use serde_json::{Number, Value};

use crate::pattern::wildcard::Wildcard;

/// The range numeric matching works in, as in EventBridge: operands outside it are
/// rejected, event values outside it never match a numeric comparison.
pub(crate) const NUMERIC_LIMIT: f64 = 5e9;

/// One entry of a value list such as `["a", {"prefix": "b"}]`.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Exact(Literal),
    Prefix(String),
    /// Lowercased.
    PrefixIgnoreCase(String),
    Suffix(String),
    /// Lowercased.
    SuffixIgnoreCase(String),
    /// Lowercased.
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(NumericRange),
    Cidr(CidrBlock),
    /// `{"exists": true}` / `{"exists": false}`: judged on the whole field, not per value.
    Exists(bool),
}

/// A literal value from a pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    String(String),
    Number(Number),
    Bool(bool),
    Null,
}

/// What `anything-but` excludes; it matches every leaf value the exclusion does not cover
/// (values of other types included, as in EventBridge).
#[derive(Debug, Clone)]
pub(crate) enum AnythingBut {
    Strings(Vec<String>),
    Numbers(Vec<Number>),
    Prefixes(Vec<String>),
    Suffixes(Vec<String>),
    /// Lowercased.
    IgnoreCase(Vec<String>),
    Wildcards(Vec<Wildcard>),
}

/// `{"numeric": [">", 0, "<=", 5]}`: optional lower and upper bounds, each with whether it
/// is inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NumericRange {
    pub(crate) lower: Option<Bound>,
    pub(crate) upper: Option<Bound>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub(crate) value: f64,
    pub(crate) inclusive: bool,
}

/// `{"cidr": "10.0.0.0/24"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CidrBlock {
    pub(crate) network: IpAddr,
    pub(crate) prefix_length: u8,
}

impl Condition {
    /// Whether this condition holds for one leaf value (a string, number, boolean or null).
    /// `Exists` is decided per field by the caller and is `false` here.
    pub(crate) fn holds(&self, leaf: &Value) -> bool {
        match self {
            Condition::Exact(literal) => literal.equals(leaf),
            Condition::Prefix(prefix) => leaf
                .as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Condition::PrefixIgnoreCase(prefix) => leaf
                .as_str()
                .is_some_and(|s| starts_with_ignoring_case(s, prefix)),
            Condition::Suffix(suffix) => {
                leaf.as_str().is_some_and(|s| s.ends_with(suffix.as_str()))
            }
            Condition::SuffixIgnoreCase(suffix) => leaf
                .as_str()
                .is_some_and(|s| ends_with_ignoring_case(s, suffix)),
            Condition::EqualsIgnoreCase(text) => {
                leaf.as_str().is_some_and(|s| equals_ignoring_case(s, text))
            }
            Condition::Wildcard(wildcard) => leaf.as_str().is_some_and(|s| wildcard.matches(s)),
            Condition::AnythingBut(excluded) => !excluded.covers(leaf),
            Condition::Numeric(range) => leaf.as_number().is_some_and(|n| range.contains(n)),
            Condition::Cidr(block) => leaf.as_str().is_some_and(|s| block.contains(s)),
            Condition::Exists(_) => false,
        }
    }
}

impl Literal {
    pub(crate) fn from_json(value: &Value) -> Option<Literal> {
        match value {
            Value::String(text) => Some(Literal::String(text.clone())),
            Value::Number(number) => Some(Literal::Number(number.clone())),
            Value::Bool(flag) => Some(Literal::Bool(*flag)),
            Value::Null => Some(Literal::Null),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn equals(&self, leaf: &Value) -> bool {
        match (self, leaf) {
            (Literal::String(expected), Value::String(actual)) => expected == actual,
            (Literal::Number(expected), Value::Number(actual)) => numbers_equal(expected, actual),
            (Literal::Bool(expected), Value::Bool(actual)) => expected == actual,
            (Literal::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl AnythingBut {
    /// Whether `leaf` is one of the excluded values.
    fn covers(&self, leaf: &Value) -> bool {
        match self {
            AnythingBut::Strings(strings) => leaf
                .as_str()
                .is_some_and(|s| strings.iter().any(|excluded| excluded == s)),
            AnythingBut::Numbers(numbers) => leaf
                .as_number()
                .is_some_and(|n| numbers.iter().any(|excluded| numbers_equal(excluded, n))),
            AnythingBut::Prefixes(prefixes) => leaf
                .as_str()
                .is_some_and(|s| prefixes.iter().any(|prefix| s.starts_with(prefix.as_str()))),
            AnythingBut::Suffixes(suffixes) => leaf
                .as_str()
                .is_some_and(|s| suffixes.iter().any(|suffix| s.ends_with(suffix.as_str()))),
            AnythingBut::IgnoreCase(texts) => leaf
                .as_str()
                .is_some_and(|s| texts.iter().any(|text| equals_ignoring_case(s, text))),
            AnythingBut::Wildcards(wildcards) => leaf
                .as_str()
                .is_some_and(|s| wildcards.iter().any(|wildcard| wildcard.matches(s))),
        }
    }
}

impl NumericRange {
    fn contains(&self, number: &Number) -> bool {
        let Some(value) = number.as_f64().filter(|v| in_numeric_range(*v)) else {
            return false;
        };
        let above_lower = self
            .lower
            .is_none_or(|bound| value > bound.value || (bound.inclusive && value == bound.value));
        let below_upper = self
            .upper
            .is_none_or(|bound| value < bound.value || (bound.inclusive && value == bound.value));
        above_lower && below_upper
    }
}

impl CidrBlock {
    /// Parses `10.0.0.0/24` or `2001:db8::/32`.
    pub(crate) fn parse(text: &str) -> Option<CidrBlock> {
        let (address, length) = text.split_once('/')?;
        let network: IpAddr = address.parse().ok()?;
        if length.is_empty() || !length.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let prefix_length: u8 = length.parse().ok()?;
        let maximum = if network.is_ipv4() { 32 } else { 128 };
        (prefix_length <= maximum).then_some(CidrBlock {
            network,
            prefix_length,
        })
    }

    fn contains(&self, text: &str) -> bool {
        let Ok(address) = text.parse::<IpAddr>() else {
            return false;
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => same_prefix(
                u128::from(u32::from(network)) << 96,
                u128::from(u32::from(address)) << 96,
                self.prefix_length,
            ),
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                same_prefix(u128::from(network), u128::from(address), self.prefix_length)
            }
            _ => false,
        }
    }
}

/// Whether the first `length` bits of two left-aligned 128-bit addresses agree.
fn same_prefix(left: u128, right: u128, length: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
    left & mask == right & mask
}

pub(crate) fn in_numeric_range(value: f64) -> bool {
    value.is_finite() && (-NUMERIC_LIMIT..=NUMERIC_LIMIT).contains(&value)
}

/// Numbers in patterns match by value within the numeric range (so 300 matches 300.0, as
/// in EventBridge today) and by exact representation outside it (so large IDs such as
/// account numbers still match exactly).
fn numbers_equal(left: &Number, right: &Number) -> bool {
    if left == right {
        return true;
    }
    match (left.as_f64(), right.as_f64()) {
        (Some(l), Some(r)) => in_numeric_range(l) && in_numeric_range(r) && l == r,
        _ => false,
    }
}

fn lowercase(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().flat_map(char::to_lowercase)
}

/// `expected_lowercase` is already lowercased.
fn equals_ignoring_case(value: &str, expected_lowercase: &str) -> bool {
    lowercase(value).eq(expected_lowercase.chars())
}

fn starts_with_ignoring_case(value: &str, prefix_lowercase: &str) -> bool {
    let mut value_characters = lowercase(value);
    prefix_lowercase
        .chars()
        .all(|expected| value_characters.next() == Some(expected))
}

fn ends_with_ignoring_case(value: &str, suffix_lowercase: &str) -> bool {
    let mut value_characters = value.chars().rev().flat_map(|c| c.to_lowercase().rev());
    suffix_lowercase
        .chars()
        .rev()
        .all(|expected| value_characters.next() == Some(expected))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Number, Value};

    use crate::pattern::condition::{
        ends_with_ignoring_case, equals_ignoring_case, numbers_equal, starts_with_ignoring_case,
        CidrBlock,
    };

    fn number(value: Value) -> Number {
        match value {
            Value::Number(number) => number,
            other => panic!("not a number: {other}"),
        }
    }

    #[test]
    fn ignoring_case() {
        assert!(equals_ignoring_case("ALICE", "alice"));
        assert!(!equals_ignoring_case("ALICE!", "alice"));
        assert!(starts_with_ignoring_case("EventBridge", "eventb"));
        assert!(!starts_with_ignoring_case("Even", "eventb"));
        assert!(ends_with_ignoring_case("image.PNG", ".png"));
        assert!(ends_with_ignoring_case("X.png", ".png"));
        assert!(!ends_with_ignoring_case("png", ".png"));
        assert!(equals_ignoring_case("ÄRGER", "ärger"));
        assert!(ends_with_ignoring_case("straÉ", "aé"));
    }

    #[test]
    fn numbers() {
        for (left, right, expected) in [
            (json!(300), json!(300.0), true),
            (json!(300), json!(3.0e2), true),
            (json!(-1), json!(-1.0), true),
            (json!(301.8), json!(3.018e2), true),
            (json!(1), json!(2), false),
            (json!(123456789012_u64), json!(123456789012_u64), true),
            (json!(123456789012_u64), json!(123456789012.0), false),
            (json!(u64::MAX), json!(u64::MAX), true),
            (json!(i64::MIN), json!(i64::MIN), true),
        ] {
            assert_eq!(
                numbers_equal(&number(left.clone()), &number(right.clone())),
                expected,
                "{left} {right}"
            );
        }
    }

    #[test]
    fn cidr_blocks() {
        let block = CidrBlock::parse("10.0.0.0/24").unwrap();
        assert!(block.contains("10.0.0.0"));
        assert!(block.contains("10.0.0.255"));
        assert!(!block.contains("10.0.1.0"));
        assert!(!block.contains("not an address"));
        assert!(!block.contains("::1"));
        let everything = CidrBlock::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains("192.168.1.1"));
        let single = CidrBlock::parse("192.168.1.1/32").unwrap();
        assert!(single.contains("192.168.1.1"));
        assert!(!single.contains("192.168.1.2"));
        let v6 = CidrBlock::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1"));
        assert!(!v6.contains("2001:db9::1"));
        assert!(CidrBlock::parse("::/0").unwrap().contains("::1"));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "x/8",
            "::/129",
            "1.2.3.4/+8",
        ] {
            assert_eq!(CidrBlock::parse(bad), None, "{bad}");
        }
    }
}
