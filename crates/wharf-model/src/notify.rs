//! Notifications: which events a finished run raises, which channels hear of it, and the
//! messages sent to Slack, webhooks and e-mail. Pure functions; the notifier in
//! wharf-control delivers what they decide.
//!
//! Events of a finished run (`previous` is the app's last final outcome before it):
//!
//! | the run ended   | events                                   |
//! |-----------------|------------------------------------------|
//! | `failed`, `lost`| failure                                  |
//! | `timed_out`     | timeout, failure                         |
//! | `succeeded`     | success, and fixed when `previous` was a failure, timeout or loss |
//! | `cancelled`     | none (someone chose to stop it)          |
//!
//! An attempt that is retried raises nothing: only the last attempt of a run speaks. A
//! channel gets at most one message per run, for the most specific event its rules ask
//! for (fixed before success, timeout before failure).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::json;

use crate::run::RunState;

/// How many of the last log lines a message carries.
pub const LOG_TAIL_LINES: usize = 30;

/// What a rule listens for (`on = [...]` in `[[notify]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The run failed, timed out or was lost (its last attempt).
    Failure,
    /// The run was killed at its timeout (its last attempt).
    Timeout,
    /// The first success after a failure, timeout or loss.
    Fixed,
    /// Every success.
    Success,
    /// `wharf notify test`: not a value of `on`.
    Test,
}

impl NotifyEvent {
    /// The values `on` accepts, in the order the docs list them.
    pub const RULE_VALUES: [NotifyEvent; 4] = [
        NotifyEvent::Failure,
        NotifyEvent::Timeout,
        NotifyEvent::Fixed,
        NotifyEvent::Success,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            NotifyEvent::Failure => "failure",
            NotifyEvent::Timeout => "timeout",
            NotifyEvent::Fixed => "fixed",
            NotifyEvent::Success => "success",
            NotifyEvent::Test => "test",
        }
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for NotifyEvent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NotifyEvent::RULE_VALUES
            .into_iter()
            .chain([NotifyEvent::Test])
            .find(|event| event.as_str() == text)
            .ok_or_else(|| format!("\"{text}\" is not a notification event"))
    }
}

/// `[[notify]]`: tell `channel` (configured on the server) about these events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotifyRule {
    pub channel: String,
    pub on: Vec<NotifyEvent>,
}

/// Whether a final state counts as a failure for "fixed" (cancelled runs count as nothing).
fn is_failure(state: RunState) -> bool {
    matches!(
        state,
        RunState::Failed | RunState::TimedOut | RunState::Lost
    )
}

/// The events a run that ended in `current` raises, given the app's previous final
/// outcome (`None`: no earlier run, or only cancelled ones).
pub fn run_events(previous: Option<RunState>, current: RunState) -> Vec<NotifyEvent> {
    match current {
        RunState::Failed | RunState::Lost => vec![NotifyEvent::Failure],
        RunState::TimedOut => vec![NotifyEvent::Timeout, NotifyEvent::Failure],
        RunState::Succeeded if previous.is_some_and(is_failure) => {
            vec![NotifyEvent::Fixed, NotifyEvent::Success]
        }
        RunState::Succeeded => vec![NotifyEvent::Success],
        _ => Vec::new(),
    }
}

/// The (channel, event) pairs to deliver for a run: one per channel, for the most specific
/// event (the first of `run_events`) its rules listen for. `will_retry`: the run gets
/// another attempt, so nothing is sent yet.
pub fn plan_notifications(
    rules: &[NotifyRule],
    previous: Option<RunState>,
    current: RunState,
    will_retry: bool,
) -> Vec<(String, NotifyEvent)> {
    if will_retry {
        return Vec::new();
    }
    let events = run_events(previous, current);
    let mut planned: Vec<(String, NotifyEvent)> = Vec::new();
    for rule in rules {
        if planned.iter().any(|(channel, _)| *channel == rule.channel) {
            continue;
        }
        let wanted: Vec<NotifyEvent> = rules
            .iter()
            .filter(|other| other.channel == rule.channel)
            .flat_map(|other| other.on.iter().copied())
            .collect();
        if let Some(event) = events.iter().find(|event| wanted.contains(event)) {
            planned.push((rule.channel.clone(), *event));
        }
    }
    planned
}

/// Everything a notification says about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMessage {
    pub app: String,
    pub run_id: String,
    pub event: NotifyEvent,
    /// The run's state ("failed", "succeeded", ...).
    pub status: String,
    pub attempt: i64,
    /// What started it ("manual", "event", "schedule", "retry", ...).
    pub trigger: String,
    pub duration: Option<Duration>,
    /// Why Wharf says it ended (e.g. "exit code 1"), if anything.
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// The last lines of its log, oldest first.
    pub log_tail: Vec<String>,
    /// Where to look at the run.
    pub link: String,
}

/// "2m 5s", "850ms", "1h 2m": a short human duration.
pub fn format_elapsed(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m {seconds}s"),
        _ => format!("{hours}h {minutes}m"),
    }
}

impl RunMessage {
    /// The message for `wharf notify test CHANNEL`.
    pub fn test(channel: &str, link: &str) -> RunMessage {
        RunMessage {
            app: "wharf".to_string(),
            run_id: "test".to_string(),
            event: NotifyEvent::Test,
            status: "test".to_string(),
            attempt: 1,
            trigger: "manual".to_string(),
            duration: None,
            error: None,
            exit_code: None,
            log_tail: vec![format!(
                "This is a test message to the channel \"{channel}\"; it works."
            )],
            link: link.to_string(),
        }
    }

    /// "report failed", "report is fixed", "Test message from Wharf".
    pub fn headline(&self) -> String {
        let app = &self.app;
        match self.event {
            NotifyEvent::Test => "Test message from Wharf".to_string(),
            NotifyEvent::Fixed => format!("{app} is fixed: run {} succeeded", self.run_id),
            NotifyEvent::Success => format!("{app} succeeded (run {})", self.run_id),
            NotifyEvent::Timeout => format!("{app} timed out (run {})", self.run_id),
            NotifyEvent::Failure => {
                let how = match self.status.as_str() {
                    "lost" => "was lost".to_string(),
                    "timed_out" => "timed out".to_string(),
                    _ => "failed".to_string(),
                };
                format!("{app} {how} (run {})", self.run_id)
            }
        }
    }

    /// The facts, one per line: status, trigger, duration, attempt, error.
    fn facts(&self) -> Vec<String> {
        let mut facts = vec![
            format!("App: {}", self.app),
            format!("Run: {}", self.run_id),
            format!("Status: {}", self.status),
            format!("Trigger: {}", self.trigger),
        ];
        if let Some(duration) = self.duration {
            facts.push(format!("Duration: {}", format_elapsed(duration)));
        }
        if self.attempt > 1 {
            facts.push(format!("Attempt: {}", self.attempt));
        }
        if let Some(code) = self.exit_code {
            facts.push(format!("Exit code: {code}"));
        }
        if let Some(error) = &self.error {
            facts.push(format!("Error: {error}"));
        }
        facts
    }

    /// Plain text: headline, facts, the log's last lines, the link (e-mail body).
    pub fn text(&self) -> String {
        let mut text = format!("{}\n\n{}\n", self.headline(), self.facts().join("\n"));
        if !self.log_tail.is_empty() {
            text.push_str(&format!(
                "\nLast {} log lines:\n{}\n",
                self.log_tail.len(),
                self.log_tail.join("\n")
            ));
        }
        text.push_str(&format!("\n{}\n", self.link));
        text
    }

    /// The e-mail subject: "[wharf] report failed (run 01…)".
    pub fn email_subject(&self) -> String {
        format!("[wharf] {}", self.headline())
    }

    /// A Slack incoming-webhook payload: `text` (shown everywhere, also by Mattermost and
    /// other Slack-compatible receivers) with the log in a code block.
    pub fn slack_payload(&self) -> serde_json::Value {
        let mut text = format!(
            "*{}*\n{}",
            escape_slack(&self.headline()),
            escape_slack(&self.facts().join(" · "))
        );
        if !self.log_tail.is_empty() {
            // Three backticks in a line would end the code block early.
            let log = self.log_tail.join("\n").replace("```", "` ` `");
            text.push_str(&format!("\n```\n{}\n```", escape_slack(&log)));
        }
        text.push_str(&format!("\n<{}|Open the run>", self.link));
        json!({ "text": text })
    }

    /// The generic webhook's JSON body.
    pub fn webhook_payload(&self) -> serde_json::Value {
        json!({
            "event": self.event.as_str(),
            "app": self.app,
            "run_id": self.run_id,
            "status": self.status,
            "attempt": self.attempt,
            "trigger": self.trigger,
            "duration_ms": self.duration.map(|d| d.as_millis() as u64),
            "exit_code": self.exit_code,
            "error": self.error,
            "log_tail": self.log_tail,
            "link": self.link,
            "summary": self.headline(),
        })
    }
}

/// Slack's three escapes for message text.
fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The text a webhook signature covers: `TIMESTAMP.BODY` (unix seconds, a dot, the exact
/// body bytes), so a captured request cannot be replayed with another timestamp.
pub fn webhook_signed_text(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut text = format!("{timestamp}.").into_bytes();
    text.extend_from_slice(body);
    text
}

/// Delay before delivery attempt `attempt + 1` after `attempt` failed: `base` doubling,
/// at most an hour (the same curve as run retries).
pub fn delivery_retry_delay(base: Duration, attempt: u32) -> Duration {
    crate::run::retry_delay(base, attempt)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::notify::{
        format_elapsed, plan_notifications, run_events, webhook_signed_text, NotifyEvent,
        NotifyRule, RunMessage,
    };
    use crate::run::RunState::{self, *};

    fn rule(channel: &str, on: &[NotifyEvent]) -> NotifyRule {
        NotifyRule {
            channel: channel.to_string(),
            on: on.to_vec(),
        }
    }

    #[test]
    fn events_of_each_outcome() {
        use NotifyEvent::*;
        assert_eq!(run_events(None, Failed), vec![Failure]);
        assert_eq!(run_events(Some(Succeeded), Lost), vec![Failure]);
        assert_eq!(run_events(None, TimedOut), vec![Timeout, Failure]);
        assert_eq!(run_events(None, Succeeded), vec![Success]);
        assert_eq!(run_events(Some(Succeeded), Succeeded), vec![Success]);
        for failure in [Failed, TimedOut, Lost] {
            assert_eq!(run_events(Some(failure), Succeeded), vec![Fixed, Success]);
        }
        assert_eq!(run_events(Some(Failed), Cancelled), vec![]);
        for state in [Queued, Starting, Running] {
            assert_eq!(run_events(None, state), vec![]);
        }
    }

    #[test]
    fn failure_then_fixed_then_quiet() {
        use NotifyEvent::*;
        let rules = [rule("slack", &[Failure, Fixed])];
        let mut previous: Option<RunState> = None;
        let mut sent = Vec::new();
        for state in [Succeeded, Failed, Failed, Succeeded, Succeeded] {
            sent.push(plan_notifications(&rules, previous, state, false));
            previous = Some(state);
        }
        let slack = |event| vec![("slack".to_string(), event)];
        assert_eq!(
            sent,
            vec![vec![], slack(Failure), slack(Failure), slack(Fixed), vec![]]
        );
    }

    #[test]
    fn one_message_per_channel_most_specific_event() {
        use NotifyEvent::*;
        let rules = [
            rule("slack", &[Success]),
            rule("mail", &[Failure]),
            rule("slack", &[Fixed, Failure]),
            rule("ops", &[Timeout]),
        ];
        assert_eq!(
            plan_notifications(&rules, Some(Failed), Succeeded, false),
            vec![("slack".to_string(), Fixed)]
        );
        assert_eq!(
            plan_notifications(&rules, None, TimedOut, false),
            vec![
                ("slack".to_string(), Failure),
                ("mail".to_string(), Failure),
                ("ops".to_string(), Timeout),
            ]
        );
        assert_eq!(
            plan_notifications(&rules, None, Succeeded, false),
            vec![("slack".to_string(), Success)]
        );
    }

    #[test]
    fn retried_and_cancelled_runs_send_nothing() {
        let rules = [rule(
            "slack",
            &NotifyEvent::RULE_VALUES, // everything
        )];
        assert!(plan_notifications(&rules, None, Failed, true).is_empty());
        assert!(plan_notifications(&rules, None, Cancelled, false).is_empty());
        assert!(plan_notifications(&[], None, Failed, false).is_empty());
    }

    fn message() -> RunMessage {
        RunMessage {
            app: "report".to_string(),
            run_id: "01jrun".to_string(),
            event: NotifyEvent::Failure,
            status: "failed".to_string(),
            attempt: 2,
            trigger: "schedule".to_string(),
            duration: Some(Duration::from_millis(125_400)),
            error: Some("exit code 1".to_string()),
            exit_code: Some(1),
            log_tail: vec!["reading data".to_string(), "Error: x < y & ```".to_string()],
            link: "https://wharf.example.com/api/v1/runs/01jrun".to_string(),
        }
    }

    #[test]
    fn plain_text_message() {
        assert_eq!(
            message().text(),
            "report failed (run 01jrun)\n\nApp: report\nRun: 01jrun\nStatus: failed\n\
             Trigger: schedule\nDuration: 2m 5s\nAttempt: 2\nExit code: 1\nError: exit code 1\n\
             \nLast 2 log lines:\nreading data\nError: x < y & ```\n\
             \nhttps://wharf.example.com/api/v1/runs/01jrun\n"
        );
        assert_eq!(
            message().email_subject(),
            "[wharf] report failed (run 01jrun)"
        );
    }

    #[test]
    fn slack_payload_escapes_and_links() {
        let payload = message().slack_payload();
        let text = payload["text"].as_str().unwrap();
        assert!(text.starts_with("*report failed (run 01jrun)*\nApp: report · "));
        assert!(text.contains("\n```\nreading data\nError: x &lt; y &amp; ` ` `\n```\n"));
        assert!(text.ends_with("<https://wharf.example.com/api/v1/runs/01jrun|Open the run>"));
    }

    #[test]
    fn webhook_payload_fields() {
        let payload = message().webhook_payload();
        assert_eq!(payload["event"], "failure");
        assert_eq!(payload["status"], "failed");
        assert_eq!(payload["duration_ms"], 125_400);
        assert_eq!(payload["log_tail"][1], "Error: x < y & ```");
        assert_eq!(payload["summary"], "report failed (run 01jrun)");
    }

    #[test]
    fn headlines() {
        let mut message = message();
        for (event, status, headline) in [
            (
                NotifyEvent::Fixed,
                "succeeded",
                "report is fixed: run 01jrun succeeded",
            ),
            (
                NotifyEvent::Success,
                "succeeded",
                "report succeeded (run 01jrun)",
            ),
            (
                NotifyEvent::Timeout,
                "timed_out",
                "report timed out (run 01jrun)",
            ),
            (
                NotifyEvent::Failure,
                "timed_out",
                "report timed out (run 01jrun)",
            ),
            (NotifyEvent::Failure, "lost", "report was lost (run 01jrun)"),
        ] {
            message.event = event;
            message.status = status.to_string();
            assert_eq!(message.headline(), headline);
        }
        let test = RunMessage::test("ops", "http://x");
        assert_eq!(test.headline(), "Test message from Wharf");
        assert!(test.text().contains("channel \"ops\""));
    }

    #[test]
    fn durations_and_signed_text() {
        assert_eq!(format_elapsed(Duration::from_millis(850)), "850ms");
        assert_eq!(format_elapsed(Duration::from_secs(59)), "59s");
        assert_eq!(format_elapsed(Duration::from_secs(3725)), "1h 2m");
        assert_eq!(
            webhook_signed_text(1700000000, b"{}"),
            b"1700000000.{}".to_vec()
        );
    }

    #[test]
    fn event_names_round_trip() {
        for event in NotifyEvent::RULE_VALUES {
            assert_eq!(event.as_str().parse::<NotifyEvent>(), Ok(event));
        }
        assert!("failed".parse::<NotifyEvent>().is_err());
    }
}
