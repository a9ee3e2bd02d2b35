//! Creating and cancelling runs.

use std::collections::BTreeMap;

use wharf_model::manifest::{AppKind, Overlap};
use wharf_model::run::RunState;
use wharf_store::{NewRun, RunOutcome};

use crate::{Control, ControlError, ControlResult, Run};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// From the CLI or the API, by a user.
    Manual,
    /// Automatically, after a failed attempt.
    Retry,
    /// By an event that matched one of the app's triggers.
    Event,
    /// By a schedule trigger at one of its fire times.
    Schedule,
    /// By the app's trigger URL.
    Webhook,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::Event => "event",
            Trigger::Schedule => "schedule",
            Trigger::Webhook => "webhook",
        }
    }
}

/// A request to run a job.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub app_name: String,
    pub params: BTreeMap<String, String>,
    pub trigger: Trigger,
    pub triggered_by: Option<String>,
    /// Requests with the same key start one run.
    pub idempotency_key: Option<String>,
    /// The event that started the run: (event, app) is the run's idempotency key, so a
    /// replayed event never starts the same run twice.
    pub event_id: Option<String>,
}

pub(crate) fn new_run_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

impl Control {
    /// Queues a run of the app's active version, applying the overlap policy.
    pub async fn request_run(&self, request: RunRequest) -> ControlResult<Run> {
        for key in request.params.keys() {
            let valid = !key.is_empty()
                && key.len() <= 128
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !valid {
                return Err(ControlError::Invalid(format!(
                    "parameter name {key:?} is not allowed; use letters, digits, '_', '-' and '.'"
                )));
            }
        }
        let app = self.store().app(&request.app_name).await?;
        let version = app.active_version.ok_or_else(|| {
            ControlError::Conflict(format!("app \"{}\" has no active version", app.name))
        })?;
        let manifest = self.manifest(&app.id, version).await?;
        if manifest.kind != AppKind::Job {
            return Err(ControlError::Invalid(format!(
                "app \"{}\" is a {}, not a job; only jobs have runs",
                app.name,
                manifest.kind.as_str()
            )));
        }
        if manifest.job.overlap == Overlap::Skip {
            let busy = self
                .store()
                .count_app_runs_in_states(
                    &app.id,
                    &[RunState::Queued, RunState::Starting, RunState::Running],
                )
                .await?;
            if busy >= i64::from(manifest.job.concurrency) {
                return Err(ControlError::Conflict(format!(
                    "app \"{}\" already has {busy} run(s) queued or running, its concurrency \
                     limit, and overlap = \"skip\"; this run was not started",
                    app.name
                )));
            }
        }
        // Keys are scoped to the app and kept apart from the executor's own retry keys.
        let idempotency_key = match request.idempotency_key.as_deref() {
            _ if request.event_id.is_some() => request
                .event_id
                .as_deref()
                .map(|event| format!("event:{event}:{}", app.id)),
            None | Some("") => None,
            Some(key) if key.len() > 200 => {
                return Err(ControlError::Invalid(
                    "idempotency_key is longer than 200 characters".into(),
                ))
            }
            Some(key) => Some(format!("request:{}:{key}", app.id)),
        };
        let params = serde_json::to_string(&request.params)
            .map_err(|error| ControlError::Internal(error.to_string()))?;
        let now = wharf_store::now_millis();
        let (run, inserted) = self
            .store()
            .insert_run(&NewRun {
                id: new_run_id(),
                app_id: app.id.clone(),
                app_name: app.name.clone(),
                version,
                trigger_kind: request.trigger.as_str().to_owned(),
                triggered_by: request.triggered_by,
                params,
                attempt: 1,
                retry_of: None,
                idempotency_key,
                queued_at: now,
                not_before: now,
                event_id: request.event_id,
            })
            .await?;
        if inserted {
            tracing::info!(run_id = %run.id, app = %app.name, version, "Queued a run.");
            self.wake_executor();
        }
        Ok(run)
    }

    /// Cancels a run: a queued run ends at once, a running one is stopped (SIGTERM to its
    /// process group, SIGKILL after the grace period) and recorded as cancelled when its
    /// supervisor exits. Cancelling a finished run is a conflict.
    pub async fn cancel_run(&self, run_id: &str) -> ControlResult<Run> {
        let run = self.store().run(run_id).await?;
        if run.state.is_terminal() {
            return Err(ControlError::Conflict(format!(
                "run {run_id} has already ended ({})",
                run.state
            )));
        }
        if run.state == RunState::Queued {
            let outcome = RunOutcome {
                state: RunState::Cancelled,
                exit_code: None,
                exit_signal: None,
                error: Some("Cancelled before it started.".into()),
                started_at: None,
                finished_at: wharf_store::now_millis(),
            };
            if self
                .store()
                .finish_run(run_id, &outcome, None)
                .await?
                .is_some()
            {
                self.wake_executor();
                return Ok(self.store().run(run_id).await?);
            }
            // It was claimed meanwhile: stop it like a running run.
        }
        let dir = self.run_dir(run_id);
        let stopping = wharf_runtime::request_stop(&dir)?;
        if !stopping {
            // Claimed but not launched yet: the starter sees the cancelled state and
            // does not launch it.
            self.store()
                .transition_run(run_id, &[RunState::Starting], RunState::Cancelled)
                .await?;
        }
        tracing::info!(run_id, "Cancellation requested.");
        Ok(self.store().run(run_id).await?)
    }
}
