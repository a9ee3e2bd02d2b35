//! Retention: finished runs older than `log_retention` are deleted with their folders.

use std::time::Duration;

use crate::{remove_dir_if_exists, Control, ControlResult};

const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl Control {
    pub(crate) async fn retention_loop(&self) {
        loop {
            if let Err(error) = self.sweep_stopped_replicas().await {
                tracing::error!(%error, "Retention sweep of replicas failed.");
            }
            match self.sweep_expired_runs().await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "Deleted runs past their retention."),
                Err(error) => tracing::error!(%error, "Retention sweep failed."),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    }

    /// Deletes replicas that stopped before the retention, with their folders and logs.
    pub async fn sweep_stopped_replicas(&self) -> ControlResult<usize> {
        let cutoff = wharf_store::now_millis() - self.config().log_retention.as_millis() as i64;
        let mut deleted = 0;
        loop {
            let ids = self.store().delete_stopped_replicas(cutoff, 500).await?;
            if ids.is_empty() {
                return Ok(deleted);
            }
            for id in ids {
                let dir = self.replica_dir(&id);
                remove_dir_if_exists(&dir).map_err(|e| crate::ControlError::io(&dir, e))?;
                deleted += 1;
            }
        }
    }

    /// Deletes finished runs older than the retention; returns how many.
    pub async fn sweep_expired_runs(&self) -> ControlResult<usize> {
        let cutoff = wharf_store::now_millis() - self.config().log_retention.as_millis() as i64;
        let mut deleted = 0;
        loop {
            let ids = self.store().runs_finished_before(cutoff, 500).await?;
            if ids.is_empty() {
                return Ok(deleted);
            }
            for id in ids {
                let dir = self.run_dir(&id);
                remove_dir_if_exists(&dir).map_err(|e| crate::ControlError::io(&dir, e))?;
                self.store().delete_run(&id).await?;
                deleted += 1;
            }
        }
    }
}
