//! Cron schedules and time zones for `[[job.trigger]] schedule = "..."`.
//!
//! Cron expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with a
//! leading seconds field, as croner reads them. Jenkins-style `H` tokens (`H`, `H/15`,
//! `H(0-29)`, `H(0-29)/10`) pick a value from a hash of a seed (the app name), so many
//! jobs written as `H * * * *` do not all start at minute 0.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::suggest::edit_distance;

/// Allowed values of `catch_up` on a schedule trigger.
pub const CATCH_UP_VALUES: [&str; 3] = ["latest", "all", "none"];

const CRON_ADVICE: &str =
    "write 5 fields (minute hour day-of-month month day-of-week), such as \"0 * * * *\" for every hour";

/// (lowest, highest) value an `H` token may pick in each field, without and with seconds.
const FIVE_FIELD_RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 28), (1, 12), (0, 6)];
const FIVE_FIELD_NAMES: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
];
const SIX_FIELD_NAMES: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
];
const SIX_FIELD_RANGES: [(u32, u32); 6] = [(0, 59), (0, 59), (0, 23), (1, 28), (1, 12), (0, 6)];

/// FNV-1a, finalised: stable across Rust releases, unlike `DefaultHasher`.
fn stable_hash(seed: &str, field_index: usize) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes().chain([0xff, field_index as u8]) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // MurmurHash3's finaliser: FNV's low bits barely depend on the last bytes, so without
    // it `hash % 15` spread similar app names over few values.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Replaces one `H…` token by plain cron syntax; `None` when it is malformed.
fn substitute_hash_token(token: &str, range: (u32, u32), hash: u64) -> Option<String> {
    let rest = token.strip_prefix('H')?;
    let (rest, (low, high)) = match rest.strip_prefix('(') {
        Some(inner) => {
            let (bounds, after) = inner.split_once(')')?;
            let (low, high) = bounds.split_once('-')?;
            let low: u32 = low.trim().parse().ok()?;
            let high: u32 = high.trim().parse().ok()?;
            if low > high {
                return None;
            }
            (after, (low, high))
        }
        None => (rest, range),
    };
    if rest.is_empty() {
        let span = u64::from(high - low) + 1;
        return Some((u64::from(low) + hash % span).to_string());
    }
    let step: u32 = rest.strip_prefix('/')?.parse().ok()?;
    if step == 0 {
        return None;
    }
    let start = u64::from(low) + hash % u64::from(step).min(u64::from(high - low) + 1);
    Some(format!("{start}-{high}/{step}"))
}

fn substitute_hash_tokens(expression: &str, seed: &str) -> Result<String, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let ranges: &[(u32, u32)] = match fields.len() {
        5 => &FIVE_FIELD_RANGES,
        6 => &SIX_FIELD_RANGES,
        _ => return Ok(expression.to_string()),
    };
    let mut substituted = Vec::with_capacity(fields.len());
    for (index, (field, range)) in fields.iter().zip(ranges).enumerate() {
        let mut parts = Vec::new();
        for part in field.split(',') {
            if part.starts_with('H') {
                let replacement = substitute_hash_token(part, *range, stable_hash(seed, index))
                    .ok_or_else(|| {
                        format!(
                            "\"{expression}\" is not a valid cron schedule: \"{part}\" is not a valid H token; \
                             write H, H/15, H(0-29) or H(0-29)/10"
                        )
                    })?;
                parts.push(replacement);
            } else {
                parts.push(part.to_string());
            }
        }
        substituted.push(parts.join(","));
    }
    Ok(substituted.join(" "))
}

/// croner prefixes its messages with the error kind; keep only the reason, lowercased.
fn croner_reason(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    let reason = match error {
        CronError::InvalidPattern(message)
        | CronError::IllegalCharacters(message)
        | CronError::ComponentError(message) => message.clone(),
        other => other.to_string(),
    };
    let reason = reason.trim_end_matches('.');
    let mut characters = reason.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => String::new(),
    }
}

fn parse_plain_cron(expression: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::Cron::new(expression)
        .with_seconds_optional()
        .parse()
}

/// Names the first field that croner rejects on its own, with its allowed values.
fn find_bad_field(expression: &str) -> Option<String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let names: &[(&str, &str)] = match fields.len() {
        5 => &FIVE_FIELD_NAMES,
        6 => &SIX_FIELD_NAMES,
        _ => return None,
    };
    for (index, (name, allowed)) in names.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|other| if other == index { fields[index] } else { "*" })
            .collect();
        if let Err(error) = parse_plain_cron(&alone.join(" ")) {
            return Some(format!(
                "the {name} field \"{}\" is invalid ({}; allowed: {allowed})",
                fields[index],
                croner_reason(&error)
            ));
        }
    }
    None
}

/// Parses a cron expression, resolving `H` tokens from `hash_seed` (use the app name so
/// every app gets its own stable minute).
pub fn parse_cron(expression: &str, hash_seed: &str) -> Result<croner::Cron, String> {
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        return Err(format!("the cron schedule is empty; {CRON_ADVICE}"));
    }
    let field_count = trimmed.split_whitespace().count();
    if !trimmed.starts_with('@') && !(5..=6).contains(&field_count) {
        return Err(format!(
            "\"{expression}\" is not a valid cron schedule: it has {field_count} fields; {CRON_ADVICE} \
             (or 6 with a leading seconds field)"
        ));
    }
    let substituted = substitute_hash_tokens(trimmed, hash_seed)?;
    let cron = parse_plain_cron(&substituted).map_err(|error| {
        let reason = find_bad_field(&substituted)
            .unwrap_or_else(|| format!("{}; {CRON_ADVICE}", croner_reason(&error)));
        format!("\"{expression}\" is not a valid cron schedule: {reason}")
    })?;
    let reference = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default();
    if cron.find_next_occurrence(&reference, false).is_err() {
        return Err(format!(
            "\"{expression}\" is not a valid cron schedule: it never fires (check the day and month)"
        ));
    }
    Ok(cron)
}

/// Checks a cron expression (5 fields, or 6 with seconds; `H` tokens allowed).
pub fn validate_cron(expression: &str) -> Result<(), String> {
    parse_cron(expression, "").map(|_| ())
}

/// The first time strictly after `after` at which `cron` fires, reading the cron fields
/// as wall-clock time in `timezone`. `None` if it never fires again. Fire times are whole
/// seconds.
///
/// Daylight saving time: every wall-clock time fires at most once. A time that does not
/// exist on a spring-forward day (02:30 when clocks jump from 02:00 to 03:00) fires once,
/// at the first valid instant after the gap (03:00). In the repeated hour of a fall-back
/// day, times fire during the first pass (summer time) only, so a 02:30 job runs once.
pub fn next_fire_after(
    cron: &croner::Cron,
    timezone: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // Whole seconds: croner adds one second to the start, so a fractional start could
    // otherwise skip a slot or yield a fractional one.
    let mut cursor = DateTime::<Utc>::from_timestamp(after.timestamp(), 0)?;
    // Searching from inside the second pass of a repeated hour, croner may answer a time
    // of the first pass (before `after`); search on from there until past `after`.
    for _ in 0..10_000 {
        let next = cron
            .find_next_occurrence(&cursor.with_timezone(&timezone), false)
            .ok()?
            .with_timezone(&Utc);
        let next = DateTime::<Utc>::from_timestamp(next.timestamp(), 0)?;
        if next > after {
            return Some(next);
        }
        cursor = if next > cursor {
            next
        } else {
            cursor + chrono::Duration::seconds(1)
        };
    }
    None
}

/// Parses an IANA time zone name such as "Europe/Vienna"; the error suggests the closest
/// known name.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    if let Ok(timezone) = name.parse::<Tz>() {
        return Ok(timezone);
    }
    let suggestion = closest_timezone(name)
        .map(|timezone| format!("such as \"{}\"", timezone.name()))
        .unwrap_or_else(|| "such as \"Europe/Vienna\" or \"UTC\"".to_string());
    Err(format!(
        "\"{name}\" is not a time zone; use an IANA name {suggestion}"
    ))
}

fn closest_timezone(name: &str) -> Option<Tz> {
    let wanted = name.trim().to_lowercase().replace(' ', "_");
    if wanted.is_empty() {
        return None;
    }
    let max_distance = if wanted.chars().count() >= 8 { 3 } else { 2 };
    let mut best: Option<(usize, Tz)> = None;
    for timezone in chrono_tz::TZ_VARIANTS {
        let full = timezone.name().to_lowercase();
        let mut distance = edit_distance(&wanted, &full);
        if !wanted.contains('/') {
            if let Some((_, city)) = full.rsplit_once('/') {
                distance = distance.min(edit_distance(&wanted, city));
            }
        }
        if distance <= max_distance
            && best.is_none_or(|(best_distance, _)| distance < best_distance)
        {
            best = Some((distance, timezone));
        }
    }
    best.map(|(_, timezone)| timezone)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use crate::schedule::{next_fire_after, parse_cron, parse_timezone, validate_cron};

    fn check_cron(expression: &str, expected: Result<(), &str>) {
        assert_eq!(
            validate_cron(expression),
            expected.map_err(str::to_string),
            "{expression:?}"
        );
    }

    #[test]
    fn good_crons() {
        for expression in [
            "0 * * * *",
            "*/5 * * * *",
            "30 6 * * 1-5",
            "0 0 1 * *",
            "0 0 * * MON",
            "0 9 * JAN,JUL THU",
            "15 30 6 * * *",
            "H * * * *",
            "H/15 * * * *",
            "H(0-29) H(1-3) * * *",
            "H(0-29)/10 * * * *",
            "0 H * * H",
            "H H H H H",
            "H H H H H H",
            "@hourly",
            "@daily",
            "0 0 L * *",
        ] {
            check_cron(expression, Ok(()));
        }
    }

    #[test]
    fn bad_crons() {
        let advice = "write 5 fields (minute hour day-of-month month day-of-week), such as \"0 * * * *\" for every hour";
        check_cron("", Err(&format!("the cron schedule is empty; {advice}")));
        check_cron(
            "* * * *",
            Err(&format!("\"* * * *\" is not a valid cron schedule: it has 4 fields; {advice} (or 6 with a leading seconds field)")),
        );
        check_cron(
            "H(5-x) * * * *",
            Err("\"H(5-x) * * * *\" is not a valid cron schedule: \"H(5-x)\" is not a valid H token; write H, H/15, H(0-29) or H(0-29)/10"),
        );
        check_cron(
            "H/0 * * * *",
            Err("\"H/0 * * * *\" is not a valid cron schedule: \"H/0\" is not a valid H token; write H, H/15, H(0-29) or H(0-29)/10"),
        );
        check_cron(
            "61 * * * *",
            Err("\"61 * * * *\" is not a valid cron schedule: the minute field \"61\" is invalid (number out of bounds; allowed: 0-59)"),
        );
        check_cron(
            "0 9 * * 1-8",
            Err("\"0 9 * * 1-8\" is not a valid cron schedule: the day-of-week field \"1-8\" is invalid (range out of bounds; allowed: 0-7 or SUN-SAT)"),
        );
        check_cron(
            "0 0 30 2 *",
            Err("\"0 0 30 2 *\" is not a valid cron schedule: it never fires (check the day and month)"),
        );
        for expression in [
            "61 * * * *",
            "* 24 * * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a b c d e",
            "# * * * *",
            "1#9 * * * *",
            "* * * * 1#9",
            "0 0 30 2 *",
            "W * * * *",
            "* * * * * * *",
            "HH * * * *",
            "H(9-1) * * * *",
            "-- * * * *",
            "/ * * * *",
            "*/ * * * *",
            "1-/2 * * * *",
            "99999999999999 * * * *",
        ] {
            assert!(validate_cron(expression).is_err(), "{expression:?}");
        }
    }

    #[test]
    fn hash_tokens_are_stable_and_in_range() {
        let after = Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 30).unwrap();
        let first = parse_cron("H * * * *", "btc-report").unwrap();
        let again = parse_cron("H * * * *", "btc-report").unwrap();
        let next = next_fire_after(&first, chrono_tz::UTC, after).unwrap();
        assert_eq!(
            next,
            next_fire_after(&again, chrono_tz::UTC, after).unwrap()
        );
        assert!(next > after && next <= after + chrono::Duration::hours(1));
        let ranged = parse_cron("H(10-12) 3 * * *", "x").unwrap();
        let next = next_fire_after(&ranged, chrono_tz::UTC, after).unwrap();
        assert_eq!(next.format("%H").to_string(), "03");
        let minute: u32 = next.format("%M").to_string().parse().unwrap();
        assert!((10..=12).contains(&minute), "{minute}");
    }

    #[test]
    fn next_fire_uses_the_time_zone() {
        let cron = parse_cron("0 9 * * *", "").unwrap();
        let vienna = parse_timezone("Europe/Vienna").unwrap();
        let after = Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap();
        assert_eq!(
            next_fire_after(&cron, vienna, after),
            Some(Utc.with_ymd_and_hms(2025, 1, 16, 8, 0, 0).unwrap())
        );
        let summer = Utc.with_ymd_and_hms(2025, 7, 15, 12, 0, 0).unwrap();
        assert_eq!(
            next_fire_after(&cron, vienna, summer),
            Some(Utc.with_ymd_and_hms(2025, 7, 16, 7, 0, 0).unwrap())
        );
    }

    fn check_timezone(name: &str, expected: Result<&str, &str>) {
        assert_eq!(
            parse_timezone(name).map(|timezone| timezone.name()),
            expected.map_err(str::to_string),
            "{name:?}"
        );
    }

    #[test]
    fn timezones() {
        check_timezone("Europe/Vienna", Ok("Europe/Vienna"));
        check_timezone("UTC", Ok("UTC"));
        check_timezone("America/New_York", Ok("America/New_York"));
        check_timezone(
            "Europe/Viena",
            Err("\"Europe/Viena\" is not a time zone; use an IANA name such as \"Europe/Vienna\""),
        );
        check_timezone(
            "europe/vienna",
            Err("\"europe/vienna\" is not a time zone; use an IANA name such as \"Europe/Vienna\""),
        );
        check_timezone(
            "Vienna",
            Err("\"Vienna\" is not a time zone; use an IANA name such as \"Europe/Vienna\""),
        );
        check_timezone(
            "New York",
            Err("\"New York\" is not a time zone; use an IANA name such as \"America/New_York\""),
        );
        check_timezone(
            "Mars/Olympus_Mons",
            Err("\"Mars/Olympus_Mons\" is not a time zone; use an IANA name such as \"Europe/Vienna\" or \"UTC\""),
        );
        check_timezone(
            "",
            Err("\"\" is not a time zone; use an IANA name such as \"Europe/Vienna\" or \"UTC\""),
        );
    }
}
