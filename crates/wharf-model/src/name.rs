//! App names: `[a-z0-9-]{1,63}`, starting and ending with a letter or digit, so a name is
//! safe as a URL path segment, a DNS label and a folder name.

/// The longest allowed app name (a DNS label).
pub const MAX_APP_NAME_LENGTH: usize = 63;

fn is_name_character(character: char) -> bool {
    character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-'
}

/// Checks an app name. The error says what is wrong and suggests a valid name.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let suggestion = app_name_from_folder(name).unwrap_or_else(|| "my-app".to_string());
    let rule = format!(
        "use 1-{MAX_APP_NAME_LENGTH} lowercase letters, digits and '-' (for example \"{suggestion}\")"
    );
    if name.is_empty() {
        return Err(format!("the app name is empty: {rule}"));
    }
    if !name.chars().all(is_name_character) {
        return Err(format!("\"{name}\" is not a valid app name: {rule}"));
    }
    if name.len() > MAX_APP_NAME_LENGTH {
        return Err(format!(
            "\"{name}\" is not a valid app name: it is {} characters long; {rule}",
            name.len()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "\"{name}\" is not a valid app name: it must start and end with a letter or digit \
             (for example \"{suggestion}\")"
        ));
    }
    Ok(())
}

/// Derives an app name from a folder name: lowercase, every run of other characters
/// becomes one '-', no '-' at either end, at most 63 characters. `None` when nothing
/// usable is left.
pub fn app_name_from_folder(folder: &str) -> Option<String> {
    let mut name = String::with_capacity(folder.len());
    for character in folder.chars().flat_map(char::to_lowercase) {
        if is_name_character(character) && character != '-' {
            name.push(character);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    // Only ASCII is left, so byte truncation cannot split a character.
    let trimmed = name.trim_matches('-');
    let truncated = &trimmed[..trimmed.len().min(MAX_APP_NAME_LENGTH)];
    let result = truncated.trim_end_matches('-');
    if result.is_empty() {
        None
    } else {
        Some(result.to_string())
    }
}

/// Checks a bucket name against S3's rules; the error names the rule that is broken.
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    if name.len() < 3 || name.len() > 63 {
        return Err("a bucket name must be 3 to 63 characters long".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("a bucket name may only contain lowercase letters, digits, '-' and '.'".into());
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(name.as_bytes()[0]) || !edge(name.as_bytes()[name.len() - 1]) {
        return Err("a bucket name must begin and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("a bucket name must not contain two adjacent periods".into());
    }
    if name.split('.').count() == 4 && name.split('.').all(|part| part.parse::<u8>().is_ok()) {
        return Err("a bucket name must not look like an IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::name::{app_name_from_folder, validate_app_name};

    fn check_valid(name: &str) {
        assert_eq!(validate_app_name(name), Ok(()), "{name:?} should be valid");
    }

    fn check_invalid(name: &str, expected_message: &str) {
        assert_eq!(
            validate_app_name(name),
            Err(expected_message.to_string()),
            "{name:?}"
        );
    }

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "0",
            "my-app",
            "btc-report",
            "a1-b2-c3",
            "x--y",
            &"a".repeat(63),
        ] {
            check_valid(name);
        }
    }

    #[test]
    fn invalid_names() {
        check_invalid(
            "My App",
            "\"My App\" is not a valid app name: use 1-63 lowercase letters, digits and '-' (for example \"my-app\")",
        );
        check_invalid(
            "",
            "the app name is empty: use 1-63 lowercase letters, digits and '-' (for example \"my-app\")",
        );
        check_invalid(
            "-app",
            "\"-app\" is not a valid app name: it must start and end with a letter or digit (for example \"app\")",
        );
        check_invalid(
            "app-",
            "\"app-\" is not a valid app name: it must start and end with a letter or digit (for example \"app\")",
        );
        check_invalid(
            "my_app",
            "\"my_app\" is not a valid app name: use 1-63 lowercase letters, digits and '-' (for example \"my-app\")",
        );
        check_invalid(
            "---",
            "\"---\" is not a valid app name: it must start and end with a letter or digit (for example \"my-app\")",
        );
        let long = "a".repeat(64);
        check_invalid(
            &long,
            &format!("\"{long}\" is not a valid app name: it is 64 characters long; use 1-63 lowercase letters, digits and '-' (for example \"{}\")", "a".repeat(63)),
        );
        assert!(validate_app_name("café").is_err());
        assert!(validate_app_name("a.b").is_err());
    }

    fn check_folder(folder: &str, expected: Option<&str>) {
        assert_eq!(
            app_name_from_folder(folder).as_deref(),
            expected,
            "{folder:?}"
        );
    }

    #[test]
    fn names_from_folders() {
        check_folder("my-app", Some("my-app"));
        check_folder("My App", Some("my-app"));
        check_folder("BTC_Report (v2)", Some("btc-report-v2"));
        check_folder("__init__", Some("init"));
        check_folder("a---b", Some("a-b"));
        check_folder("Café Crème", Some("caf-cr-me"));
        check_folder("", None);
        check_folder("---", None);
        check_folder("日本", None);
        check_folder(&"x".repeat(100), Some(&"x".repeat(63)));
        // Truncation must not leave a trailing '-'.
        let folder = format!("{}-tail", "x".repeat(62));
        check_folder(&folder, Some(&"x".repeat(62)));
        for folder in ["My App", "BTC_Report (v2)", "Café", &"y-".repeat(80)] {
            let name = app_name_from_folder(folder).unwrap();
            assert_eq!(validate_app_name(&name), Ok(()), "{folder:?} -> {name:?}");
        }
    }
}
