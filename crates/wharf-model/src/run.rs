//! The life of a job run: its states, the allowed transitions and the retry policy.
//!
//! ```text
//! queued → starting → running → succeeded | failed | timed_out | cancelled | lost
//!    ↘ cancelled  ↘ failed | cancelled | lost
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The state of one execution of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Starting,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Lost,
}

impl RunState {
    /// Every state, in lifecycle order.
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Starting,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Cancelled,
        RunState::Lost,
    ];

    /// The snake_case name used in the database, the API and the CLI.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Lost => "lost",
        }
    }

    /// A finished run: nothing can happen to it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::Failed
                | RunState::TimedOut
                | RunState::Cancelled
                | RunState::Lost
        )
    }

    /// A run that holds (or is acquiring) a process: starting or running.
    pub fn is_active(&self) -> bool {
        matches!(self, RunState::Starting | RunState::Running)
    }

    /// Whether a run in state `self` may move to `to`.
    pub fn can_transition(self, to: RunState) -> bool {
        use RunState::*;
        match self {
            Queued => matches!(to, Starting | Cancelled),
            Starting => matches!(to, Running | Failed | Cancelled | Lost),
            Running => matches!(to, Succeeded | Failed | TimedOut | Cancelled | Lost),
            Succeeded | Failed | TimedOut | Cancelled | Lost => false,
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = RunState::ALL.iter().map(RunState::as_str).collect();
                format!(
                    "\"{text}\" is not a run state; use one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// How long to wait before retry number `attempt` (1 = the first retry): `base`, then
/// doubling each time, never more than one hour.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let factor = if doublings >= 32 {
        u32::MAX
    } else {
        1u32 << doublings
    };
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// Whether a run that ended in `state` on execution number `attempt` (1 = the first
/// execution) gets another execution, given the job allows `retries` retries.
pub fn should_retry(state: RunState, attempt: u32, retries: u32) -> bool {
    matches!(
        state,
        RunState::Failed | RunState::TimedOut | RunState::Lost
    ) && attempt <= retries
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::run::{retry_delay, should_retry, RunState};

    #[test]
    fn names_round_trip() {
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<RunState>(&json).unwrap(), state);
        }
        assert_eq!(RunState::TimedOut.as_str(), "timed_out");
        assert_eq!(
            "done".parse::<RunState>(),
            Err("\"done\" is not a run state; use one of: queued, starting, running, succeeded, failed, timed_out, cancelled, lost".to_string())
        );
    }

    #[test]
    fn terminal_and_active() {
        use RunState::*;
        for (state, terminal, active) in [
            (Queued, false, false),
            (Starting, false, true),
            (Running, false, true),
            (Succeeded, true, false),
            (Failed, true, false),
            (TimedOut, true, false),
            (Cancelled, true, false),
            (Lost, true, false),
        ] {
            assert_eq!(state.is_terminal(), terminal, "{state}");
            assert_eq!(state.is_active(), active, "{state}");
        }
    }

    #[test]
    fn transitions() {
        use RunState::*;
        let allowed = [
            (Queued, Starting),
            (Queued, Cancelled),
            (Starting, Running),
            (Starting, Failed),
            (Starting, Cancelled),
            (Starting, Lost),
            (Running, Succeeded),
            (Running, Failed),
            (Running, TimedOut),
            (Running, Cancelled),
            (Running, Lost),
        ];
        for from in RunState::ALL {
            for to in RunState::ALL {
                assert_eq!(
                    from.can_transition(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            if from.is_terminal() {
                assert!(RunState::ALL.iter().all(|to| !from.can_transition(*to)));
            }
        }
    }

    fn check_delay(base_seconds: u64, attempt: u32, expected_seconds: u64) {
        assert_eq!(
            retry_delay(Duration::from_secs(base_seconds), attempt),
            Duration::from_secs(expected_seconds),
            "base {base_seconds}s attempt {attempt}"
        );
    }

    #[test]
    fn retry_delays() {
        check_delay(10, 1, 10);
        check_delay(10, 2, 20);
        check_delay(10, 3, 40);
        check_delay(10, 9, 2560);
        check_delay(10, 10, 3600);
        check_delay(10, 0, 10);
        check_delay(10, 31, 3600);
        check_delay(10, 32, 3600);
        check_delay(10, 33, 3600);
        check_delay(10, u32::MAX, 3600);
        check_delay(0, 5, 0);
        check_delay(7200, 1, 3600);
        check_delay(1, 12, 2048);
        assert_eq!(
            retry_delay(Duration::MAX, u32::MAX),
            Duration::from_secs(3600)
        );
        assert_eq!(
            retry_delay(Duration::from_millis(500), 2),
            Duration::from_secs(1)
        );
    }

    fn check_retry(state: RunState, attempt: u32, retries: u32, expected: bool) {
        assert_eq!(
            should_retry(state, attempt, retries),
            expected,
            "{state} attempt {attempt} retries {retries}"
        );
    }

    #[test]
    fn retry_decisions() {
        use RunState::*;
        for state in [Failed, TimedOut, Lost] {
            check_retry(state, 1, 0, false);
            check_retry(state, 1, 2, true);
            check_retry(state, 2, 2, true);
            check_retry(state, 3, 2, false);
            check_retry(state, 100, 100, true);
            check_retry(state, 101, 100, false);
        }
        for state in [Succeeded, Cancelled, Queued, Starting, Running] {
            check_retry(state, 1, 5, false);
        }
    }
}
