//! "Did you mean …?" helpers.

/// Levenshtein distance between two strings, counted in characters.
pub(crate) fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    let mut current = vec![0; right.len() + 1];
    for (left_index, left_char) in left.chars().enumerate() {
        current[0] = left_index + 1;
        for (right_index, right_char) in right.iter().enumerate() {
            let substitution = previous[right_index] + usize::from(left_char != *right_char);
            current[right_index + 1] = substitution
                .min(previous[right_index + 1] + 1)
                .min(current[right_index] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[right.len()]
}

/// The candidate nearest to `input` if it is at most `max_distance` edits away, and at
/// most half the length of `input` (so "b" does not suggest "job"); the first one wins a tie.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max_distance: usize,
) -> Option<&'a str> {
    let max_distance = max_distance.min(input.chars().count() / 2);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(input, candidate);
        if distance <= max_distance
            && best.is_none_or(|(best_distance, _)| distance < best_distance)
        {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use crate::suggest::{closest, edit_distance};

    #[test]
    fn distances() {
        for (left, right, expected) in [
            ("", "", 0),
            ("abc", "", 3),
            ("", "abc", 3),
            ("timeout", "timeout", 0),
            ("timout", "timeout", 1),
            ("kitten", "sitting", 3),
            ("retires", "retries", 2),
            ("é", "e", 1),
        ] {
            assert_eq!(edit_distance(left, right), expected, "{left} {right}");
        }
    }

    #[test]
    fn closest_candidates() {
        let keys = ["timeout", "retries", "retry_backoff", "concurrency"];
        assert_eq!(closest("timout", keys, 2), Some("timeout"));
        assert_eq!(closest("retrys", keys, 2), Some("retries"));
        assert_eq!(closest("banana", keys, 2), None);
        assert_eq!(closest("x", [], 2), None);
        assert_eq!(closest("b", ["job"], 2), None);
        assert_eq!(closest("nmae", ["name"], 2), Some("name"));
        assert_eq!(closest("nam", ["name"], 2), Some("name"));
    }
}
