//! The `wharf.toml` manifest: the validated model ([`Manifest`]), the loader that checks a
//! file and reports every problem with its line ([`load_manifest`]), and the inference of
//! kind and command from the files of a bundle ([`infer`]).
//!
//! The validated `Manifest` is also what the server stores as JSON, so its serde form
//! round-trips exactly through `serde_json`. It is not the TOML reader: TOML goes
//! through `load_manifest`, which keeps spans for error lines.

mod checker;
mod error;
pub mod infer;
mod job;
mod load;
mod notify;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use crate::manifest::error::{ManifestError, ManifestErrors};
pub use crate::manifest::load::{load_manifest, RESERVED_ENV_PREFIX};
pub use crate::manifest::notify::{is_channel_name, DEFAULT_NOTIFY_ON};

/// The manifest's file name at the root of a bundle.
pub const MANIFEST_FILE: &str = "wharf.toml";

/// Runtimes a manifest may ask for.
pub const RUNTIMES: [&str; 1] = ["local"];

/// Values of `service.access`.
pub const ACCESS_VALUES: [&str; 2] = ["public", "logged-in"];

/// A checked `wharf.toml` (with inferred kind and command filled in).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The app name; `None` when the file does not set one (the CLI then uses the folder).
    #[serde(default)]
    pub name: Option<String>,
    pub kind: AppKind,
    /// The argv to run; never empty.
    pub command: Vec<String>,
    /// `None`: the server's default runtime.
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default)]
    pub job: JobSettings,
    #[serde(default)]
    pub service: ServiceSettings,
    /// `[[notify]]` rules: which server channels hear about runs, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::notify::NotifyRule>,
}

/// Runs to completion (`job`) or serves HTTP until stopped (`service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    Job,
    Service,
}

impl AppKind {
    pub const ALL: [AppKind; 2] = [AppKind::Job, AppKind::Service];

    pub fn as_str(&self) -> &'static str {
        match self {
            AppKind::Job => "job",
            AppKind::Service => "service",
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for AppKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AppKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("\"{text}\" is not an app kind; use \"job\" or \"service\""))
    }
}

/// An environment variable's value: literal text or a reference to a stored secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret { secret: String },
}

/// `[job]`: how runs of a job are started, limited and retried.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobSettings {
    /// Kill the run (state `timed_out`) after this long; `None`: no limit.
    #[serde(with = "crate::duration::compact_serde::option")]
    pub timeout: Option<Duration>,
    /// Extra executions after a failed, timed-out or lost one (0..=100).
    pub retries: u32,
    /// Wait before the first retry; doubles for each further retry.
    #[serde(with = "crate::duration::compact_serde")]
    pub retry_backoff: Duration,
    /// Runs of this job at the same time (1..=1000).
    pub concurrency: u32,
    /// What a trigger does when `concurrency` runs are already active.
    pub overlap: Overlap,
    /// `[[job.trigger]]` tables.
    pub triggers: Vec<Trigger>,
    /// `[job.io]`.
    pub io: JobIo,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            timeout: None,
            retries: 0,
            retry_backoff: Duration::from_secs(10),
            concurrency: 1,
            overlap: Overlap::Queue,
            triggers: Vec::new(),
            io: JobIo::default(),
        }
    }
}

/// What to do when a trigger fires while the job is at its concurrency limit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Queue the run; it starts when a slot frees up.
    #[default]
    Queue,
    /// Drop the run.
    Skip,
}

impl Overlap {
    pub fn as_str(&self) -> &'static str {
        match self {
            Overlap::Queue => "queue",
            Overlap::Skip => "skip",
        }
    }
}

/// What starts a run besides a manual or API request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// A cron schedule (validated; `H` tokens allowed, see [`crate::schedule`]).
    Schedule {
        schedule: String,
        /// IANA name; `None`: UTC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
        /// "latest", "all" or "none": what to do about fire times missed while down.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        catch_up: Option<String>,
    },
    /// An object created in `bucket` whose key matches `prefix` and `suffix`.
    ObjectCreated {
        bucket: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suffix: Option<String>,
    },
    /// An EventBridge-style event pattern, as JSON object text.
    Pattern { pattern: String },
}

/// `[job.io]`: staging of the triggering object and uploading of outputs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobIo {
    /// Download the triggering object into `$WHARF_INPUT_DIR`.
    pub stage_input: bool,
    /// Upload files written to `$WHARF_OUTPUT_DIR` to this bucket.
    pub output_bucket: Option<String>,
    /// Rename the input after success, e.g. "{key}-used_{timestamp}".
    pub archive_input: Option<String>,
}

impl Default for JobIo {
    fn default() -> Self {
        JobIo {
            stage_input: true,
            output_bucket: None,
            archive_input: None,
        }
    }
}

/// `[service]`: health checks, scaling and access for a long-running HTTP app.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    /// Path probed for readiness; starts with '/'.
    pub health: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Add a replica when a replica has more concurrent sessions than this.
    pub scale_out_above: u32,
    /// Remove a replica when replicas have fewer sessions than this.
    pub scale_in_below: u32,
    /// Route a browser back to the same replica (Shiny needs it).
    pub sticky: bool,
    /// With `min_replicas = 0`: scale to zero after this long without requests.
    #[serde(with = "crate::duration::compact_serde::option")]
    pub idle_timeout: Option<Duration>,
    /// Requests in flight per replica; 0: unlimited.
    pub max_inflight: u32,
    /// "public" or "logged-in".
    pub access: String,
    /// Scale in only after the load stayed low this long (and no change happened).
    #[serde(with = "crate::duration::compact_serde")]
    pub scale_in_cooldown: Duration,
    /// How long a replica may take to answer its health path before it counts as failed.
    #[serde(with = "crate::duration::compact_serde")]
    pub start_timeout: Duration,
    /// How long a request is held for a replica to start (scale from zero) before 503.
    #[serde(with = "crate::duration::compact_serde")]
    pub cold_start_timeout: Duration,
    /// How long a request waits for a free slot (`max_inflight`) before 429.
    #[serde(with = "crate::duration::compact_serde")]
    pub queue_timeout: Duration,
    /// How long connecting to a replica may take.
    #[serde(with = "crate::duration::compact_serde")]
    pub connect_timeout: Duration,
    /// How long a replica may take to send the response head.
    #[serde(with = "crate::duration::compact_serde")]
    pub read_timeout: Duration,
    /// How long a stopping replica keeps serving its open sessions before it is stopped.
    #[serde(with = "crate::duration::compact_serde")]
    pub drain_timeout: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            health: "/".to_string(),
            min_replicas: 1,
            max_replicas: 5,
            scale_out_above: 15,
            scale_in_below: 3,
            sticky: false,
            idle_timeout: None,
            max_inflight: 0,
            access: "logged-in".to_string(),
            scale_in_cooldown: Duration::from_secs(300),
            start_timeout: Duration::from_secs(60),
            cold_start_timeout: Duration::from_secs(60),
            queue_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(60),
        }
    }
}
