//! The server configuration's `[invocations]` table: limits, retries and callbacks of
//! asynchronous invocations.

use serde::{Deserialize, Serialize};
use wharf_control::InvocationConfig;
use wharf_model::duration::{parse_duration, parse_size};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvocationSettings {
    /// Largest request body of an invocation (413 above).
    pub max_request_size: String,
    /// Largest response body kept; the rest is dropped and the response marked truncated.
    pub max_response_size: String,
    /// Calls of the app per invocation, the first included.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubles with each further one.
    pub retry_backoff: String,
    /// Invocations of one app running at once; 0: max_replicas × max_inflight.
    pub concurrency: u32,
    /// The environment variable holding the secret that signs callbacks (none: unsigned).
    pub callback_secret_env: String,
    pub callback_timeout: String,
    pub callback_max_attempts: u32,
    pub callback_backoff: String,
}

impl Default for InvocationSettings {
    fn default() -> Self {
        InvocationSettings {
            max_request_size: "6MiB".into(),
            max_response_size: "1MiB".into(),
            max_attempts: 3,
            retry_backoff: "1s".into(),
            concurrency: 0,
            callback_secret_env: String::new(),
            callback_timeout: "10s".into(),
            callback_max_attempts: 5,
            callback_backoff: "2s".into(),
        }
    }
}

fn invalid(key: &str, problem: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid server configuration: invocations.{key}: {problem}")
}

pub fn invocation_config(settings: &InvocationSettings) -> anyhow::Result<InvocationConfig> {
    let size = |key: &str, value: &str| parse_size(value).map_err(|problem| invalid(key, problem));
    let duration =
        |key: &str, value: &str| parse_duration(value).map_err(|problem| invalid(key, problem));
    anyhow::ensure!(
        settings.max_attempts >= 1,
        invalid("max_attempts", "must be at least 1")
    );
    anyhow::ensure!(
        settings.callback_max_attempts >= 1,
        invalid("callback_max_attempts", "must be at least 1")
    );
    let callback_secret = match settings.callback_secret_env.trim() {
        "" => None,
        variable => match std::env::var(variable) {
            Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
            _ => {
                return Err(invalid(
                    "callback_secret_env",
                    format!("the environment variable {variable} is not set or empty; set it to the secret that signs callbacks, or remove callback_secret_env"),
                ))
            }
        },
    };
    Ok(InvocationConfig {
        max_request_size: size("max_request_size", &settings.max_request_size)?,
        max_response_size: size("max_response_size", &settings.max_response_size)?,
        max_attempts: settings.max_attempts,
        retry_backoff: duration("retry_backoff", &settings.retry_backoff)?,
        concurrency: settings.concurrency,
        callback_secret,
        callback_timeout: duration("callback_timeout", &settings.callback_timeout)?,
        callback_max_attempts: settings.callback_max_attempts,
        callback_backoff: duration("callback_backoff", &settings.callback_backoff)?,
    })
}
