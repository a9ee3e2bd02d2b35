//! One error type for every handler; each variant maps to exactly one status and code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use wharf_control::ControlError;

use crate::dto::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// An internal failure: logged with a request id; the client sees only the id.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        let request_id = ulid::Ulid::new().to_string().to_lowercase();
        tracing::error!(%request_id, error = %detail, "Internal error while handling a request.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error (request id {request_id}); the server log has the details"),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::NotFound(m) => ApiError::not_found(m),
            ControlError::Invalid(m) => ApiError::bad_request(m),
            ControlError::InvalidBundle(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", m)
            }
            ControlError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            ControlError::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m)
            }
            ControlError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<wharf_store::StoreError> for ApiError {
    fn from(error: wharf_store::StoreError) -> ApiError {
        ApiError::from(ControlError::from(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
