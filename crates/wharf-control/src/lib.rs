//! The control plane: deploys, the run executor, restart reconciliation and retention.
//!
//! It owns no SQL (that is `wharf-store`) and no sockets (that is `wharf-api`); it decides
//! what happens and in which order, and keeps the data folder:
//!
//! ```text
//! DATA/wharf.db                      metadata (wharf-store)
//! DATA/apps/NAME/versions/N/         extracted bundle of version N (read-only to workloads)
//! DATA/apps/NAME/uploads/            bundles being received
//! DATA/runs/RUN_ID/                  one folder per run: spec, log, status, work/{input,output,tmp}
//! DATA/replicas/REPLICA_ID/          the same layout, for each replica of a service
//! DATA/invocations/ID/{request,response}  an asynchronous invocation's bodies
//! ```

mod auth;
mod config;
mod deploy;
mod dispatcher;
mod error;
mod executor;
mod git;
mod invocations;
mod io;
pub mod notify;
mod reconcile;
mod retention;
mod runs;
mod scheduler;
mod schedules;
mod secrets;
mod services;
mod users;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;
use wharf_runtime::{LocalRuntime, LocalRuntimeConfig};
use wharf_store::Store;

pub use crate::auth::hash_token;
pub use crate::config::{ControlConfig, SandboxPolicy};
pub use crate::deploy::{DeployOutcome, UploadStream};
pub use crate::error::{ControlError, ControlResult};
pub use crate::git::{FetchedSource, GitCredential, GitDeploy};
pub use crate::invocations::{
    check_callback_url, header_map, text_or_base64, CallbackDocument, InvocationConfig,
    InvocationDetails, InvocationRequest,
};
pub use crate::runs::{RunRequest, Trigger};
pub use crate::scheduler::{schedule_idempotency_key, scheduled_slot};
pub use crate::schedules::{FireTime, ScheduleView, NEXT_FIRES_SHOWN};
pub use crate::secrets::{check_secret_name, MAX_SECRET_SIZE};
pub use crate::users::{LoginOutcome, NewSession};
pub use wharf_runtime::Sandbox as RuntimeSandbox;
pub use wharf_store::{App, AppVersion, GitSource, Run, User, UserListing};

/// The control plane. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    objects: wharf_objects::Objects,
    event_rules: std::sync::Mutex<crate::dispatcher::RuleCache>,
    config: ControlConfig,
    runtime: LocalRuntime,
    sandbox: wharf_runtime::Sandbox,
    /// Wakes the executor: a run was queued or finished.
    executor_wakeup: Notify,
    /// Wakes the notifier: a run ended with notifications to send.
    notifier_wakeup: Notify,
    /// Wakes the scheduler to reload: schedules changed (deploy, rollback, pause, ...).
    scheduler_wakeup: Notify,
    /// One deploy at a time per app, so version numbers and folders agree.
    deploy_locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The names of the git-backed apps (their runs fetch before they start).
    git_apps: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The proxy's route table: service apps and their replicas.
    routes: Arc<wharf_proxy::Routes>,
    /// The supervisors of service apps.
    services: crate::services::Services,
    /// Wakes the invocation worker.
    invocations: crate::invocations::InvocationWorker,
    /// Cache of parsed manifests by (app id, version).
    manifests: std::sync::Mutex<HashMap<(String, i64), Arc<wharf_model::manifest::Manifest>>>,
    /// The failed-login throttle and the limit on concurrent password work.
    logins: crate::users::LoginGuard,
}

impl Control {
    /// Builds the control plane. Resolves the sandbox policy (fails when bubblewrap is
    /// required but missing) and creates the data folders.
    pub fn new(
        store: Store,
        objects: wharf_objects::Objects,
        config: ControlConfig,
    ) -> ControlResult<Control> {
        let sandbox = config.sandbox.resolve()?;
        for dir in [
            config.data_dir.join("apps"),
            config.data_dir.join("runs"),
            config.data_dir.join("replicas"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| ControlError::io(&dir, source))?;
        }
        let logins =
            crate::users::LoginGuard::new(config.login_max_failures, config.login_failure_window);
        let runtime = LocalRuntime::new(LocalRuntimeConfig {
            shim_exe: config.shim_exe.clone(),
            shim_args: config.shim_args.clone(),
        });
        Ok(Control {
            inner: Arc::new(Inner {
                store,
                objects,
                event_rules: Default::default(),
                config,
                runtime,
                sandbox,
                executor_wakeup: Notify::new(),
                notifier_wakeup: Notify::new(),
                scheduler_wakeup: Notify::new(),
                deploy_locks: Default::default(),
                manifests: Default::default(),
                git_apps: Default::default(),
                routes: Default::default(),
                services: Default::default(),
                logins,
                invocations: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn objects(&self) -> &wharf_objects::Objects {
        &self.inner.objects
    }

    pub fn config(&self) -> &ControlConfig {
        &self.inner.config
    }

    /// The sandbox workloads run in, after resolving `auto`.
    pub fn sandbox(&self) -> wharf_runtime::Sandbox {
        self.inner.sandbox
    }

    /// Reconciles runs left by a previous server process, then starts the background
    /// loops (executor, retention, dispatcher, scheduler). Returns when reconciliation is done.
    pub async fn start(&self) -> ControlResult<()> {
        let git_apps = self.store().git_app_names().await?;
        for app in git_apps {
            self.remember_git_app(&app, true);
        }
        self.reconcile_runs().await?;
        self.start_services().await?;
        // The first run need not wait for a shim process to start.
        self.inner.runtime.warm_up();
        let executor = self.clone();
        tokio::spawn(async move { executor.executor_loop().await });
        let retention = self.clone();
        tokio::spawn(async move { retention.retention_loop().await });
        let dispatcher = self.clone();
        tokio::spawn(async move { dispatcher.dispatcher_loop().await });
        let scheduler = self.clone();
        tokio::spawn(async move { scheduler.scheduler_loop().await });
        tokio::spawn(self.inner.objects.clone().garbage_loop());
        let notifier = self.clone();
        tokio::spawn(async move { notifier.notification_loop().await });
        let sessions = self.clone();
        tokio::spawn(async move { sessions.session_sweep_loop().await });
        let invocations = self.clone();
        tokio::spawn(async move { invocations.invocation_loop().await });
        Ok(())
    }

    pub fn app_dir(&self, app_name: &str) -> PathBuf {
        self.inner.config.data_dir.join("apps").join(app_name)
    }

    pub fn version_dir(&self, app_name: &str, version: i64) -> PathBuf {
        self.app_dir(app_name)
            .join("versions")
            .join(version.to_string())
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.inner.config.data_dir.join("runs").join(run_id)
    }

    /// The run's log file (JSON lines, see `wharf_runtime::logs`).
    pub fn run_log_path(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id).join(wharf_runtime::LOG_FILE)
    }

    /// Where a run's outputs are, on the server's file system.
    pub fn run_output_dir(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id)
            .join(wharf_runtime::WORK_DIR)
            .join("output")
    }

    /// The validated manifest of one version, cached.
    pub async fn manifest(
        &self,
        app_id: &str,
        version: i64,
    ) -> ControlResult<Arc<wharf_model::manifest::Manifest>> {
        let key = (app_id.to_owned(), version);
        if let Some(found) = self.lock_manifests().get(&key) {
            return Ok(found.clone());
        }
        let app = self
            .inner
            .store
            .find_app_by_id(app_id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("app {app_id} does not exist")))?;
        let stored = self.inner.store.version(&app, version).await?;
        let manifest: wharf_model::manifest::Manifest = serde_json::from_str(&stored.manifest)
            .map_err(|error| {
                ControlError::Internal(format!(
                    "stored manifest of {} version {version} is unreadable: {error}",
                    app.name
                ))
            })?;
        let manifest = Arc::new(manifest);
        self.lock_manifests().insert(key, manifest.clone());
        Ok(manifest)
    }

    fn lock_manifests(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, i64), Arc<wharf_model::manifest::Manifest>>>
    {
        // A poisoned cache is still a valid cache: entries are immutable.
        self.inner
            .manifests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_executor(&self) {
        self.inner.executor_wakeup.notify_one();
    }
}

/// Removes a folder tree if it exists.
fn remove_dir_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
