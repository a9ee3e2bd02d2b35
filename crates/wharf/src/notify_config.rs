//! `[notify]` in the server configuration: delivery settings and the channels, turned
//! into the control plane's `NotifyConfig` with credentials read from the environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wharf_control::notify::{
    Channel, ChannelSecret, NotifyConfig, SmtpChannel, SmtpSecurity, TrustedCertificates,
};
use wharf_model::duration::parse_duration;

use crate::server::HiddenSecret;

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// The server's address as people reach it, for links in messages; default: from `listen`.
    pub public_url: String,
    /// Tries per message before it is recorded as failed.
    pub max_attempts: u32,
    /// Wait after the first failed try; doubles for each further one.
    pub retry_backoff: String,
    /// Longest time one try may take.
    pub timeout: String,
    /// `[notify.channels.NAME]`.
    pub channels: BTreeMap<String, ChannelSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            public_url: String::new(),
            max_attempts: 5,
            retry_backoff: "10s".into(),
            timeout: "30s".into(),
            channels: BTreeMap::new(),
        }
    }
}

/// `[notify.channels.NAME]`: the keys of every kind; each kind checks the ones it uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// "slack", "webhook" or "smtp".
    pub kind: String,
    /// slack, webhook: the URL (or `url_env` or `url_secret`, which keep a token out of
    /// the file).
    pub url: HiddenSecret,
    pub url_env: String,
    /// The stored secret (`wharf secret set`) holding the URL.
    pub url_secret: String,
    /// webhook: the variable holding the HMAC-SHA256 key.
    pub secret_env: String,
    /// webhook: the stored secret holding the HMAC-SHA256 key.
    pub signing_secret: String,
    /// smtp
    pub host: String,
    pub port: Option<u16>,
    /// "starttls" (default), "tls" or "none".
    pub security: String,
    pub username: String,
    /// The variable holding the SMTP password.
    pub password_env: String,
    /// The stored secret holding the SMTP password.
    pub password_secret: String,
    /// A PEM file of CA certificates trusted for this server, besides the Mozilla roots.
    pub ca_file: String,
    pub from: String,
    pub to: Vec<String>,
}

fn env_value(field: &str, variable: &str) -> anyhow::Result<ChannelSecret> {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => Ok(ChannelSecret::Value(value.trim().to_owned())),
        _ => anyhow::bail!(
            "invalid server configuration: {field} = \"{variable}\", but the environment variable {variable} is not set (or empty); set it in the server's environment"
        ),
    }
}

/// One way a credential can be given: the key and what it holds.
struct Given<'a> {
    key: &'a str,
    text: &'a str,
}

/// A credential given at most one way: in the file (`value`), as the name of an
/// environment variable (`env`), or as the name of a stored secret (`secret`, opened at
/// each delivery). None when none is given.
fn credential(
    path: &str,
    value: Option<Given>,
    env: Given,
    secret: Given,
) -> anyhow::Result<Option<ChannelSecret>> {
    let all: Vec<&Given> = value.iter().chain([&env, &secret]).collect();
    let set: Vec<&str> = all
        .iter()
        .filter(|given| !given.text.trim().is_empty())
        .map(|given| given.key)
        .collect();
    if set.len() > 1 {
        anyhow::bail!(
            "invalid server configuration: {path} has {}; keep one",
            set.join(" and ")
        );
    }
    if let Some(value) = value.filter(|value| !value.text.trim().is_empty()) {
        return Ok(Some(ChannelSecret::Value(value.text.trim().to_owned())));
    }
    if !env.text.trim().is_empty() {
        return env_value(&format!("{path}.{}", env.key), env.text.trim()).map(Some);
    }
    match secret.text.trim() {
        "" => Ok(None),
        name => {
            wharf_control::check_secret_name(name).map_err(|error| {
                anyhow::anyhow!(
                    "invalid server configuration: {path}.{}: {error}",
                    secret.key
                )
            })?;
            Ok(Some(ChannelSecret::Stored(name.to_owned())))
        }
    }
}

fn url_of(path: &str, settings: &ChannelSettings) -> anyhow::Result<ChannelSecret> {
    let url = credential(
        path,
        Some(Given {
            key: "url",
            text: &settings.url.0,
        }),
        Given {
            key: "url_env",
            text: &settings.url_env,
        },
        Given {
            key: "url_secret",
            text: &settings.url_secret,
        },
    )?
    .ok_or_else(|| {
        anyhow::anyhow!(
            "invalid server configuration: {path} needs url = \"https://...\", url_env = \"VARIABLE\" (the variable holding the URL) or url_secret = \"NAME\" (a secret set with `wharf secret set`)"
        )
    })?;
    match &url {
        // The URL may hold a token: never repeat it.
        ChannelSecret::Value(text) if !wharf_control::notify::is_web_url(text) => anyhow::bail!(
            "invalid server configuration: the URL of {path} is not an http:// or https:// URL"
        ),
        // A stored URL is checked when it is opened, at each delivery.
        _ => Ok(url),
    }
}

fn channel(name: &str, settings: &ChannelSettings) -> anyhow::Result<Channel> {
    let path = format!("notify.channels.{name}");
    let unused = |keys: &[(&str, bool)]| -> anyhow::Result<()> {
        for (key, set) in keys {
            anyhow::ensure!(
                !set,
                "invalid server configuration: {path}.{key} does not apply to kind = \"{}\"; remove it",
                settings.kind
            );
        }
        Ok(())
    };
    let smtp_keys_set = [
        ("host", !settings.host.is_empty()),
        ("port", settings.port.is_some()),
        ("security", !settings.security.is_empty()),
        ("username", !settings.username.is_empty()),
        ("password_env", !settings.password_env.is_empty()),
        ("password_secret", !settings.password_secret.is_empty()),
        ("ca_file", !settings.ca_file.is_empty()),
        ("from", !settings.from.is_empty()),
        ("to", !settings.to.is_empty()),
    ];
    match settings.kind.trim() {
        "slack" => {
            unused(&smtp_keys_set)?;
            unused(&[
                ("secret_env", !settings.secret_env.is_empty()),
                ("signing_secret", !settings.signing_secret.is_empty()),
            ])?;
            Ok(Channel::Slack {
                url: url_of(&path, settings)?,
            })
        }
        "webhook" => {
            unused(&smtp_keys_set)?;
            let secret = credential(
                &path,
                None,
                Given {
                    key: "secret_env",
                    text: &settings.secret_env,
                },
                Given {
                    key: "signing_secret",
                    text: &settings.signing_secret,
                },
            )?;
            Ok(Channel::Webhook {
                url: url_of(&path, settings)?,
                secret,
            })
        }
        "smtp" => smtp_channel(&path, settings),
        "" => anyhow::bail!(
            "invalid server configuration: {path} needs kind = \"slack\", \"webhook\" or \"smtp\""
        ),
        other => anyhow::bail!(
            "invalid server configuration: {path}.kind = \"{other}\"; write \"slack\", \"webhook\" or \"smtp\""
        ),
    }
}

fn smtp_channel(path: &str, settings: &ChannelSettings) -> anyhow::Result<Channel> {
    anyhow::ensure!(
        settings.url.0.is_empty()
            && settings.url_env.is_empty()
            && settings.url_secret.is_empty()
            && settings.secret_env.is_empty()
            && settings.signing_secret.is_empty(),
        "invalid server configuration: {path} is an smtp channel; url, url_env, url_secret, secret_env and signing_secret do not apply, remove them"
    );
    let security = match settings.security.trim() {
        "" | "starttls" => SmtpSecurity::StartTls,
        "tls" => SmtpSecurity::Tls,
        "none" => SmtpSecurity::None,
        other => anyhow::bail!(
            "invalid server configuration: {path}.security = \"{other}\"; write \"starttls\", \"tls\" or \"none\""
        ),
    };
    anyhow::ensure!(
        !settings.host.trim().is_empty(),
        "invalid server configuration: {path} needs host = \"smtp.example.com\""
    );
    anyhow::ensure!(
        !settings.from.trim().is_empty(),
        "invalid server configuration: {path} needs from = \"wharf@example.com\""
    );
    anyhow::ensure!(
        !settings.to.is_empty(),
        "invalid server configuration: {path} needs to = [\"team@example.com\"]"
    );
    for address in std::iter::once(&settings.from).chain(&settings.to) {
        anyhow::ensure!(
            wharf_control::notify::is_mailbox(address),
            "invalid server configuration: {path}: \"{address}\" is not an e-mail address"
        );
    }
    let password = credential(
        path,
        None,
        Given {
            key: "password_env",
            text: &settings.password_env,
        },
        Given {
            key: "password_secret",
            text: &settings.password_secret,
        },
    )?;
    let (username, password) = match (settings.username.trim(), password) {
        ("", None) => (None, None),
        (username, Some(password)) if !username.is_empty() => {
            (Some(username.to_owned()), Some(password))
        }
        _ => anyhow::bail!(
            "invalid server configuration: {path} needs both username and password_env (or password_secret) to log in, or neither"
        ),
    };
    if security == SmtpSecurity::None && password.is_some() {
        tracing::warn!(
            channel = path,
            "{path} logs in with security = \"none\": the password crosses the network unencrypted; use \"starttls\" or \"tls\" unless the SMTP server is on this host"
        );
    }
    let extra_roots = match settings.ca_file.trim() {
        "" => None,
        _ if security == SmtpSecurity::None => anyhow::bail!(
            "invalid server configuration: {path}.ca_file does not apply to security = \"none\" (no TLS); remove it, or use \"starttls\" or \"tls\""
        ),
        file => Some(trusted_certificates(path, file)?),
    };
    Ok(Channel::Smtp(SmtpChannel {
        host: settings.host.trim().to_owned(),
        port: settings.port.unwrap_or(match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }),
        security,
        username,
        password,
        extra_roots,
        from: settings.from.trim().to_owned(),
        to: settings.to.iter().map(|to| to.trim().to_owned()).collect(),
    }))
}

/// Reads `ca_file` of the channel at `path`.
fn trusted_certificates(path: &str, file: &str) -> anyhow::Result<TrustedCertificates> {
    let what = "give a PEM file with the certificate(s) of the CA that signed the SMTP server's certificate";
    let pem = std::fs::read(file).map_err(|error| {
        anyhow::anyhow!(
            "invalid server configuration: {path}.ca_file = \"{file}\": cannot read it ({error}); {what}"
        )
    })?;
    TrustedCertificates::from_pem(file.into(), &pem).map_err(|error| {
        anyhow::anyhow!(
            "invalid server configuration: {path}.ca_file = \"{file}\": {error}; {what}"
        )
    })
}

/// Checks `[notify]` and reads the channels' credentials. `default_link_base`: the API's
/// own address, used when `public_url` is not set.
pub fn notify_config(
    settings: &NotifySettings,
    default_link_base: &str,
) -> anyhow::Result<NotifyConfig> {
    let mut config = NotifyConfig {
        link_base: match settings.public_url.trim() {
            "" => default_link_base.to_owned(),
            url => {
                anyhow::ensure!(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "invalid server configuration: notify.public_url = \"{url}\"; write the address people open, e.g. \"https://wharf.example.com\""
                );
                url.trim_end_matches('/').to_owned()
            }
        },
        max_attempts: settings.max_attempts,
        ..NotifyConfig::default()
    };
    anyhow::ensure!(
        (1..=100).contains(&settings.max_attempts),
        "invalid server configuration: notify.max_attempts = {}; use 1 to 100",
        settings.max_attempts
    );
    config.retry_backoff = parse_duration(&settings.retry_backoff).map_err(|error| {
        anyhow::anyhow!("invalid server configuration: notify.retry_backoff: {error}")
    })?;
    config.attempt_timeout = parse_duration(&settings.timeout).map_err(|error| {
        anyhow::anyhow!("invalid server configuration: notify.timeout: {error}")
    })?;
    anyhow::ensure!(
        !config.attempt_timeout.is_zero(),
        "invalid server configuration: notify.timeout must be more than 0s"
    );
    for (name, channel_settings) in &settings.channels {
        anyhow::ensure!(
            wharf_model::manifest::is_channel_name(name),
            "invalid server configuration: notify.channels.\"{name}\": use letters, digits, '-', '_' and '.' in channel names"
        );
        config
            .channels
            .insert(name.clone(), channel(name, channel_settings)?);
    }
    Ok(config)
}
