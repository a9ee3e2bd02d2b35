//! Triggers as event patterns: the `object_created = { bucket, prefix, suffix }` sugar
//! and the conversion of a manifest [`Trigger`] into an [`EventPattern`].

use serde_json::{json, Value};

use crate::manifest::Trigger;
use crate::pattern::wildcard::escape_wildcard;
use crate::pattern::{EventPattern, PatternError};

/// `source` of the events Wharf emits for its buckets.
pub const OBJECT_EVENT_SOURCE: &str = "wharf.s3";

/// `detail-type` of the event emitted when an object is written.
pub const OBJECT_CREATED_DETAIL_TYPE: &str = "Object Created";

/// The pattern that `object_created = { bucket, prefix, suffix }` stands for:
///
/// ```json
/// {"source": ["wharf.s3"], "detail-type": ["Object Created"],
///  "detail": {"bucket": {"name": ["input"]}, "object": {"key": [...]}}}
/// ```
///
/// With only a prefix or only a suffix the key list is `[{"prefix": p}]` or
/// `[{"suffix": s}]`. With both, both must hold; as entries of a list are alternatives, the
/// key list is the wildcard `p*s` (with `*` and `\` in `p` and `s` escaped), which needs
/// the prefix and suffix not to overlap, plus the exact keys in which they do overlap
/// (prefix "logs/a", suffix "a.csv" and key "logs/a.csv"). An empty prefix or suffix
/// restricts nothing and is left out; with neither, `object` is left out.
pub fn object_created_pattern(bucket: &str, prefix: Option<&str>, suffix: Option<&str>) -> Value {
    let prefix = prefix.filter(|prefix| !prefix.is_empty());
    let suffix = suffix.filter(|suffix| !suffix.is_empty());
    let mut detail = json!({ "bucket": { "name": [bucket] } });
    let key: Option<Vec<Value>> = match (prefix, suffix) {
        (None, None) => None,
        (Some(prefix), None) => Some(vec![json!({ "prefix": prefix })]),
        (None, Some(suffix)) => Some(vec![json!({ "suffix": suffix })]),
        (Some(prefix), Some(suffix)) => {
            let wildcard = format!("{}*{}", escape_wildcard(prefix), escape_wildcard(suffix));
            let mut entries = vec![json!({ "wildcard": wildcard })];
            entries.extend(
                overlapping_keys(prefix, suffix)
                    .into_iter()
                    .map(Value::String),
            );
            Some(entries)
        }
    };
    if let (Some(key), Some(detail)) = (key, detail.as_object_mut()) {
        detail.insert("object".to_string(), json!({ "key": key }));
    }
    json!({
        "source": [OBJECT_EVENT_SOURCE],
        "detail-type": [OBJECT_CREATED_DETAIL_TYPE],
        "detail": detail,
    })
}

/// The keys shorter than `prefix` + `suffix` that start with `prefix` and end with
/// `suffix`: for each overlap where the end of the prefix is the start of the suffix,
/// `prefix` followed by the rest of `suffix`. Longest key first.
fn overlapping_keys(prefix: &str, suffix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for overlap in 1..=prefix.len().min(suffix.len()) {
        let prefix_tail = prefix.get(prefix.len() - overlap..);
        let suffix_head = suffix.get(..overlap);
        let suffix_rest = suffix.get(overlap..);
        if let (Some(tail), Some(head), Some(rest)) = (prefix_tail, suffix_head, suffix_rest) {
            if tail == head {
                keys.push(format!("{prefix}{rest}"));
            }
        }
    }
    keys
}

impl Trigger {
    /// The event pattern of an `object_created` or `pattern` trigger; `Ok(None)` for a
    /// schedule. A trigger that came through [`crate::manifest::load_manifest`] always
    /// compiles; the error is for triggers read from elsewhere (e.g. stored JSON).
    pub fn event_pattern(&self) -> Result<Option<EventPattern>, PatternError> {
        match self {
            Trigger::Schedule { .. } => Ok(None),
            Trigger::ObjectCreated {
                bucket,
                prefix,
                suffix,
            } => EventPattern::from_value(&object_created_pattern(
                bucket,
                prefix.as_deref(),
                suffix.as_deref(),
            ))
            .map(Some),
            Trigger::Pattern { pattern } => EventPattern::parse(pattern).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pattern::trigger::overlapping_keys;

    #[test]
    fn overlaps() {
        for (prefix, suffix, expected) in [
            ("a", "b", vec![]),
            ("a", "a", vec!["a"]),
            ("logs/a", "a.csv", vec!["logs/a.csv"]),
            ("aa", "aa", vec!["aaa", "aa"]),
            ("ab", "ba", vec!["aba"]),
            ("x/", ".csv", vec![]),
            ("é", "é", vec!["é"]),
            ("aé", "éb", vec!["aéb"]),
        ] {
            assert_eq!(
                overlapping_keys(prefix, suffix),
                expected,
                "{prefix} {suffix}"
            );
        }
    }
}
