//! Bearer-token authentication of API requests.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::ApiState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: String,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "this endpoint needs an API token: send `Authorization: Bearer TOKEN` \
                 (wharf login URL stores one for the CLI)",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                // The scheme name is case-insensitive (RFC 7235).
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`")
            })?;
        let found = state.control.authenticate(token).await?;
        let user = found.ok_or_else(|| {
            ApiError::unauthorized(
                "the API token is not valid (revoked, mistyped, or for another server)",
            )
        })?;
        Ok(Caller {
            user: user.name,
            role: user.role,
        })
    }
}
