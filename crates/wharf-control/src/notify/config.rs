//! The notification channels the server has, with their credentials resolved.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::client::{Certificate, TlsParameters};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A credential (webhook URL with a token, HMAC key, SMTP password): the value itself
/// (from the server's environment or configuration file), or the name of a stored secret
/// (`wharf secret set`), opened at each delivery so a new value applies at once. `{:?}`
/// prints `(hidden)` or the secret's name, never a value, so configurations can be logged.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelSecret {
    Value(String),
    Stored(String),
}

impl std::fmt::Debug for ChannelSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelSecret::Value(_) => formatter.write_str("(hidden)"),
            ChannelSecret::Stored(name) => write!(formatter, "(secret {name:?})"),
        }
    }
}

impl ChannelSecret {
    /// The value; a stored secret must have been opened first ([`Channel::opened`]).
    pub(crate) fn value(&self) -> Result<&str, String> {
        match self {
            ChannelSecret::Value(value) => Ok(value),
            ChannelSecret::Stored(name) => Err(format!("the secret {name:?} was not opened")),
        }
    }

    /// Stored secrets opened with `open`; values as they are.
    async fn opened<F, Fut>(&self, open: &F) -> Result<ChannelSecret, String>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<String, String>>,
    {
        match self {
            ChannelSecret::Value(_) => Ok(self.clone()),
            ChannelSecret::Stored(name) => open(name.clone()).await.map(ChannelSecret::Value),
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    StartTls,
    /// TLS from the first byte (SMTPS), usually port 465.
    Tls,
    /// No encryption (a local relay), usually port 25.
    None,
}

impl SmtpSecurity {
    pub fn as_str(&self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpChannel {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Log in with these when set.
    pub username: Option<String>,
    pub password: Option<ChannelSecret>,
    /// Certificates trusted for this channel besides the Mozilla roots (`ca_file`).
    pub extra_roots: Option<TrustedCertificates>,
    pub from: String,
    pub to: Vec<String>,
}

/// CA certificates from a PEM file, trusted for one channel's TLS connections.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedCertificates {
    /// The file they were read from (for messages).
    pub file: PathBuf,
    /// The certificates, DER-encoded.
    pub certificates: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TrustedCertificates {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} ({} certificate(s))",
            self.file.display(),
            self.certificates.len()
        )
    }
}

impl TrustedCertificates {
    /// Reads the certificates of a PEM file's text (`-----BEGIN CERTIFICATE-----` blocks;
    /// other blocks, such as keys, are skipped) and checks that each one can be a root.
    pub fn from_pem(file: PathBuf, pem: &[u8]) -> Result<TrustedCertificates, String> {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .map(|certificate| certificate.map(|der| der.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("it is not a PEM file of certificates ({error})"))?;
        if certificates.is_empty() {
            return Err(
                "it has no certificate (a PEM block starting with -----BEGIN CERTIFICATE-----)"
                    .to_string(),
            );
        }
        let trusted = TrustedCertificates { file, certificates };
        // Building TLS settings parses every certificate as a root.
        tls_parameters("localhost", Some(&trusted))
            .map_err(|error| format!("a certificate in it cannot be used: {error}"))?;
        Ok(trusted)
    }
}

/// TLS settings for `domain` trusting the Mozilla roots and `extra_roots`. Certificates
/// and host names are always verified.
pub(crate) fn tls_parameters(
    domain: &str,
    extra_roots: Option<&TrustedCertificates>,
) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(domain.to_owned());
    for der in extra_roots
        .map(|roots| &roots.certificates[..])
        .unwrap_or_default()
    {
        let certificate = Certificate::from_der(der.clone()).map_err(|error| error.to_string())?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|error| error.to_string())
}

/// Where a channel's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A Slack-compatible incoming webhook: POST `{"text": ...}`.
    Slack { url: ChannelSecret },
    /// A generic JSON webhook, signed with HMAC-SHA256 when a secret is set.
    Webhook {
        url: ChannelSecret,
        secret: Option<ChannelSecret>,
    },
    /// E-mail through an SMTP server.
    Smtp(SmtpChannel),
}

impl Channel {
    /// This channel with its stored secrets opened by `open` (name → value).
    pub(crate) async fn opened<F, Fut>(&self, open: F) -> Result<Channel, String>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<String, String>>,
    {
        Ok(match self {
            Channel::Slack { url } => Channel::Slack {
                url: checked_url(url.opened(&open).await?)?,
            },
            Channel::Webhook { url, secret } => Channel::Webhook {
                url: checked_url(url.opened(&open).await?)?,
                secret: match secret {
                    Some(secret) => Some(secret.opened(&open).await?),
                    None => None,
                },
            },
            Channel::Smtp(smtp) => Channel::Smtp(SmtpChannel {
                password: match &smtp.password {
                    Some(password) => Some(password.opened(&open).await?),
                    None => None,
                },
                ..smtp.clone()
            }),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Slack { .. } => "slack",
            Channel::Webhook { .. } => "webhook",
            Channel::Smtp(_) => "smtp",
        }
    }

    /// Where it goes, without secrets: the host of a URL, the SMTP server and recipients.
    pub fn describe(&self) -> String {
        let host_of = |url: &str| match reqwest::Url::parse(url) {
            Ok(parsed) => format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default(),
                parsed
                    .port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default()
            ),
            Err(_) => "(an invalid URL)".to_string(),
        };
        let url_of = |url: &ChannelSecret| match url {
            ChannelSecret::Value(url) => host_of(url),
            ChannelSecret::Stored(name) => format!("the URL in secret {name:?}"),
        };
        match self {
            Channel::Slack { url } => url_of(url),
            Channel::Webhook { url, secret } => format!(
                "{}{}",
                url_of(url),
                if secret.is_some() { ", signed" } else { "" }
            ),
            Channel::Smtp(smtp) => format!(
                "{}:{} ({}) to {}",
                smtp.host,
                smtp.port,
                smtp.security.as_str(),
                smtp.to.join(", ")
            ),
        }
    }
}

/// Whether `url` is an http:// or https:// URL (the message never repeats it: it may
/// hold a token).
pub fn is_web_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https"))
}

/// An opened URL, if it is one.
fn checked_url(url: ChannelSecret) -> Result<ChannelSecret, String> {
    match &url {
        ChannelSecret::Value(text) if !is_web_url(text) => {
            Err("the channel's URL is not an http:// or https:// URL".into())
        }
        _ => Ok(url),
    }
}

/// The `[notify]` settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub channels: BTreeMap<String, Channel>,
    /// Links in messages are `LINK_BASE/api/v1/runs/ID`.
    pub link_base: String,
    /// Tries per message before it is recorded as failed.
    pub max_attempts: u32,
    /// Wait after the first failed try; doubles for each further one (at most an hour).
    pub retry_backoff: Duration,
    /// Longest time one try may take.
    pub attempt_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            channels: BTreeMap::new(),
            link_base: "http://127.0.0.1:8080".to_string(),
            max_attempts: 5,
            retry_backoff: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether `text` is an e-mail address ("a@example.com" or "Team <a@example.com>").
pub fn is_mailbox(text: &str) -> bool {
    text.parse::<lettre::message::Mailbox>().is_ok()
}
