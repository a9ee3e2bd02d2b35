use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use futures::TryStreamExt;
use wharf_control::{App, AppVersion};

use crate::auth::Caller;
use crate::dto::{AppInfo, DeployResult, ErrorBody, RollbackRequest, VersionInfo};
use crate::{rfc3339, ApiError, ApiResult, ApiState};

pub(crate) fn app_info(app: &App) -> AppInfo {
    AppInfo {
        name: app.name.clone(),
        kind: app.kind.clone(),
        active_version: app.active_version,
        created_at: rfc3339(app.created_at),
        updated_at: rfc3339(app.updated_at),
        created_by: app.created_by.clone(),
    }
}

pub(crate) fn version_info(app: &App, version: &AppVersion) -> VersionInfo {
    VersionInfo {
        number: version.number,
        active: app.active_version == Some(version.number),
        bundle_sha256: version.bundle_sha256.clone(),
        bundle_size: version.bundle_size,
        file_count: version.file_count,
        created_at: rfc3339(version.created_at),
        created_by: version.created_by.clone(),
        manifest: serde_json::from_str(&version.manifest).unwrap_or(serde_json::Value::Null),
    }
}

/// Every app.
#[utoipa::path(get, path = "/api/v1/apps", responses((status = 200, body = [AppInfo])))]
pub async fn list_apps(
    _caller: Caller,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<AppInfo>>> {
    let apps = state.control.store().list_apps().await?;
    Ok(Json(apps.iter().map(app_info).collect()))
}

/// One app.
#[utoipa::path(get, path = "/api/v1/apps/{app}", params(("app" = String, Path)),
    responses((status = 200, body = AppInfo), (status = 404, body = ErrorBody)))]
pub async fn get_app(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<Json<AppInfo>> {
    Ok(Json(app_info(&state.control.store().app(&app).await?)))
}

/// Deploys a bundle (the app folder as tar.gz) as the app's next version and activates
/// it. The app is created on its first deploy. A rejected bundle changes nothing.
#[utoipa::path(post, path = "/api/v1/apps/{app}/versions", params(("app" = String, Path)),
    request_body(content_type = "application/gzip", description = "tar.gz of the app folder"),
    responses((status = 201, body = DeployResult), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the bundle or its manifest is invalid")))]
pub async fn deploy(
    caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<DeployResult>)> {
    let upload = body
        .into_data_stream()
        .map_err(|error| std::io::Error::other(error.to_string()));
    let outcome = state
        .control
        .deploy(&app, &caller.user, Box::pin(upload))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DeployResult {
            app: app_info(&outcome.app),
            version: version_info(&outcome.app, &outcome.version),
        }),
    ))
}

/// The app's versions, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/versions", params(("app" = String, Path)),
    responses((status = 200, body = [VersionInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<VersionInfo>>> {
    let store = state.control.store();
    let app = store.app(&app).await?;
    let versions = store.list_versions(&app.id).await?;
    Ok(Json(
        versions.iter().map(|v| version_info(&app, v)).collect(),
    ))
}

/// Makes another version active.
#[utoipa::path(post, path = "/api/v1/apps/{app}/rollback", params(("app" = String, Path)),
    request_body = RollbackRequest,
    responses((status = 200, body = AppInfo), (status = 404, body = ErrorBody)))]
pub async fn rollback(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    body: Result<Json<RollbackRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<AppInfo>> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(app_info(
        &state.control.rollback(&app, request.version).await?,
    )))
}

/// Deletes the app, its versions and its runs (running ones are cancelled first).
#[utoipa::path(delete, path = "/api/v1/apps/{app}", params(("app" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_app(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    state.control.delete_app(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}
