use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use wharf_control::{Run, RunRequest, Trigger};

use crate::auth::Caller;
use crate::dto::{ErrorBody, RunCreateRequest, RunInfo};
use crate::{rfc3339, ApiError, ApiResult, ApiState};

pub(crate) fn run_info(run: &Run) -> RunInfo {
    let params: BTreeMap<String, String> = serde_json::from_str(&run.params).unwrap_or_default();
    RunInfo {
        id: run.id.clone(),
        app: run.app_name.clone(),
        version: run.version,
        state: run.state.as_str().to_owned(),
        trigger: run.trigger_kind.clone(),
        triggered_by: run.triggered_by.clone(),
        params,
        attempt: run.attempt,
        retry_of: run.retry_of.clone(),
        retried_by: run.retried_by.clone(),
        exit_code: run.exit_code,
        exit_signal: run.exit_signal,
        error: run.error.clone(),
        queued_at: rfc3339(run.queued_at),
        started_at: run.started_at.map(rfc3339),
        finished_at: run.finished_at.map(rfc3339),
        duration_ms: match (run.started_at, run.finished_at) {
            (Some(start), Some(end)) => Some(end - start),
            _ => None,
        },
        event_id: run.event_id.clone(),
        source_commit: run.source_commit.clone(),
        scheduled_for: wharf_control::scheduled_slot(run.idempotency_key.as_deref())
            .filter(|_| run.trigger_kind == "schedule")
            .map(|slot| slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    }
}

/// Queues a run of the app's active version.
#[utoipa::path(post, path = "/api/v1/apps/{app}/runs", params(("app" = String, Path)),
    request_body = RunCreateRequest,
    responses((status = 201, body = RunInfo), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "at the concurrency limit with overlap = skip")))]
pub async fn create_run(
    caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    body: Option<Json<serde_json::Value>>,
) -> ApiResult<(StatusCode, Json<RunInfo>)> {
    let request: RunCreateRequest = match body {
        None => RunCreateRequest::default(),
        Some(Json(value)) => serde_json::from_value(value).map_err(|error| {
            ApiError::bad_request(format!(
                "the request body is not a run request ({error}); send {{\"params\": {{\"key\": \"value\"}}}}"
            ))
        })?,
    };
    let run = state
        .control
        .request_run(RunRequest {
            app_name: app,
            params: request.params,
            trigger: Trigger::Manual,
            triggered_by: Some(caller.user),
            idempotency_key: request.idempotency_key,
            event_id: None,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run_info(&run))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only runs of this app.
    pub app: Option<String>,
    /// At most this many, newest first (default 50, at most 1000).
    pub limit: Option<i64>,
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", params(ListQuery), responses((status = 200, body = [RunInfo])))]
pub async fn list_runs(
    _caller: Caller,
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<RunInfo>>> {
    let store = state.control.store();
    let app_id = match &query.app {
        Some(name) => Some(store.app(name).await?.id),
        None => None,
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let runs = store.list_runs(app_id.as_deref(), limit).await?;
    Ok(Json(runs.iter().map(run_info).collect()))
}

/// Runs of one app, newest first (the same as `/runs?app=APP`).
pub async fn list_app_runs(
    caller: Caller,
    state: State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<RunInfo>>> {
    let query = ListQuery {
        app: Some(app),
        limit: query.limit,
    };
    list_runs(caller, state, Query(query)).await
}

/// One run.
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunInfo>> {
    Ok(Json(run_info(&state.control.store().run(&id).await?)))
}

/// Cancels a queued or running run.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the run has already ended")))]
pub async fn cancel_run(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunInfo>> {
    Ok(Json(run_info(&state.control.cancel_run(&id).await?)))
}
