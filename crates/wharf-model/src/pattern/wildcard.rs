//! `{"wildcard": "dir/*.png"}`: `*` matches any run of characters (also none), `\*` a
//! literal star and `\\` a literal backslash. Split into literal pieces once, at compile
//! time; matching is then a prefix check, a suffix check and a left-to-right search.

/// A compiled wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wildcard {
    /// The literal pieces between the stars, unescaped; one more than the number of stars.
    pieces: Vec<String>,
}

/// Why a wildcard text is invalid, with the character position for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WildcardError {
    ConsecutiveStars { position: usize },
    BadEscape { position: usize },
}

impl WildcardError {
    pub(crate) fn describe(&self, text: &str) -> String {
        match self {
            WildcardError::ConsecutiveStars { position } => format!(
                "{} has two * in a row at character {}; one * already matches any run of characters, so write a single *",
                crate::pattern::error::quote(text),
                position + 1
            ),
            WildcardError::BadEscape { position } => format!(
                "{} has a backslash at character {} that escapes nothing valid; only \\* (a literal star) and \\\\ (a literal backslash) are allowed",
                crate::pattern::error::quote(text),
                position + 1
            ),
        }
    }
}

impl Wildcard {
    pub(crate) fn parse(text: &str) -> Result<Wildcard, WildcardError> {
        let mut pieces = vec![String::new()];
        let mut characters = text.chars().enumerate().peekable();
        while let Some((position, character)) = characters.next() {
            match character {
                '*' => {
                    if matches!(characters.peek(), Some((_, '*'))) {
                        return Err(WildcardError::ConsecutiveStars { position });
                    }
                    pieces.push(String::new());
                }
                '\\' => match characters.next() {
                    Some((_, escaped @ ('*' | '\\'))) => push_to_last(&mut pieces, escaped),
                    _ => return Err(WildcardError::BadEscape { position }),
                },
                other => push_to_last(&mut pieces, other),
            }
        }
        Ok(Wildcard { pieces })
    }

    /// Whether `value` matches. Never panics: every slice is taken at a boundary that a
    /// successful `starts_with`/`ends_with`/`find` of a whole string guarantees.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return value.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return value == first;
        };
        if value.len() < first.len() + last.len()
            || !value.starts_with(first.as_str())
            || !value.ends_with(last.as_str())
        {
            return false;
        }
        let Some(mut remaining) = value.get(first.len()..value.len() - last.len()) else {
            return false;
        };
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(start) => match remaining.get(start + piece.len()..) {
                    Some(after) => remaining = after,
                    None => return false,
                },
                None => return false,
            }
        }
        true
    }
}

fn push_to_last(pieces: &mut [String], character: char) {
    if let Some(last) = pieces.last_mut() {
        last.push(character);
    }
}

/// `text` with `*` and `\` escaped, so that it matches itself literally inside a wildcard.
pub(crate) fn escape_wildcard(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use crate::pattern::wildcard::{escape_wildcard, Wildcard, WildcardError};

    fn check(wildcard: &str, value: &str, expected: bool) {
        let compiled = Wildcard::parse(wildcard).unwrap();
        assert_eq!(
            compiled.matches(value),
            expected,
            "wildcard {wildcard:?} against {value:?}"
        );
    }

    #[test]
    fn matching() {
        check("", "", true);
        check("", "a", false);
        check("*", "", true);
        check("*", "anything", true);
        check("abc", "abc", true);
        check("abc", "abcd", false);
        check("a*", "a", true);
        check("a*", "abc", true);
        check("a*", "ba", false);
        check("*c", "abc", true);
        check("*c", "cb", false);
        check("a*c", "ac", true);
        check("a*c", "abbbc", true);
        check("a*c", "abcd", false);
        check("ab*ba", "aba", false);
        check("ab*ba", "abba", true);
        check("*a*", "bab", true);
        check("*a*", "bbb", false);
        check("a*b*c", "abc", true);
        check("a*b*c", "axxbyyc", true);
        check("a*b*c", "acb", false);
        check("*x*x*", "x", false);
        check("*x*x*", "xx", true);
        check("dir/*.png", "dir/image.png", true);
        check("dir/*.png", "dir/sub/image.png", true);
        check("dir/*.png", "dir/image.jpg", false);
        check("*/lib/*", "/usr/lib/x", true);
        check("*/lib/*", "/usr/local/x", false);
        check("Simple*Service", "SimpleQueueService", true);
        check("Simple*Service", "SimpleService", true);
        check("Simple*Service", "Simple Storage", false);
        check(r"a\*b", "a*b", true);
        check(r"a\*b", "axb", false);
        check(r"a\\b", r"a\b", true);
        check(r"a\\*", r"a\anything", true);
        check("é*ü", "éabcü", true);
        check("é*ü", "éü", true);
        check("*ü", "ü", true);
        check("日本*", "日本語", true);
    }

    #[test]
    fn invalid() {
        for (text, expected) in [
            ("a**b", WildcardError::ConsecutiveStars { position: 1 }),
            ("**", WildcardError::ConsecutiveStars { position: 0 }),
            (r"a\b", WildcardError::BadEscape { position: 1 }),
            ("a\\", WildcardError::BadEscape { position: 1 }),
        ] {
            assert_eq!(Wildcard::parse(text), Err(expected), "{text}");
        }
        assert!(Wildcard::parse(r"\**").is_ok());
    }

    #[test]
    fn escaping_round_trips() {
        for literal in ["plain", "a*b", r"a\b", r"\*", "**", "", "日*本"] {
            let wildcard = Wildcard::parse(&escape_wildcard(literal)).unwrap();
            assert!(wildcard.matches(literal), "{literal:?}");
            assert!(!wildcard.matches(&format!("{literal}x")), "{literal:?}");
        }
    }
}
