//! Per-app proxy counters, lock-free so that every request can update them, rendered in
//! the Prometheus text format by [`render`].

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::routes::{ReplicaState, Routes};

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Counters of one app, kept by the proxy.
#[derive(Default)]
pub struct AppMetrics {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    responses: [AtomicU64; 5],
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] (non-cumulative here; summed
    /// when rendered).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
    cold_starts: AtomicU64,
    cold_start_micros: AtomicU64,
    queue_waits: AtomicU64,
    queue_wait_micros: AtomicU64,
}

impl AppMetrics {
    pub(crate) fn observe_response(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// A request was held while a replica started from zero.
    pub(crate) fn observe_cold_start(&self, waited: Duration) {
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        self.cold_start_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// A request waited for a free slot (`max_inflight`) or a ready replica.
    pub(crate) fn observe_queue_wait(&self, waited: Duration) {
        self.queue_waits.fetch_add(1, Ordering::Relaxed);
        self.queue_wait_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// Responses so far with this status class (1 to 5).
    pub fn responses(&self, class: u16) -> u64 {
        let index = usize::from(class).clamp(1, 5) - 1;
        self.responses[index].load(Ordering::Relaxed)
    }

    pub fn cold_starts(&self) -> u64 {
        self.cold_starts.load(Ordering::Relaxed)
    }
}

/// Appends the proxy's metrics for every app to `out`, in the Prometheus text format.
pub fn render(routes: &Routes, out: &mut String) {
    let routes = routes.all();
    let _ = out.write_str(
        "# HELP wharf_proxy_requests_total Requests answered through the proxy, by app and status class.\n\
         # TYPE wharf_proxy_requests_total counter\n",
    );
    for route in &routes {
        for class in 1..=5u16 {
            let _ = writeln!(
                out,
                "wharf_proxy_requests_total{{app=\"{}\",code=\"{class}xx\"}} {}",
                route.name,
                route.metrics.responses(class)
            );
        }
    }
    let _ = out.write_str(
        "# HELP wharf_proxy_request_duration_seconds Time from the request to the response head, by app.\n\
         # TYPE wharf_proxy_request_duration_seconds histogram\n",
    );
    for route in &routes {
        let metrics = &route.metrics;
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&metrics.latency_buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "wharf_proxy_request_duration_seconds_bucket{{app=\"{}\",le=\"{bound}\"}} {cumulative}",
                route.name
            );
        }
        let count = metrics.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "wharf_proxy_request_duration_seconds_bucket{{app=\"{0}\",le=\"+Inf\"}} {count}\n\
             wharf_proxy_request_duration_seconds_sum{{app=\"{0}\"}} {1}\n\
             wharf_proxy_request_duration_seconds_count{{app=\"{0}\"}} {count}",
            route.name,
            micros_as_seconds(&metrics.latency_micros)
        );
    }
    type RouteValue = fn(&crate::AppRoute) -> String;
    let gauges: [(&str, &str, RouteValue); 6] = [
        (
            "wharf_service_replicas_ready",
            "Replicas taking new sessions, by app.",
            |route| count_state(route, ReplicaState::Ready),
        ),
        (
            "wharf_service_replicas_starting",
            "Replicas started and not ready yet, by app.",
            |route| count_state(route, ReplicaState::Starting),
        ),
        (
            "wharf_service_replicas_draining",
            "Replicas finishing their open sessions before they stop, by app.",
            |route| count_state(route, ReplicaState::Draining),
        ),
        (
            "wharf_service_sessions",
            "Open sessions (WebSockets and sticky sessions seen in the last minute), by app.",
            |route| {
                let sessions: u32 = route.replicas().iter().map(|r| r.open_sessions()).sum();
                sessions.to_string()
            },
        ),
        (
            "wharf_service_inflight_requests",
            "Requests being answered right now, by app.",
            |route| {
                let inflight: u32 = route.replicas().iter().map(|r| r.inflight()).sum();
                inflight.to_string()
            },
        ),
        (
            "wharf_service_waiting_requests",
            "Requests held for a replica (cold start or max_inflight), by app.",
            |route| route.waiting().to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for route in &routes {
            let _ = writeln!(out, "{name}{{app=\"{}\"}} {}", route.name, value(route));
        }
    }
    type MetricsValue = fn(&AppMetrics) -> String;
    let counters: [(&str, &str, MetricsValue); 4] = [
        (
            "wharf_service_cold_starts_total",
            "Requests that waited for a replica to start from zero, by app.",
            |metrics| metrics.cold_starts.load(Ordering::Relaxed).to_string(),
        ),
        (
            "wharf_service_cold_start_seconds_total",
            "Time requests spent waiting for a replica to start from zero, by app.",
            |metrics| micros_as_seconds(&metrics.cold_start_micros),
        ),
        (
            "wharf_proxy_queue_waits_total",
            "Requests that waited for a free slot (max_inflight), by app.",
            |metrics| metrics.queue_waits.load(Ordering::Relaxed).to_string(),
        ),
        (
            "wharf_proxy_queue_wait_seconds_total",
            "Time requests spent waiting for a free slot, by app.",
            |metrics| micros_as_seconds(&metrics.queue_wait_micros),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for route in &routes {
            let _ = writeln!(
                out,
                "{name}{{app=\"{}\"}} {}",
                route.name,
                value(&route.metrics)
            );
        }
    }
}

fn count_state(route: &crate::AppRoute, state: ReplicaState) -> String {
    route
        .replicas()
        .iter()
        .filter(|replica| replica.state() == state)
        .count()
        .to_string()
}

fn micros_as_seconds(micros: &AtomicU64) -> String {
    format!("{:.6}", micros.load(Ordering::Relaxed) as f64 / 1e6)
}
