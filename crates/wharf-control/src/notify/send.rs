//! Sending one message to one channel: Slack, webhook (signed) or SMTP. Each returns a
//! one-line description of what went wrong, which is recorded with the delivery.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use wharf_model::notify::{webhook_signed_text, RunMessage};

use crate::notify::config::{tls_parameters, Channel, SmtpChannel, SmtpSecurity};

/// The header with the HMAC-SHA256 of `TIMESTAMP.BODY`, as `sha256=HEX`.
pub const SIGNATURE_HEADER: &str = "X-Wharf-Signature";
/// The header with the unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Wharf-Timestamp";
/// The header naming the event (failure, timeout, fixed, success, test).
pub const EVENT_HEADER: &str = "X-Wharf-Event";
/// The header with the delivery's id (the same on every retry of one message).
pub const DELIVERY_HEADER: &str = "X-Wharf-Delivery";

/// Sends `message` to `channel`; `delivery_id` identifies the message across retries.
pub(crate) async fn send_message(
    channel: &Channel,
    message: &RunMessage,
    delivery_id: &str,
    timeout: Duration,
) -> Result<(), String> {
    let sending = async {
        match channel {
            Channel::Slack { url } => {
                let body = serde_json::to_vec(&message.slack_payload())
                    .map_err(|error| error.to_string())?;
                post_json(url.value()?, body, Vec::new(), timeout).await
            }
            Channel::Webhook { url, secret } => {
                let body = serde_json::to_vec(&message.webhook_payload())
                    .map_err(|error| error.to_string())?;
                let timestamp = chrono::Utc::now().timestamp();
                let mut headers = vec![
                    (EVENT_HEADER, message.event.as_str().to_string()),
                    (DELIVERY_HEADER, delivery_id.to_string()),
                    (TIMESTAMP_HEADER, timestamp.to_string()),
                ];
                if let Some(secret) = secret {
                    headers.push((
                        SIGNATURE_HEADER,
                        format!("sha256={}", sign(secret.value()?, timestamp, &body)),
                    ));
                }
                post_json(url.value()?, body, headers, timeout).await
            }
            Channel::Smtp(smtp) => send_mail(smtp, message, timeout).await,
        }
    };
    match tokio::time::timeout(timeout + Duration::from_secs(1), sending).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// Hex HMAC-SHA256 of `TIMESTAMP.BODY` with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(&webhook_signed_text(timestamp, body));
    hex::encode(mac.finalize().into_bytes())
}

async fn post_json(
    url: &str,
    body: Vec<u8>,
    headers: Vec<(&str, String)>,
    timeout: Duration,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("cannot make an HTTP client: {error}"))?;
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    // The URL may carry a token (Slack's do): errors name the host only.
    let response = request
        .send()
        .await
        .map_err(|error| format!("cannot reach the webhook: {}", error.without_url()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.trim().chars().take(200).collect();
    Err(if text.is_empty() {
        format!("the webhook answered HTTP {status}")
    } else {
        format!("the webhook answered HTTP {status}: {text}")
    })
}

async fn send_mail(
    smtp: &SmtpChannel,
    message: &RunMessage,
    timeout: Duration,
) -> Result<(), String> {
    let from = smtp
        .from
        .parse()
        .map_err(|error| format!("from = \"{}\" is not an address: {error}", smtp.from))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(message.email_subject())
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        let address = to
            .parse()
            .map_err(|error| format!("to = \"{to}\" is not an address: {error}"))?;
        builder = builder.to(address);
    }
    let email = builder
        .body(message.text())
        .map_err(|error| format!("cannot build the e-mail: {error}"))?;
    let tls = match smtp.security {
        SmtpSecurity::None => Tls::None,
        security => {
            let parameters = tls_parameters(&smtp.host, smtp.extra_roots.as_ref())
                .map_err(|error| format!("cannot set up TLS for {}: {error}", smtp.host))?;
            if security == SmtpSecurity::Tls {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            }
        }
    };
    // "dangerous" only means "no TLS unless set": `tls` is set just above.
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
        transport = transport.credentials(Credentials::new(
            username.clone(),
            password.value()?.to_owned(),
        ));
    }
    transport
        .build()
        .send(email)
        .await
        .map(|_| ())
        .map_err(|error| smtp_error_text(smtp, &error))
}

/// What went wrong, in words. Never contains the password: lettre's errors carry the
/// server's reply or the TLS failure, not the credentials, and a server echoing the
/// password back would see it replaced.
fn smtp_error_text(smtp: &SmtpChannel, error: &lettre::transport::smtp::Error) -> String {
    let server = format!("{}:{}", smtp.host, smtp.port);
    let code = error.status().map(u16::from);
    let mut text = error.to_string();
    if let Some(password) = smtp
        .password
        .as_ref()
        .and_then(|password| password.value().ok())
        .filter(|password| !password.is_empty())
    {
        text = text.replace(password, "(hidden)");
    }
    if matches!(code, Some(530 | 534 | 535 | 538))
        || text.contains("No compatible authentication mechanism")
    {
        return match &smtp.username {
            Some(username) => format!(
                "authentication failed at the SMTP server {server} as \"{username}\": {text}; check username and the password (password_env or password_secret)"
            ),
            None => format!(
                "authentication failed at the SMTP server {server}: {text}; the server may require a login: set username and password_env (or password_secret)"
            ),
        };
    }
    if error.is_tls() || text.contains("certificate") {
        let hint = if smtp.extra_roots.is_some() {
            "check that ca_file holds the CA that signed the server's certificate, and that the certificate names the host"
        } else {
            "if the server's certificate is signed by your own CA, set ca_file to that CA's PEM file"
        };
        return format!("TLS with the SMTP server {server} failed: {text}; {hint}");
    }
    format!("the SMTP server {server} refused or failed: {text}")
}
