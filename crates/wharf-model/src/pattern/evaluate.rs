//! Matching a compiled pattern against an event.
//!
//! Recursion follows the pattern (whose depth is bounded at compile time), never the
//! event: arrays in the event, however deeply nested, are walked with an explicit stack.

use serde_json::Value;

use crate::pattern::compile::{FieldMatcher, FieldNode, ObjectMatcher};
use crate::pattern::condition::Condition;

/// Whether the event node `node` (absent: `None`) satisfies the object matcher.
///
/// An array is "crushed": the matcher must hold for one of its elements as a whole (so
/// all fields of one pattern object are matched within the same element, as EventBridge
/// does). An empty array is judged like an absent field.
pub(crate) fn object_matches(matcher: &ObjectMatcher, node: Option<&Value>) -> bool {
    match node {
        Some(Value::Array(items)) => {
            let mut saw_element = false;
            let found = any_crushed_element(items, |element| {
                saw_element = true;
                single_object_matches(matcher, Some(element))
            });
            found || (!saw_element && single_object_matches(matcher, None))
        }
        other => single_object_matches(matcher, other),
    }
}

/// `node` is not an array here: an object, a scalar (which has no fields) or nothing.
fn single_object_matches(matcher: &ObjectMatcher, node: Option<&Value>) -> bool {
    let map = node.and_then(Value::as_object);
    let fields_match = matcher
        .fields
        .iter()
        .all(|field| field_matches(field, map.and_then(|map| map.get(&field.key))));
    fields_match
        && (matcher.any_of.is_empty()
            || matcher
                .any_of
                .iter()
                .any(|alternative| single_object_matches(alternative, node)))
}

fn field_matches(field: &FieldMatcher, value: Option<&Value>) -> bool {
    match &field.node {
        FieldNode::Object(matcher) => object_matches(matcher, value),
        FieldNode::Values(conditions) => values_match(conditions, value),
    }
}

/// A value list matches when any entry holds for any leaf value of the field; `exists`
/// asks whether the field has a leaf value at all (an object is not one, as in
/// EventBridge, where `exists` works on leaf fields only).
fn values_match(conditions: &[Condition], value: Option<&Value>) -> bool {
    let mut has_leaf = false;
    let matched = any_leaf(value, |leaf| {
        has_leaf = true;
        conditions.iter().any(|condition| condition.holds(leaf))
    });
    matched
        || conditions.iter().any(
            |condition| matches!(condition, Condition::Exists(expected) if *expected == has_leaf),
        )
}

/// Calls `test` on each leaf (string, number, boolean or null) of `value`, looking
/// through arrays; stops at the first `true`.
fn any_leaf(value: Option<&Value>, mut test: impl FnMut(&Value) -> bool) -> bool {
    match value {
        None | Some(Value::Object(_)) => false,
        Some(Value::Array(items)) => {
            any_crushed_element(items, |element| !element.is_object() && test(element))
        }
        Some(leaf) => test(leaf),
    }
}

/// Calls `test` on each element of `items` that is not itself an array, descending into
/// nested arrays; stops at the first `true`.
fn any_crushed_element(items: &[Value], mut test: impl FnMut(&Value) -> bool) -> bool {
    items.iter().any(|item| match item {
        Value::Array(nested) => any_nested_element(nested, &mut test),
        element => test(element),
    })
}

/// Nested arrays are rare in events, so only they pay for an explicit stack (which keeps
/// deeply nested arrays from exhausting the call stack).
fn any_nested_element(items: &[Value], test: &mut impl FnMut(&Value) -> bool) -> bool {
    let mut stack: Vec<std::slice::Iter<'_, Value>> = vec![items.iter()];
    while let Some(iterator) = stack.last_mut() {
        match iterator.next() {
            Some(Value::Array(nested)) => stack.push(nested.iter()),
            Some(element) => {
                if test(element) {
                    return true;
                }
            }
            None => {
                stack.pop();
            }
        }
    }
    false
}
