use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use wharf_control::RuntimeSandbox;

use crate::dto::{ErrorBody, Readiness, WhoAmI};
use crate::identity::{identify, Credential};
use crate::{ApiError, ApiResult, ApiState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers and the control plane has reconciled.
#[utoipa::path(get, path = "/readyz", security(()), responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let ready = state.control.store().ping().await.is_ok();
    let body = Readiness {
        ready,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        sandbox: match state.control.sandbox() {
            RuntimeSandbox::Bubblewrap => "bubblewrap".into(),
            RuntimeSandbox::Off => "off".into(),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Who the API token or browser session belongs to.
#[utoipa::path(get, path = "/api/v1/whoami", security(("bearer" = []), ("session" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<WhoAmI>> {
    let identity = identify(&state, &headers).await?.ok_or_else(|| {
        ApiError::unauthorized(
            "send an API token (`Authorization: Bearer TOKEN`) or log in at /login; \
             the token or session given is not valid (revoked, expired or logged out)",
        )
    })?;
    Ok(Json(WhoAmI {
        user: identity.user,
        role: identity.role,
        s3_endpoint: state.control.config().s3_endpoint.clone(),
        authenticated_by: Some(
            match identity.via {
                Credential::BearerToken => "token",
                Credential::SessionCookie => "session",
            }
            .to_owned(),
        ),
    }))
}
