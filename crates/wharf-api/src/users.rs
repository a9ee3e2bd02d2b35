//! Users, for admins: list, create (with a role and optionally a password), set a
//! password (which ends the user's sessions), delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::dto::ErrorBody;
use crate::{rfc3339, ApiResult, ApiState};

/// A user as shown to admins. Password hashes are never shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub name: String,
    /// admin, publisher or viewer.
    pub role: String,
    pub created_at: String,
    /// Whether the user can log in with a password (else: API tokens only).
    pub has_password: bool,
    /// Browser sessions that have not expired.
    pub active_sessions: i64,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserCreateRequest {
    /// 1-64 letters, digits, '.', '_', '-' and '@', starting with a letter or digit.
    pub name: String,
    /// admin, publisher or viewer; default viewer.
    #[serde(default)]
    pub role: Option<String>,
    /// At least 8 characters; without one the user cannot log in to the browser pages.
    #[serde(default)]
    pub password: Option<String>,
}

/// `PUT /api/v1/users/{name}/password`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordRequest {
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordChanged {
    pub user: String,
    /// The user's browser sessions that the change ended.
    pub sessions_ended: u64,
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    caller.require_role(&["admin"], "managing users")
}

fn user_info(listing: &wharf_control::UserListing) -> UserInfo {
    UserInfo {
        name: listing.user.name.clone(),
        role: listing.user.role.clone(),
        created_at: rfc3339(listing.user.created_at),
        has_password: listing.has_password,
        active_sessions: listing.active_sessions,
    }
}

/// Lists users (admins only).
#[utoipa::path(get, path = "/api/v1/users", responses(
    (status = 200, body = [UserInfo]), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    caller: Caller,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<UserInfo>>> {
    require_admin(&caller)?;
    let users = state.control.list_users().await?;
    Ok(Json(users.iter().map(user_info).collect()))
}

/// Creates a user (admins only).
#[utoipa::path(post, path = "/api/v1/users", request_body = UserCreateRequest, responses(
    (status = 201, body = UserInfo), (status = 400, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    caller: Caller,
    State(state): State<ApiState>,
    Json(request): Json<UserCreateRequest>,
) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    require_admin(&caller)?;
    let role = request.role.as_deref().unwrap_or("viewer");
    let user = state
        .control
        .add_user(&request.name, role, request.password.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserInfo {
            name: user.name,
            role: user.role,
            created_at: rfc3339(user.created_at),
            has_password: request.password.is_some(),
            active_sessions: 0,
        }),
    ))
}

/// Sets a user's password and ends the user's browser sessions (admins only).
#[utoipa::path(put, path = "/api/v1/users/{name}/password", request_body = PasswordRequest,
    params(("name" = String, Path)), responses(
    (status = 200, body = PasswordChanged), (status = 400, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_password(
    caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Json(request): Json<PasswordRequest>,
) -> ApiResult<Json<PasswordChanged>> {
    require_admin(&caller)?;
    let sessions_ended = state.control.set_password(&name, &request.password).await?;
    Ok(Json(PasswordChanged {
        user: name,
        sessions_ended,
    }))
}

/// Deletes a user with its API tokens, sessions and S3 keys (admins only). The last
/// admin cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/users/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
pub async fn delete_user(
    caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    state.control.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
