//! wharf-proxy: the HTTP and WebSocket reverse proxy in front of service replicas.
//!
//! [`Routes`] is the route table the control plane keeps (apps, their replicas and
//! settings); [`forward`] takes one request to a replica of an app: it waits for a replica
//! that can take it (holding the request through a cold start or a full `max_inflight`
//! queue), keeps a browser on its replica with a sticky cookie, rewrites the head, streams
//! bodies both ways and pumps WebSocket upgrades. Per-replica counters (in-flight
//! requests, open sessions, last activity) feed the autoscaler; per-app counters
//! ([`metrics`]) feed `/metrics`. [`probe`] is the health check.
//!
//! **Architecture invariant:** the proxy decides nothing about replicas' lives: it routes
//! to what the route table says is ready (or draining, for a sticky session already
//! there) and signals demand; the control plane starts and stops replicas. It knows no
//! users either: the API layer authenticates and passes the user in [`ForwardContext`].

mod chunked;
mod forward;
mod h1;
pub mod metrics;
mod pool;
mod probe;
mod pump;
mod rewrite;
mod routes;

pub use crate::forward::{forward, plain, ForwardContext, STICKY_COOKIE};
pub use crate::probe::{probe, ProbeError};
pub use crate::routes::{
    Access, AppRoute, Replica, ReplicaState, RouteSettings, Routes, SESSION_WINDOW,
};
