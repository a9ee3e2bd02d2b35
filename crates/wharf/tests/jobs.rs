//! Jobs end to end: real server, real CLI, real Rscript inside real bubblewrap.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn summary_job_runs_r_in_the_sandbox_and_writes_the_csv() {
    let server = Server::start();
    let ready: serde_json::Value = reqwest::blocking::get(format!("{}/readyz", server.url()))
        .expect("readyz")
        .json()
        .expect("json");
    assert_eq!(
        ready["sandbox"], "bubblewrap",
        "bubblewrap must be installed for these tests"
    );

    let deployed = server.deploy(&repo_root().join("examples/summary-job"));
    assert!(deployed.contains("summary-job version 1"), "{deployed}");

    let output = server.cli(&["run", "summary-job"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("height"),
        "R's printed summary is streamed: {stdout}"
    );
    assert!(stderr.contains("succeeded"), "{stderr}");

    let dest = tempfile::tempdir().expect("tempdir");
    server.cli_ok(&[
        "output",
        "summary-job",
        "-o",
        dest.path().to_str().expect("utf-8"),
    ]);
    let csv = std::fs::read_to_string(dest.path().join("summary.csv")).expect("summary.csv");
    let rows: Vec<Vec<String>> = csv
        .lines()
        .map(|l| {
            l.split(',')
                .map(|c| c.trim_matches('"').to_owned())
                .collect()
        })
        .collect();
    assert_eq!(rows[0][..4], ["column", "n", "missing", "mean"]);
    assert_eq!(rows[1][..4], ["height", "20", "0", "10.5"]);
    assert_eq!(rows[2][..4], ["weight", "20", "0", "22"]);
    let sd: f64 = rows[1][4].parse().expect("sd");
    assert!(
        (sd - 5.916_079_783).abs() < 1e-6,
        "sd of 1..20 is 5.9160798, got {sd}"
    );

    let runs = server.get("/runs?app=summary-job");
    assert_eq!(runs.as_array().map(Vec::len), Some(1));
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["exit_code"], 0);
    assert_eq!(runs[0]["trigger"], "manual");
    assert_eq!(runs[0]["triggered_by"], "admin");
}

#[test]
fn sandbox_gives_the_documented_environment_and_a_read_only_app_folder() {
    let server = Server::start();
    let script = r#"
        echo "app=$WHARF_APP run=$WHARF_RUN_ID params=$WHARF_PARAMS"
        echo "input=$WHARF_INPUT_DIR output=$WHARF_OUTPUT_DIR cwd=$(pwd) greeting=$GREETING"
        if touch /app/x 2>/dev/null; then echo "app folder writable"; else echo "app folder read-only"; fi
        echo data > "$WHARF_OUTPUT_DIR/out.txt"
    "#;
    let dir = app_folder(&[(
        "wharf.toml",
        &format!(
            "name = \"envcheck\"\ncommand = [\"sh\", \"-c\", {script:?}]\n[env]\nGREETING = \"hello\"\n"
        ),
    )]);
    server.deploy(dir.path());
    let id = server.start_run("envcheck", json!({"city": "Vienna"}));
    let run = server.wait_finished(&id, LONG);
    assert_eq!(run["state"], "succeeded", "{run}");
    let log = server.log_text(&id);
    assert!(
        log.contains(&format!(
            "app=envcheck run={id} params={{\"city\":\"Vienna\"}}"
        )),
        "{log}"
    );
    assert!(
        log.contains("input=/work/input output=/work/output cwd=/app greeting=hello"),
        "{log}"
    );
    assert!(log.contains("app folder read-only"), "{log}");
    let outputs = server.get(&format!("/runs/{id}/outputs"));
    assert_eq!(outputs["files"][0]["path"], "out.txt");
}

#[test]
fn logs_follow_streams_lines_while_the_run_is_going() {
    let server = Server::start();
    let marker = server.dir.path().join("release");
    let script = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second",
        "/work/tmp/release"
    );
    let dir = shell_job("streamer", &script, "timeout = \"1m\"");
    server.deploy(dir.path());
    let id = server.start_run("streamer", json!({}));
    let mut follower = server
        .cli_cmd(&["logs", "-f", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf logs -f");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert_eq!(first, "first");
    // The run is still going: the line arrived live, not at the end.
    assert_eq!(server.run(&id)["state"], "running");
    let _ = marker;
    std::fs::write(
        server
            .data_dir()
            .join("runs")
            .join(&id)
            .join("work/tmp/release"),
        "",
    )
    .expect("release the job");
    let second = lines.next().expect("a line").expect("utf-8");
    assert_eq!(second, "second");
    let status = follower.wait().expect("follower exits when the run ends");
    assert!(status.success());
    // `wharf logs APP` shows the latest run.
    let all = server.cli_ok(&["logs", "streamer"]);
    assert_eq!(all, "first\nsecond\n");
}

#[test]
fn timeout_kills_the_whole_process_tree() {
    let server = Server::start();
    let dir = shell_job(
        "sleeper",
        "sleep 7101 & sleep 7102; echo never",
        "timeout = \"1s\"",
    );
    server.deploy(dir.path());
    let output = server.cli(&["run", "sleeper"]);
    assert_eq!(output.status.code(), Some(124), "timed out runs exit 124");
    let runs = server.get("/runs?app=sleeper");
    assert_eq!(runs[0]["state"], "timed_out");
    wait_for("the sleepers to be gone", Duration::from_secs(10), || {
        (processes_matching("sleep 7101").is_empty() && processes_matching("sleep 7102").is_empty())
            .then_some(())
    });
}

#[test]
fn cancel_stops_a_running_job_and_its_children_even_when_they_ignore_sigterm() {
    let server = Server::start();
    let dir = shell_job(
        "stubborn",
        "trap '' TERM; sleep 7201 & sleep 7202; wait",
        "",
    );
    server.deploy(dir.path());
    let id = server.start_run("stubborn", json!({}));
    server.wait_state(&id, "running", LONG);
    wait_for("the job's children", Duration::from_secs(10), || {
        (!processes_matching("sleep 7202").is_empty()).then_some(())
    });
    server.cli_ok(&["cancel", &id]);
    let run = server.wait_finished(&id, LONG);
    assert_eq!(run["state"], "cancelled");
    wait_for("the children to be gone", Duration::from_secs(10), || {
        (processes_matching("sleep 7201").is_empty() && processes_matching("sleep 7202").is_empty())
            .then_some(())
    });
    // Cancelling again is a conflict with a clear message.
    let response = server.post(&format!("/runs/{id}/cancel"), json!({}));
    assert_eq!(response.status().as_u16(), 409);
    let body: serde_json::Value = response.json().expect("json");
    assert_eq!(body["error"]["code"], "conflict");
}

#[test]
fn failed_runs_are_retried_with_backoff_until_one_succeeds() {
    let server = Server::start();
    let dir = shell_job(
        "flaky",
        "echo attempt $WHARF_RUN_ATTEMPT; test $WHARF_RUN_ATTEMPT -ge 3",
        "retries = 3\nretry_backoff = \"200ms\"",
    );
    server.deploy(dir.path());
    let output = server.cli(&["run", "flaky"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the CLI follows retries to the success: {stderr}"
    );
    assert_eq!(stderr.matches("Retrying as run").count(), 2, "{stderr}");
    let runs = server.get("/runs?app=flaky");
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 3, "attempts 1 and 2 fail, 3 succeeds, no 4th");
    let (third, second, first) = (&runs[0], &runs[1], &runs[2]);
    assert_eq!(first["state"], "failed");
    assert_eq!(first["exit_code"], 1);
    assert_eq!(first["retried_by"], second["id"]);
    assert_eq!(second["retry_of"], first["id"]);
    assert_eq!(second["trigger"], "retry");
    assert_eq!(third["attempt"], 3);
    assert_eq!(third["state"], "succeeded");
    assert!(third["retried_by"].is_null());
}

#[test]
fn retries_stop_at_the_limit() {
    let server = Server::start();
    let dir = shell_job("broken", "exit 3", "retries = 2\nretry_backoff = \"100ms\"");
    server.deploy(dir.path());
    let output = server.cli(&["run", "broken"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the CLI exits with the job's code"
    );
    let runs = server.get("/runs?app=broken");
    let states: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["failed", "failed", "failed"]);
}

#[test]
fn concurrency_limit_queues_the_second_run_and_skip_refuses_it() {
    let server = Server::start();
    let gate = "while [ ! -e /work/tmp/go ]; do sleep 0.05; done";
    let queued = shell_job(
        "one-at-a-time",
        gate,
        "concurrency = 1\noverlap = \"queue\"",
    );
    server.deploy(queued.path());
    let first = server.start_run("one-at-a-time", json!({}));
    let second = server.start_run("one-at-a-time", json!({}));
    server.wait_state(&first, "running", LONG);
    assert_eq!(
        server.run(&second)["state"],
        "queued",
        "the limit holds the second run back"
    );
    std::fs::write(
        server
            .data_dir()
            .join("runs")
            .join(&first)
            .join("work/tmp/go"),
        "",
    )
    .expect("go");
    server.wait_state(&second, "running", LONG);
    std::fs::write(
        server
            .data_dir()
            .join("runs")
            .join(&second)
            .join("work/tmp/go"),
        "",
    )
    .expect("go");
    let second_run = server.wait_finished(&second, LONG);
    let first_run = server.run(&first);
    assert_eq!(first_run["state"], "succeeded");
    assert_eq!(second_run["state"], "succeeded");
    assert!(second_run["started_at"].as_str() >= first_run["finished_at"].as_str());

    let skipping = shell_job("skipper", gate, "concurrency = 1\noverlap = \"skip\"");
    server.deploy(skipping.path());
    let running = server.start_run("skipper", json!({}));
    let refused = server.post("/apps/skipper/runs", json!({}));
    assert_eq!(refused.status().as_u16(), 409);
    let body: serde_json::Value = refused.json().expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("overlap = \"skip\""),
        "{body}"
    );
    server.cli_ok(&["cancel", &running]);
    server.wait_finished(&running, LONG);
}
