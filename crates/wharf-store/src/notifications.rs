//! Notifications of finished runs: one row per (run, channel), written in the run's
//! ending transaction (see [`Store::finish_run_notifying`]) and then moved by the
//! notifier from `pending` to `sent`, or to `failed` after its last attempt.

use wharf_model::run::RunState;

use crate::{Store, StoreError, StoreResult};

/// One message to one channel about one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub run_id: String,
    pub app_name: String,
    pub channel: String,
    /// failure | timeout | fixed | success
    pub event: String,
    pub state: NotificationState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationState {
    Pending,
    Sent,
    Failed,
}

impl NotificationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> StoreResult<NotificationState> {
        match text {
            "pending" => Ok(NotificationState::Pending),
            "sent" => Ok(NotificationState::Sent),
            "failed" => Ok(NotificationState::Failed),
            other => Err(StoreError::Corrupt(format!(
                "notification state \"{other}\""
            ))),
        }
    }
}

/// A notification to queue with a run's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub id: String,
    pub channel: String,
    pub event: String,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryAttempt {
    Sent,
    /// Failed; try again at `next_attempt_at`.
    Retry {
        error: String,
        next_attempt_at: i64,
    },
    /// Failed for the last time.
    GaveUp {
        error: String,
    },
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: String,
    run_id: String,
    app_name: String,
    channel: String,
    event: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    next_attempt_at: i64,
    sent_at: Option<i64>,
    updated_at: i64,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;
    fn try_from(row: NotificationRow) -> StoreResult<Notification> {
        Ok(Notification {
            state: NotificationState::parse(&row.state)?,
            id: row.id,
            run_id: row.run_id,
            app_name: row.app_name,
            channel: row.channel,
            event: row.event,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
            next_attempt_at: row.next_attempt_at,
            sent_at: row.sent_at,
            updated_at: row.updated_at,
        })
    }
}

const NOTIFICATION_COLUMNS: &str = "id, run_id, app_name, channel, event, state, attempts, \
    last_error, created_at, next_attempt_at, sent_at, updated_at";

/// The app's last final outcome before run `run_id`: the newest other finished run that
/// was not cancelled and not retried (a retried attempt is not the run's outcome).
pub(crate) async fn previous_outcome_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    app_id: &str,
    run_id: &str,
) -> StoreResult<Option<RunState>> {
    let state = sqlx::query_scalar::<_, String>(
        "SELECT state FROM runs
         WHERE app_id = $1 AND id <> $2 AND finished_at IS NOT NULL AND retried_by IS NULL
           AND state IN ('succeeded', 'failed', 'timed_out', 'lost')
         ORDER BY finished_at DESC, id DESC LIMIT 1",
    )
    .bind(app_id)
    .bind(run_id)
    .fetch_optional(&mut **tx)
    .await?;
    state
        .map(|state| {
            state
                .parse::<RunState>()
                .map_err(|error| StoreError::Corrupt(format!("run state: {error}")))
        })
        .transpose()
}

pub(crate) async fn insert_notifications_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    run_id: &str,
    app_name: &str,
    notifications: &[NewNotification],
) -> StoreResult<()> {
    let now = crate::now_millis();
    for new in notifications {
        sqlx::query(
            "INSERT INTO notifications (id, run_id, app_name, channel, event, state, attempts,
                 created_at, next_attempt_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)
             ON CONFLICT DO NOTHING",
        )
        .bind(&new.id)
        .bind(run_id)
        .bind(app_name)
        .bind(&new.channel)
        .bind(&new.event)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Pending notifications due at `now`, oldest first.
    pub async fn due_notifications(&self, now: i64, limit: i64) -> StoreResult<Vec<Notification>> {
        let rows = sqlx::query_as::<_, NotificationRow>(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications
             WHERE state = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at, created_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Notification::try_from).collect()
    }

    /// When the next pending notification is due, if any is pending.
    pub async fn next_notification_due(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records one delivery attempt of a pending notification (counting it).
    pub async fn record_delivery_attempt(
        &self,
        id: &str,
        attempt: &DeliveryAttempt,
    ) -> StoreResult<()> {
        let now = crate::now_millis();
        let (state, error, next, sent_at) = match attempt {
            DeliveryAttempt::Sent => ("sent", None, None, Some(now)),
            DeliveryAttempt::Retry {
                error,
                next_attempt_at,
            } => (
                "pending",
                Some(error.as_str()),
                Some(*next_attempt_at),
                None,
            ),
            DeliveryAttempt::GaveUp { error } => ("failed", Some(error.as_str()), None, None),
        };
        sqlx::query(
            "UPDATE notifications SET state = $1, attempts = attempts + 1,
                 last_error = COALESCE($2, last_error),
                 next_attempt_at = COALESCE($3, next_attempt_at), sent_at = $4, updated_at = $5
             WHERE id = $6 AND state = 'pending'",
        )
        .bind(state)
        .bind(error)
        .bind(next)
        .bind(sent_at)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run's notifications, in the order they were queued.
    pub async fn run_notifications(&self, run_id: &str) -> StoreResult<Vec<Notification>> {
        let rows = sqlx::query_as::<_, NotificationRow>(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE run_id = $1
             ORDER BY created_at, channel"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Notification::try_from).collect()
    }
}
