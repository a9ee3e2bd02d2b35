//! Human-written durations ("10m", "1h30m", "500ms") and sizes ("512MiB").

use std::time::Duration;

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;
const NANOS_PER_DAY: u128 = 24 * NANOS_PER_HOUR;

/// Units in the order `format_duration` writes them.
const DURATION_UNITS: [(&str, u128); 7] = [
    ("d", NANOS_PER_DAY),
    ("h", NANOS_PER_HOUR),
    ("m", NANOS_PER_MINUTE),
    ("s", NANOS_PER_SECOND),
    ("ms", NANOS_PER_MILLI),
    ("us", NANOS_PER_MICRO),
    ("ns", 1),
];

const DURATION_ADVICE: &str =
    "write a whole number with a unit (ms, s, m, h or d), such as \"10m\" or \"1h30m\"";

enum DurationProblem {
    MissingUnit(String),
    UnknownUnit(String),
    Fraction,
    Overflow,
    Malformed,
}

/// The length of one `unit` in nanoseconds. `lenient` also accepts words such as
/// "minutes" (input must be lowercased), used only to suggest the compact spelling.
fn duration_unit_nanos(unit: &str, lenient: bool) -> Option<u128> {
    let strict = DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, nanos)| *nanos);
    if strict.is_some() || !lenient {
        return strict;
    }
    let nanos = match unit {
        "nanosecond" | "nanoseconds" | "nsec" | "nsecs" => 1,
        "µs" | "microsecond" | "microseconds" | "usec" | "usecs" => NANOS_PER_MICRO,
        "millisecond" | "milliseconds" | "msec" | "msecs" | "millis" => NANOS_PER_MILLI,
        "sec" | "secs" | "second" | "seconds" => NANOS_PER_SECOND,
        "min" | "mins" | "minute" | "minutes" => NANOS_PER_MINUTE,
        "hr" | "hrs" | "hour" | "hours" => NANOS_PER_HOUR,
        "day" | "days" => NANOS_PER_DAY,
        _ => return None,
    };
    Some(nanos)
}

fn parse_duration_components(text: &str, lenient: bool) -> Result<Duration, DurationProblem> {
    let characters: Vec<char> = text.chars().collect();
    let mut position = 0;
    let mut total: u128 = 0;
    let mut components = 0;
    let skip_separators = |position: &mut usize| {
        while lenient && *position < characters.len() {
            let rest: String = characters[*position..].iter().take(4).collect();
            if characters[*position].is_whitespace() || characters[*position] == ',' {
                *position += 1;
            } else if rest.starts_with("and") && components_follow(&characters[*position + 3..]) {
                *position += 3;
            } else {
                break;
            }
        }
    };
    loop {
        skip_separators(&mut position);
        if position == characters.len() {
            break;
        }
        let number_start = position;
        while position < characters.len() && characters[position].is_ascii_digit() {
            position += 1;
        }
        if position == number_start {
            return Err(DurationProblem::Malformed);
        }
        let digits: String = characters[number_start..position].iter().collect();
        if position < characters.len() && characters[position] == '.' {
            return Err(DurationProblem::Fraction);
        }
        if lenient {
            while position < characters.len() && characters[position].is_whitespace() {
                position += 1;
            }
        }
        let unit_start = position;
        while position < characters.len() && characters[position].is_alphabetic() {
            position += 1;
        }
        let unit: String = characters[unit_start..position].iter().collect();
        if unit.is_empty() {
            return Err(DurationProblem::MissingUnit(digits));
        }
        let unit_nanos = duration_unit_nanos(&unit, lenient)
            .ok_or_else(|| DurationProblem::UnknownUnit(unit.clone()))?;
        let number: u128 = digits.parse().map_err(|_| DurationProblem::Overflow)?;
        total = number
            .checked_mul(unit_nanos)
            .and_then(|nanos| total.checked_add(nanos))
            .ok_or(DurationProblem::Overflow)?;
        components += 1;
    }
    if components == 0 {
        return Err(DurationProblem::Malformed);
    }
    duration_from_nanos(total).ok_or(DurationProblem::Overflow)
}

/// True when `rest` (after the word "and") starts with whitespace and then a digit.
fn components_follow(rest: &[char]) -> bool {
    rest.first().is_some_and(|c| c.is_whitespace())
        && rest
            .iter()
            .find(|c| !c.is_whitespace())
            .is_some_and(char::is_ascii_digit)
}

fn duration_from_nanos(nanos: u128) -> Option<Duration> {
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).ok()?;
    let subsecond = u32::try_from(nanos % NANOS_PER_SECOND).ok()?;
    Some(Duration::new(seconds, subsecond))
}

/// Parses "500ms", "10s", "10m", "2h", "1d" and compounds such as "1h30m".
/// The error explains what is wrong and, when it can, gives the spelling to use.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("\"{text}\" is not a duration; {DURATION_ADVICE}"));
    }
    if trimmed.starts_with('-') {
        return Err(format!(
            "\"{text}\" is not a duration: it cannot be negative; {DURATION_ADVICE}"
        ));
    }
    let problem = match parse_duration_components(trimmed, false) {
        Ok(duration) => return Ok(duration),
        Err(problem) => problem,
    };
    if !matches!(problem, DurationProblem::Overflow) {
        if let Ok(duration) = parse_duration_components(&trimmed.to_lowercase(), true) {
            return Err(format!(
                "\"{text}\" is not a duration; write \"{}\"",
                format_duration(duration)
            ));
        }
    }
    Err(match problem {
        DurationProblem::MissingUnit(number) => format!(
            "\"{text}\" is not a duration: the number has no unit; write for example \"{number}s\" or \"{number}m\""
        ),
        DurationProblem::UnknownUnit(unit) => format!(
            "\"{text}\" is not a duration: unknown unit \"{unit}\"; use ms, s, m, h or d, such as \"1h30m\""
        ),
        DurationProblem::Fraction => format!(
            "\"{text}\" is not a duration: use whole numbers and smaller units, such as \"1h30m\" for 1.5 hours"
        ),
        DurationProblem::Overflow => format!("\"{text}\" is not a duration: it is far too long"),
        DurationProblem::Malformed => format!("\"{text}\" is not a duration; {DURATION_ADVICE}"),
    })
}

/// Writes a duration compactly ("1h30m", "500ms", "0s"); `parse_duration` reads it back
/// exactly (sub-millisecond parts use "us" and "ns").
pub fn format_duration(duration: Duration) -> String {
    let mut rest = duration.as_nanos();
    if rest == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for (unit, unit_nanos) in DURATION_UNITS {
        let count = rest / unit_nanos;
        if count > 0 {
            text.push_str(&count.to_string());
            text.push_str(unit);
            rest %= unit_nanos;
        }
    }
    text
}

const SIZE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

const SIZE_ADVICE: &str =
    "write a whole number of bytes or use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, such as \"512MiB\"";

/// Parses a size in bytes: "1024", "10KiB", "512MiB", "1GiB", "100MB" (units are
/// case-insensitive; KiB = 1024 bytes, KB = 1000 bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "\"{text}\" is not a size: it cannot be negative; {SIZE_ADVICE}"
        ));
    }
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let unit = unit.trim();
    if digits.is_empty() {
        return Err(format!("\"{text}\" is not a size; {SIZE_ADVICE}"));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "\"{text}\" is not a size: use a whole number with a smaller unit, such as \"1536MiB\" for 1.5GiB"
        ));
    }
    let multiplier = if unit.is_empty() {
        Some(1)
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, bytes)| *bytes)
    };
    let Some(multiplier) = multiplier else {
        return Err(format!(
            "\"{text}\" is not a size: unknown unit \"{unit}\"; {SIZE_ADVICE}"
        ));
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(|| format!("\"{text}\" is not a size: it is far too large"))
}

/// Writes a size with the largest unit that divides it exactly ("512MiB", "100MB",
/// "1000B"); `parse_size` reads it back exactly.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    for (unit, unit_bytes) in SIZE_UNITS {
        if bytes.checked_rem(unit_bytes) == Some(0) {
            return format!("{}{unit}", bytes / unit_bytes);
        }
    }
    format!("{bytes}B")
}

/// Serde helpers that store a `Duration` as its compact text ("10m") and also read
/// whole milliseconds, so stored JSON stays readable.
pub(crate) mod compact_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::duration::{format_duration, parse_duration};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrMillis {
        Text(String),
        Millis(u64),
    }

    impl TextOrMillis {
        fn into_duration<E: serde::de::Error>(self) -> Result<Duration, E> {
            match self {
                TextOrMillis::Text(text) => parse_duration(&text).map_err(E::custom),
                TextOrMillis::Millis(millis) => Ok(Duration::from_millis(millis)),
            }
        }
    }

    pub(crate) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        TextOrMillis::deserialize(deserializer)?.into_duration()
    }

    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        use crate::duration::compact_serde::TextOrMillis;
        use crate::duration::format_duration;

        pub(crate) fn serialize<S: Serializer>(
            duration: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match duration {
                Some(duration) => serializer.serialize_str(&format_duration(*duration)),
                None => serializer.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<TextOrMillis>::deserialize(deserializer)?
                .map(TextOrMillis::into_duration)
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::duration::{format_duration, format_size, parse_duration, parse_size};

    fn check_duration(text: &str, expected: Result<Duration, &str>) {
        assert_eq!(
            parse_duration(text),
            expected.map_err(str::to_string),
            "{text:?}"
        );
    }

    const fn seconds(count: u64) -> Duration {
        Duration::from_secs(count)
    }

    #[test]
    fn good_durations() {
        check_duration("500ms", Ok(Duration::from_millis(500)));
        check_duration("10s", Ok(seconds(10)));
        check_duration("10m", Ok(seconds(600)));
        check_duration("2h", Ok(seconds(7200)));
        check_duration("1d", Ok(seconds(86_400)));
        check_duration("1h30m", Ok(seconds(5400)));
        check_duration("1d2h3m4s5ms", Ok(Duration::from_millis(93_784_005)));
        check_duration("0s", Ok(Duration::ZERO));
        check_duration(" 15m ", Ok(seconds(900)));
        check_duration("90m", Ok(seconds(5400)));
        check_duration("1us", Ok(Duration::from_micros(1)));
        check_duration("7ns", Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn bad_durations() {
        check_duration(
            "10 minutes",
            Err("\"10 minutes\" is not a duration; write \"10m\""),
        );
        check_duration("10min", Err("\"10min\" is not a duration; write \"10m\""));
        check_duration(
            "30 seconds",
            Err("\"30 seconds\" is not a duration; write \"30s\""),
        );
        check_duration(
            "2 hours",
            Err("\"2 hours\" is not a duration; write \"2h\""),
        );
        check_duration(
            "1 hour and 30 minutes",
            Err("\"1 hour and 30 minutes\" is not a duration; write \"1h30m\""),
        );
        check_duration(
            "1h 30m",
            Err("\"1h 30m\" is not a duration; write \"1h30m\""),
        );
        check_duration("10M", Err("\"10M\" is not a duration; write \"10m\""));
        check_duration(
            "90 secs",
            Err("\"90 secs\" is not a duration; write \"1m30s\""),
        );
        check_duration(
            "",
            Err("\"\" is not a duration; write a whole number with a unit (ms, s, m, h or d), such as \"10m\" or \"1h30m\""),
        );
        check_duration(
            "-5m",
            Err("\"-5m\" is not a duration: it cannot be negative; write a whole number with a unit (ms, s, m, h or d), such as \"10m\" or \"1h30m\""),
        );
        check_duration(
            "600",
            Err("\"600\" is not a duration: the number has no unit; write for example \"600s\" or \"600m\""),
        );
        check_duration(
            "3w",
            Err("\"3w\" is not a duration: unknown unit \"w\"; use ms, s, m, h or d, such as \"1h30m\""),
        );
        check_duration(
            "1.5h",
            Err("\"1.5h\" is not a duration: use whole numbers and smaller units, such as \"1h30m\" for 1.5 hours"),
        );
        check_duration(
            "h",
            Err("\"h\" is not a duration; write a whole number with a unit (ms, s, m, h or d), such as \"10m\" or \"1h30m\""),
        );
        check_duration(
            "99999999999999999999999d",
            Err("\"99999999999999999999999d\" is not a duration: it is far too long"),
        );
        check_duration(
            "999999999999999999999999999999999999999999s",
            Err("\"999999999999999999999999999999999999999999s\" is not a duration: it is far too long"),
        );
        check_duration(
            "18446744073709551616s",
            Err("\"18446744073709551616s\" is not a duration: it is far too long"),
        );
        assert!(parse_duration("1h-30m").is_err());
        assert!(parse_duration("and 5m").is_err());
        assert!(parse_duration("5m and").is_err());
    }

    fn check_format(duration: Duration, expected: &str) {
        assert_eq!(format_duration(duration), expected);
        assert_eq!(
            parse_duration(expected),
            Ok(duration),
            "round trip {expected}"
        );
    }

    #[test]
    fn formatting_durations() {
        check_format(Duration::ZERO, "0s");
        check_format(Duration::from_millis(500), "500ms");
        check_format(seconds(5400), "1h30m");
        check_format(seconds(86_400 + 1), "1d1s");
        check_format(seconds(600), "10m");
        check_format(Duration::from_millis(1_500), "1s500ms");
        check_format(Duration::new(3, 1_002_003), "3s1ms2us3ns");
        check_format(Duration::MAX, "213503982334601d7h15s999ms999us999ns");
    }

    fn check_size(text: &str, expected: Result<u64, &str>) {
        assert_eq!(
            parse_size(text),
            expected.map_err(str::to_string),
            "{text:?}"
        );
    }

    #[test]
    fn sizes() {
        check_size("1024", Ok(1024));
        check_size("10KiB", Ok(10 * 1024));
        check_size("512MiB", Ok(512 << 20));
        check_size("1GiB", Ok(1 << 30));
        check_size("2TiB", Ok(2 << 40));
        check_size("100MB", Ok(100_000_000));
        check_size("5KB", Ok(5_000));
        check_size("7B", Ok(7));
        check_size("512 mib", Ok(512 << 20));
        check_size("0", Ok(0));
        check_size(
            "12XB",
            Err("\"12XB\" is not a size: unknown unit \"XB\"; write a whole number of bytes or use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, such as \"512MiB\""),
        );
        check_size(
            "-1MiB",
            Err("\"-1MiB\" is not a size: it cannot be negative; write a whole number of bytes or use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, such as \"512MiB\""),
        );
        check_size(
            "MiB",
            Err("\"MiB\" is not a size; write a whole number of bytes or use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, such as \"512MiB\""),
        );
        check_size(
            "",
            Err("\"\" is not a size; write a whole number of bytes or use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, such as \"512MiB\""),
        );
        check_size(
            "1.5GiB",
            Err("\"1.5GiB\" is not a size: use a whole number with a smaller unit, such as \"1536MiB\" for 1.5GiB"),
        );
        check_size(
            "99999999TiB",
            Err("\"99999999TiB\" is not a size: it is far too large"),
        );
    }

    #[test]
    fn formatting_sizes() {
        for (bytes, text) in [
            (0, "0B"),
            (1, "1B"),
            (1000, "1KB"),
            (1024, "1KiB"),
            (1536, "1536B"),
            (512 << 20, "512MiB"),
            (100_000_000, "100MB"),
            (1 << 40, "1TiB"),
            (u64::MAX, "18446744073709551615B"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes));
        }
    }
}
