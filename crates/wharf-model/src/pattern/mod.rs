//! Event patterns in the Amazon EventBridge pattern language: which events start a job.
//!
//! [`EventPattern::parse`] checks a pattern as strictly as EventBridge does (an error names
//! the place inside the pattern and how to fix it) and compiles it once; then
//! [`EventPattern::matches`] tests events against it without allocating for the common
//! operators, so one event can be checked against a hundred patterns cheaply.
//!
//! Supported: exact values (strings, numbers, booleans, null, the empty string), `prefix`,
//! `suffix` (both also with `{"equals-ignore-case": …}`), `equals-ignore-case`,
//! `wildcard`, `anything-but` (a value, a list, or `prefix`, `suffix`,
//! `equals-ignore-case`, `wildcard`), `numeric` (`=`, and ranges such as
//! `[">", 0, "<=", 5]`, within ±5e9), `exists`, `cidr`, `$or`, nested objects, and arrays
//! in events (a field matches when any element does; the fields of one pattern object
//! must all match within the same array element).
//!
//! Choices where the EventBridge documentation is silent, made to be the least
//! surprising: numbers match by value (300 matches 300.0), as EventBridge's matching
//! engine does today (older documentation says they would not); `anything-but` matches
//! values of any other type (`{"anything-but": "x"}` matches 5); `exists: false` inside an
//! array of objects is judged per element, like the other fields of that element; an
//! event that is not a JSON object matches nothing.
//!
//! # Why not the `quamina` crate
//!
//! `quamina` 0.7.0 (the newest that resolves here), a Rust port of Tim Bray's Go
//! Quamina, was evaluated first: its source was read, and it was run against the same
//! table as this module (`tests/pattern_cases`: every example of the EventBridge
//! documentation for each operator, the event-ruler README's examples and Wharf's own
//! Object Created events; 206 pattern/event cases and 62 patterns EventBridge rejects).
//! What it lacks:
//!
//! - `$or`: not implemented; `{"$or": [{"a": ["x"]}, {"b": ["y"]}]}` is rejected with
//!   "unknown operator 'a'".
//! - `anything-but` with `prefix`, `suffix`, `equals-ignore-case` or `wildcard`: rejected
//!   ("anything-but value must be a string, number, or array").
//! - `prefix` / `suffix` with `{"equals-ignore-case": …}`: rejected ("prefix value must
//!   be a string").
//!
//! Together these rejected 18 valid documentation patterns (50 of the 206 cases). Of the
//! rest it answered 4 wrongly: `{"numeric": [">", 0, "<=", 5]}` matches 0 (the exclusive
//! lower bound 0 of a two-sided range acts as inclusive); `{"cidr": "2001:db8::/32"}`
//! does not match "2001:db8::1"; numbers outside ±5e9 (1e300) still satisfy numeric
//! ranges, which EventBridge never does; and `[{"exists": false}, "x"]` does not match
//! the value "x".
//!
//! It also accepted 18 of the 62 patterns EventBridge rejects: empty patterns `{}`,
//! empty objects and value lists, lists inside lists, match expressions with two
//! operators (all but the first silently ignored), numeric bounds in any order, repeated
//! or empty (`["<", 5, ">", 0]`, `[">", 5, "<", 5]`), numbers beyond ±5e9 or with more
//! than six decimals, `$or` that is not a list of two or more objects, and operators
//! EventBridge does not have (`regexp`, `shellstyle`). Its errors are bare strings
//! without the place inside the pattern, so the `at detail.object.key[0]: …` messages
//! would need a validator of our own anyway; and it matches JSON bytes, so every event
//! (which Wharf holds as a `serde_json::Value`) would be serialised again. Its shared
//! automaton would pay off with many thousands of patterns; Wharf has about a hundred,
//! where compiling each pattern to a small tree is simpler and fast enough.

mod compile;
mod condition;
mod error;
mod evaluate;
mod operators;
mod trigger;
mod wildcard;

use serde_json::Value;

use crate::pattern::compile::{compile_pattern, ObjectMatcher};

pub use crate::pattern::error::PatternError;
pub use crate::pattern::trigger::{
    object_created_pattern, OBJECT_CREATED_DETAIL_TYPE, OBJECT_EVENT_SOURCE,
};

/// A checked and compiled event pattern.
#[derive(Debug, Clone)]
pub struct EventPattern {
    matcher: ObjectMatcher,
    source: Value,
}

impl EventPattern {
    /// Parses pattern text (a JSON object) and checks it.
    pub fn parse(text: &str) -> Result<EventPattern, PatternError> {
        let value: Value = serde_json::from_str(text).map_err(|error| {
            PatternError::new(
                "",
                format!(
                    "is not valid JSON ({error}); write a JSON object such as {}",
                    compile::PATTERN_EXAMPLE
                ),
            )
        })?;
        EventPattern::from_value(&value)
    }

    /// Checks an already parsed pattern.
    pub fn from_value(pattern: &Value) -> Result<EventPattern, PatternError> {
        Ok(EventPattern {
            matcher: compile_pattern(pattern)?,
            source: pattern.clone(),
        })
    }

    /// Whether `event` matches. Never panics, whatever the JSON; an event that is not an
    /// object never matches.
    pub fn matches(&self, event: &Value) -> bool {
        event.is_object() && evaluate::object_matches(&self.matcher, Some(event))
    }

    /// The pattern as it was given.
    pub fn as_json(&self) -> &Value {
        &self.source
    }
}
