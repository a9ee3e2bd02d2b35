//! When schedule triggers fire: compiled schedules, the next fire times, and which missed
//! fire times (slots) to run after downtime according to `catch_up`.
//!
//! Everything here is a pure function of the schedule and the times it is given; the
//! scheduler in `wharf-control` keeps the state (the last slot it handled) and the clock.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::schedule::{next_fire_after, parse_cron, parse_timezone};

/// At most this many missed slots run with `catch_up = "all"`: the most recent ones.
pub const MAX_CATCH_UP_SLOTS: usize = 1000;
/// Missed slots are looked for at most this far back.
pub const CATCH_UP_LOOKBACK: chrono::Duration = chrono::Duration::days(31);

/// What a schedule does about fire times missed while the server was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Run once, for the most recent missed slot (the default).
    #[default]
    Latest,
    /// Run once for every missed slot (at most [`MAX_CATCH_UP_SLOTS`], the newest).
    All,
    /// Skip missed slots; wait for the next one.
    None,
}

impl CatchUp {
    /// Reads the manifest value; `None` (not set) and unknown values mean `Latest`
    /// (the manifest checker refuses unknown values before they are stored).
    pub fn from_manifest(value: Option<&str>) -> CatchUp {
        match value {
            Some("all") => CatchUp::All,
            Some("none") => CatchUp::None,
            _ => CatchUp::Latest,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
            CatchUp::None => "none",
        }
    }
}

/// A schedule trigger ready to compute fire times.
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    /// The expression as written (with `H` tokens).
    pub expression: String,
    pub cron: croner::Cron,
    pub timezone: Tz,
    pub catch_up: CatchUp,
}

impl CompiledSchedule {
    /// Compiles a stored schedule trigger. `app_name` seeds the `H` tokens.
    pub fn compile(
        expression: &str,
        timezone: Option<&str>,
        catch_up: Option<&str>,
        app_name: &str,
    ) -> Result<CompiledSchedule, String> {
        let cron = parse_cron(expression, app_name)?;
        let timezone = match timezone {
            Some(name) => parse_timezone(name)?,
            None => chrono_tz::UTC,
        };
        Ok(CompiledSchedule {
            expression: expression.to_owned(),
            cron,
            timezone,
            catch_up: CatchUp::from_manifest(catch_up),
        })
    }

    /// What identifies the schedule's fire times: when it changes (a deploy changed the
    /// expression or the time zone), the last fired slot no longer applies.
    pub fn spec(&self) -> String {
        format!("{} @ {}", self.expression, self.timezone.name())
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_fire_after(&self.cron, self.timezone, after)
    }

    /// The next `count` fire times strictly after `after`.
    pub fn next_fires(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(count);
        let mut cursor = after;
        while fires.len() < count {
            match self.next_after(cursor) {
                Some(next) => {
                    fires.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        fires
    }
}

/// Slots in `(after, until]`, oldest first, keeping only the newest `keep`; also returns
/// how many there were in all (looking back at most [`CATCH_UP_LOOKBACK`] from `until`).
pub fn slots_between(
    schedule: &CompiledSchedule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    keep: usize,
) -> (Vec<DateTime<Utc>>, usize) {
    let mut kept = std::collections::VecDeque::with_capacity(keep.min(64));
    let mut total = 0;
    let mut cursor = after.max(until - CATCH_UP_LOOKBACK);
    while let Some(next) = schedule.next_after(cursor) {
        if next > until {
            break;
        }
        total += 1;
        if keep > 0 {
            if kept.len() == keep {
                kept.pop_front();
            }
            kept.push_back(next);
        }
        cursor = next;
    }
    (kept.into_iter().collect(), total)
}

/// Which slots to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// Slots to run, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Slots passed over (missed and not run by the `catch_up` policy, or beyond the cap).
    pub skipped: usize,
    /// The newest slot handled (fired or skipped); the next search starts after it.
    pub handled_through: Option<DateTime<Utc>>,
}

/// Decides which due slots in `(last_slot, now]` run. Slots that came due while the
/// scheduler was running (`missed_while_down == false`) all run (at most
/// [`MAX_CATCH_UP_SLOTS`]); slots missed while the server was down follow `catch_up`.
pub fn plan_fires(
    schedule: &CompiledSchedule,
    last_slot: DateTime<Utc>,
    now: DateTime<Utc>,
    missed_while_down: bool,
) -> FirePlan {
    let policy = if missed_while_down {
        schedule.catch_up
    } else {
        CatchUp::All
    };
    let keep = match policy {
        CatchUp::All => MAX_CATCH_UP_SLOTS,
        CatchUp::Latest => 1,
        CatchUp::None => 1,
    };
    let (slots, total) = slots_between(schedule, last_slot, now, keep);
    let handled_through = slots.last().copied();
    let fire = match policy {
        CatchUp::None => Vec::new(),
        _ => slots,
    };
    FirePlan {
        skipped: total - fire.len(),
        fire,
        handled_through,
    }
}

#[cfg(test)]
#[path = "firing_tests.rs"]
mod tests;
