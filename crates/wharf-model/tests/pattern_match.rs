//! Event patterns against events: the table of `tests/pattern_cases` (the EventBridge
//! documentation's examples for every operator, and Wharf's own events), the
//! `object_created` sugar, triggers, and odd inputs that must never panic.

mod pattern_cases;

use serde_json::{json, Value};
use wharf_model::manifest::Trigger;
use wharf_model::pattern::{object_created_pattern, EventPattern};

use crate::pattern_cases::{wharf_event, WHARF_OBJECT_CREATED};

fn check(pattern: &str, event: &str, expected: bool) {
    let compiled = EventPattern::parse(pattern)
        .unwrap_or_else(|error| panic!("pattern {pattern} was rejected: {error}"));
    let event: Value = serde_json::from_str(event)
        .unwrap_or_else(|error| panic!("event {event} is not JSON: {error}"));
    assert_eq!(
        compiled.matches(&event),
        expected,
        "pattern {pattern}\nevent   {event}"
    );
}

#[test]
fn values_null_and_empty_strings() {
    pattern_cases::values(&mut check);
}

#[test]
fn arrays_in_events() {
    pattern_cases::arrays(&mut check);
}

#[test]
fn prefix_suffix_and_equals_ignore_case() {
    pattern_cases::string_operators(&mut check);
}

#[test]
fn wildcard() {
    pattern_cases::wildcards(&mut check);
}

#[test]
fn anything_but() {
    pattern_cases::anything_but(&mut check);
}

#[test]
fn numeric() {
    pattern_cases::numeric(&mut check);
}

#[test]
fn cidr_exists_and_combined() {
    pattern_cases::other_operators(&mut check);
}

#[test]
fn or() {
    pattern_cases::or(&mut check);
}

#[test]
fn wharf_object_created_events() {
    pattern_cases::wharf_object_created(&mut check);
}

/// `object_created = { bucket, prefix, suffix }` against keys, checked against the
/// plain definition: the bucket is equal, and the key starts with prefix and ends with
/// suffix.
#[test]
fn object_created_sugar() {
    let prefixes = [
        None,
        Some(""),
        Some("data/"),
        Some("a*"),
        Some("logs/a"),
        Some("x\\"),
        Some("*"),
    ];
    let suffixes = [
        None,
        Some(""),
        Some(".rds"),
        Some("*.csv"),
        Some("a.csv"),
        Some("\\"),
        Some("*"),
    ];
    let keys = [
        "data/x.rds",
        "data/x.csv",
        "x.rds",
        "data/",
        "a*b.csv",
        "a*.csv",
        "ab*.csv",
        "logs/a.csv",
        "logs/a",
        "logs/ab.csv",
        "a.csv",
        "x\\\\",
        "x\\",
        "*",
        "**",
        "*.csv",
        "",
        "data/.rds",
        "données/été.rds",
    ];
    for prefix in prefixes {
        for suffix in suffixes {
            let pattern = object_created_pattern("input", prefix, suffix);
            let compiled = EventPattern::from_value(&pattern)
                .unwrap_or_else(|error| panic!("{pattern} was rejected: {error}"));
            for key in keys {
                for bucket in ["input", "output"] {
                    let expected = bucket == "input"
                        && key.starts_with(prefix.unwrap_or(""))
                        && key.ends_with(suffix.unwrap_or(""));
                    let event: Value = serde_json::from_str(&wharf_event(bucket, key)).unwrap();
                    assert_eq!(
                        compiled.matches(&event),
                        expected,
                        "prefix {prefix:?} suffix {suffix:?} bucket {bucket} key {key:?}\npattern {pattern}"
                    );
                }
            }
        }
    }
}

#[test]
fn object_created_pattern_shape() {
    assert_eq!(
        object_created_pattern("input", None, Some(".rds")),
        json!({
            "source": ["wharf.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["input"]}, "object": {"key": [{"suffix": ".rds"}]}}
        })
    );
    assert_eq!(
        object_created_pattern("input", Some("in/"), None)["detail"]["object"],
        json!({"key": [{"prefix": "in/"}]})
    );
    assert_eq!(
        object_created_pattern("input", Some("a*/"), Some(".csv"))["detail"]["object"],
        json!({"key": [{"wildcard": "a\\*/*.csv"}]})
    );
    assert_eq!(
        object_created_pattern("input", Some("logs/a"), Some("a.csv"))["detail"]["object"],
        json!({"key": [{"wildcard": "logs/a*a.csv"}, "logs/a.csv"]})
    );
    assert_eq!(
        object_created_pattern("input", None, None),
        json!({
            "source": ["wharf.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["input"]}}
        })
    );
}

#[test]
fn triggers_as_patterns() {
    let event: Value = serde_json::from_str(WHARF_OBJECT_CREATED).unwrap();
    let schedule = Trigger::Schedule {
        schedule: "0 * * * *".to_string(),
        timezone: None,
        catch_up: None,
    };
    assert!(schedule.event_pattern().unwrap().is_none());
    for (trigger, expected) in [
        (
            Trigger::ObjectCreated {
                bucket: "input".to_string(),
                prefix: Some("data/".to_string()),
                suffix: Some(".rds".to_string()),
            },
            true,
        ),
        (
            Trigger::ObjectCreated {
                bucket: "input".to_string(),
                prefix: None,
                suffix: Some(".csv".to_string()),
            },
            false,
        ),
        (
            Trigger::Pattern {
                pattern: r#"{"source": ["wharf.s3"], "detail": {"requester": ["alice"]}}"#
                    .to_string(),
            },
            true,
        ),
        (
            Trigger::Pattern {
                pattern: r#"{"source": ["aws.s3"]}"#.to_string(),
            },
            false,
        ),
    ] {
        let pattern = trigger.event_pattern().unwrap().unwrap();
        assert_eq!(pattern.matches(&event), expected, "{trigger:?}");
    }
    let broken = Trigger::Pattern {
        pattern: r#"{"source": "wharf.s3"}"#.to_string(),
    };
    assert_eq!(broken.event_pattern().unwrap_err().path(), "source");
}

#[test]
fn as_json_returns_the_pattern() {
    let text = r#"{"source": ["wharf.s3"]}"#;
    let pattern = EventPattern::parse(text).unwrap();
    assert_eq!(pattern.as_json(), &json!({"source": ["wharf.s3"]}));
}

/// A small deterministic generator of JSON values (no external property-testing crate).
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[(self.next() % choices.len() as u64) as usize]
    }

    fn value(&mut self, depth: usize) -> Value {
        let keys = ["source", "detail", "state", "key", "n", "a", "b", "$or", ""];
        match self.next() % if depth == 0 { 6 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(self.next() & 1 == 0),
            2 => json!(self.next() as i64),
            3 => json!(f64::from_bits(self.next()) % 1e12),
            4 => json!(self.pick(&[
                "",
                "a",
                "running",
                "10.0.0.1",
                "data/x.rds",
                "*",
                "\\",
                "é",
                "STATE"
            ])),
            5 => json!(self.next() % 7),
            6 => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.next() % 4 {
                    map.insert(self.pick(&keys).to_string(), self.value(depth - 1));
                }
                Value::Object(map)
            }
        }
    }
}

/// Deeper than serde_json parses from text (128) and than patterns may be (32); much
/// deeper values overflow the stack in serde_json's own recursive drop, not in matching.
const DEEP: usize = 500;

fn nested_arrays(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, _| Value::Array(vec![inner]))
}

fn nested_objects(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, _| json!({ "a": inner }))
}

/// Odd events never panic, whatever the pattern; the results stay sane.
#[test]
fn odd_events_never_panic() {
    let patterns: Vec<EventPattern> = [
        r#"{"a": ["x"]}"#,
        r#"{"a": {"a": [{"exists": false}]}}"#,
        r#"{"a": [{"exists": true}]}"#,
        r#"{"a": [{"numeric": [">", 0]}], "b": [{"anything-but": {"prefix": "x"}}]}"#,
        r#"{"$or": [{"a": [{"wildcard": "*x*"}]}, {"b": [{"cidr": "10.0.0.0/8"}]}]}"#,
        r#"{"source": [{"suffix": {"equals-ignore-case": "É"}}], "detail": {"state": [{"prefix": {"equals-ignore-case": "ST"}}]}}"#,
        r#"{"n": [{"anything-but": [1, 2]}, 18446744073709551615, -9223372036854775808, 1e308]}"#,
    ]
    .iter()
    .map(|text| EventPattern::parse(text).unwrap())
    .collect();
    let mut events = vec![
        Value::Null,
        json!(true),
        json!(5),
        json!("event"),
        json!([]),
        json!([{"a": "x"}]),
        json!({}),
        json!({"a": []}),
        json!({"a": [[], [[]]]}),
        json!({"a": null, "b": {}}),
        json!({"a": u64::MAX, "n": u64::MAX}),
        json!({"a": i64::MIN, "n": i64::MIN}),
        json!({"a": f64::MAX, "n": f64::MIN_POSITIVE}),
        json!({"a": "x".repeat(100_000)}),
        json!({"source": "\u{0130}", "detail": {"state": "\u{0130}\u{0130}"}}),
        json!({"a": nested_arrays(DEEP, json!("x"))}),
        json!({"a": nested_arrays(DEEP, json!({"a": "x"}))}),
        nested_objects(DEEP, json!("x")),
    ];
    let mut generator = Generator(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2_000 {
        events.push(generator.value(5));
    }
    for event in &events {
        for pattern in &patterns {
            let matched = pattern.matches(event);
            if !event.is_object() {
                assert!(!matched, "{} matched a non-object event", pattern.as_json());
            }
        }
    }
    let deep_array = json!({"a": nested_arrays(DEEP, json!("x"))});
    assert!(patterns[0].matches(&deep_array));
}

/// Random patterns either compile or are rejected with a path; none panics.
#[test]
fn odd_patterns_never_panic() {
    let mut generator = Generator(0xD1B5_4A32_D192_ED03);
    let mut compiled = 0;
    for _ in 0..5_000 {
        let pattern = generator.value(5);
        if let Ok(pattern) = EventPattern::from_value(&pattern) {
            compiled += 1;
            let _ = pattern.matches(&generator.value(4));
        }
    }
    assert!(compiled > 0, "the generator never made a valid pattern");
    let deep = nested_objects(DEEP, json!(["x"]));
    let error = EventPattern::from_value(&deep).unwrap_err();
    assert!(error.message().contains("nested more than"), "{error}");
}
