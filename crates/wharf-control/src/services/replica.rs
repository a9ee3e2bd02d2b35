//! One replica's launch, readiness and end: the steps the supervisor spawns.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use wharf_model::manifest::{EnvValue, Manifest};
use wharf_runtime::{ExitStatus, LaunchSpec};

use crate::services::supervisor::Message;
use crate::{Control, ControlError, ControlResult};

/// How often a starting replica's health path is tried.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// How often a replica started for a waiting request is tried for a connection: a connect
/// attempt is cheap, and every millisecond here is one the request waits.
const LISTEN_PROBE_EVERY: Duration = Duration::from_millis(1);
/// One probe's limit (an app busy starting may accept and answer late).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the supervisor needs to start a replica.
pub(crate) struct ReplicaLaunch {
    pub(crate) replica_id: String,
    pub(crate) app_id: String,
    pub(crate) app_name: String,
    pub(crate) version: i64,
    pub(crate) port: u16,
    pub(crate) manifest: std::sync::Arc<Manifest>,
    pub(crate) readiness: Readiness,
}

/// When a starting replica counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// It answers `GET PATH` with a status below 500.
    Health(String),
    /// It accepts connections: for a cold start, where a request is already waiting and
    /// nothing else can serve it. Plumber, Shiny and most Python servers listen only once
    /// the app is loaded, and an early request waits in the listen queue. The held
    /// request is then the app's first; probing the health path first would make it the
    /// second, and R's first requests are slow (JIT compilation: 40-100 ms each).
    Listening,
}

/// A port on 127.0.0.1 that nothing listens on right now. The replica binds it moments
/// later; `avoid` holds ports already given to replicas.
pub(crate) fn free_port(avoid: &[u16]) -> ControlResult<u16> {
    for _ in 0..50 {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|error| {
            ControlError::Internal(format!("no free port for a replica: {error}"))
        })?;
        let port = listener
            .local_addr()
            .map_err(|error| {
                ControlError::Internal(format!("no free port for a replica: {error}"))
            })?
            .port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
    }
    Err(ControlError::Internal(
        "no free port for a replica after 50 tries".into(),
    ))
}

pub(crate) fn replica_addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Control {
    pub fn replica_dir(&self, replica_id: &str) -> PathBuf {
        self.inner.config.data_dir.join("replicas").join(replica_id)
    }

    /// Records and launches a replica; then, in the background, waits for it to be ready
    /// and for it to end, telling the supervisor both.
    pub(crate) async fn launch_replica(
        &self,
        launch: &ReplicaLaunch,
        messages: UnboundedSender<Message>,
    ) -> ControlResult<()> {
        let app_dir = self.version_dir(&launch.app_name, launch.version);
        if !app_dir.is_dir() {
            return Err(ControlError::Internal(format!(
                "the files of {} version {} are missing ({})",
                launch.app_name,
                launch.version,
                app_dir.display()
            )));
        }
        let manifest = &launch.manifest;
        let mut env: Vec<(String, String)> = manifest
            .env
            .iter()
            .filter_map(|(key, value)| match value {
                EnvValue::Plain(value) => Some((key.clone(), value.clone())),
                EnvValue::Secret { .. } => None,
            })
            .collect();
        env.push(("WHARF_APP".into(), launch.app_name.clone()));
        env.push(("WHARF_APP_VERSION".into(), launch.version.to_string()));
        env.push(("WHARF_REPLICA_ID".into(), launch.replica_id.clone()));
        env.push(("PORT".into(), launch.port.to_string()));
        env.push((
            "WHARF_BASE_PATH".into(),
            format!("/apps/{}/", launch.app_name),
        ));
        let spec = LaunchSpec {
            workload_id: launch.replica_id.clone(),
            command: manifest.command.clone(),
            env,
            app_dir,
            sandbox: self.sandbox(),
            timeout: None,
            kill_grace: self.config().kill_grace,
            extra_ro_binds: self.config().sandbox_ro_binds.clone(),
            secrets: self.sealed_env(manifest).await?,
        };
        self.store()
            .insert_replica(
                &launch.replica_id,
                &launch.app_id,
                &launch.app_name,
                launch.version,
                launch.port,
            )
            .await?;
        let dir = self.replica_dir(&launch.replica_id);
        self.inner.runtime.launch(&dir, &spec).await?;
        tracing::info!(app = %launch.app_name, replica = %launch.replica_id, port = launch.port, version = launch.version, "Replica started.");
        self.watch_replica(
            &launch.replica_id,
            launch.port,
            launch.readiness.clone(),
            manifest.service.start_timeout,
            messages,
        );
        Ok(())
    }

    /// Waits in the background for the replica to be ready (or not, within
    /// `start_timeout`), and for its supervisor process to end.
    pub(crate) fn watch_replica(
        &self,
        replica_id: &str,
        port: u16,
        readiness: Readiness,
        start_timeout: Duration,
        messages: UnboundedSender<Message>,
    ) {
        let dir = self.replica_dir(replica_id);
        let (id, exit_messages) = (replica_id.to_owned(), messages.clone());
        tokio::spawn(async move {
            let status = wharf_runtime::wait_for_exit(&dir).await;
            let status = match status {
                Ok(status) => status,
                Err(error) => {
                    tracing::error!(replica = %id, %error, "Could not watch a replica.");
                    None
                }
            };
            let _ = exit_messages.send(Message::Exited {
                replica_id: id,
                status,
            });
        });
        let id = replica_id.to_owned();
        tokio::spawn(async move {
            let message = match wait_ready(port, &readiness, start_timeout).await {
                Ok(()) => Message::Ready { replica_id: id },
                Err(reason) => Message::NotReady {
                    replica_id: id,
                    reason,
                },
            };
            let _ = messages.send(message);
        });
    }
}

/// Probes until the replica is ready (see [`Readiness`]), or `limit` passed.
async fn wait_ready(port: u16, readiness: &Readiness, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    let addr = replica_addr(port);
    let health = match readiness {
        Readiness::Health(path) => path,
        Readiness::Listening => return wait_listening(addr, limit).await,
    };
    let mut last = String::from("it never answered");
    while started.elapsed() < limit {
        match wharf_proxy::probe(addr, health, PROBE_TIMEOUT).await {
            Ok(status) if status.as_u16() < 500 => return Ok(()),
            Ok(status) => last = format!("GET {health} answered {status}"),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Err(format!(
        "not ready within {} (start_timeout): {last}",
        wharf_model::duration::format_duration(limit)
    ))
}

/// Tries to connect until the replica accepts, or `limit` passed.
async fn wait_listening(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::from("it never accepted a connection");
    while started.elapsed() < limit {
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => last = format!("cannot connect: {error}"),
            Err(_) => last = "a connection attempt timed out".to_owned(),
        }
        tokio::time::sleep(LISTEN_PROBE_EVERY).await;
    }
    Err(format!(
        "not listening on its PORT within {} (start_timeout): {last}",
        wharf_model::duration::format_duration(limit)
    ))
}

/// How a replica's process ended, in words.
pub(crate) fn describe_exit(status: &Option<ExitStatus>) -> (Option<i64>, Option<i64>, String) {
    match status {
        None => (
            None,
            None,
            "its supervisor ended without recording an exit".to_owned(),
        ),
        Some(status) => {
            let code = status.exit_code.map(i64::from);
            let signal = status.signal.map(i64::from);
            let text = if status.cancelled {
                "stopped".to_owned()
            } else if let Some(error) = &status.error {
                format!("could not start: {error}")
            } else if let Some(signal) = status.signal {
                format!("killed by signal {signal}")
            } else if let Some(code) = status.exit_code {
                format!("exited with code {code}")
            } else {
                "ended".to_owned()
            };
            (code, signal, text)
        }
    }
}
