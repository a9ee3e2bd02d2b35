//! Notification channels (list, test message) and a run's notifications.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::auth::Caller;
use crate::dto::{ChannelInfo, ChannelTestResult, ErrorBody, NotificationInfo};
use crate::{rfc3339, ApiError, ApiResult, ApiState};

/// The server's notification channels.
#[utoipa::path(get, path = "/api/v1/notify/channels",
    responses((status = 200, body = [ChannelInfo])))]
pub async fn list_channels(
    _caller: Caller,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<ChannelInfo>>> {
    Ok(Json(
        state
            .control
            .notification_channels()
            .into_iter()
            .map(|channel| ChannelInfo {
                name: channel.name,
                kind: channel.kind,
                target: channel.target,
            })
            .collect(),
    ))
}

/// Sends a test message to a channel now (once, without retries).
#[utoipa::path(post, path = "/api/v1/notify/channels/{name}/test",
    params(("name" = String, Path)),
    responses((status = 200, body = ChannelTestResult), (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody, description = "the channel refused or could not be reached; the message says why")))]
pub async fn test_channel(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ChannelTestResult>> {
    match state.control.test_channel(&name).await? {
        Ok(()) => Ok(Json(ChannelTestResult {
            channel: name,
            sent: true,
        })),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "delivery_failed",
            format!("the test message to \"{name}\" was not delivered: {error}"),
        )),
    }
}

/// The notifications of a run and how their delivery went.
#[utoipa::path(get, path = "/api/v1/runs/{id}/notifications", params(("id" = String, Path)),
    responses((status = 200, body = [NotificationInfo]), (status = 404, body = ErrorBody)))]
pub async fn run_notifications(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<NotificationInfo>>> {
    let notifications = state.control.run_notifications(&id).await?;
    Ok(Json(
        notifications
            .into_iter()
            .map(|notification| NotificationInfo {
                next_attempt_at: (notification.state == wharf_store::NotificationState::Pending)
                    .then(|| rfc3339(notification.next_attempt_at)),
                id: notification.id,
                run_id: notification.run_id,
                channel: notification.channel,
                event: notification.event,
                state: notification.state.as_str().to_owned(),
                attempts: notification.attempts,
                last_error: notification.last_error,
                created_at: rfc3339(notification.created_at),
                sent_at: notification.sent_at.map(rfc3339),
            })
            .collect(),
    ))
}
