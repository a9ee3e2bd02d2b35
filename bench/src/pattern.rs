//! Pattern matching: Object Created events per second against 100 trigger rules, in
//! process, single-threaded (`wharf_model::pattern::EventPattern`).

use std::hint::black_box;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::Value;
use wharf_model::pattern::EventPattern;

use crate::pattern_rules::{event_from_stored, rule_families, stored_events};
use crate::report::{summarize, Row, Section};
use crate::Bench;

pub const RULES: usize = 100;
pub const EVENTS: usize = 10_000;
/// Timed rounds over all events; the median round counts.
const ROUNDS: usize = 9;
const FAMILY_ROUNDS: usize = 5;

struct CompiledFamily {
    name: &'static str,
    patterns: Vec<EventPattern>,
}

fn compile_rules() -> anyhow::Result<Vec<CompiledFamily>> {
    let mut families = Vec::new();
    for family in rule_families() {
        let mut patterns = Vec::new();
        for pattern in &family.patterns {
            let compiled = EventPattern::from_value(pattern)
                .with_context(|| format!("the bench's pattern {pattern} is rejected"))?;
            patterns.push(compiled);
        }
        families.push(CompiledFamily {
            name: family.name,
            patterns,
        });
    }
    Ok(families)
}

/// Matches every event against every pattern; returns how many (event, pattern) pairs
/// matched.
fn match_all(events: &[Value], patterns: &[EventPattern]) -> usize {
    let mut matched = 0;
    for event in events {
        for pattern in patterns {
            if pattern.matches(black_box(event)) {
                matched += 1;
            }
        }
    }
    matched
}

/// The CPU time this thread has used, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    time.tv_sec as f64 + time.tv_nsec as f64 / 1e9
}

/// Median seconds of a few rounds: on the thread's CPU clock, and on the wall clock.
#[derive(Debug, Clone, Copy)]
struct Timing {
    cpu: f64,
    wall: f64,
}

/// Runs `work` `rounds` times; returns the median round's thread CPU and wall seconds.
fn median_seconds(rounds: usize, mut work: impl FnMut() -> usize) -> anyhow::Result<Timing> {
    let mut cpu = Vec::with_capacity(rounds);
    let mut wall = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let cpu_started = thread_cpu_seconds();
        black_box(work());
        cpu.push(thread_cpu_seconds() - cpu_started);
        wall.push(started.elapsed().as_secs_f64());
    }
    Ok(Timing {
        cpu: summarize(&cpu).context("no rounds")?.p50,
        wall: summarize(&wall).context("no rounds")?.p50,
    })
}

pub fn measure(_bench: &Bench) -> anyhow::Result<Section> {
    let families = compile_rules()?;
    let patterns: Vec<EventPattern> = families
        .iter()
        .flat_map(|family| family.patterns.iter().cloned())
        .collect();
    if patterns.len() != RULES {
        bail!("internal error: {} rules, not {RULES}", patterns.len());
    }
    let stored: Vec<String> = stored_events(EVENTS).iter().map(Value::to_string).collect();
    let events: Vec<Value> = stored
        .iter()
        .enumerate()
        .map(|(seq, body)| event_from_stored(body, seq as i64 + 1))
        .collect();

    // Counts, once.
    let per_event: Vec<usize> = events
        .iter()
        .map(|event| patterns.iter().filter(|p| p.matches(event)).count())
        .collect();
    let total_matches: usize = per_event.iter().sum();
    let mean_matched = total_matches as f64 / EVENTS as f64;
    let events_matching_any = per_event.iter().filter(|&&count| count > 0).count();
    let most = per_event.iter().copied().max().unwrap_or(0);

    // Warm-up, then the timed rounds.
    black_box(match_all(&events, &patterns));
    let timing = median_seconds(ROUNDS, || match_all(&events, &patterns))?;
    let seconds = timing.cpu;
    let events_per_second = EVENTS as f64 / seconds;
    let micros_per_event = seconds / EVENTS as f64 * 1e6;
    let nanos_per_check = seconds / (EVENTS * RULES) as f64 * 1e9;

    let parse_seconds = median_seconds(ROUNDS, || {
        stored
            .iter()
            .enumerate()
            .map(|(seq, body)| {
                usize::from(event_from_stored(black_box(body), seq as i64).is_object())
            })
            .sum()
    })?
    .cpu;
    let parses_per_second = EVENTS as f64 / parse_seconds;

    let mut family_notes = Vec::new();
    for family in &families {
        let seconds = median_seconds(FAMILY_ROUNDS, || match_all(&events, &family.patterns))?.cpu;
        let matched = match_all(&events, &family.patterns);
        family_notes.push(format!(
            "{} ({} rules): {:.0} ns per check, {:.2} matches per event",
            family.name,
            family.patterns.len(),
            seconds / (EVENTS * family.patterns.len()) as f64 * 1e9,
            matched as f64 / EVENTS as f64
        ));
    }

    let rows = vec![
        Row::new(
            format!("events/s against {RULES} rules, one thread"),
            format!("{events_per_second:.0} events/s ({micros_per_event:.2} µs/event)"),
        )
        .baseline(
            format!(
                "{parses_per_second:.0} events/s (parsing the stored event, `EventRow::to_json`)"
            ),
            events_per_second / parses_per_second,
        ),
        Row::new(
            "pattern checks/s, one thread",
            format!(
                "{:.1} M/s ({nanos_per_check:.0} ns/check)",
                1e3 / nanos_per_check
            ),
        ),
        Row::new(
            format!("rules matched per event (mean, of {RULES})"),
            format!("{mean_matched:.2}"),
        ),
    ];
    let mut notes = vec![
        format!(
            "{events_matching_any} of the {EVENTS} events ({:.0}%) match at least one rule; the \
             most any event matched is {most}. The issue sets no goal here.",
            events_matching_any as f64 / EVENTS as f64 * 100.0
        ),
        format!(
            "Matching an event against all {RULES} rules costs {:.2}× parsing it from the store \
             (which the dispatcher does for every event anyway); the dispatcher also stops at an \
             app's first matching trigger, so with one pattern per app this is its whole matching \
             cost.",
            parses_per_second / events_per_second
        ),
        format!(
            "Times are the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so other work on the \
             shared cores does not count; on the wall clock the median round took {:.0} ms \
             ({:.0} events/s) against {:.0} ms of CPU.",
            timing.wall * 1e3,
            EVENTS as f64 / timing.wall,
            timing.cpu * 1e3
        ),
        "By family (median of 5 rounds of all events against that family alone):".to_owned(),
    ];
    notes.extend(family_notes);
    Ok(Section {
        title: "Event pattern matching".into(),
        method: format!(
            "In process, one thread, no server: {RULES} trigger patterns compiled with \
             `wharf_model::pattern::EventPattern` (30 `object_created` sugar patterns from \
             `object_created_pattern` over 5 buckets with no filter, a prefix, a suffix, or both; \
             10 each with `prefix`, `suffix` + `equals-ignore-case`, `anything-but` (values, \
             lists, prefix, suffix, wildcard, equals-ignore-case), `numeric` ranges on the size, \
             `wildcard` keys, `$or` of two or three branches, and 10 mixed ones using `exists`, \
             `reason`, `requester`, `resources`, `Object Deleted` and another source; see \
             `bench/src/pattern_rules.rs`) against {EVENTS} Wharf `Object Created` events shaped \
             as `crates/wharf-objects/src/events.rs` writes them, with the `sequencer` added on \
             read (8 buckets of which 5 are named by rules, 10 key layouts, sizes from bytes to \
             4 GiB, PutObject, CompleteMultipartUpload and CopyObject, requesters `admin` and \
             `run:…`). Every event is checked against every rule (no early exit). One warm-up \
             round, then the median of {ROUNDS} rounds over all events, timed on the thread's \
             CPU clock. The baseline parses each \
             stored event body as `EventRow::to_json` does. Ratio = matching ÷ baseline, in \
             events/s (higher is better)."
        ),
        rows,
        notes,
        subcommand: "pattern",
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::pattern::{compile_rules, match_all, RULES};
    use crate::pattern_rules::{event_from_stored, stored_events};

    #[test]
    fn every_rule_compiles() {
        let families = compile_rules().unwrap();
        let counts: Vec<usize> = families
            .iter()
            .map(|family| family.patterns.len())
            .collect();
        assert_eq!(counts, vec![30, 10, 10, 10, 10, 10, 10, 10]);
        assert_eq!(counts.iter().sum::<usize>(), RULES);
    }

    #[test]
    fn events_are_deterministic_and_get_a_sequencer() {
        assert_eq!(stored_events(50), stored_events(50));
        let body = stored_events(1)[0].to_string();
        let event = event_from_stored(&body, 255);
        assert_eq!(
            event["detail"]["object"]["sequencer"],
            json!("00000000000000FF")
        );
        assert_eq!(event["source"], json!("wharf.s3"));
        assert_eq!(event_from_stored("not json", 1), serde_json::Value::Null);
    }

    #[test]
    fn sugar_rules_match_their_bucket() {
        let families = compile_rules().unwrap();
        let sugar = &families[0].patterns;
        let check = |bucket: &str, key: &str, expect: usize| {
            let body = json!({"source": "wharf.s3", "detail-type": "Object Created",
                "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 5}}});
            let event = event_from_stored(&body.to_string(), 1);
            assert_eq!(match_all(&[event], sugar), expect, "{bucket} {key}");
        };
        // No filter, prefix "sales/", suffix ".csv", both.
        check("incoming", "sales/a.csv", 4);
        check("incoming", "other/a.csv", 2);
        check("incoming", "logs/a.log", 2);
        check("incoming", "inbox/acme/x.json", 2);
        check("exports", "sales/a.csv", 0);
    }
}
