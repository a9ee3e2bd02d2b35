//! Schedules (listing, pause, resume) and trigger URLs: `POST /trigger/{app}` is
//! authenticated by the app's own trigger secret, not by an API token.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wharf_control::ScheduleView;

use crate::auth::Caller;
use crate::dto::{ErrorBody, RunInfo};
use crate::runs::run_info;
use crate::{ApiError, ApiResult, ApiState};

/// The header that may carry a trigger URL's secret instead of `?token=`.
pub const TRIGGER_TOKEN_HEADER: &str = "x-wharf-trigger-token";

/// One upcoming fire time of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FireTimeInfo {
    /// In the schedule's time zone, RFC 3339 with its offset.
    pub local: String,
    /// The zone's abbreviation at that time, e.g. "CEST".
    pub zone: String,
    /// RFC 3339 UTC.
    pub utc: String,
}

/// A schedule trigger of an app's active version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleInfo {
    pub app: String,
    /// The trigger's position in the app's `[[job.trigger]]` list (from 0).
    pub trigger: i64,
    pub schedule: String,
    pub timezone: String,
    /// latest, all or none.
    pub catch_up: String,
    pub paused: bool,
    pub paused_by: Option<String>,
    /// The newest fire time run or passed over, RFC 3339 UTC.
    pub last_slot: Option<String>,
    /// The next three fire times.
    pub next: Vec<FireTimeInfo>,
}

/// `POST /apps/{app}/trigger-url`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TriggerUrlRequest {
    /// Replace an existing secret (the old URL stops working).
    #[serde(default)]
    pub rotate: bool,
}

/// A new trigger URL; its token is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TriggerUrlCreated {
    pub app: String,
    /// The path to POST to, with the token: `/api/v1/trigger/APP?token=...`.
    pub path: String,
    pub token: String,
}

/// The optional body of `POST /trigger/{app}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TriggerRunRequest {
    /// String parameters, given to the job as JSON in `WHARF_PARAMS`; they override
    /// parameters of the same name in the query string.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Requests with the same key start one run.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn schedule_info(view: ScheduleView) -> ScheduleInfo {
    ScheduleInfo {
        app: view.app,
        trigger: view.trigger_index,
        schedule: view.schedule,
        timezone: view.timezone,
        catch_up: view.catch_up,
        paused: view.paused,
        paused_by: view.paused_by,
        last_slot: view
            .last_slot
            .map(|slot| slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        next: view
            .next
            .into_iter()
            .map(|fire| FireTimeInfo {
                local: fire.local,
                zone: fire.zone,
                utc: fire.utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SchedulesQuery {
    /// Only this app's schedules.
    pub app: Option<String>,
}

/// Every schedule trigger of every active job, with its next three fire times.
#[utoipa::path(get, path = "/api/v1/schedules", params(SchedulesQuery),
    responses((status = 200, body = [ScheduleInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_schedules(
    _caller: Caller,
    State(state): State<ApiState>,
    Query(query): Query<SchedulesQuery>,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    let views = state.control.list_schedules(query.app.as_deref()).await?;
    Ok(Json(views.into_iter().map(schedule_info).collect()))
}

async fn set_paused(
    caller: Caller,
    state: ApiState,
    app: String,
    trigger: Option<i64>,
    paused: bool,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    let views = state
        .control
        .set_schedules_paused(&app, trigger, paused, &caller.user)
        .await?;
    Ok(Json(views.into_iter().map(schedule_info).collect()))
}

/// Pauses every schedule trigger of the app.
#[utoipa::path(post, path = "/api/v1/apps/{app}/schedules/pause", params(("app" = String, Path)),
    responses((status = 200, body = [ScheduleInfo]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pause_all(
    caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    set_paused(caller, state, app, None, true).await
}

/// Resumes every schedule trigger of the app; slots that passed while paused do not run.
#[utoipa::path(post, path = "/api/v1/apps/{app}/schedules/resume", params(("app" = String, Path)),
    responses((status = 200, body = [ScheduleInfo]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resume_all(
    caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    set_paused(caller, state, app, None, false).await
}

/// Pauses one schedule trigger (its position in `[[job.trigger]]`, from 0).
#[utoipa::path(post, path = "/api/v1/apps/{app}/schedules/{trigger}/pause",
    params(("app" = String, Path), ("trigger" = i64, Path)),
    responses((status = 200, body = [ScheduleInfo]), (status = 404, body = ErrorBody)))]
pub async fn pause_one(
    caller: Caller,
    State(state): State<ApiState>,
    Path((app, trigger)): Path<(String, i64)>,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    set_paused(caller, state, app, Some(trigger), true).await
}

/// Resumes one schedule trigger; slots that passed while paused do not run.
#[utoipa::path(post, path = "/api/v1/apps/{app}/schedules/{trigger}/resume",
    params(("app" = String, Path), ("trigger" = i64, Path)),
    responses((status = 200, body = [ScheduleInfo]), (status = 404, body = ErrorBody)))]
pub async fn resume_one(
    caller: Caller,
    State(state): State<ApiState>,
    Path((app, trigger)): Path<(String, i64)>,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    set_paused(caller, state, app, Some(trigger), false).await
}

/// Makes the app's trigger URL (or a new one with `rotate`). The token is shown once.
#[utoipa::path(post, path = "/api/v1/apps/{app}/trigger-url", params(("app" = String, Path)),
    request_body = TriggerUrlRequest,
    responses((status = 201, body = TriggerUrlCreated), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the app has a trigger URL; rotate it")))]
pub async fn create_trigger_url(
    caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    body: Option<Json<TriggerUrlRequest>>,
) -> ApiResult<(StatusCode, Json<TriggerUrlCreated>)> {
    let rotate = body.is_some_and(|Json(request)| request.rotate);
    let token = state
        .control
        .create_trigger_secret(&app, rotate, &caller.user)
        .await?;
    let path = format!(
        "/api/v1/trigger/{}?token={token}",
        encode_path_segment(&app)
    );
    Ok((
        StatusCode::CREATED,
        Json(TriggerUrlCreated { app, path, token }),
    ))
}

/// App names are lowercase letters, digits and '-', but encode anything else anyway.
fn encode_path_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Starts a run of the app, authenticated by its trigger URL secret (`?token=` or the
/// `X-Wharf-Trigger-Token` header). Other query parameters and the body's `params` become
/// the run's parameters.
#[utoipa::path(post, path = "/api/v1/trigger/{app}", params(("app" = String, Path)),
    request_body = TriggerRunRequest, security(()),
    responses((status = 201, body = RunInfo),
        (status = 401, body = ErrorBody, description = "no token"),
        (status = 403, body = ErrorBody, description = "wrong token, or no trigger URL for this app")))]
pub async fn trigger_run(
    State(state): State<ApiState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Query(mut query): Query<BTreeMap<String, String>>,
    body: Option<Json<serde_json::Value>>,
) -> ApiResult<(StatusCode, Json<RunInfo>)> {
    let from_query = query.remove("token");
    let from_header = headers
        .get(TRIGGER_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let token = from_header
        .or(from_query)
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(format!(
                "this trigger URL needs its token: add ?token=TOKEN or send the header \
                 X-Wharf-Trigger-Token (make one with `wharf trigger-url {app}`)"
            ))
        })?;
    let found = state.control.check_trigger_secret(&app, &token).await?;
    let app_row = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the token is not this app's trigger token (or \"{app}\" has no trigger URL); \
                 `wharf trigger-url {app} --rotate` makes a new one"
            ),
        )
    })?;
    let request: TriggerRunRequest = match body {
        None => TriggerRunRequest::default(),
        Some(Json(value)) => serde_json::from_value(value).map_err(|error| {
            ApiError::bad_request(format!(
                "the request body is not a run request ({error}); send {{\"params\": {{\"key\": \"value\"}}}}"
            ))
        })?,
    };
    let mut params = query;
    params.extend(request.params);
    let run = state
        .control
        .trigger_run(&app_row, params, request.idempotency_key)
        .await?;
    Ok((StatusCode::CREATED, Json(run_info(&run))))
}
