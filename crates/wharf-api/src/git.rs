//! Git-backed apps: deploy from a repository, and where an app's files come from.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wharf_control::{GitCredential, GitDeploy, GitSource};

use crate::apps::{app_info, version_info};
use crate::auth::Caller;
use crate::dto::{ErrorBody, GitDeployRequest, GitDeployResult, GitSourceInfo};
use crate::{rfc3339, ApiError, ApiResult, ApiState};

fn git_source_info(source: &GitSource) -> GitSourceInfo {
    GitSourceInfo {
        app: source.app_name.clone(),
        url: source.url.clone(),
        git_ref: source.git_ref.clone(),
        path: source.subdir.clone(),
        credential: source.credential_kind.clone(),
        last_commit: source.last_commit.clone(),
        last_version: source.last_version,
        last_fetch_at: source.last_fetch_at.map(rfc3339),
        last_error: source.last_error.clone(),
    }
}

/// Creates (or re-points) an app whose files come from a git repository: fetches the ref
/// once and makes its first version now; each run start fetches again and makes a new
/// version when the commit changed.
#[utoipa::path(post, path = "/api/v1/git-apps", request_body = GitDeployRequest,
    responses((status = 201, body = GitDeployResult),
        (status = 400, body = ErrorBody, description = "bad URL or ref, or the fetch failed"),
        (status = 409, body = ErrorBody, description = "an app of that name is deployed from bundles"),
        (status = 422, body = ErrorBody, description = "the repository's files are not a valid app")))]
pub async fn deploy_git(
    caller: Caller,
    State(state): State<ApiState>,
    Json(request): Json<GitDeployRequest>,
) -> ApiResult<(StatusCode, Json<GitDeployResult>)> {
    let credential = match (request.token, request.ssh_key) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either a token or an SSH deploy key, not both",
            ))
        }
        (Some(token), None) => GitCredential::Token(token),
        (None, Some(key)) => GitCredential::SshKey(key),
        (None, None) => GitCredential::None,
    };
    let outcome = state
        .control
        .deploy_git(
            GitDeploy {
                app_name: request.name,
                url: request.url,
                git_ref: request.git_ref,
                subdir: request.path,
                credential,
            },
            &caller.user,
        )
        .await?;
    let source = state
        .control
        .git_source(&outcome.app.name)
        .await?
        .ok_or_else(|| ApiError::internal("the git source was not recorded"))?;
    Ok((
        StatusCode::CREATED,
        Json(GitDeployResult {
            app: app_info(&outcome.app),
            version: version_info(&outcome.app, &outcome.version),
            git: git_source_info(&source),
        }),
    ))
}

/// Where a git-backed app's files come from and what the last fetch found.
#[utoipa::path(get, path = "/api/v1/apps/{app}/git", params(("app" = String, Path)),
    responses((status = 200, body = GitSourceInfo),
        (status = 404, body = ErrorBody, description = "no such app, or not git-backed")))]
pub async fn get_git_source(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
) -> ApiResult<Json<GitSourceInfo>> {
    let source = state.control.git_source(&app).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "the app \"{app}\" is not git-backed (deploy it with wharf deploy --git)"
        ))
    })?;
    Ok(Json(git_source_info(&source)))
}
