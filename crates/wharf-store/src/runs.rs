//! Runs: the durable record of every execution of a job.
//!
//! State changes are conditional updates (`WHERE state IN (...)`) so two actors racing on
//! one run cannot both win; a finished run and its retry are written in one transaction.

use sqlx::{QueryBuilder, Row, Sqlite};
use wharf_model::run::RunState;

use crate::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub version: i64,
    pub state: RunState,
    pub trigger_kind: String,
    pub triggered_by: Option<String>,
    /// JSON object of string parameters.
    pub params: String,
    /// 1 for the first execution, 2 for the first retry, ...
    pub attempt: i64,
    pub retry_of: Option<String>,
    pub retried_by: Option<String>,
    pub idempotency_key: Option<String>,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    pub error: Option<String>,
    pub queued_at: i64,
    pub not_before: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub shim_pid: Option<i64>,
    /// The event that started this run (event-triggered runs and their retries).
    pub event_id: Option<String>,
    /// The git commit the run's files came from (git-backed apps).
    pub source_commit: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    app_id: String,
    app_name: String,
    version: i64,
    state: String,
    trigger_kind: String,
    triggered_by: Option<String>,
    params: String,
    attempt: i64,
    retry_of: Option<String>,
    retried_by: Option<String>,
    idempotency_key: Option<String>,
    exit_code: Option<i64>,
    exit_signal: Option<i64>,
    error: Option<String>,
    queued_at: i64,
    not_before: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    shim_pid: Option<i64>,
    event_id: Option<String>,
    source_commit: Option<String>,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;
    fn try_from(row: RunRow) -> StoreResult<Run> {
        let state = row
            .state
            .parse::<RunState>()
            .map_err(|error| StoreError::Corrupt(format!("run {}: {error}", row.id)))?;
        Ok(Run {
            id: row.id,
            app_id: row.app_id,
            app_name: row.app_name,
            version: row.version,
            state,
            trigger_kind: row.trigger_kind,
            triggered_by: row.triggered_by,
            params: row.params,
            attempt: row.attempt,
            retry_of: row.retry_of,
            retried_by: row.retried_by,
            idempotency_key: row.idempotency_key,
            exit_code: row.exit_code,
            exit_signal: row.exit_signal,
            error: row.error,
            queued_at: row.queued_at,
            not_before: row.not_before,
            started_at: row.started_at,
            finished_at: row.finished_at,
            shim_pid: row.shim_pid,
            event_id: row.event_id,
            source_commit: row.source_commit,
        })
    }
}

/// A run to be queued.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub version: i64,
    pub trigger_kind: String,
    pub triggered_by: Option<String>,
    pub params: String,
    pub attempt: i64,
    pub retry_of: Option<String>,
    /// Runs with the same key are one run: inserting a second time returns the first.
    pub idempotency_key: Option<String>,
    pub queued_at: i64,
    pub not_before: i64,
    pub event_id: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: i64,
}

const RUN_COLUMNS: &str = "id, app_id, app_name, version, state, trigger_kind, triggered_by, \
    params, attempt, retry_of, retried_by, idempotency_key, exit_code, exit_signal, error, \
    queued_at, not_before, started_at, finished_at, shim_pid, event_id, source_commit";

fn push_states(builder: &mut QueryBuilder<'_, Sqlite>, states: &[RunState]) {
    builder.push("(");
    let mut separated = builder.separated(", ");
    for state in states {
        separated.push_bind(state.as_str());
    }
    separated.push_unseparated(")");
}

impl Store {
    /// Queues a run. With an idempotency key that is already taken, nothing is inserted
    /// and the existing run is returned with `false`.
    pub async fn insert_run(&self, new: &NewRun) -> StoreResult<(Run, bool)> {
        let mut tx = self.begin_write().await?;
        let inserted = insert_run_in(&mut tx, new).await?;
        let run = if inserted {
            fetch_run_in(&mut tx, &new.id).await?
        } else {
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            let row = sqlx::query_as::<_, RunRow>(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = $1"
            ))
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            Run::try_from(row)?
        };
        tx.commit().await?;
        Ok((run, inserted))
    }

    pub async fn find_run(&self, id: &str) -> StoreResult<Option<Run>> {
        sqlx::query_as::<_, RunRow>(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(Run::try_from)
            .transpose()
    }

    pub async fn run(&self, id: &str) -> StoreResult<Run> {
        self.find_run(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run \"{id}\" does not exist")))
    }

    /// Newest first; `app_id` narrows to one app.
    pub async fn list_runs(&self, app_id: Option<&str>, limit: i64) -> StoreResult<Vec<Run>> {
        let mut builder = QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs"));
        if let Some(app_id) = app_id {
            builder.push(" WHERE app_id = ").push_bind(app_id);
        }
        builder
            .push(" ORDER BY queued_at DESC, id DESC LIMIT ")
            .push_bind(limit);
        let rows = builder
            .build_query_as::<RunRow>()
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Run::try_from).collect()
    }

    pub async fn runs_in_states(&self, states: &[RunState]) -> StoreResult<Vec<Run>> {
        let mut builder =
            QueryBuilder::<Sqlite>::new(format!("SELECT {RUN_COLUMNS} FROM runs WHERE state IN "));
        push_states(&mut builder, states);
        builder.push(" ORDER BY queued_at, id");
        let rows = builder
            .build_query_as::<RunRow>()
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Run::try_from).collect()
    }

    pub async fn count_app_runs_in_states(
        &self,
        app_id: &str,
        states: &[RunState],
    ) -> StoreResult<i64> {
        let mut builder = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM runs WHERE app_id = ");
        builder.push_bind(app_id).push(" AND state IN ");
        push_states(&mut builder, states);
        Ok(builder
            .build_query_scalar::<i64>()
            .fetch_one(&self.pool)
            .await?)
    }

    /// Queued runs due at `now`, oldest first.
    pub async fn due_runs(&self, now: i64, limit: i64) -> StoreResult<Vec<Run>> {
        let rows = sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state = 'queued' AND not_before <= $1
             ORDER BY not_before, queued_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Run::try_from).collect()
    }

    /// The earliest time a queued run becomes due, if any run is queued.
    pub async fn next_due_time(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(not_before) FROM runs WHERE state = 'queued'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Moves a run from one of `from` to `to`; false if it was not in one of `from`.
    pub async fn transition_run(
        &self,
        id: &str,
        from: &[RunState],
        to: RunState,
    ) -> StoreResult<bool> {
        let mut builder = QueryBuilder::<Sqlite>::new("UPDATE runs SET state = ");
        builder.push_bind(to.as_str());
        if to.is_terminal() {
            builder
                .push(", finished_at = ")
                .push_bind(crate::now_millis());
        }
        builder
            .push(" WHERE id = ")
            .push_bind(id)
            .push(" AND state IN ");
        push_states(&mut builder, from);
        let done = builder.build().execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// starting → running, recording the shim that supervises it.
    pub async fn mark_run_running(
        &self,
        id: &str,
        shim_pid: i64,
        started_at: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE runs SET state = 'running', shim_pid = $1, started_at = $2
             WHERE id = $3 AND state = 'starting'",
        )
        .bind(shim_pid)
        .bind(started_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how a run ended and, in the same transaction, queues its retry.
    /// Returns None when the run had already ended (nothing changes).
    pub async fn finish_run(
        &self,
        id: &str,
        outcome: &RunOutcome,
        retry: Option<&NewRun>,
    ) -> StoreResult<Option<(Run, Option<Run>)>> {
        self.finish_run_notifying(id, outcome, retry, |_, _| Vec::new())
            .await
    }

    /// [`Store::finish_run`], also queueing the notifications `plan` asks for in the same
    /// transaction. `plan` gets the finished run and the app's previous final outcome
    /// (the newest other finished run that was neither cancelled nor retried).
    pub async fn finish_run_notifying(
        &self,
        id: &str,
        outcome: &RunOutcome,
        retry: Option<&NewRun>,
        plan: impl FnOnce(&Run, Option<RunState>) -> Vec<crate::NewNotification> + Send,
    ) -> StoreResult<Option<(Run, Option<Run>)>> {
        let mut tx = self.begin_write().await?;
        // The end comes from the shim's clock and the start from the server's, taken after
        // the launch returned: a run that exits at once can seem to end a moment before it
        // started. It never ends before its start here (durations stay whole).
        let done = sqlx::query(
            "UPDATE runs SET state = $1, exit_code = $2, exit_signal = $3, error = $4,
                 started_at = COALESCE(started_at, $5),
                 finished_at = MAX($6, COALESCE(started_at, $5, $6)),
                 retried_by = $7
             WHERE id = $8 AND state IN ('queued', 'starting', 'running')",
        )
        .bind(outcome.state.as_str())
        .bind(outcome.exit_code)
        .bind(outcome.exit_signal)
        .bind(&outcome.error)
        .bind(outcome.started_at)
        .bind(outcome.finished_at)
        .bind(retry.map(|r| r.id.as_str()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let retried = match retry {
            Some(new) => {
                insert_run_in(&mut tx, new).await?;
                Some(fetch_run_in(&mut tx, &new.id).await?)
            }
            None => None,
        };
        let run = fetch_run_in(&mut tx, id).await?;
        let previous = crate::notifications::previous_outcome_in(&mut tx, &run.app_id, id).await?;
        let notifications = plan(&run, previous);
        if !notifications.is_empty() {
            crate::notifications::insert_notifications_in(
                &mut tx,
                id,
                &run.app_name,
                &notifications,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some((run, retried)))
    }

    /// Ids of finished runs that ended before `before` (retention).
    pub async fn runs_finished_before(&self, before: i64, limit: i64) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1
             ORDER BY finished_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_run(&self, id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET retried_by = NULL WHERE retried_by = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM runs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

pub(crate) async fn insert_run_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    new: &NewRun,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO runs (id, app_id, app_name, version, state, trigger_kind, triggered_by,
             params, attempt, retry_of, idempotency_key, queued_at, not_before, event_id)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT DO NOTHING",
    )
    .bind(&new.id)
    .bind(&new.app_id)
    .bind(&new.app_name)
    .bind(new.version)
    .bind(&new.trigger_kind)
    .bind(&new.triggered_by)
    .bind(&new.params)
    .bind(new.attempt)
    .bind(&new.retry_of)
    .bind(&new.idempotency_key)
    .bind(new.queued_at)
    .bind(new.not_before)
    .bind(&new.event_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn fetch_run_in(tx: &mut sqlx::Transaction<'_, Sqlite>, id: &str) -> StoreResult<Run> {
    let row = sqlx::query_as::<_, RunRow>(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    Run::try_from(row)
}

impl Store {
    /// How many runs are in each state (for `/metrics`).
    pub async fn count_runs_by_state(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM runs GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("state")?, row.try_get("n")?)))
            .collect()
    }
}
