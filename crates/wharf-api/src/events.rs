//! The event log: a page of stored events, or a live SSE stream of new ones.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use wharf_store::{EventRow, Store};

use crate::auth::Caller;
use crate::dto::{ErrorBody, EventItem};
use crate::{ApiError, ApiResult, ApiState};

/// How often a follower looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventQuery {
    /// Only events after this sequence number, oldest first. Without it: the newest
    /// `limit` events (still oldest first).
    pub after: Option<i64>,
    /// How many events (1 to 1000, default 100).
    pub limit: Option<i64>,
    /// Stream events as Server-Sent Events (`event: event`, `id:` the sequence number),
    /// first the ones a plain request would return, then new ones as they are stored.
    /// Reconnecting with `Last-Event-ID` resumes after that event.
    pub follow: Option<bool>,
}

pub(crate) fn event_item(row: &EventRow) -> EventItem {
    EventItem {
        seq: row.seq,
        event: row.to_json(),
        dispatched: row.dispatched_at.is_some(),
    }
}

fn sse_event(row: &EventRow) -> Event {
    Event::default()
        .event("event")
        .id(row.seq.to_string())
        .data(serde_json::to_string(&event_item(row)).unwrap_or_default())
}

/// Stored events (object changes, bucket notifications), oldest first.
#[utoipa::path(get, path = "/api/v1/events", params(EventQuery),
    responses((status = 200, body = [EventItem], description = "a page of events, or with follow=true a text/event-stream"),
        (status = 400, body = ErrorBody)))]
pub async fn list_events(
    _caller: Caller,
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<EventQuery>,
) -> ApiResult<Response> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range; use 1 to {MAX_LIMIT}"
        )));
    }
    let follow = query.follow.unwrap_or(false);
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok());
    let after = match (query.after, follow) {
        (Some(after), _) => Some(after),
        (None, true) => resume,
        (None, false) => None,
    };
    if let Some(after) = after.filter(|after| *after < 0) {
        return Err(ApiError::bad_request(format!(
            "after {after} is negative; use 0 or the seq of an event"
        )));
    }
    let store = state.control.store().clone();
    let first_page = match after {
        Some(after) => store.list_events(after, limit, false).await?,
        None => store.list_events(0, limit, true).await?,
    };
    if !follow {
        return Ok(Json(first_page.iter().map(event_item).collect::<Vec<_>>()).into_response());
    }
    let cursor = first_page.last().map(|row| row.seq).or(after).unwrap_or(0);
    let first: Vec<Event> = first_page.iter().map(sse_event).collect();
    let events = futures::stream::iter(first)
        .chain(follow_after(store, cursor))
        .map(Ok::<Event, Infallible>);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Events stored after `cursor`, as they arrive, until the client goes away (the stream
/// is dropped with the connection) or the store fails (one `event: error`, then the end).
fn follow_after(store: Store, cursor: i64) -> impl futures::Stream<Item = Event> {
    struct Follow {
        store: Store,
        cursor: i64,
        finished: bool,
    }
    futures::stream::unfold(
        Follow {
            store,
            cursor,
            finished: false,
        },
        |mut follow| async move {
            if follow.finished {
                return None;
            }
            loop {
                match follow.store.list_events(follow.cursor, 500, false).await {
                    Ok(rows) if rows.is_empty() => tokio::time::sleep(FOLLOW_POLL).await,
                    Ok(rows) => {
                        follow.cursor = rows.last().map_or(follow.cursor, |row| row.seq);
                        return Some((rows.iter().map(sse_event).collect::<Vec<_>>(), follow));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Could not read events for a follower.");
                        follow.finished = true;
                        let event = Event::default()
                            .event("error")
                            .data(format!("the server could not read events: {error}"));
                        return Some((vec![event], follow));
                    }
                }
            }
        },
    )
    .flat_map(futures::stream::iter)
}
