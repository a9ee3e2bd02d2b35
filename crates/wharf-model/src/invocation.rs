//! Asynchronous invocations of service apps ("functions"): their states, which answers
//! are worth another attempt, how long to wait before it, how many run at once, and the
//! checks of what a caller asks for (method, path).
//!
//! An invocation is `queued` until the worker takes it (`running`); an attempt that ends
//! with a retryable answer puts it back to `queued` with a later due time; the last
//! attempt, or any other answer, makes it `succeeded` (the app answered below 400) or
//! `failed` (the app answered 400 or more, or could not be reached).

use std::time::Duration;

/// Where an invocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl InvocationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            InvocationState::Queued => "queued",
            InvocationState::Running => "running",
            InvocationState::Succeeded => "succeeded",
            InvocationState::Failed => "failed",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, InvocationState::Succeeded | InvocationState::Failed)
    }
}

impl std::str::FromStr for InvocationState {
    type Err = String;
    fn from_str(text: &str) -> Result<InvocationState, String> {
        match text {
            "queued" => Ok(InvocationState::Queued),
            "running" => Ok(InvocationState::Running),
            "succeeded" => Ok(InvocationState::Succeeded),
            "failed" => Ok(InvocationState::Failed),
            other => Err(format!("unknown invocation state \"{other}\"")),
        }
    }
}

/// What a callback delivery is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackState {
    /// The invocation has no callback URL.
    None,
    /// Waiting for the invocation to end, or for its next delivery attempt.
    Pending,
    Sent,
    /// Every attempt failed.
    Failed,
}

impl CallbackState {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallbackState::None => "none",
            CallbackState::Pending => "pending",
            CallbackState::Sent => "sent",
            CallbackState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for CallbackState {
    type Err = String;
    fn from_str(text: &str) -> Result<CallbackState, String> {
        match text {
            "none" => Ok(CallbackState::None),
            "pending" => Ok(CallbackState::Pending),
            "sent" => Ok(CallbackState::Sent),
            "failed" => Ok(CallbackState::Failed),
            other => Err(format!("unknown callback state \"{other}\"")),
        }
    }
}

/// Answers that say "not now" rather than "no": the proxy's own 503 (no replica became
/// ready) and 429 (every replica busy), a gateway error (502: the replica could not be
/// reached; 504: it did not answer in time), or the same from the app.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The final state for an answer the app gave.
pub fn state_for_status(status: u16) -> InvocationState {
    if status < 400 {
        InvocationState::Succeeded
    } else {
        InvocationState::Failed
    }
}

/// How one attempt ended, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The app (or the proxy in front of it) answered with this status.
    Answered(u16),
    /// No answer at all (the request could not be built or sent).
    NoAnswer { retryable: bool },
}

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptDecision {
    /// Try again after this long.
    Retry(Duration),
    /// The invocation ends in this state.
    Finish(InvocationState),
}

/// After attempt number `attempts` (1 for the first) ended with `result`: another
/// attempt after `base` doubling per attempt, while attempts are left and the result is
/// retryable; otherwise the end.
pub fn decide_after_attempt(
    result: AttemptResult,
    attempts: u32,
    max_attempts: u32,
    base: Duration,
) -> AttemptDecision {
    let retryable = match result {
        AttemptResult::Answered(status) => is_retryable_status(status),
        AttemptResult::NoAnswer { retryable } => retryable,
    };
    if retryable && attempts < max_attempts {
        return AttemptDecision::Retry(retry_delay(base, attempts));
    }
    AttemptDecision::Finish(match result {
        AttemptResult::Answered(status) => state_for_status(status),
        AttemptResult::NoAnswer { .. } => InvocationState::Failed,
    })
}

/// Delay after attempt `attempt` (1-based) failed: `base`, doubling, at most 10 minutes.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(Duration::from_secs(600))
}

/// Invocations of one app running at once: what its replicas can take together
/// (`max_replicas` × `max_inflight`, an unlimited `max_inflight` counting as 1), unless
/// the server sets a number (`configured` > 0).
pub fn app_concurrency(configured: u32, max_replicas: u32, max_inflight: u32) -> u32 {
    if configured > 0 {
        return configured;
    }
    max_replicas.max(1).saturating_mul(max_inflight.max(1))
}

/// The HTTP methods an invocation may use.
pub const METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "GET", "DELETE"];

/// The method of an invocation, upper-cased; POST when not given.
pub fn check_method(method: Option<&str>) -> Result<String, String> {
    let method = method.map(str::trim).filter(|m| !m.is_empty());
    let Some(method) = method else {
        return Ok("POST".to_owned());
    };
    let upper = method.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "method \"{method}\" is not allowed for an invocation; use one of {}",
            METHODS.join(", ")
        ))
    }
}

/// The app-relative path (and query) of an invocation: starts with `/` (added when
/// missing), no spaces, control characters, fragments or `..` segments. `/` when not given.
pub fn check_path(path: Option<&str>) -> Result<String, String> {
    let path = path.map(str::trim).unwrap_or("");
    if path.is_empty() {
        return Ok("/".to_owned());
    }
    if path.len() > 2048 {
        return Err("the path is longer than 2048 characters".to_owned());
    }
    if path.contains("://") {
        return Err(format!(
            "path \"{path}\" looks like a URL; give the path inside the app, such as /predict"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '#' || !c.is_ascii())
    {
        return Err(format!(
            "path \"{}\" contains {bad:?}; percent-encode it (a space is %20)",
            path.escape_default()
        ));
    }
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let route = path.split('?').next().unwrap_or("");
    if route.split('/').any(|segment| segment == "..") {
        return Err(format!("path \"{path}\" contains a \"..\" segment"));
    }
    Ok(path)
}

/// The first `limit` bytes of a body as text, for listings (invalid UTF-8 is replaced).
pub fn body_preview(body: &[u8], limit: usize) -> String {
    let cut = &body[..body.len().min(limit)];
    let text = String::from_utf8_lossy(cut);
    // A multi-byte character cut in half shows as one replacement character at the end.
    let mut text = text.into_owned();
    if body.len() > limit {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::invocation::*;

    #[test]
    fn retryable_answers_are_retried_while_attempts_are_left() {
        let base = Duration::from_secs(1);
        for status in [429, 502, 503, 504] {
            assert_eq!(
                decide_after_attempt(AttemptResult::Answered(status), 1, 3, base),
                AttemptDecision::Retry(Duration::from_secs(1))
            );
            assert_eq!(
                decide_after_attempt(AttemptResult::Answered(status), 2, 3, base),
                AttemptDecision::Retry(Duration::from_secs(2))
            );
            assert_eq!(
                decide_after_attempt(AttemptResult::Answered(status), 3, 3, base),
                AttemptDecision::Finish(InvocationState::Failed)
            );
        }
    }

    #[test]
    fn other_answers_end_the_invocation() {
        let base = Duration::from_secs(1);
        assert_eq!(
            decide_after_attempt(AttemptResult::Answered(200), 1, 3, base),
            AttemptDecision::Finish(InvocationState::Succeeded)
        );
        assert_eq!(
            decide_after_attempt(AttemptResult::Answered(302), 1, 3, base),
            AttemptDecision::Finish(InvocationState::Succeeded)
        );
        assert_eq!(
            decide_after_attempt(AttemptResult::Answered(400), 1, 3, base),
            AttemptDecision::Finish(InvocationState::Failed)
        );
        assert_eq!(
            decide_after_attempt(AttemptResult::Answered(500), 1, 3, base),
            AttemptDecision::Finish(InvocationState::Failed)
        );
        assert_eq!(
            decide_after_attempt(AttemptResult::NoAnswer { retryable: false }, 1, 3, base),
            AttemptDecision::Finish(InvocationState::Failed)
        );
        assert_eq!(
            decide_after_attempt(AttemptResult::NoAnswer { retryable: true }, 1, 3, base),
            AttemptDecision::Retry(base)
        );
    }

    #[test]
    fn delays_double_and_stop_growing() {
        let base = Duration::from_millis(500);
        assert_eq!(retry_delay(base, 1), Duration::from_millis(500));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(1));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(4));
        assert_eq!(retry_delay(base, 40), Duration::from_secs(600));
        assert_eq!(retry_delay(base, 0), base);
    }

    #[test]
    fn concurrency_follows_what_the_replicas_can_take() {
        assert_eq!(app_concurrency(0, 5, 0), 5);
        assert_eq!(app_concurrency(0, 2, 4), 8);
        assert_eq!(app_concurrency(0, 0, 0), 1);
        assert_eq!(app_concurrency(3, 5, 4), 3);
    }

    #[test]
    fn methods_and_paths_are_checked() {
        assert_eq!(check_method(None).unwrap(), "POST");
        assert_eq!(check_method(Some("put")).unwrap(), "PUT");
        assert!(check_method(Some("CONNECT"))
            .unwrap_err()
            .contains("use one of POST"));
        assert_eq!(check_path(None).unwrap(), "/");
        assert_eq!(check_path(Some("predict")).unwrap(), "/predict");
        assert_eq!(check_path(Some("/a/b?x=1&y=..")).unwrap(), "/a/b?x=1&y=..");
        assert!(check_path(Some("/a/../etc")).unwrap_err().contains(".."));
        assert!(check_path(Some("/a b")).unwrap_err().contains("%20"));
        assert!(check_path(Some("http://x/y")).unwrap_err().contains("URL"));
    }

    #[test]
    fn states_round_trip() {
        for state in [
            InvocationState::Queued,
            InvocationState::Running,
            InvocationState::Succeeded,
            InvocationState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<InvocationState>().unwrap(), state);
        }
        for state in [
            CallbackState::None,
            CallbackState::Pending,
            CallbackState::Sent,
            CallbackState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<CallbackState>().unwrap(), state);
        }
    }

    #[test]
    fn previews_are_cut() {
        assert_eq!(body_preview(b"hello", 10), "hello");
        assert_eq!(body_preview(b"hello world", 5), "hello…");
    }
}
