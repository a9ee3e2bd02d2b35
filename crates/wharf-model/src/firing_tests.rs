use chrono::{DateTime, TimeZone, Utc};

use crate::firing::{plan_fires, slots_between, CatchUp, CompiledSchedule, MAX_CATCH_UP_SLOTS};

fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .unwrap()
}

fn schedule(expression: &str, timezone: &str) -> CompiledSchedule {
    CompiledSchedule::compile(expression, Some(timezone), None, "app").unwrap()
}

fn local(schedule: &CompiledSchedule, time: DateTime<Utc>) -> String {
    time.with_timezone(&schedule.timezone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

#[test]
fn a_time_skipped_by_spring_forward_fires_once_right_after_the_gap() {
    // Vienna, 2025-03-30: clocks jump from 02:00 CET to 03:00 CEST.
    let job = schedule("30 2 * * *", "Europe/Vienna");
    let fires = job.next_fires(utc(2025, 3, 28, 12, 0, 0), 4);
    let shown: Vec<String> = fires.iter().map(|fire| local(&job, *fire)).collect();
    assert_eq!(
        shown,
        [
            "2025-03-29 02:30:00 CET",
            "2025-03-30 03:00:00 CEST",
            "2025-03-31 02:30:00 CEST",
            "2025-04-01 02:30:00 CEST",
        ]
    );
    assert_eq!(fires[1], utc(2025, 3, 30, 1, 0, 0));
}

#[test]
fn spring_forward_in_new_york() {
    // 2025-03-09: 02:00 EST becomes 03:00 EDT.
    let job = schedule("30 2 * * *", "America/New_York");
    let fires = job.next_fires(utc(2025, 3, 8, 12, 0, 0), 2);
    assert_eq!(
        fires,
        [utc(2025, 3, 9, 7, 0, 0), utc(2025, 3, 10, 6, 30, 0)]
    );
}

#[test]
fn a_time_repeated_by_fall_back_fires_once_in_the_first_pass() {
    // Vienna, 2025-10-26: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
    let job = schedule("30 2 * * *", "Europe/Vienna");
    let fires = job.next_fires(utc(2025, 10, 25, 12, 0, 0), 2);
    let shown: Vec<String> = fires.iter().map(|fire| local(&job, *fire)).collect();
    assert_eq!(
        shown,
        ["2025-10-26 02:30:00 CEST", "2025-10-27 02:30:00 CET"]
    );
}

#[test]
fn searching_from_inside_the_repeated_hour_never_answers_the_past() {
    let job = schedule("*/15 * * * *", "Europe/Vienna");
    // 01:10 UTC is 02:10 CET, the second pass of the repeated hour.
    let after = utc(2025, 10, 26, 1, 10, 0);
    let next = job.next_after(after).unwrap();
    assert!(next > after, "{next}");
    assert_eq!(local(&job, next), "2025-10-26 03:00:00 CET");
}

#[test]
fn hourly_in_vienna_for_a_year_fires_every_wall_clock_hour_once() {
    let job = schedule("0 * * * *", "Europe/Vienna");
    let start = utc(2024, 12, 31, 23, 0, 0); // 2025-01-01 00:00 CET
    let end = utc(2025, 12, 31, 23, 0, 0);
    let fires: Vec<DateTime<Utc>> = job
        .next_fires(start, 9000)
        .into_iter()
        .filter(|fire| *fire <= end)
        .collect();
    let total = fires.len();
    assert!(fires.windows(2).all(|pair| pair[0] < pair[1]));
    let mut wall_clock: Vec<String> = fires
        .iter()
        .map(|fire| {
            fire.with_timezone(&job.timezone)
                .format("%Y-%m-%d %H")
                .to_string()
        })
        .collect();
    let before = wall_clock.len();
    wall_clock.dedup();
    assert_eq!(wall_clock.len(), before, "a wall-clock hour fired twice");
    // 365 days of 24 hours, less the hour that does not exist in spring (02:00 fires at
    // 03:00, once); the repeated autumn hour fires once.
    assert_eq!(total, 365 * 24 - 1);
}

#[test]
fn missed_slots_are_looked_for_at_most_31_days_back() {
    let job = schedule("0 * * * *", "UTC");
    let now = utc(2025, 6, 1, 0, 0, 0);
    let (kept, total) = slots_between(&job, utc(2024, 1, 1, 0, 0, 0), now, 2);
    assert_eq!(total, 31 * 24);
    assert_eq!(kept, [utc(2025, 5, 31, 23, 0, 0), now]);
}

#[test]
fn h_tokens_spread_apps_and_stay_stable() {
    let after = utc(2025, 6, 1, 10, 0, 0);
    let mut starts = std::collections::BTreeSet::new();
    for index in 0..50 {
        let app = format!("report-{index}");
        let job = CompiledSchedule::compile("H/15 * * * *", None, None, &app).unwrap();
        let fires = job.next_fires(after, 8);
        let again = CompiledSchedule::compile("H/15 * * * *", None, None, &app).unwrap();
        assert_eq!(fires, again.next_fires(after, 8), "{app}: not stable");
        for pair in fires.windows(2) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::minutes(15), "{app}");
        }
        let minute: u32 = fires[0].format("%M").to_string().parse().unwrap();
        starts.insert(minute % 15);
    }
    assert!(
        starts.len() >= 8,
        "H/15 spread 50 apps over only {starts:?}"
    );
}

#[test]
fn h_in_the_seconds_field_and_in_a_time_zone() {
    let job = CompiledSchedule::compile("H * * * * *", Some("Asia/Tokyo"), None, "x").unwrap();
    let fires = job.next_fires(utc(2025, 6, 1, 10, 0, 0), 3);
    assert_eq!(fires[1] - fires[0], chrono::Duration::minutes(1));
    let daily = CompiledSchedule::compile("H H * * *", Some("Asia/Tokyo"), None, "x").unwrap();
    let fires = daily.next_fires(utc(2025, 6, 1, 10, 0, 0), 2);
    assert_eq!(fires[1] - fires[0], chrono::Duration::days(1));
}

#[test]
fn fire_times_are_whole_seconds_after_a_fractional_start() {
    let job = schedule("* * * * * *", "UTC");
    let after = Utc.timestamp_millis_opt(1_750_000_000_250).unwrap();
    assert_eq!(
        job.next_after(after).unwrap().timestamp_millis(),
        1_750_000_001_000
    );
}

fn minutely(catch_up: &str) -> CompiledSchedule {
    CompiledSchedule::compile("* * * * *", None, Some(catch_up), "app").unwrap()
}

#[test]
fn catch_up_after_downtime() {
    let last = utc(2025, 6, 1, 10, 0, 0);
    let now = utc(2025, 6, 1, 10, 10, 30); // slots 10:01 … 10:10 were missed
    let latest = plan_fires(&minutely("latest"), last, now, true);
    assert_eq!(latest.fire, [utc(2025, 6, 1, 10, 10, 0)]);
    assert_eq!(latest.skipped, 9);
    assert_eq!(latest.handled_through, Some(utc(2025, 6, 1, 10, 10, 0)));

    let all = plan_fires(&minutely("all"), last, now, true);
    assert_eq!(all.fire.len(), 10);
    assert_eq!(all.fire[0], utc(2025, 6, 1, 10, 1, 0));
    assert_eq!(all.skipped, 0);

    let none = plan_fires(&minutely("none"), last, now, true);
    assert!(none.fire.is_empty());
    assert_eq!(none.skipped, 10);
    assert_eq!(none.handled_through, Some(utc(2025, 6, 1, 10, 10, 0)));

    assert_eq!(CatchUp::from_manifest(None), CatchUp::Latest);
}

#[test]
fn slots_due_while_running_all_fire_whatever_catch_up_says() {
    let last = utc(2025, 6, 1, 10, 0, 0);
    let now = utc(2025, 6, 1, 10, 2, 0);
    let plan = plan_fires(&minutely("none"), last, now, false);
    assert_eq!(
        plan.fire,
        [utc(2025, 6, 1, 10, 1, 0), utc(2025, 6, 1, 10, 2, 0)]
    );
    let nothing_due = plan_fires(&minutely("all"), now, now, false);
    assert!(nothing_due.fire.is_empty());
    assert_eq!(nothing_due.handled_through, None);
}

#[test]
fn catch_up_all_keeps_the_newest_slots_up_to_the_cap() {
    let job = CompiledSchedule::compile("* * * * * *", None, Some("all"), "app").unwrap();
    let last = utc(2025, 6, 1, 10, 0, 0);
    let now = last + chrono::Duration::seconds(5000);
    let plan = plan_fires(&job, last, now, true);
    assert_eq!(plan.fire.len(), MAX_CATCH_UP_SLOTS);
    assert_eq!(plan.fire.last(), Some(&now));
    assert_eq!(plan.skipped, 5000 - MAX_CATCH_UP_SLOTS);
}
