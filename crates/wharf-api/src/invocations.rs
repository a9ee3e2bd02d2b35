//! Asynchronous invocations of service apps: queue one (the raw request body, 202), read
//! one (with its bodies), list an app's (the audit trail).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wharf_control::{InvocationDetails, InvocationRequest};
use wharf_store::Invocation;

use crate::auth::Caller;
use crate::dto::ErrorBody;
use crate::{rfc3339, ApiError, ApiResult, ApiState};

/// Characters of each body shown in listings.
const PREVIEW_BYTES: usize = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InvokeQuery {
    /// Path (and query) inside the app, e.g. `/predict`; default `/`.
    pub path: Option<String>,
    /// POST (default), PUT, PATCH, GET or DELETE.
    pub method: Option<String>,
    /// An http(s) URL that receives the result as JSON when the invocation ended.
    pub callback: Option<String>,
}

/// The answer to a queued invocation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvocationAccepted {
    pub id: String,
    /// `queued`.
    pub status: String,
    /// Where to read the result: `/api/v1/invocations/ID`.
    pub status_url: String,
}

/// A request or response body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BodyInfo {
    pub content_type: Option<String>,
    /// Bytes stored.
    pub size: i64,
    /// The whole body when it is UTF-8 text (single invocation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The whole body in base64 when it is not UTF-8 (single invocation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The first 200 bytes as text (listings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// What the app answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResponseInfo {
    pub status: i64,
    /// Response headers (lower-case names; repeated ones joined with ", ").
    pub headers: BTreeMap<String, String>,
    /// The app sent more than the server keeps (`[invocations] max_response_size`).
    pub truncated: bool,
    pub body: BodyInfo,
}

/// The callback delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallbackInfo {
    /// The callback URL without its query string (which may hold a token).
    pub url: String,
    /// pending, sent or failed.
    pub state: String,
    pub attempts: i64,
    pub error: Option<String>,
}

/// One attempt: a call of the app, or a callback delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptInfo {
    /// call or callback.
    pub kind: String,
    pub number: i64,
    pub started_at: String,
    pub finished_at: String,
    /// The HTTP status answered, if any.
    pub status: Option<i64>,
    pub error: Option<String>,
}

/// One invocation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvocationInfo {
    pub id: String,
    pub app: String,
    /// queued, running, succeeded (the app answered below 400) or failed.
    pub state: String,
    /// The user whose token queued it (the app saw it as X-Wharf-User).
    pub invoked_by: String,
    pub method: String,
    pub path: String,
    /// Calls of the app made so far.
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// How long the last call took.
    pub duration_ms: Option<i64>,
    pub request: BodyInfo,
    pub response: Option<ResponseInfo>,
    pub callback: Option<CallbackInfo>,
    /// Every attempt (single invocation only).
    #[serde(default)]
    pub history: Vec<AttemptInfo>,
    pub status_url: String,
}

fn status_url(id: &str) -> String {
    format!("/api/v1/invocations/{id}")
}

/// How bodies appear: whole (single invocation) or as a preview (listings).
enum Bodies {
    Whole {
        request: Vec<u8>,
        response: Option<Vec<u8>>,
    },
    Preview {
        request: Vec<u8>,
        response: Option<Vec<u8>>,
    },
}

fn body_info(
    content_type: Option<String>,
    size: i64,
    bytes: Option<Vec<u8>>,
    whole: bool,
) -> BodyInfo {
    let mut info = BodyInfo {
        content_type,
        size,
        ..BodyInfo::default()
    };
    if let Some(bytes) = bytes {
        if whole {
            let (text, base64) = wharf_control::text_or_base64(bytes);
            info.body = text;
            info.body_base64 = base64;
        } else {
            info.preview = Some(wharf_model::invocation::body_preview(&bytes, PREVIEW_BYTES));
        }
    }
    info
}

fn invocation_info(
    invocation: &Invocation,
    bodies: Bodies,
    history: Vec<AttemptInfo>,
) -> InvocationInfo {
    let (request_bytes, response_bytes, whole) = match bodies {
        Bodies::Whole { request, response } => (request, response, true),
        Bodies::Preview { request, response } => (request, response, false),
    };
    let response = invocation.response_status.map(|status| ResponseInfo {
        status,
        headers: wharf_control::header_map(&invocation.response_headers),
        truncated: invocation.response_truncated,
        body: body_info(
            invocation.response_content_type.clone(),
            invocation.response_size.unwrap_or(0),
            response_bytes,
            whole,
        ),
    });
    let callback = invocation.callback_url.as_ref().map(|url| CallbackInfo {
        url: url.split('?').next().unwrap_or_default().to_owned(),
        state: invocation.callback_state.as_str().to_owned(),
        attempts: invocation.callback_attempts,
        error: invocation.callback_error.clone(),
    });
    InvocationInfo {
        id: invocation.id.clone(),
        app: invocation.app_name.clone(),
        state: invocation.state.as_str().to_owned(),
        invoked_by: invocation.invoked_by.clone(),
        method: invocation.method.clone(),
        path: invocation.path.clone(),
        attempts: invocation.attempts,
        error: invocation.error.clone(),
        created_at: rfc3339(invocation.created_at),
        started_at: invocation.started_at.map(rfc3339),
        finished_at: invocation.finished_at.map(rfc3339),
        duration_ms: invocation.duration_ms,
        request: body_info(
            invocation.request_content_type.clone(),
            invocation.request_size,
            Some(request_bytes),
            whole,
        ),
        response,
        callback,
        history,
        status_url: status_url(&invocation.id),
    }
}

/// Queues an asynchronous invocation of a service app. The body is sent to the app as
/// it is, with its Content-Type. The invocation is stored before the 202 is sent.
#[utoipa::path(post, path = "/api/v1/apps/{app}/invocations",
    params(("app" = String, Path), InvokeQuery),
    request_body(content_type = "*/*", description = "the request body for the app"),
    responses((status = 202, body = InvocationAccepted),
        (status = 400, body = ErrorBody, description = "a job app, a bad path, method or callback"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_invocation(
    caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let limit = state.control.config().invocations.max_request_size;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is larger than {}, the server's limit for invocations ([invocations] max_request_size); send less, or call the app directly at /apps/{app}/",
                wharf_model::duration::format_size(limit)
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(format!("the request body could not be read: {error}"))
        })?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let invocation = state
        .control
        .queue_invocation(InvocationRequest {
            app_name: app,
            invoked_by: caller.user,
            method: query.method,
            path: query.path,
            content_type,
            callback_url: query.callback,
            body: bytes.into(),
        })
        .await?;
    let accepted = InvocationAccepted {
        status_url: status_url(&invocation.id),
        id: invocation.id,
        status: invocation.state.as_str().to_owned(),
    };
    let mut response = (StatusCode::ACCEPTED, Json(&accepted)).into_response();
    if let Ok(location) = HeaderValue::from_str(&accepted.status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// One invocation: its state, request and response (bodies as text, or base64), and
/// every attempt.
#[utoipa::path(get, path = "/api/v1/invocations/{id}", params(("id" = String, Path)),
    responses((status = 200, body = InvocationInfo), (status = 404, body = ErrorBody)))]
pub async fn get_invocation(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<InvocationInfo>> {
    let InvocationDetails {
        invocation,
        attempts,
    } = state.control.invocation(&id).await?;
    let request = state.control.invocation_request_body(&id).await?;
    let response = state.control.invocation_response_body(&id).await?;
    let history = attempts
        .into_iter()
        .map(|attempt| AttemptInfo {
            kind: attempt.kind,
            number: attempt.number,
            started_at: rfc3339(attempt.started_at),
            finished_at: rfc3339(attempt.finished_at),
            status: attempt.status,
            error: attempt.error,
        })
        .collect();
    Ok(Json(invocation_info(
        &invocation,
        Bodies::Whole { request, response },
        history,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InvocationListQuery {
    /// At most this many, newest first (default 50, at most 1000).
    pub limit: Option<i64>,
}

/// An app's invocations, newest first, with a preview of each request and response: who
/// asked the app what, and what it answered.
#[utoipa::path(get, path = "/api/v1/apps/{app}/invocations",
    params(("app" = String, Path), InvocationListQuery),
    responses((status = 200, body = [InvocationInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_invocations(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(app): Path<String>,
    Query(query): Query<InvocationListQuery>,
) -> ApiResult<Json<Vec<InvocationInfo>>> {
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let invocations = state.control.list_invocations(&app, limit).await?;
    let mut infos = Vec::with_capacity(invocations.len());
    for invocation in &invocations {
        // One byte more than shown tells whether the preview is cut.
        let (request, response) = state
            .control
            .invocation_body_prefixes(&invocation.id, PREVIEW_BYTES + 1)
            .await;
        infos.push(invocation_info(
            invocation,
            Bodies::Preview { request, response },
            Vec::new(),
        ));
    }
    Ok(Json(infos))
}
