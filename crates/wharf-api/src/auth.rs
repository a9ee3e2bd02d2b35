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

impl Caller {
    /// 403 unless the caller has one of `roles`; `what` says what needs them.
    pub(crate) fn require_role(&self, roles: &[&str], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role.as_str()) {
            return Ok(());
        }
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{what} needs the {} role; \"{}\" is a {}",
                roles.join(" or "),
                self.user,
                self.role
            ),
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::Caller;

    #[test]
    fn roles_are_required_by_name_and_refusals_say_which() {
        let caller = |role: &str| Caller {
            user: "ana".into(),
            role: role.into(),
        };
        assert!(caller("publisher")
            .require_role(&["admin", "publisher"], "managing secrets")
            .is_ok());
        let refused = caller("viewer")
            .require_role(&["admin", "publisher"], "managing secrets")
            .unwrap_err();
        assert_eq!(refused.status.as_u16(), 403);
        assert!(
            refused.message.contains(
                "managing secrets needs the admin or publisher role; \"ana\" is a viewer"
            ),
            "{}",
            refused.message
        );
    }
}
