//! The executor: claims due runs within the concurrency limits, launches them on the
//! runtime, and records how they end (with the retry, in one transaction).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use wharf_model::run::{retry_delay, should_retry, RunState};
use wharf_runtime::{ExitStatus, LaunchSpec};
use wharf_store::{NewRun, RunOutcome};

use crate::runs::{new_run_id, Trigger};
use crate::{Control, ControlError, ControlResult, Run};

/// Longest sleep between scans; the executor is woken earlier by events.
const IDLE_SCAN: Duration = Duration::from_secs(5);

impl Control {
    pub(crate) async fn executor_loop(&self) {
        loop {
            let sleep_for = match self.dispatch_due_runs().await {
                Ok(sleep_for) => sleep_for,
                Err(error) => {
                    tracing::error!(%error, "The executor failed to dispatch runs; retrying.");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.inner.executor_wakeup.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Starts every due run that fits the limits; returns how long to sleep.
    async fn dispatch_due_runs(&self) -> ControlResult<Duration> {
        let store = self.store();
        let max_global = i64::from(self.config().max_concurrent_runs);
        let now = wharf_store::now_millis();
        // Both reads at once (two pooled connections): one round trip before the claim.
        let (active_runs, due_runs) = tokio::try_join!(
            store.runs_in_states(&[RunState::Starting, RunState::Running]),
            store.due_runs(now, 256),
        )?;
        // Only this loop moves runs into `starting`, so counting from the snapshot (plus what
        // the loop claims) never exceeds a limit; runs ending meanwhile wake us again.
        let mut active = active_runs.len() as i64;
        let mut active_per_app: HashMap<String, i64> = HashMap::new();
        for run in &active_runs {
            *active_per_app.entry(run.app_id.clone()).or_default() += 1;
        }
        for run in due_runs {
            if active >= max_global {
                break;
            }
            let manifest = match self.manifest(&run.app_id, run.version).await {
                Ok(manifest) => manifest,
                Err(error) => {
                    self.fail_unstartable(&run, &error.to_string()).await?;
                    continue;
                }
            };
            let app_active = active_per_app.entry(run.app_id.clone()).or_default();
            if *app_active >= i64::from(manifest.job.concurrency) {
                continue;
            }
            if !store
                .transition_run(&run.id, &[RunState::Queued], RunState::Starting)
                .await?
            {
                continue;
            }
            active += 1;
            *app_active += 1;
            if self.is_git_app(&run.app_name) {
                // Fetching may take a while; other runs need not wait for it.
                let control = self.clone();
                tokio::spawn(async move { control.launch_git_run(run).await });
                continue;
            }
            if let Err(error) = self.launch_run(&run, &manifest).await {
                tracing::error!(run_id = %run.id, %error, "Failed to launch a run.");
                self.fail_unstartable(&run, &format!("Wharf could not start the run: {error}"))
                    .await?;
                active -= 1;
                *app_active -= 1;
            }
        }
        let next = store.next_due_time().await?;
        let now = wharf_store::now_millis();
        Ok(match next {
            Some(due) if due > now => Duration::from_millis((due - now) as u64).min(IDLE_SCAN),
            // Due now but blocked by a limit: a finishing run wakes us.
            _ => IDLE_SCAN,
        })
    }

    pub(crate) async fn launch_run(
        &self,
        run: &Run,
        manifest: &wharf_model::manifest::Manifest,
    ) -> ControlResult<()> {
        let app_dir = self.version_dir(&run.app_name, run.version);
        if !app_dir.is_dir() {
            return Err(ControlError::Internal(format!(
                "the files of {} version {} are missing ({})",
                run.app_name,
                run.version,
                app_dir.display()
            )));
        }
        let mut env: Vec<(String, String)> = manifest
            .env
            .iter()
            .filter_map(|(key, value)| match value {
                wharf_model::manifest::EnvValue::Plain(value) => Some((key.clone(), value.clone())),
                wharf_model::manifest::EnvValue::Secret { .. } => None,
            })
            .collect();
        env.push(("WHARF_APP".into(), run.app_name.clone()));
        env.push(("WHARF_APP_VERSION".into(), run.version.to_string()));
        env.push(("WHARF_RUN_ID".into(), run.id.clone()));
        env.push(("WHARF_RUN_ATTEMPT".into(), run.attempt.to_string()));
        env.push(("WHARF_TRIGGER".into(), run.trigger_kind.clone()));
        env.push(("WHARF_PARAMS".into(), run.params.clone()));
        let run_dir = self.run_dir(&run.id);
        env.extend(self.prepare_run_io(run, manifest, &run_dir).await?);
        let spec = LaunchSpec {
            workload_id: run.id.clone(),
            command: manifest.command.clone(),
            env,
            app_dir,
            sandbox: self.sandbox(),
            timeout: manifest.job.timeout,
            kill_grace: self.config().kill_grace,
            extra_ro_binds: self.config().sandbox_ro_binds.clone(),
            secrets: self.sealed_env(manifest).await?,
        };
        let launched = self.inner.runtime.launch(&run_dir, &spec).await?;
        let started_at = wharf_store::now_millis();
        if !self
            .store()
            .mark_run_running(&run.id, i64::from(launched.shim_pid), started_at)
            .await?
        {
            // Cancelled while it was being launched.
            wharf_runtime::request_stop(&run_dir)?;
        }
        tracing::info!(run_id = %run.id, app = %run.app_name, shim_pid = launched.shim_pid, "Run started.");
        self.watch_run(run.id.clone(), run_dir);
        Ok(())
    }

    /// Waits in the background for the run's supervisor to exit, then records the end.
    pub(crate) fn watch_run(&self, run_id: String, run_dir: PathBuf) {
        let control = self.clone();
        tokio::spawn(async move {
            let status = wharf_runtime::wait_for_exit(&run_dir).await;
            let result = match status {
                Ok(status) => control.record_exit(&run_id, status).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = result {
                tracing::error!(%run_id, %error, "Failed to record the end of a run.");
            }
            control.wake_executor();
        });
    }

    /// Records the end of a run from its supervisor's status (None: the supervisor died
    /// without one, so the run is lost), queueing a retry when the policy allows.
    pub(crate) async fn record_exit(
        &self,
        run_id: &str,
        status: Option<ExitStatus>,
    ) -> ControlResult<()> {
        let outcome = match status {
            Some(status) => {
                let mut outcome = outcome_of(&status);
                let run = self.store().run(run_id).await?;
                if !run.state.is_terminal() {
                    self.finish_run_io(&run, &mut outcome).await;
                }
                outcome
            }
            None => RunOutcome {
                state: RunState::Lost,
                exit_code: None,
                exit_signal: None,
                error: Some("The run's supervisor exited without recording an outcome.".to_owned()),
                started_at: None,
                finished_at: wharf_store::now_millis(),
            },
        };
        self.finish(run_id, outcome).await
    }

    /// Writes the outcome and, in the same transaction, the retry the policy asks for.
    pub(crate) async fn finish(&self, run_id: &str, outcome: RunOutcome) -> ControlResult<()> {
        let run = self.store().run(run_id).await?;
        if run.state.is_terminal() {
            return Ok(());
        }
        let retry = self.retry_for(&run, outcome.state).await;
        let plan = crate::notify::notification_plan(self.notify_rules(&run).await, retry.is_some());
        let finished = self
            .store()
            .finish_run_notifying(run_id, &outcome, retry.as_ref(), plan)
            .await?;
        self.wake_notifier();
        if let Some((run, retried)) = finished {
            tracing::info!(run_id, app = %run.app_name, state = %run.state, exit_code = ?run.exit_code, "Run finished.");
            if let Some(retried) = retried {
                tracing::info!(run_id, retry_run_id = %retried.id, attempt = retried.attempt, "Retrying the run.");
            }
        }
        Ok(())
    }

    async fn retry_for(&self, run: &Run, state: RunState) -> Option<NewRun> {
        let manifest = self.manifest(&run.app_id, run.version).await.ok()?;
        let attempt = u32::try_from(run.attempt).unwrap_or(u32::MAX);
        if !should_retry(state, attempt, manifest.job.retries) {
            return None;
        }
        let now = wharf_store::now_millis();
        let delay = retry_delay(manifest.job.retry_backoff, attempt);
        Some(NewRun {
            id: new_run_id(),
            app_id: run.app_id.clone(),
            app_name: run.app_name.clone(),
            version: run.version,
            trigger_kind: Trigger::Retry.as_str().to_owned(),
            triggered_by: run.triggered_by.clone(),
            params: run.params.clone(),
            attempt: run.attempt + 1,
            retry_of: Some(run.id.clone()),
            idempotency_key: Some(format!("retry:{}", run.id)),
            queued_at: now,
            not_before: now + delay.as_millis() as i64,
            event_id: run.event_id.clone(),
        })
    }

    pub(crate) async fn fail_unstartable(&self, run: &Run, error: &str) -> ControlResult<()> {
        let _ = self.objects().delete_run_keys(&run.id).await;
        let outcome = RunOutcome {
            state: RunState::Failed,
            exit_code: None,
            exit_signal: None,
            error: Some(error.to_owned()),
            started_at: None,
            finished_at: wharf_store::now_millis(),
        };
        let plan = crate::notify::notification_plan(self.notify_rules(run).await, false);
        self.store()
            .finish_run_notifying(&run.id, &outcome, None, plan)
            .await?;
        self.wake_notifier();
        Ok(())
    }

    /// The `[[notify]]` rules of the run's version (none when it cannot be read).
    async fn notify_rules(&self, run: &Run) -> Vec<wharf_model::notify::NotifyRule> {
        match self.manifest(&run.app_id, run.version).await {
            Ok(manifest) => manifest.notify.clone(),
            Err(_) => Vec::new(),
        }
    }
}

fn outcome_of(status: &ExitStatus) -> RunOutcome {
    let state = if status.cancelled {
        RunState::Cancelled
    } else if status.timed_out {
        RunState::TimedOut
    } else if status.success() {
        RunState::Succeeded
    } else {
        RunState::Failed
    };
    RunOutcome {
        state,
        exit_code: status.exit_code.map(i64::from),
        exit_signal: status.signal.map(i64::from),
        error: status.error.clone(),
        started_at: status.started_at.map(|t| t.timestamp_millis()),
        finished_at: status.finished_at.timestamp_millis(),
    }
}
