//! Named secrets: set (create or replace), list (names and times, never values), delete.
//! Anyone who may deploy an app can read a secret through it, so all three need the
//! admin or publisher role.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::dto::ErrorBody;
use crate::{rfc3339, ApiResult, ApiState};

/// A secret as listed: its value is never shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    /// The user who set the current value.
    pub updated_by: String,
    /// Apps whose active version names the secret.
    pub used_by: Vec<String>,
}

/// `DELETE /api/v1/secrets/{name}?force=true`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    /// Delete even if apps use it (they then fail to start).
    #[serde(default)]
    pub force: bool,
}

/// `PUT /api/v1/secrets/{name}`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretSetRequest {
    /// At most 64 KiB of UTF-8 text, without NUL bytes.
    pub value: String,
}

impl std::fmt::Debug for SecretSetRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretSetRequest { value: .. }")
    }
}

fn require_publisher(caller: &Caller) -> ApiResult<()> {
    caller.require_role(&["admin", "publisher"], "managing secrets")
}

fn secret_info((secret, used_by): (wharf_store::SecretInfo, Vec<String>)) -> SecretInfo {
    SecretInfo {
        name: secret.name,
        created_at: rfc3339(secret.created_at),
        updated_at: rfc3339(secret.updated_at),
        updated_by: secret.updated_by,
        used_by,
    }
}

/// Lists secrets by name (admins and publishers).
#[utoipa::path(get, path = "/api/v1/secrets", responses(
    (status = 200, body = [SecretInfo]), (status = 403, body = ErrorBody)))]
pub async fn list_secrets(
    caller: Caller,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    require_publisher(&caller)?;
    let secrets = state.control.list_secrets().await?;
    Ok(Json(secrets.into_iter().map(secret_info).collect()))
}

/// Creates a secret (201) or replaces its value (204). Apps get the new value from their
/// next run or replica start.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", request_body = SecretSetRequest,
    params(("name" = String, Path)), responses(
    (status = 201), (status = 204), (status = 400, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn set_secret(
    caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(request): Json<SecretSetRequest>,
) -> ApiResult<StatusCode> {
    require_publisher(&caller)?;
    let created = state
        .control
        .set_secret(&name, &request.value, &caller.user)
        .await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes a secret. One that apps use is refused (409, naming them) unless
/// `force=true`; those apps then fail to start until it is set again.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}",
    params(("name" = String, Path), DeleteQuery),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
pub async fn delete_secret(
    caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    require_publisher(&caller)?;
    state
        .control
        .delete_secret(&name, &caller.user, query.force)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
