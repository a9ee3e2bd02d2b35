//! Schedule triggers and trigger URLs through the real server: per-second schedules fire
//! every slot once, restarts never fire a slot twice, catch_up decides what downtime
//! does, pause and resume, and trigger URLs with their own secret.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

fn every_second_job(name: &str, extra_trigger_keys: &str) -> tempfile::TempDir {
    shell_job(
        name,
        "true",
        &format!(
            "concurrency = 50\n\n[[job.trigger]]\nschedule = \"* * * * * *\"\n{extra_trigger_keys}\n"
        ),
    )
}

fn time(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The slots of the app's schedule runs, oldest first, asserting each appears once.
fn scheduled_slots(server: &Server, app: &str) -> Vec<DateTime<Utc>> {
    let runs = server.get(&format!("/runs?app={app}&limit=1000"));
    let runs: Vec<&Value> = runs
        .as_array()
        .expect("runs")
        .iter()
        .filter(|run| run["trigger"] == "schedule")
        .collect();
    let slots: Vec<DateTime<Utc>> = runs.iter().map(|run| time(&run["scheduled_for"])).collect();
    let unique: BTreeSet<DateTime<Utc>> = slots.iter().copied().collect();
    assert_eq!(unique.len(), slots.len(), "a slot ran twice: {slots:?}");
    unique.into_iter().collect()
}

fn wait_for_slots(server: &Server, app: &str, count: usize) -> Vec<DateTime<Utc>> {
    wait_for(&format!("{count} scheduled runs of {app}"), LONG, || {
        let slots = scheduled_slots(server, app);
        (slots.len() >= count).then_some(slots)
    })
}

fn wait_for_slot_after(server: &Server, app: &str, after: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    wait_for(
        &format!("a scheduled run of {app} after {after}"),
        LONG,
        || {
            let slots = scheduled_slots(server, app);
            slots.iter().any(|slot| *slot > after).then_some(slots)
        },
    )
}

/// Downtime is what these tests are about: wait until the clock has passed `until`.
fn wait_until(until: DateTime<Utc>) {
    wait_for(&format!("the clock to pass {until}"), LONG, || {
        (Utc::now() > until).then_some(())
    });
}

fn assert_consecutive(slots: &[DateTime<Utc>]) {
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "slots are not consecutive seconds: {slots:?}"
        );
    }
}

#[test]
fn a_per_second_schedule_runs_every_slot_once_on_time() {
    let server = Server::start();
    server.deploy(every_second_job("ticker", "").path());
    let slots = wait_for_slots(&server, "ticker", 4);
    assert_consecutive(&slots);
    let runs = server.get("/runs?app=ticker&limit=1000");
    for run in runs.as_array().expect("runs") {
        assert_eq!(run["trigger"], "schedule");
        let key_slot = time(&run["scheduled_for"]);
        let lateness = time(&run["queued_at"]) - key_slot;
        assert!(
            lateness >= chrono::Duration::zero() && lateness < chrono::Duration::seconds(1),
            "queued {lateness} after its slot"
        );
    }
    let finished = server.wait_finished(runs[0]["id"].as_str().expect("id"), LONG);
    assert_eq!(finished["state"], "succeeded");
}

/// Kills the server, waits until three slots have passed, restarts it and waits for the
/// schedule to run again. Returns (slots, killed at, restart began at).
fn downtime(server: &mut Server, app: &str) -> (Vec<DateTime<Utc>>, DateTime<Utc>, DateTime<Utc>) {
    wait_for_slots(server, app, 2);
    server.kill9();
    let killed_at = Utc::now();
    wait_until(killed_at + chrono::Duration::milliseconds(3500));
    let restarting_at = Utc::now();
    server.restart();
    let slots = wait_for_slot_after(server, app, Utc::now() + chrono::Duration::seconds(1));
    (slots, killed_at, restarting_at)
}

fn missed(
    slots: &[DateTime<Utc>],
    killed_at: DateTime<Utc>,
    restarting_at: DateTime<Utc>,
) -> usize {
    slots
        .iter()
        .filter(|slot| **slot > killed_at && **slot < restarting_at)
        .count()
}

#[test]
fn after_a_kill_catch_up_latest_runs_one_missed_slot_and_no_slot_twice() {
    let mut server = Server::start();
    server.deploy(every_second_job("latest", "").path());
    let (slots, killed_at, restarting_at) = downtime(&mut server, "latest");
    // Three or more slots passed while the server was down; at most the newest ran.
    assert!(missed(&slots, killed_at, restarting_at) <= 1, "{slots:?}");
    let before: Vec<_> = slots
        .iter()
        .filter(|slot| **slot <= killed_at)
        .copied()
        .collect();
    let after: Vec<_> = slots
        .iter()
        .filter(|slot| **slot >= restarting_at)
        .copied()
        .collect();
    assert_consecutive(&before);
    assert_consecutive(&after);
    // Kill it again right as slots come due: still every slot once (scheduled_slots
    // asserts it), and the schedule goes on.
    server.restart();
    let last = *slots.last().expect("slots");
    let slots = wait_for_slot_after(&server, "latest", last + chrono::Duration::seconds(2));
    assert!(slots.len() > after.len());
}

#[test]
fn after_a_kill_catch_up_all_runs_every_missed_slot() {
    let mut server = Server::start();
    server.deploy(every_second_job("all", "catch_up = \"all\"").path());
    let (slots, killed_at, restarting_at) = downtime(&mut server, "all");
    assert!(missed(&slots, killed_at, restarting_at) >= 3, "{slots:?}");
    assert_consecutive(&slots);
}

#[test]
fn after_a_kill_catch_up_none_skips_the_missed_slots() {
    let mut server = Server::start();
    server.deploy(every_second_job("none", "catch_up = \"none\"").path());
    let (slots, killed_at, restarting_at) = downtime(&mut server, "none");
    assert_eq!(missed(&slots, killed_at, restarting_at), 0, "{slots:?}");
}

#[test]
fn pausing_stops_a_schedule_and_resuming_continues_without_the_paused_slots() {
    let server = Server::start();
    let app = shell_job(
        "pausable",
        "true",
        "concurrency = 50\n\n[[job.trigger]]\nschedule = \"* * * * * *\"\n\n\
         [[job.trigger]]\nschedule = \"0 9 * * *\"\ntimezone = \"Europe/Vienna\"\n",
    );
    server.deploy(app.path());
    wait_for_slots(&server, "pausable", 1);

    let listed = server.get("/schedules");
    let listed = listed.as_array().expect("schedules");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let vienna = &listed[1];
    assert_eq!(vienna["trigger"], 1);
    assert_eq!(vienna["timezone"], "Europe/Vienna");
    let next = vienna["next"].as_array().expect("next");
    assert_eq!(next.len(), 3);
    for fire in next {
        let local = fire["local"].as_str().expect("local");
        assert!(local.contains("T09:00:00+0"), "{local}");
        assert_eq!(time(&fire["utc"]), time(&fire["local"]));
    }
    let table = server.cli_ok(&["schedules"]);
    assert!(
        table.contains("Europe/Vienna") && table.contains("09:00:00 CE"),
        "{table}"
    );

    server.cli_ok(&["schedules", "pause", "pausable", "--trigger", "0"]);
    let paused_at = Utc::now();
    let listed = server.get("/schedules?app=pausable");
    assert_eq!(listed[0]["paused"], true);
    assert_eq!(listed[0]["paused_by"], "admin");
    assert_eq!(listed[1]["paused"], false);
    assert!(server.cli_ok(&["schedules"]).contains("paused by admin"));
    wait_until(paused_at + chrono::Duration::milliseconds(2500));
    let slots = scheduled_slots(&server, "pausable");
    assert!(
        slots
            .iter()
            .all(|slot| *slot <= paused_at + chrono::Duration::seconds(1)),
        "ran after the pause: {slots:?} (paused at {paused_at})"
    );

    let resuming_at = Utc::now();
    server.cli_ok(&["schedules", "resume", "pausable"]);
    let slots = wait_for_slot_after(&server, "pausable", Utc::now());
    let during_pause = slots
        .iter()
        .filter(|slot| **slot > paused_at + chrono::Duration::seconds(1) && **slot < resuming_at)
        .count();
    assert_eq!(during_pause, 0, "{slots:?}");

    let bad = server.cli(&["schedules", "pause", "pausable", "--trigger", "7"]);
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("no schedule trigger 7") && message.contains("0, 1"),
        "{message}"
    );
}

#[test]
fn a_trigger_url_starts_runs_with_params_and_refuses_wrong_secrets() {
    let server = Server::start();
    server.deploy(shell_job("hooked", "echo \"params=$WHARF_PARAMS\"", "").path());
    let url = server.cli_ok(&["trigger-url", "hooked"]).trim().to_owned();
    assert!(
        url.starts_with(&format!(
            "{}/api/v1/trigger/hooked?token=wtr_",
            server.url()
        )),
        "{url}"
    );
    let http = server.http();

    let no_token = http
        .post(format!("{}/api/v1/trigger/hooked", server.url()))
        .send()
        .expect("POST");
    assert_eq!(no_token.status().as_u16(), 401);
    let body: Value = no_token.json().expect("JSON error");
    assert_eq!(body["error"]["code"], "unauthorized");

    let wrong = http
        .post(format!(
            "{}/api/v1/trigger/hooked?token=wtr_wrong",
            server.url()
        ))
        .send()
        .expect("POST");
    assert_eq!(wrong.status().as_u16(), 403);
    let body: Value = wrong.json().expect("JSON error");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("--rotate"));
    // An API token is not a trigger token.
    let api_token = http
        .post(format!(
            "{}/api/v1/trigger/hooked?token={}",
            server.url(),
            server.token
        ))
        .send()
        .expect("POST");
    assert_eq!(api_token.status().as_u16(), 403);

    let started = http
        .post(format!("{url}&region=eu"))
        .json(&json!({"params": {"day": "2026-01-31"}}))
        .send()
        .expect("POST");
    assert_eq!(started.status().as_u16(), 201);
    let run: Value = started.json().expect("run");
    assert_eq!(run["trigger"], "webhook");
    let run = server.wait_finished(run["id"].as_str().expect("id"), LONG);
    assert_eq!(run["state"], "succeeded");
    let log = server.log_text(run["id"].as_str().expect("id"));
    assert!(
        log.contains(r#"params={"day":"2026-01-31","region":"eu"}"#),
        "{log}"
    );

    // The secret in a header instead of the URL.
    let token = url.split("token=").nth(1).expect("token");
    let by_header = http
        .post(format!("{}/api/v1/trigger/hooked", server.url()))
        .header("X-Wharf-Trigger-Token", token)
        .send()
        .expect("POST");
    assert_eq!(by_header.status().as_u16(), 201);

    // Shown once: asking again without --rotate says how to get a new one.
    let again = server.cli(&["trigger-url", "hooked"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--rotate"));
    let rotated = server
        .cli_ok(&["trigger-url", "hooked", "--rotate"])
        .trim()
        .to_owned();
    assert_ne!(rotated, url);
    let old = http.post(&url).send().expect("POST");
    assert_eq!(old.status().as_u16(), 403);
    let new = http.post(&rotated).send().expect("POST");
    assert_eq!(new.status().as_u16(), 201);
}
