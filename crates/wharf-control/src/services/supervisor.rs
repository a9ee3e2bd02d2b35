//! One service app's supervisor: a task that owns the app's replicas and, after every
//! message and once a second, moves them toward what the app should have.
//!
//! What it should have: `desired` replicas of the active version, where `desired` is the
//! autoscaler's decision (`wharf_model::scaling`). Replicas of an older version keep
//! serving until the active version has `desired` ready replicas (a rolling deploy never
//! leaves the app without a ready replica, and a version that never gets ready never
//! replaces a working one); then they drain. A replica that ends by itself is replaced,
//! after a pause that doubles with each crash in a row (1 s to 1 min).
//!
//! All decisions happen in this one task, so they need no locks; launches, probes and
//! drains run in tasks of their own and report back as [`Message`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use wharf_model::manifest::{AppKind, Manifest};
use wharf_model::scaling::{ScalerMemory, ScalingSample, ScalingSettings};
use wharf_proxy::{Access, AppRoute, Replica, ReplicaState, RouteSettings};
use wharf_runtime::ExitStatus;

use crate::services::replica::{describe_exit, free_port, replica_addr, Readiness, ReplicaLaunch};
use crate::Control;

/// How often the autoscaler samples the load.
const TICK: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A replica that was ready this long before it ended did not crash-loop.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What the supervisor is told.
#[derive(Debug)]
pub(crate) enum Message {
    /// The app was deployed, rolled back or changed: read it again.
    Reload,
    /// A secret got a new value: roll the replicas over if the app's manifest names it.
    SecretChanged(String),
    /// Stop every replica and end; the sender is told when they are gone.
    Shutdown(tokio::sync::oneshot::Sender<()>),
    Ready {
        replica_id: String,
    },
    NotReady {
        replica_id: String,
        reason: String,
    },
    Exited {
        replica_id: String,
        status: Option<ExitStatus>,
    },
    /// A draining replica has no open sessions left (or its drain time is over).
    Drained {
        replica_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Draining,
    /// Asked to stop; waiting for its process to end.
    Stopping,
}

struct Live {
    id: String,
    version: i64,
    /// The supervisor's `env_epoch` when the replica started.
    env_epoch: u64,
    port: u16,
    phase: Phase,
    ready_since: Option<Instant>,
    proxy: Arc<Replica>,
}

/// A replica found running after a restart, handed to its app's new supervisor.
pub(crate) struct Adopted {
    pub(crate) id: String,
    pub(crate) version: i64,
    pub(crate) port: u16,
}

pub(crate) struct Supervisor {
    control: Control,
    app_name: String,
    app_id: String,
    generation: u64,
    route: Arc<AppRoute>,
    /// The active version and its manifest (None: not a service any more).
    target: Option<(i64, Arc<Manifest>)>,
    /// Counts the changes of the secrets the app names: replicas started before the last
    /// one are replaced like those of an older version.
    env_epoch: u64,
    replicas: Vec<Live>,
    desired: u32,
    memory: ScalerMemory,
    crashes_in_a_row: u32,
    no_start_before: Option<Instant>,
    messages: UnboundedSender<Message>,
    inbox: UnboundedReceiver<Message>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Supervisor {
    pub(crate) fn new(
        control: Control,
        app_name: &str,
        generation: u64,
        route: Arc<AppRoute>,
        messages: UnboundedSender<Message>,
        inbox: UnboundedReceiver<Message>,
    ) -> Supervisor {
        Supervisor {
            control,
            app_name: app_name.to_owned(),
            app_id: String::new(),
            generation,
            route,
            target: None,
            env_epoch: 0,
            replicas: Vec::new(),
            desired: 0,
            memory: ScalerMemory::default(),
            crashes_in_a_row: 0,
            no_start_before: None,
            messages,
            inbox,
            shutdown: None,
        }
    }

    /// Takes over replicas that kept running while the server was down. They are probed
    /// like new ones; the route gets them once they answer.
    pub(crate) fn adopt(&mut self, adopted: Vec<Adopted>, health: &str, start_timeout: Duration) {
        for replica in adopted {
            let proxy = Replica::new(
                &replica.id,
                replica_addr(replica.port),
                ReplicaState::Starting,
            );
            self.route.add_replica(proxy.clone());
            self.control.watch_replica(
                &replica.id,
                replica.port,
                Readiness::Health(health.to_owned()),
                start_timeout,
                self.messages.clone(),
            );
            tracing::info!(app = %self.app_name, replica = %replica.id, "Replica re-adopted after restart.");
            self.replicas.push(Live {
                id: replica.id,
                version: replica.version,
                env_epoch: self.env_epoch,
                port: replica.port,
                phase: Phase::Starting,
                ready_since: None,
                proxy,
            });
        }
    }

    pub(crate) async fn run(mut self) {
        self.reload().await;
        let mut next_tick = tokio::time::Instant::now() + TICK;
        loop {
            self.reconcile().await;
            // Deleted, or not a service any more, and nothing left to stop.
            if self.target.is_none()
                && self.replicas.is_empty()
                && self.control.services_try_forget(
                    &self.app_name,
                    self.generation,
                    &self.route,
                    self.inbox.is_empty(),
                )
            {
                break;
            }
            tokio::select! {
                message = self.inbox.recv() => match message {
                    Some(message) => self.handle(message).await,
                    None => break,
                },
                _ = self.route.demanded() => {
                    self.scale();
                }
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick = tokio::time::Instant::now() + TICK;
                    self.scale();
                }
            }
        }
        if let Some(done) = self.shutdown.take() {
            let _ = done.send(());
        }
    }

    async fn handle(&mut self, message: Message) {
        match message {
            Message::Reload => self.reload().await,
            Message::SecretChanged(secret) => {
                let named = self
                    .target
                    .as_ref()
                    .is_some_and(|(_, manifest)| crate::secrets::names_secret(manifest, &secret));
                if named {
                    self.env_epoch += 1;
                    tracing::info!(app = %self.app_name, %secret, "Replicas roll over to take a secret's new value.");
                }
            }
            Message::Shutdown(done) => {
                self.shutdown = Some(done);
                self.target = None;
                self.desired = 0;
                // Stop at once: the app is being deleted.
                let ids: Vec<String> = self.replicas.iter().map(|r| r.id.clone()).collect();
                for id in ids {
                    self.stop(&id, "the app is being deleted").await;
                }
            }
            Message::Ready { replica_id } => {
                if let Some(live) = self.live_mut(&replica_id) {
                    if live.phase == Phase::Starting {
                        live.phase = Phase::Ready;
                        live.ready_since = Some(Instant::now());
                        self.route.set_state(&replica_id, ReplicaState::Ready);
                        let _ = self
                            .control
                            .store()
                            .set_replica_state(&replica_id, "ready")
                            .await;
                        tracing::info!(app = %self.app_name, replica = %replica_id, "Replica is ready.");
                    }
                }
            }
            Message::NotReady { replica_id, reason } => {
                if self
                    .live(&replica_id)
                    .is_some_and(|live| live.phase == Phase::Starting)
                {
                    tracing::warn!(app = %self.app_name, replica = %replica_id, %reason, "Replica did not become ready; stopping it.");
                    self.crashed();
                    self.stop(&replica_id, &reason).await;
                }
            }
            Message::Exited { replica_id, status } => {
                self.route.remove_replica(&replica_id);
                let Some(index) = self.replicas.iter().position(|r| r.id == replica_id) else {
                    return;
                };
                let live = self.replicas.remove(index);
                let (exit_code, exit_signal, text) = describe_exit(&status);
                let expected = matches!(live.phase, Phase::Stopping);
                if !expected {
                    let stable = live
                        .ready_since
                        .is_some_and(|since| since.elapsed() >= STABLE_AFTER);
                    if stable {
                        self.crashes_in_a_row = 0;
                    }
                    self.crashed();
                    tracing::warn!(app = %self.app_name, replica = %replica_id, exit = %text, "Replica ended by itself; it will be replaced.");
                }
                let message = if expected {
                    format!("stopped ({text})")
                } else {
                    format!("crashed: {text}")
                };
                let end = wharf_store::ReplicaEnd {
                    exit_code,
                    exit_signal,
                    message,
                };
                if let Err(error) = self.control.store().stop_replica(&replica_id, &end).await {
                    tracing::error!(replica = %replica_id, %error, "Could not record the end of a replica.");
                }
            }
            Message::Drained { replica_id } => {
                if self
                    .live(&replica_id)
                    .is_some_and(|live| live.phase == Phase::Draining)
                {
                    self.stop(&replica_id, "drained").await;
                }
            }
        }
    }

    /// Reads the app's active version; updates the route's settings.
    async fn reload(&mut self) {
        let found = match self.control.store().find_app(&self.app_name).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(app = %self.app_name, %error, "Could not read a service app.");
                return;
            }
        };
        let Some(app) = found else {
            self.target = None;
            return;
        };
        self.app_id = app.id.clone();
        let Some(version) = app.active_version else {
            self.target = None;
            return;
        };
        match self.control.manifest(&app.id, version).await {
            Ok(manifest) if manifest.kind == AppKind::Service => {
                self.route.set_settings(route_settings(&manifest));
                if self.target.as_ref().map(|(v, _)| *v) != Some(version) {
                    // A new version starts from a clean slate of crashes.
                    self.crashes_in_a_row = 0;
                    self.no_start_before = None;
                }
                self.target = Some((version, manifest));
                self.scale();
            }
            Ok(_) => self.target = None,
            Err(error) => {
                tracing::error!(app = %self.app_name, %error, "Could not read a service app's manifest.");
            }
        }
    }

    /// Samples the load and asks the autoscaler for the number of replicas.
    fn scale(&mut self) {
        let Some((version, manifest)) = &self.target else {
            self.desired = 0;
            return;
        };
        let service = &manifest.service;
        let settings = ScalingSettings {
            min_replicas: service.min_replicas,
            max_replicas: service.max_replicas,
            scale_out_above: service.scale_out_above,
            scale_in_below: service.scale_in_below,
            scale_in_cooldown: service.scale_in_cooldown,
            idle_timeout: service.idle_timeout.unwrap_or(Duration::from_secs(900)),
        };
        let current: Vec<&Live> = self
            .replicas
            .iter()
            .filter(|live| {
                live.version == *version && matches!(live.phase, Phase::Starting | Phase::Ready)
            })
            .collect();
        let load: u32 = current.iter().map(|live| live.proxy.load()).sum();
        let last_activity = self.route.last_activity_ms();
        let sample = ScalingSample {
            now: wharf_store::now_millis(),
            replicas: current.len() as u32,
            load,
            waiting: self.route.waiting(),
            last_activity: (last_activity > 0).then_some(last_activity),
        };
        let decision = wharf_model::scaling::decide(&settings, &sample, self.memory);
        if decision.replicas != self.desired {
            tracing::info!(app = %self.app_name, from = self.desired, to = decision.replicas, load, "Scaling.");
        }
        self.desired = decision.replicas;
        self.memory = decision.memory;
    }

    /// Starts, drains and stops replicas toward `desired` of the active version.
    async fn reconcile(&mut self) {
        let target_version = self.target.as_ref().map(|(version, _)| *version);
        let env_epoch = self.env_epoch;
        // Of the active version, started with the secrets' current values.
        let is_target =
            |live: &Live| Some(live.version) == target_version && live.env_epoch == env_epoch;
        let is_current =
            |live: &Live| is_target(live) && matches!(live.phase, Phase::Starting | Phase::Ready);
        let current = self.replicas.iter().filter(|live| is_current(live)).count() as u32;
        let ready_current = self
            .replicas
            .iter()
            .filter(|live| is_target(live) && live.phase == Phase::Ready)
            .count() as u32;

        // Too few: start more, unless crashes ask for a pause.
        if current < self.desired {
            // After crashes, wait out the pause (the next tick looks again).
            let paused = self.no_start_before.is_some_and(|at| at > Instant::now());
            if !paused {
                for _ in current..self.desired {
                    self.start().await;
                }
            }
        }
        // Too many: stop starting ones first, then drain the least loaded ready ones.
        if current > self.desired {
            let mut extra = current - self.desired;
            let starting: Vec<String> = self
                .replicas
                .iter()
                .filter(|live| is_current(live) && live.phase == Phase::Starting)
                .map(|live| live.id.clone())
                .collect();
            for id in starting.into_iter().take(extra as usize) {
                self.stop(&id, "no longer needed").await;
                extra -= 1;
            }
            let mut ready: Vec<(u32, String)> = self
                .replicas
                .iter()
                .filter(|live| is_current(live) && live.phase == Phase::Ready)
                .map(|live| (live.proxy.load(), live.id.clone()))
                .collect();
            ready.sort();
            for (_, id) in ready.into_iter().take(extra as usize) {
                self.drain(&id).await;
            }
        }
        // Old versions (and replicas with old secret values) go once the active one is
        // fully up (or nothing is wanted).
        if ready_current >= self.desired || target_version.is_none() {
            let old: Vec<(String, Phase)> = self
                .replicas
                .iter()
                .filter(|live| !is_target(live))
                .map(|live| (live.id.clone(), live.phase))
                .collect();
            for (id, phase) in old {
                match phase {
                    Phase::Starting => self.stop(&id, "replaced by a new version").await,
                    Phase::Ready => self.drain(&id).await,
                    Phase::Draining | Phase::Stopping => {}
                }
            }
        }
    }

    async fn start(&mut self) {
        let Some((version, manifest)) = self.target.clone() else {
            return;
        };
        let used: Vec<u16> = self.replicas.iter().map(|live| live.port).collect();
        let port = match free_port(&used) {
            Ok(port) => port,
            Err(error) => {
                tracing::error!(app = %self.app_name, %error, "Cannot start a replica.");
                self.crashed();
                return;
            }
        };
        let replica_id = ulid::Ulid::new().to_string().to_lowercase();
        let proxy = Replica::new(&replica_id, replica_addr(port), ReplicaState::Starting);
        // A cold start: requests wait and no replica takes new ones (a draining replica
        // serves only the sessions it has).
        let cold = self.route.waiting() > 0
            && !self.replicas.iter().any(|live| live.phase == Phase::Ready);
        let readiness = if cold {
            Readiness::Listening
        } else {
            Readiness::Health(manifest.service.health.clone())
        };
        let launch = ReplicaLaunch {
            replica_id: replica_id.clone(),
            app_id: self.app_id.clone(),
            app_name: self.app_name.clone(),
            version,
            port,
            manifest,
            readiness,
        };
        match self
            .control
            .launch_replica(&launch, self.messages.clone())
            .await
        {
            Ok(()) => {
                self.route.add_replica(proxy.clone());
                self.replicas.push(Live {
                    id: replica_id,
                    version,
                    env_epoch: self.env_epoch,
                    port,
                    phase: Phase::Starting,
                    ready_since: None,
                    proxy,
                });
            }
            Err(error) => {
                tracing::error!(app = %self.app_name, %error, "Could not launch a replica.");
                let end = wharf_store::ReplicaEnd {
                    exit_code: None,
                    exit_signal: None,
                    message: format!("could not launch: {error}"),
                };
                let _ = self.control.store().stop_replica(&replica_id, &end).await;
                self.crashed();
            }
        }
    }

    /// No new sessions; stop once the open ones ended or `drain_timeout` passed.
    async fn drain(&mut self, replica_id: &str) {
        let timeout = self
            .target
            .as_ref()
            .map(|(_, manifest)| manifest.service.drain_timeout)
            .unwrap_or(Duration::ZERO);
        let Some(live) = self.live_mut(replica_id) else {
            return;
        };
        live.phase = Phase::Draining;
        let proxy = live.proxy.clone();
        self.route.set_state(replica_id, ReplicaState::Draining);
        let _ = self
            .control
            .store()
            .set_replica_state(replica_id, "draining")
            .await;
        tracing::info!(app = %self.app_name, replica = %replica_id, "Replica draining.");
        let (messages, id) = (self.messages.clone(), replica_id.to_owned());
        tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < timeout {
                let idle_for = wharf_store::now_millis() - proxy.last_activity_ms();
                if proxy.inflight() == 0 && proxy.websockets() == 0 && idle_for >= 1000 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = messages.send(Message::Drained { replica_id: id });
        });
    }

    /// Asks the replica's supervisor process to stop; its exit arrives as a message.
    async fn stop(&mut self, replica_id: &str, reason: &str) {
        let Some(live) = self.live_mut(replica_id) else {
            return;
        };
        if live.phase == Phase::Stopping {
            return;
        }
        live.phase = Phase::Stopping;
        self.route.remove_replica(replica_id);
        tracing::info!(app = %self.app_name, replica = %replica_id, %reason, "Stopping replica.");
        let dir = self.control.replica_dir(replica_id);
        match wharf_runtime::request_stop(&dir) {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(replica = %replica_id, %error, "Could not ask a replica to stop.")
            }
        }
    }

    /// Counts a crash and sets the pause before the next start.
    fn crashed(&mut self) {
        let pause = FIRST_BACKOFF
            .saturating_mul(1 << self.crashes_in_a_row.min(6))
            .min(MAX_BACKOFF);
        self.crashes_in_a_row = self.crashes_in_a_row.saturating_add(1);
        self.no_start_before = Some(Instant::now() + pause);
    }

    fn live(&self, replica_id: &str) -> Option<&Live> {
        self.replicas.iter().find(|live| live.id == replica_id)
    }

    fn live_mut(&mut self, replica_id: &str) -> Option<&mut Live> {
        self.replicas.iter_mut().find(|live| live.id == replica_id)
    }
}

/// The proxy's view of a service's settings.
pub(crate) fn route_settings(manifest: &Manifest) -> RouteSettings {
    let service = &manifest.service;
    RouteSettings {
        access: if service.access == "public" {
            Access::Public
        } else {
            Access::LoggedIn
        },
        sticky: service.sticky,
        max_inflight: service.max_inflight,
        queue_timeout: service.queue_timeout,
        cold_start_timeout: service.cold_start_timeout,
        connect_timeout: service.connect_timeout,
        read_timeout: service.read_timeout,
    }
}
