//! Who may see what: user names and roles, new-password rules, per-app access decisions,
//! where a login may send the browser next, and the failed-login throttle. Pure functions
//! of their inputs (the throttle takes the time as an argument).

use std::collections::{HashMap, VecDeque};

/// The roles a user can have, most powerful first.
pub const ROLES: [&str; 3] = ["admin", "publisher", "viewer"];

/// The longest user name.
pub const MAX_USER_NAME_LENGTH: usize = 64;

/// The shortest password a user may set.
pub const MIN_PASSWORD_LENGTH: usize = 8;

/// The longest password (in bytes) accepted, so hashing stays cheap to refuse.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The longest `next` path a login keeps.
pub const MAX_NEXT_LENGTH: usize = 2048;

/// Checks a user name: 1-64 ASCII letters, digits, '.', '_', '-' and '@', starting with
/// a letter or digit (so it is safe in a header, a URL segment and a log line).
pub fn validate_user_name(name: &str) -> Result<(), String> {
    let rule = format!(
        "use 1-{MAX_USER_NAME_LENGTH} letters, digits, '.', '_', '-' and '@', starting with \
         a letter or digit (for example \"ana.lopez\")"
    );
    if name.is_empty() {
        return Err(format!("the user name is empty: {rule}"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.len() > MAX_USER_NAME_LENGTH
        || !name.chars().all(allowed)
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        let shown: String = name
            .chars()
            .take(80)
            .collect::<String>()
            .escape_debug()
            .to_string();
        return Err(format!("\"{shown}\" is not a valid user name: {rule}"));
    }
    Ok(())
}

/// Checks a role name against [`ROLES`].
pub fn validate_role(role: &str) -> Result<(), String> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a role; use one of {}",
            role.escape_debug(),
            ROLES.join(", ")
        ))
    }
}

/// Checks a password a user wants to set: at least 8 characters, at most 1024 bytes,
/// not only spaces.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(format!(
            "the password is too short: use at least {MIN_PASSWORD_LENGTH} characters \
             (a passphrase of a few words is best)"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is too long: use at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.trim().is_empty() {
        return Err("the password is only spaces; choose another".into());
    }
    Ok(())
}

/// What the proxy does with a request for an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessDecision {
    /// Forward the request.
    Allow,
    /// Send the browser to the login page (or answer 401 to an API client).
    LoginRequired,
}

/// Decides whether a request may reach an app with the given `[service] access` value.
/// `"public"` lets everyone in; `"logged-in"` needs an identity; any other value (a newer
/// manifest, a typo that got through) is treated as the strictest known rule.
pub fn decide(access: &str, identity_present: bool) -> AccessDecision {
    match (access, identity_present) {
        ("public", _) => AccessDecision::Allow,
        (_, true) => AccessDecision::Allow,
        (_, false) => AccessDecision::LoginRequired,
    }
}

/// Where the browser goes after logging in: `next` when it is a path on this server,
/// otherwise `/`. A local path starts with exactly one '/', has no '\' (browsers read it
/// as '/'), and no control characters or spaces (browsers drop tabs and newlines, which
/// could turn "/\t/evil.example" into "//evil.example").
pub fn local_redirect_target(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= MAX_NEXT_LENGTH
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if local {
        next
    } else {
        "/"
    }
}

/// Counts failed logins per key (a user name) in a sliding window and refuses further
/// attempts for a key with too many. Times are unix milliseconds given by the caller.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    max_failures: usize,
    window_ms: i64,
    max_keys: usize,
    failures: HashMap<String, VecDeque<i64>>,
}

impl LoginThrottle {
    /// At most `max_failures` failures per key within `window_ms`; at most `max_keys`
    /// keys remembered (the oldest are forgotten first).
    pub fn new(max_failures: usize, window_ms: i64, max_keys: usize) -> LoginThrottle {
        LoginThrottle {
            max_failures: max_failures.max(1),
            window_ms: window_ms.max(1),
            max_keys: max_keys.max(1),
            failures: HashMap::new(),
        }
    }

    /// None when `key` may try now; otherwise the milliseconds until it may (at least 1).
    pub fn retry_after(&mut self, key: &str, now_ms: i64) -> Option<i64> {
        let window = self.window_ms;
        let times = self.failures.get_mut(key)?;
        while times.front().is_some_and(|t| now_ms - *t >= window) {
            times.pop_front();
        }
        if times.is_empty() {
            self.failures.remove(key);
            return None;
        }
        if times.len() < self.max_failures {
            return None;
        }
        // The attempt is allowed again when enough failures have left the window.
        let index = times.len() - self.max_failures;
        let oldest_counted = times.get(index).copied().unwrap_or(now_ms);
        Some((oldest_counted + window - now_ms).max(1))
    }

    /// Records a failed attempt for `key`.
    pub fn record_failure(&mut self, key: &str, now_ms: i64) {
        if !self.failures.contains_key(key) && self.failures.len() >= self.max_keys {
            self.forget_old(now_ms);
        }
        let times = self.failures.entry(key.to_owned()).or_default();
        times.push_back(now_ms);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }

    /// Forgets `key`'s failures (after a successful login).
    pub fn clear(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// How many keys are remembered.
    pub fn tracked_keys(&self) -> usize {
        self.failures.len()
    }

    fn forget_old(&mut self, now_ms: i64) {
        let window = self.window_ms;
        self.failures
            .retain(|_, times| times.back().is_some_and(|t| now_ms - *t < window));
        while self.failures.len() >= self.max_keys {
            let oldest = self
                .failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
                .map(|(key, _)| key.clone());
            match oldest {
                Some(key) => self.failures.remove(&key),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::access::*;

    #[test]
    fn access_decisions() {
        let cases = [
            ("public", false, AccessDecision::Allow),
            ("public", true, AccessDecision::Allow),
            ("logged-in", true, AccessDecision::Allow),
            ("logged-in", false, AccessDecision::LoginRequired),
            ("groups", false, AccessDecision::LoginRequired),
            ("", false, AccessDecision::LoginRequired),
            ("Public", false, AccessDecision::LoginRequired),
        ];
        for (access, identified, expected) in cases {
            assert_eq!(
                decide(access, identified),
                expected,
                "{access:?} {identified}"
            );
        }
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        let cases = [
            ("/apps/x/", "/apps/x/"),
            ("/", "/"),
            ("/apps/x/?a=1&b=%2F%2F#top", "/apps/x/?a=1&b=%2F%2F#top"),
            ("", "/"),
            ("apps/x", "/"),
            ("//evil.example", "/"),
            ("//evil.example/path", "/"),
            ("/\\evil.example", "/"),
            ("\\\\evil.example", "/"),
            ("/apps\\..\\x", "/"),
            ("https://evil.example/", "/"),
            ("javascript:alert(1)", "/"),
            ("/\t/evil.example", "/"),
            ("/\n/evil.example", "/"),
            ("/ /evil.example", "/"),
            ("/apps/\u{0}", "/"),
        ];
        for (next, expected) in cases {
            assert_eq!(local_redirect_target(next), expected, "{next:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_NEXT_LENGTH));
        assert_eq!(local_redirect_target(&long), "/");
    }

    #[test]
    fn user_names() {
        for good in [
            "admin",
            "ana.lopez",
            "a",
            "j_doe-2",
            "ana@example.com",
            "A1",
        ] {
            assert!(validate_user_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "ana lopez",
            "ana/x",
            "é",
            "a\nb",
            "<b>",
        ] {
            let error = validate_user_name(bad).unwrap_err();
            assert!(error.contains("user name"), "{bad}: {error}");
        }
        assert!(validate_user_name(&"a".repeat(MAX_USER_NAME_LENGTH)).is_ok());
        assert!(validate_user_name(&"a".repeat(MAX_USER_NAME_LENGTH + 1)).is_err());
    }

    #[test]
    fn roles_and_passwords() {
        for role in ROLES {
            assert!(validate_role(role).is_ok());
        }
        assert_eq!(
            validate_role("root").unwrap_err(),
            "\"root\" is not a role; use one of admin, publisher, viewer"
        );
        assert!(check_new_password("correct horse").is_ok());
        assert!(check_new_password("short")
            .unwrap_err()
            .contains("at least 8"));
        assert!(check_new_password("        ")
            .unwrap_err()
            .contains("spaces"));
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1))
            .unwrap_err()
            .contains("at most"));
        // Characters, not bytes, count toward the minimum.
        assert!(check_new_password("ééééééé").is_err());
        assert!(check_new_password("éééééééé").is_ok());
    }

    #[test]
    fn the_throttle_refuses_after_too_many_failures_in_the_window() {
        let mut throttle = LoginThrottle::new(3, 60_000, 100);
        let start = 1_000_000;
        for i in 0..3 {
            assert_eq!(throttle.retry_after("ana", start + i), None);
            throttle.record_failure("ana", start + i);
        }
        // The fourth attempt waits until the first failure leaves the window.
        assert_eq!(throttle.retry_after("ana", start + 10), Some(60_000 - 10));
        assert_eq!(throttle.retry_after("bob", start + 10), None, "per key");
        assert_eq!(throttle.retry_after("ana", start + 60_000), None);
        throttle.record_failure("ana", start + 60_000);
        assert!(throttle.retry_after("ana", start + 60_000).is_some());
        throttle.clear("ana");
        assert_eq!(throttle.retry_after("ana", start + 60_002), None);
        assert_eq!(throttle.tracked_keys(), 0);
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_keys() {
        let mut throttle = LoginThrottle::new(2, 60_000, 3);
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            throttle.record_failure(key, i as i64);
            throttle.record_failure(key, i as i64);
        }
        assert!(throttle.tracked_keys() <= 3);
        assert!(
            throttle.retry_after("e", 10).is_some(),
            "the newest is kept"
        );
        assert_eq!(
            throttle.retry_after("a", 10),
            None,
            "the oldest is forgotten"
        );
    }
}
