use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use wharf_control::RuntimeSandbox;

use crate::auth::Caller;
use crate::dto::{Readiness, WhoAmI};
use crate::ApiState;

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

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = crate::dto::ErrorBody)))]
pub async fn whoami(caller: Caller, State(state): State<ApiState>) -> Json<WhoAmI> {
    Json(WhoAmI {
        user: caller.user,
        role: caller.role,
        s3_endpoint: state.control.config().s3_endpoint.clone(),
    })
}
