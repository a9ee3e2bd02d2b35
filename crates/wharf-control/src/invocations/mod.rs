//! Asynchronous invocations of service apps ("functions").
//!
//! `queue_invocation` writes the request body to `DATA/invocations/ID/request` (fsynced)
//! and then the row, so an invocation the caller was told about survives a crash. The
//! worker (`worker.rs`) takes queued invocations oldest first, at most a few per app at
//! once, and sends each through the proxy (`wharf_proxy::forward`, so cold starts and
//! `max_inflight` queueing apply), retrying answers that mean "not now" (429, 502, 503,
//! 504, no connection) with doubling waits; it stores the response (capped) in
//! `DATA/invocations/ID/response` before the row says the invocation ended. Then the
//! callback, if any, is delivered (`callback.rs`). Invocations a stopped server was
//! running are queued again at the next start: delivery is at-least-once.

mod callback;
mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use wharf_model::manifest::AppKind;
use wharf_store::{Invocation, InvocationAttempt, NewInvocation};

pub use crate::invocations::callback::{
    check_callback_url, header_map, text_or_base64, CallbackDocument,
};
use crate::{Control, ControlError, ControlResult};

/// The request body's file in an invocation's folder.
pub const REQUEST_FILE: &str = "request";
/// The response body's file (absent until the invocation ended with an answer).
pub const RESPONSE_FILE: &str = "response";

/// Settings of invocations, from the server configuration's `[invocations]`.
#[derive(Debug, Clone)]
pub struct InvocationConfig {
    /// Largest request body accepted (413 above).
    pub max_request_size: u64,
    /// Largest response body kept; the rest is dropped and the response marked truncated.
    pub max_response_size: u64,
    /// Calls of the app per invocation, the first included.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubles with each further one.
    pub retry_backoff: Duration,
    /// Invocations of one app running at once; 0: `max_replicas` × `max_inflight`.
    pub concurrency: u32,
    /// Signs callbacks (`X-Wharf-Signature`) when set.
    pub callback_secret: Option<String>,
    /// Longest a callback delivery attempt may take.
    pub callback_timeout: Duration,
    /// Delivery attempts of a callback, the first included.
    pub callback_max_attempts: u32,
    /// Wait after the first failed delivery; doubles with each further one.
    pub callback_backoff: Duration,
}

impl Default for InvocationConfig {
    fn default() -> Self {
        InvocationConfig {
            max_request_size: 6 * 1024 * 1024,
            max_response_size: 1024 * 1024,
            max_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            concurrency: 0,
            callback_secret: None,
            callback_timeout: Duration::from_secs(10),
            callback_max_attempts: 5,
            callback_backoff: Duration::from_secs(2),
        }
    }
}

/// Wakes the invocation worker (a new invocation was queued).
#[derive(Default)]
pub(crate) struct InvocationWorker {
    wakeup: tokio::sync::Notify,
}

/// What a caller asks to be invoked.
#[derive(Debug, Clone)]
pub struct InvocationRequest {
    pub app_name: String,
    pub invoked_by: String,
    /// POST when not given.
    pub method: Option<String>,
    /// Path and query inside the app; `/` when not given.
    pub path: Option<String>,
    pub content_type: Option<String>,
    pub callback_url: Option<String>,
    pub body: Bytes,
}

/// An invocation with its attempts.
#[derive(Debug, Clone)]
pub struct InvocationDetails {
    pub invocation: Invocation,
    pub attempts: Vec<InvocationAttempt>,
}

impl Control {
    /// `DATA/invocations/ID/`: the request and response bodies.
    pub fn invocation_dir(&self, id: &str) -> PathBuf {
        self.config().data_dir.join("invocations").join(id)
    }

    /// Queues an invocation of a service app. The request body is on disk and the row
    /// committed when this returns.
    pub async fn queue_invocation(&self, request: InvocationRequest) -> ControlResult<Invocation> {
        let limits = &self.config().invocations;
        if request.body.len() as u64 > limits.max_request_size {
            return Err(too_large(limits.max_request_size));
        }
        let app = self
            .store()
            .find_app(&request.app_name)
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!(
                    "no app named {}; `wharf apps` lists them",
                    request.app_name
                ))
            })?;
        let version = app.active_version.ok_or_else(|| {
            ControlError::Conflict(format!(
                "{} has no active version; deploy it first",
                app.name
            ))
        })?;
        let manifest = self.manifest(&app.id, version).await?;
        if manifest.kind != AppKind::Service {
            return Err(ControlError::Invalid(format!(
                "{} is a job; invocations are for service apps (a job runs with `wharf run {}` or POST /api/v1/apps/{}/runs)",
                app.name, app.name, app.name
            )));
        }
        let method = wharf_model::invocation::check_method(request.method.as_deref())
            .map_err(ControlError::Invalid)?;
        let path = wharf_model::invocation::check_path(request.path.as_deref())
            .map_err(ControlError::Invalid)?;
        let callback_url = match request.callback_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(check_callback_url(url).map_err(ControlError::Invalid)?),
        };
        let content_type = request
            .content_type
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty());
        let id = crate::runs::new_run_id();
        let dir = self.invocation_dir(&id);
        let body = request.body.clone();
        let written_dir = dir.clone();
        tokio::task::spawn_blocking(move || write_durably(&written_dir, REQUEST_FILE, &body))
            .await
            .map_err(|error| ControlError::Internal(error.to_string()))?
            .map_err(|error| ControlError::io(&dir, error))?;
        let new = NewInvocation {
            id: id.clone(),
            app_id: app.id.clone(),
            app_name: app.name.clone(),
            invoked_by: request.invoked_by,
            method,
            path,
            request_content_type: content_type,
            request_size: request.body.len() as i64,
            callback_url,
        };
        let inserted = match self.store().insert_invocation(&new).await {
            Ok(inserted) => inserted,
            Err(error) => {
                let _ = crate::remove_dir_if_exists(&dir);
                return Err(error.into());
            }
        };
        tracing::info!(app = %inserted.app_name, invocation = %inserted.id, path = %inserted.path, size = inserted.request_size, "Invocation queued.");
        self.wake_invocations();
        Ok(inserted)
    }

    /// One invocation with its attempts.
    pub async fn invocation(&self, id: &str) -> ControlResult<InvocationDetails> {
        let invocation = self.store().invocation(id).await?;
        let attempts = self.store().invocation_attempts(id).await?;
        Ok(InvocationDetails {
            invocation,
            attempts,
        })
    }

    /// An app's invocations, newest first. The app may be gone: its invocations are kept
    /// until their retention.
    pub async fn list_invocations(
        &self,
        app_name: &str,
        limit: i64,
    ) -> ControlResult<Vec<Invocation>> {
        let found = self.store().list_invocations(app_name, limit).await?;
        if found.is_empty() && self.store().find_app(app_name).await?.is_none() {
            return Err(ControlError::NotFound(format!(
                "no app named {app_name}; `wharf apps` lists them"
            )));
        }
        Ok(found)
    }

    /// The stored request body of an invocation.
    pub async fn invocation_request_body(&self, id: &str) -> ControlResult<Vec<u8>> {
        let path = self.invocation_dir(id).join(REQUEST_FILE);
        tokio::fs::read(&path)
            .await
            .map_err(|error| ControlError::io(&path, error))
    }

    /// The stored response body of an invocation (None before it ended with an answer).
    pub async fn invocation_response_body(&self, id: &str) -> ControlResult<Option<Vec<u8>>> {
        let path = self.invocation_dir(id).join(RESPONSE_FILE);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ControlError::io(&path, error)),
        }
    }

    /// The first `limit` bytes of the request body and of the response body (if any),
    /// for listings. A body that cannot be read shows as empty.
    pub async fn invocation_body_prefixes(
        &self,
        id: &str,
        limit: usize,
    ) -> (Vec<u8>, Option<Vec<u8>>) {
        let dir = self.invocation_dir(id);
        let read = move |name: &str| -> Option<Vec<u8>> {
            use std::io::Read;
            let file = std::fs::File::open(dir.join(name)).ok()?;
            let mut prefix = Vec::new();
            file.take(limit as u64).read_to_end(&mut prefix).ok()?;
            Some(prefix)
        };
        tokio::task::spawn_blocking(move || {
            (read(REQUEST_FILE).unwrap_or_default(), read(RESPONSE_FILE))
        })
        .await
        .unwrap_or_default()
    }

    pub(crate) fn wake_invocations(&self) {
        self.inner.invocations.wakeup.notify_one();
    }

    /// Deletes ended invocations older than `log_retention` with their folders, and
    /// folders an interrupted request left without a row.
    pub async fn sweep_expired_invocations(&self) -> ControlResult<usize> {
        let cutoff = wharf_store::now_millis() - self.config().log_retention.as_millis() as i64;
        let mut deleted = 0;
        loop {
            let ids = self.store().delete_invocations_before(cutoff, 500).await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                let dir = self.invocation_dir(&id);
                crate::remove_dir_if_exists(&dir).map_err(|e| ControlError::io(&dir, e))?;
                deleted += 1;
            }
        }
        let root = self.config().data_dir.join("invocations");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(deleted);
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            let name = entry.file_name().to_string_lossy().into_owned();
            if old && !self.store().invocation_exists(&name).await? {
                let _ = crate::remove_dir_if_exists(&entry.path());
            }
        }
        Ok(deleted)
    }
}

pub(crate) fn too_large(limit: u64) -> ControlError {
    ControlError::TooLarge(format!(
        "the request body is larger than {} (invocation limit; the server's [invocations] max_request_size)",
        wharf_model::duration::format_size(limit)
    ))
}

/// Writes `dir/name` so that it survives a crash: the file is fsynced, then renamed from
/// a temporary name, then the folder (and its parent, for a new folder) are fsynced.
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
