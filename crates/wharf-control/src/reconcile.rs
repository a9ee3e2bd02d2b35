//! Restart reconciliation: what a previous server process left running is re-adopted,
//! given its recorded exit, or declared lost (and retried when its policy allows).
//! No run stays `running` forever.

use wharf_model::run::RunState;
use wharf_store::RunOutcome;

use crate::{Control, ControlResult};

impl Control {
    pub(crate) async fn reconcile_runs(&self) -> ControlResult<()> {
        let runs = self
            .store()
            .runs_in_states(&[RunState::Starting, RunState::Running])
            .await?;
        for run in runs {
            let run_dir = self.run_dir(&run.id);
            if let Some(status) = wharf_runtime::read_exit_status(&run_dir)? {
                tracing::info!(run_id = %run.id, "Recording the exit of a run that ended while the server was down.");
                self.record_exit(&run.id, Some(status)).await?;
            } else if wharf_runtime::is_alive(&run_dir)? {
                tracing::info!(run_id = %run.id, "Re-adopting a run whose supervisor is still running.");
                if run.state == RunState::Starting {
                    let pid = wharf_runtime::shim_pid(&run_dir).unwrap_or_default();
                    self.store()
                        .mark_run_running(&run.id, i64::from(pid), wharf_store::now_millis())
                        .await?;
                }
                self.watch_run(run.id.clone(), run_dir);
            } else if run.state == RunState::Starting
                && !run_dir.join(wharf_runtime::LOG_FILE).exists()
            {
                // The server died while launching: no supervisor ever got as far as
                // opening the log, so the workload never ran. Launch it again.
                tracing::info!(run_id = %run.id, "Queueing again a run whose launch a restart interrupted.");
                for file in [
                    wharf_runtime::SPEC_FILE,
                    wharf_runtime::SHIM_LOCK_FILE,
                    wharf_runtime::SHIM_PID_FILE,
                ] {
                    let path = run_dir.join(file);
                    if let Err(error) = std::fs::remove_file(&path) {
                        if error.kind() != std::io::ErrorKind::NotFound {
                            return Err(crate::ControlError::io(&path, error));
                        }
                    }
                }
                let _ = self.objects().delete_run_keys(&run.id).await;
                self.store()
                    .transition_run(&run.id, &[RunState::Starting], RunState::Queued)
                    .await?;
            } else {
                tracing::warn!(run_id = %run.id, "Run lost: its supervisor is gone and recorded no exit.");
                let outcome = RunOutcome {
                    state: RunState::Lost,
                    exit_code: None,
                    exit_signal: None,
                    error: Some(
                        "The run's supervisor was gone after a server restart and recorded no exit."
                            .into(),
                    ),
                    started_at: None,
                    finished_at: wharf_store::now_millis(),
                };
                self.finish(&run.id, outcome).await?;
            }
        }
        Ok(())
    }
}
