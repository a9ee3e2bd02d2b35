//! Schedules and trigger URLs as the API sees them: listing with next fire times,
//! pausing and resuming, and the per-app trigger URL secret.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;
use wharf_model::firing::CompiledSchedule;

use crate::auth::hash_token;
use crate::runs::{RunRequest, Trigger};
use crate::scheduler::schedule_triggers;
use crate::{App, Control, ControlError, ControlResult, Run};

/// How many upcoming fire times a listing shows.
pub const NEXT_FIRES_SHOWN: usize = 3;

/// One upcoming fire time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireTime {
    pub utc: DateTime<Utc>,
    /// RFC 3339 with the time zone's offset, e.g. "2026-03-29T03:00:00+02:00".
    pub local: String,
    /// The zone's abbreviation at that time, e.g. "CEST".
    pub zone: String,
}

/// A schedule trigger as `wharf schedules` shows it.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    pub app: String,
    pub trigger_index: i64,
    pub schedule: String,
    pub timezone: String,
    pub catch_up: String,
    pub paused: bool,
    pub paused_by: Option<String>,
    /// The newest slot fired or passed over.
    pub last_slot: Option<DateTime<Utc>>,
    pub next: Vec<FireTime>,
}

fn fire_time(schedule: &CompiledSchedule, utc: DateTime<Utc>) -> FireTime {
    let local = utc.with_timezone(&schedule.timezone);
    FireTime {
        utc,
        local: local.to_rfc3339_opts(SecondsFormat::Secs, false),
        zone: local.format("%Z").to_string(),
    }
}

fn new_trigger_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("wtr_{}", hex::encode(bytes))
}

impl Control {
    /// Every schedule trigger of every active job version with its next fire times;
    /// `app` narrows to one app.
    pub async fn list_schedules(&self, app: Option<&str>) -> ControlResult<Vec<ScheduleView>> {
        let states: HashMap<(String, i64), wharf_store::ScheduleState> = self
            .store()
            .schedule_states()
            .await?
            .into_iter()
            .map(|state| ((state.app_id.clone(), state.trigger_index), state))
            .collect();
        let apps = match app {
            Some(name) => vec![self.store().app(name).await?],
            None => self.store().list_apps().await?,
        };
        let now = Utc::now();
        let mut views = Vec::new();
        for app in apps {
            let Some(version) = app.active_version else {
                continue;
            };
            let manifest = self.manifest(&app.id, version).await?;
            for (trigger_index, compiled) in schedule_triggers(&manifest, &app.name) {
                let Ok(schedule) = compiled else { continue };
                let state = states
                    .get(&(app.id.clone(), trigger_index))
                    .filter(|state| state.spec == schedule.spec());
                let next = schedule
                    .next_fires(now, NEXT_FIRES_SHOWN)
                    .into_iter()
                    .map(|utc| fire_time(&schedule, utc))
                    .collect();
                views.push(ScheduleView {
                    app: app.name.clone(),
                    trigger_index,
                    schedule: schedule.expression.clone(),
                    timezone: schedule.timezone.name().to_owned(),
                    catch_up: schedule.catch_up.as_str().to_owned(),
                    paused: state.is_some_and(|state| state.paused),
                    paused_by: state.and_then(|state| state.paused_by.clone()),
                    last_slot: state.map(|state| wharf_store::millis_to_utc(state.last_slot)),
                    next,
                });
            }
        }
        Ok(views)
    }

    /// Pauses (or resumes) one schedule trigger of an app, or all of them without
    /// `trigger_index`. Resuming does not run the slots that passed while paused.
    pub async fn set_schedules_paused(
        &self,
        app_name: &str,
        trigger_index: Option<i64>,
        paused: bool,
        by: &str,
    ) -> ControlResult<Vec<ScheduleView>> {
        let app = self.store().app(app_name).await?;
        let version = app.active_version.ok_or_else(|| {
            ControlError::Conflict(format!("app \"{app_name}\" has no active version"))
        })?;
        let manifest = self.manifest(&app.id, version).await?;
        let triggers: Vec<(i64, CompiledSchedule)> = schedule_triggers(&manifest, &app.name)
            .into_iter()
            .filter_map(|(index, compiled)| compiled.ok().map(|compiled| (index, compiled)))
            .collect();
        if triggers.is_empty() {
            return Err(ControlError::Invalid(format!(
                "app \"{app_name}\" has no schedule triggers (add [[job.trigger]] schedule = \"...\" to its wharf.toml)"
            )));
        }
        let chosen: Vec<&(i64, CompiledSchedule)> = match trigger_index {
            None => triggers.iter().collect(),
            Some(wanted) => {
                let found: Vec<_> = triggers
                    .iter()
                    .filter(|(index, _)| *index == wanted)
                    .collect();
                if found.is_empty() {
                    let known: Vec<String> = triggers
                        .iter()
                        .map(|(index, _)| index.to_string())
                        .collect();
                    return Err(ControlError::NotFound(format!(
                        "app \"{app_name}\" has no schedule trigger {wanted}; its schedule triggers are {} (see `wharf schedules`)",
                        known.join(", ")
                    )));
                }
                found
            }
        };
        let now = wharf_store::now_millis();
        for (index, schedule) in chosen {
            self.store()
                .set_schedule_paused(&app.id, *index, &schedule.spec(), paused, by, now)
                .await?;
            tracing::info!(
                app = app_name,
                trigger = index,
                paused,
                by,
                "Schedule paused or resumed."
            );
        }
        self.wake_scheduler();
        self.list_schedules(Some(app_name)).await
    }

    /// Creates the app's trigger URL secret (or, with `rotate`, replaces it) and returns it;
    /// only its SHA-256 is stored, so it is shown once.
    pub async fn create_trigger_secret(
        &self,
        app_name: &str,
        rotate: bool,
        by: &str,
    ) -> ControlResult<String> {
        let app = self.store().app(app_name).await?;
        let secret = new_trigger_secret();
        let stored = self
            .store()
            .set_trigger_secret(
                &app.id,
                &hash_token(&secret),
                by,
                rotate,
                wharf_store::now_millis(),
            )
            .await?;
        if !stored {
            return Err(ControlError::Conflict(format!(
                "app \"{app_name}\" already has a trigger URL, and its secret was shown only when it was made; \
                 run `wharf trigger-url {app_name} --rotate` for a new one (the old URL stops working)"
            )));
        }
        tracing::info!(app = app_name, by, rotate, "Made a trigger URL secret.");
        Ok(secret)
    }

    /// The app whose trigger URL secret this is; None when the app does not exist, has no
    /// trigger URL, or the secret is wrong (callers need not tell these apart).
    pub async fn check_trigger_secret(
        &self,
        app_name: &str,
        secret: &str,
    ) -> ControlResult<Option<App>> {
        let Some(app) = self.store().find_app(app_name).await? else {
            return Ok(None);
        };
        let stored = self.store().trigger_secret_hash(&app.id).await?;
        let given = hash_token(secret);
        // Comparing hashes: timing reveals nothing about the secret itself.
        Ok(stored.filter(|stored| *stored == given).map(|_| app))
    }

    /// Starts a run from the app's trigger URL (after `check_trigger_secret`).
    pub async fn trigger_run(
        &self,
        app: &App,
        params: BTreeMap<String, String>,
        idempotency_key: Option<String>,
    ) -> ControlResult<Run> {
        self.request_run(RunRequest {
            app_name: app.name.clone(),
            params,
            trigger: Trigger::Webhook,
            triggered_by: Some("trigger URL".to_owned()),
            idempotency_key,
            event_id: None,
        })
        .await
    }
}
