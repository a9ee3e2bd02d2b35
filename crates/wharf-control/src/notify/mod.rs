//! The notifier: tells channels (Slack, webhooks, e-mail) how runs ended.
//!
//! What to send is decided when a run's end is recorded ([`notification_plan`], from the
//! manifest's `[[notify]]` rules and `wharf_model::notify`), and written as `pending`
//! rows in the same transaction (the outbox). This loop delivers them, retrying with
//! doubling waits, and records every attempt; pending rows left by a stopped server are
//! delivered after the next start. It opens outbound connections only.

mod config;
mod send;

use std::time::Duration;

use wharf_model::notify::{plan_notifications, NotifyEvent, NotifyRule, RunMessage};
use wharf_model::run::RunState;
use wharf_store::{DeliveryAttempt, NewNotification, Notification};

pub use crate::notify::config::{
    is_mailbox, is_web_url, Channel, ChannelSecret, NotifyConfig, SmtpChannel, SmtpSecurity,
    TrustedCertificates,
};
pub use crate::notify::send::{
    sign as sign_webhook, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::{Control, ControlError, ControlResult, Run};

/// Longest sleep of the delivery loop between scans.
const IDLE_SCAN: Duration = Duration::from_secs(30);
/// Deliveries attempted at once.
const BATCH: i64 = 32;

/// A configured channel, as the API lists it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: String,
    pub kind: String,
    /// Host of the URL, or the SMTP server and recipients.
    pub target: String,
}

/// What the store runs inside a run's ending transaction: the notifications to queue,
/// given the run and the app's previous final outcome.
pub(crate) fn notification_plan(
    rules: Vec<NotifyRule>,
    will_retry: bool,
) -> impl FnOnce(&Run, Option<RunState>) -> Vec<NewNotification> + Send {
    move |run, previous| {
        plan_notifications(&rules, previous, run.state, will_retry)
            .into_iter()
            .map(|(channel, event)| NewNotification {
                id: crate::runs::new_run_id(),
                channel,
                event: event.as_str().to_owned(),
            })
            .collect()
    }
}

impl Control {
    /// The channels of the server configuration, by name.
    pub fn notification_channels(&self) -> Vec<ChannelSummary> {
        self.config()
            .notify
            .channels
            .iter()
            .map(|(name, channel)| ChannelSummary {
                name: name.clone(),
                kind: channel.kind().to_owned(),
                target: channel.describe(),
            })
            .collect()
    }

    /// Sends a test message to a channel now (no retries, nothing recorded). The outer
    /// error: no such channel; the inner one: the delivery failed, and why.
    pub async fn test_channel(&self, name: &str) -> ControlResult<Result<(), String>> {
        let channel = self.channel(name)?;
        let message = RunMessage::test(name, &self.config().notify.link_base);
        let id = crate::runs::new_run_id();
        let result = self.send_to(channel, &message, &id).await;
        match &result {
            Ok(()) => tracing::info!(channel = name, "Sent a test notification."),
            Err(error) => {
                tracing::warn!(channel = name, %error, "A test notification failed.")
            }
        }
        Ok(result)
    }

    /// Sends one message, with the channel's stored secrets opened now (so a new value
    /// applies from the next delivery on).
    async fn send_to(
        &self,
        channel: &Channel,
        message: &RunMessage,
        delivery_id: &str,
    ) -> Result<(), String> {
        let channel = channel
            .opened(|name| async move { self.open_secret(&name).await })
            .await?;
        send::send_message(
            &channel,
            message,
            delivery_id,
            self.config().notify.attempt_timeout,
        )
        .await
    }

    /// A run's notifications and how their delivery went.
    pub async fn run_notifications(&self, run_id: &str) -> ControlResult<Vec<Notification>> {
        self.store().run(run_id).await?;
        Ok(self.store().run_notifications(run_id).await?)
    }

    fn channel(&self, name: &str) -> ControlResult<&Channel> {
        self.config().notify.channels.get(name).ok_or_else(|| {
            ControlError::NotFound(format!(
                "the server has no notification channel \"{name}\"; {}",
                self.channel_list()
            ))
        })
    }

    fn channel_list(&self) -> String {
        let names: Vec<String> = self
            .config()
            .notify
            .channels
            .keys()
            .map(|name| format!("\"{name}\""))
            .collect();
        if names.is_empty() {
            "it has none; an admin adds them under [notify.channels.NAME] in the server configuration".to_owned()
        } else {
            format!("it has {}", names.join(", "))
        }
    }

    /// At deploy: every channel a `[[notify]]` rule names must exist on this server.
    pub(crate) fn check_notify_channels(
        &self,
        manifest: &wharf_model::manifest::Manifest,
    ) -> ControlResult<()> {
        let missing: Vec<String> = manifest
            .notify
            .iter()
            .enumerate()
            .filter(|(_, rule)| !self.config().notify.channels.contains_key(&rule.channel))
            .map(|(index, rule)| {
                format!(
                    "wharf.toml: notify[{index}].channel: the server has no notification channel \"{}\"",
                    rule.channel
                )
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ControlError::InvalidBundle(format!(
            "{}; {} (`wharf notify channels` lists them)",
            missing.join("\n"),
            self.channel_list()
        )))
    }

    pub(crate) fn wake_notifier(&self) {
        self.inner.notifier_wakeup.notify_one();
    }

    pub(crate) async fn notification_loop(&self) {
        loop {
            let sleep_for = match self.deliver_due_notifications().await {
                Ok(sleep_for) => sleep_for,
                Err(error) => {
                    tracing::error!(%error, "The notifier failed to read pending notifications; retrying.");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.inner.notifier_wakeup.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Attempts every due delivery (a batch at a time, concurrently); returns how long
    /// to sleep until the next one is due.
    async fn deliver_due_notifications(&self) -> ControlResult<Duration> {
        loop {
            let due = self
                .store()
                .due_notifications(wharf_store::now_millis(), BATCH)
                .await?;
            if due.is_empty() {
                break;
            }
            futures::future::join_all(due.iter().map(|notification| self.deliver(notification)))
                .await;
        }
        let now = wharf_store::now_millis();
        Ok(match self.store().next_notification_due().await? {
            Some(due) if due > now => Duration::from_millis((due - now) as u64).min(IDLE_SCAN),
            Some(_) => Duration::ZERO,
            None => IDLE_SCAN,
        })
    }

    /// One attempt of one delivery, recorded.
    async fn deliver(&self, notification: &Notification) {
        let notify = &self.config().notify;
        let result = match self.channel(&notification.channel) {
            Err(error) => Err(error.to_string()),
            Ok(channel) => match self.run_message(notification).await {
                Ok(message) => self.send_to(channel, &message, &notification.id).await,
                Err(error) => Err(error.to_string()),
            },
        };
        let attempts = u32::try_from(notification.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let attempt = match result {
            Ok(()) => {
                tracing::info!(run_id = %notification.run_id, channel = %notification.channel, event = %notification.event, attempts, "Sent a notification.");
                DeliveryAttempt::Sent
            }
            Err(error) if attempts >= notify.max_attempts => {
                tracing::warn!(run_id = %notification.run_id, channel = %notification.channel, attempts, %error, "Gave up on a notification.");
                DeliveryAttempt::GaveUp { error }
            }
            Err(error) => {
                let delay =
                    wharf_model::notify::delivery_retry_delay(notify.retry_backoff, attempts);
                tracing::warn!(run_id = %notification.run_id, channel = %notification.channel, attempts, retry_in = ?delay, %error, "A notification failed; retrying.");
                DeliveryAttempt::Retry {
                    error,
                    next_attempt_at: wharf_store::now_millis() + delay.as_millis() as i64,
                }
            }
        };
        if let Err(error) = self
            .store()
            .record_delivery_attempt(&notification.id, &attempt)
            .await
        {
            tracing::error!(notification_id = %notification.id, %error, "Could not record a notification attempt.");
        }
    }

    /// The message for a delivery: the run's facts, the last lines of its log, a link.
    async fn run_message(&self, notification: &Notification) -> ControlResult<RunMessage> {
        let run = self.store().run(&notification.run_id).await?;
        let event = notification
            .event
            .parse::<NotifyEvent>()
            .map_err(ControlError::Internal)?;
        let log_path = self.run_log_path(&run.id);
        let log_tail = tokio::task::spawn_blocking(move || {
            wharf_runtime::logs::read_last_lines(&log_path, wharf_model::notify::LOG_TAIL_LINES)
        })
        .await
        .map_err(|error| ControlError::Internal(error.to_string()))?
        .unwrap_or_default()
        .into_iter()
        .map(|line| line.l)
        .collect();
        Ok(RunMessage {
            app: run.app_name.clone(),
            run_id: run.id.clone(),
            event,
            status: run.state.as_str().to_owned(),
            attempt: run.attempt,
            trigger: run.trigger_kind.clone(),
            duration: match (run.started_at, run.finished_at) {
                (Some(start), Some(end)) if end >= start => {
                    Some(Duration::from_millis((end - start) as u64))
                }
                _ => None,
            },
            error: run.error.clone(),
            exit_code: run.exit_code,
            log_tail,
            link: format!(
                "{}/api/v1/runs/{}",
                self.config().notify.link_base.trim_end_matches('/'),
                run.id
            ),
        })
    }
}
