use std::path::PathBuf;
use std::time::Duration;

use crate::{ControlError, ControlResult};

/// Whether workloads run inside bubblewrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxPolicy {
    /// Use bubblewrap when installed; warn once and run unsandboxed otherwise.
    #[default]
    Auto,
    /// Refuse to start without bubblewrap.
    Required,
    /// Never sandbox.
    Off,
}

impl SandboxPolicy {
    pub(crate) fn resolve(self) -> ControlResult<wharf_runtime::Sandbox> {
        let available = || wharf_runtime::bubblewrap_available();
        match self {
            SandboxPolicy::Off => Ok(wharf_runtime::Sandbox::Off),
            SandboxPolicy::Required if available() => Ok(wharf_runtime::Sandbox::Bubblewrap),
            SandboxPolicy::Required => Err(ControlError::Invalid(
                "sandbox = \"required\" but bubblewrap is not installed or does not work here; \
                 install it (apt-get install bubblewrap) or set sandbox = \"auto\""
                    .into(),
            )),
            SandboxPolicy::Auto if available() => Ok(wharf_runtime::Sandbox::Bubblewrap),
            SandboxPolicy::Auto => {
                tracing::warn!(
                    "Bubblewrap is not installed; workloads run without a sandbox. \
                     Install it with `apt-get install bubblewrap`, or set sandbox = \"off\" \
                     to silence this warning."
                );
                Ok(wharf_runtime::Sandbox::Off)
            }
        }
    }
}

/// Settings of the control plane, filled from the server configuration.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub data_dir: PathBuf,
    pub sandbox: SandboxPolicy,
    /// Extra host folders made visible read-only inside the sandbox.
    pub sandbox_ro_binds: Vec<PathBuf>,
    /// Time between SIGTERM and SIGKILL when a run is stopped.
    pub kill_grace: Duration,
    /// Largest accepted bundle upload (compressed).
    pub max_bundle_size: u64,
    /// Largest total size of a bundle once unpacked.
    pub max_unpacked_size: u64,
    /// Finished runs, with their logs and outputs, are deleted after this.
    pub log_retention: Duration,
    /// Runs executing at once across all apps.
    pub max_concurrent_runs: u32,
    /// The program re-executed as the per-workload shim, and its leading arguments.
    pub shim_exe: PathBuf,
    pub shim_args: Vec<String>,
    /// The S3 endpoint workloads are given as `AWS_ENDPOINT_URL` (None: no S3 listener).
    pub s3_endpoint: Option<String>,
    /// Dispatched events are deleted after this.
    pub event_retention: Duration,
    /// Whether git-backed apps may come from local paths and `file://` URLs.
    pub git_allow_local: bool,
    /// Longest a git fetch may take.
    pub git_timeout: Duration,
    /// Notification channels and delivery settings.
    pub notify: crate::notify::NotifyConfig,
    /// How long a browser session lasts after its login (absolute, not extended by use).
    pub session_lifetime: Duration,
    /// Failed logins for one user name allowed within `login_failure_window`; more are
    /// refused (429) until the oldest leaves the window.
    pub login_max_failures: u32,
    pub login_failure_window: Duration,
    /// Asynchronous invocations of service apps.
    pub invocations: crate::invocations::InvocationConfig,
}

impl ControlConfig {
    /// Defaults for a data folder; the shim is the running executable.
    pub fn with_data_dir(data_dir: PathBuf) -> ControlConfig {
        ControlConfig {
            data_dir,
            sandbox: SandboxPolicy::Auto,
            sandbox_ro_binds: Vec::new(),
            kill_grace: Duration::from_secs(10),
            max_bundle_size: 512 * 1024 * 1024,
            max_unpacked_size: 2 * 1024 * 1024 * 1024,
            log_retention: Duration::from_secs(30 * 24 * 3600),
            max_concurrent_runs: 64,
            shim_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("wharf")),
            shim_args: vec!["__shim".into()],
            s3_endpoint: None,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            git_allow_local: false,
            git_timeout: Duration::from_secs(300),
            notify: crate::notify::NotifyConfig::default(),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            login_max_failures: 10,
            login_failure_window: Duration::from_secs(60),
            invocations: crate::invocations::InvocationConfig::default(),
        }
    }
}
