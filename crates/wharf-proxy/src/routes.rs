//! The route table: for each service app, its replicas and their counters.
//!
//! The control plane writes it (a replica became ready, is draining, is gone; the app's
//! settings changed); the proxy reads it on every request and keeps the counters. Locks
//! here are `std` locks held for a few instructions, never across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::metrics::AppMetrics;

/// A sticky session counts as open for this long after its last request, unless a
/// WebSocket of it is still open (a session with WebSockets ends when its last one closes).
pub const SESSION_WINDOW: Duration = Duration::from_secs(60);

/// Who may use an app through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    LoggedIn,
}

/// How the proxy treats one app (from its manifest's `[service]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    pub access: Access,
    /// Route a browser back to the replica that served it first.
    pub sticky: bool,
    /// Requests in flight per replica; 0: unlimited.
    pub max_inflight: u32,
    pub queue_timeout: Duration,
    pub cold_start_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for RouteSettings {
    fn default() -> Self {
        RouteSettings {
            access: Access::LoggedIn,
            sticky: false,
            max_inflight: 0,
            queue_timeout: Duration::from_secs(10),
            cold_start_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Every service app the proxy can reach, by name.
#[derive(Default)]
pub struct Routes {
    /// App names are the deployers' own, so a fast hasher is safe here.
    apps: RwLock<FxHashMap<String, Arc<AppRoute>>>,
}

impl Routes {
    pub fn get(&self, app: &str) -> Option<Arc<AppRoute>> {
        read(&self.apps).get(app).cloned()
    }

    /// The route of `app`, created with `settings` if it does not exist; an existing
    /// route gets the new settings.
    pub fn upsert(&self, app: &str, settings: RouteSettings) -> Arc<AppRoute> {
        let mut apps = write(&self.apps);
        if let Some(existing) = apps.get(app) {
            existing.set_settings(settings);
            return existing.clone();
        }
        let route = Arc::new(AppRoute::new(app, settings));
        apps.insert(app.to_owned(), route.clone());
        route
    }

    pub fn remove(&self, app: &str) -> Option<Arc<AppRoute>> {
        write(&self.apps).remove(app)
    }

    pub fn all(&self) -> Vec<Arc<AppRoute>> {
        let mut routes: Vec<_> = read(&self.apps).values().cloned().collect();
        routes.sort_by(|a, b| a.name.cmp(&b.name));
        routes
    }
}

/// One app's replicas, settings and counters.
pub struct AppRoute {
    pub name: String,
    /// `/apps/NAME`, and as a header value (`X-Forwarded-Prefix`).
    prefix: String,
    pub(crate) prefix_header: http::HeaderValue,
    settings: RwLock<RouteSettings>,
    replicas: RwLock<Vec<Arc<Replica>>>,
    /// Notified (all waiters) when a replica became ready or a slot was freed.
    pub(crate) changed: Notify,
    /// Notified when a request waits because no replica can take it: the supervisor
    /// listens to start one.
    demand: Notify,
    /// Requests held for a replica right now.
    waiting: AtomicU32,
    last_activity_ms: AtomicI64,
    pub metrics: AppMetrics,
}

impl AppRoute {
    fn new(name: &str, settings: RouteSettings) -> AppRoute {
        let prefix = format!("/apps/{name}");
        AppRoute {
            name: name.to_owned(),
            prefix_header: http::HeaderValue::from_str(&prefix)
                .unwrap_or_else(|_| http::HeaderValue::from_static("/apps")),
            prefix,
            settings: RwLock::new(settings),
            replicas: RwLock::new(Vec::new()),
            changed: Notify::new(),
            demand: Notify::new(),
            waiting: AtomicU32::new(0),
            last_activity_ms: AtomicI64::new(0),
            metrics: AppMetrics::default(),
        }
    }

    /// `/apps/NAME`: where the app is mounted.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn settings(&self) -> RouteSettings {
        read(&self.settings).clone()
    }

    pub fn set_settings(&self, settings: RouteSettings) {
        *write(&self.settings) = settings;
    }

    /// Adds a replica (in state `Starting` unless set otherwise).
    pub fn add_replica(&self, replica: Arc<Replica>) {
        write(&self.replicas).push(replica);
        self.changed.notify_waiters();
    }

    /// Marks a replica ready for new sessions.
    pub fn set_state(&self, replica_id: &str, state: ReplicaState) {
        if let Some(replica) = self.replica(replica_id) {
            replica.state.store(state as u8, Ordering::Release);
        }
        self.changed.notify_waiters();
    }

    /// Removes a replica from the route (it is gone or about to be stopped).
    pub fn remove_replica(&self, replica_id: &str) {
        write(&self.replicas).retain(|replica| replica.id != replica_id);
        self.changed.notify_waiters();
    }

    pub fn replica(&self, replica_id: &str) -> Option<Arc<Replica>> {
        read(&self.replicas)
            .iter()
            .find(|replica| replica.id == replica_id)
            .cloned()
    }

    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        read(&self.replicas).clone()
    }

    /// Runs `look` on the replicas, under the read lock (keep it short, no `.await`).
    pub(crate) fn with_replicas<T>(&self, look: impl FnOnce(&[Arc<Replica>]) -> T) -> T {
        look(&read(&self.replicas))
    }

    /// Requests held because no replica could take them.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Unix milliseconds of the last request (0: none yet).
    pub fn last_activity_ms(&self) -> i64 {
        self.last_activity_ms.load(Ordering::Acquire)
    }

    pub(crate) fn touch(&self) {
        note_activity(&self.last_activity_ms);
    }

    /// Resolves when a request is waiting for a replica (scale from zero, or all busy).
    pub async fn demanded(&self) {
        self.demand.notified().await
    }

    pub(crate) fn start_waiting(&self) -> WaitingGuard<'_> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.touch();
        self.demand.notify_one();
        WaitingGuard { route: self }
    }
}

pub(crate) struct WaitingGuard<'a> {
    route: &'a AppRoute,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.route.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a replica is in its life, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    /// Started, not answering its health path yet: gets nothing.
    Starting = 0,
    /// Gets new sessions.
    Ready = 1,
    /// Keeps its open sessions, gets no new ones.
    Draining = 2,
}

/// One replica: its address and counters.
pub struct Replica {
    pub id: String,
    pub addr: SocketAddr,
    state: AtomicU8,
    inflight: AtomicU32,
    /// WebSockets open right now, with or without a sticky session.
    websockets: AtomicU32,
    /// Sticky sessions by id: when last seen, and WebSockets open.
    sessions: Mutex<HashMap<String, SessionSeen>>,
    sessions_known: AtomicU32,
    last_activity_ms: AtomicI64,
    requests: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct SessionSeen {
    last_seen_ms: i64,
    websockets: u32,
}

impl Replica {
    pub fn new(id: &str, addr: SocketAddr, state: ReplicaState) -> Arc<Replica> {
        Arc::new(Replica {
            id: id.to_owned(),
            addr,
            state: AtomicU8::new(state as u8),
            inflight: AtomicU32::new(0),
            websockets: AtomicU32::new(0),
            sessions: Mutex::new(HashMap::new()),
            sessions_known: AtomicU32::new(0),
            last_activity_ms: AtomicI64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    pub fn state(&self) -> ReplicaState {
        match self.state.load(Ordering::Acquire) {
            1 => ReplicaState::Ready,
            2 => ReplicaState::Draining,
            _ => ReplicaState::Starting,
        }
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn websockets(&self) -> u32 {
        self.websockets.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Unix milliseconds of the last request or WebSocket traffic start (0: none yet).
    pub fn last_activity_ms(&self) -> i64 {
        self.last_activity_ms.load(Ordering::Acquire)
    }

    /// Open sessions: sticky sessions seen within [`SESSION_WINDOW`] or with a WebSocket
    /// open, plus WebSockets without a sticky session. Forgets sessions long gone.
    pub fn open_sessions(&self) -> u32 {
        let now = unix_millis();
        let window = SESSION_WINDOW.as_millis() as i64;
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, seen| seen.websockets > 0 || now - seen.last_seen_ms < window);
        self.sessions_known
            .store(sessions.len() as u32, Ordering::Release);
        let sticky_websockets: u32 = sessions.values().map(|seen| seen.websockets).sum();
        let anonymous_websockets = self.websockets().saturating_sub(sticky_websockets);
        sessions.len() as u32 + anonymous_websockets
    }

    /// What the autoscaler counts for this replica: open sessions or requests in flight,
    /// whichever is larger.
    pub fn load(&self) -> u32 {
        self.open_sessions().max(self.inflight())
    }

    /// A cheap load estimate for choosing a replica on every request.
    pub(crate) fn routing_load(&self) -> u32 {
        self.inflight()
            .saturating_add(self.websockets())
            .saturating_add(self.sessions_known.load(Ordering::Acquire))
    }

    /// Records a request of a sticky session (new or known).
    pub(crate) fn saw_session(&self, session: &str) {
        let now = unix_millis();
        let mut sessions = lock(&self.sessions);
        let known = sessions.len();
        sessions
            .entry(session.to_owned())
            .and_modify(|seen| seen.last_seen_ms = now)
            .or_insert(SessionSeen {
                last_seen_ms: now,
                websockets: 0,
            });
        if sessions.len() != known {
            self.sessions_known
                .store(sessions.len() as u32, Ordering::Release);
        }
    }

    /// Takes a slot for a request; `None` when `max_inflight` (non-zero) slots are taken.
    pub(crate) fn try_begin_request(self: &Arc<Self>, max_inflight: u32) -> Option<InflightGuard> {
        let mut current = self.inflight.load(Ordering::Acquire);
        loop {
            if max_inflight != 0 && current >= max_inflight {
                return None;
            }
            match self.inflight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        note_activity(&self.last_activity_ms);
        Some(InflightGuard {
            replica: self.clone(),
            route_changed: None,
        })
    }

    pub(crate) fn begin_websocket(self: &Arc<Self>, session: Option<String>) -> WebSocketGuard {
        self.websockets.fetch_add(1, Ordering::AcqRel);
        self.last_activity_ms
            .store(unix_millis(), Ordering::Release);
        if let Some(session) = &session {
            let mut sessions = lock(&self.sessions);
            let seen = sessions.entry(session.clone()).or_insert(SessionSeen {
                last_seen_ms: unix_millis(),
                websockets: 0,
            });
            seen.websockets += 1;
        }
        WebSocketGuard {
            replica: self.clone(),
            session,
        }
    }
}

/// Holds a request's slot on a replica; frees it (and wakes queued requests) when dropped.
pub(crate) struct InflightGuard {
    replica: Arc<Replica>,
    route_changed: Option<Arc<AppRoute>>,
}

impl InflightGuard {
    /// Wake requests queued on the route when this slot is freed.
    pub(crate) fn wake_on_release(&mut self, route: Arc<AppRoute>) {
        self.route_changed = Some(route);
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.replica.inflight.fetch_sub(1, Ordering::AcqRel);
        note_activity(&self.replica.last_activity_ms);
        if let Some(route) = &self.route_changed {
            if route.waiting() > 0 {
                route.changed.notify_waiters();
            }
        }
    }
}

/// Counts an open WebSocket on a replica while it lives.
pub(crate) struct WebSocketGuard {
    replica: Arc<Replica>,
    session: Option<String>,
}

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        let now = unix_millis();
        self.replica.last_activity_ms.store(now, Ordering::Release);
        if let Some(session) = &self.session {
            let mut sessions = lock(&self.replica.sessions);
            if let Some(seen) = sessions.get_mut(session) {
                seen.websockets = seen.websockets.saturating_sub(1);
                seen.last_seen_ms = now;
                // A session that lived in WebSockets (Shiny) ends with its last one.
                if seen.websockets == 0 {
                    sessions.remove(session);
                    self.replica
                        .sessions_known
                        .store(sessions.len() as u32, Ordering::Release);
                }
            }
        }
        self.replica.websockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Sets a last-activity time to now. Many requests fall in the same millisecond, and
/// a store would take the cache line from the other front threads every time.
fn note_activity(last_activity_ms: &AtomicI64) {
    let now = unix_millis();
    if last_activity_ms.load(Ordering::Relaxed) != now {
        last_activity_ms.store(now, Ordering::Release);
    }
}

pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

// A poisoned lock only means another thread panicked while holding it; the data (counters,
// replica lists) is still consistent enough to route with.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
