//! The scheduler: starts the runs of schedule triggers at their fire times (slots).
//!
//! It keeps every schedule trigger of every active job version in memory with its next
//! slot, sleeps until the earliest one (or until a deploy, rollback, delete, pause or
//! resume wakes it to reload), and then inserts one run per due slot with the idempotency
//! key (app, trigger, slot) — in the same transaction that advances the trigger's handled
//! slot in the store. A restart, a late wake-up or a second server therefore never runs
//! a slot twice. On start, slots missed while the server was down follow the trigger's
//! `catch_up`; slots that come due while it runs all fire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use wharf_model::firing::{plan_fires, CompiledSchedule};
use wharf_model::manifest::{AppKind, Manifest, Overlap, Trigger as ManifestTrigger};
use wharf_model::run::RunState;
use wharf_store::{NewRun, ScheduleAdvance};

use crate::runs::{new_run_id, Trigger};
use crate::{Control, ControlResult};

/// The longest sleep: guards against the wall clock being stepped while asleep.
const MAX_SLEEP: Duration = Duration::from_secs(60);
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// The idempotency key of a schedule's run: one run per (app, trigger, slot).
pub fn schedule_idempotency_key(app_id: &str, trigger_index: i64, slot: DateTime<Utc>) -> String {
    format!(
        "schedule:{app_id}:{trigger_index}:{}",
        slot.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The slot a run was started for, read back from its idempotency key.
pub fn scheduled_slot(idempotency_key: Option<&str>) -> Option<DateTime<Utc>> {
    let key = idempotency_key?.strip_prefix("schedule:")?;
    let mut parts = key.splitn(3, ':');
    let (_app, _index, slot) = (parts.next()?, parts.next()?, parts.next()?);
    DateTime::parse_from_rfc3339(slot)
        .ok()
        .map(|slot| slot.with_timezone(&Utc))
}

/// One schedule trigger of an active job version.
#[derive(Debug, Clone)]
pub(crate) struct ScheduleEntry {
    pub app_id: String,
    pub app_name: String,
    pub version: i64,
    pub trigger_index: i64,
    pub schedule: Arc<CompiledSchedule>,
    /// `Some(concurrency)` when the job's overlap is "skip".
    pub skip_at: Option<u32>,
    pub last_slot: DateTime<Utc>,
    pub paused: bool,
    pub next: Option<DateTime<Utc>>,
}

/// Compiled schedules by (app id, version, trigger index): versions never change.
type CompileCache = HashMap<(String, i64, i64), Arc<CompiledSchedule>>;

/// The schedule triggers of a manifest with their positions.
pub(crate) fn schedule_triggers(
    manifest: &Manifest,
    app_name: &str,
) -> Vec<(i64, Result<CompiledSchedule, String>)> {
    if manifest.kind != AppKind::Job {
        return Vec::new();
    }
    manifest
        .job
        .triggers
        .iter()
        .enumerate()
        .filter_map(|(index, trigger)| match trigger {
            ManifestTrigger::Schedule {
                schedule,
                timezone,
                catch_up,
            } => Some((
                index as i64,
                CompiledSchedule::compile(
                    schedule,
                    timezone.as_deref(),
                    catch_up.as_deref(),
                    app_name,
                ),
            )),
            _ => None,
        })
        .collect()
}

impl Control {
    /// Wakes the scheduler to reload its triggers (deploy, rollback, delete, pause, resume).
    pub(crate) fn wake_scheduler(&self) {
        self.inner.scheduler_wakeup.notify_one();
    }

    pub(crate) async fn scheduler_loop(&self) {
        let mut cache = CompileCache::new();
        let mut entries: Vec<ScheduleEntry> = Vec::new();
        let mut reload = true;
        let mut first_pass = true;
        loop {
            if reload {
                match self.load_schedule_entries(&mut cache).await {
                    Ok(loaded) => {
                        entries = loaded;
                        reload = false;
                    }
                    Err(error) => {
                        tracing::error!(%error, "The scheduler could not load the schedules; retrying.");
                        tokio::time::sleep(RETRY_AFTER_ERROR).await;
                        continue;
                    }
                }
            }
            if let Err(error) = self.fire_due_slots(&mut entries, first_pass).await {
                tracing::error!(%error, "The scheduler could not start due runs; retrying.");
                tokio::time::sleep(RETRY_AFTER_ERROR).await;
                reload = true;
                continue;
            }
            first_pass = false;
            let earliest = entries
                .iter()
                .filter(|entry| !entry.paused)
                .filter_map(|entry| entry.next)
                .min();
            let sleep = match earliest {
                Some(next) => (next - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                None => MAX_SLEEP,
            }
            .min(MAX_SLEEP);
            tokio::select! {
                _ = self.inner.scheduler_wakeup.notified() => reload = true,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Every schedule trigger of every active job version, with its stored state
    /// (registering triggers that have none, or whose expression or time zone changed).
    pub(crate) async fn load_schedule_entries(
        &self,
        cache: &mut CompileCache,
    ) -> ControlResult<Vec<ScheduleEntry>> {
        let now = wharf_store::now_millis();
        let states: HashMap<(String, i64), wharf_store::ScheduleState> = self
            .store()
            .schedule_states()
            .await?
            .into_iter()
            .map(|state| ((state.app_id.clone(), state.trigger_index), state))
            .collect();
        let mut entries = Vec::new();
        for app in self.store().list_apps().await? {
            let Some(version) = app.active_version else {
                continue;
            };
            let manifest = self.manifest(&app.id, version).await?;
            let skip_at =
                (manifest.job.overlap == Overlap::Skip).then_some(manifest.job.concurrency);
            for (trigger_index, compiled) in schedule_triggers(&manifest, &app.name) {
                let key = (app.id.clone(), version, trigger_index);
                let schedule = match cache.get(&key) {
                    Some(found) => found.clone(),
                    None => match compiled {
                        Ok(compiled) => {
                            let compiled = Arc::new(compiled);
                            cache.insert(key, compiled.clone());
                            compiled
                        }
                        Err(error) => {
                            tracing::warn!(app = %app.name, version, trigger_index, %error,
                                "A stored schedule does not compile; it is ignored.");
                            continue;
                        }
                    },
                };
                let spec = schedule.spec();
                let state = match states.get(&(app.id.clone(), trigger_index)) {
                    Some(state) if state.spec == spec => state.clone(),
                    _ => {
                        self.store()
                            .register_schedule(&app.id, trigger_index, &spec, now)
                            .await?
                    }
                };
                let last_slot = wharf_store::millis_to_utc(state.last_slot);
                entries.push(ScheduleEntry {
                    app_id: app.id.clone(),
                    app_name: app.name.clone(),
                    version,
                    trigger_index,
                    next: schedule.next_after(last_slot),
                    schedule,
                    skip_at,
                    last_slot,
                    paused: state.paused,
                });
            }
        }
        Ok(entries)
    }

    /// Starts the runs of every due slot, in one transaction.
    async fn fire_due_slots(
        &self,
        entries: &mut [ScheduleEntry],
        missed_while_down: bool,
    ) -> ControlResult<()> {
        let now = Utc::now();
        let queued_at = now.timestamp_millis();
        let mut runs = Vec::new();
        let mut advances = Vec::new();
        let mut busy_by_app: HashMap<String, i64> = HashMap::new();
        for entry in entries.iter_mut() {
            if entry.paused || entry.next.is_none_or(|next| next > now) {
                continue;
            }
            let plan = plan_fires(&entry.schedule, entry.last_slot, now, missed_while_down);
            if plan.skipped > 0 {
                tracing::info!(app = %entry.app_name, trigger = entry.trigger_index,
                    skipped = plan.skipped, catch_up = entry.schedule.catch_up.as_str(),
                    "Schedule slots missed while the server was down were not run.");
            }
            for slot in &plan.fire {
                if let Some(concurrency) = entry.skip_at {
                    let busy = match busy_by_app.get(&entry.app_id) {
                        Some(busy) => *busy,
                        None => {
                            self.store()
                                .count_app_runs_in_states(
                                    &entry.app_id,
                                    &[RunState::Queued, RunState::Starting, RunState::Running],
                                )
                                .await?
                        }
                    };
                    if busy >= i64::from(concurrency) {
                        tracing::info!(app = %entry.app_name, trigger = entry.trigger_index,
                            slot = %slot, "A scheduled run was skipped: the job is at its concurrency limit and overlap = \"skip\".");
                        busy_by_app.insert(entry.app_id.clone(), busy);
                        continue;
                    }
                    busy_by_app.insert(entry.app_id.clone(), busy + 1);
                }
                runs.push(NewRun {
                    id: new_run_id(),
                    app_id: entry.app_id.clone(),
                    app_name: entry.app_name.clone(),
                    version: entry.version,
                    trigger_kind: Trigger::Schedule.as_str().to_owned(),
                    triggered_by: Some(format!(
                        "schedule #{} \"{}\"",
                        entry.trigger_index, entry.schedule.expression
                    )),
                    params: "{}".to_owned(),
                    attempt: 1,
                    retry_of: None,
                    idempotency_key: Some(schedule_idempotency_key(
                        &entry.app_id,
                        entry.trigger_index,
                        *slot,
                    )),
                    queued_at,
                    not_before: queued_at,
                    event_id: None,
                });
            }
            if let Some(through) = plan.handled_through {
                advances.push(ScheduleAdvance {
                    app_id: entry.app_id.clone(),
                    trigger_index: entry.trigger_index,
                    last_slot: through.timestamp_millis(),
                });
                entry.last_slot = entry.last_slot.max(through);
            }
            // Always strictly after now, so a slot is never looked at twice.
            entry.next = entry.schedule.next_after(entry.last_slot.max(now));
        }
        if runs.is_empty() && advances.is_empty() {
            return Ok(());
        }
        let inserted = self
            .store()
            .record_schedule_fires(&runs, &advances, wharf_store::now_millis())
            .await?;
        if inserted > 0 {
            tracing::info!(
                runs = inserted,
                lateness_ms = queued_at - runs.first().map_or(queued_at, slot_millis),
                "Queued scheduled runs."
            );
            self.wake_executor();
        }
        Ok(())
    }
}

fn slot_millis(run: &NewRun) -> i64 {
    scheduled_slot(run.idempotency_key.as_deref())
        .map_or(run.queued_at, |slot| slot.timestamp_millis())
}
