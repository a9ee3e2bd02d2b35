//! The dispatcher: turns stored events into runs of the apps whose triggers match.
//!
//! It reads undispatched events in order, matches each against every active job's event
//! patterns and requests a run with the idempotency key (event, app), then marks the
//! events dispatched. A crash between the two only means the events are read again, and
//! the keys make the second request return the run the first one created: no event ever
//! starts the same run twice, and none is skipped.

use std::sync::Arc;
use std::time::Duration;

use wharf_model::manifest::AppKind;
use wharf_model::pattern::EventPattern;

use crate::runs::{RunRequest, Trigger};
use crate::{Control, ControlError, ControlResult};

const BATCH: i64 = 256;
const IDLE_SCAN: Duration = Duration::from_secs(5);
const EVENT_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Compiled patterns per (app id, version).
pub(crate) type RuleCache = std::collections::HashMap<(String, i64), Arc<Vec<EventPattern>>>;

/// The event-triggered rules of one app version.
struct AppRules {
    app_name: String,
    patterns: Arc<Vec<EventPattern>>,
}

/// Events an app's own archiving caused never start that app again (no loops).
pub(crate) fn archive_requester(app_name: &str) -> String {
    format!("wharf:archive:{app_name}")
}

impl Control {
    pub(crate) async fn dispatcher_loop(&self) {
        let mut last_sweep = std::time::Instant::now();
        loop {
            let more = match self.dispatch_events().await {
                Ok(more) => more,
                Err(error) => {
                    tracing::error!(%error, "The dispatcher failed; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
            };
            if more {
                continue;
            }
            if last_sweep.elapsed() >= EVENT_SWEEP_EVERY {
                last_sweep = std::time::Instant::now();
                self.sweep_old_events().await;
            }
            tokio::select! {
                _ = self.inner.objects.event_written() => {}
                _ = tokio::time::sleep(IDLE_SCAN) => {}
            }
        }
    }

    async fn sweep_old_events(&self) {
        let cutoff = wharf_store::now_millis() - self.config().event_retention.as_millis() as i64;
        match self.store().delete_events_before(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "Deleted events past their retention."),
            Err(error) => tracing::error!(%error, "Event retention sweep failed."),
        }
    }

    /// Dispatches one batch; true when there may be more.
    pub async fn dispatch_events(&self) -> ControlResult<bool> {
        let events = self.store().undispatched_events(BATCH).await?;
        if events.is_empty() {
            return Ok(false);
        }
        let rules = self.event_rules().await?;
        for event in &events {
            let json = event.to_json();
            let requester = json
                .pointer("/detail/requester")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            for rule in &rules {
                if requester == archive_requester(&rule.app_name) {
                    continue;
                }
                if !rule.patterns.iter().any(|pattern| pattern.matches(&json)) {
                    continue;
                }
                let request = RunRequest {
                    app_name: rule.app_name.clone(),
                    params: Default::default(),
                    trigger: Trigger::Event,
                    triggered_by: Some(event.source.clone()),
                    idempotency_key: None,
                    event_id: Some(event.id.clone()),
                };
                match self.request_run(request).await {
                    Ok(_) => {}
                    Err(ControlError::Conflict(reason)) => {
                        tracing::info!(event_id = %event.id, app = %rule.app_name, %reason, "An event did not start a run.");
                    }
                    Err(ControlError::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        let seqs: Vec<i64> = events.iter().map(|event| event.seq).collect();
        self.store()
            .mark_events_dispatched(&seqs, wharf_store::now_millis())
            .await?;
        Ok(events.len() as i64 == BATCH)
    }

    /// The compiled event patterns of every job's active version.
    async fn event_rules(&self) -> ControlResult<Vec<AppRules>> {
        let mut rules = Vec::new();
        for app in self.store().list_apps().await? {
            let Some(version) = app.active_version else {
                continue;
            };
            let key = (app.id.clone(), version);
            let cached = self.lock_event_rules().get(&key).cloned();
            let patterns = match cached {
                Some(patterns) => patterns,
                None => {
                    let manifest = self.manifest(&app.id, version).await?;
                    let mut patterns = Vec::new();
                    if manifest.kind == AppKind::Job {
                        for trigger in &manifest.job.triggers {
                            match trigger.event_pattern() {
                                Ok(Some(pattern)) => patterns.push(pattern),
                                Ok(None) => {}
                                Err(error) => {
                                    tracing::warn!(app = %app.name, version, %error, "A stored trigger pattern does not compile; it is ignored.")
                                }
                            }
                        }
                    }
                    let patterns = Arc::new(patterns);
                    self.lock_event_rules().insert(key, patterns.clone());
                    patterns
                }
            };
            if !patterns.is_empty() {
                rules.push(AppRules {
                    app_name: app.name.clone(),
                    patterns,
                });
            }
        }
        Ok(rules)
    }

    fn lock_event_rules(&self) -> std::sync::MutexGuard<'_, RuleCache> {
        self.inner
            .event_rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
