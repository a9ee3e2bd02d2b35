//! How many replicas a service should have: the autoscaler's decision as a pure function.
//!
//! The control plane samples the proxy's counters about once a second and asks
//! [`decide`] for the number of replicas; [`ScalerMemory`] is what the decision needs to
//! remember between samples (since when the load has been low, when it last changed the
//! count). Times are unix milliseconds.
//!
//! The rules, with the `[service]` settings of `wharf.toml`:
//! - **Load** is what the replicas carry: open sessions (WebSockets, sticky browser
//!   sessions seen recently) or requests in flight, whichever is larger per replica, plus
//!   requests waiting for a replica.
//! - **Scale out** at once when the load per replica is above `scale_out_above`: to
//!   `ceil(load / scale_out_above)` replicas, at most `max_replicas`.
//! - **Scale in** by one replica when the load per replica has stayed below
//!   `scale_in_below` for `scale_in_cooldown`, and no change happened within the cooldown
//!   either; never below `min_replicas`, and never so far that the remaining replicas
//!   would be above `scale_out_above` (which would add one back at once).
//! - **Scale to zero** (`min_replicas = 0`): no replica while nothing asked for one for
//!   `idle_timeout`; a request waiting for a replica asks for one at once.

use std::time::Duration;

/// The settings the decision uses (from `[service]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingSettings {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub scale_out_above: u32,
    pub scale_in_below: u32,
    pub scale_in_cooldown: Duration,
    /// With `min_replicas = 0`: how long without activity before going to zero.
    pub idle_timeout: Duration,
}

/// One sample of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScalingSample {
    pub now: i64,
    /// Replicas of the active version that are starting or ready.
    pub replicas: u32,
    /// The summed load of those replicas (see the module documentation).
    pub load: u32,
    /// Requests held because no replica could take them (cold start or queue).
    pub waiting: u32,
    /// The last time a request reached the service (or was held for it).
    pub last_activity: Option<i64>,
}

/// What the autoscaler remembers between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScalerMemory {
    /// Since when the load per replica has been below `scale_in_below` without a break.
    pub low_since: Option<i64>,
    /// When the decision last changed the number of replicas.
    pub last_change: Option<i64>,
}

/// The number of replicas to have, and the memory for the next sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingDecision {
    pub replicas: u32,
    pub memory: ScalerMemory,
}

/// Decides how many replicas the service should have after this sample.
pub fn decide(
    settings: &ScalingSettings,
    sample: &ScalingSample,
    memory: ScalerMemory,
) -> ScalingDecision {
    let maximum = settings.max_replicas.max(1);
    let minimum = settings.min_replicas.min(maximum);
    let current = sample.replicas;
    let load = sample.load.saturating_add(sample.waiting);
    let out_above = settings.scale_out_above.max(1);
    // Enough replicas that none is above `scale_out_above`.
    let needed_for_load = load.div_ceil(out_above);
    let cooldown = millis(settings.scale_in_cooldown);
    let changed = |replicas: u32, low_since: Option<i64>| ScalingDecision {
        replicas,
        memory: ScalerMemory {
            low_since,
            last_change: if replicas == current {
                memory.last_change
            } else {
                Some(sample.now)
            },
        },
    };

    if current == 0 {
        let asked_for = sample.waiting > 0 || load > 0;
        let floor = if asked_for { 1 } else { minimum };
        let replicas = needed_for_load.max(floor).min(maximum);
        return changed(replicas, None);
    }
    if needed_for_load > current {
        return changed(needed_for_load.min(maximum).max(minimum), None);
    }
    if current < minimum {
        return changed(minimum, None);
    }
    if current > maximum {
        return changed(maximum, None);
    }

    // Zero replicas once idle for long enough.
    if minimum == 0 && load == 0 {
        let idle_since = sample.last_activity.unwrap_or(i64::MIN);
        if sample.now.saturating_sub(idle_since) >= millis(settings.idle_timeout) {
            return changed(0, None);
        }
    }

    let per_replica_below =
        u64::from(load) < u64::from(settings.scale_in_below) * u64::from(current);
    if !per_replica_below {
        return ScalingDecision {
            replicas: current,
            memory: ScalerMemory {
                low_since: None,
                last_change: memory.last_change,
            },
        };
    }
    let low_since = memory.low_since.unwrap_or(sample.now);
    let low_long_enough = sample.now.saturating_sub(low_since) >= cooldown;
    let quiet_long_enough = memory
        .last_change
        .is_none_or(|last| sample.now.saturating_sub(last) >= cooldown);
    let floor = minimum.max(needed_for_load).max(1);
    if low_long_enough && quiet_long_enough && current > floor {
        // One at a time; the low period starts again for the next one.
        return changed(current - 1, Some(sample.now));
    }
    changed(current, Some(low_since))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1000;

    fn settings() -> ScalingSettings {
        ScalingSettings {
            min_replicas: 1,
            max_replicas: 5,
            scale_out_above: 15,
            scale_in_below: 3,
            scale_in_cooldown: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(900),
        }
    }

    fn sample(now: i64, replicas: u32, load: u32) -> ScalingSample {
        ScalingSample {
            now,
            replicas,
            load,
            waiting: 0,
            last_activity: Some(now),
        }
    }

    /// Runs samples in order and returns the decided counts.
    fn check(settings: &ScalingSettings, samples: &[ScalingSample], expect: &[u32]) {
        let mut memory = ScalerMemory::default();
        let mut decided = Vec::new();
        for sample in samples {
            let decision = decide(settings, sample, memory);
            memory = decision.memory;
            decided.push(decision.replicas);
        }
        assert_eq!(decided, expect, "samples: {samples:?}");
    }

    #[test]
    fn scales_out_at_once_to_what_the_load_needs() {
        let settings = settings();
        check(&settings, &[sample(0, 1, 15)], &[1]);
        check(&settings, &[sample(0, 1, 16)], &[2]);
        check(&settings, &[sample(0, 1, 40)], &[3]);
        check(&settings, &[sample(0, 2, 1000)], &[5]);
        check(&settings, &[sample(0, 3, 46)], &[4]);
    }

    #[test]
    fn scales_in_one_at_a_time_after_the_cooldown() {
        let settings = settings();
        // 3 replicas, load drops to 2 in total (below 3 per replica).
        let samples: Vec<_> = [0, 30, 59, 60, 61, 119, 120, 200, 300]
            .iter()
            .map(|&second| sample(second * SECOND, 3, 2))
            .collect();
        // Replicas are what the decision said the sample before; keep it simple by
        // feeding the same count: the decision still only removes after each cooldown.
        let mut memory = ScalerMemory::default();
        let mut replicas = 3;
        let mut decided = Vec::new();
        for mut sample in samples {
            sample.replicas = replicas;
            let decision = decide(&settings, &sample, memory);
            memory = decision.memory;
            replicas = decision.replicas;
            decided.push(replicas);
        }
        assert_eq!(decided, [3, 3, 3, 2, 2, 2, 1, 1, 1]);
    }

    #[test]
    fn a_load_spike_restarts_the_cooldown() {
        let settings = settings();
        check(
            &settings,
            &[
                sample(0, 2, 1),
                sample(50 * SECOND, 2, 10),
                sample(70 * SECOND, 2, 1),
                sample(125 * SECOND, 2, 1),
                sample(130 * SECOND, 2, 1),
            ],
            &[2, 2, 2, 2, 1],
        );
    }

    #[test]
    fn never_scales_in_so_far_that_it_would_scale_out_again() {
        let mut settings = settings();
        settings.scale_in_below = 14;
        // 3 replicas with 31 sessions: below 14 each, but 2 replicas would carry 15.5.
        check(
            &settings,
            &[sample(0, 3, 31), sample(61 * SECOND, 3, 31)],
            &[3, 3],
        );
    }

    #[test]
    fn keeps_within_min_and_max() {
        let mut settings = settings();
        settings.min_replicas = 2;
        check(&settings, &[sample(0, 1, 0)], &[2]);
        check(&settings, &[sample(0, 7, 0)], &[5]);
        check(&settings, &[sample(0, 0, 0)], &[2]);
        check(
            &settings,
            &[sample(0, 2, 0), sample(600 * SECOND, 2, 0)],
            &[2, 2],
        );
    }

    #[test]
    fn scale_to_zero_after_the_idle_timeout_and_back_on_demand() {
        let mut settings = settings();
        settings.min_replicas = 0;
        settings.idle_timeout = Duration::from_secs(30);
        let idle = |now: i64, last: i64| ScalingSample {
            now,
            replicas: 1,
            load: 0,
            waiting: 0,
            last_activity: Some(last),
        };
        check(&settings, &[idle(29 * SECOND, 0)], &[1]);
        check(&settings, &[idle(30 * SECOND, 0)], &[0]);
        // A session still open keeps it up.
        check(
            &settings,
            &[ScalingSample {
                load: 1,
                ..idle(100 * SECOND, 0)
            }],
            &[1],
        );
        // At zero: nothing happens until a request waits.
        let zero = ScalingSample {
            now: 100 * SECOND,
            replicas: 0,
            load: 0,
            waiting: 0,
            last_activity: None,
        };
        check(&settings, &[zero], &[0]);
        check(&settings, &[ScalingSample { waiting: 1, ..zero }], &[1]);
        check(
            &settings,
            &[ScalingSample {
                waiting: 40,
                ..zero
            }],
            &[3],
        );
    }

    #[test]
    fn never_started_service_with_min_zero_stays_at_zero() {
        let mut settings = settings();
        settings.min_replicas = 0;
        let sample = ScalingSample {
            now: 5,
            replicas: 1,
            load: 0,
            waiting: 0,
            last_activity: None,
        };
        check(&settings, &[sample], &[0]);
    }
}
