//! Callbacks: when an invocation with a callback URL ended, its result is POSTed there as
//! JSON, retried with doubling waits; every attempt is recorded. With a server-level
//! `callback_secret` the request is signed like webhook notifications
//! (`X-Wharf-Signature: sha256=HMAC(TIMESTAMP.BODY)`).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use wharf_store::{CallbackOutcome, Invocation, InvocationAttempt};

use crate::notify::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::{Control, ControlResult};

/// Callbacks started per scan.
const CALLBACK_BATCH: i64 = 32;

/// A callback URL must be an absolute http or https URL with a host, at most 2048
/// characters. Returns it normalised.
pub fn check_callback_url(url: &str) -> Result<String, String> {
    if url.len() > 2048 {
        return Err("the callback URL is longer than 2048 characters".to_owned());
    }
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        format!("callback \"{url}\" is not a URL ({error}); write it like https://example.com/hook")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "callback \"{url}\" uses {}:, which Wharf does not call back; use an http or https URL",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("callback \"{url}\" has no host"));
    }
    Ok(parsed.to_string())
}

/// The JSON document POSTed to a callback URL.
#[derive(Debug, Serialize)]
pub struct CallbackDocument {
    pub id: String,
    pub app: String,
    /// succeeded or failed.
    pub status: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub method: String,
    pub path: String,
    pub response: Option<ResponseDocument>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ResponseDocument {
    pub status: i64,
    pub headers: BTreeMap<String, String>,
    /// The body as text when it is UTF-8 ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// ... else base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The app sent more than the server keeps (`max_response_size`).
    pub truncated: bool,
}

/// Response headers as one object; a repeated header's values are joined with ", ".
pub fn header_map(headers: &[(String, String)]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name.to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    map
}

/// A body as (text, base64): text when it is valid UTF-8.
pub fn text_or_base64(bytes: Vec<u8>) -> (Option<String>, Option<String>) {
    match String::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(error) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(error.into_bytes())),
        ),
    }
}

fn rfc3339(millis: i64) -> String {
    wharf_store::millis_to_utc(millis).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Control {
    /// Starts a delivery task for each due callback.
    pub(crate) async fn dispatch_callbacks(&self, now: i64) -> ControlResult<()> {
        let settings = &self.config().invocations;
        let lease = settings.callback_timeout.as_millis() as i64 + 5_000;
        for invocation in self.store().due_callbacks(now, CALLBACK_BATCH).await? {
            if !self
                .store()
                .claim_callback(&invocation.id, now, now + lease)
                .await?
            {
                continue;
            }
            let control = self.clone();
            tokio::spawn(async move {
                control.deliver_callback(invocation).await;
                control.wake_invocations();
            });
        }
        Ok(())
    }

    /// The document for an ended invocation.
    pub async fn callback_document(
        &self,
        invocation: &Invocation,
    ) -> ControlResult<CallbackDocument> {
        let response = match invocation.response_status {
            None => None,
            Some(status) => {
                let body = self
                    .invocation_response_body(&invocation.id)
                    .await?
                    .unwrap_or_default();
                let (body, body_base64) = text_or_base64(body);
                Some(ResponseDocument {
                    status,
                    headers: header_map(&invocation.response_headers),
                    body,
                    body_base64,
                    truncated: invocation.response_truncated,
                })
            }
        };
        Ok(CallbackDocument {
            id: invocation.id.clone(),
            app: invocation.app_name.clone(),
            status: invocation.state.as_str().to_owned(),
            error: invocation.error.clone(),
            attempts: invocation.attempts,
            method: invocation.method.clone(),
            path: invocation.path.clone(),
            response,
            created_at: rfc3339(invocation.created_at),
            started_at: invocation.started_at.map(rfc3339),
            finished_at: invocation.finished_at.map(rfc3339),
        })
    }

    /// One delivery attempt, recorded.
    async fn deliver_callback(&self, invocation: Invocation) {
        let Some(url) = invocation.callback_url.clone() else {
            return;
        };
        let settings = &self.config().invocations;
        let started_at = wharf_store::now_millis();
        let result = match self.callback_document(&invocation).await {
            Ok(document) => self.post_callback(&url, &invocation.id, &document).await,
            Err(error) => Err((None, error.to_string())),
        };
        let number = invocation.callback_attempts + 1;
        let (status, error) = match &result {
            Ok(status) => (Some(*status), None),
            Err((status, error)) => (*status, Some(error.clone())),
        };
        let attempt = InvocationAttempt {
            kind: "callback".into(),
            number,
            started_at,
            finished_at: wharf_store::now_millis(),
            status: status.map(i64::from),
            error: error.clone(),
        };
        let attempts = u32::try_from(number).unwrap_or(u32::MAX);
        let outcome = match error {
            None => {
                tracing::info!(invocation = %invocation.id, attempts, "Callback delivered.");
                CallbackOutcome::Sent
            }
            Some(error) if attempts >= settings.callback_max_attempts => {
                tracing::warn!(invocation = %invocation.id, attempts, %error, "Gave up on a callback.");
                CallbackOutcome::GaveUp { error }
            }
            Some(error) => {
                let delay =
                    wharf_model::invocation::retry_delay(settings.callback_backoff, attempts);
                tracing::warn!(invocation = %invocation.id, attempts, retry_in = ?delay, %error, "A callback failed; retrying.");
                CallbackOutcome::Retry {
                    next_at: wharf_store::now_millis() + delay.as_millis() as i64,
                    error,
                }
            }
        };
        if let Err(error) = self
            .store()
            .record_callback(&invocation.id, &attempt, &outcome)
            .await
        {
            tracing::error!(invocation = %invocation.id, %error, "Could not record a callback attempt.");
        }
    }

    /// POSTs the document; Ok(status) for a 2xx answer.
    async fn post_callback(
        &self,
        url: &str,
        invocation_id: &str,
        document: &CallbackDocument,
    ) -> Result<u16, (Option<u16>, String)> {
        let settings = &self.config().invocations;
        let body = serde_json::to_vec(document).map_err(|error| (None, error.to_string()))?;
        let client = reqwest::Client::builder()
            .timeout(settings.callback_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| (None, format!("cannot make an HTTP client: {error}")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, "invocation")
            .header(DELIVERY_HEADER, invocation_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = &settings.callback_secret {
            request = request.header(
                SIGNATURE_HEADER,
                format!(
                    "sha256={}",
                    crate::notify::sign_webhook(secret, timestamp, &body)
                ),
            );
        }
        // The URL may carry a token: errors name the host only.
        let response = request.body(body).send().await.map_err(|error| {
            (
                None,
                format!("cannot reach the callback URL: {}", error.without_url()),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        Err((
            Some(status.as_u16()),
            format!("the callback URL answered HTTP {status}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::invocations::callback::*;

    #[test]
    fn callback_urls_are_checked() {
        assert_eq!(
            check_callback_url("https://example.com/hook?x=1").unwrap(),
            "https://example.com/hook?x=1"
        );
        assert!(check_callback_url("ftp://example.com/")
            .unwrap_err()
            .contains("http or https"));
        assert!(check_callback_url("not a url")
            .unwrap_err()
            .contains("not a URL"));
        assert!(check_callback_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn bodies_are_text_or_base64_and_headers_merge() {
        assert_eq!(text_or_base64(b"hi".to_vec()), (Some("hi".into()), None));
        assert_eq!(
            text_or_base64(vec![0xff, 0x00]),
            (None, Some("/wA=".into()))
        );
        let map = header_map(&[
            ("Vary".into(), "a".into()),
            ("vary".into(), "b".into()),
            ("content-type".into(), "text/plain".into()),
        ]);
        assert_eq!(map["vary"], "a, b");
        assert_eq!(map.len(), 2);
    }
}
