//! The invocation worker: one loop that takes queued invocations (oldest first, within
//! each app's concurrency), runs each in a task of its own through the proxy, and starts
//! due callback deliveries. It sleeps until woken (an invocation was queued, or a task
//! ended) or until the next retry or callback is due.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use wharf_model::invocation::{
    app_concurrency, decide_after_attempt, AttemptDecision, AttemptResult, InvocationState,
};
use wharf_store::{CallOutcome, FinishedCall, Invocation, InvocationAttempt};

use crate::invocations::{write_durably, RESPONSE_FILE};
use crate::{Control, ControlResult};

/// Longest sleep between scans, whatever is due.
const IDLE_SCAN: Duration = Duration::from_secs(60);
/// Queued invocations looked at per scan.
const SCAN_BATCH: i64 = 500;
/// How often old invocations are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// The header that tells the app which invocation a request belongs to: the same on every
/// attempt, so an app can recognise a repeat (the proxy drops client `X-Wharf-*` headers).
pub const INVOCATION_HEADER: &str = "idempotency-key";

/// What a call of the app gave.
enum CallResult {
    Answered {
        status: u16,
        headers: Vec<(String, String)>,
        content_type: Option<String>,
        body: Vec<u8>,
        truncated: bool,
    },
    NoAnswer {
        error: String,
        retryable: bool,
    },
}

impl Control {
    pub(crate) async fn invocation_loop(&self) {
        match self.store().requeue_running_invocations().await {
            Ok(0) => {}
            Ok(count) => {
                tracing::info!(
                    count,
                    "Invocations interrupted by the last stop are queued again."
                )
            }
            Err(error) => tracing::error!(%error, "Could not queue interrupted invocations again."),
        }
        let (finished_tx, mut finished_rx) = unbounded_channel::<String>();
        let mut running: HashMap<String, u32> = HashMap::new();
        let mut last_sweep: Option<Instant> = None;
        loop {
            if last_sweep.is_none_or(|at| at.elapsed() >= RETENTION_EVERY) {
                last_sweep = Some(Instant::now());
                match self.sweep_expired_invocations().await {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(deleted, "Deleted invocations past their retention.")
                    }
                    Err(error) => tracing::error!(%error, "Retention sweep of invocations failed."),
                }
            }
            let sleep_for = match self.dispatch_invocations(&mut running, &finished_tx).await {
                Ok(sleep_for) => sleep_for,
                Err(error) => {
                    tracing::error!(%error, "The invocation worker failed to read the queue; retrying.");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.inner.invocations.wakeup.notified() => {}
                Some(app) = finished_rx.recv() => release(&mut running, &app),
                _ = tokio::time::sleep(sleep_for) => {}
            }
            while let Ok(app) = finished_rx.try_recv() {
                release(&mut running, &app);
            }
        }
    }

    /// Starts what is due and allowed; returns how long to sleep.
    async fn dispatch_invocations(
        &self,
        running: &mut HashMap<String, u32>,
        finished: &UnboundedSender<String>,
    ) -> ControlResult<Duration> {
        let now = wharf_store::now_millis();
        let mut limits: HashMap<String, u32> = HashMap::new();
        let mut next_due: Option<i64> = None;
        for invocation in self.store().queued_invocations(SCAN_BATCH).await? {
            let app = invocation.app_name.clone();
            let limit = match limits.get(&app) {
                Some(limit) => *limit,
                None => {
                    let limit = self.invocation_concurrency(&app).await;
                    limits.insert(app.clone(), limit);
                    limit
                }
            };
            let busy = running.get(&app).copied().unwrap_or(0);
            if busy >= limit {
                // A task of this app ending wakes the loop.
                continue;
            }
            if invocation.next_attempt_at > now {
                next_due = Some(next_due.map_or(invocation.next_attempt_at, |due| {
                    due.min(invocation.next_attempt_at)
                }));
                continue;
            }
            if !self.store().claim_invocation(&invocation.id, now).await? {
                continue;
            }
            *running.entry(app.clone()).or_default() += 1;
            let control = self.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                control.run_invocation(invocation).await;
                let _ = finished.send(app);
            });
        }
        self.dispatch_callbacks(now).await?;
        if let Some(due) = self.store().next_callback_due().await? {
            next_due = Some(next_due.map_or(due, |other| other.min(due)));
        }
        let now = wharf_store::now_millis();
        Ok(match next_due {
            Some(due) if due > now => Duration::from_millis((due - now) as u64).min(IDLE_SCAN),
            Some(_) => Duration::from_millis(10),
            None => IDLE_SCAN,
        })
    }

    /// Invocations of `app` that may run at once.
    async fn invocation_concurrency(&self, app_name: &str) -> u32 {
        let configured = self.config().invocations.concurrency;
        if configured > 0 {
            return configured;
        }
        let Ok(Some(app)) = self.store().find_app(app_name).await else {
            return 1;
        };
        let Some(version) = app.active_version else {
            return 1;
        };
        match self.manifest(&app.id, version).await {
            Ok(manifest) => app_concurrency(
                0,
                manifest.service.max_replicas,
                manifest.service.max_inflight,
            ),
            Err(_) => 1,
        }
    }

    /// One attempt of a claimed invocation, recorded with what it leads to.
    async fn run_invocation(&self, invocation: Invocation) {
        let attempt_number = invocation.attempts + 1;
        let started_at = wharf_store::now_millis();
        let started = Instant::now();
        let result = self.call_app(&invocation).await;
        let finished_at = wharf_store::now_millis();
        let duration_ms = started.elapsed().as_millis() as i64;
        let settings = &self.config().invocations;
        let attempts = u32::try_from(attempt_number).unwrap_or(u32::MAX);
        let (attempt_result, status, error) = match &result {
            CallResult::Answered { status, .. } => {
                let error = (*status >= 400).then(|| format!("the app answered HTTP {status}"));
                (AttemptResult::Answered(*status), Some(*status), error)
            }
            CallResult::NoAnswer { error, retryable } => (
                AttemptResult::NoAnswer {
                    retryable: *retryable,
                },
                None,
                Some(error.clone()),
            ),
        };
        let attempt = InvocationAttempt {
            kind: "call".into(),
            number: attempt_number,
            started_at,
            finished_at,
            status: status.map(i64::from),
            error: error.clone(),
        };
        let decision = decide_after_attempt(
            attempt_result,
            attempts,
            settings.max_attempts,
            settings.retry_backoff,
        );
        let outcome = match (decision, result) {
            (AttemptDecision::Retry(delay), _) => {
                let error = error.unwrap_or_default();
                tracing::warn!(app = %invocation.app_name, invocation = %invocation.id, attempt = attempt_number, retry_in = ?delay, %error, "An invocation attempt failed; retrying.");
                CallOutcome::Retry {
                    next_attempt_at: finished_at + delay.as_millis() as i64,
                    error,
                }
            }
            (
                AttemptDecision::Finish(state),
                CallResult::Answered {
                    status,
                    headers,
                    content_type,
                    body,
                    truncated,
                },
            ) => {
                let dir = self.invocation_dir(&invocation.id);
                let size = body.len() as i64;
                let written =
                    tokio::task::spawn_blocking(move || write_durably(&dir, RESPONSE_FILE, &body))
                        .await;
                let write_error = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(error) => Some(error.to_string()),
                };
                if let Some(write_error) = &write_error {
                    tracing::error!(invocation = %invocation.id, error = %write_error, "Could not store an invocation's response.");
                }
                CallOutcome::Finished(FinishedCall {
                    state: if write_error.is_some() {
                        InvocationState::Failed
                    } else {
                        state
                    },
                    error: match write_error {
                        Some(write_error) => {
                            Some(format!("the response could not be stored: {write_error}"))
                        }
                        None => error,
                    },
                    status: Some(i64::from(status)),
                    headers,
                    content_type,
                    size: Some(size),
                    truncated,
                    duration_ms: Some(duration_ms),
                })
            }
            (AttemptDecision::Finish(state), CallResult::NoAnswer { .. }) => {
                CallOutcome::Finished(FinishedCall {
                    state,
                    error,
                    status: None,
                    headers: Vec::new(),
                    content_type: None,
                    size: None,
                    truncated: false,
                    duration_ms: Some(duration_ms),
                })
            }
        };
        if let CallOutcome::Finished(finished) = &outcome {
            tracing::info!(app = %invocation.app_name, invocation = %invocation.id, state = finished.state.as_str(), status = ?finished.status, attempts = attempt_number, "Invocation ended.");
        }
        if let Err(error) = self
            .store()
            .record_call(&invocation.id, &attempt, &outcome)
            .await
        {
            tracing::error!(invocation = %invocation.id, %error, "Could not record an invocation attempt; it runs again after the next start.");
        }
        if matches!(outcome, CallOutcome::Finished(_)) && invocation.callback_url.is_some() {
            self.wake_invocations();
        }
    }

    /// Sends the invocation's request through the proxy and reads the answer (its body
    /// up to the cap).
    async fn call_app(&self, invocation: &Invocation) -> CallResult {
        let Some(route) = self.routes().get(&invocation.app_name) else {
            return self.no_route(&invocation.app_name).await;
        };
        let body = match self.invocation_request_body(&invocation.id).await {
            Ok(body) => body,
            Err(error) => {
                return CallResult::NoAnswer {
                    error: format!("the stored request body cannot be read: {error}"),
                    retryable: false,
                }
            }
        };
        let mut builder = Request::builder()
            .method(invocation.method.as_str())
            .uri(invocation.path.as_str())
            .header(header::CONTENT_LENGTH, body.len())
            .header(INVOCATION_HEADER, invocation.id.as_str())
            .header(header::HOST, "127.0.0.1");
        if let Some(content_type) = invocation
            .request_content_type
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
        {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = match builder.body(Body::from(body)) {
            Ok(request) => request,
            Err(error) => {
                return CallResult::NoAnswer {
                    error: format!("the request cannot be built: {error}"),
                    retryable: false,
                }
            }
        };
        // The user's role now (a deleted user's invocation goes without one).
        let role = self
            .store()
            .find_user_by_name(&invocation.invoked_by)
            .await
            .ok()
            .flatten()
            .map(|user| user.role);
        let context = wharf_proxy::ForwardContext {
            client_addr: None,
            user: Some(invocation.invoked_by.clone()),
            role,
            strip_authorization: false,
            scheme: "http",
        };
        let response = wharf_proxy::forward(&route, request, context).await;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let cap = self.config().invocations.max_response_size as usize;
        let read_timeout = route.settings().read_timeout;
        let mut stream = response.into_body().into_data_stream();
        let mut kept = Vec::new();
        let mut truncated = false;
        let reading = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| error.to_string())?;
                let room = cap.saturating_sub(kept.len());
                if chunk.len() > room {
                    kept.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    // The rest is not kept: stop reading (the connection is dropped).
                    break;
                }
                kept.extend_from_slice(&chunk);
            }
            Ok::<(), String>(())
        };
        match tokio::time::timeout(read_timeout, reading).await {
            Ok(Ok(())) => CallResult::Answered {
                status,
                headers,
                content_type,
                body: kept,
                truncated,
            },
            Ok(Err(error)) => CallResult::NoAnswer {
                error: format!("the app's answer (HTTP {status}) broke off: {error}"),
                retryable: true,
            },
            Err(_) => CallResult::NoAnswer {
                error: format!(
                    "the app's answer (HTTP {status}) did not end within {} (read_timeout)",
                    wharf_model::duration::format_duration(read_timeout)
                ),
                retryable: true,
            },
        }
    }

    /// The app has no route: starting (retry) or gone (fail).
    async fn no_route(&self, app_name: &str) -> CallResult {
        let app = self.store().find_app(app_name).await.ok().flatten();
        let is_service = match app
            .as_ref()
            .and_then(|app| Some((app, app.active_version?)))
        {
            Some((app, version)) => self
                .manifest(&app.id, version)
                .await
                .is_ok_and(|manifest| manifest.kind == wharf_model::manifest::AppKind::Service),
            None => false,
        };
        if is_service {
            CallResult::NoAnswer {
                error: format!("{app_name} is not being served yet"),
                retryable: true,
            }
        } else {
            CallResult::NoAnswer {
                error: format!("{app_name} no longer exists or is no longer a service app"),
                retryable: false,
            }
        }
    }
}

fn release(running: &mut HashMap<String, u32>, app: &str) {
    if let Some(count) = running.get_mut(app) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            running.remove(app);
        }
    }
}
