//! Asynchronous invocations of service apps and their attempts (calls of the app and
//! callback deliveries). State changes are conditional updates, so an invocation is
//! claimed once; an attempt and the state it leads to are written in one transaction.

use wharf_model::invocation::{CallbackState, InvocationState};

use crate::{Store, StoreError, StoreResult};

/// One invocation, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub invoked_by: String,
    pub method: String,
    /// Path and query inside the app.
    pub path: String,
    pub request_content_type: Option<String>,
    pub request_size: i64,
    pub callback_url: Option<String>,
    pub state: InvocationState,
    /// Calls of the app made so far.
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub error: Option<String>,
    pub response_status: Option<i64>,
    pub response_headers: Vec<(String, String)>,
    pub response_content_type: Option<String>,
    pub response_size: Option<i64>,
    pub response_truncated: bool,
    pub duration_ms: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub callback_state: CallbackState,
    pub callback_attempts: i64,
    pub callback_next_at: Option<i64>,
    pub callback_error: Option<String>,
    pub updated_at: i64,
}

/// An invocation to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvocation {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub invoked_by: String,
    pub method: String,
    pub path: String,
    pub request_content_type: Option<String>,
    pub request_size: i64,
    pub callback_url: Option<String>,
}

/// One attempt (a call of the app or a callback delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationAttempt {
    /// `call` or `callback`.
    pub kind: String,
    /// 1 for the first attempt of its kind.
    pub number: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// The HTTP status answered, if any.
    pub status: Option<i64>,
    pub error: Option<String>,
}

/// What a call of the app led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Back to `queued`, due at `next_attempt_at`.
    Retry { next_attempt_at: i64, error: String },
    /// The invocation ended (its response body, if any, is already on disk).
    Finished(FinishedCall),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedCall {
    pub state: InvocationState,
    pub error: Option<String>,
    pub status: Option<i64>,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub size: Option<i64>,
    pub truncated: bool,
    pub duration_ms: Option<i64>,
}

/// What a callback delivery attempt led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    Sent,
    Retry { next_at: i64, error: String },
    GaveUp { error: String },
}

#[derive(sqlx::FromRow)]
struct InvocationRow {
    id: String,
    app_id: String,
    app_name: String,
    invoked_by: String,
    method: String,
    path: String,
    request_content_type: Option<String>,
    request_size: i64,
    callback_url: Option<String>,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    error: Option<String>,
    response_status: Option<i64>,
    response_headers: Option<String>,
    response_content_type: Option<String>,
    response_size: Option<i64>,
    response_truncated: i64,
    duration_ms: Option<i64>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    callback_state: String,
    callback_attempts: i64,
    callback_next_at: Option<i64>,
    callback_error: Option<String>,
    updated_at: i64,
}

impl TryFrom<InvocationRow> for Invocation {
    type Error = StoreError;
    fn try_from(row: InvocationRow) -> StoreResult<Invocation> {
        let response_headers = match &row.response_headers {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text).map_err(|error| {
                StoreError::Corrupt(format!(
                    "response headers of invocation {}: {error}",
                    row.id
                ))
            })?,
        };
        Ok(Invocation {
            state: row.state.parse().map_err(StoreError::Corrupt)?,
            callback_state: row.callback_state.parse().map_err(StoreError::Corrupt)?,
            response_headers,
            response_truncated: row.response_truncated != 0,
            id: row.id,
            app_id: row.app_id,
            app_name: row.app_name,
            invoked_by: row.invoked_by,
            method: row.method,
            path: row.path,
            request_content_type: row.request_content_type,
            request_size: row.request_size,
            callback_url: row.callback_url,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            error: row.error,
            response_status: row.response_status,
            response_content_type: row.response_content_type,
            response_size: row.response_size,
            duration_ms: row.duration_ms,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            callback_attempts: row.callback_attempts,
            callback_next_at: row.callback_next_at,
            callback_error: row.callback_error,
            updated_at: row.updated_at,
        })
    }
}

const COLUMNS: &str = "id, app_id, app_name, invoked_by, method, path, request_content_type, \
    request_size, callback_url, state, attempts, next_attempt_at, error, response_status, \
    response_headers, response_content_type, response_size, response_truncated, duration_ms, \
    created_at, started_at, finished_at, callback_state, callback_attempts, callback_next_at, \
    callback_error, updated_at";

fn convert(rows: Vec<InvocationRow>) -> StoreResult<Vec<Invocation>> {
    rows.into_iter().map(Invocation::try_from).collect()
}

async fn insert_attempt_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    invocation_id: &str,
    kind: &str,
    attempt: &InvocationAttempt,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO invocation_attempts
             (invocation_id, kind, number, started_at, finished_at, status, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
    )
    .bind(invocation_id)
    .bind(kind)
    .bind(attempt.number)
    .bind(attempt.started_at)
    .bind(attempt.finished_at)
    .bind(attempt.status)
    .bind(&attempt.error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Queues an invocation, due now.
    pub async fn insert_invocation(&self, new: &NewInvocation) -> StoreResult<Invocation> {
        let now = crate::now_millis();
        sqlx::query(
            "INSERT INTO invocations (id, app_id, app_name, invoked_by, method, path,
                 request_content_type, request_size, callback_url, state, attempts,
                 next_attempt_at, response_truncated, created_at, callback_state,
                 callback_attempts, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, 0, $10, $11, 0, $10)",
        )
        .bind(&new.id)
        .bind(&new.app_id)
        .bind(&new.app_name)
        .bind(&new.invoked_by)
        .bind(&new.method)
        .bind(&new.path)
        .bind(&new.request_content_type)
        .bind(new.request_size)
        .bind(&new.callback_url)
        .bind(now)
        .bind(if new.callback_url.is_some() {
            CallbackState::Pending.as_str()
        } else {
            CallbackState::None.as_str()
        })
        .execute(&self.pool)
        .await?;
        self.invocation(&new.id).await
    }

    pub async fn invocation(&self, id: &str) -> StoreResult<Invocation> {
        let row = sqlx::query_as::<_, InvocationRow>(&format!(
            "SELECT {COLUMNS} FROM invocations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "no invocation {id} (it may be past its retention); `wharf invocations APP` lists an app's invocations"
            ))
        })?;
        Invocation::try_from(row)
    }

    pub async fn invocation_exists(&self, id: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM invocations WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?
                > 0,
        )
    }

    /// An app's invocations, newest first.
    pub async fn list_invocations(
        &self,
        app_name: &str,
        limit: i64,
    ) -> StoreResult<Vec<Invocation>> {
        convert(
            sqlx::query_as::<_, InvocationRow>(&format!(
                "SELECT {COLUMNS} FROM invocations WHERE app_name = $1
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(app_name)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Queued invocations (due or not), oldest first.
    pub async fn queued_invocations(&self, limit: i64) -> StoreResult<Vec<Invocation>> {
        convert(
            sqlx::query_as::<_, InvocationRow>(&format!(
                "SELECT {COLUMNS} FROM invocations WHERE state = 'queued'
                 ORDER BY created_at, id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// `queued` → `running`, counting the attempt. False when someone else took it.
    pub async fn claim_invocation(&self, id: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE invocations SET state = 'running', attempts = attempts + 1,
                 started_at = COALESCE(started_at, $1), updated_at = $1
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a call of the app and what it led to, in one transaction.
    pub async fn record_call(
        &self,
        id: &str,
        attempt: &InvocationAttempt,
        outcome: &CallOutcome,
    ) -> StoreResult<()> {
        let now = crate::now_millis();
        let mut tx = self.begin_write().await?;
        insert_attempt_in(&mut tx, id, "call", attempt).await?;
        match outcome {
            CallOutcome::Retry {
                next_attempt_at,
                error,
            } => {
                sqlx::query(
                    "UPDATE invocations SET state = 'queued', next_attempt_at = $1, error = $2,
                         updated_at = $3
                     WHERE id = $4 AND state = 'running'",
                )
                .bind(next_attempt_at)
                .bind(error)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            CallOutcome::Finished(finished) => {
                let headers = serde_json::to_string(&finished.headers)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                sqlx::query(
                    "UPDATE invocations SET state = $1, error = $2, response_status = $3,
                         response_headers = $4, response_content_type = $5, response_size = $6,
                         response_truncated = $7, duration_ms = $8, finished_at = $9,
                         callback_next_at = CASE WHEN callback_state = 'pending' THEN $9
                                                 ELSE callback_next_at END,
                         updated_at = $9
                     WHERE id = $10 AND state = 'running'",
                )
                .bind(finished.state.as_str())
                .bind(&finished.error)
                .bind(finished.status)
                .bind(headers)
                .bind(&finished.content_type)
                .bind(finished.size)
                .bind(i64::from(finished.truncated))
                .bind(finished.duration_ms)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// At start: invocations a previous server process was running go back to the queue
    /// (they run again: at-least-once). Returns how many.
    pub async fn requeue_running_invocations(&self) -> StoreResult<u64> {
        let now = crate::now_millis();
        let done = sqlx::query(
            "UPDATE invocations SET state = 'queued', next_attempt_at = $1, updated_at = $1
             WHERE state = 'running'",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Ended invocations whose callback is due at `now`, oldest first.
    pub async fn due_callbacks(&self, now: i64, limit: i64) -> StoreResult<Vec<Invocation>> {
        convert(
            sqlx::query_as::<_, InvocationRow>(&format!(
                "SELECT {COLUMNS} FROM invocations
                 WHERE callback_state = 'pending' AND callback_next_at IS NOT NULL
                   AND callback_next_at <= $1 AND state IN ('succeeded', 'failed')
                 ORDER BY callback_next_at, id LIMIT $2"
            ))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Takes a due callback for one attempt: it is not due again before `lease_until`
    /// (so a crash mid-delivery retries it then). False when it is not due any more.
    pub async fn claim_callback(&self, id: &str, now: i64, lease_until: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE invocations SET callback_next_at = $1, updated_at = $2
             WHERE id = $3 AND callback_state = 'pending' AND callback_next_at <= $2",
        )
        .bind(lease_until)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// When the next pending callback of an ended invocation is due.
    pub async fn next_callback_due(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(callback_next_at) FROM invocations
             WHERE callback_state = 'pending' AND state IN ('succeeded', 'failed')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records one callback delivery attempt and what it led to.
    pub async fn record_callback(
        &self,
        id: &str,
        attempt: &InvocationAttempt,
        outcome: &CallbackOutcome,
    ) -> StoreResult<()> {
        let now = crate::now_millis();
        let (state, next_at, error) = match outcome {
            CallbackOutcome::Sent => (CallbackState::Sent, None, None),
            CallbackOutcome::Retry { next_at, error } => {
                (CallbackState::Pending, Some(*next_at), Some(error.as_str()))
            }
            CallbackOutcome::GaveUp { error } => {
                (CallbackState::Failed, None, Some(error.as_str()))
            }
        };
        let mut tx = self.begin_write().await?;
        insert_attempt_in(&mut tx, id, "callback", attempt).await?;
        sqlx::query(
            "UPDATE invocations SET callback_state = $1, callback_attempts = callback_attempts + 1,
                 callback_next_at = $2, callback_error = COALESCE($3, callback_error),
                 updated_at = $4
             WHERE id = $5 AND callback_state = 'pending'",
        )
        .bind(state.as_str())
        .bind(next_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An invocation's attempts: calls first, then callbacks, in order.
    pub async fn invocation_attempts(&self, id: &str) -> StoreResult<Vec<InvocationAttempt>> {
        let rows = sqlx::query_as::<_, (String, i64, i64, i64, Option<i64>, Option<String>)>(
            "SELECT kind, number, started_at, finished_at, status, error
             FROM invocation_attempts WHERE invocation_id = $1
             ORDER BY kind, number",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(kind, number, started_at, finished_at, status, error)| InvocationAttempt {
                    kind,
                    number,
                    started_at,
                    finished_at,
                    status,
                    error,
                },
            )
            .collect())
    }

    /// Deletes up to `limit` ended invocations created before `cutoff` whose callback is
    /// not pending; returns their ids (their folders are the caller's to remove).
    pub async fn delete_invocations_before(
        &self,
        cutoff: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let ids = sqlx::query_scalar::<_, String>(
            "SELECT id FROM invocations
             WHERE created_at < $1 AND state IN ('succeeded', 'failed')
               AND callback_state <> 'pending'
             ORDER BY created_at LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query("DELETE FROM invocation_attempts WHERE invocation_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM invocations WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use wharf_model::invocation::{CallbackState, InvocationState};

    use crate::invocations::*;

    fn new(id: &str, callback: Option<&str>) -> NewInvocation {
        NewInvocation {
            id: id.into(),
            app_id: "a1".into(),
            app_name: "model".into(),
            invoked_by: "admin".into(),
            method: "POST".into(),
            path: "/predict".into(),
            request_content_type: Some("application/json".into()),
            request_size: 12,
            callback_url: callback.map(str::to_owned),
        }
    }

    fn attempt(number: i64, status: Option<i64>) -> InvocationAttempt {
        InvocationAttempt {
            kind: "call".into(),
            number,
            started_at: 1,
            finished_at: 2,
            status,
            error: None,
        }
    }

    #[tokio::test]
    async fn an_invocation_is_claimed_once_retried_and_finished_with_its_callback_due() {
        let store = Store::open_in_memory().await.unwrap();
        let queued = store
            .insert_invocation(&new("i1", Some("http://x/cb")))
            .await
            .unwrap();
        assert_eq!(queued.state, InvocationState::Queued);
        assert_eq!(queued.callback_state, CallbackState::Pending);
        let now = crate::now_millis();
        assert!(store.claim_invocation("i1", now).await.unwrap());
        assert!(!store.claim_invocation("i1", now).await.unwrap());
        store
            .record_call(
                "i1",
                &attempt(1, Some(503)),
                &CallOutcome::Retry {
                    next_attempt_at: now + 1000,
                    error: "503".into(),
                },
            )
            .await
            .unwrap();
        let again = store.invocation("i1").await.unwrap();
        assert_eq!(again.state, InvocationState::Queued);
        assert_eq!(again.attempts, 1);
        // Not due as a callback while the invocation is not ended.
        assert!(store
            .due_callbacks(now + 10_000, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(store.claim_invocation("i1", now).await.unwrap());
        store
            .record_call(
                "i1",
                &attempt(2, Some(200)),
                &CallOutcome::Finished(FinishedCall {
                    state: InvocationState::Succeeded,
                    error: None,
                    status: Some(200),
                    headers: vec![("content-type".into(), "application/json".into())],
                    content_type: Some("application/json".into()),
                    size: Some(5),
                    truncated: false,
                    duration_ms: Some(7),
                }),
            )
            .await
            .unwrap();
        let done = store.invocation("i1").await.unwrap();
        assert_eq!(done.state, InvocationState::Succeeded);
        assert_eq!(done.attempts, 2);
        assert_eq!(done.response_headers.len(), 1);
        let later = crate::now_millis() + 1;
        let due = store.due_callbacks(later, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(store
            .claim_callback("i1", later, later + 60_000)
            .await
            .unwrap());
        assert!(!store
            .claim_callback("i1", later, later + 60_000)
            .await
            .unwrap());
        store
            .record_callback(
                "i1",
                &InvocationAttempt {
                    kind: "callback".into(),
                    ..attempt(1, Some(200))
                },
                &CallbackOutcome::Sent,
            )
            .await
            .unwrap();
        let sent = store.invocation("i1").await.unwrap();
        assert_eq!(sent.callback_state, CallbackState::Sent);
        assert_eq!(store.invocation_attempts("i1").await.unwrap().len(), 3);
        assert_eq!(
            store
                .delete_invocations_before(crate::now_millis() + 1, 10)
                .await
                .unwrap(),
            vec!["i1".to_owned()]
        );
        assert!(!store.invocation_exists("i1").await.unwrap());
    }

    #[tokio::test]
    async fn running_invocations_are_queued_again_at_start() {
        let store = Store::open_in_memory().await.unwrap();
        store.insert_invocation(&new("i2", None)).await.unwrap();
        assert!(store.claim_invocation("i2", 1).await.unwrap());
        assert_eq!(store.requeue_running_invocations().await.unwrap(), 1);
        let row = store.invocation("i2").await.unwrap();
        assert_eq!(row.state, InvocationState::Queued);
        assert_eq!(row.attempts, 1);
        assert_eq!(store.queued_invocations(10).await.unwrap().len(), 1);
    }
}
