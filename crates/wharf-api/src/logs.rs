//! Run logs (a page of lines, or a live SSE stream) and run outputs.

use std::convert::Infallible;
use std::path::{Component, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;

use crate::auth::Caller;
use crate::dto::{ErrorBody, LogLine, LogPage, OutputFile, OutputList};
use crate::runs::run_info;
use crate::{ApiError, ApiResult, ApiState};

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
const PAGE_LINES: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// Byte offset to start from (the `next_offset` of the previous page).
    pub offset: Option<u64>,
    /// Stream lines as Server-Sent Events (`event: log`) until the run ends; the last
    /// event is `event: end` with the run.
    pub follow: Option<bool>,
}

fn read_page(
    path: &std::path::Path,
    offset: u64,
) -> Result<(Vec<LogLine>, u64), wharf_runtime::RuntimeError> {
    if !path.exists() {
        return Ok((Vec::new(), offset));
    }
    let (lines, next) = wharf_runtime::logs::read_lines(path, offset, PAGE_LINES)?;
    let lines = lines
        .into_iter()
        .map(|line| LogLine {
            t: line.t,
            s: line.s,
            l: line.l,
        })
        .collect();
    Ok((lines, next))
}

/// The run's captured output, oldest first.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", params(("id" = String, Path), LogQuery),
    responses((status = 200, body = LogPage, description = "a page of lines, or with follow=true a text/event-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn run_logs(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let control = state.control.clone();
    let run = control.store().run(&id).await?;
    let path = control.run_log_path(&id);
    let offset = query.offset.unwrap_or(0);
    check_offset(&path, offset, "this run's log")?;
    if !query.follow.unwrap_or(false) {
        let (lines, next_offset) = read_page(&path, offset).map_err(ApiError::internal)?;
        let complete = run.state.is_terminal() && lines.len() < PAGE_LINES;
        return Ok(Json(LogPage {
            lines,
            next_offset,
            complete,
        })
        .into_response());
    }
    Ok(follow_log(path, offset, move || {
        let (control, id) = (control.clone(), id.clone());
        async move {
            let run = control
                .store()
                .run(&id)
                .await
                .map_err(|error| error.to_string())?;
            Ok(run
                .state
                .is_terminal()
                .then(|| serde_json::to_string(&run_info(&run)).unwrap_or_default()))
        }
    }))
}

/// An offset must be 0 or a `next_offset` a log endpoint returned: the start of a line.
pub(crate) fn check_offset(path: &std::path::Path, offset: u64, what: &str) -> ApiResult<()> {
    if offset == 0 {
        return Ok(());
    }
    let length = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let at_line_start = offset <= length
        && std::fs::File::open(path)
            .and_then(|mut file| {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(offset - 1))?;
                let mut byte = [0u8; 1];
                file.read_exact(&mut byte)?;
                Ok(byte[0] == b'\n')
            })
            .unwrap_or(false);
    if at_line_start {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "offset {offset} is not the start of a line of {what}; \
             use 0 or a next_offset returned by this endpoint"
        )))
    }
}

/// A page of a log file from `offset`.
pub(crate) fn log_page(path: &std::path::Path, offset: u64, ended: bool) -> ApiResult<LogPage> {
    let (lines, next_offset) = read_page(path, offset).map_err(ApiError::internal)?;
    let complete = ended && lines.len() < PAGE_LINES;
    Ok(LogPage {
        lines,
        next_offset,
        complete,
    })
}

/// Streams a log file's lines from `offset` as Server-Sent Events (`event: log`) until
/// `ended` says the writer is done (`Some(data)`: the last event is `event: end` with it).
pub(crate) fn follow_log<Ended, Checking>(path: PathBuf, offset: u64, ended: Ended) -> Response
where
    Ended: Fn() -> Checking + Send + Sync + 'static,
    Checking: std::future::Future<Output = Result<Option<String>, String>> + Send,
{
    struct Follow {
        offset: u64,
        finished: bool,
    }
    let ended = std::sync::Arc::new(ended);
    let events = futures::stream::unfold(
        Follow {
            offset,
            finished: false,
        },
        move |mut follow| {
            let path = path.clone();
            let ended = ended.clone();
            async move {
                if follow.finished {
                    return None;
                }
                loop {
                    let page = read_page(&path, follow.offset);
                    let (lines, next) = match page {
                        Ok(page) => page,
                        Err(error) => {
                            follow.finished = true;
                            let event = Event::default().event("error").data(error.to_string());
                            return Some((vec![event], follow));
                        }
                    };
                    if !lines.is_empty() {
                        follow.offset = next;
                        return Some((lines.iter().map(log_event).collect(), follow));
                    }
                    match ended().await {
                        Err(error) => {
                            follow.finished = true;
                            let event = Event::default().event("error").data(error);
                            return Some((vec![event], follow));
                        }
                        Ok(Some(data)) => {
                            // The supervisor writes every line before its exit is
                            // recorded, so one more read after seeing the end drains the log.
                            if let Ok((lines, next)) = read_page(&path, follow.offset) {
                                if !lines.is_empty() {
                                    follow.offset = next;
                                    return Some((lines.iter().map(log_event).collect(), follow));
                                }
                            }
                            follow.finished = true;
                            return Some((vec![Event::default().event("end").data(data)], follow));
                        }
                        Ok(None) => tokio::time::sleep(FOLLOW_POLL).await,
                    }
                }
            }
        },
    )
    .flat_map(futures::stream::iter)
    .map(Ok::<Event, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn log_event(line: &LogLine) -> Event {
    Event::default()
        .event("log")
        .data(serde_json::to_string(line).unwrap_or_default())
}

/// Files the run wrote to `$WHARF_OUTPUT_DIR`.
#[utoipa::path(get, path = "/api/v1/runs/{id}/outputs", params(("id" = String, Path)),
    responses((status = 200, body = OutputList), (status = 404, body = ErrorBody)))]
pub async fn list_outputs(
    _caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<OutputList>> {
    state.control.store().run(&id).await?;
    let root = state.control.run_output_dir(&id);
    let walk_root = root.clone();
    let files = tokio::task::spawn_blocking(move || list_regular_files(&walk_root))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(OutputList {
        location: root.display().to_string(),
        files,
    }))
}

/// Regular files below `root`, never following links (a workload could plant a link to
/// a server file in its output folder).
fn list_regular_files(root: &std::path::Path) -> std::io::Result<Vec<OutputFile>> {
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                pending.push((entry.path(), relative));
            } else if meta.is_file() {
                files.push(OutputFile {
                    path: relative,
                    size: meta.len(),
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Downloads one output file.
#[utoipa::path(get, path = "/api/v1/runs/{id}/outputs/{path}", params(("id" = String, Path), ("path" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
pub async fn get_output(
    _caller: Caller,
    State(state): State<ApiState>,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    state.control.store().run(&id).await?;
    let root = state.control.run_output_dir(&id);
    let not_found = || ApiError::not_found(format!("run {id} has no output file \"{path}\""));
    let mut full = root.clone();
    let relative = PathBuf::from(&path);
    for component in relative.components() {
        match component {
            Component::Normal(part) => {
                full.push(part);
                // Refuse links at every step, so nothing outside the folder is served.
                let meta = std::fs::symlink_metadata(&full).map_err(|_| not_found())?;
                if meta.file_type().is_symlink() {
                    return Err(not_found());
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "output path \"{path}\" must be relative, without '..'"
                )))
            }
        }
    }
    let meta = std::fs::symlink_metadata(&full).map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let file = tokio::fs::File::open(&full)
        .await
        .map_err(|_| not_found())?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let file_name = relative
        .file_name()
        .map(|n| n.to_string_lossy().replace('"', "_"))
        .unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response())
}
