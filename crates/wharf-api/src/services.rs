//! Service replicas (listing, logs) and `/metrics`.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::auth::Caller;
use crate::dto::{ErrorBody, LogPage, ReplicaInfo};
use crate::logs::{check_offset, follow_log, log_page, LogQuery};
use crate::{rfc3339, ApiResult, ApiState};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReplicaQuery {
    /// At most this many replicas (live ones first), default 50.
    pub limit: Option<i64>,
}

/// The app's replicas: live ones first, then recently stopped ones, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/replicas", params(("app" = String, Path), ReplicaQuery),
    responses((status = 200, body = [ReplicaInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_replicas(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<ReplicaQuery>,
) -> ApiResult<Json<Vec<ReplicaInfo>>> {
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let rows = state.control.list_replicas(&app, limit).await?;
    let route = state.control.routes().get(&app);
    let infos = rows
        .into_iter()
        .map(|row| {
            let live = route.as_ref().and_then(|route| route.replica(&row.id));
            ReplicaInfo {
                inflight: live.as_ref().map(|replica| replica.inflight()),
                sessions: live.as_ref().map(|replica| replica.open_sessions()),
                websockets: live.as_ref().map(|replica| replica.websockets()),
                requests: live.as_ref().map(|replica| replica.requests()),
                last_activity_at: live
                    .as_ref()
                    .map(|replica| replica.last_activity_ms())
                    .filter(|millis| *millis > 0)
                    .map(rfc3339),
                id: row.id,
                app: row.app_name,
                version: row.version,
                state: row.state,
                port: row.port,
                created_at: rfc3339(row.created_at),
                ready_at: row.ready_at.map(rfc3339),
                stopped_at: row.stopped_at.map(rfc3339),
                exit_code: row.exit_code,
                exit_signal: row.exit_signal,
                message: row.message,
            }
        })
        .collect();
    Ok(Json(infos))
}

/// A replica's captured output, oldest first; with `follow=true` a live stream until the
/// replica stops (the `end` event carries the replica).
#[utoipa::path(get, path = "/api/v1/replicas/{id}/logs", params(("id" = String, Path), LogQuery),
    responses((status = 200, body = LogPage, description = "a page of lines, or with follow=true a text/event-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn replica_logs(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let control = state.control.clone();
    let replica = control.store().find_replica(&id).await?.ok_or_else(|| {
        crate::ApiError::not_found(format!(
            "no replica {id}; `wharf ps APP` lists an app's replicas"
        ))
    })?;
    let path = control.replica_log_path(&id);
    let offset = query.offset.unwrap_or(0);
    check_offset(&path, offset, "this replica's log")?;
    if !query.follow.unwrap_or(false) {
        return Ok(Json(log_page(&path, offset, replica.state == "stopped")?).into_response());
    }
    Ok(follow_log(path, offset, move || {
        let (control, id) = (control.clone(), id.clone());
        async move {
            let replica = control
                .store()
                .find_replica(&id)
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("replica {id} was deleted"))?;
            Ok((replica.state == "stopped").then(|| {
                serde_json::json!({"id": replica.id, "state": replica.state, "message": replica.message})
                    .to_string()
            }))
        }
    }))
}

/// Prometheus metrics: requests, latency and status classes per app, replicas, sessions,
/// cold starts, queue waits, runs by state. Needs an API token like every endpoint.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
pub async fn metrics(_caller: Caller, State(state): State<ApiState>) -> ApiResult<Response> {
    use std::fmt::Write;
    let mut out = String::with_capacity(8192);
    wharf_proxy::metrics::render(state.control.routes(), &mut out);
    let _ =
        out.write_str("# HELP wharf_runs Runs in the store, by state.\n# TYPE wharf_runs gauge\n");
    for (run_state, count) in state.control.store().count_runs_by_state().await? {
        let _ = writeln!(out, "wharf_runs{{state=\"{run_state}\"}} {count}");
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
