//! Services: long-running HTTP apps and their replicas.
//!
//! Each service app has a supervisor task (`supervisor.rs`) that owns its replicas; this
//! module starts supervisors (at start, after a deploy), tells them about changes, and
//! answers questions about replicas. Replicas run under the same shim and sandbox as
//! runs (`replica.rs`), in `DATA/replicas/ID/`, and are reached through the route table
//! (`wharf_proxy::Routes`) that the proxy reads.

mod replica;
mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::{self, UnboundedSender};
use wharf_model::manifest::AppKind;
use wharf_proxy::AppRoute;

use crate::services::supervisor::{route_settings, Adopted, Message, Supervisor};
use crate::{Control, ControlResult};

/// The running supervisors, by app name.
#[derive(Default)]
pub(crate) struct Services {
    supervisors: std::sync::Mutex<HashMap<String, Registered>>,
    generations: std::sync::atomic::AtomicU64,
}

struct Registered {
    generation: u64,
    sender: UnboundedSender<Message>,
}

impl Services {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        self.supervisors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Control {
    /// The route table the proxy reads.
    pub fn routes(&self) -> &Arc<wharf_proxy::Routes> {
        &self.inner.routes
    }

    /// At start: re-adopts replicas that kept running while the server was down (records
    /// the others as stopped) and starts a supervisor for every service app.
    pub(crate) async fn start_services(&self) -> ControlResult<()> {
        let mut adopted: HashMap<String, Vec<Adopted>> = HashMap::new();
        for row in self.store().live_replicas().await? {
            let dir = self.replica_dir(&row.id);
            let alive = wharf_runtime::is_alive(&dir).unwrap_or(false);
            let port = u16::try_from(row.port).ok();
            match (alive, port) {
                (true, Some(port)) => {
                    adopted
                        .entry(row.app_name.clone())
                        .or_default()
                        .push(Adopted {
                            id: row.id,
                            version: row.version,
                            port,
                        })
                }
                _ => {
                    let status = wharf_runtime::read_exit_status(&dir).ok().flatten();
                    let (exit_code, exit_signal, text) = replica::describe_exit(&status);
                    let end = wharf_store::ReplicaEnd {
                        exit_code,
                        exit_signal,
                        message: format!("ended while the server was down: {text}"),
                    };
                    self.store().stop_replica(&row.id, &end).await?;
                }
            }
        }
        for app in self.store().list_apps().await? {
            let Some(version) = app.active_version else {
                continue;
            };
            let manifest = match self.manifest(&app.id, version).await {
                Ok(manifest) => manifest,
                Err(error) => {
                    tracing::error!(app = %app.name, %error, "Cannot read a service app's manifest.");
                    continue;
                }
            };
            let replicas = adopted.remove(&app.name).unwrap_or_default();
            if manifest.kind == AppKind::Service || !replicas.is_empty() {
                self.spawn_supervisor(&app.name, &manifest, replicas);
            }
        }
        // Replicas of apps that are gone: stop them.
        for replicas in adopted.into_values() {
            for replica in replicas {
                let _ = wharf_runtime::request_stop(&self.replica_dir(&replica.id));
            }
        }
        Ok(())
    }

    /// An app was deployed, rolled back or otherwise changed: its supervisor reads it
    /// again, or one is started for a new service.
    pub(crate) async fn service_changed(&self, app_name: &str) {
        // Sent under the registry's lock: a supervisor ends only under it, after seeing
        // an empty inbox, so a message sent here is never lost.
        if let Some(registered) = self.inner.services.lock().get(app_name) {
            if registered.sender.send(Message::Reload).is_ok() {
                return;
            }
        }
        let Ok(Some(app)) = self.store().find_app(app_name).await else {
            return;
        };
        let Some(version) = app.active_version else {
            return;
        };
        if let Ok(manifest) = self.manifest(&app.id, version).await {
            if manifest.kind == AppKind::Service {
                self.spawn_supervisor(app_name, &manifest, Vec::new());
            }
        }
    }

    /// A secret got a new value: every service whose active manifest names it rolls its
    /// replicas over (new ones start with the new value; the old ones drain once they are
    /// ready).
    pub(crate) fn secret_changed(&self, secret: &str) {
        for registered in self.inner.services.lock().values() {
            let _ = registered
                .sender
                .send(Message::SecretChanged(secret.to_owned()));
        }
    }

    /// Stops every replica of an app and waits until they are gone (the app is deleted).
    pub(crate) async fn stop_service(&self, app_name: &str) {
        let sender = self
            .inner
            .services
            .lock()
            .get(app_name)
            .map(|registered| registered.sender.clone());
        if let Some(sender) = sender {
            let (done, stopped) = tokio::sync::oneshot::channel();
            if sender.send(Message::Shutdown(done)).is_ok() {
                let _ = stopped.await;
            }
        }
    }

    fn spawn_supervisor(
        &self,
        app_name: &str,
        manifest: &wharf_model::manifest::Manifest,
        adopted: Vec<Adopted>,
    ) {
        let mut supervisors = self.inner.services.lock();
        if supervisors
            .get(app_name)
            .is_some_and(|registered| !registered.sender.is_closed())
        {
            return;
        }
        let route = self.routes().upsert(app_name, route_settings(manifest));
        let (sender, inbox) = mpsc::unbounded_channel();
        let generation = self
            .inner
            .services
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut supervisor = Supervisor::new(
            self.clone(),
            app_name,
            generation,
            route,
            sender.clone(),
            inbox,
        );
        supervisor.adopt(
            adopted,
            &manifest.service.health,
            manifest.service.start_timeout,
        );
        supervisors.insert(app_name.to_owned(), Registered { generation, sender });
        tokio::spawn(supervisor.run());
    }

    /// A supervisor wants to end. It may, unless a message reached it meanwhile (checked
    /// under the registry's lock, which senders hold too); then it is forgotten, and its
    /// route goes with it.
    pub(crate) fn services_try_forget(
        &self,
        app_name: &str,
        generation: u64,
        route: &Arc<AppRoute>,
        inbox_is_empty: bool,
    ) -> bool {
        let mut supervisors = self.inner.services.lock();
        if !inbox_is_empty {
            return false;
        }
        if supervisors
            .get(app_name)
            .is_some_and(|registered| registered.generation == generation)
        {
            supervisors.remove(app_name);
            if let Some(current) = self.routes().get(app_name) {
                if Arc::ptr_eq(&current, route) {
                    self.routes().remove(app_name);
                }
            }
        }
        true
    }

    /// An app's replicas, live ones first, newest first.
    pub async fn list_replicas(
        &self,
        app_name: &str,
        limit: i64,
    ) -> ControlResult<Vec<wharf_store::ReplicaRow>> {
        self.store().app(app_name).await?;
        Ok(self.store().list_replicas(app_name, limit).await?)
    }

    /// A replica's log file (JSON lines, see `wharf_runtime::logs`).
    pub fn replica_log_path(&self, replica_id: &str) -> std::path::PathBuf {
        self.replica_dir(replica_id).join(wharf_runtime::LOG_FILE)
    }
}
