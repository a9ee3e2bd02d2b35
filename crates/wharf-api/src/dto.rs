//! The JSON shapes of the API, shared with the CLI (which deserializes them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::invocations::{
    AttemptInfo, BodyInfo, CallbackInfo, InvocationAccepted, InvocationInfo, ResponseInfo,
};
pub use crate::schedules::{
    FireTimeInfo, ScheduleInfo, TriggerRunRequest, TriggerUrlCreated, TriggerUrlRequest,
};
pub use crate::secrets::{SecretInfo, SecretSetRequest};
pub use crate::users::{PasswordChanged, PasswordRequest, UserCreateRequest, UserInfo};

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_bundle`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: String,
    pub role: String,
    /// The S3 endpoint of this server (for `wharf cp` and S3 clients); null when the S3
    /// listener is off.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// What identified the caller: `token` (an API token) or `session` (a browser
    /// session cookie).
    #[serde(default)]
    pub authenticated_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppInfo {
    pub name: String,
    /// `job` or `service`.
    pub kind: String,
    pub active_version: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub number: i64,
    pub active: bool,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    pub file_count: i64,
    pub created_at: String,
    pub created_by: String,
    /// The validated manifest, with inferred kind and command filled in.
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployResult {
    pub app: AppInfo,
    pub version: VersionInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    pub version: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RunCreateRequest {
    /// String parameters, given to the job as JSON in `WHARF_PARAMS`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Requests with the same key start one run.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunInfo {
    pub id: String,
    pub app: String,
    pub version: i64,
    /// queued, starting, running, succeeded, failed, timed_out, cancelled or lost.
    pub state: String,
    /// manual, retry, event, schedule or webhook (the app's trigger URL).
    pub trigger: String,
    pub triggered_by: Option<String>,
    pub params: BTreeMap<String, String>,
    pub attempt: i64,
    pub retry_of: Option<String>,
    pub retried_by: Option<String>,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    pub error: Option<String>,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// The event that started the run (event-triggered runs and their retries).
    pub event_id: Option<String>,
    /// The git commit the run's files came from (git-backed apps).
    pub source_commit: Option<String>,
    /// The fire time (slot) a schedule trigger started the run for, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
}

/// `wharf deploy --git`: an app whose files are fetched from a git repository at each
/// run start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GitDeployRequest {
    /// The app's name; default: the manifest's `name`, else the repository's name.
    #[serde(default)]
    pub name: Option<String>,
    /// https://, ssh://, git:// or user@host:path (local paths only when the server allows).
    pub url: String,
    /// A branch, tag or commit id; default "main".
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// The app's folder inside the repository; default: its root.
    #[serde(default)]
    pub path: Option<String>,
    /// An HTTPS token (or `user:token`) for a private repository. Stored encrypted.
    #[serde(default)]
    pub token: Option<String>,
    /// An SSH deploy key (OpenSSH private key) for a private repository. Stored encrypted.
    #[serde(default)]
    pub ssh_key: Option<String>,
}

/// Where a git-backed app's files come from, and what the last fetch found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitSourceInfo {
    pub app: String,
    pub url: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The app's folder in the repository ("" for its root).
    pub path: String,
    /// none, token or ssh_key (the credential itself is never returned).
    pub credential: String,
    pub last_commit: Option<String>,
    pub last_version: Option<i64>,
    pub last_fetch_at: Option<String>,
    /// Why the last fetch failed; null after a good one.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitDeployResult {
    pub app: AppInfo,
    pub version: VersionInfo,
    pub git: GitSourceInfo,
}

/// One captured line of a run's output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// RFC 3339 UTC time the line was captured.
    pub t: String,
    /// `out`, `err`, or `wharf` for the supervisor's own messages.
    pub s: String,
    /// The line, without its newline.
    pub l: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `offset` to continue after these lines.
    pub next_offset: u64,
    /// True when the run has ended and every line was returned.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputFile {
    /// Path relative to the run's output folder, '/'-separated.
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputList {
    /// Where the outputs are on the server's file system.
    pub location: String,
    pub files: Vec<OutputFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub version: String,
    pub sandbox: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct S3KeyCreateRequest {
    /// What the key is for, e.g. "laptop" or "nightly export".
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct S3KeyCreated {
    pub access_key: String,
    /// Shown once; store it now.
    pub secret_key: String,
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct S3KeyInfo {
    pub access_key: String,
    pub description: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BucketInfo {
    pub name: String,
    pub created_at: String,
    /// Anyone may read (GET, HEAD, list) its objects without credentials.
    pub public_read: bool,
    /// The name of the user who created it.
    pub owner: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketCreateRequest {
    /// 3 to 63 lowercase letters, digits, '-' and '.', as in S3.
    pub name: String,
    #[serde(default)]
    pub public_read: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketUpdateRequest {
    pub public_read: bool,
}

/// One stored event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventItem {
    /// Position in the event log; pass as `after` to continue.
    pub seq: i64,
    /// The event in EventBridge shape (`source`, `detail-type`, `detail`, ...).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// Whether the dispatcher has matched it against the triggers yet.
    pub dispatched: bool,
}

/// What `POST /hooks/s3` did with a notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HookResult {
    /// Records in the body.
    pub received: usize,
    /// Events stored now.
    pub stored: usize,
    /// Records already stored by an earlier delivery of the same notification.
    pub duplicates: usize,
    /// Records of kinds that start nothing (e.g. `s3:ObjectAccessed:Get`), not stored.
    pub ignored: usize,
    /// The event ids of the stored and duplicate records, in order.
    pub event_ids: Vec<String>,
}

/// A notification channel of the server (its credentials are never shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelInfo {
    pub name: String,
    /// `slack`, `webhook` or `smtp`.
    pub kind: String,
    /// Where messages go: the URL's scheme and host, or the SMTP server and recipients.
    pub target: String,
}

/// The answer to a test message that was delivered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelTestResult {
    pub channel: String,
    pub sent: bool,
}

/// One message about a run to one channel, and how its delivery went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationInfo {
    pub id: String,
    pub run_id: String,
    pub channel: String,
    /// `failure`, `timeout`, `fixed` or `success`.
    pub event: String,
    /// `pending` (being delivered or waiting to retry), `sent` or `failed` (gave up).
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
}

/// One replica of a service app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicaInfo {
    pub id: String,
    pub app: String,
    pub version: i64,
    /// starting, ready, draining or stopped.
    pub state: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: i64,
    pub created_at: String,
    pub ready_at: Option<String>,
    pub stopped_at: Option<String>,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    /// How it ended, in words.
    pub message: Option<String>,
    /// Live counters from the proxy (absent once stopped).
    pub inflight: Option<u32>,
    pub sessions: Option<u32>,
    pub websockets: Option<u32>,
    pub requests: Option<u64>,
    pub last_activity_at: Option<String>,
}
