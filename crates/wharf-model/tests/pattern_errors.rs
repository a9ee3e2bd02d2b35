//! Invalid event patterns: every one is rejected at the right place, and the messages
//! users see are reviewed as an insta snapshot (tests/snapshots/).

mod pattern_cases;

use wharf_model::pattern::EventPattern;

use crate::pattern_cases::invalid::INVALID_PATTERNS;

#[test]
fn invalid_patterns_are_rejected_at_their_path() {
    for (pattern, path) in INVALID_PATTERNS {
        match EventPattern::parse(pattern) {
            Ok(_) => panic!("{pattern} was accepted"),
            Err(error) => assert_eq!(error.path(), *path, "{pattern}: {error}"),
        }
    }
}

#[test]
fn invalid_pattern_messages() {
    let mut report = String::new();
    for (pattern, _) in INVALID_PATTERNS {
        let error = EventPattern::parse(pattern).unwrap_err();
        report.push_str(&format!("{pattern}\n    {error}\n"));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn valid_patterns_from_the_table_compile() {
    let mut rejected = Vec::new();
    pattern_cases::all(&mut |pattern: &str, _event: &str, _expected: bool| {
        if let Err(error) = EventPattern::parse(pattern) {
            rejected.push(format!("{pattern}: {error}"));
        }
    });
    assert!(rejected.is_empty(), "{rejected:#?}");
}
