//! S3 access keys of the calling user: create (the secret is shown once), list, revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::auth::Caller;
use crate::dto::{ErrorBody, S3KeyCreateRequest, S3KeyCreated, S3KeyInfo};
use crate::{rfc3339, ApiError, ApiResult, ApiState};

fn key_info(key: &wharf_store::S3Key) -> S3KeyInfo {
    S3KeyInfo {
        access_key: key.access_key.clone(),
        description: key.description.clone(),
        created_at: rfc3339(key.created_at),
        revoked_at: key.revoked_at.map(rfc3339),
    }
}

async fn caller_id(state: &ApiState, caller: &Caller) -> ApiResult<String> {
    Ok(state
        .control
        .store()
        .find_user_by_name(&caller.user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the calling user no longer exists"))?
        .id)
}

/// Creates an S3 access key for the calling user. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/s3/keys", request_body = S3KeyCreateRequest,
    responses((status = 201, body = S3KeyCreated), (status = 400, body = ErrorBody)))]
pub async fn create_key(
    caller: Caller,
    State(state): State<ApiState>,
    request: Option<Json<S3KeyCreateRequest>>,
) -> ApiResult<(StatusCode, Json<S3KeyCreated>)> {
    let description = request
        .and_then(|Json(request)| request.description)
        .unwrap_or_default();
    if description.len() > 200 {
        return Err(ApiError::bad_request(
            "description is longer than 200 characters",
        ));
    }
    let user_id = caller_id(&state, &caller).await?;
    let issued = state
        .control
        .objects()
        .create_user_key(&user_id, &description)
        .await
        .map_err(wharf_control::ControlError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(S3KeyCreated {
            access_key: issued.access_key,
            secret_key: issued.secret_key,
            description,
            created_at: rfc3339(issued.key.created_at),
        }),
    ))
}

/// The calling user's S3 access keys (secrets are never shown again).
#[utoipa::path(get, path = "/api/v1/s3/keys", responses((status = 200, body = [S3KeyInfo])))]
pub async fn list_keys(
    caller: Caller,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<S3KeyInfo>>> {
    let user_id = caller_id(&state, &caller).await?;
    let keys = state
        .control
        .objects()
        .list_user_keys(Some(&user_id))
        .await
        .map_err(wharf_control::ControlError::from)?;
    Ok(Json(keys.iter().map(key_info).collect()))
}

/// Revokes one of the calling user's keys; requests signed with it fail from now on.
#[utoipa::path(delete, path = "/api/v1/s3/keys/{access_key}", params(("access_key" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    caller: Caller,
    State(state): State<ApiState>,
    Path(access_key): Path<String>,
) -> ApiResult<StatusCode> {
    let user_id = caller_id(&state, &caller).await?;
    let owned = state
        .control
        .objects()
        .list_user_keys(Some(&user_id))
        .await
        .map_err(wharf_control::ControlError::from)?
        .iter()
        .any(|key| key.access_key == access_key && key.revoked_at.is_none());
    if !owned {
        return Err(ApiError::not_found(format!(
            "you have no active S3 key {access_key}"
        )));
    }
    state
        .control
        .objects()
        .revoke_key(&access_key)
        .await
        .map_err(wharf_control::ControlError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
