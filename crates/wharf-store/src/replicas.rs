//! Service replicas: what was started, where it listens, how it ended.

use crate::{now_millis, Store, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaRow {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub version: i64,
    pub port: i64,
    /// "starting", "ready", "draining" or "stopped".
    pub state: String,
    pub created_at: i64,
    pub ready_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    pub message: Option<String>,
}

const REPLICA_COLUMNS: &str = "id, app_id, app_name, version, port, state, created_at, ready_at, \
    stopped_at, exit_code, exit_signal, message";

/// How a replica ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaEnd {
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    pub message: String,
}

impl Store {
    pub async fn insert_replica(
        &self,
        id: &str,
        app_id: &str,
        app_name: &str,
        version: i64,
        port: u16,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO replicas (id, app_id, app_name, version, port, state, created_at)
             VALUES ($1, $2, $3, $4, $5, 'starting', $6)",
        )
        .bind(id)
        .bind(app_id)
        .bind(app_name)
        .bind(version)
        .bind(i64::from(port))
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves a live replica to `ready` or `draining`. A stopped one stays stopped.
    pub async fn set_replica_state(&self, id: &str, state: &str) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE replicas SET state = $2,
                 ready_at = CASE WHEN $2 = 'ready' AND ready_at IS NULL THEN $3 ELSE ready_at END
             WHERE id = $1 AND state <> 'stopped'",
        )
        .bind(id)
        .bind(state)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Records that a replica stopped (once; later calls change nothing).
    pub async fn stop_replica(&self, id: &str, end: &ReplicaEnd) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE replicas SET state = 'stopped', stopped_at = $2, exit_code = $3,
                 exit_signal = $4, message = $5
             WHERE id = $1 AND state <> 'stopped'",
        )
        .bind(id)
        .bind(now_millis())
        .bind(end.exit_code)
        .bind(end.exit_signal)
        .bind(&end.message)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub async fn find_replica(&self, id: &str) -> StoreResult<Option<ReplicaRow>> {
        Ok(sqlx::query_as::<_, ReplicaRow>(&format!(
            "SELECT {REPLICA_COLUMNS} FROM replicas WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// An app's replicas, newest first: every live one, then stopped ones up to `limit`
    /// rows in all.
    pub async fn list_replicas(&self, app_name: &str, limit: i64) -> StoreResult<Vec<ReplicaRow>> {
        Ok(sqlx::query_as::<_, ReplicaRow>(&format!(
            "SELECT {REPLICA_COLUMNS} FROM replicas WHERE app_name = $1
             ORDER BY CASE WHEN state = 'stopped' THEN 1 ELSE 0 END, created_at DESC, id DESC
             LIMIT $2"
        ))
        .bind(app_name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replicas not recorded as stopped (after a restart: to adopt or to record).
    pub async fn live_replicas(&self) -> StoreResult<Vec<ReplicaRow>> {
        Ok(sqlx::query_as::<_, ReplicaRow>(&format!(
            "SELECT {REPLICA_COLUMNS} FROM replicas WHERE state <> 'stopped' ORDER BY created_at"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes stopped replicas that stopped before `before` (unix ms); returns their ids
    /// so their folders can go too.
    pub async fn delete_stopped_replicas(
        &self,
        before: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM replicas WHERE state = 'stopped' AND stopped_at < $1
             ORDER BY stopped_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query("DELETE FROM replicas WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Removes every replica row of an app (the app is being deleted).
    pub async fn delete_app_replicas(&self, app_name: &str) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM replicas WHERE app_name = $1")
            .bind(app_name)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM replicas WHERE app_name = $1")
            .bind(app_name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids)
    }
}
