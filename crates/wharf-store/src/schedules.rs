//! Schedule triggers' state (the newest slot handled, pauses) and trigger URL secrets.
//!
//! A schedule's runs carry the idempotency key (app, trigger, slot), so inserting a slot's
//! run twice (after a restart, or from a second server) returns the first; the slot a
//! trigger has handled advances in the same transaction as the runs it inserted, and only
//! forwards.

use crate::runs::insert_run_in;
use crate::{NewRun, Store, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScheduleState {
    pub app_id: String,
    /// The trigger's position in the manifest's `[[job.trigger]]` list.
    pub trigger_index: i64,
    /// The expression and time zone `last_slot` belongs to.
    pub spec: String,
    /// Unix ms of the newest slot fired or passed over.
    pub last_slot: i64,
    pub paused: bool,
    pub paused_by: Option<String>,
    pub updated_at: i64,
}

/// A trigger's handled slot moving forward.
#[derive(Debug, Clone)]
pub struct ScheduleAdvance {
    pub app_id: String,
    pub trigger_index: i64,
    pub last_slot: i64,
}

const STATE_COLUMNS: &str =
    "app_id, trigger_index, spec, last_slot, paused <> 0 AS paused, paused_by, updated_at";

impl Store {
    /// Every stored schedule state.
    pub async fn schedule_states(&self) -> StoreResult<Vec<ScheduleState>> {
        Ok(sqlx::query_as::<_, ScheduleState>(&format!(
            "SELECT {STATE_COLUMNS} FROM schedule_states ORDER BY app_id, trigger_index"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes sure a trigger has a state for `spec`: a new trigger, or one whose expression
    /// or time zone changed, starts from `last_slot`; the paused flag is kept.
    pub async fn register_schedule(
        &self,
        app_id: &str,
        trigger_index: i64,
        spec: &str,
        last_slot: i64,
    ) -> StoreResult<ScheduleState> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO schedule_states (app_id, trigger_index, spec, last_slot, paused, updated_at)
             VALUES ($1, $2, $3, $4, 0, $4)
             ON CONFLICT (app_id, trigger_index) DO UPDATE
                 SET spec = excluded.spec, last_slot = excluded.last_slot,
                     updated_at = excluded.updated_at
                 WHERE schedule_states.spec <> excluded.spec",
        )
        .bind(app_id)
        .bind(trigger_index)
        .bind(spec)
        .bind(last_slot)
        .execute(&mut *tx)
        .await?;
        let state = sqlx::query_as::<_, ScheduleState>(&format!(
            "SELECT {STATE_COLUMNS} FROM schedule_states WHERE app_id = $1 AND trigger_index = $2"
        ))
        .bind(app_id)
        .bind(trigger_index)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state)
    }

    /// Inserts the runs of due slots and advances the triggers' handled slots, in one
    /// transaction. Runs whose idempotency key exists are not inserted again. Returns
    /// how many runs were inserted.
    pub async fn record_schedule_fires(
        &self,
        runs: &[NewRun],
        advances: &[ScheduleAdvance],
        now: i64,
    ) -> StoreResult<usize> {
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        for run in runs {
            if insert_run_in(&mut tx, run).await? {
                inserted += 1;
            }
        }
        for advance in advances {
            sqlx::query(
                "UPDATE schedule_states SET last_slot = $1, updated_at = $2
                 WHERE app_id = $3 AND trigger_index = $4 AND last_slot < $1",
            )
            .bind(advance.last_slot)
            .bind(now)
            .bind(&advance.app_id)
            .bind(advance.trigger_index)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Pauses or resumes a trigger. Resuming moves the handled slot to `now`, so the
    /// slots that passed while paused do not run.
    pub async fn set_schedule_paused(
        &self,
        app_id: &str,
        trigger_index: i64,
        spec: &str,
        paused: bool,
        by: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO schedule_states
                 (app_id, trigger_index, spec, last_slot, paused, paused_by, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $4)
             ON CONFLICT (app_id, trigger_index) DO UPDATE
                 SET paused = excluded.paused, paused_by = excluded.paused_by,
                     updated_at = excluded.updated_at,
                     last_slot = CASE
                         WHEN schedule_states.paused <> 0 AND excluded.paused = 0
                              AND schedule_states.last_slot < excluded.last_slot
                         THEN excluded.last_slot
                         ELSE schedule_states.last_slot END",
        )
        .bind(app_id)
        .bind(trigger_index)
        .bind(spec)
        .bind(now)
        .bind(i64::from(paused))
        .bind(paused.then_some(by))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the hash of an app's trigger URL secret. Without `replace`, an existing
    /// secret is kept and false is returned.
    pub async fn set_trigger_secret(
        &self,
        app_id: &str,
        secret_hash: &str,
        created_by: &str,
        replace: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let conflict = if replace {
            "DO UPDATE SET secret_hash = excluded.secret_hash, created_at = excluded.created_at, \
             created_by = excluded.created_by"
        } else {
            "DO NOTHING"
        };
        let done = sqlx::query(&format!(
            "INSERT INTO trigger_secrets (app_id, secret_hash, created_at, created_by)
             VALUES ($1, $2, $3, $4) ON CONFLICT (app_id) {conflict}"
        ))
        .bind(app_id)
        .bind(secret_hash)
        .bind(now)
        .bind(created_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The stored hash of an app's trigger URL secret.
    pub async fn trigger_secret_hash(&self, app_id: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT secret_hash FROM trigger_secrets WHERE app_id = $1",
        )
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
